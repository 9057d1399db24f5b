//! The one pure function from what the API says to what this node should
//! run: (plans, pods on this node, node labels, namespace labels) → desired
//! state per plan. The namespace boundary of a NetworkProbe is enforced here
//! and nowhere else, before any selector is looked at.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use netprobe_api::{PlanScope, ProbePlan};

use crate::pipeline::desired::{Desired, Owner, PlanTargets, Target};

/// A pod on this node, as the pod index knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub workload: Option<String>,
    /// False for Succeeded/Failed pods: nothing of theirs runs any more.
    pub active: bool,
    /// Pod cgroup id and netns once resolved on this node.
    pub cgroup_id: Option<u64>,
    pub netns: Option<u32>,
}

/// What one plan amounts to on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOutcome {
    /// The plan's nodeSelector matches this node.
    pub applies: bool,
    /// Selected pods with a resolved cgroup (counted by the kernel).
    pub pods_matched: i64,
    /// Selected pods whose cgroup is not there yet.
    pub pods_waiting: i64,
}

/// True when `pod` is in the plan's scope and matches its pod selector.
pub fn selects(plan: &ProbePlan, pod: &PodView, ns_labels: &BTreeMap<String, BTreeMap<String, String>>) -> bool {
    let in_scope = match &plan.scope {
        // The isolation property: a namespaced probe sees its namespace only.
        PlanScope::Namespace { namespace } => pod.namespace == *namespace,
        PlanScope::Cluster { namespace_selector } => ns_labels
            .get(&pod.namespace)
            .is_some_and(|labels| namespace_selector.matches(labels)),
    };
    in_scope && pod.active && plan.pod_selector.matches(&pod.labels)
}

