//! PacketDrops: packets the kernel dropped, by drop reason, per pod (by the
//! socket's cgroup, or the device's network namespace before socket lookup).
//! Kernel side: `tp_btf/kfree_skb` in `ebpf/src/bpf/probes/packet_drops.bpf.c`.

use std::collections::BTreeMap;

use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_ebpf::layout::{DROP_SUBSYSTEM, metric};
use netprobe_ebpf::programs;

use super::{FamilySpec, Fill, Hook, KernelFacts, ProbeKind};

/// Names of kernel drop reasons, by value (from the kernel's BTF).
pub type ReasonNames = BTreeMap<u16, String>;

/// Drop reason names from the kernel's `enum skb_drop_reason`, without the
/// `SKB_DROP_REASON_` prefix.
pub fn drop_reason_names(btf: &netprobe_ebpf::btf::Btf) -> ReasonNames {
    btf.enum_values("skb_drop_reason")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(n, v)| {
            let v = u16::try_from(v).ok()?;
            Some((v, n.strip_prefix("SKB_DROP_REASON_").unwrap_or(&n).to_string()))
        })
        .collect()
}

pub struct PacketDrops;

impl ProbeKind for PacketDrops {
    fn tracepoints(&self) -> &'static [&'static str] {
        &["kfree_skb"]
    }

    fn programs(&self, facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        // Linux 6.12 added the receiving socket to the tracepoint.
        let p = if facts.tracepoint("kfree_skb")? >= 4 {
            programs::KFREE_SKB
        } else {
            programs::KFREE_SKB_V1
        };
        Ok(vec![(p, Hook::Tracepoint("kfree_skb"))])
    }

    fn metrics(&self) -> &'static [u16] {
        &[metric::DROPS]
    }

    fn families(&self, p: &PlannedProbe, _bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec> {
        let mut f = FamilySpec::counter(
            ProbeType::PacketDrops,
            "netprobe_packet_drops_total",
            "Packets dropped by the kernel, by drop reason.",
            &["reason"],
        );
        if let PlannedProbe::PacketDrops(o) = p {
            f.allow = (!o.reasons.is_empty()).then(|| o.reasons.clone());
        }
        vec![f]
    }

    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        let drops: Vec<(u16, u64)> = out.counters.of(metric::DROPS).collect();
        for (sub, v) in drops {
            let name = match out.reasons.get(&sub) {
                Some(n) => n.clone(),
                None if sub == DROP_SUBSYSTEM => "SUBSYSTEM".to_string(),
                None => sub.to_string(),
            };
            if f.allow.as_ref().is_some_and(|allow| !allow.contains(&name)) {
                continue;
            }
            out.add(&[&name], v);
        }
    }
}
