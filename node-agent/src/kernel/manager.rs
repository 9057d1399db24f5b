//! Where a plan becomes kernel state: the probe manager owns the loaded eBPF
//! object, attaches exactly the programs of the probe types in use, keeps the
//! target maps in line with the desired state by diff, and reads the
//! counters back. Programs are never pinned: when the agent exits, for any
//! reason, the kernel detaches and frees everything it attached.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::sync::Arc;

use aya::maps::{Array, HashMap, Map};
use aya::programs::Program;
use aya::{Ebpf, EbpfLoader};
use netprobe_api::ProbeType;
use netprobe_ebpf::layout::{self, Bounds, Config, PodInfo};
use netprobe_ebpf::{maps, programs};
use tracing::{info, warn};

pub use crate::catalog::KernelFacts;
use crate::catalog::{self, Hook};
use crate::kernel::counters;
pub use crate::kernel::counters::Snapshot;
pub use crate::kernel::error::ManagerError;
use crate::kernel::error::{map_err, map_mut, remove_from_hash, reset_connecting_slots, verifier_reason};
use crate::kernel::prog_run::ProgRun;
pub use crate::kernel::programs::ProgramLimits;
use crate::kernel::programs::UserPrograms;
use crate::kernel::slots::{QUARANTINE, Slots};
pub use crate::kernel::stats::ProgramStats;
use crate::pipeline::desired::{KernelState, Op, TargetEntry, diff};

struct Attached {
    program: &'static str,
    link: Option<aya::programs::tp_btf::BtfTracePointLinkId>,
}

/// What the last apply achieved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyReport {
    /// Programs attached, by probe type.
    pub attached: BTreeMap<ProbeType, Vec<String>>,
    /// Probe types this kernel cannot run, with the missing feature.
    pub unsupported: BTreeMap<ProbeType, String>,
    /// Probe types that run but see only part of what the kernel counts on
    /// this kernel, with what they miss (never a silent undercount).
    pub partial: BTreeMap<ProbeType, String>,
    /// Targets that could not be registered (map full), with the reason.
    pub target_errors: BTreeMap<String, String>,
    /// Drop reasons a plan's `packetDrops.reasons` names that this kernel
    /// does not have, by plan key: those filters can never match here.
    pub unknown_drop_reasons: BTreeMap<String, Vec<String>>,
    /// Each Program plan's programs attached, or why its object does not
    /// run here, by plan key.
    pub programs: BTreeMap<String, Result<Vec<String>, String>>,
}

pub struct ProbeManager {
    ebpf: Ebpf,
    facts: KernelFacts,
    current: KernelState,
    slots: Slots,
    generation: u32,
    /// Programs attached, once each, with the probe types that use them
    /// (TcpConnectLatency and TcpRtt share the socket-state program).
    links: BTreeMap<&'static str, (Option<aya::programs::tp_btf::BtfTracePointLinkId>, BTreeSet<ProbeType>)>,
    attached: BTreeMap<ProbeType, Vec<&'static str>>,
    /// `np_config.types` as last written.
    types_mask: u32,
    /// Programs the agent runs (the RTT sampler, the connect sweep), by
    /// name.
    runs: BTreeMap<&'static str, Arc<ProgRun>>,
    /// `np_config.connect_share` (`--connect-pending-per-pod`).
    connect_share: u32,
    /// `np_config.connect_max_age_s`.
    connect_max_age_s: u32,
    /// The cgroup2 hierarchy cgroup_skb programs attach to (its root: every
    /// pod below it); None until set, then the mount this process sees.
    cgroup_root: Option<std::path::PathBuf>,
    /// Where the built-in cgroup_skb programs (Traffic, Dns) attach: the
    /// kubelet's pods cgroup when the agent found one, else the root.
    skb_cgroup: Option<std::path::PathBuf>,
    /// DNS queries never answered, by slot, as the sweep found them.
    /// Queries the sweep found unanswered, by (slot, query type).
    dns_unanswered: BTreeMap<(u32, u32), u64>,
    /// How long a DNS query may wait for its response (`--dns-timeout`).
    dns_timeout: std::time::Duration,
    /// Users' objects, one per Program plan.
    user: UserPrograms,
    report: ApplyReport,
}

