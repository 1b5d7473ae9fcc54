//! Endpoints and EndpointSlices follow the pods behind a Service; the garbage collector
//! removes dependents whose owners are gone.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use skiff_controllers::{endpoints, gc};
use support::{eventually, Cluster, WAIT};

fn ready_ips(ep: &Endpoints) -> Vec<String> {
    let mut ips: Vec<String> = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone()))
        .collect();
    ips.sort();
    ips
}

async fn pod_with_ip(c: &Cluster, name: &str, ip: &str) {
    let pods = c.api::<Pod>("default");
    c.create(
        &pods,
        json!({"metadata": {"name": name, "labels": {"app": "web"}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
                        "ports": [{"name": "http", "containerPort": 8080}]}]}}),
    )
    .await;
    c.set_pod_ready("default", name).await;
    let status = json!({"status": {"podIP": ip}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("set pod IP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_ready_pods_and_label_changes() {
    let mut c = Cluster::new().await;
    c.run(&[endpoints::start]);
    let services = c.api::<Service>("default");
    c.create(
        &services,
        json!({"metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    pod_with_ip(&c, "a", "10.244.1.2").await;
    pod_with_ip(&c, "b", "10.244.1.3").await;

    let eps = c.api::<Endpoints>("default");
    let ep = eventually("both pods in the endpoints", WAIT, || async {
        let ep = eps.get_opt("web").await.ok()??;
        (ready_ips(&ep) == ["10.244.1.2", "10.244.1.3"]).then_some(ep)
    })
    .await;
    let port = &ep.subsets.as_ref().unwrap()[0].ports.as_ref().unwrap()[0];
    assert_eq!(
        port.port, 8080,
        "the named target port resolves to the container port"
    );

    let slices = c.api::<EndpointSlice>("default");
    eventually("an EndpointSlice with both pods", WAIT, || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .ok()?;
        let n: usize = list.items.iter().map(|s| s.endpoints.len()).sum();
        (list.items.len() == 1 && n == 2).then_some(())
    })
    .await;

    // Relabelling a pod takes it out of the Service.
    c.api::<Pod>("default")
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"app": "other"}}})),
        )
        .await
        .unwrap();
    eventually("the relabelled pod out of the endpoints", WAIT, || async {
        let ep = eps.get_opt("web").await.ok()??;
        (ready_ips(&ep) == ["10.244.1.2"]).then_some(())
    })
    .await;

    // A deleted pod leaves too (pods without a node daemon go at once with grace 0).
    c.api::<Pod>("default")
        .delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually("the deleted pod out of the endpoints", WAIT, || async {
        let ep = eps.get_opt("web").await.ok()??;
        ready_ips(&ep).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_of_a_vanished_owner_are_collected() {
    let mut c = Cluster::new().await;
    c.run(&[gc::start]);
    let cms = c.api::<ConfigMap>("default");
    let owner: ConfigMap = c.create(&cms, json!({"metadata": {"name": "owner"}})).await;
    let owner_ref = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                           "uid": owner.metadata.uid.clone().unwrap()});
    let ghost_ref = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
                           "uid": "00000000-0000-0000-0000-000000000000"});
    let pods = c.api::<Pod>("default");
    let spec = json!({"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]});
    c.create(
        &pods,
        json!({"metadata": {"name": "orphaned", "ownerReferences": [ghost_ref]}, "spec": spec}),
    )
    .await;
    c.create(
        &pods,
        json!({"metadata": {"name": "half", "ownerReferences": [owner_ref, ghost_ref]}, "spec": spec}),
    )
    .await;
    eventually(
        "the pod whose only owner never existed to go",
        WAIT,
        || async {
            c.clock.advance(std::time::Duration::from_secs(20));
            let p = pods.get_opt("orphaned").await.ok()?;
            match p {
                None => Some(()),
                Some(p) if p.metadata.deletion_timestamp.is_some() => Some(()),
                Some(_) => None,
            }
        },
    )
    .await;
    let half = eventually("the dangling reference dropped", WAIT, || async {
        c.clock.advance(std::time::Duration::from_secs(20));
        let p = pods.get("half").await.ok()?;
        (p.metadata.owner_references.as_ref()?.len() == 1).then_some(p)
    })
    .await;
    assert_eq!(half.metadata.owner_references.unwrap()[0].name, "owner");
}
