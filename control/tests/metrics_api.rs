//! The resource metrics API (`metrics.k8s.io/v1beta1`) served by the control plane from the
//! node daemons' Summary API: a fake node on loopback, raw HTTPS and kube-rs as clients.

mod common;
mod fake_node;

use common::{ServerHttp, TestServer};
use fake_node::FakeNode;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const NODE: &str = "fake-node";
const BASE: &str = "/apis/metrics.k8s.io/v1beta1";

struct Cluster {
    server: TestServer,
    fake: FakeNode,
    client: kube::Client,
}

async fn create_node(client: &kube::Client, name: &str, status: Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"zone": "a"}}, "spec": {}
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("node status");
}

async fn cluster() -> Cluster {
    let server = TestServer::start().await;
    let fake = FakeNode::start(&server.api().pki.ca_pem).await;
    let client = server.client().await;
    create_node(&client, NODE, fake.node_status()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node, containers) in [
        ("solo", Some(NODE), vec!["app"]),
        ("duo", Some(NODE), vec!["a", "b"]),
        // Bound, but its node daemon has no numbers for it.
        ("waiting", Some(NODE), vec!["app"]),
        ("pending", None, vec!["app"]),
    ] {
        let containers: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox:1.36"}))
            .collect();
        let mut spec = json!({"containers": containers});
        if let Some(node) = node {
            spec["nodeName"] = json!(node);
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}}, "spec": spec
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }
    Cluster {
        server,
        fake,
        client,
    }
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

fn summary_requests(fake: &FakeNode) -> usize {
    fake.seen()
        .iter()
        .filter(|s| s.path == "/stats/summary")
        .count()
}

#[tokio::test]
async fn discovery_lists_the_metrics_group() {
    let c = cluster().await;
    let http = c.server.http();
    let (code, groups) = http.get("/apis").await;
    assert_eq!(code, 200);
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "metrics.k8s.io")
        .expect("metrics.k8s.io in /apis");
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "metrics.k8s.io/v1beta1"
    );
    let (code, group) = http.get("/apis/metrics.k8s.io").await;
    assert_eq!(code, 200);
    assert_eq!(group["kind"], "APIGroup");
    let (code, list) = http.get(BASE).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["groupVersion"], "metrics.k8s.io/v1beta1");
    let resources = list["resources"].as_array().unwrap();
    let find = |n: &str| resources.iter().find(|r| r["name"] == n).cloned().unwrap();
    assert_eq!(find("nodes")["kind"], "NodeMetrics");
    assert_eq!(find("nodes")["namespaced"], false);
    assert_eq!(find("pods")["kind"], "PodMetrics");
    assert_eq!(find("pods")["namespaced"], true);
    assert_eq!(find("pods")["verbs"], json!(["get", "list"]));
}

#[tokio::test]
async fn node_metrics_come_from_the_node_daemon_summary() {
    let c = cluster().await;
    let http = c.server.http();

    let (code, list) = http.get(&format!("{BASE}/nodes")).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "NodeMetricsList");
    assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(names(&list), vec![NODE]);
    let m = &list["items"][0];
    assert_eq!(m["kind"], "NodeMetrics");
    assert_eq!(m["metadata"]["labels"]["zone"], "a");
    assert_eq!(m["usage"], json!({"cpu": "250m", "memory": "1Gi"}));
    assert_eq!(m["timestamp"], "2024-05-01T10:00:00Z");
    assert!(m["window"].is_string());

    let (code, one) = http.get(&format!("{BASE}/nodes/{NODE}")).await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["usage"]["cpu"], "250m");
    let seen = c.fake.last("/stats/summary").expect("summary request");
    assert_eq!(seen.client_cn, fake_node::KUBELET_CLIENT_CN);

    // Both answers (and more) came from one request to the node: summaries are cached.
    let _ = http.get(&format!("{BASE}/namespaces/default/pods")).await;
    assert_eq!(summary_requests(&c.fake), 1);

    let (code, missing) = http.get(&format!("{BASE}/nodes/nope")).await;
    assert_eq!(code, 404, "{missing}");
    assert_eq!(
        missing["message"],
        "nodemetrics.metrics.k8s.io \"nope\" not found"
    );

    // A node whose daemon does not answer: left out of lists, 503 with the reason alone.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    create_node(
        &c.client,
        "gone",
        json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}
        }}),
    )
    .await;
    let (code, list) = http.get(&format!("{BASE}/nodes")).await;
    assert_eq!(code, 200);
    assert_eq!(names(&list), vec![NODE]);
    let (code, err) = http.get(&format!("{BASE}/nodes/gone")).await;
    assert_eq!(code, 503, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("\"gone\""), "{message}");

    let (code, _) = http.without_token().get(&format!("{BASE}/nodes")).await;
    assert_eq!(code, 401);
    let (code, _) = http
        .send(http.request(reqwest::Method::DELETE, &format!("{BASE}/nodes/{NODE}")))
        .await;
    assert_eq!(code, 405);
}

