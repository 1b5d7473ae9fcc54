//! Containers of a pod: from the pod spec to a running shim (image, env, user, volumes,
//! cgroup, OCI bundle), what an instance is doing now, and stopping it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use skiff_runtime::cgroups::{self, QosClass, Resources};
use skiff_runtime::container::{
    process_alive, read_exit_state, read_shim_state, ProcStat, ShimReply,
};
use skiff_runtime::image::{self, ImageRecord};
use skiff_runtime::pod::machine::{Exit, Instance};
use skiff_runtime::spec::{
    self, ContainerPlan, MountKind, MountPlan, OverlayDirs, PidNamespace, PodNamespaces,
};
use skiff_runtime::volumes;
use tokio::io::AsyncBufReadExt;
use tracing::{debug, info};

use super::context::NodeContext;
use super::events::Recorder;
use super::record::{ContainerRecord, PodRecord};
use super::sandbox::pod_hostname;

/// A start that failed in a way the pod's status should tell (a waiting reason).
#[derive(Debug)]
pub struct StartFailure {
    pub reason: &'static str,
    pub message: String,
}

impl StartFailure {
    fn new(reason: &'static str, message: impl std::fmt::Display) -> Self {
        StartFailure {
            reason,
            message: message.to_string(),
        }
    }
}

/// Where an instance of a container lives: `{pod}/containers/{name}/{attempt}`.
pub fn instance_dir(pod_dir: &Path, name: &str, attempt: i32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(name)
        .join(attempt.to_string())
}

/// The instance's log file: `{pod}/logs/{name}/{attempt}.log`.
pub fn log_path(pod_dir: &Path, name: &str, attempt: i32) -> PathBuf {
    pod_dir
        .join("logs")
        .join(name)
        .join(format!("{attempt}.log"))
}

fn find_container<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    if init {
        spec.init_containers
            .as_ref()?
            .iter()
            .find(|c| c.name == name)
    } else {
        spec.containers.iter().find(|c| c.name == name)
    }
}

/// Ensures the container's image is in the store, pulling it as the pull policy says.
async fn ensure_image(
    ctx: &NodeContext,
    pod: &Pod,
    container: &Container,
    events: &Recorder,
) -> Result<ImageRecord, StartFailure> {
    let reference = container.image.clone().unwrap_or_default();
    let present = ctx
        .images
        .resolve(&reference)
        .map_err(|e| StartFailure::new("InvalidImageName", e))?;
    let pull = image::needs_pull(
        container.image_pull_policy.as_deref(),
        &reference,
        present.is_some(),
    )
    .map_err(|e| match e {
        image::ImageError::NeverPull { .. } => StartFailure::new("ErrImageNeverPull", e),
        other => StartFailure::new("InvalidImageName", other),
    })?;
    if !pull {
        if let Some(record) = present {
            return Ok(record);
        }
    }
    events
        .normal(pod, "Pulling", format!("Pulling image \"{reference}\""))
        .await;
    let mut options = ctx.pull_options.clone();
    if let Some(creds) = pull_secret_credentials(ctx, pod, &reference).await {
        options.credentials = creds;
    }
    let started = std::time::Instant::now();
    match ctx.images.pull(&reference, &options, |_| {}).await {
        Ok(record) => {
            events
                .normal(
                    pod,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{reference}\" in {:.3}s. Image size: {} bytes.",
                        started.elapsed().as_secs_f64(),
                        record.size
                    ),
                )
                .await;
            Ok(record)
        }
        // A registry that cannot be reached is no reason to refuse a cached image.
        Err(e) => match present {
            Some(record) => Ok(record),
            None => {
                events
                    .warning(
                        pod,
                        "Failed",
                        format!("Failed to pull image \"{reference}\": {e}"),
                    )
                    .await;
                Err(StartFailure::new("ErrImagePull", e))
            }
        },
    }
}

/// Credentials from the pod's `imagePullSecrets` for the image's registry.
async fn pull_secret_credentials(
    ctx: &NodeContext,
    pod: &Pod,
    reference: &str,
) -> Option<image::RegistryCredentials> {
    let names = pod.spec.as_ref()?.image_pull_secrets.as_ref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let registry = image::ImageReference::parse(reference)
        .ok()?
        .registry()
        .to_string();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    for name in names.iter().map(|r| r.name.clone()) {
        let Ok(Some(secret)) = secrets.get_opt(&name).await else {
            continue;
        };
        let Some(data) = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
        else {
            continue;
        };
        if let Ok(Some((username, password))) = image::auth_from_docker_config(&data.0, &registry) {
            return Some(image::RegistryCredentials::Basic { username, password });
        }
    }
    None
}