impl ProbeManager {
    /// Load the object (maps only; programs load when a plan needs them).
    pub fn new(facts: KernelFacts) -> Result<Self, ManagerError> {
        let aya_btf = aya::Btf::from_sys_fs().map_err(|e| ManagerError::Btf(e.to_string()))?;
        let ebpf = EbpfLoader::new().btf(Some(&aya_btf)).load(netprobe_ebpf::OBJECT)?;
        let mut m = ProbeManager {
            ebpf,
            facts,
            current: KernelState::default(),
            slots: Slots::new(layout::MAX_PODS, QUARANTINE),
            generation: 0,
            links: BTreeMap::new(),
            attached: BTreeMap::new(),
            types_mask: 0,
            runs: BTreeMap::new(),
            connect_share: layout::CONNECTING_PER_POD,
            connect_max_age_s: layout::CONNECT_MAX_AGE_S,
            cgroup_root: None,
            skb_cgroup: None,
            dns_unanswered: BTreeMap::new(),
            dns_timeout: std::time::Duration::from_secs(5),
            user: UserPrograms::default(),
            report: ApplyReport::default(),
        };
        m.set_dns(&[53], std::time::Duration::from_secs(5))?;
        m.write_config()?;
        Ok(m)
    }

    /// The DNS server ports Dns watches and how long a query may wait for
    /// its response: the agent's settings, the same for every probe (a
    /// probe's own would change what other tenants' probes count).
    pub fn set_dns(&mut self, ports: &[u16], timeout: std::time::Duration) -> Result<(), ManagerError> {
        let mut watched = [0u16; layout::DNS_PORTS as usize];
        for (w, p) in watched.iter_mut().zip(ports.iter().filter(|p| **p != 0)) {
            *w = *p;
        }
        let mut cfg: Array<_, layout::DnsConfig> =
            Array::try_from(self.map_mut(maps::DNS_CONFIG)?).map_err(map_err(maps::DNS_CONFIG))?;
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        cfg.set(
            0,
            layout::DnsConfig {
                timeout_ns,
                ports: watched,
            },
            0,
        )
        .map_err(map_err(maps::DNS_CONFIG))?;
        self.dns_timeout = timeout;
        Ok(())
    }

    /// A slot leaves its pod (and again when it is reused): its DNS queries
    /// in flight and its marked connections go too, so neither a late
    /// response, the DNS sweep nor the RTT sampler counts them for the
    /// slot's next pod.
    fn forget_slot_state(&mut self, slot: u32) -> Result<(), ManagerError> {
        self.user.forget_slot(slot);
        self.dns_unanswered.retain(|(s, _), _| *s != slot);
        remove_from_hash::<layout::DnsKey, layout::DnsQuery>(&mut self.ebpf, maps::DNS_PENDING, |_, q| q.slot == slot)?;
        // Its marked connections and its pending connects (and their count
        // against the share): the walks that own those tables forget them in
        // the kernel. Without them (their type detached) the tables are
        // empty, cleared at detach; the userspace walk covers it anyway.
        let forget = u64::from(slot) + 1;
        let ran = |program: &'static str| move |source| ManagerError::Run { program, source };
        match self.runs.get(programs::RTT_SAMPLE) {
            Some(walk) => walk.run_with(forget).map(drop).map_err(ran(programs::RTT_SAMPLE))?,
            None => remove_from_hash::<u64, layout::RttSock>(&mut self.ebpf, maps::RTT_SOCKS, |_, v| v.slot == slot)?,
        }
        match self.runs.get(programs::CONNECT_SWEEP) {
            Some(walk) => walk.run_with(forget).map(drop).map_err(ran(programs::CONNECT_SWEEP)),
            None => {
                remove_from_hash::<u64, layout::Connect>(&mut self.ebpf, maps::CONNECTING, |_, c| c.slot == slot)?;
                reset_connecting_slots(&mut self.ebpf, Some(slot))
            }
        }
    }

