//! The ReplicaSet and ReplicationController controllers: keep `spec.replicas` active pods
//! matching the selector.
//!
//! One implementation serves both kinds through `ReplicaKind` (a ReplicationController is a
//! ReplicaSet with a map selector in the core group). Each pass of an owner:
//!
//! 1. claims pods: adopts orphans that match the selector, releases pods it controls that no
//!    longer match (the "change the label → the pod leaves the RC" behaviour), both with a
//!    `resourceVersion` precondition so a stale cache never overwrites someone else's change;
//! 2. if the expectations of its previous pass are met (its creates and deletes are seen in
//!    the pod cache, or 5 minutes passed), creates or deletes pods in slow-start batches
//!    (1, 2, 4, …), deleting the least valuable pods first (`deletion_order`);
//! 3. writes `status` through the status subresource (replicas, fullyLabeledReplicas,
//!    readyReplicas, availableReplicas with minReadySeconds on the clock, observedGeneration,
//!    the ReplicaFailure condition when creates or deletes fail).
//!
//! The pod informer does not report deletions to subscribers, so a pass whose deletes are
//! not yet confirmed polls the cache shortly, and every owner is resynced periodically.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_api::labels::Selector;

use crate::clock::seconds_between;
use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorder};
use crate::informers::{Informers, Shared};
use crate::objects::delete_exactly;
use crate::objects::{
    controller_of, controller_reference, generate_name_prefix, is_pod_active, is_pod_available,
    is_pod_ready, is_terminating, labels, map_selector, phase, pod_from_template, ready_since,
    seconds_until_available, selector, PodName,
};

/// Pods created or deleted by one pass at most (kube-controller-manager's burstReplicas).
pub const BURST_REPLICAS: usize = 500;
/// Expectations not met by then are given up: the cache is trusted again.
pub const EXPECTATIONS_TIMEOUT_SECONDS: i64 = 300;
/// How soon a pass whose own deletes are not yet seen looks at the cache again.
const UNCONFIRMED_POLL: Duration = Duration::from_millis(250);
/// Every owner is looked at this often even without events (deletions are not reported).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);
/// Annotation ranking pods for deletion (lower cost goes first), as Kubernetes.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

// ---------------------------------------------------------------------------------------------
// The two kinds

/// What the controller needs from a ReplicaSet or a ReplicationController.
pub trait ReplicaKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The component name on events and in logs.
    const COMPONENT: &'static str;

    fn shared(informers: &Informers) -> &Shared<Self>;
    fn replicas(&self) -> i32;
    /// The pod selector; an empty selector is refused (it would claim every pod).
    fn pod_selector(&self) -> Result<Selector>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    fn current_status(&self) -> ReplicaStatus;
}

fn what<K: ReplicaKind>(owner: &K) -> String {
    format!("{} {}", K::kind(&()), object_key(owner))
}

fn non_empty(sel: Selector, what: String) -> Result<Selector> {
    if sel.is_empty() {
        return Err(Error::invalid(
            what,
            "spec.selector is empty; it would select every pod in the namespace",
        ));
    }
    Ok(sel)
}

impl ReplicaKind for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn shared(informers: &Informers) -> &Shared<Self> {
        &informers.replica_sets
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn pod_selector(&self) -> Result<Selector> {
        let w = what(self);
        let sel = selector(self.spec.as_ref().map(|s| &s.selector), &w)?;
        non_empty(sel, w)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn current_status(&self) -> ReplicaStatus {
        let Some(s) = &self.status else {
            return ReplicaStatus::default();
        };
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s
                .conditions
                .iter()
                .flatten()
                .map(|c| Condition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect(),
        }
    }
}

impl ReplicaKind for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn shared(informers: &Informers) -> &Shared<Self> {
        &informers.replication_controllers
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    /// The selector map; the API server defaults an empty one to the template's labels, and
    /// so does this (for objects written before that default existed).
    fn pod_selector(&self) -> Result<Selector> {
        let w = what(self);
        let spec = self.spec.as_ref();
        let map = spec
            .and_then(|s| s.selector.as_ref())
            .filter(|m| !m.is_empty())
            .or_else(|| {
                spec.and_then(|s| s.template.as_ref())
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.as_ref())
            });
        let sel = match map {
            Some(map) => map_selector(map, &w)?,
            None => Selector::everything(),
        };
        non_empty(sel, w)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn current_status(&self) -> ReplicaStatus {
        let Some(s) = &self.status else {
            return ReplicaStatus::default();
        };
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s
                .conditions
                .iter()
                .flatten()
                .map(|c| Condition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect(),
        }
    }
}

/// The status both kinds share, in their JSON spelling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

pub const REPLICA_FAILURE: &str = "ReplicaFailure";

// ---------------------------------------------------------------------------------------------
// Pure planning

/// What a controller does with one pod of its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by the owner and matching: counts towards its replicas.
    Owned,
    /// An orphan that matches: adopt it.
    Adopt,
    /// Controlled by the owner but no longer matching: release it.
    Release,
    /// Someone else's, or neither matching nor ours.
    Ignore,
}

