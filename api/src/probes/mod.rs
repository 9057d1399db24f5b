//! The probe catalog, API side: each probe type's options, defaults and
//! validation live in its own module; this file registers them. The agent's
//! side of the catalog (programs, maps, metric families) is
//! `node-agent/src/kernel/catalog`; the recipe for a new type is in DESIGN.md.

pub mod histogram;
pub mod packet_drops;
pub mod tcp_connect_latency;
pub mod tcp_resets;
pub mod tcp_retransmits;
pub mod tcp_rtt;

use crate::error::FieldError;
use crate::plan::PlannedProbe;
use crate::spec::{Probe, ProbeType};

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
        ProbeType::TcpRetransmits => tcp_retransmits::plan(p.tcp_retransmits.as_ref(), &options),
        ProbeType::TcpResets => tcp_resets::plan(&options),
        ProbeType::TcpConnectLatency => tcp_connect_latency::plan(p.tcp_connect_latency.as_ref(), &options),
        ProbeType::TcpRtt => tcp_rtt::plan(p.tcp_rtt.as_ref(), &options),
        ProbeType::PacketDrops => packet_drops::plan(p.packet_drops.as_ref(), &options),
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
fn options_present(p: &Probe) -> [(ProbeType, bool); 4] {
    [
        (ProbeType::TcpRetransmits, p.tcp_retransmits.is_some()),
        (ProbeType::TcpConnectLatency, p.tcp_connect_latency.is_some()),
        (ProbeType::TcpRtt, p.tcp_rtt.is_some()),
        (ProbeType::PacketDrops, p.packet_drops.is_some()),
    ]
}