    /// Count and forget the DNS queries that waited longer than the
    /// timeout without a response. The program deletes a query when its
    /// response comes; whoever deletes it counts it, so a response racing
    /// the sweep is counted once. Returns how many were swept.
    pub fn sweep_dns(&mut self) -> Result<usize, ManagerError> {
        if !self.attached.contains_key(&ProbeType::Dns) {
            return Ok(0);
        }
        let now = monotonic_ns();
        let timeout = u64::try_from(self.dns_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut m: HashMap<_, layout::DnsKey, layout::DnsQuery> =
            HashMap::try_from(map_mut(&mut self.ebpf, maps::DNS_PENDING)?).map_err(map_err(maps::DNS_PENDING))?;
        let expired: Vec<(layout::DnsKey, layout::DnsQuery)> = m
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, q)| now.saturating_sub(q.sent_ns) > timeout)
            .collect();
        let mut swept = 0;
        for (k, q) in expired {
            if m.remove(&k).is_ok() {
                *self.dns_unanswered.entry((q.slot, q.qtype)).or_default() += 1;
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Where cgroup_skb programs attach: the host's cgroup2 root (the
    /// agent's `--cgroup-root`), not the container's own cgroup view.
    pub fn set_cgroup_root(&mut self, root: std::path::PathBuf) {
        self.cgroup_root = Some(root);
    }

    /// Where Traffic's and Dns's cgroup_skb programs attach, when not the
    /// root: the cgroup every pod is below (`cgroups::pods_subtree`), so
    /// packets of other cgroups run none of them. Takes effect when the
    /// programs are next attached: set it before the first apply.
    pub fn set_skb_cgroup(&mut self, dir: std::path::PathBuf) {
        self.skb_cgroup = Some(dir);
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, ManagerError> {
        map_mut(&mut self.ebpf, name)
    }

    /// Programs of a probe type for this kernel, or what the kernel lacks.
    fn programs_for(&self, t: ProbeType) -> Result<Vec<(&'static str, Hook)>, String> {
        catalog::of(t).programs(&self.facts)
    }

    /// What `t` cannot see on this kernel, if anything.
    pub fn partial_reason(&self, t: ProbeType) -> Option<String> {
        catalog::of(t).partial(&self.facts)
    }

    /// `btf` is the kernel's BTF, parsed by the first attach of an apply
    /// and shared by the others (dropped with the apply: it is tens of MiB in
    /// memory, and a parse per type made a start with every type parse it
    /// seven times).
    fn attach_type(&mut self, t: ProbeType, btf: &mut Option<aya::Btf>) -> Result<Vec<&'static str>, String> {
        let progs = self.programs_for(t)?;
        let btf = match btf {
            Some(b) => b,
            None => btf.insert(aya::Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))?),
        };
        let mut names = Vec::new();
        for (name, hook) in progs {
            if let Some((_, users)) = self.links.get_mut(name) {
                users.insert(t);
                names.push(name);
                continue;
            }
            match self.attach_one(name, hook, btf) {
                Ok(a) => {
                    self.links.insert(name, (a.link, BTreeSet::from([t])));
                    names.push(name);
                }
                Err(e) => {
                    for n in names {
                        self.release(n, t);
                    }
                    return Err(e);
                }
            }
        }
        Ok(names)
    }

    /// `t` no longer uses program `name`; detach it when nothing does.
    fn release(&mut self, name: &'static str, t: ProbeType) {
        let Some((_, users)) = self.links.get_mut(name) else {
            return;
        };
        users.remove(&t);
        if users.is_empty()
            && let Some((link, _)) = self.links.remove(name)
        {
            self.detach_one(Attached { program: name, link });
        }
    }

