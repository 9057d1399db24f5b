//! Wiring: one kube-runtime Controller per kind over the shared reconcile
//! path, retriggered by plan ConfigMap changes (someone edited or deleted a
//! plan) and by Node label changes (the expected node set moved).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event};
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
    let name = l.get(keys::SOURCE_NAME_LABEL)?;
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
}

/// Every node change, as a trigger; a lagging receiver only needs to know
/// that something changed.
fn tokio_stream_from(rx: tokio::sync::broadcast::Receiver<()>) -> impl Stream<Item = ()> + Send + 'static {
    tokio_stream::wrappers::BroadcastStream::new(rx).map(|_| ())
}

use kube::runtime::watcher::watcher;
