//! Helpers shared by netprobe's test tiers.

use std::io::Write;
use std::process::{Command, Stdio};

/// Environment switch CI sets: a test that cannot run must fail, not skip.
pub const REQUIRE_ENV: &str = "NETPROBE_REQUIRE_KERNEL_TESTS";

/// Decide what to do about a test whose prerequisites are `missing`: true
/// when it can run; otherwise print a loud SKIPPED line and return false, or
/// panic when [`REQUIRE_ENV`] is `1`.
pub fn can_run(test: &str, missing: &[&str]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let msg = format!("TEST {test} SKIPPED: missing {}", missing.join(", "));
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{msg} ({REQUIRE_ENV}=1 forbids skipping)");
    }
    eprintln!("\n!!!!! {msg} !!!!!\n");
    false
}

/// True when `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Lint a text exposition with `promtool check metrics` (Debian package
/// `prometheus`); any finding fails the calling test.
pub fn promtool_check(test: &str, text: &str) {
    if !can_run(
        test,
        if have("promtool") {
            &[]
        } else {
            &["promtool (Debian package prometheus)"]
        },
    ) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write exposition");
    let out = child.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n--- exposition ---\n{text}"
    );
}
