//! The Job controller: runs a Job's pods until enough of them succeed, or the Job fails.
//!
//! A Job (completion mode NonIndexed) keeps at most `min(parallelism, remaining
//! completions)` pods active; with `completions` unset it is a work queue: pods run until
//! one succeeds, no new pods start after that, and the Job completes when none is left
//! running. Failed pods are counted against `backoffLimit` (with `restartPolicy:
//! OnFailure`, container restarts of running pods count too) and their replacements wait
//! a back-off of 10 s doubling to 6 min after the last failure. `activeDeadlineSeconds`
//! counts from `status.startTime`. Reaching a limit ends the Job with condition
//! `Failed` (`BackoffLimitExceeded` / `DeadlineExceeded`) and deletes its active pods;
//! `spec.suspend` deletes them without counting and says `Suspended`. A finished Job with
//! `ttlSecondsAfterFinished` is deleted (background propagation) that long after it ended.
//!
//! Counting is exactly-once, as Kubernetes does it: every pod is created with the
//! `batch.kubernetes.io/job-tracking` finalizer, so a pod cannot vanish before it was
//! counted. A finished pod's uid first goes into `status.uncountedTerminatedPods`, then its
//! finalizer is removed, then the uid moves into `succeeded`/`failed`. Status writes carry
//! the Job's resourceVersion, so a decision taken on a stale cached Job is refused (409)
//! and retried; finalizers this loop removed are remembered until the cache shows it, so
//! a lagging cache cannot count a pod twice. Pods whose Job is gone (deleted with its pods)
//! lose the finalizer in a small side loop.
//!
//! Indexed completion mode is not implemented: such Jobs get a Warning
//! `UnsupportedCompletionMode` and no pods.
//!
//! All time decisions read the `Clock`; back-off, deadlines and TTLs requeue for when they
//! are due, and a fake clock's ticks re-evaluate every Job.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use crate::clock::seconds_between;
use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorder};
use crate::objects::delete_exactly;
use crate::objects::{
    controlled_by, controller_of, controller_reference, is_pod_ready, is_terminating, phase,
};
use crate::objects::{generate_name_prefix, pod_from_template, PodName};

/// The finalizer that keeps a Job's pod until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

const COMPONENT: &str = "job-controller";
/// First delay before replacing a failed pod; it doubles per failure up to the maximum.
const BACKOFF_BASE_SECONDS: i64 = 10;
const BACKOFF_MAX_SECONDS: i64 = 360;
/// Pods created or deleted for one Job in one pass (Kubernetes' MaxPodCreateDeletePerSync).
const MAX_POD_CHANGES_PER_PASS: usize = 500;
/// How long a create or finalizer removal may stay unseen by the cache before it is
/// assumed lost (the cache then decides again).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the Job loop and its orphan-finalizer side loop.
pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let jobs = ctx.informers.jobs.reader();
    let pods = ctx.informers.pods.reader();
    let state = Arc::new(JobLoop {
        ctx: ctx.clone(),
        jobs: jobs.clone(),
        pods,
        recorder: ctx.recorder(COMPONENT),
        memory: Memory::default(),
    });
    let pod_events = ctx.informers.pods.subscribe();
    let orphan_events = ctx.informers.pods.subscribe();
    let controller = Controller::for_shared_stream(ctx.informers.jobs.subscribe(), jobs)
        .owns_shared_stream(pod_events)
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(ctx.clock.ticks())
        .run(
            reconcile,
            |job: Arc<Job>, error: &Error, state: Arc<JobLoop>| {
                error_policy(job, error, state.ctx.clone())
            },
            state.clone(),
        )
        .for_each(log_outcome("job"));
    let orphans = orphan_events
        .filter(|pod| futures::future::ready(has_tracking_finalizer(pod)))
        .for_each_concurrent(4, move |pod| {
            let state = state.clone();
            async move { release_orphan(&state, &pod).await }
        });
    futures::future::join(controller, orphans)
        .map(|_| ())
        .boxed()
}

struct JobLoop {
    ctx: Arc<Context>,
    jobs: Store<Job>,
    pods: Store<Pod>,
    recorder: Recorder,
    memory: Memory,
}

