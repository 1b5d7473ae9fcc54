//! Why a pod fits nowhere, summarised as kube-scheduler's `FitError` does:
//! `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node
//! affinity/selector.` — one count per reason over all nodes, the entries sorted as strings.

use std::collections::{BTreeMap, BTreeSet};

use super::filters::{Hint, Reason};

/// kube-scheduler's message when the cluster has no nodes at all.
pub const NO_NODES: &str = "no nodes available to schedule pods";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitError {
    /// Nodes the scheduler knew when it gave up.
    pub num_nodes: usize,
    /// Why the pod cannot go anywhere before any node is looked at (a missing claim, a
    /// selector that does not parse).
    pub pod_level: Option<String>,
    /// How many nodes failed for each reason.
    pub reasons: BTreeMap<String, usize>,
    /// What kinds of change could make the pod fit (for re-queueing).
    pub hints: BTreeSet<Hint>,
}

impl FitError {
    pub fn new(num_nodes: usize) -> FitError {
        FitError {
            num_nodes,
            ..Default::default()
        }
    }

    /// A failure of the pod itself; only a node or volume change (or the periodic flush)
    /// brings it back.
    pub fn pod_level(num_nodes: usize, why: String) -> FitError {
        FitError {
            num_nodes,
            pod_level: Some(why),
            hints: [Hint::Node, Hint::Volume].into(),
            ..Default::default()
        }
    }

    /// Records one node's reasons.
    pub fn add_node(&mut self, reasons: &[Reason]) {
        for r in reasons {
            *self.reasons.entry(r.to_string()).or_insert(0) += 1;
            self.hints.extend(r.hints().iter().copied());
        }
    }

    pub fn message(&self) -> String {
        if self.num_nodes == 0 {
            return NO_NODES.to_string();
        }
        let mut msg = format!("0/{} nodes are available:", self.num_nodes);
        if let Some(why) = &self.pod_level {
            msg.push_str(&format!(" {why}."));
            return msg;
        }
        let mut entries: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        entries.sort();
        if !entries.is_empty() {
            msg.push_str(&format!(" {}.", entries.join(", ")));
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_reason_sorted_like_kubernetes() {
        let mut e = FitError::new(3);
        e.add_node(&[Reason::NodeAffinity]);
        e.add_node(&[Reason::Insufficient("cpu".into())]);
        e.add_node(&[Reason::NodeAffinity]);
        assert_eq!(
            e.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn a_node_with_several_reasons_counts_in_each() {
        let mut e = FitError::new(2);
        e.add_node(&[
            Reason::Insufficient("cpu".into()),
            Reason::Insufficient("memory".into()),
        ]);
        e.add_node(&[Reason::Insufficient("memory".into())]);
        assert_eq!(
            e.message(),
            "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory."
        );
        assert!(e.hints.contains(&Hint::PodGone));
        assert!(!e.hints.contains(&Hint::PodAdded));
    }

    #[test]
    fn entries_sort_as_strings_counts_included() {
        let mut e = FitError::new(12);
        for _ in 0..10 {
            e.add_node(&[Reason::Unschedulable]);
        }
        e.add_node(&[Reason::TooManyPods]);
        e.add_node(&[Reason::TooManyPods]);
        assert_eq!(
            e.message(),
            "0/12 nodes are available: 10 node(s) were unschedulable, 2 Too many pods."
        );
    }

    #[test]
    fn pod_level_failures_and_an_empty_cluster() {
        let e = FitError::pod_level(3, "persistentvolumeclaim \"data\" not found".into());
        assert_eq!(
            e.message(),
            "0/3 nodes are available: persistentvolumeclaim \"data\" not found."
        );
        assert_eq!(
            FitError::new(0).message(),
            "no nodes available to schedule pods"
        );
    }
}
