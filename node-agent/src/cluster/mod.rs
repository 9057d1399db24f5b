//! Cluster mode: watch plan ConfigMaps, this node's pods, namespaces and this
//! Node (least privilege, kube-runtime reflectors), recompute the desired
//! state on every change, apply it to the kernel by diff, and report every
//! plan's state in this node's report (`status.rs`). If the API server goes away the
//! reflectors keep their last state: probing and /metrics go on, and status
//! converges once it is back.

pub mod objects;
pub mod podindex;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use netprobe_api::keys::{self, PLAN_DATA_KEY, PLAN_LABEL};
use netprobe_api::peerindex::{self, PEER_INDEX_DATA_KEY, PEER_INDEX_LABEL};
use netprobe_api::{NodeProbeStatus, ProbeId, ProbePlan, SourceKind};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::cluster::status::Reporter;
use crate::kernel::manager::{ApplyReport, ManagerError};
use crate::pipeline::desired::Desired;
use crate::pipeline::peers::PeerWorld;
use crate::pipeline::selection::{self, PodView};
use podindex::PodIndex;

/// What cluster mode drives (the real `Agent`, or a recorder in component
/// tests): it applies desired state and says which plans exhausted their
/// series budget.
pub trait Runner: Send + Sync + 'static {
    fn apply(&self, desired: Desired) -> Result<ApplyReport, ManagerError>;
    /// Plans over their series budget, as the pipeline last admitted them;
    /// a change wakes the status loop.
    fn budget(&self) -> watch::Receiver<BTreeSet<String>>;
    /// Where peers are, when the peer index or this node's pods change.
    fn set_peer_world(&self, _world: Arc<PeerWorld>) {}
}

impl Runner for crate::agent::Agent {
    fn apply(&self, desired: Desired) -> Result<ApplyReport, ManagerError> {
        self.set_desired(desired)
    }
    fn budget(&self) -> watch::Receiver<BTreeSet<String>> {
        self.budget_watch()
    }
    fn set_peer_world(&self, world: Arc<PeerWorld>) {
        crate::agent::Agent::set_peer_world(self, world)
    }
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub node: String,
    /// Namespace of the plan ConfigMaps (the agent's own).
    pub namespace: String,
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
    /// Minimum time between two writes of this node's report.
    pub status_min_interval: Duration,
    /// How often the report's heartbeat is renewed.
    pub heartbeat: Duration,
    /// The cluster's Service CIDRs (peer kind `service`).
    pub service_cidrs: Vec<ipnet::IpNet>,
}

/// A plan ConfigMap read: its plan, or why this agent cannot use it.
pub fn read_plan(cm: &ConfigMap) -> Result<ProbePlan, (Option<ProbeId>, String)> {
    let labels = cm.labels();
    let source = || {
        Some(ProbeId {
            kind: SourceKind::from_kind(labels.get(keys::SOURCE_KIND_LABEL)?)?,
            namespace: labels.get(keys::SOURCE_NAMESPACE_LABEL).cloned(),
            name: keys::source_name(labels, cm.annotations())?.clone(),
        })
    };
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(PLAN_DATA_KEY)) else {
        return Err((
            source(),
            format!("plan ConfigMap {} has no {PLAN_DATA_KEY}", cm.name_any()),
        ));
    };
    let plan = ProbePlan::from_json(text).map_err(|e| (source(), format!("plan ConfigMap {}: {e}", cm.name_any())))?;
    // One plan per source, under the one name the operator gives it: a
    // second ConfigMap claiming a source is refused, not raced.
    let canonical = netprobe_api::plan::plan_configmap_name(&plan.source.id);
    if cm.name_any() != canonical {
        return Err((
            None,
            format!(
                "plan ConfigMap {} claims {} whose plan is {canonical}: refused",
                cm.name_any(),
                plan.source.id.display()
            ),
        ));
    }
    Ok(plan)
}

fn source_of(plan: &ProbePlan) -> ProbeId {
    plan.source.id.clone()
}

/// One recomputation from the stores' current content.
pub struct Inputs<'a> {
    pub configmaps: Vec<Arc<ConfigMap>>,
    pub pods: Vec<PodView>,
    pub node_labels: &'a BTreeMap<String, String>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Program plans' objects fetched from ConfigMaps, by plan key.
    pub objects: BTreeMap<String, crate::pipeline::desired::ObjectBytes>,
}