/// What this loop remembers between passes (Kubernetes keeps the same in memory).
#[derive(Default)]
struct Memory {
    /// Per Job uid: names of pods created but not yet seen in the cache.
    creating: Mutex<HashMap<String, HashMap<String, Instant>>>,
    /// Pod uids whose tracking finalizer this loop removed, until the cache shows it.
    unfinalized: Mutex<HashMap<String, Instant>>,
    /// Per Job uid: failures since the last success, for the pod creation back-off.
    backoff: Mutex<HashMap<String, Backoff>>,
}

/// Failures since a Job's last success and when the latest happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub failures: u32,
    pub last_failure: Timestamp,
}

impl Backoff {
    /// When the next pod may be created.
    pub fn ready_at(&self) -> Timestamp {
        if self.failures == 0 {
            return self.last_failure;
        }
        let shift = (self.failures - 1).min(16);
        let secs = (BACKOFF_BASE_SECONDS << shift).min(BACKOFF_MAX_SECONDS);
        self.last_failure
            .saturating_add(jiff::SignedDuration::from_secs(secs))
            .unwrap_or(Timestamp::MAX)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

/// How a Job sees one of its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOutcome {
    Active,
    Succeeded,
    /// Failed, or deleted before it succeeded (it will not succeed any more).
    Failed,
}

pub fn outcome(pod: &Pod) -> PodOutcome {
    match phase(pod) {
        "Succeeded" => PodOutcome::Succeeded,
        "Failed" => PodOutcome::Failed,
        _ if is_terminating(&pod.metadata) => PodOutcome::Failed,
        _ => PodOutcome::Active,
    }
}

/// When a finished pod ended: its containers' latest finish, else `now`.
fn finished_at(pod: &Pod, now: Timestamp) -> Timestamp {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .unwrap_or(now)
}

fn restart_count(pod: &Pod) -> i64 {
    let Some(status) = pod.status.as_ref() else {
        return 0;
    };
    status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .flatten()
        .map(|c| i64::from(c.restart_count))
        .sum()
}

// ---------------------------------------------------------------------------------------
// Counting finished pods exactly once

/// The first step of counting: pods that finished since the last pass (their uid goes into
/// `uncountedTerminatedPods`), and pods whose finalizer can go (their uid is recorded).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    pub new_succeeded: Vec<String>,
    pub new_failed: Vec<String>,
    /// Names of pods that still hold the finalizer though their uid is (or will be)
    /// recorded as uncounted.
    pub unfinalize: Vec<String>,
}

fn uncounted_sets(status: Option<&JobStatus>) -> (BTreeSet<String>, BTreeSet<String>) {
    let u = status.and_then(|s| s.uncounted_terminated_pods.as_ref());
    let set = |v: Option<&Vec<String>>| v.into_iter().flatten().cloned().collect();
    (
        set(u.and_then(|u| u.succeeded.as_ref())),
        set(u.and_then(|u| u.failed.as_ref())),
    )
}

/// Which finished pods are new to the Job, and which pods' finalizers can be removed.
/// `unfinalized` holds uids whose finalizer was removed already (the cache may lag).
pub fn account(
    status: Option<&JobStatus>,
    pods: &[&Pod],
    unfinalized: &HashSet<String>,
) -> Accounting {
    let (succeeded, failed) = uncounted_sets(status);
    let mut out = Accounting::default();
    for pod in pods {
        if !has_tracking_finalizer(pod) {
            continue;
        }
        let uid = pod.uid().unwrap_or_default();
        if unfinalized.contains(&uid) {
            continue;
        }
        let recorded = succeeded.contains(&uid) || failed.contains(&uid);
        match outcome(pod) {
            PodOutcome::Active => continue,
            PodOutcome::Succeeded if !recorded => out.new_succeeded.push(uid),
            PodOutcome::Failed if !recorded => out.new_failed.push(uid),
            _ => {}
        }
        out.unfinalize.push(pod.name_any());
    }
    out
}

/// The second step: uncounted uids whose pod no longer holds the finalizer (or is gone)
/// move into the counts. Returns `(succeeded, failed)` added and what stays uncounted.
pub fn settle(
    status: Option<&JobStatus>,
    pods: &[&Pod],
    finalized: &HashSet<String>,
) -> (i32, i32, UncountedTerminatedPods) {
    let (succeeded, failed) = uncounted_sets(status);
    let held: HashSet<String> = pods
        .iter()
        .filter(|p| has_tracking_finalizer(p))
        .filter_map(|p| p.uid())
        .filter(|uid| !finalized.contains(uid))
        .collect();
    let split = |set: BTreeSet<String>| -> (i32, Vec<String>) {
        let (stay, moved): (Vec<String>, Vec<String>) =
            set.into_iter().partition(|uid| held.contains(uid));
        (moved.len() as i32, stay)
    };
    let (s, stay_s) = split(succeeded);
    let (f, stay_f) = split(failed);
    (
        s,
        f,
        UncountedTerminatedPods {
            succeeded: Some(stay_s),
            failed: Some(stay_f),
        },
    )
}

