//! Per-node status on the CR: what this node reports about each plan, and
//! the reporter that writes it — server-side apply of this node's own entry
//! in `status.nodes[]` (field manager `netprobe-agent/<node>`), only when it
//! changed, and at most once per `min_interval` per probe, so a pod churn
//! storm cannot become an API write storm.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use netprobe_api::keys::{self, agent_manager};
use netprobe_api::{NodePhase, NodeProbeStatus, ProbeId, ProbePlan, ProbeType};
use serde_json::json;
use tracing::{debug, warn};

use crate::kernel::manager::ApplyReport;
use crate::pipeline::selection::PlanOutcome;

/// This node's entry for a plan it runs.
pub fn entry_for(
    node: &str,
    plan: &ProbePlan,
    outcome: &PlanOutcome,
    report: &ApplyReport,
    budget_exhausted: bool,
) -> NodeProbeStatus {
    let types: Vec<ProbeType> = plan.probe_types();
    let unsupported: Vec<String> = types
        .iter()
        .filter_map(|t| report.unsupported.get(t).map(|why| format!("{t}: {why}")))
        .collect();
    let partial: Vec<String> = types
        .iter()
        .filter_map(|t| report.partial.get(t).map(|why| format!("{t}: {why}")))
        .collect();
    let attached = types.iter().all(|t| report.attached.contains_key(t));
    let programs: Vec<String> = types
        .iter()
        .flat_map(|t| report.attached.get(t).cloned().unwrap_or_default())
        .collect();
    let mut notes = Vec::new();
    if outcome.pods_waiting > 0 {
        notes.push(format!(
            "{} selected pods have no cgroup on this node yet",
            outcome.pods_waiting
        ));
    }
    if !report.target_errors.is_empty() {
        notes.push(format!(
            "{} pods could not be registered (map full)",
            report.target_errors.len()
        ));
    }
    if report.bounds_truncated {
        notes.push("histogram buckets of all probes exceed 64 bounds; some are approximate".into());
    }
    let (phase, reason, mut message) = if !unsupported.is_empty() {
        (NodePhase::Unsupported, "KernelUnsupported", unsupported.join("; "))
    } else if !attached && outcome.pods_matched > 0 {
        (
            NodePhase::Pending,
            "Attaching",
            "programs are being attached".to_string(),
        )
    } else if !partial.is_empty() {
        (NodePhase::Partial, "KernelPartial", partial.join("; "))
    } else if budget_exhausted {
        (
            NodePhase::Running,
            "SeriesBudgetExhausted",
            format!(
                "more than {} series: the rest are counted in the overflow series",
                plan.metrics.max_series_per_node
            ),
        )
    } else {
        (
            NodePhase::Running,
            "Running",
            format!("{} pods observed", outcome.pods_matched),
        )
    };
    if !notes.is_empty() {
        message = format!("{message}; {}", notes.join("; "));
    }
    NodeProbeStatus {
        node_name: node.to_string(),
        phase,
        applied_generation: Some(plan.source.generation),
        pods_matched: outcome.pods_matched,
        programs,
        series_budget_exhausted: budget_exhausted,
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

/// This node's entry for a plan ConfigMap it cannot use.
pub fn failed_entry(node: &str, message: String) -> NodeProbeStatus {
    NodeProbeStatus {
        node_name: node.to_string(),
        phase: NodePhase::Failed,
        applied_generation: None,
        pods_matched: 0,
        programs: Vec::new(),
        series_budget_exhausted: false,
        reason: Some("InvalidPlan".into()),
        message: Some(message),
        last_transition_time: None,
    }
}

struct Written {
    entry: Option<NodeProbeStatus>,
    at: Instant,
}

/// Writes this node's entries; keeps what it could not write for later.
pub struct Reporter {
    client: kube::Client,
    node: String,
    min_interval: Duration,
    /// What should be there (None = no entry).
    wanted: BTreeMap<ProbeId, Option<NodeProbeStatus>>,
    written: BTreeMap<ProbeId, Written>,
}

fn same(a: &Option<NodeProbeStatus>, b: &Option<NodeProbeStatus>) -> bool {
    let strip = |e: &Option<NodeProbeStatus>| {
        e.clone().map(|mut e| {
            e.last_transition_time = None;
            e
        })
    };
    strip(a) == strip(b)
}

impl Reporter {
    pub fn new(client: kube::Client, node: &str, min_interval: Duration) -> Self {
        Reporter {
            client,
            node: node.into(),
            min_interval,
            wanted: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }

    /// Replace what this node should report. Sources reported before and
    /// absent now get their entry removed.
    pub fn set(&mut self, entries: BTreeMap<ProbeId, NodeProbeStatus>) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut wanted: BTreeMap<ProbeId, Option<NodeProbeStatus>> = BTreeMap::new();
        for (src, mut e) in entries {
            let prev = self.written.get(&src).and_then(|w| w.entry.as_ref());
            e.last_transition_time = match prev {
                Some(p) if p.phase == e.phase => p.last_transition_time.clone(),
                _ => Some(now.clone()),
            };
            wanted.insert(src, Some(e));
        }
        let gone: BTreeSet<ProbeId> = self
            .written
            .iter()
            .filter(|(s, w)| w.entry.is_some() && !wanted.contains_key(*s))
            .map(|(s, _)| s.clone())
            .collect();
        for s in gone {
            wanted.insert(s, None);
        }
        self.wanted = wanted;
    }

    /// Write what changed and is due. Returns when the next write is due,
    /// if something is still pending.
    pub async fn flush(&mut self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let wanted: Vec<(ProbeId, Option<NodeProbeStatus>)> =
            self.wanted.iter().map(|(s, e)| (s.clone(), e.clone())).collect();
        for (src, entry) in wanted {
            let last = self.written.get(&src);
            if last.is_some_and(|w| same(&w.entry, &entry)) || (last.is_none() && entry.is_none()) {
                continue;
            }
            if let Some(w) = last {
                let since = w.at.elapsed();
                if since < self.min_interval {
                    let wait = self.min_interval - since;
                    next = Some(next.map_or(wait, |n| n.min(wait)));
                    continue;
                }
            }
            match self.write(&src, entry.as_ref()).await {
                Ok(()) => {
                    if entry.is_none() {
                        self.written.remove(&src);
                    } else {
                        self.written.insert(
                            src,
                            Written {
                                entry,
                                at: Instant::now(),
                            },
                        );
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // The probe is gone: nothing to report on.
                    self.written.remove(&src);
                    self.wanted.remove(&src);
                }
                Err(e) => {
                    warn!(probe = ?src, error = %e, "status write failed; will retry");
                    next = Some(next.map_or(Duration::from_secs(2), |n| n.min(Duration::from_secs(2))));
                }
            }
        }
        next
    }

    async fn write(&self, src: &ProbeId, entry: Option<&NodeProbeStatus>) -> Result<(), kube::Error> {
        let ar = src.kind.api_resource();
        let api: Api<DynamicObject> = match &src.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let mut meta = json!({"name": src.name});
        if let Some(ns) = &src.namespace {
            meta["namespace"] = json!(ns);
        }
        // Applying no entry removes the one this manager owned.
        let status = match entry {
            Some(e) => json!({"nodes": [e]}),
            None => json!({}),
        };
        let body = json!({"apiVersion": format!("{}/{}", keys::GROUP, keys::VERSION), "kind": src.kind.kind(), "metadata": meta, "status": status});
        debug!(probe = ?src, "writing node status");
        api.patch_status(
            &src.name,
            &PatchParams::apply(&agent_manager(&self.node)).force(),
            &Patch::Apply(body),
        )
        .await?;
        Ok(())
    }
}
