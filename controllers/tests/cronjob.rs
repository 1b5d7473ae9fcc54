//! The CronJob controller against a real API server, with the fake clock set to chosen
//! times. No Job controller runs: the test ends Jobs by writing their status.

mod support;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_controllers::cronjob::{self, job_name, SCHEDULED_TIMESTAMP_ANNOTATION};
use support::{eventually, Cluster, WAIT};

const NS: &str = "default";

fn cron_json(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "schedule": "*/5 * * * *",
        "jobTemplate": {
            "metadata": {"labels": {"cron": name}},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "tick", "image": "busybox"}],
            }}},
        },
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

/// Creates the CronJob and returns the first `*/5` fire time after its creation, with the
/// fake clock set 30 s before it (nothing is due yet).
async fn create(c: &Cluster, name: &str, extra: serde_json::Value) -> Timestamp {
    let cj: CronJob = c
        .create(&c.api::<CronJob>(NS), cron_json(name, extra))
        .await;
    let created = cj.metadata.creation_timestamp.expect("creation time").0;
    let five_min = 300;
    let first =
        Timestamp::from_second((created.as_second() / five_min + 1) * five_min).expect("timestamp");
    c.clock.set(first - SignedDuration::from_secs(30));
    first
}

fn minutes(t: Timestamp, m: i64) -> Timestamp {
    t + SignedDuration::from_mins(m)
}

async fn job_names(c: &Cluster, cron: &str) -> Vec<String> {
    let mut names: Vec<String> = c
        .api::<Job>(NS)
        .list(&ListParams::default().labels(&format!("cron={cron}")))
        .await
        .expect("list jobs")
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

async fn wait_jobs(c: &Cluster, cron: &str, want: &[String]) {
    eventually(&format!("jobs {want:?}"), WAIT, || async {
        (job_names(c, cron).await == want).then_some(())
    })
    .await
}

async fn has_event(c: &Cluster, name: &str, reason: &str) -> bool {
    let events: Api<Event> = c.api(NS);
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .iter()
        .any(|e| {
            e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason)
        })
}

async fn wait_event(c: &Cluster, name: &str, reason: &str) {
    eventually(&format!("event {reason}"), WAIT, || async {
        has_event(c, name, reason).await.then_some(())
    })
    .await
}

