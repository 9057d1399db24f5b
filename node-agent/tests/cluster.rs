//! Component tests of cluster mode: real watches against the in-memory API
//! (kube-standin), the real selection and status path, and a recording
//! stand-in for the kernel side.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::CustomResourceExt;
use kube_standin::Standin;
use netprobe_agent::cluster::{self, ClusterConfig, Runner};
use netprobe_agent::kernel::manager::{ApplyReport, ManagerError};
use netprobe_agent::pipeline::desired::{Desired, Owner};
use netprobe_agent::pipeline::peers::{PeerKind, PeerWorld};
use netprobe_api::keys::{PLAN_DATA_KEY, PLAN_LABEL, SOURCE_KIND_LABEL, SOURCE_NAME_LABEL, SOURCE_NAMESPACE_LABEL};
use netprobe_api::{ClusterNetworkProbe, NetworkProbe, NetworkProbeNodeReport, NetworkProbeSpec};
use netprobe_testutil::plans;
use serde_json::{Value, json};

const GV: &str = "netprobe.dev/v1alpha1";

#[derive(Default)]
struct Recorder {
    last: Mutex<Option<Desired>>,
    applies: Mutex<usize>,
    budget: tokio::sync::watch::Sender<BTreeSet<String>>,
    world: Mutex<Option<Arc<PeerWorld>>>,
}

impl Runner for Recorder {
    fn apply(&self, desired: Desired) -> Result<ApplyReport, ManagerError> {
        let mut report = ApplyReport::default();
        for t in desired.kernel().types {
            report.attached.insert(t, vec![format!("np_{t}")]);
        }
        *self.last.lock().unwrap() = Some(desired);
        *self.applies.lock().unwrap() += 1;
        Ok(report)
    }
    fn budget(&self) -> tokio::sync::watch::Receiver<BTreeSet<String>> {
        self.budget.subscribe()
    }
    fn set_peer_world(&self, world: Arc<PeerWorld>) {
        *self.world.lock().unwrap() = Some(world);
    }
}

impl Recorder {
    /// (plan key → selected "namespace/pod") as the kernel was last asked.
    fn selected(&self) -> Vec<(String, String)> {
        let g = self.last.lock().unwrap();
        let Some(d) = g.as_ref() else { return vec![] };
        let mut out = Vec::new();
        for (k, pt) in &d.plans {
            for t in &pt.targets {
                if let Some(Owner::Pod { namespace, pod, .. }) = d.targets.get(t).map(|t| &t.owner) {
                    out.push((k.clone(), format!("{namespace}/{pod}")));
                }
            }
        }
        out
    }
}

struct World {
    api: Standin,
    cgroups: tempfile::TempDir,
    /// Tells the agent to stop (it marks its report as stopping).
    stop: tokio::sync::watch::Sender<bool>,
}