#[tokio::test]
async fn pod_metrics_by_namespace_name_and_label() {
    let c = cluster().await;
    let http = c.server.http();

    let (code, list) = http.get(&format!("{BASE}/namespaces/default/pods")).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "PodMetricsList");
    // `waiting` has no numbers, `pending` no node: left out as metrics-server does.
    assert_eq!(names(&list), vec!["duo", "solo"]);

    let (code, list) = http
        .get(&format!(
            "{BASE}/namespaces/default/pods?labelSelector=app%3Dduo"
        ))
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(names(&list), vec!["duo"]);
    let duo = &list["items"][0];
    assert_eq!(duo["metadata"]["namespace"], "default");
    assert_eq!(duo["metadata"]["labels"]["app"], "duo");
    assert_eq!(
        duo["containers"],
        json!([
            {"name": "a", "usage": {"cpu": "1500u", "memory": "1Mi"}},
            {"name": "b", "usage": {"cpu": "500u", "memory": "2Mi"}}
        ])
    );

    let (code, solo) = http
        .get(&format!("{BASE}/namespaces/default/pods/solo"))
        .await;
    assert_eq!(code, 200, "{solo}");
    assert_eq!(solo["kind"], "PodMetrics");
    assert_eq!(
        solo["containers"],
        json!([{"name": "app", "usage": {"cpu": "5m", "memory": "12Mi"}}])
    );

    for missing in ["pending", "waiting", "nope"] {
        let (code, err) = http
            .get(&format!("{BASE}/namespaces/default/pods/{missing}"))
            .await;
        assert_eq!(code, 404, "{missing}: {err}");
        assert_eq!(
            err["message"],
            format!("podmetrics.metrics.k8s.io \"default/{missing}\" not found")
        );
    }

    let (code, all) = http.get(&format!("{BASE}/pods")).await;
    assert_eq!(code, 200, "{all}");
    assert_eq!(names(&all), vec!["duo", "solo"]);
    let (code, other) = http.get(&format!("{BASE}/namespaces/other/pods")).await;
    assert_eq!(code, 200);
    assert_eq!(names(&other), Vec::<String>::new());
    let (code, _) = http
        .get(&format!(
            "{BASE}/namespaces/default/pods?labelSelector=app%3D%3D%3D"
        ))
        .await;
    assert_eq!(code, 400);

    // kube-rs reads it like any list (this is how the autoscaler reads it).
    let ar = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "default", &ar);
    let list = api
        .list(&ListParams::default().labels("app in (solo,duo)"))
        .await
        .expect("PodMetricsList through kube-rs");
    let mut got: Vec<String> = list
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap_or_default())
        .collect();
    got.sort();
    assert_eq!(got, vec!["duo", "solo"]);
    let solo = api.get("solo").await.expect("PodMetrics through kube-rs");
    assert_eq!(solo.data["containers"][0]["usage"]["memory"], "12Mi");
}
