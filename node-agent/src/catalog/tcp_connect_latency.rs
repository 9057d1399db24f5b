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
use crate::kernel::error::{ManagerError, clear_hash, reset_connecting_slots};

pub struct TcpConnectLatency;

const LATENCY: &str = "netprobe_tcp_connect_latency_seconds";
const UNTRACKED: &str = "netprobe_tcp_connect_untracked_total";

impl ProbeKind for TcpConnectLatency {
    fn tracepoints(&self) -> &'static [&'static str] {
        &["inet_sock_set_state"]
    }

    fn programs(&self, facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        facts.tracepoint("inet_sock_set_state")?;
        Ok(vec![
            (programs::SOCK_STATE, Hook::Tracepoint("inet_sock_set_state")),
            (programs::CONNECT_SWEEP, Hook::Run),
        ])
    }

    fn metrics(&self) -> &'static [u16] {
        &[
            metric::CONNECT_BUCKET,
            metric::CONNECT_SUM,
            metric::CONNECT_FAIL,
            metric::CONNECT_UNTRACKED,
        ]
    }

    fn config_bit(&self) -> u32 {
        TYPE_CONNECT
    }

    fn histogram(&self) -> Option<(u32, &'static [u16])> {
        Some((BOUNDS_CONNECT, &[metric::CONNECT_BUCKET, metric::CONNECT_SUM]))
    }

    /// Connects pending when it was detached: a socket that later reuses
    /// one's address must not find its SYN time, nor a pod its share taken.
    fn on_detach(&self, ebpf: &mut Ebpf) -> Result<(), ManagerError> {
        clear_hash::<u64, layout::Connect>(ebpf, maps::CONNECTING)?;
        reset_connecting_slots(ebpf, None)
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
            FamilySpec::counter(
                ProbeType::TcpConnectLatency,
                UNTRACKED,
                "Active TCP opens of the pod that TcpConnectLatency did not follow: the pod's share of pending connects (--connect-pending-per-pod) or the node's table was full. Not zero means the pod's connect latency and failure series are partial.",
                &[],
            ),
        ]
    }

    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        if f.name == UNTRACKED {
            let n: u64 = out.counters.of(metric::CONNECT_UNTRACKED).map(|(_, v)| v).sum();
            if n > 0 {
                out.add(&[], n);
            }
            return;
        }
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
