//! Where kernel state becomes a metric: per-slot counters read from the
//! kernel are aggregated into each plan's series (by its granularity, its
//! drop-reason filter and its histogram buckets), bounded by the plan's
//! series budget. Pure: the agent hands in a snapshot and gets families.

use std::collections::{BTreeMap, BTreeSet};

use netprobe_api::{Granularity, ProbePlan};
use netprobe_ebpf::layout::{CounterKey, PeerKey};
use prometheus::proto::{Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType};

use crate::catalog::program::SlotEntries;
use crate::catalog::{self, Acc, FamilySpec, Fill, Series, TargetCounters};
pub use crate::catalog::{ReasonNames, drop_reason_names};
use crate::kernel::manager::Snapshot;
use crate::pipeline::desired::{Desired, KernelState, Owner, Target};
use crate::pipeline::peers::PeerWorld;

/// Label value of the one series that absorbs everything past the budget.
pub const OVERFLOW: &str = "_overflow";

/// Series admitted under each plan's budget, remembered across scrapes so a
/// series never flips between its own name and the overflow; and the
/// node's limit, shared equally between tenants.
#[derive(Default, Debug)]
pub struct Budget {
    admitted: BTreeMap<String, BTreeSet<Vec<String>>>,
    exhausted: BTreeSet<String>,
    /// Most series the node exports (None: no node limit).
    node_limit: Option<usize>,
    /// Each admitted plan's tenant.
    tenant_of: BTreeMap<String, String>,
}

impl Budget {
    /// A budget under a node-wide limit of `limit` series. Each tenant (a
    /// namespace's NetworkProbes; all ClusterNetworkProbes together) may
    /// hold an equal share of it, whatever its probes' own budgets, so no
    /// namespace can starve another or grow the agent without bound.
    pub fn with_node_limit(limit: usize) -> Self {
        Budget {
            node_limit: Some(limit),
            ..Budget::default()
        }
    }

    /// The node's limit, if any.
    pub fn node_limit(&self) -> Option<usize> {
        self.node_limit
    }

    /// Series admitted per tenant.
    pub fn admitted_by_tenant(&self) -> BTreeMap<String, usize> {
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        for (key, set) in &self.admitted {
            if let Some(t) = self.tenant_of.get(key) {
                *out.entry(t.clone()).or_default() += set.len();
            }
        }
        out
    }

    /// Plans that had more series than their budget at the last render.
    pub fn exhausted(&self) -> &BTreeSet<String> {
        &self.exhausted
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// Owner label names for a granularity.
fn owner_label_names(g: Granularity, standalone: bool) -> &'static [&'static str] {
    if standalone {
        return &["cgroup"];
    }
    match g {
        Granularity::Pod => &["namespace", "pod"],
        Granularity::Workload => &["namespace", "workload"],
        Granularity::Namespace => &["namespace"],
    }
}

fn owner_label_values(o: &Owner, g: Granularity) -> Vec<String> {
    match o {
        Owner::Cgroup { path } => vec![path.clone()],
        Owner::Pod {
            namespace,
            pod,
            workload,
        } => match g {
            Granularity::Pod => vec![namespace.clone(), pod.clone()],
            Granularity::Workload => vec![namespace.clone(), workload.clone().unwrap_or_else(|| pod.clone())],
            Granularity::Namespace => vec![namespace.clone()],
        },
    }
}

/// A family under construction: what the catalog says it is, and its series.
struct Fam {
    spec: FamilySpec,
    series: Series,
}

/// One plan's series from one kernel snapshot, before admission.
pub struct PlanSeries {
    plan_key: String,
    /// Who shares the node's limit: the plan's namespace, or the cluster.
    tenant: String,
    probe_label: String,
    granularity: Granularity,
    max_series: usize,
    fams: Vec<Fam>,
}

/// What a target's counters held when a plan started counting it, so the
/// plan's series start at zero (another plan, or a pod's earlier life under
/// another plan, may have counted into the same slot before).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    pub counters: BTreeMap<(u16, u16), u64>,
    pub peers: BTreeMap<PeerKey, u64>,
}

