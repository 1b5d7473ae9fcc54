//! The DaemonSet controller: one pod of the template on every eligible node.
//!
//! A node is eligible when the pod template's `nodeSelector` and required node affinity
//! match it and every `NoSchedule`/`NoExecute` taint on it is tolerated — by the template's
//! tolerations or by the ones every daemon pod gets (as Kubernetes adds them): not-ready and
//! unreachable (`NoExecute`, no time limit), disk/memory/pid pressure and unschedulable
//! (`NoSchedule`), and network-unavailable for host-network pods. `spec.unschedulable`
//! (cordon) is therefore ignored.
//!
//! Pods are pinned to their node the way Kubernetes does since 1.12: the required node
//! affinity becomes the single term `matchFields metadata.name In [node]`, and the scheduler
//! binds them. Each pass plans, as a pure function of nodes, pods and the DaemonSet:
//! create on eligible nodes without a pod, delete pods on ineligible or vanished nodes,
//! failed pods, and duplicates on one node (keeping the oldest); and, with the RollingUpdate
//! strategy, delete old-template pods on as many nodes as `maxUnavailable` allows (nodes
//! whose pod is missing or not yet available use up the budget, so the rollout waits for
//! replacements to become available). OnDelete replaces only pods someone deleted.
//!
//! Pods carry `controller-revision-hash` (a hash of the template) and
//! `pod-template-generation`. Each template is kept as a ControllerRevision `<ds>-<hash>`
//! (revision numbers increase; going back to an old template renumbers its revision, as
//! `kubectl rollout undo` expects); revisions no pod uses beyond `revisionHistoryLimit`
//! (10) are deleted, oldest first.
//!
//! The shared informers do not pass deletions on, so this loop watches node deletions and
//! deletions of daemon pods (label `pod-template-generation`) itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorder};
use crate::objects::{
    controlled_by, controller_of, controller_reference, generate_name_prefix, is_pod_available,
    is_pod_ready, is_terminating, labels, phase, pod_from_template, seconds_until_available,
    PodName,
};
use crate::placement::{term_matches, tolerates};

pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
const COMPONENT: &str = "daemonset-controller";
/// How long a create or delete may stay unseen by the cache before it is assumed lost.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(60);

use skiff_api::constants::{
    TAINT_NODE_DISK_PRESSURE as DISK_PRESSURE, TAINT_NODE_MEMORY_PRESSURE as MEMORY_PRESSURE,
    TAINT_NODE_NETWORK_UNAVAILABLE as NETWORK_UNAVAILABLE, TAINT_NODE_NOT_READY as NOT_READY,
    TAINT_NODE_PID_PRESSURE as PID_PRESSURE, TAINT_NODE_UNREACHABLE as UNREACHABLE,
    TAINT_NODE_UNSCHEDULABLE as UNSCHEDULABLE,
};

pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let daemon_sets = ctx.informers.daemon_sets.reader();
    let state = Arc::new(DaemonSetLoop {
        ctx: ctx.clone(),
        nodes: ctx.informers.nodes.reader(),
        pods: ctx.informers.pods.reader(),
        revisions: ctx.informers.controller_revisions.reader(),
        recorder: ctx.recorder(COMPONENT),
        pending: Mutex::default(),
    });
    let all_for_nodes = daemon_sets.clone();
    let node_cache = ctx.informers.nodes.reader();
    let fingerprints: Mutex<HashMap<String, u64>> = Mutex::default();
    Controller::for_shared_stream(ctx.informers.daemon_sets.subscribe(), daemon_sets)
        .owns_shared_stream(ctx.informers.pods.subscribe())
        .watches_shared_stream(ctx.informers.nodes.subscribe(), move |node: Arc<Node>| {
            // Heartbeats change nodes all the time; only identity, labels and taints matter,
            // and whether the node is still there.
            let gone = node_cache
                .get(&ObjectRef::from_obj(node.as_ref()))
                .is_none();
            let changed = if gone {
                lock(&fingerprints).remove(&node.name_any()).is_some()
            } else {
                let print = node_fingerprint(&node);
                lock(&fingerprints).insert(node.name_any(), print) != Some(print)
            };
            if changed {
                all_refs(&all_for_nodes)
            } else {
                Vec::new()
            }
        })
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(ctx.clock.ticks())
        .run(
            reconcile,
            |ds: Arc<DaemonSet>, error: &Error, state: Arc<DaemonSetLoop>| {
                error_policy(ds, error, state.ctx.clone())
            },
            state,
        )
        .for_each(log_outcome("daemonset"))
        .boxed()
}

