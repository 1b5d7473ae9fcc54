//! The API server against a real kube-rs client and raw HTTPS on loopback.

mod common;

use std::time::Duration;

use common::{eventually, ServerHttp, TestServer};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{json, Value};
use skiff_api::resources::{ResourceInfo, RESOURCES};

fn api_resource(r: &ResourceInfo) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(r.group, r.version, r.kind), r.plural)
}

fn dynamic(client: &kube::Client, r: &ResourceInfo, ns: &str) -> Api<DynamicObject> {
    let ar = api_resource(r);
    if r.namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

/// A minimal valid object of each kind.
fn sample(r: &ResourceInfo, name: &str) -> Value {
    let selector = json!({"matchLabels": {"app": "x"}});
    let body = match r.kind {
        "Namespace" | "ServiceAccount" | "Secret" | "LimitRange" | "Lease" | "NetworkPolicy" => {
            json!({})
        }
        "ConfigMap" => json!({"data": {"k": "v"}}),
        "Pod" => json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
        "Service" => json!({"spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
        "Endpoints" => {
            json!({"subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 80}]}]})
        }
        "Node" => json!({"spec": {}}),
        "Event" => {
            json!({"involvedObject": {"kind": "Pod", "name": "p", "namespace": "crud"}, "reason": "Test", "message": "m", "type": "Normal"})
        }
        "PersistentVolume" => {
            json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/pv"}}})
        }
        "PersistentVolumeClaim" => {
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        }
        "ResourceQuota" => json!({"spec": {"hard": {"pods": "100"}}}),
        "StorageClass" => json!({"provisioner": "example.com/sample"}),
        "ReplicationController" => {
            json!({"spec": {"replicas": 1, "selector": {"app": "x"}, "template": template()}})
        }
        "Deployment" | "ReplicaSet" => {
            json!({"spec": {"replicas": 1, "selector": selector, "template": template()}})
        }
        "DaemonSet" => json!({"spec": {"selector": selector, "template": template()}}),
        "StatefulSet" => {
            json!({"spec": {"serviceName": "x", "selector": selector, "template": template()}})
        }
        "ControllerRevision" => json!({"revision": 1, "data": {}}),
        "Job" => {
            json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
        }
        "CronJob" => {
            json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}})
        }
        "HorizontalPodAutoscaler" => {
            json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "maxReplicas": 3}})
        }
        "EndpointSlice" => {
            json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"]}]})
        }
        other => panic!("no sample for {other}"),
    };
    let mut obj = body;
    obj["apiVersion"] = json!(r.api_version());
    obj["kind"] = json!(r.kind);
    obj["metadata"] = json!({"name": name, "labels": {"sample": "yes"}});
    obj
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

#[tokio::test]
async fn crud_for_every_resource() {
    let server = TestServer::start().await;
    let client = server.client().await;
    create_namespace(&client, "crud").await;
    for r in RESOURCES {
        let api = dynamic(&client, r, "crud");
        let name = format!("s-{}", r.singular);
        let obj: DynamicObject = serde_json::from_value(sample(r, &name)).unwrap();
        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", r.kind));
        assert!(created.metadata.uid.is_some(), "{} has a uid", r.kind);
        assert!(created.metadata.creation_timestamp.is_some());
        let rv1 = created.metadata.resource_version.clone().unwrap();

        let got = api
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("get {}: {e}", r.kind));
        let got_rv = got.metadata.resource_version.clone().unwrap_or_default();
        if r.kind == "ResourceQuota" {
            // The server writes a quota's status (usage) in the background right after create.
            let revision = |rv: &str| rv.parse::<u64>().unwrap_or(0);
            assert!(
                revision(&got_rv) >= revision(&rv1),
                "{}: {got_rv} < {rv1}",
                r.kind
            );
        } else {
            assert_eq!(
                got_rv, rv1,
                "{}: the get returns the object as created",
                r.kind
            );
        }
        let listed = api
            .list(&ListParams::default().labels("sample=yes"))
            .await
            .unwrap();
        assert!(
            listed
                .items
                .iter()
                .any(|o| o.metadata.name.as_deref() == Some(&name)),
            "{} listed",
            r.kind
        );

        let patched = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"touched": "1"}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("patch {}: {e}", r.kind));
        assert_ne!(
            patched.metadata.resource_version.as_deref(),
            Some(rv1.as_str())
        );
        let mut current = patched.clone();
        let mut attempts = 0;
        loop {
            let mut replaced = current.clone();
            replaced.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
            match api.replace(&name, &PostParams::default(), &replaced).await {
                Ok(_) => break,
                // A quota's status may be written by the server between our read and write.
                Err(kube::Error::Api(e))
                    if e.code == 409 && r.kind == "ResourceQuota" && attempts < 5 =>
                {
                    attempts += 1;
                    current = api.get(&name).await.unwrap();
                }
                Err(e) => panic!("replace {}: {e}", r.kind),
            }
        }

        if r.kind == "Namespace" {
            continue; // namespace deletion has its own test
        }
        api.delete(&name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {}: {e}", r.kind));
        match api.get(&name).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 404, "{} gone", r.kind),
            other => panic!("{} still there after delete: {other:?}", r.kind),
        }
    }
}