/// The claim of an owner (`uid`, terminating or not) on an object with `meta` and labels
/// matched by `matches` (Kubernetes' ControllerRefManager).
pub fn claim(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    owner_uid: &str,
    owner_terminating: bool,
    matches: bool,
) -> Claim {
    match controller_of(meta) {
        Some(r) if r.uid == owner_uid => {
            if matches {
                Claim::Owned
            } else if owner_terminating {
                // A terminating owner keeps what it has; the garbage collector decides.
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !owner_terminating && !is_terminating(meta) => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// The owner references of an object after `owner` adopts it (others kept, stale
/// controller-less references to the same owner replaced).
pub fn adopted_references(
    current: &[OwnerReference],
    owner: OwnerReference,
) -> Vec<OwnerReference> {
    let mut refs: Vec<OwnerReference> = current
        .iter()
        .filter(|r| r.uid != owner.uid)
        .cloned()
        .collect();
    refs.push(owner);
    refs
}

/// The owner references of an object after the owner with `uid` releases it.
pub fn released_references(current: &[OwnerReference], uid: &str) -> Vec<OwnerReference> {
    current.iter().filter(|r| r.uid != uid).cloned().collect()
}

/// The sizes of the slow-start batches for `count` operations: 1, 2, 4, … so that a
/// failing operation (quota, a bad template) fails once instead of `count` times.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = 1usize;
    while remaining > 0 {
        let batch = size.min(remaining);
        batches.push(batch);
        remaining -= batch;
        size = size.saturating_mul(2);
    }
    batches
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i64 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Orders two optional times so that the later one (and a missing one before all) comes
/// first: newer pods go first.
fn newer_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// Kubernetes' ranking of pods for deletion (`ActivePodsWithRanks`): the pod to delete
/// first compares `Less`. `rank` counts the owner's active pods on the same node.
fn deletion_rank(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    // 1. Unscheduled before scheduled.
    let (na, nb) = (node_name(a).is_empty(), node_name(b).is_empty());
    if na != nb {
        return if na {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending < Unknown < Running.
    let by_phase = phase_ordinal(a).cmp(&phase_ordinal(b));
    if by_phase != Ordering::Equal {
        return by_phase;
    }
    // 3. Not ready before ready.
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return if ra {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    // 4. Lower deletion cost first.
    let by_cost = deletion_cost(a).cmp(&deletion_cost(b));
    if by_cost != Ordering::Equal {
        return by_cost;
    }
    // 5. Doubled up on a node before alone.
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    // 6. Ready for less time first.
    if ra && rb {
        let by_ready = newer_first(ready_since(a), ready_since(b));
        if by_ready != Ordering::Equal {
            return by_ready;
        }
    }
    // 7. More restarts first.
    let by_restarts = max_restarts(b).cmp(&max_restarts(a));
    if by_restarts != Ordering::Equal {
        return by_restarts;
    }
    // 8. Newer first.
    newer_first(created(a), created(b))
}

/// The `count` pods to delete out of `pods` (the owner's active pods), best first.
pub fn deletion_order(pods: &[Pod], count: usize) -> Vec<&Pod> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        let node = node_name(p);
        if !node.is_empty() {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Pod| per_node.get(node_name(p)).copied().unwrap_or(0);
    let mut ranked: Vec<(&Pod, usize)> = pods.iter().map(|p| (p, rank(p))).collect();
    ranked.sort_by(|(a, ra), (b, rb)| deletion_rank(a, *ra, b, *rb));
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

/// What an owner asks for, as its status is computed against.
pub struct Desired<'a> {
    pub replicas: i32,
    pub min_ready_seconds: i32,
    pub generation: i64,
    pub template_labels: &'a BTreeMap<String, String>,
}

/// The status an owner should report for its active pods.
pub fn compute_status(
    current: &ReplicaStatus,
    desired: &Desired<'_>,
    pods: &[Pod],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaStatus {
    let Desired {
        replicas: desired,
        min_ready_seconds,
        generation,
        template_labels,
    } = *desired;
    let fully_labeled = pods
        .iter()
        .filter(|p| {
            let l = labels(&p.metadata);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count();
    let ready = pods.iter().filter(|p| is_pod_ready(p)).count();
    let available = pods
        .iter()
        .filter(|p| is_pod_available(p, min_ready_seconds, now))
        .count();
    let mut conditions = current.conditions.clone();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(message) if !has_failure => {
            let reason = match (pods.len() as i64).cmp(&i64::from(desired)) {
                Ordering::Less => "FailedCreate",
                _ => "FailedDelete",
            };
            conditions.push(Condition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    ReplicaStatus {
        replicas: pods.len() as i32,
        fully_labeled_replicas: fully_labeled as i32,
        ready_replicas: ready as i32,
        available_replicas: available as i32,
        observed_generation: generation,
        conditions,
    }
}

/// How long until the next of `pods` becomes available under `min_ready_seconds`, if one
/// is ready but not yet available.
pub fn next_availability(pods: &[Pod], min_ready_seconds: i32, now: Timestamp) -> Option<i64> {
    pods.iter()
        .filter(|p| is_pod_ready(p) && !is_pod_available(p, min_ready_seconds, now))
        .map(|p| seconds_until_available(p, min_ready_seconds, now).max(1))
        .min()
}

// ---------------------------------------------------------------------------------------------
// Expectations

/// What one owner's last pass did that the cache has not shown yet.
#[derive(Debug, Default)]
struct Pending {
    /// Names of pods created.
    created: HashSet<String>,
    /// Names of the owner's pods the informer reported since the pass began.
    observed: HashSet<String>,
    /// UIDs of pods deleted.
    deleted: HashSet<String>,
    since: Option<Timestamp>,
}

/// Per-owner expectations, so a cache that lags the controller's own writes never causes
/// duplicate creates or deletes: a pass waits until the pods it created appear and those
/// it deleted disappear (or start terminating), or until `EXPECTATIONS_TIMEOUT_SECONDS`.
#[derive(Debug, Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pass of `owner` starts creating or deleting.
    pub fn begin(&self, owner: &str, now: Timestamp) {
        self.lock().insert(
            owner.to_string(),
            Pending {
                since: Some(now),
                ..Default::default()
            },
        );
    }

    pub fn created(&self, owner: &str, pod_name: &str) {
        if let Some(p) = self.lock().get_mut(owner) {
            p.created.insert(pod_name.to_string());
        }
    }

    pub fn deleted(&self, owner: &str, pod_uid: &str) {
        if let Some(p) = self.lock().get_mut(owner) {
            p.deleted.insert(pod_uid.to_string());
        }
    }

    /// The informer reported `pod` of `owner`.
    pub fn observe(&self, owner: &str, pod: &Pod) {
        if let Some(p) = self.lock().get_mut(owner) {
            if let Some(name) = &pod.metadata.name {
                p.observed.insert(name.clone());
            }
            if is_terminating(&pod.metadata) {
                if let Some(uid) = &pod.metadata.uid {
                    p.deleted.remove(uid);
                }
            }
        }
    }

    pub fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }

    /// Whether `owner` may act on the cache: every pod it created is seen and every pod it
    /// deleted is gone or terminating in `cached` (the namespace's pods), or the
    /// expectations timed out.
    pub fn satisfied(&self, owner: &str, cached: &[Arc<Pod>], now: Timestamp) -> bool {
        let mut owners = self.lock();
        let Some(p) = owners.get_mut(owner) else {
            return true;
        };
        if p.since
            .is_none_or(|s| seconds_between(s, now) >= EXPECTATIONS_TIMEOUT_SECONDS)
        {
            tracing::debug!(owner, "expectations timed out; trusting the cache");
            owners.remove(owner);
            return true;
        }
        let names: HashSet<&str> = cached
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        let live: HashSet<&str> = cached
            .iter()
            .filter(|c| !is_terminating(&c.metadata))
            .filter_map(|c| c.metadata.uid.as_deref())
            .collect();
        let observed = std::mem::take(&mut p.observed);
        p.created
            .retain(|n| !observed.contains(n) && !names.contains(n.as_str()));
        p.observed = observed;
        p.deleted.retain(|uid| live.contains(uid.as_str()));
        if p.created.is_empty() && p.deleted.is_empty() {
            owners.remove(owner);
            return true;
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------
// The loop

struct Loop<K> {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
    _kind: PhantomData<fn() -> K>,
}

/// Runs the ReplicaSet and the ReplicationController controllers.
pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let rs = run::<ReplicaSet>(ctx);
    let rc = run::<ReplicationController>(ctx);
    async move {
        futures::future::join(rs, rc).await;
    }
    .boxed()
}

/// Fires when the fake clock moves and every `RESYNC_PERIOD`.
pub(crate) fn resync(ctx: &Arc<Context>) -> impl Stream<Item = ()> + Send + 'static {
    let periodic = futures::stream::unfold((), |()| async {
        tokio::time::sleep(RESYNC_PERIOD).await;
        Some(((), ()))
    });
    futures::stream::select(ctx.clock.ticks(), periodic)
}

fn is_kind<K: ReplicaKind>(r: &OwnerReference) -> bool {
    r.kind == K::kind(&()) && r.api_version == K::api_version(&())
}

/// The owners to look at when `pod` changed: its controller if that is a `K`, else every
/// `K` in its namespace whose selector matches it (a possible adopter).
fn owners_of_pod<K: ReplicaKind>(
    pod: &Pod,
    owners: &Store<K>,
    expectations: &Expectations,
) -> Vec<ObjectRef<K>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(r) = controller_of(&pod.metadata) {
        if !is_kind::<K>(r) {
            return Vec::new();
        }
        expectations.observe(&r.uid, pod);
        return vec![ObjectRef::new(&r.name).within(&ns)];
    }
    if !is_pod_active(pod) {
        return Vec::new();
    }
    let pod_labels = labels(&pod.metadata);
    owners
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns.as_str()))
        .filter(|o| o.pod_selector().is_ok_and(|s| s.matches(pod_labels)))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

fn run<K: ReplicaKind>(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let shared = K::shared(&ctx.informers);
    let owners = shared.reader();
    let trigger = shared.subscribe();
    let pods = ctx.informers.pods.reader();
    let pod_events = ctx.informers.pods.subscribe();
    let expectations = Arc::new(Expectations::default());
    let mapper = {
        let owners = owners.clone();
        let expectations = expectations.clone();
        move |pod: Arc<Pod>| owners_of_pod::<K>(&pod, &owners, &expectations)
    };
    let state = Arc::new(Loop::<K> {
        ctx: ctx.clone(),
        pods,
        expectations,
        recorder: ctx.recorder(K::COMPONENT),
        _kind: PhantomData,
    });
    Controller::for_shared_stream(trigger, owners)
        .watches_shared_stream(pod_events, mapper)
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(resync(ctx))
        .run(
            reconcile::<K>,
            |obj, err, state: Arc<Loop<K>>| error_policy(obj, err, state.ctx.clone()),
            state,
        )
        .for_each(log_outcome(K::COMPONENT))
        .boxed()
}

async fn reconcile<K: ReplicaKind>(owner: Arc<K>, state: Arc<Loop<K>>) -> Result<Action> {
    let key = object_key(owner.as_ref());
    let what = what(owner.as_ref());
    state
        .pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::Other("the pod cache closed".into()))?;
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let ns = owner.namespace().unwrap_or_default();
    let sel = owner.pod_selector()?;
    let now = state.ctx.clock.now();
    let owner_terminating = is_terminating(owner.meta());

    let ns_pods: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let mut active: Vec<Pod> = Vec::new();
    let mut to_adopt = Vec::new();
    for pod in ns_pods.iter().filter(|p| is_pod_active(p)) {
        match claim(
            &pod.metadata,
            &uid,
            owner_terminating,
            sel.matches(labels(&pod.metadata)),
        ) {
            Claim::Owned => active.push(pod.as_ref().clone()),
            Claim::Adopt => to_adopt.push(pod.clone()),
            Claim::Release => release(&state, owner.as_ref(), pod).await?,
            Claim::Ignore => {}
        }
    }
    if !to_adopt.is_empty() && can_adopt(&state, owner.as_ref()).await? {
        for pod in to_adopt {
            if let Some(adopted) = adopt(&state, owner.as_ref(), &pod).await? {
                active.push(adopted);
            }
        }
    }

    let desired = owner.replicas().max(0);
    let satisfied = state.expectations.satisfied(&uid, &ns_pods, now);
    let manage = if satisfied && !owner_terminating {
        manage_replicas(&state, owner.as_ref(), &active, desired).await
    } else {
        Ok(false)
    };
    let acted = *manage.as_ref().unwrap_or(&true);

    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = owner.min_ready_seconds();
    let current = owner.current_status();
    let manage_error = manage.as_ref().err().map(|e| e.to_string());
    let wanted = Desired {
        replicas: desired,
        min_ready_seconds: min_ready,
        generation: owner.meta().generation.unwrap_or(0),
        template_labels: &template_labels,
    };
    let status = compute_status(&current, &wanted, &active, manage_error.as_deref(), now);
    if status != current {
        write_status(&state, owner.as_ref(), &status).await?;
    }
    manage?;
    state.ctx.succeeded(&key);
    tracing::trace!(object = what, pods = active.len(), desired, "synced");

    if acted || !satisfied {
        return Ok(Action::requeue(UNCONFIRMED_POLL));
    }
    if let Some(secs) = next_availability(&active, min_ready, now) {
        return Ok(Action::requeue(Duration::from_secs(secs as u64)));
    }
    Ok(Action::await_change())
}

fn owner_api<K: ReplicaKind>(state: &Loop<K>, owner: &K) -> Api<K> {
    Api::namespaced(
        state.ctx.client.clone(),
        owner.meta().namespace.as_deref().unwrap_or_default(),
    )
}

fn pod_api<K: ReplicaKind>(state: &Loop<K>, owner: &K) -> Api<Pod> {
    Api::namespaced(
        state.ctx.client.clone(),
        owner.meta().namespace.as_deref().unwrap_or_default(),
    )
}

/// Writes `status` through the status subresource, as of the cached resourceVersion.
async fn write_status<K: ReplicaKind>(
    state: &Loop<K>,
    owner: &K,
    status: &ReplicaStatus,
) -> Result<()> {
    let patch = json!({
        "metadata": {"resourceVersion": owner.meta().resource_version},
        "status": status,
    });
    owner_api(state, owner)
        .patch_status(
            &owner.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| Error::api("update status of", what(owner), e))?;
    Ok(())
}

/// Removes the owner's reference from a pod that stopped matching its selector.
async fn release<K: ReplicaKind>(state: &Loop<K>, owner: &K, pod: &Pod) -> Result<()> {
    let uid = owner.meta().uid.as_deref().unwrap_or_default();
    let refs = released_references(
        pod.metadata.owner_references.as_deref().unwrap_or_default(),
        uid,
    );
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) },
    }});
    let name = pod.name_any();
    match pod_api(state, owner)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(
                owner = what(owner),
                pod = name,
                "released pod that no longer matches the selector"
            );
            Ok(())
        }
        // Gone or changed meanwhile: its next event brings it back here if still relevant.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(Error::api(
            "release pod",
            format!("{}/{name}", owner.namespace().unwrap_or_default()),
            e,
        )),
    }
}