/// Desired state and per-plan outcome, keyed like `Desired::plans`.
pub fn select(
    plans: &[Arc<ProbePlan>],
    pods: &[PodView],
    node_labels: &BTreeMap<String, String>,
    ns_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> (Desired, BTreeMap<String, PlanOutcome>) {
    let mut desired = Desired::default();
    let mut outcomes = BTreeMap::new();
    for plan in plans {
        let key = plan.source.key();
        let mut outcome = PlanOutcome {
            applies: plan.node_selector.matches(node_labels),
            ..Default::default()
        };
        if !outcome.applies {
            outcomes.insert(key, outcome);
            continue;
        }
        let mut targets = BTreeSet::new();
        for pod in pods.iter().filter(|p| selects(plan, p, ns_labels)) {
            let Some(cgroup_id) = pod.cgroup_id else {
                outcome.pods_waiting += 1;
                continue;
            };
            outcome.pods_matched += 1;
            targets.insert(pod.uid.clone());
            desired.targets.entry(pod.uid.clone()).or_insert_with(|| Target {
                key: pod.uid.clone(),
                owner: Owner::Pod {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    workload: pod.workload.clone(),
                },
                cgroup_id,
                netns: pod.netns,
            });
        }
        desired.plans.insert(
            key.clone(),
            PlanTargets {
                plan: plan.clone(),
                targets,
            },
        );
        outcomes.insert(key, outcome);
    }
    (desired, outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use netprobe_api::{NetworkProbeSpec, Probe, ProbeType};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sel(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
        Some(LabelSelector {
            match_labels: Some(labels(pairs)),
            match_expressions: None,
        })
    }

    fn plan(
        ns: Option<&str>,
        pod_sel: Option<LabelSelector>,
        ns_sel: Option<LabelSelector>,
        node_sel: Option<LabelSelector>,
    ) -> Arc<ProbePlan> {
        let spec = NetworkProbeSpec {
            probes: vec![Probe::new(ProbeType::TcpResets)],
            pod_selector: pod_sel,
            node_selector: node_sel,
            ..Default::default()
        };
        let src = netprobe_testutil::plans::source(ns, "p", "u", 1);
        Arc::new(netprobe_testutil::plans::build(src, &spec, ns_sel.as_ref()))
    }

    fn pod(uid: &str, ns: &str, l: &[(&str, &str)]) -> PodView {
        PodView {
            uid: uid.into(),
            namespace: ns.into(),
            name: format!("pod-{uid}"),
            labels: labels(l),
            workload: None,
            active: true,
            cgroup_id: Some(uid.len() as u64 + 100),
            netns: Some(7),
        }
    }

    fn namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
        [
            ("shop", labels(&[("team", "a")])),
            ("bank", labels(&[("team", "b")])),
            ("kube-system", labels(&[])),
        ]
        .into_iter()
        .map(|(n, l)| (n.to_string(), l))
        .collect()
    }

    fn selected(plan: &Arc<ProbePlan>, pods: &[PodView], node: &[(&str, &str)]) -> Vec<String> {
        let (d, _) = select(std::slice::from_ref(plan), pods, &labels(node), &namespaces());
        d.plans.values().flat_map(|p| p.targets.iter().cloned()).collect()
    }

    #[test]
    fn table_of_selections() {
        let pods = vec![
            pod("1", "shop", &[("app", "redis")]),
            pod("2", "shop", &[("app", "web")]),
            pod("3", "bank", &[("app", "redis")]),
            pod("4", "kube-system", &[("app", "redis")]),
        ];
        let cases: Vec<(&str, Arc<ProbePlan>, Vec<&str>)> = vec![
            (
                "namespaced, all pods",
                plan(Some("shop"), None, None, None),
                vec!["1", "2"],
            ),
            (
                "namespaced, by label",
                plan(Some("shop"), sel(&[("app", "redis")]), None, None),
                vec!["1"],
            ),
            (
                "cluster, all namespaces",
                plan(None, sel(&[("app", "redis")]), None, None),
                vec!["1", "3", "4"],
            ),
            (
                "cluster, by namespace label",
                plan(None, None, sel(&[("team", "b")]), None),
                vec!["3"],
            ),
            (
                "cluster, namespaces and pods",
                plan(None, sel(&[("app", "web")]), sel(&[("team", "a")]), None),
                vec!["2"],
            ),
            (
                "node selector misses",
                plan(Some("shop"), None, None, sel(&[("zone", "b")])),
                vec![],
            ),
            (
                "node selector hits",
                plan(Some("shop"), None, None, sel(&[("zone", "a")])),
                vec!["1", "2"],
            ),
        ];
        for (name, p, want) in cases {
            let got = selected(&p, &pods, &[("zone", "a")]);
            assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{name}");
        }
    }

    #[test]
    fn a_namespaced_probe_never_selects_another_namespace() {
        // Whatever the selector says, including match-all and labels every pod has.
        let pods: Vec<PodView> = ["shop", "bank", "kube-system", "default", "shop-2"]
            .iter()
            .enumerate()
            .flat_map(|(i, ns)| (0..5).map(move |j| pod(&format!("{i}-{j}"), ns, &[("app", "redis"), ("tier", "x")])))
            .collect();
        let selectors = [
            None,
            Some(LabelSelector::default()),
            sel(&[("app", "redis")]),
            sel(&[("tier", "x")]),
        ];
        for s in selectors {
            let p = plan(Some("shop"), s.clone(), None, None);
            let (d, outcomes) = select(std::slice::from_ref(&p), &pods, &labels(&[]), &namespaces());
            for uid in d.plans.values().flat_map(|pt| pt.targets.iter()) {
                let ns = &pods.iter().find(|p| &p.uid == uid).unwrap().namespace;
                assert_eq!(ns, "shop", "selector {s:?} crossed into {ns}");
            }
            assert_eq!(outcomes[&p.source.key()].pods_matched, 5);
            assert!(
                d.targets
                    .values()
                    .all(|t| matches!(&t.owner, Owner::Pod { namespace, .. } if namespace == "shop"))
            );
        }
    }

    #[test]
    fn waiting_and_finished_pods() {
        let mut late = pod("late", "shop", &[]);
        late.cgroup_id = None;
        let mut done = pod("done", "shop", &[]);
        done.active = false;
        let p = plan(Some("shop"), None, None, None);
        let (d, o) = select(
            std::slice::from_ref(&p),
            &[pod("1", "shop", &[]), late, done],
            &labels(&[]),
            &namespaces(),
        );
        let o = &o[&p.source.key()];
        assert_eq!((o.pods_matched, o.pods_waiting, o.applies), (1, 1, true));
        assert_eq!(d.targets.len(), 1);
    }

    #[test]
    fn cluster_probe_needs_a_known_namespace() {
        let p = plan(None, None, Some(LabelSelector::default()), None);
        let got = selected(&p, &[pod("x", "unknown-ns", &[])], &[]);
        assert!(got.is_empty(), "namespaces not yet seen are not selected");
    }
}
