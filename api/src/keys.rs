//! Names shared by the operator, the agent, the chart and the tests. They are
//! part of the public contract (`kubectl get cm -l netprobe.dev/plan`), so they
//! live in one place.

/// API group of both kinds.
pub const GROUP: &str = "netprobe.dev";
/// Served version of both kinds.
pub const VERSION: &str = "v1alpha1";

/// Label on every plan ConfigMap; its value is the plan's ConfigMap name, so a
/// selector on the key alone lists all plans.
pub const PLAN_LABEL: &str = "netprobe.dev/plan";
/// Label: kind of the source resource (`NetworkProbe` or `ClusterNetworkProbe`).
pub const SOURCE_KIND_LABEL: &str = "netprobe.dev/source-kind";
/// Label: namespace of the source resource (absent for cluster-scoped sources).
pub const SOURCE_NAMESPACE_LABEL: &str = "netprobe.dev/source-namespace";
/// Label: name of the source resource, when it fits a label value (63
/// characters); for selection only.
pub const SOURCE_NAME_LABEL: &str = "netprobe.dev/source-name";
/// Annotation: name of the source resource, whatever its length (names go
/// to 253 characters). What the operator and agents read.
pub const SOURCE_NAME_ANNOTATION: &str = "netprobe.dev/source-name";

/// The source name a plan ConfigMap's metadata gives: the annotation, else
/// (plans of earlier versions) the label.
pub fn source_name<'a>(
    labels: &'a std::collections::BTreeMap<String, String>,
    annotations: &'a std::collections::BTreeMap<String, String>,
) -> Option<&'a String> {
    annotations
        .get(SOURCE_NAME_ANNOTATION)
        .or_else(|| labels.get(SOURCE_NAME_LABEL))
}
/// Label: uid of the source resource, so a recreated probe of the same name is
/// never confused with its predecessor.
pub const SOURCE_UID_LABEL: &str = "netprobe.dev/source-uid";
/// Key of the plan document inside the ConfigMap's `data`.
pub const PLAN_DATA_KEY: &str = "plan.json";
/// Finalizer earlier versions put on NetworkProbes. The operator now removes
/// it wherever it finds it: a finalizer made probes, their namespaces and
/// the CRDs hang in Terminating once the operator was uninstalled.
pub const FINALIZER: &str = "netprobe.dev/plan-cleanup";
/// Field manager of the operator for every write it makes.
pub const OPERATOR_MANAGER: &str = "netprobe-operator";
/// Field manager of every agent: each writes only its own node's report, so
/// one name serves all (and stays within the API's 128-byte limit whatever
/// the node name).
pub const AGENT_MANAGER: &str = "netprobe-agent";
/// Default namespace the operator and agents are installed into.
pub const DEFAULT_NAMESPACE: &str = "netprobe-system";
