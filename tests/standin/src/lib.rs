//! kube-standin: an in-memory Kubernetes API for netprobe's tests.
//!
//! It serves, from one process-local store, the calls the operator and agent
//! make: get, list (label and field selectors), create, replace, delete with
//! finalizers and ownerReference cascade, JSON merge patch, JSON patch and
//! server-side apply (see [`apply`] for what is reduced), and the status
//! subresource of CRDs registered with [`Standin::register_crd`]. Every
//! request is recorded, so tests can assert what a component wrote. See the
//! README for what is not implemented.

pub mod apply;
pub mod select;
mod server;
mod store;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody as BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

pub use server::Server;
pub use store::{Record, Store, WatchQuery};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const RBAC: &str = "rbac.authorization.k8s.io/v1";

/// A cheaply clonable handle on one in-memory API.
#[derive(Clone, Default)]
pub struct Standin {
    store: Arc<Mutex<Store>>,
}

impl Standin {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lock the store (for seeding objects and inspecting results).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Serve the resources a CRD defines, with its status subresource and
    /// list-map merge keys.
    pub fn register_crd(&self, crd: &CustomResourceDefinition) {
        self.store().register_crd(crd);
    }

    /// A kube client whose requests this stand-in answers in-process.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let me = me.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                Ok::<_, BoxError>(me.respond_to(&parts, &bytes))
            }
        });
        kube::Client::new(svc, "default")
    }

    /// Answer one HTTP request: plain JSON, a Table when the client asks
    /// for one, or a streaming watch.
    pub fn respond_to(&self, parts: &http::request::Parts, body: &[u8]) -> Response<BoxBody<Bytes, BoxError>> {
        let header = |h: http::header::HeaderName| parts.headers.get(h).and_then(|v| v.to_str().ok());
        let (method, uri) = (parts.method.as_str(), &parts.uri);
        let content_type = header(http::header::CONTENT_TYPE);
        if content_type.is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf")) {
            // client-go falls back to JSON on 415.
            let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 415,
                "reason": "UnsupportedMediaType", "message": "the stand-in speaks JSON only"});
            return json_response(415, full(&status));
        }
        let table = header(http::header::ACCEPT).is_some_and(|a| a.contains("as=Table"));
        let is_watch = method == "GET"
            && uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let (status, value) = if is_watch {
            let parsed = {
                let mut st = self.store();
                match st.fail_with {
                    Some(code) => Err((
                        code,
                        serde_json::json!({"kind": "Status", "code": code, "message": "failing on purpose"}),
                    )),
                    None => st.watch_query(uri),
                }
            };
            match parsed {
                Ok(q) => return json_response(200, self.watch_body(q)),
                Err(e) => e,
            }
        } else {
            let mut st = self.store();
            let (status, value) = st.handle(method, uri, content_type, body);
            if table && status == 200 && method == "GET" {
                (status, st.table(uri.path(), value))
            } else {
                (status, value)
            }
        };
        json_response(status, full(&value))
    }

    /// A watch stream: replays what followed `since`, then follows changes;
    /// BOOKMARKs every second when asked; ends at timeoutSeconds or when the
    /// stand-in starts failing.
    fn watch_body(&self, q: WatchQuery) -> BoxBody<Bytes, BoxError> {
        let changed = self.store().changed.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(q.timeout.unwrap_or(290));
        let state = (
            self.clone(),
            q,
            std::collections::VecDeque::<serde_json::Value>::new(),
            false,
        );
        let stream = futures::stream::unfold(state, move |(me, mut q, mut pending, done)| {
            let changed = changed.clone();
            async move {
                loop {
                    if let Some(ev) = pending.pop_front() {
                        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
                        line.push(b'\n');
                        return Some((
                            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(line))),
                            (me, q, pending, done),
                        ));
                    }
                    if done || tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    let notified = changed.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let result = {
                        let st = me.store();
                        if st.fail_with.is_some() {
                            return None;
                        }
                        st.watch_events(&q)
                            .map(|(evs, last)| (evs, last, st.resource_version()))
                    };
                    match result {
                        Err(gone) => {
                            pending.push_back(gone);
                            return Some((
                                Ok(http_body::Frame::data(Bytes::from(
                                    serde_json::to_vec(&pending.pop_front()).unwrap_or_default(),
                                ))),
                                (me, q, pending, true),
                            ));
                        }
                        Ok((evs, last, _)) if !evs.is_empty() => {
                            q.since = last;
                            pending.extend(evs);
                        }
                        Ok((_, last, rv)) => {
                            q.since = last;
                            let timed_out = tokio::time::timeout(Duration::from_secs(1), notified).await.is_err();
                            if timed_out && q.bookmarks {
                                pending.push_back(serde_json::json!({"type": "BOOKMARK", "object": {
                                    "apiVersion": "v1", "kind": "Bookmark", "metadata": {"resourceVersion": rv.to_string()}}}));
                            }
                        }
                    }
                }
            }
        });
        BodyExt::boxed_unsync(StreamBody::new(stream.boxed()))
    }

    /// Seed or overwrite an object directly (no request recorded).
    pub fn put(&self, api_version: &str, plural: &str, obj: Value) -> Value {
        self.store().seed(api_version, plural, obj)
    }

    /// Make every request fail with `code` (an unreachable API server), or
    /// serve again with None. Open watches end.
    pub fn fail_with(&self, code: Option<u16>) {
        let mut st = self.store();
        st.fail_with = code;
        st.changed.notify_waiters();
    }

    /// Seed a ServiceAccount (and its namespace when missing).
    pub fn service_account(&self, namespace: &str, name: &str) {
        if self.get("v1", "namespaces", None, namespace).is_none() {
            self.put("v1", "namespaces", serde_json::json!({"metadata": {"name": namespace}}));
        }
        self.put(
            "v1",
            "serviceaccounts",
            serde_json::json!({"metadata": {"name": name, "namespace": namespace}}),
        );
    }

    /// Seed a ClusterRole with `rules`.
    pub fn cluster_role(&self, name: &str, rules: Value) {
        self.put(
            RBAC,
            "clusterroles",
            serde_json::json!({"metadata": {"name": name}, "rules": rules}),
        );
    }

    /// Seed a binding of the ClusterRole `role` to `subjects`: a
    /// ClusterRoleBinding, or a RoleBinding in `namespace`.
    pub fn bind_cluster_role(&self, namespace: Option<&str>, name: &str, role: &str, subjects: Value) {
        let (plural, meta) = match namespace {
            Some(ns) => ("rolebindings", serde_json::json!({"name": name, "namespace": ns})),
            None => ("clusterrolebindings", serde_json::json!({"name": name})),
        };
        self.put(
            RBAC,
            plural,
            serde_json::json!({"metadata": meta, "subjects": subjects,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}}),
        );
    }

    /// A token for the ServiceAccount `namespace/name` (None when it does not
    /// exist), as `kubectl create token` would get one.
    pub fn issue_token(&self, namespace: &str, name: &str) -> Option<String> {
        self.store().issue_token(namespace, name)
    }

    /// The current object, if any.
    pub fn get(&self, api_version: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.store().get_obj(api_version, plural, namespace, name)
    }
}

fn full(value: &serde_json::Value) -> BoxBody<Bytes, BoxError> {
    Full::new(Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
        .map_err(|e| match e {})
        .boxed_unsync()
}

fn json_response(status: u16, body: BoxBody<Bytes, BoxError>) -> Response<BoxBody<Bytes, BoxError>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
