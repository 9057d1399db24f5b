//! PacketDrops, API side: the reason filter.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Options of a PacketDrops probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PacketDropsOptions {
    /// Only count drops with these kernel drop reasons (names of the
    /// `skb_drop_reason` enum without the `SKB_DROP_REASON_` prefix, for
    /// example NETFILTER_DROP). Absent exports every reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(regex(pattern = "^[A-Z][A-Z0-9_]{0,63}$")))]
    pub reasons: Option<Vec<String>>,
}

/// A planned PacketDrops probe. Empty `reasons` counts every reason except
/// NOT_SPECIFIED.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PacketDropsPlan {
    pub reasons: Vec<String>,
}

pub(crate) fn plan(opts: Option<&PacketDropsOptions>, field: &str) -> Result<PacketDropsPlan, Vec<FieldError>> {
    let reasons: BTreeSet<String> = opts
        .and_then(|o| o.reasons.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut errors = Vec::new();
    for r in &reasons {
        let ok = r.len() <= 64
            && r.starts_with(|c: char| c.is_ascii_uppercase())
            && r.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            errors.push(FieldError::new(
                format!("{field}.reasons"),
                format!("{r:?} is not a drop reason name (like NETFILTER_DROP)"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PacketDropsPlan {
        reasons: reasons.into_iter().collect(),
    })
}
