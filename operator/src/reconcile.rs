//! The one reconcile path of both kinds: validate, write or remove the plan
//! ConfigMap, and aggregate agents' reports into status. Every write is
//! skipped when the object already says what it would write, so a resync of
//! an unchanged probe makes no API call beyond reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use netprobe_api::keys::{self, FINALIZER, OPERATOR_MANAGER, PLAN_DATA_KEY, PLAN_LABEL};
use netprobe_api::plan::plan_configmap_name;
use netprobe_api::summarize;
use netprobe_api::{ProbePlan, ProbeType};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::aggregate::{self, NodeView, NotDeployed, Summary};
use crate::reports::Reports;
use crate::source::{ProbeSource, SourceKind};
use crate::telemetry::Metrics;

/// How often an unchanged probe is looked at again (status also follows
/// every agent write through the watch; this is the safety net).
pub const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing plan ConfigMap {name}: {source}")]
    WritePlan { name: String, source: kube::Error },
    #[error("deleting plan ConfigMap {name}: {source}")]
    DeletePlan { name: String, source: kube::Error },
    #[error("listing plan ConfigMaps: {0}")]
    ListPlans(kube::Error),
    #[error("reading {probe} to check whether its plan is orphaned: {source}")]
    ReadSource { probe: String, source: kube::Error },
    #[error("patching the finalizers of {probe}: {source}")]
    PatchFinalizers { probe: String, source: kube::Error },
    #[error("writing the status of {probe}: {source}")]
    WriteStatus { probe: String, source: kube::Error },
}

/// What every reconcile needs.
pub struct Context {
    pub client: kube::Client,
    /// Namespace holding the plan ConfigMaps (the operator's own).
    pub namespace: String,
    /// Nodes, to know which should report for a probe.
    pub nodes: Store<Node>,
    /// What the nodes report (`reports.rs`), kept by the report watch.
    pub reports: Arc<std::sync::RwLock<Reports>>,
    /// How often liveness is re-judged and reports of deleted Nodes removed.
    pub report_sweep: Duration,
    pub recorder: Option<Recorder>,
    pub metrics: Metrics,
}

impl Context {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        nodes: Store<Node>,
        recorder: Option<Recorder>,
        metrics: Metrics,
    ) -> Self {
        let timeout = Duration::from_secs(netprobe_api::report::NOT_REPORTING_AFTER_SECS);
        Context {
            client,
            namespace: namespace.to_string(),
            nodes,
            reports: Arc::new(std::sync::RwLock::new(Reports::new(timeout))),
            report_sweep: Duration::from_secs(5),
            recorder,
            metrics,
        }
    }

    fn probes(&self, src: &ProbeSource) -> Api<DynamicObject> {
        let ar = src.id.kind.api_resource();
        match &src.id.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn event(&self, obj: &DynamicObject, kind: SourceKind, type_: EventType, reason: &str, note: String) {
        let Some(recorder) = &self.recorder else { return };
        let reference = obj.object_ref(&kind.api_resource());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        // kube's Recorder names an Event `<object>.<16 hex digits>`, which
        // the API refuses past 253 characters: long-named probes get their
        // Events written here, under a shortened name.
        let long = reference.name.as_ref().is_some_and(|n| n.len() > MAX_EVENT_OBJECT_NAME);
        let res = if long {
            self.publish_long_named(&ev, &reference).await
        } else {
            recorder.publish(&ev, &reference).await
        };
        if let Err(e) = res {
            // Events are best effort; never fail a reconcile for one.
            debug!(error = %e, "could not publish event");
        }
    }

    async fn publish_long_named(
        &self,
        ev: &Event,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) -> Result<(), kube::Error> {
        use k8s_openapi::api::events::v1::Event as K8sEvent;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let now = k8s_openapi::jiff::Timestamp::now();
        let object = reference.name.as_deref().unwrap_or_default();
        let mut cut = MAX_EVENT_OBJECT_NAME.min(object.len());
        while !object.is_char_boundary(cut) {
            cut -= 1;
        }
        let namespace = reference.namespace.clone().unwrap_or_else(|| "default".into());
        let event = K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference.clone()),
            reporting_controller: Some(OPERATOR_MANAGER.into()),
            reporting_instance: Some(OPERATOR_MANAGER.into()),
            metadata: kube::api::ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(format!(
                    "{}.{:x}",
                    object[..cut].trim_end_matches(['.', '-']),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&Default::default(), &event)
            .await
            .map(|_| ())
    }
}

