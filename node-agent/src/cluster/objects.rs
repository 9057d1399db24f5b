//! User programs' objects from ConfigMaps (Program probes): fetched by name
//! from the agent's namespace when a plan first asks for them, kept by
//! (ConfigMap, key, digest), so a new digest in the spec fetches again. The
//! agent does not watch these ConfigMaps (objects weigh up to a MiB each, and
//! a change without a new digest must not load anyway); bytes whose digest is
//! not the spec's are fetched again now and then, so putting the right
//! object back heals without a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use netprobe_api::probes::program::ObjectSource;
use netprobe_api::{PlannedProbe, ProbePlan};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::pipeline::desired::ObjectBytes;

/// How long a failed or mismatched fetch waits before the next.
const RETRY: Duration = Duration::from_secs(15);

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// (ConfigMap name, key, expected digest).
type ObjectRef = (String, String, String);

struct Fetched {
    bytes: ObjectBytes,
    /// The bytes are the spec's (their digest matches).
    good: bool,
    at: Instant,
}

pub struct ObjectCache {
    api: Api<ConfigMap>,
    entries: BTreeMap<ObjectRef, Fetched>,
}

/// Every (plan key, object reference) of Program plans with ConfigMap objects.
fn wanted(plans: &[Arc<ProbePlan>]) -> Vec<(String, ObjectRef)> {
    let mut out = Vec::new();
    for plan in plans {
        for p in &plan.probes {
            if let PlannedProbe::Program(pp) = p
                && let ObjectSource::ConfigMap { name, key } = &pp.object
            {
                let sha = pp.sha256.clone().unwrap_or_default();
                out.push((plan.source.key(), (name.clone(), key.clone(), sha)));
            }
        }
    }
    out
}

impl ObjectCache {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        ObjectCache {
            api: Api::namespaced(client, namespace),
            entries: BTreeMap::new(),
        }
    }

    /// Fetch what `plans` need and the cache lacks (or holds wrong), forget
    /// what no plan needs.
    pub async fn refresh(&mut self, plans: &[Arc<ProbePlan>]) {
        let want = wanted(plans);
        self.entries.retain(|r, _| want.iter().any(|(_, w)| w == r));
        for (_, r) in want {
            if self.entries.get(&r).is_some_and(|f| f.good || f.at.elapsed() < RETRY) {
                continue;
            }
            // Bounded: an API outage must not hold up the agent's loop.
            let bytes = match tokio::time::timeout(FETCH_TIMEOUT, self.fetch(&r.0, &r.1)).await {
                Ok(b) => b,
                Err(_) => Err(format!(
                    "reading ConfigMap {}: no answer in {} s",
                    r.0,
                    FETCH_TIMEOUT.as_secs()
                )),
            };
            let good = match &bytes {
                Ok(b) => hex(&Sha256::digest(b.as_slice())) == r.2,
                Err(_) => false,
            };
            match (&bytes, good) {
                (Ok(b), true) => info!(configmap = %r.0, key = %r.1, bytes = b.len(), "user program object fetched"),
                (Ok(_), false) => warn!(configmap = %r.0, key = %r.1, "user program object is not the spec's digest"),
                (Err(e), _) => warn!(configmap = %r.0, key = %r.1, error = %e, "user program object not fetched"),
            }
            self.entries.insert(
                r,
                Fetched {
                    bytes,
                    good,
                    at: Instant::now(),
                },
            );
        }
    }

    async fn fetch(&self, name: &str, key: &str) -> ObjectBytes {
        let cm = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading ConfigMap {name}: {e}"))?
            .ok_or_else(|| format!("ConfigMap {name} not found in the agent's namespace"))?;
        if let Some(b) = cm.binary_data.as_ref().and_then(|d| d.get(key)) {
            return Ok(Arc::new(b.0.clone()));
        }
        if let Some(t) = cm.data.as_ref().and_then(|d| d.get(key)) {
            return Ok(Arc::new(t.as_bytes().to_vec()));
        }
        Err(format!("ConfigMap {name} has no key {key} (binaryData or data)"))
    }

    /// The fetched objects of `plans`, by plan key.
    pub fn objects(&self, plans: &[Arc<ProbePlan>]) -> BTreeMap<String, ObjectBytes> {
        wanted(plans)
            .into_iter()
            .filter_map(|(plan, r)| Some((plan, self.entries.get(&r)?.bytes.clone())))
            .collect()
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