impl World {
    fn new() -> World {
        let api = Standin::new();
        api.register_crd(&NetworkProbe::crd());
        api.register_crd(&ClusterNetworkProbe::crd());
        api.register_crd(&NetworkProbeNodeReport::crd());
        api.put(
            "v1",
            "nodes",
            json!({"metadata": {"name": "node-a", "uid": "uid-node-a", "labels": {"zone": "a"}}}),
        );
        api.put(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "shop", "labels": {"team": "a"}}}),
        );
        api.put(
            "v1",
            "namespaces",
            json!({"metadata": {"name": "bank", "labels": {"team": "b"}}}),
        );
        World {
            api,
            cgroups: tempfile::tempdir().expect("tempdir"),
            stop: tokio::sync::watch::Sender::new(false),
        }
    }

    fn pod(&self, ns: &str, name: &str, uid: &str, node: &str, labels: Value, with_cgroup: bool) {
        self.api.put(
            "v1",
            "pods",
            json!({"metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels},
                   "spec": {"nodeName": node, "containers": []}, "status": {"phase": "Running"}}),
        );
        if with_cgroup {
            self.cgroup(uid);
        }
    }

    fn cgroup(&self, uid: &str) {
        std::fs::create_dir_all(self.cgroups.path().join(format!("kubepods/burstable/pod{uid}"))).expect("mkdir");
    }

    /// A probe and its plan ConfigMap, as the operator would write them.
    fn probe(&self, ns: &str, name: &str, generation: i64, spec: Value) {
        let mut obj = self.api.get(GV, "networkprobes", Some(ns), name).unwrap_or_else(|| {
            self.api.put(GV, "networkprobes", json!({"apiVersion": GV, "kind": "NetworkProbe", "metadata": {"name": name, "namespace": ns}, "spec": spec.clone()}))
        });
        obj["spec"] = spec.clone();
        obj["metadata"]["generation"] = json!(generation);
        let obj = self.api.put(GV, "networkprobes", obj);
        let parsed: NetworkProbeSpec = serde_json::from_value(spec).expect("spec");
        let src = plans::source(
            Some(ns),
            name,
            obj["metadata"]["uid"].as_str().unwrap_or_default(),
            generation,
        );
        let plan = plans::build(src, &parsed, None);
        self.plan_cm(ns, name, &plan.to_json());
    }

    fn plan_cm(&self, ns: &str, name: &str, data: &str) {
        let cm = format!("nprobe.{ns}.{name}");
        self.api.put(
            "v1",
            "configmaps",
            json!({"metadata": {"name": cm, "namespace": "netprobe-system", "labels": {
                PLAN_LABEL: cm, SOURCE_KIND_LABEL: "NetworkProbe", SOURCE_NAMESPACE_LABEL: ns, SOURCE_NAME_LABEL: name}},
                "data": {PLAN_DATA_KEY: data}}),
        );
    }

    /// `node`'s report entry for the probe `kind` `ns`/`name`.
    fn entry_of(&self, kind: &str, ns: Option<&str>, name: &str, node: &str) -> Option<Value> {
        let r = self.report(node)?;
        r["spec"]["probes"]
            .as_array()?
            .iter()
            .find(|e| e["kind"] == kind && e["name"] == name && e["namespace"].as_str() == ns)
            .cloned()
    }

    fn entry(&self, ns: &str, name: &str, node: &str) -> Option<Value> {
        self.entry_of("NetworkProbe", Some(ns), name, node)
    }

    fn report(&self, node: &str) -> Option<Value> {
        self.api.get(GV, "networkprobenodereports", None, node)
    }

    /// Writes of the report's content (not its heartbeat).
    fn report_writes(&self) -> usize {
        self.api
            .store()
            .writes()
            .iter()
            .filter(|r| r.path.contains("/networkprobenodereports/") && !r.path.ends_with("/status"))
            .count()
    }

    fn start(&self, kernel: Arc<Recorder>) -> tokio::task::JoinHandle<()> {
        let cfg = ClusterConfig {
            node: "node-a".into(),
            namespace: "netprobe-system".into(),
            cgroup_root: self.cgroups.path().to_path_buf(),
            proc_root: Path::new("/proc").to_path_buf(),
            status_min_interval: Duration::from_millis(300),
            heartbeat: Duration::from_millis(500),
            service_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        };
        tokio::spawn(cluster::run(self.api.client(), cfg, kernel, self.stop.subscribe()))
    }
}

