//! `skiffctl top node|pod`: CPU and memory use from the resource metrics API
//! (`metrics.k8s.io/v1beta1`) when the server lists it in discovery, else read from each
//! node daemon's Summary API (`/api/v1/nodes/{name}/proxy/stats/summary`), printed as
//! `kubectl top` prints the metrics-server's numbers: CPU in millicores, memory (working
//! set) in MiB.

use anyhow::Result;
use serde_json::Value;
use skiff_api::quantity::Quantity;

use crate::client::{self, Cluster};
use crate::errors;
use crate::table;

const MIB: u64 = 1024 * 1024;

fn millicores(nano_cores: u64) -> String {
    format!("{}m", nano_cores / 1_000_000)
}

fn mebibytes(bytes: u64) -> String {
    format!("{}Mi", bytes / MIB)
}

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

/// CPU (nanocores) and memory (working-set bytes) of a Summary API entry: its own numbers,
/// else the sum of its containers'. Either may be missing (CPU use is a rate: a node daemon
/// has none until it has read the counters twice).
fn usage(entry: &Value) -> (Option<u64>, Option<u64>) {
    let containers = entry.get("containers").and_then(Value::as_array);
    let of = |p: &str| {
        u64_at(entry, p).or_else(|| {
            containers
                .filter(|cs| !cs.is_empty())
                .and_then(|cs| cs.iter().map(|c| u64_at(c, p)).sum::<Option<u64>>())
        })
    };
    (of("/cpu/usageNanoCores"), of("/memory/workingSetBytes"))
}

fn or_unknown(v: Option<u64>, show: fn(u64) -> String) -> String {
    v.map(show).unwrap_or_else(|| "<unknown>".into())
}

fn node_names(nodes: &Value) -> Vec<String> {
    nodes
        .get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

const METRICS_API: &str = "/apis/metrics.k8s.io/v1beta1";

/// Whether the server lists `metrics.k8s.io` among its API groups.
async fn metrics_api_served(cluster: &Cluster) -> bool {
    match cluster.get("/apis").await {
        Ok(groups) => groups
            .get("groups")
            .and_then(Value::as_array)
            .is_some_and(|g| {
                g.iter()
                    .any(|g| g.get("name").and_then(Value::as_str) == Some("metrics.k8s.io"))
            }),
        Err(e) => {
            tracing::debug!("API discovery: {e:#}");
            false
        }
    }
}

/// A metrics API `usage` (`{"cpu": "250m", "memory": "12Mi"}`) in the Summary API's shape
/// (nanocores and bytes), so one printer serves both sources.
fn summary_usage(usage: Option<&Value>) -> Value {
    let quantity = |what: &str| {
        usage
            .and_then(|u| u.get(what))
            .and_then(Value::as_str)
            .and_then(|q| Quantity::parse(q).ok())
    };
    let mut out = serde_json::Map::new();
    if let Some(cpu) = quantity("cpu") {
        // Exact nanocores: containers are summed before rounding, as metrics-server does.
        let nano = cpu
            .checked_mul(1_000_000_000)
            .and_then(|n| u64::try_from(n.value()).ok())
            .unwrap_or(0);
        out.insert("cpu".into(), serde_json::json!({"usageNanoCores": nano}));
    }
    if let Some(mem) = quantity("memory") {
        let bytes = u64::try_from(mem.value()).unwrap_or(0);
        out.insert(
            "memory".into(),
            serde_json::json!({"workingSetBytes": bytes}),
        );
    }
    Value::Object(out)
}

/// A `PodMetrics` as a Summary API pod entry.
fn pod_entry(metrics: &Value) -> Value {
    let containers: Vec<Value> = metrics
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let mut entry = summary_usage(c.get("usage"));
            entry["name"] = c.get("name").cloned().unwrap_or(Value::Null);
            entry
        })
        .collect();
    serde_json::json!({
        "podRef": {
            "name": metrics.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "namespace": metrics.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
        },
        "containers": containers,
    })
}

/// The items of a metrics API answer (a list, or one object).
fn metrics_items(answer: Value) -> Vec<Value> {
    match answer.get("items").and_then(Value::as_array) {
        Some(items) => items.clone(),
        None if answer.is_object() => vec![answer],
        None => Vec::new(),
    }
}