/// Desired state and this node's status entries from one set of inputs.
pub fn compute(inputs: &Inputs<'_>, runner: &dyn Runner) -> (BTreeMap<ProbeId, NodeProbeStatus>, bool) {
    let mut plans = Vec::new();
    let mut entries = BTreeMap::new();
    for cm in &inputs.configmaps {
        match read_plan(cm) {
            Ok(p) => plans.push(Arc::new(p)),
            Err((src, msg)) => {
                warn!(configmap = %cm.name_any(), %msg, "plan refused");
                if let Some(src) = src {
                    entries.insert(src, status::failed_entry(msg));
                }
            }
        }
    }
    let (mut desired, outcomes) = selection::select(&plans, &inputs.pods, inputs.node_labels, &inputs.namespaces);
    desired.objects = inputs.objects.clone();
    let waiting = outcomes.values().any(|o| o.applies && o.pods_waiting > 0);
    let report = match runner.apply(desired) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "applying the desired state failed");
            for p in &plans {
                entries.insert(source_of(p), status::failed_entry(format!("kernel: {e}")));
            }
            return (entries, waiting);
        }
    };
    let exhausted = runner.budget().borrow().clone();
    for plan in &plans {
        let key = plan.source.key();
        let Some(outcome) = outcomes.get(&key) else { continue };
        if !outcome.applies {
            continue;
        }
        entries.insert(
            source_of(plan),
            status::entry_for(plan, outcome, &report, exhausted.contains(&key)),
        );
    }
    (entries, waiting)
}

fn spawn_reflector<K>(api: Api<K>, cfg: watcher::Config, notify: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff());
    tokio::spawn(stream.for_each(move |ev| {
        if let Err(e) = &ev {
            warn!(error = %e, "watch failed; retrying with backoff");
        }
        notify.notify_one();
        futures::future::ready(())
    }));
    reader
}

/// Resolves once `shutdown` says true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Run cluster mode until `shutdown` says true; then mark this node's
/// report as stopping and return.
pub async fn run(
    client: kube::Client,
    cfg: ClusterConfig,
    runner: Arc<dyn Runner>,
    mut shutdown: watch::Receiver<bool>,
) {
    let notify = Arc::new(Notify::new());
    let plans = spawn_reflector(
        Api::<ConfigMap>::namespaced(client.clone(), &cfg.namespace),
        watcher::Config::default().labels(PLAN_LABEL),
        notify.clone(),
    );
    let pods = spawn_reflector(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node)),
        notify.clone(),
    );
    let namespaces = spawn_reflector(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
        notify.clone(),
    );
    let nodes = spawn_reflector(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={}", cfg.node)),
        notify.clone(),
    );
    // The operator's compact index of every node (peer classes): a few
    // ConfigMaps, not a watch of every Node.
    let index_cms = spawn_reflector(
        Api::<ConfigMap>::namespaced(client.clone(), &cfg.namespace),
        watcher::Config::default().labels(PEER_INDEX_LABEL),
        notify.clone(),
    );
    for (what, ready) in [
        ("plans", plans.wait_until_ready().boxed()),
        ("pods", pods.wait_until_ready().boxed()),
        ("namespaces", namespaces.wait_until_ready().boxed()),
        ("node", nodes.wait_until_ready().boxed()),
    ] {
        tokio::select! {
            r = ready => if r.is_err() {
                warn!(what, "watch stopped before its first list");
                return;
            },
            () = stopped(&mut shutdown) => return,
        }
    }
    info!(node = %cfg.node, "watching plans, pods, namespaces and the node");
    let mut index = PodIndex::new(cfg.cgroup_root.clone(), cfg.proc_root.clone());
    let mut reporter = Reporter::new(client.clone(), &cfg.node, cfg.status_min_interval, cfg.heartbeat);
    let mut budget = runner.budget();
    let mut world_inputs = None;
    let mut objects = objects::ObjectCache::new(client.clone(), &cfg.namespace);
    loop {
        // Coalesce bursts (a rollout touching many pods) into one pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let node = nodes.state().first().cloned();
        reporter.set_node(node.as_deref());
        let node_labels = node.map(|n| n.labels().clone()).unwrap_or_default();
        let pod_objs = pods.state();
        let pod_refs: Vec<&Pod> = pod_objs.iter().map(AsRef::as_ref).collect();
        let shards = index_cms.state();
        let now = WorldInputs::read(&shards, &pod_refs);
        if world_inputs.as_ref() != Some(&now) {
            runner.set_peer_world(now.world(&shards, &cfg.node, &cfg.service_cidrs));
            world_inputs = Some(now);
        }
        let configmaps = plans.state();
        let parsed: Vec<Arc<ProbePlan>> = configmaps
            .iter()
            .filter_map(|cm| read_plan(cm).ok())
            .map(Arc::new)
            .collect();
        objects.refresh(&parsed).await;
        let inputs = Inputs {
            objects: objects.objects(&parsed),
            configmaps,
            pods: index.views(&pod_refs),
            node_labels: &node_labels,
            namespaces: namespaces
                .state()
                .iter()
                .map(|n| (n.name_any(), n.labels().clone()))
                .collect(),
        };
        let (entries, waiting) = compute(&inputs, runner.as_ref());
        reporter.set(entries);
        let due = reporter.flush().await;
        // Pods without a cgroup yet are retried every 2 s, not busy-looped.
        let wait = if waiting { due.min(Duration::from_secs(2)) } else { due };
        tokio::select! {
            _ = notify.notified() => {}
            _ = budget.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            () = stopped(&mut shutdown) => {
                reporter.stopping().await;
                return;
            }
        }
    }
}

