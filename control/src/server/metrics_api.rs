//! The resource metrics API, `metrics.k8s.io/v1beta1`, as metrics-server serves it:
//! `NodeMetrics` and `PodMetrics` (CPU in cores, memory as working set) for
//! `skiffctl top` and the HorizontalPodAutoscaler.
//!
//! - `GET /apis/metrics.k8s.io/v1beta1/nodes[/{name}]` (`labelSelector` on the nodes)
//! - `GET /apis/metrics.k8s.io/v1beta1/pods` (all namespaces)
//! - `GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods[/{name}]` (`labelSelector` on
//!   the pods)
//!
//! There is no separate metrics server: the numbers come from each node daemon's Summary API
//! (`/stats/summary`, reached as `nodes/{name}/proxy` reaches it, with the kubelet client
//! certificate). A node's summary is kept for [`SUMMARY_TTL`] so that autoscalers and `top`
//! polling together ask each node at most that often. Lists leave out what has no numbers (a
//! node whose daemon does not answer, a pod not running or not yet measured), as
//! metrics-server does; a single object without numbers is `404 NotFound`, or `503` when its
//! node daemon cannot be reached (with the reason).
//!
//! `window` is nominal: the node daemon computes CPU rates between its own readings and does
//! not say over how long, so every answer carries [`WINDOW`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures::future::join_all;
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use jiff::Timestamp;
use serde_json::{json, Value};
use skiff_api::labels::Selector;
use skiff_api::quantity::Quantity;
use skiff_api::resources::{self, ResourceInfo};

use super::ops::ListOptions;
use super::proxy::{NodeConnector, NodeTarget};
use super::request::Query;
use super::status::{ApiError, ApiResult};
use super::ApiServer;
use crate::object;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
/// How long a node's summary is reused before the node is asked again.
pub const SUMMARY_TTL: Duration = Duration::from_secs(10);
/// The measurement window every answer reports.
pub const WINDOW: &str = "10s";
/// Largest summary accepted from a node daemon.
const MAX_SUMMARY: usize = 32 * 1024 * 1024;
/// How long one node daemon may take to answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a path under `/apis/metrics.k8s.io/v1beta1/` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsPath {
    Nodes {
        name: Option<String>,
    },
    /// `namespace` is `None` for the all-namespaces list.
    Pods {
        namespace: Option<String>,
        name: Option<String>,
    },
    /// Under the group/version but naming nothing it serves.
    Unknown(String),
}

impl MetricsPath {
    /// The label the request metrics use (`nodes.metrics.k8s.io`).
    pub fn resource_label(&self) -> &'static str {
        match self {
            MetricsPath::Nodes { .. } => "nodes.metrics.k8s.io",
            MetricsPath::Pods { .. } => "pods.metrics.k8s.io",
            MetricsPath::Unknown(_) => "",
        }
    }

    /// `get` for one object, `list` for a collection.
    pub fn verb(&self) -> &'static str {
        match self {
            MetricsPath::Nodes { name: Some(_) } | MetricsPath::Pods { name: Some(_), .. } => "get",
            _ => "list",
        }
    }
}

/// The metrics API path `path` names, or `None` when it is not one (the group's discovery
/// documents `/apis/metrics.k8s.io[/v1beta1]` are not: the discovery routes serve them).
pub fn parse_path(path: &str) -> Option<MetricsPath> {
    let rest = path.strip_prefix(&format!("/apis/{GROUP}/{VERSION}/"))?;
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let parsed = match s.as_slice() {
        [] => return None,
        ["nodes"] => MetricsPath::Nodes { name: None },
        ["nodes", name] => MetricsPath::Nodes {
            name: Some(name.to_string()),
        },
        ["pods"] => MetricsPath::Pods {
            namespace: None,
            name: None,
        },
        ["namespaces", ns, "pods"] => MetricsPath::Pods {
            namespace: Some(ns.to_string()),
            name: None,
        },
        ["namespaces", ns, "pods", name] => MetricsPath::Pods {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
        },
        _ => MetricsPath::Unknown(path.to_string()),
    };
    Some(parsed)
}

/// `/apis/metrics.k8s.io/v1beta1`: the two read-only resources.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics",
             "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics",
             "verbs": ["get", "list"]},
        ],
    })
}

fn core(plural: &str) -> ApiResult<&'static ResourceInfo> {
    resources::by_plural("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("no {plural} resource")))
}

fn metrics_not_found(what: &str, name: &str) -> ApiError {
    ApiError {
        details: Some(json!({"name": name, "group": GROUP, "kind": what})),
        ..ApiError::new(
            404,
            "NotFound",
            format!("{what}.{GROUP} \"{name}\" not found"),
        )
    }
}

