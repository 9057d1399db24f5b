//! TcpConnectLatency, API side: histogram options and their defaults.

use crate::error::FieldError;
use crate::probes::histogram::{HistogramOptions, HistogramPlan, buckets};

/// Connect latency buckets (seconds): sub-millisecond on a LAN up to the
/// 1 s, 3 s, 7 s of SYN retransmissions.
pub const DEFAULT_CONNECT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(crate) fn plan(opts: Option<&HistogramOptions>, field: &str) -> Result<HistogramPlan, Vec<FieldError>> {
    Ok(HistogramPlan {
        buckets: buckets(opts, DEFAULT_CONNECT_BUCKETS, field)?,
    })
}