/// Whether the owner may adopt: a fresh read (not the cache) shows the same object and
/// it is not being deleted, so a recreated owner of the same name never steals pods.
async fn can_adopt<K: ReplicaKind>(state: &Loop<K>, owner: &K) -> Result<bool> {
    match owner_api(state, owner).get(&owner.name_any()).await {
        Ok(fresh) => Ok(fresh.meta().uid == owner.meta().uid && !is_terminating(fresh.meta())),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(Error::api("get", what(owner), e)),
    }
}

/// Makes the owner the controller of an orphan pod; `None` when the pod changed meanwhile.
async fn adopt<K: ReplicaKind>(state: &Loop<K>, owner: &K, pod: &Pod) -> Result<Option<Pod>> {
    let refs = adopted_references(
        pod.metadata.owner_references.as_deref().unwrap_or_default(),
        controller_reference(owner),
    );
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "ownerReferences": refs,
    }});
    let name = pod.name_any();
    match pod_api(state, owner)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(adopted) => {
            tracing::info!(owner = what(owner), pod = name, "adopted orphan pod");
            Ok(Some(adopted))
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(e) => Err(Error::api(
            "adopt pod",
            format!("{}/{name}", owner.namespace().unwrap_or_default()),
            e,
        )),
    }
}

/// Creates or deletes pods towards `desired`; true when it wrote anything.
async fn manage_replicas<K: ReplicaKind>(
    state: &Loop<K>,
    owner: &K,
    active: &[Pod],
    desired: i32,
) -> Result<bool> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let diff = active.len() as i64 - i64::from(desired);
    match diff.cmp(&0) {
        Ordering::Equal => Ok(false),
        Ordering::Less => {
            let count = ((-diff) as usize).min(BURST_REPLICAS);
            let Some(template) = owner.template() else {
                return Err(Error::invalid(what(owner), "spec.template is missing"));
            };
            state.expectations.begin(&uid, state.ctx.clock.now());
            let prefix = generate_name_prefix(&owner.name_any());
            let ns = owner.namespace().unwrap_or_default();
            let pod = pod_from_template(
                template,
                &ns,
                PodName::Generate(&prefix),
                controller_reference(owner),
            );
            for batch in slow_start_batches(count) {
                let results = futures::future::join_all(
                    (0..batch).map(|_| create_pod(state, owner, &uid, &pod)),
                )
                .await;
                if let Some(err) = results.into_iter().find_map(Result::err) {
                    return Err(err);
                }
            }
            Ok(true)
        }
        Ordering::Greater => {
            let count = (diff as usize).min(BURST_REPLICAS);
            state.expectations.begin(&uid, state.ctx.clock.now());
            let victims: Vec<Pod> = deletion_order(active, count).into_iter().cloned().collect();
            let mut victims = victims.iter();
            for batch in slow_start_batches(count) {
                let results = futures::future::join_all(
                    victims
                        .by_ref()
                        .take(batch)
                        .map(|p| delete_pod(state, owner, &uid, p)),
                )
                .await;
                if let Some(err) = results.into_iter().find_map(Result::err) {
                    return Err(err);
                }
            }
            Ok(true)
        }
    }
}

