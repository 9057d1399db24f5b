//! Wiring: one kube-runtime Controller per kind over the shared reconcile
//! path, retriggered by plan ConfigMap changes (someone edited or deleted a
//! plan), by Node label changes (the expected node set moved), and by the
//! nodes' reports: a content change, or a node becoming live or not live
//! (heartbeats alone retrigger nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event};
use netprobe_api::NetworkProbeNodeReport;
use netprobe_api::keys::{self, PLAN_LABEL};
use tracing::{info, warn};

use crate::reconcile::{self, Context, Error, RESYNC};
use crate::source::SourceKind;

fn error_policy(_obj: Arc<DynamicObject>, err: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// The source a plan ConfigMap belongs to, for `kind`.
fn plan_owner(cm: &ConfigMap, kind: SourceKind) -> Option<ObjectRef<DynamicObject>> {
    let l = cm.labels();
    if l.get(keys::SOURCE_KIND_LABEL).map(String::as_str) != Some(kind.kind()) {
        return None;
    }
    let name = keys::source_name(l, cm.annotations())?;
    let r = ObjectRef::new_with(name, kind.api_resource());
    Some(match l.get(keys::SOURCE_NAMESPACE_LABEL) {
        Some(ns) => r.within(ns),
        None => r,
    })
}

/// Emits when a node appears, disappears or changes labels; heartbeats
/// (status-only updates) do not retrigger every probe.
fn node_label_changes(
    events: impl Stream<Item = Result<Event<Node>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = ()> + Send + 'static {
    let mut seen: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    events.filter_map(move |ev| {
        let changed = match ev {
            Ok(Event::Apply(n) | Event::InitApply(n)) => {
                let labels = n.labels().clone();
                seen.insert(n.name_any(), labels.clone()) != Some(labels)
            }
            Ok(Event::Delete(n)) => seen.remove(&n.name_any()).is_some(),
            Ok(Event::InitDone) => true,
            Ok(Event::Init) | Err(_) => false,
        };
        future::ready(changed.then_some(()))
    })
}

/// Follow every node report into `ctx.reports`; send on `tx` when a probe's
/// status may have changed. Reports whose Node is gone (seen so in two
/// sweeps, after the Node cache is complete) are deleted: the Node's
/// ownerReference does that on a real cluster, this covers the rest.
async fn follow_reports(ctx: Arc<Context>, tx: tokio::sync::broadcast::Sender<()>) {
    let api: Api<NetworkProbeNodeReport> = Api::all(ctx.client.clone());
    let mut events = std::pin::pin!(watcher(api.clone(), watcher::Config::default()).default_backoff());
    let mut sweep = tokio::time::interval(ctx.report_sweep);
    let mut live = BTreeSet::new();
    let mut suspects: BTreeSet<String> = BTreeSet::new();
    let nodes_ready = ctx.nodes.wait_until_ready();
    tokio::pin!(nodes_ready);
    let mut nodes_known = false;
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return };
                let now = Instant::now();
                let changed = {
                    let mut r = ctx.reports.write().unwrap_or_else(|p| p.into_inner());
                    match ev {
                        Ok(Event::Apply(rep) | Event::InitApply(rep)) => {
                            let c = r.apply(&rep, now);
                            !c.probes.is_empty() || c.liveness
                        }
                        Ok(Event::Delete(rep)) => {
                            let c = r.delete(&rep.name_any());
                            !c.probes.is_empty() || c.liveness
                        }
                        Ok(Event::InitDone) => true,
                        Ok(Event::Init) => false,
                        Err(e) => {
                            warn!(error = %e, "watching node reports");
                            false
                        }
                    }
                };
                if changed {
                    let _ = tx.send(());
                }
            }
            res = &mut nodes_ready, if !nodes_known => {
                nodes_known = res.is_ok();
            }
            _ = sweep.tick() => {
                let (now_live, orphans) = {
                    let r = ctx.reports.read().unwrap_or_else(|p| p.into_inner());
                    let orphans: BTreeSet<String> = if nodes_known {
                        r.nodes()
                            .filter(|n| ctx.nodes.get(&ObjectRef::new(n)).is_none())
                            .map(str::to_string)
                            .collect()
                    } else {
                        BTreeSet::new()
                    };
                    (r.live(Instant::now()), orphans)
                };
                if now_live != live {
                    live = now_live;
                    let _ = tx.send(());
                }
                for node in orphans.intersection(&suspects).map(String::as_str) {
                    match api.delete(node, &Default::default()).await {
                        Ok(_) => info!(node, "removed the report of a deleted node"),
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => warn!(node, error = %e, "removing the report of a deleted node"),
                    }
                }
                suspects = orphans;
            }
        }
    }
}

