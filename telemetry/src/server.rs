//! The one HTTP endpoint of each binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::{CachePolicy, TokenAuthorizer, Verdict};
use crate::tls::{self, CertFiles, TlsError};

/// Who may read `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// HTTPS, and a bearer token the API server authenticates and allows to
    /// `get` the non-resource URL `/metrics`.
    Kubernetes,
    /// Anyone who can connect (plain HTTP unless a certificate is given):
    /// standalone mode, or where a NetworkPolicy is the only boundary.
    None,
}

/// The metrics endpoint's command-line options, the same in both binaries.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MetricsSecurity {
    /// Who may read /metrics: `kubernetes` (HTTPS; a bearer token allowed to
    /// `get` the non-resource URL /metrics by TokenReview and
    /// SubjectAccessReview, as kube-rbac-proxy does) or `none`. Default:
    /// kubernetes in a cluster, none in standalone mode.
    #[arg(long, env = "NETPROBE_METRICS_AUTH", value_enum)]
    pub metrics_auth: Option<AuthMode>,
    /// PEM certificate chain for HTTPS; re-read when it changes. Default: a
    /// self-signed certificate made at start.
    #[arg(long, env = "NETPROBE_METRICS_TLS_CERT", requires = "metrics_tls_key")]
    pub metrics_tls_cert: Option<PathBuf>,
    /// PEM private key of --metrics-tls-cert.
    #[arg(long, env = "NETPROBE_METRICS_TLS_KEY", requires = "metrics_tls_cert")]
    pub metrics_tls_key: Option<PathBuf>,
}

/// How the endpoint is served, resolved from [`MetricsSecurity`].
pub struct Access {
    tls: Option<(Arc<rustls::ServerConfig>, Option<CertFiles>)>,
    auth: Option<Arc<TokenAuthorizer>>,
    reload_every: Duration,
}

impl Access {
    /// How often certificate files are checked for a change (default 30 s).
    pub fn reload_every(mut self, every: Duration) -> Self {
        self.reload_every = every;
        self
    }

    /// Review tokens under another cache policy.
    pub fn cache_policy(mut self, policy: CachePolicy) -> Self {
        if let Some(a) = &self.auth {
            self.auth = Some(Arc::new(TokenAuthorizer::new(a.client(), policy)));
        }
        self
    }
}

/// The endpoint cannot be set up or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--metrics-auth=kubernetes needs a Kubernetes API (it is off in standalone mode)")]
    AuthWithoutApi,
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl MetricsSecurity {
    /// Resolve the options: `client` is the API that reviews tokens (None in
    /// standalone mode), `default` the mode when none was chosen.
    pub fn access(&self, client: Option<kube::Client>, default: AuthMode) -> Result<Access, ServeError> {
        let mode = self.metrics_auth.unwrap_or(default);
        let files = match (&self.metrics_tls_cert, &self.metrics_tls_key) {
            (Some(cert), Some(key)) => Some(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let auth = match (mode, client) {
            (AuthMode::None, _) => None,
            (AuthMode::Kubernetes, None) => return Err(ServeError::AuthWithoutApi),
            (AuthMode::Kubernetes, Some(c)) => Some(Arc::new(TokenAuthorizer::new(c, CachePolicy::default()))),
        };
        let tls = match (&files, &auth) {
            (Some(f), _) => Some((f.load()?, files.clone())),
            (None, Some(_)) => Some((tls::self_signed(self_names())?, None)),
            (None, None) => None,
        };
        Ok(Access {
            tls,
            auth,
            reload_every: Duration::from_secs(30),
        })
    }
}

/// The pod's host name and `localhost`: the names a self-signed certificate
/// is made for.
fn self_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() && h != "localhost" {
            names.push(h.to_string());
        }
    }
    names
}

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoint {
    /// The text exposition (run on a blocking thread: it may take a while).
    pub render: Arc<dyn Fn() -> String + Send + Sync>,
    /// `/readyz` answers 200 once set; None: ready whenever serving.
    pub ready: Option<Arc<AtomicBool>>,
}

struct Shared {
    endpoint: Endpoint,
    auth: Option<Arc<TokenAuthorizer>>,
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `addr` until an error.
pub async fn serve(addr: SocketAddr, endpoint: Endpoint, access: Access) -> Result<(), ServeError> {
    let shared = Arc::new(Shared {
        endpoint,
        auth: access.auth,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(shared);
    let listen = |source| ServeError::Listen { addr, source };
    match access.tls {
        None => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen)?;
            axum::serve(listener, app).await.map_err(listen)
        }
        Some((cfg, files)) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
            if let Some(files) = files {
                tokio::spawn(reload_on_change(rustls.clone(), files, access.reload_every));
            }
            let listener = std::net::TcpListener::bind(addr).map_err(listen)?;
            listener.set_nonblocking(true).map_err(listen)?;
            axum_server::from_tcp_rustls(listener, rustls)
                .serve(app.into_make_service())
                .await
                .map_err(listen)
        }
    }
}

/// Re-read rotated certificate files (cert-manager renews them in place).
async fn reload_on_change(rustls: axum_server::tls_rustls::RustlsConfig, files: CertFiles, every: Duration) {
    let mut seen = files.modified();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = files.modified();
        if now.is_none() || now == seen {
            continue;
        }
        match files.load() {
            Ok(cfg) => {
                rustls.reload_from_config(cfg);
                seen = now;
                tracing::info!(cert = %files.cert.display(), "metrics certificate reloaded");
            }
            // A half-written pair: try again at the next tick.
            Err(e) => tracing::warn!(error = %e, "metrics certificate not reloaded"),
        }
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    match &s.endpoint.ready {
        Some(r) if !r.load(Ordering::Relaxed) => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        _ => (StatusCode::OK, "ok"),
    }
}

async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(auth) = &s.auth {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return unauthorized("a bearer token is required");
        };
        match auth.review(token, "/metrics").await {
            Ok(Verdict::Allowed { .. }) => {}
            Ok(Verdict::Unauthenticated { reason }) => return unauthorized(&reason),
            Ok(Verdict::Denied { user, reason }) => {
                tracing::debug!(%user, %reason, "metrics read refused");
                return (
                    StatusCode::FORBIDDEN,
                    format!("{user} may not get /metrics: {reason}\n"),
                )
                    .into_response();
            }
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot verify the token: {e}\n"),
                )
                    .into_response();
            }
        }
    }
    let render = s.endpoint.render.clone();
    let body = tokio::task::spawn_blocking(move || render()).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("{reason}\n"),
    )
        .into_response()
}
