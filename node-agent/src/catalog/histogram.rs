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
    extra_labels: &'static [&'static str],
) -> FamilySpec {
    FamilySpec {
        probe,
        name: name.into(),
        help: help.into(),
        kind: MetricType::HISTOGRAM,
        extra_labels: extra_labels.iter().map(|l| (*l).into()).collect(),
        peers: None,
        bounds: Some((plan_buckets.to_vec(), bounds.get(&index).cloned().unwrap_or_default())),
        allow: None,
        program: None,
    }
}

/// One series per target; a histogram kept in parts (DNS by query type:
/// bucket `sub` = part × 256 + bucket index, sum `sub` = part) is summed.
pub(super) fn fill(out: &mut Fill<'_>, bucket_metric: u16, sum_metric: u16) {
    fill_parts(out, bucket_metric, sum_metric, None);
}

/// One series per part, labelled `label(part)`, or with `label` None one
/// series for all parts.
pub(super) fn fill_parts(
    out: &mut Fill<'_>,
    bucket_metric: u16,
    sum_metric: u16,
    label: Option<&dyn Fn(u16) -> &'static str>,
) {
    let part_of = |sub: u16| if label.is_some() { sub } else { 0 };
    let mut parts: BTreeMap<u16, (u64, BTreeMap<u16, u64>)> = BTreeMap::new();
    for (sub, v) in out.counters.of(bucket_metric) {
        let p = parts.entry(part_of(sub >> 8)).or_default();
        *p.1.entry(sub & 0xff).or_default() += v;
    }
    for (sub, v) in out.counters.of(sum_metric) {
        if let Some(p) = parts.get_mut(&part_of(sub)) {
            p.0 += v;
        }
    }
    for (part, (sum, buckets)) in parts {
        let extra: Vec<&str> = label.map(|l| vec![l(part)]).unwrap_or_default();
        let e = out.series.entry((out.key)(&extra)).or_default();
        e.sum_ns += sum;
        for (b, n) in buckets {
            *e.buckets.entry(b).or_default() += n;
        }
    }
}
