//! A Deployment of 1,000 replicas on 100 simulated nodes: time until every pod is bound, and
//! until the Deployment's status says all replicas are updated, ready and available.
//!
//! The API server (SQLite in a temp dir), the scheduler, the ReplicaSet and Deployment
//! controllers run in this process as they do in skiff-control. Nodes are Node objects only;
//! a simulated node daemon marks each pod Running and Ready as soon as it is bound, as a
//! real one would after starting it.
//!
//! `cargo bench -p skiff-controllers --bench deployment [-- --replicas N --nodes M]`

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use skiff_control::testing::TestServer;
use skiff_controllers::clock::SystemClock;
use skiff_controllers::context::ControllerConfig;
use skiff_controllers::manager::{self, ManagerConfig};

fn main() {
    let replicas = common::arg("--replicas", 1000);
    let nodes = common::arg("--nodes", 100);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run(replicas, nodes));
}

async fn run(replicas: usize, node_count: usize) {
    let server = TestServer::start().await;
    let client = server.client().await;

    common::create_nodes(&client, node_count, "64", "256Gi", 32).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let loops = tokio::spawn(manager::run(
        client.clone(),
        Arc::new(SystemClock),
        ManagerConfig {
            controllers: ControllerConfig::default(),
            leader_election: None,
            enabled: vec!["scheduler".into(), "replicaset".into(), "deployment".into()],
        },
        async {
            let _ = stopped.await;
        },
    ));

    let bound: Arc<Mutex<(HashSet<String>, Option<Instant>)>> = Default::default();
    let kubelet = tokio::spawn(simulated_node_daemons(
        client.clone(),
        bound.clone(),
        replicas,
    ));

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                 "template": {"metadata": {"labels": {"app": "bench"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox",
                                       "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}},
    }))
    .expect("deployment JSON");
    let started = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");

    let want = replicas as i32;
    loop {
        let d = deployments.get("bench").await.expect("get deployment");
        let s = d.status.clone().unwrap_or_default();
        if s.updated_replicas == Some(want)
            && s.ready_replicas == Some(want)
            && s.available_replicas == Some(want)
            && s.observed_generation >= d.metadata.generation
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            panic!("deployment not complete after 10 minutes: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let complete = started.elapsed();
    let all_bound = bound
        .lock()
        .unwrap()
        .1
        .map(|t| t.duration_since(started))
        .unwrap_or(complete);
    println!("deployment of {replicas} replicas on {node_count} simulated nodes:");
    println!(
        "  all pods bound:              {:.2} s",
        all_bound.as_secs_f64()
    );
    println!(
        "  status updated=ready=available={replicas}: {:.2} s",
        complete.as_secs_f64()
    );
    let _ = stop.send(());
    let _ = loops.await;
    kubelet.abort();
}

/// Marks each bound pod Running and Ready, as the node daemon would after starting it.
async fn simulated_node_daemons(
    client: kube::Client,
    bound: Arc<Mutex<(HashSet<String>, Option<Instant>)>>,
    expected: usize,
) {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let events = watcher(pods.clone(), watcher::Config::default())
        .try_filter_map(|ev| async move {
            Ok(match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => Some(p),
                _ => None,
            })
        })
        .filter_map(|p| async move { p.ok() });
    events
        .filter(|p: &Pod| {
            let todo = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running");
            async move { todo }
        })
        .map(|p| {
            let pods = pods.clone();
            let bound = bound.clone();
            async move {
                let name = p.name_any();
                {
                    let mut b = bound.lock().unwrap();
                    if b.0.insert(name.clone()) && b.0.len() == expected {
                        b.1 = Some(Instant::now());
                    }
                }
                let now = Time(jiff::Timestamp::now());
                let status = json!({"status": {
                    "phase": "Running", "podIP": "10.244.0.2",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                }});
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        })
        .buffer_unordered(32)
        .for_each(|_| async {})
        .await;
}
