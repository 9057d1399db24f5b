//! Leader election over a `coordination.k8s.io` Lease, so two replicas can run
//! with one active. The holder renews every `renew`; a standby takes over a
//! lease it has not seen renewed for `duration`. As in client-go, "not
//! renewed" is judged by when this candidate saw the lease record change, on
//! its own clock, never by comparing the holder's `renewTime` with it: a
//! holder whose clock is behind is not deposed while it renews. Writes use
//! the lease's resourceVersion, so two candidates can never both win the
//! same round, and every call has a deadline, so a hung API call cannot
//! outlive the lease.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

/// One candidate for one lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    pub duration: Duration,
    /// The lease record last seen, and when it was first seen so.
    observed: Mutex<Option<(Record, Instant)>>,
}

/// What identifies one renewal of a lease.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    transitions: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {lease}: {source}")]
    Api { lease: String, source: kube::Error },
    #[error("lease {lease}: no answer within {0:?}", .timeout)]
    Timeout { lease: String, timeout: Duration },
}

impl LeaderElector {
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
            observed: Mutex::new(None),
        }
    }

    /// Run one API call with a deadline of a third of the lease.
    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, LeaderError> {
        let timeout = (self.duration / 3).max(Duration::from_secs(1));
        tokio::time::timeout(timeout, f)
            .await
            .map_err(|_| LeaderError::Timeout {
                lease: self.name.clone(),
                timeout,
            })
    }

    fn api_err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            lease: self.name.clone(),
            source,
        }
    }

    /// Whether the lease in `spec` has gone unrenewed for its duration, as
    /// this candidate has watched it.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let record = Record {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions,
        };
        let ttl = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match observed.as_ref() {
            Some((r, at)) if *r == record => at.elapsed() > ttl,
            _ => {
                *observed = Some((record, Instant::now()));
                false
            }
        }
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Acquire or renew the lease; true while this candidate holds it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        let current = self
            .call(self.api.get_opt(&self.name))
            .await?
            .map_err(|e| self.api_err(e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.call(self.api.create(&PostParams::default(), &lease)).await? {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(self.api_err(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(self.identity.as_str());
        let expired = self.expired(&spec);
        if !mine && holder.is_some() && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine { spec.acquire_time } else { None };
        lease.spec = Some(self.spec(now, transitions, acquired));
        match self
            .call(self.api.replace(&self.name, &PostParams::default(), &lease))
            .await?
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(self.api_err(e)),
        }
    }

    /// Give the lease up on shutdown so a standby need not wait it out.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let current = self
            .call(self.api.get_opt(&self.name))
            .await?
            .map_err(|e| self.api_err(e))?;
        if let Some(mut lease) = current
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            self.call(self.api.replace(&self.name, &PostParams::default(), &lease))
                .await?
                .map_err(|e| self.api_err(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_standin::Standin;

    #[tokio::test]
    async fn one_leader_and_takeover_after_expiry_or_release() {
        let api = Standin::new();
        api.put(
            "v1",
            "namespaces",
            serde_json::json!({"metadata": {"name": "netprobe-system"}}),
        );
        let a = LeaderElector::new(
            api.client(),
            "netprobe-system",
            "netprobe-operator",
            "a",
            Duration::from_secs(1),
        );
        let b = LeaderElector::new(
            api.client(),
            "netprobe-system",
            "netprobe-operator",
            "b",
            Duration::from_secs(1),
        );
        assert!(a.try_acquire_or_renew().await.unwrap());
        assert!(!b.try_acquire_or_renew().await.unwrap(), "a holds a fresh lease");
        assert!(a.try_acquire_or_renew().await.unwrap(), "renewal");
        // b sees the renewal, then nothing more for longer than the lease.
        assert!(!b.try_acquire_or_renew().await.unwrap());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(b.try_acquire_or_renew().await.unwrap(), "b takes over an expired lease");
        assert!(!a.try_acquire_or_renew().await.unwrap(), "a lost it");
        b.release().await.unwrap();
        assert!(
            a.try_acquire_or_renew().await.unwrap(),
            "a released lease is free at once"
        );
        let lease = api
            .get(
                "coordination.k8s.io/v1",
                "leases",
                Some("netprobe-system"),
                "netprobe-operator",
            )
            .unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "a");
        assert_eq!(lease["spec"]["leaseTransitions"], 2);
    }

    /// A holder whose clock runs an hour behind keeps the lease while it
    /// renews; once it stops, a standby takes over a lease later.
    #[tokio::test]
    async fn clock_skew_does_not_depose_a_renewing_holder() {
        let api = Standin::new();
        api.put(
            "v1",
            "namespaces",
            serde_json::json!({"metadata": {"name": "netprobe-system"}}),
        );
        let lease = |renew: &str| {
            serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "netprobe-operator", "namespace": "netprobe-system"},
                "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": 1, "renewTime": renew}})
        };
        let b = LeaderElector::new(
            api.client(),
            "netprobe-system",
            "netprobe-operator",
            "b",
            Duration::from_secs(1),
        );
        api.put("coordination.k8s.io/v1", "leases", lease("2020-01-01T00:00:00.000000Z"));
        assert!(!b.try_acquire_or_renew().await.unwrap(), "first sight: not expired");
        for i in 1..4 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            api.put(
                "coordination.k8s.io/v1",
                "leases",
                lease(&format!("2020-01-01T00:00:0{i}.000000Z")),
            );
            assert!(
                !b.try_acquire_or_renew().await.unwrap(),
                "renewing, if with an old clock"
            );
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(
            b.try_acquire_or_renew().await.unwrap(),
            "no renewal seen for a lease: taken over"
        );
    }
}