// ---------------------------------------------------------------------------------------
// Deciding what the Job needs

/// A Job's active pod as the decision needs it.
#[derive(Debug, Clone)]
pub struct ActivePod {
    pub name: String,
    pub ready: bool,
    pub scheduled: bool,
    pub created: Option<Timestamp>,
    pub restarts: i64,
}

impl ActivePod {
    fn of(pod: &Pod) -> ActivePod {
        ActivePod {
            name: pod.name_any(),
            ready: is_pod_ready(pod),
            scheduled: pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()),
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            restarts: restart_count(pod),
        }
    }
}

/// Why pods are deleted: counted ones end as failed (the Job failed); uncounted ones leave
/// without a trace (suspend, lowered parallelism).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    Counted,
    Uncounted,
}

#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub create: usize,
    pub delete: Vec<String>,
    pub delete_mode: Option<DeleteMode>,
    /// Conditions to set (type, reason, message); `Suspended` may be False.
    pub conditions: Vec<(String, bool, String, String)>,
    pub start_time: Option<Timestamp>,
    pub completion_time: Option<Timestamp>,
    pub events: Vec<(EventType, &'static str, String)>,
    /// Delete the Job itself (its TTL after finishing ran out).
    pub delete_job: bool,
    /// Look again this much later (back-off, deadline, TTL).
    pub requeue: Option<Duration>,
}

fn condition_true<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

pub fn is_finished(job: &Job) -> bool {
    let status = job.status.as_ref();
    condition_true(status, "Complete").is_some() || condition_true(status, "Failed").is_some()
}

fn secs(d: i64) -> Duration {
    Duration::from_secs(d.max(0) as u64)
}

