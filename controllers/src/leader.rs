//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does:
//! several skiff-control processes on one etcd run one scheduler and one controller set.
//!
//! A candidate takes the Lease when it is free or when the holder has not renewed it for a
//! whole lease duration, and the leader renews it every retry period. Every write carries the
//! Lease's `resourceVersion`, so of two candidates racing for an expired Lease exactly one
//! wins (the other gets 409 Conflict). Expiry is judged by when *this* process last saw the
//! record change (on its own monotonic clock), not by the holder's `renewTime`, so clock skew
//! between machines does not matter. A leader that cannot renew within the renew deadline
//! steps down before its Lease can expire, so two leaders never act at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub lease_name: String,
    /// Who this process is (`hostname_uuid` by default); shown in the Lease.
    pub identity: String,
    /// How long a Lease is honoured without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// How often candidates try to take the Lease and the leader renews it.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Kubernetes' defaults (15 s / 10 s / 2 s) for the Lease `kube-system/<lease_name>`.
    pub fn new(lease_name: &str, identity: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            namespace: "kube-system".to_string(),
            lease_name: lease_name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The settings as a person would read them wrong: each must be shorter than the last.
    pub fn validate(&self) -> Result<(), Error> {
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(Error::invalid(
                "leader election",
                format!(
                    "retry period {:?} must be positive and shorter than the renew deadline {:?}",
                    self.retry_period, self.renew_deadline
                ),
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(Error::invalid(
                "leader election",
                format!(
                    "renew deadline {:?} must be shorter than the lease duration {:?}",
                    self.renew_deadline, self.lease_duration
                ),
            ));
        }
        Ok(())
    }
}

/// The Lease record as last seen, and when.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    observed: Option<Observed>,
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease (newly or still).
    Leading,
    /// Someone else holds it and it has not expired.
    Following(String),
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Waits until this process leads.
    pub async fn acquire(&mut self) {
        let mut following: Option<String> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    tracing::info!(
                        identity = self.config.identity,
                        lease = self.config.lease_name,
                        "became leader"
                    );
                    return;
                }
                Ok(Attempt::Following(holder)) => {
                    if following.as_deref() != Some(&holder) {
                        tracing::info!(leader = holder, "waiting for leadership");
                        following = Some(holder);
                    }
                }
                Err(e) if e.is_conflict() => {}
                Err(e) => tracing::warn!(error = %e, "trying to acquire leadership"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease every retry period; returns when leadership is lost (another holder
    /// took over, or no renewal succeeded within the renew deadline).
    pub async fn keep_leading(&mut self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let attempt =
                tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(Attempt::Leading)) => last_renewal = Instant::now(),
                Ok(Ok(Attempt::Following(holder))) => {
                    tracing::warn!(leader = holder, "lost leadership to another process");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing leadership"),
                Err(_) => tracing::warn!("renewing leadership timed out"),
            }
            if last_renewal.elapsed() >= self.config.renew_deadline {
                tracing::warn!(
                    deadline = ?self.config.renew_deadline,
                    "could not renew leadership in time; stepping down"
                );
                return;
            }
        }
    }

    /// Gives the Lease up so a standby takes over at once (on clean shutdown).
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.lease_name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        if let Err(e) = self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "releasing leadership");
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Error> {
        let name = self.config.lease_name.clone();
        let what = format!("lease {}/{}", self.config.namespace, name);
        let now = MicroTime(Timestamp::now());
        let duration_secs =
            i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let current = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| Error::api("get", &what, e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            self.api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(|e| Error::api("create", &what, e))?;
            self.observe(&lease);
            return Ok(Attempt::Leading);
        };

        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        self.observe(&lease);
        let we_hold = holder.as_deref() == Some(self.config.identity.as_str());
        if let Some(holder) = &holder {
            let honoured = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(duration_secs)).unwrap_or(0),
            );
            let seen_at = self
                .observed
                .as_ref()
                .map(|o| o.at)
                .unwrap_or_else(Instant::now);
            if !we_hold && seen_at.elapsed() < honoured {
                return Ok(Attempt::Following(holder.clone()));
            }
        }

        let mut new_spec = spec.clone();
        if !we_hold {
            new_spec.acquire_time = Some(now.clone());
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.holder_identity = Some(self.config.identity.clone());
        new_spec.lease_duration_seconds = Some(duration_secs);
        new_spec.renew_time = Some(now);
        lease.spec = Some(new_spec);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        let written = self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
            .map_err(|e| Error::api("update", &what, e))?;
        self.observe(&written);
        Ok(Attempt::Leading)
    }

    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let changed = match &self.observed {
            Some(o) => o.holder != spec.holder_identity || o.renew_time != spec.renew_time,
            None => true,
        };
        if changed {
            self.observed = Some(Observed {
                holder: spec.holder_identity,
                renew_time: spec.renew_time,
                at: Instant::now(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_must_nest() {
        let mut c = LeaderElectionConfig::new("skiff-control", "a");
        assert!(c.validate().is_ok());
        c.renew_deadline = Duration::from_secs(20);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("renew deadline"), "{e}");
        c.renew_deadline = Duration::from_secs(10);
        c.retry_period = Duration::from_secs(10);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("retry period"));
    }
}