/// Baselines by (plan key, target key). A pair without one starts at zero.
pub type Baselines = BTreeMap<(String, String), Baseline>;

impl Baseline {
    /// The counters of `slot` in `snap`.
    pub fn of_slot(snap: &Snapshot, slot: u32) -> Baseline {
        Baseline {
            counters: snap
                .counters
                .iter()
                .filter(|(k, _)| k.slot == slot)
                .map(|(k, v)| ((k.metric, k.sub), *v))
                .collect(),
            peers: snap
                .peers
                .iter()
                .filter(|(k, _)| k.slot == slot)
                .map(|(k, v)| (*k, *v))
                .collect(),
        }
    }
}

/// Every plan's series from one kernel snapshot.
pub fn series(
    desired: &Desired,
    kernel: &KernelState,
    slots: &BTreeMap<String, u32>,
    snap: &Snapshot,
    reasons: &ReasonNames,
    baselines: &Baselines,
    world: &PeerWorld,
) -> Vec<PlanSeries> {
    // Counters by slot, once.
    let mut by_slot: BTreeMap<u32, Vec<(&CounterKey, u64)>> = BTreeMap::new();
    for (k, v) in &snap.counters {
        by_slot.entry(k.slot).or_default().push((k, *v));
    }
    let mut peers_by_slot: BTreeMap<u32, Vec<(&PeerKey, u64)>> = BTreeMap::new();
    for (k, v) in &snap.peers {
        peers_by_slot.entry(k.slot).or_default().push((k, *v));
    }
    let mut out = Vec::new();
    for (plan_key, pt) in &desired.plans {
        let plan = &pt.plan;
        let g = plan.metrics.granularity;
        let mut fams = plan_families(plan, kernel);
        let program = snap.programs.get(plan_key);
        for target_key in &pt.targets {
            let (Some(t), Some(slot)) = (desired.targets.get(target_key), slots.get(target_key)) else {
                continue;
            };
            // A user program's maps are its plan's own (no baseline: the
            // agent deletes a slot's entries when the slot leaves the plan).
            let program = program.and_then(|p| p.by_slot.get(slot));
            match baselines.get(&(plan_key.clone(), target_key.clone())) {
                None => add_target(
                    &mut fams,
                    t,
                    g,
                    (by_slot.get(slot), peers_by_slot.get(slot), program),
                    reasons,
                    world,
                ),
                Some(base) => {
                    let counters: Vec<(&CounterKey, u64)> = by_slot
                        .get(slot)
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| {
                            (
                                *k,
                                v.saturating_sub(base.counters.get(&(k.metric, k.sub)).copied().unwrap_or(0)),
                            )
                        })
                        .filter(|(_, v)| *v > 0)
                        .collect();
                    let peers: Vec<(&PeerKey, u64)> = peers_by_slot
                        .get(slot)
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (*k, v.saturating_sub(base.peers.get(*k).copied().unwrap_or(0))))
                        .filter(|(_, v)| *v > 0)
                        .collect();
                    add_target(
                        &mut fams,
                        t,
                        g,
                        (Some(&counters), Some(&peers), program),
                        reasons,
                        world,
                    );
                }
            }
        }
        out.push(PlanSeries {
            plan_key: plan_key.clone(),
            tenant: match &plan.source.id.namespace {
                Some(ns) => format!("namespace/{ns}"),
                None => "cluster".to_string(),
            },
            probe_label: plan.source.key(),
            granularity: g,
            max_series: plan.metrics.max_series_per_node as usize,
            fams,
        });
    }
    out
}