#[tokio::test]
async fn stale_update_conflicts_and_generation_tracks_spec() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let mut first = created.clone();
    first.data = Some([("a".into(), "2".into())].into());
    cms.replace("c", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created.clone();
    stale.data = Some([("a".into(), "3".into())].into());
    match cms.replace("c", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "Conflict");
            assert!(
                e.message.contains("the object has been modified"),
                "{}",
                e.message
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }
    // A patch with a stale resourceVersion is a conflict too.
    let stale_rv = created.metadata.resource_version.clone().unwrap();
    let err = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale_rv}, "data": {"a": "4"}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 409),
        "{err:?}"
    );
    // A patch may not rename the object.
    let err = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"name": "renamed"}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 400 && e.message.contains("does not match the name on the URL")),
        "{err:?}"
    );

    let deploys = dynamic(
        &client,
        skiff_api::resources::resolve("deploy").unwrap(),
        "default",
    );
    let d: DynamicObject = serde_json::from_value(sample(
        skiff_api::resources::resolve("deploy").unwrap(),
        "web",
    ))
    .unwrap();
    let d = deploys.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        d.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    let d = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(
        d.metadata.generation,
        Some(2),
        "spec changes bump the generation"
    );
    // An update that changes nothing writes nothing.
    let same = deploys
        .replace("web", &PostParams::default(), &d)
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version, d.metadata.resource_version);
}

#[tokio::test]
async fn watch_from_a_revision_sees_exactly_the_later_events_in_order() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mk = |n: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}, "data": {"v": "0"}})).unwrap()
    };
    cms.create(&PostParams::default(), &mk("a")).await.unwrap();
    let b = cms.create(&PostParams::default(), &mk("b")).await.unwrap();
    let from = b.metadata.resource_version.clone().unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &mk("c")).await.unwrap();

    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &from)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Added(o)) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            Some(WatchEvent::Modified(o)) => {
                seen.push(format!("MODIFIED {}", o.metadata.name.unwrap()))
            }
            Some(WatchEvent::Deleted(o)) => {
                seen.push(format!("DELETED {}", o.metadata.name.unwrap()))
            }
            Some(WatchEvent::Bookmark(_)) => {}
            Some(WatchEvent::Error(e)) => panic!("watch error {e:?}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["MODIFIED a", "DELETED b", "ADDED c"]);

    // A live write shows up too, and no event is repeated.
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Modified(o)) => assert_eq!(o.metadata.name.as_deref(), Some("c")),
        other => panic!("expected MODIFIED c, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_bookmarks_and_selector_transitions() {
    let server = TestServer::start_with(|c| c.bookmark_interval = Duration::from_millis(300)).await;
    let http = server.http();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let resp = http
        .request(reqwest::Method::GET, &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&labelSelector=app%3Dweb&timeoutSeconds=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "w", "labels": {"app": "web"}}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    let body = resp.text().await.unwrap();
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|t| *t != "BOOKMARK")
        .collect();
    assert_eq!(
        types,
        vec!["ADDED", "DELETED"],
        "leaving the selector is a DELETED: {body}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "BOOKMARK"),
        "bookmarks sent: {body}"
    );
}

