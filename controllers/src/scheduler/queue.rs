//! The scheduling queue, kube-scheduler's three parts:
//!
//! - *active*: pods to try now, highest priority first, then first come first served;
//! - *backoff*: pods that failed recently and wait (1 s doubling to 10 s per failed attempt)
//!   before they are tried again, so a busy cluster does not spin on them;
//! - *unschedulable*: pods that fit nowhere; a cluster change that could help them (a node
//!   added or changed, a pod gone, …) moves them to active or backoff, and a periodic flush
//!   retries the ones that waited long.
//!
//! Time is passed in (`Instant`), so the queue is tested without sleeping.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use super::filters::Hint;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A pod waiting to be scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub priority: i32,
    /// Failed attempts so far.
    pub attempts: u32,
}

#[derive(Debug, Clone)]
enum Place {
    Active,
    Backoff,
    Unschedulable {
        since: Instant,
        hints: BTreeSet<Hint>,
        /// What the pod looked like when it failed; an update that changes it retries.
        fingerprint: u64,
    },
}

#[derive(Debug)]
struct Entry {
    pod: QueuedPod,
    seq: u64,
    place: Place,
    /// When the last attempt failed (for the backoff).
    failed_at: Option<Instant>,
}

/// Active heap order: higher priority first, then earlier arrival.
#[derive(Debug, PartialEq, Eq)]
struct Ranked {
    priority: i32,
    seq: u64,
    uid: String,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    /// May hold stale ranks (entries since moved or removed); skipped on pop.
    active: BinaryHeap<Ranked>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
}

