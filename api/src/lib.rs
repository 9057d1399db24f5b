//! The netprobe API: what a user declares (`NetworkProbe`, `ClusterNetworkProbe`),
//! what the operator hands to agents (`ProbePlan`), and the pure helpers both
//! sides need to agree on (selector matching, validation, well-known keys).
//!
//! Nothing in this crate performs I/O, so the operator, the agent and the tests
//! all share exactly one definition of meaning.

pub mod error;
pub mod keys;
pub mod peerindex;
pub mod plan;
pub mod probes;
pub mod report;
pub mod selector;
pub mod source;
pub mod spec;
pub mod status;
pub mod validate;

pub use error::{FieldError, summarize};
pub use plan::{PLAN_FORMAT_VERSION, PlanError, PlanScope, PlanSource, PlannedProbe, ProbePlan};
pub use probes::histogram::HistogramOptions;
pub use probes::packet_drops::PacketDropsOptions;
pub use probes::tcp_retransmits::TcpRetransmitsOptions;
pub use report::{NetworkProbeNodeReport, NodeReportSpec, NodeReportStatus, ProbeReport};
pub use source::{ProbeId, SourceKind};
pub use spec::{
    ClusterNetworkProbe, ClusterNetworkProbeSpec, Granularity, MetricsSpec, NetworkProbe, NetworkProbeSpec, Probe,
    ProbeType,
};
pub use status::{NodeCounts, NodePhase, NodeProbeStatus, ProbeStatus, ProblemNode};
pub use validate::validate_spec;