#[tokio::test]
async fn compacted_revisions_answer_410() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "old"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let old_rv = created.metadata.resource_version.unwrap();
    for i in 0..5 {
        cms.patch(
            "old",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"i": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let store = &server.api().store;
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();

    let (code, body) = server
        .http()
        .get(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old_rv}"
        ))
        .await;
    assert_eq!(code, 200);
    let text = body
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| body.to_string());
    let event: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");

    // kube-rs sees the same as an API error with code 410.
    let mut stream = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn selectors_and_paging() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:02}"), "labels": {"tier": tier, "n": i.to_string()}}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let front = cms
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(front.items.len(), 13);
    let set = cms
        .list(&ListParams::default().labels("tier in (front,back),n notin (0,1,2)"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 22);
    let missing = cms
        .list(&ListParams::default().labels("!tier"))
        .await
        .unwrap();
    assert!(missing
        .items
        .iter()
        .all(|c| c.metadata.name.as_deref() == Some("kube-root-ca.crt")
            || c.metadata.labels.is_none()));
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=cm-03"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let bad = cms
        .list(&ListParams::default().fields("spec.bogus=1"))
        .await
        .unwrap_err();
    assert!(
        matches!(bad, kube::Error::Api(ref e) if e.code == 400),
        "{bad:?}"
    );
    let bad = cms
        .list(&ListParams::default().labels("tier in (front"))
        .await
        .unwrap_err();
    assert!(
        matches!(bad, kube::Error::Api(ref e) if e.code == 400),
        "{bad:?}"
    );

    // Paging: 25 objects in pages of 10, with a selector that skips half.
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&params).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = ListParams::default().limit(10).continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "no duplicates across pages");
    let page = cms
        .list(&ListParams::default().limit(5).labels("tier=back"))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert!(page.metadata.continue_.is_some());
}

#[tokio::test]
async fn namespace_deletion_removes_everything_in_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    create_namespace(&client, "doomed").await;
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        let obj: DynamicObject = serde_json::from_value(sample(r, "x")).unwrap();
        dynamic(&client, r, "doomed")
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    let terminating = nss
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = terminating
        .left()
        .expect("namespace is terminating, not gone at once");
    assert_eq!(
        ns.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    // New content is refused while it terminates.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap();
    if let Err(kube::Error::Api(e)) = cms.create(&PostParams::default(), &cm).await {
        assert!(e.code == 403 || e.code == 404, "{e:?}");
    }
    eventually("namespace gone", Duration::from_secs(20), || {
        let nss = nss.clone();
        async move {
            matches!(nss.get("doomed").await, Err(kube::Error::Api(e)) if e.code == 404)
                .then_some(())
        }
    })
    .await;
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        let left = dynamic(&client, r, "doomed")
            .list(&ListParams::default())
            .await
            .unwrap();
        assert!(
            left.items.is_empty(),
            "{} left in deleted namespace",
            r.plural
        );
    }
    // Built-in namespaces cannot be deleted.
    let err = nss
        .delete("kube-system", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 403),
        "{err:?}"
    );
}

