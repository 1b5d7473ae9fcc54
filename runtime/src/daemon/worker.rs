//! One task per pod: look at what runs, ask the state machine what to do, do it, report the
//! status; again whenever the pod changes, a second passes, or a back-off ends.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use skiff_runtime::pod::machine::{self, Action, ContainerView, Exit, Instance, PodView};
use skiff_runtime::probe::{self, ContainerProbes, HookKind, ProbeTarget};
use tokio::sync::watch;
use tracing::{info, warn};

use super::containers;
use super::context::NodeContext;
use super::events::Recorder;
use super::record::{ExitRecord, PodRecord};
use super::sandbox;

/// How often a pod's containers are looked at when nothing else happens (the kubelet's
/// PLEG period).
const RESYNC: Duration = Duration::from_secs(1);
/// The shortest pause between two passes, so a probe that cannot run never spins the loop.
const MIN_WAIT: Duration = Duration::from_millis(50);
/// The longest a postStart hook may take.
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How often mounted config maps, secrets and downward API files are brought up to date.
const VOLUME_REFRESH: Duration = Duration::from_secs(2);
/// A container that ran this long before ending starts its back-off afresh.
const BACKOFF_RESET_AFTER: SignedDuration = SignedDuration::from_secs(600);

/// What the worker knows only while it runs (not worth persisting).
#[derive(Default)]
struct Transient {
    waiting: std::collections::BTreeMap<String, (String, String)>,
    last_status: Option<PodStatus>,
    /// The last volume refresh error, told once.
    last_volume_error: Option<String>,
    /// The last failed action's error, so a failure retried every pass is told once.
    last_failure: Option<String>,
    /// Warnings noticed while looking at the pod, posted as events after the look.
    pending_events: Vec<(&'static str, String)>,
    /// Exits already reported (container, instance count), so each is told once.
    seen_exits: std::collections::HashSet<(String, i32)>,
    /// Probe state of each running app container, with the instance it belongs to.
    probes: std::collections::BTreeMap<String, (i32, ContainerProbes)>,
}

fn to_exit(e: &ExitRecord) -> Exit {
    Exit {
        exit_code: e.exit_code,
        reason: e.reason.clone(),
        message: e.message.clone(),
        started_at: e.started_at.as_deref().and_then(|s| s.parse().ok()),
        finished_at: e.finished_at.parse().unwrap_or(Timestamp::UNIX_EPOCH),
    }
}

fn to_record(e: &Exit) -> ExitRecord {
    ExitRecord {
        exit_code: e.exit_code,
        reason: e.reason.clone(),
        message: e.message.clone(),
        started_at: e.started_at.map(|t| t.to_string()),
        finished_at: e.finished_at.to_string(),
    }
}

/// Builds the state machine's view of the pod; records back-offs of newly seen exits.
fn view(
    ctx: &NodeContext,
    pod: &Pod,
    record: &mut PodRecord,
    pod_dir: &Path,
    transient: &mut Transient,
) -> PodView {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let sandbox_ready = record.sandbox.as_ref().is_some_and(sandbox::sandbox_alive);
    let mut v = PodView {
        sandbox_ready,
        sandbox_lost: record.sandbox.is_some() && !sandbox_ready,
        pod_ip: record
            .sandbox
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .or_else(|| record.last_pod_ip.clone()),
        host_ip: Some(ctx.config.node_ip.clone()),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        start_time: record.first_seen.parse().ok(),
        ..Default::default()
    };
    let snapshot = record.clone();
    let mut changed = false;
    for (init, names) in [
        (
            true,
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
        ),
        (
            false,
            spec.containers.iter().map(|c| c.name.clone()).collect(),
        ),
    ] {
        for name in names {
            let Some(entry) = snapshot.container(&name, init) else {
                if let Some(w) = transient.waiting.get(&name) {
                    let cv = ContainerView {
                        waiting: Some(w.clone()),
                        ready: true,
                        started: true,
                        ..Default::default()
                    };
                    insert(&mut v, init, name, cv);
                }
                continue;
            };
            let current = containers::observe(ctx, record, pod_dir, &name, entry);
            let mut entry = entry.clone();
            if let Some(Instance::Exited(e)) = &current {
                if e.reason == "OOMKilled"
                    && transient.seen_exits.insert((name.clone(), entry.attempts))
                {
                    transient.pending_events.push((
                        "OOMKilling",
                        format!("Container {name} was killed: it went past its memory limit"),
                    ));
                }
                let restarts = if init {
                    e.exit_code != 0 && policy != "Never"
                } else {
                    machine::should_restart(&policy, e)
                };
                if restarts && entry.backoff_attempt != entry.attempts {
                    let ran = e
                        .started_at
                        .map(|s| e.finished_at.duration_since(s))
                        .unwrap_or_default();
                    if ran > BACKOFF_RESET_AFTER {
                        entry.backoff_restarts = 0;
                    }
                    let delay = machine::backoff_delay(entry.backoff_restarts);
                    let until = e.finished_at + SignedDuration::try_from(delay).unwrap_or_default();
                    entry.backoff_until = Some(until.to_string());
                    entry.backoff_restarts += 1;
                    entry.backoff_attempt = entry.attempts;
                    transient.pending_events.push((
                        "BackOff",
                        format!(
                            "Back-off {}s restarting failed container {name} in pod {}_{}",
                            delay.as_secs(),
                            record.name,
                            record.namespace
                        ),
                    ));
                    *record.container_mut(&name, init) = entry.clone();
                    changed = true;
                }
            }
            let (ready, started, unhealthy) = match (&current, init) {
                (Some(Instance::Running { started_at }), false) => {
                    let probes = probes_for(&spec, &name, entry.attempts, *started_at, transient);
                    match probes {
                        Some(p) => (p.ready(), p.started(), p.unhealthy().is_some()),
                        None => (true, true, false),
                    }
                }
                _ => (true, true, false),
            };
            if !matches!(current, Some(Instance::Running { .. })) {
                transient.probes.remove(&name);
            }
            let cv = ContainerView {
                restart_count: (entry.attempts - 1).max(0),
                current,
                last: entry.last_exit.as_ref().map(to_exit),
                waiting: transient.waiting.get(&name).cloned(),
                image: entry.image.clone(),
                image_id: entry.image_id.clone(),
                ready,
                started,
                unhealthy,
                backoff_until: entry.backoff_until.as_deref().and_then(|s| s.parse().ok()),
            };
            insert(&mut v, init, name, cv);
        }
    }
    if changed {
        if let Err(e) = record.save(pod_dir) {
            warn!(error = %e, "saving the pod record");
        }
    }
    v
}

/// The probe state of a running app container's instance, made when first seen.
fn probes_for<'a>(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    name: &str,
    attempt: i32,
    started_at: Timestamp,
    transient: &'a mut Transient,
) -> Option<&'a ContainerProbes> {
    let fresh = transient
        .probes
        .get(name)
        .is_none_or(|(a, _)| *a != attempt);
    if fresh {
        let container = spec.containers.iter().find(|c| c.name == name)?;
        // The instance started this long ago: probes count their delays from then.
        let age = Timestamp::now().duration_since(started_at);
        let started = std::time::Instant::now()
            .checked_sub(Duration::try_from(age).unwrap_or_default())
            .unwrap_or_else(std::time::Instant::now);
        match ContainerProbes::new(container, started) {
            Ok(p) => {
                transient.probes.insert(name.to_string(), (attempt, p));
            }
            Err(e) => {
                warn!(container = name, error = %e, "the container's probes cannot run; treating it as healthy");
                transient.probes.remove(name);
                return None;
            }
        }
    }
    transient.probes.get(name).map(|(_, p)| p)
}