/// Remove a probe's plan as soon as the probe is deleted: probes carry no
/// finalizer (they must stay deletable without an operator), so the delete
/// event is where the plan goes; the orphan sweep covers deletions missed
/// while no operator ran.
async fn follow_deletions(ctx: Arc<Context>, kind: SourceKind) {
    let ar = kind.api_resource();
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ar);
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default().any_semantic()).default_backoff());
    while let Some(ev) = events.next().await {
        let Ok(Event::Delete(obj)) = ev else { continue };
        let id = netprobe_api::ProbeId::new(kind, obj.metadata.namespace.as_deref(), &obj.name_any());
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        let cm = netprobe_api::plan::plan_configmap_name(&id);
        ctx.metrics
            .forget_probe(kind.kind(), id.namespace.as_deref().unwrap_or(""), &id.name);
        match crate::reconcile::delete_plan(&ctx, &cm, &uid).await {
            Ok(true) => info!(probe = %id.display(), plan = %cm, "probe deleted: plan removed"),
            Ok(false) => {}
            Err(e) => {
                warn!(probe = %id.display(), error = %e, "removing the plan of a deleted probe; the orphan sweep retries")
            }
        }
    }
}

/// Run both controllers until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    node_writer: reflector::store::Writer<Node>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let client = ctx.client.clone();
    let nodes = watcher(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let node_events = reflector::reflector(node_writer, nodes).default_backoff();
    let (node_tx, _) = tokio::sync::broadcast::channel::<()>(16);
    let tx = node_tx.clone();
    tokio::spawn(node_label_changes(node_events).for_each(move |()| {
        let _ = tx.send(());
        future::ready(())
    }));

    let mut followers = vec![
        tokio::spawn(follow_reports(ctx.clone(), node_tx.clone())),
        tokio::spawn(crate::peerindex::publish(ctx.clone(), node_tx.subscribe())),
    ];
    for kind in SourceKind::ALL {
        followers.push(tokio::spawn(follow_deletions(ctx.clone(), kind)));
    }

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ctx.namespace);
    let mut runs = Vec::new();
    for kind in SourceKind::ALL {
        let ar = kind.api_resource();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let triggers = tokio_stream_from(node_tx.subscribe());
        let c = ctx.clone();
        let run = Controller::new_with(api, watcher::Config::default().any_semantic(), ar)
            .watches_with(
                cms.clone(),
                (),
                watcher::Config::default().labels(PLAN_LABEL),
                move |cm| plan_owner(&cm, kind),
            )
            .reconcile_all_on(triggers)
            .graceful_shutdown_on({
                let mut rx = shutdown.clone();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            })
            .run(move |obj, ctx| reconcile::reconcile(obj, ctx, kind), error_policy, c)
            .for_each(|res| {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "controller event");
                }
                future::ready(())
            });
        runs.push(run);
    }
    info!("controllers running");
    let resync = {
        let ctx = ctx.clone();
        async move {
            loop {
                match crate::cleanup::remove_orphans(&ctx).await {
                    Ok(n) => ctx.metrics.orphans_removed.inc_by(n as u64),
                    Err(e) => warn!(error = %e, "orphan plan cleanup failed"),
                }
                tokio::time::sleep(RESYNC).await;
            }
        }
    };
    tokio::select! {
        _ = future::join_all(runs) => {},
        _ = resync => {},
    }
    for f in followers {
        f.abort();
    }
}

/// Every node change, as a trigger; a lagging receiver only needs to know
/// that something changed.
fn tokio_stream_from(rx: tokio::sync::broadcast::Receiver<()>) -> impl Stream<Item = ()> + Send + 'static {
    tokio_stream::wrappers::BroadcastStream::new(rx).map(|_| ())
}

use kube::runtime::watcher::watcher;

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe name of 100 characters fits no label value: its plan still
    /// maps back to it (through the annotation), so plan repair works.
    #[test]
    fn long_probe_names_map_from_their_plan() {
        let name = "p".repeat(100);
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {
            "name": format!("nprobe.shop.{name}"),
            "labels": {keys::PLAN_LABEL: "nprobe.shop.ppp", keys::SOURCE_KIND_LABEL: "NetworkProbe",
                       keys::SOURCE_NAMESPACE_LABEL: "shop"},
            "annotations": {keys::SOURCE_NAME_ANNOTATION: name}}}))
        .unwrap();
        let r = plan_owner(&cm, SourceKind::Namespaced).expect("mapped");
        assert_eq!((r.name.as_str(), r.namespace.as_deref()), (name.as_str(), Some("shop")));
        assert!(plan_owner(&cm, SourceKind::Cluster).is_none());
    }
}
