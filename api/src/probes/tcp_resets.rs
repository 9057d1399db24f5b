//! TcpResets, API side: no options.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// A planned TcpResets probe: nothing to configure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TcpResetsPlan {}

pub(crate) fn plan(_field: &str) -> Result<TcpResetsPlan, Vec<FieldError>> {
    Ok(TcpResetsPlan {})
}