/// The first of the layers (top first) that has `relative`, read as text.
fn read_from_layers(layers: &[PathBuf], relative: &str) -> Option<String> {
    layers
        .iter()
        .rev()
        .map(|dir| dir.join(relative))
        .find(|p| p.symlink_metadata().is_ok())
        .and_then(|p| std::fs::read_to_string(p).ok())
}

/// Starts the next instance of a container. On success the record counts it.
pub async fn start(
    ctx: &NodeContext,
    pod: &Pod,
    record: &mut PodRecord,
    pod_dir: &Path,
    name: &str,
    init: bool,
    events: &Recorder,
) -> Result<(), StartFailure> {
    let config_error =
        |e: &dyn std::fmt::Display| StartFailure::new("CreateContainerConfigError", e);
    let create_error = |e: &dyn std::fmt::Display| StartFailure::new("CreateContainerError", e);
    let container = find_container(pod, name, init)
        .ok_or_else(|| create_error(&format!("no container {name} in the pod")))?
        .clone();
    let image = ensure_image(ctx, pod, &container, events).await?;
    let sandbox = record
        .sandbox
        .clone()
        .ok_or_else(|| create_error(&"the pod has no sandbox"))?;
    let objects = ctx
        .cache
        .for_pod(pod)
        .await
        .map_err(|e| config_error(&format!("{e:#}")))?;
    let pod_ip = sandbox.pod_ip.clone().unwrap_or_default();
    let env_sources = spec::EnvSources {
        config_maps: objects.config_maps.clone(),
        secrets: objects.secrets.clone(),
        services: objects.services.clone(),
        node_name: ctx.config.node_name.clone(),
        node_ip: ctx.config.node_ip.clone(),
        pod_ips: vec![pod_ip],
        node_allocatable_cpu_milli: ctx.config.node_allocatable_cpu_milli,
        node_allocatable_memory: ctx.config.node_allocatable_memory,
        node_allocatable_ephemeral_storage: 0,
    };
    let vars = spec::container_env(pod, &container, &env_sources).map_err(|e| config_error(&e))?;
    let image_config = image.config.config().clone().unwrap_or_default();
    let entrypoint = image_config.entrypoint().clone().unwrap_or_default();
    let cmd = image_config.cmd().clone().unwrap_or_default();
    let hostname = pod_hostname(pod);
    let args =
        spec::process_args(&container, &entrypoint, &cmd, &vars).map_err(|e| config_error(&e))?;
    let env = spec::process_env(
        image_config.env().as_deref().unwrap_or(&[]),
        &vars,
        &hostname,
    );
    let cwd = spec::working_dir(&container, image_config.working_dir().as_deref());
    let image_user = image_config.user().clone().unwrap_or_default();
    let passwd = read_from_layers(&image.layer_dirs, "etc/passwd");
    let group = read_from_layers(&image.layer_dirs, "etc/group");
    let user = spec::user::resolve_user_from(
        pod,
        &container,
        &image_user,
        passwd.as_deref(),
        group.as_deref(),
    )
    .map_err(|e| config_error(&e))?;

    let volume_sources = ctx
        .cache
        .volume_sources(pod, &objects, &ctx.config.node_name)
        .await
        .map_err(|e| create_error(&format!("{e:#}")))?;
    let prepared = volumes::prepare(pod, pod_dir, &volume_sources).map_err(|e| create_error(&e))?;
    let env_map: BTreeMap<String, String> = vars.iter().cloned().collect();
    let volume_mounts = volumes::container_mounts(pod, &container, &prepared, pod_dir, &env_map)
        .map_err(|e| create_error(&e))?;

    let qos: QosClass = record.qos.parse().map_err(|e| create_error(&e))?;
    let pod_cgroup = ctx
        .cgroups
        .pod_cgroup(&record.uid, qos)
        .map_err(|e| create_error(&e))?;
    let resources = Resources::for_container(&container).map_err(|e| create_error(&e))?;
    let cgroup = ctx
        .cgroups
        .create_container(&pod_cgroup, name, &resources)
        .map_err(|e| create_error(&e))?;
    let oom_before = cgroup.cgroup().oom_kill_count().unwrap_or(0);
    let memory_request = cgroups::memory_request_bytes(&container).unwrap_or(0);
    let oom_score_adj =
        cgroups::oom_score_adj(qos, memory_request, ctx.config.node_memory_capacity);

    let attempt = record
        .container(name, init)
        .map(|c| c.attempts)
        .unwrap_or(0);
    let dir = instance_dir(pod_dir, name, attempt);
    let rootfs = dir.join("rootfs");
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(d)
            .map_err(|e| create_error(&format!("creating {}: {e}", d.display())))?;
    }
    let termination_log = dir.join("termination-log");
    std::fs::write(&termination_log, b"").map_err(|e| create_error(&e))?;
    let shm = pod_dir.join("shm");
    std::fs::create_dir_all(&shm).map_err(|e| create_error(&e))?;

    let etc = pod_dir.join("etc");
    let mut mounts = vec![
        bind("/etc/hosts", etc.join("hosts"), false),
        bind("/etc/hostname", etc.join("hostname"), false),
        bind("/etc/resolv.conf", etc.join("resolv.conf"), false),
    ];
    let message_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    mounts.push(bind(&message_path, termination_log.clone(), false));
    for m in volume_mounts {
        mounts.push(bind(&m.destination, m.source, m.read_only));
    }

    let spec_pod = pod.spec.as_ref();
    let pid = if spec_pod.and_then(|s| s.host_pid) == Some(true) {
        PidNamespace::Host
    } else if let Some(shared) = sandbox.namespaces.get("pid") {
        PidNamespace::Join(shared.clone())
    } else {
        PidNamespace::Own
    };
    let plan = ContainerPlan {
        pod: pod.clone(),
        container: container.clone(),
        args,
        env,
        cwd,
        user,
        rootfs: rootfs.clone(),
        overlay: OverlayDirs {
            lowerdir: image
                .layer_dirs
                .iter()
                .rev()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
            upperdir: upper,
            workdir: work,
        },
        namespaces: PodNamespaces {
            net: sandbox.namespaces.get("net").cloned(),
            ipc: sandbox.namespaces.get("ipc").cloned(),
            uts: sandbox.namespaces.get("uts").cloned(),
            pid,
        },
        hostname,
        cgroups_path: cgroup.relative_path(),
        oom_score_adj,
        mounts,
        shm_source: shm,
    };
    let oci = spec::build_spec(&plan).map_err(|e| create_error(&e))?;
    let config_json = dir.join("config.json");
    oci.save(&config_json)
        .map_err(|e| create_error(&format!("writing {}: {e}", config_json.display())))?;

    let log = log_path(pod_dir, name, attempt);
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| create_error(&e))?;
    }
    {
        let entry = record.container_mut(name, init);
        entry.attempts = attempt + 1;
        entry.image = container.image.clone().unwrap_or_default();
        entry.image_id = image
            .repo_digests()
            .into_iter()
            .next()
            .unwrap_or_else(|| image.image_id());
        entry.oom_kills_before = oom_before;
    }
    record
        .save(pod_dir)
        .map_err(|e| create_error(&format!("{e:#}")))?;
    events
        .normal(pod, "Created", format!("Created container {name}"))
        .await;
    let reply = spawn_shim(ctx, &dir, &format!("{}_{name}_{attempt}", record.uid), &log)
        .await
        .map_err(|e| create_error(&format!("{e:#}")))?;
    match reply {
        ShimReply::Started { pid } => {
            debug!(container = name, pid, "container started");
            events
                .normal(pod, "Started", format!("Started container {name}"))
                .await;
            prune_old_instances(pod_dir, name, attempt);
            Ok(())
        }
        ShimReply::Failed { error } => {
            events
                .warning(pod, "Failed", format!("Error: {error}"))
                .await;
            Err(StartFailure::new("RunContainerError", error))
        }
    }
}

