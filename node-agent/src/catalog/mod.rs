//! The probe catalog, agent side: what each probe type is on a node — its
//! programs and hooks on this kernel, what a kernel hides from it, its kernel
//! counters, what it asks of each target, its metric families and how a
//! target's counters become its series. One module per type, registered in
//! [`of`]; the manager ([`crate::kernel`]), the desired state and the
//! collector ([`crate::pipeline`]) dispatch on the typed probe kind and know
//! no type by name. The API side (options, planning) is `netprobe_api::probes`;
//! the recipe for a new type is in DESIGN.md.

pub mod dns;
mod histogram;
pub mod packet_drops;
mod peers;
pub mod program;
pub mod tcp_connect_latency;
pub mod tcp_resets;
pub mod tcp_retransmits;
pub mod tcp_rtt;
pub mod traffic;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aya::Ebpf;
use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_api::probes::{PeersPlan, ProgramMetricPlan};
use netprobe_ebpf::btf::Btf as KernelBtf;
use netprobe_ebpf::layout::{CounterKey, PeerKey};
use prometheus::proto::MetricType;

use crate::kernel::error::ManagerError;
use crate::pipeline::peers::PeerWorld;

pub use packet_drops::{ReasonNames, drop_reason_names};

/// The catalog entry of `t`. Registration: one line per type.
pub fn of(t: ProbeType) -> &'static dyn ProbeKind {
    match t {
        ProbeType::TcpRetransmits => &tcp_retransmits::TcpRetransmits,
        ProbeType::TcpResets => &tcp_resets::TcpResets,
        ProbeType::TcpConnectLatency => &tcp_connect_latency::TcpConnectLatency,
        ProbeType::TcpRtt => &tcp_rtt::TcpRtt,
        ProbeType::PacketDrops => &packet_drops::PacketDrops,
        ProbeType::Traffic => &traffic::Traffic,
        ProbeType::Dns => &dns::Dns,
        ProbeType::Program => &program::Program,
    }
}

/// Where a program hooks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A BTF tracepoint (`tp_btf/<name>`).
    Tracepoint(&'static str),
    /// None: the agent runs it (kernel/prog_run.rs), walking a map.
    Run,
    /// A `cgroup_skb` program on the cgroup root, beside other programs
    /// there (multi-attach): every packet a socket sends (`egress`) or
    /// receives.
    CgroupSkb { egress: bool },
}

/// What the agent needs to know of the kernel's BTF, extracted once so the
/// (large) parsed BTF is not kept in memory.
#[derive(Clone, Debug, Default)]
pub struct KernelFacts {
    /// Arity of each raw tracepoint netprobe uses; absent = no such tracepoint.
    pub tracepoint_args: BTreeMap<&'static str, u32>,
}

impl KernelFacts {
    pub fn from_btf(btf: &KernelBtf) -> Self {
        let names: BTreeSet<&'static str> = ProbeType::ALL
            .iter()
            .flat_map(|t| of(*t).tracepoints().iter().copied())
            .collect();
        KernelFacts {
            tracepoint_args: names
                .into_iter()
                .filter_map(|tp| Some((tp, btf.tracepoint_args(tp)?)))
                .collect(),
        }
    }

    /// The arity of tracepoint `name`, or what the kernel lacks.
    pub fn tracepoint(&self, name: &'static str) -> Result<u32, String> {
        self.tracepoint_args
            .get(name)
            .copied()
            .ok_or_else(|| format!("kernel has no BTF tracepoint {name} (tp_btf/{name})"))
    }

    /// The arity of tracepoint `name`, 0 when absent.
    pub fn args(&self, name: &'static str) -> u32 {
        self.tracepoint_args.get(name).copied().unwrap_or(0)
    }
}

/// What the plans' probes ask of one target and of the kernel's shared
/// configuration.
#[derive(Clone, Debug, Default)]
pub struct Needs {
    /// `np_pod_info.flags` of the targets the probe selects.
    pub target_flags: u32,
    /// Histogram bounds (ns) by `np_bounds` index.
    pub bounds: BTreeMap<u32, BTreeSet<u64>>,
}

