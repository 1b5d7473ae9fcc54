//! Scheduler throughput: 5,000 simulated nodes (Node objects only) and 10,000 pending pods;
//! the time until every pod is bound. The goal is ≥ 3,000 pods/s (kube-scheduler's CI
//! threshold is 680–810 pods/s).
//!
//! The API server (SQLite in a temp dir) and the scheduler run in this process. Creating
//! the nodes and pods is not measured; the clock starts when the scheduler is started (so
//! it includes the informers' initial list of every node and pod).
//!
//! `cargo bench -p skiff-controllers --bench scheduler [-- --nodes N --pods M]`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use skiff_control::testing::TestServer;
use skiff_controllers::clock::SystemClock;
use skiff_controllers::context::{Context, ControllerConfig, ScoringStrategy};
use skiff_controllers::scheduler::algorithm::Algorithm;
use skiff_controllers::scheduler::cache::{Cache, PodState};
use skiff_controllers::scheduler::podinfo::PodInfo;
use skiff_controllers::scheduler::{self, Metrics};

/// Requests written at once while setting up.
const SETUP_CONCURRENCY: usize = 64;

fn main() {
    let nodes = common::arg("--nodes", 5000);
    let pods = common::arg("--pods", 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    in_memory(nodes, pods);
    runtime.block_on(run(nodes, pods));
}

async fn create_pods(client: &kube::Client, count: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("pod-{i:05}"), "labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "c", "image": "pause",
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
                }))
                .expect("pod JSON");
                pods.create(&PostParams::default(), &pod)
                    .await
                    .expect("create pod");
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
}

fn sim_node(i: usize) -> Node {
    let mut node = common::node_object(i);
    node.status =
        Some(serde_json::from_value(common::node_status("32", "128Gi")).expect("node status JSON"));
    node
}

/// The scheduler's own ceiling: decisions over the in-memory cache, no API server.
fn in_memory(node_count: usize, pod_count: usize) {
    let mut cache = Cache::default();
    for i in 0..node_count {
        cache.upsert_node(Arc::new(sim_node(i)));
    }
    let pods: Vec<Pod> = (0..pod_count)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("pod-{i:05}"), "namespace": "default", "uid": format!("uid-{i}")},
                "spec": {"containers": [{"name": "c", "image": "pause",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
            }))
            .expect("pod JSON")
        })
        .collect();
    let mut algorithm = Algorithm::new(ScoringStrategy::LeastAllocated, 1);
    let no_namespaces = |_: &skiff_api::labels::Selector, _: &str| false;
    let started = Instant::now();
    for pod in &pods {
        let info = Arc::new(PodInfo::new(pod));
        let decision = algorithm
            .schedule(&cache, &info, Ok(Vec::new()), &no_namespaces)
            .expect("every pod fits");
        cache.add_pod(info, &decision.node, PodState::Assumed);
    }
    let took = started.elapsed();
    println!(
        "in-memory decisions (no API server): {pod_count} pods on {node_count} nodes in {:.2} s: {:.0} pods/s",
        took.as_secs_f64(),
        pod_count as f64 / took.as_secs_f64()
    );
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
        .unwrap_or_else(|| "-".into())
}

async fn run(node_count: usize, pod_count: usize) {
    // 5,000 nodes need more /24 pod CIDRs than the default 10.244.0.0/16 holds.
    let server = TestServer::start_with(|config| {
        config.cluster_cidr = "100.64.0.0/10".to_string();
    })
    .await;
    let client = server.client().await;

    let setup = Instant::now();
    common::create_nodes(&client, node_count, "32", "128Gi", SETUP_CONCURRENCY).await;
    let nodes_took = setup.elapsed();
    create_pods(&client, pod_count).await;
    println!(
        "setup (not measured): {node_count} nodes in {:.1} s, {pod_count} pending pods in {:.1} s",
        nodes_took.as_secs_f64(),
        (setup.elapsed() - nodes_took).as_secs_f64()
    );

    let ctx = Context::new(
        client.clone(),
        Arc::new(SystemClock),
        ControllerConfig::default(),
    );
    let metrics = Arc::new(Metrics::default());
    let started = Instant::now();
    let scheduler = tokio::spawn(scheduler::start_with_metrics(&ctx, metrics.clone()));
    let informers = ctx.informers.start();

    let mut first_bind = None;
    let deadline = started + Duration::from_secs(600);
    loop {
        let bound = metrics.bound() as usize;
        if bound > 0 && first_bind.is_none() {
            first_bind = Some(Instant::now());
        }
        if bound >= pod_count {
            break;
        }
        if Instant::now() > deadline {
            panic!("only {bound} of {pod_count} pods bound after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = started.elapsed();
    let binding = first_bind.map(|t| t.elapsed()).unwrap_or_default();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let unbound = pods
        .list(&ListParams::default().fields("spec.nodeName="))
        .await
        .expect("list unbound pods")
        .items
        .len();

    println!("scheduler: {pod_count} pods on {node_count} nodes");
    println!(
        "  all bound in {:.2} s from start (incl. informer sync): {:.0} pods/s",
        total.as_secs_f64(),
        pod_count as f64 / total.as_secs_f64()
    );
    println!(
        "  first to last binding {:.2} s: {:.0} pods/s",
        binding.as_secs_f64(),
        pod_count as f64 / binding.as_secs_f64().max(1e-9)
    );
    println!(
        "  decision latency p50 {} p99 {}; binding request p50 {} p99 {}",
        ms(metrics.decision.quantile(0.5)),
        ms(metrics.decision.quantile(0.99)),
        ms(metrics.binding.quantile(0.5)),
        ms(metrics.binding.quantile(0.99)),
    );
    println!(
        "  attempts {}, unschedulable {}, binding errors {}, unbound per the API {unbound}",
        metrics.attempts.load(std::sync::atomic::Ordering::Relaxed),
        metrics
            .unschedulable
            .load(std::sync::atomic::Ordering::Relaxed),
        metrics
            .binding_errors
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    scheduler.abort();
    for t in informers {
        t.abort();
    }
}