/// What a Job needs given its counted pods (`succeeded`/`failed` include the uncounted
/// ones), its active pods, the back-off, and the time.
pub fn decide(
    job: &Job,
    succeeded: i32,
    failed: i32,
    active: &[ActivePod],
    backoff: Option<Backoff>,
    now: Timestamp,
) -> Decision {
    let mut d = Decision::default();
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.as_ref();
    let active_names = || active.iter().map(|p| p.name.clone()).collect::<Vec<_>>();

    if is_finished(job) {
        // Stragglers of a finished Job go; then its TTL runs.
        if !active.is_empty() {
            d.delete = active_names();
            d.delete_mode = Some(DeleteMode::Counted);
        }
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let finished = status
                .and_then(|s| s.completion_time.as_ref().map(|t| t.0))
                .or_else(|| {
                    condition_true(status, "Failed")
                        .or_else(|| condition_true(status, "Complete"))
                        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                })
                .unwrap_or(now);
            let left = i64::from(ttl) - seconds_between(finished, now);
            if left <= 0 {
                d.delete_job = true;
            } else {
                d.requeue = Some(secs(left));
            }
        }
        return d;
    }

    let was_suspended = condition_true(status, "Suspended").is_some();
    if spec.suspend == Some(true) {
        if !active.is_empty() {
            d.delete = active_names();
            d.delete_mode = Some(DeleteMode::Uncounted);
        }
        if !was_suspended {
            d.conditions.push((
                "Suspended".into(),
                true,
                "JobSuspended".into(),
                "Job suspended".into(),
            ));
            d.events
                .push((EventType::Normal, "Suspended", "Job suspended".into()));
        }
        return d;
    }

    let start = match status.and_then(|s| s.start_time.as_ref()) {
        Some(t) if !was_suspended => t.0,
        _ => {
            d.start_time = Some(now);
            now
        }
    };
    if was_suspended {
        d.conditions.push((
            "Suspended".into(),
            false,
            "JobResumed".into(),
            "Job resumed".into(),
        ));
        d.events
            .push((EventType::Normal, "Resumed", "Job resumed".into()));
    }

    let fail = |d: &mut Decision, reason: &'static str, message: &str| {
        d.conditions
            .push(("Failed".into(), true, reason.into(), message.into()));
        d.events.push((EventType::Warning, reason, message.into()));
        if !active.is_empty() {
            d.delete = active_names();
            d.delete_mode = Some(DeleteMode::Counted);
        }
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            d.requeue = Some(secs(i64::from(ttl)));
        }
    };

    if let Some(deadline) = spec.active_deadline_seconds {
        let left = deadline - seconds_between(start, now);
        if left <= 0 {
            fail(
                &mut d,
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            );
            return d;
        }
        d.requeue = Some(secs(left));
    }

    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts: i64 = active.iter().map(|p| p.restarts).sum();
    let restarts_exceeded = on_failure
        && if backoff_limit == 0 {
            restarts > 0
        } else {
            restarts >= i64::from(backoff_limit)
        };
    if failed > backoff_limit || restarts_exceeded {
        fail(
            &mut d,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
        return d;
    }

    let active_count = active.len() as i32;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let complete = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active_count == 0,
    };
    if complete {
        d.conditions.push((
            "Complete".into(),
            true,
            "CompletionsReached".into(),
            "Reached expected number of succeeded pods".into(),
        ));
        d.completion_time = Some(now);
        d.events
            .push((EventType::Normal, "Completed", "Job completed".into()));
        if !active.is_empty() {
            d.delete = active_names();
            d.delete_mode = Some(DeleteMode::Uncounted);
        }
        d.requeue = spec.ttl_seconds_after_finished.map(|t| secs(i64::from(t)));
        return d;
    }

    let want = match spec.completions {
        Some(c) => parallelism.min(c - succeeded).max(0),
        None if succeeded > 0 => active_count,
        None => parallelism,
    };
    if active_count > want {
        // The least useful first: unscheduled, then not ready, then the newest.
        let mut victims: Vec<&ActivePod> = active.iter().collect();
        victims.sort_by(|a, b| {
            (a.scheduled, a.ready, std::cmp::Reverse(a.created)).cmp(&(
                b.scheduled,
                b.ready,
                std::cmp::Reverse(b.created),
            ))
        });
        d.delete = victims
            .into_iter()
            .take((active_count - want) as usize)
            .map(|p| p.name.clone())
            .collect();
        d.delete_mode = Some(DeleteMode::Uncounted);
    } else if active_count < want {
        match backoff {
            Some(b) if b.failures > 0 && b.ready_at() > now => {
                let wait = secs(seconds_between(now, b.ready_at()).max(1));
                d.requeue = Some(d.requeue.map_or(wait, |r| r.min(wait)));
            }
            _ => d.create = ((want - active_count) as usize).min(MAX_POD_CHANGES_PER_PASS),
        }
    }
    d
}

fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let value = if on { "True" } else { "False" };
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != value {
            c.last_transition_time = Some(Time(now));
        }
        c.status = value.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
    } else {
        conditions.push(JobCondition {
            type_: type_.into(),
            status: value.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        });
    }
}

// ---------------------------------------------------------------------------------------
// The reconcile glue

