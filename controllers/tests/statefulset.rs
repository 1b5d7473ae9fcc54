//! The StatefulSet controller against a real API server: ordered creation and deletion,
//! claims that outlive scale-down and come back to the same pod, Parallel, and a rolling
//! update held back by a partition.

mod support;

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::{json, Value};
use skiff_controllers::statefulset;
use support::{eventually, Cluster, WAIT};

const NS: &str = "default";

fn web(replicas: i32, policy: &str) -> Value {
    json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    })
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

async fn wait_for_pods(cluster: &Cluster, want: &[&str]) -> Vec<Pod> {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(&format!("pods {want:?}"), WAIT, || async {
        let pods = cluster.pods(NS, "app=web").await;
        (names(&pods) == want).then_some(pods)
    })
    .await
}

async fn claim_uid(cluster: &Cluster, name: &str) -> String {
    cluster
        .api::<PersistentVolumeClaim>(NS)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("claim {name}: {e}"))
        .uid()
        .unwrap_or_default()
}

async fn scale(cluster: &Cluster, replicas: i32) {
    cluster
        .api::<StatefulSet>(NS)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale web");
}

async fn wait_for_status(cluster: &Cluster, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let sets = cluster.api::<StatefulSet>(NS);
    eventually(what, WAIT, || async {
        let set = sets.get("web").await.ok()?;
        let status = serde_json::to_value(set.status?).ok()?;
        ok(&status).then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_pods_with_claims_that_survive_scale_down() {
    let mut cluster = Cluster::new().await;
    cluster.run(&[statefulset::start]);
    let sets = cluster.api::<StatefulSet>(NS);
    cluster.create(&sets, web(3, "OrderedReady")).await;

    // Only web-0 until it is ready; its claim exists before it.
    let pods = wait_for_pods(&cluster, &["web-0"]).await;
    let p0 = &pods[0];
    let spec = p0.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let labels = p0.labels();
    assert_eq!(labels[statefulset::POD_NAME_LABEL], "web-0");
    assert_eq!(labels[statefulset::POD_INDEX_LABEL], "0");
    assert!(labels[statefulset::REVISION_LABEL].starts_with("web-"));
    let claim = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "data")
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .expect("a claim volume");
    assert_eq!(claim.claim_name, "data-web-0");
    claim_uid(&cluster, "data-web-0").await;
    // Created but not ready: web-1 must not appear. The status the controller writes after
    // seeing web-0 is proof it looked.
    wait_for_status(&cluster, "status with one replica", |s| s["replicas"] == 1).await;
    assert_eq!(names(&cluster.pods(NS, "app=web").await), ["web-0"]);

    cluster.set_pod_ready(NS, "web-0").await;
    wait_for_pods(&cluster, &["web-0", "web-1"]).await;
    wait_for_status(&cluster, "two replicas", |s| s["replicas"] == 2).await;
    assert_eq!(
        names(&cluster.pods(NS, "app=web").await),
        ["web-0", "web-1"]
    );
    cluster.set_pod_ready(NS, "web-1").await;
    wait_for_pods(&cluster, &["web-0", "web-1", "web-2"]).await;
    cluster.set_pod_ready(NS, "web-2").await;
    let status = wait_for_status(&cluster, "three ready", |s| s["readyReplicas"] == 3).await;
    assert_eq!(status["currentReplicas"], 3);
    assert_eq!(status["updatedReplicas"], 3);
    assert_eq!(status["availableReplicas"], 3);
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    assert_eq!(status["observedGeneration"], 1);
    let uids = [
        claim_uid(&cluster, "data-web-0").await,
        claim_uid(&cluster, "data-web-1").await,
        claim_uid(&cluster, "data-web-2").await,
    ];

    // Scale down 3 → 1: web-2 goes first, then web-1; the claims stay.
    let deleted = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = deleted.clone();
    let (listed_tx, listed) = tokio::sync::oneshot::channel::<()>();
    let mut listed_tx = Some(listed_tx);
    let watch = tokio::spawn(
        watcher(cluster.api::<Pod>(NS), watcher::Config::default()).for_each(move |ev| {
            match ev {
                Ok(watcher::Event::Delete(p)) => seen.lock().unwrap().push(p.name_any()),
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
            futures::future::ready(())
        }),
    );
    // The watch must be running before the scale-down.
    listed.await.expect("pod watch listed");
    scale(&cluster, 1).await;
    wait_for_pods(&cluster, &["web-0"]).await;
    eventually("both deletions seen", WAIT, || async {
        (deleted.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    watch.abort();
    assert_eq!(*deleted.lock().unwrap(), ["web-2", "web-1"]);
    for (i, uid) in uids.iter().enumerate() {
        assert_eq!(
            &claim_uid(&cluster, &format!("data-web-{i}")).await,
            uid,
            "claim {i} kept"
        );
    }

    // Scale up again: the same claims come back to the same pods.
    scale(&cluster, 3).await;
    let pods = wait_for_pods(&cluster, &["web-0", "web-1"]).await;
    let claim_of = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|v| v.iter().find(|v| v.name == "data"))
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
    };
    assert_eq!(claim_of(&pods[1]).as_deref(), Some("data-web-1"));
    cluster.set_pod_ready(NS, "web-1").await;
    wait_for_pods(&cluster, &["web-0", "web-1", "web-2"]).await;
    for (i, uid) in uids.iter().enumerate() {
        assert_eq!(
            &claim_uid(&cluster, &format!("data-web-{i}")).await,
            uid,
            "claim {i} reused"
        );
    }
    let claims = cluster
        .api::<PersistentVolumeClaim>(NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(claims.items.len(), 3, "no extra claims");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_all_pods_at_once_and_replaces_failed_ones() {
    let mut cluster = Cluster::new().await;
    cluster.run(&[statefulset::start]);
    let sets = cluster.api::<StatefulSet>(NS);
    cluster.create(&sets, web(3, "Parallel")).await;
    let pods = wait_for_pods(&cluster, &["web-0", "web-1", "web-2"]).await;
    for i in 0..3 {
        claim_uid(&cluster, &format!("data-web-{i}")).await;
    }

    // A failed pod is deleted and made again under its name.
    let old_uid = pods[1].uid().unwrap();
    cluster.set_pod_phase(NS, "web-1", "Failed").await;
    eventually("web-1 replaced", WAIT, || async {
        let p = cluster.api::<Pod>(NS).get("web-1").await.ok()?;
        (p.uid().as_deref() != Some(old_uid.as_str())).then_some(())
    })
    .await;

    // Deleted by someone else: made again too.
    let old_uid = pods[2].uid().unwrap();
    cluster
        .api::<Pod>(NS)
        .delete("web-2", &Default::default())
        .await
        .unwrap();
    eventually("web-2 recreated", WAIT, || async {
        let p = cluster.api::<Pod>(NS).get("web-2").await.ok()?;
        (p.uid().as_deref() != Some(old_uid.as_str())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_partition_updates_only_the_pods_above_it() {
    let mut cluster = Cluster::new().await;
    cluster.run(&[statefulset::start]);
    let sets = cluster.api::<StatefulSet>(NS);
    cluster.create(&sets, web(3, "Parallel")).await;
    let before = wait_for_pods(&cluster, &["web-0", "web-1", "web-2"]).await;
    for p in &before {
        cluster.set_pod_ready(NS, &p.name_any()).await;
    }
    let status = wait_for_status(&cluster, "three ready", |s| s["readyReplicas"] == 3).await;
    let old_rev = status["updateRevision"].as_str().unwrap().to_string();

    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.28",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}
        }})),
    )
    .await
    .unwrap();

    let rev_of = |p: &Pod| p.labels()[statefulset::REVISION_LABEL].clone();
    let new_web2 = eventually("web-2 at the new revision", WAIT, || async {
        let p = cluster.api::<Pod>(NS).get("web-2").await.ok()?;
        (rev_of(&p) != old_rev).then_some(p)
    })
    .await;
    let image = &new_web2.spec.as_ref().unwrap().containers[0].image;
    assert_eq!(image.as_deref(), Some("nginx:1.28"));
    cluster.set_pod_ready(NS, "web-2").await;
    let status = wait_for_status(&cluster, "web-2 updated and ready", |s| {
        s["updatedReplicas"] == 1 && s["readyReplicas"] == 3 && s["observedGeneration"] == 2
    })
    .await;
    assert_eq!(status["currentRevision"], old_rev.as_str());
    assert_ne!(status["updateRevision"], old_rev.as_str());
    assert_eq!(status["currentReplicas"], 2);

    // web-0 and web-1 are below the partition: untouched.
    let after = cluster.pods(NS, "app=web").await;
    for i in 0..2 {
        assert_eq!(after[i].uid(), before[i].uid(), "web-{i} kept");
        assert_eq!(rev_of(&after[i]), old_rev);
    }

    // Two ControllerRevisions, numbered in order.
    let revisions = cluster
        .api::<k8s_openapi::api::apps::v1::ControllerRevision>(NS)
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut numbered: Vec<(i64, String)> = revisions
        .items
        .iter()
        .map(|r| (r.revision, r.name_any()))
        .collect();
    numbered.sort();
    assert_eq!(numbered.len(), 2);
    assert_eq!(numbered[0].1, old_rev);
    assert_eq!(numbered[1].0, 2);
}
