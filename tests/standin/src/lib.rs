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
mod store;

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

pub use store::{Record, Store};

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
                let ct = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let (status, value) = me
                    .store()
                    .handle(parts.method.as_str(), &parts.uri, ct.as_deref(), &bytes);
                let body = Full::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default()));
                Response::builder()
                    .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            }
        });
        kube::Client::new(svc, "default")
    }

    /// Seed or overwrite an object directly (no request recorded).
    pub fn put(&self, api_version: &str, plural: &str, obj: Value) -> Value {
        self.store().seed(api_version, plural, obj)
    }

    /// The current object, if any.
    pub fn get(&self, api_version: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.store().get_obj(api_version, plural, namespace, name)
    }
}
