//! Where a NetworkProbe becomes a plan: the normalized, defaulted document the
//! operator writes into a ConfigMap for the agents. Same spec, same bytes, so
//! an unchanged probe never causes a write.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::FieldError;
use crate::selector::Selector;
use crate::source::{ProbeId, SourceKind};
use crate::spec::{Granularity, NetworkProbeSpec, ProbeType};

/// Version of the plan document. An agent refuses a plan whose version it
/// does not know instead of guessing; bump on any incompatible change.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Why a NetworkProbe may not have a Program probe.
pub const PROGRAM_CLUSTER_ONLY: &str = "Program probes are allowed only in a ClusterNetworkProbe: loading code into every node's kernel is a cluster-admin power";

/// Default series budget per probe per node.
pub const DEFAULT_MAX_SERIES_PER_NODE: u32 = 1000;

/// Which resource a plan comes from, at which version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlanSource {
    /// Kind, namespace and name (flattened: the plan document keeps them
    /// as top-level fields of `source`).
    #[serde(flatten)]
    pub id: ProbeId,
    pub uid: String,
    /// metadata.generation of the source when the plan was built.
    pub generation: i64,
}

impl PlanSource {
    pub fn new(id: ProbeId, uid: &str, generation: i64) -> Self {
        PlanSource {
            id,
            uid: uid.to_string(),
            generation,
        }
    }

    /// The `probe` label of every series ([`ProbeId::key`]).
    pub fn key(&self) -> String {
        self.id.key()
    }
}

/// Which pods a plan may ever select: the boundary of a namespaced probe is
/// part of the plan, so an agent cannot cross it whatever the pod selector says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PlanScope {
    /// Pods of exactly this namespace (a NetworkProbe).
    Namespace { namespace: String },
    /// Pods of namespaces matching the selector (a ClusterNetworkProbe).
    #[serde(rename_all = "camelCase")]
    Cluster { namespace_selector: Selector },
}

pub use crate::probes::PlannedProbe;

/// Series labelling and budget, defaulted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedMetrics {
    pub granularity: Granularity,
    pub max_series_per_node: u32,
}

/// The plan an agent executes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbePlan {
    pub format_version: u32,
    pub source: PlanSource,
    pub scope: PlanScope,
    /// Sorted by type, each type at most once.
    pub probes: Vec<PlannedProbe>,
    pub pod_selector: Selector,
    pub node_selector: Selector,
    pub metrics: PlannedMetrics,
}

/// Why an agent cannot use a plan document.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan is not valid JSON for this agent: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("plan format version {found} is not supported (this agent understands {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("plan document has no formatVersion")]
    MissingVersion,
    /// The document decodes but claims what its source may not have: the
    /// agent checks plans instead of trusting whoever wrote the ConfigMap.
    #[error("plan refused: {0}")]
    Refused(String),
}

/// Everything of a plan that comes from the spec alone, checked and
/// defaulted: what validation and plan building share.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanBody {
    pub probes: Vec<PlannedProbe>,
    pub pod_selector: Selector,
    pub node_selector: Selector,
    pub metrics: PlannedMetrics,
}

impl PlanBody {
    /// Check `spec`'s meaning and default it. Every error is returned at
    /// once, each naming its field.
    pub fn check(spec: &NetworkProbeSpec) -> Result<PlanBody, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut keep = |r: Result<Selector, Vec<FieldError>>| match r {
            Ok(s) => s,
            Err(e) => {
                errors.extend(e);
                Selector::default()
            }
        };
        let pod_selector = keep(Selector::parse(spec.pod_selector.as_ref(), "spec.podSelector"));
        let node_selector = keep(Selector::parse(spec.node_selector.as_ref(), "spec.nodeSelector"));

