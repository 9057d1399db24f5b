//! Removal of plan ConfigMaps that are not the canonical plan of an existing
//! source: their source was deleted while no operator ran, or they claim a
//! source under another name than its plan's (a forged or stray copy). Runs
//! at start-up and on every resync.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Resource, ResourceExt};
use netprobe_api::ProbePlan;
use netprobe_api::keys::{self, PLAN_DATA_KEY, PLAN_LABEL};
use tracing::info;

use crate::reconcile::{Context, Error, delete_plan};
use crate::source::SourceKind;

/// Which source a plan ConfigMap claims, from its plan document or, when that
/// is unreadable, its labels.
fn claimed_source(cm: &ConfigMap) -> Option<(SourceKind, Option<String>, String, String)> {
    if let Some(plan) = cm
        .data
        .as_ref()
        .and_then(|d| d.get(PLAN_DATA_KEY))
        .and_then(|s| ProbePlan::from_json(s).ok())
    {
        let s = plan.source;
        return Some((s.id.kind, s.id.namespace, s.id.name, s.uid));
    }
    let l = cm.labels();
    Some((
        SourceKind::from_kind(l.get(keys::SOURCE_KIND_LABEL)?)?,
        l.get(keys::SOURCE_NAMESPACE_LABEL).cloned(),
        keys::source_name(l, cm.annotations())?.clone(),
        l.get(keys::SOURCE_UID_LABEL)?.clone(),
    ))
}

/// Delete every plan whose source is gone (or was replaced by a new object of
/// the same name). Returns how many were removed.
pub async fn remove_orphans(ctx: &Context) -> Result<usize, Error> {
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut removed = 0;
    let list = cms
        .list(&ListParams::default().labels(PLAN_LABEL))
        .await
        .map_err(Error::ListPlans)?;
    for cm in list {
        let name = cm.name_any();
        let Some((kind, ns, src_name, uid)) = claimed_source(&cm) else {
            info!(plan = %name, "plan names no source it came from: removing");
            cms.delete(&name, &Default::default())
                .await
                .map_err(|source| Error::DeletePlan {
                    name: name.clone(),
                    source,
                })?;
            removed += 1;
            continue;
        };
        // One plan per source, under its canonical name: a ConfigMap that
        // claims a source under another name is not its plan.
        let id = netprobe_api::ProbeId::new(kind, ns.as_deref(), &src_name);
        if name != netprobe_api::plan::plan_configmap_name(&id) {
            info!(plan = %name, source = %id.display(), "not the canonical plan of the source it claims: removing");
            match cms.delete(&name, &Default::default()).await {
                Ok(_) => removed += 1,
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(Error::DeletePlan { name, source }),
            }
            continue;
        }
        let ar = kind.api_resource();
        let api: Api<DynamicObject> = match &ns {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
            None => Api::all_with(ctx.client.clone(), &ar),
        };
        let alive = api
            .get_opt(&src_name)
            .await
            .map_err(|source| Error::ReadSource {
                probe: netprobe_api::ProbeId::new(kind, ns.as_deref(), &src_name).display(),
                source,
            })?
            .is_some_and(|o| o.meta().uid.as_deref() == Some(uid.as_str()));
        if !alive && delete_plan(ctx, &name, &uid).await? {
            info!(plan = %name, source = %src_name, "source is gone: plan removed");
            removed += 1;
        }
    }
    Ok(removed)
}
