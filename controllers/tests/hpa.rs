//! HorizontalPodAutoscaler against the real API server with a fake clock: decisions from
//! given metrics (a fake metrics source), and once through the real path (the control
//! plane's `metrics.k8s.io` API reading a node daemon's `/stats/summary`).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use skiff_api::labels::Selector;
use skiff_api::quantity::Quantity;
use skiff_controllers::hpa::{self, MetricsSource, PodUsage, Usage};
use support::{eventually, Cluster, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CPU_REASON: &str = "cpu resource utilization (percentage of request)";

/// Metrics as the test says: each pod's CPU use (one container `app`).
#[derive(Default)]
struct GivenMetrics {
    cpu: Mutex<HashMap<String, String>>,
}

impl GivenMetrics {
    fn set(&self, pods: &[&str], cpu: &str) {
        let mut m = self.cpu.lock().unwrap();
        for p in pods {
            m.insert(p.to_string(), cpu.to_string());
        }
    }
}

impl MetricsSource for GivenMetrics {
    fn pod_usage<'a>(
        &'a self,
        _namespace: &'a str,
        _selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<PodUsage>, String>> {
        let list = self
            .cpu
            .lock()
            .unwrap()
            .iter()
            .map(|(name, cpu)| PodUsage {
                name: name.clone(),
                timestamp: None,
                containers: BTreeMap::from([(
                    "app".to_string(),
                    Usage {
                        cpu: Quantity::parse(cpu).unwrap(),
                        memory: Quantity::parse("10Mi").unwrap(),
                    },
                )]),
            })
            .collect();
        futures::future::ready(Ok(list)).boxed()
    }
}

/// A Deployment `name` with `replicas` (no Deployment controller runs: its pods are made
/// by `ready_pods`), pods requesting 100m CPU.
async fn deployment(c: &Cluster, name: &str, replicas: i32) {
    let template = json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "busybox",
                                 "resources": {"requests": {"cpu": "100m"}}}]}
    });
    c.create(
        &c.api::<Deployment>("default"),
        json!({"metadata": {"name": name},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                        "template": template}}),
    )
    .await;
}

async fn ready_pods(c: &Cluster, app: &str, n: usize, node: Option<&str>) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{app}-{i}");
        let mut spec = json!({"containers": [{"name": "app", "image": "busybox",
                              "resources": {"requests": {"cpu": "100m"}}}]});
        if let Some(node) = node {
            spec["nodeName"] = json!(node);
        }
        c.create(
            &c.api::<Pod>("default"),
            json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": spec}),
        )
        .await;
        c.set_pod_ready("default", &name).await;
        names.push(name);
    }
    names
}

