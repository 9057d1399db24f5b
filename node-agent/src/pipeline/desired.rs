//! Desired state: which targets (pods, or cgroups in standalone mode) each
//! plan selects, and what that asks of the kernel. Pure data and pure
//! functions; the probe manager turns the kernel part into kernel state by
//! diff, the collector turns counters back into series per plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use netprobe_api::probes::ProgramPlan;
use netprobe_api::{PlannedProbe, ProbePlan, ProbeType};
use netprobe_ebpf::layout::MAX_BOUNDS;

use crate::catalog::{self, Needs};

/// Who events are attributed to, and how series name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// A Kubernetes pod.
    Pod {
        namespace: String,
        pod: String,
        workload: Option<String>,
    },
    /// A cgroup (standalone mode), relative to the cgroup2 root.
    Cgroup { path: String },
}

/// One attribution target: an owner and where the kernel finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Stable identity (pod UID, or cgroup path in standalone mode).
    pub key: String,
    pub owner: Owner,
    /// Pod-level cgroup id; sockets in any descendant cgroup belong to it.
    pub cgroup_id: u64,
    /// Network namespace inode for packets without a socket; None for
    /// hostNetwork pods (their namespace is the node's) and cgroups.
    pub netns: Option<u32>,
}

/// One plan and the targets it selects on this node.
#[derive(Clone, Debug)]
pub struct PlanTargets {
    pub plan: Arc<ProbePlan>,
    pub targets: BTreeSet<String>,
}

/// A user program's object as fetched (cluster mode: from its ConfigMap),
/// or why it could not be.
pub type ObjectBytes = Result<Arc<Vec<u8>>, String>;

/// Everything the agent wants, keyed by plan key (`ProbePlan::source.key()`).
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub targets: BTreeMap<String, Target>,
    pub plans: BTreeMap<String, PlanTargets>,
    /// Objects of Program plans whose object is in a ConfigMap, by plan key.
    /// A plan whose object is a path has none: the manager reads the file.
    pub objects: BTreeMap<String, ObjectBytes>,
}

/// What one Program plan wants of the kernel: its object loaded and its
/// selected targets in the object's own target maps.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramWant {
    pub plan: Arc<ProgramPlan>,
    /// The fetched object, when it is not a path (see [`Desired::objects`]).
    pub object: Option<ObjectBytes>,
    pub targets: BTreeSet<String>,
}

/// What a target needs from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetEntry {
    pub cgroup_id: u64,
    pub netns: Option<u32>,
    pub flags: u32,
}

/// Kernel-wide state derived from all plans: the union of their needs, so a
/// pod selected by two plans is counted once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelState {
    pub types: BTreeSet<ProbeType>,
    pub targets: BTreeMap<String, TargetEntry>,
    /// Histogram bounds (ns) by `np_bounds` index (one per histogram probe
    /// type): the whole grid when any plan has that type, absent otherwise.
    pub bounds: BTreeMap<u32, Vec<u64>>,
    /// User programs by plan key (each runs for its own plan's targets).
    pub programs: BTreeMap<String, ProgramWant>,
}

impl KernelState {
    /// The histogram bounds at `index` (empty when none).
    pub fn bounds_at(&self, index: u32) -> &[u64] {
        self.bounds.get(&index).map(Vec::as_slice).unwrap_or_default()
    }
}

impl Desired {
    /// The kernel state these plans need. Targets selected by no plan that
    /// uses a probe type are not registered at all.
    pub fn kernel(&self) -> KernelState {
        let mut k = KernelState::default();
        let mut union: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        for (key, pt) in &self.plans {
            // A program loads whether or not it selects a pod yet: its
            // verdict on this node is known before the first pod arrives.
            for p in &pt.plan.probes {
                if let PlannedProbe::Program(pp) = p {
                    k.programs.insert(
                        key.clone(),
                        ProgramWant {
                            plan: Arc::new(pp.clone()),
                            object: self.objects.get(key).cloned(),
                            targets: pt.targets.clone(),
                        },
                    );
                }
            }
            if pt.targets.is_empty() {
                continue;
            }
            let mut needs = Needs::default();
            for p in &pt.plan.probes {
                k.types.insert(p.probe_type());
                catalog::of(p.probe_type()).needs(p, &mut needs);
            }
            for (i, b) in needs.bounds {
                union.entry(i).or_default().extend(b);
            }
            let flags = needs.target_flags;
            for key in &pt.targets {
                let Some(t) = self.targets.get(key) else { continue };
                let e = k.targets.entry(key.clone()).or_insert(TargetEntry {
                    cgroup_id: t.cgroup_id,
                    netns: t.netns,
                    flags: 0,
                });
                e.flags |= flags;
            }
        }
        k.bounds = union
            .into_iter()
            .map(|(i, b)| (i, b.into_iter().take(MAX_BOUNDS).collect()))
            .collect();
        k
    }
}

