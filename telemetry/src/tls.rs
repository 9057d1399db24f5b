//! The certificate `/metrics` is served with: the operator's files (from
//! cert-manager or any issuer, re-read when they change), or a self-signed
//! one made at start, which Prometheus accepts with `insecureSkipVerify` as
//! it does for kube-rbac-proxy's and controller-runtime's defaults. The
//! token, not the certificate, is what grants access.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the metrics certificate {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the metrics certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
}

/// Certificate and key files given by the operator of the cluster.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// A server configuration from the files as they are now.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let read = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| read(&self.cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read(&self.cert, &e))?;
        if certs.is_empty() {
            return Err(read(&self.cert, &"no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| read(&self.key, &e))?;
        config(certs, key)
    }

    /// When either file last changed (to reload rotated certificates).
    pub fn modified(&self) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(&self.cert)?, m(&self.key)?))
    }
}

/// A self-signed certificate for `names` (the pod's host name and
/// `localhost`), made in memory at start.
pub fn self_signed(names: Vec<String>) -> Result<Arc<ServerConfig>, TlsError> {
    let made = rcgen::generate_simple_self_signed(names)?;
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(|e| TlsError::Read {
        path: PathBuf::from("<self-signed>"),
        reason: e.to_string(),
    })?;
    config(vec![cert], key)
}

fn config(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
