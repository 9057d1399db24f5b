//! Program: a user's own object (`crate::kernel::programs` loads it and
//! reads its maps). Here its maps' entries become series: each key decoded
//! field by field (ebpf_exporter's decoders, with netprobe's `pod`), only
//! for the targets the plan selects, so a Program's series, like every
//! other type's, name only pods its probe may see.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_api::probes::ProgramMetricPlan;
use netprobe_api::probes::program::{Decoder, ProgramMetricKind};
use prometheus::proto::{Bucket, Histogram, MetricType};

use super::{Acc, FamilySpec, Fill, Hook, KernelFacts, ProbeKind};

/// One target's entries in a plan's metric maps: raw key and value (summed
/// over CPUs), by metric name.
#[derive(Clone, Debug, Default)]
pub struct SlotEntries {
    pub metrics: BTreeMap<String, Vec<(Vec<u8>, u64)>>,
    /// Values of each kernel_enum decoder's enum, by enum name.
    pub enums: Arc<BTreeMap<String, BTreeMap<u64, String>>>,
}

/// A plan's metric maps at one snapshot, by slot.
#[derive(Clone, Debug, Default)]
pub struct ProgramCounters {
    pub by_slot: BTreeMap<u32, SlotEntries>,
    /// Metrics whose map held more entries than the agent reads per scrape.
    pub truncated: BTreeSet<String>,
}

pub struct Program;

impl ProbeKind for Program {
    fn tracepoints(&self) -> &'static [&'static str] {
        &[]
    }

    /// None of the agent's own: each plan brings its object.
    fn programs(&self, _facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        Ok(Vec::new())
    }

    fn metrics(&self) -> &'static [u16] {
        &[]
    }

    fn families(&self, p: &PlannedProbe, _bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec> {
        let PlannedProbe::Program(pp) = p else {
            return Vec::new();
        };
        pp.metrics
            .iter()
            .map(|m| FamilySpec {
                probe: ProbeType::Program,
                name: Cow::Owned(m.name.clone()),
                help: Cow::Owned(m.help.clone()),
                kind: match m.kind {
                    ProgramMetricKind::Counter => MetricType::COUNTER,
                    ProgramMetricKind::Histogram => MetricType::HISTOGRAM,
                },
                extra_labels: m.label_names().into_iter().map(Cow::Owned).collect(),
                peers: None,
                bounds: None,
                allow: None,
                program: Some(Arc::new(m.clone())),
            })
            .collect()
    }

    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        let (Some(m), Some(entries)) = (&f.program, out.counters.program) else {
            return;
        };
        let Some(list) = entries.metrics.get(&m.name) else {
            return;
        };
        for (key, v) in list {
            let Some((labels, bucket)) = decode(m, key, &entries.enums) else {
                continue;
            };
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            match (m.kind, bucket) {
                (ProgramMetricKind::Counter, _) => out.add(&labels, *v),
                (ProgramMetricKind::Histogram, Some(b)) => {
                    let e = out.series.entry((out.key)(&labels)).or_default();
                    match b {
                        KeyBucket::Sum => e.sum_ns = e.sum_ns.wrapping_add(*v),
                        KeyBucket::Index(i) => {
                            let i = u16::try_from(i.min(m.bounds.len() as u64)).unwrap_or(u16::MAX);
                            *e.buckets.entry(i).or_default() += v;
                        }
                    }
                }
                (ProgramMetricKind::Histogram, None) => {}
            }
        }
    }
}

/// A histogram key's bucket field: an index, or the sum's entry (every bit
/// set, netprobe.h's NP_BUCKET_SUM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyBucket {
    Index(u64),
    Sum,
}

fn uint(b: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = b.len().min(8);
    // Host byte order: the program wrote the field natively.
    if cfg!(target_endian = "little") {
        buf[..n].copy_from_slice(&b[..n]);
        u64::from_le_bytes(buf)
    } else {
        buf[8 - n..].copy_from_slice(&b[..n]);
        u64::from_be_bytes(buf)
    }
}

/// A key's label values (after the owner labels, in the family's order) and
/// a histogram's bucket; None when the key is shorter than its labels say.
pub fn decode(
    m: &ProgramMetricPlan,
    key: &[u8],
    enums: &BTreeMap<String, BTreeMap<u64, String>>,
) -> Option<(Vec<String>, Option<KeyBucket>)> {
    let mut out = Vec::new();
    let mut bucket = None;
    let mut off = 0usize;
    let last = m.labels.len().saturating_sub(1);
    for (j, l) in m.labels.iter().enumerate() {
        let size = l.size as usize;
        let field = key.get(off..off + size)?;
        off += size;
        if m.kind == ProgramMetricKind::Histogram && j == last {
            let v = uint(field);
            let all_ones = if size >= 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 };
            bucket = Some(if v == all_ones {
                KeyBucket::Sum
            } else {
                KeyBucket::Index(v)
            });
            continue;
        }
        let value = match l.decoder {
            Decoder::Pod | Decoder::Skip => continue,
            Decoder::Uint => uint(field).to_string(),
            Decoder::Port => u16::from_be_bytes([field[0], field[1]]).to_string(),
            Decoder::InetIp => match size {
                4 => Ipv4Addr::new(field[0], field[1], field[2], field[3]).to_string(),
                _ => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(field);
                    let ip = Ipv6Addr::from(a);
                    ip.to_ipv4_mapped().map_or_else(|| ip.to_string(), |v4| v4.to_string())
                }
            },
            Decoder::KernelEnum => {
                let v = uint(field);
                l.kernel_enum
                    .as_ref()
                    .and_then(|e| enums.get(e))
                    .and_then(|names| names.get(&v))
                    .cloned()
                    .unwrap_or_else(|| v.to_string())
            }
            Decoder::StaticMap => l
                .static_map
                .as_ref()
                .and_then(|s| s.get(&uint(field).to_string()))
                .cloned()
                .unwrap_or_else(|| "unknown".to_string()),
        };
        out.push(value);
    }
    Some((out, bucket))
}