#[tokio::test]
async fn cluster_ips_and_node_ports_are_allocated_and_released() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let kubernetes = svcs.get("kubernetes").await.unwrap();
    assert_eq!(
        kubernetes.spec.unwrap().cluster_ip.as_deref(),
        Some("10.96.0.1")
    );

    let np: Service = serde_json::from_value(json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "selector": {"a": "b"}, "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}})).unwrap();
    let np = svcs.create(&PostParams::default(), &np).await.unwrap();
    let spec = np.spec.clone().unwrap();
    let ip: std::net::Ipv4Addr = spec.cluster_ip.clone().unwrap().parse().unwrap();
    assert_eq!(ip.octets()[0..1], [10]);
    assert!((96..112).contains(&ip.octets()[1]), "{ip} in 10.96.0.0/12");
    let ports: Vec<i32> = spec
        .ports
        .unwrap()
        .iter()
        .map(|p| p.node_port.unwrap())
        .collect();
    assert!(ports.iter().all(|p| (30000..=32767).contains(p)));
    assert_ne!(ports[0], ports[1]);

    // Asking for a taken IP or port is refused, naming the field.
    let clash: Service = serde_json::from_value(json!({"metadata": {"name": "clash"}, "spec": {"clusterIP": ip.to_string(), "ports": [{"port": 80}]}})).unwrap();
    let err = svcs
        .create(&PostParams::default(), &clash)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 422);
            assert!(e.message.contains("already allocated"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    let clash: Service = serde_json::from_value(json!({"metadata": {"name": "clash2"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": ports[0]}]}})).unwrap();
    let err = svcs
        .create(&PostParams::default(), &clash)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 422 && e.message.contains("nodePort")),
        "{err:?}"
    );
    // A failed create leaked nothing: the IP it asked for is free once the owner goes.
    svcs.delete("np", &DeleteParams::default()).await.unwrap();
    let again: Service = serde_json::from_value(json!({"metadata": {"name": "again"}, "spec": {"type": "NodePort", "clusterIP": ip.to_string(), "ports": [{"port": 80, "nodePort": ports[0]}]}})).unwrap();
    let again = svcs.create(&PostParams::default(), &again).await.unwrap();
    assert_eq!(
        again.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some(ip.to_string().as_str())
    );

    // Type change ClusterIP ← NodePort drops the node port; the IP stays.
    let changed = svcs
        .patch(
            "again",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}})),
        )
        .await
        .unwrap();
    let spec = changed.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some(ip.to_string().as_str()));
    assert!(spec.ports.unwrap()[0].node_port.is_none());
    let reuse: Service = serde_json::from_value(json!({"metadata": {"name": "reuse"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": ports[0]}]}})).unwrap();
    svcs.create(&PostParams::default(), &reuse)
        .await
        .expect("released node port can be taken again");

    // Headless and ExternalName get no IP.
    let headless: Service = serde_json::from_value(json!({"metadata": {"name": "hl"}, "spec": {"clusterIP": "None", "selector": {"a": "b"}, "ports": [{"port": 80}]}})).unwrap();
    let hl = svcs
        .create(&PostParams::default(), &headless)
        .await
        .unwrap();
    assert_eq!(hl.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let ext: Service = serde_json::from_value(json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}})).unwrap();
    let ext = svcs.create(&PostParams::default(), &ext).await.unwrap();
    assert!(ext.spec.unwrap().cluster_ip.is_none());
}

#[tokio::test]
async fn quota_and_limit_ranges_are_enforced() {
    let server = TestServer::start().await;
    let client = server.client().await;
    create_namespace(&client, "q").await;
    let quotas = dynamic(
        &client,
        skiff_api::resources::resolve("quota").unwrap(),
        "q",
    );
    let quota: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "small"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1", "configmaps": "1"}}})).unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    let limits = dynamic(
        &client,
        skiff_api::resources::resolve("limits").unwrap(),
        "q",
    );
    let lr: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"}, "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "64Mi"}, "defaultRequest": {"cpu": "400m"}, "max": {"memory": "1Gi"}}]}})).unwrap();
    limits.create(&PostParams::default(), &lr).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "q");
    let pod = |name: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})).unwrap()
    };
    let p1 = pods
        .create(&PostParams::default(), &pod("p1"))
        .await
        .unwrap();
    let res = p1.spec.unwrap().containers[0].resources.clone().unwrap();
    assert_eq!(
        res.limits.unwrap()["cpu"].0,
        "500m",
        "LimitRange default limit"
    );
    assert_eq!(
        res.requests.unwrap()["cpu"].0,
        "400m",
        "LimitRange default request"
    );
    pods.create(&PostParams::default(), &pod("p2"))
        .await
        .unwrap();
    let err = pods
        .create(&PostParams::default(), &pod("p3"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 403);
            assert!(e.message.contains("exceeded quota: small"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    // Over the LimitRange max.
    let big: Pod = serde_json::from_value(json!({"metadata": {"name": "big"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"limits": {"memory": "2Gi"}}}]}})).unwrap();
    let err = pods.create(&PostParams::default(), &big).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 403 && e.message.contains("maximum memory usage per Container is 1Gi")),
        "{err:?}"
    );
    // Deleting frees quota.
    pods.delete("p1", &DeleteParams::default()).await.unwrap();
    pods.create(&PostParams::default(), &pod("p3"))
        .await
        .expect("quota freed by delete");
    // Quota status shows usage.
    let used = eventually("quota status", Duration::from_secs(10), || {
        let quotas = quotas.clone();
        async move {
            let q = quotas.get("small").await.ok()?;
            let used = q.data.pointer("/status/used/pods")?.as_str()?.to_string();
            (used == "2").then_some(used)
        }
    })
    .await;
    assert_eq!(used, "2");
}

