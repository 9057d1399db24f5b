//! TcpResets, API side: no options.

use crate::error::FieldError;
use crate::plan::PlannedProbe;

pub(crate) fn plan(_field: &str) -> Result<PlannedProbe, Vec<FieldError>> {
    Ok(PlannedProbe::TcpResets {})
}
