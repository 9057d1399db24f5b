//! Plan builders for every test tier: one place that knows how a test names
//! a probe and builds its plan.

use netprobe_api::plan::{PlanScope, PlannedMetrics};
use netprobe_api::selector::Selector;
use netprobe_api::{Granularity, NetworkProbeSpec, PlanSource, PlannedProbe, Probe, ProbeId, ProbePlan, SourceKind};

/// The source of a NetworkProbe `<ns>/<name>` (with `ns`) or a
/// ClusterNetworkProbe `<name>` (without).
pub fn source(ns: Option<&str>, name: &str, uid: &str, generation: i64) -> PlanSource {
    let kind = if ns.is_some() {
        SourceKind::Namespaced
    } else {
        SourceKind::Cluster
    };
    PlanSource::new(ProbeId::new(kind, ns, name), uid, generation)
}

/// The plan the operator builds for `spec` (panics on a meaning error: a
/// bug in the test).
pub fn build(
    source: PlanSource,
    spec: &NetworkProbeSpec,
    namespace_selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> ProbePlan {
    ProbePlan::build(source, spec, namespace_selector).unwrap_or_else(|e| panic!("test plan is invalid: {e:?}"))
}

/// The plan of NetworkProbe `<ns>/<name>` with `probes` and defaults
/// (uid `<name>`, generation 1).
pub fn plan_in(ns: &str, name: &str, probes: Vec<Probe>) -> ProbePlan {
    let spec = NetworkProbeSpec {
        probes,
        ..Default::default()
    };
    build(source(Some(ns), name, name, 1), &spec, None)
}

/// A NetworkProbe plan `shop/<name>` from already planned probes, for tests
/// of what agents do with plans.
pub fn planned(name: &str, probes: Vec<PlannedProbe>, granularity: Granularity, max_series: u32) -> ProbePlan {
    ProbePlan {
        format_version: netprobe_api::PLAN_FORMAT_VERSION,
        source: source(Some("shop"), name, name, 1),
        scope: PlanScope::Namespace {
            namespace: "shop".into(),
        },
        probes,
        pod_selector: Selector::default(),
        node_selector: Selector::default(),
        metrics: PlannedMetrics {
            granularity,
            max_series_per_node: max_series,
        },
    }
}

/// The plan of ClusterNetworkProbe `<name>` with `spec` (uid `<name>`,
/// generation 1), over every namespace.
pub fn plan_cluster(name: &str, spec: &NetworkProbeSpec) -> ProbePlan {
    build(source(None, name, name, 1), spec, None)
}
