//! Scores: how good is each feasible node? Every score is 0–100 after normalisation (as
//! kube-scheduler's score plugins), and the node's total is their weighted sum.
//!
//! Weights follow kube-scheduler's defaults: resources 1, balanced allocation 1, node
//! affinity 2, inter-pod affinity 2, spreading 2 (the weight of default topology spreading,
//! which took over from SelectorSpread), taint toleration 3.

use std::collections::HashMap;

use super::cache::{Cache, NodeInfo};
use super::podinfo::{NamespaceMatcher, PodInfo};
use crate::context::ScoringStrategy;
use crate::placement::tolerates;

pub const MAX_SCORE: i64 = 100;

pub const WEIGHT_RESOURCES: i64 = 1;
pub const WEIGHT_BALANCED: i64 = 1;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
pub const WEIGHT_SPREAD: i64 = 2;
pub const WEIGHT_TAINT_TOLERATION: i64 = 3;

/// Weight of an existing pod's *required* affinity term that selects the incoming pod
/// (kube-scheduler's `hardPodAffinityWeight`).
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Topology labels that define a zone.
const ZONE_LABELS: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

/// LeastAllocated or MostAllocated over cpu and memory (weight 1 each), counting what the
/// node's pods request plus what this pod requests, request-less containers at the defaults.
pub fn resource_allocation(node: &NodeInfo, pod: &PodInfo, strategy: ScoringStrategy) -> i64 {
    let cpu = (
        node.scoring_requested.0 + pod.scoring_requests.0,
        node.allocatable.milli_cpu,
    );
    let mem = (
        node.scoring_requested.1 + pod.scoring_requests.1,
        node.allocatable.memory,
    );
    let score = |(requested, capacity): (i64, i64)| -> i64 {
        if capacity <= 0 {
            return 0;
        }
        match strategy {
            ScoringStrategy::LeastAllocated if requested > capacity => 0,
            ScoringStrategy::LeastAllocated => (capacity - requested) * MAX_SCORE / capacity,
            ScoringStrategy::MostAllocated => requested.min(capacity) * MAX_SCORE / capacity,
        }
    };
    (score(cpu) + score(mem)) / 2
}