/// A program histogram's Prometheus value: bucket i's bound is the plan's
/// `bounds[i]` (already in the exported unit), the count includes the +Inf
/// bucket, the sum is the program's times the multiplier.
pub fn histogram(acc: &Acc, m: &ProgramMetricPlan) -> Histogram {
    let mut h = Histogram::default();
    h.set_sample_count(acc.buckets.values().sum());
    h.set_sample_sum(acc.sum_ns as f64 * m.multiplier);
    let mut cumulative = 0u64;
    let mut buckets = Vec::new();
    for (i, b) in m.bounds.iter().enumerate() {
        cumulative += acc.buckets.get(&(i as u16)).copied().unwrap_or(0);
        let mut bk = Bucket::default();
        bk.set_upper_bound(*b);
        bk.set_cumulative_count(cumulative);
        buckets.push(bk);
    }
    h.set_bucket(buckets);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use netprobe_api::probes::program::ProgramLabel;

    fn label(name: &str, size: u32, decoder: Decoder) -> ProgramLabel {
        ProgramLabel::new(name, size, decoder)
    }

    fn metric(kind: ProgramMetricKind, labels: Vec<ProgramLabel>) -> ProgramMetricPlan {
        ProgramMetricPlan {
            name: "app_x".into(),
            help: String::new(),
            kind,
            map: "m".into(),
            labels,
            bounds: vec![1.0, 2.0, 4.0],
            multiplier: 0.5,
        }
    }

    #[test]
    fn every_decoder_reads_its_field() {
        let mut state = label("state", 2, Decoder::StaticMap);
        state.static_map = Some(BTreeMap::from([("1".into(), "ESTABLISHED".into())]));
        let mut reason = label("reason", 4, Decoder::KernelEnum);
        reason.kernel_enum = Some("skb_drop_reason".into());
        let m = metric(
            ProgramMetricKind::Counter,
            vec![
                label("", 4, Decoder::Pod),
                state,
                label("", 2, Decoder::Skip),
                label("daddr", 4, Decoder::InetIp),
                label("dport", 2, Decoder::Port),
                label("n", 8, Decoder::Uint),
                reason,
                label("v6", 16, Decoder::InetIp),
            ],
        );
        let mut key = Vec::new();
        key.extend_from_slice(&9u32.to_ne_bytes());
        key.extend_from_slice(&1u16.to_ne_bytes());
        key.extend_from_slice(&[0xff, 0xff]);
        key.extend_from_slice(&[10, 0, 0, 7]);
        key.extend_from_slice(&443u16.to_be_bytes());
        key.extend_from_slice(&12345u64.to_ne_bytes());
        key.extend_from_slice(&3u32.to_ne_bytes());
        key.extend_from_slice(&"fd20::1".parse::<Ipv6Addr>().expect("ip").octets());
        let enums = BTreeMap::from([(
            "skb_drop_reason".to_string(),
            BTreeMap::from([(3u64, "NO_SOCKET".to_string())]),
        )]);
        let (labels, bucket) = decode(&m, &key, &enums).expect("decodes");
        assert_eq!(
            labels,
            vec!["ESTABLISHED", "10.0.0.7", "443", "12345", "NO_SOCKET", "fd20::1"]
        );
        assert_eq!(bucket, None);
        assert_eq!(m.label_names(), vec!["state", "daddr", "dport", "n", "reason", "v6"]);
        // Unknown values: static maps say unknown, enums their number.
        key[4..6].copy_from_slice(&2u16.to_ne_bytes());
        key[22..26].copy_from_slice(&99u32.to_ne_bytes());
        let (labels, _) = decode(&m, &key, &enums).expect("decodes");
        assert_eq!(labels[0], "unknown");
        assert_eq!(labels[4], "99");
        // A short key is not decoded.
        assert!(decode(&m, &key[..10], &enums).is_none());
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_the_rest_in_the_count() {
        let m = metric(
            ProgramMetricKind::Histogram,
            vec![label("", 4, Decoder::Pod), label("bucket", 4, Decoder::Uint)],
        );
        let enums = BTreeMap::new();
        let key = |b: u32| {
            let mut k = 1u32.to_ne_bytes().to_vec();
            k.extend_from_slice(&b.to_ne_bytes());
            k
        };
        assert_eq!(
            decode(&m, &key(2), &enums).map(|d| d.1),
            Some(Some(KeyBucket::Index(2)))
        );
        assert_eq!(
            decode(&m, &key(u32::MAX), &enums).map(|d| d.1),
            Some(Some(KeyBucket::Sum))
        );
        let acc = Acc {
            value: 0,
            // 3 in bucket 0, 1 in bucket 2, 2 past the bounds (+Inf).
            buckets: BTreeMap::from([(0, 3), (2, 1), (3, 2)]),
            sum_ns: 40,
        };
        let h = histogram(&acc, &m);
        let cum: Vec<u64> = h.get_bucket().iter().map(|b| b.cumulative_count()).collect();
        assert_eq!(cum, vec![3, 3, 4]);
        assert_eq!(h.get_sample_count(), 6);
        assert_eq!(h.get_sample_sum(), 20.0);
    }
}