async fn reconcile(job: Arc<Job>, st: Arc<JobLoop>) -> Result<Action> {
    let ctx = &st.ctx;
    let key = object_key(job.as_ref());
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let Some(uid) = job.uid() else {
        return Ok(Action::await_change());
    };
    if is_terminating(&job.metadata) {
        return Ok(Action::await_change());
    }
    let mode = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref());
    if mode.is_some_and(|m| m != "NonIndexed") && !is_finished(&job) {
        let message = format!(
            "spec.completionMode {:?} is not supported yet; only NonIndexed Jobs run",
            mode.unwrap_or_default()
        );
        st.recorder
            .publish(
                job.as_ref(),
                EventType::Warning,
                "UnsupportedCompletionMode",
                &message,
            )
            .await;
        return Err(Error::invalid(format!("job {key}"), message));
    }
    let now = ctx.clock.now();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    let all = st.pods.state();
    let pods: Vec<&Pod> = controlled_by(&all, &ns, &uid);

    // Forget what the cache now shows.
    let unfinalized: HashSet<String> = {
        let mut map = lock(&st.memory.unfinalized);
        map.retain(|pod_uid, at| {
            at.elapsed() < EXPECTATION_TIMEOUT
                && pods
                    .iter()
                    .any(|p| p.uid().as_deref() == Some(pod_uid) && has_tracking_finalizer(p))
        });
        map.keys().cloned().collect()
    };
    let creating_left = {
        let mut map = lock(&st.memory.creating);
        let entry = map.entry(uid.clone()).or_default();
        entry.retain(|pod_name, at| {
            at.elapsed() < EXPECTATION_TIMEOUT && !pods.iter().any(|p| &p.name_any() == pod_name)
        });
        entry.len()
    };

    // 1. Note newly finished pods as uncounted, before their finalizers go.
    let mut job = (*job).clone();
    let accounting = account(job.status.as_ref(), &pods, &unfinalized);
    if !accounting.new_succeeded.is_empty() || !accounting.new_failed.is_empty() {
        let status = job.status.get_or_insert_with(Default::default);
        let uncounted = status
            .uncounted_terminated_pods
            .get_or_insert_with(Default::default);
        uncounted
            .succeeded
            .get_or_insert_with(Vec::new)
            .extend(accounting.new_succeeded.iter().cloned());
        uncounted
            .failed
            .get_or_insert_with(Vec::new)
            .extend(accounting.new_failed.iter().cloned());
        job = jobs
            .replace_status(&name, &PostParams::default(), &job)
            .await
            .map_err(|e| Error::api("update status of", format!("job {key}"), e))?;
        // The back-off counts failures since the last success.
        let mut backoff = lock(&st.memory.backoff);
        if !accounting.new_succeeded.is_empty() {
            backoff.remove(&uid);
        }
        if !accounting.new_failed.is_empty() {
            let latest = pods
                .iter()
                .filter(|p| p.uid().is_some_and(|u| accounting.new_failed.contains(&u)))
                .map(|p| finished_at(p, now))
                .max()
                .unwrap_or(now);
            let entry = backoff.entry(uid.clone()).or_insert(Backoff {
                failures: 0,
                last_failure: latest,
            });
            entry.failures += accounting.new_failed.len() as u32;
            entry.last_failure = entry.last_failure.max(latest);
        }
    }

    // 2. Remove the finalizers of recorded pods.
    let mut finalized = HashSet::new();
    for pod_name in &accounting.unfinalize {
        if let Some(pod) = pods.iter().find(|p| &p.name_any() == pod_name) {
            match remove_finalizer(&pod_api, pod).await {
                Ok(()) => {
                    let pod_uid = pod.uid().unwrap_or_default();
                    lock(&st.memory.unfinalized).insert(pod_uid.clone(), Instant::now());
                    finalized.insert(pod_uid);
                }
                Err(e) => tracing::debug!(job = key, pod = pod_name, error = %e, "finalizer"),
            }
        }
    }
    finalized.extend(unfinalized);

    // 3. Move counted uids into the totals.
    let (add_succeeded, add_failed, uncounted) = settle(job.status.as_ref(), &pods, &finalized);
    let old_status = job.status.clone().unwrap_or_default();
    let succeeded = old_status.succeeded.unwrap_or(0) + add_succeeded;
    let failed = old_status.failed.unwrap_or(0) + add_failed;
    let uncounted_succeeded = uncounted.succeeded.as_ref().map_or(0, Vec::len) as i32;
    let uncounted_failed = uncounted.failed.as_ref().map_or(0, Vec::len) as i32;

    let active_pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| outcome(p) == PodOutcome::Active)
        .collect();
    let active: Vec<ActivePod> = active_pods.iter().map(|p| ActivePod::of(p)).collect();
    let backoff = lock(&st.memory.backoff).get(&uid).copied();
    let mut decision = decide(
        &job,
        succeeded + uncounted_succeeded,
        failed + uncounted_failed,
        &active,
        backoff,
        now,
    );
    if creating_left > 0 {
        // Earlier creates are not in the cache yet: count them as active.
        decision.create = decision.create.saturating_sub(creating_left);
    }

    // 4. Act on pods.
    let mut deleted = 0;
    for pod_name in &decision.delete {
        let Some(pod) = active_pods.iter().find(|p| &p.name_any() == pod_name) else {
            continue;
        };
        if decision.delete_mode == Some(DeleteMode::Uncounted) && has_tracking_finalizer(pod) {
            remove_finalizer(&pod_api, pod).await?;
            lock(&st.memory.unfinalized).insert(pod.uid().unwrap_or_default(), Instant::now());
        }
        match pod_api.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                deleted += 1;
                st.recorder
                    .publish(
                        &job,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod_name}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::api("delete", format!("pod {ns}/{pod_name}"), e)),
        }
    }
    let mut created = 0;
    if decision.create > 0 {
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let prefix = generate_name_prefix(&name);
        for _ in 0..decision.create {
            let mut pod = pod_from_template(
                &template,
                &ns,
                PodName::Generate(&prefix),
                controller_reference(&job),
            );
            pod.metadata
                .finalizers
                .get_or_insert_with(Vec::new)
                .push(TRACKING_FINALIZER.to_string());
            match pod_api.create(&PostParams::default(), &pod).await {
                Ok(made) => {
                    created += 1;
                    let made_name = made.name_any();
                    lock(&st.memory.creating)
                        .entry(uid.clone())
                        .or_default()
                        .insert(made_name.clone(), Instant::now());
                    st.recorder
                        .publish(
                            &job,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {made_name}"),
                        )
                        .await;
                }
                Err(e) => {
                    st.recorder
                        .publish(
                            &job,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        )
                        .await;
                    return Err(Error::api("create", format!("pod for job {key}"), e));
                }
            }
        }
    }

    // 5. Status.
    let mut status = old_status.clone();
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.uncounted_terminated_pods = Some(uncounted);
    let still_active = active.len() as i32 - deleted + created;
    status.active = Some(still_active.max(0));
    status.ready = Some(active.iter().filter(|p| p.ready).count() as i32);
    if let Some(t) = decision.start_time {
        status.start_time = Some(Time(t));
    }
    for (type_, on, reason, message) in &decision.conditions {
        set_condition(&mut status, type_, *on, reason, message, now);
    }
    if let Some(t) = decision.completion_time {
        status.completion_time = Some(Time(t));
    }
    if job.status.as_ref() != Some(&status) {
        job.status = Some(status);
        job = jobs
            .replace_status(&name, &PostParams::default(), &job)
            .await
            .map_err(|e| Error::api("update status of", format!("job {key}"), e))?;
    }
    for (kind, reason, message) in &decision.events {
        st.recorder.publish(&job, *kind, reason, message).await;
    }

    if decision.delete_job {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..delete_exactly(Some(&uid))
        };
        match jobs.delete(&name, &dp).await {
            Ok(_) => tracing::info!(job = key, "deleted after ttlSecondsAfterFinished"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::api("delete", format!("job {key}"), e)),
        }
        lock(&st.memory.backoff).remove(&uid);
        lock(&st.memory.creating).remove(&uid);
        return Ok(Action::await_change());
    }

    ctx.succeeded(&key);
    Ok(match decision.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Removes the tracking finalizer from `pod` (optimistically: a changed pod is re-read).
async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<()> {
    let name = pod.name_any();
    let rest: Vec<String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .cloned()
        .collect();
    let patch = json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": pod.resource_version(),
    }});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::api(
            "remove the job-tracking finalizer of",
            format!("pod {}/{name}", pod.namespace().unwrap_or_default()),
            e,
        )),
    }
}

