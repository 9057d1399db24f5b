//! Where agents' per-node reports become the probe's conditions and summary
//! columns. Pure: the reconciler feeds it what it read and writes what it
//! returns.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use netprobe_api::{NodePhase, NodeProbeStatus, ProbeType};

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
        message: bound(message),
        observed_generation: Some(generation),
        last_transition_time: since,
    }
}

fn bound(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
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
    }
}

fn type_list(types: &[ProbeType]) -> Option<String> {
    if types.is_empty() {
        None
    } else {
        Some(types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","))
    }
}

/// Status of a deployed probe at `generation`, from the nodes expected to run
/// it and the entries agents wrote. Reports of nodes not expected (deleted,
/// or no longer matching nodeSelector) do not count.
pub fn deployed(
    generation: i64,
    types: &[ProbeType],
    expected: &BTreeSet<String>,
    reports: &[NodeProbeStatus],
    prior: &[Condition],
    now: &Time,
) -> Summary {
    let relevant: Vec<&NodeProbeStatus> = reports.iter().filter(|r| expected.contains(&r.node_name)).collect();
    let current = |r: &&&NodeProbeStatus| r.applied_generation == Some(generation);
    let running: Vec<&NodeProbeStatus> = relevant
        .iter()
        .filter(current)
        .filter(|r| matches!(r.phase, NodePhase::Running | NodePhase::Partial))
        .copied()
        .collect();
    // Partial nodes run the probe (they count as ready) but the probe is
    // Degraded there: their kernel hides part of the events.
    let partial = running.iter().filter(|r| r.phase == NodePhase::Partial).count();
    let broken: Vec<&NodeProbeStatus> = relevant
        .iter()
        .filter(|r| matches!(r.phase, NodePhase::Failed | NodePhase::Unsupported | NodePhase::Partial))
        .copied()
        .collect();
    let pods: i64 = relevant.iter().filter(current).map(|r| r.pods_matched).sum();
    let waiting = expected.iter().filter(|n| !running.iter().any(|r| &r.node_name == *n));

    let degraded = if broken.is_empty() {
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
        let detail = broken
            .iter()
            .take(5)
            .map(|r| {
                format!(
                    "{} on {}: {}",
                    r.phase.as_str(),
                    r.node_name,
                    r.message
                        .as_deref()
                        .or(r.reason.as_deref())
                        .unwrap_or("no reason given")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let more = if broken.len() > 5 {
            format!("; and {} more nodes", broken.len() - 5)
        } else {
            String::new()
        };
        let reason = if broken.iter().all(|r| r.phase == NodePhase::Unsupported) {
            "Unsupported"
        } else if broken.iter().all(|r| r.phase == NodePhase::Partial) {
            "Partial"
        } else {
            "NodeFailed"
        };
        condition(
            prior,
            DEGRADED,
            true,
            reason,
            format!("{detail}{more}"),
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
    } else if running.len() < expected.len() {
        condition(
            prior,
            READY,
            false,
            "Progressing",
            format!(
                "{}/{} nodes run generation {generation}; waiting for {}",
                running.len(),
                expected.len(),
                name_nodes(waiting.map(String::as_str), 10)
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
            format!("running on {} nodes but no pod matches the selectors", expected.len()),
            generation,
            now,
        )
    } else {
        condition(
            prior,
            READY,
            true,
            "Running",
            format!("running on {} nodes for {pods} pods", expected.len()),
            generation,
            now,
        )
    };

    Summary {
        conditions: vec![ready, degraded],
        probe_types: type_list(types),
        nodes_ready: Some(if partial > 0 {
            format!("{}/{} ({partial} partial)", running.len(), expected.len())
        } else {
            format!("{}/{}", running.len(), expected.len())
        }),
        pods_matched: Some(pods),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn report(node: &str, phase: NodePhase, generation: i64, pods: i64) -> NodeProbeStatus {
        NodeProbeStatus {
            node_name: node.into(),
            phase,
            applied_generation: Some(generation),
            pods_matched: pods,
            programs: vec![],
            series_budget_exhausted: false,
            reason: Some(format!("{phase:?}Reason")),
            message: None,
            last_transition_time: None,
        }
    }

    #[test]
    fn partial_nodes_run_the_probe_but_degrade_it_and_show_in_the_node_column() {
        let s = deployed(
            3,
            &[ProbeType::TcpResets],
            &nodes(&["a", "b"]),
            &[
                report("a", NodePhase::Running, 3, 2),
                NodeProbeStatus {
                    message: Some("TcpResets: resets sent without a full socket are not visible".into()),
                    ..report("b", NodePhase::Partial, 3, 1)
                },
            ],
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
    }

    fn nodes(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn cond<'a>(s: &'a Summary, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    const TYPES: &[ProbeType] = &[ProbeType::TcpRetransmits, ProbeType::TcpRtt];

    #[test]
    fn ready_only_when_every_expected_node_runs_current_generation() {
        let exp = nodes(&["a", "b"]);
        let all = [
            report("a", NodePhase::Running, 2, 3),
            report("b", NodePhase::Running, 2, 1),
        ];
        let s = deployed(2, TYPES, &exp, &all, &[], &t(0));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(s.nodes_ready.as_deref(), Some("2/2"));
        assert_eq!(s.pods_matched, Some(4));
        assert_eq!(s.probe_types.as_deref(), Some("TcpRetransmits,TcpRtt"));
        assert_eq!(cond(&s, DEGRADED).status, "False");

        let stale = [
            report("a", NodePhase::Running, 2, 3),
            report("b", NodePhase::Running, 1, 1),
        ];
        let s = deployed(2, TYPES, &exp, &stale, &[], &t(0));
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, READY).reason, "Progressing");
        assert!(cond(&s, READY).message.contains("waiting for b"));
        assert_eq!(s.nodes_ready.as_deref(), Some("1/2"));

        let missing = [report("a", NodePhase::Running, 2, 3)];
        let s = deployed(2, TYPES, &exp, &missing, &[], &t(0));
        assert_eq!(
            cond(&s, READY).status,
            "False",
            "a node without a report is not silently ignored"
        );
    }

    #[test]
    fn zero_pods_is_not_ready() {
        let s = deployed(
            1,
            TYPES,
            &nodes(&["a"]),
            &[report("a", NodePhase::Running, 1, 0)],
            &[],
            &t(0),
        );
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, READY).reason, "NoPodsMatched");
    }

    #[test]
    fn failures_degrade_and_name_nodes_within_bounds() {
        let mut reps = vec![
            report("a", NodePhase::Running, 1, 1),
            report("b", NodePhase::Unsupported, 1, 0),
        ];
        reps[1].message = Some("kernel lacks tp_btf/tcp_retransmit_skb".into());
        let s = deployed(1, TYPES, &nodes(&["a", "b"]), &reps, &[], &t(0));
        let d = cond(&s, DEGRADED);
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "Unsupported"));
        assert!(d.message.contains("Unsupported on b: kernel lacks"), "{}", d.message);

        let many: Vec<_> = (0..400)
            .map(|i| {
                let mut r = report(&format!("node-{i:03}"), NodePhase::Failed, 1, 0);
                r.message = Some("x".repeat(50));
                r
            })
            .collect();
        let exp: BTreeSet<String> = many.iter().map(|r| r.node_name.clone()).collect();
        let s = deployed(1, TYPES, &exp, &many, &[], &t(0));
        assert!(cond(&s, DEGRADED).message.len() <= MAX_MESSAGE);
        assert!(cond(&s, DEGRADED).message.contains("and 395 more nodes"));
        assert!(cond(&s, READY).message.len() <= MAX_MESSAGE);
        assert_eq!(cond(&s, DEGRADED).reason, "NodeFailed");
    }

    #[test]
    fn unexpected_nodes_do_not_count_and_no_nodes_is_explained() {
        let s = deployed(
            1,
            TYPES,
            &nodes(&["a"]),
            &[
                report("a", NodePhase::Running, 1, 1),
                report("gone", NodePhase::Failed, 1, 9),
            ],
            &[],
            &t(0),
        );
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, DEGRADED).status, "False");
        assert_eq!(s.pods_matched, Some(1));
        let s = deployed(1, TYPES, &nodes(&[]), &[], &[], &t(0));
        assert_eq!(cond(&s, READY).reason, "NoMatchingNodes");
    }

    #[test]
    fn transition_time_holds_while_status_holds() {
        let exp = nodes(&["a"]);
        let reps = [report("a", NodePhase::Running, 1, 1)];
        let first = deployed(1, TYPES, &exp, &reps, &[], &t(100));
        let again = deployed(1, TYPES, &exp, &reps, &first.conditions, &t(200));
        assert_eq!(first, again, "unchanged input, unchanged status: no write");
        let flipped = deployed(1, TYPES, &exp, &[], &first.conditions, &t(300));
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
