//! Dns, API side: histogram options and their defaults. The server ports
//! and the timeout are the agent's settings, the same for every tenant on a
//! node: per-probe ports or timeouts merged on a node would let one
//! tenant's spec change what another's probe counts.

use crate::error::FieldError;
use crate::probes::histogram::{HistogramOptions, HistogramPlan, buckets};

/// DNS response-time buckets (seconds): a node-local cache answers in well
/// under a millisecond, a cluster resolver in a few, upstream recursion in
/// tens to hundreds, and resolvers retry after 1 to 5 s.
pub const DEFAULT_DNS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

pub(crate) fn plan(opts: Option<&HistogramOptions>, field: &str) -> Result<HistogramPlan, Vec<FieldError>> {
    Ok(HistogramPlan {
        buckets: buckets(opts, DEFAULT_DNS_BUCKETS, field)?,
    })
}
