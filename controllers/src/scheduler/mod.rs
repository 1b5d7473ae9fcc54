//! The scheduler: places each pending pod whose `spec.schedulerName` is ours on a node.
//!
//! Shape (kube-scheduler's): the pod and node informers feed the scheduler's own `Cache` (per
//! node, the sums of what its pods request) and the `SchedulingQueue`. One task takes pods
//! off the queue one at a time and runs the `Algorithm` over the cache — filters, then scores
//! over enough feasible nodes — all pure and in memory. A chosen pod is *assumed* on its node
//! in the cache at once and its binding (`POST pods/{name}/binding`) is written by a separate
//! task, up to `MAX_BINDINGS_IN_FLIGHT` at a time, while the next pod is being scheduled. A
//! binding that fails forgets the assumption. A pod that fits nowhere gets the
//! `PodScheduled=False` condition (reason `Unschedulable`) and a `FailedScheduling` event
//! whose message counts the reasons per node, and waits in the queue for a cluster change
//! that could help it.
//!
//! Informer streams tell applied objects but not deletions, so a periodic sweep compares the
//! cache and queue with the informer stores and drops what is gone.
//!
//! Volumes: a claim bound to a PersistentVolume with node affinity (local, hostPath) pins
//! the pod to matching nodes; an unbound claim does not constrain the pod (the volume binder
//! provisions it where the pod lands, as with `WaitForFirstConsumer`).

pub mod algorithm;
pub mod cache;
pub mod filters;
pub mod podinfo;
pub mod queue;
pub mod resources;
pub mod scores;
pub mod summary;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Api;
use serde_json::json;
use skiff_api::labels::Selector;
use tokio::sync::{mpsc, Semaphore};

use self::algorithm::Algorithm;
use self::cache::{Cache, PodState};
use self::filters::{volume_constraints, Hint};
use self::podinfo::PodInfo;
use self::queue::{QueuedPod, SchedulingQueue};
use crate::context::Context;
use crate::events::{EventType, Recorder};
use crate::objects::{is_terminating, labels, phase};

/// Bindings being written at once; the next pods are scheduled meanwhile.
pub const MAX_BINDINGS_IN_FLIGHT: usize = 64;
/// Failure reports (condition and event) being written at once.
const MAX_REPORTS_IN_FLIGHT: usize = 8;
/// `Scheduled` events being written at once: few, so they trail the bindings instead of
/// competing with them for the API server.
const MAX_EVENTS_IN_FLIGHT: usize = 2;
/// How often the cache and queue are compared with the informers to drop deleted objects.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// How often, and after how long, unschedulable pods are retried without a cluster change.
const FLUSH_PERIOD: Duration = Duration::from_secs(30);
const FLUSH_AFTER: Duration = Duration::from_secs(60);
/// Informer events handled between two decisions at most (per kind).
const DRAIN_BATCH: usize = 512;

/// A latency histogram with buckets a quarter of a power of two wide (1 µs … ~70 min).
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

const BUCKETS: usize = 128;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn bucket(d: Duration) -> usize {
        let us = d.as_secs_f64() * 1e6;
        if us <= 1.0 {
            return 0;
        }
        ((us.log2() * 4.0).ceil() as usize).min(BUCKETS - 1)
    }

    pub fn record(&self, d: Duration) {
        self.buckets[Self::bucket(d)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding the `q`-quantile (0 < q ≤ 1).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let target = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target {
                return Some(Duration::from_secs_f64(2f64.powf(i as f64 / 4.0) / 1e6));
            }
        }
        None
    }
}

/// What the scheduler did, for benchmarks and tests.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Bindings written successfully.
    pub bound: AtomicU64,
    /// Scheduling attempts (decisions made or failed).
    pub attempts: AtomicU64,
    /// Attempts that found no node.
    pub unschedulable: AtomicU64,
    /// Bindings the API refused or that failed.
    pub binding_errors: AtomicU64,
    /// Time of the in-memory decision (filters and scores) per attempt.
    pub decision: Histogram,
    /// Time of the binding request.
    pub binding: Histogram,
}

impl Metrics {
    pub fn bound(&self) -> u64 {
        self.bound.load(Ordering::Relaxed)
    }
}

/// Builds the scheduler on `ctx`'s informers.
pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    start_with_metrics(ctx, Arc::new(Metrics::default()))
}