/// Node name → Summary-shaped usage, from the metrics API.
async fn node_metrics(
    cluster: &Cluster,
    name: Option<&str>,
) -> Result<std::collections::HashMap<String, Value>> {
    let path = match name {
        Some(n) => format!("{METRICS_API}/nodes/{}", client::encode(n)),
        None => format!("{METRICS_API}/nodes"),
    };
    let answer = match cluster.get(&path).await {
        Ok(a) => a,
        Err(e) if name.is_some() && errors::is_not_found(&e) => Value::Null,
        Err(e) => return Err(e),
    };
    Ok(metrics_items(answer)
        .iter()
        .map(|m| {
            (
                m.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                summary_usage(m.get("usage")),
            )
        })
        .collect())
}

/// Summary-shaped pod entries from the metrics API.
async fn pod_metrics(cluster: &Cluster, args: &TopPodArgs) -> Result<Vec<Value>> {
    let path = match (&args.name, args.all_namespaces) {
        (_, true) => format!("{METRICS_API}/pods"),
        (Some(n), false) => format!(
            "{METRICS_API}/namespaces/{}/pods/{}",
            client::encode(&cluster.namespace),
            client::encode(n)
        ),
        (None, false) => format!(
            "{METRICS_API}/namespaces/{}/pods",
            client::encode(&cluster.namespace)
        ),
    };
    let answer = match cluster.get(&path).await {
        Ok(a) => a,
        Err(e) if errors::is_not_found(&e) => Value::Null,
        Err(e) => return Err(e),
    };
    Ok(metrics_items(answer).iter().map(pod_entry).collect())
}

async fn summary(cluster: &Cluster, node: &str) -> Result<Value> {
    cluster
        .get(&format!(
            "/api/v1/nodes/{}/proxy/stats/summary",
            client::encode(node)
        ))
        .await
}

fn percent(used: u64, of: Option<Quantity>, milli: bool) -> String {
    let total = of.map(|q| if milli { q.milli_value() } else { q.value() });
    match total {
        Some(t) if t > 0 => {
            let used = if milli {
                i128::from(used / 1_000_000)
            } else {
                i128::from(used)
            };
            format!("{}%", used * 100 / t)
        }
        _ => "<unknown>".into(),
    }
}

fn allocatable(node: &Value, what: &str) -> Option<Quantity> {
    node.pointer(&format!("/status/allocatable/{what}"))
        .and_then(Value::as_str)
        .and_then(|s| Quantity::parse(s).ok())
}

fn node_row(name: String, node: &Value, cpu: Option<u64>, mem: Option<u64>) -> Vec<String> {
    vec![
        name,
        or_unknown(cpu, millicores),
        cpu.map(|c| percent(c, allocatable(node, "cpu"), true))
            .unwrap_or_else(|| "<unknown>".into()),
        or_unknown(mem, mebibytes),
        mem.map(|m| percent(m, allocatable(node, "memory"), false))
            .unwrap_or_else(|| "<unknown>".into()),
    ]
}

/// One row per node; nodes whose daemon cannot be asked read `<unknown>`.
pub async fn nodes(cluster: &Cluster, name: Option<&str>, no_headers: bool) -> Result<()> {
    let objects: Vec<Value> = match name {
        Some(n) => vec![
            cluster
                .get(&format!("/api/v1/nodes/{}", client::encode(n)))
                .await?,
        ],
        None => {
            let list = cluster.get("/api/v1/nodes").await?;
            list.get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        }
    };
    if objects.is_empty() {
        anyhow::bail!("metrics not available yet: no nodes");
    }
    let mut rows = Vec::new();
    let mut failures = errors::Failures::default();
    let from_api = if metrics_api_served(cluster).await {
        Some(node_metrics(cluster, name).await?)
    } else {
        None
    };
    for node in &objects {
        let n = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(metrics) = &from_api {
            let (cpu, mem) = match metrics.get(&n) {
                Some(entry) => usage(entry),
                None if name.is_some() => anyhow::bail!("metrics not available yet"),
                None => (None, None),
            };
            rows.push(node_row(n, node, cpu, mem));
            continue;
        }
        let (cpu, mem) = match summary(cluster, &n).await {
            Ok(s) => usage(s.get("node").unwrap_or(&Value::Null)),
            Err(e) => {
                if name.is_some() {
                    return Err(e);
                }
                failures.report(&e.context(format!("metrics of node {n}")));
                (None, None)
            }
        };
        rows.push(node_row(n, node, cpu, mem));
    }
    let header = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
        .map(String::from)
        .to_vec();
    print!("{}", table::render(header, rows, no_headers));
    failures.finish()
}

/// What `top pod` was asked for.
#[derive(Debug, Clone, Default)]
pub struct TopPodArgs {
    pub name: Option<String>,
    pub all_namespaces: bool,
    pub containers: bool,
    pub no_headers: bool,
}

