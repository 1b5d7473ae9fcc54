//! Filters: can this pod run on this node? Each is a pure function of the pod's
//! `PodInfo`, the node's `NodeInfo` and, for the checks that look across nodes, state
//! computed once per pod (`PreFilter`). A failing node gets the reasons kube-scheduler
//! gives, word for word, so the summary reads like Kubernetes'.
//!
//! The order is kube-scheduler's plugin order (NodeUnschedulable, TaintToleration,
//! NodeAffinity, NodePorts, NodeResourcesFit, VolumeBinding, InterPodAffinity); the first
//! failing filter decides a node's reasons.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim, Taint,
};

use super::cache::{Cache, NodeInfo, Readiness};
use super::podinfo::{NamespaceMatcher, PodInfo};
use super::resources::{CPU, EPHEMERAL_STORAGE, MEMORY};
use crate::placement::{self, tolerates_any};

pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Why a node cannot take a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    NotReady,
    Unschedulable,
    UntoleratedTaint { key: String, value: String },
    NodeAffinity,
    HostPorts,
    TooManyPods,
    Insufficient(String),
    VolumeNodeAffinity,
    ExistingAntiAffinity,
    AntiAffinity,
    Affinity,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::HostPorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Reason::VolumeNodeAffinity => f.write_str("node(s) had volume node affinity conflict"),
            Reason::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
            Reason::AntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::Affinity => f.write_str("node(s) didn't match pod affinity rules"),
        }
    }
}

/// What kind of cluster change can make a node with this reason fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hint {
    /// A node change (added, relabelled, uncordoned, more allocatable).
    Node,
    /// A pod leaving a node (deleted, finished) frees resources, ports, or anti-affinity.
    PodGone,
    /// A pod arriving on a node can satisfy pod affinity.
    PodAdded,
    /// A volume or claim change.
    Volume,
}

impl Reason {
    pub fn hints(&self) -> &'static [Hint] {
        match self {
            Reason::NotReady
            | Reason::Unschedulable
            | Reason::UntoleratedTaint { .. }
            | Reason::NodeAffinity => &[Hint::Node],
            Reason::HostPorts
            | Reason::TooManyPods
            | Reason::Insufficient(_)
            | Reason::ExistingAntiAffinity
            | Reason::AntiAffinity => &[Hint::Node, Hint::PodGone],
            Reason::VolumeNodeAffinity => &[Hint::Node, Hint::Volume],
            Reason::Affinity => &[Hint::Node, Hint::PodAdded],
        }
    }
}

fn no_schedule_taint(key: &str) -> Taint {
    Taint {
        key: key.to_string(),
        effect: "NoSchedule".to_string(),
        ..Default::default()
    }
}

/// Ready and not cordoned. A pod tolerating the taint that Kubernetes' node lifecycle puts
/// on such nodes (`not-ready`, `unreachable`, `unschedulable` with `NoSchedule`) passes, as
/// DaemonSet pods do.
pub fn node_condition(node: &NodeInfo, pod: &PodInfo) -> Result<(), Reason> {
    let condition_taint = match node.readiness {
        Readiness::Ready => None,
        Readiness::NotReady => Some(TAINT_NOT_READY),
        Readiness::Unknown => Some(TAINT_UNREACHABLE),
    };
    if let Some(key) = condition_taint {
        if !tolerates_any(&pod.tolerations, &no_schedule_taint(key)) {
            return Err(Reason::NotReady);
        }
    }
    if node.unschedulable
        && !tolerates_any(&pod.tolerations, &no_schedule_taint(TAINT_UNSCHEDULABLE))
    {
        return Err(Reason::Unschedulable);
    }
    Ok(())
}

/// Every `NoSchedule` and `NoExecute` taint is tolerated.
pub fn taint_toleration(node: &NodeInfo, pod: &PodInfo) -> Result<(), Reason> {
    match node.taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates_any(&pod.tolerations, t)
    }) {
        None => Ok(()),
        Some(t) => Err(Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        }),
    }
}

