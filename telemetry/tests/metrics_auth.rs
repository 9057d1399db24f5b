//! `/metrics` behind TokenReview and SubjectAccessReview, against the
//! stand-in API deciding by RBAC, read with `curl` as a scraper would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube_standin::Standin;
use netprobe_telemetry::{AuthMode, CachePolicy, Endpoint, MetricsSecurity, TokenAuthorizer, Verdict, serve};
use serde_json::json;

fn cluster() -> Standin {
    let s = Standin::new();
    for sa in ["prometheus", "nosy", "late"] {
        s.service_account("monitoring", sa);
    }
    s.cluster_role(
        "netprobe-metrics-reader",
        json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]),
    );
    let sa = |name: &str| json!({"kind": "ServiceAccount", "name": name, "namespace": "monitoring"});
    s.bind_cluster_role(
        None,
        "prometheus-netprobe-metrics",
        "netprobe-metrics-reader",
        json!([sa("prometheus"), sa("late")]),
    );
    s
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn endpoint() -> Endpoint {
    Endpoint {
        render: Arc::new(|| "netprobe_test_series 1\n".to_string()),
        ready: None,
    }
}

/// `curl` a URL: (HTTP code, body). Code 0 when no HTTP answer came.
async fn curl(args: Vec<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    })
    .await
    .expect("curl task")
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut args = vec!["-k".to_string(), format!("https://{addr}{path}")];
    if let Some(t) = token {
        args.extend(["-H".to_string(), format!("Authorization: Bearer {t}")]);
    }
    curl(args).await
}

async fn wait_serving(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tokens_rbac_allows_read_metrics_and_an_api_outage_keeps_known_readers() {
    let api = cluster();
    let tokens = |sa: &str| api.issue_token("monitoring", sa).expect("token");
    let (prom, nosy, late) = (tokens("prometheus"), tokens("nosy"), tokens("late"));
    let security = MetricsSecurity {
        metrics_auth: Some(AuthMode::Kubernetes),
        ..Default::default()
    };
    let access = security.access(Some(api.client()), AuthMode::None).expect("access");
    let addr = free_addr();
    tokio::spawn(serve(addr, endpoint(), access));
    wait_serving(addr).await;

    let (code, body) = get(addr, "/metrics", Some(&prom)).await;
    assert_eq!((code, body.as_str()), (200, "netprobe_test_series 1\n"));
    assert_eq!(get(addr, "/metrics", None).await.0, 401);
    assert_eq!(get(addr, "/metrics", Some("forged")).await.0, 401);
    let (code, body) = get(addr, "/metrics", Some(&nosy)).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("system:serviceaccount:monitoring:nosy"), "{body}");
    // The kubelet probes health without a token.
    assert_eq!(get(addr, "/healthz", None).await.0, 200);
    // No token travels in clear: plain HTTP gets no metrics.
    assert_ne!(curl(vec![format!("http://{addr}/metrics")]).await.0, 200);

    // The API server goes away: a reader allowed a moment ago still reads,
    // a token never reviewed is refused until the API answers again.
    api.fail_with(Some(503));
    assert_eq!(get(addr, "/metrics", Some(&prom)).await.0, 200);
    let (code, body) = get(addr, "/metrics", Some(&late)).await;
    assert_eq!(code, 503, "{body}");
    api.fail_with(None);
    assert_eq!(get(addr, "/metrics", Some(&late)).await.0, 200);
}

#[tokio::test]
async fn verdicts_expire_and_the_cache_stays_bounded() {
    let api = cluster();
    let policy = CachePolicy {
        allow_ttl: Duration::from_millis(200),
        deny_ttl: Duration::from_millis(200),
        stale_if_error: Duration::from_millis(400),
        max_entries: 3,
    };
    let auth = TokenAuthorizer::new(api.client(), policy);
    let prom = api.issue_token("monitoring", "prometheus").expect("token");
    assert!(matches!(
        auth.review(&prom, "/metrics").await,
        Ok(Verdict::Allowed { .. })
    ));
    // Unbinding takes effect once the verdict expires.
    api.store().handle(
        "DELETE",
        &"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/prometheus-netprobe-metrics"
            .parse()
            .expect("uri"),
        None,
        b"",
    );
    assert!(matches!(
        auth.review(&prom, "/metrics").await,
        Ok(Verdict::Allowed { .. })
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(matches!(
        auth.review(&prom, "/metrics").await,
        Ok(Verdict::Denied { .. })
    ));
    // Past stale_if_error, an outage refuses even a known reader.
    api.fail_with(Some(503));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(auth.review(&prom, "/metrics").await.is_err());
    api.fail_with(None);
    for i in 0..10 {
        let _ = auth.review(&format!("forged-{i}"), "/metrics").await;
    }
    assert!(auth.cached() <= 3, "{} verdicts cached", auth.cached());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_are_served_and_reloaded_when_rotated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let issue = |cn: &str| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), cn.to_string()]).expect("cert");
        std::fs::write(dir.path().join(format!("{cn}.pem")), made.cert.pem()).expect("write ca");
        std::fs::write(&cert, made.cert.pem()).expect("write cert");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    };
    issue("first");
    let security = MetricsSecurity {
        metrics_auth: Some(AuthMode::None),
        metrics_tls_cert: Some(cert.clone()),
        metrics_tls_key: Some(key.clone()),
    };
    let access = security
        .access(None, AuthMode::None)
        .expect("access")
        .reload_every(Duration::from_millis(100));
    let addr = free_addr();
    tokio::spawn(serve(addr, endpoint(), access));
    wait_serving(addr).await;
    let verified = |ca: &str| {
        let ca = dir.path().join(format!("{ca}.pem")).display().to_string();
        let resolve = format!("localhost:{}:127.0.0.1", addr.port());
        curl(vec![
            "--cacert".into(),
            ca,
            "--resolve".into(),
            resolve,
            format!("https://localhost:{}/metrics", addr.port()),
        ])
    };
    assert_eq!(verified("first").await.0, 200, "the given certificate is served");
    issue("second");
    let mut code = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        code = verified("second").await.0;
        if code == 200 {
            break;
        }
    }
    assert_eq!(code, 200, "the rotated certificate is served");
    assert_ne!(verified("first").await.0, 200, "the old one is not");
    // Standalone: no API, so no token review.
    let standalone = MetricsSecurity {
        metrics_auth: Some(AuthMode::Kubernetes),
        ..Default::default()
    };
    assert!(standalone.access(None, AuthMode::None).is_err());
}
