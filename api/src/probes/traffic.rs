//! Traffic, API side: no options. What it counts and how is in
//! docs/probes.md; its kernel side is `ebpf/src/bpf/probes/traffic.bpf.c`.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// A planned Traffic probe: nothing to configure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TrafficPlan {}

pub(crate) fn plan(_field: &str) -> Result<TrafficPlan, Vec<FieldError>> {
    Ok(TrafficPlan {})
}