/// Where probes and hooks of a running container reach it.
fn probe_target(
    ctx: &NodeContext,
    pod: &Pod,
    record: &PodRecord,
    pod_dir: &Path,
    name: &str,
) -> Option<ProbeTarget> {
    let entry = record
        .containers
        .get(name)
        .or_else(|| record.init_containers.get(name))?;
    let pid = containers::running_pid(pod_dir, name, entry)?;
    let pod_ip = record
        .sandbox
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap_or(&ctx.config.node_ip)
        .parse()
        .ok()?;
    let spec = pod.spec.as_ref()?;
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)?;
    Some(ProbeTarget {
        pod_ip,
        container_ports: container.ports.clone().unwrap_or_default(),
        exec_binary: ctx.config.self_binary.clone(),
        instance_dir: containers::instance_dir(pod_dir, name, entry.attempts - 1),
        pid,
    })
}

/// Runs the probes that are due, all at once, and records their results.
async fn run_due_probes(
    ctx: &NodeContext,
    events: &Recorder,
    pod: &Pod,
    record: &PodRecord,
    pod_dir: &Path,
    transient: &mut Transient,
) {
    let now = std::time::Instant::now();
    let mut runs = Vec::new();
    for (name, (_, probes)) in &transient.probes {
        let kinds = probes.due_now(now);
        if kinds.is_empty() {
            continue;
        }
        let Some(target) = probe_target(ctx, pod, record, pod_dir, name) else {
            continue;
        };
        for kind in kinds {
            if let Some(tracker) = probes.tracker(kind) {
                let probe = tracker.probe().clone();
                let target = target.clone();
                let name = name.clone();
                runs.push(async move {
                    let result = probe::run_probe(&probe, &target).await;
                    (name, kind, result)
                });
            }
        }
    }
    for (name, kind, result) in futures::future::join_all(runs).await {
        let Some((_, probes)) = transient.probes.get_mut(&name) else {
            continue;
        };
        if let Some(event) = probes.record(kind, result, now) {
            events.warning(pod, event.reason, event.message).await;
        }
    }
}