/// A metric family a plan's probe exports, before its series are filled.
#[derive(Clone, Debug)]
pub struct FamilySpec {
    /// The type whose counters fill it.
    pub probe: ProbeType,
    /// Built-in families have static names; a user program's come from its
    /// spec.
    pub name: Cow<'static, str>,
    pub help: Cow<'static, str>,
    pub kind: MetricType,
    /// Labels after the owner labels (the peer labels last).
    pub extra_labels: Vec<Cow<'static, str>>,
    /// The probe's peer classes, when its series carry peer labels.
    pub peers: Option<PeersPlan>,
    /// Histogram bounds of the plan (seconds) and the kernel's union bounds (ns).
    pub bounds: Option<(Vec<f64>, Vec<u64>)>,
    /// Label values this family may export (the drop-reason allow-list).
    pub allow: Option<Vec<String>>,
    /// The user program's metric this family exports (Program only).
    pub program: Option<Arc<ProgramMetricPlan>>,
}

impl FamilySpec {
    pub fn counter(
        probe: ProbeType,
        name: &'static str,
        help: &'static str,
        extra_labels: &'static [&'static str],
    ) -> Self {
        FamilySpec {
            probe,
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind: MetricType::COUNTER,
            extra_labels: extra_labels.iter().map(|l| Cow::Borrowed(*l)).collect(),
            peers: None,
            bounds: None,
            allow: None,
            program: None,
        }
    }

    /// The same family with the peer labels `p` asks for after its own.
    pub fn with_peers(mut self, p: Option<&PeersPlan>) -> Self {
        if let Some(p) = p {
            self.extra_labels
                .extend(p.labels.iter().map(|l| Cow::Borrowed(l.as_str())));
            self.peers = Some(p.clone());
        }
        self
    }
}

/// Values of one series: a counter or a histogram over kernel bucket indices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Acc {
    pub value: u64,
    /// By kernel bucket index (histograms only).
    pub buckets: BTreeMap<u16, u64>,
    pub sum_ns: u64,
}

/// The counters the kernel holds for one target.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetCounters<'a> {
    pub counters: &'a [(&'a CounterKey, u64)],
    pub peers: &'a [(&'a PeerKey, u64)],
    /// The target's entries in the plan's user program's maps, if any.
    pub program: Option<&'a program::SlotEntries>,
}

impl TargetCounters<'_> {
    /// Values of kernel metric `metric`, with their `sub` index.
    pub fn of(&self, metric: u16) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.counters
            .iter()
            .filter(move |(k, _)| k.metric == metric)
            .map(|(k, v)| (k.sub, *v))
    }
}

/// Where a family's series go: series key (owner labels, then extra labels)
/// → values.
pub type Series = BTreeMap<Vec<String>, Acc>;

/// One target's counters on their way into one family's series.
pub struct Fill<'a> {
    pub series: &'a mut Series,
    /// Builds a series key from the extra label values.
    pub key: &'a dyn Fn(&[&str]) -> Vec<String>,
    pub counters: TargetCounters<'a>,
    pub reasons: &'a ReasonNames,
    /// Where peers are, for families with peer labels.
    pub world: &'a PeerWorld,
}

impl Fill<'_> {
    /// Add `v` to the counter series with extra labels `extra`.
    pub fn add(&mut self, extra: &[&str], v: u64) {
        self.series.entry((self.key)(extra)).or_default().value += v;
    }
}

/// One probe type on a node.
pub trait ProbeKind: Sync {
    /// The tracepoints its programs may attach to (to read their arity).
    fn tracepoints(&self) -> &'static [&'static str];

    /// Its programs and hooks on this kernel, or what the kernel lacks.
    fn programs(&self, facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String>;

    /// What this kernel hides from it, if anything (the agent reports the
    /// type `Partial` with this reason: never a silent undercount).
    fn partial(&self, _facts: &KernelFacts) -> Option<String> {
        None
    }

    /// The kernel metric ids (`np_counter_key.metric`) it owns: reset when it
    /// is detached.
    fn metrics(&self) -> &'static [u16];

    /// Its bit in `np_config.types`, for a program several types share.
    fn config_bit(&self) -> u32 {
        0
    }

    /// Its `np_bounds` index and the kernel metrics that restart when those
    /// bounds change, if it is a histogram.
    fn histogram(&self) -> Option<(u32, &'static [u16])> {
        None
    }

    /// Kernel state it keeps besides counters, dropped when it is detached.
    fn on_detach(&self, _ebpf: &mut Ebpf) -> Result<(), ManagerError> {
        Ok(())
    }

    /// What a plan's probe of this type asks of its targets.
    fn needs(&self, _p: &PlannedProbe, _needs: &mut Needs) {}

    /// The families a plan's probe of this type exports. `bounds` is the
    /// kernel's union of histogram bounds by index.
    fn families(&self, p: &PlannedProbe, bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec>;

    /// Add one target's counters to family `f` (one of this type's).
    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>);
}