pub async fn pods(cluster: &Cluster, args: &TopPodArgs) -> Result<()> {
    let mut entries: Vec<Value> = Vec::new();
    let nodes = if metrics_api_served(cluster).await {
        entries = pod_metrics(cluster, args).await?;
        Vec::new()
    } else {
        node_names(&cluster.get("/api/v1/nodes").await?)
    };
    for node in &nodes {
        match summary(cluster, node).await {
            Ok(s) => entries.extend(
                s.get("pods")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            Err(e) => eprintln!(
                "{}",
                errors::render(&e.context(format!("metrics of node {node}")))
            ),
        }
    }
    let ns_of = |p: &Value| {
        p.pointer("/podRef/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let name_of = |p: &Value| {
        p.pointer("/podRef/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    entries.retain(|p| {
        (args.all_namespaces || ns_of(p) == cluster.namespace)
            && args.name.as_ref().is_none_or(|n| *n == name_of(p))
    });
    entries.sort_by_key(|p| (ns_of(p), name_of(p)));
    if entries.is_empty() {
        match &args.name {
            Some(n) => anyhow::bail!(
                "metrics not available yet for pod {}/{n}",
                cluster.namespace
            ),
            None if args.all_namespaces => anyhow::bail!("No resources found"),
            None => anyhow::bail!("No resources found in {} namespace.", cluster.namespace),
        }
    }
    let mut header: Vec<String> = Vec::new();
    if args.all_namespaces {
        header.push("NAMESPACE".into());
    }
    if args.containers {
        header.extend(["POD".into(), "NAME".into()]);
    } else {
        header.push("NAME".into());
    }
    header.extend(["CPU(cores)".into(), "MEMORY(bytes)".into()]);
    let mut rows = Vec::new();
    for p in &entries {
        let lead = |mut row: Vec<String>| {
            if args.all_namespaces {
                row.insert(0, ns_of(p));
            }
            row
        };
        if args.containers {
            for c in p
                .get("containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
                let (cpu, mem) = usage(c);
                rows.push(lead(vec![
                    name_of(p),
                    cname.to_string(),
                    or_unknown(cpu, millicores),
                    or_unknown(mem, mebibytes),
                ]));
            }
        } else {
            let (cpu, mem) = usage(p);
            rows.push(lead(vec![
                name_of(p),
                or_unknown(cpu, millicores),
                or_unknown(mem, mebibytes),
            ]));
        }
    }
    print!("{}", table::render(header, rows, args.no_headers));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_from_entry_or_containers() {
        let own = json!({"cpu": {"usageNanoCores": 5_000_000}, "memory": {"workingSetBytes": 12_582_912}});
        assert_eq!(usage(&own), (Some(5_000_000), Some(12_582_912)));
        let summed = json!({"containers": [
            {"cpu": {"usageNanoCores": 1_500_000}, "memory": {"workingSetBytes": 1_048_576}},
            {"cpu": {"usageNanoCores": 500_000}, "memory": {"workingSetBytes": 2_097_152}}
        ]});
        assert_eq!(usage(&summed), (Some(2_000_000), Some(3_145_728)));
        assert_eq!(usage(&json!({})), (None, None));
        let no_rate_yet = json!({"memory": {"workingSetBytes": 1_048_576}, "containers": [
            {"memory": {"workingSetBytes": 1_048_576}}
        ]});
        assert_eq!(usage(&no_rate_yet), (None, Some(1_048_576)));
        assert_eq!(millicores(250_000_000), "250m");
        assert_eq!(mebibytes(1_073_741_824), "1024Mi");
        assert_eq!(percent(250_000_000, Quantity::parse("4").ok(), true), "6%");
        assert_eq!(
            percent(1_073_741_824, Quantity::parse("8Gi").ok(), false),
            "12%"
        );
        assert_eq!(percent(1, None, false), "<unknown>");
    }

    #[test]
    fn metrics_api_answers_read_as_summaries() {
        let pm = json!({"metadata": {"name": "web", "namespace": "default"},
            "containers": [{"name": "a", "usage": {"cpu": "250m", "memory": "12Mi"}},
                {"name": "b", "usage": {"cpu": "1500000n", "memory": "1024Ki"}}]});
        let entry = pod_entry(&pm);
        assert_eq!(
            entry["podRef"],
            json!({"name": "web", "namespace": "default"})
        );
        assert_eq!(usage(&entry), (Some(251_500_000), Some(13_631_488)));
        assert_eq!(metrics_items(json!({"items": [pm.clone()]})).len(), 1);
        assert_eq!(metrics_items(pm).len(), 1);
        assert_eq!(metrics_items(Value::Null).len(), 0);
    }
}
