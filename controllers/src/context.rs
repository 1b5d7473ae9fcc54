//! What every loop gets: the API client, the clock, the shared caches, settings, and
//! per-object retry back-off.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource};

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::events::Recorder;
use crate::informers::Informers;

/// How the scheduler ranks nodes by their requested resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringStrategy {
    /// Prefer the emptiest node (spreads load; Kubernetes' default).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node that still fits (packs load, frees whole nodes).
    MostAllocated,
}

/// Settings of the loops, with Kubernetes' defaults.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Pods whose `spec.schedulerName` is this are placed by skiff's scheduler.
    pub scheduler_name: String,
    pub scoring: ScoringStrategy,
    /// A node whose Lease was not renewed for this long becomes `Ready=Unknown`.
    pub node_monitor_grace_period: Duration,
    /// How long pods tolerate an unreachable or not-ready node unless they say otherwise.
    pub default_unreachable_toleration: Duration,
    /// HPA: how far back the highest recommendation counts before scaling down / up.
    pub hpa_downscale_stabilization: Duration,
    pub hpa_upscale_stabilization: Duration,
    /// HPA: how often each autoscaler is evaluated.
    pub hpa_sync_period: Duration,
    /// Objects of one kind reconciled at the same time.
    pub concurrency: u16,
    /// The cluster CA (PEM) put into service account token Secrets and published in every
    /// namespace as the ConfigMap `kube-root-ca.crt`.
    pub cluster_ca_pem: Option<String>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            scheduler_name: skiff_api::constants::DEFAULT_SCHEDULER_NAME.to_string(),
            scoring: ScoringStrategy::default(),
            node_monitor_grace_period: Duration::from_secs(40),
            default_unreachable_toleration: Duration::from_secs(300),
            hpa_downscale_stabilization: Duration::from_secs(300),
            hpa_upscale_stabilization: Duration::from_secs(180),
            hpa_sync_period: Duration::from_secs(15),
            concurrency: 8,
            cluster_ca_pem: None,
        }
    }
}

/// Builds one loop on `ctx` (subscribing to the informers it needs) and returns the future
/// that runs it; `Informers::start` runs after all loops are built.
pub type Builder = fn(&Arc<Context>) -> futures::future::BoxFuture<'static, ()>;

pub struct Context {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub informers: Arc<Informers>,
    pub config: Arc<ControllerConfig>,
    backoff: Backoffs,
}

impl Context {
    pub fn new(client: Client, clock: Arc<dyn Clock>, config: ControllerConfig) -> Arc<Context> {
        Arc::new(Context {
            informers: Arc::new(Informers::new(client.clone())),
            client,
            clock,
            config: Arc::new(config),
            backoff: Backoffs::default(),
        })
    }

    /// A context on the wall clock with default settings.
    pub fn with_defaults(client: Client) -> Arc<Context> {
        Context::new(client, Arc::new(SystemClock), ControllerConfig::default())
    }

    /// An event recorder for `component` (`replicaset-controller`, `default-scheduler`…).
    pub fn recorder(&self, component: &str) -> Recorder {
        Recorder::new(self.client.clone(), component, self.clock.clone())
    }

    /// After a successful reconcile of `key`: its next failure starts the back-off afresh.
    pub fn succeeded(&self, key: &str) {
        self.backoff.forget(key);
    }

    /// The delay before retrying `key` after one more failure.
    pub fn failed(&self, key: &str) -> Duration {
        self.backoff.next(key)
    }
}

/// Per-object exponential back-off: 5 ms doubling to 5 minutes (client-go's item limiter,
/// with a lower ceiling so a fixed object is picked up soon).
#[derive(Default)]
struct Backoffs {
    failures: Mutex<HashMap<String, u32>>,
}

const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Backoffs {
    fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        BACKOFF_BASE
            .saturating_mul(1u32 << (*n - 1).min(20))
            .min(BACKOFF_MAX)
    }

    fn forget(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// `ns/name` of an object, the key for back-off and logs.
pub fn object_key<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// The error policy every controller uses: log, then retry with the object's back-off.
/// Objects that are invalid as written wait for a change (or a slow periodic retry).
pub fn error_policy<K: Resource>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(obj.as_ref());
    match error {
        Error::Invalid { .. } => {
            tracing::warn!(object = key, error = %error, "cannot reconcile as written");
            Action::requeue(BACKOFF_MAX)
        }
        _ => {
            let delay = ctx.failed(&key);
            if error.is_conflict() {
                tracing::debug!(object = key, error = %error, "conflict; retrying");
            } else {
                tracing::warn!(object = key, error = %error, ?delay, "reconcile failed; retrying");
            }
            Action::requeue(delay)
        }
    }
}

/// What a kube-rs controller stream yields per reconcile.
pub type Outcome<K, E> = Result<(ObjectRef<K>, Action), controller::Error<E, watcher::Error>>;

/// Logs what a controller's stream yields; used as `.for_each(log_outcome("name"))`.
pub fn log_outcome<K, E>(
    controller: &'static str,
) -> impl FnMut(Outcome<K, E>) -> futures::future::Ready<()>
where
    K: Resource,
    K::DynamicType: Debug,
    E: std::error::Error + 'static,
{
    move |outcome| {
        match outcome {
            Ok((obj, _)) => tracing::trace!(controller, object = %obj, "reconciled"),
            // Reconciler errors were logged by `error_policy` with their object.
            Err(controller::Error::ReconcilerFailed(..)) => {}
            Err(e) => tracing::debug!(controller, error = %e, "controller"),
        }
        futures::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let b = Backoffs::default();
        assert_eq!(b.next("a"), Duration::from_millis(5));
        assert_eq!(b.next("a"), Duration::from_millis(10));
        assert_eq!(b.next("a"), Duration::from_millis(20));
        assert_eq!(b.next("b"), Duration::from_millis(5));
        for _ in 0..40 {
            b.next("a");
        }
        assert_eq!(b.next("a"), BACKOFF_MAX);
        b.forget("a");
        assert_eq!(b.next("a"), Duration::from_millis(5));
    }
}