#[tokio::test]
async fn authentication_and_errors_are_kubernetes_statuses() {
    let server = TestServer::start().await;
    let http = server.http();
    let (code, body) = http.without_token().get("/api/v1/namespaces").await;
    assert_eq!(code, 401);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");
    let (code, _) = http.without_token().get("/healthz").await;
    assert_eq!(code, 200);
    let (code, version) = http.without_token().get("/version").await;
    assert_eq!((code, version["major"].as_str()), (200, Some("1")));
    let node = common::Http::new(
        &server.url,
        &server.api().pki.ca_pem,
        Some(&server.api().pki.node_token),
    );
    let (code, body) = node
        .send(node.request(reqwest::Method::DELETE, "/api/v1/namespaces/kube-public"))
        .await;
    assert_eq!(code, 403, "{body}");

    let (code, body) = http.get("/api/v1/namespaces/default/pods/nope").await;
    assert_eq!(code, 404);
    assert_eq!(body["message"], "pods \"nope\" not found");
    assert_eq!(body["details"]["name"], "nope");
    let (code, body) = http
        .post("/api/v1/namespaces/default/pods", &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}))
        .await;
    assert_eq!(code, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("spec.containers[0].image: Required value"),
        "{body}"
    );
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );
    let (code, body) = http
        .post("/apis/apps/v1/namespaces/default/deployments", &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": "three"}}))
        .await;
    assert_eq!(code, 400);
    assert!(
        body["message"].as_str().unwrap().contains("spec.replicas"),
        "{body}"
    );
    let (code, body) = http
        .post(
            "/api/v1/namespaces/nowhere/configmaps",
            &json!({"metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(body["message"], "namespaces \"nowhere\" not found");
    let (code, _) = http.get("/api/v1/gadgets").await;
    assert_eq!(code, 404);

    let (code, text) = http.get("/metrics").await;
    assert_eq!(code, 200);
    let text = text.as_str().unwrap();
    assert!(text.contains("apiserver_request_total"), "{text}");
    assert!(
        text.contains("skiff_store_operation_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn discovery_and_server_side_tables() {
    let server = TestServer::start().await;
    let http = server.http();
    let (_, apis) = http.get("/apis").await;
    let groups: Vec<&str> = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "apps",
        "batch",
        "coordination.k8s.io",
        "autoscaling",
        "networking.k8s.io",
    ] {
        assert!(groups.contains(&g), "{g} in {groups:?}");
    }
    let (code, core) = http.get("/api/v1").await;
    assert_eq!(code, 200);
    assert!(core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "pods/binding"));
    let resp = http
        .request(reqwest::Method::GET, "/api/v1/namespaces")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .unwrap();
    let table: Value = resp.json().await.unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
    assert_eq!(table["rows"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn graceful_pod_deletion_binding_and_scale() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let nodes = dynamic(&client, skiff_api::resources::resolve("node").unwrap(), "");
    let node: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})).unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let name = pod.metadata.name.clone().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    let http = server.http();
    let (code, body) = http
        .post(&format!("/api/v1/namespaces/default/pods/{name}/binding"), &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}}))
        .await;
    assert_eq!(code, 201, "{body}");
    let bound = pods.get(&name).await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    let (code, _) = http
        .post(&format!("/api/v1/namespaces/default/pods/{name}/binding"), &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": "n2"}}))
        .await;
    assert_eq!(code, 409, "a pod is bound once");

    // Bound to an existing node: deletion is graceful and waits for the node.
    let first = pods.delete(&name, &DeleteParams::default()).await.unwrap();
    let terminating = first.left().expect("graceful deletion keeps the pod");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    assert!(pods.get(&name).await.is_ok());
    // The node confirms with grace 0.
    pods.delete(
        &name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(pods.get(&name).await, Err(kube::Error::Api(e)) if e.code == 404));

    // Scale subresource.
    let rs_info = skiff_api::resources::resolve("rs").unwrap();
    let rs: DynamicObject = serde_json::from_value(sample(rs_info, "web")).unwrap();
    let rss = dynamic(&client, rs_info, "default");
    rss.create(&PostParams::default(), &rs).await.unwrap();
    let (code, scale) = http
        .get("/apis/apps/v1/namespaces/default/replicasets/web/scale")
        .await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=x");
    let (code, scale) = http
        .send(
            http.request(
                reqwest::Method::PATCH,
                "/apis/apps/v1/namespaces/default/replicasets/web/scale",
            )
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"spec":{"replicas":5}}"#),
        )
        .await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(rss.get("web").await.unwrap().data["spec"]["replicas"], 5);
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}, "status": {"phase": "Running"}})).unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(
        created.status.unwrap().phase.as_deref(),
        Some("Pending"),
        "create ignores status"
    );
    let main = pods
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.status.unwrap().phase.as_deref(),
        Some("Pending"),
        "main resource ignores status"
    );
    let status = pods
        .patch_status("s", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.244.0.5"}, "spec": {"restartPolicy": "Never"}})))
        .await
        .unwrap();
    assert_eq!(
        status.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert_eq!(
        status.spec.unwrap().restart_policy.as_deref(),
        Some("Always"),
        "status ignores spec"
    );
    let running = pods
        .list(&ListParams::default().fields("status.phase=Running"))
        .await
        .unwrap();
    assert_eq!(running.items.len(), 1);
}

#[tokio::test]
async fn cascading_deletion_follows_owner_references() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let uid = owner.metadata.uid.unwrap();
    for name in ["dep-1", "dep-2"] {
        let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}})).unwrap();
        cms.create(&PostParams::default(), &dep).await.unwrap();
    }
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually("dependents deleted", Duration::from_secs(10), || {
        let cms = cms.clone();
        async move { (cms.get("dep-1").await.is_err() && cms.get("dep-2").await.is_err()).then_some(()) }
    })
    .await;

    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner2"}})).unwrap(),
        )
        .await
        .unwrap();
    let uid = owner.metadata.uid.unwrap();
    let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "kept", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": uid}]}})).unwrap();
    cms.create(&PostParams::default(), &dep).await.unwrap();
    cms.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    eventually(
        "owner gone, dependent orphaned",
        Duration::from_secs(10),
        || {
            let cms = cms.clone();
            async move {
                let kept = cms.get("kept").await.ok()?;
                (cms.get("owner2").await.is_err()
                    && kept
                        .metadata
                        .owner_references
                        .unwrap_or_default()
                        .is_empty())
                .then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn kube_runtime_reflector_follows_the_api() {
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let server = TestServer::start_with(|c| c.bookmark_interval = Duration::from_millis(200)).await;
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for n in ["r1", "r2"] {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": n, "labels": {"r": "yes"}}}))
                .unwrap(),
        )
        .await
        .unwrap();
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(cms.clone(), watcher::Config::default().labels("r=yes")),
    )
    .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            item.expect("watcher error");
        }
    });
    let names = |reader: &reflector::Store<ConfigMap>| {
        let mut n: Vec<String> = reader
            .state()
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        n.sort();
        n
    };
    eventually("initial list in the cache", Duration::from_secs(10), || {
        let reader = reader.clone();
        async move { (names(&reader) == ["r1", "r2"]).then_some(()) }
    })
    .await;
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "r3", "labels": {"r": "yes"}}}))
            .unwrap(),
    )
    .await
    .unwrap();
    cms.delete("r1", &DeleteParams::default()).await.unwrap();
    cms.patch(
        "r2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"r": "no"}}})),
    )
    .await
    .unwrap();
    eventually(
        "cache follows creates, deletes and selector exits",
        Duration::from_secs(10),
        || {
            let reader = reader.clone();
            async move { (names(&reader) == ["r3"]).then_some(()) }
        },
    )
    .await;
    task.abort();
}