async fn create_pod<K: ReplicaKind>(
    state: &Loop<K>,
    owner: &K,
    uid: &str,
    pod: &Pod,
) -> Result<()> {
    match pod_api(state, owner)
        .create(&PostParams::default(), pod)
        .await
    {
        Ok(created) => {
            let name = created.name_any();
            state.expectations.created(uid, &name);
            state
                .recorder
                .publish(
                    owner,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {name}"),
                )
                .await;
            Ok(())
        }
        Err(e) => {
            let message = match &e {
                kube::Error::Api(s) => s.message.clone(),
                other => other.to_string(),
            };
            state
                .recorder
                .publish(
                    owner,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {message}"),
                )
                .await;
            Err(Error::api("create pod for", what(owner), e))
        }
    }
}

async fn delete_pod<K: ReplicaKind>(
    state: &Loop<K>,
    owner: &K,
    uid: &str,
    pod: &Pod,
) -> Result<()> {
    let name = pod.name_any();
    let params = delete_exactly(pod.metadata.uid.as_deref());
    if let Some(pod_uid) = &pod.metadata.uid {
        state.expectations.deleted(uid, pod_uid);
    }
    match pod_api(state, owner).delete(&name, &params).await {
        Ok(_) => {
            state
                .recorder
                .publish(
                    owner,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                )
                .await;
            Ok(())
        }
        // Already gone (or replaced by a pod of the same name): nothing to wait for.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => {
            state
                .recorder
                .publish(
                    owner,
                    EventType::Warning,
                    "FailedDelete",
                    &format!("Error deleting: {e}"),
                )
                .await;
            Err(Error::api(
                "delete pod",
                format!("{}/{name}", owner.namespace().unwrap_or_default()),
                e,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    struct P(Pod);

    impl P {
        fn new(name: &str) -> P {
            P(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    uid: Some(format!("uid-{name}")),
                    namespace: Some("default".into()),
                    labels: Some([("app".to_string(), "web".to_string())].into()),
                    creation_timestamp: Some(Time(at("2026-01-01T00:00:00Z"))),
                    ..Default::default()
                },
                spec: Some(PodSpec::default()),
                status: Some(PodStatus {
                    phase: Some("Pending".into()),
                    ..Default::default()
                }),
            })
        }
        fn node(mut self, n: &str) -> P {
            self.0.spec.as_mut().unwrap().node_name = Some(n.into());
            self
        }
        fn running(mut self) -> P {
            self.0.status.as_mut().unwrap().phase = Some("Running".into());
            self
        }
        fn ready_at(mut self, t: &str) -> P {
            let st = self.0.status.as_mut().unwrap();
            st.phase = Some("Running".into());
            st.conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(t))),
                ..Default::default()
            }]);
            self
        }
        fn created_at(mut self, t: &str) -> P {
            self.0.metadata.creation_timestamp = Some(Time(at(t)));
            self
        }
        fn restarts(mut self, n: i32) -> P {
            self.0.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
                name: "c".into(),
                restart_count: n,
                ..Default::default()
            }]);
            self
        }
        fn owned_by(mut self, uid: &str) -> P {
            self.0.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web".into(),
                uid: uid.into(),
                controller: Some(true),
                ..Default::default()
            }]);
            self
        }
        fn terminating(mut self) -> P {
            self.0.metadata.deletion_timestamp = Some(Time(at("2026-01-01T00:00:00Z")));
            self
        }
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn deletes_unscheduled_then_pending_then_not_ready_then_newest_ready() {
        let pods = vec![
            P::new("ready-old")
                .node("n1")
                .ready_at("2026-01-01T00:01:00Z")
                .0,
            P::new("ready-new")
                .node("n2")
                .ready_at("2026-01-01T00:05:00Z")
                .0,
            P::new("running-not-ready").node("n3").running().0,
            P::new("pending-scheduled").node("n4").0,
            P::new("unscheduled").0,
        ];
        assert_eq!(
            names(&deletion_order(&pods, 5)),
            [
                "unscheduled",
                "pending-scheduled",
                "running-not-ready",
                "ready-new",
                "ready-old"
            ]
        );
        assert_eq!(
            names(&deletion_order(&pods, 2)),
            ["unscheduled", "pending-scheduled"]
        );
    }

    #[test]
    fn deletion_prefers_doubled_up_then_restarts_then_newer() {
        let t = "2026-01-01T00:01:00Z";
        let pods = vec![
            P::new("alone").node("n1").ready_at(t).0,
            P::new("double-a").node("n2").ready_at(t).0,
            P::new("double-b").node("n2").ready_at(t).0,
        ];
        assert_eq!(deletion_order(&pods, 1)[0].name_any(), "double-a");
        let pods = vec![
            P::new("calm").node("n1").ready_at(t).0,
            P::new("crashy").node("n2").ready_at(t).restarts(4).0,
        ];
        assert_eq!(deletion_order(&pods, 1)[0].name_any(), "crashy");
        let pods = vec![
            P::new("old").created_at("2026-01-01T00:00:00Z").0,
            P::new("new").created_at("2026-01-01T00:09:00Z").0,
        ];
        assert_eq!(deletion_order(&pods, 1)[0].name_any(), "new");
    }

    #[test]
    fn claims_adopt_orphans_release_strays_and_ignore_others() {
        let mine = P::new("a").owned_by("me").0;
        let theirs = P::new("b").owned_by("them").0;
        let orphan = P::new("c").0;
        let dying_orphan = P::new("d").terminating().0;
        assert_eq!(claim(&mine.metadata, "me", false, true), Claim::Owned);
        assert_eq!(claim(&mine.metadata, "me", false, false), Claim::Release);
        assert_eq!(claim(&mine.metadata, "me", true, false), Claim::Owned);
        assert_eq!(claim(&theirs.metadata, "me", false, true), Claim::Ignore);
        assert_eq!(claim(&orphan.metadata, "me", false, true), Claim::Adopt);
        assert_eq!(claim(&orphan.metadata, "me", false, false), Claim::Ignore);
        assert_eq!(claim(&orphan.metadata, "me", true, true), Claim::Ignore);
        assert_eq!(
            claim(&dying_orphan.metadata, "me", false, true),
            Claim::Ignore
        );
    }

    #[test]
    fn adoption_and_release_keep_other_references() {
        let other = OwnerReference {
            uid: "other".into(),
            name: "o".into(),
            kind: "ConfigMap".into(),
            api_version: "v1".into(),
            ..Default::default()
        };
        let me = OwnerReference {
            uid: "me".into(),
            controller: Some(true),
            ..other.clone()
        };
        let refs = adopted_references(std::slice::from_ref(&other), me.clone());
        assert_eq!(refs, vec![other.clone(), me.clone()]);
        assert_eq!(released_references(&refs, "me"), vec![other]);
    }

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(7), vec![1, 2, 4]);
    }

    #[test]
    fn status_counts_ready_available_and_labels() {
        let now = at("2026-01-01T00:00:30Z");
        let pods = vec![
            P::new("a").ready_at("2026-01-01T00:00:00Z").0,
            P::new("b").ready_at("2026-01-01T00:00:25Z").0,
            P::new("c").0,
        ];
        let tl: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "fe".to_string()),
        ]
        .into();
        let mut labeled = pods.clone();
        for p in &mut labeled[..2] {
            p.metadata.labels = Some(tl.clone());
        }
        let want = |min_ready_seconds| Desired {
            replicas: 3,
            min_ready_seconds,
            generation: 7,
            template_labels: &tl,
        };
        let st = compute_status(&ReplicaStatus::default(), &want(10), &labeled, None, now);
        assert_eq!(
            (
                st.replicas,
                st.fully_labeled_replicas,
                st.ready_replicas,
                st.available_replicas,
                st.observed_generation
            ),
            (3, 2, 2, 1, 7)
        );
        assert!(st.conditions.is_empty());
        assert_eq!(next_availability(&labeled, 10, now), Some(5));
        assert_eq!(next_availability(&labeled, 0, now), None);

        let failed = compute_status(&st, &want(0), &pods[..1], Some("quota exceeded"), now);
        assert_eq!(failed.conditions.len(), 1);
        assert_eq!(failed.conditions[0].reason.as_deref(), Some("FailedCreate"));
        let again = compute_status(&failed, &want(0), &pods[..1], Some("other"), now);
        assert_eq!(
            again.conditions, failed.conditions,
            "the first failure is kept"
        );
        let fixed = compute_status(&failed, &want(0), &pods, None, now);
        assert!(fixed.conditions.is_empty());
    }

    #[test]
    fn expectations_wait_for_creates_and_deletes_to_show() {
        let t0 = at("2026-01-01T00:00:00Z");
        let e = Expectations::default();
        assert!(e.satisfied("rs", &[], t0));
        e.begin("rs", t0);
        e.created("rs", "web-1");
        e.created("rs", "web-2");
        let one = vec![Arc::new(P::new("web-1").owned_by("rs").0)];
        assert!(!e.satisfied("rs", &one, t0), "web-2 is not seen yet");
        // The informer reported web-2, even if it is already gone from the cache again.
        e.observe("rs", &P::new("web-2").owned_by("rs").0);
        assert!(e.satisfied("rs", &one, t0));

        e.begin("rs", t0);
        e.deleted("rs", "uid-web-1");
        assert!(!e.satisfied("rs", &one, t0), "web-1 is still in the cache");
        let dying = vec![Arc::new(P::new("web-1").owned_by("rs").terminating().0)];
        assert!(
            e.satisfied("rs", &dying, t0),
            "terminating counts as deleted"
        );

        e.begin("rs", t0);
        e.deleted("rs", "uid-web-1");
        assert!(e.satisfied("rs", &[], t0), "gone from the cache");

        e.begin("rs", t0);
        e.created("rs", "web-9");
        assert!(!e.satisfied("rs", &[], at("2026-01-01T00:04:59Z")));
        assert!(
            e.satisfied("rs", &[], at("2026-01-01T00:05:00Z")),
            "timed out"
        );
    }
}
