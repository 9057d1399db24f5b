//! Traffic, API side: its options (peer classes) and its planned form. What
//! it counts and how is in docs/probes.md; its kernel side is
//! `ebpf/src/bpf/probes/traffic.bpf.c`.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::probes::peers::{self, PeersOptions, PeersPlan};

/// Options of a Traffic probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficOptions {
    /// Label series with where the other end is, in bounded classes. Costs
    /// a hash update per packet of the pods it selects (docs/probes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersOptions>,
}

/// A planned Traffic probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TrafficPlan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersPlan>,
}

pub(crate) fn plan(opts: Option<&TrafficOptions>, field: &str) -> Result<TrafficPlan, Vec<FieldError>> {
    Ok(TrafficPlan {
        peers: peers::plan_opt(opts.and_then(|o| o.peers.as_ref()), field)?,
    })
}
