//! TcpRetransmits, API side: its options and its planned form.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Options of a TcpRetransmits probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpRetransmitsOptions {
    /// Add the remote address and port as labels (`peer_address`,
    /// `peer_port`). Each distinct peer becomes its own series and counts
    /// against metrics.maxSeriesPerNode. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_labels: Option<bool>,
}

/// A planned TcpRetransmits probe (in the plan document).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TcpRetransmitsPlan {
    pub peer_labels: bool,
}

pub(crate) fn plan(opts: Option<&TcpRetransmitsOptions>, _field: &str) -> Result<TcpRetransmitsPlan, Vec<FieldError>> {
    Ok(TcpRetransmitsPlan {
        peer_labels: opts.and_then(|o| o.peer_labels).unwrap_or(false),
    })
}
