//! The API server's proxying of pods/log, pods/exec, pods/portforward and nodes/proxy to a
//! node daemon: a fake node on loopback (TLS requiring the kubelet client certificate) and
//! kube-rs as the client.

mod common;
mod fake_node;

use std::time::Duration;

use common::{client_for, ServerHttp, TestServer};
use fake_node::{FakeNode, KUBELET_CLIENT_CN};
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, AttachParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NODE: &str = "fake-node";

struct Cluster {
    server: TestServer,
    fake: FakeNode,
    client: kube::Client,
}

fn pod(name: &str, node: Option<&str>, containers: &[&str], init: &[&str]) -> Pod {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| json!({"name": n, "image": "busybox:1.36"}))
            .collect::<Vec<_>>()
    };
    let mut spec = json!({"containers": list(containers)});
    if !init.is_empty() {
        spec["initContainers"] = json!(list(init));
    }
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

async fn cluster() -> Cluster {
    let server = TestServer::start().await;
    let fake = FakeNode::start(&server.api().pki.ca_pem).await;
    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(fake.node_object(NODE)).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    nodes
        .patch_status(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(fake.node_status()),
        )
        .await
        .expect("node status");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for p in [
        pod("solo", Some(NODE), &["app"], &[]),
        pod("duo", Some(NODE), &["a", "b"], &["setup"]),
        pod("waiting", Some(NODE), &["crashy"], &[]),
        pod("pending", None, &["app"], &[]),
    ] {
        pods.create(&PostParams::default(), &p)
            .await
            .expect("create pod");
    }
    Cluster {
        server,
        fake,
        client,
    }
}

fn api_error(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn logs_pass_through_with_the_kubelet_client_certificate() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    let text = pods
        .logs("solo", &LogParams::default())
        .await
        .expect("logs");
    assert_eq!(
        text,
        "line 1 of default/solo/app\nline 2 of default/solo/app\nline 3 of default/solo/app\n"
    );
    let seen = c.fake.last("/containerLogs/").expect("log request");
    assert_eq!(seen.path, "/containerLogs/default/solo/app");
    assert_eq!(
        seen.client_cn, KUBELET_CLIENT_CN,
        "the API server presents its kubelet client certificate"
    );

    // Query parameters reach the node unchanged (the container is in the path instead).
    let lp = LogParams {
        tail_lines: Some(1),
        timestamps: true,
        previous: true,
        since_seconds: Some(300),
        ..LogParams::default()
    };
    let text = pods.logs("solo", &lp).await.expect("logs with params");
    assert_eq!(
        text,
        "2024-05-01T10:00:03.000000000Z previous line 3 of default/solo/app\n"
    );
    let seen = c.fake.last("/containerLogs/").expect("log request");
    for part in [
        "tailLines=1",
        "timestamps=true",
        "previous=true",
        "sinceSeconds=300",
    ] {
        assert!(
            seen.query.contains(part),
            "{part} missing in {:?}",
            seen.query
        );
    }
    assert!(!seen.query.contains("container="), "{:?}", seen.query);

    // A node's refusal comes back with its code and words.
    let (code, message) = api_error(
        pods.logs("waiting", &LogParams::default())
            .await
            .expect_err("waiting container"),
    );
    assert_eq!(code, 400);
    assert_eq!(
        message,
        "container \"crashy\" in pod \"waiting\" is waiting to start: ContainerCreating"
    );
}

#[tokio::test]
async fn following_logs_streams_chunks_before_the_end() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let lp = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = pods
        .log_stream("solo", &lp)
        .await
        .expect("log stream")
        .lines();
    for i in 1..=3 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.try_next())
            .await
            .expect("a line arrives while the node still holds the stream open")
            .expect("read")
            .expect("not the end yet");
        assert_eq!(line, format!("line {i} of default/solo/app"));
    }
    c.fake.release_logs();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.try_next())
        .await
        .expect("released line")
        .expect("read")
        .expect("the last line");
    assert_eq!(line, "line 4 of default/solo/app (followed)");
    let end = tokio::time::timeout(Duration::from_secs(10), lines.try_next())
        .await
        .expect("end of stream")
        .expect("read");
    assert_eq!(end, None);
    assert!(c
        .fake
        .last("/containerLogs/")
        .is_some_and(|s| s.query.contains("follow=true")));
}

