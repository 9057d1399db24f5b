//! Publishes the peer index (`netprobe_api::peerindex`): the nodes' names,
//! zones, addresses and pod CIDRs in a few sharded ConfigMaps that every
//! agent watches instead of every Node. Recomputed from the operator's Node
//! cache on every node label change and every 10 s; a shard is written only when
//! its bytes change, so a steady cluster writes nothing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use netprobe_api::keys::OPERATOR_MANAGER;
use netprobe_api::peerindex::{self, IndexedNode, PEER_INDEX_DATA_KEY, PEER_INDEX_LABEL};
use serde_json::json;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::reconcile::Context;

/// Node label changes wake the publisher at once; address and pod CIDR
/// changes (rare) are seen within this.
const RESYNC: Duration = Duration::from_secs(10);

/// Run until aborted: publish the index whenever it changes.
pub async fn publish(ctx: Arc<Context>, mut nodes_changed: broadcast::Receiver<()>) {
    // Polled with a timeout: the store's readiness is a oneshot receiver
    // that keeps one waker, and another task (the report follower) waits on
    // it too, so a waiter that is not polled again may never be woken.
    loop {
        match tokio::time::timeout(Duration::from_secs(1), ctx.nodes.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_)) => {
                warn!("node cache writer dropped: no peer index");
                return;
            }
            Err(_) => continue,
        }
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut written: Vec<Option<String>> = vec![None; peerindex::PEER_INDEX_SHARDS as usize];
    loop {
        let entries: Vec<IndexedNode> = ctx.nodes.state().iter().map(|n| IndexedNode::from_node(n)).collect();
        let count = entries.len();
        for (i, text) in peerindex::shards(entries).into_iter().enumerate() {
            if written[i].as_deref() == Some(text.as_str()) {
                continue;
            }
            let name = peerindex::shard_name(i as u32);
            let body = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {PEER_INDEX_LABEL: "true"}},
                "data": {PEER_INDEX_DATA_KEY: text},
            });
            match api
                .patch(
                    &name,
                    &PatchParams::apply(OPERATOR_MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await
            {
                Ok(_) => {
                    info!(shard = %name, nodes = count, "peer index shard written");
                    written[i] = Some(text);
                }
                Err(e) => warn!(shard = %name, error = %e, "writing the peer index failed; retrying"),
            }
        }
        tokio::select! {
            _ = nodes_changed.recv() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}