/// Longest object name kube's Recorder can name an Event after (253 less
/// the `.` and 16 hex digits it appends).
const MAX_EVENT_OBJECT_NAME: usize = 236;

/// Reconcile one probe of either kind.
pub async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Context>, kind: SourceKind) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&obj, &ctx, kind).await;
    ctx.metrics.observe(kind.kind(), started.elapsed(), result.is_ok());
    result
}

async fn reconcile_inner(obj: &DynamicObject, ctx: &Context, kind: SourceKind) -> Result<Action, Error> {
    let src = ProbeSource::parse(kind, obj);
    let cm_name = plan_configmap_name(&src.id);

    if src.deleting {
        ctx.metrics
            .forget_probe(kind.kind(), src.id.namespace.as_deref().unwrap_or(""), &src.id.name);
        if delete_plan(ctx, &cm_name, &src.uid).await? {
            info!(probe = %src.display(), plan = %cm_name, "probe deleted: plan removed");
        }
        if src.finalizers.iter().any(|f| f == FINALIZER) {
            release_finalizer(ctx, &src).await?;
        }
        return Ok(Action::await_change());
    }

    // No finalizer: a probe must be deletable when no operator runs (after
    // an uninstall, or with the operator down), and a plan left behind is
    // removed by the delete watch or the orphan sweep (cleanup.rs). Probes
    // that an earlier version gave the finalizer are released.
    if src.finalizers.iter().any(|f| f == FINALIZER) {
        release_finalizer(ctx, &src).await?;
    }

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let prior = src.status.conditions.clone();
    let types: Vec<ProbeType> = match &src.spec {
        Ok(r) => r.spec.probes.iter().map(|p| p.type_).collect(),
        Err(_) => Vec::new(),
    };
    let plan = match &src.spec {
        Err(msg) => Err(NotDeployed::InvalidSpec(msg.clone())),
        Ok(read) => match ProbePlan::build(src.plan_source(), &read.spec, read.namespace_selector.as_ref()) {
            Err(errors) => Err(NotDeployed::InvalidSpec(summarize(&errors, aggregate::MAX_MESSAGE))),
            Ok(_) if read.spec.suspend == Some(true) => Err(NotDeployed::Suspended),
            Ok(plan) => Ok(plan),
        },
    };

    let summary = match plan {
        Err(why) => {
            if delete_plan(ctx, &cm_name, &src.uid).await? {
                info!(probe = %src.display(), plan = %cm_name, ?why, "plan removed");
                ctx.event(
                    obj,
                    kind,
                    EventType::Normal,
                    "PlanRemoved",
                    format!("plan {cm_name} removed: {}", reason_of(&why)),
                )
                .await;
            }
            if let NotDeployed::InvalidSpec(msg) = &why
                && !is_true(&prior, aggregate::INVALID_SPEC)
            {
                warn!(probe = %src.display(), %msg, "invalid spec");
                ctx.event(obj, kind, EventType::Warning, "InvalidSpec", msg.clone())
                    .await;
            }
            aggregate::not_deployed(&why, &types, src.generation, &prior, &now)
        }
        Ok(plan) => {
            if write_plan(ctx, &src, &cm_name, &plan).await? {
                info!(probe = %src.display(), plan = %cm_name, generation = src.generation, "plan written");
                ctx.event(
                    obj,
                    kind,
                    EventType::Normal,
                    "PlanWritten",
                    format!("plan {cm_name} at generation {}", src.generation),
                )
                .await;
            }
            let expected: BTreeSet<String> = ctx
                .nodes
                .state()
                .iter()
                .filter(|n| n.metadata.deletion_timestamp.is_none())
                .filter(|n| {
                    plan.node_selector
                        .matches(n.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
                })
                .map(|n| n.name_any())
                .collect();
            let reports = ctx.reports.read().unwrap_or_else(|p| p.into_inner());
            let at = Instant::now();
            let views: BTreeMap<String, NodeView> = expected
                .into_iter()
                .map(|n| {
                    let v = if reports.is_live(&n, at) {
                        NodeView::Reporting(reports.entry(&src.id, &n))
                    } else {
                        NodeView::NotReporting
                    };
                    (n, v)
                })
                .collect();
            aggregate::deployed(src.generation, &types, &views, &prior, &now)
        }
    };

    let conds: Vec<(String, bool)> = summary
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status == "True"))
        .collect();
    ctx.metrics.set_conditions(
        kind.kind(),
        src.id.namespace.as_deref().unwrap_or(""),
        &src.id.name,
        &conds,
    );
    let was_ready = is_true(&prior, aggregate::READY);
    if write_status(ctx, &src, &summary).await? {
        let ready = is_true(&summary.conditions, aggregate::READY);
        if ready != was_ready {
            let c = summary.conditions.iter().find(|c| c.type_ == aggregate::READY);
            let note = c.map(|c| c.message.clone()).unwrap_or_default();
            let reason = c.map(|c| c.reason.clone()).unwrap_or_default();
            ctx.event(
                obj,
                kind,
                if ready { EventType::Normal } else { EventType::Warning },
                &reason,
                note,
            )
            .await;
        }
    }
    Ok(Action::requeue(RESYNC))
}

