//! Component tests: the real reconcile path against an in-memory API
//! (kube-standin), checking what it writes and what it leaves alone.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::CustomResourceExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use kube_standin::Standin;
use netprobe_api::keys::{AGENT_MANAGER, FINALIZER, PLAN_DATA_KEY};
use netprobe_api::{ClusterNetworkProbe, NetworkProbe, NetworkProbeNodeReport, ProbeId, ProbePlan};
use netprobe_operator::cleanup::remove_orphans;
use netprobe_operator::reconcile::{Context, reconcile};
use netprobe_operator::source::SourceKind;
use netprobe_operator::telemetry::Metrics;
use serde_json::{Value, json};

const NS: &str = "netprobe-system";
const GV: &str = "netprobe.dev/v1alpha1";

struct Harness {
    api: Standin,
    ctx: Arc<Context>,
    node_writer: reflector::store::Writer<Node>,
}

impl Harness {
    fn new(nodes: &[(&str, &[(&str, &str)])]) -> Self {
        let api = Standin::new();
        api.register_crd(&NetworkProbe::crd());
        api.register_crd(&ClusterNetworkProbe::crd());
        api.register_crd(&NetworkProbeNodeReport::crd());
        api.put("v1", "namespaces", json!({"metadata": {"name": NS}}));
        let (store, writer): (Store<Node>, _) = reflector::store();
        let mut h = Harness {
            ctx: Arc::new(Context::new(api.client(), NS, store, None, Metrics::new())),
            api,
            node_writer: writer,
        };
        for (name, labels) in nodes {
            h.add_node(name, labels);
        }
        h
    }

    fn add_node(&mut self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        self.node_writer.apply_watcher_event(&Event::Apply(node));
    }

    fn create(&self, kind: SourceKind, ns: Option<&str>, name: &str, spec: Value) {
        let mut meta = json!({"name": name});
        if let Some(ns) = ns {
            meta["namespace"] = json!(ns);
        }
        let plural = if kind == SourceKind::Namespaced {
            "networkprobes"
        } else {
            "clusternetworkprobes"
        };
        self.api.put(
            GV,
            plural,
            json!({"apiVersion": GV, "kind": kind.kind(), "metadata": meta, "spec": spec}),
        );
    }

    fn obj(&self, kind: SourceKind, ns: Option<&str>, name: &str) -> Option<Value> {
        let plural = if kind == SourceKind::Namespaced {
            "networkprobes"
        } else {
            "clusternetworkprobes"
        };
        self.api.get(GV, plural, ns, name)
    }

    async fn reconcile(&self, kind: SourceKind, ns: Option<&str>, name: &str) {
        let obj: DynamicObject = serde_json::from_value(self.obj(kind, ns, name).expect("object exists")).unwrap();
        reconcile(Arc::new(obj), self.ctx.clone(), kind)
            .await
            .expect("reconcile succeeds");
    }

    fn plan(&self, name: &str) -> Option<Value> {
        self.api.get("v1", "configmaps", Some(NS), name)
    }

    fn writes(&self) -> usize {
        self.api.store().writes().len()
    }