/// Ends a Job as its controller would.
async fn finish(c: &Cluster, job: &str, ok: bool, at: Timestamp) {
    let (type_, reason) = if ok {
        ("Complete", "CompletionsReached")
    } else {
        ("Failed", "BackoffLimitExceeded")
    };
    let mut status = json!({
        "startTime": at,
        "conditions": [{"type": type_, "status": "True", "reason": reason,
                        "lastTransitionTime": at, "lastProbeTime": at}],
    });
    if ok {
        status["completionTime"] = json!(at);
        status["succeeded"] = json!(1);
        status["conditions"] = json!([
            {"type": "SuccessCriteriaMet", "status": "True", "reason": reason,
             "lastTransitionTime": at, "lastProbeTime": at},
            {"type": type_, "status": "True", "reason": reason,
             "lastTransitionTime": at, "lastProbeTime": at}]);
    } else {
        status["failed"] = json!(1);
        status["conditions"] = json!([
            {"type": "FailureTarget", "status": "True", "reason": reason,
             "lastTransitionTime": at, "lastProbeTime": at},
            {"type": type_, "status": "True", "reason": reason,
             "lastTransitionTime": at, "lastProbeTime": at}]);
    }
    c.api::<Job>(NS)
        .patch_status(
            job,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .expect("finish job");
}

async fn status(c: &Cluster, name: &str) -> k8s_openapi::api::batch::v1::CronJobStatus {
    c.api::<CronJob>(NS)
        .get(name)
        .await
        .expect("get cronjob")
        .status
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_five_minutes_starts_a_job_on_the_minute_and_not_before() {
    let mut c = Cluster::new().await;
    c.run(&[cronjob::start]);
    let first = create(&c, "tick", json!({})).await;
    c.clock.set(first - SignedDuration::from_secs(1));
    c.clock.set(first);
    let name = job_name("tick", first);
    wait_jobs(&c, "tick", std::slice::from_ref(&name)).await;

    let job = c.api::<Job>(NS).get(&name).await.expect("job");
    assert_eq!(
        job.annotations()[SCHEDULED_TIMESTAMP_ANNOTATION],
        first.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    );
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CronJob", "tick")
    );
    let st = eventually("status", WAIT, || async {
        let st = status(&c, "tick").await;
        st.last_schedule_time.is_some().then_some(st)
    })
    .await;
    assert_eq!(st.last_schedule_time.unwrap().0, first);
    assert_eq!(st.active.unwrap()[0].name.as_deref(), Some(name.as_str()));

    // Allow: the next run starts beside the running one; minute 7 starts nothing.
    c.clock.set(minutes(first, 2));
    c.clock.set(minutes(first, 5));
    let second = job_name("tick", minutes(first, 5));
    let mut want = vec![name.clone(), second];
    want.sort();
    wait_jobs(&c, "tick", &want).await;
    assert!(has_event(&c, "tick", "SuccessfulCreate").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_while_a_job_runs_and_replace_replaces_it() {
    let mut c = Cluster::new().await;
    c.run(&[cronjob::start]);
    let first = create(&c, "solo", json!({"concurrencyPolicy": "Forbid"})).await;
    let first_b = create(&c, "swap", json!({"concurrencyPolicy": "Replace"})).await;
    assert_eq!(first, first_b, "both created within the same five minutes");
    c.clock.set(first);
    let solo1 = job_name("solo", first);
    let swap1 = job_name("swap", first);
    wait_jobs(&c, "solo", std::slice::from_ref(&solo1)).await;
    wait_jobs(&c, "swap", std::slice::from_ref(&swap1)).await;

    c.clock.set(minutes(first, 5));
    // Replace: the running job goes, the new one comes.
    let swap2 = job_name("swap", minutes(first, 5));
    wait_jobs(&c, "swap", std::slice::from_ref(&swap2)).await;
    eventually("swap active is the new job", WAIT, || async {
        let active = status(&c, "swap").await.active.unwrap_or_default();
        (active.len() == 1 && active[0].name.as_deref() == Some(swap2.as_str())).then_some(())
    })
    .await;
    // Forbid: nothing new while the first runs.
    wait_event(&c, "solo", "JobAlreadyActive").await;
    assert_eq!(job_names(&c, "solo").await, std::slice::from_ref(&solo1));
    // When it ends, the held-back run starts (no starting deadline).
    finish(&c, &solo1, true, minutes(first, 6)).await;
    c.clock.set(minutes(first, 6));
    let solo2 = job_name("solo", minutes(first, 5));
    let mut want = vec![solo1, solo2];
    want.sort();
    wait_jobs(&c, "solo", &want).await;
    let st = status(&c, "solo").await;
    assert_eq!(
        st.last_successful_time.map(|t| t.0),
        Some(minutes(first, 6))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_later_than_the_starting_deadline_is_missed() {
    let mut c = Cluster::new().await;
    c.run(&[cronjob::start]);
    let first = create(&c, "strict", json!({"startingDeadlineSeconds": 10})).await;
    c.clock.set(first + SignedDuration::from_secs(30));
    wait_event(&c, "strict", "MissSchedule").await;
    assert!(job_names(&c, "strict").await.is_empty());
    c.clock
        .set(minutes(first, 5) + SignedDuration::from_secs(5));
    wait_jobs(&c, "strict", &[job_name("strict", minutes(first, 5))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_prune_the_oldest_finished_jobs() {
    let mut c = Cluster::new().await;
    c.run(&[cronjob::start]);
    let first = create(
        &c,
        "hist",
        json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
    )
    .await;
    let run = |k: i64| job_name("hist", minutes(first, 5 * k));
    // Runs 0 and 1 succeed, 2 and 3 fail.
    for k in 0..4 {
        c.clock.set(minutes(first, 5 * k));
        eventually(&format!("run {k}"), WAIT, || async {
            job_names(&c, "hist").await.contains(&run(k)).then_some(())
        })
        .await;
        finish(&c, &run(k), k < 2, minutes(first, 5 * k + 1)).await;
        c.clock.set(minutes(first, 5 * k + 1));
    }
    let mut want = vec![run(1), run(3)];
    want.sort();
    wait_jobs(&c, "hist", &want).await;
    assert!(has_event(&c, "hist", "SuccessfulDelete").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_cronjob_starts_nothing() {
    let mut c = Cluster::new().await;
    c.run(&[cronjob::start]);
    let first = create(
        &c,
        "sleepy",
        json!({"suspend": true, "startingDeadlineSeconds": 30}),
    )
    .await;
    let probe_first = create(&c, "probe", json!({})).await;
    assert_eq!(first, probe_first);
    c.clock.set(first);
    // The probe's run shows the pass at `first` happened.
    wait_jobs(&c, "probe", &[job_name("probe", first)]).await;
    c.clock.set(minutes(first, 2));
    c.api::<CronJob>(NS)
        .patch(
            "sleepy",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": false}})),
        )
        .await
        .expect("resume");
    // Resumed past the deadline of the run it slept through: missed, not started.
    wait_event(&c, "sleepy", "MissSchedule").await;
    assert!(job_names(&c, "sleepy").await.is_empty());
    c.clock.set(minutes(first, 5));
    wait_jobs(&c, "sleepy", &[job_name("sleepy", minutes(first, 5))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_time_zone_is_reported() {
    let mut c = Cluster::new().await;
    c.run(&[cronjob::start]);
    // The API server checks the schedule's grammar; the zone is only known here.
    let created = c
        .api::<CronJob>(NS)
        .create(
            &Default::default(),
            &serde_json::from_value(cron_json("lost", json!({"timeZone": "Mars/Olympus_Mons"})))
                .expect("cronjob json"),
        )
        .await;
    if created.is_err() {
        // The server refused the zone itself: nothing for the controller to report.
        return;
    }
    wait_event(&c, "lost", "UnknownTimeZone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_job_controller_a_run_completes_and_is_recorded() {
    let mut c = Cluster::new().await;
    c.run(&[cronjob::start, skiff_controllers::job::start]);
    let first = create(&c, "full", json!({})).await;
    c.clock.set(first);
    let name = job_name("full", first);
    let sel = format!("batch.kubernetes.io/job-name={name}");
    let pod = eventually("the run's pod", WAIT, || async {
        c.pods(NS, &sel).await.into_iter().next()
    })
    .await;
    c.clock.set(first + SignedDuration::from_secs(20));
    c.set_pod_phase(NS, &pod.name_any(), "Succeeded").await;
    let st = eventually("last successful time", WAIT, || async {
        let st = status(&c, "full").await;
        (st.last_successful_time.is_some() && st.active.as_ref().is_none_or(Vec::is_empty))
            .then_some(st)
    })
    .await;
    assert_eq!(
        st.last_successful_time.unwrap().0,
        first + SignedDuration::from_secs(20)
    );
}
