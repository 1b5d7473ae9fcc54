//! The scheduler against a real API server: bindings, events, the PodScheduled condition
//! with Kubernetes' summary, re-queueing, and the filters that matter most in practice.

mod support;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use skiff_controllers::scheduler;
use support::{eventually, Cluster, WAIT};

async fn cluster() -> Cluster {
    let mut c = Cluster::new().await;
    c.run(&[scheduler::start]);
    c
}

async fn create_pod(c: &Cluster, name: &str, spec: Value) -> Pod {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    merge(&mut pod, spec);
    c.create(&c.api::<Pod>("default"), pod).await
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn cpu(amount: &str) -> Value {
    json!({"spec": {"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": amount}}}]}})
}

async fn bound_node(c: &Cluster, name: &str) -> String {
    let pods = c.api::<Pod>("default");
    eventually(&format!("pod {name} bound"), WAIT, || {
        let pods = pods.clone();
        async move {
            pods.get(name)
                .await
                .ok()
                .and_then(|p| p.spec.and_then(|s| s.node_name))
        }
    })
    .await
}

/// Waits for the PodScheduled=False condition and returns its message.
async fn unschedulable_message(c: &Cluster, name: &str) -> String {
    let pods = c.api::<Pod>("default");
    eventually(&format!("pod {name} marked unschedulable"), WAIT, || {
        let pods = pods.clone();
        async move {
            let pod = pods.get(name).await.ok()?;
            let cond = pod
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled")?;
            (cond.status == "False" && cond.reason.as_deref() == Some("Unschedulable"))
                .then(|| cond.message.unwrap_or_default())
        }
    })
    .await
}

async fn event(c: &Cluster, pod: &str, reason: &str) -> Event {
    let events = c.api::<Event>("default");
    eventually(&format!("{reason} event for {pod}"), WAIT, || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.involved_object.name.as_deref() == Some(pod)
                        && e.reason.as_deref() == Some(reason)
                })
        }
    })
    .await
}

async fn patch_node(c: &Cluster, name: &str, patch: Value) {
    c.all::<Node>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch node");
}

