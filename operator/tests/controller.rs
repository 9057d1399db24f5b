//! The operator's controllers wired as in production (watches of both kinds,
//! plan ConfigMaps and Nodes; orphan cleanup; Events; the leader Lease)
//! against the in-memory API. Every call is recorded, and the test fails if
//! the operator's RBAC in config/rbac grants more or less than it used.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::CustomResourceExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube_standin::Standin;
use netprobe_api::{ClusterNetworkProbe, NetworkProbe, NetworkProbeNodeReport};
use netprobe_operator::controller;
use netprobe_operator::leader::LeaderElector;
use netprobe_operator::reconcile::Context;
use netprobe_operator::reports::Reports;
use netprobe_operator::telemetry::Metrics;
use serde_json::json;

const GV: &str = "netprobe.dev/v1alpha1";

#[tokio::test]
async fn controllers_reconcile_and_use_exactly_their_rbac() {
    let api = Standin::new();
    api.register_crd(&NetworkProbe::crd());
    api.register_crd(&ClusterNetworkProbe::crd());
    api.register_crd(&NetworkProbeNodeReport::crd());
    api.put(
        "v1",
        "nodes",
        json!({"metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "z1"}},
               "spec": {"podCIDRs": ["10.244.1.0/24"]},
               "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"}]}}),
    );
    for ns in ["netprobe-system", "shop"] {
        api.put("v1", "namespaces", json!({"metadata": {"name": ns}}));
    }
    // Plans left behind by probes deleted while the operator was down.
    for (name, kind, ns) in [
        ("nprobe.old.gone", "NetworkProbe", Some("old")),
        ("cnprobe.gone", "ClusterNetworkProbe", None),
    ] {
        let mut labels = json!({"netprobe.dev/plan": name, "netprobe.dev/source-kind": kind, "netprobe.dev/source-name": "gone",
            "netprobe.dev/source-uid": "u-gone"});
        if let Some(ns) = ns {
            labels["netprobe.dev/source-namespace"] = json!(ns);
        }
        api.put(
            "v1",
            "configmaps",
            json!({"metadata": {"name": name, "namespace": "netprobe-system", "labels": labels}, "data": {}}),
        );
    }
    let client = api.client();
    api.store().log.clear();

    let leader = LeaderElector::new(
        client.clone(),
        "netprobe-system",
        "netprobe-operator",
        "me",
        Duration::from_secs(15),
    );
    assert!(leader.try_acquire_or_renew().await.unwrap());
    assert!(leader.try_acquire_or_renew().await.unwrap());

    let (nodes, writer) = reflector::store();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "netprobe-operator".into(),
            instance: Some("me".into()),
        },
    );
    let mut ctx = Context::new(client.clone(), "netprobe-system", nodes, Some(recorder), Metrics::new());
    // Liveness in seconds instead of a minute.
    ctx.reports = Arc::new(RwLock::new(Reports::new(Duration::from_secs(3))));
    ctx.report_sweep = Duration::from_millis(200);
    let ctx = Arc::new(ctx);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(controller::run(ctx, writer, stop_rx));

    // Users' changes go straight into the store (not recorded as operator calls).
    api.put(
        GV,
        "networkprobes",
        json!({"apiVersion": GV, "kind": "NetworkProbe", "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"probes": [{"type": "TcpResets"}]}}),
    );
    api.put(
        GV,
        "clusternetworkprobes",
        json!({"apiVersion": GV, "kind": "ClusterNetworkProbe", "metadata": {"name": "c"},
        "spec": {"probes": [{"type": "PacketDrops"}]}}),
    );
    // A probe with a name of 250 characters: its plan and its Events too.
    let long = "l".repeat(250);
    api.put(
        GV,
        "networkprobes",
        json!({"apiVersion": GV, "kind": "NetworkProbe", "metadata": {"name": long, "namespace": "shop"},
        "spec": {"probes": [{"type": "TcpResets"}]}}),
    );
    netprobe_testutil::eventually("an Event about the long-named probe", || {
        api.store()
            .list_objs("events.k8s.io/v1", "events")
            .iter()
            .any(|e| e["regarding"]["name"] == long.as_str() && e["reason"] == "PlanWritten")
    })
    .await;
    // A probe an earlier version finalized: released (JSON patch).
    api.put(
        GV,
        "networkprobes",
        json!({"apiVersion": GV, "kind": "NetworkProbe",
        "metadata": {"name": "legacy", "namespace": "shop", "finalizers": ["netprobe.dev/plan-cleanup"]},
        "spec": {"probes": [{"type": "TcpResets"}]}}),
    );
    netprobe_testutil::eventually("legacy finalizer released", || {
        api.get(GV, "networkprobes", Some("shop"), "legacy")
            .is_some_and(|o| o["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty))
    })
    .await;
    netprobe_testutil::eventually("orphans removed", || {
        api.get("v1", "configmaps", Some("netprobe-system"), "nprobe.old.gone")
            .is_none()
            && api
                .get("v1", "configmaps", Some("netprobe-system"), "cnprobe.gone")
                .is_none()
    })
    .await;
    netprobe_testutil::eventually("plans written", || {
        api.get("v1", "configmaps", Some("netprobe-system"), "nprobe.shop.p")
            .is_some()
            && api
                .get("v1", "configmaps", Some("netprobe-system"), "cnprobe.c")
                .is_some()
    })
    .await;
    // The peer index: node-a's compact entry in its shard, for the agents.
    let shard = netprobe_api::peerindex::shard_name(netprobe_api::peerindex::shard_of("node-a"));
    netprobe_testutil::eventually("peer index published", || {
        api.get("v1", "configmaps", Some("netprobe-system"), &shard)
            .is_some_and(|cm| {
                cm["metadata"]["labels"][netprobe_api::peerindex::PEER_INDEX_LABEL] == "true"
                    && cm["data"]["nodes.json"]
                        == r#"[{"n":"node-a","z":"z1","a":["192.168.0.1"],"c":["10.244.1.0/24"]}]"#
            })
    })
    .await;
    netprobe_testutil::eventually("status written", || {
        api.get(GV, "networkprobes", Some("shop"), "p")
            .is_some_and(|o| o["status"]["nodesReady"] == "0/1")
            && api
                .get(GV, "clusternetworkprobes", None, "c")
                .is_some_and(|o| o["status"]["observedGeneration"] == 1)
    })
    .await;

    // node-a's agent reports (as an agent writes: not an operator call) and
    // renews its heartbeat: the probe is Ready.
    let report = |beat: &str| {
        json!({"apiVersion": GV, "kind": "NetworkProbeNodeReport", "metadata": {"name": "node-a"},
            "spec": {"probeCount": 1, "probes": [{"kind": "NetworkProbe", "namespace": "shop", "name": "p",
                "phase": "Running", "appliedGeneration": 1, "podsMatched": 2}]},
            "status": {"heartbeatTime": beat}})
    };
    api.put(GV, "networkprobenodereports", report("2026-01-01T00:00:00Z"));
    netprobe_testutil::eventually("ready from node-a's report", || {
        api.get(GV, "networkprobes", Some("shop"), "p")
            .is_some_and(|o| o["status"]["nodesReady"] == "1/1" && o["status"]["podsMatched"] == 2)
    })
    .await;
    // No heartbeat for the timeout: node-a is not reporting, and named.
    netprobe_testutil::eventually("node-a not reporting", || {
        api.get(GV, "networkprobes", Some("shop"), "p").is_some_and(|o| {
            o["status"]["nodeCounts"]["notReporting"] == 1
                && o["status"]["problemNodes"][0]["name"] == "node-a"
                && o["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["reason"] == "NodesNotReporting")
                })
        })
    })
    .await;
    // The heartbeat comes back: so does the node.
    api.put(GV, "networkprobenodereports", report("2026-01-01T00:01:00Z"));
    netprobe_testutil::eventually("node-a reporting again", || {
        api.get(GV, "networkprobes", Some("shop"), "p")
            .is_some_and(|o| o["status"]["nodeCounts"]["notReporting"] == 0 && o["status"]["nodesReady"] == "1/1")
    })
    .await;
    // The report of a node that no longer exists is removed.
    let mut gone = report("2026-01-01T00:00:00Z");
    gone["metadata"]["name"] = json!("node-gone");
    api.put(GV, "networkprobenodereports", gone);
    netprobe_testutil::eventually("report of a deleted node removed", || {
        api.get(GV, "networkprobenodereports", None, "node-gone").is_none()
    })
    .await;

    // A new generation: the plan is rewritten (and the Event repeats).
    let mut p = api.get(GV, "networkprobes", Some("shop"), "p").unwrap();
    p["spec"]["probes"] = json!([{"type": "TcpResets"}, {"type": "TcpRtt"}]);
    p["metadata"]["generation"] = json!(2);
    api.put(GV, "networkprobes", p);
    netprobe_testutil::eventually("generation 2 planned", || {
        api.get("v1", "configmaps", Some("netprobe-system"), "nprobe.shop.p")
            .is_some_and(|cm| cm["data"]["plan.json"].as_str().unwrap_or("").contains("TcpRtt"))
    })
    .await;

    // kubectl delete: no finalizer holds the probe; its plan goes on the
    // delete event. (The user's call is not the operator's: out of the log.)
    assert!(api.get(GV, "networkprobes", Some("shop"), "p").unwrap()["metadata"]["finalizers"].is_null());
    client
        .request_text(
            http::Request::delete("/apis/netprobe.dev/v1alpha1/namespaces/shop/networkprobes/p")
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    api.store()
        .log
        .retain(|r| !(r.method == "DELETE" && r.path.ends_with("/networkprobes/p")));
    netprobe_testutil::eventually("plan removed on delete", || {
        api.get(GV, "networkprobes", Some("shop"), "p").is_none()
            && api
                .get("v1", "configmaps", Some("netprobe-system"), "nprobe.shop.p")
                .is_none()
    })
    .await;

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), run).await;
    leader.release().await.unwrap();
    // No RBAC binds the scraper's ServiceAccount here: the scrape is refused.
    assert!(!netprobe_testutil::review_a_scrape(&api).await);

    let used: BTreeSet<_> = api
        .store()
        .log
        .iter()
        .filter(|r| r.status < 400 || r.status == 404)
        .flat_map(|r| netprobe_testutil::permissions_of(&r.method, &r.path, &r.query, r.status))
        .collect();
    let rbac = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rbac/operator.yaml")).unwrap();
    netprobe_testutil::assert_rbac_matches("netprobe-operator", &rbac, &used);
}
