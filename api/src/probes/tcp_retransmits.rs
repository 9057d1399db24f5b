//! TcpRetransmits, API side: its options and its planned form.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::probes::peers::{self, PeersOptions, PeersPlan};

/// Options of a TcpRetransmits probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpRetransmitsOptions {
    /// Label series with where the other end is, in bounded classes (peer
    /// kind, node, zone, the user's CIDR classes, role, server port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersOptions>,

    /// Deprecated: raw remote address and port as labels (`peer_address`,
    /// `peer_port`); unbounded, use `peers` instead. Each distinct peer is a
    /// series and counts against metrics.maxSeriesPerNode. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_labels: Option<bool>,
}

/// A planned TcpRetransmits probe (in the plan document).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TcpRetransmitsPlan {
    pub peer_labels: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersPlan>,
}

pub(crate) fn plan(opts: Option<&TcpRetransmitsOptions>, field: &str) -> Result<TcpRetransmitsPlan, Vec<FieldError>> {
    let peer_labels = opts.and_then(|o| o.peer_labels).unwrap_or(false);
    let peers = peers::plan_opt(opts.and_then(|o| o.peers.as_ref()), field)?;
    if peer_labels && peers.is_some() {
        return Err(vec![FieldError::new(
            format!("{field}.peerLabels"),
            "raw peer labels and peer classes (peers) exclude each other: use peers",
        )]);
    }
    Ok(TcpRetransmitsPlan { peer_labels, peers })
}
