//! The one error type of meaning validation, shared by plan building and
//! selector parsing.

use std::fmt;

/// One problem with a spec, naming the field as `kubectl explain` spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Join errors into one condition message, bounded so a status never grows
/// without limit.
pub fn summarize(errors: &[FieldError], max_len: usize) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate() {
        let piece = if i == 0 { e.to_string() } else { format!("; {e}") };
        if out.len() + piece.len() > max_len {
            out.push_str(&format!("; and {} more", errors.len() - i));
            break;
        }
        out.push_str(&piece);
    }
    out
}