/// `start`, counting into `metrics`.
pub fn start_with_metrics(ctx: &Arc<Context>, metrics: Arc<Metrics>) -> BoxFuture<'static, ()> {
    let inf = &ctx.informers;
    let streams = Streams {
        pods: Box::pin(inf.pods.subscribe()),
        nodes: Box::pin(inf.nodes.subscribe()),
        claims: Box::pin(inf.persistent_volume_claims.subscribe()),
        volumes: Box::pin(inf.persistent_volumes.subscribe()),
    };
    let readers = Readers {
        pods: inf.pods.reader(),
        nodes: inf.nodes.reader(),
        claims: inf.persistent_volume_claims.reader(),
        volumes: inf.persistent_volumes.reader(),
        namespaces: inf.namespaces.reader(),
    };
    let scheduler = Scheduler::new(ctx.clone(), readers, metrics);
    scheduler.run(streams).boxed()
}

type Applied<K> = Pin<Box<dyn Stream<Item = Arc<K>> + Send>>;

struct Streams {
    pods: Applied<Pod>,
    nodes: Applied<Node>,
    claims: Applied<PersistentVolumeClaim>,
    volumes: Applied<PersistentVolume>,
}

struct Readers {
    pods: Store<Pod>,
    nodes: Store<Node>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    namespaces: Store<Namespace>,
}

/// How a binding request ended.
#[derive(Debug)]
enum BindOutcome {
    Bound,
    /// The pod is gone, already bound, or being deleted: nothing to retry.
    Moot(String),
    /// Anything else: retry after the pod's backoff.
    Failed(String),
}

struct BindResult {
    pod: QueuedPod,
    node: String,
    outcome: BindOutcome,
}

struct Scheduler {
    ctx: Arc<Context>,
    readers: Readers,
    cache: Cache,
    queue: SchedulingQueue,
    algorithm: Algorithm,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    bindings: Arc<Semaphore>,
    reports: Arc<Semaphore>,
    events: Arc<Semaphore>,
    results: mpsc::UnboundedSender<BindResult>,
    results_rx: Option<mpsc::UnboundedReceiver<BindResult>>,
}

fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// What of a pod can change a scheduling decision: its labels and spec.
fn fingerprint(pod: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    pod.metadata.labels.hash(&mut h);
    serde_json::to_string(&pod.spec)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

impl Scheduler {
    fn new(ctx: Arc<Context>, readers: Readers, metrics: Arc<Metrics>) -> Scheduler {
        let (results, results_rx) = mpsc::unbounded_channel();
        Scheduler {
            recorder: ctx.recorder(&ctx.config.scheduler_name),
            algorithm: Algorithm::new(ctx.config.scoring, rand::random()),
            ctx,
            readers,
            cache: Cache::default(),
            queue: SchedulingQueue::default(),
            metrics,
            bindings: Arc::new(Semaphore::new(MAX_BINDINGS_IN_FLIGHT)),
            reports: Arc::new(Semaphore::new(MAX_REPORTS_IN_FLIGHT)),
            events: Arc::new(Semaphore::new(MAX_EVENTS_IN_FLIGHT)),
            results,
            results_rx: Some(results_rx),
        }
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or(skiff_api::constants::DEFAULT_SCHEDULER_NAME);
        name == self.ctx.config.scheduler_name
    }

    async fn run(mut self, mut streams: Streams) {
        let Some(mut results) = self.results_rx.take() else {
            return;
        };
        let ready = futures::future::try_join5(
            self.readers.pods.wait_until_ready(),
            self.readers.nodes.wait_until_ready(),
            self.readers.claims.wait_until_ready(),
            self.readers.volumes.wait_until_ready(),
            self.readers.namespaces.wait_until_ready(),
        )
        .await;
        if ready.is_err() {
            tracing::warn!("scheduler: informers stopped before they filled");
            return;
        }
        for node in self.readers.nodes.state() {
            self.cache.upsert_node(node);
        }
        for pod in self.readers.pods.state() {
            self.on_pod(pod);
        }
        tracing::info!(
            nodes = self.cache.node_count(),
            pending = self.queue.len(),
            "scheduler started"
        );
        let mut sweep = tokio::time::interval(SWEEP_PERIOD);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flush = tokio::time::interval(FLUSH_PERIOD);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.drain(&mut streams, &mut results);
            let now = Instant::now();
            if self.bindings.available_permits() > 0 && self.queue.has_ready(now) {
                if let Some(pod) = self.queue.pop(now) {
                    self.schedule_one(pod);
                }
                // Let the binding tasks and the informers run on a busy runtime.
                tokio::task::yield_now().await;
                continue;
            }
            let backoff = self.queue.next_backoff();
            let wake = async move {
                match backoff {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                Some(pod) = streams.pods.next() => self.on_pod(pod),
                Some(node) = streams.nodes.next() => self.on_node(node),
                Some(_) = streams.claims.next() => self.volumes_changed(),
                Some(_) = streams.volumes.next() => self.volumes_changed(),
                Some(r) = results.recv() => self.on_bind_result(r),
                _ = sweep.tick() => self.sweep(),
                _ = flush.tick() => {
                    let moved = self.queue.flush(Instant::now(), FLUSH_AFTER);
                    if moved > 0 {
                        tracing::debug!(moved, "retrying long-unschedulable pods");
                    }
                }
                _ = wake => {}
            }
        }
    }

    /// Handles what the informers and binding tasks have ready, without waiting.
    fn drain(&mut self, streams: &mut Streams, results: &mut mpsc::UnboundedReceiver<BindResult>) {
        while let Ok(r) = results.try_recv() {
            self.on_bind_result(r);
        }
        for _ in 0..DRAIN_BATCH {
            match streams.nodes.next().now_or_never() {
                Some(Some(node)) => self.on_node(node),
                _ => break,
            }
        }
        for _ in 0..DRAIN_BATCH {
            match streams.pods.next().now_or_never() {
                Some(Some(pod)) => self.on_pod(pod),
                _ => break,
            }
        }
        let mut volumes = false;
        while let Some(Some(_)) = streams.claims.next().now_or_never() {
            volumes = true;
        }
        while let Some(Some(_)) = streams.volumes.next().now_or_never() {
            volumes = true;
        }
        if volumes {
            self.volumes_changed();
        }
    }

    fn volumes_changed(&mut self) {
        self.queue.move_for(Hint::Volume, Instant::now());
    }

    fn on_node(&mut self, node: Arc<Node>) {
        if self.cache.upsert_node(node) {
            self.queue.move_for(Hint::Node, Instant::now());
        }
    }

    fn on_pod(&mut self, pod: Arc<Pod>) {
        let uid = pod_uid(&pod).to_string();
        if uid.is_empty() {
            return;
        }
        let now = Instant::now();
        if let Some(node) = node_name(&pod) {
            self.queue.remove(&uid);
            if is_terminal(&pod) {
                if self.cache.remove_pod(&uid).is_some() {
                    self.queue.move_for(Hint::PodGone, now);
                }
                return;
            }
            match self.cache.pod(&uid) {
                Some((cached, state)) if cached == node => {
                    if state != PodState::Confirmed {
                        self.cache.set_state(&uid, PodState::Confirmed);
                    }
                    let relabelled = self
                        .cache
                        .pod_info(&uid)
                        .is_some_and(|i| i.labels != *labels(&pod.metadata));
                    if relabelled {
                        self.cache
                            .add_pod(Arc::new(PodInfo::new(&pod)), node, PodState::Confirmed);
                        self.queue.move_for(Hint::PodAdded, now);
                        self.queue.move_for(Hint::PodGone, now);
                    }
                }
                _ => {
                    self.cache
                        .add_pod(Arc::new(PodInfo::new(&pod)), node, PodState::Confirmed);
                    self.queue.move_for(Hint::PodAdded, now);
                }
            }
            return;
        }
        if is_terminal(&pod) || is_terminating(&pod.metadata) || !self.is_ours(&pod) {
            self.queue.remove(&uid);
            return;
        }
        if self.cache.pod(&uid).is_some() {
            // Assumed: its binding is on its way.
            return;
        }
        if let Some(fp) = self.queue.unschedulable_fingerprint(&uid) {
            if fp != fingerprint(&pod) {
                self.queue.updated(&uid, now);
            }
            return;
        }
        self.queue.add(QueuedPod {
            uid,
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            attempts: 0,
        });
    }

    /// Drops nodes and pods the informers no longer have (deletions are not streamed).
    fn sweep(&mut self) {
        for name in self.cache.node_names() {
            if self.readers.nodes.get(&ObjectRef::new(&name)).is_none() {
                tracing::debug!(node = name, "node gone");
                self.cache.remove_node(&name);
            }
        }
        let current = |ns: &str, name: &str| {
            self.readers
                .pods
                .get(&ObjectRef::new(name).within(ns))
                .map(|p| pod_uid(&p).to_string())
        };
        let gone: Vec<String> = self
            .cache
            .pod_keys()
            .into_iter()
            .filter(|(_, _, _, state)| *state != PodState::Assumed)
            .filter(|(uid, ns, name, _)| current(ns, name).as_deref() != Some(uid))
            .map(|(uid, ..)| uid)
            .collect();
        let dequeued: Vec<String> = self
            .queue
            .keys()
            .into_iter()
            .filter(|(uid, ns, name)| current(ns, name).as_deref() != Some(uid))
            .map(|(uid, ..)| uid)
            .collect();
        for uid in &dequeued {
            self.queue.remove(uid);
        }
        if !gone.is_empty() {
            for uid in &gone {
                self.cache.remove_pod(uid);
            }
            self.queue.move_for(Hint::PodGone, Instant::now());
        }
    }

    fn schedule_one(&mut self, queued: QueuedPod) {
        let key = ObjectRef::new(&queued.name).within(&queued.namespace);
        let Some(pod) = self.readers.pods.get(&key) else {
            return;
        };
        if pod_uid(&pod) != queued.uid
            || node_name(&pod).is_some()
            || is_terminating(&pod.metadata)
            || is_terminal(&pod)
            || !self.is_ours(&pod)
        {
            return;
        }
        let started = Instant::now();
        let info = Arc::new(PodInfo::new(&pod));
        let ns = info.namespace.clone();
        let claims = &self.readers.claims;
        let volumes = &self.readers.volumes;
        let constraints = volume_constraints(
            &info,
            |c| claims.get(&ObjectRef::new(c).within(&ns)),
            |v| volumes.get(&ObjectRef::new(v)),
        );
        let namespaces = &self.readers.namespaces;
        let namespace_matches = |sel: &Selector, ns: &str| {
            namespaces
                .get(&ObjectRef::new(ns))
                .is_some_and(|n| sel.matches(labels(&n.metadata)))
        };
        let result = self
            .algorithm
            .schedule(&self.cache, &info, constraints, &namespace_matches);
        self.metrics.decision.record(started.elapsed());
        self.metrics.attempts.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(decision) => {
                tracing::debug!(
                    pod = info.key(),
                    node = decision.node,
                    evaluated = decision.evaluated,
                    feasible = decision.feasible,
                    "scheduled"
                );
                self.cache
                    .add_pod(info.clone(), &decision.node, PodState::Assumed);
                self.bind(queued, info, decision.node);
            }
            Err(fit) => {
                self.metrics.unschedulable.fetch_add(1, Ordering::Relaxed);
                let message = fit.message();
                tracing::debug!(pod = info.key(), message, "unschedulable");
                self.queue
                    .unschedulable(queued, fit.hints, fingerprint(&pod), Instant::now());
                self.report_unschedulable(pod, message);
            }
        }
    }

    /// Writes the binding in a task of its own; the outcome comes back on `results`.
    fn bind(&self, queued: QueuedPod, info: Arc<PodInfo>, node: String) {
        let Ok(permit) = self.bindings.clone().try_acquire_owned() else {
            // The loop only schedules with a permit free; this is unreachable in practice.
            let _ = self.results.send(BindResult {
                pod: queued,
                node,
                outcome: BindOutcome::Failed("no binding slot".into()),
            });
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &info.namespace);
        let results = self.results.clone();
        let recorder = self.recorder.clone();
        let events = self.events.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(info.name.clone()),
                    namespace: Some(info.namespace.clone()),
                    uid: Some(info.uid.clone()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            let started = Instant::now();
            let result = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &info.name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            metrics.binding.record(started.elapsed());
            drop(permit);
            let outcome = match result {
                Ok(_) => BindOutcome::Bound,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    BindOutcome::Moot(s.message.clone())
                }
                Err(e) => BindOutcome::Failed(e.to_string()),
            };
            let bound = matches!(outcome, BindOutcome::Bound);
            let _ = results.send(BindResult {
                pod: queued,
                node: node.clone(),
                outcome,
            });
            if bound {
                let Ok(_slot) = events.acquire_owned().await else {
                    return;
                };
                let message = format!(
                    "Successfully assigned {}/{} to {node}",
                    info.namespace, info.name
                );
                recorder
                    .publish_ref(
                        pod_reference(&info),
                        EventType::Normal,
                        "Scheduled",
                        &message,
                    )
                    .await;
            }
        });
    }

    fn on_bind_result(&mut self, r: BindResult) {
        let uid = r.pod.uid.clone();
        match r.outcome {
            BindOutcome::Bound => {
                self.metrics.bound.fetch_add(1, Ordering::Relaxed);
                if self
                    .cache
                    .pod(&uid)
                    .is_some_and(|(_, s)| s == PodState::Assumed)
                {
                    self.cache.set_state(&uid, PodState::Bound);
                }
            }
            BindOutcome::Moot(why) => {
                self.metrics.binding_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pod = %format!("{}/{}", r.pod.namespace, r.pod.name), node = r.node, why, "binding refused");
                self.forget(&uid);
            }
            BindOutcome::Failed(why) => {
                self.metrics.binding_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pod = %format!("{}/{}", r.pod.namespace, r.pod.name), node = r.node, why, "binding failed; retrying");
                self.forget(&uid);
                let message = format!("Binding rejected: {why}");
                if let Some(pod) = self
                    .readers
                    .pods
                    .get(&ObjectRef::new(&r.pod.name).within(&r.pod.namespace))
                {
                    let recorder = self.recorder.clone();
                    let reports = self.reports.clone();
                    tokio::spawn(async move {
                        let Ok(_slot) = reports.acquire_owned().await else {
                            return;
                        };
                        recorder
                            .publish(
                                pod.as_ref(),
                                EventType::Warning,
                                "FailedScheduling",
                                &message,
                            )
                            .await;
                    });
                }
                self.queue.failed(r.pod, Instant::now());
            }
        }
    }

    /// Drops an assumption whose binding did not happen; what it held is free again.
    fn forget(&mut self, uid: &str) {
        if self
            .cache
            .pod(uid)
            .is_some_and(|(_, s)| s != PodState::Confirmed)
        {
            self.cache.remove_pod(uid);
            self.queue.move_for(Hint::PodGone, Instant::now());
        }
    }

    /// The `PodScheduled=False` condition and a `FailedScheduling` event, in a task.
    fn report_unschedulable(&self, pod: Arc<Pod>, message: String) {
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let recorder = self.recorder.clone();
        let reports = self.reports.clone();
        let now = self.ctx.clock.now();
        tokio::spawn(async move {
            let Ok(_slot) = reports.acquire_owned().await else {
                return;
            };
            if let Some(patch) = unschedulable_condition_patch(&pod, &message, now) {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    // A conflict means the pod changed since the decision: its next attempt
                    // writes the condition if it still applies.
                    tracing::debug!(pod = name, error = %e, "writing PodScheduled condition");
                }
            }
            recorder
                .publish(
                    pod.as_ref(),
                    EventType::Warning,
                    "FailedScheduling",
                    &message,
                )
                .await;
        });
    }
}

