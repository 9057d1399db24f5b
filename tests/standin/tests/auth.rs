//! TokenRequest, TokenReview and SubjectAccessReview as the API server
//! answers them, decided by the RBAC objects stored.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, PostParams};
use kube_standin::Standin;
use serde_json::{Value, json};

fn seed(s: &Standin) {
    for sa in ["prometheus", "nosy"] {
        s.service_account("monitoring", sa);
    }
    s.cluster_role(
        "metrics-reader",
        json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]),
    );
    s.cluster_role(
        "debug-reader",
        json!([{"nonResourceURLs": ["/debug/*"], "verbs": ["*"]}]),
    );
    s.cluster_role(
        "pod-reader",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
    );
    let sa = |name: &str| json!([{"kind": "ServiceAccount", "name": name, "namespace": "monitoring"}]);
    s.bind_cluster_role(None, "prometheus-metrics", "metrics-reader", sa("prometheus"));
    s.bind_cluster_role(
        None,
        "ops-debug",
        "debug-reader",
        json!([{"kind": "Group", "name": "ops"}]),
    );
    // A RoleBinding cannot grant non-resource URLs, only namespaced resources.
    let nosy = json!([{"kind": "ServiceAccount", "name": "nosy"}]);
    s.bind_cluster_role(Some("monitoring"), "nosy-metrics", "metrics-reader", nosy.clone());
    s.bind_cluster_role(Some("monitoring"), "nosy-pods", "pod-reader", nosy);
}

async fn token(client: &kube::Client, sa: &str) -> String {
    let req: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).expect("request");
    Api::<ServiceAccount>::namespaced(client.clone(), "monitoring")
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .expect("token request")
        .status
        .expect("status")
        .token
}

async fn review(client: &kube::Client, token: &str) -> Value {
    let tr: TokenReview = serde_json::from_value(json!({"spec": {"token": token}})).expect("review");
    let out = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &tr)
        .await
        .expect("token review");
    serde_json::to_value(out.status).expect("json")
}

async fn allowed(client: &kube::Client, subject: Value, attrs: Value) -> bool {
    let mut spec = subject;
    spec.as_object_mut()
        .expect("object")
        .extend(attrs.as_object().expect("object").clone());
    let sar: SubjectAccessReview = serde_json::from_value(json!({"spec": spec})).expect("sar");
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &sar)
        .await
        .expect("access review")
        .status
        .expect("status")
        .allowed
}

#[tokio::test]
async fn tokens_are_reviewed_and_rbac_decides_access() {
    let s = Standin::new();
    seed(&s);
    let client = s.client();
    let prom = token(&client, "prometheus").await;
    let status = review(&client, &prom).await;
    assert_eq!(status["authenticated"], json!(true), "{status}");
    assert_eq!(
        status["user"]["username"],
        json!("system:serviceaccount:monitoring:prometheus")
    );
    assert!(
        status["user"]["groups"]
            .as_array()
            .expect("groups")
            .contains(&json!("system:serviceaccounts:monitoring"))
    );
    assert_eq!(review(&client, "forged").await["authenticated"], json!(false));

    let metrics = json!({"nonResourceAttributes": {"path": "/metrics", "verb": "get"}});
    let sa = |name: &str| json!({"user": format!("system:serviceaccount:monitoring:{name}")});
    assert!(allowed(&client, sa("prometheus"), metrics.clone()).await);
    assert!(
        !allowed(
            &client,
            sa("prometheus"),
            json!({"nonResourceAttributes": {"path": "/metrics", "verb": "post"}})
        )
        .await
    );
    assert!(
        !allowed(
            &client,
            sa("prometheus"),
            json!({"nonResourceAttributes": {"path": "/metricsz", "verb": "get"}})
        )
        .await
    );
    // A RoleBinding of a ClusterRole with nonResourceURLs grants nothing.
    assert!(!allowed(&client, sa("nosy"), metrics.clone()).await);
    assert!(
        allowed(
            &client,
            sa("nosy"),
            json!({"resourceAttributes": {"namespace": "monitoring", "verb": "list", "resource": "pods"}})
        )
        .await
    );
    assert!(
        !allowed(
            &client,
            sa("nosy"),
            json!({"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}})
        )
        .await
    );
    // Groups, wildcard verbs and path prefixes.
    let ops = json!({"user": "alice", "groups": ["ops", "system:authenticated"]});
    assert!(
        allowed(
            &client,
            ops.clone(),
            json!({"nonResourceAttributes": {"path": "/debug/pprof", "verb": "get"}})
        )
        .await
    );
    assert!(!allowed(&client, ops, metrics.clone()).await);

    // A token dies with its ServiceAccount.
    Api::<ServiceAccount>::namespaced(client.clone(), "monitoring")
        .delete("prometheus", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(review(&client, &prom).await["authenticated"], json!(false));
}
