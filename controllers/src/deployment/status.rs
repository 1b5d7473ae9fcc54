//! A Deployment's status as Kubernetes reports it: counts summed over its ReplicaSets, the
//! `Available` condition (minimum availability), and the `Progressing` condition that turns
//! False with `ProgressDeadlineExceeded` when a rollout makes no progress for
//! `progressDeadlineSeconds` on the clock.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::rollout::RsState;
use crate::clock::seconds_between;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|c| c.type_ != type_);
    }
}

/// Sets a condition unless one with the same status and reason is there; a condition
/// keeps its transition time while its status stays (Kubernetes' SetDeploymentCondition).
pub fn set(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = get(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    let conds = status.conditions.get_or_insert_with(Vec::new);
    conds.retain(|c| c.type_ != cond.type_);
    conds.push(cond);
}

/// What the status is computed from.
pub struct Inputs<'a> {
    pub replicas: i32,
    pub max_unavailable: i32,
    pub generation: i64,
    pub all: &'a [&'a RsState],
    pub new: Option<&'a RsState>,
}

/// The counts and the Available condition (Kubernetes' calculateStatus).
pub fn calculate(current: &DeploymentStatus, i: &Inputs<'_>, now: Timestamp) -> DeploymentStatus {
    let available: i32 = i.all.iter().map(|r| r.available).sum();
    let total: i32 = i.all.iter().map(|r| r.replicas).sum();
    let mut status = DeploymentStatus {
        observed_generation: Some(i.generation),
        replicas: Some(i.all.iter().map(|r| r.actual).sum()),
        updated_replicas: Some(i.new.map_or(0, |n| n.actual)),
        ready_replicas: Some(i.all.iter().map(|r| r.ready).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: current.terminating_replicas,
    };
    if available >= i.replicas - i.max_unavailable {
        set(
            &mut status,
            condition(
                AVAILABLE,
                "True",
                MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.",
                now,
            ),
        );
    } else {
        set(
            &mut status,
            condition(
                AVAILABLE,
                "False",
                MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.",
                now,
            ),
        );
    }
    status
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Every replica updated and available, and the latest spec observed.
pub fn complete(replicas: i32, generation: i64, s: &DeploymentStatus) -> bool {
    count(s.updated_replicas) == replicas
        && count(s.replicas) == replicas
        && count(s.available_replicas) == replicas
        && s.observed_generation.unwrap_or(0) >= generation
}

/// Whether `new` shows progress over `old`: more updated, ready or available pods, or
/// fewer old ones.
pub fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_olds = count(old.replicas) - count(old.updated_replicas);
    let new_olds = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_olds < old_olds
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// The Progressing condition says no progress for `deadline` seconds at `now`.
pub fn timed_out(status: &DeploymentStatus, deadline: i32, now: Timestamp) -> bool {
    let Some(cond) = get(status, PROGRESSING) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => cond
            .last_update_time
            .as_ref()
            .is_some_and(|t| seconds_between(t.0, now) > i64::from(deadline)),
    }
}

/// The Deployment a rollout pass worked on.
pub struct Rollout<'a> {
    pub replicas: i32,
    pub generation: i64,
    /// `progressDeadlineSeconds` (none: no Progressing condition).
    pub deadline: Option<i32>,
    pub new_rs_name: Option<&'a str>,
}

/// The Progressing (and ReplicaFailure) conditions after a rollout pass (Kubernetes'
/// syncRolloutStatus). `old` is the status before the pass, `new` the calculated one.
pub fn rollout_conditions(
    old: &DeploymentStatus,
    mut new: DeploymentStatus,
    r: &Rollout<'_>,
    replica_failure: Option<DeploymentCondition>,
    now: Timestamp,
) -> DeploymentStatus {
    let Rollout {
        replicas,
        generation,
        deadline,
        new_rs_name,
    } = *r;
    let Some(deadline) = deadline else {
        remove(&mut new, PROGRESSING);
        return with_failure(new, replica_failure);
    };
    let current = get(old, PROGRESSING).cloned();
    let already_complete = count(new.replicas) == count(new.updated_replicas)
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if !already_complete {
        let name = new_rs_name.unwrap_or_default();
        if complete(replicas, generation, &new) {
            set(
                &mut new,
                condition(
                    PROGRESSING,
                    "True",
                    NEW_RS_AVAILABLE,
                    format!("ReplicaSet \"{name}\" has successfully progressed."),
                    now,
                ),
            );
        } else if progressing(old, &new) {
            // Progress refreshes the update time even when the reason stays.
            let mut cond = condition(
                PROGRESSING,
                "True",
                RS_UPDATED,
                format!("ReplicaSet \"{name}\" is progressing."),
                now,
            );
            if let Some(current) = &current {
                if current.status == "True" {
                    cond.last_transition_time = current.last_transition_time.clone();
                }
                remove(&mut new, PROGRESSING);
            }
            set(&mut new, cond);
        } else if timed_out(old, deadline, now) {
            set(
                &mut new,
                condition(
                    PROGRESSING,
                    "False",
                    TIMED_OUT,
                    format!("ReplicaSet \"{name}\" has timed out progressing."),
                    now,
                ),
            );
        }
    }
    with_failure(new, replica_failure)
}

fn with_failure(mut s: DeploymentStatus, failure: Option<DeploymentCondition>) -> DeploymentStatus {
    match failure {
        Some(f) => set(&mut s, f),
        None => remove(&mut s, REPLICA_FAILURE),
    }
    s
}

