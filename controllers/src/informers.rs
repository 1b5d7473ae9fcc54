//! Shared informer caches: one watch per resource for the whole controller set.
//!
//! Each `Shared<K>` is a kube-rs reflector store fed by one watcher. Controllers take a
//! `reader()` (the cache, for lookups) and/or a `subscribe()`d stream (each applied object,
//! to trigger reconciles) while they are being built; `Informers::start` then starts the
//! watches that anyone asked for. Subscribing after `start` is refused: a late subscriber
//! would miss the objects already listed.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use kube::runtime::reflector::{self, store::Writer, ReflectHandle, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// Objects buffered per subscriber before the watch waits for slow consumers.
const SUBSCRIBER_BUFFER: usize = 4096;

/// One resource's shared cache.
pub struct Shared<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    reader: Store<K>,
    writer: Mutex<Option<Writer<K>>>,
    used: AtomicBool,
}

impl<K> Shared<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    fn new() -> Shared<K> {
        let (reader, writer) = reflector::store_shared(SUBSCRIBER_BUFFER);
        Shared {
            reader,
            writer: Mutex::new(Some(writer)),
            used: AtomicBool::new(false),
        }
    }

    /// The cache. It fills once `Informers::start` ran; `wait_until_ready` waits for that.
    pub fn reader(&self) -> Store<K> {
        self.used.store(true, Ordering::Release);
        self.reader.clone()
    }

    /// Every object the watch applies from now on (each list result first).
    ///
    /// # Panics
    /// When called after `Informers::start`: that is a wiring bug in the controller set.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        self.used.store(true, Ordering::Release);
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer
            .as_ref()
            .and_then(Writer::subscribe)
            .expect("informer subscriptions must be made before Informers::start")
    }

    /// The watch feeding this cache, if anyone uses it; runs until the client goes away.
    fn start(&self, api: Api<K>) -> Option<BoxFuture<'static, ()>> {
        if !self.used.load(Ordering::Acquire) {
            return None;
        }
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let kind = K::kind(&Default::default()).to_string();
        Some(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect_shared(writer)
                .for_each(move |event| {
                    if let Err(e) = event {
                        tracing::warn!(kind, error = %e, "informer watch");
                    }
                    futures::future::ready(())
                })
                .boxed(),
        )
    }
}

macro_rules! informers {
    ($($field:ident: $kind:ty),* $(,)?) => {
        /// The shared caches of one controller set (one per leadership term).
        pub struct Informers {
            client: Client,
            started: AtomicBool,
            $(pub $field: Shared<$kind>,)*
        }

        impl Informers {
            pub fn new(client: Client) -> Informers {
                Informers {
                    client,
                    started: AtomicBool::new(false),
                    $($field: Shared::new(),)*
                }
            }

            /// Starts the watches anyone subscribed to or reads; returns their tasks.
            pub fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
                if self.started.swap(true, Ordering::AcqRel) {
                    return Vec::new();
                }
                let mut tasks = Vec::new();
                $(
                    if let Some(watch) = self.$field.start(Api::<$kind>::all(self.client.clone())) {
                        tasks.push(tokio::spawn(watch));
                    }
                )*
                tasks
            }
        }
    };
}

informers! {
    pods: Pod,
    nodes: Node,
    namespaces: Namespace,
    services: Service,
    replication_controllers: ReplicationController,
    replica_sets: ReplicaSet,
    deployments: Deployment,
    daemon_sets: DaemonSet,
    stateful_sets: StatefulSet,
    controller_revisions: ControllerRevision,
    jobs: Job,
    cron_jobs: CronJob,
    persistent_volumes: PersistentVolume,
    persistent_volume_claims: PersistentVolumeClaim,
    horizontal_pod_autoscalers: HorizontalPodAutoscaler,
    leases: Lease,
}
