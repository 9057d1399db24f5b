//! Who may read the components' metrics, as a cluster admin sets it up:
//! the chart's `netprobe-metrics-reader` ClusterRole bound to Prometheus's
//! ServiceAccount. Every other pod, token or not, reads nothing.

use netprobe_e2e::https_get;
use netprobe_e2e::{World, WorldOptions, wait_for};

#[test]
fn s15_only_tokens_bound_to_the_reader_role_read_metrics() {
    let Some(w) = World::start("s15", WorldOptions::default()) else {
        return;
    };
    // Prometheus scrapes every component with its token.
    let targets = w.agents.len() + w.operators.len();
    wait_for("Prometheus to scrape every component", 30, || {
        let ups = w.prom.query("up");
        match ups.len() == targets && ups.iter().all(|(_, v)| *v == 1.0) {
            true => Ok(()),
            false => Err(format!("{ups:?}")),
        }
    });

    let nosy = w.metrics_reader("nosy", false);
    let targets = w
        .agents
        .iter()
        .map(|a| (format!("agent {}", a.node), a.addr))
        .chain(w.operators.iter().map(|o| (format!("operator {}", o.identity), o.addr)));
    for (what, addr) in targets {
        let get = |token: Option<&str>| https_get(addr, "/metrics", token).unwrap_or_else(|e| panic!("curl: {e}"));
        let (code, body) = get(Some(&w.reader_token));
        assert_eq!(code, 200, "{what}: {body}");
        assert!(body.contains("netprobe_"), "{what}: {body}");
        assert_eq!(get(None).0, 401, "{what}: no token");
        assert_eq!(get(Some("not-a-token")).0, 401, "{what}: a forged token");
        let (code, body) = get(Some(&nosy));
        assert_eq!(code, 403, "{what}: a valid token without the role: {body}");
        assert!(body.contains("system:serviceaccount:monitoring:nosy"), "{what}: {body}");
        // The kubelet's probes need no token.
        assert_eq!(https_get(addr, "/healthz", None).map(|r| r.0).ok(), Some(200), "{what}");
    }
}
