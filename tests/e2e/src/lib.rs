//! The system-test harness: a Kubernetes API (the in-repo stand-in on a
//! loopback port), the real `netprobe-operator` and two real
//! `netprobe-agent` processes (nodes `node-a` and `node-b`, each with its
//! own kubelet-shaped pods), a real Prometheus scraping them, and the real
//! `kubectl` for everything a user does. Everything it starts or creates is
//! stopped and removed on drop, also when a test fails.

pub mod cluster;
pub mod procs;
pub mod prom;
pub mod scenario;
pub mod testpod;
pub mod world;

pub use world::{PodSpec, World, WorldOptions};

/// Poll `f` every 200 ms until it returns Some, or panic after `secs`
/// naming `what` and the last value seen.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("timed out after {secs} s waiting for {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

pub use netprobe_testutil::http_get;

/// One HTTPS GET with `curl` (certificates not verified: the components
/// make theirs at start), with a bearer token when given: the status code
/// (0 when no HTTP answer came) and the body.
pub fn https_get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sk", "--max-time", "30", "-w", "\n%{http_code}"])
        .arg(format!("https://{addr}{path}"));
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// Percent-encode a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
