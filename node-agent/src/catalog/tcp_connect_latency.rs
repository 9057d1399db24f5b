//! TcpConnectLatency: SYN sent to established of active opens, and the
//! opens that failed, per pod. Kernel side: the socket-state program it
//! shares with TcpRtt (`tp_btf/inet_sock_set_state`, selected by its bit in
//! `np_config.types`) in `ebpf/src/bpf/probes/sock_state.bpf.c`.

use std::collections::BTreeMap;

use aya::Ebpf;
use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_ebpf::layout::{self, BOUNDS_CONNECT, CONNECT_FAIL_REASONS, TYPE_CONNECT, metric};
use netprobe_ebpf::{maps, programs};

use super::{FamilySpec, Fill, Hook, KernelFacts, Needs, ProbeKind, histogram, peers};
use crate::kernel::error::{ManagerError, clear_hash};

pub struct TcpConnectLatency;

const LATENCY: &str = "netprobe_tcp_connect_latency_seconds";

impl ProbeKind for TcpConnectLatency {
    fn tracepoints(&self) -> &'static [&'static str] {
        &["inet_sock_set_state"]
    }

    fn programs(&self, facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        facts.tracepoint("inet_sock_set_state")?;
        Ok(vec![(programs::SOCK_STATE, Hook::Tracepoint("inet_sock_set_state"))])
    }

    fn metrics(&self) -> &'static [u16] {
        &[metric::CONNECT_BUCKET, metric::CONNECT_SUM, metric::CONNECT_FAIL]
    }

    fn config_bit(&self) -> u32 {
        TYPE_CONNECT
    }

    fn histogram(&self) -> Option<(u32, &'static [u16])> {
        Some((BOUNDS_CONNECT, &[metric::CONNECT_BUCKET, metric::CONNECT_SUM]))
    }

    /// Connects pending when it was detached: a socket that later reuses
    /// one's address must not find its SYN time.
    fn on_detach(&self, ebpf: &mut Ebpf) -> Result<(), ManagerError> {
        clear_hash::<u64, layout::Connect>(ebpf, maps::CONNECTING)
    }

    fn needs(&self, p: &PlannedProbe, needs: &mut Needs) {
        if let PlannedProbe::TcpConnectLatency(c) = p {
            histogram::needs(BOUNDS_CONNECT, needs);
            peers::needs(c.peers.as_ref(), needs);
        }
    }

    fn families(&self, p: &PlannedProbe, bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec> {
        let buckets = match p {
            PlannedProbe::TcpConnectLatency(c) => c.histogram.buckets.as_slice(),
            _ => &[],
        };
        vec![
            histogram::family(
                ProbeType::TcpConnectLatency,
                LATENCY,
                "Active TCP open latency, SYN sent to established.",
                buckets,
                BOUNDS_CONNECT,
                bounds,
                &[],
            )
            .with_peers(p.peers()),
            FamilySpec::counter(
                ProbeType::TcpConnectLatency,
                "netprobe_tcp_connect_failures_total",
                "Active TCP opens that failed, by reason.",
                &["reason"],
            )
            .with_peers(p.peers()),
        ]
    }

    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        let reason = |sub: u16| CONNECT_FAIL_REASONS.get(sub as usize).copied().unwrap_or("other");
        match (f.name == LATENCY, &f.peers) {
            (true, Some(plan)) => return peers::fill_connect_histogram(out, plan),
            (true, None) => return histogram::fill(out, metric::CONNECT_BUCKET, metric::CONNECT_SUM),
            (false, Some(plan)) => return peers::fill_counter(out, plan, metric::CONNECT_FAIL, &|s| vec![reason(s)]),
            (false, None) => {}
        }
        let fails: Vec<(u16, u64)> = out.counters.of(metric::CONNECT_FAIL).collect();
        for (sub, v) in fails {
            out.add(&[reason(sub)], v);
        }
    }
}
