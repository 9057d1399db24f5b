//! TcpRtt: smoothed RTT of established connections, sampled per connection
//! every interval and at close. Kernel side: the socket-state program it
//! shares with TcpConnectLatency marks connections (a hash by socket), and
//! a program the agent runs walks that hash and samples them
//! (`ebpf/src/bpf/probes/sock_state.bpf.c`, `kernel/prog_run.rs`).

use std::collections::BTreeMap;

use aya::Ebpf;
use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_ebpf::layout::{self, BOUNDS_RTT, TYPE_RTT, metric};
use netprobe_ebpf::{maps, programs};

use super::{FamilySpec, Fill, Hook, KernelFacts, Needs, ProbeKind, histogram};
use crate::kernel::error::{ManagerError, clear_hash};

pub struct TcpRtt;

impl ProbeKind for TcpRtt {
    fn tracepoints(&self) -> &'static [&'static str] {
        &["inet_sock_set_state"]
    }

    fn programs(&self, facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        facts.tracepoint("inet_sock_set_state")?;
        Ok(vec![
            (programs::SOCK_STATE, Hook::Tracepoint("inet_sock_set_state")),
            (programs::RTT_SAMPLE, Hook::Run),
        ])
    }

    fn metrics(&self) -> &'static [u16] {
        &[metric::RTT_BUCKET, metric::RTT_SUM]
    }

    fn config_bit(&self) -> u32 {
        TYPE_RTT
    }

    fn histogram(&self) -> Option<(u32, &'static [u16])> {
        Some((BOUNDS_RTT, &[metric::RTT_BUCKET, metric::RTT_SUM]))
    }

    /// Connections marked when it was detached: none is sampled any more.
    fn on_detach(&self, ebpf: &mut Ebpf) -> Result<(), ManagerError> {
        clear_hash::<u64, layout::RttSock>(ebpf, maps::RTT_SOCKS)
    }

    fn needs(&self, p: &PlannedProbe, needs: &mut Needs) {
        if let PlannedProbe::TcpRtt(_) = p {
            histogram::needs(BOUNDS_RTT, needs);
        }
    }

    fn families(&self, p: &PlannedProbe, bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec> {
        let buckets = match p {
            PlannedProbe::TcpRtt(h) => h.buckets.as_slice(),
            _ => &[],
        };
        vec![histogram::family(
            ProbeType::TcpRtt,
            "netprobe_tcp_rtt_seconds",
            "Smoothed RTT of established TCP connections, sampled per connection periodically and at close.",
            buckets,
            BOUNDS_RTT,
            bounds,
            &[],
        )]
    }

    fn fill(&self, _f: &FamilySpec, out: &mut Fill<'_>) {
        histogram::fill(out, metric::RTT_BUCKET, metric::RTT_SUM);
    }
}
