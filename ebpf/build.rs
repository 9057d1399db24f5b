//! Compiles the eBPF C sources with clang into one object embedded in the
//! crate. The object is never committed: it is built from source every time.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = PathBuf::from("src/bpf");
    for f in ["netprobe.bpf.c", "kernel_types.h", "layout.h"] {
        println!("cargo:rerun-if-changed=src/bpf/{f}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("netprobe.bpf.o");
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
        .arg("-c")
        .arg(src.join("netprobe.bpf.c"))
        .arg("-o")
        .arg(&out)
        .status();
    match result {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "netprobe-ebpf: `{clang}` failed ({s}) compiling src/bpf/netprobe.bpf.c; it needs the libbpf headers \
             (Debian: libbpf-dev) and linux-libc-dev"
        ),
        Err(e) => panic!(
            "netprobe-ebpf: cannot run `{clang}` ({e}). clang is required to build the eBPF programs \
             (Debian: apt-get install clang libbpf-dev), or set CLANG to its path"
        ),
    }
}
