//! Node lifecycle: notices nodes whose daemon went silent, taints nodes by their conditions,
//! and evicts pods from nodes with `NoExecute` taints they do not tolerate (Kubernetes' node
//! lifecycle controller and taint-eviction controller).
//!
//! - Health: a node daemon renews its Lease `kube-node-lease/<node>` every 10 s and posts its
//!   conditions (`Ready`, `MemoryPressure`, `DiskPressure`, `PIDPressure`) every minute. Its
//!   last sign of life is the newest of the Lease's `renewTime` and the `Ready` condition's
//!   `lastHeartbeatTime` (the Node's creation for a daemon that never posted). When that is
//!   older than `node_monitor_grace_period` (40 s) the four conditions become `Unknown`
//!   (`NodeStatusUnknown`, "Kubelet stopped posting node status."), the node gets a
//!   `NodeNotReady` event and its pods are marked not ready (so Services stop sending them
//!   traffic). The daemon's next status post sets them back.
//! - Taints follow the conditions: `Ready=False` → `node.kubernetes.io/not-ready`,
//!   `Ready=Unknown` → `node.kubernetes.io/unreachable` (both `NoSchedule` and `NoExecute`,
//!   with `timeAdded`); `MemoryPressure`/`DiskPressure`/`PIDPressure=True` → the matching
//!   `NoSchedule` taint. They go away when the condition clears. Other taints are left alone,
//!   except that a `NoExecute` taint without `timeAdded` gets one (eviction times count
//!   from it).
//! - Eviction: a pod on a node with a `NoExecute` taint it does not tolerate is deleted at
//!   once; one that tolerates it with `tolerationSeconds` is deleted when `timeAdded` plus
//!   that many seconds has passed. Kubernetes' DefaultTolerationSeconds admission gives every
//!   pod 300 s tolerations for `not-ready` and `unreachable`; skiff's admission does not add
//!   them, so a pod without a toleration for those two taints is treated as tolerating them
//!   for `default_unreachable_toleration` (300 s). Deleted pods get a `TaintManagerEviction`
//!   event; their controllers replace them.
//!
//! All decisions are pure functions of the objects and `now` ([`plan_health`],
//! [`plan_taints`], [`pods_to_mark_not_ready`], [`plan_evictions`]); each reconcile of a node
//! requeues itself at the next instant something can change (a heartbeat going stale, a
//! toleration running out), and the fake clock's ticks re-run every node in tests.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorder};
use crate::objects::delete_exactly;
use crate::objects::is_terminating;
pub use crate::placement::tolerates;

pub use skiff_api::constants::{
    TAINT_NODE_DISK_PRESSURE as TAINT_DISK_PRESSURE,
    TAINT_NODE_MEMORY_PRESSURE as TAINT_MEMORY_PRESSURE, TAINT_NODE_NOT_READY as TAINT_NOT_READY,
    TAINT_NODE_PID_PRESSURE as TAINT_PID_PRESSURE, TAINT_NODE_UNREACHABLE as TAINT_UNREACHABLE,
};
pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";

/// The conditions a silent node's are set to `Unknown`.
pub const NODE_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The taints this loop owns: (key, effect).
const MANAGED_TAINTS: [(&str, &str); 7] = [
    (TAINT_NOT_READY, NO_SCHEDULE),
    (TAINT_NOT_READY, NO_EXECUTE),
    (TAINT_UNREACHABLE, NO_SCHEDULE),
    (TAINT_UNREACHABLE, NO_EXECUTE),
    (TAINT_MEMORY_PRESSURE, NO_SCHEDULE),
    (TAINT_DISK_PRESSURE, NO_SCHEDULE),
    (TAINT_PID_PRESSURE, NO_SCHEDULE),
];

/// Requeues are this much after a deadline, so the deadline has surely passed.
const DEADLINE_SLACK: Duration = Duration::from_millis(100);

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

fn plus_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.saturating_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX)
}

fn conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    conditions(node).iter().find(|c| c.type_ == kind)
}

/// The `Ready` condition's status (`True`, `False`, `Unknown`), if the node has one.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// When the node's daemon last said it is alive, and whether it ever did (else this is the
/// Node's creation).
pub fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> (Option<Timestamp>, bool) {
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let posted = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    match renewed.max(posted) {
        Some(t) => (Some(t), true),
        None => (
            node.metadata.creation_timestamp.as_ref().map(|t| t.0),
            false,
        ),
    }
}