    fn condition(&self, kind: SourceKind, ns: Option<&str>, name: &str, t: &str) -> Value {
        let o = self.obj(kind, ns, name).unwrap();
        o["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// An agent reports on a probe: its node's report is applied as the
    /// agent does, read back, and handed to the operator's report index as
    /// the report watch does. `report` is (node, phase, applied generation,
    /// pods matched).
    async fn agent_reports(&self, kind: SourceKind, ns: Option<&str>, name: &str, report: (&str, &str, i64, i64)) {
        use kube::api::{Api, Patch, PatchParams};
        let (node, phase, generation, pods) = report;
        let api: Api<NetworkProbeNodeReport> = Api::all(self.ctx.client.clone());
        let id = ProbeId::new(kind, ns, name);
        let mut probes: Vec<Value> = match api.get_opt(node).await.unwrap() {
            Some(r) => r
                .spec
                .probes
                .iter()
                .filter(|p| p.probe != id)
                .map(|p| serde_json::to_value(p).unwrap())
                .collect(),
            None => Vec::new(),
        };
        let mut entry = serde_json::to_value(&id).unwrap();
        entry["phase"] = json!(phase);
        entry["appliedGeneration"] = json!(generation);
        entry["podsMatched"] = json!(pods);
        probes.push(entry);
        let body = json!({"apiVersion": GV, "kind": "NetworkProbeNodeReport", "metadata": {"name": node},
            "spec": {"probeCount": probes.len(), "probes": probes}});
        let pp = PatchParams::apply(AGENT_MANAGER).force();
        api.patch(node, &pp, &Patch::Apply(body)).await.unwrap();
        let beat = json!({"apiVersion": GV, "kind": "NetworkProbeNodeReport", "metadata": {"name": node},
            "status": {"heartbeatTime": "2026-01-01T00:00:00Z"}});
        let r = api.patch_status(node, &pp, &Patch::Apply(beat)).await.unwrap();
        self.ctx.reports.write().unwrap().apply(&r, std::time::Instant::now());
    }
}

fn spec_retrans() -> Value {
    json!({"probes": [{"type": "TcpRetransmits"}], "podSelector": {"matchLabels": {"app": "redis"}}})
}

#[tokio::test]
async fn create_writes_plan_and_status_without_a_finalizer_then_is_idempotent() {
    let h = Harness::new(&[("node-a", &[]), ("node-b", &[])]);
    h.create(SourceKind::Namespaced, Some("shop"), "redis", spec_retrans());
    h.reconcile(SourceKind::Namespaced, Some("shop"), "redis").await;

    let obj = h.obj(SourceKind::Namespaced, Some("shop"), "redis").unwrap();
    assert!(
        obj["metadata"]["finalizers"].is_null(),
        "a probe stays deletable without an operator: {obj}"
    );
    assert_eq!(obj["spec"], spec_retrans(), "spec untouched");
    let cm = h.plan("nprobe.shop.redis").expect("plan ConfigMap written");
    assert_eq!(cm["metadata"]["labels"]["netprobe.dev/plan"], "nprobe.shop.redis");
    assert_eq!(
        cm["metadata"]["labels"]["netprobe.dev/source-uid"],
        obj["metadata"]["uid"]
    );
    let plan = ProbePlan::from_json(cm["data"][PLAN_DATA_KEY].as_str().unwrap()).unwrap();
    assert_eq!(plan.source.generation, 1);
    assert_eq!(obj["status"]["observedGeneration"], 1);
    assert_eq!(obj["status"]["nodesReady"], "0/2");
    // No agent has reported yet: both nodes are named as not reporting.
    let ready = h.condition(SourceKind::Namespaced, Some("shop"), "redis", "Ready");
    assert_eq!(ready["reason"], "NodesNotReporting");
    assert!(ready["message"].as_str().unwrap().contains("node-a, node-b"), "{ready}");

    // Second reconcile of the unchanged probe: reads only.
    let before = h.writes();
    h.reconcile(SourceKind::Namespaced, Some("shop"), "redis").await;
    assert_eq!(h.writes(), before, "no churn: {:?}", &h.api.store().writes()[before..]);

    // Agents report; the operator aggregates; agent entries survive the operator's apply.
    h.agent_reports(
        SourceKind::Namespaced,
        Some("shop"),
        "redis",
        ("node-a", "Running", 1, 2),
    )
    .await;
    h.agent_reports(
        SourceKind::Namespaced,
        Some("shop"),
        "redis",
        ("node-b", "Running", 1, 1),
    )
    .await;
    h.reconcile(SourceKind::Namespaced, Some("shop"), "redis").await;
    let obj = h.obj(SourceKind::Namespaced, Some("shop"), "redis").unwrap();
    assert_eq!(obj["status"]["nodesReady"], "2/2");
    assert_eq!(obj["status"]["podsMatched"], 3);
    assert_eq!(
        obj["status"]["nodeCounts"],
        json!({"expected": 2, "running": 2, "partial": 0, "pending": 0, "failed": 0, "notReporting": 0})
    );
    assert!(obj["status"].get("problemNodes").is_none());
    assert_eq!(
        h.condition(SourceKind::Namespaced, Some("shop"), "redis", "Ready")["status"],
        "True"
    );
    let before = h.writes();
    h.reconcile(SourceKind::Namespaced, Some("shop"), "redis").await;
    assert_eq!(h.writes(), before);
}

#[tokio::test]
async fn new_generation_rewrites_plan_and_waits_for_nodes() {
    let h = Harness::new(&[("node-a", &[])]);
    h.create(SourceKind::Namespaced, Some("shop"), "p", spec_retrans());
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    h.agent_reports(SourceKind::Namespaced, Some("shop"), "p", ("node-a", "Running", 1, 1))
        .await;
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    assert_eq!(
        h.condition(SourceKind::Namespaced, Some("shop"), "p", "Ready")["status"],
        "True"
    );

    // A GitOps update: new spec, generation 2.
    let mut obj = h.obj(SourceKind::Namespaced, Some("shop"), "p").unwrap();
    obj["spec"]["probes"] = json!([{"type": "TcpRetransmits"}, {"type": "TcpRtt"}]);
    obj["metadata"]["generation"] = json!(2);
    h.api.put(GV, "networkprobes", obj);
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    let plan = ProbePlan::from_json(
        h.plan("nprobe.shop.p").unwrap()["data"][PLAN_DATA_KEY]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(plan.source.generation, 2);
    assert_eq!(plan.probes.len(), 2);
    let ready = h.condition(SourceKind::Namespaced, Some("shop"), "p", "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("Progressing"))
    );
    assert_eq!(
        h.obj(SourceKind::Namespaced, Some("shop"), "p").unwrap()["status"]["probeTypes"],
        "TcpRetransmits,TcpRtt"
    );
    h.agent_reports(SourceKind::Namespaced, Some("shop"), "p", ("node-a", "Running", 2, 1))
        .await;
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    assert_eq!(
        h.condition(SourceKind::Namespaced, Some("shop"), "p", "Ready")["status"],
        "True"
    );
}

#[tokio::test]
async fn suspend_removes_plan_and_says_so() {
    let h = Harness::new(&[("node-a", &[])]);
    h.create(SourceKind::Namespaced, Some("shop"), "p", spec_retrans());
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    assert!(h.plan("nprobe.shop.p").is_some());
    let mut obj = h.obj(SourceKind::Namespaced, Some("shop"), "p").unwrap();
    obj["spec"]["suspend"] = json!(true);
    obj["metadata"]["generation"] = json!(2);
    h.api.put(GV, "networkprobes", obj);
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    assert!(h.plan("nprobe.shop.p").is_none());
    assert_eq!(
        h.condition(SourceKind::Namespaced, Some("shop"), "p", "Ready")["reason"],
        "Suspended"
    );
}

#[tokio::test]
async fn a_legacy_finalizer_is_released_and_its_deletion_removes_the_plan() {
    let h = Harness::new(&[("node-a", &[])]);
    h.create(SourceKind::Namespaced, Some("shop"), "q", spec_retrans());
    let mut q = h.obj(SourceKind::Namespaced, Some("shop"), "q").unwrap();
    q["metadata"]["finalizers"] = json!(["example.com/keep", FINALIZER]);
    h.api.put(GV, "networkprobes", q);
    h.reconcile(SourceKind::Namespaced, Some("shop"), "q").await;
    assert_eq!(
        h.obj(SourceKind::Namespaced, Some("shop"), "q").unwrap()["metadata"]["finalizers"],
        json!(["example.com/keep"]),
        "only netprobe's own finalizer is released"
    );

    // An object an earlier version finalized, deleted while it still holds
    // the finalizer: the plan goes and the object is released.
    h.create(SourceKind::Namespaced, Some("shop"), "p", spec_retrans());
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    let mut p = h.obj(SourceKind::Namespaced, Some("shop"), "p").unwrap();
    p["metadata"]["finalizers"] = json!([FINALIZER]);
    h.api.put(GV, "networkprobes", p);
    h.ctx
        .client
        .request_text(
            http::Request::delete("/apis/netprobe.dev/v1alpha1/namespaces/shop/networkprobes/p")
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(h.obj(SourceKind::Namespaced, Some("shop"), "p").unwrap()["metadata"]["deletionTimestamp"].is_string());
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    assert!(h.plan("nprobe.shop.p").is_none(), "plan removed");
    assert!(
        h.obj(SourceKind::Namespaced, Some("shop"), "p").is_none(),
        "finalizer released, object gone"
    );
}

#[tokio::test]
async fn invalid_spec_deploys_nothing_and_names_the_field() {
    let h = Harness::new(&[("node-a", &[])]);
    // Valid by schema, invalid by meaning: a selector that can never match.
    h.create(SourceKind::Namespaced, Some("shop"), "p", json!({"probes": [{"type": "TcpResets"}],
        "podSelector": {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}}));
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    assert!(h.plan("nprobe.shop.p").is_none());
    let inv = h.condition(SourceKind::Namespaced, Some("shop"), "p", "InvalidSpec");
    assert_eq!(inv["status"], "True");
    assert!(inv["message"].as_str().unwrap().contains("spec.podSelector"), "{inv}");
    assert_eq!(
        h.condition(SourceKind::Namespaced, Some("shop"), "p", "Ready")["status"],
        "False"
    );

    // Unreadable (a type from the future): still a condition, not a crash.
    h.create(
        SourceKind::Namespaced,
        Some("shop"),
        "q",
        json!({"probes": [{"type": "TcpTeleport"}]}),
    );
    h.reconcile(SourceKind::Namespaced, Some("shop"), "q").await;
    let inv = h.condition(SourceKind::Namespaced, Some("shop"), "q", "InvalidSpec");
    assert!(
        inv["message"].as_str().unwrap().starts_with("spec.probes[0].type"),
        "{inv}"
    );

    // Fixing the spec deploys it and clears InvalidSpec.
    let mut obj = h.obj(SourceKind::Namespaced, Some("shop"), "p").unwrap();
    obj["spec"] = spec_retrans();
    obj["metadata"]["generation"] = json!(2);
    h.api.put(GV, "networkprobes", obj);
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    assert!(h.plan("nprobe.shop.p").is_some());
    assert!(
        h.condition(SourceKind::Namespaced, Some("shop"), "p", "InvalidSpec")
            .is_null()
    );
}

#[tokio::test]
async fn cluster_probe_plan_is_owned_and_follows_node_selector() {
    let h = Harness::new(&[("node-a", &[("zone", "a")]), ("node-b", &[("zone", "b")])]);
    h.create(
        SourceKind::Cluster,
        None,
        "all",
        json!({"probes": [{"type": "PacketDrops"}],
        "namespaceSelector": {"matchLabels": {"team": "x"}}, "nodeSelector": {"matchLabels": {"zone": "a"}}}),
    );
    h.reconcile(SourceKind::Cluster, None, "all").await;
    let obj = h.obj(SourceKind::Cluster, None, "all").unwrap();
    assert!(
        obj["metadata"]["finalizers"].is_null(),
        "cluster probes rely on ownerReferences"
    );
    let cm = h.plan("cnprobe.all").unwrap();
    assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], obj["metadata"]["uid"]);
    assert_eq!(obj["status"]["nodesReady"], "0/1", "only node-a matches nodeSelector");
    // Deleting the owner garbage-collects the plan.
    h.ctx
        .client
        .request_text(
            http::Request::delete("/apis/netprobe.dev/v1alpha1/clusternetworkprobes/all")
                .body(vec![])
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(h.plan("cnprobe.all").is_none());
}

#[tokio::test]
async fn orphan_plans_are_removed() {
    let h = Harness::new(&[("node-a", &[])]);
    h.create(SourceKind::Namespaced, Some("shop"), "kept", spec_retrans());
    h.create(SourceKind::Namespaced, Some("shop"), "gone", spec_retrans());
    h.reconcile(SourceKind::Namespaced, Some("shop"), "kept").await;
    h.reconcile(SourceKind::Namespaced, Some("shop"), "gone").await;
    // The source disappears while no operator runs.
    h.api.store().handle(
        "DELETE",
        &"/apis/netprobe.dev/v1alpha1/namespaces/shop/networkprobes/gone"
            .parse()
            .unwrap(),
        None,
        b"",
    );
    h.api.store().handle(
        "PATCH",
        &"/apis/netprobe.dev/v1alpha1/namespaces/shop/networkprobes/gone"
            .parse()
            .unwrap(),
        Some("application/merge-patch+json"),
        br#"{"metadata":{"finalizers":null}}"#,
    );
    assert!(h.obj(SourceKind::Namespaced, Some("shop"), "gone").is_none());
    // A plan with garbage content and no source labels.
    h.api.put("v1", "configmaps", json!({"metadata": {"name": "junk", "namespace": NS, "labels": {"netprobe.dev/plan": "junk"}}, "data": {"plan.json": "{"}}));
    // A copy of a live source's plan, widened, under another name (a forged
    // plan): not the canonical plan of its source.
    let mut forged = h.plan("nprobe.shop.kept").unwrap();
    forged["metadata"] = json!({"name": "nprobe.shop.kept-copy", "namespace": NS,
        "labels": forged["metadata"]["labels"].clone(), "annotations": forged["metadata"]["annotations"].clone()});
    h.api.put("v1", "configmaps", forged);
    let removed = remove_orphans(&h.ctx).await.unwrap();
    assert_eq!(removed, 3);
    assert!(h.plan("nprobe.shop.kept").is_some());
    assert!(h.plan("nprobe.shop.gone").is_none());
    assert!(h.plan("junk").is_none());
    assert!(
        h.plan("nprobe.shop.kept-copy").is_none(),
        "a second plan claiming a live source"
    );
}

#[tokio::test]
async fn failed_nodes_degrade_with_their_names() {
    let h = Harness::new(&[("node-a", &[]), ("node-b", &[])]);
    h.create(SourceKind::Namespaced, Some("shop"), "p", spec_retrans());
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    h.agent_reports(SourceKind::Namespaced, Some("shop"), "p", ("node-a", "Running", 1, 1))
        .await;
    h.agent_reports(SourceKind::Namespaced, Some("shop"), "p", ("node-b", "Failed", 1, 0))
        .await;
    h.reconcile(SourceKind::Namespaced, Some("shop"), "p").await;
    let d = h.condition(SourceKind::Namespaced, Some("shop"), "p", "Degraded");
    assert_eq!(d["status"], "True");
    assert!(d["message"].as_str().unwrap().contains("node-b"));
    let o = h.obj(SourceKind::Namespaced, Some("shop"), "p").unwrap();
    assert_eq!(
        o["status"]["problemNodes"],
        json!([{"name": "node-b", "phase": "Failed", "message": "FailedReason"}])
            .as_array()
            .map(|_| o["status"]["problemNodes"].clone())
            .unwrap()
    );
    assert_eq!(o["status"]["problemNodes"][0]["name"], "node-b");
    assert_eq!(o["status"]["nodeCounts"]["failed"], 1);
}