/// When the next probe of the pod is due.
fn next_probe(transient: &Transient) -> Option<std::time::Instant> {
    transient
        .probes
        .values()
        .filter_map(|(_, p)| p.next_due().map(|(_, at)| at))
        .min()
}

/// Runs a container's postStart or preStop hook, if it has one; reports a failure as the
/// kubelet does. Returns whether the hook (if any) succeeded.
async fn run_lifecycle_hook(at: Scope<'_>, name: &str, kind: HookKind, timeout: Duration) -> bool {
    let Scope {
        ctx,
        events,
        pod,
        record,
        pod_dir,
    } = at;
    let lifecycle = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == name))
        .and_then(|c| c.lifecycle.as_ref());
    let handler = match kind {
        HookKind::PostStart => lifecycle.and_then(|l| l.post_start.as_ref()),
        HookKind::PreStop => lifecycle.and_then(|l| l.pre_stop.as_ref()),
    };
    let Some(handler) = handler else {
        return true;
    };
    let Some(target) = probe_target(ctx, pod, record, pod_dir, name) else {
        return true;
    };
    match probe::run_hook(handler, &target, timeout).await {
        Ok(()) => true,
        Err(e) => {
            let (reason, _) = kind.failure_event();
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            events
                .warning(pod, reason, e.describe(handler, name, pod_name))
                .await;
            false
        }
    }
}

/// Stops a container as Kubernetes does: its preStop hook within the grace period, then
/// SIGTERM, then SIGKILL when the rest of the grace period has passed.
async fn stop_container(at: Scope<'_>, name: &str, grace: Duration) {
    let Some(entry) = at
        .record
        .containers
        .get(name)
        .or_else(|| at.record.init_containers.get(name))
    else {
        return;
    };
    let started = std::time::Instant::now();
    run_lifecycle_hook(at, name, HookKind::PreStop, grace).await;
    let left = grace.saturating_sub(started.elapsed());
    containers::kill(at.pod_dir, name, entry, left).await;
}