/// A node selector term against a node (`crate::placement` matches it).
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    placement::term_matches(term, &node.name, &node.labels)
}

/// The terms are ORed.
pub fn node_selector_matches(selector: &NodeSelector, node: &NodeInfo) -> bool {
    placement::node_selector_matches(selector, &node.name, &node.labels)
}

/// `spec.nodeSelector` and the required node affinity.
pub fn node_affinity(node: &NodeInfo, pod: &PodInfo) -> Result<(), Reason> {
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = pod
        .required_node_affinity
        .as_ref()
        .is_none_or(|s| node_selector_matches(s, node));
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(Reason::NodeAffinity)
    }
}

/// No host port of the pod is taken on the node.
pub fn host_ports(node: &NodeInfo, pod: &PodInfo) -> Result<(), Reason> {
    let conflict = pod
        .host_ports
        .iter()
        .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
    if conflict {
        Err(Reason::HostPorts)
    } else {
        Ok(())
    }
}

/// Pod count, then each requested resource against allocatable minus requested; every
/// shortfall is a reason.
pub fn fits_resources(node: &NodeInfo, pod: &PodInfo) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        reasons.push(Reason::TooManyPods);
    }
    let want = &pod.requests;
    if want.is_zero() {
        return reasons;
    }
    let free = |name: &str| node.allocatable.get(name) - node.requested.get(name);
    for (name, amount) in [
        (CPU, want.milli_cpu),
        (MEMORY, want.memory),
        (EPHEMERAL_STORAGE, want.ephemeral_storage),
    ] {
        if amount > 0 && amount > free(name) {
            reasons.push(Reason::Insufficient(name.to_string()));
        }
    }
    for (name, amount) in &want.scalar {
        if *amount > 0 && *amount > free(name) {
            reasons.push(Reason::Insufficient(name.clone()));
        }
    }
    reasons
}

/// The node matches the node affinity of every PersistentVolume the pod's claims are bound to.
pub fn volume_node_affinity(node: &NodeInfo, constraints: &[NodeSelector]) -> Result<(), Reason> {
    if constraints.iter().all(|s| node_selector_matches(s, node)) {
        Ok(())
    } else {
        Err(Reason::VolumeNodeAffinity)
    }
}

/// The node constraints of the volumes behind a pod's claims, or why the pod cannot be
/// placed anywhere. A claim not bound yet constrains nothing: the volume binder can
/// provision it where the pod lands (as `WaitForFirstConsumer` does).
pub fn volume_constraints(
    pod: &PodInfo,
    claim: impl Fn(&str) -> Option<Arc<PersistentVolumeClaim>>,
    volume: impl Fn(&str) -> Option<Arc<PersistentVolume>>,
) -> Result<Vec<NodeSelector>, String> {
    let mut out = Vec::new();
    for name in &pod.claims {
        let Some(pvc) = claim(name) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let Some(pv_name) = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let Some(pv) = volume(pv_name) else {
            return Err(format!(
                "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{pv_name}\""
            ));
        };
        if let Some(required) = pv
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.clone())
        {
            out.push(required);
        }
    }
    Ok(out)
}

type TopologyPair = (String, String);

/// Counts per topology domain (`topologyKey=value`) for the required inter-pod affinity
/// filter, gathered once per pod over all pods in the cache.
#[derive(Debug, Default)]
pub struct AffinityCounts {
    /// Domains where an existing pod's required anti-affinity selects the incoming pod.
    existing_anti: HashMap<TopologyPair, u32>,
    /// Domains holding pods that match all the incoming pod's affinity terms.
    affinity: HashMap<TopologyPair, u32>,
    /// Domains holding pods that one of the incoming pod's anti-affinity terms selects.
    anti: HashMap<TopologyPair, u32>,
}

