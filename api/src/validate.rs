//! Validation of meaning, beyond what the CRD schema and its CEL rules can
//! express. The operator runs it on every reconcile (it never trusts that the
//! API server evaluated CEL), and the sample tests run it on `config/samples`.

use std::fmt;

use crate::plan::{self, PlanSource};
use crate::spec::NetworkProbeSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

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

/// Every meaning error of a spec (empty when valid). Same code path as plan
/// building, so "valid" always means "a plan can be built".
pub fn validate_spec(spec: &NetworkProbeSpec, namespace_selector: Option<&LabelSelector>) -> Vec<FieldError> {
    let source = PlanSource::for_validation();
    match plan::ProbePlan::build(source, spec, namespace_selector) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    }
}