    fn attach_one(&mut self, name: &'static str, hook: Hook, btf: &aya::Btf) -> Result<Attached, String> {
        let Some(prog) = self.ebpf.program_mut(name) else {
            return Err(format!("program {name} missing from the object"));
        };
        match (hook, prog) {
            (Hook::Tracepoint(tp), Program::BtfTracePoint(p)) => {
                p.load(tp, btf).map_err(|e| verifier_reason(name, &e))?;
                let link = p
                    .attach()
                    .map_err(|e| format!("attaching {name} to tp_btf/{tp}: {e}"))?;
                Ok(Attached {
                    program: name,
                    link: Some(link),
                })
            }
            (Hook::Run, Program::RawTracePoint(p)) => {
                p.load().map_err(|e| verifier_reason(name, &e))?;
                let fd = p.fd().map_err(|e| e.to_string())?;
                let run = ProgRun::new(fd.as_fd()).map_err(|e| format!("keeping {name}: {e}"))?;
                self.runs.insert(name, Arc::new(run));
                Ok(Attached {
                    program: name,
                    link: None,
                })
            }
            (Hook::CgroupSkb { egress }, Program::CgroupSkb(p)) => {
                use aya::programs::{CgroupAttachMode, CgroupSkbAttachType};
                let (root, dir) =
                    crate::cgroups::open_skb_cgroup(self.skb_cgroup.as_deref().or(self.cgroup_root.as_deref()), name)?;
                p.load().map_err(|e| verifier_reason(name, &e))?;
                let (kind, side) = match egress {
                    true => (CgroupSkbAttachType::Egress, "egress"),
                    false => (CgroupSkbAttachType::Ingress, "ingress"),
                };
                // A BPF link (Linux 5.7+) to a cgroup always runs beside
                // the other programs there (multi-attach), never replacing
                // them, and takes no attach flags: the kernel refuses
                // BPF_F_ALLOW_MULTI on links with EINVAL.
                p.attach(&dir, kind, CgroupAttachMode::Single).map_err(|e| {
                    let cause = std::error::Error::source(&e)
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default();
                    format!(
                        "attaching {name} to cgroup_skb/{side} of {}: {e}{cause}",
                        root.display()
                    )
                })?;
                Ok(Attached {
                    program: name,
                    link: None,
                })
            }
            _ => Err(format!("program {name} has an unexpected type")),
        }
    }

    fn detach_one(&mut self, a: Attached) {
        // Programs the agent runs have no attachment.
        self.runs.remove(a.program);
        match self.ebpf.program_mut(a.program) {
            Some(Program::BtfTracePoint(p)) => {
                if let Some(link) = a.link
                    && let Err(e) = p.detach(link)
                {
                    warn!(program = a.program, error = %e, "detach failed");
                }
                if let Err(e) = p.unload() {
                    warn!(program = a.program, error = %e, "unload failed");
                }
            }
            Some(Program::RawTracePoint(p)) => {
                if let Err(e) = p.unload() {
                    warn!(program = a.program, error = %e, "unload failed");
                }
            }
            // Unloading closes its cgroup link: it detaches.
            Some(Program::CgroupSkb(p)) => {
                if let Err(e) = p.unload() {
                    warn!(program = a.program, error = %e, "unload failed");
                }
            }
            _ => {}
        }
    }