fn all_refs(store: &Store<DaemonSet>) -> Vec<ObjectRef<DaemonSet>> {
    store
        .state()
        .iter()
        .map(|ds| ObjectRef::from_obj(ds.as_ref()))
        .collect()
}

fn node_fingerprint(node: &Node) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // The uid too: a node deleted and registered again under its name is a new node.
    node.metadata.uid.hash(&mut h);
    labels(&node.metadata).hash(&mut h);
    if let Some(taints) = node.spec.as_ref().and_then(|s| s.taints.as_ref()) {
        for t in taints {
            (&t.key, &t.value, &t.effect).hash(&mut h);
        }
    }
    h.finish()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct DaemonSetLoop {
    ctx: Arc<Context>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
    /// Per DaemonSet uid: node name → when a create or delete there was sent, until the
    /// cache shows its effect.
    pending: Mutex<HashMap<String, HashMap<String, Pending>>>,
}

#[derive(Debug, Clone)]
enum Pending {
    Create(Instant),
    Delete(String, Instant),
}

// ---------------------------------------------------------------------------------------
// Eligibility

/// The tolerations every daemon pod gets on top of its template's.
pub fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        exists(NOT_READY, "NoExecute"),
        exists(UNREACHABLE, "NoExecute"),
        exists(DISK_PRESSURE, "NoSchedule"),
        exists(MEMORY_PRESSURE, "NoSchedule"),
        exists(PID_PRESSURE, "NoSchedule"),
        exists(UNSCHEDULABLE, "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        out.push(exists(NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    out
}

/// `spec`'s tolerations plus the daemon ones it lacks (same key and effect).
fn with_daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut all = spec.tolerations.clone().unwrap_or_default();
    for t in daemon_tolerations(spec) {
        if !all.iter().any(|o| o.key == t.key && o.effect == t.effect) {
            all.push(t);
        }
    }
    all
}

/// Why a daemon pod of `spec` must not run on `node`, if it must not.
pub fn ineligibility(spec: &PodSpec, node: &Node) -> Option<String> {
    let node_labels = labels(&node.metadata);
    for (k, v) in spec.node_selector.iter().flatten() {
        if node_labels.get(k) != Some(v) {
            return Some(format!("node selector {k}={v} does not match"));
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(required) = required {
        if !required
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, &node.name_any(), labels(&node.metadata)))
        {
            return Some("required node affinity does not match".into());
        }
    }
    let tolerations = with_daemon_tolerations(spec);
    for taint in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
    {
        if !matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute") {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Some(format!(
                "untolerated taint {}{}:{}",
                taint.key,
                taint
                    .value
                    .as_deref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default(),
                taint.effect
            ));
        }
    }
    None
}

/// The node a daemon pod is meant for: its binding, else its `metadata.name` affinity.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|f| {
            let values = f.values.as_deref().unwrap_or_default();
            (f.key == "metadata.name" && f.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

// ---------------------------------------------------------------------------------------
// Templates and hashes

/// The template hash (`controller-revision-hash`): FNV-1a over the template's JSON, spelt
/// with the consonant-and-digit alphabet Kubernetes uses for generated names.
pub fn template_hash(ds: &DaemonSet) -> String {
    let template = ds.spec.as_ref().map(|s| &s.template);
    let bytes = serde_json::to_vec(&template).unwrap_or_default();
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    let mut v = h;
    loop {
        out.push(ALPHABET[(v % ALPHABET.len() as u32) as usize] as char);
        v /= ALPHABET.len() as u32;
        if v == 0 {
            break;
        }
    }
    out
}

/// A daemon pod for `node`.
pub fn daemon_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let ns = ds.namespace().unwrap_or_default();
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = pod_from_template(
        &template,
        &ns,
        PodName::Generate(&generate_name_prefix(&ds.name_any())),
        controller_reference(ds),
    );
    let pod_labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    pod_labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    pod_labels.insert(
        TEMPLATE_GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(0).to_string(),
    );
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.tolerations = Some(with_daemon_tolerations(spec));
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    });
    pod
}

