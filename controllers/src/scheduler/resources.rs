//! Resource arithmetic of the scheduler: what a pod requests, what a node can give.
//!
//! Quantities are turned into integers once per pod and once per node (cpu in millicores,
//! everything else in whole units, bytes for memory), so a filter is a few integer
//! comparisons.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use skiff_api::quantity::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// What a container without a cpu request counts for when nodes are scored (100m), so
/// nodes full of request-less pods do not look empty (Kubernetes' `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Likewise for memory: 200 MiB.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A vector of resource amounts: cpu in millicores, memory and ephemeral storage in bytes,
/// extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, …) in whole units, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// From a `requests`/`limits`/`allocatable` map. Unparseable quantities count as zero
    /// (the API server validates them; a scheduler must not stop on one).
    pub fn from_map(map: &BTreeMap<String, K8sQuantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in map {
            r.set(name, amount(name, q));
        }
        r
    }

    /// The amount of `name` (0 when absent).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            _ => self
                .scalar
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
                .map(|i| self.scalar[i].1)
                .unwrap_or(0),
        }
    }

    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            CPU => self.milli_cpu = value,
            MEMORY => self.memory = value,
            EPHEMERAL_STORAGE => self.ephemeral_storage = value,
            // `pods` is a node capacity, never a request; kept apart by the caller.
            _ => match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
                Ok(i) => self.scalar[i].1 = value,
                Err(i) => self.scalar.insert(i, (name.to_string(), value)),
            },
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let sum = self.get(name).saturating_add(*v);
            self.set(name, sum);
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let diff = self.get(name).saturating_sub(*v);
            self.set(name, diff);
        }
    }

    /// Per resource, the larger of the two.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            if *v > self.get(name) {
                self.set(name, *v);
            }
        }
    }

    /// Nothing requested at all.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// A quantity as the integer the scheduler counts in: millicores for cpu, units otherwise.
fn amount(name: &str, q: &K8sQuantity) -> i64 {
    let Ok(q) = Quantity::from_k8s(q) else {
        tracing::debug!(resource = name, quantity = %q.0, "unparseable quantity counts as 0");
        return 0;
    };
    let v = if name == CPU {
        q.milli_value()
    } else {
        q.value()
    };
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// A container's requests; a resource with a limit and no request requests its limit, as the
/// API server's defaulting makes it.
fn container_requests(c: &Container) -> Resources {
    let Some(res) = &c.resources else {
        return Resources::default();
    };
    let mut r = res
        .requests
        .as_ref()
        .map(Resources::from_map)
        .unwrap_or_default();
    for (name, q) in res.limits.iter().flatten() {
        let requested = res.requests.as_ref().is_some_and(|m| m.contains_key(name));
        if !requested && name != PODS {
            r.set(name, amount(name, q));
        }
    }
    r
}

/// The requests with Kubernetes' scoring defaults for containers that request no cpu or
/// no memory.
fn non_zero(mut r: Resources) -> Resources {
    if r.milli_cpu == 0 {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if r.memory == 0 {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// What a pod takes from a node while it runs, as Kubernetes' `PodRequests` computes it:
/// the sum of its containers (plus restartable init containers, the sidecars, which run
/// alongside them) or, if larger, what the init containers need while each runs (each
/// plus the sidecars started before it), plus the pod overhead. With `non_zero` every
/// container counts at least 100m cpu and 200Mi memory (for scoring only).
pub fn pod_requests_with(pod: &Pod, with_defaults: bool) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let of = |c: &Container| {
        let r = container_requests(c);
        if with_defaults {
            non_zero(r)
        } else {
            r
        }
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&of(c));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = of(c);
        let while_running = if is_sidecar(c) {
            total.add(&r);
            sidecars.add(&r);
            sidecars.clone()
        } else {
            let mut x = r;
            x.add(&sidecars);
            x
        };
        init_peak.max_with(&while_running);
    }
    total.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_map(overhead));
    }
    total
}

/// The requests the fit filter checks.
pub fn pod_requests(pod: &Pod) -> Resources {
    pod_requests_with(pod, false)
}

/// The requests scoring counts: cpu and memory with the per-container defaults.
pub fn pod_scoring_requests(pod: &Pod) -> (i64, i64) {
    let r = pod_requests_with(pod, true);
    (r.milli_cpu, r.memory)
}

/// What a node offers to pods: `status.allocatable` (or `capacity` when a node reports no
/// allocatable), and its pod count limit.
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let status = node.status.as_ref();
    let map = status
        .and_then(|s| s.allocatable.as_ref())
        .filter(|m| !m.is_empty())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    let Some(map) = map else {
        return (Resources::default(), 0);
    };
    let pods = map.get(PODS).map(|q| amount(PODS, q)).unwrap_or(0);
    let mut without_pods = map.clone();
    without_pods.remove(PODS);
    (Resources::from_map(&without_pods), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn sums_containers_and_takes_the_init_peak() {
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "300m", "nvidia.com/gpu": "1"}}},
            ],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
                {"name": "i2", "resources": {"requests": {"memory": "1Gi"}}},
            ],
            "overhead": {"cpu": "10m"},
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1010);
        assert_eq!(r.memory, 1024 * 1024 * 1024);
        assert_eq!(r.get("nvidia.com/gpu"), 1);
    }

    #[test]
    fn sidecars_run_with_the_containers_and_the_later_init_containers() {
        let p = pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "500m"}}},
            ],
        }));
        // Containers + sidecar = 300m; the init container runs next to the sidecar: 700m.
        assert_eq!(pod_requests(&p).milli_cpu, 700);
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m"}}},
        ]}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 250);
        assert_eq!(r.memory, 1 << 30);
    }

    #[test]
    fn scoring_counts_request_less_containers_at_the_defaults() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        assert_eq!(pod_scoring_requests(&p), (1100, 2 * DEFAULT_MEMORY_REQUEST));
        assert!(pod_requests(&p).memory == 0);
    }

    #[test]
    fn node_allocatable_falls_back_to_capacity() {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110", "example.com/dongle": "3"}}}))
        .unwrap();
        let (r, pods) = node_allocatable(&n);
        assert_eq!((r.milli_cpu, r.memory, pods), (4000, 8 << 30, 110));
        assert_eq!(r.get("example.com/dongle"), 3);
        assert_eq!(r.get(PODS), 0);
    }

    #[test]
    fn arithmetic_keeps_extended_resources_sorted() {
        let mut a = Resources::default();
        a.set("z.io/x", 1);
        a.set("a.io/y", 2);
        let b = a.clone();
        a.add(&b);
        assert_eq!(
            a.scalar,
            vec![("a.io/y".to_string(), 4), ("z.io/x".to_string(), 2)]
        );
        a.sub(&b);
        assert_eq!(a, b);
        assert!(!a.is_zero());
        assert!(Resources::default().is_zero());
    }
}