/// Admit series under each plan's budget and its tenant's equal share of
/// the node's limit, first come first served; past either, a family's
/// further series are summed into its overflow series. Decided here, before
/// rendering, so the agent can run it on its own schedule and hand the
/// exhausted plans to status; plans no longer desired are forgotten, with
/// everything remembered about them.
pub fn admit(series: &mut [PlanSeries], budget: &mut Budget, standalone: bool) {
    budget.exhausted.clear();
    let live: BTreeSet<&String> = series.iter().map(|p| &p.plan_key).collect();
    budget.admitted.retain(|k, _| live.contains(k));
    budget.tenant_of = series.iter().map(|p| (p.plan_key.clone(), p.tenant.clone())).collect();
    // Forget series that no longer exist.
    for ps in series.iter() {
        let present: BTreeSet<Vec<String>> = ps
            .fams
            .iter()
            .flat_map(|f| f.series.keys().map(|k| series_id(&f.spec.name, k)))
            .collect();
        budget
            .admitted
            .entry(ps.plan_key.clone())
            .or_default()
            .retain(|s| present.contains(s));
    }
    // The node's limit in equal shares; a tenant over its share (another
    // tenant arrived) gives series back, its last ones first.
    let tenants: BTreeSet<&str> = series.iter().map(|p| p.tenant.as_str()).collect();
    let share = budget.node_limit.map(|n| n / tenants.len().max(1));
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for ps in series.iter().rev() {
        let admitted = budget.admitted.entry(ps.plan_key.clone()).or_default();
        let u = used.entry(ps.tenant.clone()).or_default();
        *u += admitted.len();
        if let Some(share) = share {
            while *u > share && admitted.pop_last().is_some() {
                *u -= 1;
                budget.exhausted.insert(ps.plan_key.clone());
            }
        }
    }
    for ps in series.iter_mut() {
        let admitted = budget.admitted.entry(ps.plan_key.clone()).or_default();
        let u = used.entry(ps.tenant.clone()).or_default();
        let mut over = false;
        for f in &mut ps.fams {
            let mut overflow = Acc::default();
            let mut any_overflow = false;
            let keys: Vec<Vec<String>> = f.series.keys().cloned().collect();
            for k in keys {
                let id = series_id(&f.spec.name, &k);
                if admitted.contains(&id) {
                    continue;
                }
                if admitted.len() < ps.max_series && share.is_none_or(|s| *u < s) {
                    admitted.insert(id);
                    *u += 1;
                    continue;
                }
                over = true;
                any_overflow = true;
                if let Some(acc) = f.series.remove(&k) {
                    overflow.value += acc.value;
                    overflow.sum_ns += acc.sum_ns;
                    for (b, c) in acc.buckets {
                        *overflow.buckets.entry(b).or_default() += c;
                    }
                }
            }
            if any_overflow {
                let n = owner_label_names(ps.granularity, standalone).len() + f.spec.extra_labels.len();
                f.series.insert(vec![OVERFLOW.to_string(); n], overflow);
            }
        }
        if over {
            budget.exhausted.insert(ps.plan_key.clone());
        }
    }
}

/// The Prometheus families of admitted series.
pub fn families(series: Vec<PlanSeries>, standalone: bool) -> Vec<MetricFamily> {
    let mut out: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for ps in series {
        let names = owner_label_names(ps.granularity, standalone);
        for f in ps.fams {
            let mf = out.entry(f.spec.name.to_string()).or_insert_with(|| {
                let mut mf = MetricFamily::default();
                mf.set_name(f.spec.name.to_string());
                mf.set_help(f.spec.help.to_string());
                mf.set_field_type(f.spec.kind);
                mf
            });
            // Two user programs may name one metric differently typed: the
            // first plan (in key order) keeps the name, so the exposition
            // stays valid; the other's status says why it has no series.
            if mf.get_field_type() != f.spec.kind {
                tracing::warn!(metric = %f.spec.name, probe = %ps.probe_label, "metric name taken by another type; series dropped");
                continue;
            }
            for (k, acc) in &f.series {
                let mut m = Metric::default();
                let mut labels = vec![label("probe", &ps.probe_label)];
                for (n, v) in names
                    .iter()
                    .copied()
                    .chain(f.spec.extra_labels.iter().map(|l| l.as_ref()))
                    .zip(k.iter())
                {
                    labels.push(label(n, v));
                }
                m.set_label(labels);
                match (f.spec.kind, &f.spec.program) {
                    (MetricType::HISTOGRAM, Some(p)) => m.set_histogram(catalog::program::histogram(acc, p)),
                    (MetricType::HISTOGRAM, None) => m.set_histogram(histogram(acc, f.spec.bounds.as_ref())),
                    _ => {
                        let mut c = Counter::default();
                        c.set_value(acc.value as f64);
                        m.set_counter(c);
                    }
                }
                mf.mut_metric().push(m);
            }
        }
    }
    out.into_values().filter(|mf| !mf.get_metric().is_empty()).collect()
}