async fn autoscaler(c: &Cluster, target: &str, min: i32, max: i32, utilization: i32) {
    c.create(
        &c.api::<HorizontalPodAutoscaler>("default"),
        json!({"metadata": {"name": target},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                        "minReplicas": min, "maxReplicas": max,
                        "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                     "target": {"type": "Utilization", "averageUtilization": utilization}}}]}}),
    )
    .await;
}

async fn wait_replicas(c: &Cluster, name: &str, want: i32) {
    let api = c.api::<Deployment>("default");
    eventually(&format!("{name} scaled to {want}"), WAIT, || async {
        let d = api.get(name).await.ok()?;
        (d.spec?.replicas == Some(want)).then_some(())
    })
    .await;
}

async fn replicas(c: &Cluster, name: &str) -> i32 {
    c.api::<Deployment>("default")
        .get(name)
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(0)
}

/// The HPA's status once `check` accepts it.
async fn hpa_status<F>(c: &Cluster, name: &str, what: &str, check: F) -> serde_json::Value
where
    F: Fn(&serde_json::Value) -> bool,
{
    let api = c.api::<HorizontalPodAutoscaler>("default");
    eventually(what, WAIT, || async {
        let h = api.get(name).await.ok()?;
        let status = serde_json::to_value(h.status?).ok()?;
        check(&status).then_some(status)
    })
    .await
}

fn condition<'a>(status: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&serde_json::Value::Null)
}

async fn start_with_given_metrics(c: &mut Cluster, metrics: Arc<GivenMetrics>) {
    tokio::spawn(hpa::start_with(&c.ctx, metrics));
    c.run(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_at_most_doubles_then_stops_at_max() {
    let mut c = Cluster::new().await;
    let metrics = Arc::new(GivenMetrics::default());
    deployment(&c, "web", 4).await;
    let pods = ready_pods(&c, "web", 4, None).await;
    let names: Vec<&str> = pods.iter().map(String::as_str).collect();
    // 400m of 100m requested against a 50% target: 8× the pods wanted.
    metrics.set(&names, "400m");
    start_with_given_metrics(&mut c, metrics.clone()).await;
    autoscaler(&c, "web", 2, 10, 50).await;

    // At most double (4 pods or 100% per 15 s, whichever is more).
    wait_replicas(&c, "web", 8).await;
    let status = hpa_status(&c, "web", "status after the first rescale", |s| {
        s["desiredReplicas"] == 8 && s["lastScaleTime"].is_string()
    })
    .await;
    assert_eq!(status["currentReplicas"], 4);
    assert_eq!(
        status["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
        400
    );
    assert_eq!(
        status["currentMetrics"][0]["resource"]["current"]["averageValue"],
        "400m"
    );
    assert_eq!(
        condition(&status, "ScalingLimited")["reason"],
        "ScaleUpLimit"
    );
    assert_eq!(condition(&status, "ScalingLimited")["status"], "True");
    assert_eq!(
        condition(&status, "AbleToScale")["reason"],
        "SucceededRescale"
    );
    assert_eq!(
        condition(&status, "ScalingActive")["reason"],
        "ValidMetricFound"
    );
    let events = c
        .api::<Event>("default")
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    let messages: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("SuccessfulRescale"))
        .filter_map(|e| e.message.clone())
        .collect();
    assert_eq!(
        messages,
        vec![format!("New size: 8; reason: {CPU_REASON} above target")]
    );

    // Within the same 15 s nothing more happens; after them the rate allows 16, max is 10.
    c.clock.advance(Duration::from_secs(15));
    wait_replicas(&c, "web", 10).await;
    let status = hpa_status(&c, "web", "status at max", |s| s["desiredReplicas"] == 10).await;
    assert_eq!(
        condition(&status, "ScalingLimited")["reason"],
        "TooManyReplicas"
    );

    // Max stays max.
    c.clock.advance(Duration::from_secs(15));
    hpa_status(&c, "web", "status after another evaluation", |s| {
        s["currentReplicas"] == 10
    })
    .await;
    assert_eq!(replicas(&c, "web").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_waits_for_the_stabilization_window_and_stops_at_min() {
    let mut c = Cluster::new().await;
    let metrics = Arc::new(GivenMetrics::default());
    deployment(&c, "api", 4).await;
    let pods = ready_pods(&c, "api", 4, None).await;
    let names: Vec<&str> = pods.iter().map(String::as_str).collect();
    metrics.set(&names, "100m");
    start_with_given_metrics(&mut c, metrics.clone()).await;
    autoscaler(&c, "api", 2, 10, 50).await;
    // 100% vs 50%: 8.
    wait_replicas(&c, "api", 8).await;

    // Load drops to 10%: the recommendation is 1, but 5 minutes of history say 8.
    metrics.set(&names, "10m");
    c.clock.advance(Duration::from_secs(15));
    let status = hpa_status(&c, "api", "stabilised at 8", |s| {
        condition(s, "AbleToScale")["reason"] == "ScaleDownStabilized"
    })
    .await;
    assert_eq!(status["desiredReplicas"], 8);
    assert_eq!(replicas(&c, "api").await, 8);

    // 299 s after the high reading: still held (the status shows this evaluation's 11%).
    metrics.set(&names, "11m");
    c.clock.advance(Duration::from_secs(284));
    hpa_status(&c, "api", "evaluation at 299 s", |s| {
        s["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 11
    })
    .await;
    assert_eq!(replicas(&c, "api").await, 8);

    // Past the window (and the next sync): down, but not below minReplicas.
    c.clock.advance(Duration::from_secs(15));
    wait_replicas(&c, "api", 2).await;
    let status = hpa_status(&c, "api", "status at min", |s| s["desiredReplicas"] == 2).await;
    assert_eq!(
        condition(&status, "ScalingLimited")["reason"],
        "TooFewReplicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_raise_a_target_below_them_and_missing_metrics_say_why() {
    let mut c = Cluster::new().await;
    let metrics = Arc::new(GivenMetrics::default());
    deployment(&c, "low", 1).await;
    ready_pods(&c, "low", 1, None).await;
    start_with_given_metrics(&mut c, metrics.clone()).await;
    autoscaler(&c, "low", 3, 6, 50).await;
    // Below min: raised without looking at metrics.
    wait_replicas(&c, "low", 3).await;
    c.clock.advance(Duration::from_secs(15));
    // In range now, but no pod has metrics: no decision, and the condition says why.
    let status = hpa_status(&c, "low", "ScalingActive=False", |s| {
        condition(s, "ScalingActive")["status"] == "False"
    })
    .await;
    assert_eq!(
        condition(&status, "ScalingActive")["reason"],
        "FailedGetResourceMetric"
    );
    let message = condition(&status, "ScalingActive")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("did not receive metrics"), "{message}");
    assert_eq!(replicas(&c, "low").await, 3);
}

/// A node daemon's Summary API on loopback (TLS with the API server's own certificate, which
/// the API server's node client does not verify), answering `summary` to every request.
async fn stats_node(c: &Cluster, summary: serde_json::Value) -> u16 {
    let acceptor =
        skiff_control::server::http::tls_acceptor(&c.server.api().pki).expect("tls acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let body = summary.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_metrics_api_backed_by_node_stats() {
    let mut c = Cluster::new().await;
    let pod_stats = |name: &str| {
        json!({"podRef": {"name": name, "namespace": "default", "uid": ""},
               "cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 300_000_000u64},
               "memory": {"workingSetBytes": 20_971_520u64},
               "containers": [{"name": "app",
                   "cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 300_000_000u64},
                   "memory": {"workingSetBytes": 20_971_520u64}}]})
    };
    let summary = json!({
        "node": {"nodeName": "stats", "cpu": {"usageNanoCores": 1_000_000_000u64},
                 "memory": {"workingSetBytes": 1_073_741_824u64}},
        "pods": [pod_stats("busy-0"), pod_stats("busy-1")]
    });
    let port = stats_node(&c, summary).await;
    c.add_node("stats", "4", "8Gi", json!({})).await;
    c.all::<Node>()
        .patch_status(
            "stats",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}
            }})),
        )
        .await
        .expect("node address");
    deployment(&c, "busy", 2).await;
    ready_pods(&c, "busy", 2, Some("stats")).await;
    c.run(&[hpa::start]);
    autoscaler(&c, "busy", 1, 5, 60).await;

    // 300m of 100m against 60%: 5× → 10 wanted, 6 allowed now, 5 at most.
    wait_replicas(&c, "busy", 5).await;
    let status = hpa_status(&c, "busy", "status from real metrics", |s| {
        s["desiredReplicas"] == 5
    })
    .await;
    assert_eq!(
        status["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
        300
    );
    assert_eq!(
        condition(&status, "ScalingLimited")["reason"],
        "TooManyReplicas"
    );
}