impl AffinityCounts {
    /// `None` when nothing needs checking (no required terms on either side).
    pub fn compute(cache: &Cache, pod: &PodInfo, ns: NamespaceMatcher<'_>) -> Option<Self> {
        if pod.affinity.is_empty()
            && pod.anti_affinity.is_empty()
            && !cache.any_required_anti_affinity()
        {
            return None;
        }
        let mut counts = AffinityCounts::default();
        let bump = |map: &mut HashMap<TopologyPair, u32>, node: &NodeInfo, key: &str| {
            if let Some(value) = node.labels.get(key) {
                *map.entry((key.to_string(), value.clone())).or_insert(0) += 1;
            }
        };
        for node in cache.nodes() {
            for existing in &node.pods {
                for term in &existing.anti_affinity {
                    if term.matches(pod, ns) {
                        bump(&mut counts.existing_anti, node, &term.topology_key);
                    }
                }
                if !pod.affinity.is_empty() && pod.affinity.iter().all(|t| t.matches(existing, ns))
                {
                    for term in &pod.affinity {
                        bump(&mut counts.affinity, node, &term.topology_key);
                    }
                }
                for term in &pod.anti_affinity {
                    if term.matches(existing, ns) {
                        bump(&mut counts.anti, node, &term.topology_key);
                    }
                }
            }
        }
        Some(counts)
    }
}

/// Required inter-pod affinity and anti-affinity, both ways: existing pods' anti-affinity
/// against the incoming pod, the incoming pod's anti-affinity against existing pods, and its
/// affinity (all terms, each in the node's domain). The first pod of a group whose terms
/// select itself may go anywhere that has the topology labels.
pub fn inter_pod_affinity(
    node: &NodeInfo,
    pod: &PodInfo,
    counts: &AffinityCounts,
    ns: NamespaceMatcher<'_>,
) -> Result<(), Reason> {
    let in_domain = |map: &HashMap<TopologyPair, u32>, key: &str| {
        node.labels.get(key).is_some_and(|v| {
            map.get(&(key.to_string(), v.clone()))
                .is_some_and(|n| *n > 0)
        })
    };
    if counts
        .existing_anti
        .iter()
        .any(|((k, v), n)| *n > 0 && node.labels.get(k) == Some(v))
    {
        return Err(Reason::ExistingAntiAffinity);
    }
    if pod
        .anti_affinity
        .iter()
        .any(|t| in_domain(&counts.anti, &t.topology_key))
    {
        return Err(Reason::AntiAffinity);
    }
    if pod.affinity.is_empty() {
        return Ok(());
    }
    if pod
        .affinity
        .iter()
        .any(|t| !node.labels.contains_key(&t.topology_key))
    {
        return Err(Reason::Affinity);
    }
    let all_present = pod
        .affinity
        .iter()
        .all(|t| in_domain(&counts.affinity, &t.topology_key));
    let first_of_its_group =
        counts.affinity.is_empty() && pod.affinity.iter().all(|t| t.matches(pod, ns));
    if all_present || first_of_its_group {
        Ok(())
    } else {
        Err(Reason::Affinity)
    }
}

/// What the filters need besides the node and the pod.
#[derive(Debug, Default)]
pub struct PreFilter {
    pub affinity: Option<AffinityCounts>,
    pub volume_constraints: Vec<NodeSelector>,
}

