//! Operator cost: reconcile 1,000 NetworkProbes against the in-memory API
//! (first pass writes plans and status, second pass is the no-op resync),
//! printing wall time and peak RSS. Figures only; nothing is asserted.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::CustomResourceExt;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use kube_standin::Standin;
use netprobe_api::{ClusterNetworkProbe, NetworkProbe};
use netprobe_operator::reconcile::Context;
use netprobe_operator::telemetry::Metrics;
use serde_json::json;

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    const N: usize = 1000;
    let api = Standin::new();
    api.register_crd(&NetworkProbe::crd());
    api.register_crd(&ClusterNetworkProbe::crd());
    api.put("v1", "namespaces", json!({"metadata": {"name": "netprobe-system"}}));
    let (nodes, mut writer) = reflector::store::<Node>();
    for i in 0..3 {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": format!("node-{i}")}})).expect("node");
        writer.apply_watcher_event(&Event::Apply(n));
    }
    let ctx = Arc::new(Context::new(
        api.client(),
        "netprobe-system",
        nodes,
        None,
        Metrics::new(),
    ));
    for i in 0..N {
        api.put(
            "netprobe.dev/v1alpha1",
            "networkprobes",
            json!({"apiVersion": "netprobe.dev/v1alpha1", "kind": "NetworkProbe",
                   "metadata": {"name": format!("p{i}"), "namespace": format!("ns{}", i % 50)},
                   "spec": {"probes": [{"type": "TcpRetransmits"}, {"type": "TcpRtt"}], "podSelector": {"matchLabels": {"app": format!("a{i}")}}}}),
        );
    }
    let rss_before = peak_rss_mib();
    for pass in ["first (writes plans and status)", "second (unchanged: reads only)"] {
        let writes_before = api.store().writes().len();
        let took = support::reconcile_every_probe(&api, &ctx).await;
        let writes = api.store().writes().len() - writes_before;
        println!(
            "{N} NetworkProbes, {pass}: {:.2} s ({:.2} ms each), {writes} API writes",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / N as f64
        );
    }
    println!(
        "peak RSS {:.1} MiB (before reconciling: {:.1} MiB; includes the in-memory API)",
        peak_rss_mib(),
        rss_before
    );
}
