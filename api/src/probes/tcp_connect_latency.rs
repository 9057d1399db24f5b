//! TcpConnectLatency, API side: histogram and peer options and their defaults.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::probes::histogram::{HistogramOptions, HistogramPlan, buckets};
use crate::probes::peers::{self, PeersOptions, PeersPlan};

/// Connect latency buckets (seconds): sub-millisecond on a LAN up to the
/// 1 s, 3 s, 7 s of SYN retransmissions.
pub const DEFAULT_CONNECT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Options of a TcpConnectLatency probe.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TcpConnectLatencyOptions {
    /// The latency histogram's buckets.
    #[serde(flatten)]
    pub histogram: HistogramOptions,

    /// Label the latency histogram and the failures with where the other
    /// end is, in bounded classes (the pod is always the client here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersOptions>,
}

/// A planned TcpConnectLatency probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TcpConnectLatencyPlan {
    #[serde(flatten)]
    pub histogram: HistogramPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersPlan>,
}

pub(crate) fn plan(
    opts: Option<&TcpConnectLatencyOptions>,
    field: &str,
) -> Result<TcpConnectLatencyPlan, Vec<FieldError>> {
    let bounds = buckets(opts.map(|o| &o.histogram), DEFAULT_CONNECT_BUCKETS, field);
    let peers = peers::plan_opt(opts.and_then(|o| o.peers.as_ref()), field);
    match (bounds, peers) {
        (Ok(buckets), Ok(peers)) => Ok(TcpConnectLatencyPlan {
            histogram: HistogramPlan { buckets },
            peers,
        }),
        (a, b) => Err(a
            .err()
            .into_iter()
            .flatten()
            .chain(b.err().into_iter().flatten())
            .collect()),
    }
}