/// Remove the finalizer earlier versions put on NetworkProbes.
async fn release_finalizer(ctx: &Context, src: &ProbeSource) -> Result<(), Error> {
    let rest: Vec<&String> = src.finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let patch = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": src.finalizers},
        {"op": "replace", "path": "/metadata/finalizers", "value": rest},
    ]);
    patch_finalizers(ctx, src, patch).await
}

/// A JSON patch of metadata.finalizers guarded by a `test` op, so a
/// concurrent change of the list fails the patch instead of being lost.
async fn patch_finalizers(ctx: &Context, src: &ProbeSource, patch: serde_json::Value) -> Result<(), Error> {
    let err = |source| Error::PatchFinalizers {
        probe: src.display(),
        source,
    };
    let patch = serde_json::from_value(patch).map_err(|e| err(kube::Error::SerdeError(e)))?;
    ctx.probes(src)
        .patch(&src.id.name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(err)?;
    Ok(())
}

fn reason_of(why: &NotDeployed) -> &str {
    match why {
        NotDeployed::InvalidSpec(_) => "invalid spec",
        NotDeployed::Suspended => "suspended",
    }
}

fn is_true(conds: &[Condition], type_: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// The ConfigMap that carries `plan`.
pub fn desired_configmap(src: &ProbeSource, name: &str, namespace: &str, plan: &ProbePlan) -> ConfigMap {
    let mut labels = BTreeMap::from([
        (PLAN_LABEL.to_string(), label_value(name)),
        (keys::SOURCE_KIND_LABEL.to_string(), src.id.kind.kind().to_string()),
        (keys::SOURCE_UID_LABEL.to_string(), src.uid.clone()),
    ]);
    if let Some(ns) = &src.id.namespace {
        labels.insert(keys::SOURCE_NAMESPACE_LABEL.to_string(), ns.clone());
    }
    if src.id.name.len() <= 63 {
        labels.insert(keys::SOURCE_NAME_LABEL.to_string(), src.id.name.clone());
    }
    let owner_references = match src.id.kind {
        // A cluster-scoped owner may own a namespaced dependent: the garbage
        // collector removes the plan with its probe.
        SourceKind::Cluster => Some(vec![OwnerReference {
            api_version: format!("{}/{}", keys::GROUP, keys::VERSION),
            kind: src.id.kind.kind().into(),
            name: src.id.name.clone(),
            uid: src.uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        }]),
        SourceKind::Namespaced => None,
    };
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                keys::SOURCE_NAME_ANNOTATION.to_string(),
                src.id.name.clone(),
            )])),
            owner_references,
            ..Default::default()
        },
        data: Some(BTreeMap::from([(PLAN_DATA_KEY.to_string(), plan.to_json())])),
        ..Default::default()
    }
}

