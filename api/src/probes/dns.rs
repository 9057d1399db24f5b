//! Dns, API side: histogram options, the query-type label, and their
//! defaults. The server ports and the timeout are the agent's settings, the
//! same for every tenant on a node: per-probe ports or timeouts merged on a
//! node would let one tenant's spec change what another's probe counts.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::probes::histogram::{HistogramOptions, HistogramPlan, buckets};

/// DNS response-time buckets (seconds): a node-local cache answers in well
/// under a millisecond, a cluster resolver in a few, upstream recursion in
/// tens to hundreds, and resolvers retry after 1 to 5 s.
pub const DEFAULT_DNS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Options of a Dns probe.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DnsOptions {
    /// The response-time histogram's buckets.
    #[serde(flatten)]
    pub histogram: HistogramOptions,

    /// Label every DNS series with the query type (`qtype`: A, AAAA, SRV,
    /// PTR or other), so an AAAA lookup that times out is told from an A
    /// one. Multiplies the probe's DNS series by up to five.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtype: Option<bool>,
}

/// A planned Dns probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DnsPlan {
    #[serde(flatten)]
    pub histogram: HistogramPlan,
    /// Series carry the `qtype` label.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qtype: bool,
}

pub(crate) fn plan(opts: Option<&DnsOptions>, field: &str) -> Result<DnsPlan, Vec<FieldError>> {
    Ok(DnsPlan {
        histogram: HistogramPlan {
            buckets: buckets(opts.map(|o| &o.histogram), DEFAULT_DNS_BUCKETS, field)?,
        },
        qtype: opts.and_then(|o| o.qtype).unwrap_or(false),
    })
}
