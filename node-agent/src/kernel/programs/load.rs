//! A user's object checked and loaded: its digest against the spec's, its
//! sections against the agent's `--program-types`, its maps against
//! `--program-map-memory`, netprobe.h's target maps and each metric's map
//! against the spec's key layout, its kernel enums from the node's BTF.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aya::EbpfLoader;
use aya::maps::{Map, MapData};
use netprobe_api::probes::ProgramPlan;
use netprobe_api::probes::program::{Decoder, ObjectSource};
use netprobe_ebpf::user_object;
use sha2::{Digest, Sha256};

use super::{Fingerprint, Loaded, MetricMap, TARGETS_BY_CGROUP, TARGETS_BY_NETNS};

/// The program types a user object may contain, by section prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SectionKind {
    /// `tp_btf/<tracepoint>`
    TpBtf,
    /// `tracepoint/<category>/<name>` (or `tp/`)
    Tracepoint,
    /// `raw_tp/<tracepoint>` (or `raw_tracepoint/`)
    RawTp,
    /// `cgroup_skb/ingress`, `cgroup_skb/egress`, on the cgroup root
    CgroupSkb,
}

impl SectionKind {
    pub const ALL: [SectionKind; 4] = [
        SectionKind::TpBtf,
        SectionKind::Tracepoint,
        SectionKind::RawTp,
        SectionKind::CgroupSkb,
    ];

    /// The name in `--program-types`.
    pub fn as_str(self) -> &'static str {
        match self {
            SectionKind::TpBtf => "tp_btf",
            SectionKind::Tracepoint => "tracepoint",
            SectionKind::RawTp => "raw_tp",
            SectionKind::CgroupSkb => "cgroup_skb",
        }
    }

    pub fn parse(s: &str) -> Option<SectionKind> {
        SectionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind of a section and its hook (what follows the prefix).
    pub(super) fn of_section(section: &str) -> Option<(SectionKind, &str)> {
        let (prefix, hook) = section.split_once('/')?;
        let kind = match prefix {
            "tp_btf" => SectionKind::TpBtf,
            "tracepoint" | "tp" => SectionKind::Tracepoint,
            "raw_tp" | "raw_tracepoint" => SectionKind::RawTp,
            "cgroup_skb" => SectionKind::CgroupSkb,
            _ => return None,
        };
        Some((kind, hook))
    }
}

/// What the agent allows user programs (its flags).
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramLimits {
    /// Program probes loaded at once on this node (`--max-programs`).
    pub max_programs: usize,
    /// Memory of one object's maps, estimated from their sizes
    /// (`--program-map-memory`).
    pub max_map_bytes: u64,
    /// Program types allowed (`--program-types`).
    pub types: BTreeSet<SectionKind>,
}

