//! Where the nodes' reports are read: one watch on every
//! NetworkProbeNodeReport keeps, per probe, each node's entry (one copy,
//! indexed by probe, so aggregating a probe costs its own nodes only), and
//! per node when its heartbeat was last seen to change. Liveness is judged
//! by the operator's own clock at observation (as client-go's leader
//! election does), so skew between node and operator clocks does not matter.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netprobe_api::{NetworkProbeNodeReport, NodePhase, NodeProbeStatus, ProbeId};

/// What aggregation needs of one node's entry for one probe: ~60 bytes
/// instead of the entry's few hundred (half a million entries at 5,000
/// nodes × 100 probes). The detail is kept only for nodes not Running.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub phase: NodePhase,
    pub applied_generation: Option<i64>,
    pub pods_matched: i64,
    pub series_budget_exhausted: bool,
    /// The entry's reason when it says more than its phase (not plain
    /// Running), e.g. UnknownDropReason.
    pub reason: Option<Box<str>>,
    /// The entry's message (or reason) when its phase is not Running or its
    /// reason says more.
    pub detail: Option<Box<str>>,
}

impl From<&NodeProbeStatus> for Entry {
    fn from(s: &NodeProbeStatus) -> Self {
        let notable = s.reason.as_deref().filter(|r| *r != "Running");
        Entry {
            phase: s.phase,
            applied_generation: s.applied_generation,
            pods_matched: s.pods_matched,
            series_budget_exhausted: s.series_budget_exhausted,
            reason: notable.map(Box::from),
            detail: (s.phase != NodePhase::Running || notable.is_some())
                .then(|| s.message.as_deref().or(s.reason.as_deref()).map(Box::from))
                .flatten(),
        }
    }
}

/// What the operator knows of the reports, pure so it can be tested and
/// benchmarked without an API.
#[derive(Debug)]
pub struct Reports {
    timeout: Duration,
    /// Probe → node → that node's entry. Probe ids and node names are
    /// shared, not copied per entry.
    by_probe: HashMap<Arc<ProbeId>, HashMap<Arc<str>, Entry>>,
    nodes: HashMap<Arc<str>, NodeSeen>,
}

#[derive(Debug)]
struct NodeSeen {
    generation: Option<i64>,
    heartbeat: Option<String>,
    stopping: bool,
    /// When the operator saw the heartbeat change (or the report appear).
    renewed: Instant,
    probes: Vec<Arc<ProbeId>>,
}

/// What a report event changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Probes whose entries changed (spec changes only; a heartbeat changes none).
    pub probes: BTreeSet<ProbeId>,
    /// The node went from live to not live or back.
    pub liveness: bool,
}

impl Reports {
    pub fn new(timeout: Duration) -> Self {
        Reports {
            timeout,
            by_probe: HashMap::new(),
            nodes: HashMap::new(),
        }
    }