/// Answers a metrics API request (already authenticated; any user may read metrics).
pub async fn serve(
    api: &Arc<ApiServer>,
    method: &Method,
    path: MetricsPath,
    query: &Query,
) -> ApiResult<Value> {
    if let MetricsPath::Unknown(p) = &path {
        return Err(ApiError::path_not_found(p));
    }
    if *method != Method::GET {
        return Err(ApiError::method_not_allowed(
            method.as_str(),
            path.resource_label(),
        ));
    }
    if query.flag("watch") {
        return Err(ApiError::method_not_allowed("WATCH", path.resource_label()));
    }
    let labels = query
        .get_nonempty("labelSelector")
        .map(|s| {
            Selector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))
        })
        .transpose()?;
    let now = Timestamp::now();
    match path {
        MetricsPath::Nodes { name: Some(name) } => {
            let node = match api.get(core("nodes")?, None, &name).await {
                Err(e) if e.code == 404 => return Err(metrics_not_found("nodemetrics", &name)),
                other => other?,
            };
            let summary = summary_of(api, &node).await.map_err(|e| {
                ApiError::unavailable(format!("metrics of node {name:?} are not available: {e}"))
            })?;
            node_metrics(&node, &summary, now)
                .ok_or_else(|| metrics_not_found("nodemetrics", &name))
        }
        MetricsPath::Nodes { name: None } => {
            let opts = ListOptions {
                labels,
                ..Default::default()
            };
            let nodes = api.list(core("nodes")?, None, &opts).await?.items;
            let summaries = join_all(nodes.iter().map(|n| summary_of(api, n))).await;
            let items: Vec<Value> = nodes
                .iter()
                .zip(summaries)
                .filter_map(|(node, summary)| match summary {
                    Ok(s) => node_metrics(node, &s, now),
                    Err(e) => {
                        tracing::debug!(node = object::name(node), error = %e, "no node metrics");
                        None
                    }
                })
                .collect();
            Ok(list("NodeMetricsList", items))
        }
        MetricsPath::Pods {
            namespace: Some(ns),
            name: Some(name),
        } => {
            let key = format!("{ns}/{name}");
            let pod = match api.get(core("pods")?, Some(&ns), &name).await {
                Err(e) if e.code == 404 => return Err(metrics_not_found("podmetrics", &key)),
                other => other?,
            };
            let node_name = node_of(&pod).ok_or_else(|| metrics_not_found("podmetrics", &key))?;
            let node = api
                .get(core("nodes")?, None, node_name)
                .await
                .map_err(|e| {
                    ApiError::unavailable(format!(
                        "metrics of pod {key} are not available: its node {node_name:?}: {}",
                        e.message
                    ))
                })?;
            let summary = summary_of(api, &node).await.map_err(|e| {
                ApiError::unavailable(format!("metrics of pod {key} are not available: {e}"))
            })?;
            pod_metrics(&pod, &summary, now).ok_or_else(|| metrics_not_found("podmetrics", &key))
        }
        MetricsPath::Pods { namespace, .. } => {
            let opts = ListOptions {
                labels,
                ..Default::default()
            };
            let pods = api
                .list(core("pods")?, namespace.as_deref(), &opts)
                .await?
                .items;
            let wanted: Vec<String> = {
                let mut names: Vec<String> = pods
                    .iter()
                    .filter_map(|p| node_of(p).map(String::from))
                    .collect();
                names.sort();
                names.dedup();
                names
            };
            let nodes_r = core("nodes")?;
            let fetched = join_all(wanted.iter().map(|n| async move {
                let node = api.get(nodes_r, None, n).await.map_err(|e| e.message)?;
                summary_of(api, &node).await
            }))
            .await;
            let mut summaries: HashMap<&str, Arc<Value>> = HashMap::new();
            for (name, result) in wanted.iter().zip(fetched) {
                match result {
                    Ok(s) => {
                        summaries.insert(name.as_str(), s);
                    }
                    Err(e) => tracing::debug!(node = %name, error = %e, "no pod metrics from node"),
                }
            }
            let items: Vec<Value> = pods
                .iter()
                .filter_map(|pod| {
                    let summary = summaries.get(node_of(pod)?)?;
                    pod_metrics(pod, summary, now)
                })
                .collect();
            Ok(list("PodMetricsList", items))
        }
        MetricsPath::Unknown(p) => Err(ApiError::path_not_found(&p)),
    }
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

/// CPU in cores as a quantity (`250m`, `12345n`) from nanocores.
pub fn cpu_quantity(nano_cores: u64) -> String {
    Quantity::from_nanos(i128::from(nano_cores)).to_string()
}

/// Memory as a quantity (`12Mi`, `1000Ki`) from bytes.
pub fn memory_quantity(bytes: u64) -> String {
    Quantity::from_nanos(i128::from(bytes) * 1_000_000_000).to_string()
}