#[tokio::test]
async fn containers_default_as_kubernetes_does() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    let (code, message) = api_error(
        pods.logs("duo", &LogParams::default())
            .await
            .expect_err("two containers"),
    );
    assert_eq!(code, 400);
    assert_eq!(
        message,
        "a container name must be specified for pod duo, choose one of: [a b] or one of the init containers: [setup]"
    );

    let lp = LogParams {
        container: Some("b".into()),
        ..LogParams::default()
    };
    let text = pods.logs("duo", &lp).await.expect("logs of b");
    assert!(text.starts_with("line 1 of default/duo/b\n"), "{text}");
    let lp = LogParams {
        container: Some("setup".into()),
        ..LogParams::default()
    };
    let text = pods
        .logs("duo", &lp)
        .await
        .expect("logs of the init container");
    assert!(text.starts_with("line 1 of default/duo/setup\n"), "{text}");

    let lp = LogParams {
        container: Some("zzz".into()),
        ..LogParams::default()
    };
    let (code, message) = api_error(pods.logs("duo", &lp).await.expect_err("no such container"));
    assert_eq!(
        (code, message.as_str()),
        (400, "container zzz is not valid for pod duo")
    );

    let (code, message) = api_error(
        pods.logs("pending", &LogParams::default())
            .await
            .expect_err("unscheduled pod"),
    );
    assert_eq!(
        (code, message.as_str()),
        (400, "pod pending does not have a host assigned")
    );

    // Exec defaults the same way.
    let err = pods
        .exec("duo", ["echo", "x"], &AttachParams::default())
        .await
        .err()
        .expect("exec without a container in a two-container pod");
    let (code, message) = api_error(err);
    assert_eq!(code, 400);
    assert!(
        message.starts_with("a container name must be specified for pod duo"),
        "{message}"
    );

    let (code, _) = api_error(
        pods.logs("ghost", &LogParams::default())
            .await
            .expect_err("missing pod"),
    );
    assert_eq!(code, 404);
}

#[tokio::test]
async fn exec_is_spliced_through_to_the_node() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");

    // stdin echoed back through API server and node.
    let ap = AttachParams::default().stdin(true).stderr(false);
    let mut proc = pods.exec("solo", ["cat"], &ap).await.expect("exec cat");
    let mut stdin = proc.stdin().expect("stdin");
    let mut stdout = proc.stdout().expect("stdout");
    let status = proc.take_status().expect("status");
    stdin
        .write_all(b"hello through the proxy\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 24];
    tokio::time::timeout(Duration::from_secs(10), stdout.read_exact(&mut buf))
        .await
        .expect("echo arrives")
        .expect("read echo");
    assert_eq!(buf, b"hello through the proxy\n");
    stdin.write_all(b"again").await.expect("write");
    let mut buf = vec![0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), stdout.read_exact(&mut buf))
        .await
        .expect("second echo")
        .expect("read echo");
    assert_eq!(buf, b"again");
    stdin.shutdown().await.expect("close stdin");
    let status = tokio::time::timeout(Duration::from_secs(10), status)
        .await
        .expect("status arrives")
        .expect("a status");
    assert_eq!(status.status.as_deref(), Some("Success"));
    proc.join().await.expect("session ends cleanly");

    let seen = c.fake.last("/exec/").expect("exec request");
    assert_eq!(seen.path, "/exec/default/solo/app");
    assert_eq!(seen.client_cn, KUBELET_CLIENT_CN);
    assert!(
        seen.offered_protocols.contains("v5.channel.k8s.io"),
        "{:?}",
        seen.offered_protocols
    );
    for part in ["command=cat", "stdin=true", "stdout=true"] {
        assert!(
            seen.query.contains(part),
            "{part} missing in {:?}",
            seen.query
        );
    }

    // A failing command's exit code arrives in the status.
    let ap = AttachParams::default().container("b");
    let mut proc = pods
        .exec("duo", ["exit", "3"], &ap)
        .await
        .expect("exec exit");
    let mut stderr = proc.stderr().expect("stderr");
    let status = proc.take_status().expect("status");
    let mut err_text = String::new();
    stderr.read_to_string(&mut err_text).await.expect("stderr");
    assert_eq!(err_text, "exiting with 3\n");
    let status = status.await.expect("status");
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let code = status
        .details
        .and_then(|d| d.causes)
        .and_then(|c| {
            c.into_iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message);
    assert_eq!(code.as_deref(), Some("3"));

    // Terminal resizes travel on channel 4.
    let ap = AttachParams::interactive_tty();
    let mut proc = pods.exec("solo", ["size"], &ap).await.expect("exec size");
    let mut resize = proc.terminal_size().expect("resize sender");
    let mut stdout = proc.stdout().expect("stdout");
    futures::SinkExt::send(
        &mut resize,
        kube::api::TerminalSize {
            width: 132,
            height: 43,
        },
    )
    .await
    .expect("send size");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), stdout.read_to_string(&mut text))
        .await
        .expect("size printed")
        .expect("read");
    assert_eq!(text, "132x43\n");
}