    /// Bring the kernel to `desired`. Never fails as a whole: what cannot be
    /// done is reported per probe type or per target, and the rest runs.
    pub fn apply(&mut self, desired: &KernelState) -> Result<&ApplyReport, ManagerError> {
        let ops = diff(&self.current, desired);
        let mut targets_changed = false;
        let mut detached = Vec::new();
        let mut btf = None;
        for op in ops {
            match op {
                Op::SetBounds { index, bounds } => self.set_bounds(index, &bounds)?,
                Op::AddTarget(key, e) => {
                    targets_changed = true;
                    self.add_target(&key, e)?;
                }
                Op::UpdateTarget(key, e) => {
                    targets_changed = true;
                    // Overwrite in place; remove only keys that changed, so
                    // events of the pod are never unattributed in between.
                    if let Some(old) = self.current.targets.get(&key).copied() {
                        let cgroup = Some(old.cgroup_id).filter(|c| *c != e.cgroup_id);
                        self.unregister(cgroup, old.netns.filter(|n| Some(*n) != e.netns))?;
                    }
                    self.add_target(&key, e)?;
                }
                Op::RemoveTarget(key) => {
                    targets_changed = true;
                    self.remove_target(&key)?;
                }
                Op::Attach(t) => {
                    match self.attach_type(t, &mut btf) {
                        Ok(list) => {
                            info!(probe = %t, programs = ?list, "attached");
                            self.report.unsupported.remove(&t);
                            match self.partial_reason(t) {
                                Some(why) => {
                                    warn!(probe = %t, reason = %why, "partial on this kernel");
                                    self.report.partial.insert(t, why);
                                }
                                None => {
                                    self.report.partial.remove(&t);
                                }
                            }
                            self.report
                                .attached
                                .insert(t, list.iter().map(|p| p.to_string()).collect());
                            self.attached.insert(t, list);
                        }
                        Err(reason) => {
                            warn!(probe = %t, %reason, "probe type unsupported on this node");
                            self.report.unsupported.insert(t, reason);
                        }
                    }
                    self.current.types.insert(t);
                }
                Op::Detach(t) => {
                    for name in self.attached.remove(&t).unwrap_or_default() {
                        self.release(name, t);
                    }
                    self.report.attached.remove(&t);
                    self.report.unsupported.remove(&t);
                    self.report.partial.remove(&t);
                    self.current.types.remove(&t);
                    self.forget_metrics(catalog::of(t).metrics())?;
                    detached.push(t);
                    info!(probe = %t, "detached");
                }
            }
        }
        // User programs after the targets (their slots) and before the
        // generation moves on.
        self.user.sync(
            &desired.programs,
            &self.current.targets,
            self.slots.by_key(),
            self.cgroup_root.as_deref(),
        );
        self.report.programs = self.user.status();
        let types = self.attached.keys().fold(0, |m, t| m | catalog::of(*t).config_bit());
        if targets_changed || types != self.types_mask {
            if targets_changed {
                self.generation = self.generation.wrapping_add(1);
            }
            self.types_mask = types;
            self.write_config()?;
        }
        // After the programs stopped seeing the types (a program another
        // type keeps attached reads np_config.types): what a detached type
        // kept in the kernel goes only once nothing writes it.
        for t in detached {
            catalog::of(t).on_detach(&mut self.ebpf)?;
        }
        Ok(&self.report)
    }

    fn set_bounds(&mut self, index: u32, bounds: &[u64]) -> Result<(), ManagerError> {
        let mut b = Bounds::default();
        for (i, v) in bounds.iter().take(layout::MAX_BOUNDS).enumerate() {
            b.le_ns[i] = *v;
        }
        b.n = bounds.len().min(layout::MAX_BOUNDS) as u32;
        // Bucket indices change meaning with the bounds: the histograms of
        // the type that owns them restart (documented); other counters are
        // untouched.
        let restart: Vec<u16> = ProbeType::ALL
            .iter()
            .filter_map(|t| catalog::of(*t).histogram())
            .filter(|(i, _)| *i == index)
            .flat_map(|(_, metrics)| metrics.iter().copied())
            .collect();
        self.forget_metrics(&restart)?;
        let mut arr: Array<_, Bounds> = Array::try_from(self.map_mut(maps::BOUNDS)?).map_err(map_err(maps::BOUNDS))?;
        arr.set(index, b, 0).map_err(map_err(maps::BOUNDS))?;
        if bounds.is_empty() {
            self.current.bounds.remove(&index);
        } else {
            self.current.bounds.insert(index, bounds.to_vec());
        }
        Ok(())
    }