/// All filters in order; the reasons of the first that fails.
pub fn run_filters(
    node: &NodeInfo,
    pod: &PodInfo,
    pre: &PreFilter,
    ns: NamespaceMatcher<'_>,
) -> Result<(), Vec<Reason>> {
    node_condition(node, pod).map_err(|r| vec![r])?;
    taint_toleration(node, pod).map_err(|r| vec![r])?;
    node_affinity(node, pod).map_err(|r| vec![r])?;
    host_ports(node, pod).map_err(|r| vec![r])?;
    let short = fits_resources(node, pod);
    if !short.is_empty() {
        return Err(short);
    }
    volume_node_affinity(node, &pre.volume_constraints).map_err(|r| vec![r])?;
    if let Some(counts) = &pre.affinity {
        inter_pod_affinity(node, pod, counts, ns).map_err(|r| vec![r])?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scheduler::cache::PodState;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{json, Value};

    pub fn node(name: &str, labels: Value, extra: Value) -> Node {
        let mut v = json!({"metadata": {"name": name, "labels": labels}, "spec": {},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "3"},
                       "conditions": [{"type": "Ready", "status": "True"}]}});
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    pub fn pod(name: &str, spec: Value) -> PodInfo {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"containers": [{"name": "c"}]}});
        merge(&mut v, spec);
        PodInfo::new(&serde_json::from_value::<Pod>(v).unwrap())
    }

    pub fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    pub fn no_ns(_: &skiff_api::labels::Selector, _: &str) -> bool {
        false
    }

    fn info(n: &Node) -> NodeInfo {
        NodeInfo::with_pods(n, &[])
    }

    fn reasons(node: &NodeInfo, pod: &PodInfo) -> Vec<String> {
        match run_filters(node, pod, &PreFilter::default(), &no_ns) {
            Ok(()) => vec![],
            Err(rs) => rs.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn not_ready_nodes_fail_unless_the_pod_tolerates_not_ready() {
        let n = info(&node(
            "n",
            json!({}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ));
        assert_eq!(
            reasons(&n, &pod("p", json!({}))),
            vec!["node(s) were not ready"]
        );
        let tolerant = pod(
            "p",
            json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(reasons(&n, &tolerant).is_empty());
        let unknown = info(&node(
            "n",
            json!({}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        ));
        assert_eq!(reasons(&unknown, &tolerant), vec!["node(s) were not ready"]);
        let no_conditions = info(&node("n", json!({}), json!({"status": {"conditions": []}})));
        assert_eq!(
            node_condition(&no_conditions, &pod("p", json!({}))),
            Err(Reason::NotReady)
        );
    }

    #[test]
    fn cordoned_nodes_fail_unless_the_pod_tolerates_unschedulable() {
        let n = info(&node(
            "n",
            json!({}),
            json!({"spec": {"unschedulable": true}}),
        ));
        assert_eq!(
            reasons(&n, &pod("p", json!({}))),
            vec!["node(s) were unschedulable"]
        );
        let tolerant = pod(
            "p",
            json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(reasons(&n, &tolerant).is_empty());
        let everything = pod(
            "p",
            json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
        );
        assert!(reasons(&n, &everything).is_empty());
    }

    #[test]
    fn taints_need_tolerations() {
        let n = info(&node(
            "n",
            json!({}),
            json!({"spec": {"taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "soft", "value": "x", "effect": "PreferNoSchedule"}]}}),
        ));
        assert_eq!(
            reasons(&n, &pod("p", json!({}))),
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
        let equal = pod(
            "p",
            json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
        );
        assert!(reasons(&n, &equal).is_empty());
        let wrong_value = pod(
            "p",
            json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "cpu"}]}}),
        );
        assert!(!reasons(&n, &wrong_value).is_empty());
        let wrong_effect = pod(
            "p",
            json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]}}),
        );
        assert!(!reasons(&n, &wrong_effect).is_empty());
        let exists_any_effect = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}),
        );
        assert!(reasons(&n, &exists_any_effect).is_empty());
        let no_execute = info(&node(
            "n",
            json!({}),
            json!({"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}),
        ));
        assert_eq!(
            reasons(&no_execute, &pod("p", json!({}))),
            vec!["node(s) had untolerated taint {k: }"]
        );
    }

    #[test]
    fn node_selector_and_required_node_affinity() {
        let n = info(&node("n1", json!({"disk": "ssd", "gen": "5"}), json!({})));
        let sel = |s: Value| pod("p", json!({"spec": {"nodeSelector": s}}));
        assert!(reasons(&n, &sel(json!({"disk": "ssd"}))).is_empty());
        assert_eq!(
            reasons(&n, &sel(json!({"disk": "hdd"}))),
            vec!["node(s) didn't match Pod's node affinity/selector"]
        );
        let aff = |terms: Value| {
            pod(
                "p",
                json!({"spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}),
            )
        };
        let expr = |key: &str, op: &str, values: Value| json!([{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]);
        let fits = |p: &PodInfo| node_affinity(&n, p).is_ok();
        assert!(fits(&aff(expr("disk", "In", json!(["hdd", "ssd"])))));
        assert!(!fits(&aff(expr("disk", "NotIn", json!(["ssd"])))));
        assert!(fits(&aff(expr("zone", "NotIn", json!(["a"])))));
        assert!(fits(&aff(expr("disk", "Exists", json!(null)))));
        assert!(!fits(&aff(expr("disk", "DoesNotExist", json!(null)))));
        assert!(fits(&aff(expr("gen", "Gt", json!(["4"])))));
        assert!(!fits(&aff(expr("gen", "Lt", json!(["5"])))));
        assert!(
            !fits(&aff(expr("disk", "Gt", json!(["4"])))),
            "not a number"
        );
        let fields = |op: &str, v: &str| json!([{"matchFields": [{"key": "metadata.name", "operator": op, "values": [v]}]}]);
        assert!(fits(&aff(fields("In", "n1"))));
        assert!(!fits(&aff(fields("In", "n2"))));
        assert!(fits(&aff(fields("NotIn", "n2"))));
        // Terms are ORed; the expressions of one term ANDed; an empty term matches nothing.
        let ored = json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                          {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]},
                                                {"key": "gen", "operator": "In", "values": ["5"]}]}]);
        assert!(fits(&aff(ored)));
        assert!(!fits(&aff(json!([{}]))));
    }

    #[test]
    fn host_ports_conflict_with_used_ones() {
        let n = node("n", json!({}), json!({}));
        let with_port = |name: &str, port: i32, proto: &str| {
            pod(
                name,
                json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": port, "hostPort": port, "protocol": proto}]}]}}),
            )
        };
        let ni = NodeInfo::with_pods(&n, &[with_port("a", 80, "TCP")]);
        assert_eq!(
            reasons(&ni, &with_port("b", 80, "TCP")),
            vec!["node(s) didn't have free ports for the requested pod ports"]
        );
        assert!(reasons(&ni, &with_port("b", 80, "UDP")).is_empty());
        assert!(reasons(&ni, &with_port("b", 81, "TCP")).is_empty());
    }

    #[test]
    fn resources_and_pod_count() {
        let n = node(
            "n",
            json!({}),
            json!({"status": {"allocatable": {"example.com/gpu": "1"}}}),
        );
        let req = |name: &str, r: Value| {
            pod(
                name,
                json!({"spec": {"containers": [{"name": "c", "resources": {"requests": r}}]}}),
            )
        };
        let half = req("a", json!({"cpu": "500m", "memory": "256Mi"}));
        let ni = NodeInfo::with_pods(&n, &[half.clone(), req("b", json!({"cpu": "500m"}))]);
        assert_eq!(
            reasons(&ni, &req("c", json!({"cpu": "1m"}))),
            vec!["Insufficient cpu"]
        );
        assert_eq!(
            reasons(
                &ni,
                &req(
                    "c",
                    json!({"cpu": "100m", "memory": "1Gi", "ephemeral-storage": "1"})
                )
            ),
            vec![
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient ephemeral-storage"
            ]
        );
        assert!(reasons(&ni, &req("c", json!({"memory": "512Mi"}))).is_empty());
        assert_eq!(
            reasons(&ni, &req("c", json!({"example.com/gpu": "2"}))),
            vec!["Insufficient example.com/gpu"]
        );
        assert_eq!(
            reasons(&ni, &req("c", json!({"other.io/thing": "1"}))),
            vec!["Insufficient other.io/thing"]
        );
        let full = NodeInfo::with_pods(
            &n,
            &[
                req("a", json!({})),
                req("b", json!({})),
                req("c", json!({})),
            ],
        );
        assert_eq!(reasons(&full, &req("d", json!({}))), vec!["Too many pods"]);
        assert_eq!(
            reasons(&full, &req("d", json!({"cpu": "2"}))),
            vec!["Too many pods", "Insufficient cpu"]
        );
    }

    #[test]
    fn volume_node_affinity_follows_the_bound_volumes() {
        let claim = |name: &str, volume: Option<&str>| {
            Arc::new(
                serde_json::from_value::<PersistentVolumeClaim>(json!({
                "metadata": {"name": name, "namespace": "ns"}, "spec": {"volumeName": volume}}))
                .unwrap(),
            )
        };
        let local_pv = Arc::new(serde_json::from_value::<PersistentVolume>(json!({
            "metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}})).unwrap());
        let p = pod(
            "p",
            json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
        );
        let bound = volume_constraints(
            &p,
            |_| Some(claim("data", Some("pv1"))),
            |_| Some(local_pv.clone()),
        )
        .unwrap();
        assert_eq!(bound.len(), 1);
        let n1 = info(&node(
            "n1",
            json!({"kubernetes.io/hostname": "n1"}),
            json!({}),
        ));
        let n2 = info(&node(
            "n2",
            json!({"kubernetes.io/hostname": "n2"}),
            json!({}),
        ));
        let pre = PreFilter {
            volume_constraints: bound,
            ..Default::default()
        };
        assert!(run_filters(&n1, &p, &pre, &no_ns).is_ok());
        assert_eq!(
            run_filters(&n2, &p, &pre, &no_ns).unwrap_err()[0].to_string(),
            "node(s) had volume node affinity conflict"
        );
        let unbound = volume_constraints(&p, |_| Some(claim("data", None)), |_| None).unwrap();
        assert!(
            unbound.is_empty(),
            "an unbound claim may be provisioned anywhere"
        );
        assert_eq!(
            volume_constraints(&p, |_| None, |_| None).unwrap_err(),
            "persistentvolumeclaim \"data\" not found"
        );
        assert_eq!(
            volume_constraints(&p, |_| Some(claim("data", Some("gone"))), |_| None).unwrap_err(),
            "persistentvolumeclaim \"data\" bound to non-existent persistentvolume \"gone\""
        );
    }

    fn cache_with(nodes: &[Node], pods: &[(&str, PodInfo)]) -> Cache {
        let mut c = Cache::default();
        for n in nodes {
            c.upsert_node(Arc::new(n.clone()));
        }
        for (node, p) in pods {
            c.add_pod(Arc::new(p.clone()), node, PodState::Confirmed);
        }
        c
    }

    fn affinity_reasons(cache: &Cache, p: &PodInfo) -> Vec<(String, String)> {
        let pre = PreFilter {
            affinity: AffinityCounts::compute(cache, p, &no_ns),
            ..Default::default()
        };
        cache
            .nodes()
            .map(|n| {
                let r = run_filters(n, p, &pre, &no_ns)
                    .err()
                    .map(|r| r[0].to_string())
                    .unwrap_or_default();
                (n.name.clone(), r)
            })
            .collect()
    }

    fn zones() -> Vec<Node> {
        vec![
            node(
                "a1",
                json!({"zone": "a", "kubernetes.io/hostname": "a1"}),
                json!({}),
            ),
            node(
                "a2",
                json!({"zone": "a", "kubernetes.io/hostname": "a2"}),
                json!({}),
            ),
            node(
                "b1",
                json!({"zone": "b", "kubernetes.io/hostname": "b1"}),
                json!({}),
            ),
            node(
                "nozone",
                json!({"kubernetes.io/hostname": "nozone"}),
                json!({}),
            ),
        ]
    }

    fn term(kind: &str, app: &str, key: &str) -> Value {
        json!({"spec": {"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}}})
    }

    fn labelled(name: &str, app: &str, extra: Value) -> PodInfo {
        let mut v = json!({"metadata": {"labels": {"app": app}}});
        merge(&mut v, extra);
        pod(name, v)
    }

    #[test]
    fn pod_affinity_needs_a_matching_pod_in_the_domain() {
        let cache = cache_with(&zones(), &[("a1", labelled("db", "db", json!({})))]);
        let web = labelled("web", "web", term("podAffinity", "db", "zone"));
        let r = affinity_reasons(&cache, &web);
        assert_eq!(r[0].1, "");
        assert_eq!(r[1].1, "", "same zone as the db pod");
        assert_eq!(r[2].1, "node(s) didn't match pod affinity rules");
        assert_eq!(
            r[3].1, "node(s) didn't match pod affinity rules",
            "no zone label"
        );
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere_with_the_topology() {
        let cache = cache_with(&zones(), &[]);
        let web = labelled("web", "web", term("podAffinity", "web", "zone"));
        let r = affinity_reasons(&cache, &web);
        assert_eq!(r.iter().filter(|(_, r)| r.is_empty()).count(), 3);
        assert_eq!(r[3].1, "node(s) didn't match pod affinity rules");
        let lonely = labelled("web", "web", term("podAffinity", "db", "zone"));
        assert!(affinity_reasons(&cache, &lonely)
            .iter()
            .all(|(_, r)| !r.is_empty()));
    }

    #[test]
    fn pod_anti_affinity_keeps_apart_by_domain() {
        let cache = cache_with(&zones(), &[("a1", labelled("w1", "web", json!({})))]);
        let web = labelled("w2", "web", term("podAntiAffinity", "web", "zone"));
        let r = affinity_reasons(&cache, &web);
        assert_eq!(r[0].1, "node(s) didn't match pod anti-affinity rules");
        assert_eq!(r[1].1, "node(s) didn't match pod anti-affinity rules");
        assert_eq!(r[2].1, "");
        assert_eq!(r[3].1, "", "a node without the key is its own domain");
        let by_host = labelled(
            "w2",
            "web",
            term("podAntiAffinity", "web", "kubernetes.io/hostname"),
        );
        let r = affinity_reasons(&cache, &by_host);
        assert_eq!(r[0].1, "node(s) didn't match pod anti-affinity rules");
        assert_eq!(r[1].1, "");
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let guard = labelled("guard", "guard", term("podAntiAffinity", "web", "zone"));
        let cache = cache_with(&zones(), &[("b1", guard)]);
        let web = labelled("w", "web", json!({}));
        let r = affinity_reasons(&cache, &web);
        assert_eq!(
            r[2].1,
            "node(s) didn't satisfy existing pods anti-affinity rules"
        );
        assert_eq!(r[0].1, "");
        let other = labelled("o", "other", json!({}));
        assert!(affinity_reasons(&cache, &other)
            .iter()
            .all(|(_, r)| r.is_empty()));
    }

    #[test]
    fn reason_strings_are_kube_schedulers() {
        let all = [
            (Reason::NotReady, "node(s) were not ready"),
            (Reason::Unschedulable, "node(s) were unschedulable"),
            (
                Reason::UntoleratedTaint {
                    key: "k".into(),
                    value: "v".into(),
                },
                "node(s) had untolerated taint {k: v}",
            ),
            (
                Reason::NodeAffinity,
                "node(s) didn't match Pod's node affinity/selector",
            ),
            (
                Reason::HostPorts,
                "node(s) didn't have free ports for the requested pod ports",
            ),
            (Reason::TooManyPods, "Too many pods"),
            (Reason::Insufficient("cpu".into()), "Insufficient cpu"),
            (
                Reason::VolumeNodeAffinity,
                "node(s) had volume node affinity conflict",
            ),
            (
                Reason::ExistingAntiAffinity,
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ),
            (
                Reason::AntiAffinity,
                "node(s) didn't match pod anti-affinity rules",
            ),
            (Reason::Affinity, "node(s) didn't match pod affinity rules"),
        ];
        for (r, s) in all {
            assert_eq!(r.to_string(), s);
            assert!(!r.hints().is_empty());
        }
    }
}
