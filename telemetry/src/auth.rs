//! Who may read `/metrics`: the API server decides, through a TokenReview
//! (who is this token?) and a SubjectAccessReview (may they `get` this
//! non-resource URL?).
//!
//! Every scrape of every node would otherwise cost the API server two
//! requests (10,000 nodes × 2 per 30 s at 5,000 nodes with two Prometheus
//! replicas), so verdicts are cached per token: an allowed token for
//! `allow_ttl`, a refused one for `deny_ttl`. When the API server cannot be
//! reached, a token allowed within `stale_if_error` stays allowed, so an API
//! outage does not blind monitoring (the agent keeps probing and serving
//! through one); a token never seen is refused (503) until the API answers.
//! The cache holds at most `max_entries` verdicts, keyed by a SHA-256 of
//! the token (tokens themselves are not kept).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

/// How long verdicts are trusted, and how many are kept.
#[derive(Clone, Copy, Debug)]
pub struct CachePolicy {
    pub allow_ttl: Duration,
    pub deny_ttl: Duration,
    /// How long an allowed verdict is still honoured while the API server
    /// cannot answer.
    pub stale_if_error: Duration,
    pub max_entries: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            allow_ttl: Duration::from_secs(60),
            deny_ttl: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(600),
            max_entries: 1024,
        }
    }
}

/// The API server's answer for one token and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        user: String,
    },
    /// The token is not a valid one (HTTP 401).
    Unauthenticated {
        reason: String,
    },
    /// Valid token, no right to the path (HTTP 403).
    Denied {
        user: String,
        reason: String,
    },
}

/// The API server could not give a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    #[error("SubjectAccessReview for {user} failed: {source}")]
    AccessReview {
        user: String,
        #[source]
        source: kube::Error,
    },
}

#[derive(Clone)]
struct Cached {
    verdict: Verdict,
    at: Instant,
}

/// Reviews bearer tokens against the API server, with a bounded cache.
pub struct TokenAuthorizer {
    client: kube::Client,
    policy: CachePolicy,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl TokenAuthorizer {
    pub fn new(client: kube::Client, policy: CachePolicy) -> Self {
        Self {
            client,
            policy,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// May the bearer of `token` `get` the non-resource URL `path`?
    pub async fn review(&self, token: &str, path: &str) -> Result<Verdict, ReviewError> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(path.as_bytes())
            .chain_update([0u8])
            .chain_update(token.as_bytes())
            .finalize()
            .into();
        let now = Instant::now();
        let cached = self.lock().get(&key).cloned();
        if let Some(c) = &cached
            && now.duration_since(c.at) < self.ttl(&c.verdict)
        {
            return Ok(c.verdict.clone());
        }
        match self.ask(token, path).await {
            Ok(verdict) => {
                self.remember(key, verdict.clone(), now);
                Ok(verdict)
            }
            Err(e) => match cached {
                Some(c)
                    if matches!(c.verdict, Verdict::Allowed { .. })
                        && now.duration_since(c.at) < self.policy.stale_if_error =>
                {
                    tracing::warn!(error = %e, "the API server cannot review a metrics token; honouring its last verdict");
                    Ok(c.verdict)
                }
                _ => Err(e),
            },
        }
    }

    /// The API client that reviews tokens.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// How many verdicts are cached (bounded by `max_entries`).
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    fn ttl(&self, v: &Verdict) -> Duration {
        match v {
            Verdict::Allowed { .. } => self.policy.allow_ttl,
            _ => self.policy.deny_ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, key: [u8; 32], verdict: Verdict, at: Instant) {
        let keep = self.policy.stale_if_error.max(self.policy.allow_ttl);
        let mut cache = self.lock();
        if cache.len() >= self.policy.max_entries && !cache.contains_key(&key) {
            cache.retain(|_, c| at.duration_since(c.at) < keep);
            while cache.len() >= self.policy.max_entries.max(1) {
                let Some(oldest) = cache.iter().min_by_key(|(_, c)| c.at).map(|(k, _)| *k) else {
                    break;
                };
                cache.remove(&oldest);
            }
        }
        cache.insert(key, Cached { verdict, at });
    }

    async fn ask(&self, token: &str, path: &str) -> Result<Verdict, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        let status = reviewed.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(Verdict::Unauthenticated {
                reason: status
                    .error
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "the token is not authenticated".to_string()),
            });
        }
        let name = user.username.clone().unwrap_or_default();
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_string()),
                    verb: Some("get".to_string()),
                }),
                resource_attributes: None,
            },
            ..Default::default()
        };
        let decided = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &sar)
            .await
            .map_err(|source| ReviewError::AccessReview {
                user: name.clone(),
                source,
            })?;
        let status = decided.status.unwrap_or_default();
        Ok(if status.allowed && status.denied != Some(true) {
            Verdict::Allowed { user: name }
        } else {
            let reason = status
                .reason
                .filter(|r| !r.is_empty())
                .or(status.evaluation_error)
                .unwrap_or_else(|| format!("{name} may not get {path}"));
            Verdict::Denied { user: name, reason }
        })
    }
}
