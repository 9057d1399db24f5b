//! Status of both kinds, written by the operator only, from the nodes'
//! reports (`report.rs`). Bounded whatever the cluster size: counts, and at
//! most [`MAX_PROBLEM_NODES`] named nodes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a probe, aggregated by the operator from the agents'
/// per-node reports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStatus {
    /// The generation of the spec the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Degraded and InvalidSpec conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// How the nodes expected to run the probe are doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_counts: Option<NodeCounts>,

    /// Up to 10 nodes that are not running the current generation, with
    /// why; the counts say how many there are in all. Per-node detail is in
    /// each node's NetworkProbeNodeReport.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub problem_nodes: Vec<ProblemNode>,

    /// Probe types of the current spec, comma-separated (printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_types: Option<String>,

    /// Nodes running the current generation over nodes expected to, as
    /// "ready/expected" (printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_ready: Option<String>,

    /// Pods matched, summed over nodes (printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_matched: Option<i64>,
}

/// Most nodes a probe's status names.
pub const MAX_PROBLEM_NODES: usize = 10;

/// Nodes by how they run a probe. Every expected node is in exactly one of
/// running, pending, failed and notReporting; partial counts those running
/// nodes whose kernel gives the probe only part of its events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    /// Nodes whose labels match the probe's nodeSelector.
    pub expected: i64,
    /// Running the current generation (Running or Partial).
    pub running: i64,
    /// Running, but their kernel hides part of the events.
    #[serde(default)]
    pub partial: i64,
    /// Reporting, but not (yet) running the current generation.
    #[serde(default)]
    pub pending: i64,
    /// Failed or Unsupported.
    #[serde(default)]
    pub failed: i64,
    /// No live report: the agent is stopped, stopping, or has not renewed
    /// its heartbeat for 60 s.
    #[serde(default)]
    pub not_reporting: i64,
}

/// A node that is not fine, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemNode {
    /// The node.
    pub name: String,
    /// Pending, Failed, Unsupported, Partial or NotReporting.
    pub phase: String,
    /// Human-readable detail, at most 256 characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What one node's agent reports about one probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeProbeStatus {
    /// Pending, Running, Partial, Failed or Unsupported.
    pub phase: NodePhase,
    /// The plan generation (the source's metadata.generation) this node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// Pods on this node the probe selects.
    #[serde(default)]
    pub pods_matched: i64,
    /// eBPF programs attached for this probe on this node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<String>,
    /// True when the node hit metrics.maxSeriesPerNode and counts further
    /// events in the overflow series.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub series_budget_exhausted: bool,
    /// Machine-readable reason for the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the phase last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Phase of a probe on one node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum NodePhase {
    /// The agent has the plan but has not finished applying it.
    Pending,
    /// Every probe type of the plan is attached at the applied generation.
    Running,
    /// The agent could not apply the plan (for example it could not decode it).
    Failed,
    /// The node's kernel lacks a feature a probe type needs; reason names it.
    Unsupported,
    /// Running, but the node's kernel gives a probe type only part of the
    /// events its kernel counter counts; the message names what is missing.
    Partial,
}

impl NodePhase {
    /// The name written to status.
    pub fn as_str(self) -> &'static str {
        match self {
            NodePhase::Pending => "Pending",
            NodePhase::Running => "Running",
            NodePhase::Failed => "Failed",
            NodePhase::Unsupported => "Unsupported",
            NodePhase::Partial => "Partial",
        }
    }
}