        if spec.probes.is_empty() {
            errors.push(FieldError::new("spec.probes", "must list at least one probe"));
        }
        let mut seen = BTreeSet::new();
        let mut probes = Vec::new();
        for (i, p) in spec.probes.iter().enumerate() {
            let field = format!("spec.probes[{i}]");
            if !seen.insert(p.type_) {
                errors.push(FieldError::new(
                    format!("{field}.type"),
                    format!("probe type {} appears more than once", p.type_),
                ));
                continue;
            }
            match crate::probes::plan(p, &field) {
                Ok(pp) => probes.push(pp),
                Err(e) => errors.extend(e),
            }
        }
        probes.sort_by_key(PlannedProbe::probe_type);

        let metrics = spec.metrics.clone().unwrap_or_default();
        let max_series_per_node = metrics.max_series_per_node.unwrap_or(DEFAULT_MAX_SERIES_PER_NODE);
        if !(1..=100_000).contains(&max_series_per_node) {
            errors.push(FieldError::new(
                "spec.metrics.maxSeriesPerNode",
                format!("{max_series_per_node} is outside 1..=100000"),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PlanBody {
            probes,
            pod_selector,
            node_selector,
            metrics: PlannedMetrics {
                granularity: metrics.granularity.unwrap_or_default(),
                max_series_per_node,
            },
        })
    }
}

impl ProbePlan {
    /// Validate `spec` and build its plan. `namespace_selector` is read for
    /// a ClusterNetworkProbe; a NetworkProbe's scope is its own namespace.
    /// Every meaning error is returned at once, each naming its field.
    pub fn build(
        source: PlanSource,
        spec: &NetworkProbeSpec,
        namespace_selector: Option<&LabelSelector>,
    ) -> Result<ProbePlan, Vec<FieldError>> {
        let scope = match (source.id.kind, &source.id.namespace) {
            (SourceKind::Namespaced, Some(ns)) => Ok(PlanScope::Namespace { namespace: ns.clone() }),
            (SourceKind::Namespaced, None) => Err(vec![FieldError::new(
                "metadata.namespace",
                "a NetworkProbe must have a namespace",
            )]),
            (SourceKind::Cluster, _) => Selector::parse(namespace_selector, "spec.namespaceSelector")
                .map(|namespace_selector| PlanScope::Cluster { namespace_selector }),
        };
        let body = PlanBody::check(spec).and_then(|b| match source.id.kind {
            SourceKind::Namespaced => match spec.probes.iter().position(|p| p.type_ == ProbeType::Program) {
                Some(i) => Err(vec![FieldError::new(
                    format!("spec.probes[{i}].type"),
                    PROGRAM_CLUSTER_ONLY,
                )]),
                None => Ok(b),
            },
            SourceKind::Cluster => Ok(b),
        });
        match (body, scope) {
            (Ok(body), Ok(scope)) => Ok(ProbePlan {
                format_version: PLAN_FORMAT_VERSION,
                source,
                scope,
                probes: body.probes,
                pod_selector: body.pod_selector,
                node_selector: body.node_selector,
                metrics: body.metrics,
            }),
            (body, scope) => Err(body
                .err()
                .unwrap_or_default()
                .into_iter()
                .chain(scope.err().unwrap_or_default())
                .collect()),
        }
    }

