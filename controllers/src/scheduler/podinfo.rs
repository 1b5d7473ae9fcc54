//! The scheduler's view of a pod, computed once per pod: its requests as integers, host
//! ports, node constraints, tolerations and parsed (anti-)affinity terms. Filters and scores
//! only read this, never the pod's JSON-shaped spec.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, Pod, PodAffinityTerm, PreferredSchedulingTerm, Toleration,
};
use skiff_api::labels::Selector;

use super::resources::{pod_requests, pod_scoring_requests, Resources};
use crate::objects::controller_of;

/// A host port a pod binds on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// `0.0.0.0` when the pod does not name an address.
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two pods asking for these ports cannot share a node: same port and protocol,
    /// and the same address or either on all addresses.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || is_any(&self.ip) || is_any(&other.ip))
    }
}

fn is_any(ip: &str) -> bool {
    ip.is_empty() || ip == "0.0.0.0" || ip == "::"
}

/// One (anti-)affinity term with its selectors parsed.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// `None`: the term had no label selector and so matches no pod.
    pub selector: Option<Selector>,
    /// Namespaces listed by name; with no namespace selector and no names, the pod's own.
    pub namespaces: Vec<String>,
    /// `Some(empty)` selects every namespace.
    pub namespace_selector: Option<Selector>,
    pub topology_key: String,
}

/// Answers whether the namespace named by the second argument has labels matching the
/// selector (terms with a `namespaceSelector` need the namespaces' labels).
pub type NamespaceMatcher<'a> = &'a dyn Fn(&Selector, &str) -> bool;

impl AffinityTerm {
    fn parse(term: &PodAffinityTerm, own_namespace: &str) -> Result<AffinityTerm, String> {
        let selector = term
            .label_selector
            .as_ref()
            .map(Selector::from_label_selector)
            .transpose()
            .map_err(|e| format!("labelSelector: {e}"))?;
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .map(Selector::from_label_selector)
            .transpose()
            .map_err(|e| format!("namespaceSelector: {e}"))?;
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(own_namespace.to_string());
        }
        Ok(AffinityTerm {
            selector,
            namespaces,
            namespace_selector,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo, namespace_matches: NamespaceMatcher<'_>) -> bool {
        let Some(selector) = &self.selector else {
            return false;
        };
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.is_empty() || namespace_matches(s, &pod.namespace));
        in_namespace && selector.matches(&pod.labels)
    }
}

#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub priority: i32,
    pub requests: Resources,
    /// cpu (milli) and memory with the per-container defaults, for scoring.
    pub scoring_requests: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub node_selector: BTreeMap<String, String>,
    pub required_node_affinity: Option<NodeSelector>,
    pub preferred_node_affinity: Vec<PreferredSchedulingTerm>,
    pub tolerations: Vec<Toleration>,
    pub affinity: Vec<AffinityTerm>,
    pub anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
    /// The uid of the controller owning the pod (ReplicaSet, StatefulSet, …).
    pub controller_uid: Option<String>,
    /// Names of the PersistentVolumeClaims the pod mounts.
    pub claims: Vec<String>,
    /// Why the pod's own spec cannot be evaluated (a bad selector), if so.
    pub invalid: Option<String>,
}

