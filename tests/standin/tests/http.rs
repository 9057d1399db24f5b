//! The stand-in over HTTP: discovery, CRDs registered by creating them,
//! admission, Tables, and stop/resume on the same address.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use kube_standin::{Server, Standin};
use serde_json::json;

fn crd() -> serde_json::Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.dev"},
        "spec": {"group": "example.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer", "minimum": 1}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}})
}

async fn client(server: &Server) -> kube::Client {
    let cfg = kube::Config::new(server.url().parse().expect("url"));
    kube::Client::try_from(cfg).expect("client")
}

#[tokio::test]
async fn crds_created_over_http_are_discovered_validated_and_tabled() {
    let server = Server::start(Standin::new(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("listen");
    let client = client(&server).await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.create(&PostParams::default(), &serde_json::from_value(crd()).unwrap())
        .await
        .expect("create CRD");
    let discovery = Discovery::new(client.clone()).run().await.expect("discovery");
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "Widget")
        .expect("Widget discovered");
    assert_eq!(ar.plural, "widgets");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));

    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let bad = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 0}});
    let err = widgets
        .create(&PostParams::default(), &serde_json::from_value(bad).unwrap())
        .await
        .expect_err("size 0 is below the minimum");
    assert!(err.to_string().contains("spec.size"), "{err}");
    let good =
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    widgets
        .create(&PostParams::default(), &serde_json::from_value(good).unwrap())
        .await
        .expect("valid widget");

    let req = http::Request::get("/apis/example.dev/v1/namespaces/default/widgets")
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = client.request(req).await.expect("table");
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][1]["name"], "Size");
    assert_eq!(table["rows"][0]["cells"], json!(["w", 3]));
}

#[tokio::test]
async fn a_stopped_server_refuses_connections_and_resumes_on_the_same_port() {
    let standin = Standin::new();
    let mut server = Server::start(standin.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("listen");
    let addr = server.addr();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    assert!(cms.list(&Default::default()).await.is_ok());
    server.stop();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening");
    server.resume().await.expect("resume");
    assert_eq!(server.addr(), addr);
    assert!(cms.list(&Default::default()).await.is_ok());
}
