//! One scheduling decision: filter nodes until enough feasible ones are found, score those,
//! pick the best. Pure over the cache, so it is tested without a server.
//!
//! Like kube-scheduler it does not look at every node of a large cluster: it stops after
//! `num_feasible_nodes_to_find` feasible nodes (adaptive: 50% of the nodes minus one point
//! per 125 nodes, at least 5% and at least 100 nodes), and each search starts where the last
//! one stopped, so every node gets its turn.

use k8s_openapi::api::core::v1::NodeSelector;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cache::{Cache, NodeInfo};
use super::filters::{run_filters, AffinityCounts, Hint, PreFilter};
use super::podinfo::{NamespaceMatcher, PodInfo};
use super::scores::{inter_pod_topology_scores, score_nodes};
use super::summary::FitError;
use crate::context::ScoringStrategy;

const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes are enough to choose from among `all` nodes.
pub fn num_feasible_nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let percentage = 50usize
        .saturating_sub(all / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Where a pod goes and how much work finding it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

pub struct Algorithm {
    next_start: usize,
    rng: StdRng,
    pub strategy: ScoringStrategy,
}

impl Algorithm {
    pub fn new(strategy: ScoringStrategy, seed: u64) -> Algorithm {
        Algorithm {
            next_start: 0,
            rng: StdRng::seed_from_u64(seed),
            strategy,
        }
    }

    /// Chooses a node for `pod`, or says why none fits. `volumes` is the result of
    /// `filters::volume_constraints` for the pod.
    pub fn schedule(
        &mut self,
        cache: &Cache,
        pod: &PodInfo,
        volumes: Result<Vec<NodeSelector>, String>,
        ns: NamespaceMatcher<'_>,
    ) -> Result<Decision, FitError> {
        let all = cache.node_count();
        if all == 0 {
            let mut e = FitError::new(0);
            e.hints.insert(Hint::Node);
            return Err(e);
        }
        if let Some(why) = &pod.invalid {
            return Err(FitError::pod_level(all, why.clone()));
        }
        let volume_constraints = volumes.map_err(|why| FitError::pod_level(all, why))?;
        let pre = PreFilter {
            affinity: AffinityCounts::compute(cache, pod, ns),
            volume_constraints,
        };
        let wanted = num_feasible_nodes_to_find(all);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(wanted.min(all));
        let mut unfit = FitError::new(all);
        let mut evaluated = 0;
        let start = self.next_start % all;
        for i in 0..all {
            let node = cache.node_at((start + i) % all);
            evaluated += 1;
            match run_filters(node, pod, &pre, ns) {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= wanted {
                        break;
                    }
                }
                Err(reasons) => unfit.add_node(&reasons),
            }
        }
        self.next_start = (start + evaluated) % all;
        let chosen = match feasible.len() {
            0 => return Err(unfit),
            1 => feasible[0],
            _ => {
                let inter_pod = inter_pod_topology_scores(cache, pod, ns);
                let scores = score_nodes(&feasible, pod, self.strategy, inter_pod.as_ref());
                feasible[self.best(&scores)]
            }
        };
        Ok(Decision {
            node: chosen.name.clone(),
            evaluated,
            feasible: feasible.len(),
        })
    }

    /// The index of the highest score; ties are broken uniformly at random (reservoir
    /// sampling, as kube-scheduler's `selectHost`).
    fn best(&mut self, scores: &[i64]) -> usize {
        let mut best = 0;
        let mut ties = 0u32;
        for (i, s) in scores.iter().enumerate() {
            if i == 0 || *s > scores[best] {
                best = i;
                ties = 1;
            } else if *s == scores[best] {
                ties += 1;
                if self.rng.random_range(0..ties) == 0 {
                    best = i;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::PodState;
    use crate::scheduler::filters::tests::{no_ns, node, pod};
    use serde_json::json;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn feasible_nodes_to_find_adapts_to_the_cluster_size() {
        assert_eq!(num_feasible_nodes_to_find(50), 50);
        assert_eq!(
            num_feasible_nodes_to_find(100),
            100,
            "50% of 100 is below the minimum"
        );
        assert_eq!(num_feasible_nodes_to_find(1000), 420);
        assert_eq!(num_feasible_nodes_to_find(5000), 500);
        assert_eq!(num_feasible_nodes_to_find(10000), 500, "at least 5%");
    }

    fn cache(n: usize, cpu: &str) -> Cache {
        let mut c = Cache::default();
        for i in 0..n {
            c.upsert_node(Arc::new(node(
                &format!("n{i}"),
                json!({}),
                json!({"status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "110"}}}),
            )));
        }
        c
    }

    fn cpu_pod(name: &str, cpu: &str) -> PodInfo {
        pod(
            name,
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}),
        )
    }

    #[test]
    fn picks_the_only_fitting_node_and_explains_failures() {
        let mut c = cache(3, "1");
        c.upsert_node(Arc::new(node(
            "big",
            json!({}),
            json!({"status": {"allocatable": {"cpu": "4"}}}),
        )));
        let mut alg = Algorithm::new(ScoringStrategy::LeastAllocated, 1);
        let d = alg
            .schedule(&c, &cpu_pod("p", "2"), Ok(vec![]), &no_ns)
            .unwrap();
        assert_eq!(d.node, "big");
        assert_eq!(d.evaluated, 4);
        let e = alg
            .schedule(&c, &cpu_pod("p", "8"), Ok(vec![]), &no_ns)
            .unwrap_err();
        assert_eq!(e.message(), "0/4 nodes are available: 4 Insufficient cpu.");
    }

    #[test]
    fn least_allocated_spreads_and_most_allocated_packs() {
        let mut c = cache(2, "4");
        let mut least = Algorithm::new(ScoringStrategy::LeastAllocated, 7);
        let mut most = Algorithm::new(ScoringStrategy::MostAllocated, 7);
        c.add_pod(Arc::new(cpu_pod("x", "2")), "n0", PodState::Confirmed);
        for _ in 0..10 {
            assert_eq!(
                least
                    .schedule(&c, &cpu_pod("p", "1"), Ok(vec![]), &no_ns)
                    .unwrap()
                    .node,
                "n1"
            );
            assert_eq!(
                most.schedule(&c, &cpu_pod("p", "1"), Ok(vec![]), &no_ns)
                    .unwrap()
                    .node,
                "n0"
            );
        }
    }

    #[test]
    fn ties_are_broken_among_all_best_nodes() {
        let c = cache(4, "1");
        let mut alg = Algorithm::new(ScoringStrategy::LeastAllocated, 3);
        let chosen: HashSet<String> = (0..100)
            .map(|_| {
                alg.schedule(&c, &cpu_pod("p", "100m"), Ok(vec![]), &no_ns)
                    .unwrap()
                    .node
            })
            .collect();
        assert_eq!(chosen.len(), 4);
    }

    #[test]
    fn large_clusters_stop_after_enough_feasible_nodes_and_rotate() {
        let c = cache(1000, "1");
        let mut alg = Algorithm::new(ScoringStrategy::LeastAllocated, 3);
        let d = alg
            .schedule(&c, &cpu_pod("p", "100m"), Ok(vec![]), &no_ns)
            .unwrap();
        assert_eq!((d.evaluated, d.feasible), (420, 420));
        assert_eq!(alg.next_start, 420);
        alg.schedule(&c, &cpu_pod("p", "100m"), Ok(vec![]), &no_ns)
            .unwrap();
        alg.schedule(&c, &cpu_pod("p", "100m"), Ok(vec![]), &no_ns)
            .unwrap();
        assert_eq!(alg.next_start, (420 * 3) % 1000);
    }

    #[test]
    fn pod_level_failures_and_no_nodes() {
        let c = cache(2, "1");
        let mut alg = Algorithm::new(ScoringStrategy::LeastAllocated, 3);
        let e = alg
            .schedule(
                &c,
                &cpu_pod("p", "1m"),
                Err("persistentvolumeclaim \"x\" not found".into()),
                &no_ns,
            )
            .unwrap_err();
        assert_eq!(
            e.message(),
            "0/2 nodes are available: persistentvolumeclaim \"x\" not found."
        );
        let e = alg
            .schedule(&Cache::default(), &cpu_pod("p", "1m"), Ok(vec![]), &no_ns)
            .unwrap_err();
        assert_eq!(e.message(), "no nodes available to schedule pods");
        assert!(e.hints.contains(&Hint::Node));
    }

    #[test]
    fn assumed_pods_take_resources_for_the_next_decision() {
        let mut c = cache(2, "1");
        let mut alg = Algorithm::new(ScoringStrategy::LeastAllocated, 3);
        for i in 0..4 {
            let p = cpu_pod(&format!("p{i}"), "500m");
            let d = alg.schedule(&c, &p, Ok(vec![]), &no_ns).unwrap();
            c.add_pod(Arc::new(p), &d.node, PodState::Assumed);
        }
        let e = alg
            .schedule(&c, &cpu_pod("p5", "500m"), Ok(vec![]), &no_ns)
            .unwrap_err();
        assert_eq!(e.message(), "0/2 nodes are available: 2 Insufficient cpu.");
        assert!(c.nodes().all(|n| n.requested.milli_cpu == 1000));
    }
}
