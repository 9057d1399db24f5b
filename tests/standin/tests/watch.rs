//! The stand-in's watches behave as kube-runtime expects.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube_standin::Standin;
use serde_json::json;

/// A stand-in with the namespace these tests write to.
fn standin() -> Standin {
    let s = Standin::new();
    s.put("v1", "namespaces", json!({"metadata": {"name": "ns"}}));
    s
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn reflector_follows_creates_updates_and_deletes() {
    let s = standin();
    let api: Api<ConfigMap> = Api::namespaced(s.client(), "ns");
    api.create(&PostParams::default(), &cm("a", json!({"plan": "x"})))
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default().labels("plan")));
    tokio::spawn(stream.applied_objects().for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state().len(), 1);
    api.create(&PostParams::default(), &cm("b", json!({"plan": "y"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("c", json!({}))).await.unwrap();
    let wait = |n: usize| {
        let r = reader.clone();
        async move {
            for _ in 0..100 {
                if r.state().len() == n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    };
    assert!(wait(2).await, "b appears, c does not match the selector");
    // Losing the label takes an object out of the watch.
    let patch = json!({"metadata": {"labels": {"plan": null}}});
    api.patch("b", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(patch))
        .await
        .unwrap();
    assert!(wait(1).await);
    api.delete("a", &Default::default()).await.unwrap();
    assert!(wait(0).await);
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_sends_bookmarks() {
    let s = standin();
    let api: Api<ConfigMap> = Api::namespaced(s.client(), "ns");
    let first = api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("b", json!({}))).await.unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(3), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("expected b, got {other:?}"),
    }
    match tokio::time::timeout(Duration::from_secs(3), stream.try_next()).await {
        Ok(Ok(Some(WatchEvent::Bookmark(_)))) => {}
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn failing_server_ends_watches_and_refuses_requests() {
    let s = standin();
    let api: Api<ConfigMap> = Api::namespaced(s.client(), "ns");
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    s.fail_with(Some(503));
    let ended = tokio::time::timeout(Duration::from_secs(3), stream.try_next()).await;
    assert!(matches!(ended, Ok(Ok(None)) | Ok(Err(_))), "{ended:?}");
    assert!(api.get("a").await.is_err());
    s.fail_with(None);
    assert!(api.create(&PostParams::default(), &cm("a", json!({}))).await.is_ok());
}
