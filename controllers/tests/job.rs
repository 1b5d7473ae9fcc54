//! The Job controller against a real API server: pods' phases are set by the test.

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;
use serde_json::json;
use skiff_controllers::job::{self, TRACKING_FINALIZER};
use support::{eventually, Cluster, WAIT};

const NS: &str = "default";

fn job_json(name: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut spec = spec;
    spec["template"] = json!({"spec": {
        "restartPolicy": spec.get("restartPolicy").cloned().unwrap_or(json!("Never")),
        "containers": [{"name": "work", "image": "busybox"}],
    }});
    if let Some(m) = spec.as_object_mut() {
        m.remove("restartPolicy");
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

fn selector(name: &str) -> String {
    format!("batch.kubernetes.io/job-name={name}")
}

fn is_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

async fn job(c: &Cluster, name: &str) -> Job {
    c.api::<Job>(NS).get(name).await.expect("get job")
}

fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn reasons(c: &Cluster, name: &str) -> Vec<String> {
    let events: Api<Event> = c.api(NS);
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_five_parallelism_two_never_runs_more_than_two() {
    let mut c = Cluster::new().await;
    c.run(&[job::start]);
    c.create(
        &c.api::<Job>(NS),
        job_json("work", json!({"completions": 5, "parallelism": 2})),
    )
    .await;
    let sel = selector("work");
    for done in 0..5 {
        let want = 2.min(5 - done);
        let active = eventually(
            &format!("{want} active pods after {done} done"),
            WAIT,
            || async {
                let pods = c.pods(NS, &sel).await;
                let active: Vec<Pod> = pods.into_iter().filter(is_active).collect();
                assert!(
                    active.len() <= 2,
                    "more than 2 active pods: {}",
                    active.len()
                );
                let status_active = job(&c, "work")
                    .await
                    .status
                    .and_then(|s| s.active)
                    .unwrap_or(0);
                assert!(status_active <= 2, "status.active {status_active}");
                (active.len() == want).then_some(active)
            },
        )
        .await;
        for p in &active {
            assert!(
                p.finalizers().iter().any(|f| f == TRACKING_FINALIZER),
                "job pods carry the tracking finalizer"
            );
        }
        c.set_pod_phase(NS, &active[0].name_any(), "Succeeded")
            .await;
    }
    let done = eventually("job complete", WAIT, || async {
        let j = job(&c, "work").await;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.succeeded, Some(5));
    assert_eq!(status.active, Some(0));
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    // Every pod was counted and released: no finalizer left, none counted twice.
    let pods = eventually("finalizers removed", WAIT, || async {
        let pods = c.pods(NS, &sel).await;
        pods.iter()
            .all(|p| !p.finalizers().iter().any(|f| f == TRACKING_FINALIZER))
            .then_some(pods)
    })
    .await;
    assert_eq!(pods.len(), 5);
    // A deleted succeeded pod is still counted.
    c.api::<Pod>(NS)
        .delete(&pods[0].name_any(), &DeleteParams::default())
        .await
        .expect("delete pod");
    c.clock.advance(Duration::from_secs(1));
    eventually("pod gone", WAIT, || async {
        (c.pods(NS, &sel).await.len() == 4).then_some(())
    })
    .await;
    assert_eq!(job(&c, "work").await.status.unwrap().succeeded, Some(5));
    let r = reasons(&c, "work").await;
    assert!(r.iter().any(|r| r == "SuccessfulCreate"), "{r:?}");
    assert!(r.iter().any(|r| r == "Completed"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pods_back_off_then_exceed_the_backoff_limit() {
    let mut c = Cluster::new().await;
    c.run(&[job::start]);
    c.create(
        &c.api::<Job>(NS),
        job_json("flaky", json!({"completions": 1, "backoffLimit": 1})),
    )
    .await;
    let sel = selector("flaky");
    let first = eventually("first pod", WAIT, || async {
        c.pods(NS, &sel).await.into_iter().next()
    })
    .await;
    c.set_pod_phase(NS, &first.name_any(), "Failed").await;
    eventually("one failure counted", WAIT, || async {
        (job(&c, "flaky").await.status?.failed == Some(1)).then_some(())
    })
    .await;
    // The replacement waits for the 10 s back-off on the (fake) clock.
    assert_eq!(
        c.pods(NS, &sel).await.len(),
        1,
        "no replacement before the back-off"
    );
    c.clock.advance(Duration::from_secs(11));
    let second = eventually("replacement after the back-off", WAIT, || async {
        c.pods(NS, &sel).await.into_iter().find(is_active)
    })
    .await;
    c.set_pod_phase(NS, &second.name_any(), "Failed").await;
    let failed = eventually("job failed", WAIT, || async {
        let j = job(&c, "flaky").await;
        condition(&j, "Failed").map(|cond| (cond, j))
    })
    .await;
    assert_eq!(failed.0 .0, "BackoffLimitExceeded");
    assert_eq!(failed.0 .1, "Job has reached the specified backoff limit");
    eventually("failed count 2", WAIT, || async {
        (job(&c, "flaky").await.status?.failed == Some(2)).then_some(())
    })
    .await;
    c.clock.advance(Duration::from_secs(600));
    assert_eq!(c.pods(NS, &sel).await.len(), 2, "no pods after failing");
    let r = reasons(&c, "flaky").await;
    assert!(r.iter().any(|r| r == "BackoffLimitExceeded"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job_and_removes_its_pods() {
    let mut c = Cluster::new().await;
    c.run(&[job::start]);
    c.create(
        &c.api::<Job>(NS),
        job_json(
            "slow",
            json!({"completions": 2, "parallelism": 2, "activeDeadlineSeconds": 30}),
        ),
    )
    .await;
    let sel = selector("slow");
    eventually("two pods", WAIT, || async {
        (c.pods(NS, &sel).await.len() == 2).then_some(())
    })
    .await;
    eventually("start time", WAIT, || async {
        job(&c, "slow").await.status?.start_time
    })
    .await;
    c.clock.advance(Duration::from_secs(20));
    assert!(condition(&job(&c, "slow").await, "Failed").is_none());
    c.clock.advance(Duration::from_secs(11));
    let (reason, _) = eventually("deadline exceeded", WAIT, || async {
        condition(&job(&c, "slow").await, "Failed")
    })
    .await;
    assert_eq!(reason, "DeadlineExceeded");
    eventually("pods deleted and counted as failed", WAIT, || async {
        let gone = c.pods(NS, &sel).await.is_empty();
        let failed = job(&c, "slow").await.status?.failed;
        (gone && failed == Some(2)).then_some(())
    })
    .await;
    assert!(reasons(&c, "slow")
        .await
        .iter()
        .any(|r| r == "DeadlineExceeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_job_is_deleted_after_its_ttl() {
    let mut c = Cluster::new().await;
    c.run(&[job::start]);
    c.create(
        &c.api::<Job>(NS),
        job_json("brief", json!({"ttlSecondsAfterFinished": 100})),
    )
    .await;
    let sel = selector("brief");
    let pod = eventually("pod", WAIT, || async {
        c.pods(NS, &sel).await.into_iter().next()
    })
    .await;
    c.set_pod_phase(NS, &pod.name_any(), "Succeeded").await;
    eventually("complete", WAIT, || async {
        condition(&job(&c, "brief").await, "Complete")
    })
    .await;
    c.clock.advance(Duration::from_secs(50));
    assert!(c.api::<Job>(NS).get_opt("brief").await.unwrap().is_some());
    c.clock.advance(Duration::from_secs(51));
    eventually("job and its pods deleted", WAIT, || async {
        let job_gone = c.api::<Job>(NS).get_opt("brief").await.ok()?.is_none();
        (job_gone && c.pods(NS, &sel).await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_removes_pods_without_counting_them_and_resume_restarts() {
    let mut c = Cluster::new().await;
    c.run(&[job::start]);
    c.create(
        &c.api::<Job>(NS),
        job_json("paused", json!({"completions": 3, "parallelism": 2})),
    )
    .await;
    let sel = selector("paused");
    eventually("two pods", WAIT, || async {
        (c.pods(NS, &sel).await.len() == 2).then_some(())
    })
    .await;
    let patch = json!({"spec": {"suspend": true}});
    c.api::<Job>(NS)
        .patch(
            "paused",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("suspend");
    let j = eventually("suspended without pods", WAIT, || async {
        let j = job(&c, "paused").await;
        (condition(&j, "Suspended").is_some() && c.pods(NS, &sel).await.is_empty()).then_some(j)
    })
    .await;
    assert_eq!(j.status.unwrap().failed.unwrap_or(0), 0);
    let patch = json!({"spec": {"suspend": false}});
    c.api::<Job>(NS)
        .patch(
            "paused",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("resume");
    eventually("two pods again", WAIT, || async {
        (c.pods(NS, &sel).await.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_releases_its_pods() {
    let mut c = Cluster::new().await;
    c.run(&[job::start]);
    c.create(
        &c.api::<Job>(NS),
        job_json("doomed", json!({"completions": 4, "parallelism": 2})),
    )
    .await;
    let sel = selector("doomed");
    eventually("two pods", WAIT, || async {
        (c.pods(NS, &sel).await.len() == 2).then_some(())
    })
    .await;
    let dp = DeleteParams::background();
    c.api::<Job>(NS)
        .delete("doomed", &dp)
        .await
        .expect("delete job");
    // The pods hold the tracking finalizer; with their Job gone it is removed for them.
    eventually("pods gone", WAIT, || async {
        c.pods(NS, &sel).await.is_empty().then_some(())
    })
    .await;
}
