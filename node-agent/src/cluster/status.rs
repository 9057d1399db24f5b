//! What this node reports about each plan, and the reporter that writes it:
//! this node's NetworkProbeNodeReport (`api/src/report.rs`), one object
//! whatever the number of probes, applied only when its content changed and
//! at most once per `min_interval` (a pod churn storm cannot become an API
//! write storm), plus a heartbeat on its status subresource.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams};
use netprobe_api::keys::{self, AGENT_MANAGER};
use netprobe_api::{NetworkProbeNodeReport, NodePhase, NodeProbeStatus, ProbeId, ProbePlan, ProbeReport, ProbeType};
use serde_json::json;
use tracing::{debug, warn};

use crate::kernel::manager::ApplyReport;
use crate::pipeline::selection::PlanOutcome;

/// This node's entry for a plan it runs.
pub fn entry_for(
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
    let own = report.programs.get(&plan.source.key());
    let attached = types.iter().all(|t| report.attached.contains_key(t))
        && (!types.contains(&ProbeType::Program) || matches!(own, Some(Ok(_))));
    let mut programs: Vec<String> = types
        .iter()
        .flat_map(|t| report.attached.get(t).cloned().unwrap_or_default())
        .collect();
    if let Some(Ok(user)) = own {
        programs.extend(user.iter().cloned());
    }
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
    let (phase, reason, mut message) = if let Some(Err(why)) = own {
        // The user's object does not run here (digest, limits, verifier):
        // only this probe fails, with the kernel's words, bounded.
        (NodePhase::Failed, "ProgramFailed", bounded(why, 1024))
    } else if !unsupported.is_empty() {
        (NodePhase::Unsupported, "KernelUnsupported", unsupported.join("; "))
    } else if !attached && outcome.pods_matched > 0 {
        (
            NodePhase::Pending,
            "Attaching",
            "programs are being attached".to_string(),
        )
    } else if !partial.is_empty() {
        (NodePhase::Partial, "KernelPartial", partial.join("; "))
    } else if let Some(names) = report.unknown_drop_reasons.get(&plan.source.key()) {
        (
            NodePhase::Running,
            "UnknownDropReason",
            format!(
                "packetDrops.reasons names drop reasons this node's kernel does not have: {}",
                names.join(", ")
            ),
        )
    } else if budget_exhausted {
        (
            NodePhase::Running,
            "SeriesBudgetExhausted",
            format!(
                "more series than metrics.maxSeriesPerNode ({}) or than this tenant's share of the node's \
                 --max-series: the rest are counted in the overflow series",
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
    // A plain Running entry says nothing podsMatched does not: no reason or
    // message, so a node's report stays small (one entry per probe).
    let plain = reason == "Running" && notes.is_empty();
    if !notes.is_empty() {
        message = format!("{message}; {}", notes.join("; "));
    }
    NodeProbeStatus {
        phase,
        applied_generation: Some(plan.source.generation),
        pods_matched: outcome.pods_matched,
        programs,
        series_budget_exhausted: budget_exhausted,
        reason: (!plain).then(|| reason.into()),
        message: (!plain).then_some(message),
        last_transition_time: None,
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// This node's entry for a plan ConfigMap it cannot use.
pub fn failed_entry(message: String) -> NodeProbeStatus {
    NodeProbeStatus {
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

/// Writes this node's report; keeps what it could not write for later.
pub struct Reporter {
    client: kube::Client,
    node: String,
    min_interval: Duration,
    heartbeat: Duration,
    /// What the report should say.
    wanted: BTreeMap<ProbeId, NodeProbeStatus>,
    /// What it said at the last successful write, and when.
    written: Option<(BTreeMap<ProbeId, NodeProbeStatus>, Instant)>,
    last_beat: Option<Instant>,
    /// The Node's uid once known: the report's owner, so it goes with it.
    owner: Option<String>,
}

fn same(a: &BTreeMap<ProbeId, NodeProbeStatus>, b: &BTreeMap<ProbeId, NodeProbeStatus>) -> bool {
    let strip = |m: &BTreeMap<ProbeId, NodeProbeStatus>| -> Vec<(ProbeId, NodeProbeStatus)> {
        m.iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.last_transition_time = None;
                (k.clone(), v)
            })
            .collect()
    };
    strip(a) == strip(b)
}

impl Reporter {
    pub fn new(client: kube::Client, node: &str, min_interval: Duration, heartbeat: Duration) -> Self {
        Reporter {
            client,
            node: node.into(),
            min_interval,
            heartbeat,
            wanted: BTreeMap::new(),
            written: None,
            last_beat: None,
            owner: None,
        }
    }

    /// The Node object this agent runs on (for the report's owner).
    pub fn set_node(&mut self, node: Option<&Node>) {
        if self.owner.is_none() {
            self.owner = node.and_then(|n| n.metadata.uid.clone());
        }
    }

    /// Replace what this node reports. Transition times are kept while a
    /// probe's phase holds.
    pub fn set(&mut self, entries: BTreeMap<ProbeId, NodeProbeStatus>) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let prev = self.written.as_ref().map(|(w, _)| w);
        self.wanted = entries
            .into_iter()
            .map(|(src, mut e)| {
                e.last_transition_time = match prev.and_then(|p| p.get(&src)) {
                    Some(p) if p.phase == e.phase => p.last_transition_time.clone(),
                    _ => Some(now.clone()),
                };
                (src, e)
            })
            .collect();
    }

    fn api(&self) -> Api<NetworkProbeNodeReport> {
        Api::all(self.client.clone())
    }

    /// Write the report if it changed and is due, and the heartbeat if it
    /// is due. Returns when something is next due.
    pub async fn flush(&mut self) -> Duration {
        let mut next = self.heartbeat;
        let changed = !self.written.as_ref().is_some_and(|(w, _)| same(w, &self.wanted));
        if changed {
            let since = self.written.as_ref().map(|(_, at)| at.elapsed());
            match since {
                Some(since) if since < self.min_interval => next = next.min(self.min_interval - since),
                _ => match self.write().await {
                    Ok(()) => self.written = Some((self.wanted.clone(), Instant::now())),
                    Err(e) => {
                        warn!(error = %e, "writing this node's report failed; will retry");
                        next = next.min(Duration::from_secs(2));
                    }
                },
            }
        }
        // The heartbeat needs the object: written after the first report.
        if self.written.is_some() {
            let due = self
                .last_beat
                .map_or(Duration::ZERO, |b| self.heartbeat.saturating_sub(b.elapsed()));
            if due.is_zero() {
                match self.beat(false).await {
                    Ok(()) => {
                        self.last_beat = Some(Instant::now());
                        next = next.min(self.heartbeat);
                    }
                    Err(e) => {
                        warn!(error = %e, "renewing the heartbeat failed; will retry");
                        next = next.min(Duration::from_secs(2));
                    }
                }
            } else {
                next = next.min(due);
            }
        }
        next
    }

    /// Say the agent is stopping: its node counts as not reporting at once.
    pub async fn stopping(&mut self) {
        if self.written.is_none() {
            return;
        }
        if let Err(e) = self.beat(true).await {
            warn!(error = %e, "could not mark this node's report as stopping");
        }
    }

    async fn write(&self) -> Result<(), kube::Error> {
        let probes: Vec<ProbeReport> = self
            .wanted
            .iter()
            .map(|(id, e)| ProbeReport {
                probe: id.clone(),
                state: e.clone(),
            })
            .collect();
        let mut meta = json!({"name": self.node});
        if let Some(uid) = &self.owner {
            meta["ownerReferences"] = json!([OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: self.node.clone(),
                uid: uid.clone(),
                ..Default::default()
            }]);
        }
        let body = json!({
            "apiVersion": format!("{}/{}", keys::GROUP, keys::VERSION),
            "kind": "NetworkProbeNodeReport",
            "metadata": meta,
            "spec": {"probeCount": probes.len(), "probes": probes},
        });
        debug!(probes = probes.len(), "writing this node's report");
        self.api()
            .patch(
                &self.node,
                &PatchParams::apply(AGENT_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await?;
        Ok(())
    }

    async fn beat(&self, stopping: bool) -> Result<(), kube::Error> {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let body = json!({
            "apiVersion": format!("{}/{}", keys::GROUP, keys::VERSION),
            "kind": "NetworkProbeNodeReport",
            "metadata": {"name": self.node},
            "status": {"heartbeatTime": now, "stopping": stopping},
        });
        self.api()
            .patch_status(
                &self.node,
                &PatchParams::apply(AGENT_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await?;
        Ok(())
    }
}