/// The pod stays unbound: the scheduler reported it unschedulable with `message`.
async fn assert_unschedulable(c: &Cluster, name: &str, message: &str) {
    assert_eq!(unschedulable_message(c, name).await, message);
    let pod = c.api::<Pod>("default").get(name).await.expect("get pod");
    assert_eq!(pod.spec.and_then(|s| s.node_name), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_to_the_only_fitting_node_and_says_so() {
    let c = cluster().await;
    c.add_node("small", "1", "1Gi", json!({})).await;
    c.add_node("big", "4", "8Gi", json!({})).await;
    create_pod(&c, "p", cpu("2")).await;
    assert_eq!(bound_node(&c, "p").await, "big");
    let e = event(&c, "p", "Scheduled").await;
    assert_eq!(
        e.message.as_deref(),
        Some("Successfully assigned default/p to big")
    );
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    let pod = c.api::<Pod>("default").get("p").await.expect("get pod");
    let scheduled = pod
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .expect("PodScheduled condition");
    assert_eq!(scheduled.status, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfittable_pod_is_reported_then_placed_when_a_node_fits() {
    let c = cluster().await;
    c.add_node("n1", "1", "1Gi", json!({"disk": "ssd"})).await;
    c.add_node("n2", "8", "8Gi", json!({})).await;
    c.add_node("n3", "8", "8Gi", json!({})).await;
    let mut spec = cpu("2");
    merge(
        &mut spec,
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    );
    create_pod(&c, "p", spec).await;
    let expected = "0/3 nodes are available: 1 Insufficient cpu, \
                    2 node(s) didn't match Pod's node affinity/selector.";
    assert_unschedulable(&c, "p", expected).await;
    let e = event(&c, "p", "FailedScheduling").await;
    assert_eq!(e.message.as_deref(), Some(expected));
    assert_eq!(e.type_.as_deref(), Some("Warning"));

    c.add_node("n4", "4", "4Gi", json!({"disk": "ssd"})).await;
    assert_eq!(bound_node(&c, "p").await, "n4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_nodes_take_no_pods_unless_tolerated() {
    let c = cluster().await;
    c.add_node("cordoned", "4", "4Gi", json!({})).await;
    patch_node(&c, "cordoned", json!({"spec": {"unschedulable": true}})).await;
    create_pod(&c, "p", json!({})).await;
    assert_unschedulable(
        &c,
        "p",
        "0/1 nodes are available: 1 node(s) were unschedulable.",
    )
    .await;

    create_pod(
        &c,
        "tolerant",
        json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
    )
    .await;
    assert_eq!(bound_node(&c, "tolerant").await, "cordoned");

    c.add_node("open", "4", "4Gi", json!({})).await;
    assert_eq!(bound_node(&c, "p").await, "open");
    for i in 0..3 {
        create_pod(&c, &format!("q{i}"), json!({})).await;
    }
    for i in 0..3 {
        assert_eq!(bound_node(&c, &format!("q{i}")).await, "open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_picks_the_labelled_node() {
    let c = cluster().await;
    c.add_node("a", "4", "4Gi", json!({"disk": "hdd"})).await;
    c.add_node("b", "4", "4Gi", json!({"disk": "ssd"})).await;
    c.add_node("c", "4", "4Gi", json!({})).await;
    for i in 0..4 {
        create_pod(
            &c,
            &format!("p{i}"),
            json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
        )
        .await;
    }
    for i in 0..4 {
        assert_eq!(bound_node(&c, &format!("p{i}")).await, "b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_keep_out_pods_without_a_toleration() {
    let c = cluster().await;
    c.add_node("gpu", "4", "4Gi", json!({})).await;
    patch_node(
        &c,
        "gpu",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
    )
    .await;
    create_pod(&c, "plain", json!({})).await;
    create_pod(
        &c,
        "tolerant",
        json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
    )
    .await;
    assert_eq!(bound_node(&c, "tolerant").await, "gpu");
    assert_unschedulable(
        &c,
        "plain",
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_spreads_pods_over_nodes() {
    let c = cluster().await;
    c.add_node("n1", "4", "4Gi", json!({})).await;
    c.add_node("n2", "4", "4Gi", json!({})).await;
    let web = json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}},
    });
    create_pod(&c, "w1", web.clone()).await;
    create_pod(&c, "w2", web.clone()).await;
    let a = bound_node(&c, "w1").await;
    let b = bound_node(&c, "w2").await;
    assert_ne!(a, b, "anti-affinity puts the two pods on different nodes");
    // The existing pods' own anti-affinity also rejects the third (checked first, as in
    // kube-scheduler, so that is the reason given).
    create_pod(&c, "w3", web).await;
    assert_unschedulable(
        &c,
        "w3",
        "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules.",
    )
    .await;
    // A pod that only avoids web pods itself (web pods do not avoid it) gets the other reason.
    create_pod(
        &c,
        "shy",
        json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
    )
    .await;
    assert_unschedulable(
        &c,
        "shy",
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_add_up_across_pods_and_deletion_frees_them() {
    let c = cluster().await;
    c.add_node("one-cpu", "1", "4Gi", json!({})).await;
    for name in ["a", "b", "c"] {
        create_pod(&c, name, cpu("500m")).await;
    }
    // Two fit (assumed one after the other before any binding is seen); the third does not.
    let mut bound = Vec::new();
    let mut pending = None;
    for name in ["a", "b", "c"] {
        let pods = c.api::<Pod>("default");
        let placed = eventually(&format!("{name} bound or unschedulable"), WAIT, || {
            let pods = pods.clone();
            async move {
                let p = pods.get(name).await.ok()?;
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    return Some(true);
                }
                let failed = p
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "PodScheduled" && c.status == "False");
                failed.then_some(false)
            }
        })
        .await;
        if placed {
            bound.push(name);
        } else {
            pending = Some(name);
        }
    }
    assert_eq!(bound.len(), 2, "two 500m pods fill a 1-cpu node");
    let pending = pending.expect("one pod left over");
    assert_unschedulable(&c, pending, "0/1 nodes are available: 1 Insufficient cpu.").await;

    // Deleting a bound pod frees its share: the pending pod is placed.
    c.api::<Pod>("default")
        .delete(bound[0], &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    eventually("deleted pod gone", WAIT, || async {
        c.api::<Pod>("default")
            .get_opt(bound[0])
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(bound_node(&c, pending).await, "one-cpu");
    let on_node: Vec<String> = c
        .pods("default", "")
        .await
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("one-cpu"))
        .map(|p| p.name_any())
        .collect();
    assert_eq!(on_node.len(), 2);
}