    fn add_target(&mut self, key: &str, e: TargetEntry) -> Result<(), ManagerError> {
        let Some(assigned) = self.slots.assign(key, std::time::Instant::now()) else {
            self.report.target_errors.insert(
                key.to_string(),
                format!(
                    "no free counter slot: {} pods on this node, slots of removed pods rest {} s",
                    layout::MAX_PODS,
                    QUARANTINE.as_secs()
                ),
            );
            return Ok(());
        };
        if assigned.reused {
            counters::clear_slot(&mut self.ebpf, assigned.slot)?;
            self.forget_slot_state(assigned.slot)?;
        }
        let slot = assigned.slot;
        let info = PodInfo { slot, flags: e.flags };
        let mut by_cg: HashMap<_, u64, PodInfo> =
            HashMap::try_from(self.map_mut(maps::POD_BY_CGROUP)?).map_err(map_err(maps::POD_BY_CGROUP))?;
        if let Err(err) = by_cg.insert(e.cgroup_id, info, 0) {
            self.report
                .target_errors
                .insert(key.to_string(), format!("pod map: {err}"));
            return Ok(());
        }
        if let Some(ns) = e.netns {
            let mut by_ns: HashMap<_, u32, PodInfo> =
                HashMap::try_from(self.map_mut(maps::POD_BY_NETNS)?).map_err(map_err(maps::POD_BY_NETNS))?;
            if let Err(err) = by_ns.insert(ns, info, 0) {
                self.report
                    .target_errors
                    .insert(key.to_string(), format!("netns map: {err}"));
            }
        }
        self.report.target_errors.remove(key);
        self.current.targets.insert(key.to_string(), e);
        Ok(())
    }

    /// Remove a pod's attribution keys (its cgroup, its network namespace).
    fn unregister(&mut self, cgroup: Option<u64>, netns: Option<u32>) -> Result<(), ManagerError> {
        if let Some(id) = cgroup {
            let mut by_cg: HashMap<_, u64, PodInfo> =
                HashMap::try_from(self.map_mut(maps::POD_BY_CGROUP)?).map_err(map_err(maps::POD_BY_CGROUP))?;
            let _ = by_cg.remove(&id);
        }
        if let Some(ns) = netns {
            let mut by_ns: HashMap<_, u32, PodInfo> =
                HashMap::try_from(self.map_mut(maps::POD_BY_NETNS)?).map_err(map_err(maps::POD_BY_NETNS))?;
            let _ = by_ns.remove(&ns);
        }
        Ok(())
    }

    fn remove_target(&mut self, key: &str) -> Result<(), ManagerError> {
        if let Some(e) = self.current.targets.remove(key) {
            self.unregister(Some(e.cgroup_id), e.netns)?;
        }
        self.report.target_errors.remove(key);
        if let Some(slot) = self.slots.release(key, std::time::Instant::now()) {
            counters::clear_slot(&mut self.ebpf, slot)?;
            self.forget_slot_state(slot)?;
        }
        Ok(())
    }

    fn forget_metrics(&mut self, metrics: &[u16]) -> Result<(), ManagerError> {
        if metrics.contains(&layout::metric::DNS_UNANSWERED) {
            self.dns_unanswered.clear();
        }
        let slots: Vec<u32> = self.slots.by_key().values().copied().collect();
        counters::forget_metrics(&mut self.ebpf, &slots, metrics)
    }

    /// Read every counter of the current pods, summed over CPUs.
    pub fn snapshot(&self) -> Result<Snapshot, ManagerError> {
        let mut snap = counters::snapshot(&self.ebpf, self.slots.by_key().values().copied())?;
        snap.programs = self.user.read();
        for ((slot, qtype), n) in &self.dns_unanswered {
            let qtype = u16::try_from(*qtype).unwrap_or(0);
            snap.add(*slot, layout::metric::DNS_UNANSWERED, qtype, *n);
        }
        Ok(snap)
    }

