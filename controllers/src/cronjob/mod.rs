//! The CronJob controller: creates a Job from the job template at each scheduled time.
//!
//! At every pass (a CronJob or one of its Jobs changed, the requeue for the next fire time
//! came due, or a fake clock moved) the loop:
//! 1. drops Jobs from `status.active` that are gone or finished (`lastSuccessfulTime` from
//!    the newest completed one) and adds running Jobs it owns that the status missed;
//! 2. prunes finished Jobs beyond `successfulJobsHistoryLimit` (3) and
//!    `failedJobsHistoryLimit` (1), oldest first;
//! 3. unless suspended, finds the latest fire time after `lastScheduleTime` (or the
//!    CronJob's creation) up to now. A time older than `startingDeadlineSeconds` is missed
//!    (Warning `MissSchedule`); more than 100 missed times warn `TooManyMissedTimes`.
//!    `concurrencyPolicy` Forbid skips while a Job runs (`JobAlreadyActive`; the run starts
//!    when it ends, unless its deadline passed), Replace deletes the running Jobs first,
//!    Allow just starts;
//! 4. creates the Job `<cronjob>-<scheduled minute since the epoch>` (deterministic, so a
//!    lagging cache or a lost status write can never start one time twice), with the
//!    `batch.kubernetes.io/cronjob-scheduled-timestamp` annotation and a controller owner
//!    reference, then records it in `status.active` and `lastScheduleTime`;
//! 5. requeues for the next fire time.
//!
//! Schedules are read in `spec.timeZone` (IANA, from the system tz database) or UTC.
//! A schedule that does not parse is a Warning `UnparseableSchedule` (`UnknownTimeZone` for
//! the zone) naming the field and value, and waits for the CronJob to change.

pub mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::json;

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{object_reference, EventType, Recorder};
use crate::objects::{controlled_by, controller_of, controller_reference, is_terminating};

pub use schedule::{Schedule, ScheduleError};

pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const COMPONENT: &str = "cronjob-controller";
/// More missed start times than this are reported (Kubernetes' limit).
const MISSED_TIMES_LIMIT: usize = 100;

pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let cron_jobs = ctx.informers.cron_jobs.reader();
    let state = Arc::new(CronJobLoop {
        ctx: ctx.clone(),
        jobs: ctx.informers.jobs.reader(),
        recorder: ctx.recorder(COMPONENT),
        told: Mutex::default(),
    });
    Controller::for_shared_stream(ctx.informers.cron_jobs.subscribe(), cron_jobs)
        .owns_shared_stream(ctx.informers.jobs.subscribe())
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(ctx.clock.ticks())
        .run(
            reconcile,
            |cj: Arc<CronJob>, error: &Error, state: Arc<CronJobLoop>| {
                error_policy(cj, error, state.ctx.clone())
            },
            state,
        )
        .for_each(log_outcome("cronjob"))
        .boxed()
}

