//! Shared informer caches: one watch per resource for the whole controller set.
//!
//! Each `Shared<K>` is a kube-rs reflector store fed by one watcher. Controllers take a
//! `reader()` (the cache, for lookups) and/or a `subscribe()`d stream (to trigger reconciles)
//! while they are being built; `Informers::start` then starts the watches that anyone asked
//! for. Subscribing after `start` is refused: a late subscriber would miss the objects
//! already listed.
//!
//! The fan-out is our own rather than kube-rs' shared reflector, because that one forwards
//! only applied objects: a controller must also hear of deletions (a deleted pod is a
//! replica to replace). Subscribers get every applied object, the last state of every
//! deleted one, and — after a re-list — the objects that vanished while the watch was down.

use std::fmt::Debug;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Secret,
    Service, ServiceAccount,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// What a subscriber receives: each object applied or deleted, as the watch saw it.
pub type Subscription<K> = Pin<Box<dyn Stream<Item = Arc<K>> + Send>>;

type Subscribers<K> = Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Arc<K>>>>>;

/// One resource's shared cache.
pub struct Shared<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    reader: Store<K>,
    writer: Mutex<Option<Writer<K>>>,
    subscribers: Subscribers<K>,
    used: AtomicBool,
}

impl<K> Shared<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    fn new() -> Shared<K> {
        let writer = Writer::<K>::default();
        Shared {
            reader: writer.as_reader(),
            writer: Mutex::new(Some(writer)),
            subscribers: Default::default(),
            used: AtomicBool::new(false),
        }
    }

    /// The cache. It fills once `Informers::start` ran; `wait_until_ready` waits for that.
    pub fn reader(&self) -> Store<K> {
        self.used.store(true, Ordering::Release);
        self.reader.clone()
    }

    /// Every object the watch applies or deletes from now on (each list result first).
    ///
    /// # Panics
    /// When called after `Informers::start`: that is a wiring bug in the controller set.
    pub fn subscribe(&self) -> Subscription<K> {
        self.used.store(true, Ordering::Release);
        let started = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none();
        assert!(
            !started,
            "informer subscriptions must be made before Informers::start"
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// The watch feeding this cache, if anyone uses it; runs until the client goes away.
    fn start(&self, api: Api<K>) -> Option<BoxFuture<'static, ()>> {
        if !self.used.load(Ordering::Acquire) {
            return None;
        }
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let subscribers = self.subscribers.clone();
        let reader = self.reader.clone();
        let kind = K::kind(&Default::default()).to_string();
        // The cache's contents when a re-list began: what is missing after it was deleted.
        let mut before_relist: Option<Vec<Arc<K>>> = None;
        Some(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .for_each(move |event| {
                    let event = match event {
                        Ok(ev) => ev,
                        Err(e) => {
                            tracing::warn!(kind, error = %e, "informer watch");
                            return futures::future::ready(());
                        }
                    };
                    if let watcher::Event::Init = event {
                        before_relist = Some(reader.state());
                    }
                    writer.apply_watcher_event(&event);
                    let send = |obj: Arc<K>| {
                        subscribers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .retain(|tx| tx.send(obj.clone()).is_ok());
                    };
                    match event {
                        watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => {
                            send(Arc::new(obj))
                        }
                        watcher::Event::InitDone => {
                            for obj in reader.state() {
                                send(obj);
                            }
                            for old in before_relist.take().unwrap_or_default() {
                                if reader.get(&ObjectRef::from_obj(old.as_ref())).is_none() {
                                    send(old);
                                }
                            }
                        }
                        watcher::Event::Init | watcher::Event::InitApply(_) => {}
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
    service_accounts: ServiceAccount,
    secrets: Secret,
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
    storage_classes: StorageClass,
    horizontal_pod_autoscalers: HorizontalPodAutoscaler,
    leases: Lease,
}
