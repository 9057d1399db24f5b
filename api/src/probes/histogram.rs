//! Histogram options, shared by the latency probe types.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Histogram options of a latency probe.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HistogramOptions {
    /// Upper bounds of the histogram buckets, in seconds, strictly increasing
    /// and positive. Defaults to a set suited to the probe type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(b, b > 0.0)").message("buckets must be positive"))]
    #[x_kube(validation = Rule::new("self.all(b, self.exists_one(c, c == b)) && self.isSorted()").message("buckets must be strictly increasing"))]
    pub buckets: Option<Vec<f64>>,
}

/// A planned latency histogram: its bucket bounds in seconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistogramPlan {
    pub buckets: Vec<f64>,
}

/// The bounds of `opts` (or `default`), checked; `field` names the options.
pub(crate) fn buckets(
    opts: Option<&HistogramOptions>,
    default: &[f64],
    field: &str,
) -> Result<Vec<f64>, Vec<FieldError>> {
    let b = opts.and_then(|o| o.buckets.clone()).unwrap_or_else(|| default.to_vec());
    let f = format!("{field}.buckets");
    let mut errors = Vec::new();
    if b.is_empty() || b.len() > 32 {
        errors.push(FieldError::new(&f, "must hold 1 to 32 bounds"));
    }
    if b.iter().any(|x| !x.is_finite() || *x <= 0.0) {
        errors.push(FieldError::new(&f, "bounds must be positive finite numbers of seconds"));
    }
    if b.windows(2).any(|w| w[0] >= w[1]) {
        errors.push(FieldError::new(&f, "bounds must be strictly increasing"));
    }
    if errors.is_empty() { Ok(b) } else { Err(errors) }
}