/// A pod as the hooks and stops of its containers need it.
#[derive(Clone, Copy)]
struct Scope<'a> {
    ctx: &'a NodeContext,
    events: &'a Recorder,
    pod: &'a Pod,
    record: &'a PodRecord,
    pod_dir: &'a Path,
}

fn insert(v: &mut PodView, init: bool, name: String, cv: ContainerView) {
    if init {
        v.init_containers.insert(name, cv);
    } else {
        v.containers.insert(name, cv);
    }
}

fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

/// How long containers of a pod that vanished from the API get between SIGTERM and SIGKILL
/// (its own grace period is no longer known).
const GONE_POD_GRACE: Duration = Duration::from_secs(2);

/// Stops every container of the pod, in parallel, each with `grace`; tells the API when the
/// pod is still there to hear it.
async fn kill_all(
    ctx: &NodeContext,
    record: &PodRecord,
    pod_dir: &Path,
    grace: Duration,
    announce: Option<(&Recorder, &Pod)>,
) {
    let mut stops: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>> =
        Vec::new();
    for (name, entry) in record
        .containers
        .iter()
        .chain(record.init_containers.iter())
    {
        if containers::running_pid(pod_dir, name, entry).is_none() {
            continue;
        }
        match announce {
            Some((events, pod)) => {
                events
                    .normal(pod, "Killing", format!("Stopping container {name}"))
                    .await;
                let at = Scope {
                    ctx,
                    events,
                    pod,
                    record,
                    pod_dir,
                };
                stops.push(Box::pin(stop_container(at, name, grace)));
            }
            None => stops.push(Box::pin(containers::kill(pod_dir, name, entry, grace))),
        }
    }
    futures::future::join_all(stops).await;
}