impl PodInfo {
    pub fn new(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let mut info = PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            controller_uid: controller_of(meta).map(|r| r.uid.clone()),
            requests: pod_requests(pod),
            scoring_requests: pod_scoring_requests(pod),
            namespace,
            ..Default::default()
        };
        let Some(spec) = &pod.spec else {
            return info;
        };
        info.priority = spec.priority.unwrap_or(0);
        info.node_selector = spec.node_selector.clone().unwrap_or_default();
        info.tolerations = spec.tolerations.clone().unwrap_or_default();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for p in c.ports.iter().flatten() {
                if let Some(port) = p.host_port.filter(|p| *p > 0) {
                    info.host_ports.push(HostPort {
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port,
                    });
                }
            }
        }
        info.claims = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
            .collect();
        let Some(affinity) = &spec.affinity else {
            return info;
        };
        if let Some(na) = &affinity.node_affinity {
            info.required_node_affinity = na
                .required_during_scheduling_ignored_during_execution
                .clone();
            info.preferred_node_affinity = na
                .preferred_during_scheduling_ignored_during_execution
                .clone()
                .unwrap_or_default();
        }
        let mut errors = Vec::new();
        let ns = info.namespace.clone();
        let mut required = |terms: Option<&Vec<PodAffinityTerm>>, what: &str| {
            terms
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, t)| {
                    AffinityTerm::parse(t, &ns)
                        .map_err(|e| errors.push(format!("{what}[{i}].{e}")))
                        .ok()
                })
                .collect::<Vec<_>>()
        };
        if let Some(pa) = &affinity.pod_affinity {
            info.affinity = required(
                pa.required_during_scheduling_ignored_during_execution
                    .as_ref(),
                "podAffinity.requiredDuringSchedulingIgnoredDuringExecution",
            );
        }
        if let Some(pa) = &affinity.pod_anti_affinity {
            info.anti_affinity = required(
                pa.required_during_scheduling_ignored_during_execution
                    .as_ref(),
                "podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution",
            );
        }
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        AffinityTerm::parse(&t.pod_affinity_term, &ns)
                            .ok()
                            .map(|term| (t.weight, term))
                    })
                    .collect::<Vec<_>>()
            };
        if let Some(pa) = &affinity.pod_affinity {
            info.preferred_affinity = preferred(
                pa.preferred_during_scheduling_ignored_during_execution
                    .as_ref(),
            );
        }
        if let Some(pa) = &affinity.pod_anti_affinity {
            info.preferred_anti_affinity = preferred(
                pa.preferred_during_scheduling_ignored_during_execution
                    .as_ref(),
            );
        }
        if !errors.is_empty() {
            info.invalid = Some(format!("spec.affinity.{}", errors.join("; ")));
        }
        info
    }

    /// Has any pod (anti-)affinity term, required or preferred.
    pub fn has_pod_affinity(&self) -> bool {
        !self.affinity.is_empty()
            || !self.anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(v: serde_json::Value) -> PodInfo {
        PodInfo::new(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn collects_host_ports_with_defaults() {
        let p = info(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080},
                                    {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
                                    {"containerPort": 9090}]}]}}),
        );
        assert_eq!(
            p.host_ports,
            vec![
                HostPort {
                    ip: "0.0.0.0".into(),
                    protocol: "TCP".into(),
                    port: 8080
                },
                HostPort {
                    ip: "10.0.0.1".into(),
                    protocol: "UDP".into(),
                    port: 53
                },
            ]
        );
    }

    #[test]
    fn host_port_conflicts() {
        let hp = |ip: &str, proto: &str, port| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port,
        };
        assert!(hp("0.0.0.0", "TCP", 80).conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(hp("10.0.0.1", "TCP", 80).conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(!hp("10.0.0.1", "TCP", 80).conflicts(&hp("10.0.0.2", "TCP", 80)));
        assert!(!hp("0.0.0.0", "TCP", 80).conflicts(&hp("0.0.0.0", "UDP", 80)));
        assert!(!hp("0.0.0.0", "TCP", 80).conflicts(&hp("0.0.0.0", "TCP", 81)));
    }

    #[test]
    fn affinity_terms_default_to_the_pods_namespace() {
        let p = info(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [], "affinity": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"},
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "namespaceSelector": {}, "topologyKey": "zone"},
                    {"topologyKey": "zone"},
                ]}}}}),
        );
        let never = |_: &Selector, _: &str| false;
        let mut other = p.clone();
        other.namespace = "other".into();
        let terms = &p.anti_affinity;
        assert!(terms[0].matches(&p, &never));
        assert!(!terms[0].matches(&other, &never));
        assert!(
            terms[1].matches(&other, &never),
            "{{}} selects every namespace"
        );
        assert!(
            !terms[2].matches(&p, &never),
            "no label selector selects no pod"
        );
        assert!(p.invalid.is_none());
    }

    #[test]
    fn namespace_selector_asks_the_namespaces() {
        let p = info(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [], "affinity": {"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {}, "namespaceSelector": {"matchLabels": {"team": "a"}}, "topologyKey": "zone"},
                ]}}}}),
        );
        let team_a = |s: &Selector, ns: &str| {
            let labels: BTreeMap<String, String> = if ns == "ns" {
                [("team".to_string(), "a".to_string())].into()
            } else {
                BTreeMap::new()
            };
            s.matches(&labels)
        };
        let mut other = p.clone();
        other.namespace = "other".into();
        assert!(p.affinity[0].matches(&p, &team_a));
        assert!(!p.affinity[0].matches(&other, &team_a));
    }

    #[test]
    fn bad_selectors_make_the_pod_invalid() {
        let p = info(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}, "topologyKey": "zone"}]}}}}),
        );
        let why = p.invalid.expect("invalid");
        assert!(why.starts_with("spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector"), "{why}");
    }

    #[test]
    fn knows_its_controller_and_claims() {
        let p = info(
            json!({"metadata": {"name": "p", "namespace": "ns", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]},
            "spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                                                   {"name": "e", "emptyDir": {}}]}}),
        );
        assert_eq!(p.controller_uid.as_deref(), Some("u1"));
        assert_eq!(p.claims, vec!["data".to_string()]);
        assert_eq!(p.key(), "ns/p");
    }
}