/// What the revision history needs.
#[derive(Debug, Default, PartialEq)]
pub struct RevisionPlan {
    /// A revision to create for the current template.
    pub create: Option<ControllerRevision>,
    /// The current template's existing revision to renumber `(name, revision)`.
    pub renumber: Option<(String, i64)>,
    /// Old revisions to delete.
    pub delete: Vec<String>,
}

fn revision_hash(cr: &ControllerRevision) -> Option<&str> {
    labels(&cr.metadata)
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// The ControllerRevision for the DaemonSet's current template (as Kubernetes stores it:
/// a patch that replaces the template).
pub fn revision_for(ds: &DaemonSet, hash: &str, revision: i64) -> ControllerRevision {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(obj) = template.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    let mut rev_labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    rev_labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(rev_labels),
            owner_references: Some(vec![controller_reference(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(json!({"spec": {"template": template}}))),
        revision,
    }
}

/// Revisions to add, renumber and prune: `revisions` are the DaemonSet's own, `in_use` the
/// template hashes its pods still run.
pub fn plan_revisions(
    ds: &DaemonSet,
    hash: &str,
    revisions: &[&ControllerRevision],
    in_use: &HashSet<String>,
) -> RevisionPlan {
    let mut out = RevisionPlan::default();
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    match revisions.iter().find(|r| revision_hash(r) == Some(hash)) {
        Some(current) if current.revision < max => {
            out.renumber = Some((current.name_any(), max + 1));
        }
        Some(_) => {}
        None => out.create = Some(revision_for(ds, hash, max + 1)),
    }
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut old: Vec<&&ControllerRevision> = revisions
        .iter()
        .filter(|r| revision_hash(r) != Some(hash))
        .filter(|r| revision_hash(r).is_none_or(|h| !in_use.contains(h)))
        .collect();
    old.sort_by_key(|r| r.revision);
    let excess = old.len().saturating_sub(limit);
    out.delete = old.into_iter().take(excess).map(|r| r.name_any()).collect();
    out
}

// ---------------------------------------------------------------------------------------
// The plan

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes to create a pod on.
    pub create_on: Vec<String>,
    /// Pods to delete: (pod name, node it is on or meant for, why).
    pub delete: Vec<(String, String, &'static str)>,
    /// Seconds until a ready pod becomes available (minReadySeconds), if any is waiting.
    pub recheck_in: Option<i64>,
}

fn hash_of(pod: &Pod) -> Option<&str> {
    labels(&pod.metadata)
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn created(pod: &Pod) -> (Option<Timestamp>, String) {
    (
        pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        pod.name_any(),
    )
}

/// Pods of the DaemonSet by the node they are for, oldest first; pods meant for no node at
/// all are under "".
fn by_node<'a>(pods: &[&'a Pod]) -> BTreeMap<String, Vec<&'a Pod>> {
    let mut map: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        map.entry(target_node(pod).unwrap_or_default())
            .or_default()
            .push(pod);
    }
    for list in map.values_mut() {
        list.sort_by_key(|p| created(p));
    }
    map
}

fn max_unavailable(ds: &DaemonSet, desired: i32) -> i32 {
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let value = rolling
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let n = match value {
        IntOrString::Int(n) => n,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((pct * i64::from(desired) + 99) / 100) as i32
        }
    };
    // Both limits zero would never progress; Kubernetes then allows one.
    n.max(1)
}

