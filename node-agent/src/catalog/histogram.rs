//! What the latency histograms (TcpConnectLatency, TcpRtt) share: bounds in
//! the kernel's union, and one series per target from bucket and sum counters.

use std::collections::BTreeMap;

use prometheus::proto::MetricType;

use super::{FamilySpec, Needs, Series, TargetCounters, to_ns};
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

pub(super) fn fill(
    series: &mut Series,
    key: &dyn Fn(&[&str]) -> Vec<String>,
    c: TargetCounters<'_>,
    bucket_metric: u16,
    sum_metric: u16,
) {
    let mut buckets: BTreeMap<u16, u64> = BTreeMap::new();
    for (sub, v) in c.of(bucket_metric) {
        *buckets.entry(sub).or_default() += v;
    }
    if buckets.is_empty() {
        return;
    }
    let e = series.entry(key(&[])).or_default();
    e.sum_ns += c.of(sum_metric).map(|(_, v)| v).sum::<u64>();
    for (b, n) in buckets {
        *e.buckets.entry(b).or_default() += n;
    }
}
