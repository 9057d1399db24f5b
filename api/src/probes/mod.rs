//! The probe catalog, API side: each probe type's options, defaults and
//! validation live in its own module; this file registers them. The agent's
//! side of the catalog (programs, maps, metric families) is
//! `node-agent/src/kernel/catalog`; the recipe for a new type is in DESIGN.md.

pub mod dns;
pub mod histogram;
pub mod packet_drops;
pub mod peers;
pub mod program;
pub mod tcp_connect_latency;
pub mod tcp_resets;
pub mod tcp_retransmits;
pub mod tcp_rtt;
pub mod traffic;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::spec::{Probe, ProbeType};

pub use dns::{DnsOptions, DnsPlan};
pub use histogram::HistogramPlan;
pub use packet_drops::PacketDropsPlan;
pub use peers::{PeerLabel, PeersPlan};
pub use program::{ProgramMetricPlan, ProgramPlan};
pub use tcp_connect_latency::TcpConnectLatencyPlan;
pub use tcp_resets::TcpResetsPlan;
pub use tcp_retransmits::TcpRetransmitsPlan;
pub use traffic::TrafficPlan;

/// One probe type with every option defaulted, as the plan document holds
/// it (`{"type": "<Type>", <its planned options>}`). Registration: one
/// variant per type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type")]
pub enum PlannedProbe {
    TcpRetransmits(TcpRetransmitsPlan),
    TcpResets(TcpResetsPlan),
    TcpConnectLatency(TcpConnectLatencyPlan),
    TcpRtt(HistogramPlan),
    PacketDrops(PacketDropsPlan),
    Traffic(TrafficPlan),
    Dns(DnsPlan),
    Program(ProgramPlan),
}

impl PlannedProbe {
    pub fn probe_type(&self) -> ProbeType {
        match self {
            PlannedProbe::TcpRetransmits(_) => ProbeType::TcpRetransmits,
            PlannedProbe::TcpResets(_) => ProbeType::TcpResets,
            PlannedProbe::TcpConnectLatency(_) => ProbeType::TcpConnectLatency,
            PlannedProbe::TcpRtt(_) => ProbeType::TcpRtt,
            PlannedProbe::PacketDrops(_) => ProbeType::PacketDrops,
            PlannedProbe::Traffic(_) => ProbeType::Traffic,
            PlannedProbe::Dns(_) => ProbeType::Dns,
            PlannedProbe::Program(_) => ProbeType::Program,
        }
    }

    /// The peer classes a probe asks for, if its type has them.
    pub fn peers(&self) -> Option<&PeersPlan> {
        match self {
            PlannedProbe::TcpRetransmits(o) => o.peers.as_ref(),
            PlannedProbe::TcpResets(o) => o.peers.as_ref(),
            PlannedProbe::TcpConnectLatency(o) => o.peers.as_ref(),
            PlannedProbe::Traffic(o) => o.peers.as_ref(),
            _ => None,
        }
    }

    /// The histogram of a latency type.
    pub fn histogram(&self) -> Option<&HistogramPlan> {
        match self {
            PlannedProbe::TcpConnectLatency(c) => Some(&c.histogram),
            PlannedProbe::TcpRtt(h) => Some(h),
            PlannedProbe::Dns(d) => Some(&d.histogram),
            _ => None,
        }
    }
}

/// A probe entry as its type plans it. Options of another type are a
/// mistake the user should hear about (the CEL rules say the same at
/// admission).
pub(crate) fn plan(p: &Probe, field: &str) -> Result<PlannedProbe, Vec<FieldError>> {
    let mut errors: Vec<FieldError> = options_present(p)
        .into_iter()
        .filter(|(t, set)| *set && *t != p.type_)
        .map(|(t, _)| {
            FieldError::new(
                format!("{field}.{}", t.options_field()),
                format!("options for {t} are not allowed on a probe of type {}", p.type_),
            )
        })
        .collect();
    let options = format!("{field}.{}", p.type_.options_field());
    // Registration: one line per type.
    let planned = match p.type_ {
        ProbeType::TcpRetransmits => {
            tcp_retransmits::plan(p.tcp_retransmits.as_ref(), &options).map(PlannedProbe::TcpRetransmits)
        }
        ProbeType::TcpResets => tcp_resets::plan(p.tcp_resets.as_ref(), &options).map(PlannedProbe::TcpResets),
        ProbeType::TcpConnectLatency => {
            tcp_connect_latency::plan(p.tcp_connect_latency.as_ref(), &options).map(PlannedProbe::TcpConnectLatency)
        }
        ProbeType::TcpRtt => tcp_rtt::plan(p.tcp_rtt.as_ref(), &options).map(PlannedProbe::TcpRtt),
        ProbeType::PacketDrops => packet_drops::plan(p.packet_drops.as_ref(), &options).map(PlannedProbe::PacketDrops),
        ProbeType::Traffic => traffic::plan(p.traffic.as_ref(), &options).map(PlannedProbe::Traffic),
        ProbeType::Dns => dns::plan(p.dns.as_ref(), &options).map(PlannedProbe::Dns),
        ProbeType::Program => program::plan(p.program.as_ref(), &options).map(PlannedProbe::Program),
    };
    match planned {
        Ok(pp) if errors.is_empty() => Ok(pp),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.extend(e);
            Err(errors)
        }
    }
}

/// Which types' options an entry sets.
fn options_present(p: &Probe) -> [(ProbeType, bool); 8] {
    [
        (ProbeType::TcpRetransmits, p.tcp_retransmits.is_some()),
        (ProbeType::TcpResets, p.tcp_resets.is_some()),
        (ProbeType::TcpConnectLatency, p.tcp_connect_latency.is_some()),
        (ProbeType::TcpRtt, p.tcp_rtt.is_some()),
        (ProbeType::PacketDrops, p.packet_drops.is_some()),
        (ProbeType::Dns, p.dns.is_some()),
        (ProbeType::Traffic, p.traffic.is_some()),
        (ProbeType::Program, p.program.is_some()),
    ]
}