#[tokio::test]
async fn plans_pods_and_status_flow_with_isolation() {
    let w = World::new();
    w.pod("shop", "redis-0", "u-shop-1", "node-a", json!({"app": "redis"}), true);
    w.pod("shop", "web-0", "u-shop-2", "node-a", json!({"app": "web"}), true);
    w.pod("bank", "redis-1", "u-bank-1", "node-a", json!({"app": "redis"}), true);
    w.pod("shop", "redis-9", "u-shop-9", "node-b", json!({"app": "redis"}), true);
    // Match-all selector in a namespaced probe: still only its namespace.
    w.probe(
        "shop",
        "all",
        1,
        json!({"probes": [{"type": "TcpResets"}], "podSelector": {}}),
    );
    w.probe(
        "shop",
        "redis",
        1,
        json!({"probes": [{"type": "TcpRetransmits"}], "podSelector": {"matchLabels": {"app": "redis"}}}),
    );
    let kernel = Arc::new(Recorder::default());
    let task = w.start(kernel.clone());

    netprobe_testutil::eventually("both probes report Running", || {
        w.entry("shop", "all", "node-a")
            .is_some_and(|e| e["phase"] == "Running")
            && w.entry("shop", "redis", "node-a")
                .is_some_and(|e| e["phase"] == "Running")
    })
    .await;
    let e = w.entry("shop", "all", "node-a").unwrap();
    assert_eq!(e["podsMatched"], 2, "{e}");
    assert_eq!(e["appliedGeneration"], 1);
    assert_eq!(w.entry("shop", "redis", "node-a").unwrap()["podsMatched"], 1);
    let sel = kernel.selected();
    assert!(
        sel.iter().all(|(_, pod)| pod.starts_with("shop/")),
        "no pod of another namespace: {sel:?}"
    );
    assert!(
        !sel.iter().any(|(_, pod)| pod == "shop/redis-9"),
        "pods of other nodes are not watched"
    );

    // A new generation reaches the node without a restart.
    w.probe("shop", "redis", 2, json!({"probes": [{"type": "TcpRetransmits"}, {"type": "TcpRtt"}], "podSelector": {"matchLabels": {"app": "redis"}}}));
    netprobe_testutil::eventually("generation 2 applied", || {
        w.entry("shop", "redis", "node-a")
            .is_some_and(|e| e["appliedGeneration"] == 2)
    })
    .await;
    assert!(
        w.entry("shop", "redis", "node-a").unwrap()["programs"]
            .as_array()
            .unwrap()
            .len()
            == 2
    );

    // A corrupted plan fails alone.
    w.plan_cm("shop", "all", "{ not json");
    netprobe_testutil::eventually("corrupt plan is Failed", || {
        w.entry("shop", "all", "node-a").is_some_and(|e| e["phase"] == "Failed")
    })
    .await;
    let e = w.entry("shop", "all", "node-a").unwrap();
    assert_eq!(e["reason"], "InvalidPlan");
    assert_eq!(
        w.entry("shop", "redis", "node-a").unwrap()["phase"],
        "Running",
        "other plans keep running"
    );

    // nodeSelector stops matching: the entry goes.
    w.probe(
        "shop",
        "redis",
        3,
        json!({"probes": [{"type": "TcpRetransmits"}], "nodeSelector": {"matchLabels": {"zone": "b"}}}),
    );
    netprobe_testutil::eventually("entry removed", || w.entry("shop", "redis", "node-a").is_none()).await;
    task.abort();
}

