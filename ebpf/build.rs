//! Compiles the eBPF C sources with clang into the object embedded in the
//! crate, and the test programs into an object of their own when the
//! `testing` feature is on. Objects are never committed: they are built from
//! source every time.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let src = PathBuf::from("src/bpf");
    rerun_for(&src);
    println!("cargo:rerun-if-env-changed=CLANG");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    compile(&src, "netprobe.bpf.c", &out_dir.join("netprobe.bpf.o"));
    if std::env::var_os("CARGO_FEATURE_TESTING").is_some() {
        compile(&src, "testing.bpf.c", &out_dir.join("testing.bpf.o"));
    }
    // The sample user programs (config/samples/programs), against the
    // public header alone, as a user builds them: they must keep compiling.
    let include = PathBuf::from("include");
    rerun_for(&include);
    let samples = PathBuf::from("../config/samples/programs");
    rerun_for(&samples);
    let programs = out_dir.join("programs");
    std::fs::create_dir_all(&programs).expect("creating OUT_DIR/programs");
    for e in std::fs::read_dir(&samples).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".bpf.c") {
            compile_with(&samples, &name, &programs.join(format!("{stem}.bpf.o")), &[&include]);
        }
    }
}

/// Every C source and header under `dir`.
fn rerun_for(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rerun_for(&p);
        } else {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

fn compile(src: &Path, file: &str, out: &Path) {
    compile_with(src, file, out, &[])
}

fn compile_with(src: &Path, file: &str, out: &Path, includes: &[&Path]) {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("netprobe-ebpf: unsupported target architecture {other}"),
        Err(_) => "x86",
    };
    let multiarch = match arch {
        "arm64" => "/usr/include/aarch64-linux-gnu",
        _ => "/usr/include/x86_64-linux-gnu",
    };
    let result = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg(format!("-I{multiarch}"))
        .arg(format!("-I{}", src.display()))
        .args(includes.iter().map(|i| format!("-I{}", i.display())))
        .arg("-c")
        .arg(src.join(file))
        .arg("-o")
        .arg(out)
        .status();
    match result {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "netprobe-ebpf: `{clang}` failed ({s}) compiling {}/{file}; it needs the libbpf headers \
             (Debian: libbpf-dev) and linux-libc-dev",
            src.display()
        ),
        Err(e) => panic!(
            "netprobe-ebpf: cannot run `{clang}` ({e}). clang is required to build the eBPF programs \
             (Debian: apt-get install clang libbpf-dev), or set CLANG to its path"
        ),
    }
}
