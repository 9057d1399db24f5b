//! Where agents' per-node reports become the probe's conditions and summary
//! columns. Pure: the reconciler feeds it what it read and writes what it
//! returns.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use netprobe_api::report::NOT_REPORTING_AFTER_SECS;
use netprobe_api::status::MAX_PROBLEM_NODES;
use netprobe_api::{NodeCounts, NodePhase, ProbeType, ProblemNode};

use crate::reports::Entry;

/// Bound on a condition message, so many failing nodes cannot bloat status.
pub const MAX_MESSAGE: usize = 1024;

/// Condition types the operator owns.
pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
pub const INVALID_SPEC: &str = "InvalidSpec";

/// The operator-owned part of status.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub conditions: Vec<Condition>,
    pub probe_types: Option<String>,
    pub nodes_ready: Option<String>,
    pub pods_matched: Option<i64>,
    pub node_counts: Option<NodeCounts>,
    pub problem_nodes: Vec<ProblemNode>,
}

/// Why a probe is not deployed at all.
#[derive(Debug, Clone, PartialEq)]
pub enum NotDeployed {
    /// Spec invalid by meaning (or unreadable); the message names the field.
    InvalidSpec(String),
    /// `spec.suspend: true`.
    Suspended,
}

/// A condition that keeps its lastTransitionTime while its status holds.
fn condition(
    prior: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let since = prior
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: bound_to(message, MAX_MESSAGE),
        observed_generation: Some(generation),
        last_transition_time: since,
    }
}

/// Name up to `max` nodes, then say how many more.
fn name_nodes<'a>(nodes: impl Iterator<Item = &'a str>, max: usize) -> String {
    let all: Vec<&str> = nodes.collect();
    let mut s = all.iter().take(max).copied().collect::<Vec<_>>().join(", ");
    if all.len() > max {
        s.push_str(&format!(" and {} more", all.len() - max));
    }
    s
}

/// Status of a probe that is not deployed.
pub fn not_deployed(
    why: &NotDeployed,
    types: &[ProbeType],
    generation: i64,
    prior: &[Condition],
    now: &Time,
) -> Summary {
    let mut conditions = Vec::new();
    match why {
        NotDeployed::InvalidSpec(msg) => {
            conditions.push(condition(
                prior,
                READY,
                false,
                "InvalidSpec",
                format!("nothing deployed: {msg}"),
                generation,
                now,
            ));
            conditions.push(condition(
                prior,
                INVALID_SPEC,
                true,
                "InvalidSpec",
                msg.clone(),
                generation,
                now,
            ));
        }
        NotDeployed::Suspended => {
            conditions.push(condition(
                prior,
                READY,
                false,
                "Suspended",
                "spec.suspend is true: the plan was removed from every node".into(),
                generation,
                now,
            ));
        }
    }
    Summary {
        conditions,
        probe_types: type_list(types),
        nodes_ready: None,
        pods_matched: None,
        node_counts: None,
        problem_nodes: Vec::new(),
    }
}

fn type_list(types: &[ProbeType]) -> Option<String> {
    if types.is_empty() {
        None
    } else {
        Some(types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","))
    }
}

/// What the operator knows of one expected node, for one probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeView<'a> {
    /// No live report: none at all, stopping, or its heartbeat lapsed.
    NotReporting,
    /// A live report, with this probe's entry if the node has one yet.
    Reporting(Option<&'a Entry>),
}

/// Most characters of a problem node's message.
const MAX_NODE_MESSAGE: usize = 256;