/// What the peer world is built from: the index shards (by name and
/// resource version; their text stays in the watch cache) and this node's
/// pods' addresses. Compared each pass, so the world is rebuilt (and the
/// shards parsed) only when one changed.
#[derive(PartialEq, Eq)]
struct WorldInputs {
    shards: Vec<(String, Option<String>)>,
    pod_ips: BTreeSet<std::net::IpAddr>,
}

impl WorldInputs {
    fn read(cms: &[Arc<ConfigMap>], pods: &[&Pod]) -> Self {
        let mut shards: Vec<(String, Option<String>)> =
            cms.iter().map(|cm| (cm.name_any(), cm.resource_version())).collect();
        shards.sort();
        let pod_ips = pods
            .iter()
            .filter(|p| !p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false))
            .filter_map(|p| p.status.as_ref())
            .flat_map(|st| {
                let many = st.pod_ips.iter().flatten().map(|ip| ip.ip.as_str());
                many.chain(st.pod_ip.as_deref())
            })
            .filter_map(|ip| ip.parse().ok())
            .collect();
        WorldInputs { shards, pod_ips }
    }

    fn world(&self, cms: &[Arc<ConfigMap>], node: &str, services: &[ipnet::IpNet]) -> Arc<PeerWorld> {
        let mut nodes = Vec::new();
        for cm in cms {
            let text = cm.data.as_ref().and_then(|d| d.get(PEER_INDEX_DATA_KEY));
            match peerindex::parse_shard(text.map_or("[]", String::as_str)) {
                Ok(n) => nodes.extend(n),
                Err(e) => {
                    warn!(configmap = %cm.name_any(), error = %e, "unreadable peer index shard: its nodes' peers read as external")
                }
            }
        }
        Arc::new(PeerWorld::new(
            Some(node),
            nodes,
            self.pod_ips.iter().copied(),
            services.to_vec(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second ConfigMap claiming a source (valid plan, another name) is
    /// refused and reported on no probe: it is not that probe's plan.
    #[test]
    fn a_plan_under_another_name_than_its_sources_is_refused() {
        let plan = netprobe_testutil::plans::plan_in(
            "shop",
            "redis",
            vec![netprobe_api::Probe::new(netprobe_api::ProbeType::TcpResets)],
        );
        let cm = |name: &str| -> ConfigMap {
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": name, "labels": {PLAN_LABEL: name}},
                "data": {PLAN_DATA_KEY: plan.to_json()}}),
            )
            .expect("configmap")
        };
        assert!(read_plan(&cm("nprobe.shop.redis")).is_ok());
        let Err((src, msg)) = read_plan(&cm("evil")) else {
            panic!("a second plan of a source must be refused");
        };
        assert_eq!(src, None);
        assert!(msg.contains("whose plan is nprobe.shop.redis"), "{msg}");
    }

    /// An unreadable plan of a probe whose name fits no label value is still
    /// reported on that probe (the source name is an annotation).
    #[test]
    fn an_unreadable_plan_of_a_long_named_probe_names_its_source() {
        let name = "p".repeat(200);
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {
            "name": "nprobe.shop.x",
            "labels": {PLAN_LABEL: "nprobe.shop.x", keys::SOURCE_KIND_LABEL: "NetworkProbe",
                       keys::SOURCE_NAMESPACE_LABEL: "shop"},
            "annotations": {keys::SOURCE_NAME_ANNOTATION: name}},
            "data": {PLAN_DATA_KEY: "{ not json"}}))
        .expect("configmap");
        let Err((Some(src), msg)) = read_plan(&cm) else {
            panic!("the plan must be refused with its source");
        };
        assert_eq!(src, ProbeId::new(SourceKind::Namespaced, Some("shop"), &name));
        assert!(msg.contains("nprobe.shop.x"), "{msg}");
    }
}
