//! Status at the largest cluster size: 5,000 nodes, 100 probes on every
//! node. Each node's report (100 entries) goes into the in-memory API as an
//! agent writes it and into the operator's report index as the watch hands
//! it over; then the real reconcile aggregates every probe. Prints bytes per
//! probe object and per report, API writes per minute at steady state, and
//! the operator's time and memory. Figures only; nothing is asserted.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::CustomResourceExt;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use kube_standin::Standin;
use netprobe_api::report::{HEARTBEAT_INTERVAL_SECS, NOT_REPORTING_AFTER_SECS};
use netprobe_api::{ClusterNetworkProbe, NetworkProbe, NetworkProbeNodeReport};
use netprobe_operator::reconcile::Context;
use netprobe_operator::telemetry::Metrics;
use serde_json::{Value, json};

const NODES: usize = 5000;
const PROBES: usize = 100;
const GV: &str = "netprobe.dev/v1alpha1";

fn rss_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn node_name(i: usize) -> String {
    format!(
        "ip-10-{}-{}-{}.eu-west-1.compute.internal",
        i / 65536,
        (i / 256) % 256,
        i % 256
    )
}

/// Node `i`'s report: every probe Running, except that node 7 and every
/// 500th node report one probe Failed (so problemNodes has content).
fn report(i: usize) -> Value {
    let probes: Vec<Value> = (0..PROBES)
        .map(|p| {
            let failed = p == 0 && (i == 7 || i.is_multiple_of(500));
            // As the agent writes them: a plain Running entry has no
            // reason or message.
            let mut e = json!({"kind": "NetworkProbe", "namespace": format!("team-{}", p % 20), "name": format!("probe-{p}"),
                "phase": if failed { "Failed" } else { "Running" }, "appliedGeneration": 1, "podsMatched": 3,
                "programs": ["np_retransmit_skb", "np_retransmit_synack", "np_retrans_close"],
                "lastTransitionTime": "2026-12-01T08:00:00Z"});
            if failed {
                e["reason"] = json!("InvalidPlan");
                e["message"] = json!("plan ConfigMap nprobe.team-0.probe-0: plan is not valid JSON for this agent: EOF while parsing a string at line 1 column 28");
            }
            e
        })
        .collect();
    json!({"apiVersion": GV, "kind": "NetworkProbeNodeReport",
        "metadata": {"name": node_name(i), "generation": 1,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name(i), "uid": format!("6f1c2d4e-0000-4000-8000-{i:012}")}]},
        "spec": {"probeCount": PROBES, "probes": probes},
        "status": {"heartbeatTime": "2026-12-01T08:00:00Z"}})
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let api = Standin::new();
    api.register_crd(&NetworkProbe::crd());
    api.register_crd(&ClusterNetworkProbe::crd());
    api.register_crd(&NetworkProbeNodeReport::crd());
    api.put("v1", "namespaces", json!({"metadata": {"name": "netprobe-system"}}));
    let (nodes, mut writer) = reflector::store::<Node>();
    for i in 0..NODES {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": node_name(i)}})).expect("node");
        writer.apply_watcher_event(&Event::Apply(n));
    }
    let ctx = Arc::new(Context::new(
        api.client(),
        "netprobe-system",
        nodes,
        None,
        Metrics::new(),
    ));
    for p in 0..PROBES {
        api.put(
            GV,
            "networkprobes",
            json!({"apiVersion": GV, "kind": "NetworkProbe",
                   "metadata": {"name": format!("probe-{p}"), "namespace": format!("team-{}", p % 20)},
                   "spec": {"probes": [{"type": "TcpRetransmits"}], "podSelector": {"matchLabels": {"app": "redis"}}}}),
        );
    }

    // Reports: bytes as the agents write them, and the operator's index of
    // them (the reports are built first and kept, so the RSS growth while
    // indexing is the index's own).
    let mut report_bytes = 0usize;
    let typed: Vec<NetworkProbeNodeReport> = (0..NODES)
        .map(|i| {
            let r = report(i);
            report_bytes += serde_json::to_vec(&r).map_or(0, |v| v.len());
            serde_json::from_value(r).expect("report")
        })
        .collect();
    let rss0 = rss_mib("VmRSS:");
    let started = Instant::now();
    for r in &typed {
        ctx.reports.write().expect("lock").apply(r, Instant::now());
    }
    let ingest = started.elapsed();
    let rss_index = rss_mib("VmRSS:") - rss0;
    drop(typed);
    // Two nodes whose agents stopped (not live): the counts say so.
    for i in [11, 12] {
        let mut r = report(i);
        r["status"]["stopping"] = json!(true);
        r["status"]["heartbeatTime"] = json!("2026-12-01T08:00:15Z");
        let typed: NetworkProbeNodeReport = serde_json::from_value(r).expect("report");
        ctx.reports.write().expect("lock").apply(&typed, Instant::now());
    }

    // Aggregate every probe through the real reconcile (plans and status
    // written to the in-memory API on this first pass).
    let all = support::reconcile_every_probe(&api, &ctx).await;
    let writes_before = api.store().writes().len();
    let resync = support::reconcile_every_probe(&api, &ctx).await;
    let resync_writes = api.store().writes().len() - writes_before;
    let probe = api.get(GV, "networkprobes", Some("team-0"), "probe-0").expect("probe");
    let probe_bytes = serde_json::to_vec(&probe).map_or(0, |v| v.len());
    let status_bytes = serde_json::to_vec(&probe["status"]).map_or(0, |v| v.len());
    let largest_probe = api
        .store()
        .list_objs(GV, "networkprobes")
        .iter()
        .map(|o| serde_json::to_vec(o).map_or(0, |v| v.len()))
        .max()
        .unwrap_or(0);
    let beat = json!({"apiVersion": GV, "kind": "NetworkProbeNodeReport", "metadata": {"name": node_name(NODES - 1)},
        "status": {"heartbeatTime": "2026-12-01T08:00:15Z", "stopping": false}});
    let beat_bytes = serde_json::to_vec(&beat).map_or(0, |v| v.len());
    let beats_per_min = NODES as f64 * 60.0 / HEARTBEAT_INTERVAL_SECS as f64;

    println!("status at {NODES} nodes x {PROBES} probes (every probe on every node)");
    println!(
        "  probe object: {probe_bytes} bytes (status {status_bytes}); largest of the {PROBES}: {largest_probe} bytes \
         (etcd's request limit: 1,572,864). Status: {}",
        probe["status"]["nodesReady"]
    );
    println!(
        "  before (status.nodes[] applied by every agent, ~740 bytes per node with its managedFields entry): \
         ~{:.1} MB per probe object",
        NODES as f64 * 740.0 / 1e6
    );
    println!(
        "  node report: {} bytes each on average ({:.0} MB for all {NODES}); written on change only",
        report_bytes / NODES,
        report_bytes as f64 / 1e6
    );
    println!(
        "  steady-state writes: {beats_per_min:.0}/min heartbeats ({beat_bytes}-byte status patch each, one per node every \
         {HEARTBEAT_INTERVAL_SECS} s; not reporting after {NOT_REPORTING_AFTER_SECS} s), 0 report or probe writes; \
         operator resync of {PROBES} probes: {resync_writes} writes"
    );
    println!(
        "  operator: index {NODES} reports in {:.0} ms (+{rss_index:.0} MiB RSS); aggregate and reconcile {PROBES} probes: \
         first pass {:.0} ms ({:.1} ms each), resync {:.0} ms; peak RSS {:.0} MiB (includes the in-memory API and its objects)",
        ingest.as_secs_f64() * 1000.0,
        all.as_secs_f64() * 1000.0,
        all.as_secs_f64() * 1000.0 / PROBES as f64,
        resync.as_secs_f64() * 1000.0,
        rss_mib("VmHWM:")
    );
}
