//! Where a Program plan becomes kernel state: a user's object, checked
//! against its digest and the agent's limits, loaded with aya (CO-RE against
//! the node's BTF), its target maps filled with the pods its probe selects,
//! its programs attached by section; and its metric maps read back as raw
//! entries by pod slot. One object per plan: a program that fails (digest,
//! limits, verifier) fails only its own probe, and dropping it detaches
//! everything it attached (no pins: nothing outlives the agent).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aya::maps::{HashMap, Map, MapData};
use aya::programs::Program;
use aya::{Ebpf, EbpfLoader};
use netprobe_api::probes::ProgramPlan;
use netprobe_api::probes::program::{Decoder, ObjectSource, ProgramMetricPlan};
use netprobe_ebpf::user_object;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::catalog::program::{ProgramCounters, SlotEntries};
use crate::kernel::bpf_sys;
use crate::pipeline::desired::{ProgramWant, TargetEntry};

/// The target maps netprobe.h declares (and the agent fills).
pub const TARGETS_BY_CGROUP: &str = "np_pod_cgroups";
pub const TARGETS_BY_NETNS: &str = "np_pod_netns";

/// Most entries read from one metric map per scrape (a program's map may be
/// large; what is past this is not exported and the metric says so).
pub const MAX_ENTRIES_READ: usize = 65_536;

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
    fn of_section(section: &str) -> Option<(SectionKind, &str)> {
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

/// What identifies a load: the plan and the bytes (a changed ConfigMap or
/// file with the same plan reloads, or is refused by its digest).
#[derive(Clone, Debug, PartialEq)]
struct Fingerprint {
    plan: Arc<ProgramPlan>,
    object: Result<[u8; 32], String>,
}

/// One metric's map in a loaded object.
struct MetricMap {
    plan: Arc<ProgramMetricPlan>,
    key_size: usize,
    /// Bytes of one lookup's value: 8, or 8 per possible CPU.
    value_size: usize,
    percpu: bool,
    pod_offset: usize,
}

struct Loaded {
    fingerprint: Fingerprint,
    ebpf: Ebpf,
    /// Section of each program, by function name.
    section_names: BTreeMap<String, String>,
    programs: Vec<String>,
    metrics: Vec<MetricMap>,
    /// Target maps as last written: cgroup id → slot, netns inode → slot.
    cgroups: BTreeMap<u64, u32>,
    netns: BTreeMap<u32, u32>,
    /// Values of each kernel_enum decoder's enum, by enum name.
    enums: Arc<BTreeMap<String, BTreeMap<u64, String>>>,
}

/// Every Program plan's object on this node.
#[derive(Default)]
pub struct UserPrograms {
    loaded: BTreeMap<String, Loaded>,
    /// Plans whose object could not run, with why; not retried until their
    /// plan or object changes.
    failed: BTreeMap<String, (Fingerprint, String)>,
    limits: ProgramLimits,
}

impl UserPrograms {
    pub fn set_limits(&mut self, limits: ProgramLimits) {
        self.limits = limits;
    }

    /// Each Program plan's state: the programs attached, or why none are.
    pub fn status(&self) -> BTreeMap<String, Result<Vec<String>, String>> {
        let mut out: BTreeMap<String, Result<Vec<String>, String>> = self
            .loaded
            .iter()
            .map(|(k, l)| (k.clone(), Ok(l.programs.clone())))
            .collect();
        for (k, (_, why)) in &self.failed {
            out.insert(k.clone(), Err(why.clone()));
        }
        out
    }

    /// Slots whose entries the plans' maps hold: a slot that leaves its pod
    /// must leave no count behind for the pod that gets it next.
    pub fn forget_slot(&mut self, slot: u32) {
        for l in self.loaded.values() {
            for m in &l.metrics {
                delete_where(&l.ebpf, m, |s| s == slot);
            }
        }
    }

    /// Bring the loaded objects in line with `wants`: unload what is no
    /// longer wanted, (re)load what is new or changed, and write each
    /// object's target maps.
    pub fn sync(
        &mut self,
        wants: &BTreeMap<String, ProgramWant>,
        targets: &BTreeMap<String, TargetEntry>,
        slots: &BTreeMap<String, u32>,
        cgroup_root: Option<&Path>,
    ) {
        self.loaded.retain(|k, _| {
            let keep = wants.contains_key(k);
            if !keep {
                info!(plan = %k, "user program unloaded");
            }
            keep
        });
        self.failed.retain(|k, _| wants.contains_key(k));
        for (key, want) in wants {
            let (fingerprint, bytes) = fingerprint(want);
            if self.loaded.get(key).is_some_and(|l| l.fingerprint == fingerprint)
                || self.failed.get(key).is_some_and(|(f, _)| *f == fingerprint)
            {
                if let Some(l) = self.loaded.get_mut(key) {
                    sync_targets(l, want, targets, slots);
                }
                continue;
            }
            self.loaded.remove(key);
            self.failed.remove(key);
            let result = if self.loaded.len() >= self.limits.max_programs {
                Err(format!(
                    "the agent runs at most {} Program probes (--max-programs)",
                    self.limits.max_programs
                ))
            } else {
                bytes
                    .and_then(|b| load(&want.plan, &b, &self.limits))
                    .and_then(|mut l| {
                        l.fingerprint = fingerprint.clone();
                        // Targets first, then attach: no event of a selected pod
                        // is missed to a half-filled map.
                        sync_targets(&mut l, want, targets, slots);
                        attach(&mut l, cgroup_root)?;
                        Ok(l)
                    })
            };
            match result {
                Ok(l) => {
                    info!(plan = %key, programs = ?l.programs, "user program attached");
                    self.loaded.insert(key.clone(), l);
                }
                Err(why) => {
                    warn!(plan = %key, reason = %why, "user program not loaded");
                    self.failed.insert(key.clone(), (fingerprint, why));
                }
            }
        }
    }

    /// Every loaded plan's metric map entries, by plan key, grouped by the
    /// slots its probe selects. Entries of other slots (a late write after a
    /// pod left) are deleted.
    pub fn read(&self) -> BTreeMap<String, ProgramCounters> {
        let mut out = BTreeMap::new();
        for (key, l) in &self.loaded {
            let selected: BTreeSet<u32> = l.cgroups.values().chain(l.netns.values()).copied().collect();
            let mut pc = ProgramCounters::default();
            for m in &l.metrics {
                let Some(fd) = map_fd(&l.ebpf, &m.plan.map) else {
                    continue;
                };
                let keys = match bpf_sys::map_keys(fd, m.key_size, MAX_ENTRIES_READ) {
                    Ok(k) => k,
                    Err(e) => {
                        warn!(plan = %key, map = %m.plan.map, error = %e, "reading a user program's map failed");
                        continue;
                    }
                };
                if keys.len() >= MAX_ENTRIES_READ {
                    pc.truncated.insert(m.plan.name.clone());
                }
                let mut value = vec![0u8; m.value_size];
                for k in keys {
                    let slot = slot_of(&k, m.pod_offset);
                    if !selected.contains(&slot) {
                        let _ = bpf_sys::map_delete(fd, &k);
                        continue;
                    }
                    if !matches!(bpf_sys::map_lookup(fd, &k, &mut value), Ok(true)) {
                        continue;
                    }
                    let v = sum_values(&value, m.percpu);
                    if v > 0 {
                        let e = pc.by_slot.entry(slot).or_insert_with(|| SlotEntries {
                            metrics: BTreeMap::new(),
                            enums: l.enums.clone(),
                        });
                        e.metrics.entry(m.plan.name.clone()).or_default().push((k, v));
                    }
                }
            }
            out.insert(key.clone(), pc);
        }
        out
    }

    /// Kernel-side cost of every user program (bpf_stats), by plan key.
    pub fn program_infos(&self) -> Vec<(String, String, aya::programs::ProgramInfo)> {
        let mut out = Vec::new();
        for (key, l) in &self.loaded {
            for (name, p) in l.ebpf.programs() {
                let info = match p {
                    Program::BtfTracePoint(p) => p.info(),
                    Program::TracePoint(p) => p.info(),
                    Program::RawTracePoint(p) => p.info(),
                    Program::CgroupSkb(p) => p.info(),
                    _ => continue,
                };
                if let Ok(i) = info {
                    out.push((key.clone(), name.to_string(), i));
                }
            }
        }
        out
    }
}

/// The plan and the object's digest, and the bytes (or why there are none).
fn fingerprint(want: &ProgramWant) -> (Fingerprint, Result<Arc<Vec<u8>>, String>) {
    let bytes: Result<Arc<Vec<u8>>, String> = match (&want.object, &want.plan.object) {
        (Some(fetched), _) => fetched.clone(),
        (None, ObjectSource::Path { path }) => std::fs::read(path)
            .map(Arc::new)
            .map_err(|e| format!("reading the object {path}: {e}")),
        (None, ObjectSource::ConfigMap { name, key }) => Err(format!(
            "the object in ConfigMap {name} (key {key}) is not available yet"
        )),
    };
    let object = match &bytes {
        Ok(b) => Ok(Sha256::digest(b.as_slice()).into()),
        Err(e) => Err(e.clone()),
    };
    (
        Fingerprint {
            plan: want.plan.clone(),
            object,
        },
        bytes,
    )
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check the object and load it (maps created, no program loaded yet).
fn load(plan: &ProgramPlan, bytes: &[u8], limits: &ProgramLimits) -> Result<Loaded, String> {
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
    let aya_btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    let ebpf = EbpfLoader::new()
        .btf(Some(&aya_btf))
        .load(bytes)
        .map_err(|e| format!("loading the object: {}", chain(&e)))?;
    let cpus = aya::util::nr_cpus().map_err(|(p, e)| format!("reading {p}: {e}"))?;
    let mut bytes_total: u64 = 0;
    for (name, map) in ebpf.maps() {
        let Some(info) = map_data(map).and_then(|d| d.info().ok()) else {
            continue;
        };
        let percpu = matches!(
            map,
            Map::PerCpuArray(_) | Map::PerCpuHashMap(_) | Map::PerCpuLruHashMap(_)
        );
        let value = u64::from(info.value_size()).next_multiple_of(8) * if percpu { cpus as u64 } else { 1 };
        let entry = match map {
            Map::Array(_) | Map::PerCpuArray(_) => value,
            _ => u64::from(info.key_size()) + value,
        };
        bytes_total = bytes_total.saturating_add(entry.saturating_mul(u64::from(info.max_entries())));
        if bytes_total > limits.max_map_bytes {
            return Err(format!(
                "the object's maps take more than {} MiB (map {name} and those before it; --program-map-memory)",
                limits.max_map_bytes >> 20
            ));
        }
    }
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
        if !matches!(
            map,
            Map::HashMap(_)
                | Map::LruHashMap(_)
                | Map::PerCpuHashMap(_)
                | Map::PerCpuLruHashMap(_)
                | Map::Array(_)
                | Map::PerCpuArray(_)
        ) {
            return Err(format!("metric {}: map {} is not a hash or array map", m.name, m.map));
        }
        let Some(info) = map_data(map).and_then(|d| d.info().ok()) else {
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
/// BTF, with the enumerators' common prefix cut (`SKB_DROP_REASON_NO_SOCKET`
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

/// Enumerator names without their common prefix (up to an underscore).
pub fn enum_labels(values: &[(String, i64)]) -> BTreeMap<u64, String> {
    let first = values.first().map(|(n, _)| n.as_str()).unwrap_or_default();
    let mut prefix = first.len();
    for (n, _) in values {
        prefix = prefix.min(first.bytes().zip(n.bytes()).take_while(|(a, b)| a == b).count());
    }
    let cut = first[..prefix].rfind('_').map(|i| i + 1).unwrap_or(0);
    let cut = if values.len() > 1 { cut } else { 0 };
    values
        .iter()
        .map(|(n, v)| {
            (
                *v as u64,
                n.get(cut..).filter(|s| !s.is_empty()).unwrap_or(n).to_string(),
            )
        })
        .collect()
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

fn map_data(m: &Map) -> Option<&MapData> {
    Some(match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::Unsupported(d) => d,
        _ => return None,
    })
}

fn map_fd<'a>(ebpf: &'a Ebpf, name: &str) -> Option<std::os::fd::BorrowedFd<'a>> {
    ebpf.map(name).and_then(map_data).map(|d| d.fd().as_fd())
}

fn slot_of(key: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = key.get(offset..offset + 4) {
        b.copy_from_slice(s);
    }
    u32::from_ne_bytes(b)
}

fn sum_values(value: &[u8], percpu: bool) -> u64 {
    let mut sum = 0u64;
    for chunk in value.chunks_exact(8).take(if percpu { usize::MAX } else { 1 }) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        sum = sum.wrapping_add(u64::from_ne_bytes(b));
    }
    sum
}

/// Delete a metric map's entries whose slot `drop` picks (an array's
/// entries cannot be deleted: they are zeroed).
fn delete_where(ebpf: &Ebpf, m: &MetricMap, drop: impl Fn(u32) -> bool) {
    let Some(fd) = map_fd(ebpf, &m.plan.map) else { return };
    let Ok(keys) = bpf_sys::map_keys(fd, m.key_size, MAX_ENTRIES_READ) else {
        return;
    };
    for k in keys.into_iter().filter(|k| drop(slot_of(k, m.pod_offset))) {
        let _ = bpf_sys::map_delete(fd, &k);
    }
}

/// Write the object's target maps for its plan's targets, by diff; entries
/// of slots that leave the probe go from its metric maps.
fn sync_targets(
    l: &mut Loaded,
    want: &ProgramWant,
    targets: &BTreeMap<String, TargetEntry>,
    slots: &BTreeMap<String, u32>,
) {
    let mut cgroups = BTreeMap::new();
    let mut netns = BTreeMap::new();
    for key in &want.targets {
        let (Some(t), Some(slot)) = (targets.get(key), slots.get(key)) else {
            continue;
        };
        cgroups.insert(t.cgroup_id, *slot);
        if let Some(ns) = t.netns {
            netns.insert(ns, *slot);
        }
    }
    if cgroups == l.cgroups && netns == l.netns {
        return;
    }
    let before: BTreeSet<u32> = l.cgroups.values().chain(l.netns.values()).copied().collect();
    let after: BTreeSet<u32> = cgroups.values().chain(netns.values()).copied().collect();
    write_targets::<u64>(&mut l.ebpf, TARGETS_BY_CGROUP, &l.cgroups, &cgroups);
    write_targets::<u32>(&mut l.ebpf, TARGETS_BY_NETNS, &l.netns, &netns);
    l.cgroups = cgroups;
    l.netns = netns;
    let gone: BTreeSet<u32> = before.difference(&after).copied().collect();
    if !gone.is_empty() {
        for m in &l.metrics {
            delete_where(&l.ebpf, m, |s| gone.contains(&s));
        }
    }
}

/// `struct np_target` of netprobe.h.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct NpTarget {
    slot: u32,
    flags: u32,
}