fn is_rolling(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// What the DaemonSet needs: `pods` are its own (terminating ones included), `pending`
/// nodes have a create or delete in flight (left alone, and counted unavailable).
pub fn plan(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[&Pod],
    hash: &str,
    pending: &HashSet<String>,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = ds.spec.as_ref() else {
        return plan;
    };
    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let grouped = by_node(pods);
    let node_names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();

    // Per node: who should run, and the live pods there.
    let mut unavailable = 0;
    let mut old_unavailable = Vec::new();
    let mut candidates = Vec::new();
    let mut sorted: Vec<&&Node> = nodes.iter().collect();
    sorted.sort_by_key(|n| n.name_any());
    for node in sorted {
        let name = node.name_any();
        let should_run = ineligibility(&template_spec, node).is_none();
        let on_node: &[&Pod] = grouped.get(&name).map(Vec::as_slice).unwrap_or_default();
        let live: Vec<&Pod> = on_node
            .iter()
            .copied()
            .filter(|p| !is_terminating(&p.metadata))
            .collect();
        if pending.contains(&name) {
            if should_run {
                unavailable += 1;
            }
            continue;
        }
        if !should_run {
            for p in &live {
                plan.delete
                    .push((p.name_any(), name.clone(), "node not eligible"));
            }
            continue;
        }
        let (failed, running): (Vec<&Pod>, Vec<&Pod>) =
            live.iter().partition(|p| phase(p) == "Failed");
        for p in &failed {
            plan.delete.push((p.name_any(), name.clone(), "pod failed"));
        }
        if running.is_empty() {
            // A terminating pod must go before its replacement comes.
            if on_node.iter().all(|p| !is_terminating(&p.metadata)) || on_node.is_empty() {
                plan.create_on.push(name.clone());
            }
            unavailable += 1;
            continue;
        }
        for p in &running[1..] {
            plan.delete
                .push((p.name_any(), name.clone(), "duplicate on node"));
        }
        let pod = running[0];
        let available = is_pod_available(pod, min_ready, now);
        if is_pod_ready(pod) && !available {
            let wait = seconds_until_available(pod, min_ready, now);
            plan.recheck_in = Some(plan.recheck_in.map_or(wait, |w: i64| w.min(wait)));
        }
        if running.len() > 1 {
            unavailable += 1;
            continue;
        }
        if hash_of(pod) == Some(hash) {
            if !available {
                unavailable += 1;
            }
        } else if !available {
            old_unavailable.push((pod.name_any(), name.clone()));
            unavailable += 1;
        } else {
            candidates.push((pod.name_any(), name.clone()));
        }
    }
    // Pods for nodes that are gone (or for no node at all).
    for (node, list) in &grouped {
        if !node_names.contains(node) {
            for p in list.iter().filter(|p| !is_terminating(&p.metadata)) {
                plan.delete.push((p.name_any(), node.clone(), "node gone"));
            }
        }
    }
    if is_rolling(ds) {
        let desired = nodes
            .iter()
            .filter(|n| ineligibility(&template_spec, n).is_none())
            .count() as i32;
        let budget = (max_unavailable(ds, desired) - unavailable).max(0) as usize;
        for (pod, node) in old_unavailable {
            plan.delete.push((pod, node, "rolling update"));
        }
        for (pod, node) in candidates.into_iter().take(budget) {
            plan.delete.push((pod, node, "rolling update"));
        }
    }
    plan
}

/// The status the DaemonSet reports.
pub fn status(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[&Pod],
    hash: &str,
    now: Timestamp,
) -> DaemonSetStatus {
    let spec = ds.spec.as_ref();
    let template_spec = spec
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let grouped = by_node(pods);
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        ..Default::default()
    };
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let should_run = ineligibility(&template_spec, node).is_none();
        let live: Vec<&Pod> = grouped
            .get(&node.name_any())
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| !is_terminating(&p.metadata))
            .collect();
        if should_run {
            st.desired_number_scheduled += 1;
        }
        let Some(pod) = live.first() else {
            continue;
        };
        if !should_run {
            st.number_misscheduled += 1;
            continue;
        }
        st.current_number_scheduled += 1;
        if is_pod_ready(pod) {
            ready += 1;
        }
        if is_pod_available(pod, min_ready, now) {
            available += 1;
        }
        if hash_of(pod) == Some(hash) {
            updated += 1;
        }
    }
    st.number_ready = ready;
    st.number_available = Some(available);
    st.updated_number_scheduled = Some(updated);
    st.number_unavailable = Some(st.desired_number_scheduled - available);
    st
}

// ---------------------------------------------------------------------------------------
// The reconcile glue

