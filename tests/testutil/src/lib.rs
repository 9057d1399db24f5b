//! Helpers shared by netprobe's test tiers.

use std::io::Write;
use std::process::{Command, Stdio};

pub mod plans;

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

/// One permission: (API group, resource[/subresource], verb).
pub type Permission = (String, String, String);

/// The permissions a request needs, from what the in-memory API recorded:
/// method, path, query and the status it answered (an apply that created
/// the object needs `create` as well as `patch`).
pub fn permissions_of(method: &str, path: &str, query: &str, status: u16) -> Vec<Permission> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => (String::new(), rest.to_vec()),
        ["apis", g, _v, rest @ ..] => (g.to_string(), rest.to_vec()),
        _ => return Vec::new(),
    };
    let rest: Vec<&str> = match rest.as_slice() {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail.to_vec(),
        other => other.to_vec(),
    };
    let (resource, has_name) = match rest.as_slice() {
        [res] => (res.to_string(), false),
        [res, _name] => (res.to_string(), true),
        [res, _name, sub] => (format!("{res}/{sub}"), true),
        _ => return Vec::new(),
    };
    let verb = match (method, has_name) {
        ("WATCH", _) => "watch",
        ("GET", false) if query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return Vec::new(),
    };
    let mut out = vec![(group.clone(), resource.clone(), verb.to_string())];
    if method == "PATCH" && status == 201 {
        out.push((group, resource, "create".into()));
    }
    out
}

/// Permissions granted by every Role and ClusterRole in an RBAC manifest.
pub fn granted(rbac_yaml: &str) -> std::collections::BTreeSet<Permission> {
    let mut out = std::collections::BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(rbac_yaml) {
        let Ok(v) = <serde_yaml::Value as serde::Deserialize>::deserialize(doc) else {
            continue;
        };
        if !matches!(v["kind"].as_str(), Some("Role" | "ClusterRole")) {
            continue;
        }
        for rule in v["rules"].as_sequence().into_iter().flatten() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for verb in list("verbs") {
                        out.insert((g.clone(), r.clone(), verb));
                    }
                }
            }
        }
    }
    out
}

/// Fail when `used` needs a permission the manifest does not grant, or the
/// manifest grants one nothing used.
pub fn assert_rbac_matches(component: &str, rbac_yaml: &str, used: &std::collections::BTreeSet<Permission>) {
    let granted = granted(rbac_yaml);
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "{component} RBAC does not match its API calls:\n  missing (called, not granted): {missing:?}\n  unused (granted, never called): {unused:?}"
    );
}

/// Wait up to 10 s for `cond`, checking every 50 ms; panic naming `what`.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Review one scrape of `/metrics` as a binary's metrics endpoint does
/// (TokenReview, then SubjectAccessReview) with a token of a ServiceAccount
/// `netprobe-system/prometheus`, so the reviews appear among the calls a
/// component makes; returns whether the scrape was allowed.
pub async fn review_a_scrape(api: &kube_standin::Standin) -> bool {
    api.service_account("netprobe-system", "prometheus");
    let Some(token) = api.issue_token("netprobe-system", "prometheus") else {
        panic!("the stand-in issues no token for a ServiceAccount it holds")
    };
    let auth = netprobe_telemetry::TokenAuthorizer::new(api.client(), netprobe_telemetry::CachePolicy::default());
    match auth.review(&token, "/metrics").await {
        Ok(v) => matches!(v, netprobe_telemetry::Verdict::Allowed { .. }),
        Err(e) => panic!("the scrape could not be reviewed: {e}"),
    }
}

/// One HTTP/1.0 GET on loopback: the status code and the body.
pub fn http_get(addr: std::net::SocketAddr, path_and_query: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head}")))?;
    Ok((code, body.to_string()))
}