/// The status patch that sets `PodScheduled=False` (reason `Unschedulable`) with `message`,
/// or `None` when the pod already says exactly that. It carries the pod's resourceVersion,
/// so it does not land on a pod that changed (was bound) since it was evaluated.
pub fn unschedulable_condition_patch(
    pod: &Pod,
    message: &str,
    now: jiff::Timestamp,
) -> Option<serde_json::Value> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = current {
        if c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
        {
            return None;
        }
    }
    let transition = match current {
        Some(c) if c.status == "False" => c.last_transition_time.clone().unwrap_or(Time(now)),
        _ => Time(now),
    };
    Some(json!({
        "metadata": {"resourceVersion": pod.metadata.resource_version},
        "status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]},
    }))
}

fn pod_reference(info: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(info.name.clone()),
        namespace: Some(info.namespace.clone()),
        uid: Some(info.uid.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn condition_patch_is_skipped_when_unchanged_and_keeps_the_transition_time() {
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let fresh = pod(json!({"metadata": {"name": "p", "resourceVersion": "7"}}));
        let patch =
            unschedulable_condition_patch(&fresh, "0/1 nodes are available: 1 Too many pods.", now)
                .unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let c = &patch["status"]["conditions"][0];
        assert_eq!(
            (
                c["type"].as_str(),
                c["status"].as_str(),
                c["reason"].as_str()
            ),
            (Some("PodScheduled"), Some("False"), Some("Unschedulable"))
        );
        let failed = pod(json!({"metadata": {"name": "p"}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "m1", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}));
        assert!(unschedulable_condition_patch(&failed, "m1", now).is_none());
        let p = unschedulable_condition_patch(&failed, "m2", now).unwrap();
        assert_eq!(
            p["status"]["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn histogram_quantiles() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.record(Duration::from_micros(100));
        }
        h.record(Duration::from_millis(100));
        let p50 = h.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_micros(100) && p50 < Duration::from_micros(120),
            "{p50:?}"
        );
        let p100 = h.quantile(1.0).unwrap();
        assert!(
            p100 >= Duration::from_millis(100) && p100 < Duration::from_millis(120),
            "{p100:?}"
        );
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn fingerprint_ignores_status() {
        let a = pod(
            json!({"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"containers": []}}),
        );
        let mut b = a.clone();
        b.status = Some(Default::default());
        b.metadata.resource_version = Some("9".into());
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.metadata.labels = Some([("a".to_string(), "2".to_string())].into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