/// How evenly cpu and memory would be used: 100 minus the standard deviation of the two
/// fractions (each capped at 1), in percent.
pub fn balanced_allocation(node: &NodeInfo, pod: &PodInfo) -> i64 {
    let fraction = |requested: i64, capacity: i64| -> Option<f64> {
        (capacity > 0).then(|| (requested as f64 / capacity as f64).min(1.0))
    };
    let fractions: Vec<f64> = [
        fraction(
            node.requested.milli_cpu + pod.requests.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        fraction(
            node.requested.memory + pod.requests.memory,
            node.allocatable.memory,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if fractions.len() < 2 {
        return MAX_SCORE;
    }
    let std = (fractions[0] - fractions[1]).abs() / 2.0;
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// Sum of the weights of the pod's preferred node affinity terms the node matches.
pub fn node_affinity_raw(node: &NodeInfo, pod: &PodInfo) -> i64 {
    pod.preferred_node_affinity
        .iter()
        .filter(|t| t.weight != 0 && super::filters::term_matches(&t.preference, node))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// How many `PreferNoSchedule` taints of the node the pod does not tolerate.
pub fn intolerable_taints(node: &NodeInfo, pod: &PodInfo) -> i64 {
    if node.taints.is_empty() {
        return 0;
    }
    let tolerations: Vec<_> = pod
        .tolerations
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

/// Per topology domain, the preferred inter-pod (anti-)affinity weight the incoming pod
/// earns there: its own preferred terms matching pods in the domain, and existing pods'
/// terms (required affinity at weight 1, preferred at their weight) matching it.
/// `None` when no term exists on either side.
pub fn inter_pod_topology_scores(
    cache: &Cache,
    pod: &PodInfo,
    ns: NamespaceMatcher<'_>,
) -> Option<HashMap<(String, String), i64>> {
    let own_terms = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
    if !own_terms && !cache.any_pod_affinity() {
        return None;
    }
    let mut scores: HashMap<(String, String), i64> = HashMap::new();
    let mut add = |node: &NodeInfo, key: &str, weight: i64| {
        if let Some(value) = node.labels.get(key) {
            *scores.entry((key.to_string(), value.clone())).or_insert(0) += weight;
        }
    };
    for node in cache.nodes() {
        for existing in &node.pods {
            for (w, term) in &pod.preferred_affinity {
                if term.matches(existing, ns) {
                    add(node, &term.topology_key, i64::from(*w));
                }
            }
            for (w, term) in &pod.preferred_anti_affinity {
                if term.matches(existing, ns) {
                    add(node, &term.topology_key, -i64::from(*w));
                }
            }
            if !existing.has_pod_affinity() {
                continue;
            }
            for term in &existing.affinity {
                if term.matches(pod, ns) {
                    add(node, &term.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for (w, term) in &existing.preferred_affinity {
                if term.matches(pod, ns) {
                    add(node, &term.topology_key, i64::from(*w));
                }
            }
            for (w, term) in &existing.preferred_anti_affinity {
                if term.matches(pod, ns) {
                    add(node, &term.topology_key, -i64::from(*w));
                }
            }
        }
    }
    Some(scores)
}

/// A node's raw inter-pod score: the sum over the domains it is in.
pub fn inter_pod_raw(node: &NodeInfo, scores: &HashMap<(String, String), i64>) -> i64 {
    scores
        .iter()
        .filter(|((k, v), _)| node.labels.get(k) == Some(v))
        .map(|(_, s)| *s)
        .sum()
}

/// Pods of the same controller on the node.
pub fn same_controller_pods(node: &NodeInfo, controller_uid: &str) -> i64 {
    node.pods
        .iter()
        .filter(|p| p.controller_uid.as_deref() == Some(controller_uid))
        .count() as i64
}

fn zone_of(node: &NodeInfo) -> Option<&str> {
    ZONE_LABELS
        .iter()
        .find_map(|k| node.labels.get(*k))
        .map(String::as_str)
}

/// kube-scheduler's SelectorSpread: fewer pods of the same controller on the node is
/// better, and, when nodes have zones, fewer in the zone (which weighs two thirds).
pub fn selector_spread(nodes: &[&NodeInfo], counts: &[i64]) -> Vec<i64> {
    let max_node = counts.iter().copied().max().unwrap_or(0);
    let mut by_zone: HashMap<&str, i64> = HashMap::new();
    for (n, c) in nodes.iter().zip(counts) {
        if let Some(z) = zone_of(n) {
            *by_zone.entry(z).or_insert(0) += c;
        }
    }
    let max_zone = by_zone.values().copied().max().unwrap_or(0);
    nodes
        .iter()
        .zip(counts)
        .map(|(n, c)| {
            let mut score = if max_node > 0 {
                (MAX_SCORE * (max_node - c)) as f64 / max_node as f64
            } else {
                MAX_SCORE as f64
            };
            if let Some(z) = zone_of(n) {
                let zone_score = if max_zone > 0 {
                    (MAX_SCORE * (max_zone - by_zone[z])) as f64 / max_zone as f64
                } else {
                    MAX_SCORE as f64
                };
                score = score / 3.0 + zone_score * 2.0 / 3.0;
            }
            score as i64
        })
        .collect()
}

/// kube-scheduler's `DefaultNormalizeScore`: scale to 0–100 by the maximum; `reverse`
/// makes low raw scores good (all 100 when every raw score is 0).
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_SCORE * *s / max;
        if reverse {
            *s = MAX_SCORE - *s;
        }
    }
}

/// Min–max scaling to 0–100 (inter-pod affinity's normalisation; raw scores may be < 0).
pub fn normalize_min_max(scores: &mut [i64]) {
    let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied())
    else {
        return;
    };
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            MAX_SCORE * (*s - min) / diff
        } else {
            0
        };
    }
}

/// The weighted total of every score for each feasible node.
pub fn score_nodes(
    nodes: &[&NodeInfo],
    pod: &PodInfo,
    strategy: ScoringStrategy,
    inter_pod: Option<&HashMap<(String, String), i64>>,
) -> Vec<i64> {
    let mut total: Vec<i64> = nodes
        .iter()
        .map(|n| {
            WEIGHT_RESOURCES * resource_allocation(n, pod, strategy)
                + WEIGHT_BALANCED * balanced_allocation(n, pod)
        })
        .collect();
    let mut add = |mut scores: Vec<i64>, weight: i64| {
        for (t, s) in total.iter_mut().zip(scores.drain(..)) {
            *t += weight * s;
        }
    };
    if !pod.preferred_node_affinity.is_empty() {
        let mut s: Vec<i64> = nodes.iter().map(|n| node_affinity_raw(n, pod)).collect();
        normalize(&mut s, false);
        add(s, WEIGHT_NODE_AFFINITY);
    }
    let mut taints: Vec<i64> = nodes.iter().map(|n| intolerable_taints(n, pod)).collect();
    normalize(&mut taints, true);
    add(taints, WEIGHT_TAINT_TOLERATION);
    if let Some(domains) = inter_pod {
        let mut s: Vec<i64> = nodes.iter().map(|n| inter_pod_raw(n, domains)).collect();
        normalize_min_max(&mut s);
        add(s, WEIGHT_INTER_POD_AFFINITY);
    }
    if let Some(uid) = &pod.controller_uid {
        let counts: Vec<i64> = nodes.iter().map(|n| same_controller_pods(n, uid)).collect();
        add(selector_spread(nodes, &counts), WEIGHT_SPREAD);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::PodState;
    use crate::scheduler::filters::tests::{merge, no_ns, node, pod};
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn req(name: &str, cpu: &str, mem: &str) -> PodInfo {
        pod(
            name,
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
        )
    }

    fn sized(name: &str, cpu: &str, mem: &str, pods: &[PodInfo]) -> NodeInfo {
        NodeInfo::with_pods(
            &node(
                name,
                json!({}),
                json!({"status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}}),
            ),
            pods,
        )
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let p = req("p", "1", "1Gi");
        let empty = sized("a", "4", "4Gi", &[]);
        let busy = sized("b", "4", "4Gi", &[req("x", "2", "2Gi")]);
        // (4-1)/4 = 75 for both resources; busy: (4-3)/4 = 25.
        assert_eq!(
            resource_allocation(&empty, &p, ScoringStrategy::LeastAllocated),
            75
        );
        assert_eq!(
            resource_allocation(&busy, &p, ScoringStrategy::LeastAllocated),
            25
        );
        assert_eq!(
            resource_allocation(&empty, &p, ScoringStrategy::MostAllocated),
            25
        );
        assert_eq!(
            resource_allocation(&busy, &p, ScoringStrategy::MostAllocated),
            75
        );
        let over = req("p", "8", "8Gi");
        assert_eq!(
            resource_allocation(&empty, &over, ScoringStrategy::LeastAllocated),
            0
        );
        assert_eq!(
            resource_allocation(&empty, &over, ScoringStrategy::MostAllocated),
            100
        );
    }

    #[test]
    fn request_less_pods_count_at_the_defaults_when_scoring() {
        let nothing = pod("p", json!({}));
        let n = sized("a", "1", "1000Mi", &[]);
        // 100m of 1000m used → 90; 200Mi of 1000Mi → 80.
        assert_eq!(
            resource_allocation(&n, &nothing, ScoringStrategy::LeastAllocated),
            85
        );
    }

    #[test]
    fn balanced_allocation_prefers_even_use() {
        let p = req("p", "1", "1Gi");
        let even = sized("a", "4", "4Gi", &[]);
        let skewed = sized("b", "4", "4Gi", &[req("x", "2", "0")]);
        assert_eq!(balanced_allocation(&even, &p), 100);
        // cpu 3/4, memory 1/4: std 0.25 → 75.
        assert_eq!(balanced_allocation(&skewed, &p), 75);
    }

    #[test]
    fn preferred_node_affinity_sums_matching_weights_and_normalises() {
        let p = pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 30, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}}}),
        );
        let n = |labels: Value| NodeInfo::with_pods(&node("n", labels, json!({})), &[]);
        let nodes = [
            n(json!({"disk": "ssd", "zone": "a"})),
            n(json!({"zone": "a"})),
            n(json!({})),
        ];
        let mut raw: Vec<i64> = nodes.iter().map(|x| node_affinity_raw(x, &p)).collect();
        assert_eq!(raw, vec![40, 30, 0]);
        normalize(&mut raw, false);
        assert_eq!(raw, vec![100, 75, 0]);
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let tainted = |taints: Value| {
            NodeInfo::with_pods(
                &node("n", json!({}), json!({"spec": {"taints": taints}})),
                &[],
            )
        };
        let soft = |k: &str| json!({"key": k, "effect": "PreferNoSchedule"});
        let nodes = [
            tainted(json!([])),
            tainted(json!([soft("a")])),
            tainted(json!([soft("a"), soft("b")])),
        ];
        let p = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
        );
        let mut raw: Vec<i64> = nodes.iter().map(|n| intolerable_taints(n, &p)).collect();
        assert_eq!(raw, vec![0, 1, 1]);
        normalize(&mut raw, true);
        assert_eq!(raw, vec![100, 0, 0]);
        let mut none = vec![0, 0];
        normalize(&mut none, true);
        assert_eq!(none, vec![100, 100]);
        // A NoSchedule toleration does not count for PreferNoSchedule taints.
        let hard = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(intolerable_taints(&nodes[1], &hard), 1);
    }

    fn labelled(name: &str, app: &str, extra: Value) -> PodInfo {
        let mut v = json!({"metadata": {"labels": {"app": app}}});
        merge(&mut v, extra);
        pod(name, v)
    }

    #[test]
    fn preferred_pod_affinity_and_anti_affinity_by_domain() {
        let mut cache = Cache::default();
        for (name, zone) in [("a1", "a"), ("b1", "b"), ("c1", "c")] {
            cache.upsert_node(Arc::new(node(name, json!({"zone": zone}), json!({}))));
        }
        cache.add_pod(
            Arc::new(labelled("db", "db", json!({}))),
            "a1",
            PodState::Confirmed,
        );
        cache.add_pod(
            Arc::new(labelled("cache", "cache", json!({}))),
            "b1",
            PodState::Confirmed,
        );
        let p = labelled(
            "web",
            "web",
            json!({"spec": {"affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 20, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}}]}}}}),
        );
        let domains = inter_pod_topology_scores(&cache, &p, &no_ns).unwrap();
        let nodes: Vec<&NodeInfo> = cache.nodes().collect();
        let mut raw: Vec<i64> = nodes.iter().map(|n| inter_pod_raw(n, &domains)).collect();
        assert_eq!(raw, vec![50, -20, 0]);
        normalize_min_max(&mut raw);
        assert_eq!(raw, vec![100, 0, 28]);
        let plain = labelled("x", "x", json!({}));
        assert!(
            inter_pod_topology_scores(&cache, &plain, &no_ns).is_none(),
            "no terms anywhere"
        );
    }

    #[test]
    fn existing_pods_preferences_attract_and_repel_the_incoming_pod() {
        let mut cache = Cache::default();
        for (name, zone) in [("a1", "a"), ("b1", "b")] {
            cache.upsert_node(Arc::new(node(name, json!({"zone": zone}), json!({}))));
        }
        let friend = labelled(
            "friend",
            "f",
            json!({"spec": {"affinity": {"podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 7, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}}],
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}}}}),
        );
        let foe = labelled(
            "foe",
            "x",
            json!({"spec": {"affinity": {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}}]}}}}),
        );
        cache.add_pod(Arc::new(friend), "a1", PodState::Confirmed);
        cache.add_pod(Arc::new(foe), "b1", PodState::Confirmed);
        let web = labelled("web", "web", json!({}));
        let domains = inter_pod_topology_scores(&cache, &web, &no_ns).unwrap();
        let nodes: Vec<&NodeInfo> = cache.nodes().collect();
        let raw: Vec<i64> = nodes.iter().map(|n| inter_pod_raw(n, &domains)).collect();
        assert_eq!(raw, vec![7 + HARD_POD_AFFINITY_WEIGHT, -5]);
    }

    #[test]
    fn spreading_prefers_nodes_and_zones_with_fewer_pods_of_the_controller() {
        let owned = |name: &str, uid: &str| {
            pod(
                name,
                json!({"metadata": {"ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]}}),
            )
        };
        let n = |name: &str, labels: Value, pods: &[PodInfo]| {
            NodeInfo::with_pods(&node(name, labels, json!({})), pods)
        };
        let a = n(
            "a",
            json!({}),
            &[owned("1", "rs1"), owned("2", "rs1"), owned("3", "other")],
        );
        let b = n("b", json!({}), &[owned("4", "rs1")]);
        let c = n("c", json!({}), &[]);
        let nodes = [&a, &b, &c];
        let counts: Vec<i64> = nodes
            .iter()
            .map(|x| same_controller_pods(x, "rs1"))
            .collect();
        assert_eq!(counts, vec![2, 1, 0]);
        assert_eq!(selector_spread(&nodes, &counts), vec![0, 50, 100]);
        // With zones: z1 holds 2, z2 holds 1 (of the same controller).
        let zone = |z: &str| json!({"topology.kubernetes.io/zone": z});
        let a = n("a", zone("z1"), &[owned("1", "rs1")]);
        let b = n("b", zone("z1"), &[owned("2", "rs1")]);
        let c = n("c", zone("z2"), &[owned("3", "rs1")]);
        let d = n("d", zone("z2"), &[]);
        let nodes = [&a, &b, &c, &d];
        let counts: Vec<i64> = nodes
            .iter()
            .map(|x| same_controller_pods(x, "rs1"))
            .collect();
        // Node scores 0,0,0,100; zone scores 0,0,50,50 → 0, 0, 33, 66.
        assert_eq!(selector_spread(&nodes, &counts), vec![0, 0, 33, 66]);
    }

    #[test]
    fn totals_weigh_the_scores() {
        let p = req("p", "1", "1Gi");
        let empty = sized("a", "4", "4Gi", &[]);
        let busy = sized("b", "4", "4Gi", &[req("x", "2", "2Gi")]);
        let totals = score_nodes(&[&empty, &busy], &p, ScoringStrategy::LeastAllocated, None);
        // resources 75 / 25, balanced 100 / 100, taints 100·3 each.
        assert_eq!(totals, vec![75 + 100 + 300, 25 + 100 + 300]);
        let most = score_nodes(&[&empty, &busy], &p, ScoringStrategy::MostAllocated, None);
        assert!(most[1] > most[0]);
    }
}
