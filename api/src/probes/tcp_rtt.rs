//! TcpRtt, API side: histogram options and their defaults.

use crate::error::FieldError;
use crate::probes::histogram::{HistogramOptions, HistogramPlan, buckets};

/// Smoothed RTT buckets (seconds): tens of microseconds on veth up to a second.
pub const DEFAULT_RTT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

pub(crate) fn plan(opts: Option<&HistogramOptions>, field: &str) -> Result<HistogramPlan, Vec<FieldError>> {
    Ok(HistogramPlan {
        buckets: buckets(opts, DEFAULT_RTT_BUCKETS, field)?,
    })
}
