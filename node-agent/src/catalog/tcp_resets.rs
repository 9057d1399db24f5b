//! TcpResets: resets sent and received per pod. Kernel side:
//! `tp_btf/tcp_send_reset` and `tp_btf/tcp_receive_reset` in
//! `ebpf/src/bpf/probes/tcp_resets.bpf.c`.

use std::collections::BTreeMap;

use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_ebpf::layout::metric;
use netprobe_ebpf::programs;

use super::{FamilySpec, Fill, Hook, KernelFacts, Needs, ProbeKind, peers};

pub struct TcpResets;

impl ProbeKind for TcpResets {
    fn tracepoints(&self) -> &'static [&'static str] {
        &["tcp_send_reset", "tcp_receive_reset"]
    }

    fn programs(&self, facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        facts.tracepoint("tcp_send_reset")?;
        facts.tracepoint("tcp_receive_reset")?;
        Ok(vec![
            (programs::SEND_RESET, Hook::Tracepoint("tcp_send_reset")),
            (programs::RECEIVE_RESET, Hook::Tracepoint("tcp_receive_reset")),
        ])
    }

    fn partial(&self, facts: &KernelFacts) -> Option<String> {
        // Linux 6.10 added the reset reason and traces every reset sent.
        (facts.args("tcp_send_reset") < 3).then(|| {
            "resets sent without a full socket (to a closed port, from TIME_WAIT or a \
             pending connection) are not visible before Linux 6.10"
                .into()
        })
    }

    fn metrics(&self) -> &'static [u16] {
        &[metric::RST_SENT, metric::RST_RECV]
    }

    fn needs(&self, p: &PlannedProbe, needs: &mut Needs) {
        peers::needs(p.peers(), needs);
    }

    fn families(&self, p: &PlannedProbe, _bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec> {
        vec![
            FamilySpec::counter(
                ProbeType::TcpResets,
                "netprobe_tcp_resets_total",
                "TCP resets sent and received.",
                &["direction"],
            )
            .with_peers(p.peers()),
        ]
    }

    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        for (dir, m) in [("sent", metric::RST_SENT), ("received", metric::RST_RECV)] {
            if let Some(plan) = &f.peers {
                peers::fill_counter(out, plan, m, &|_| vec![dir]);
                continue;
            }
            let n: Vec<u64> = out.counters.of(m).map(|(_, v)| v).collect();
            for v in n {
                out.add(&[dir], v);
            }
        }
    }
}