#[tokio::test]
async fn late_cgroups_are_picked_up_and_churn_is_debounced() {
    let w = World::new();
    w.probe("shop", "p", 1, json!({"probes": [{"type": "TcpResets"}]}));
    w.pod("shop", "late-0", "u-late", "node-a", json!({}), false);
    let kernel = Arc::new(Recorder::default());
    let task = w.start(kernel.clone());
    netprobe_testutil::eventually("reported with a waiting pod", || {
        w.entry("shop", "p", "node-a")
            .is_some_and(|e| e["message"].as_str().unwrap_or("").contains("no cgroup"))
    })
    .await;
    assert_eq!(w.entry("shop", "p", "node-a").unwrap()["podsMatched"], 0);
    w.cgroup("u-late");
    netprobe_testutil::eventually("late cgroup resolved", || {
        w.entry("shop", "p", "node-a").is_some_and(|e| e["podsMatched"] == 1)
    })
    .await;

    // A churn storm: 30 pods appear over ~0.6 s; status writes stay bounded.
    let writes_before = w.report_writes();
    let started = std::time::Instant::now();
    for i in 0..30 {
        w.pod(
            "shop",
            &format!("churn-{i}"),
            &format!("u-churn-{i}"),
            "node-a",
            json!({}),
            true,
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    netprobe_testutil::eventually("all churn pods matched", || {
        w.entry("shop", "p", "node-a").is_some_and(|e| e["podsMatched"] == 31)
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let writes = w.report_writes() - writes_before;
    let bound = (elapsed / 0.3).ceil() as usize + 1;
    println!("churn: 30 pods in {elapsed:.2}s -> {writes} report writes (bound {bound})");
    assert!(
        writes <= bound,
        "{writes} writes in {elapsed:.2}s exceeds one per 300 ms"
    );
    task.abort();
}

#[tokio::test]
async fn api_outage_keeps_the_kernel_state_and_status_converges_after() {
    let w = World::new();
    w.pod("shop", "a", "u-a", "node-a", json!({}), true);
    w.probe("shop", "p", 1, json!({"probes": [{"type": "TcpResets"}]}));
    let kernel = Arc::new(Recorder::default());
    let task = w.start(kernel.clone());
    netprobe_testutil::eventually("running", || {
        w.entry("shop", "p", "node-a").is_some_and(|e| e["phase"] == "Running")
    })
    .await;
    w.api.fail_with(Some(503));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        kernel.selected().len(),
        1,
        "the last plans keep running while the API is away"
    );
    // What changes while it is away is reported once it is back.
    w.api.fail_with(None);
    w.pod("shop", "b", "u-b", "node-a", json!({}), true);
    netprobe_testutil::eventually("status converges after the outage", || {
        w.entry("shop", "p", "node-a").is_some_and(|e| e["podsMatched"] == 2)
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn agent_uses_exactly_its_rbac() {
    let w = World::new();
    w.pod("shop", "a", "u-a", "node-a", json!({}), true);
    w.probe("shop", "p", 1, json!({"probes": [{"type": "TcpResets"}]}));
    // A cluster probe with a user program whose object is in a ConfigMap,
    // and its plan, as the operator writes them.
    let object = netprobe_ebpf::sample_programs::TCP_ABORTS.to_vec();
    let digest: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&object))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cm = k8s_openapi::api::core::v1::ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("tcp-aborts".into()),
            namespace: Some("netprobe-system".into()),
            ..Default::default()
        },
        binary_data: Some([("prog.bpf.o".to_string(), k8s_openapi::ByteString(object.clone()))].into()),
        ..Default::default()
    };
    w.api.put("v1", "configmaps", serde_json::to_value(&cm).unwrap());
    let spec_json = json!({"probes": [{"type": "PacketDrops"}, {"type": "Program", "program": {
        "object": {"configMap": {"name": "tcp-aborts", "key": "prog.bpf.o"}, "sha256": digest},
        "metrics": [{"name": "app_tcp_aborts_total", "map": "aborts_by_pod", "labels": [
            {"name": "pod", "size": 4, "decoder": "pod"}, {"name": "state", "size": 4, "decoder": "uint"}]}]}}]});
    let obj = w.api.put(
        GV,
        "clusternetworkprobes",
        json!({"apiVersion": GV, "kind": "ClusterNetworkProbe", "metadata": {"name": "c"},
        "spec": spec_json.clone()}),
    );
    let spec: NetworkProbeSpec = serde_json::from_value(spec_json).unwrap();
    let src = plans::source(None, "c", obj["metadata"]["uid"].as_str().unwrap_or_default(), 1);
    let plan = plans::build(src, &spec, None);
    w.api.put(
        "v1",
        "configmaps",
        json!({"metadata": {"name": "cnprobe.c", "namespace": "netprobe-system", "labels": {
        PLAN_LABEL: "cnprobe.c", SOURCE_KIND_LABEL: "ClusterNetworkProbe", SOURCE_NAME_LABEL: "c"}},
        "data": {PLAN_DATA_KEY: plan.to_json()}}),
    );
    w.api.store().log.clear();
    let kernel = Arc::new(Recorder::default());
    let task = w.start(kernel.clone());
    netprobe_testutil::eventually("both probes report", || {
        w.entry("shop", "p", "node-a").is_some()
            && w.entry_of("ClusterNetworkProbe", None, "c", "node-a").is_some()
            && w.report("node-a")
                .is_some_and(|r| r["status"]["heartbeatTime"].is_string())
    })
    .await;
    // Stopping marks the report, and the agent returns.
    w.stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the agent stops within 5 s")
        .expect("no panic");
    assert_eq!(w.report("node-a").unwrap()["status"]["stopping"], true);
    // The program's object reached the kernel side, read by name (`get`).
    let fetched = kernel
        .last
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|d| d.objects.get(&plan.source.key()).cloned());
    assert!(
        matches!(&fetched, Some(Ok(b)) if b.as_slice() == object.as_slice()),
        "{fetched:?}"
    );
    // No RBAC binds the scraper's ServiceAccount here: the scrape is refused.
    assert!(!netprobe_testutil::review_a_scrape(&w.api).await);
    let used: BTreeSet<_> = w
        .api
        .store()
        .log
        .iter()
        .flat_map(|r| netprobe_testutil::permissions_of(&r.method, &r.path, &r.query, r.status))
        .collect();
    let rbac = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rbac/agent.yaml")).unwrap();
    netprobe_testutil::assert_rbac_matches("netprobe-agent", &rbac, &used);
}

/// An exhausted series budget reaches the probe's status as soon as the
/// pipeline admits it, with no API event and no scrape: the status loop
/// wakes on the budget channel (its idle wait is 30 s).
#[tokio::test]
async fn an_exhausted_budget_wakes_the_status_loop() {
    let w = World::new();
    w.pod("shop", "redis-0", "u-shop-1", "node-a", json!({"app": "redis"}), true);
    w.probe("shop", "redis", 1, json!({"probes": [{"type": "TcpRetransmits"}]}));
    let kernel = Arc::new(Recorder::default());
    let task = w.start(kernel.clone());
    netprobe_testutil::eventually("running", || {
        w.entry("shop", "redis", "node-a")
            .is_some_and(|e| e["phase"] == "Running")
    })
    .await;
    // Past every pending write (min interval 300 ms): the loop is idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let key = "NetworkProbe/shop/redis".to_string();
    kernel.budget.send_replace([key].into_iter().collect());
    let started = std::time::Instant::now();
    netprobe_testutil::eventually("seriesBudgetExhausted in status", || {
        w.entry("shop", "redis", "node-a")
            .is_some_and(|e| e["seriesBudgetExhausted"] == true)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    task.abort();
}

/// One report per node, whatever the number of probes: owned by its Node
/// (so the garbage collector removes it with the Node), its heartbeat
/// renewed on the status subresource without rewriting its content.
#[tokio::test]
async fn one_report_per_node_owned_by_the_node_with_a_heartbeat() {
    let w = World::new();
    w.pod("shop", "a", "u-a", "node-a", json!({}), true);
    for i in 0..5 {
        w.probe("shop", &format!("p{i}"), 1, json!({"probes": [{"type": "TcpResets"}]}));
    }
    let task = w.start(Arc::new(Recorder::default()));
    netprobe_testutil::eventually("five entries in one report", || {
        w.report("node-a")
            .is_some_and(|r| r["spec"]["probeCount"] == 5 && r["status"]["heartbeatTime"].is_string())
    })
    .await;
    let r = w.report("node-a").unwrap();
    assert_eq!(
        r["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "uid-node-a"}])
    );
    assert_eq!(w.api.store().list_objs(GV, "networkprobenodereports").len(), 1);
    let content = w.report_writes();
    let beats = || {
        w.api
            .store()
            .writes()
            .iter()
            .filter(|r| r.path.ends_with("/networkprobenodereports/node-a/status"))
            .count()
    };
    let beats0 = beats();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(beats() >= beats0 + 2, "heartbeat renewed: {} -> {}", beats0, beats());
    assert_eq!(w.report_writes(), content, "nothing changed: no content write");
    task.abort();
}

/// Peer classes in cluster mode: the agent builds its peer world from the
/// operator's index shards (not a Node watch) and this node's pods'
/// addresses, and rebuilds it when a shard changes.
#[tokio::test]
async fn the_peer_world_follows_the_operators_index_and_this_nodes_pods() {
    use netprobe_api::peerindex::{self, IndexedNode, PEER_INDEX_DATA_KEY, PEER_INDEX_LABEL};
    let w = World::new();
    let node = |name: &str, zone: &str, cidr: &str| IndexedNode {
        name: name.into(),
        zone: Some(zone.into()),
        addresses: vec![],
        pod_cidrs: vec![cidr.parse().expect("cidr")],
    };
    let publish = |nodes: Vec<IndexedNode>| {
        for (i, text) in peerindex::shards(nodes).into_iter().enumerate() {
            w.api.put(
                "v1",
                "configmaps",
                json!({"metadata": {"name": peerindex::shard_name(i as u32), "namespace": "netprobe-system",
                    "labels": {PEER_INDEX_LABEL: "true"}}, "data": {PEER_INDEX_DATA_KEY: text}}),
            );
        }
    };
    publish(vec![
        node("node-a", "z1", "10.244.1.0/24"),
        node("node-b", "z2", "10.244.2.0/24"),
    ]);
    w.api.put(
        "v1",
        "pods",
        json!({"metadata": {"name": "web-0", "namespace": "shop", "uid": "u-web", "labels": {}},
               "spec": {"nodeName": "node-a", "containers": []},
               "status": {"phase": "Running", "podIPs": [{"ip": "172.16.0.9"}]}}),
    );
    let rec = Arc::new(Recorder::default());
    let task = w.start(rec.clone());
    let classify = |addr: &str| -> Option<(PeerKind, Option<String>, Option<String>)> {
        let g = rec.world.lock().unwrap();
        let world = g.as_ref()?;
        let p = world.classify(addr.parse().expect("ip"));
        Some((
            p.kind,
            p.node.map(|i| world.node_name(i).to_string()),
            p.node.and_then(|i| world.node_zone(i)).map(str::to_string),
        ))
    };
    let want_b = Some((PeerKind::Pod, Some("node-b".to_string()), Some("z2".to_string())));
    netprobe_testutil::eventually("node-b's pod CIDR from the index", || classify("10.244.2.7") == want_b).await;
    assert_eq!(
        classify("172.16.0.9").map(|c| (c.0, c.1)),
        Some((PeerKind::Pod, Some("node-a".to_string()))),
        "this node's pod by its address"
    );
    assert_eq!(classify("10.96.0.10").map(|c| c.0), Some(PeerKind::Service));
    assert_eq!(
        rec.world
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|w| w.zone().map(str::to_string)),
        Some("z1".into())
    );
    assert_eq!(classify("10.244.3.7").map(|c| c.0), Some(PeerKind::External));
    // A node joins: its shard changes, the world follows.
    publish(vec![
        node("node-a", "z1", "10.244.1.0/24"),
        node("node-b", "z2", "10.244.2.0/24"),
        node("node-c", "z3", "10.244.3.0/24"),
    ]);
    netprobe_testutil::eventually("node-c from the rewritten shard", || {
        classify("10.244.3.7").map(|c| c.2) == Some(Some("z3".to_string()))
    })
    .await;
    task.abort();
}