// SAFETY: two u32 fields, no padding, any bit pattern valid.
unsafe impl aya::Pod for NpTarget {}

fn write_targets<K: aya::Pod + Ord + Copy>(
    ebpf: &mut Ebpf,
    name: &str,
    old: &BTreeMap<K, u32>,
    new: &BTreeMap<K, u32>,
) {
    let Some(map) = ebpf.map_mut(name) else { return };
    let Ok(mut m) = HashMap::<_, K, NpTarget>::try_from(map) else {
        return;
    };
    for (k, slot) in new {
        if old.get(k) != Some(slot)
            && let Err(e) = m.insert(k, NpTarget { slot: *slot, flags: 0 }, 0)
        {
            warn!(map = name, error = %e, "user program target map update failed");
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(k)) {
        let _ = m.remove(k);
    }
}

/// Load and attach every program of the object by its section.
fn attach(l: &mut Loaded, cgroup_root: Option<&Path>) -> Result<(), String> {
    let aya_btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    let names: Vec<String> = l.ebpf.programs().map(|(n, _)| n.to_string()).collect();
    let sections = l.section_names.clone();
    for name in names {
        let Some(section) = sections.get(&name) else {
            return Err(format!("program {name}: no section"));
        };
        let Some((kind, hook)) = SectionKind::of_section(section) else {
            return Err(format!("program {name}: section {section} cannot be attached"));
        };
        let Some(prog) = l.ebpf.program_mut(&name) else {
            continue;
        };
        let refused = |e: &aya::programs::ProgramError| crate::kernel::manager::verifier_reason(&name, e);
        match (kind, prog) {
            (SectionKind::TpBtf, Program::BtfTracePoint(p)) => {
                p.load(hook, &aya_btf).map_err(|e| refused(&e))?;
                p.attach()
                    .map_err(|e| format!("attaching {name} to {section}: {}", chain(&e)))?;
            }
            (SectionKind::Tracepoint, Program::TracePoint(p)) => {
                let Some((category, tp)) = hook.split_once('/') else {
                    return Err(format!(
                        "program {name}: section {section} is not tracepoint/<category>/<name>"
                    ));
                };
                p.load().map_err(|e| refused(&e))?;
                p.attach(category, tp)
                    .map_err(|e| format!("attaching {name} to {section}: {}", chain(&e)))?;
            }
            (SectionKind::RawTp, Program::RawTracePoint(p)) => {
                p.load().map_err(|e| refused(&e))?;
                p.attach(hook)
                    .map_err(|e| format!("attaching {name} to {section}: {}", chain(&e)))?;
            }
            (SectionKind::CgroupSkb, Program::CgroupSkb(p)) => {
                use aya::programs::{CgroupAttachMode, CgroupSkbAttachType};
                let kind = match hook {
                    "egress" => CgroupSkbAttachType::Egress,
                    "ingress" => CgroupSkbAttachType::Ingress,
                    other => return Err(format!("program {name}: cgroup_skb/{other} is not ingress or egress")),
                };
                let root: PathBuf = match cgroup_root {
                    Some(r) => r.to_path_buf(),
                    None => crate::cgroups::cgroup2_mount(Path::new("/proc/self/mountinfo"))
                        .map_err(|e| format!("no cgroup2 root to attach {name} to: {e}"))?,
                };
                let dir = std::fs::File::open(&root).map_err(|e| format!("opening {}: {e}", root.display()))?;
                p.load().map_err(|e| refused(&e))?;
                p.attach(&dir, kind, CgroupAttachMode::Single)
                    .map_err(|e| format!("attaching {name} to {section}: {}", chain(&e)))?;
            }
            (_, _) => return Err(format!("program {name}: its type does not match its section {section}")),
        }
        l.programs.push(name);
    }
    Ok(())
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
        assert_eq!(one[&0], "ONLY_ONE");
    }

    #[test]
    fn per_cpu_values_are_summed_and_plain_ones_read_once() {
        let mut v = Vec::new();
        for x in [3u64, 4, 5] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        assert_eq!(sum_values(&v, true), 12);
        assert_eq!(sum_values(&v, false), 3);
        let mut k = vec![0u8; 8];
        k[4..8].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(slot_of(&k, 4), 7);
    }
}
