//! The scheduler's own picture of the cluster: per node, the node object and the running
//! sums of what the pods bound (or assumed) there request.
//!
//! A pod the scheduler decided to place is *assumed* on its node at once, before the
//! binding is written, so the next decision already sees the resources taken. The pod
//! informer later confirms it; a failed binding forgets it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::podinfo::{HostPort, PodInfo};
use super::resources::{node_allocatable, Resources};

/// The node's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// `False`, or no condition reported yet.
    NotReady,
    /// `Unknown`: the node stopped reporting.
    Unknown,
}

/// One node and what the pods on it take.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while pods are known on a node whose object is not (or no longer) known.
    pub node: Option<Arc<Node>>,
    pub labels: BTreeMap<String, String>,
    pub readiness: Readiness,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    /// cpu (milli) and memory requested, counting request-less containers at the defaults.
    pub scoring_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
}

impl NodeInfo {
    pub fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            node: None,
            labels: BTreeMap::new(),
            readiness: Readiness::NotReady,
            unschedulable: false,
            taints: Vec::new(),
            allocatable: Resources::default(),
            allowed_pods: 0,
            requested: Resources::default(),
            scoring_requested: (0, 0),
            pods: Vec::new(),
            used_ports: Vec::new(),
        }
    }

    /// A node info for `node` with the given pods on it (tests and benchmarks).
    pub fn with_pods(node: &Node, pods: &[PodInfo]) -> NodeInfo {
        let mut info = NodeInfo::new(node.metadata.name.as_deref().unwrap_or_default());
        info.set_node(Arc::new(node.clone()));
        for p in pods {
            info.add_pod(Arc::new(p.clone()));
        }
        info
    }

    /// Takes the node object's scheduling facts; returns whether any changed.
    pub fn set_node(&mut self, node: Arc<Node>) -> bool {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let readiness = readiness(&node);
        let (allocatable, allowed_pods) = node_allocatable(&node);
        let changed = self.node.is_none()
            || labels != self.labels
            || unschedulable != self.unschedulable
            || taints != self.taints
            || readiness != self.readiness
            || allocatable != self.allocatable
            || allowed_pods != self.allowed_pods;
        self.labels = labels;
        self.unschedulable = unschedulable;
        self.taints = taints;
        self.readiness = readiness;
        self.allocatable = allocatable;
        self.allowed_pods = allowed_pods;
        self.node = Some(node);
        changed
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.scoring_requested.0 += pod.scoring_requests.0;
        self.scoring_requested.1 += pod.scoring_requests.1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.scoring_requested.0 -= pod.scoring_requests.0;
        self.scoring_requested.1 -= pod.scoring_requests.1;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        Some(pod)
    }
}

fn readiness(node: &Node) -> Readiness {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match ready.map(|c| c.status.as_str()) {
        Some("True") => Readiness::Ready,
        Some("Unknown") => Readiness::Unknown,
        _ => Readiness::NotReady,
    }
}

/// Where a cached pod stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Placed by this scheduler; the binding is being written.
    Assumed,
    /// The binding was written; the informer has not shown it yet.
    Bound,
    /// The informer shows the pod on its node.
    Confirmed,
}

#[derive(Debug, Clone)]
struct CachedPod {
    node: String,
    state: PodState,
    info: Arc<PodInfo>,
}

/// Nodes (in a stable order, for the rotating start of each search) and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    slots: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Slots holding a node object, in the order nodes were added.
    live: Vec<usize>,
    pods: HashMap<String, CachedPod>,
    /// Cached pods with any pod (anti-)affinity term: checks against existing pods' terms
    /// are skipped while there are none.
    with_affinity: usize,
    with_required_anti_affinity: usize,
}

