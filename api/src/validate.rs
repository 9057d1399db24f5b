//! Validation of meaning, beyond what the CRD schema and its CEL rules can
//! express. The operator runs it on every reconcile (it never trusts that the
//! API server evaluated CEL), and the sample tests run it on `config/samples`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::FieldError;
use crate::plan::PlanBody;
use crate::spec::NetworkProbeSpec;

/// Every meaning error of a spec (empty when valid), with the namespace
/// selector of a ClusterNetworkProbe when given. The same checks as plan
/// building, so "valid" always means "a plan can be built".
pub fn validate_spec(spec: &NetworkProbeSpec, namespace_selector: Option<&LabelSelector>) -> Vec<FieldError> {
    let mut errors = match PlanBody::check(spec) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    };
    if let Err(e) = crate::selector::Selector::parse(namespace_selector, "spec.namespaceSelector") {
        errors.extend(e);
    }
    errors
}