async fn reconcile(ds: Arc<DaemonSet>, st: Arc<DaemonSetLoop>) -> Result<Action> {
    let ctx = &st.ctx;
    let key = object_key(ds.as_ref());
    let ns = ds.namespace().unwrap_or_default();
    let Some(uid) = ds.uid() else {
        return Ok(Action::await_change());
    };
    if is_terminating(&ds.metadata) {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let hash = template_hash(&ds);

    let all_nodes = st.nodes.state();
    let nodes: Vec<&Node> = all_nodes.iter().map(|n| n.as_ref()).collect();
    let all_pods = st.pods.state();
    let pods: Vec<&Pod> = controlled_by(&all_pods, &ns, &uid);

    // Forget in-flight work the cache now shows.
    let pending: HashSet<String> = {
        let mut all = lock(&st.pending);
        let mine = all.entry(uid.clone()).or_default();
        mine.retain(|node, p| match p {
            Pending::Create(at) => {
                at.elapsed() < EXPECTATION_TIMEOUT
                    && !pods
                        .iter()
                        .any(|pod| target_node(pod).as_deref() == Some(node.as_str()))
            }
            Pending::Delete(pod_name, at) => {
                at.elapsed() < EXPECTATION_TIMEOUT
                    && pods
                        .iter()
                        .any(|pod| &pod.name_any() == pod_name && !is_terminating(&pod.metadata))
            }
        });
        mine.keys().cloned().collect()
    };

    sync_revisions(&st, &ds, &uid, &hash, &pods).await?;
    let plan = plan(&ds, &nodes, &pods, &hash, &pending, now);
    for (pod_name, node, why) in &plan.delete {
        match pod_api.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                lock(&st.pending).entry(uid.clone()).or_default().insert(
                    node.clone(),
                    Pending::Delete(pod_name.clone(), Instant::now()),
                );
                tracing::debug!(daemonset = key, pod = pod_name, node, why, "deleted");
                st.recorder
                    .publish(
                        ds.as_ref(),
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod_name}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::api("delete", format!("pod {ns}/{pod_name}"), e)),
        }
    }
    for node in &plan.create_on {
        let pod = daemon_pod(&ds, node, &hash);
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(made) => {
                lock(&st.pending)
                    .entry(uid.clone())
                    .or_default()
                    .insert(node.clone(), Pending::Create(Instant::now()));
                st.recorder
                    .publish(
                        ds.as_ref(),
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", made.name_any()),
                    )
                    .await;
            }
            Err(e) => {
                st.recorder
                    .publish(
                        ds.as_ref(),
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    )
                    .await;
                return Err(Error::api(
                    "create",
                    format!("pod for daemonset {key} on node {node}"),
                    e,
                ));
            }
        }
    }

    let new_status = status(&ds, &nodes, &pods, &hash, now);
    if ds.status.as_ref() != Some(&new_status) {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({ "status": new_status });
        api.patch_status(
            &ds.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| Error::api("update status of", format!("daemonset {key}"), e))?;
    }
    ctx.succeeded(&key);
    let in_flight = !plan.create_on.is_empty() || !plan.delete.is_empty() || !pending.is_empty();
    Ok(match plan.recheck_in {
        Some(s) => Action::requeue(Duration::from_secs(s.max(1) as u64)),
        // Deletions of unbound pods are seen through our own watch; this is a safety net
        // against a lost event while work is in flight.
        None if in_flight => Action::requeue(Duration::from_secs(5)),
        None => Action::await_change(),
    })
}