/// What the health check decided for one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthPlan {
    /// The node's new conditions when they must change (the node went silent).
    pub conditions: Option<Vec<NodeCondition>>,
    /// When the node goes silent if nothing is heard from it before.
    pub stale_at: Option<Timestamp>,
}

/// The conditions of a node whose daemon has been silent longer than `grace` at `now`.
pub fn plan_health(
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
    grace: Duration,
) -> HealthPlan {
    let (heard, ever) = last_heartbeat(node, lease);
    let Some(heard) = heard else {
        return HealthPlan::default();
    };
    let stale_at = plus(heard, grace);
    if now <= stale_at {
        return HealthPlan {
            conditions: None,
            stale_at: Some(stale_at),
        };
    }
    let mut out: Vec<NodeCondition> = conditions(node).to_vec();
    let mut changed = false;
    for kind in NODE_CONDITIONS {
        match out.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                out.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some(if ever {
                        "NodeStatusUnknown".into()
                    } else {
                        "NodeStatusNeverUpdated".into()
                    }),
                    message: Some(if ever {
                        "Kubelet stopped posting node status.".into()
                    } else {
                        "Kubelet never posted node status.".into()
                    }),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    HealthPlan {
        conditions: changed.then_some(out),
        stale_at: None,
    }
}

/// The taints (key, effect) the node's conditions call for.
pub fn condition_taints(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    match ready_status(node) {
        Some("False") => out.extend([
            (TAINT_NOT_READY, NO_SCHEDULE),
            (TAINT_NOT_READY, NO_EXECUTE),
        ]),
        Some("Unknown") => out.extend([
            (TAINT_UNREACHABLE, NO_SCHEDULE),
            (TAINT_UNREACHABLE, NO_EXECUTE),
        ]),
        _ => {}
    }
    for (kind, key) in [
        ("MemoryPressure", TAINT_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_DISK_PRESSURE),
        ("PIDPressure", TAINT_PID_PRESSURE),
    ] {
        if condition(node, kind).is_some_and(|c| c.status == "True") {
            out.push((key, NO_SCHEDULE));
        }
    }
    out
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// The node's taints as its conditions want them (managed taints added with `timeAdded`
/// `now` or removed, `NoExecute` taints stamped with `now` when they have no `timeAdded`),
/// or `None` when they already are.
pub fn plan_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let want = condition_taints(node);
    let current = taints(node);
    let mut out: Vec<Taint> = Vec::with_capacity(current.len() + want.len());
    let mut changed = false;
    for t in current {
        let managed = MANAGED_TAINTS
            .iter()
            .any(|(k, e)| t.key == *k && t.effect == *e);
        if managed && !want.iter().any(|(k, e)| t.key == *k && t.effect == *e) {
            changed = true;
            continue;
        }
        let mut t = t.clone();
        if t.effect == NO_EXECUTE && t.time_added.is_none() {
            t.time_added = Some(Time(now));
            changed = true;
        }
        out.push(t);
    }
    for (key, effect) in want {
        if !current.iter().any(|t| t.key == key && t.effect == effect) {
            out.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: Some(Time(now)),
            });
            changed = true;
        }
    }
    changed.then_some(out)
}

/// When `pod` must leave a node with `taints`: `None` when it tolerates them for ever,
/// `Timestamp::MIN` when it does not tolerate one at all. Pods without a toleration for
/// `not-ready`/`unreachable` tolerate them for `default_toleration` (what Kubernetes'
/// DefaultTolerationSeconds admission would have given them).
pub fn eviction_deadline(
    pod: &Pod,
    taints: &[Taint],
    now: Timestamp,
    default_toleration: Duration,
) -> Option<Timestamp> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let seconds = if matching.is_empty() {
            if taint.key == TAINT_NOT_READY || taint.key == TAINT_UNREACHABLE {
                Some(i64::try_from(default_toleration.as_secs()).unwrap_or(i64::MAX))
            } else {
                return Some(Timestamp::MIN);
            }
        } else {
            // The shortest limit among the tolerations that match; none limited: for ever.
            matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .min()
                .map(|s| s.max(0))
        };
        if let Some(seconds) = seconds {
            let at = plus_secs(added, seconds);
            deadline = Some(deadline.map_or(at, |d: Timestamp| d.min(at)));
        }
    }
    deadline
}

/// Whether the pods of `node` need looking at: it is not ready or has `NoExecute` taints.
pub fn needs_pod_attention(node: &Node) -> bool {
    ready_status(node).is_some_and(|s| s != "True")
        || taints(node).iter().any(|t| t.effect == NO_EXECUTE)
}

