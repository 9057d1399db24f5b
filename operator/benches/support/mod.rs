//! What the operator benchmarks share: reconciling every NetworkProbe the
//! in-memory API holds, as one pass of the controller would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use kube_standin::Standin;
use netprobe_operator::reconcile::{Context, reconcile};
use netprobe_operator::source::SourceKind;

/// Reconcile every NetworkProbe in `api` once; the time it took.
pub async fn reconcile_every_probe(api: &Standin, ctx: &Arc<Context>) -> Duration {
    let objs: Vec<DynamicObject> = api
        .store()
        .list_objs("netprobe.dev/v1alpha1", "networkprobes")
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("object"))
        .collect();
    let started = Instant::now();
    for o in objs {
        reconcile(Arc::new(o), ctx.clone(), SourceKind::Namespaced)
            .await
            .expect("reconcile");
    }
    started.elapsed()
}
