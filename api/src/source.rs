//! Which resource a probe is: its kind and its identity, one type each for
//! the operator, the plans and the agents.

use kube::core::{ApiResource, GroupVersionKind};
use kube::{CustomResourceExt, Resource};
use serde::{Deserialize, Serialize};

use crate::spec::{ClusterNetworkProbe, NetworkProbe};

/// The two kinds of probe, which share one plan format and one reconcile path.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
pub enum SourceKind {
    /// A `NetworkProbe`: selects pods of its own namespace only.
    #[serde(rename = "NetworkProbe")]
    Namespaced,
    /// A `ClusterNetworkProbe`: selects pods of the namespaces its
    /// namespaceSelector matches.
    #[serde(rename = "ClusterNetworkProbe")]
    Cluster,
}

impl SourceKind {
    pub const ALL: [SourceKind; 2] = [SourceKind::Namespaced, SourceKind::Cluster];

    /// The Kubernetes kind.
    pub fn kind(self) -> &'static str {
        match self {
            SourceKind::Namespaced => "NetworkProbe",
            SourceKind::Cluster => "ClusterNetworkProbe",
        }
    }

    pub fn from_kind(kind: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.kind() == kind)
    }

    pub fn plural(self) -> String {
        match self {
            SourceKind::Namespaced => NetworkProbe::plural(&()).to_string(),
            SourceKind::Cluster => ClusterNetworkProbe::plural(&()).to_string(),
        }
    }

    /// For untyped API calls (both kinds are watched and patched untyped, so
    /// one unreadable object never stalls a watch).
    pub fn api_resource(self) -> ApiResource {
        let gvk = GroupVersionKind::gvk(crate::keys::GROUP, crate::keys::VERSION, self.kind());
        ApiResource::from_gvk_with_plural(&gvk, &self.plural())
    }

    pub fn crd_name(self) -> String {
        match self {
            SourceKind::Namespaced => NetworkProbe::crd_name().to_string(),
            SourceKind::Cluster => ClusterNetworkProbe::crd_name().to_string(),
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// Which probe: kind, namespace (none for a ClusterNetworkProbe) and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeId {
    /// NetworkProbe or ClusterNetworkProbe.
    pub kind: SourceKind,
    /// Namespace of a NetworkProbe; absent for a ClusterNetworkProbe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the probe.
    pub name: String,
}

impl ProbeId {
    pub fn new(kind: SourceKind, namespace: Option<&str>, name: &str) -> Self {
        ProbeId {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// `<kind>/<namespace>/<name>` or `<kind>/<name>`: the `probe` label of
    /// every series and the key agents use in logs.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    /// `NetworkProbe shop/redis` for logs and messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}