async fn sync_revisions(
    st: &DaemonSetLoop,
    ds: &DaemonSet,
    uid: &str,
    hash: &str,
    pods: &[&Pod],
) -> Result<()> {
    let ns = ds.namespace().unwrap_or_default();
    let all = st.revisions.state();
    let mine: Vec<&ControllerRevision> = all
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let in_use: HashSet<String> = pods
        .iter()
        .filter_map(|p| hash_of(p).map(String::from))
        .collect();
    let todo = plan_revisions(ds, hash, &mine, &in_use);
    let api: Api<ControllerRevision> = Api::namespaced(st.ctx.client.clone(), &ns);
    if let Some(cr) = &todo.create {
        match api.create(&PostParams::default(), cr).await {
            Ok(_) => {}
            // Written by an earlier pass the cache has not shown yet.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return Err(Error::api(
                    "create",
                    format!("controllerrevision {ns}/{}", cr.name_any()),
                    e,
                ))
            }
        }
    }
    if let Some((name, revision)) = &todo.renumber {
        let patch = json!({"revision": revision});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::api("renumber", format!("controllerrevision {ns}/{name}"), e))?;
    }
    for name in &todo.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(Error::api(
                    "delete",
                    format!("controllerrevision {ns}/{name}"),
                    e,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::Taint;
    use k8s_openapi::api::core::v1::{NodeSpec, PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const T0: &str = "2026-03-01T10:00:00Z";

    fn node(name: &str, node_labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    node_labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn ds(spec: PodSpec) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("default".into()),
                uid: Some("ds-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(spec),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    /// A daemon pod on `node` with template hash `hash`, created at second `age`.
    fn pod(name: &str, node: &str, hash: &str, age: i64, ready: bool) -> Pod {
        let d = ds(PodSpec::default());
        let mut p = daemon_pod(&d, node, hash);
        p.metadata.name = Some(name.into());
        p.metadata.creation_timestamp = Some(Time(
            at(T0)
                .checked_add(jiff::SignedDuration::from_secs(age))
                .unwrap(),
        ));
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: ready.then(|| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at(T0))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        p
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.delete.iter().map(|d| d.0.as_str()).collect()
    }

    #[test]
    fn eligibility_by_selector_affinity_and_taints() {
        let plain = node("a", &[("disk", "ssd"), ("zone", "1")], &[]);
        let spec = PodSpec {
            node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(ineligibility(&spec, &plain), None);
        let hdd = node("b", &[("disk", "hdd")], &[]);
        assert_eq!(
            ineligibility(&spec, &hdd).as_deref(),
            Some("node selector disk=ssd does not match")
        );

        let affinity: PodSpec =
            serde_json::from_value(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["2"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["0"]},
                                      {"key": "gpu", "operator": "DoesNotExist"}]}
            ]}}}}))
            .unwrap();
        assert_eq!(ineligibility(&affinity, &plain), None);
        let gpu = node("c", &[("zone", "1"), ("gpu", "yes")], &[]);
        assert_eq!(
            ineligibility(&affinity, &gpu).as_deref(),
            Some("required node affinity does not match")
        );

        let tainted = node("d", &[], &[("dedicated", "NoSchedule")]);
        assert_eq!(
            ineligibility(&PodSpec::default(), &tainted).as_deref(),
            Some("untolerated taint dedicated:NoSchedule")
        );
        let tolerant: PodSpec = serde_json::from_value(json!({"containers": [],
            "tolerations": [{"key": "dedicated", "operator": "Exists"}]}))
        .unwrap();
        assert_eq!(ineligibility(&tolerant, &tainted), None);
        // PreferNoSchedule never excludes.
        let soft = node("e", &[], &[("x", "PreferNoSchedule")]);
        assert_eq!(ineligibility(&PodSpec::default(), &soft), None);
    }

    #[test]
    fn cordoned_not_ready_and_pressured_nodes_still_run_daemons() {
        for taint in [
            (UNSCHEDULABLE, "NoSchedule"),
            (NOT_READY, "NoExecute"),
            (UNREACHABLE, "NoExecute"),
            (DISK_PRESSURE, "NoSchedule"),
            (MEMORY_PRESSURE, "NoSchedule"),
            (PID_PRESSURE, "NoSchedule"),
        ] {
            let n = node("a", &[], &[taint]);
            assert_eq!(ineligibility(&PodSpec::default(), &n), None, "{taint:?}");
        }
        let n = node("a", &[], &[(NETWORK_UNAVAILABLE, "NoSchedule")]);
        assert!(ineligibility(&PodSpec::default(), &n).is_some());
        let host = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        assert_eq!(ineligibility(&host, &n), None);
        let mut cordoned = node("a", &[], &[]);
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        assert_eq!(ineligibility(&PodSpec::default(), &cordoned), None);
    }

    #[test]
    fn daemon_pods_are_pinned_by_affinity_and_tolerate_node_conditions() {
        let d = ds(serde_json::from_value(json!({"containers": [],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 60}]}))
        .unwrap());
        let p = daemon_pod(&d, "n1", "h1");
        assert_eq!(target_node(&p).as_deref(), Some("n1"));
        assert_eq!(labels(&p.metadata)[REVISION_HASH_LABEL], "h1");
        assert_eq!(labels(&p.metadata)[TEMPLATE_GENERATION_LABEL], "1");
        let tolerations = p.spec.as_ref().unwrap().tolerations.clone().unwrap();
        // The template's own unreachable toleration (with its seconds) is kept, not doubled.
        let unreachable: Vec<_> = tolerations
            .iter()
            .filter(|t| t.key.as_deref() == Some(UNREACHABLE))
            .collect();
        assert_eq!(unreachable.len(), 1);
        assert_eq!(unreachable[0].toleration_seconds, Some(60));
        assert!(tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some(UNSCHEDULABLE)));
        assert_eq!(
            p.metadata.owner_references.as_ref().unwrap()[0].kind,
            "DaemonSet"
        );
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let d = ds(PodSpec {
            node_selector: Some([("role".to_string(), "worker".to_string())].into()),
            ..Default::default()
        });
        let n1 = node("n1", &[("role", "worker")], &[]);
        let n2 = node("n2", &[("role", "worker")], &[]);
        let n3 = node("n3", &[("role", "db")], &[]);
        let on_n1 = pod("p1", "n1", "h", 0, true);
        let on_n3 = pod("p3", "n3", "h", 0, true);
        let on_gone = pod("pg", "gone", "h", 0, true);
        let dup_old = pod("d-old", "n2", "h", 0, true);
        let dup_new = pod("d-new", "n2", "h", 5, true);
        let plan_ = plan(
            &d,
            &[&n1, &n2, &n3],
            &[&on_n1, &on_n3, &on_gone, &dup_new, &dup_old],
            "h",
            &HashSet::new(),
            at(T0),
        );
        assert_eq!(plan_.create_on, Vec::<String>::new());
        let mut deleted = names(&plan_);
        deleted.sort();
        assert_eq!(deleted, ["d-new", "p3", "pg"]);

        let plan_ = plan(
            &d,
            &[&n1, &n2, &n3],
            &[&on_n1],
            "h",
            &HashSet::new(),
            at(T0),
        );
        assert_eq!(plan_.create_on, ["n2"]);
        // In-flight work on a node is left alone.
        let pending: HashSet<String> = ["n2".to_string()].into();
        let plan_ = plan(&d, &[&n1, &n2, &n3], &[&on_n1], "h", &pending, at(T0));
        assert!(plan_.create_on.is_empty());
        // A terminating pod goes before its replacement comes.
        let mut leaving = pod("l", "n2", "h", 0, true);
        leaving.metadata.deletion_timestamp = Some(Time(at(T0)));
        let plan_ = plan(&d, &[&n2], &[&leaving], "h", &HashSet::new(), at(T0));
        assert!(plan_.create_on.is_empty() && plan_.delete.is_empty());
        // Failed pods are replaced.
        let mut failed = pod("f", "n2", "h", 0, false);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let plan_ = plan(&d, &[&n2], &[&failed], "h", &HashSet::new(), at(T0));
        assert_eq!(names(&plan_), ["f"]);
        assert_eq!(plan_.create_on, ["n2"]);
    }

    #[test]
    fn rolling_update_replaces_within_max_unavailable_and_waits_for_availability() {
        let d = ds(PodSpec::default());
        let nodes = [
            node("n1", &[], &[]),
            node("n2", &[], &[]),
            node("n3", &[], &[]),
        ];
        let nodes: Vec<&Node> = nodes.iter().collect();
        let none = HashSet::new();
        let old: Vec<Pod> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| pod(&format!("old-{n}"), n, "old", 0, true))
            .collect();
        let refs: Vec<&Pod> = old.iter().collect();
        let p = plan(&d, &nodes, &refs, "new", &none, at(T0));
        assert_eq!(names(&p), ["old-n1"]);
        // n1 replaced but not ready yet: nothing more.
        let new_n1 = pod("new-n1", "n1", "new", 10, false);
        let refs = vec![&new_n1, &old[1], &old[2]];
        assert!(plan(&d, &nodes, &refs, "new", &none, at(T0))
            .delete
            .is_empty());
        // Ready: the next node.
        let new_n1 = pod("new-n1", "n1", "new", 10, true);
        let refs = vec![&new_n1, &old[1], &old[2]];
        assert_eq!(
            names(&plan(&d, &nodes, &refs, "new", &none, at(T0))),
            ["old-n2"]
        );
        // An old pod that is not available is replaced at once, and uses up the budget.
        let sick = pod("sick-n3", "n3", "old", 0, false);
        let refs = vec![&new_n1, &old[1], &sick];
        assert_eq!(
            names(&plan(&d, &nodes, &refs, "new", &none, at(T0))),
            ["sick-n3"]
        );
        // maxUnavailable 50% of 3 nodes, rounded up: 2.
        let mut wide = d.clone();
        wide.spec.as_mut().unwrap().update_strategy = Some(
            serde_json::from_value(
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}),
            )
            .unwrap(),
        );
        let refs: Vec<&Pod> = old.iter().collect();
        assert_eq!(
            names(&plan(&wide, &nodes, &refs, "new", &none, at(T0))),
            ["old-n1", "old-n2"]
        );
        // OnDelete: nothing is replaced until someone deletes it.
        let mut on_delete = d.clone();
        on_delete.spec.as_mut().unwrap().update_strategy =
            Some(serde_json::from_value(json!({"type": "OnDelete"})).unwrap());
        assert!(plan(&on_delete, &nodes, &refs, "new", &none, at(T0))
            .delete
            .is_empty());
    }

    #[test]
    fn status_counts_nodes() {
        let d = ds(PodSpec {
            node_selector: Some([("role".to_string(), "worker".to_string())].into()),
            ..Default::default()
        });
        let n1 = node("n1", &[("role", "worker")], &[]);
        let n2 = node("n2", &[("role", "worker")], &[]);
        let n3 = node("n3", &[], &[]);
        let a = pod("a", "n1", "h", 0, true);
        let b = pod("b", "n2", "old", 0, false);
        let c = pod("c", "n3", "h", 0, true);
        let s = status(&d, &[&n1, &n2, &n3], &[&a, &b, &c], "h", at(T0));
        assert_eq!(s.desired_number_scheduled, 2);
        assert_eq!(s.current_number_scheduled, 2);
        assert_eq!(s.number_misscheduled, 1);
        assert_eq!(s.number_ready, 1);
        assert_eq!(s.number_available, Some(1));
        assert_eq!(s.number_unavailable, Some(1));
        assert_eq!(s.updated_number_scheduled, Some(1));
        assert_eq!(s.observed_generation, Some(1));
    }

    #[test]
    fn template_hash_changes_with_the_template_only() {
        let a = ds(PodSpec::default());
        let mut b = a.clone();
        b.metadata.generation = Some(7);
        assert_eq!(template_hash(&a), template_hash(&b));
        let c = ds(PodSpec {
            host_network: Some(true),
            ..Default::default()
        });
        assert_ne!(template_hash(&a), template_hash(&c));
    }
    #[test]
    fn revisions_record_templates_and_prune_unused_history() {
        let mut d = ds(PodSpec::default());
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let rev = |hash: &str, n: i64| revision_for(&d, hash, n);
        let none = HashSet::new();
        // First template: revision 1.
        let p = plan_revisions(&d, "a", &[], &none);
        let created = p.create.unwrap();
        assert_eq!(
            (created.name_any(), created.revision),
            ("agent-a".to_string(), 1)
        );
        assert_eq!(
            created.data.unwrap().0["spec"]["template"]["$patch"],
            json!("replace")
        );
        // A new template: revision 3 after 1 and 2; one unused old one is kept.
        let (r1, r2) = (rev("a", 1), rev("b", 2));
        let p = plan_revisions(&d, "c", &[&r1, &r2], &none);
        assert_eq!(p.create.unwrap().revision, 3);
        assert_eq!(p.delete, ["agent-a"]);
        // Old revisions still run by pods stay.
        let used: HashSet<String> = ["a".to_string()].into();
        assert!(plan_revisions(&d, "c", &[&r1, &r2], &used)
            .delete
            .is_empty());
        // Going back to an old template renumbers it.
        let p = plan_revisions(&d, "a", &[&r1, &r2], &none);
        assert_eq!(p.renumber, Some(("agent-a".to_string(), 3)));
        assert!(p.create.is_none());
    }
}