impl Cache {
    /// Adds or updates a node; returns whether anything that can change a scheduling
    /// decision changed (then unschedulable pods deserve another try).
    pub fn upsert_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let slot = self.slot(&name);
        let was_live = self.slots[slot].node.is_some();
        let changed = self.slots[slot].set_node(node);
        if !was_live {
            self.live.push(slot);
        }
        changed
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(&slot) = self.index.get(name) {
            self.slots[slot].node = None;
            self.live.retain(|s| *s != slot);
        }
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.slots.push(NodeInfo::new(name));
        let i = self.slots.len() - 1;
        self.index.insert(name.to_string(), i);
        i
    }

    /// Number of nodes with a node object.
    pub fn node_count(&self) -> usize {
        self.live.len()
    }

    /// The `i`-th live node (0 ≤ i < node_count).
    pub fn node_at(&self, i: usize) -> &NodeInfo {
        &self.slots[self.live[i]]
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index
            .get(name)
            .map(|&i| &self.slots[i])
            .filter(|n| n.node.is_some())
    }

    /// Live nodes in order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.live.iter().map(|&i| &self.slots[i])
    }

    /// Names of all nodes with a node object.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes().map(|n| n.name.clone()).collect()
    }

    /// Records `pod` on `node` (adding or moving it); confirmation of an assumed pod on the
    /// same node only updates its facts (labels may have changed).
    pub fn add_pod(&mut self, info: Arc<PodInfo>, node: &str, state: PodState) {
        if self.pods.contains_key(&info.uid) {
            let uid = info.uid.clone();
            self.remove_pod(&uid);
        }
        if info.has_pod_affinity() {
            self.with_affinity += 1;
        }
        if !info.anti_affinity.is_empty() {
            self.with_required_anti_affinity += 1;
        }
        let slot = self.slot(node);
        self.slots[slot].add_pod(info.clone());
        self.pods.insert(
            info.uid.clone(),
            CachedPod {
                node: node.to_string(),
                state,
                info,
            },
        );
    }

    /// Forgets a pod (deleted, finished, or its binding failed); returns the node it was on.
    pub fn remove_pod(&mut self, uid: &str) -> Option<String> {
        let cached = self.pods.remove(uid)?;
        if cached.info.has_pod_affinity() {
            self.with_affinity -= 1;
        }
        if !cached.info.anti_affinity.is_empty() {
            self.with_required_anti_affinity -= 1;
        }
        if let Some(&slot) = self.index.get(&cached.node) {
            self.slots[slot].remove_pod(uid);
        }
        Some(cached.node)
    }

    pub fn set_state(&mut self, uid: &str, state: PodState) {
        if let Some(p) = self.pods.get_mut(uid) {
            p.state = state;
        }
    }

    /// Where the cache has `uid`, and how sure it is.
    pub fn pod(&self, uid: &str) -> Option<(&str, PodState)> {
        self.pods.get(uid).map(|p| (p.node.as_str(), p.state))
    }

    pub fn pod_info(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(uid).map(|p| &p.info)
    }

    /// Every cached pod's uid, `namespace/name` and state (for the deletion sweep).
    pub fn pod_keys(&self) -> Vec<(String, String, String, PodState)> {
        self.pods
            .iter()
            .map(|(uid, p)| {
                (
                    uid.clone(),
                    p.info.namespace.clone(),
                    p.info.name.clone(),
                    p.state,
                )
            })
            .collect()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn any_pod_affinity(&self) -> bool {
        self.with_affinity > 0
    }

    pub fn any_required_anti_affinity(&self) -> bool {
        self.with_required_anti_affinity > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"a": "b"}},
                "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"},
                           "conditions": [{"type": "Ready", "status": ready}]}}))
            .unwrap(),
        )
    }

    fn pod(uid: &str, cpu: &str, host_port: Option<i32>) -> Arc<PodInfo> {
        let ports = host_port
            .map(|p| json!([{"containerPort": p, "hostPort": p}]))
            .unwrap_or(json!([]));
        Arc::new(PodInfo::new(
            &serde_json::from_value(json!({"metadata": {"name": uid, "namespace": "ns", "uid": uid},
                "spec": {"containers": [{"name": "c", "ports": ports, "resources": {"requests": {"cpu": cpu}}}]}}))
            .unwrap(),
        ))
    }

    #[test]
    fn sums_requests_and_ports_of_pods_on_a_node() {
        let mut c = Cache::default();
        assert!(c.upsert_node(node("n1", "True")));
        assert!(!c.upsert_node(node("n1", "True")), "same facts: no change");
        assert!(c.upsert_node(node("n1", "False")), "readiness changed");
        c.add_pod(pod("a", "500m", Some(80)), "n1", PodState::Assumed);
        c.add_pod(pod("b", "250m", None), "n1", PodState::Confirmed);
        let n = c.node("n1").unwrap();
        assert_eq!(n.requested.milli_cpu, 750);
        assert_eq!(n.pods.len(), 2);
        assert_eq!(n.used_ports.len(), 1);
        assert_eq!(n.readiness, Readiness::NotReady);
        assert_eq!(c.remove_pod("a").as_deref(), Some("n1"));
        let n = c.node("n1").unwrap();
        assert_eq!((n.requested.milli_cpu, n.used_ports.len()), (250, 0));
        assert_eq!(c.remove_pod("a"), None);
    }

    #[test]
    fn re_adding_a_pod_moves_it_and_never_counts_it_twice() {
        let mut c = Cache::default();
        c.upsert_node(node("n1", "True"));
        c.upsert_node(node("n2", "True"));
        c.add_pod(pod("a", "1", None), "n1", PodState::Assumed);
        c.add_pod(pod("a", "1", None), "n1", PodState::Confirmed);
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        assert_eq!(c.pod("a"), Some(("n1", PodState::Confirmed)));
        c.add_pod(pod("a", "1", None), "n2", PodState::Confirmed);
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);
        assert_eq!(c.node("n2").unwrap().requested.milli_cpu, 1000);
    }

    #[test]
    fn pods_on_unknown_nodes_are_kept_until_the_node_arrives() {
        let mut c = Cache::default();
        c.add_pod(pod("a", "1", None), "later", PodState::Confirmed);
        assert_eq!(c.node_count(), 0);
        assert!(c.node("later").is_none());
        c.upsert_node(node("later", "True"));
        assert_eq!(c.node_count(), 1);
        assert_eq!(c.node_at(0).requested.milli_cpu, 1000);
        c.remove_node("later");
        assert_eq!(c.node_count(), 0);
        c.upsert_node(node("later", "True"));
        assert_eq!(c.node_names(), vec!["later".to_string()]);
    }
}