/// Removes everything of the pod from the node: sandbox, cgroups, volumes, files.
async fn remove_all(ctx: &NodeContext, record: &mut PodRecord, pod_dir: &Path) -> Result<()> {
    sandbox::destroy(ctx, record).await?;
    ctx.cgroups.remove_pod(&record.uid)?;
    skiff_runtime::volumes::teardown(pod_dir)?;
    match std::fs::remove_dir_all(pod_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pod a worker looks after, as the node keeps it.
struct PodState<'a> {
    record: &'a mut PodRecord,
    pod_dir: &'a Path,
    transient: &'a mut Transient,
}

async fn execute(
    ctx: &NodeContext,
    events: &Recorder,
    pod: &Pod,
    state: PodState<'_>,
    current: &PodView,
    action: Action,
) -> Result<()> {
    let PodState {
        record,
        pod_dir,
        transient,
    } = state;
    match action {
        Action::CreateSandbox => {
            if record.sandbox.is_some() {
                // The sandbox died: its containers go with it, as in the kubelet.
                kill_all(ctx, record, pod_dir, grace_period(pod), Some((events, pod))).await;
                events
                    .normal(
                        pod,
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.".into(),
                    )
                    .await;
            }
            sandbox::create(ctx, pod, record, pod_dir).await?;
            record.last_pod_ip = record.sandbox.as_ref().and_then(|s| s.pod_ip.clone());
            record.save(pod_dir)?;
        }
        Action::StartContainer { name, init } => {
            let views = if init {
                &current.init_containers
            } else {
                &current.containers
            };
            if let Some(Instance::Exited(e)) = views.get(&name).and_then(|v| v.current.clone()) {
                record.container_mut(&name, init).last_exit = Some(to_record(&e));
            }
            match containers::start(ctx, pod, record, pod_dir, &name, init, events).await {
                Ok(()) => {
                    transient.waiting.remove(&name);
                    // postStart runs right after the start; the container is not Running
                    // for Kubernetes until it returns, and a failure kills it.
                    let at = Scope {
                        ctx,
                        events,
                        pod,
                        record,
                        pod_dir,
                    };
                    if !init
                        && !run_lifecycle_hook(at, &name, HookKind::PostStart, POST_START_TIMEOUT)
                            .await
                    {
                        stop_container(at, &name, grace_period(pod)).await;
                    }
                }
                Err(failure) => {
                    warn!(container = %name, reason = failure.reason, "{}", failure.message);
                    let entry = record.container_mut(&name, init);
                    let delay = machine::backoff_delay(entry.backoff_restarts);
                    entry.backoff_restarts += 1;
                    entry.backoff_until = Some(
                        (Timestamp::now() + SignedDuration::try_from(delay).unwrap_or_default())
                            .to_string(),
                    );
                    record.save(pod_dir)?;
                    transient
                        .waiting
                        .insert(name, (failure.reason.to_string(), failure.message));
                }
            }
        }
        Action::KillContainer { name, reason } => {
            let (kind, grace) = match transient.probes.get(&name).and_then(|(_, p)| {
                let (kind, _) = p.unhealthy()?;
                Some((kind, p.termination_grace_period(kind)))
            }) {
                Some((kind, grace)) => (Some(kind), grace.unwrap_or_else(|| grace_period(pod))),
                None => (None, grace_period(pod)),
            };
            let message = match kind {
                Some(kind) => probe::restart_message(kind, &name),
                None => format!("Container {name} is {reason}, will be restarted"),
            };
            events.normal(pod, "Killing", message).await;
            let at = Scope {
                ctx,
                events,
                pod,
                record,
                pod_dir,
            };
            stop_container(at, &name, grace).await;
            transient.probes.remove(&name);
        }
        Action::KillPod => {
            kill_all(ctx, record, pod_dir, grace_period(pod), Some((events, pod))).await;
            sandbox::destroy(ctx, record).await?;
            record.save(pod_dir)?;
        }
    }
    Ok(())
}

/// Rewrites the pod's config map, secret and downward API volumes whose objects changed
/// (atomically: containers see the old files or the new ones, never a mix).
async fn refresh_volumes(
    ctx: &NodeContext,
    pod: &Pod,
    pod_dir: &Path,
    events: &Recorder,
    last_error: &mut Option<String>,
) {
    let has_data_volumes = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
        });
    if !has_data_volumes {
        return;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let objects = ctx.cache.cached_for(ns);
    let sources = skiff_runtime::volumes::VolumeSources {
        config_maps: objects.config_maps,
        secrets: objects.secrets,
        node_name: ctx.config.node_name.clone(),
        ..Default::default()
    };
    match skiff_runtime::volumes::update(pod, pod_dir, &sources) {
        Ok(updated) if !updated.is_empty() => {
            tracing::debug!(pod = ?pod.metadata.name, ?updated, "volumes brought up to date");
        }
        Ok(_) => {}
        Err(e) => {
            let message = format!("updating volumes: {e}");
            if last_error.as_deref() != Some(message.as_str()) {
                events.warning(pod, "FailedMount", message.clone()).await;
                *last_error = Some(message);
            }
        }
    }
}

