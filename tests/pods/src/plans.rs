//! Desired states for an agent under test: plans over the test pods'
//! targets, as the pipeline would hand them to the agent.

use std::collections::BTreeMap;

use netprobe_agent::pipeline::desired::{Desired, PlanTargets, Target};
use netprobe_api::{ProbePlan, ProbeType};

use crate::Pod;

/// A NetworkProbe plan `shop/<name>` (namespace `ns`) of `probes`.
pub use netprobe_testutil::plans::{plan_cluster, plan_in};

/// Desired state: `plan` selects `selected`; `others` exist unselected.
pub fn desired_of(plan: ProbePlan, selected: &[Target], others: &[Target]) -> Desired {
    let mut targets = BTreeMap::new();
    for t in selected.iter().chain(others) {
        targets.insert(t.key.clone(), t.clone());
    }
    let keys = selected.iter().map(|t| t.key.clone()).collect();
    Desired {
        objects: Default::default(),
        targets,
        plans: BTreeMap::from([(
            plan.source.key(),
            PlanTargets {
                plan: std::sync::Arc::new(plan),
                targets: keys,
            },
        )]),
    }
}

/// Desired state: each plan of `plans` selects its target; every target
/// exists.
pub fn desired_with(plans: &[(&ProbePlan, &Target)]) -> Desired {
    let mut d = Desired::default();
    for (p, t) in plans {
        d.targets.insert(t.key.clone(), (*t).clone());
        d.plans
            .entry(p.source.key())
            .or_insert_with(|| PlanTargets {
                plan: std::sync::Arc::new((*p).clone()),
                targets: Default::default(),
            })
            .targets
            .insert(t.key.clone());
    }
    d
}

/// The series flood of the tenant-isolation tests: `probes` NetworkProbes of
/// namespace shop with peer labels (and room for 100,000 series each), all
/// over `target`.
pub fn flood_desired(target: &Target, probes: usize) -> Desired {
    let plans: Vec<ProbePlan> = (0..probes)
        .map(|i| {
            let mut p = plan_in(
                "shop",
                &format!("flood-{i}"),
                vec![netprobe_api::Probe {
                    tcp_retransmits: Some(netprobe_api::TcpRetransmitsOptions {
                        peer_labels: Some(true),
                        peers: None,
                    }),
                    ..netprobe_api::Probe::new(netprobe_api::ProbeType::TcpRetransmits)
                }],
            );
            p.metrics.max_series_per_node = 100_000;
            p
        })
        .collect();
    desired_with(&plans.iter().map(|p| (p, target)).collect::<Vec<_>>())
}

/// One probe (of one type) in namespace shop that selects `selected` (pod
/// web-0) and not `unselected` (other-0), applied; panics when the kernel
/// cannot run the type.
pub fn apply_one_type(
    agent: &netprobe_agent::agent::Agent,
    probe: netprobe_api::Probe,
    selected: &Pod,
    unselected: &Pod,
) -> netprobe_agent::kernel::manager::ApplyReport {
    let plan = plan_in("shop", "one", vec![probe]);
    let report = agent
        .set_desired(desired_of(
            plan,
            &[selected.target("shop", "web-0")],
            &[unselected.target("shop", "other-0")],
        ))
        .expect("apply");
    assert!(report.unsupported.is_empty(), "{report:?}");
    report
}

/// A NetworkProbe manifest `namespace/all` of `types`, for a standalone
/// agent (`--standalone DIR`); `spec_extra` is more of `spec`, one YAML
/// line indented by two spaces each (for example a series limit).
pub fn standalone_manifest(namespace: &str, types: &[ProbeType], spec_extra: &str) -> String {
    let mut m = format!(
        "apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {{name: all, namespace: {namespace}}}\nspec:\n{spec_extra}  probes:\n"
    );
    for t in types {
        m.push_str(&format!("  - type: {t}\n"));
    }
    m
}
