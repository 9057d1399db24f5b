//! Histogram options, shared by the latency probe types.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Mantissas, times ten, of the bounds netprobe counts exactly.
const MANTISSAS_X10: [u64; 6] = [10, 20, 25, 30, 50, 75];
/// The smallest and largest bound: 1 µs and one hour, in nanoseconds.
pub const MIN_BOUND_NS: u64 = 1_000;
pub const MAX_BOUND_NS: u64 = 3_600_000_000_000;

/// Every bound a histogram may use, in nanoseconds: 1, 2, 2.5, 3, 5 and 7.5
/// times a power of ten from 1 µs, and one hour (59 bounds). The kernel
/// counts on all of them, always, so each probe's buckets are an exact sum
/// of kernel buckets and nothing another probe asks for changes them (a
/// node-wide union of the probes' own bounds was cut at 64, and one tenant's
/// bounds could rewrite another's histogram). Prometheus' and
/// OpenTelemetry's default buckets are all on it.
pub fn bound_grid_ns() -> Vec<u64> {
    let mut out = Vec::new();
    let mut decade = MIN_BOUND_NS / 10;
    while decade * 10 <= MAX_BOUND_NS {
        out.extend(MANTISSAS_X10.iter().map(|m| m * decade).filter(|v| *v <= MAX_BOUND_NS));
        decade *= 10;
    }
    out.push(MAX_BOUND_NS);
    out.sort_unstable();
    out.dedup();
    out
}

/// The CEL rule that admits only bounds on [`bound_grid_ns`].
fn grid_rule() -> String {
    let list: Vec<String> = bound_grid_ns()
        .into_iter()
        .map(|ns| {
            let s = format!("{}", ns as f64 / 1e9);
            if s.contains(['.', 'e']) { s } else { format!("{s}.0") }
        })
        .collect();
    format!("self.all(b, b in [{}])", list.join(", "))
}

/// Histogram options of a latency probe.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HistogramOptions {
    /// Upper bounds of the histogram buckets, in seconds, strictly
    /// increasing, each 1, 2, 2.5, 3, 5 or 7.5 times a power of ten from
    /// 0.000001 (1 µs) up to 3600 (one hour, itself allowed): the bounds the
    /// kernel counts exactly for every probe at once. Defaults to a set
    /// suited to the probe type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(b, b > 0.0)").message("buckets must be positive"))]
    #[x_kube(validation = Rule::new("self.all(b, self.exists_one(c, c == b)) && self.isSorted()").message("buckets must be strictly increasing"))]
    #[x_kube(validation = Rule::new(grid_rule()).message("each bucket bound must be 1, 2, 2.5, 3, 5 or 7.5 times a power of ten seconds, from 0.000001 to 3600 (or 3600 itself)"))]
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
    let grid = bound_grid_ns();
    for (i, x) in b.iter().enumerate().filter(|(_, x)| x.is_finite() && **x > 0.0) {
        let ns = x * 1e9;
        if grid.iter().any(|g| (*g as f64 - ns).abs() < 1e-3) {
            continue;
        }
        let below = grid.iter().rev().find(|g| (**g as f64) < ns);
        let above = grid.iter().find(|g| (**g as f64) > ns);
        let near: Vec<String> = below
            .into_iter()
            .chain(above)
            .map(|g| format!("{}", *g as f64 / 1e9))
            .collect();
        let why = if ns < MIN_BOUND_NS as f64 {
            "is below 1 µs (0.000001 s), finer than netprobe measures".to_string()
        } else if ns > MAX_BOUND_NS as f64 {
            "is above one hour (3600 s)".to_string()
        } else {
            format!(
                "is not a bound netprobe counts exactly (1, 2, 2.5, 3, 5 or 7.5 times a power of ten seconds); nearest: {}",
                near.join(" or ")
            )
        };
        errors.push(FieldError::new(format!("{f}[{i}]"), format!("{x} {why}")));
    }
    if errors.is_empty() { Ok(b) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_holds_the_common_defaults_and_fits_the_kernel() {
        let g = bound_grid_ns();
        assert_eq!(g.len(), 59);
        assert!(g.len() <= 64, "the kernel's bound limit");
        assert_eq!((g[0], g[g.len() - 1]), (MIN_BOUND_NS, MAX_BOUND_NS));
        // Prometheus' default buckets and OpenTelemetry's (in ms).
        for b in [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 0.075, 0.75, 7.5,
        ] {
            assert!(
                buckets(Some(&HistogramOptions { buckets: Some(vec![b]) }), &[], "f").is_ok(),
                "{b}"
            );
        }
    }

    #[test]
    fn bounds_off_the_grid_or_out_of_range_name_the_bound() {
        let check = |b: Vec<f64>| {
            buckets(
                Some(&HistogramOptions { buckets: Some(b) }),
                &[],
                "spec.probes[0].tcpRtt",
            )
        };
        let e = check(vec![0.001, 0.004]).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].to_string().contains("spec.probes[0].tcpRtt.buckets[1]"), "{e:?}");
        assert!(e[0].to_string().contains("nearest: 0.003 or 0.005"), "{e:?}");
        let e = check(vec![1e-12]).unwrap_err();
        assert!(e[0].to_string().contains("below 1 µs"), "{e:?}");
        let e = check(vec![1e300]).unwrap_err();
        assert!(e[0].to_string().contains("above one hour"), "{e:?}");
        assert!(check(vec![0.000001, 3600.0]).is_ok());
    }
}