/// Which pods to evict now and when the next one is due.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EvictionPlan {
    /// (namespace, name, uid) of the pods to delete now.
    pub evict: Vec<(String, String, String)>,
    pub next: Option<Timestamp>,
}

/// The evictions `taints` call for among `pods` (the pods bound to the node) at `now`.
pub fn plan_evictions(
    taints: &[Taint],
    pods: &[Arc<Pod>],
    now: Timestamp,
    default_toleration: Duration,
) -> EvictionPlan {
    let mut plan = EvictionPlan::default();
    if !taints.iter().any(|t| t.effect == NO_EXECUTE) {
        return plan;
    }
    for pod in pods.iter().filter(|p| !is_terminating(&p.metadata)) {
        match eviction_deadline(pod, taints, now, default_toleration) {
            Some(at) if at <= now => plan.evict.push((
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                pod.uid().unwrap_or_default(),
            )),
            Some(at) => plan.next = Some(plan.next.map_or(at, |n: Timestamp| n.min(at))),
            None => {}
        }
    }
    plan
}

/// The pods of a node whose `Ready` is not `True` that still say they are ready, with the
/// conditions they get (`Ready=False` since `now`).
pub fn pods_to_mark_not_ready(
    node: &Node,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> Vec<(Arc<Pod>, Vec<PodCondition>)> {
    if ready_status(node).is_none_or(|s| s == "True") {
        return Vec::new();
    }
    pods.iter()
        .filter(|p| !is_terminating(&p.metadata))
        .filter_map(|p| {
            let conditions = p.status.as_ref()?.conditions.as_ref()?;
            if !conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                return None;
            }
            let updated = conditions
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    if c.type_ == "Ready" {
                        c.status = "False".into();
                        c.last_transition_time = Some(Time(now));
                    }
                    c
                })
                .collect();
            Some((p.clone(), updated))
        })
        .collect()
}

struct NodeLifecycle {
    ctx: Arc<Context>,
    node_events: Recorder,
    eviction_events: Recorder,
}

pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let nodes = ctx.informers.nodes.subscribe();
    let node_reader = ctx.informers.nodes.reader();
    let pod_node_reader = node_reader.clone();
    let leases = ctx.informers.leases.subscribe();
    let pods = ctx.informers.pods.subscribe();
    // Readers for the reconciler; taken now so the informers know they are used.
    let _ = ctx.informers.leases.reader();
    let _ = ctx.informers.pods.reader();
    let state = Arc::new(NodeLifecycle {
        ctx: ctx.clone(),
        node_events: ctx.recorder("node-controller"),
        eviction_events: ctx.recorder("taint-eviction-controller"),
    });
    Controller::for_shared_stream(nodes, node_reader)
        .watches_shared_stream(leases, |lease: Arc<Lease>| {
            (lease.namespace().as_deref() == Some(skiff_api::constants::NODE_LEASE_NAMESPACE))
                .then(|| ObjectRef::<Node>::new(&lease.name_any()))
        })
        .watches_shared_stream(pods, move |pod: Arc<Pod>| {
            // Pods only matter on nodes that are not ready or have NoExecute taints; pod
            // churn on healthy nodes (nearly all of it) reconciles nothing.
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty())
                .map(ObjectRef::<Node>::new)?;
            pod_node_reader
                .get(&node)
                .is_some_and(|n| needs_pod_attention(&n))
                .then_some(node)
        })
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(ctx.clock.ticks())
        .run(
            reconcile,
            |node, error, state: Arc<NodeLifecycle>| error_policy(node, error, state.ctx.clone()),
            state,
        )
        .for_each(log_outcome("nodelifecycle"))
        .boxed()
}