impl Default for ProgramLimits {
    fn default() -> Self {
        ProgramLimits {
            max_programs: 16,
            max_map_bytes: 64 << 20,
            types: SectionKind::ALL.into_iter().collect(),
        }
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check the object and load it (maps created, no program loaded yet).
pub(super) fn load(plan: &ProgramPlan, bytes: &[u8], limits: &ProgramLimits) -> Result<Loaded, String> {
    let digest = hex(&Sha256::digest(bytes));
    match (&plan.sha256, &plan.object) {
        (Some(want), _) if *want != digest => {
            return Err(format!(
                "the object's SHA-256 is {digest}, the spec's object.sha256 is {want}: not loaded (update the digest \
                 with the object)"
            ));
        }
        (None, ObjectSource::ConfigMap { .. }) => {
            return Err("an object from a ConfigMap needs object.sha256".into());
        }
        _ => {}
    }
    let sections = user_object::program_sections(bytes).map_err(|e| format!("reading the object: {e}"))?;
    for (name, section) in &sections {
        match SectionKind::of_section(section) {
            Some((kind, _)) if limits.types.contains(&kind) => {}
            Some((kind, _)) => {
                return Err(format!(
                    "program {name} is a {} program (section {section}); this agent allows {} (--program-types)",
                    kind.as_str(),
                    limits.types.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            None => {
                return Err(format!(
                    "program {name} is in section {section}: only tp_btf/, tracepoint/, raw_tp/ and cgroup_skb/ \
                     programs can be attached"
                ));
            }
        }
    }
    // Checked before anything is created in the kernel: pinned maps would
    // outlive the agent (and could open maps pinned by others), and the
    // maps' memory is bounded.
    let cpus = aya::util::nr_cpus().map_err(|(p, e)| format!("reading {p}: {e}"))?;
    let decls = user_object::maps(bytes).map_err(|e| format!("reading the object: {e}"))?;
    if let Some(m) = decls.iter().find(|m| m.pinned) {
        return Err(format!(
            "map {} is pinned (LIBBPF_PIN_BY_NAME): a Program's maps live and die with the agent",
            m.name
        ));
    }
    let total = map_bytes(&decls, cpus as u64);
    if total > limits.max_map_bytes {
        return Err(format!(
            "the object's maps take {} KiB, more than {} KiB (--program-map-memory)",
            total >> 10,
            limits.max_map_bytes >> 10
        ));
    }
    let aya_btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    let ebpf = EbpfLoader::new()
        .btf(Some(&aya_btf))
        .load(bytes)
        .map_err(|e| format!("loading the object: {}", chain(&e)))?;
    for (name, key) in [(TARGETS_BY_CGROUP, 8), (TARGETS_BY_NETNS, 4)] {
        match ebpf.map(name).and_then(map_data).and_then(|d| d.info().ok()) {
            Some(i) if i.key_size() == key && i.value_size() == 8 => {}
            Some(_) => {
                return Err(format!(
                    "map {name} is not netprobe.h's (declare it only by including netprobe.h)"
                ));
            }
            None => return Err(format!("the object has no map {name}: include netprobe.h")),
        }
    }
    let mut metrics = Vec::new();
    for m in &plan.metrics {
        let Some(map) = ebpf.map(&m.map) else {
            return Err(format!("metric {}: the object has no map {}", m.name, m.map));
        };
        let percpu = matches!(
            map,
            Map::PerCpuArray(_) | Map::PerCpuHashMap(_) | Map::PerCpuLruHashMap(_)
        );
        let Some(data) = map_data(map) else {
            return Err(format!("metric {}: map {} is not a hash or array map", m.name, m.map));
        };
        let Ok(info) = data.info() else {
            return Err(format!("metric {}: map {} has no kernel info", m.name, m.map));
        };
        if info.key_size() as usize != m.key_size() {
            return Err(format!(
                "metric {}: map {} has {}-byte keys, its labels describe {} bytes",
                m.name,
                m.map,
                info.key_size(),
                m.key_size()
            ));
        }
        if info.value_size() != 8 {
            return Err(format!(
                "metric {}: map {} has {}-byte values, not one u64",
                m.name,
                m.map,
                info.value_size()
            ));
        }
        metrics.push(MetricMap {
            plan: Arc::new(m.clone()),
            key_size: m.key_size(),
            value_size: if percpu { 8 * cpus } else { 8 },
            percpu,
            array: matches!(map, Map::Array(_) | Map::PerCpuArray(_)),
            pod_offset: m.pod_offset().unwrap_or(0),
        });
    }
    let enums = kernel_enums(plan)?;
    Ok(Loaded {
        fingerprint: Fingerprint {
            plan: Arc::new(plan.clone()),
            object: Err(String::new()),
        },
        ebpf,
        section_names: sections,
        programs: Vec::new(),
        metrics,
        cgroups: BTreeMap::new(),
        netns: BTreeMap::new(),
        enums: Arc::new(enums),
    })
}

/// The values of every enum a kernel_enum decoder names, from the node's
/// BTF, without the prefix most enumerators share (`SKB_DROP_REASON_NO_SOCKET`
/// reads `NO_SOCKET`).
fn kernel_enums(plan: &ProgramPlan) -> Result<BTreeMap<String, BTreeMap<u64, String>>, String> {
    let names: BTreeSet<&String> = plan
        .metrics
        .iter()
        .flat_map(|m| m.labels.iter())
        .filter(|l| l.decoder == Decoder::KernelEnum)
        .filter_map(|l| l.kernel_enum.as_ref())
        .collect();
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let btf = netprobe_ebpf::btf::Btf::from_kernel().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    let mut out = BTreeMap::new();
    for n in names {
        let Some(values) = btf.enum_values(n) else {
            return Err(format!("the kernel has no enum {n} (kernel_enum decoder)"));
        };
        out.insert(n.clone(), enum_labels(&values));
    }
    Ok(out)
}

/// What the maps take, estimated from their declarations: entries × (key +
/// value, the value once per possible CPU for per-CPU maps, 8-byte aligned).
pub fn map_bytes(maps: &[user_object::MapDecl], cpus: u64) -> u64 {
    // BPF_MAP_TYPE_ARRAY 2, PERCPU_HASH 5, PERCPU_ARRAY 6, LRU_PERCPU_HASH 10.
    maps.iter()
        .map(|m| {
            let percpu = matches!(m.map_type, 5 | 6 | 10);
            let value = u64::from(m.value_size).next_multiple_of(8) * if percpu { cpus } else { 1 };
            let entry = match m.map_type {
                2 | 6 => value,
                _ => u64::from(m.key_size) + value,
            };
            entry.saturating_mul(u64::from(m.max_entries))
        })
        .fold(0u64, u64::saturating_add)
}

/// Enumerator names without the prefix (up to an underscore) that nine in
/// ten of them share: `SKB_DROP_REASON_NO_SOCKET` reads `NO_SOCKET`, while
/// the odd `SKB_NOT_DROPPED_YET` keeps its whole name.
pub fn enum_labels(values: &[(String, i64)]) -> BTreeMap<u64, String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, _) in values {
        for (i, _) in n.match_indices('_') {
            *counts.entry(&n[..=i]).or_default() += 1;
        }
    }
    let prefix = counts
        .iter()
        .filter(|(_, c)| values.len() > 1 && **c * 10 >= values.len() * 9)
        .map(|(p, _)| *p)
        .max_by_key(|p| p.len())
        .unwrap_or("");
    values
        .iter()
        .map(|(n, v)| {
            let short = n.strip_prefix(prefix).filter(|s| !s.is_empty()).unwrap_or(n);
            (*v as u64, short.to_string())
        })
        .collect()
}

pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// A hash or array map (per-CPU or not): the kinds a metric or a target
/// map may be.
pub(super) fn map_data(m: &Map) -> Option<&MapData> {
    Some(match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d) => d,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_name_their_kind_and_hook() {
        assert_eq!(
            SectionKind::of_section("tp_btf/tcp_send_reset"),
            Some((SectionKind::TpBtf, "tcp_send_reset"))
        );
        assert_eq!(
            SectionKind::of_section("tracepoint/sock/inet_sock_set_state"),
            Some((SectionKind::Tracepoint, "sock/inet_sock_set_state"))
        );
        assert_eq!(
            SectionKind::of_section("raw_tracepoint/x"),
            Some((SectionKind::RawTp, "x"))
        );
        assert_eq!(SectionKind::of_section("kprobe/tcp_v4_connect"), None);
        assert_eq!(SectionKind::of_section("xdp"), None);
    }

    #[test]
    fn enum_labels_cut_the_common_prefix() {
        let v = vec![
            ("SKB_DROP_REASON_NOT_SPECIFIED".to_string(), 2),
            ("SKB_DROP_REASON_NO_SOCKET".to_string(), 3),
        ];
        let l = enum_labels(&v);
        assert_eq!(l[&2], "NOT_SPECIFIED");
        assert_eq!(l[&3], "NO_SOCKET");
        let one = enum_labels(&[("ONLY_ONE".to_string(), 0)]);
        let decl = |map_type, key_size, value_size, max_entries| user_object::MapDecl {
            name: "m".into(),
            map_type,
            key_size,
            value_size,
            max_entries,
            pinned: false,
        };
        // A per-CPU hash of 100 (8-byte key, 4-byte value) on 4 CPUs, an
        // array of 10 × 12 bytes.
        assert_eq!(
            map_bytes(&[decl(5, 8, 4, 100), decl(2, 4, 12, 10)], 4),
            100 * (8 + 32) + 10 * 16
        );
        assert_eq!(one[&0], "ONLY_ONE");
        // The odd one out keeps its name; the others lose what they share.
        let mut v: Vec<(String, i64)> = (0..20).map(|i| (format!("SKB_DROP_REASON_R{i}"), i + 2)).collect();
        v.push(("SKB_NOT_DROPPED_YET".to_string(), 0));
        let l = enum_labels(&v);
        assert_eq!(l[&0], "SKB_NOT_DROPPED_YET");
        assert_eq!(l[&2], "R0");
    }
}