fn bind(destination: &str, source: PathBuf, read_only: bool) -> MountPlan {
    MountPlan {
        destination: PathBuf::from(destination),
        source,
        kind: MountKind::Bind,
        read_only,
    }
}

/// Only the current and the previous instance are kept (for `logs --previous`).
fn prune_old_instances(pod_dir: &Path, name: &str, attempt: i32) {
    for old in 0..attempt.saturating_sub(1) {
        let _ = std::fs::remove_dir_all(instance_dir(pod_dir, name, old));
        let log = log_path(pod_dir, name, old);
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(log.with_extension("log.1"));
    }
}

/// Starts the shim for a bundle and waits for its one-line answer.
async fn spawn_shim(ctx: &NodeContext, bundle: &Path, id: &str, log: &Path) -> Result<ShimReply> {
    let mut child = tokio::process::Command::new(&ctx.config.self_binary)
        .arg("shim")
        .arg("--bundle")
        .arg(bundle)
        .arg("--id")
        .arg(id)
        .arg("--state-dir")
        .arg(bundle)
        .arg("--log")
        .arg(log)
        .arg("--log-max-size")
        .arg(ctx.config.log_max_size.to_string())
        .arg("--log-max-files")
        .arg(ctx.config.log_max_files.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(false)
        .spawn()
        .context("starting the shim")?;
    let stdout = child.stdout.take().context("shim stdout")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .context("reading the shim's answer")?;
    // The shim outlives this call; something must reap it while the daemon runs.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    if line.trim().is_empty() {
        anyhow::bail!(
            "the shim exited without answering (see {}/shim.log)",
            bundle.display()
        );
    }
    serde_json::from_str(line.trim()).with_context(|| format!("shim answered {line:?}"))
}

fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// Up to 4 KiB of the termination message file (Kubernetes' limit per container).
fn termination_message(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join("termination-log")).ok()?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
    (!text.is_empty()).then_some(text)
}

/// What the latest instance of a container is doing, from its state files.
pub fn observe(
    ctx: &NodeContext,
    record: &PodRecord,
    pod_dir: &Path,
    name: &str,
    entry: &ContainerRecord,
) -> Option<Instance> {
    if entry.attempts == 0 {
        return None;
    }
    let dir = instance_dir(pod_dir, name, entry.attempts - 1);
    let shim = read_shim_state(&dir).ok().flatten();
    let started_at = shim.as_ref().and_then(|s| parse_time(&s.started_at));
    if let Ok(Some(exit)) = read_exit_state(&dir) {
        let oom = exit.signal == Some(libc::SIGKILL) && oom_killed(ctx, record, name, entry);
        let reason = if oom {
            "OOMKilled".to_string()
        } else {
            Exit::reason_for(exit.exit_code).to_string()
        };
        return Some(Instance::Exited(Exit {
            exit_code: exit.exit_code,
            reason,
            message: termination_message(&dir),
            started_at,
            finished_at: parse_time(&exit.finished_at).unwrap_or_else(Timestamp::now),
        }));
    }
    match shim {
        Some(s) if process_alive(s.pid, s.pid_start_time) => Some(Instance::Running {
            started_at: started_at.unwrap_or_else(Timestamp::now),
        }),
        // The shim writes exit.json right after the container ends; give it a moment.
        Some(s) if shim_alive(s.shim_pid) => Some(Instance::Running {
            started_at: started_at.unwrap_or_else(Timestamp::now),
        }),
        Some(_) => Some(Instance::Exited(Exit {
            exit_code: 137,
            reason: "Error".into(),
            message: Some("the container's shim ended without recording an exit status".into()),
            started_at,
            finished_at: Timestamp::now(),
        })),
        None => Some(Instance::Exited(Exit {
            exit_code: 128,
            reason: "ContainerCannotRun".into(),
            message: Some("the container did not start".into()),
            started_at: None,
            finished_at: Timestamp::now(),
        })),
    }
}

fn shim_alive(pid: i32) -> bool {
    ProcStat::read(pid).is_some_and(|s| s.running())
}

fn oom_killed(ctx: &NodeContext, record: &PodRecord, name: &str, entry: &ContainerRecord) -> bool {
    let Ok(qos) = record.qos.parse::<QosClass>() else {
        return false;
    };
    let Ok(pod_cgroup) = ctx.cgroups.pod_cgroup(&record.uid, qos) else {
        return false;
    };
    let Ok(cg) = ctx.cgroups.container_cgroup(&pod_cgroup, name) else {
        return false;
    };
    cg.cgroup().oom_kill_count().unwrap_or(0) > entry.oom_kills_before
}

/// The running instance's pid, if it runs.
pub fn running_pid(pod_dir: &Path, name: &str, entry: &ContainerRecord) -> Option<i32> {
    if entry.attempts == 0 {
        return None;
    }
    let dir = instance_dir(pod_dir, name, entry.attempts - 1);
    if read_exit_state(&dir).ok().flatten().is_some() {
        return None;
    }
    let shim = read_shim_state(&dir).ok().flatten()?;
    process_alive(shim.pid, shim.pid_start_time).then_some(shim.pid)
}

/// Stops a container: SIGTERM, then SIGKILL once `grace` has passed. Returns once it has
/// exited (or could not be found).
pub async fn kill(pod_dir: &Path, name: &str, entry: &ContainerRecord, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some(pid) = running_pid(pod_dir, name, entry) else {
        return;
    };
    let signal = if grace.is_zero() {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    let _ = kill(Pid::from_raw(pid), signal);
    let deadline = tokio::time::Instant::now() + grace;
    let dir = instance_dir(pod_dir, name, entry.attempts - 1);
    let mut killed = signal == Signal::SIGKILL;
    loop {
        if read_exit_state(&dir).ok().flatten().is_some()
            || running_pid(pod_dir, name, entry).is_none()
        {
            break;
        }
        if !killed && tokio::time::Instant::now() >= deadline {
            info!(container = name, pid, "grace period over: SIGKILL");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if killed && tokio::time::Instant::now() >= deadline + Duration::from_secs(10) {
            break;
        }
    }
}