async fn reconcile(node: Arc<Node>, state: Arc<NodeLifecycle>) -> Result<Action> {
    let ctx = &state.ctx;
    let now = ctx.clock.now();
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let lease =
        ctx.informers.leases.reader().get(
            &ObjectRef::<Lease>::new(&name).within(skiff_api::constants::NODE_LEASE_NAMESPACE),
        );
    let mut node: Node = (*node).clone();
    let mut next: Option<Timestamp> = None;

    let health = plan_health(
        &node,
        lease.as_deref(),
        now,
        ctx.config.node_monitor_grace_period,
    );
    next = earliest(next, health.stale_at);
    if let Some(conditions) = health.conditions {
        let was_ready = ready_status(&node) == Some("True");
        node.status.get_or_insert_with(Default::default).conditions = Some(conditions);
        node = nodes
            .replace_status(&name, &PostParams::default(), &node)
            .await
            .map_err(|e| Error::api("update status of", format!("node {name}"), e))?;
        tracing::info!(node = %name, "node stopped posting status; conditions now Unknown");
        if was_ready {
            state
                .node_events
                .publish(
                    &node,
                    EventType::Normal,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
        }
    }

    if let Some(new_taints) = plan_taints(&node, now) {
        let added: Vec<String> = new_taints
            .iter()
            .filter(|t| !taints(&node).contains(t))
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        node.spec.get_or_insert_with(Default::default).taints = Some(new_taints);
        node = nodes
            .replace(&name, &PostParams::default(), &node)
            .await
            .map_err(|e| Error::api("update taints of", format!("node {name}"), e))?;
        tracing::info!(node = %name, ?added, "node taints updated");
    }

    let pods: Vec<Arc<Pod>> = ctx.informers.pods.reader().state_filter(|pod: &Pod| {
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
    });
    mark_pods_not_ready(&state, &node, &pods, now).await?;

    let plan = plan_evictions(
        taints(&node),
        &pods,
        now,
        ctx.config.default_unreachable_toleration,
    );
    next = earliest(next, plan.next);
    for (ns, pod_name, uid) in plan.evict {
        evict(&state, &ns, &pod_name, &uid).await?;
    }

    ctx.succeeded(&object_key(&node));
    Ok(match next {
        Some(at) => Action::requeue(until(now, at) + DEADLINE_SLACK),
        None => Action::await_change(),
    })
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(now.duration_until(at)).unwrap_or(Duration::ZERO)
}

async fn mark_pods_not_ready(
    state: &NodeLifecycle,
    node: &Node,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> Result<()> {
    for (pod, conditions) in pods_to_mark_not_ready(node, pods, now) {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
        let mut updated = (*pod).clone();
        if let Some(status) = updated.status.as_mut() {
            status.conditions = Some(conditions);
        }
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(p) => {
                state
                    .node_events
                    .publish(&p, EventType::Warning, "NodeNotReady", "Node is not ready")
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(Error::api(
                    "mark not ready",
                    format!("pod {ns}/{name} on node {}", node.name_any()),
                    e,
                ))
            }
        }
    }
    Ok(())
}

async fn evict(state: &NodeLifecycle, ns: &str, name: &str, uid: &str) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), ns);
    // Only this pod: a replacement under the same name (StatefulSet) stays.
    let params = delete_exactly(Some(uid));
    match api.delete(name, &params).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), "evicted from a tainted node");
            let involved = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                uid: Some(uid.to_string()),
                ..Default::default()
            };
            state
                .eviction_events
                .publish_ref(
                    involved,
                    EventType::Normal,
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {ns}/{name}"),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(Error::api("evict", format!("pod {ns}/{name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const GRACE: Duration = Duration::from_secs(40);
    const DEFAULT: Duration = Duration::from_secs(300);

    fn node(ready: &str, heartbeat: &str, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "creationTimestamp": "2025-12-31T00:00:00Z"},
            "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat},
                {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": heartbeat},
                {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": heartbeat},
                {"type": "Ready", "status": ready, "reason": "KubeletReady",
                 "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat},
            ]}
        }))
        .unwrap()
    }

    fn lease(renewed: &str) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(at(renewed))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, tolerations: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "tolerations": tolerations},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"}
                ]}
            }))
            .unwrap(),
        )
    }

    fn taint(key: &str, effect: &str, added: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: Some(Time(at(added))),
        }
    }

    #[test]
    fn heartbeat_is_the_newest_of_lease_and_status() {
        let n = node("True", T0, json!([]));
        assert_eq!(last_heartbeat(&n, None), (Some(at(T0)), true));
        let l = lease("2026-01-01T00:00:30Z");
        assert_eq!(
            last_heartbeat(&n, Some(&l)),
            (Some(at("2026-01-01T00:00:30Z")), true)
        );
        let old = lease("2025-12-31T23:00:00Z");
        assert_eq!(last_heartbeat(&n, Some(&old)), (Some(at(T0)), true));
        let silent: Node =
            serde_json::from_value(json!({"metadata": {"name": "n", "creationTimestamp": T0}}))
                .unwrap();
        assert_eq!(last_heartbeat(&silent, None), (Some(at(T0)), false));
    }

    #[test]
    fn a_node_silent_past_the_grace_period_becomes_unknown() {
        let n = node("True", T0, json!([]));
        let l = lease(T0);
        // Fresh: nothing changes; the check is due when the grace period ends.
        let plan = plan_health(&n, Some(&l), at("2026-01-01T00:00:40Z"), GRACE);
        assert_eq!(plan.conditions, None);
        assert_eq!(plan.stale_at, Some(at("2026-01-01T00:00:40Z")));

        let now = at("2026-01-01T00:00:41Z");
        let plan = plan_health(&n, Some(&l), now, GRACE);
        let conds = plan.conditions.expect("conditions change");
        assert_eq!(conds.len(), 4);
        for c in &conds {
            assert_eq!(c.status, "Unknown", "{}", c.type_);
            assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
            assert_eq!(
                c.message.as_deref(),
                Some("Kubelet stopped posting node status.")
            );
            assert_eq!(c.last_transition_time, Some(Time(now)));
            // The last heartbeat stays what the daemon said.
            assert_eq!(c.last_heartbeat_time, Some(Time(at(T0))));
        }
        // Once Unknown, nothing more to write.
        let mut unknown = n.clone();
        unknown.status.as_mut().unwrap().conditions = Some(conds);
        assert_eq!(
            plan_health(&unknown, Some(&l), now, GRACE),
            HealthPlan::default()
        );
        // A renewed lease keeps the node fresh even with an old status.
        let renewed = lease("2026-01-01T00:00:30Z");
        assert_eq!(plan_health(&n, Some(&renewed), now, GRACE).conditions, None);
    }

    #[test]
    fn a_node_that_never_posted_status_gets_unknown_conditions_after_grace() {
        let n: Node =
            serde_json::from_value(json!({"metadata": {"name": "n", "creationTimestamp": T0}}))
                .unwrap();
        assert_eq!(
            plan_health(&n, None, at("2026-01-01T00:00:10Z"), GRACE).conditions,
            None
        );
        let conds = plan_health(&n, None, at("2026-01-01T00:01:00Z"), GRACE)
            .conditions
            .unwrap();
        assert_eq!(conds.len(), 4);
        assert!(conds
            .iter()
            .all(|c| c.reason.as_deref() == Some("NodeStatusNeverUpdated")));
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = at("2026-01-01T00:01:00Z");
        let ready = node("True", T0, json!([]));
        assert_eq!(plan_taints(&ready, now), None);

        let unknown = node(
            "Unknown",
            T0,
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        let t = plan_taints(&unknown, now).unwrap();
        let keys: Vec<(String, String)> = t
            .iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("dedicated".into(), "NoSchedule".into()),
                (TAINT_UNREACHABLE.into(), NO_SCHEDULE.into()),
                (TAINT_UNREACHABLE.into(), NO_EXECUTE.into()),
            ]
        );
        assert!(t[1..].iter().all(|t| t.time_added == Some(Time(now))));
        // Already tainted: no change (timeAdded stays).
        let mut tainted = unknown.clone();
        tainted.spec.as_mut().unwrap().taints = Some(t.clone());
        assert_eq!(plan_taints(&tainted, at("2026-01-01T00:05:00Z")), None);

        // Unknown → False swaps unreachable for not-ready.
        let mut not_ready = node("False", T0, json!([]));
        not_ready.spec.as_mut().unwrap().taints = Some(t.clone());
        let t2 = plan_taints(&not_ready, now).unwrap();
        let keys: Vec<&str> = t2.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, vec!["dedicated", TAINT_NOT_READY, TAINT_NOT_READY]);

        // Back to Ready: only the user's taint stays.
        let mut back = node("True", T0, json!([]));
        back.spec.as_mut().unwrap().taints = Some(t);
        let t3 = plan_taints(&back, now).unwrap();
        assert_eq!(t3.len(), 1);
        assert_eq!(t3[0].key, "dedicated");
    }

    #[test]
    fn pressure_conditions_taint_no_schedule_and_bare_no_execute_taints_get_a_time() {
        let now = at("2026-01-01T00:01:00Z");
        let mut n = node(
            "True",
            T0,
            json!([{"key": "maintenance", "effect": "NoExecute"}]),
        );
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        let t = plan_taints(&n, now).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].key, "maintenance");
        assert_eq!(t[0].time_added, Some(Time(now)));
        assert_eq!(
            (t[1].key.as_str(), t[1].effect.as_str()),
            (TAINT_MEMORY_PRESSURE, NO_SCHEDULE)
        );
    }

    #[test]
    fn evictions_wait_for_the_toleration_time() {
        let taints = vec![
            taint(TAINT_UNREACHABLE, NO_SCHEDULE, T0),
            taint(TAINT_UNREACHABLE, NO_EXECUTE, T0),
        ];
        let plain = pod("plain", json!([]));
        let short = pod(
            "short",
            json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]),
        );
        let forever = pod("forever", json!([{"operator": "Exists"}]));
        let pods = vec![plain.clone(), short.clone(), forever.clone()];

        let plan = plan_evictions(&taints, &pods, at("2026-01-01T00:00:59Z"), DEFAULT);
        assert!(plan.evict.is_empty());
        assert_eq!(plan.next, Some(at("2026-01-01T00:01:00Z")));

        let plan = plan_evictions(&taints, &pods, at("2026-01-01T00:01:00Z"), DEFAULT);
        let names: Vec<&str> = plan.evict.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["short"]);
        assert_eq!(plan.evict[0].2, "uid-short");
        // The pod without tolerations gets the default 300 s.
        assert_eq!(plan.next, Some(at("2026-01-01T00:05:00Z")));

        let plan = plan_evictions(&taints, &pods, at("2026-01-01T00:05:00Z"), DEFAULT);
        let names: Vec<&str> = plan.evict.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["plain", "short"]);
        assert_eq!(plan.next, None);

        // Terminating pods are not evicted again; NoSchedule alone evicts nobody.
        let mut gone = (*plain).clone();
        gone.metadata.deletion_timestamp = Some(Time(at(T0)));
        let plan = plan_evictions(
            &taints,
            &[Arc::new(gone)],
            at("2026-01-02T00:00:00Z"),
            DEFAULT,
        );
        assert!(plan.evict.is_empty());
        let plan = plan_evictions(&taints[..1], &pods, at("2026-01-02T00:00:00Z"), DEFAULT);
        assert_eq!(plan, EvictionPlan::default());
    }

    #[test]
    fn an_untolerated_taint_evicts_at_once_and_the_shortest_toleration_wins() {
        let taints = vec![taint("maintenance", NO_EXECUTE, T0)];
        let p = pod("p", json!([]));
        let now = at(T0);
        let plan = plan_evictions(&taints, &[p], now, DEFAULT);
        assert_eq!(plan.evict.len(), 1);

        let both = vec![
            taint("maintenance", NO_EXECUTE, T0),
            taint(TAINT_NOT_READY, NO_EXECUTE, "2026-01-01T00:00:30Z"),
        ];
        let p = pod(
            "p",
            json!([
                {"key": "maintenance", "operator": "Exists", "tolerationSeconds": 600},
                {"key": "maintenance", "operator": "Exists"},
                {"key": TAINT_NOT_READY, "operator": "Exists", "tolerationSeconds": 10}
            ]),
        );
        assert_eq!(
            eviction_deadline(&p, &both, now, DEFAULT),
            Some(at("2026-01-01T00:00:40Z"))
        );
        let negative = pod(
            "p",
            json!([{"key": "maintenance", "operator": "Exists", "tolerationSeconds": -5}]),
        );
        assert_eq!(
            eviction_deadline(&negative, &taints, now, DEFAULT),
            Some(at(T0))
        );
    }

    #[test]
    fn only_troubled_nodes_need_their_pods_looked_at() {
        assert!(!needs_pod_attention(&node("True", T0, json!([]))));
        assert!(!needs_pod_attention(&node(
            "True",
            T0,
            json!([{"key": "x", "effect": "NoSchedule"}])
        )));
        assert!(needs_pod_attention(&node(
            "True",
            T0,
            json!([{"key": "x", "effect": "NoExecute"}])
        )));
        assert!(needs_pod_attention(&node("Unknown", T0, json!([]))));
    }

    #[test]
    fn pods_of_a_not_ready_node_are_marked_not_ready() {
        let now = at("2026-01-01T00:01:00Z");
        let pods = vec![pod("a", json!([]))];
        assert!(pods_to_mark_not_ready(&node("True", T0, json!([])), &pods, now).is_empty());
        let marked = pods_to_mark_not_ready(&node("Unknown", T0, json!([])), &pods, now);
        assert_eq!(marked.len(), 1);
        let ready = marked[0].1.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, Some(Time(now)));
        let other = marked[0]
            .1
            .iter()
            .find(|c| c.type_ == "ContainersReady")
            .unwrap();
        assert_eq!(other.status, "True");
    }
}