    /// Entries in the target maps (self-metrics).
    pub fn map_entries(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        out.insert(maps::POD_BY_CGROUP, self.current.targets.len());
        out.insert(
            maps::POD_BY_NETNS,
            self.current.targets.values().filter(|t| t.netns.is_some()).count(),
        );
        out
    }

    /// The slot of a target key (for the collector).
    pub fn slots(&self) -> &BTreeMap<String, u32> {
        self.slots.by_key()
    }

    pub fn report(&self) -> &ApplyReport {
        &self.report
    }

    /// The RTT sampler, when TcpRtt is attached. Run it without holding the
    /// manager: walking many sockets takes a while.
    pub fn rtt_sampler(&self) -> Option<Arc<ProgRun>> {
        self.runs.get(netprobe_ebpf::programs::RTT_SAMPLE).cloned()
    }

    /// The pending-connect sweep, when TcpConnectLatency is attached.
    pub fn connect_sweeper(&self) -> Option<Arc<ProgRun>> {
        self.runs.get(netprobe_ebpf::programs::CONNECT_SWEEP).cloned()
    }

    /// How many pending connects one pod may hold (the agent's
    /// `--connect-pending-per-pod`): the same for every pod, so no
    /// tenant's storm takes the table from another's.
    pub fn set_connect_share(&mut self, share: u32) -> Result<(), ManagerError> {
        self.connect_share = share;
        self.write_config()
    }

    /// How long a connect may pend before the sweep forgets it (and counts
    /// it untracked): 10 minutes unless a test wants to see the sweep work.
    pub fn set_connect_max_age(&mut self, age: std::time::Duration) -> Result<(), ManagerError> {
        self.connect_max_age_s = u32::try_from(age.as_secs()).unwrap_or(u32::MAX).max(1);
        self.write_config()
    }

    fn write_config(&mut self) -> Result<(), ManagerError> {
        let cfg = Config {
            generation: self.generation,
            types: self.types_mask,
            connect_share: self.connect_share,
            connect_max_age_s: self.connect_max_age_s,
        };
        let mut arr: Array<_, Config> = Array::try_from(self.map_mut(maps::CONFIG)?).map_err(map_err(maps::CONFIG))?;
        arr.set(0, cfg, 0).map_err(map_err(maps::CONFIG))
    }

    /// Kernel run time and count of every attached program, users' too.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let mut out = self.user.program_stats();
        for (name, (_, users)) in &self.links {
            let (info, fd) = match self.ebpf.program(name) {
                Some(Program::BtfTracePoint(p)) => (p.info().ok(), p.fd().ok().map(|f| f.as_fd())),
                Some(Program::RawTracePoint(p)) => (p.info().ok(), p.fd().ok().map(|f| f.as_fd())),
                Some(Program::CgroupSkb(p)) => (p.info().ok(), p.fd().ok().map(|f| f.as_fd())),
                _ => (None, None),
            };
            let recursion_misses = fd
                .and_then(|fd| crate::kernel::bpf_sys::recursion_misses(fd).ok())
                .unwrap_or(0);
            if let (Some(info), Some(probe)) = (info, users.iter().next()) {
                out.push(ProgramStats {
                    program: name.to_string(),
                    probe: *probe,
                    run_time_ns: info.run_time().as_nanos() as u64,
                    run_count: info.run_count(),
                    recursion_misses,
                });
            }
        }
        out
    }

    /// What the agent allows users' programs (its flags).
    pub fn set_program_limits(&mut self, limits: ProgramLimits) {
        self.user.set_limits(limits);
    }

    /// Programs attached: netprobe's (once each) and users'.
    pub fn programs_attached(&self) -> usize {
        self.report.attached.values().map(Vec::len).sum::<usize>() + self.user.attached()
    }

    /// Probe types currently attached.
    pub fn attached_types(&self) -> BTreeSet<ProbeType> {
        self.attached.keys().copied().collect()
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