async fn report(ctx: &NodeContext, pod: &Pod, status: &PodStatus) -> Result<()> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Confirms a deletion the node has carried out: deletes the object for good.
async fn confirm_deletion(ctx: &NodeContext, pod: &Pod) -> Result<()> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pod's task. `pods` carries the latest object, `None` once the API no longer has it.
pub async fn run(
    ctx: Arc<NodeContext>,
    uid: String,
    mut pods: watch::Receiver<Option<Pod>>,
    events: Recorder,
) {
    let pod_dir = ctx.config.pod_dir(&uid);
    let mut record = match PodRecord::load(&pod_dir) {
        Ok(Some(r)) => r,
        Ok(None) => PodRecord {
            uid: uid.clone(),
            first_seen: Timestamp::now().to_string(),
            ..Default::default()
        },
        Err(e) => {
            warn!(uid, error = %format!("{e:#}"), "unreadable pod record; starting afresh");
            PodRecord {
                uid: uid.clone(),
                first_seen: Timestamp::now().to_string(),
                ..Default::default()
            }
        }
    };
    let mut transient = Transient::default();
    let mut last_volume_refresh = std::time::Instant::now();
    loop {
        let latest = pods.borrow_and_update().clone();
        let Some(pod) = latest else {
            // Gone from the API (deleted while we were away, or force-deleted).
            info!(uid, pod = %format!("{}/{}", record.namespace, record.name), "pod is gone from the API; removing it");
            kill_all(&ctx, &record, &pod_dir, GONE_POD_GRACE, None).await;
            if let Err(e) = remove_all(&ctx, &mut record, &pod_dir).await {
                warn!(uid, error = %format!("{e:#}"), "removing a deleted pod");
            } else {
                info!(uid, pod = %format!("{}/{}", record.namespace, record.name), "pod removed from the node");
            }
            return;
        };
        record.namespace = pod.metadata.namespace.clone().unwrap_or_default();
        record.name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        if record.qos.is_empty() {
            record.qos = skiff_api::defaults::qos_class(&spec).to_string();
        }
        run_due_probes(&ctx, &events, &pod, &record, &pod_dir, &mut transient).await;
        let current = view(&ctx, &pod, &mut record, &pod_dir, &mut transient);
        for (reason, message) in std::mem::take(&mut transient.pending_events) {
            events.warning(&pod, reason, message).await;
        }
        let plan = machine::plan(&spec, &current, Timestamp::now());
        for action in plan.actions {
            let state = PodState {
                record: &mut record,
                pod_dir: &pod_dir,
                transient: &mut transient,
            };
            if let Err(e) = execute(&ctx, &events, &pod, state, &current, action.clone()).await {
                let message = format!("{e:#}");
                warn!(uid, ?action, error = %message, "pod action failed");
                // Retried on the next pass; the event is posted once per distinct failure.
                if transient.last_failure.as_deref() != Some(message.as_str()) {
                    let reason = match action {
                        Action::CreateSandbox => "FailedCreatePodSandBox",
                        Action::KillPod => "FailedKillPod",
                        _ => "Failed",
                    };
                    events.warning(&pod, reason, message.clone()).await;
                    transient.last_failure = Some(message);
                }
            }
        }
        let after = view(&ctx, &pod, &mut record, &pod_dir, &mut transient);
        if pod.metadata.deletion_timestamp.is_some() && !after.sandbox_ready {
            if let Err(e) = confirm_deletion(&ctx, &pod).await {
                warn!(uid, error = %format!("{e:#}"), "confirming pod deletion");
            }
        } else {
            let status = machine::status(
                &spec,
                &after,
                transient.last_status.as_ref(),
                Timestamp::now(),
            );
            if transient.last_status.as_ref() != Some(&status) {
                match report(&ctx, &pod, &status).await {
                    Ok(()) => transient.last_status = Some(status),
                    Err(e) => warn!(uid, error = %format!("{e:#}"), "reporting pod status"),
                }
            }
        }
        if after.sandbox_ready && last_volume_refresh.elapsed() >= VOLUME_REFRESH {
            refresh_volumes(
                &ctx,
                &pod,
                &pod_dir,
                &events,
                &mut transient.last_volume_error,
            )
            .await;
            last_volume_refresh = std::time::Instant::now();
        }
        let wait = plan
            .wake_at
            .map(|t| t.duration_since(Timestamp::now()))
            .and_then(|d| Duration::try_from(d).ok())
            .map_or(RESYNC, |d| d.min(RESYNC));
        let wait = match next_probe(&transient) {
            Some(at) => wait
                .min(at.saturating_duration_since(std::time::Instant::now()))
                .max(MIN_WAIT),
            None => wait,
        };
        tokio::select! {
            changed = pods.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