struct CronJobLoop {
    ctx: Arc<Context>,
    jobs: Store<Job>,
    recorder: Recorder,
    /// Per CronJob uid: the last scheduled time a run was missed or held back for, and
    /// which, so each is told once rather than at every pass.
    told: Mutex<HashMap<String, (Timestamp, &'static str)>>,
}

/// The name of the Job for the run scheduled at `scheduled`.
pub fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

/// How a Job of the CronJob ended, if it did, and when.
pub fn finished(job: &Job) -> Option<(bool, Option<Timestamp>)> {
    let status = job.status.as_ref()?;
    let cond = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let when = status
        .completion_time
        .as_ref()
        .or(cond.last_transition_time.as_ref())
        .map(|t| t.0);
    Some((cond.type_ == "Complete", when))
}

/// What a pass should do about the schedule.
#[derive(Debug, PartialEq, Eq)]
pub enum Run {
    /// Nothing is due.
    None,
    /// Start the run scheduled at this time.
    Start(Timestamp),
    /// The latest due time is older than the starting deadline.
    Missed(Timestamp),
}

/// The run due at `now` for a CronJob last scheduled at `last` (or created then), and how
/// many times were missed since (counted up to the limit + 1).
pub fn due(
    schedule: &Schedule,
    last: Timestamp,
    now: Timestamp,
    starting_deadline_seconds: Option<i64>,
) -> (Run, usize) {
    let Some(latest) = schedule.latest_in(last, now) else {
        return (Run::None, 0);
    };
    let missed = schedule.count_in(last, now, MISSED_TIMES_LIMIT + 1);
    if let Some(deadline) = starting_deadline_seconds {
        if crate::clock::seconds_between(latest, now) > deadline {
            return (Run::Missed(latest), missed);
        }
    }
    (Run::Start(latest), missed)
}

/// Finished Jobs to delete beyond the history limits, oldest first: `jobs` are
/// `(name, succeeded, finished at)`.
pub fn to_prune(
    jobs: &[(String, bool, Option<Timestamp>)],
    successful_limit: i32,
    failed_limit: i32,
) -> Vec<String> {
    let mut out = Vec::new();
    for (want_success, limit) in [(true, successful_limit), (false, failed_limit)] {
        let mut of_kind: Vec<&(String, bool, Option<Timestamp>)> =
            jobs.iter().filter(|j| j.1 == want_success).collect();
        // Newest first; the names carry the scheduled minute, so they break ties in order.
        of_kind.sort_by(|a, b| (b.2, &b.0).cmp(&(a.2, &a.0)));
        out.extend(
            of_kind
                .into_iter()
                .skip(limit.max(0) as usize)
                .map(|j| j.0.clone()),
        );
    }
    out
}

fn job_reference(job: &Job) -> ObjectReference {
    let mut r = object_reference(job);
    r.resource_version = None;
    r
}

/// The Job for the run at `scheduled`, from the CronJob's template.
pub fn job_for(cj: &CronJob, scheduled: Timestamp) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let t_meta = template.metadata.unwrap_or_default();
    let mut annotations = t_meta.annotations.unwrap_or_default();
    let tz = cj
        .spec
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .and_then(|z| schedule::time_zone_named(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.to_string(),
        scheduled
            .to_zoned(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: t_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_reference(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

async fn reconcile(cj: Arc<CronJob>, st: Arc<CronJobLoop>) -> Result<Action> {
    let ctx = &st.ctx;
    let key = object_key(cj.as_ref());
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let (Some(uid), Some(spec)) = (cj.uid(), cj.spec.as_ref()) else {
        return Ok(Action::await_change());
    };
    if is_terminating(&cj.metadata) {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cj_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);

    let all_jobs = st.jobs.state();
    let owned: Vec<&Job> = controlled_by(&all_jobs, &ns, &uid);

    let old_status = cj.status.clone().unwrap_or_default();
    let mut status = old_status.clone();

    // 1. Active Jobs: drop the gone and the finished, add running ones the status missed.
    let mut active: Vec<ObjectReference> = Vec::new();
    for r in old_status.active.iter().flatten() {
        let Some(job_name) = r.name.as_deref() else {
            continue;
        };
        let job = match owned.iter().find(|j| j.name_any() == job_name) {
            Some(j) => Some((*j).clone()),
            // Not in the cache: it may be new and the cache behind; ask the API.
            None => job_api
                .get_opt(job_name)
                .await
                .map_err(|e| Error::api("get", format!("job {ns}/{job_name}"), e))?,
        };
        match job {
            Some(j)
                if j.uid() == r.uid && finished(&j).is_none() && !is_terminating(&j.metadata) =>
            {
                active.push(r.clone())
            }
            _ => {}
        }
    }
    for job in &owned {
        if finished(job).is_none()
            && !is_terminating(&job.metadata)
            && !active.iter().any(|r| r.uid == job.uid())
        {
            active.push(job_reference(job));
        }
    }
    let newest_success = owned
        .iter()
        .filter_map(|j| match finished(j) {
            Some((true, when)) => when,
            _ => None,
        })
        .max();
    if let Some(t) = newest_success {
        if old_status
            .last_successful_time
            .as_ref()
            .is_none_or(|l| l.0 < t)
        {
            status.last_successful_time = Some(Time(t));
        }
    }

    // 2. History.
    let finished_jobs: Vec<(String, bool, Option<Timestamp>)> = owned
        .iter()
        .filter(|j| !is_terminating(&j.metadata))
        .filter_map(|j| finished(j).map(|(ok, when)| (j.name_any(), ok, when)))
        .collect();
    for job_name in to_prune(
        &finished_jobs,
        spec.successful_jobs_history_limit.unwrap_or(3),
        spec.failed_jobs_history_limit.unwrap_or(1),
    ) {
        delete_job(&st, &cj, &job_api, &job_name).await?;
    }

    // 3. The schedule.
    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            let (reason, message) = match (&spec.time_zone, e.to_string()) {
                (Some(tz), m) if m.starts_with("unknown time zone") => (
                    "UnknownTimeZone",
                    format!("invalid spec.timeZone {tz:?}: {m}"),
                ),
                (_, m) => (
                    "UnparseableSchedule",
                    format!("unparseable spec.schedule {:?}: {m}", spec.schedule),
                ),
            };
            st.recorder
                .publish(cj.as_ref(), EventType::Warning, reason, &message)
                .await;
            status.active = Some(active);
            write_status(&cj_api, &name, &old_status, &status).await?;
            return Err(Error::invalid(format!("cronjob {key}"), message));
        }
    };

    let mut requeue = schedule
        .next_after(now)
        .map(|next| Duration::from_secs(crate::clock::seconds_between(now, next).max(1) as u64));
    if spec.suspend == Some(true) {
        status.active = Some(active);
        write_status(&cj_api, &name, &old_status, &status).await?;
        return Ok(Action::await_change());
    }

    let last = old_status
        .last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    let (run, missed_count) = due(&schedule, last, now, spec.starting_deadline_seconds);
    if missed_count > MISSED_TIMES_LIMIT {
        st.recorder
            .publish(
                cj.as_ref(),
                EventType::Warning,
                "TooManyMissedTimes",
                "too many missed start times: > 100. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            )
            .await;
    }
    match run {
        Run::None => {}
        Run::Missed(t) => {
            let first_time = lock(&st.told).insert(uid.clone(), (t, "MissSchedule"))
                != Some((t, "MissSchedule"));
            if first_time {
                st.recorder
                    .publish(
                        cj.as_ref(),
                        EventType::Warning,
                        "MissSchedule",
                        &format!(
                            "Missed scheduled time to start a job: {}",
                            t.strftime("%a, %d %b %Y %H:%M:%S %z")
                        ),
                    )
                    .await;
            }
        }
        Run::Start(t) => {
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            let this_run = job_name(&name, t);
            let already = active
                .iter()
                .any(|r| r.name.as_deref() == Some(this_run.as_str()));
            if already {
                status.last_schedule_time = Some(Time(t));
            } else if policy == "Forbid" && !active.is_empty() {
                // The run starts when the active one ends (unless its deadline passes).
                if lock(&st.told).insert(uid.clone(), (t, "JobAlreadyActive"))
                    != Some((t, "JobAlreadyActive"))
                {
                    st.recorder
                        .publish(
                            cj.as_ref(),
                            EventType::Normal,
                            "JobAlreadyActive",
                            "Not starting job because prior execution is running and concurrency policy is Forbid",
                        )
                        .await;
                }
            } else {
                if policy == "Replace" {
                    for r in std::mem::take(&mut active) {
                        if let Some(job_name) = r.name.as_deref() {
                            delete_job(&st, &cj, &job_api, job_name).await?;
                        }
                    }
                }
                let job = create_job(&st, &cj, &job_api, t).await?;
                if !active.iter().any(|r| r.uid == job.uid()) {
                    active.push(job_reference(&job));
                }
                status.last_schedule_time = Some(Time(t));
            }
        }
    }
    status.active = Some(active);
    write_status(&cj_api, &name, &old_status, &status).await?;
    ctx.succeeded(&key);
    if requeue.is_none() {
        tracing::info!(cronjob = key, "schedule never fires again");
    }
    // Fake clocks: the tick stream re-evaluates; real clocks: wake at the next time.
    requeue = requeue.map(|d| d.min(Duration::from_secs(24 * 3600)));
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn create_job(st: &CronJobLoop, cj: &CronJob, api: &Api<Job>, t: Timestamp) -> Result<Job> {
    let job = job_for(cj, t);
    let job_name = job.name_any();
    let key = object_key(cj);
    match api.create(&PostParams::default(), &job).await {
        Ok(made) => {
            st.recorder
                .publish(
                    cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {job_name}"),
                )
                .await;
            Ok(made)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Created by an earlier pass whose status write was lost or not yet cached.
            let existing = api
                .get(&job_name)
                .await
                .map_err(|e| Error::api("get", format!("job {key}/{job_name}"), e))?;
            if controller_of(&existing.metadata).is_some_and(|r| Some(&r.uid) == cj.uid().as_ref())
            {
                Ok(existing)
            } else {
                Err(Error::Other(format!(
                    "cronjob {key}: job {job_name} exists and belongs to someone else"
                )))
            }
        }
        Err(e) => {
            st.recorder
                .publish(
                    cj,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                )
                .await;
            Err(Error::api(
                "create",
                format!("job {job_name} for cronjob {key}"),
                e,
            ))
        }
    }
}

async fn delete_job(st: &CronJobLoop, cj: &CronJob, api: &Api<Job>, job_name: &str) -> Result<()> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(job_name, &dp).await {
        Ok(_) => {
            st.recorder
                .publish(
                    cj,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted job {job_name}"),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::api(
            "delete",
            format!("job {}/{job_name}", cj.namespace().unwrap_or_default()),
            e,
        )),
    }
}

async fn write_status(
    api: &Api<CronJob>,
    name: &str,
    old: &CronJobStatus,
    new: &CronJobStatus,
) -> Result<()> {
    let normalize = |s: &CronJobStatus| {
        let mut s = s.clone();
        if s.active.as_ref().is_some_and(Vec::is_empty) {
            s.active = None;
        }
        s
    };
    if normalize(old) == normalize(new) {
        return Ok(());
    }
    let patch = json!({"status": {
        "active": new.active.clone().unwrap_or_default(),
        "lastScheduleTime": new.last_schedule_time,
        "lastSuccessfulTime": new.last_successful_time,
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::api("update status of", format!("cronjob {name}"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn job_names_carry_the_scheduled_minute() {
        assert_eq!(job_name("hello", at("1970-01-01T01:05:00Z")), "hello-65");
        assert_eq!(
            job_name("hello", at("2026-03-01T10:05:00Z")),
            format!("hello-{}", at("2026-03-01T10:05:00Z").as_second() / 60)
        );
    }

    #[test]
    fn the_latest_due_time_starts_or_is_missed() {
        let s = Schedule::parse("*/5 * * * *", None).unwrap();
        let last = at("2026-03-01T10:00:00Z");
        assert_eq!(
            due(&s, last, at("2026-03-01T10:04:59Z"), None),
            (Run::None, 0)
        );
        assert_eq!(
            due(&s, last, at("2026-03-01T10:05:00Z"), None),
            (Run::Start(at("2026-03-01T10:05:00Z")), 1)
        );
        // Two missed: only the latest starts.
        assert_eq!(
            due(&s, last, at("2026-03-01T10:12:00Z"), None),
            (Run::Start(at("2026-03-01T10:10:00Z")), 2)
        );
        assert_eq!(
            due(&s, last, at("2026-03-01T10:05:10Z"), Some(10)),
            (Run::Start(at("2026-03-01T10:05:00Z")), 1)
        );
        assert_eq!(
            due(&s, last, at("2026-03-01T10:05:11Z"), Some(10)),
            (Run::Missed(at("2026-03-01T10:05:00Z")), 1)
        );
        let (_, missed) = due(&s, last, at("2026-03-03T10:00:00Z"), None);
        assert_eq!(missed, MISSED_TIMES_LIMIT + 1);
    }

    #[test]
    fn history_keeps_the_newest_of_each_kind() {
        let jobs = vec![
            ("a".to_string(), true, Some(at("2026-03-01T10:01:00Z"))),
            ("b".to_string(), true, Some(at("2026-03-01T10:02:00Z"))),
            ("c".to_string(), false, Some(at("2026-03-01T10:03:00Z"))),
            ("d".to_string(), true, Some(at("2026-03-01T10:04:00Z"))),
            ("e".to_string(), false, Some(at("2026-03-01T10:05:00Z"))),
        ];
        assert_eq!(to_prune(&jobs, 3, 1), ["c"]);
        assert_eq!(to_prune(&jobs, 1, 1), ["b", "a", "c"]);
        assert_eq!(to_prune(&jobs, 0, 0), ["d", "b", "a", "e", "c"]);
    }

    #[test]
    fn jobs_come_from_the_template_with_owner_and_scheduled_time() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid"},
            "spec": {
                "schedule": "*/5 * * * *",
                "timeZone": "Europe/Berlin",
                "jobTemplate": {
                    "metadata": {"labels": {"app": "tick"}, "annotations": {"a": "b"}},
                    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
                }
            }
        }))
        .unwrap();
        let job = job_for(&cj, at("2026-03-01T10:05:00Z"));
        assert_eq!(job.name_any(), job_name("tick", at("2026-03-01T10:05:00Z")));
        let ann = job.metadata.annotations.unwrap();
        assert_eq!(
            ann[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2026-03-01T11:05:00+01:00"
        );
        assert_eq!(ann["a"], "b");
        assert_eq!(job.metadata.labels.unwrap()["app"], "tick");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("CronJob", "cj-uid")
        );
        assert_eq!(owner.controller, Some(true));
    }
}