/// A pod with the tracking finalizer whose Job is gone (deleted with its pods) would stay
/// terminating forever: release it. The Job is checked through the API, not only the cache,
/// so a cache that has not listed Jobs yet cannot make a live Job's pod lose its count.
async fn release_orphan(st: &JobLoop, pod: &Pod) {
    let ns = pod.namespace().unwrap_or_default();
    let owner = controller_of(&pod.metadata).filter(|r| r.kind == "Job");
    if let Some(owner) = owner {
        let cached = st
            .jobs
            .get(&ObjectRef::new(&owner.name).within(&ns))
            .is_some_and(|j| j.uid().as_deref() == Some(owner.uid.as_str()));
        if cached {
            return;
        }
        let jobs: Api<Job> = Api::namespaced(st.ctx.client.clone(), &ns);
        match jobs.get_opt(&owner.name).await {
            Ok(Some(j)) if j.uid().as_deref() == Some(owner.uid.as_str()) => {
                if !is_terminating(&j.metadata) {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(pod = pod.name_any(), error = %e, "reading the pod's job");
                return;
            }
        }
    }
    let api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &ns);
    if let Err(e) = remove_finalizer(&api, pod).await {
        tracing::warn!(error = %e, "releasing an orphaned job pod");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const T0: &str = "2026-03-01T10:00:00Z";

    fn job(completions: Option<i32>, parallelism: i32) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("j".into()),
                namespace: Some("default".into()),
                uid: Some("job-uid".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(6),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: Some(JobStatus {
                start_time: Some(Time(at(T0))),
                ..Default::default()
            }),
        }
    }

    fn active(n: usize) -> Vec<ActivePod> {
        (0..n)
            .map(|i| ActivePod {
                name: format!("p{i}"),
                ready: false,
                scheduled: false,
                created: Some(at(T0)),
                restarts: 0,
            })
            .collect()
    }

    fn pod(uid: &str, phase: &str, finalizer: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("pod-{uid}")),
                uid: Some(uid.into()),
                finalizers: finalizer.then(|| vec![TRACKING_FINALIZER.to_string()]),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn never_more_than_parallelism_or_remaining_completions() {
        let now = at(T0);
        let j = job(Some(5), 2);
        assert_eq!(decide(&j, 0, 0, &[], None, now).create, 2);
        assert_eq!(decide(&j, 0, 0, &active(1), None, now).create, 1);
        assert_eq!(decide(&j, 0, 0, &active(2), None, now).create, 0);
        assert_eq!(decide(&j, 4, 0, &[], None, now).create, 1);
        assert_eq!(decide(&j, 4, 0, &active(1), None, now).create, 0);
        // Lowered parallelism deletes the surplus, not-ready and newest first.
        let d = decide(&job(Some(5), 1), 0, 0, &active(2), None, now);
        assert_eq!(d.delete.len(), 1);
        assert_eq!(d.delete_mode, Some(DeleteMode::Uncounted));
        let d = decide(&j, 5, 0, &[], None, now);
        assert_eq!(d.conditions[0].0, "Complete");
        assert_eq!(d.completion_time, Some(now));
        assert_eq!(d.events[0].1, "Completed");
    }

    #[test]
    fn work_queue_stops_starting_pods_after_a_success_and_completes_when_all_are_done() {
        let now = at(T0);
        let j = job(None, 3);
        assert_eq!(decide(&j, 0, 0, &[], None, now).create, 3);
        let d = decide(&j, 1, 0, &active(2), None, now);
        assert_eq!((d.create, d.delete.len(), d.conditions.len()), (0, 0, 0));
        let d = decide(&j, 2, 0, &[], None, now);
        assert_eq!(d.conditions[0].0, "Complete");
    }

    #[test]
    fn failures_beyond_the_backoff_limit_fail_the_job() {
        let now = at(T0);
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().backoff_limit = Some(2);
        assert!(decide(&j, 0, 2, &[], None, now).conditions.is_empty());
        let d = decide(&j, 0, 3, &active(1), None, now);
        assert_eq!(
            d.conditions[0],
            (
                "Failed".into(),
                true,
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into()
            )
        );
        assert_eq!(d.delete, ["p0"]);
        assert_eq!(d.delete_mode, Some(DeleteMode::Counted));
        // OnFailure: container restarts of running pods count.
        j.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .restart_policy = Some("OnFailure".into());
        let mut running = active(1);
        running[0].restarts = 1;
        assert!(decide(&j, 0, 0, &running, None, now).conditions.is_empty());
        running[0].restarts = 2;
        assert_eq!(
            decide(&j, 0, 0, &running, None, now).conditions[0].2,
            "BackoffLimitExceeded"
        );
    }

    #[test]
    fn replacements_wait_a_doubling_back_off_capped_at_six_minutes() {
        let t = at(T0);
        let b = |failures| Backoff {
            failures,
            last_failure: t,
        };
        assert_eq!(b(1).ready_at(), at("2026-03-01T10:00:10Z"));
        assert_eq!(b(2).ready_at(), at("2026-03-01T10:00:20Z"));
        assert_eq!(b(4).ready_at(), at("2026-03-01T10:01:20Z"));
        assert_eq!(b(7).ready_at(), at("2026-03-01T10:06:00Z"));
        assert_eq!(b(30).ready_at(), at("2026-03-01T10:06:00Z"));
        let j = job(Some(1), 1);
        let d = decide(&j, 0, 1, &[], Some(b(1)), at("2026-03-01T10:00:04Z"));
        assert_eq!((d.create, d.requeue), (0, Some(Duration::from_secs(6))));
        let d = decide(&j, 0, 1, &[], Some(b(1)), at("2026-03-01T10:00:10Z"));
        assert_eq!(d.create, 1);
    }

    #[test]
    fn deadline_counts_from_start_time() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        let d = decide(&j, 0, 0, &active(1), None, at("2026-03-01T10:00:20Z"));
        assert!(d.conditions.is_empty());
        assert_eq!(d.requeue, Some(Duration::from_secs(10)));
        let d = decide(&j, 0, 0, &active(1), None, at("2026-03-01T10:00:30Z"));
        assert_eq!(d.conditions[0].2, "DeadlineExceeded");
        assert_eq!(d.events[0].1, "DeadlineExceeded");
        assert_eq!(d.delete, ["p0"]);
        // A Job seen for the first time starts now.
        j.status = None;
        let d = decide(&j, 0, 0, &[], None, at(T0));
        assert_eq!(d.start_time, Some(at(T0)));
    }

    #[test]
    fn finished_jobs_are_deleted_after_their_ttl() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(60);
        let status = j.status.as_mut().unwrap();
        status.completion_time = Some(Time(at(T0)));
        set_condition(status, "Complete", true, "CompletionsReached", "", at(T0));
        let d = decide(&j, 1, 0, &[], None, at("2026-03-01T10:00:59Z"));
        assert_eq!(
            (d.delete_job, d.requeue),
            (false, Some(Duration::from_secs(1)))
        );
        assert!(decide(&j, 1, 0, &[], None, at("2026-03-01T10:01:00Z")).delete_job);
    }

    #[test]
    fn suspend_deletes_active_pods_uncounted_and_resume_restarts_the_clock() {
        let mut j = job(Some(3), 2);
        j.spec.as_mut().unwrap().suspend = Some(true);
        let d = decide(&j, 0, 0, &active(2), None, at(T0));
        assert_eq!(d.delete.len(), 2);
        assert_eq!(d.delete_mode, Some(DeleteMode::Uncounted));
        assert_eq!(d.conditions[0].0, "Suspended");
        assert_eq!(d.create, 0);
        j.spec.as_mut().unwrap().suspend = Some(false);
        set_condition(
            j.status.as_mut().unwrap(),
            "Suspended",
            true,
            "",
            "",
            at(T0),
        );
        let later = at("2026-03-01T11:00:00Z");
        let d = decide(&j, 0, 0, &[], None, later);
        assert!(!d.conditions[0].1);
        assert_eq!(d.start_time, Some(later));
        assert_eq!(d.create, 2);
    }

    #[test]
    fn finished_pods_are_counted_once() {
        let none = HashSet::new();
        let pods = [
            pod("a", "Succeeded", true),
            pod("b", "Failed", true),
            pod("c", "Running", true),
            pod("d", "Succeeded", false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let acc = account(None, &refs, &none);
        assert_eq!(acc.new_succeeded, ["a"]);
        assert_eq!(acc.new_failed, ["b"]);
        assert_eq!(acc.unfinalize, ["pod-a", "pod-b"]);
        // Recorded as uncounted: not new again, but its finalizer still goes.
        let status = JobStatus {
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into()]),
                failed: Some(vec!["b".into()]),
            }),
            ..Default::default()
        };
        let acc = account(Some(&status), &refs, &none);
        assert!(acc.new_succeeded.is_empty() && acc.new_failed.is_empty());
        assert_eq!(acc.unfinalize, ["pod-a", "pod-b"]);
        // Only `a` lost its finalizer: it moves; `b` stays uncounted.
        let finalized: HashSet<String> = ["a".to_string()].into();
        let (s, f, left) = settle(Some(&status), &refs, &finalized);
        assert_eq!((s, f), (1, 0));
        assert_eq!(left.failed, Some(vec!["b".to_string()]));
        // A recorded pod that is gone entirely moves too.
        let (s, f, _) = settle(Some(&status), &[], &none);
        assert_eq!((s, f), (1, 1));
        // A pod whose finalizer we removed, still shown with it by a lagging cache, is not
        // counted again.
        let acc = account(None, &refs, &finalized);
        assert_eq!(acc.new_succeeded, Vec::<String>::new());
    }

    #[test]
    fn deleted_unfinished_pods_count_as_failed() {
        let mut p = pod("x", "Running", true);
        assert_eq!(outcome(&p), PodOutcome::Active);
        p.metadata.deletion_timestamp = Some(Time(at(T0)));
        assert_eq!(outcome(&p), PodOutcome::Failed);
        let done = pod("y", "Succeeded", true);
        assert_eq!(outcome(&done), PodOutcome::Succeeded);
    }
}
