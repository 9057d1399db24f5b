//! What the latency histograms (TcpConnectLatency, TcpRtt) share: the
//! kernel counts on every bound of the grid (`bound_grid_ns`), always, and
//! each plan's buckets are exact sums of those counts; one series per target
//! from bucket and sum counters.

use std::collections::BTreeMap;

use prometheus::proto::MetricType;

use super::{FamilySpec, Fill, Needs};
use netprobe_api::ProbeType;

/// Every plan needs the whole grid, whatever its own buckets (validated to
/// lie on it): the kernel's bounds then never change with another plan, so
/// no plan's histogram restarts or loses exactness because of another.
pub(super) fn needs(index: u32, needs: &mut Needs) {
    let grid = netprobe_api::probes::histogram::bound_grid_ns();
    needs.bounds.entry(index).or_default().extend(grid);
}

pub(super) fn family(
    probe: ProbeType,
    name: &'static str,
    help: &'static str,
    plan_buckets: &[f64],
    index: u32,
    bounds: &BTreeMap<u32, Vec<u64>>,
) -> FamilySpec {
    FamilySpec {
        probe,
        name,
        help,
        kind: MetricType::HISTOGRAM,
        extra_labels: &[],
        bounds: Some((plan_buckets.to_vec(), bounds.get(&index).cloned().unwrap_or_default())),
        allow: None,
    }
}

pub(super) fn fill(out: &mut Fill<'_>, bucket_metric: u16, sum_metric: u16) {
    let mut buckets: BTreeMap<u16, u64> = BTreeMap::new();
    for (sub, v) in out.counters.of(bucket_metric) {
        *buckets.entry(sub).or_default() += v;
    }
    if buckets.is_empty() {
        return;
    }
    let sum = out.counters.of(sum_metric).map(|(_, v)| v).sum::<u64>();
    let e = out.series.entry((out.key)(&[])).or_default();
    e.sum_ns += sum;
    for (b, n) in buckets {
        *e.buckets.entry(b).or_default() += n;
    }
}