/// Series, admission and families in one go, from one kernel snapshot.
#[allow(clippy::too_many_arguments)]
pub fn render(
    desired: &Desired,
    kernel: &KernelState,
    slots: &BTreeMap<String, u32>,
    snap: &Snapshot,
    reasons: &ReasonNames,
    baselines: &Baselines,
    standalone: bool,
    budget: &mut Budget,
    world: &PeerWorld,
) -> Vec<MetricFamily> {
    let mut s = series(desired, kernel, slots, snap, reasons, baselines, world);
    admit(&mut s, budget, standalone);
    families(s, standalone)
}

fn series_id(family: &str, key: &[String]) -> Vec<String> {
    let mut id = vec![family.to_string()];
    id.extend(key.iter().cloned());
    id
}

fn histogram(acc: &Acc, bounds: Option<&(Vec<f64>, Vec<u64>)>) -> Histogram {
    let mut h = Histogram::default();
    let total: u64 = acc.buckets.values().sum();
    h.set_sample_count(total);
    h.set_sample_sum(acc.sum_ns as f64 / 1e9);
    let mut buckets = Vec::new();
    if let Some((plan_bounds, union_ns)) = bounds {
        for b in plan_bounds {
            let b_ns = (b * 1e9).round() as u64;
            // Kernel bucket i counts values ≤ union[i] and > union[i-1]; all
            // plan bounds are in the union, so this sum is exact.
            let cumulative: u64 = acc
                .buckets
                .iter()
                .filter(|(i, _)| union_ns.get(**i as usize).is_some_and(|u| *u <= b_ns))
                .map(|(_, c)| *c)
                .sum();
            let mut bk = Bucket::default();
            bk.set_upper_bound(*b);
            bk.set_cumulative_count(cumulative);
            buckets.push(bk);
        }
    }
    h.set_bucket(buckets);
    h
}

fn plan_families(plan: &ProbePlan, kernel: &KernelState) -> Vec<Fam> {
    plan.probes
        .iter()
        .flat_map(|p| catalog::of(p.probe_type()).families(p, &kernel.bounds))
        .map(|spec| Fam {
            spec,
            series: Series::new(),
        })
        .collect()
}

/// A target's kernel counters, per-peer counters and user program entries.
type TargetInput<'a> = (
    Option<&'a Vec<(&'a CounterKey, u64)>>,
    Option<&'a Vec<(&'a PeerKey, u64)>>,
    Option<&'a SlotEntries>,
);

fn add_target(
    fams: &mut [Fam],
    t: &Target,
    g: Granularity,
    (counters, peers, program): TargetInput<'_>,
    reasons: &ReasonNames,
    world: &PeerWorld,
) {
    let owner = owner_label_values(&t.owner, g);
    let key = |extra: &[&str]| -> Vec<String> {
        let mut k = owner.clone();
        k.extend(extra.iter().map(|s| s.to_string()));
        k
    };
    let c = TargetCounters {
        counters: counters.map(Vec::as_slice).unwrap_or_default(),
        peers: peers.map(Vec::as_slice).unwrap_or_default(),
        program,
    };
    for f in fams.iter_mut() {
        let mut out = Fill {
            series: &mut f.series,
            key: &key,
            counters: c,
            reasons,
            world,
        };
        catalog::of(f.spec.probe).fill(&f.spec, &mut out);
    }
}

#[cfg(test)]
mod tests;
