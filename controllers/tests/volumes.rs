//! The PersistentVolume binder against a real API server: matching, reclaim policies, and
//! local-path provisioning on the node of the claim's first consumer.

mod support;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_controllers::volumes;
use support::{eventually, Cluster, WAIT};

const NS: &str = "default";

async fn volume(cluster: &Cluster, name: &str, size: &str, class: &str, policy: &str) {
    cluster
        .create(
            &cluster.all::<PersistentVolume>(),
            json!({
                "metadata": {"name": name},
                "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                         "storageClassName": class, "persistentVolumeReclaimPolicy": policy,
                         "hostPath": {"path": format!("/tmp/{name}")}}
            }),
        )
        .await;
}

async fn claim(
    cluster: &Cluster,
    name: &str,
    size: &str,
    class: Option<&str>,
) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    cluster
        .create(
            &cluster.api::<PersistentVolumeClaim>(NS),
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await
}

async fn bound_claim(cluster: &Cluster, name: &str) -> PersistentVolumeClaim {
    let claims = cluster.api::<PersistentVolumeClaim>(NS);
    eventually(&format!("claim {name} bound"), WAIT, || async {
        let c = claims.get(name).await.ok()?;
        (c.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(c)
    })
    .await
}

async fn volume_phase(cluster: &Cluster, name: &str, phase: &str) -> PersistentVolume {
    let vols = cluster.all::<PersistentVolume>();
    eventually(&format!("volume {name} {phase}"), WAIT, || async {
        let v = vols.get(name).await.ok()?;
        (v.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(v)
    })
    .await
}

async fn volume_gone(cluster: &Cluster, name: &str) {
    let vols = cluster.all::<PersistentVolume>();
    eventually(&format!("volume {name} deleted"), WAIT, || async {
        matches!(vols.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
}

async fn event_for(cluster: &Cluster, object: &str, reason: &str) -> Event {
    let events = cluster.api::<Event>(NS);
    eventually(&format!("{reason} event for {object}"), WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some(object) && e.reason.as_deref() == Some(reason)
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_to_the_smallest_fitting_volume_and_retain_releases() {
    let mut cluster = Cluster::new().await;
    volume(&cluster, "small", "1Gi", "manual", "Retain").await;
    volume(&cluster, "medium", "2Gi", "manual", "Retain").await;
    volume(&cluster, "large", "10Gi", "manual", "Retain").await;
    volume(&cluster, "other-class", "2Gi", "fast", "Retain").await;
    cluster.run(&[volumes::start]);
    let created = claim(&cluster, "data", "1500Mi", Some("manual")).await;

    let bound = bound_claim(&cluster, "data").await;
    assert_eq!(
        bound.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("medium")
    );
    let status = bound.status.as_ref().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["storage"].0, "2Gi");
    assert_eq!(
        status.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    let annotations = bound.annotations();
    assert_eq!(annotations[volumes::BIND_COMPLETED], "yes");
    assert_eq!(annotations[volumes::BOUND_BY_CONTROLLER], "yes");

    let pv = volume_phase(&cluster, "medium", "Bound").await;
    let claim_ref = pv.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(claim_ref.name.as_deref(), Some("data"));
    assert_eq!(claim_ref.uid, created.uid());
    assert_eq!(pv.annotations()[volumes::BOUND_BY_CONTROLLER], "yes");
    volume_phase(&cluster, "small", "Available").await;
    volume_phase(&cluster, "large", "Available").await;

    // Retain: the volume is Released and keeps its claimRef.
    cluster
        .api::<PersistentVolumeClaim>(NS)
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    let released = volume_phase(&cluster, "medium", "Released").await;
    assert!(released.spec.unwrap().claim_ref.is_some());
    // A new claim does not get the released volume.
    claim(&cluster, "again", "1500Mi", Some("manual")).await;
    let again = bound_claim(&cluster, "again").await;
    assert_eq!(again.spec.unwrap().volume_name.as_deref(), Some("large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_without_a_matching_class_stays_pending_with_an_event() {
    let mut cluster = Cluster::new().await;
    volume(&cluster, "slow", "5Gi", "slow", "Retain").await;
    cluster.run(&[volumes::start]);
    claim(&cluster, "data", "1Gi", Some("")).await;
    let event = event_for(&cluster, "data", "FailedBinding").await;
    assert_eq!(
        event.message.as_deref(),
        Some("no persistent volumes available for this claim and no storage class is set")
    );
    let c = cluster
        .api::<PersistentVolumeClaim>(NS)
        .get("data")
        .await
        .unwrap();
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Pending"));
    assert!(c.spec.unwrap().volume_name.is_none());
    let pv = cluster.all::<PersistentVolume>().get("slow").await.unwrap();
    assert!(pv.spec.unwrap().claim_ref.is_none());

    // A class that does not exist: pending, and the event says so.
    claim(&cluster, "gold", "1Gi", Some("gold")).await;
    let event = event_for(&cluster, "gold", "ProvisioningFailed").await;
    assert!(event.message.unwrap().contains("\"gold\" not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_recycle_policies_after_the_claim_is_gone() {
    let mut cluster = Cluster::new().await;
    volume(&cluster, "doomed", "1Gi", "a", "Delete").await;
    volume(&cluster, "reused", "1Gi", "b", "Recycle").await;
    cluster.run(&[volumes::start]);
    claim(&cluster, "first", "1Gi", Some("a")).await;
    claim(&cluster, "second", "1Gi", Some("b")).await;
    bound_claim(&cluster, "first").await;
    bound_claim(&cluster, "second").await;
    volume_phase(&cluster, "reused", "Bound").await;

    let claims = cluster.api::<PersistentVolumeClaim>(NS);
    claims
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    claims
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    volume_gone(&cluster, "doomed").await;
    let vols = cluster.all::<PersistentVolume>();
    let recycled = eventually("reused available again", WAIT, || async {
        let v = vols.get("reused").await.ok()?;
        (v.status.as_ref()?.phase.as_deref() == Some("Available")
            && v.spec.as_ref()?.claim_ref.is_none())
        .then_some(v)
    })
    .await;
    assert!(!recycled
        .annotations()
        .contains_key(volumes::BOUND_BY_CONTROLLER));
    // And it binds again.
    claim(&cluster, "third", "1Gi", Some("b")).await;
    let third = bound_claim(&cluster, "third").await;
    assert_eq!(third.spec.unwrap().volume_name.as_deref(), Some("reused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_path_provisions_on_the_node_of_the_first_consumer() {
    let mut cluster = Cluster::new().await;
    // The server's default class.
    let class = cluster
        .all::<StorageClass>()
        .get("local-path")
        .await
        .expect("default class");
    assert_eq!(class.provisioner, volumes::LOCAL_PATH_PROVISIONER);
    assert_eq!(
        class.volume_binding_mode.as_deref(),
        Some("WaitForFirstConsumer")
    );
    assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(
        class.annotations()[volumes::DEFAULT_CLASS_ANNOTATION],
        "true"
    );

    cluster.add_node("n1", "4", "8Gi", json!({})).await;
    cluster.run(&[volumes::start]);
    // No class given: the default class is assigned, then the claim waits for a consumer.
    let created = claim(&cluster, "data", "3Gi", None).await;
    let uid = created.uid().unwrap();
    event_for(&cluster, "data", "WaitForFirstConsumer").await;
    let claims = cluster.api::<PersistentVolumeClaim>(NS);
    let c = claims.get("data").await.unwrap();
    assert_eq!(
        c.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("local-path")
    );
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Pending"));

    // A pod using it lands on n1.
    cluster
        .create(
            &cluster.api::<Pod>(NS),
            json!({"metadata": {"name": "user"}, "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "busybox",
                                "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
            }}),
        )
        .await;
    let bound = bound_claim(&cluster, "data").await;
    let pv_name = format!("pvc-{uid}");
    assert_eq!(
        bound.spec.as_ref().unwrap().volume_name.as_deref(),
        Some(pv_name.as_str())
    );
    assert_eq!(bound.annotations()[volumes::SELECTED_NODE], "n1");
    let pv = volume_phase(&cluster, &pv_name, "Bound").await;
    let spec = pv.spec.as_ref().unwrap();
    let terms = &spec
        .node_affinity
        .as_ref()
        .unwrap()
        .required
        .as_ref()
        .unwrap()
        .node_selector_terms;
    let expr = &terms[0].match_expressions.as_ref().unwrap()[0];
    assert_eq!(expr.key, "kubernetes.io/hostname");
    assert_eq!(expr.operator, "In");
    assert_eq!(expr.values.as_deref(), Some(&["n1".to_string()][..]));
    let host_path = spec.host_path.as_ref().unwrap();
    assert_eq!(
        host_path.path,
        format!("/var/lib/skiff/local-path/pvc-{uid}_default_data")
    );
    assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));
    assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "3Gi");
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    assert_eq!(
        pv.annotations()[volumes::PROVISIONED_BY],
        volumes::LOCAL_PATH_PROVISIONER
    );
    event_for(&cluster, "data", "ProvisioningSucceeded").await;

    // Delete policy: the claim goes, the volume goes.
    cluster
        .api::<Pod>(NS)
        .delete("user", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    volume_gone(&cluster, &pv_name).await;
}