/// Seconds until a stalled rollout must be looked at again to notice its deadline.
pub fn deadline_check_in(
    status: &DeploymentStatus,
    replicas: i32,
    generation: i64,
    deadline: Option<i32>,
    now: Timestamp,
) -> Option<i64> {
    let deadline = deadline?;
    let cond = get(status, PROGRESSING)?;
    if complete(replicas, generation, status) || cond.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let since = cond.last_update_time.as_ref()?.0;
    Some((i64::from(deadline) - seconds_between(since, now)).max(0) + 1)
}

/// The Progressing condition while paused or just resumed, if it changes.
pub fn paused_condition(
    status: &DeploymentStatus,
    paused: bool,
    deadline: Option<i32>,
    now: Timestamp,
) -> Option<DeploymentStatus> {
    deadline?;
    let reason = get(status, PROGRESSING).and_then(|c| c.reason.as_deref());
    if reason == Some(TIMED_OUT) {
        return None;
    }
    let paused_now = reason == Some(PAUSED);
    let cond = if paused && !paused_now {
        condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now)
    } else if !paused && paused_now {
        condition(
            PROGRESSING,
            "Unknown",
            RESUMED,
            "Deployment is resumed",
            now,
        )
    } else {
        return None;
    };
    let mut s = status.clone();
    set(&mut s, cond);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn st(replicas: i32, updated: i32, ready: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            observed_generation: Some(2),
            ..Default::default()
        }
    }

    fn reason(s: &DeploymentStatus, t: &str) -> Option<String> {
        get(s, t).and_then(|c| c.reason.clone())
    }

    fn ro(deadline: Option<i32>) -> Rollout<'static> {
        Rollout {
            replicas: 3,
            generation: 2,
            deadline,
            new_rs_name: Some("web-x"),
        }
    }

    #[test]
    fn progress_then_deadline_then_completion() {
        let mut s = st(3, 0, 3, 3);
        set(
            &mut s,
            condition(PROGRESSING, "True", NEW_RS_CREATED, "created", at(0)),
        );
        // One new pod appears: progress.
        let next = rollout_conditions(&s, st(4, 1, 3, 3), &ro(Some(60)), None, at(10));
        assert_eq!(reason(&next, PROGRESSING).as_deref(), Some(RS_UPDATED));
        assert_eq!(
            get(&next, PROGRESSING).unwrap().last_update_time,
            Some(Time(at(10)))
        );
        assert_eq!(
            get(&next, PROGRESSING).unwrap().last_transition_time,
            Some(Time(at(0)))
        );
        // No progress for 60 s: not yet; 61 s: timed out.
        let same = rollout_conditions(&next, next.clone(), &ro(Some(60)), None, at(70));
        assert_eq!(reason(&same, PROGRESSING).as_deref(), Some(RS_UPDATED));
        assert_eq!(deadline_check_in(&same, 3, 2, Some(60), at(40)), Some(31));
        let late = rollout_conditions(&next, next.clone(), &ro(Some(60)), None, at(71));
        let cond = get(&late, PROGRESSING).unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_deref()),
            ("False", Some(TIMED_OUT))
        );
        assert_eq!(deadline_check_in(&late, 3, 2, Some(60), at(71)), None);
        // Completion afterwards.
        let done = rollout_conditions(&late, st(3, 3, 3, 3), &ro(Some(60)), None, at(80));
        let cond = get(&done, PROGRESSING).unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_deref()),
            ("True", Some(NEW_RS_AVAILABLE))
        );
        // No deadline: no Progressing condition.
        let none = rollout_conditions(&done, st(3, 3, 3, 3), &ro(None), None, at(80));
        assert!(get(&none, PROGRESSING).is_none());
    }

    #[test]
    fn availability_condition_follows_max_unavailable() {
        let rs = |available| RsState {
            name: "a".into(),
            replicas: 4,
            actual: 4,
            ready: available,
            available,
            created: at(0),
            revision: 1,
            desired_annotation: None,
            max_annotation: None,
            settled: true,
            terminating: false,
        };
        let three = rs(3);
        let all = [&three];
        let i = Inputs {
            replicas: 4,
            max_unavailable: 1,
            generation: 1,
            all: &all,
            new: Some(&three),
        };
        let s = calculate(&DeploymentStatus::default(), &i, at(0));
        assert_eq!(
            reason(&s, AVAILABLE).as_deref(),
            Some(MINIMUM_REPLICAS_AVAILABLE)
        );
        assert_eq!(
            (s.replicas, s.updated_replicas, s.unavailable_replicas),
            (Some(4), Some(4), Some(1))
        );
        let two = rs(2);
        let all = [&two];
        let i = Inputs {
            replicas: 4,
            max_unavailable: 1,
            generation: 1,
            all: &all,
            new: None,
        };
        let s2 = calculate(&s, &i, at(5));
        let cond = get(&s2, AVAILABLE).unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_deref()),
            ("False", Some(MINIMUM_REPLICAS_UNAVAILABLE))
        );
        assert_eq!(s2.updated_replicas, Some(0));
    }

    #[test]
    fn pause_and_resume_conditions() {
        let s = st(3, 3, 3, 3);
        let paused = paused_condition(&s, true, Some(600), at(0)).unwrap();
        assert_eq!(reason(&paused, PROGRESSING).as_deref(), Some(PAUSED));
        assert_eq!(paused_condition(&paused, true, Some(600), at(1)), None);
        let resumed = paused_condition(&paused, false, Some(600), at(2)).unwrap();
        assert_eq!(reason(&resumed, PROGRESSING).as_deref(), Some(RESUMED));
        assert_eq!(paused_condition(&s, true, None, at(0)), None);
    }
}