/// A label value can hold 63 characters; the plan name can be longer, and
/// the label only needs to exist, so long names are cut.
fn label_value(s: &str) -> String {
    let cut: String = s.chars().take(63).collect();
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// Write the plan ConfigMap if it differs from what is stored; true if written.
async fn write_plan(ctx: &Context, src: &ProbeSource, name: &str, plan: &ProbePlan) -> Result<bool, Error> {
    let desired = desired_configmap(src, name, &ctx.namespace, plan);
    let api = ctx.configmaps();
    let err = |source| Error::WritePlan {
        name: name.to_string(),
        source,
    };
    if let Some(current) = api.get_opt(name).await.map_err(err)? {
        let labels_ok = desired.labels().iter().all(|(k, v)| current.labels().get(k) == Some(v))
            && desired
                .annotations()
                .iter()
                .all(|(k, v)| current.annotations().get(k) == Some(v));
        let owners_ok = desired.metadata.owner_references.as_ref().is_none_or(|want| {
            want.iter()
                .all(|w| current.owner_references().iter().any(|o| o.uid == w.uid))
        });
        if current.data == desired.data && labels_ok && owners_ok {
            return Ok(false);
        }
    }
    let mut body = serde_json::to_value(&desired).map_err(|e| err(kube::Error::SerdeError(e)))?;
    body["apiVersion"] = json!("v1");
    body["kind"] = json!("ConfigMap");
    api.patch(name, &PatchParams::apply(OPERATOR_MANAGER).force(), &Patch::Apply(body))
        .await
        .map_err(err)?;
    Ok(true)
}

/// Delete the plan ConfigMap of source `uid` if it exists; true if deleted.
/// A plan of another uid (a newer probe of the same name) is left alone.
pub async fn delete_plan(ctx: &Context, name: &str, uid: &str) -> Result<bool, Error> {
    let api = ctx.configmaps();
    let err = |source| Error::DeletePlan {
        name: name.to_string(),
        source,
    };
    let Some(cm) = api.get_opt(name).await.map_err(err)? else {
        return Ok(false);
    };
    if cm.labels().get(keys::SOURCE_UID_LABEL).is_some_and(|u| u != uid) {
        return Ok(false);
    }
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(err(e)),
    }
}

/// Apply the operator's part of status if it differs; true if written.
async fn write_status(ctx: &Context, src: &ProbeSource, s: &Summary) -> Result<bool, Error> {
    let st = &src.status;
    let same = st.observed_generation == Some(src.generation)
        && st.conditions == s.conditions
        && st.probe_types == s.probe_types
        && st.nodes_ready == s.nodes_ready
        && st.pods_matched == s.pods_matched
        && st.node_counts == s.node_counts
        && st.problem_nodes == s.problem_nodes;
    if same {
        return Ok(false);
    }
    let mut status = json!({"observedGeneration": src.generation, "conditions": s.conditions});
    if let Some(t) = &s.probe_types {
        status["probeTypes"] = json!(t);
    }
    if let Some(n) = &s.nodes_ready {
        status["nodesReady"] = json!(n);
    }
    if let Some(p) = s.pods_matched {
        status["podsMatched"] = json!(p);
    }
    if let Some(c) = &s.node_counts {
        status["nodeCounts"] = json!(c);
    }
    if !s.problem_nodes.is_empty() {
        status["problemNodes"] = json!(s.problem_nodes);
    }
    let body = json!({
        "apiVersion": format!("{}/{}", keys::GROUP, keys::VERSION),
        "kind": src.id.kind.kind(),
        "metadata": {"name": src.id.name},
        "status": status,
    });
    ctx.probes(src)
        .patch_status(
            &src.id.name,
            &PatchParams::apply(OPERATOR_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(|source| Error::WriteStatus {
            probe: src.display(),
            source,
        })?;
    Ok(true)
}
