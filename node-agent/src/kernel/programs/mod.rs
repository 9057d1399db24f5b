//! Where a Program plan becomes kernel state: a user's object, checked
//! against its digest and the agent's limits, loaded with aya (CO-RE against
//! the node's BTF), its target maps filled with the pods its probe selects,
//! its programs attached by section; and its metric maps read back as raw
//! entries by pod slot. One object per plan: a program that fails (digest,
//! limits, verifier) fails only its own probe, and dropping it detaches
//! everything it attached (no pins: nothing outlives the agent).

mod attach;
mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use aya::Ebpf;
use aya::maps::HashMap;
use aya::programs::Program;
use netprobe_api::ProbeType;
use netprobe_api::probes::ProgramPlan;
use netprobe_api::probes::program::{ObjectSource, ProgramMetricPlan};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use load::map_data;
pub use load::{ProgramLimits, SectionKind, enum_labels};

use crate::catalog::program::{ProgramCounters, SlotEntries};
use crate::kernel::bpf_sys;
use crate::kernel::stats::ProgramStats;
use crate::pipeline::desired::{ProgramWant, TargetEntry};

/// The target maps netprobe.h declares (and the agent fills).
pub const TARGETS_BY_CGROUP: &str = "np_pod_cgroups";
pub const TARGETS_BY_NETNS: &str = "np_pod_netns";

/// Most entries read from one metric map per scrape (a program's map may be
/// large; what is past this is not exported and the metric says so).
pub const MAX_ENTRIES_READ: usize = 65_536;

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
    /// An array's entries always exist: cleared by zeroing, not deleting.
    array: bool,
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
                    .and_then(|b| load::load(&want.plan, &b, &self.limits))
                    .and_then(|mut l| {
                        l.fingerprint = fingerprint.clone();
                        // Targets first, then attach: no event of a selected pod
                        // is missed to a half-filled map.
                        sync_targets(&mut l, want, targets, slots);
                        attach::attach(&mut l, cgroup_root)?;
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
                    if !matches!(bpf_sys::map_lookup(fd, &k, &mut value), Ok(true)) {
                        continue;
                    }
                    let v = sum_values(&value, m.percpu);
                    if !selected.contains(&slot) {
                        if v > 0 {
                            clear(fd, m, &k);
                        }
                        continue;
                    }
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

    /// Kernel-side cost of every user program, named `<probe>/<function>`
    /// (two plans' programs may share a function name).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let mut out = Vec::new();
        for (key, l) in &self.loaded {
            for (name, p) in l.ebpf.programs() {
                let (info, fd) = match p {
                    Program::BtfTracePoint(p) => (p.info(), p.fd().map(|f| f.as_fd())),
                    Program::TracePoint(p) => (p.info(), p.fd().map(|f| f.as_fd())),
                    Program::RawTracePoint(p) => (p.info(), p.fd().map(|f| f.as_fd())),
                    Program::CgroupSkb(p) => (p.info(), p.fd().map(|f| f.as_fd())),
                    _ => continue,
                };
                let Ok(info) = info else { continue };
                out.push(ProgramStats {
                    program: format!("{key}/{name}"),
                    probe: ProbeType::Program,
                    run_time_ns: info.run_time().as_nanos() as u64,
                    run_count: info.run_count(),
                    recursion_misses: fd.ok().and_then(|fd| bpf_sys::recursion_misses(fd).ok()).unwrap_or(0),
                });
            }
        }
        out
    }

    /// Programs attached, over every plan.
    pub fn attached(&self) -> usize {
        self.loaded.values().map(|l| l.programs.len()).sum()
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

/// Clear a metric map's entries whose slot `drop` picks.
fn delete_where(ebpf: &Ebpf, m: &MetricMap, drop: impl Fn(u32) -> bool) {
    let Some(fd) = map_fd(ebpf, &m.plan.map) else { return };
    let Ok(keys) = bpf_sys::map_keys(fd, m.key_size, MAX_ENTRIES_READ) else {
        return;
    };
    for k in keys.into_iter().filter(|k| drop(slot_of(k, m.pod_offset))) {
        clear(fd, m, &k);
    }
}

/// Forget one entry: delete it from a hash, zero it in an array.
fn clear(fd: std::os::fd::BorrowedFd<'_>, m: &MetricMap, key: &[u8]) {
    let r = if m.array {
        bpf_sys::map_update(fd, key, &vec![0u8; m.value_size])
    } else {
        bpf_sys::map_delete(fd, key)
    };
    if let Err(e) = r {
        warn!(map = %m.plan.map, error = %e, "clearing a user program's map entry failed");
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

#[cfg(test)]
mod tests {
    use super::*;

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