/// (usageNanoCores, workingSetBytes, time) of a Summary API entry's own numbers.
fn usage_of(entry: &Value) -> Option<(u64, u64, Option<&str>)> {
    let cpu = entry.pointer("/cpu/usageNanoCores")?.as_u64()?;
    let memory = entry.pointer("/memory/workingSetBytes")?.as_u64()?;
    let time = entry
        .pointer("/cpu/time")
        .and_then(Value::as_str)
        .or_else(|| entry.pointer("/memory/time").and_then(Value::as_str));
    Some((cpu, memory, time))
}

fn timestamp(time: Option<&str>, now: Timestamp) -> String {
    time.and_then(|t| t.parse::<Timestamp>().ok())
        .unwrap_or(now)
        .to_string()
}

fn object_meta(obj: &Value, now: Timestamp) -> Value {
    let mut meta = json!({
        "name": object::name(obj),
        "creationTimestamp": now.to_string(),
    });
    if let Some(ns) = object::namespace(obj) {
        meta["namespace"] = json!(ns);
    }
    let labels = object::labels(obj);
    if !labels.is_empty() {
        meta["labels"] = json!(labels);
    }
    meta
}

/// A `NodeMetrics` for `node` from its daemon's summary; `None` when the summary has no CPU
/// rate or memory for the node yet.
pub fn node_metrics(node: &Value, summary: &Value, now: Timestamp) -> Option<Value> {
    let (cpu, memory, time) = usage_of(summary.get("node")?)?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": object_meta(node, now),
        "timestamp": timestamp(time, now),
        "window": WINDOW,
        "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)},
    }))
}

/// A `PodMetrics` for `pod` from its node's summary; `None` when the summary does not list
/// the pod or lacks numbers for one of its containers (metrics-server leaves such pods out).
pub fn pod_metrics(pod: &Value, summary: &Value, now: Timestamp) -> Option<Value> {
    let ns = object::namespace(pod)?;
    let name = object::name(pod);
    // By namespace and name, as metrics-server matches them.
    let stats = summary.get("pods")?.as_array()?.iter().find(|p| {
        p.pointer("/podRef/namespace").and_then(Value::as_str) == Some(ns)
            && p.pointer("/podRef/name").and_then(Value::as_str) == Some(name)
    })?;
    let containers = stats.get("containers")?.as_array()?;
    if containers.is_empty() {
        return None;
    }
    let mut time = None;
    let mut out = Vec::with_capacity(containers.len());
    for c in containers {
        let (cpu, memory, t) = usage_of(c)?;
        time = time.or(t);
        out.push(json!({
            "name": c.get("name")?.as_str()?,
            "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)},
        }));
    }
    let time = usage_of(stats).and_then(|(_, _, t)| t).or(time);
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": object_meta(pod, now),
        "timestamp": timestamp(time, now),
        "window": WINDOW,
        "containers": out,
    }))
}

struct CachedSummary {
    at: Instant,
    addr: SocketAddr,
    summary: Arc<Value>,
}

/// Summaries by (server data dir, node name): one cache per API server in the process.
static SUMMARIES: LazyLock<Mutex<HashMap<(PathBuf, String), CachedSummary>>> =
    LazyLock::new(Default::default);

/// The node's Summary API document, from the cache when it is younger than [`SUMMARY_TTL`].
async fn summary_of(api: &ApiServer, node: &Value) -> Result<Arc<Value>, String> {
    let target = NodeTarget::from_node(node).map_err(|e| e.to_string())?;
    let key = (api.config.data_dir.clone(), target.node.clone());
    {
        let cache = SUMMARIES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&key) {
            if c.addr == target.addr && c.at.elapsed() < SUMMARY_TTL {
                return Ok(c.summary.clone());
            }
        }
    }
    let summary = Arc::new(
        tokio::time::timeout(NODE_TIMEOUT, fetch_summary(api, &target))
            .await
            .map_err(|_| {
                format!(
                    "the node daemon of node {:?} at {} did not answer /stats/summary within {NODE_TIMEOUT:?}",
                    target.node, target.addr
                )
            })??,
    );
    let mut cache = SUMMARIES.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|_, c| c.at.elapsed() < SUMMARY_TTL);
    cache.insert(
        key,
        CachedSummary {
            at: Instant::now(),
            addr: target.addr,
            summary: summary.clone(),
        },
    );
    Ok(summary)
}

