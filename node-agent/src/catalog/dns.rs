//! Dns: response time, response codes and timeouts of the DNS queries each
//! pod sends. Kernel side: `ebpf/src/bpf/probes/dns.bpf.c`, run by the
//! `cgroup_skb` programs it shares with Traffic (`probes/skb.bpf.c`); the
//! queries never answered are counted by the agent's sweep of the pending
//! map (`ProbeManager::sweep_dns`).

use std::collections::BTreeMap;

use aya::Ebpf;
use netprobe_api::ProbeType;
use netprobe_api::plan::PlannedProbe;
use netprobe_ebpf::layout::{self, BOUNDS_DNS, DNS_RCODES, TYPE_DNS, metric};
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
        let buckets = match p {
            PlannedProbe::Dns(h) => h.buckets.as_slice(),
            _ => &[],
        };
        vec![
            histogram::family(
                ProbeType::Dns,
                DURATION,
                "Time from a DNS query the pod sent over UDP to its response, for responses within the agent's timeout.",
                buckets,
                BOUNDS_DNS,
                bounds,
            ),
            FamilySpec::counter(
                ProbeType::Dns,
                RESPONSES,
                "DNS responses over UDP the pod received within the agent's timeout, by response code.",
                &["rcode"],
            ),
            FamilySpec::counter(
                ProbeType::Dns,
                TIMEOUTS,
                "DNS queries the pod sent over UDP that got no response within the agent's timeout.",
                &[],
            ),
            FamilySpec::counter(
                ProbeType::Dns,
                QUERIES,
                "DNS queries the pod sent over UDP (a resent query with the same ID on the same socket counts once).",
                &[],
            ),
        ]
    }

    fn fill(&self, f: &FamilySpec, out: &mut Fill<'_>) {
        match f.name {
            DURATION => histogram::fill(out, metric::DNS_BUCKET, metric::DNS_SUM),
            RESPONSES => {
                let codes: Vec<(u16, u64)> = out.counters.of(metric::DNS_RCODE).collect();
                for (code, v) in codes {
                    out.add(&[rcode_name(code)], v);
                }
            }
            TIMEOUTS => {
                let n: u64 = out
                    .counters
                    .of(metric::DNS_LATE)
                    .chain(out.counters.of(metric::DNS_UNANSWERED))
                    .map(|(_, v)| v)
                    .sum();
                if n > 0 {
                    out.add(&[], n);
                }
            }
            _ => {
                let n: u64 = out.counters.of(metric::DNS_QUERIES).map(|(_, v)| v).sum();
                if n > 0 {
                    out.add(&[], n);
                }
            }
        }
    }
}

/// The `rcode` label of a response code.
pub fn rcode_name(code: u16) -> &'static str {
    DNS_RCODES.get(usize::from(code)).copied().unwrap_or("other")
}
