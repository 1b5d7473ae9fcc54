//! What the control-loop benchmarks share: their arguments and their simulated nodes.
#![allow(dead_code)]

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// `--name N` from the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The name of simulated node `i`.
pub fn node_name(i: usize) -> String {
    format!("sim-{i:05}")
}

/// Simulated node `i`: labels for hostname and one of three zones.
pub fn node_object(i: usize) -> Node {
    let name = node_name(i);
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
        }},
    }))
    .expect("node JSON")
}

/// The status a node daemon would report: Ready, with the given allocatable resources.
pub fn node_status(cpu: &str, memory: &str) -> serde_json::Value {
    let now = Time(jiff::Timestamp::now());
    json!({
        "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
    })
}

/// Registers `count` Ready nodes (Node objects only), `concurrency` at a time.
pub async fn create_nodes(
    client: &kube::Client,
    count: usize,
    cpu: &str,
    memory: &str,
    concurrency: usize,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..count)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let node = node_object(i);
                nodes
                    .create(&PostParams::default(), &node)
                    .await
                    .expect("create node");
                let status = json!({"status": node_status(cpu, memory)});
                nodes
                    .patch_status(
                        &node_name(i),
                        &PatchParams::default(),
                        &Patch::Merge(&status),
                    )
                    .await
                    .expect("node status");
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
}
