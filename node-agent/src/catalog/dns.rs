//! Dns: response time, response codes and timeouts of the DNS queries each
//! pod sends. Kernel side: `ebpf/src/bpf/probes/dns.bpf.c`, run by the
//! `cgroup_skb` programs it shares with Traffic (`probes/skb.bpf.c`); the
//! queries never answered are counted by the agent's sweep of the pending
//! map (`ProbeManager::sweep_dns`).

use std::collections::BTreeMap;

use aya::Ebpf;
use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_ebpf::layout::{self, BOUNDS_DNS, DNS_QTYPES, DNS_RCODES, TYPE_DNS, metric};
use netprobe_ebpf::maps;

use super::{FamilySpec, Fill, Hook, KernelFacts, Needs, ProbeKind, histogram};
use crate::kernel::error::{ManagerError, clear_hash};

pub struct Dns;

const DURATION: &str = "netprobe_dns_request_duration_seconds";
const RESPONSES: &str = "netprobe_dns_responses_total";
const TIMEOUTS: &str = "netprobe_dns_timeouts_total";
const QUERIES: &str = "netprobe_dns_queries_total";

impl ProbeKind for Dns {
    fn tracepoints(&self) -> &'static [&'static str] {
        &[]
    }

    fn programs(&self, _facts: &KernelFacts) -> Result<Vec<(&'static str, Hook)>, String> {
        Ok(super::traffic::skb_programs())
    }

    fn metrics(&self) -> &'static [u16] {
        &[
            metric::DNS_BUCKET,
            metric::DNS_SUM,
            metric::DNS_RCODE,
            metric::DNS_QUERIES,
            metric::DNS_LATE,
            metric::DNS_UNANSWERED,
        ]
    }

    fn config_bit(&self) -> u32 {
        TYPE_DNS
    }

    fn histogram(&self) -> Option<(u32, &'static [u16])> {
        Some((BOUNDS_DNS, &[metric::DNS_BUCKET, metric::DNS_SUM]))
    }

    /// Queries pending when it was detached are forgotten: none of them
    /// can be answered or time out for a probe any more.
    fn on_detach(&self, ebpf: &mut Ebpf) -> Result<(), ManagerError> {
        clear_hash::<layout::DnsKey, layout::DnsQuery>(ebpf, maps::DNS_PENDING)
    }

    fn needs(&self, p: &PlannedProbe, needs: &mut Needs) {
        if let PlannedProbe::Dns(_) = p {
            histogram::needs(BOUNDS_DNS, needs);
        }
    }

    fn families(&self, p: &PlannedProbe, bounds: &BTreeMap<u32, Vec<u64>>) -> Vec<FamilySpec> {
        let (buckets, qtype) = match p {
            PlannedProbe::Dns(d) => (d.histogram.buckets.as_slice(), d.qtype),
            _ => (&[][..], false),
        };
        let labels = |plain: &'static [&'static str], with: &'static [&'static str]| if qtype { with } else { plain };
        vec![
            histogram::family(
                ProbeType::Dns,
                DURATION,
                "Time from a DNS query the pod sent to its response, for responses within the agent's timeout.",
                buckets,
                BOUNDS_DNS,
                bounds,
                labels(&[], &["qtype"]),
            ),
            FamilySpec::counter(
                ProbeType::Dns,
                RESPONSES,
                "DNS responses the pod received within the agent's timeout, by response code.",
                labels(&["rcode"], &["rcode", "qtype"]),
            ),
            FamilySpec::counter(
                ProbeType::Dns,
                TIMEOUTS,
                "DNS queries the pod sent that got no response within the agent's timeout.",
                labels(&[], &["qtype"]),
            ),
            FamilySpec::counter(
                ProbeType::Dns,
                QUERIES,
                "DNS queries the pod sent (a query resent with the same ID on the same socket counts once).",
                labels(&[], &["qtype"]),
            ),
        ]
    }

    /// The kernel keeps every DNS counter by query type; a probe without
    /// the `qtype` label gets their sums.
    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        let by_qtype = f.extra_labels.iter().any(|l| l == "qtype");
        let add = |out: &mut Fill<'_>, first: Option<&str>, q: u16, v: u64| {
            let extra: Vec<&str> = first.into_iter().chain(by_qtype.then(|| qtype_name(q))).collect();
            out.add(&extra, v);
        };
        match f.name.as_ref() {
            DURATION => histogram::fill_parts(
                out,
                metric::DNS_BUCKET,
                metric::DNS_SUM,
                by_qtype.then_some(&qtype_name as &dyn Fn(u16) -> &'static str),
            ),
            RESPONSES => {
                let codes: Vec<(u16, u64)> = out.counters.of(metric::DNS_RCODE).collect();
                for (sub, v) in codes {
                    add(out, Some(rcode_name(sub & 0xf)), sub >> 4, v);
                }
            }
            TIMEOUTS => {
                let n: Vec<(u16, u64)> = out
                    .counters
                    .of(metric::DNS_LATE)
                    .chain(out.counters.of(metric::DNS_UNANSWERED))
                    .collect();
                for (q, v) in n {
                    add(out, None, q, v);
                }
            }
            _ => {
                let n: Vec<(u16, u64)> = out.counters.of(metric::DNS_QUERIES).collect();
                for (q, v) in n {
                    add(out, None, q, v);
                }
            }
        }
    }
}

/// The `qtype` label of a query type class (`np_dns_query.qtype`).
pub fn qtype_name(q: u16) -> &'static str {
    DNS_QTYPES.get(usize::from(q)).copied().unwrap_or("other")
}

/// The `rcode` label of a response code.
pub fn rcode_name(code: u16) -> &'static str {
    DNS_RCODES.get(usize::from(code)).copied().unwrap_or("other")
}
