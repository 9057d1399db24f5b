//! What the latency histograms (TcpConnectLatency, TcpRtt) share: bounds in
//! the kernel's union, and one series per target from bucket and sum counters.

use std::collections::BTreeMap;

use prometheus::proto::MetricType;

use super::{FamilySpec, Fill, Needs, to_ns};
use netprobe_api::ProbeType;

pub(super) fn needs(index: u32, buckets: &[f64], needs: &mut Needs) {
    needs
        .bounds
        .entry(index)
        .or_default()
        .extend(buckets.iter().map(|b| to_ns(*b)));
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
