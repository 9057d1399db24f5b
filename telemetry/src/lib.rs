//! What netprobe's two binaries serve about themselves: their logs, and one
//! HTTP endpoint with `/metrics`, `/healthz` and `/readyz`.
//!
//! The metrics name every tenant's namespaces, pods and (with peer labels)
//! peers, so in a cluster `/metrics` is served over HTTPS and only to a
//! bearer token the API server authenticates (TokenReview) and authorizes
//! for `get` on the non-resource URL `/metrics` (SubjectAccessReview): the
//! contract of kube-rbac-proxy and controller-runtime's metrics filter, so a
//! Prometheus set up for either scrapes netprobe unchanged. Health endpoints
//! stay open: the kubelet probes them without a token.

pub mod auth;
mod logging;
mod server;
pub mod tls;

pub use auth::{CachePolicy, ReviewError, TokenAuthorizer, Verdict};
pub use logging::{LogFormat, init_logging};
pub use server::{Access, AuthMode, Endpoint, MetricsSecurity, ServeError, serve};
