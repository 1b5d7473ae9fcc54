//! Deleting a Deployment through its ReplicaSets to its pods: background, foreground and
//! orphan propagation with the controllers running (kubectl's `--cascade`).

mod support;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use serde_json::json;
use skiff_controllers::{deployment, gc, replicaset};
use support::{eventually, Cluster, WAIT};

async fn deployment_with_pods(c: &Cluster, name: &str) {
    let deployments = c.api::<Deployment>("default");
    c.create(
        &deployments,
        json!({"metadata": {"name": name},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
    )
    .await;
    eventually("two pods", WAIT, || async {
        (c.pods("default", &format!("app={name}")).await.len() == 2).then_some(())
    })
    .await;
}

async fn replica_sets(c: &Cluster, app: &str) -> Vec<ReplicaSet> {
    c.api::<ReplicaSet>("default")
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

fn delete_with(policy: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(policy),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_deletion_of_a_deployment() {
    let mut c = Cluster::new().await;
    c.run(&[deployment::start, replicaset::start, gc::start]);
    let deployments = c.api::<Deployment>("default");

    // Background: the Deployment goes at once, its ReplicaSet and pods after it.
    deployment_with_pods(&c, "bg").await;
    deployments
        .delete("bg", &delete_with(PropagationPolicy::Background))
        .await
        .unwrap();
    eventually("ReplicaSet and pods gone", WAIT, || async {
        (replica_sets(&c, "bg").await.is_empty() && c.pods("default", "app=bg").await.is_empty())
            .then_some(())
    })
    .await;

    // Foreground: the Deployment stays (with the foregroundDeletion finalizer) until its
    // dependents are gone, then goes itself.
    deployment_with_pods(&c, "fg").await;
    deployments
        .delete("fg", &delete_with(PropagationPolicy::Foreground))
        .await
        .unwrap();
    eventually(
        "the foreground-deleted Deployment and everything below it gone",
        WAIT,
        || async {
            let gone = deployments.get_opt("fg").await.ok()?.is_none();
            (gone
                && replica_sets(&c, "fg").await.is_empty()
                && c.pods("default", "app=fg").await.is_empty())
            .then_some(())
        },
    )
    .await;

    // Orphan: the ReplicaSet survives without an owner and keeps its pods.
    deployment_with_pods(&c, "or").await;
    deployments
        .delete("or", &delete_with(PropagationPolicy::Orphan))
        .await
        .unwrap();
    let rs = eventually("the orphaned ReplicaSet released", WAIT, || async {
        let gone = deployments.get_opt("or").await.ok()?.is_none();
        let rs = replica_sets(&c, "or").await.into_iter().next()?;
        (gone
            && rs
                .metadata
                .owner_references
                .as_ref()
                .is_none_or(|r| r.is_empty()))
        .then_some(rs)
    })
    .await;
    let pods: Vec<Pod> = c.pods("default", "app=or").await;
    assert_eq!(pods.len(), 2, "the orphaned ReplicaSet keeps its pods");
    let rs_uid = rs.metadata.uid.unwrap();
    assert!(pods.iter().all(|p| p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == rs_uid)));
}