fn bound_to(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// How one expected node runs the probe: (phase for problem lists, running,
/// partial, message).
fn classify(generation: i64, view: &NodeView) -> (&'static str, bool, bool, String) {
    match view {
        NodeView::NotReporting => (
            "NotReporting",
            false,
            false,
            format!("agent stopped, or no heartbeat for {NOT_REPORTING_AFTER_SECS} s"),
        ),
        NodeView::Reporting(None) => ("Pending", false, false, "the agent has no plan for it yet".into()),
        NodeView::Reporting(Some(r)) => {
            let detail = r.detail.as_deref().unwrap_or("no reason given").to_string();
            let current = r.applied_generation == Some(generation);
            match r.phase {
                NodePhase::Running if current => ("Running", true, false, detail),
                NodePhase::Partial if current => ("Partial", true, true, detail),
                NodePhase::Failed => ("Failed", false, false, detail),
                NodePhase::Unsupported => ("Unsupported", false, false, detail),
                _ => (
                    "Pending",
                    false,
                    false,
                    format!(
                        "runs generation {}: {detail}",
                        r.applied_generation.map_or("none".into(), |g| g.to_string())
                    ),
                ),
            }
        }
    }
}

/// Status of a deployed probe at `generation`, from every node expected to
/// run it (nodeSelector) and what the operator knows of each. Reports of
/// nodes not expected (deleted, or no longer matching) are not passed in.
pub fn deployed(
    generation: i64,
    types: &[ProbeType],
    expected: &BTreeMap<String, NodeView>,
    prior: &[Condition],
    now: &Time,
) -> Summary {
    let mut counts = NodeCounts {
        expected: expected.len() as i64,
        ..NodeCounts::default()
    };
    let mut pods = 0;
    // Problems by severity: not reporting, failed, partial, pending.
    let mut problems: [Vec<ProblemNode>; 4] = Default::default();
    let mut broken: Vec<String> = Vec::new();
    let mut broken_phases: BTreeSet<&'static str> = BTreeSet::new();
    let mut exhausted: Vec<&str> = Vec::new();
    let mut unknown_reasons: Vec<String> = Vec::new();
    for (node, view) in expected {
        if let NodeView::Reporting(Some(r)) = view {
            if r.series_budget_exhausted {
                exhausted.push(node);
            }
            if r.reason.as_deref() == Some("UnknownDropReason") {
                unknown_reasons.push(format!(
                    "on {node}: {}",
                    bound_to(r.detail.as_deref().unwrap_or_default().to_string(), MAX_NODE_MESSAGE)
                ));
            }
        }
        let (phase, running, partial, message) = classify(generation, view);
        if let NodeView::Reporting(Some(r)) = view
            && r.applied_generation == Some(generation)
        {
            pods += r.pods_matched;
        }
        let rank = match phase {
            "NotReporting" => {
                counts.not_reporting += 1;
                0
            }
            "Failed" | "Unsupported" => {
                counts.failed += 1;
                1
            }
            "Partial" => 2,
            "Pending" => {
                counts.pending += 1;
                3
            }
            _ => 4,
        };
        if running {
            counts.running += 1;
        }
        if partial {
            counts.partial += 1;
        }
        if matches!(phase, "Failed" | "Unsupported" | "Partial") {
            broken_phases.insert(phase);
            if broken.len() < 5 {
                broken.push(format!(
                    "{phase} on {node}: {}",
                    bound_to(message.clone(), MAX_NODE_MESSAGE)
                ));
            }
        }
        if rank < 4 && problems[rank].len() < MAX_PROBLEM_NODES {
            problems[rank].push(ProblemNode {
                name: node.clone(),
                phase: phase.into(),
                message: bound_to(message, MAX_NODE_MESSAGE),
            });
        }
    }
    let problem_nodes: Vec<ProblemNode> = problems.into_iter().flatten().take(MAX_PROBLEM_NODES).collect();
    let names = |phase: &str, max: usize| {
        name_nodes(
            expected
                .iter()
                .filter(|(_, v)| classify(generation, v).0 == phase)
                .map(|(n, _)| n.as_str()),
            max,
        )
    };

    let broken_total = counts.failed + counts.partial;
    let degraded = if broken_total == 0 && !unknown_reasons.is_empty() {
        let more = unknown_reasons.len().saturating_sub(5);
        let mut msg = unknown_reasons.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
        if more > 0 {
            msg.push_str(&format!("; and {more} more nodes"));
        }
        condition(prior, DEGRADED, true, "UnknownDropReason", msg, generation, now)
    } else if broken_total == 0 && !exhausted.is_empty() {
        condition(
            prior,
            DEGRADED,
            true,
            "SeriesBudgetExhausted",
            format!(
                "more series than metrics.maxSeriesPerNode on {}: further series are summed into the _overflow series",
                name_nodes(exhausted.iter().copied(), 10)
            ),
            generation,
            now,
        )
    } else if broken_total == 0 {
        condition(
            prior,
            DEGRADED,
            false,
            "AsExpected",
            "no node reports a failure".into(),
            generation,
            now,
        )
    } else {
        let more = if broken_total > 5 {
            format!("; and {} more nodes", broken_total - 5)
        } else {
            String::new()
        };
        let reason = if broken_phases.iter().all(|p| *p == "Unsupported") {
            "Unsupported"
        } else if broken_phases.iter().all(|p| *p == "Partial") {
            "Partial"
        } else {
            "NodeFailed"
        };
        condition(
            prior,
            DEGRADED,
            true,
            reason,
            format!("{}{more}", bound_to(broken.join("; "), MAX_MESSAGE - more.len())),
            generation,
            now,
        )
    };

    let ready = if expected.is_empty() {
        condition(
            prior,
            READY,
            false,
            "NoMatchingNodes",
            "no node matches spec.nodeSelector".into(),
            generation,
            now,
        )
    } else if counts.not_reporting > 0 {
        condition(
            prior,
            READY,
            false,
            "NodesNotReporting",
            format!(
                "{}/{} nodes not reporting (agent stopped, or no heartbeat for {NOT_REPORTING_AFTER_SECS} s): {}",
                counts.not_reporting,
                counts.expected,
                names("NotReporting", 10)
            ),
            generation,
            now,
        )
    } else if counts.running < counts.expected {
        let waiting = name_nodes(
            expected
                .iter()
                .filter(|(_, v)| !classify(generation, v).1)
                .map(|(n, _)| n.as_str()),
            10,
        );
        condition(
            prior,
            READY,
            false,
            "Progressing",
            format!(
                "{}/{} nodes run generation {generation}; waiting for {waiting}",
                counts.running, counts.expected,
            ),
            generation,
            now,
        )
    } else if pods == 0 {
        condition(
            prior,
            READY,
            false,
            "NoPodsMatched",
            format!("running on {} nodes but no pod matches the selectors", counts.expected),
            generation,
            now,
        )
    } else {
        condition(
            prior,
            READY,
            true,
            "Running",
            format!("running on {} nodes for {pods} pods", counts.expected),
            generation,
            now,
        )
    };

    Summary {
        conditions: vec![ready, degraded],
        probe_types: type_list(types),
        nodes_ready: Some(if counts.partial > 0 {
            format!("{}/{} ({} partial)", counts.running, counts.expected, counts.partial)
        } else {
            format!("{}/{}", counts.running, counts.expected)
        }),
        pods_matched: Some(pods),
        node_counts: Some(counts),
        problem_nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn report(phase: NodePhase, generation: i64, pods: i64) -> Entry {
        Entry {
            phase,
            applied_generation: Some(generation),
            pods_matched: pods,
            series_budget_exhausted: false,
            reason: None,
            detail: Some(format!("{phase:?}Reason").into()),
        }
    }

    /// Expected nodes with a live report holding `entry` (None: a live
    /// report without this probe).
    fn live(entries: &[(&str, Option<&Entry>)]) -> BTreeMap<String, NodeView<'static>> {
        entries
            .iter()
            .map(|(n, e)| {
                let e: Option<&'static Entry> = e.map(|e| &*Box::leak(Box::new(e.clone())));
                (n.to_string(), NodeView::Reporting(e))
            })
            .collect()
    }

    fn cond<'a>(s: &'a Summary, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    const TYPES: &[ProbeType] = &[ProbeType::TcpRetransmits, ProbeType::TcpRtt];

    #[test]
    fn partial_nodes_run_the_probe_but_degrade_it_and_show_in_the_node_column() {
        let b = Entry {
            detail: Some("TcpResets: resets sent without a full socket are not visible".into()),
            ..report(NodePhase::Partial, 3, 1)
        };
        let a = report(NodePhase::Running, 3, 2);
        let s = deployed(
            3,
            &[ProbeType::TcpResets],
            &live(&[("a", Some(&a)), ("b", Some(&b))]),
            &[],
            &t(100),
        );
        assert_eq!(cond(&s, READY).status, "True");
        let d = cond(&s, DEGRADED);
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "Partial"));
        assert!(
            d.message.contains("Partial on b: TcpResets: resets sent"),
            "{}",
            d.message
        );
        assert_eq!(s.nodes_ready.as_deref(), Some("2/2 (1 partial)"));
        assert_eq!(s.pods_matched, Some(3));
        let c = s.node_counts.clone().unwrap();
        assert_eq!((c.expected, c.running, c.partial, c.failed), (2, 2, 1, 0));
        assert_eq!(s.problem_nodes.len(), 1);
        assert_eq!(
            (s.problem_nodes[0].name.as_str(), s.problem_nodes[0].phase.as_str()),
            ("b", "Partial")
        );
    }

    #[test]
    fn ready_only_when_every_expected_node_runs_current_generation() {
        let (a, b) = (report(NodePhase::Running, 2, 3), report(NodePhase::Running, 2, 1));
        let s = deployed(2, TYPES, &live(&[("a", Some(&a)), ("b", Some(&b))]), &[], &t(0));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(s.nodes_ready.as_deref(), Some("2/2"));
        assert_eq!(s.pods_matched, Some(4));
        assert_eq!(s.probe_types.as_deref(), Some("TcpRetransmits,TcpRtt"));
        assert_eq!(cond(&s, DEGRADED).status, "False");
        assert!(s.problem_nodes.is_empty());

        let old = report(NodePhase::Running, 1, 1);
        let s = deployed(2, TYPES, &live(&[("a", Some(&a)), ("b", Some(&old))]), &[], &t(0));
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, READY).reason, "Progressing");
        assert!(cond(&s, READY).message.contains("waiting for b"));
        assert_eq!(s.nodes_ready.as_deref(), Some("1/2"));
        assert_eq!(s.node_counts.as_ref().map(|c| c.pending), Some(1));

        let s = deployed(2, TYPES, &live(&[("a", Some(&a)), ("b", None)]), &[], &t(0));
        assert_eq!(
            cond(&s, READY).status,
            "False",
            "a node without an entry is not silently ignored"
        );
    }

    #[test]
    fn a_node_not_reporting_makes_the_probe_not_ready_and_is_named() {
        let a = report(NodePhase::Running, 1, 2);
        let mut exp = live(&[("a", Some(&a))]);
        exp.insert("b".into(), NodeView::NotReporting);
        let s = deployed(1, TYPES, &exp, &[], &t(0));
        let r = cond(&s, READY);
        assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", "NodesNotReporting"));
        assert!(
            r.message.contains("1/2 nodes not reporting") && r.message.contains(": b"),
            "{}",
            r.message
        );
        assert_eq!(s.nodes_ready.as_deref(), Some("1/2"));
        let c = s.node_counts.clone().unwrap();
        assert_eq!((c.running, c.not_reporting), (1, 1));
        assert_eq!(s.problem_nodes[0].phase, "NotReporting");
    }

    #[test]
    fn zero_pods_is_not_ready() {
        let a = report(NodePhase::Running, 1, 0);
        let s = deployed(1, TYPES, &live(&[("a", Some(&a))]), &[], &t(0));
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, READY).reason, "NoPodsMatched");
    }

    #[test]
    fn failures_degrade_and_name_nodes_within_bounds() {
        let a = report(NodePhase::Running, 1, 1);
        let b = Entry {
            detail: Some("kernel lacks tp_btf/tcp_retransmit_skb".into()),
            ..report(NodePhase::Unsupported, 1, 0)
        };
        let s = deployed(1, TYPES, &live(&[("a", Some(&a)), ("b", Some(&b))]), &[], &t(0));
        let d = cond(&s, DEGRADED);
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "Unsupported"));
        assert!(d.message.contains("Unsupported on b: kernel lacks"), "{}", d.message);

        let failed = Entry {
            detail: Some("x".repeat(500).into()),
            ..report(NodePhase::Failed, 1, 0)
        };
        let names: Vec<String> = (0..5000).map(|i| format!("node-{i:04}")).collect();
        let exp: BTreeMap<String, NodeView> = names
            .iter()
            .map(|n| (n.clone(), NodeView::Reporting(Some(&failed))))
            .collect();
        let s = deployed(1, TYPES, &exp, &[], &t(0));
        assert!(cond(&s, DEGRADED).message.len() <= MAX_MESSAGE);
        assert!(cond(&s, DEGRADED).message.contains("and 4995 more nodes"));
        assert!(cond(&s, READY).message.len() <= MAX_MESSAGE);
        assert_eq!(cond(&s, DEGRADED).reason, "NodeFailed");
        assert_eq!(s.problem_nodes.len(), MAX_PROBLEM_NODES);
        assert!(s.problem_nodes.iter().all(|p| p.message.len() <= MAX_NODE_MESSAGE));
        assert_eq!(s.node_counts.as_ref().map(|c| c.failed), Some(5000));
    }

    #[test]
    fn an_exhausted_series_budget_degrades_and_names_the_node() {
        let a = Entry {
            series_budget_exhausted: true,
            ..report(NodePhase::Running, 1, 1)
        };
        let b = report(NodePhase::Running, 1, 1);
        let s = deployed(1, TYPES, &live(&[("a", Some(&a)), ("b", Some(&b))]), &[], &t(0));
        assert_eq!(cond(&s, READY).status, "True");
        let d = cond(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "SeriesBudgetExhausted")
        );
        assert!(d.message.contains("on a:"), "{}", d.message);
    }

    #[test]
    fn drop_reasons_a_node_does_not_have_degrade_and_are_named() {
        let a = Entry {
            reason: Some("UnknownDropReason".into()),
            detail: Some(
                "packetDrops.reasons names drop reasons this node's kernel does not have: NOT_A_REAL_REASON".into(),
            ),
            ..report(NodePhase::Running, 1, 1)
        };
        let s = deployed(1, TYPES, &live(&[("a", Some(&a))]), &[], &t(0));
        assert_eq!(cond(&s, READY).status, "True");
        let d = cond(&s, DEGRADED);
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "UnknownDropReason"));
        assert!(
            d.message.contains("on a:") && d.message.contains("NOT_A_REAL_REASON"),
            "{}",
            d.message
        );
    }

    #[test]
    fn no_nodes_is_explained() {
        let s = deployed(1, TYPES, &BTreeMap::new(), &[], &t(0));
        assert_eq!(cond(&s, READY).reason, "NoMatchingNodes");
    }

    #[test]
    fn transition_time_holds_while_status_holds() {
        let a = report(NodePhase::Running, 1, 1);
        let exp = live(&[("a", Some(&a))]);
        let first = deployed(1, TYPES, &exp, &[], &t(100));
        let again = deployed(1, TYPES, &exp, &first.conditions, &t(200));
        assert_eq!(first, again, "unchanged input, unchanged status: no write");
        let flipped = deployed(1, TYPES, &live(&[("a", None)]), &first.conditions, &t(300));
        assert_eq!(cond(&flipped, READY).last_transition_time, t(300));
        assert_eq!(cond(&flipped, DEGRADED).last_transition_time, t(100));
    }

    #[test]
    fn invalid_and_suspended() {
        let s = not_deployed(
            &NotDeployed::InvalidSpec("spec.podSelector: bad".into()),
            TYPES,
            4,
            &[],
            &t(0),
        );
        assert_eq!(cond(&s, INVALID_SPEC).status, "True");
        assert_eq!(cond(&s, READY).status, "False");
        assert!(cond(&s, INVALID_SPEC).message.contains("spec.podSelector"));
        assert_eq!(cond(&s, READY).observed_generation, Some(4));
        let s = not_deployed(&NotDeployed::Suspended, TYPES, 4, &[], &t(0));
        assert_eq!(cond(&s, READY).reason, "Suspended");
        assert!(s.conditions.iter().all(|c| c.type_ != INVALID_SPEC));
    }
}
