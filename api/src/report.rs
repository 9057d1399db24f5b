//! The per-node report: what one node's agent says about every probe it
//! runs, in one cluster-scoped object named after the node.
//!
//! Why one object per node and not entries in each probe's status: every
//! writer of an object adds a `managedFields` entry, so per-node entries in
//! a probe's status cost ~740 bytes per node and reach etcd's request limit
//! near 2,000 nodes, and every agent's write rewrote the whole probe object.
//! A node's report is written only by its agent (one write per change,
//! whatever the number of probes), its status subresource is the agent's
//! heartbeat, and it is owned by its Node, so it goes when the Node goes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::ProbeId;
use crate::status::NodeProbeStatus;

/// How often an agent renews its report's heartbeat by default.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 15;
/// A report whose heartbeat the operator has not seen renewed for this long
/// counts as not reporting: three heartbeats, so that with the operator's
/// 5 s sweep a dead agent shows within 60 s.
pub const NOT_REPORTING_AFTER_SECS: u64 = 45;

/// What one node's agent reports about each probe it runs (or failed to
/// run). Named after the node; written only by that node's agent.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "netprobe.dev",
    version = "v1alpha1",
    kind = "NetworkProbeNodeReport",
    plural = "networkprobenodereports",
    shortname = "npreport",
    category = "netprobe",
    status = "NodeReportStatus",
    printcolumn(
        name = "Probes",
        type_ = "integer",
        json_path = ".spec.probeCount",
        description = "Probes this node reports on"
    ),
    printcolumn(
        name = "Heartbeat",
        type_ = "date",
        json_path = ".status.heartbeatTime",
        description = "When the agent last renewed its heartbeat"
    ),
    printcolumn(name = "Stopping", type_ = "boolean", json_path = ".status.stopping")
)]
#[serde(rename_all = "camelCase")]
pub struct NodeReportSpec {
    /// Number of entries in probes (printer column).
    #[serde(default)]
    pub probe_count: i64,
    /// One entry per probe whose plan this node has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeReport>,
}

/// One probe on this node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// Which probe.
    #[serde(flatten)]
    pub probe: ProbeId,
    /// The probe's state on this node.
    #[serde(flatten)]
    pub state: NodeProbeStatus,
}

/// The agent's liveness, written on the status subresource so a heartbeat
/// never changes the report's generation (the operator re-aggregates probes
/// on generation changes only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeReportStatus {
    /// When the agent last renewed its heartbeat (every 15 s by default).
    /// The operator judges liveness by when it saw this change, not by
    /// comparing clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_time: Option<Time>,
    /// True once the agent is shutting down: its node counts as not
    /// reporting at once, without waiting for the heartbeat to lapse.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}
