//! Two skiff-control processes on one etcd: exactly one runs the control loops, and the
//! other takes over within the lease duration when the leader dies (SIGKILL) — or at once
//! when it shuts down cleanly and gives the Lease up.

mod common;

use std::time::{Duration, Instant};

use common::etcd::{etcd_or_skip, start_etcd};
use common::{client_for, eventually, free_port, ServerProcess};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::Api;

const LEASE: Duration = Duration::from_secs(3);

fn control_plane(dir: &std::path::Path, etcd: &str, identity: &str) -> ServerProcess {
    ServerProcess::start(
        dir,
        free_port(),
        &[
            "--store",
            &format!("etcd={etcd}"),
            "--leader-elect-lease-duration",
            "3s",
            "--leader-elect-renew-deadline",
            "2s",
            "--leader-elect-retry-period",
            "500ms",
            "--leader-elect-identity",
            identity,
        ],
    )
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("skiff-control")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leader_dies() {
    let Some(bin) = etcd_or_skip() else {
        return;
    };
    let etcd = start_etcd(&bin);
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = control_plane(dirs.0.path(), &etcd.endpoint, "control-a");
    a.wait_ready().await;
    let client_a = client_for(&dirs.0.path().join("admin.kubeconfig")).await;
    let leases: Api<Lease> = Api::namespaced(client_a, "kube-system");
    eventually("control-a to lead", Duration::from_secs(20), || async {
        (holder(&leases).await.as_deref() == Some("control-a")).then_some(())
    })
    .await;

    let mut b = control_plane(dirs.1.path(), &etcd.endpoint, "control-b");
    b.wait_ready().await;
    let client_b = client_for(&dirs.1.path().join("admin.kubeconfig")).await;
    let leases: Api<Lease> = Api::namespaced(client_b, "kube-system");
    // The standby respects a Lease that is being renewed: two lease durations later the
    // leader is still the same and has never changed hands.
    tokio::time::sleep(LEASE * 2).await;
    let lease = leases.get("skiff-control").await.expect("lease");
    let spec = lease.spec.expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("control-a"));
    assert_eq!(spec.lease_transitions, Some(0));

    let killed = Instant::now();
    a.kill9();
    eventually(
        "control-b to take over",
        Duration::from_secs(15),
        || async { (holder(&leases).await.as_deref() == Some("control-b")).then_some(()) },
    )
    .await;
    let failover = killed.elapsed();
    // The Lease runs out at most one lease duration after its last renewal; the standby
    // notices within a retry period (0.5 s) of that.
    assert!(
        failover < LEASE + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    let spec = leases.get("skiff-control").await.unwrap().spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(1));

    // The new leader runs the controllers: a ReplicaSet gets its pods.
    let client_b = client_for(&dirs.1.path().join("admin.kubeconfig")).await;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client_b.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "after-failover"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "failover"}},
                 "template": {"metadata": {"labels": {"app": "failover"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    replica_sets
        .create(&PostParams::default(), &rs)
        .await
        .expect("create replicaset");
    let pods: Api<Pod> = Api::namespaced(client_b, "default");
    eventually(
        "the new leader's ReplicaSet controller to create 2 pods",
        Duration::from_secs(20),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=failover"))
                .await
                .ok()?;
            (list.items.len() == 2).then_some(())
        },
    )
    .await;

    // A clean shutdown hands the Lease back at once.
    let pid = b.child.as_ref().expect("running").id();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(child) = b.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "control-b did not stop on SIGTERM");
    let mut c = control_plane(dirs.0.path(), &etcd.endpoint, "control-c");
    c.wait_ready().await;
    let client_c = client_for(&dirs.0.path().join("admin.kubeconfig")).await;
    let leases: Api<Lease> = Api::namespaced(client_c, "kube-system");
    let started = Instant::now();
    eventually("control-c to lead", Duration::from_secs(15), || async {
        (holder(&leases).await.as_deref() == Some("control-c")).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < LEASE,
        "a released Lease was taken only after {:?}",
        started.elapsed()
    );
}
