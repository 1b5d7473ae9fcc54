//! The ReplicaSet and ReplicationController controllers against a real API server.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController, ResourceQuota};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_controllers::objects::controller_of;
use skiff_controllers::replicaset;
use support::{eventually, Cluster, WAIT};

const NS: &str = "default";

fn replica_set(name: &str, replicas: i32, app: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    })
}

async fn scale<K>(api: &Api<K>, name: &str, replicas: i32)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale");
}

/// The names of the pods with `selector` once there are exactly `n` of them, all active.
async fn wait_pods(cluster: &Cluster, selector: &str, n: usize) -> Vec<Pod> {
    eventually(&format!("{n} pods with {selector}"), WAIT, || async {
        let pods = cluster.pods(NS, selector).await;
        (pods.len() == n && pods.iter().all(|p| p.metadata.deletion_timestamp.is_none()))
            .then_some(pods)
    })
    .await
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_scales_up_and_down_deleting_the_least_useful_pods_first() {
    let mut cluster = Cluster::new().await;
    cluster.run(&[replicaset::start]);
    let rss: Api<ReplicaSet> = cluster.api(NS);
    cluster.create(&rss, replica_set("web", 2, "web")).await;

    let first = wait_pods(&cluster, "app=web", 2).await;
    for p in &first {
        assert!(
            p.name_any().starts_with("web-"),
            "generated name {}",
            p.name_any()
        );
        let owner = controller_of(&p.metadata).expect("controller reference");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", "web")
        );
        cluster.set_pod_ready(NS, &p.name_any()).await;
    }
    let status = eventually("status of 2 ready", WAIT, || async {
        let rs = rss.get("web").await.ok()?;
        let s = rs.status?;
        (s.ready_replicas == Some(2) && s.available_replicas == Some(2)).then_some(s)
    })
    .await;
    assert_eq!(status.replicas, 2);
    assert_eq!(status.fully_labeled_replicas, Some(2));
    assert_eq!(status.observed_generation, Some(1));

    scale(&rss, "web", 5).await;
    let five = wait_pods(&cluster, "app=web", 5).await;
    let added: Vec<String> = names(&five).difference(&names(&first)).cloned().collect();
    assert_eq!(added.len(), 3);
    // Two of the new pods become ready later than the first two; one never does.
    cluster.clock.advance(Duration::from_secs(10));
    cluster.set_pod_ready(NS, &added[0]).await;
    cluster.set_pod_ready(NS, &added[1]).await;
    eventually("status of 5 with 4 ready", WAIT, || async {
        let s = rss.get("web").await.ok()?.status?;
        (s.replicas == 5 && s.ready_replicas == Some(4) && s.observed_generation == Some(2))
            .then_some(())
    })
    .await;

    // One fewer: the pod that is not ready goes.
    scale(&rss, "web", 4).await;
    let four = wait_pods(&cluster, "app=web", 4).await;
    assert!(
        !names(&four).contains(&added[2]),
        "the not-ready pod is deleted first"
    );
    eventually("status of 4", WAIT, || async {
        let s = rss.get("web").await.ok()?.status?;
        (s.replicas == 4 && s.ready_replicas == Some(4)).then_some(())
    })
    .await;

    // Down to one: the pods ready most recently go first, so an original one stays.
    scale(&rss, "web", 1).await;
    let one = wait_pods(&cluster, "app=web", 1).await;
    assert!(
        names(&first).contains(&one[0].name_any()),
        "the survivor {} is one of the longest-ready pods {:?}",
        one[0].name_any(),
        names(&first)
    );
    eventually("status of 1", WAIT, || async {
        let s = rss.get("web").await.ok()?.status?;
        (s.replicas == 1 && s.ready_replicas == Some(1) && s.available_replicas == Some(1))
            .then_some(())
    })
    .await;
    assert!(cluster.events(NS, "SuccessfulCreate").await.len() >= 5);
    assert!(!cluster.events(NS, "SuccessfulDelete").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_adopts_orphans_and_releases_pods_whose_labels_change() {
    let mut cluster = Cluster::new().await;
    let pods: Api<Pod> = cluster.api(NS);
    let orphan: Pod = cluster
        .create(
            &pods,
            json!({
                "metadata": {"name": "stray", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            }),
        )
        .await;
    // A pod someone else controls is left alone even if it matches.
    cluster
        .create(
            &pods,
            json!({
                "metadata": {"name": "foreign", "labels": {"app": "web"}, "ownerReferences": [{
                    "apiVersion": "v1", "kind": "ReplicationController", "name": "x",
                    "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            }),
        )
        .await;
    cluster.run(&[replicaset::start]);
    let rss: Api<ReplicaSet> = cluster.api(NS);
    let rs = cluster.create(&rss, replica_set("web", 2, "web")).await;
    let uid = rs.uid().expect("uid");

    let owned = eventually("the orphan adopted and one pod created", WAIT, || async {
        let owned: Vec<Pod> = cluster
            .pods(NS, "app=web")
            .await
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        (owned.len() == 2).then_some(owned)
    })
    .await;
    assert!(
        names(&owned).contains("stray"),
        "the orphan is adopted: {:?}",
        names(&owned)
    );
    assert_eq!(orphan.name_any(), "stray");
    let foreign = pods.get("foreign").await.expect("foreign pod");
    assert_ne!(
        controller_of(&foreign.metadata).map(|r| r.uid.as_str()),
        Some(uid.as_str())
    );

    // Changing the adopted pod's label takes it out of the ReplicaSet's control.
    pods.patch(
        "stray",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"app": "debug"}}})),
    )
    .await
    .expect("relabel");
    eventually("the relabelled pod released and replaced", WAIT, || async {
        let stray = pods.get("stray").await.ok()?;
        let released = controller_of(&stray.metadata).is_none();
        let owned = cluster
            .pods(NS, "app=web")
            .await
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .count();
        (released && owned == 2).then_some(())
    })
    .await;
    // The released pod lives on, no longer counted.
    let s = eventually("status of 2", WAIT, || async {
        let s = rss.get("web").await.ok()?.status?;
        (s.replicas == 2).then_some(s)
    })
    .await;
    assert_eq!(s.replicas, 2);
    assert_eq!(cluster.pods(NS, "app=debug").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_keeps_replicas_and_releases_relabelled_pods() {
    let mut cluster = Cluster::new().await;
    cluster.run(&[replicaset::start]);
    let rcs: Api<ReplicationController> = cluster.api(NS);
    // No selector: it defaults to the template's labels.
    cluster
        .create(
            &rcs,
            json!({
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 3,
                    "template": {
                        "metadata": {"labels": {"app": "db"}},
                        "spec": {"containers": [{"name": "c", "image": "postgres"}]},
                    },
                },
            }),
        )
        .await;
    let three = wait_pods(&cluster, "app=db", 3).await;
    for p in &three {
        let owner = controller_of(&p.metadata).expect("controller reference");
        assert_eq!(owner.kind, "ReplicationController");
        assert!(p.name_any().starts_with("db-"));
        cluster.set_pod_ready(NS, &p.name_any()).await;
    }
    eventually("rc status of 3 ready", WAIT, || async {
        let s = rcs.get("db").await.ok()?.status?;
        (s.replicas == 3 && s.ready_replicas == Some(3) && s.available_replicas == Some(3))
            .then_some(())
    })
    .await;

    // The classic: change a pod's label, it leaves the RC, the RC makes a replacement.
    let pods: Api<Pod> = cluster.api(NS);
    let leaving = three[0].name_any();
    pods.patch(
        &leaving,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"app": "db-debug"}}})),
    )
    .await
    .expect("relabel");
    let replaced = wait_pods(&cluster, "app=db", 3).await;
    assert!(!names(&replaced).contains(&leaving));
    let left = pods.get(&leaving).await.expect("released pod still exists");
    assert!(controller_of(&left.metadata).is_none(), "released");

    scale(&rcs, "db", 1).await;
    let one = wait_pods(&cluster, "app=db", 1).await;
    // The replacement is the only pod that is not ready: it went first.
    assert!(names(&three).contains(&one[0].name_any()));
    eventually("rc status of 1", WAIT, || async {
        let s = rcs.get("db").await.ok()?.status?;
        (s.replicas == 1 && s.observed_generation == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_delays_availability_on_the_clock() {
    let mut cluster = Cluster::new().await;
    cluster.run(&[replicaset::start]);
    let rss: Api<ReplicaSet> = cluster.api(NS);
    let mut obj = replica_set("slow", 2, "slow");
    obj["spec"]["minReadySeconds"] = json!(30);
    cluster.create(&rss, obj).await;
    for p in wait_pods(&cluster, "app=slow", 2).await {
        cluster.set_pod_ready(NS, &p.name_any()).await;
    }
    eventually("ready but not available", WAIT, || async {
        let s = rss.get("slow").await.ok()?.status?;
        (s.ready_replicas == Some(2) && s.available_replicas == Some(0)).then_some(())
    })
    .await;
    cluster.clock.advance(Duration::from_secs(29));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = rss.get("slow").await.expect("rs").status.expect("status");
    assert_eq!(s.available_replicas, Some(0), "29 s is not enough");
    cluster.clock.advance(Duration::from_secs(1));
    eventually("available after 30 s", WAIT, || async {
        let s = rss.get("slow").await.ok()?.status?;
        (s.available_replicas == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_creates_set_replica_failure_and_clear_when_fixed() {
    let mut cluster = Cluster::new().await;
    let quotas: Api<ResourceQuota> = cluster.api(NS);
    cluster
        .create(
            &quotas,
            json!({"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "1"}}}),
        )
        .await;
    cluster.run(&[replicaset::start]);
    let rss: Api<ReplicaSet> = cluster.api(NS);
    cluster.create(&rss, replica_set("big", 3, "big")).await;
    let cond = eventually("ReplicaFailure condition", WAIT, || async {
        let s = rss.get("big").await.ok()?.status?;
        s.conditions?
            .into_iter()
            .find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(cond.status, "True");
    assert_eq!(cond.reason.as_deref(), Some("FailedCreate"));
    assert!(!cluster.events(NS, "FailedCreate").await.is_empty());
    assert_eq!(cluster.pods(NS, "app=big").await.len(), 1);

    quotas
        .delete("pods", &Default::default())
        .await
        .expect("delete quota");
    wait_pods(&cluster, "app=big", 3).await;
    eventually("condition cleared", WAIT, || async {
        let s = rss.get("big").await.ok()?.status?;
        let failing = s
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "ReplicaFailure");
        (s.replicas == 3 && !failing).then_some(())
    })
    .await;
}
