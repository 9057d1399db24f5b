//! Reading a NetworkProbe or ClusterNetworkProbe as the API server returns
//! it. The controllers watch both kinds as untyped objects and parse here, so
//! a spec this operator cannot read becomes an `InvalidSpec` condition on
//! that one probe instead of an error that stalls the whole watch.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};
use netprobe_api::{ClusterNetworkProbeSpec, NetworkProbeSpec, PlanSource, ProbeId, ProbeStatus};

pub use netprobe_api::SourceKind;

/// The spec, once readable: the shared part and, for a cluster probe, its
/// namespace selector.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadSpec {
    pub spec: NetworkProbeSpec,
    pub namespace_selector: Option<LabelSelector>,
}

/// A probe as the reconciler sees it.
#[derive(Clone, Debug)]
pub struct ProbeSource {
    pub id: ProbeId,
    pub uid: String,
    pub generation: i64,
    pub resource_version: Option<String>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    /// The spec, or why it could not be read (naming the field).
    pub spec: Result<ReadSpec, String>,
    /// The current status; empty when absent or unreadable (it is rebuilt).
    pub status: ProbeStatus,
}

impl ProbeSource {
    pub fn parse(kind: SourceKind, obj: &DynamicObject) -> ProbeSource {
        let spec_value = obj.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
        let spec = match kind {
            SourceKind::Namespaced => {
                serde_path_to_error::deserialize::<_, NetworkProbeSpec>(spec_value).map(|spec| ReadSpec {
                    spec,
                    namespace_selector: None,
                })
            }
            SourceKind::Cluster => {
                serde_path_to_error::deserialize::<_, ClusterNetworkProbeSpec>(spec_value).map(|s| ReadSpec {
                    spec: s.probe,
                    namespace_selector: s.namespace_selector,
                })
            }
        }
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "spec".to_string()
            } else {
                format!("spec.{path}")
            };
            format!("{field}: {}", e.into_inner())
        });
        let status = obj
            .data
            .get("status")
            .and_then(|s| serde_json::from_value::<ProbeStatus>(s.clone()).ok())
            .unwrap_or_default();
        ProbeSource {
            id: ProbeId::new(kind, obj.namespace().as_deref(), &obj.name_any()),
            uid: obj.uid().unwrap_or_default(),
            generation: obj.meta().generation.unwrap_or(0),
            resource_version: obj.resource_version(),
            deleting: obj.meta().deletion_timestamp.is_some(),
            finalizers: obj.finalizers().to_vec(),
            spec,
            status,
        }
    }

    pub fn plan_source(&self) -> PlanSource {
        PlanSource::new(self.id.clone(), &self.uid, self.generation)
    }

    /// `NetworkProbe shop/redis` for logs and messages.
    pub fn display(&self) -> String {
        self.id.display()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "netprobe.dev/v1alpha1", "kind": "NetworkProbe",
            "metadata": {"name": "p", "namespace": "n", "uid": "u1", "generation": 2},
            "spec": spec,
            "status": {"nodes": "not a list"}
        }))
        .unwrap()
    }

    #[test]
    fn unreadable_spec_names_the_field() {
        let s = ProbeSource::parse(
            SourceKind::Namespaced,
            &obj(json!({"probes": [{"type": "TcpTeleport"}]})),
        );
        let err = s.spec.unwrap_err();
        assert!(err.starts_with("spec.probes[0].type:"), "{err}");
        let s = ProbeSource::parse(SourceKind::Namespaced, &obj(json!(null)));
        assert!(s.spec.is_err());
    }

    #[test]
    fn readable_spec_and_garbage_status() {
        let s = ProbeSource::parse(SourceKind::Namespaced, &obj(json!({"probes": [{"type": "TcpRtt"}]})));
        assert_eq!(s.spec.as_ref().unwrap().spec.probes.len(), 1);
        assert_eq!(s.status, ProbeStatus::default());
        assert_eq!(s.generation, 2);
        assert_eq!(s.plan_source().key(), "NetworkProbe/n/p");
    }
}
