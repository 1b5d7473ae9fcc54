//! The DaemonSet controller against a real API server. No scheduler runs: pods stay
//! unbound and are told apart by the node their affinity pins them to.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_controllers::daemonset::{self, target_node, REVISION_HASH_LABEL};
use support::{eventually, Cluster, WAIT};

const NS: &str = "default";
const SEL: &str = "app=agent";

fn ds_json(pod_spec_extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"containers": [{"name": "agent", "image": "busybox"}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), pod_spec_extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec},
        }
    })
}

fn live(pods: Vec<Pod>) -> Vec<Pod> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Node name → pod names pinned to it.
async fn pods_by_node(c: &Cluster) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in live(c.pods(NS, SEL).await) {
        map.entry(target_node(&p).unwrap_or_default())
            .or_default()
            .push(p.name_any());
    }
    map
}

async fn wait_for_nodes(c: &Cluster, want: &[&str]) -> BTreeMap<String, Vec<String>> {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(&format!("one pod on each of {want:?}"), WAIT, || async {
        let map = pods_by_node(c).await;
        let nodes: Vec<String> = map.keys().cloned().collect();
        (nodes == want && map.values().all(|v| v.len() == 1)).then_some(map)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_node_follows_nodes_coming_and_going() {
    let mut c = Cluster::new().await;
    c.add_node("n1", "4", "8Gi", json!({})).await;
    c.add_node("n2", "4", "8Gi", json!({})).await;
    c.run(&[daemonset::start]);
    c.create(&c.api::<DaemonSet>(NS), ds_json(json!({}))).await;
    wait_for_nodes(&c, &["n1", "n2"]).await;

    // Pods are pinned by `matchFields metadata.name`, not bound, and tolerate cordons.
    let pod = live(c.pods(NS, SEL).await).remove(0);
    let spec = pod.spec.unwrap();
    assert!(spec.node_name.is_none());
    let terms = &spec
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    let field = &terms[0].match_fields.as_ref().unwrap()[0];
    assert_eq!(
        (field.key.as_str(), field.operator.as_str()),
        ("metadata.name", "In")
    );
    assert!(spec
        .tolerations
        .unwrap()
        .iter()
        .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable")));

    c.add_node("n3", "4", "8Gi", json!({})).await;
    wait_for_nodes(&c, &["n1", "n2", "n3"]).await;

    let nodes: Api<Node> = c.all();
    nodes
        .delete("n2", &DeleteParams::default())
        .await
        .expect("delete node");
    wait_for_nodes(&c, &["n1", "n3"]).await;

    // A deleted daemon pod comes back.
    let victim = pods_by_node(&c).await["n1"][0].clone();
    c.api::<Pod>(NS)
        .delete(&victim, &DeleteParams::default())
        .await
        .expect("delete pod");
    eventually("replacement on n1", WAIT, || async {
        let map = pods_by_node(&c).await;
        map.get("n1")
            .is_some_and(|p| p.len() == 1 && p[0] != victim)
            .then_some(())
    })
    .await;

    let ds = eventually("status", WAIT, || async {
        let ds = c.api::<DaemonSet>(NS).get("agent").await.ok()?;
        let s = ds.status.clone()?;
        (s.desired_number_scheduled == 2 && s.current_number_scheduled == 2).then_some(ds)
    })
    .await;
    let s = ds.status.unwrap();
    assert_eq!(s.number_misscheduled, 0);
    assert_eq!(s.updated_number_scheduled, Some(2));
    assert_eq!(s.number_unavailable, Some(2));
    assert_eq!(s.observed_generation, ds.metadata.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_and_taints_decide_eligibility() {
    let mut c = Cluster::new().await;
    c.add_node("w1", "4", "8Gi", json!({"role": "worker"}))
        .await;
    c.add_node("w2", "4", "8Gi", json!({"role": "worker"}))
        .await;
    c.add_node("db", "4", "8Gi", json!({"role": "db"})).await;
    c.run(&[daemonset::start]);
    c.create(
        &c.api::<DaemonSet>(NS),
        ds_json(json!({"nodeSelector": {"role": "worker"}})),
    )
    .await;
    wait_for_nodes(&c, &["w1", "w2"]).await;

    let nodes: Api<Node> = c.all();
    // Relabelled into the selector: gets a pod.
    let relabel = json!({"metadata": {"labels": {"role": "worker"}}});
    nodes
        .patch("db", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .expect("label node");
    wait_for_nodes(&c, &["db", "w1", "w2"]).await;

    // An untolerated NoSchedule taint: its pod goes. Cordoning is ignored.
    let taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
    nodes
        .patch("w2", &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .expect("taint node");
    let cordon = json!({"spec": {"unschedulable": true}});
    nodes
        .patch("w1", &PatchParams::default(), &Patch::Merge(&cordon))
        .await
        .expect("cordon node");
    wait_for_nodes(&c, &["db", "w1"]).await;
    // The pod on the tainted node counts as misscheduled until its deletion lands.
    eventually("misscheduled none, desired 2", WAIT, || async {
        let s = c.api::<DaemonSet>(NS).get("agent").await.ok()?.status?;
        (s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_misscheduled == 0)
            .then_some(())
    })
    .await;

    // Tolerating the taint brings it back.
    let tolerate = json!({"spec": {"template": {"spec": {"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}}});
    c.api::<DaemonSet>(NS)
        .patch("agent", &PatchParams::default(), &Patch::Merge(&tolerate))
        .await
        .expect("add toleration");
    eventually("pod on w2 again", WAIT, || async {
        pods_by_node(&c).await.contains_key("w2").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_replaces_one_node_at_a_time() {
    let mut c = Cluster::new().await;
    for n in ["n1", "n2", "n3"] {
        c.add_node(n, "4", "8Gi", json!({})).await;
    }
    c.run(&[daemonset::start]);
    c.create(&c.api::<DaemonSet>(NS), ds_json(json!({}))).await;
    wait_for_nodes(&c, &["n1", "n2", "n3"]).await;
    let first = live(c.pods(NS, SEL).await);
    for p in &first {
        c.set_pod_ready(NS, &p.name_any()).await;
    }
    let old_hash = first[0].labels()[REVISION_HASH_LABEL].clone();
    eventually("all available", WAIT, || async {
        let s = c.api::<DaemonSet>(NS).get("agent").await.ok()?.status?;
        (s.number_available == Some(3)).then_some(())
    })
    .await;

    let update = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "agent", "image": "busybox:1.37"}]}}}});
    c.api::<DaemonSet>(NS)
        .patch("agent", &PatchParams::default(), &Patch::Merge(&update))
        .await
        .expect("update template");

    let mut replaced = Vec::new();
    for step in 1..=3 {
        let new_pod = eventually(&format!("replacement {step}"), WAIT, || async {
            let pods = live(c.pods(NS, SEL).await);
            let fresh: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.labels()[REVISION_HASH_LABEL] != old_hash)
                .filter(|p| !replaced.contains(&p.name_any()))
                .collect();
            // maxUnavailable 1: never more than one node without a ready pod.
            let ready = pods
                .iter()
                .filter(|p| skiff_controllers::objects::is_pod_ready(p))
                .count();
            assert!(ready >= 2, "step {step}: only {ready} ready pods");
            assert!(
                fresh.len() <= 1,
                "step {step}: {} nodes replaced at once",
                fresh.len()
            );
            fresh.first().map(|p| p.name_any())
        })
        .await;
        c.set_pod_ready(NS, &new_pod).await;
        replaced.push(new_pod);
    }
    let s = eventually("rollout done", WAIT, || async {
        let s = c.api::<DaemonSet>(NS).get("agent").await.ok()?.status?;
        (s.updated_number_scheduled == Some(3) && s.number_available == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(s.number_unavailable, Some(0));
    let by_node = wait_for_nodes(&c, &["n1", "n2", "n3"]).await;
    assert_eq!(by_node.len(), 3);
    // Both templates are kept as ControllerRevisions, numbered in order.
    let revisions: Api<ControllerRevision> = c.api(NS);
    let mut revs: Vec<(i64, String)> = revisions
        .list(&ListParams::default().labels(SEL))
        .await
        .expect("list revisions")
        .items
        .into_iter()
        .map(|r| (r.revision, r.labels()[REVISION_HASH_LABEL].clone()))
        .collect();
    revs.sort();
    assert_eq!(revs.len(), 2, "{revs:?}");
    assert_eq!((revs[0].0, revs[0].1.as_str()), (1, old_hash.as_str()));
    assert_eq!(revs[1].0, 2);
}