#[tokio::test]
async fn nodes_get_distinct_pod_cidrs_and_a_taken_one_is_refused() {
    let server = common::TestServer::start().await;
    let client = server.client().await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    let mut cidrs = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let node: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        let created = nodes.create(&PostParams::default(), &node).await.unwrap();
        let spec = created.spec.unwrap();
        let cidr = spec.pod_cidr.unwrap();
        assert_eq!(spec.pod_cidrs.unwrap(), vec![cidr.clone()]);
        cidrs.push(cidr);
    }
    assert_eq!(cidrs, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);

    let taken: k8s_openapi::api::core::v1::Node = serde_json::from_value(
        json!({"metadata": {"name": "n4"}, "spec": {"podCIDR": "10.244.1.0/24"}}),
    )
    .unwrap();
    let err = nodes
        .create(&PostParams::default(), &taken)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422);
            assert!(
                status.message.contains("spec.podCIDR"),
                "{}",
                status.message
            );
            assert!(
                status.message.contains("already assigned"),
                "{}",
                status.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_without_a_class_get_the_default_and_pods_default_tolerations() {
    let server = TestServer::start().await;
    let http = server.http();
    let (code, claim) = http
        .post(
            "/api/v1/namespaces/default/persistentvolumeclaims",
            &json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .await;
    assert_eq!(code, 201, "{claim}");
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    let (code, explicit) = http
        .post(
            "/api/v1/namespaces/default/persistentvolumeclaims",
            &json!({"metadata": {"name": "none"}, "spec": {"storageClassName": "", "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .await;
    assert_eq!(code, 201, "{explicit}");
    assert_eq!(explicit["spec"]["storageClassName"], "");

    let (code, pod) = http
        .post(
            "/api/v1/namespaces/default/pods",
            &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    assert_eq!(code, 201, "{pod}");
    let keys: Vec<&str> = pod["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable"
        ]
    );
}