/// One step from the current kernel state to the desired one.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Attach(ProbeType),
    Detach(ProbeType),
    AddTarget(String, TargetEntry),
    UpdateTarget(String, TargetEntry),
    RemoveTarget(String),
    /// Histogram bounds at an `np_bounds` index (empty: none).
    SetBounds {
        index: u32,
        bounds: Vec<u64>,
    },
}

/// The steps from `current` to `desired`, in a safe order: targets are
/// registered before programs attach (no event is lost to a half-filled
/// map) and programs detach before targets go.
pub fn diff(current: &KernelState, desired: &KernelState) -> Vec<Op> {
    let mut ops = Vec::new();
    let indices: BTreeSet<u32> = current.bounds.keys().chain(desired.bounds.keys()).copied().collect();
    for i in indices {
        if current.bounds_at(i) != desired.bounds_at(i) {
            ops.push(Op::SetBounds {
                index: i,
                bounds: desired.bounds_at(i).to_vec(),
            });
        }
    }
    for (k, e) in &desired.targets {
        match current.targets.get(k) {
            None => ops.push(Op::AddTarget(k.clone(), *e)),
            Some(c) if c != e => ops.push(Op::UpdateTarget(k.clone(), *e)),
            Some(_) => {}
        }
    }
    for t in desired.types.difference(&current.types) {
        ops.push(Op::Attach(*t));
    }
    for t in current.types.difference(&desired.types) {
        ops.push(Op::Detach(*t));
    }
    for k in current.targets.keys().filter(|k| !desired.targets.contains_key(*k)) {
        ops.push(Op::RemoveTarget(k.clone()));
    }
    ops
}

