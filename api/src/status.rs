//! Status of both kinds. `nodes[]` is written by agents (one entry each,
//! server-side apply keyed by `nodeName`); everything else by the operator.

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

    /// One entry per node that runs (or tried to run) the probe, each written
    /// by that node's agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["nodeName".into()]))]
    pub nodes: Vec<NodeProbeStatus>,

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

/// What one node's agent reports about one probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeProbeStatus {
    /// The node this entry belongs to.
    pub node_name: String,
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