async fn fetch_summary(api: &ApiServer, target: &NodeTarget) -> Result<Value, String> {
    let connector = NodeConnector::new(&api.pki).map_err(|e| e.to_string())?;
    let req = Request::builder()
        .method(Method::GET)
        .uri("/stats/summary")
        .header(header::HOST, target.addr.to_string())
        .header(header::ACCEPT, "application/json")
        .body(Body::empty())
        .map_err(|e| {
            format!(
                "building the summary request for node {:?}: {e}",
                target.node
            )
        })?;
    let resp = connector
        .send(target, req)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_SUMMARY)
        .collect()
        .await
        .map_err(|e| format!("reading /stats/summary of node {:?}: {e}", target.node))?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "the node daemon of node {:?} answered /stats/summary with {status}: {}",
            target.node,
            String::from_utf8_lossy(&body[..body.len().min(512)]).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        format!(
            "the node daemon of node {:?} sent a /stats/summary that is not JSON: {e}",
            target.node
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn paths() {
        let p = |s: &str| parse_path(s);
        assert_eq!(p("/apis/metrics.k8s.io/v1beta1"), None);
        assert_eq!(p("/apis/metrics.k8s.io/v1beta1/"), None);
        assert_eq!(p("/apis/apps/v1/nodes"), None);
        assert_eq!(
            p("/apis/metrics.k8s.io/v1beta1/nodes"),
            Some(MetricsPath::Nodes { name: None })
        );
        assert_eq!(
            p("/apis/metrics.k8s.io/v1beta1/nodes/n1"),
            Some(MetricsPath::Nodes {
                name: Some("n1".into())
            })
        );
        assert_eq!(
            p("/apis/metrics.k8s.io/v1beta1/pods"),
            Some(MetricsPath::Pods {
                namespace: None,
                name: None
            })
        );
        assert_eq!(
            p("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1"),
            Some(MetricsPath::Pods {
                namespace: Some("default".into()),
                name: Some("web-1".into())
            })
        );
        assert!(matches!(
            p("/apis/metrics.k8s.io/v1beta1/deployments"),
            Some(MetricsPath::Unknown(_))
        ));
        assert_eq!(
            p("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods").map(|m| m.verb()),
            Some("list")
        );
    }

    #[test]
    fn quantities_as_metrics_server_writes_them() {
        assert_eq!(cpu_quantity(12_345), "12345n");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(memory_quantity(1_048_576), "1Mi");
        assert_eq!(memory_quantity(1_024_000), "1000Ki");
        assert_eq!(memory_quantity(1_000), "1k");
    }

    #[test]
    fn metrics_from_a_summary() {
        let summary = json!({
            "node": {"nodeName": "n1",
                     "cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 250_000_000u64},
                     "memory": {"workingSetBytes": 1_073_741_824u64}},
            "pods": [
                {"podRef": {"name": "web", "namespace": "default", "uid": "u1"},
                 "cpu": {"time": "2026-01-01T00:00:01Z", "usageNanoCores": 7_000_000u64},
                 "memory": {"workingSetBytes": 3_145_728u64},
                 "containers": [
                    {"name": "a", "cpu": {"usageNanoCores": 5_000_000u64}, "memory": {"workingSetBytes": 1_048_576u64}},
                    {"name": "b", "cpu": {"usageNanoCores": 2_000_000u64}, "memory": {"workingSetBytes": 2_097_152u64}}
                 ]},
                {"podRef": {"name": "fresh", "namespace": "default", "uid": "u2"},
                 "containers": [{"name": "a", "memory": {"workingSetBytes": 1u64}}]}
            ]
        });
        let now = at("2026-01-01T00:00:05Z");
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}});
        let m = node_metrics(&node, &summary, now).unwrap();
        assert_eq!(m["kind"], "NodeMetrics");
        assert_eq!(m["metadata"]["name"], "n1");
        assert_eq!(m["metadata"]["labels"]["zone"], "a");
        assert_eq!(m["timestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(m["window"], WINDOW);
        assert_eq!(m["usage"], json!({"cpu": "250m", "memory": "1Gi"}));

        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1",
                                      "labels": {"app": "web"}}});
        let m = pod_metrics(&pod, &summary, now).unwrap();
        assert_eq!(m["kind"], "PodMetrics");
        assert_eq!(m["metadata"]["namespace"], "default");
        assert_eq!(m["metadata"]["labels"]["app"], "web");
        assert_eq!(m["timestamp"], "2026-01-01T00:00:01Z");
        assert_eq!(
            m["containers"],
            json!([
                {"name": "a", "usage": {"cpu": "5m", "memory": "1Mi"}},
                {"name": "b", "usage": {"cpu": "2m", "memory": "2Mi"}}
            ])
        );
        // A pod not yet measured, a pod not listed.
        let fresh = json!({"metadata": {"name": "fresh", "namespace": "default"}});
        assert!(pod_metrics(&fresh, &summary, now).is_none());
        let absent = json!({"metadata": {"name": "web", "namespace": "other"}});
        assert!(pod_metrics(&absent, &summary, now).is_none());
        // A node daemon that has no CPU rate yet.
        let early = json!({"node": {"cpu": {}, "memory": {"workingSetBytes": 1u64}}});
        assert!(node_metrics(&node, &early, now).is_none());
    }
}
