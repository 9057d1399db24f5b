//! TcpResets, API side: its options (peer classes) and its planned form.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::probes::peers::{self, PeersOptions, PeersPlan};

/// Options of a TcpResets probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpResetsOptions {
    /// Label series with where the other end is, in bounded classes. A
    /// reset sent for a segment that reached no socket counts for its
    /// sender, with this pod as the server of the port it was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersOptions>,
}

/// A planned TcpResets probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TcpResetsPlan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersPlan>,
}

pub(crate) fn plan(opts: Option<&TcpResetsOptions>, field: &str) -> Result<TcpResetsPlan, Vec<FieldError>> {
    Ok(TcpResetsPlan {
        peers: peers::plan_opt(opts.and_then(|o| o.peers.as_ref()), field)?,
    })
}