#[tokio::test]
async fn port_forward_and_node_proxy() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let mut pf = pods
        .portforward("solo", &[8080])
        .await
        .expect("portforward");
    let mut stream = pf.take_stream(8080).expect("stream");
    stream.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
        .await
        .expect("echo")
        .expect("read");
    assert_eq!(&buf, b"ping");
    drop(stream);
    let seen = c.fake.last("/portForward/").expect("port-forward request");
    assert_eq!(seen.path, "/portForward/default/solo");
    assert!(seen.query.contains("ports=8080"), "{:?}", seen.query);

    let http = c.server.http();
    let (code, body) = http
        .get(&format!("/api/v1/nodes/{NODE}/proxy/stats/summary"))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["node"]["nodeName"], "fake-node");
    assert_eq!(body["pods"][0]["podRef"]["name"], "solo");
    let (code, _) = http
        .get(&format!("/api/v1/nodes/{NODE}/proxy/healthz"))
        .await;
    assert_eq!(code, 200);
    // Unknown paths come back as the node answered them.
    let (code, _) = http
        .get(&format!("/api/v1/nodes/{NODE}/proxy/nothing"))
        .await;
    assert_eq!(code, 404);
    let (code, body) = http.get("/api/v1/nodes/ghost/proxy/stats/summary").await;
    assert_eq!(code, 404, "{body}");
}

#[tokio::test]
async fn node_token_may_not_exec_or_read_logs() {
    let c = cluster().await;
    let pki = &c.server.api().pki;
    let kubeconfig = c.server.dir.path().join("node.kubeconfig");
    std::fs::write(
        &kubeconfig,
        skiff_control::pki::kubeconfig(&c.server.url, &pki.ca_pem, "node", &pki.node_token),
    )
    .expect("write kubeconfig");
    let node_client = client_for(&kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(node_client, "default");
    let before = c.fake.seen().len();

    let err = pods
        .exec("solo", ["cat"], &AttachParams::default())
        .await
        .err()
        .expect("node token exec");
    let (code, message) = api_error(err);
    assert_eq!(code, 403);
    assert!(message.contains("pods/exec"), "{message}");
    let (code, _) = api_error(
        pods.logs("solo", &LogParams::default())
            .await
            .expect_err("node token logs"),
    );
    assert_eq!(code, 403);
    let (code, _) = api_error(
        pods.portforward("solo", &[80])
            .await
            .err()
            .expect("node token port-forward"),
    );
    assert_eq!(code, 403);
    let node_http = common::Http::new(&c.server.url, &pki.ca_pem, Some(&pki.node_token));
    let (code, _) = node_http
        .get(&format!("/api/v1/nodes/{NODE}/proxy/stats/summary"))
        .await;
    assert_eq!(code, 403);
    // The node token still reads pods.
    pods.get("solo").await.expect("node token reads pods");
    assert_eq!(c.fake.seen().len(), before, "nothing reached the node");

    // The client certificate the API server presents chains to the cluster CA (the fake
    // node's verifier insists) and names the API server.
    let admin_pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    admin_pods
        .logs("solo", &LogParams::default())
        .await
        .expect("admin logs");
    assert_eq!(
        c.fake
            .last("/containerLogs/")
            .map(|s| s.client_cn)
            .as_deref(),
        Some(KUBELET_CLIENT_CN)
    );
    let on_disk =
        std::fs::read_to_string(c.server.dir.path().join("pki/apiserver-kubelet-client.crt"))
            .expect("client certificate on disk");
    assert_eq!(on_disk, pki.kubelet_client_cert_pem);
}
