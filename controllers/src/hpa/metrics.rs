//! Where the autoscaler's numbers come from: a small trait so tests can give numbers, and
//! its real implementation reading `metrics.k8s.io/v1beta1` PodMetrics from the API server
//! (which serves them from the node daemons' stats).

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use futures::FutureExt;
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::Client;
use serde_json::Value;
use skiff_api::labels::Selector;
use skiff_api::quantity::Quantity;

/// One container's current use.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Usage {
    pub cpu: Quantity,
    pub memory: Quantity,
}

/// One pod's current use, per container.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodUsage {
    pub name: String,
    pub timestamp: Option<Timestamp>,
    pub containers: BTreeMap<String, Usage>,
}

impl PodUsage {
    /// The pod's total of `resource` (`cpu` or `memory`), or of one container's.
    pub fn of(&self, resource: &str, container: Option<&str>) -> Option<Quantity> {
        let pick = |u: &Usage| match resource {
            "cpu" => Some(u.cpu),
            "memory" => Some(u.memory),
            _ => None,
        };
        match container {
            Some(c) => self.containers.get(c).and_then(pick),
            None if self.containers.is_empty() => None,
            None => self.containers.values().map(pick).sum::<Option<Quantity>>(),
        }
    }
}

/// Current resource use of the pods matching a selector.
pub trait MetricsSource: Send + Sync {
    /// The pods in `namespace` matching `selector` that have numbers; an error says why
    /// none could be had at all.
    fn pod_usage<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<PodUsage>, String>>;
}

/// The resource metrics API of the cluster (`metrics.k8s.io/v1beta1`).
#[derive(Clone)]
pub struct ResourceMetricsApi {
    client: Client,
}

impl ResourceMetricsApi {
    pub fn new(client: Client) -> ResourceMetricsApi {
        ResourceMetricsApi { client }
    }

    fn resource() -> ApiResource {
        ApiResource {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics.k8s.io/v1beta1".into(),
            kind: "PodMetrics".into(),
            plural: "pods".into(),
        }
    }
}

/// A `PodMetrics` object as the usage it reports; an error says what is malformed.
pub fn parse_pod_metrics(obj: &DynamicObject) -> Result<PodUsage, String> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let quantity = |c: &Value, what: &str| -> Result<Quantity, String> {
        let text = c
            .pointer(&format!("/usage/{what}"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("PodMetrics {name}: a container has no usage.{what}"))?;
        Quantity::parse(text)
            .map_err(|e| format!("PodMetrics {name}: usage.{what} {text:?}: {}", e.reason()))
    };
    let mut containers = BTreeMap::new();
    for c in obj
        .data
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cname = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        containers.insert(
            cname,
            Usage {
                cpu: quantity(c, "cpu")?,
                memory: quantity(c, "memory")?,
            },
        );
    }
    Ok(PodUsage {
        name,
        timestamp: obj
            .data
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok()),
        containers,
    })
}

impl MetricsSource for ResourceMetricsApi {
    fn pod_usage<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<PodUsage>, String>> {
        async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &Self::resource());
            let mut params = ListParams::default();
            if !selector.is_empty() {
                params = params.labels(&selector.to_string());
            }
            let list = api.list(&params).await.map_err(|e| {
                format!("unable to get metrics from the resource metrics API (metrics.k8s.io/v1beta1): {e}")
            })?;
            let mut out = Vec::with_capacity(list.items.len());
            for obj in &list.items {
                match parse_pod_metrics(obj) {
                    Ok(u) => out.push(u),
                    Err(e) => tracing::debug!(error = %e, "skipping malformed PodMetrics"),
                }
            }
            Ok(out)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_metrics_parse_into_usage() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": "web-1", "namespace": "default"},
            "timestamp": "2026-01-01T00:00:00Z", "window": "10s",
            "containers": [
                {"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}},
                {"name": "side", "usage": {"cpu": "12345n", "memory": "1Mi"}}
            ]
        }))
        .unwrap();
        let u = parse_pod_metrics(&obj).unwrap();
        assert_eq!(u.name, "web-1");
        assert_eq!(u.timestamp, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(
            u.of("cpu", None),
            Some(Quantity::from_nanos(250_000_000 + 12_345))
        );
        assert_eq!(
            u.of("memory", Some("side")),
            Some(Quantity::from_units(1 << 20))
        );
        assert_eq!(u.of("cpu", Some("nope")), None);
        assert_eq!(u.of("gpu", None), None);
        let bad: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": "x"},
            "containers": [{"name": "app", "usage": {"cpu": "lots", "memory": "1Mi"}}]
        }))
        .unwrap();
        assert!(parse_pod_metrics(&bad).unwrap_err().contains("usage.cpu"));
    }
}
