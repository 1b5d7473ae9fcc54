//! The Deployment controller (with the ReplicaSet controller) against a real API server.
//! No node runs: the test marks pods ready in place of a node daemon.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_controllers::objects::{controller_of, is_pod_ready};
use skiff_controllers::{deployment, replicaset};
use support::{eventually, Cluster, WAIT};

const NS: &str = "default";
const HASH: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";

fn web(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "annotations": {"kubernetes.io/change-cause": format!("deploy {image}")}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    })
}

fn surge_one() -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
}

async fn start() -> (Cluster, Api<Deployment>, Api<ReplicaSet>) {
    let mut cluster = Cluster::new().await;
    cluster.run(&[replicaset::start, deployment::start]);
    let deployments = cluster.api(NS);
    let rss = cluster.api(NS);
    (cluster, deployments, rss)
}

async fn patch_spec(api: &Api<Deployment>, name: &str, spec: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": spec})),
    )
    .await
    .expect("patch deployment");
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    let patch = json!({
        "metadata": {"annotations": {"kubernetes.io/change-cause": format!("deploy {image}")}},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("set image");
}

/// The ReplicaSets controlled by the Deployment, by name.
async fn owned_rss(rss: &Api<ReplicaSet>, d: &Deployment) -> Vec<ReplicaSet> {
    let uid = d.uid().expect("uid");
    let mut list: Vec<ReplicaSet> = rss
        .list(&ListParams::default())
        .await
        .expect("list replica sets")
        .items
        .into_iter()
        .filter(|rs| controller_of(&rs.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    list.sort_by_key(|rs| rs.name_any());
    list
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1)
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.annotations().get(key).cloned()
}

fn condition(d: &Deployment, type_: &str) -> Option<DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// The ReplicaSet of the Deployment running `image`, once it exists.
async fn rs_with_image(
    rss: &Api<ReplicaSet>,
    d: &Api<Deployment>,
    name: &str,
    image: &str,
) -> ReplicaSet {
    eventually(&format!("a replica set with {image}"), WAIT, || async {
        let dep = d.get(name).await.ok()?;
        owned_rss(rss, &dep)
            .await
            .into_iter()
            .find(|rs| image_of(rs) == image)
    })
    .await
}

/// Marks every pod of `app` ready until the Deployment reports a completed rollout.
async fn complete_rollout(cluster: &Cluster, api: &Api<Deployment>, name: &str) -> Deployment {
    eventually(&format!("rollout of {name} complete"), WAIT, || async {
        for p in cluster.pods(NS, &format!("app={name}")).await {
            if !is_pod_ready(&p) && p.metadata.deletion_timestamp.is_none() {
                cluster.set_pod_ready(NS, &p.name_any()).await;
            }
        }
        let d = api.get(name).await.ok()?;
        let want = d.spec.as_ref()?.replicas?;
        let s = d.status.clone()?;
        let done = s.observed_generation == d.metadata.generation
            && s.replicas == Some(want)
            && s.updated_replicas == Some(want)
            && s.available_replicas == Some(want)
            && condition(&d, "Progressing")
                .and_then(|c| c.reason)
                .as_deref()
                == Some("NewReplicaSetAvailable");
        done.then_some(d)
    })
    .await
}

async fn events(cluster: &Cluster, reason: &str) -> Vec<String> {
    cluster
        .events(NS, reason)
        .await
        .into_iter()
        .filter_map(|e| e.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_makes_a_replica_set_per_template_hash_and_its_pods() {
    let (cluster, deployments, rss) = start().await;
    let d = cluster
        .create(&deployments, web("web", 2, "nginx:1", json!(null)))
        .await;
    let rs = rs_with_image(&rss, &deployments, "web", "nginx:1").await;
    let hash = rs
        .labels()
        .get(HASH)
        .cloned()
        .expect("hash label on the replica set");
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let spec = rs.spec.clone().expect("spec");
    assert_eq!(
        spec.selector
            .match_labels
            .as_ref()
            .and_then(|m| m.get(HASH)),
        Some(&hash)
    );
    let template_labels = spec
        .template
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .expect("labels");
    assert_eq!(template_labels.get(HASH), Some(&hash));
    assert_eq!(template_labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(annotation(&rs, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(&rs, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("2")
    );
    // Default maxSurge 25% of 2 rounds up to 1.
    assert_eq!(
        annotation(&rs, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(&rs, "kubernetes.io/change-cause").as_deref(),
        Some("deploy nginx:1")
    );
    assert_eq!(controller_of(&rs.metadata).map(|r| r.uid.clone()), d.uid());

    let pods = eventually("2 pods with the hash", WAIT, || async {
        let pods = cluster.pods(NS, &format!("app=web,{HASH}={hash}")).await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    assert!(pods
        .iter()
        .all(|p| p.name_any().starts_with(&format!("web-{hash}-"))));

    let d = complete_rollout(&cluster, &deployments, "web").await;
    let s = d.status.clone().expect("status");
    assert_eq!(
        (s.ready_replicas, s.unavailable_replicas),
        (Some(2), Some(0))
    );
    let available = condition(&d, "Available").expect("Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("1"));
    let scaled = events(&cluster, "ScalingReplicaSet").await;
    assert!(
        scaled
            .iter()
            .any(|m| m == &format!("Scaled up replica set web-{hash} to 2")),
        "{scaled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_surge_one_never_drops_below_the_replica_count() {
    let (cluster, deployments, rss) = start().await;
    cluster
        .create(&deployments, web("web", 3, "nginx:1", surge_one()))
        .await;
    complete_rollout(&cluster, &deployments, "web").await;
    let old = rs_with_image(&rss, &deployments, "web", "nginx:1").await;

    set_image(&deployments, "web", "nginx:2").await;
    let new = rs_with_image(&rss, &deployments, "web", "nginx:2").await;
    let new_hash = new.labels().get(HASH).cloned().expect("hash");
    assert_ne!(Some(&new_hash), old.labels().get(HASH));

    // Walk the rollout: at every observed step at most 4 pods exist and at least 3 are
    // ready; the test makes one new pod ready at a time.
    let deadline = Instant::now() + WAIT;
    let mut steps = 0;
    loop {
        let pods = cluster.pods(NS, "app=web").await;
        let ready = pods.iter().filter(|p| is_pod_ready(p)).count();
        assert!(
            pods.len() <= 4,
            "{} pods exist (replicas 3 + surge 1)",
            pods.len()
        );
        assert!(ready >= 3, "only {ready} pods ready during the rollout");
        let new_pods: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.labels().get(HASH) == Some(&new_hash))
            .collect();
        if pods.len() == 3 && new_pods.len() == 3 && ready == 3 {
            break;
        }
        if let Some(p) = new_pods.iter().find(|p| !is_pod_ready(p)) {
            cluster.set_pod_ready(NS, &p.name_any()).await;
            steps += 1;
        }
        assert!(
            Instant::now() < deadline,
            "rollout did not finish: {} pods, {ready} ready",
            pods.len()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(steps, 3, "each new pod was made ready once");
    let d = complete_rollout(&cluster, &deployments, "web").await;
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("2"));
    let old = rss
        .get(&old.name_any())
        .await
        .expect("old replica set kept as history");
    assert_eq!(replicas(&old), 0);
    let new = rss.get(&new.name_any()).await.expect("new replica set");
    assert_eq!(replicas(&new), 3);
    assert_eq!(annotation(&new, REVISION).as_deref(), Some("2"));
    assert_eq!(
        annotation(&new, "kubernetes.io/change-cause").as_deref(),
        Some("deploy nginx:2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_starting_new_ones() {
    let (cluster, deployments, rss) = start().await;
    cluster
        .create(
            &deployments,
            web("db", 2, "postgres:15", json!({"type": "Recreate"})),
        )
        .await;
    complete_rollout(&cluster, &deployments, "db").await;
    set_image(&deployments, "db", "postgres:16").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let pods = cluster.pods(NS, "app=db").await;
        let images: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.spec.as_ref()?.containers.first()?.image.clone())
            .collect();
        assert!(images.len() <= 1, "old and new pods at once: {images:?}");
        if pods.len() == 2 && images.contains("postgres:16") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recreate did not finish: {images:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    complete_rollout(&cluster, &deployments, "db").await;
    let old = rs_with_image(&rss, &deployments, "db", "postgres:15").await;
    assert_eq!(replicas(&old), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_a_rollout_and_resume_continues_it() {
    let (cluster, deployments, rss) = start().await;
    cluster
        .create(&deployments, web("web", 3, "nginx:1", surge_one()))
        .await;
    complete_rollout(&cluster, &deployments, "web").await;
    let old = rs_with_image(&rss, &deployments, "web", "nginx:1").await;
    set_image(&deployments, "web", "nginx:2").await;
    let new = rs_with_image(&rss, &deployments, "web", "nginx:2").await;
    assert_eq!(replicas(&new), 1, "the surge pod");

    patch_spec(&deployments, "web", json!({"paused": true})).await;
    let paused = eventually("Progressing=Unknown DeploymentPaused", WAIT, || async {
        let d = deployments.get("web").await.ok()?;
        let c = condition(&d, "Progressing")?;
        (c.reason.as_deref() == Some("DeploymentPaused") && c.status == "Unknown").then_some(d)
    })
    .await;
    assert_eq!(
        paused.status.as_ref().and_then(|s| s.observed_generation),
        paused.metadata.generation
    );

    // The new pod becomes ready; a running rollout would now scale the old set down.
    let new_pod = eventually("the new pod", WAIT, || async {
        cluster
            .pods(NS, &format!("app=web,{HASH}={}", new.labels().get(HASH)?))
            .await
            .into_iter()
            .next()
    })
    .await;
    cluster.set_pod_ready(NS, &new_pod.name_any()).await;
    eventually("the paused deployment sees 4 available", WAIT, || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.available_replicas == Some(4)).then_some(())
    })
    .await;
    assert_eq!(
        replicas(&rss.get(&old.name_any()).await.expect("old")),
        3,
        "paused: no scale-down"
    );
    assert_eq!(
        replicas(&rss.get(&new.name_any()).await.expect("new")),
        1,
        "paused: no scale-up"
    );

    patch_spec(&deployments, "web", json!({"paused": false})).await;
    eventually(
        "Progressing reason DeploymentResumed or later",
        WAIT,
        || async {
            let d = deployments.get("web").await.ok()?;
            let c = condition(&d, "Progressing")?;
            (c.reason.as_deref() != Some("DeploymentPaused")).then_some(())
        },
    )
    .await;
    complete_rollout(&cluster, &deployments, "web").await;
    assert_eq!(replicas(&rss.get(&old.name_any()).await.expect("old")), 0);
    assert_eq!(replicas(&rss.get(&new.name_any()).await.expect("new")), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_applies_while_paused() {
    let (cluster, deployments, rss) = start().await;
    cluster
        .create(&deployments, web("web", 2, "nginx:1", surge_one()))
        .await;
    complete_rollout(&cluster, &deployments, "web").await;
    patch_spec(&deployments, "web", json!({"paused": true})).await;
    // A new template while paused makes no new replica set; a new size is applied.
    set_image(&deployments, "web", "nginx:2").await;
    patch_spec(&deployments, "web", json!({"replicas": 4})).await;
    let rs = rs_with_image(&rss, &deployments, "web", "nginx:1").await;
    eventually("old replica set scaled to 4", WAIT, || async {
        let rs = rss.get(&rs.name_any()).await.ok()?;
        (replicas(&rs) == 4).then_some(())
    })
    .await;
    let d = deployments.get("web").await.expect("deployment");
    assert_eq!(
        owned_rss(&rss, &d).await.len(),
        1,
        "no rollout while paused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_reuses_the_old_replica_set_and_bumps_its_revision() {
    let (cluster, deployments, rss) = start().await;
    cluster
        .create(&deployments, web("web", 2, "nginx:1", surge_one()))
        .await;
    complete_rollout(&cluster, &deployments, "web").await;
    let first = rs_with_image(&rss, &deployments, "web", "nginx:1").await;
    set_image(&deployments, "web", "nginx:2").await;
    complete_rollout(&cluster, &deployments, "web").await;

    // `rollout undo`: the template of revision 1 again.
    set_image(&deployments, "web", "nginx:1").await;
    let d = complete_rollout(&cluster, &deployments, "web").await;
    let sets = owned_rss(&rss, &d).await;
    assert_eq!(
        sets.len(),
        2,
        "no third replica set: {:?}",
        sets.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    let reused = rss.get(&first.name_any()).await.expect("first replica set");
    assert_eq!(replicas(&reused), 2);
    assert_eq!(annotation(&reused, REVISION).as_deref(), Some("3"));
    assert_eq!(
        annotation(&reused, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    assert_eq!(d.annotations().get(REVISION).map(String::as_str), Some("3"));
    let second = sets
        .iter()
        .find(|r| image_of(r) == "nginx:2")
        .expect("second");
    assert_eq!(replicas(second), 0);
    assert_eq!(annotation(second, REVISION).as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_history_limit_prunes_the_oldest_empty_replica_sets() {
    let (cluster, deployments, rss) = start().await;
    let mut obj = web("web", 1, "nginx:1", surge_one());
    obj["spec"]["revisionHistoryLimit"] = json!(1);
    cluster.create(&deployments, obj).await;
    complete_rollout(&cluster, &deployments, "web").await;
    for image in ["nginx:2", "nginx:3"] {
        set_image(&deployments, "web", image).await;
        complete_rollout(&cluster, &deployments, "web").await;
    }
    let images = eventually("one old replica set kept", WAIT, || async {
        let d = deployments.get("web").await.ok()?;
        let sets = owned_rss(&rss, &d).await;
        let images: BTreeSet<String> = sets.iter().map(image_of).collect();
        (sets.len() == 2).then_some(images)
    })
    .await;
    assert_eq!(
        images,
        BTreeSet::from(["nginx:2".to_string(), "nginx:3".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_within_the_deadline_sets_progress_deadline_exceeded() {
    let (cluster, deployments, _rss) = start().await;
    let mut obj = web("stuck", 2, "nginx:1", surge_one());
    obj["spec"]["progressDeadlineSeconds"] = json!(30);
    cluster.create(&deployments, obj).await;
    // Pods are created but never become ready; wait until the status settles.
    eventually("2 pods counted", WAIT, || async {
        let d = deployments.get("stuck").await.ok()?;
        let s = d.status.clone()?;
        let c = condition(&d, "Progressing")?;
        (s.updated_replicas == Some(2) && s.replicas == Some(2) && c.status == "True").then_some(())
    })
    .await;
    cluster.clock.advance(Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = deployments.get("stuck").await.expect("deployment");
    assert_eq!(
        condition(&d, "Progressing").map(|c| c.status).as_deref(),
        Some("True"),
        "20 s < 30 s"
    );
    cluster.clock.advance(Duration::from_secs(11));
    let cond = eventually("ProgressDeadlineExceeded", WAIT, || async {
        let d = deployments.get("stuck").await.ok()?;
        condition(&d, "Progressing").filter(|c| c.status == "False")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("ProgressDeadlineExceeded"));
    let d = deployments.get("stuck").await.expect("deployment");
    let available = condition(&d, "Available").expect("Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_holds_availability_until_the_clock_passes_it() {
    let (cluster, deployments, _rss) = start().await;
    let mut obj = web("slow", 2, "nginx:1", surge_one());
    obj["spec"]["minReadySeconds"] = json!(20);
    cluster.create(&deployments, obj).await;
    let pods = eventually("2 pods", WAIT, || async {
        let pods = cluster.pods(NS, "app=slow").await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    for p in &pods {
        cluster.set_pod_ready(NS, &p.name_any()).await;
    }
    let d = eventually("ready but not available", WAIT, || async {
        let d = deployments.get("slow").await.ok()?;
        let s = d.status.clone()?;
        (s.ready_replicas == Some(2) && s.available_replicas == Some(0)).then_some(d)
    })
    .await;
    assert_eq!(
        condition(&d, "Available").map(|c| c.status).as_deref(),
        Some("False")
    );
    cluster.clock.advance(Duration::from_secs(20));
    eventually("available after minReadySeconds", WAIT, || async {
        let d = deployments.get("slow").await.ok()?;
        (d.status.as_ref()?.available_replicas == Some(2)).then_some(())
    })
    .await;
    eventually("Available=True", WAIT, || async {
        let d = deployments.get("slow").await.ok()?;
        (condition(&d, "Available")?.status == "True").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_zero_fenceposts_are_refused_without_touching_anything() {
    let (cluster, deployments, rss) = start().await;
    // The API server may refuse this itself; if it accepts, the controller must not act.
    let obj: Deployment = serde_json::from_value(web(
        "bad",
        2,
        "nginx:1",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
    ))
    .expect("deployment json");
    match deployments.create(&Default::default(), &obj).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{s:?}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(d) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(owned_rss(&rss, &d).await.is_empty());
        }
    }
    let _ = cluster;
}