    /// A report was created or updated.
    pub fn apply(&mut self, r: &NetworkProbeNodeReport, now: Instant) -> Change {
        let Some(name) = r.metadata.name.as_deref() else {
            return Change::default();
        };
        let node: Arc<str> = match self.nodes.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => Arc::from(name),
        };
        let heartbeat = r
            .status
            .as_ref()
            .and_then(|s| s.heartbeat_time.as_ref())
            .map(|t| t.0.to_string());
        let stopping = r.status.as_ref().is_some_and(|s| s.stopping);
        let generation = r.metadata.generation;
        let was_live = self.is_live(&node, now);
        let mut change = Change::default();
        let spec_changed = match self.nodes.get_mut(&node) {
            Some(seen) => {
                if seen.heartbeat != heartbeat || seen.stopping != stopping {
                    seen.renewed = now;
                    seen.heartbeat = heartbeat;
                    seen.stopping = stopping;
                }
                // Generation is absent only on APIs that do not keep it:
                // then every event is taken as a content change.
                generation.is_none() || seen.generation != generation
            }
            None => {
                self.nodes.insert(
                    node.clone(),
                    NodeSeen {
                        generation: None,
                        heartbeat,
                        stopping,
                        renewed: now,
                        probes: Vec::new(),
                    },
                );
                true
            }
        };
        if spec_changed {
            let old = self.remove_entries(&node);
            let mut probes = Vec::new();
            for e in &r.spec.probes {
                let id = match self.by_probe.get_key_value(&e.probe) {
                    Some((id, _)) => id.clone(),
                    None => Arc::new(e.probe.clone()),
                };
                self.by_probe
                    .entry(id.clone())
                    .or_default()
                    .insert(node.clone(), Entry::from(&e.state));
                probes.push(id);
            }
            change.probes = old
                .into_iter()
                .chain(probes.iter().map(|p| ProbeId::clone(p)))
                .collect();
            if let Some(seen) = self.nodes.get_mut(&node) {
                seen.generation = generation;
                seen.probes = probes;
            }
        }
        change.liveness = was_live != self.is_live(&node, now);
        change
    }

    /// A report was deleted.
    pub fn delete(&mut self, node: &str) -> Change {
        let probes = self.remove_entries(node).into_iter().collect();
        let liveness = self.nodes.remove(node).is_some_and(|s| !s.stopping);
        Change { probes, liveness }
    }

    fn remove_entries(&mut self, node: &str) -> Vec<ProbeId> {
        let Some(seen) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        let old = std::mem::take(&mut seen.probes);
        for p in &old {
            if let Some(m) = self.by_probe.get_mut(&**p) {
                m.remove(node);
                if m.is_empty() {
                    self.by_probe.remove(&**p);
                }
            }
        }
        old.into_iter().map(|p| ProbeId::clone(&p)).collect()
    }

    /// Whether `node` has a report whose heartbeat was seen renewed within
    /// the timeout and that does not say it is stopping.
    pub fn is_live(&self, node: &str, now: Instant) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|s| !s.stopping && now.saturating_duration_since(s.renewed) < self.timeout)
    }

    /// Nodes live now.
    pub fn live(&self, now: Instant) -> BTreeSet<String> {
        self.nodes
            .keys()
            .filter(|n| self.is_live(n, now))
            .map(|n| n.to_string())
            .collect()
    }

    /// Nodes that have a report.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(|k| &**k)
    }

    /// `node`'s entry for `probe`.
    pub fn entry(&self, probe: &ProbeId, node: &str) -> Option<&Entry> {
        self.by_probe.get(probe)?.get(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use netprobe_api::{NodePhase, NodeReportSpec, NodeReportStatus, ProbeReport, SourceKind};

    fn report(node: &str, generation: i64, beat: i64, probes: &[&str]) -> NetworkProbeNodeReport {
        let mut r = NetworkProbeNodeReport::new(
            node,
            NodeReportSpec {
                probe_count: probes.len() as i64,
                probes: probes
                    .iter()
                    .map(|p| ProbeReport {
                        probe: ProbeId::new(SourceKind::Namespaced, Some("shop"), p),
                        state: NodeProbeStatus {
                            phase: NodePhase::Running,
                            applied_generation: Some(1),
                            pods_matched: 1,
                            programs: vec![],
                            series_budget_exhausted: false,
                            reason: None,
                            message: None,
                            last_transition_time: None,
                        },
                    })
                    .collect(),
            },
        );
        r.metadata.generation = Some(generation);
        r.status = Some(NodeReportStatus {
            heartbeat_time: Some(Time(k8s_openapi::jiff::Timestamp::from_second(beat).unwrap())),
            stopping: false,
        });
        r
    }

    fn id(name: &str) -> ProbeId {
        ProbeId::new(SourceKind::Namespaced, Some("shop"), name)
    }

    #[test]
    fn heartbeats_keep_a_node_live_and_change_no_probe() {
        let t0 = Instant::now();
        let mut r = Reports::new(Duration::from_secs(60));
        let c = r.apply(&report("a", 1, 100, &["p"]), t0);
        assert_eq!(c.probes, BTreeSet::from([id("p")]));
        assert!(c.liveness && r.is_live("a", t0));
        // A heartbeat 50 s later: no probe changed, still live 100 s in.
        let c = r.apply(&report("a", 1, 150, &["p"]), t0 + Duration::from_secs(50));
        assert_eq!(c, Change::default());
        assert!(r.is_live("a", t0 + Duration::from_secs(100)));
        // No heartbeat for 60 s: not live.
        assert!(!r.is_live("a", t0 + Duration::from_secs(111)));
        assert!(r.live(t0 + Duration::from_secs(111)).is_empty());
        // The same heartbeat value again (a resync) does not renew it.
        r.apply(&report("a", 1, 150, &["p"]), t0 + Duration::from_secs(105));
        assert!(!r.is_live("a", t0 + Duration::from_secs(111)));
    }

    #[test]
    fn content_changes_name_old_and_new_probes_and_deletion_forgets() {
        let t0 = Instant::now();
        let mut r = Reports::new(Duration::from_secs(60));
        r.apply(&report("a", 1, 1, &["p", "q"]), t0);
        r.apply(&report("b", 1, 1, &["p"]), t0);
        let c = r.apply(&report("a", 2, 1, &["q", "s"]), t0);
        assert_eq!(c.probes, BTreeSet::from([id("p"), id("q"), id("s")]));
        assert!(r.entry(&id("p"), "a").is_none());
        assert!(r.entry(&id("p"), "b").is_some());
        assert!(r.entry(&id("s"), "a").is_some());
        let c = r.delete("a");
        assert_eq!(c.probes, BTreeSet::from([id("q"), id("s")]));
        assert!(c.liveness);
        assert!(r.entry(&id("q"), "a").is_none());
        assert_eq!(r.nodes().count(), 1);
    }

    #[test]
    fn a_stopping_agent_is_not_live_at_once() {
        let t0 = Instant::now();
        let mut r = Reports::new(Duration::from_secs(60));
        r.apply(&report("a", 1, 1, &["p"]), t0);
        let mut stop = report("a", 1, 2, &["p"]);
        stop.status.as_mut().unwrap().stopping = true;
        let c = r.apply(&stop, t0 + Duration::from_secs(1));
        assert!(c.liveness);
        assert!(!r.is_live("a", t0 + Duration::from_secs(1)));
        // Back: a fresh heartbeat without stopping.
        let c = r.apply(&report("a", 1, 3, &["p"]), t0 + Duration::from_secs(2));
        assert!(c.liveness && r.is_live("a", t0 + Duration::from_secs(2)));
    }
}