/// The wait after `attempts` failures.
pub fn backoff_for(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

impl SchedulingQueue {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn activate(&mut self, uid: &str) {
        let seq = self.next_seq();
        if let Some(e) = self.entries.get_mut(uid) {
            e.place = Place::Active;
            e.seq = seq;
            self.active.push(Ranked {
                priority: e.pod.priority,
                seq,
                uid: uid.to_string(),
            });
        }
    }

    fn back_off(&mut self, uid: &str, until: Instant) {
        let seq = self.next_seq();
        if let Some(e) = self.entries.get_mut(uid) {
            e.place = Place::Backoff;
            e.seq = seq;
            self.backoff.push(Reverse((until, seq, uid.to_string())));
        }
    }

    /// Active, or backoff when the last failure was too recent.
    fn retry(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        match e.failed_at.map(|t| t + backoff_for(e.pod.attempts)) {
            Some(until) if until > now => self.back_off(uid, until),
            _ => self.activate(uid),
        }
    }

    /// A pending pod seen (again). A new pod becomes active; a known one keeps its place.
    /// Returns whether it was new.
    pub fn add(&mut self, pod: QueuedPod) -> bool {
        if let Some(e) = self.entries.get_mut(&pod.uid) {
            e.pod.priority = pod.priority;
            return false;
        }
        let uid = pod.uid.clone();
        self.entries.insert(
            uid.clone(),
            Entry {
                pod,
                seq: 0,
                place: Place::Active,
                failed_at: None,
            },
        );
        self.activate(&uid);
        true
    }

    /// The fingerprint an unschedulable pod failed with, if it is unschedulable.
    pub fn unschedulable_fingerprint(&self, uid: &str) -> Option<u64> {
        match self.entries.get(uid)?.place {
            Place::Unschedulable { fingerprint, .. } => Some(fingerprint),
            _ => None,
        }
    }

    /// An unschedulable pod changed (labels, spec): it deserves another try.
    pub fn updated(&mut self, uid: &str, now: Instant) {
        if self.unschedulable_fingerprint(uid).is_some() {
            self.retry(uid, now);
        }
    }

    pub fn remove(&mut self, uid: &str) -> Option<QueuedPod> {
        self.entries.remove(uid).map(|e| e.pod)
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// The next pod to try; backoffs that ended join the active queue first. The pod leaves
    /// the queue: it comes back through `unschedulable` or `failed` if it does not get bound.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.release_backoffs(now);
        while let Some(top) = self.active.pop() {
            let live = self
                .entries
                .get(&top.uid)
                .is_some_and(|e| e.seq == top.seq && matches!(e.place, Place::Active));
            if live {
                return self.entries.remove(&top.uid).map(|e| e.pod);
            }
        }
        None
    }

    fn release_backoffs(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, _))) = self.backoff.peek() {
            if *until > now {
                break;
            }
            let (seq, uid) = (*seq, self.backoff.pop().map(|Reverse((_, _, u))| u));
            let Some(uid) = uid else { break };
            let live = self
                .entries
                .get(&uid)
                .is_some_and(|e| e.seq == seq && matches!(e.place, Place::Backoff));
            if live {
                self.activate(&uid);
            }
        }
    }

    /// Whether a pod could be popped at `now`.
    pub fn has_ready(&mut self, now: Instant) -> bool {
        self.release_backoffs(now);
        while let Some(top) = self.active.peek() {
            let live = self
                .entries
                .get(&top.uid)
                .is_some_and(|e| e.seq == top.seq && matches!(e.place, Place::Active));
            if live {
                return true;
            }
            self.active.pop();
        }
        false
    }

    /// When the earliest backoff ends.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    /// A pod that fits nowhere waits for a change that `hints` says could help.
    pub fn unschedulable(
        &mut self,
        mut pod: QueuedPod,
        hints: BTreeSet<Hint>,
        fingerprint: u64,
        now: Instant,
    ) {
        pod.attempts += 1;
        let uid = pod.uid.clone();
        let seq = self.next_seq();
        self.entries.insert(
            uid,
            Entry {
                pod,
                seq,
                place: Place::Unschedulable {
                    since: now,
                    hints,
                    fingerprint,
                },
                failed_at: Some(now),
            },
        );
    }

    /// A pod whose attempt failed for another reason (the binding was refused) is retried
    /// after its backoff.
    pub fn failed(&mut self, mut pod: QueuedPod, now: Instant) {
        pod.attempts += 1;
        let until = now + backoff_for(pod.attempts);
        let uid = pod.uid.clone();
        self.entries.insert(
            uid.clone(),
            Entry {
                pod,
                seq: 0,
                place: Place::Active,
                failed_at: Some(now),
            },
        );
        self.back_off(&uid, until);
    }

    /// A cluster change of kind `hint` happened: the unschedulable pods it could help are
    /// retried (after their backoff). Returns how many moved.
    pub fn move_for(&mut self, hint: Hint, now: Instant) -> usize {
        let moving: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(&e.place, Place::Unschedulable { hints, .. } if hints.contains(&hint)))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &moving {
            self.retry(uid, now);
        }
        moving.len()
    }

    /// Retries every pod that has been unschedulable for at least `after`.
    pub fn flush(&mut self, now: Instant, after: Duration) -> usize {
        let moving: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.place, Place::Unschedulable { since, .. } if since + after <= now))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &moving {
            self.retry(uid, now);
        }
        moving.len()
    }

    /// Every queued pod's uid, namespace and name (for the deletion sweep).
    pub fn keys(&self) -> Vec<(String, String, String)> {
        self.entries
            .values()
            .map(|e| {
                (
                    e.pod.uid.clone(),
                    e.pod.namespace.clone(),
                    e.pod.name.clone(),
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn unschedulable_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.place, Place::Unschedulable { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qp(uid: &str, priority: i32) -> QueuedPod {
        QueuedPod {
            uid: uid.into(),
            namespace: "ns".into(),
            name: uid.into(),
            priority,
            attempts: 0,
        }
    }

    fn drain(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now)).map(|p| p.uid).collect()
    }

    #[test]
    fn priority_first_then_arrival() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        assert!(q.add(qp("a", 0)));
        q.add(qp("b", 10));
        q.add(qp("c", 0));
        q.add(qp("d", 10));
        assert!(!q.add(qp("a", 0)), "known pods are not queued twice");
        assert_eq!(drain(&mut q, now), vec!["b", "d", "a", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn removed_pods_are_not_popped() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.add(qp("a", 0));
        q.add(qp("b", 0));
        assert_eq!(q.remove("a").map(|p| p.uid), Some("a".into()));
        assert_eq!(drain(&mut q, now), vec!["b"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_helpful_change_and_their_backoff() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(qp("cpu", 0));
        q.add(qp("affinity", 0));
        let cpu = q.pop(t0).unwrap();
        let aff = q.pop(t0).unwrap();
        q.unschedulable(cpu, [Hint::Node, Hint::PodGone].into(), 1, t0);
        q.unschedulable(aff, [Hint::Node, Hint::PodAdded].into(), 2, t0);
        assert_eq!(q.unschedulable_count(), 2);
        assert!(!q.has_ready(t0));
        // A pod added helps only the affinity pod; it is still backing off (1 s).
        assert_eq!(q.move_for(Hint::PodAdded, t0), 1);
        assert_eq!(q.pop(t0), None);
        assert_eq!(q.next_backoff(), Some(t0 + INITIAL_BACKOFF));
        let t1 = t0 + INITIAL_BACKOFF;
        assert_eq!(
            q.pop(t1).map(|p| (p.uid, p.attempts)),
            Some(("affinity".into(), 1))
        );
        // Two seconds later a pod is deleted: the cpu pod goes straight to active.
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(q.move_for(Hint::PodGone, t2), 1);
        assert_eq!(drain(&mut q, t2), vec!["cpu"]);
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(2), Duration::from_secs(2));
        assert_eq!(backoff_for(4), Duration::from_secs(8));
        assert_eq!(backoff_for(5), Duration::from_secs(10));
        assert_eq!(backoff_for(100), Duration::from_secs(10));
    }

    #[test]
    fn flush_retries_the_long_waiting() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(qp("a", 0));
        let a = q.pop(t0).unwrap();
        q.unschedulable(a, BTreeSet::new(), 0, t0);
        assert_eq!(
            q.flush(t0 + Duration::from_secs(10), Duration::from_secs(30)),
            0
        );
        assert_eq!(
            q.flush(t0 + Duration::from_secs(30), Duration::from_secs(30)),
            1
        );
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(30)), vec!["a"]);
    }

    #[test]
    fn an_update_retries_an_unschedulable_pod() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(qp("a", 0));
        let a = q.pop(t0).unwrap();
        q.unschedulable(a, [Hint::Node].into(), 42, t0);
        assert_eq!(q.unschedulable_fingerprint("a"), Some(42));
        q.updated("a", t0 + Duration::from_secs(5));
        assert_eq!(q.unschedulable_fingerprint("a"), None);
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(5)), vec!["a"]);
    }

    #[test]
    fn failed_bindings_back_off() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.failed(qp("a", 0), t0);
        assert!(!q.has_ready(t0));
        assert!(q.has_ready(t0 + INITIAL_BACKOFF));
        assert_eq!(q.keys(), vec![("a".into(), "ns".into(), "a".into())]);
        assert_eq!(q.len(), 1);
    }
}
