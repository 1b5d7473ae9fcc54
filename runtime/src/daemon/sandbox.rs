//! The pod sandbox: `skiff-pause` in the pod's new namespaces, the namespaces bind-mounted
//! so they outlive any process, the pod's cgroup, its veth and address, its /etc files.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use nix::sched::CloneFlags;
use skiff_runtime::network::{self, NamespaceKind};
use tracing::{info, warn};

use super::context::NodeContext;
use skiff_runtime::container::{process_alive, process_start_time};

use super::record::{PodRecord, SandboxRecord};

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

fn host_ipc(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_ipc) == Some(true)
}

/// `shareProcessNamespace`: the pod's containers share one PID namespace, whose init is a
/// second pause (it reaps what the containers orphan, as Kubernetes' pause does).
pub fn shares_process_namespace(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.share_process_namespace) == Some(true)
        && spec.and_then(|s| s.host_pid) != Some(true)
}

/// The pod's hostname: `spec.hostname`, else its name, cut to 63 characters.
pub fn pod_hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    name.chars().take(63).collect()
}

/// Writes "0" to each file with raw syscalls: runs between fork and exec, so it may only
/// make async-signal-safe calls and must not allocate.
fn join_cgroups(procs: &[CString]) -> std::io::Result<()> {
    for file in procs {
        // SAFETY: plain syscalls on a NUL-terminated path prepared before the fork.
        let fd = unsafe { libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        unsafe { libc::close(fd) };
        if written != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts pause for the pod and returns its pid.
fn start_pause(ctx: &NodeContext, pod: &Pod, procs_files: &[PathBuf]) -> Result<i32> {
    let mut flags = CloneFlags::CLONE_NEWUTS;
    if !host_network(pod) {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if !host_ipc(pod) {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    let share_pid = shares_process_namespace(pod);
    if share_pid {
        // Affects pause's children only: the pause it starts becomes PID 1 there.
        flags |= CloneFlags::CLONE_NEWPID;
    }
    let hostname = pod_hostname(pod).into_bytes();
    let set_hostname = !host_network(pod);
    let procs: Vec<CString> = procs_files
        .iter()
        .map(|p| CString::new(p.as_os_str().as_encoded_bytes()))
        .collect::<Result<_, _>>()
        .context("cgroup path holds a NUL byte")?;
    let mut cmd = Command::new(&ctx.config.pause_binary);
    if share_pid {
        cmd.arg("--").arg(&ctx.config.pause_binary);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure only makes async-signal-safe syscalls (setsid, open/write/close,
    // unshare, sethostname) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            join_cgroups(&procs)?;
            if libc::unshare(flags.bits()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if set_hostname && libc::sethostname(hostname.as_ptr().cast(), hostname.len()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", ctx.config.pause_binary.display()))?;
    // pause is reaped by whoever adopts it when the daemon is gone; while the daemon runs,
    // a thread waits for it so it leaves no zombie.
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(pid)
}

/// The first child of `pid` (the PID-namespace pause), waiting briefly for it to appear.
fn first_child(pid: i32) -> Result<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    for _ in 0..200 {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        if let Some(child) = text.split_whitespace().next().and_then(|c| c.parse().ok()) {
            return Ok(child);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    bail!("pause {pid} did not start the PID namespace's pause")
}

/// Where the pod's namespace of `kind` is bind-mounted.
pub fn namespace_path(ctx: &NodeContext, uid: &str, kind: &str) -> PathBuf {
    if kind == "net" {
        ctx.config.run_dir.join("netns").join(uid)
    } else {
        ctx.config.run_dir.join("ns").join(uid).join(kind)
    }
}

/// Whether the recorded sandbox still stands (pause alive).
pub fn sandbox_alive(sandbox: &SandboxRecord) -> bool {
    process_alive(sandbox.pause_pid, sandbox.pause_start_time)
}

/// Creates the sandbox: cgroup, pause, namespaces, network, pod files. Records it.
pub async fn create(
    ctx: &NodeContext,
    pod: &Pod,
    record: &mut PodRecord,
    pod_dir: &Path,
) -> Result<()> {
    let uid = record.uid.clone();
    // A sandbox left from before (pause died) is cleared first.
    if record.sandbox.is_some() {
        destroy(ctx, record).await?;
    }
    let spec = pod.spec.as_ref().context("pod has no spec")?;
    let qos: skiff_runtime::cgroups::QosClass = skiff_api::defaults::qos_class(spec).parse()?;
    let resources = skiff_runtime::cgroups::Resources::for_pod(spec)?;
    let pod_cgroup = ctx.cgroups.create_pod(&uid, qos, &resources)?;
    record.qos = qos.as_str().to_string();

    let sandbox_cgroup = ctx.cgroups.create_container(
        &pod_cgroup,
        skiff_runtime::cgroups::SANDBOX_CGROUP,
        &skiff_runtime::cgroups::Resources::default(),
    )?;
    let pid = start_pause(ctx, pod, &sandbox_cgroup.procs_files())?;
    let start_time = process_start_time(pid).context("pause exited at once")?;
    let mut namespaces = BTreeMap::new();
    let mut kinds = vec![("uts", NamespaceKind::Uts)];
    if !host_network(pod) {
        kinds.push(("net", NamespaceKind::Net));
    }
    if !host_ipc(pod) {
        kinds.push(("ipc", NamespaceKind::Ipc));
    }
    let pid_init = if shares_process_namespace(pod) {
        Some(first_child(pid)?)
    } else {
        None
    };
    let pid_init_start = match pid_init {
        Some(init) => {
            Some(process_start_time(init).context("the PID namespace's pause exited at once")?)
        }
        None => None,
    };
    let mut sandbox = SandboxRecord {
        pause_pid: pid,
        pause_start_time: start_time,
        pid_namespace_init: pid_init,
        pid_namespace_init_start_time: pid_init_start,
        pod_ip: None,
        host_veth: None,
        namespaces: BTreeMap::new(),
        created_at: jiff::Timestamp::now().to_string(),
    };
    // Record pause before anything else, so a crash from here on is cleaned up on restart.
    record.sandbox = Some(sandbox.clone());
    record.save(pod_dir)?;
    for (name, kind) in kinds {
        let target = namespace_path(ctx, &uid, name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        network::bind_namespace(pid as u32, kind, &target)?;
        namespaces.insert(name.to_string(), target);
    }
    if let Some(init) = pid_init {
        let target = namespace_path(ctx, &uid, "pid");
        network::bind_namespace(init as u32, NamespaceKind::Pid, &target)?;
        namespaces.insert("pid".to_string(), target);
    }
    sandbox.namespaces = namespaces;
    record.sandbox = Some(sandbox.clone());
    record.save(pod_dir)?;

    let pod_ip = if host_network(pod) {
        ctx.config.node_ip.clone()
    } else {
        let ip = ctx.ipam.allocate(&uid)?;
        let veth = network::host_veth_name(&uid);
        sandbox.pod_ip = Some(ip.to_string());
        sandbox.host_veth = Some(veth.clone());
        record.sandbox = Some(sandbox.clone());
        record.save(pod_dir)?;
        let netns = &sandbox.namespaces["net"];
        network::setup_pod(&ctx.netlink, &ctx.pod_network, netns, ip, &veth).await?;
        ip.to_string()
    };
    sandbox.pod_ip = Some(pod_ip.clone());
    record.sandbox = Some(sandbox);
    record.save(pod_dir)?;

    let ip: std::net::IpAddr = pod_ip.parse().context("pod IP")?;
    network::write_pod_files(&pod_dir.join("etc"), pod, &[ip], &ctx.pod_files)?;
    info!(pod = %format!("{}/{}", record.namespace, record.name), ip = %pod_ip, pause = pid, "sandbox ready");
    Ok(())
}

/// Stops pause and removes the sandbox's namespaces, network and address. Idempotent.
pub async fn destroy(ctx: &NodeContext, record: &mut PodRecord) -> Result<()> {
    let Some(sandbox) = record.sandbox.clone() else {
        return Ok(());
    };
    // The PID namespace's init first (its end takes every process of the namespace), each
    // only while it is still the process recorded.
    let holders = sandbox
        .pid_namespace_init
        .zip(sandbox.pid_namespace_init_start_time)
        .into_iter()
        .chain([(sandbox.pause_pid, sandbox.pause_start_time)]);
    for (pid, start_time) in holders {
        if process_alive(pid, start_time) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Some(veth) = &sandbox.host_veth {
        if let Err(e) = network::teardown_pod(&ctx.netlink, veth).await {
            warn!(veth, error = %e, "removing the pod's veth");
        }
    }
    for path in sandbox.namespaces.values() {
        network::unbind_namespace(path)?;
    }
    let ns_dir = ctx.config.run_dir.join("ns").join(&record.uid);
    let _ = std::fs::remove_dir(&ns_dir);
    if sandbox.host_veth.is_some() {
        ctx.ipam.release(&record.uid)?;
    }
    record.sandbox = None;
    Ok(())
}

/// Checks the daemon can start pause at all (a clear error at start-up, not per pod).
pub fn check_pause(binary: &Path) -> Result<()> {
    if !binary.is_file() {
        bail!(
            "the pause binary {} does not exist (build it with `cargo build -p skiff-pause`, or pass --pause-binary)",
            binary.display()
        );
    }
    Ok(())
}