    /// The ConfigMap payload: pretty JSON (plans are meant to be read with
    /// kubectl) with a fixed field order, hence deterministic.
    pub fn to_json(&self) -> String {
        // A ProbePlan holds only strings, numbers, bools, sequences and
        // string-keyed maps: serialization cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Decode a plan, refusing unknown format versions before looking at the
    /// rest, so a newer operator's plan fails with a clear reason.
    pub fn from_json(s: &str) -> Result<ProbePlan, PlanError> {
        let raw: serde_json::Value = serde_json::from_str(s)?;
        let found = raw
            .get("formatVersion")
            .and_then(serde_json::Value::as_u64)
            .ok_or(PlanError::MissingVersion)?;
        if found != u64::from(PLAN_FORMAT_VERSION) {
            return Err(PlanError::UnsupportedVersion {
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: PLAN_FORMAT_VERSION,
            });
        }
        let plan: ProbePlan = serde_json::from_value(raw)?;
        plan.check()?;
        Ok(plan)
    }

    /// What a plan may claim, whoever wrote it: a NetworkProbe's plan selects
    /// only pods of that probe's namespace, and every histogram bound is one
    /// the kernel counts exactly.
    fn check(&self) -> Result<(), PlanError> {
        let id = &self.source.id;
        match (&id.kind, &self.scope) {
            (SourceKind::Namespaced, PlanScope::Namespace { namespace })
                if Some(namespace) == id.namespace.as_ref() => {}
            (SourceKind::Namespaced, scope) => {
                return Err(PlanError::Refused(format!(
                    "a NetworkProbe's plan selects pods of its own namespace only ({}); this one says {scope:?}",
                    id.namespace.as_deref().unwrap_or("none")
                )));
            }
            (SourceKind::Cluster, PlanScope::Cluster { .. }) => {}
            (SourceKind::Cluster, scope) => {
                return Err(PlanError::Refused(format!(
                    "a ClusterNetworkProbe's plan has a namespaceSelector scope; this one says {scope:?}"
                )));
            }
        }
        if id.kind == SourceKind::Namespaced && self.probe_types().contains(&ProbeType::Program) {
            return Err(PlanError::Refused(format!(
                "a NetworkProbe's plan has a Program: {PROGRAM_CLUSTER_ONLY}"
            )));
        }
        let grid = crate::probes::histogram::bound_grid_ns();
        for p in &self.probes {
            let Some(h) = p.histogram() else { continue };
            if let Some(b) = h
                .buckets
                .iter()
                .find(|b| !grid.iter().any(|g| (*g as f64 - **b * 1e9).abs() < 1e-3))
            {
                return Err(PlanError::Refused(format!(
                    "{} bucket bound {b} is not one the kernel counts exactly",
                    p.probe_type()
                )));
            }
        }
        Ok(())
    }

    /// Probe types in plan order.
    pub fn probe_types(&self) -> Vec<ProbeType> {
        self.probes.iter().map(PlannedProbe::probe_type).collect()
    }
}

/// Name of the plan ConfigMap of a source. A namespace cannot contain dots, so
/// `nprobe.<namespace>.<name>` is unique; names too long for a ConfigMap are
/// cut and suffixed with a hash of the full name.
pub fn plan_configmap_name(id: &ProbeId) -> String {
    let name = &id.name;
    let full = match (&id.namespace, id.kind) {
        (Some(ns), _) => format!("nprobe.{ns}.{name}"),
        (None, SourceKind::Cluster) => format!("cnprobe.{name}"),
        (None, SourceKind::Namespaced) => format!("nprobe.{name}"),
    };
    if full.len() <= 253 {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let mut cut = full[..242].trim_end_matches(['.', '-']).to_string();
    cut.push('-');
    cut.push_str(&hash);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::histogram::{HistogramOptions, HistogramPlan};
    use crate::probes::packet_drops::PacketDropsOptions;
    use crate::probes::tcp_connect_latency::{TcpConnectLatencyOptions, TcpConnectLatencyPlan};
    use crate::probes::tcp_retransmits::TcpRetransmitsOptions;
    use crate::probes::tcp_rtt::DEFAULT_RTT_BUCKETS;
    use crate::spec::{MetricsSpec, Probe};

    fn source(ns: Option<&str>) -> PlanSource {
        let kind = if ns.is_some() {
            SourceKind::Namespaced
        } else {
            SourceKind::Cluster
        };
        PlanSource::new(ProbeId::new(kind, ns, "p"), "u", 3)
    }

    fn spec(probes: Vec<Probe>) -> NetworkProbeSpec {
        NetworkProbeSpec {
            probes,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_filled_and_probes_sorted() {
        let s = spec(vec![
            Probe::new(ProbeType::TcpRtt),
            Probe::new(ProbeType::TcpRetransmits),
        ]);
        let plan = ProbePlan::build(source(Some("shop")), &s, None).unwrap();
        assert_eq!(plan.format_version, PLAN_FORMAT_VERSION);
        assert_eq!(plan.probe_types(), vec![ProbeType::TcpRetransmits, ProbeType::TcpRtt]);
        assert_eq!(
            plan.probes[1],
            PlannedProbe::TcpRtt(crate::probes::HistogramPlan {
                buckets: DEFAULT_RTT_BUCKETS.to_vec()
            })
        );
        assert_eq!(
            plan.metrics,
            PlannedMetrics {
                granularity: Granularity::Pod,
                max_series_per_node: 1000
            }
        );
        assert_eq!(
            plan.scope,
            PlanScope::Namespace {
                namespace: "shop".into()
            }
        );
    }

    #[test]
    fn same_meaning_same_bytes() {
        let mut a = spec(vec![
            Probe {
                packet_drops: Some(PacketDropsOptions {
                    reasons: Some(vec!["B".into(), "A".into(), "B".into()]),
                }),
                ..Probe::new(ProbeType::PacketDrops)
            },
            Probe::new(ProbeType::TcpResets),
        ]);
        let b_plan = {
            let mut b = a.clone();
            b.probes.reverse();
            if let Some(o) = b.probes[1].packet_drops.as_mut() {
                o.reasons = Some(vec!["A".into(), "B".into()]);
            }
            ProbePlan::build(source(Some("x")), &b, None).unwrap().to_json()
        };
        let a_plan = ProbePlan::build(source(Some("x")), &a, None).unwrap().to_json();
        assert_eq!(a_plan, b_plan);
        assert_eq!(a_plan, ProbePlan::build(source(Some("x")), &a, None).unwrap().to_json());
        a.suspend = Some(false);
        let round = ProbePlan::from_json(&a_plan).unwrap();
        assert_eq!(round.to_json(), a_plan);
    }

    #[test]
    fn meaning_errors_name_their_fields() {
        let mut s = spec(vec![
            Probe {
                tcp_rtt: Some(HistogramOptions {
                    buckets: Some(vec![0.1, 0.1]),
                }),
                ..Probe::new(ProbeType::TcpConnectLatency)
            },
            Probe {
                tcp_connect_latency: Some(TcpConnectLatencyOptions {
                    histogram: HistogramOptions {
                        buckets: Some(vec![-1.0]),
                    },
                    peers: None,
                }),
                ..Probe::new(ProbeType::TcpConnectLatency)
            },
            Probe {
                tcp_retransmits: Some(TcpRetransmitsOptions {
                    peer_labels: Some(true),
                    peers: None,
                }),
                ..Probe::new(ProbeType::TcpRtt)
            },
            Probe {
                packet_drops: Some(PacketDropsOptions {
                    reasons: Some(vec!["lower".into()]),
                }),
                ..Probe::new(ProbeType::PacketDrops)
            },
        ]);
        s.metrics = Some(MetricsSpec {
            max_series_per_node: Some(0),
            ..Default::default()
        });
        let errs = ProbePlan::build(source(Some("x")), &s, None).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.probes[0].tcpRtt",
                "spec.probes[1].type",
                "spec.probes[2].tcpRetransmits",
                "spec.probes[3].packetDrops.reasons",
                "spec.metrics.maxSeriesPerNode",
            ],
            "{errs:?}"
        );
        let s = spec(vec![Probe {
            tcp_connect_latency: Some(TcpConnectLatencyOptions {
                histogram: HistogramOptions {
                    buckets: Some(vec![0.2, 0.1]),
                },
                peers: None,
            }),
            ..Probe::new(ProbeType::TcpConnectLatency)
        }]);
        let errs = ProbePlan::build(source(Some("x")), &s, None).unwrap_err();
        assert_eq!(errs[0].field, "spec.probes[0].tcpConnectLatency.buckets");
        assert!(errs[0].message.contains("strictly increasing"));
        assert!(
            !ProbePlan::build(source(Some("x")), &spec(vec![]), None)
                .unwrap_err()
                .is_empty()
        );
    }

    /// The plan document is the contract with agents of other versions: its
    /// shape for every probe type, byte for byte.
    #[test]
    fn plan_document_shape_is_stable() {
        let s = spec(vec![
            Probe::new(ProbeType::PacketDrops),
            Probe {
                tcp_retransmits: Some(TcpRetransmitsOptions {
                    peer_labels: Some(true),
                    peers: None,
                }),
                ..Probe::new(ProbeType::TcpRetransmits)
            },
            Probe::new(ProbeType::TcpResets),
            Probe {
                tcp_connect_latency: Some(TcpConnectLatencyOptions {
                    histogram: HistogramOptions {
                        buckets: Some(vec![0.001, 1.0]),
                    },
                    peers: None,
                }),
                ..Probe::new(ProbeType::TcpConnectLatency)
            },
            Probe {
                tcp_rtt: Some(HistogramOptions {
                    buckets: Some(vec![0.5]),
                }),
                ..Probe::new(ProbeType::TcpRtt)
            },
        ]);
        let json = ProbePlan::build(source(Some("shop")), &s, None).unwrap().to_json();
        let compact: String = json.split_whitespace().collect();
        assert_eq!(
            compact,
            "{\"formatVersion\":1,\"source\":{\"kind\":\"NetworkProbe\",\"namespace\":\"shop\",\"name\":\"p\",\"uid\":\"u\",\"generation\":3},\
             \"scope\":{\"kind\":\"namespace\",\"namespace\":\"shop\"},\"probes\":[{\"type\":\"TcpRetransmits\",\"peerLabels\":true},\
             {\"type\":\"TcpResets\"},{\"type\":\"TcpConnectLatency\",\"buckets\":[0.001,1.0]},{\"type\":\"TcpRtt\",\"buckets\":[0.5]},\
             {\"type\":\"PacketDrops\",\"reasons\":[]}],\"podSelector\":{},\"nodeSelector\":{},\
             \"metrics\":{\"granularity\":\"pod\",\"maxSeriesPerNode\":1000}}"
                .split_whitespace()
                .collect::<String>()
        );
    }

    #[test]
    fn cluster_scope_carries_namespace_selector() {
        let sel = LabelSelector {
            match_labels: Some([("team".to_string(), "a".to_string())].into()),
            ..Default::default()
        };
        let plan = ProbePlan::build(source(None), &spec(vec![Probe::new(ProbeType::TcpResets)]), Some(&sel)).unwrap();
        match plan.scope {
            PlanScope::Cluster { namespace_selector } => {
                assert_eq!(
                    namespace_selector.match_labels.get("team").map(String::as_str),
                    Some("a")
                )
            }
            other => panic!("unexpected scope {other:?}"),
        }
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let plan = ProbePlan::build(source(Some("x")), &spec(vec![Probe::new(ProbeType::TcpResets)]), None).unwrap();
        let json = plan.to_json().replace("\"formatVersion\": 1", "\"formatVersion\": 2");
        assert!(matches!(
            ProbePlan::from_json(&json),
            Err(PlanError::UnsupportedVersion { found: 2, .. })
        ));
        assert!(matches!(ProbePlan::from_json("{not json"), Err(PlanError::Decode(_))));
        assert!(matches!(ProbePlan::from_json("{}"), Err(PlanError::MissingVersion)));
        let bad_type = plan.to_json().replace("TcpResets", "TcpTeleport");
        assert!(matches!(ProbePlan::from_json(&bad_type), Err(PlanError::Decode(_))));
    }

    /// Plans are checked, not trusted: a NetworkProbe's plan edited to
    /// select another namespace, or to carry bounds off the grid, is refused.
    #[test]
    fn forged_scopes_and_off_grid_buckets_are_refused() {
        let plan = ProbePlan::build(
            source(Some("shop")),
            &spec(vec![Probe::new(ProbeType::TcpConnectLatency)]),
            None,
        )
        .unwrap();
        assert!(ProbePlan::from_json(&plan.to_json()).is_ok(), "the canonical plan");
        let mut other = plan.clone();
        other.scope = PlanScope::Namespace {
            namespace: "other".into(),
        };
        let err = ProbePlan::from_json(&other.to_json()).unwrap_err();
        assert!(matches!(err, PlanError::Refused(_)), "{err}");
        assert!(err.to_string().contains("own namespace only (shop)"), "{err}");
        let mut wide = plan.clone();
        wide.scope = PlanScope::Cluster {
            namespace_selector: Selector::default(),
        };
        assert!(matches!(
            ProbePlan::from_json(&wide.to_json()),
            Err(PlanError::Refused(_))
        ));
        let mut off = plan.clone();
        off.probes = vec![PlannedProbe::TcpConnectLatency(TcpConnectLatencyPlan {
            histogram: HistogramPlan { buckets: vec![0.004] },
            peers: None,
        })];
        let err = ProbePlan::from_json(&off.to_json()).unwrap_err();
        assert!(err.to_string().contains("0.004"), "{err}");
    }

    #[test]
    fn programs_are_a_cluster_power_at_every_step() {
        use crate::probes::program::{
            ConfigMapKey, Decoder, ProgramLabel, ProgramMetric, ProgramObject, ProgramOptions,
        };
        let program = Probe {
            program: Some(ProgramOptions {
                object: ProgramObject {
                    config_map: Some(ConfigMapKey {
                        name: "aborts".into(),
                        key: "prog.bpf.o".into(),
                    }),
                    sha256: Some("0".repeat(64)),
                    path: None,
                },
                metrics: vec![ProgramMetric {
                    name: "app_aborts_total".into(),
                    map: "aborts".into(),
                    labels: vec![ProgramLabel {
                        name: "pod".into(),
                        size: 4,
                        decoder: Decoder::Pod,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }),
            ..Probe::new(ProbeType::Program)
        };
        // The operator refuses it in a NetworkProbe, naming the field...
        let err = ProbePlan::build(source(Some("shop")), &spec(vec![program.clone()]), None).unwrap_err();
        assert_eq!(err[0].field, "spec.probes[0].type");
        // ...builds it in a ClusterNetworkProbe...
        let plan = ProbePlan::build(source(None), &spec(vec![program]), None).unwrap();
        assert!(ProbePlan::from_json(&plan.to_json()).is_ok());
        // ...and an agent refuses a NetworkProbe's plan that claims one,
        // whoever wrote the ConfigMap.
        let mut forged = plan.clone();
        forged.source = source(Some("shop"));
        forged.scope = PlanScope::Namespace {
            namespace: "shop".into(),
        };
        let err = ProbePlan::from_json(&forged.to_json()).unwrap_err();
        assert!(err.to_string().contains("only in a ClusterNetworkProbe"), "{err}");
    }

    #[test]
    fn configmap_names_are_unique_and_bounded() {
        let np = |ns: &str, name: &str| plan_configmap_name(&ProbeId::new(SourceKind::Namespaced, Some(ns), name));
        assert_eq!(np("a-b", "c"), "nprobe.a-b.c");
        assert_ne!(np("a", "b-c"), np("a-b", "c"));
        assert_eq!(
            plan_configmap_name(&ProbeId::new(SourceKind::Cluster, None, "all")),
            "cnprobe.all"
        );
        let long = "x".repeat(253);
        let n = np("ns", &long);
        assert!(n.len() <= 253, "{}", n.len());
        assert_ne!(n, np("ns", &format!("{}y", "x".repeat(252))));
    }
}