/// Builders shared by the unit tests of this crate.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use netprobe_api::Granularity;
    use netprobe_api::plan::PlannedProbe;

    /// A NetworkProbe plan `shop/<name>` (built in `netprobe_testutil`).
    pub fn plan(name: &str, probes: Vec<PlannedProbe>, granularity: Granularity, max_series: u32) -> Arc<ProbePlan> {
        Arc::new(netprobe_testutil::plans::planned(name, probes, granularity, max_series))
    }

    /// Desired state: each plan selects the listed target keys.
    pub fn desired(plans: Vec<(Arc<ProbePlan>, Vec<&str>)>, targets: Vec<Target>) -> Desired {
        Desired {
            objects: Default::default(),
            targets: targets.into_iter().map(|t| (t.key.clone(), t)).collect(),
            plans: plans
                .into_iter()
                .map(|(p, ts)| {
                    (
                        p.source.key(),
                        PlanTargets {
                            plan: p,
                            targets: ts.into_iter().map(String::from).collect(),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::desired;
    use super::*;
    use netprobe_api::Granularity;
    use netprobe_api::plan::PlannedProbe;
    use netprobe_api::probes::{
        HistogramPlan, PacketDropsPlan, TcpConnectLatencyPlan, TcpResetsPlan, TcpRetransmitsPlan,
    };
    use netprobe_ebpf::layout::{BOUNDS_CONNECT, BOUNDS_RTT, POD_PEERS};

    fn plan(name: &str, probes: Vec<PlannedProbe>) -> Arc<ProbePlan> {
        testing::plan(name, probes, Granularity::Pod, 10)
    }

    fn target(key: &str, id: u64) -> Target {
        Target {
            key: key.into(),
            owner: Owner::Cgroup { path: key.into() },
            cgroup_id: id,
            netns: Some(id as u32),
        }
    }

    #[test]
    fn union_of_plans_and_flags() {
        let d = desired(
            vec![
                (
                    plan(
                        "a",
                        vec![PlannedProbe::TcpRetransmits(TcpRetransmitsPlan {
                            peer_labels: true,
                            peers: None,
                        })],
                    ),
                    vec!["p1"],
                ),
                (
                    plan(
                        "b",
                        vec![
                            PlannedProbe::TcpRetransmits(TcpRetransmitsPlan::default()),
                            PlannedProbe::TcpRtt(HistogramPlan {
                                buckets: vec![0.001, 0.01],
                            }),
                        ],
                    ),
                    vec!["p1", "p2"],
                ),
                (
                    plan(
                        "c",
                        vec![
                            PlannedProbe::TcpConnectLatency(TcpConnectLatencyPlan {
                                histogram: HistogramPlan {
                                    buckets: vec![0.5, 1.0],
                                },
                                peers: None,
                            }),
                            PlannedProbe::TcpRtt(HistogramPlan {
                                buckets: vec![0.01, 0.1],
                            }),
                        ],
                    ),
                    vec!["p3"],
                ),
                (
                    plan(
                        "idle",
                        vec![PlannedProbe::PacketDrops(PacketDropsPlan { reasons: vec![] })],
                    ),
                    vec![],
                ),
            ],
            vec![target("p1", 1), target("p2", 2), target("p3", 3), target("p4", 4)],
        );
        let k = d.kernel();
        assert_eq!(
            k.types,
            [
                ProbeType::TcpRetransmits,
                ProbeType::TcpConnectLatency,
                ProbeType::TcpRtt
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(k.targets.len(), 3, "p4 is selected by no plan");
        assert_eq!(k.targets["p1"].flags, POD_PEERS);
        assert_eq!(k.targets["p2"].flags, 0);
        // Whatever the plans' buckets, the kernel counts on the whole grid.
        let grid = netprobe_api::probes::histogram::bound_grid_ns();
        assert_eq!(k.bounds_at(BOUNDS_RTT), grid.as_slice());
        assert_eq!(k.bounds_at(BOUNDS_CONNECT), grid.as_slice());
    }

    #[test]
    fn diff_orders_registration_around_attachment() {
        let empty = KernelState::default();
        let d = desired(
            vec![(
                plan("a", vec![PlannedProbe::TcpResets(TcpResetsPlan::default())]),
                vec!["p1"],
            )],
            vec![target("p1", 1)],
        )
        .kernel();
        let ops = diff(&empty, &d);
        assert_eq!(
            ops,
            vec![
                Op::AddTarget(
                    "p1".into(),
                    TargetEntry {
                        cgroup_id: 1,
                        netns: Some(1),
                        flags: 0
                    }
                ),
                Op::Attach(ProbeType::TcpResets)
            ]
        );
        assert!(diff(&d, &d).is_empty(), "no change, no op");
        let back = diff(&d, &empty);
        assert_eq!(
            back,
            vec![Op::Detach(ProbeType::TcpResets), Op::RemoveTarget("p1".into())]
        );
    }

    #[test]
    fn diff_updates_changed_targets_and_sets_bounds_once() {
        let a = desired(
            vec![(
                plan("a", vec![PlannedProbe::TcpRtt(HistogramPlan { buckets: vec![0.001] })]),
                vec!["p1"],
            )],
            vec![target("p1", 1)],
        )
        .kernel();
        let mut moved = target("p1", 1);
        moved.cgroup_id = 7;
        let b = desired(
            vec![(
                plan("a", vec![PlannedProbe::TcpRtt(HistogramPlan { buckets: vec![0.002] })]),
                vec!["p1"],
            )],
            vec![moved],
        )
        .kernel();
        // The first histogram plan sets the kernel's bounds; changing its
        // buckets later does not touch them.
        let first = diff(&KernelState::default(), &a);
        assert!(first.contains(&Op::SetBounds {
            index: BOUNDS_RTT,
            bounds: netprobe_api::probes::histogram::bound_grid_ns()
        }));
        let ops = diff(&a, &b);
        assert_eq!(
            ops,
            vec![Op::UpdateTarget(
                "p1".into(),
                TargetEntry {
                    cgroup_id: 7,
                    netns: Some(1),
                    flags: 0
                }
            )]
        );
    }

    /// Another plan's buckets never change the kernel's bounds, so they can
    /// neither restart nor blur a histogram of another tenant.
    #[test]
    fn kernel_bounds_do_not_depend_on_other_plans() {
        let one = desired(
            vec![(
                plan(
                    "a",
                    vec![PlannedProbe::TcpRtt(HistogramPlan {
                        buckets: vec![0.001, 0.01],
                    })],
                ),
                vec!["p1"],
            )],
            vec![target("p1", 1), target("p2", 2)],
        );
        let tiny: Vec<f64> = netprobe_api::probes::histogram::bound_grid_ns()
            .iter()
            .take(32)
            .map(|ns| *ns as f64 / 1e9)
            .collect();
        let two = desired(
            vec![
                (
                    plan(
                        "a",
                        vec![PlannedProbe::TcpRtt(HistogramPlan {
                            buckets: vec![0.001, 0.01],
                        })],
                    ),
                    vec!["p1"],
                ),
                (
                    plan("b", vec![PlannedProbe::TcpRtt(HistogramPlan { buckets: tiny })]),
                    vec!["p2"],
                ),
            ],
            vec![target("p1", 1), target("p2", 2)],
        );
        let (k1, k2) = (one.kernel(), two.kernel());
        assert_eq!(k1.bounds, k2.bounds);
        assert!(
            !diff(&k1, &k2).iter().any(|op| matches!(op, Op::SetBounds { .. })),
            "no bounds change: no histogram restarts"
        );
        assert!(k2.bounds_at(BOUNDS_RTT).len() <= MAX_BOUNDS);
    }
}
