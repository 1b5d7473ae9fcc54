//! Node lifecycle against the real API server with a fake clock: lease expiry → `Unknown`
//! conditions and `unreachable` taints → evictions after the toleration time → recovery.

mod support;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_controllers::nodelifecycle::{self, TAINT_NOT_READY, TAINT_UNREACHABLE};
use support::{eventually, Cluster, WAIT};

const LEASES: &str = "kube-node-lease";

/// What a node daemon's lease renewal does.
async fn renew_lease(c: &Cluster, node: &str, at: Timestamp) {
    let leases: Api<Lease> = c.api(LEASES);
    match leases.get_opt(node).await.expect("get lease") {
        Some(mut lease) => {
            lease.spec.get_or_insert_with(Default::default).renew_time = Some(MicroTime(at));
            leases
                .replace(node, &PostParams::default(), &lease)
                .await
                .expect("renew lease");
        }
        None => {
            c.create(
                &leases,
                json!({"metadata": {"name": node, "namespace": LEASES},
                       "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                                "renewTime": MicroTime(at)}}),
            )
            .await;
        }
    }
}

/// What a node daemon's status post does: all conditions fresh, Ready as given.
async fn post_status(c: &Cluster, node: &str, ready: &str, at: Timestamp) {
    let t = Time(at);
    let cond = |kind: &str, status: &str| {
        json!({"type": kind, "status": status, "reason": "Kubelet", "lastHeartbeatTime": t,
               "lastTransitionTime": t})
    };
    let status = json!({"status": {"conditions": [
        cond("MemoryPressure", "False"), cond("DiskPressure", "False"),
        cond("PIDPressure", "False"), cond("Ready", ready),
    ]}});
    c.all::<Node>()
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("post node status");
}

async fn pod_on(c: &Cluster, name: &str, node: &str, tolerations: serde_json::Value) {
    c.create(
        &c.api::<Pod>("default"),
        json!({"metadata": {"name": name, "labels": {"app": "lifecycle"}},
               "spec": {"nodeName": node, "tolerations": tolerations,
                        "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    c.set_pod_ready("default", name).await;
}

fn tolerate_unreachable(seconds: i64) -> serde_json::Value {
    json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": seconds}])
}

fn condition(node: &Node, kind: &str) -> Option<(String, Option<String>)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn taint_keys(node: &Node) -> Vec<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect()
}

/// Whether the pod is gone or on its way out.
async fn marked_for_deletion(c: &Cluster, name: &str) -> bool {
    match c
        .api::<Pod>("default")
        .get_opt(name)
        .await
        .expect("get pod")
    {
        None => true,
        Some(p) => p.metadata.deletion_timestamp.is_some(),
    }
}

async fn wait_marked(c: &Cluster, name: &str) {
    eventually(&format!("pod {name} marked for deletion"), WAIT, || async {
        marked_for_deletion(c, name).await.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_taints_the_node_evicts_its_pods_and_renewal_heals_it() {
    let mut c = Cluster::new().await;
    let t0 = c.now();
    let nodes: Api<Node> = c.all();
    c.add_node("n1", "4", "8Gi", json!({})).await;
    post_status(&c, "n1", "True", t0).await;
    renew_lease(&c, "n1", t0).await;
    // A node already silent when the loop starts: proves the loop has run.
    c.add_node("silent", "4", "8Gi", json!({})).await;
    post_status(
        &c,
        "silent",
        "True",
        t0 - jiff::SignedDuration::from_secs(120),
    )
    .await;

    pod_on(&c, "plain", "n1", json!([])).await;
    pod_on(&c, "plain-sentinel", "n1", tolerate_unreachable(299)).await;
    pod_on(&c, "short", "n1", tolerate_unreachable(60)).await;
    pod_on(&c, "short-sentinel", "n1", tolerate_unreachable(59)).await;
    pod_on(&c, "forever", "n1", json!([{"operator": "Exists"}])).await;

    c.run(&[nodelifecycle::start]);

    eventually(
        "the silent node becomes Unknown and unreachable",
        WAIT,
        || async {
            let n = nodes.get("silent").await.ok()?;
            let ready = condition(&n, "Ready")?;
            (ready == ("Unknown".into(), Some("NodeStatusUnknown".into()))
                && taint_keys(&n).contains(&(TAINT_UNREACHABLE.into(), "NoExecute".into())))
            .then_some(())
        },
    )
    .await;
    let n1 = nodes.get("n1").await.expect("n1");
    assert_eq!(condition(&n1, "Ready").unwrap().0, "True");
    assert!(taint_keys(&n1).is_empty(), "{:?}", taint_keys(&n1));

    // 30 s of silence is within the grace period; 41 s is not.
    c.clock.advance(Duration::from_secs(30));
    c.clock.advance(Duration::from_secs(11));
    let tainted_at = c.now();
    let n1 = eventually("n1 becomes Unknown and unreachable", WAIT, || async {
        let n = nodes.get("n1").await.ok()?;
        let keys = taint_keys(&n);
        (keys.contains(&(TAINT_UNREACHABLE.into(), "NoExecute".into()))
            && keys.contains(&(TAINT_UNREACHABLE.into(), "NoSchedule".into())))
        .then_some(n)
    })
    .await;
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(
            condition(&n1, kind),
            Some(("Unknown".into(), Some("NodeStatusUnknown".into()))),
            "{kind}"
        );
    }
    let message = n1.status.as_ref().unwrap().conditions.as_ref().unwrap()[0]
        .message
        .clone();
    assert_eq!(
        message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    for t in n1.spec.as_ref().unwrap().taints.as_ref().unwrap() {
        // `Time` is written in whole seconds.
        let added = t.time_added.as_ref().expect("timeAdded").0;
        assert_eq!(added.as_second(), tainted_at.as_second());
    }
    assert!(!c.events("default", "NodeNotReady").await.is_empty());
    // Its pods no longer count as ready.
    eventually("pods marked not ready", WAIT, || async {
        let pods = c.pods("default", "app=lifecycle").await;
        pods.iter()
            .all(|p| !skiff_controllers::objects::is_pod_ready(p))
            .then_some(())
    })
    .await;

    // 59 s after the taint: only the sentinel tolerating 59 s goes.
    c.clock.advance(Duration::from_secs(59));
    wait_marked(&c, "short-sentinel").await;
    assert!(!marked_for_deletion(&c, "short").await);
    c.clock.advance(Duration::from_secs(1));
    wait_marked(&c, "short").await;
    let evicted = c.events("default", "TaintManagerEviction").await;
    assert!(
        evicted
            .iter()
            .any(|e| e.message.as_deref() == Some("Marking for deletion Pod default/short")),
        "{evicted:?}"
    );

    // No toleration: the default 300 s.
    c.clock.advance(Duration::from_secs(239));
    wait_marked(&c, "plain-sentinel").await;
    assert!(!marked_for_deletion(&c, "plain").await);
    c.clock.advance(Duration::from_secs(1));
    wait_marked(&c, "plain").await;
    assert!(!marked_for_deletion(&c, "forever").await);

    // The daemon is back: lease renewed, status posted → taints gone.
    let back = c.now();
    renew_lease(&c, "n1", back).await;
    post_status(&c, "n1", "True", back).await;
    eventually("n1 untainted", WAIT, || async {
        let n = nodes.get("n1").await.ok()?;
        taint_keys(&n).is_empty().then_some(())
    })
    .await;
    let n1 = nodes.get("n1").await.expect("n1");
    assert_eq!(condition(&n1, "Ready").unwrap().0, "True");
    assert!(!marked_for_deletion(&c, "forever").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_nodes_get_not_ready_taints_and_untolerated_taints_evict_at_once() {
    let mut c = Cluster::new().await;
    let t0 = c.now();
    let nodes: Api<Node> = c.all();
    c.add_node("n1", "4", "8Gi", json!({})).await;
    post_status(&c, "n1", "False", t0).await;
    renew_lease(&c, "n1", t0).await;
    pod_on(&c, "web", "n1", json!([])).await;
    pod_on(
        &c,
        "patient",
        "n1",
        json!([{"key": "maintenance", "operator": "Exists"}]),
    )
    .await;
    c.run(&[nodelifecycle::start]);

    let n1 = eventually("not-ready taints", WAIT, || async {
        let n = nodes.get("n1").await.ok()?;
        let keys = taint_keys(&n);
        (keys.contains(&(TAINT_NOT_READY.into(), "NoExecute".into()))
            && keys.contains(&(TAINT_NOT_READY.into(), "NoSchedule".into())))
        .then_some(n)
    })
    .await;
    // The daemon is talking: the conditions stay its own.
    assert_eq!(
        condition(&n1, "Ready"),
        Some(("False".into(), Some("Kubelet".into())))
    );
    // Not-ready is tolerated 300 s by default.
    assert!(!marked_for_deletion(&c, "web").await);

    // A NoExecute taint of the operator's that the pod does not tolerate: out at once.
    let mut n1 = nodes.get("n1").await.expect("n1");
    n1.spec
        .get_or_insert_with(Default::default)
        .taints
        .get_or_insert_with(Vec::new)
        .push(
            serde_json::from_value(json!({"key": "maintenance", "effect": "NoExecute"})).unwrap(),
        );
    nodes
        .replace("n1", &PostParams::default(), &n1)
        .await
        .expect("taint n1");
    wait_marked(&c, "web").await;
    let n1 = nodes.get("n1").await.expect("n1");
    let stamped = n1
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|ts| ts.iter().find(|t| t.key == "maintenance").cloned())
        .expect("maintenance taint");
    assert!(stamped.time_added.is_some(), "timeAdded stamped");
    assert!(!marked_for_deletion(&c, "patient").await);

    // Ready again: the not-ready taints go, the operator's stays.
    post_status(&c, "n1", "True", c.now()).await;
    eventually("not-ready taints removed", WAIT, || async {
        let n = nodes.get("n1").await.ok()?;
        let keys = taint_keys(&n);
        (keys == vec![("maintenance".to_string(), "NoExecute".to_string())]).then_some(())
    })
    .await;
}
