//! Leader election over a `coordination.k8s.io` Lease, so two replicas can run
//! with one active. The holder renews every `renew`; a standby takes over a
//! lease not renewed for `duration`. Writes use the lease's resourceVersion,
//! so two candidates can never both win the same round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};

/// One candidate for one lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    pub duration: Duration,
}

impl LeaderElector {
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
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
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(self.identity.as_str());
        let ttl = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
        let expired = spec.renew_time.as_ref().is_none_or(|t| t.0 + ttl < now);
        if !mine && holder.is_some() && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine { spec.acquire_time } else { None };
        lease.spec = Some(self.spec(now, transitions, acquired));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the lease up on shutdown so a standby need not wait it out.
    pub async fn release(&self) -> Result<(), kube::Error> {
        if let Some(mut lease) = self.api.get_opt(&self.name).await?
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            self.api.replace(&self.name, &PostParams::default(), &lease).await?;
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
        tokio::time::sleep(Duration::from_millis(2100)).await;
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
}
