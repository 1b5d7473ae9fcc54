//! The OCI runtime spec (`config.json`) of one container, from the plan the daemon made.
//!
//! What goes in, in the order the executor applies it:
//! - `root`: the assembled root filesystem path, read-only for `readOnlyRootFilesystem`;
//!   the overlay layers travel as annotations ([`ANNOTATION_LOWERDIR`] …) that skiff's
//!   executor turns into the overlayfs mount.
//! - `mounts`: `/proc`, `/dev` (tmpfs), `/dev/pts`, `/dev/mqueue`, `/sys` (read-only unless
//!   privileged), the pod's shared `/dev/shm`, then the
//!   daemon's mounts (volumes, `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`,
//!   `/dev/termination-log`) ordered by depth so that a mount never hides a deeper one. A
//!   daemon mount at the destination of a standard one replaces it.
//! - `linux.namespaces`: the pod sandbox's net, IPC and UTS namespaces joined by path (left
//!   out, that is the host's, for `hostNetwork` / `hostIPC`), a new mount namespace, and a
//!   PID namespace that is new, the pod's shared one, or the host's.
//! - masked and read-only paths of Kubernetes' default `procMount` (none for privileged
//!   containers and for `procMount: Unmasked`), sysctls of the pod, the six standard
//!   device nodes, the cgroups path.
//! - `process`: argv, environment, working directory, user, capabilities ([`super::caps`]),
//!   `noNewPrivileges` for `allowPrivilegeEscalation: false`, `RLIMIT_NOFILE` 1048576,
//!   `oomScoreAdj`; no terminal (`tty: true` runs without a console, which the executor
//!   does not provide yet).
//!
//! Not in the spec: `/sys/fs/cgroup` (without a cgroup namespace it would show the node's
//! whole tree; a namespaced view comes with cgroup v2 hosts), cgroup resources and device cgroup rules (the cgroups module applies
//! them), seccomp and AppArmor profiles, mount propagation other than private, the host's
//! devices for privileged containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceType, LinuxNamespace, LinuxNamespaceType, Mount, PosixRlimitBuilder,
    PosixRlimitType, Spec, User,
};

use super::caps::process_capabilities;
use super::user::ProcessUser;
use super::SpecError;

/// Annotation carrying the overlay's lower directories, top layer first, `:`-separated.
pub const ANNOTATION_LOWERDIR: &str = "io.skiff.rootfs.lowerdir";
/// Annotation carrying the overlay's upper directory.
pub const ANNOTATION_UPPERDIR: &str = "io.skiff.rootfs.upperdir";
/// Annotation carrying the overlay's work directory.
pub const ANNOTATION_WORKDIR: &str = "io.skiff.rootfs.workdir";

/// The OCI runtime spec version skiff writes.
const OCI_VERSION: &str = "1.0.2";
/// Open file limit of every container process (containerd's default).
const NOFILE_LIMIT: u64 = 1_048_576;

/// The directories of the container's overlay root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDirs {
    /// Image layer directories, top layer first, joined with `:` (overlayfs `lowerdir=`).
    pub lowerdir: String,
    /// The container's writable layer.
    pub upperdir: PathBuf,
    /// overlayfs's work directory, on the same filesystem as `upperdir`.
    pub workdir: PathBuf,
}

/// The PID namespace a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidNamespace {
    /// A new PID namespace of its own (the default).
    Own,
    /// The pod's shared PID namespace (`shareProcessNamespace`), by path.
    Join(PathBuf),
    /// The host's (`hostPID`).
    Host,
}

/// The namespaces a container enters. `None` means the host's (`hostNetwork`, `hostIPC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    /// The pod sandbox's network namespace.
    pub net: Option<PathBuf>,
    /// The pod sandbox's IPC namespace.
    pub ipc: Option<PathBuf>,
    /// The pod sandbox's UTS namespace.
    pub uts: Option<PathBuf>,
    /// The PID namespace.
    pub pid: PidNamespace,
}

/// What kind of mount a [`MountPlan`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A recursive bind mount of `source`.
    Bind,
    /// A new tmpfs (`source` is ignored).
    Tmpfs {
        /// Size limit in bytes; `None` is the kernel's default (half of RAM).
        size: Option<u64>,
        /// Permission bits of the tmpfs root.
        mode: u32,
    },
}

/// A mount the daemon resolved for the container (a volume, `/etc/hosts`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Path on the host.
    pub source: PathBuf,
    /// Bind or tmpfs.
    pub kind: MountKind,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything [`build_spec`] needs, resolved by the daemon.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// The pod.
    pub pod: Pod,
    /// The container, as found in the pod.
    pub container: Container,
    /// argv ([`super::command::process_args`]).
    pub args: Vec<String>,
    /// `NAME=value` environment ([`super::command::process_env`]).
    pub env: Vec<String>,
    /// Working directory ([`super::command::working_dir`]).
    pub cwd: String,
    /// The process user ([`super::user::resolve_user`]).
    pub user: ProcessUser,
    /// Where the executor mounts the overlay and which becomes `/`.
    pub rootfs: PathBuf,
    /// The overlay's directories.
    pub overlay: OverlayDirs,
    /// Namespaces to join or create.
    pub namespaces: PodNamespaces,
    /// The container's hostname (set only when it has the pod's UTS namespace).
    pub hostname: String,
    /// The container's cgroup, relative to the cgroup mount points.
    pub cgroups_path: String,
    /// The process's `oom_score_adj` (computed by the cgroups module).
    pub oom_score_adj: i32,
    /// Volume and pod-file mounts.
    pub mounts: Vec<MountPlan>,
    /// The pod's `/dev/shm` directory on the host, bind-mounted so the pod shares it.
    pub shm_source: PathBuf,
}

/// Builds the OCI runtime spec of `plan`'s container; see the module documentation.
pub fn build_spec(plan: &ContainerPlan) -> Result<Spec, SpecError> {
    let container = &plan.container;
    let security = container.security_context.as_ref();
    let privileged = security.and_then(|s| s.privileged) == Some(true);
    let read_only_root = security.and_then(|s| s.read_only_root_filesystem) == Some(true);
    let no_new_privileges = security.and_then(|s| s.allow_privilege_escalation) == Some(false);
    let unmasked_proc = security.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let capabilities = process_capabilities(&plan.pod, container)?;

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());

    let mut root = oci_spec::runtime::Root::default();
    root.set_path(plan.rootfs.clone());
    root.set_readonly(Some(read_only_root));
    spec.set_root(Some(root));

    spec.set_mounts(Some(mounts(plan, privileged)));

    let mut user = User::default();
    user.set_uid(plan.user.uid);
    user.set_gid(plan.user.gid);
    user.set_additional_gids(Some(plan.user.additional_gids.clone()));

    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(NOFILE_LIMIT)
        .hard(NOFILE_LIMIT)
        .build()
        .map_err(|e| SpecError::create(container, "rlimits", "RLIMIT_NOFILE", e.to_string()))?;

    let mut process = oci_spec::runtime::Process::default();
    // The executor has no console for a container yet (nor `attach`): a `tty: true`
    // container runs with its output to the log like any other, rather than not at all.
    process.set_terminal(Some(false));
    process.set_user(user);
    process.set_args(Some(plan.args.clone()));
    process.set_env(Some(plan.env.clone()));
    process.set_cwd(PathBuf::from(&plan.cwd));
    process.set_capabilities(Some(capabilities.to_oci()));
    process.set_rlimits(Some(vec![nofile]));
    process.set_no_new_privileges(Some(no_new_privileges));
    process.set_oom_score_adj(Some(plan.oom_score_adj));
    process.set_apparmor_profile(None);
    process.set_selinux_label(None);
    spec.set_process(Some(process));

    // Setting a hostname needs a UTS namespace of the container's own (the pod's): with
    // the host's, it would rename the node.
    spec.set_hostname(plan.namespaces.uts.as_ref().map(|_| plan.hostname.clone()));

    let mut annotations = HashMap::from([
        (
            ANNOTATION_LOWERDIR.to_string(),
            plan.overlay.lowerdir.clone(),
        ),
        (
            ANNOTATION_UPPERDIR.to_string(),
            plan.overlay.upperdir.display().to_string(),
        ),
        (
            ANNOTATION_WORKDIR.to_string(),
            plan.overlay.workdir.display().to_string(),
        ),
        (
            "io.kubernetes.container.name".to_string(),
            container.name.clone(),
        ),
    ]);
    let meta = &plan.pod.metadata;
    for (key, value) in [
        ("io.kubernetes.pod.name", &meta.name),
        ("io.kubernetes.pod.namespace", &meta.namespace),
        ("io.kubernetes.pod.uid", &meta.uid),
    ] {
        if let Some(value) = value {
            annotations.insert(key.to_string(), value.clone());
        }
    }
    spec.set_annotations(Some(annotations));

    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_namespaces(Some(namespaces(&plan.namespaces)));
    linux.set_cgroups_path(Some(PathBuf::from(&plan.cgroups_path)));
    linux.set_resources(None);
    linux.set_devices(Some(standard_devices()));
    let sysctls: HashMap<String, String> = plan
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    linux.set_sysctl((!sysctls.is_empty()).then_some(sysctls));
    if privileged || unmasked_proc {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(strings(&MASKED_PATHS)));
        linux.set_readonly_paths(Some(strings(&READONLY_PATHS)));
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Paths hidden from the container (Kubernetes' default `procMount`).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in the container (Kubernetes' default `procMount`).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn namespaces(plan: &PodNamespaces) -> Vec<LinuxNamespace> {
    let entry = |typ: LinuxNamespaceType, path: Option<&PathBuf>| {
        let mut namespace = LinuxNamespace::default();
        namespace.set_typ(typ);
        namespace.set_path(path.cloned());
        namespace
    };
    let mut list = Vec::new();
    match &plan.pid {
        PidNamespace::Own => list.push(entry(LinuxNamespaceType::Pid, None)),
        PidNamespace::Join(path) => list.push(entry(LinuxNamespaceType::Pid, Some(path))),
        PidNamespace::Host => {}
    }
    for (typ, path) in [
        (LinuxNamespaceType::Network, &plan.net),
        (LinuxNamespaceType::Ipc, &plan.ipc),
        (LinuxNamespaceType::Uts, &plan.uts),
    ] {
        if let Some(path) = path {
            list.push(entry(typ, Some(path)));
        }
    }
    list.push(entry(LinuxNamespaceType::Mount, None));
    list
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(destination));
    mount.set_typ(Some(typ.to_string()));
    mount.set_source(Some(PathBuf::from(source)));
    mount.set_options(Some(strings(options)));
    mount
}

/// The standard mounts, the pod's `/dev/shm`, then the plan's mounts by depth.
fn mounts(plan: &ContainerPlan, privileged: bool) -> Vec<Mount> {
    let sys_access = if privileged { "rw" } else { "ro" };
    let mut standard = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_access],
        ),
    ];
    let mut shm = Mount::default();
    shm.set_destination(PathBuf::from("/dev/shm"));
    shm.set_typ(Some("bind".to_string()));
    shm.set_source(Some(plan.shm_source.clone()));
    shm.set_options(Some(strings(&[
        "rbind", "rprivate", "nosuid", "nodev", "noexec", "rw",
    ])));
    standard.push(shm);

    let planned: Vec<&MountPlan> = {
        let mut planned: Vec<&MountPlan> = plan.mounts.iter().collect();
        // Stable: mounts of equal depth keep the daemon's order.
        planned.sort_by_key(|m| depth(&m.destination));
        planned
    };
    standard.retain(|m| {
        !planned
            .iter()
            .any(|p| same_path(&p.destination, m.destination()))
    });
    standard.extend(planned.into_iter().map(planned_mount));
    standard
}

fn planned_mount(plan: &MountPlan) -> Mount {
    let access = if plan.read_only { "ro" } else { "rw" };
    let mut mount = Mount::default();
    mount.set_destination(plan.destination.clone());
    match &plan.kind {
        MountKind::Bind => {
            mount.set_typ(Some("bind".to_string()));
            mount.set_source(Some(plan.source.clone()));
            mount.set_options(Some(strings(&["rbind", "rprivate", access])));
        }
        MountKind::Tmpfs { size, mode } => {
            mount.set_typ(Some("tmpfs".to_string()));
            mount.set_source(Some(PathBuf::from("tmpfs")));
            let mut options = strings(&["nosuid", "nodev", access]);
            options.push(format!("mode={mode:o}"));
            if let Some(size) = size {
                options.push(format!("size={size}"));
            }
            mount.set_options(Some(options));
        }
    }
    mount
}

/// Number of normal components of `path` (`/` is 0, `/etc/hosts` is 2).
fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .count()
}

/// Whether `a` and `b` name the same path once `.` and trailing slashes are ignored.
fn same_path(a: &Path, b: &Path) -> bool {
    a.components().eq(b.components())
}

/// `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`, `/dev/tty`: the
/// nodes every container gets (runc's defaults), mode 0666, owned by root.
fn standard_devices() -> Vec<LinuxDevice> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(path, major, minor)| {
        let mut device = LinuxDevice::default();
        device.set_path(PathBuf::from(path));
        device.set_typ(LinuxDeviceType::C);
        device.set_major(major);
        device.set_minor(minor);
        device.set_file_mode(Some(0o666));
        device.set_uid(Some(0));
        device.set_gid(Some(0));
        device
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Capabilities as K8sCapabilities, PodSecurityContext, PodSpec, SecurityContext, Sysctl,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use oci_spec::runtime::Capability;

    fn plan(security: Option<SecurityContext>) -> ContainerPlan {
        let container = Container {
            name: "app".to_string(),
            security_context: security,
            ..Default::default()
        };
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-0".to_string()),
                namespace: Some("shop".to_string()),
                uid: Some("u-1".to_string()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container.clone()],
                security_context: Some(PodSecurityContext {
                    sysctls: Some(vec![Sysctl {
                        name: "net.ipv4.ip_unprivileged_port_start".to_string(),
                        value: "0".to_string(),
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        ContainerPlan {
            pod,
            container,
            args: vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                "sleep 1".to_string(),
            ],
            env: vec!["PATH=/bin".to_string(), "A=b".to_string()],
            cwd: "/srv".to_string(),
            user: ProcessUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![1000, 10],
                username: Some("app".to_string()),
            },
            rootfs: PathBuf::from("/run/skiff/pods/u-1/app/rootfs"),
            overlay: OverlayDirs {
                lowerdir: "/var/lib/skiff/layers/b:/var/lib/skiff/layers/a".to_string(),
                upperdir: PathBuf::from("/var/lib/skiff/pods/u-1/app/upper"),
                workdir: PathBuf::from("/var/lib/skiff/pods/u-1/app/work"),
            },
            namespaces: PodNamespaces {
                net: Some(PathBuf::from("/run/skiff/netns/u-1")),
                ipc: Some(PathBuf::from("/run/skiff/ipcns/u-1")),
                uts: Some(PathBuf::from("/run/skiff/utsns/u-1")),
                pid: PidNamespace::Own,
            },
            hostname: "web-0".to_string(),
            cgroups_path: "skiff/burstable/podu-1/app".to_string(),
            oom_score_adj: 999,
            mounts: vec![
                MountPlan {
                    destination: PathBuf::from("/var/lib/data/cache"),
                    source: PathBuf::from("/var/lib/skiff/pods/u-1/volumes/cache"),
                    kind: MountKind::Bind,
                    read_only: false,
                },
                MountPlan {
                    destination: PathBuf::from("/etc/hosts"),
                    source: PathBuf::from("/var/lib/skiff/pods/u-1/etc-hosts"),
                    kind: MountKind::Bind,
                    read_only: false,
                },
                MountPlan {
                    destination: PathBuf::from("/var/lib/data"),
                    source: PathBuf::from("/var/lib/skiff/pods/u-1/volumes/data"),
                    kind: MountKind::Bind,
                    read_only: true,
                },
                MountPlan {
                    destination: PathBuf::from("/scratch"),
                    source: PathBuf::new(),
                    kind: MountKind::Tmpfs {
                        size: Some(64 << 20),
                        mode: 0o1777,
                    },
                    read_only: false,
                },
            ],
            shm_source: PathBuf::from("/run/skiff/pods/u-1/shm"),
        }
    }

    fn build(plan: &ContainerPlan) -> Spec {
        build_spec(plan).expect("spec")
    }

    fn namespace_list(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    fn destinations(spec: &Spec) -> Vec<String> {
        spec.mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().display().to_string())
            .collect()
    }

    #[test]
    fn namespaces_joined_by_path_and_new() {
        let spec = build(&plan(None));
        assert_eq!(
            namespace_list(&spec),
            vec![
                (LinuxNamespaceType::Pid, None),
                (
                    LinuxNamespaceType::Network,
                    Some(PathBuf::from("/run/skiff/netns/u-1"))
                ),
                (
                    LinuxNamespaceType::Ipc,
                    Some(PathBuf::from("/run/skiff/ipcns/u-1"))
                ),
                (
                    LinuxNamespaceType::Uts,
                    Some(PathBuf::from("/run/skiff/utsns/u-1"))
                ),
                (LinuxNamespaceType::Mount, None),
            ]
        );
        assert_eq!(spec.hostname().as_deref(), Some("web-0"));
    }

    #[test]
    fn host_network_ipc_uts_and_pid() {
        let mut p = plan(None);
        p.namespaces = PodNamespaces {
            net: None,
            ipc: None,
            uts: None,
            pid: PidNamespace::Host,
        };
        let spec = build(&p);
        assert_eq!(
            namespace_list(&spec),
            vec![(LinuxNamespaceType::Mount, None)]
        );
        // No UTS namespace of its own: no hostname to set.
        assert_eq!(spec.hostname(), &None);

        p.namespaces.net = Some(PathBuf::from("/run/skiff/netns/u-1"));
        p.namespaces.pid = PidNamespace::Join(PathBuf::from("/run/skiff/pidns/u-1"));
        let list = namespace_list(&build(&p));
        assert_eq!(
            list[0],
            (
                LinuxNamespaceType::Pid,
                Some(PathBuf::from("/run/skiff/pidns/u-1"))
            )
        );
        assert!(!list.iter().any(|(t, _)| *t == LinuxNamespaceType::Ipc));
    }

    #[test]
    fn mounts_in_order() {
        let spec = build(&plan(None));
        assert_eq!(
            destinations(&spec),
            vec![
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/dev/shm",
                "/scratch",
                "/etc/hosts",
                "/var/lib/data",
                "/var/lib/data/cache",
            ]
        );
        let mounts = spec.mounts().clone().unwrap_or_default();
        let find = |dest: &str| {
            mounts
                .iter()
                .find(|m| m.destination() == Path::new(dest))
                .cloned()
                .expect("mount present")
        };
        let shm = find("/dev/shm");
        assert_eq!(
            shm.source().as_deref(),
            Some(Path::new("/run/skiff/pods/u-1/shm"))
        );
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        let data = find("/var/lib/data");
        assert_eq!(
            data.options().clone().unwrap_or_default(),
            vec!["rbind", "rprivate", "ro"]
        );
        let scratch = find("/scratch");
        assert_eq!(scratch.typ().as_deref(), Some("tmpfs"));
        assert_eq!(
            scratch.options().clone().unwrap_or_default(),
            vec!["nosuid", "nodev", "rw", "mode=1777", "size=67108864"]
        );
        let sys = find("/sys");
        assert!(sys
            .options()
            .clone()
            .unwrap_or_default()
            .contains(&"ro".to_string()));
    }

    #[test]
    fn a_planned_mount_replaces_the_standard_one() {
        let mut p = plan(None);
        p.mounts = vec![MountPlan {
            destination: PathBuf::from("/dev/shm/"),
            source: PathBuf::from("/host/shm"),
            kind: MountKind::Bind,
            read_only: false,
        }];
        let spec = build(&p);
        let shm: Vec<_> = spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| {
                m.destination()
                    .components()
                    .eq(Path::new("/dev/shm").components())
            })
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0].source().as_deref(), Some(Path::new("/host/shm")));
    }

    #[test]
    fn root_annotations_and_process() {
        let spec = build(&plan(None));
        let root = spec.root().clone().expect("root");
        assert_eq!(root.path(), Path::new("/run/skiff/pods/u-1/app/rootfs"));
        assert_eq!(root.readonly(), Some(false));

        let annotations = spec.annotations().clone().expect("annotations");
        assert_eq!(
            annotations.get(ANNOTATION_LOWERDIR).map(String::as_str),
            Some("/var/lib/skiff/layers/b:/var/lib/skiff/layers/a")
        );
        assert_eq!(
            annotations.get(ANNOTATION_UPPERDIR).map(String::as_str),
            Some("/var/lib/skiff/pods/u-1/app/upper")
        );
        assert_eq!(
            annotations.get(ANNOTATION_WORKDIR).map(String::as_str),
            Some("/var/lib/skiff/pods/u-1/app/work")
        );
        assert_eq!(
            annotations.get("io.kubernetes.pod.uid").map(String::as_str),
            Some("u-1")
        );

        let process = spec.process().clone().expect("process");
        assert_eq!(process.args().clone().unwrap_or_default()[0], "/bin/sh");
        assert_eq!(process.cwd(), Path::new("/srv"));
        assert_eq!(process.user().uid(), 1000);
        assert_eq!(
            process.user().additional_gids().clone(),
            Some(vec![1000, 10])
        );
        assert_eq!(process.no_new_privileges(), Some(false));
        assert_eq!(process.terminal(), Some(false));
        assert_eq!(process.oom_score_adj(), Some(999));
        let rlimits = process.rlimits().clone().unwrap_or_default();
        assert_eq!(rlimits.len(), 1);
        assert_eq!(rlimits[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!(
            (rlimits[0].soft(), rlimits[0].hard()),
            (1_048_576, 1_048_576)
        );
        let caps = process.capabilities().clone().expect("caps");
        assert!(caps
            .bounding()
            .as_ref()
            .is_some_and(|b| b.contains(&Capability::Chown)));

        let linux = spec.linux().clone().expect("linux");
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("skiff/burstable/podu-1/app"))
        );
        assert_eq!(
            linux
                .sysctl()
                .as_ref()
                .and_then(|s| s.get("net.ipv4.ip_unprivileged_port_start"))
                .map(String::as_str),
            Some("0")
        );
        assert_eq!(linux.masked_paths().as_ref().map(Vec::len), Some(12));
        assert_eq!(linux.readonly_paths().as_ref().map(Vec::len), Some(5));
        assert_eq!(linux.devices().as_ref().map(Vec::len), Some(6));
        assert!(linux.resources().is_none());
    }

    #[test]
    fn security_context_switches() {
        let spec = build(&plan(Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(K8sCapabilities {
                drop: Some(vec!["ALL".to_string()]),
                add: Some(vec!["NET_BIND_SERVICE".to_string()]),
            }),
            ..Default::default()
        })));
        assert_eq!(spec.root().as_ref().and_then(|r| r.readonly()), Some(true));
        let process = spec.process().clone().expect("process");
        assert_eq!(process.no_new_privileges(), Some(true));
        let caps = process.capabilities().clone().expect("caps");
        assert_eq!(caps.effective().as_ref().map(|s| s.len()), Some(1));

        let mut p = plan(None);
        p.container.tty = Some(true);
        assert_eq!(
            build(&p).process().as_ref().and_then(|p| p.terminal()),
            Some(false),
            "tty: true runs without a console until the executor has one"
        );
    }

    #[test]
    fn privileged_has_no_masked_paths_and_writable_sys() {
        let spec = build(&plan(Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        })));
        let linux = spec.linux().clone().expect("linux");
        assert!(linux.masked_paths().is_none());
        assert!(linux.readonly_paths().is_none());
        for mount in spec.mounts().iter().flatten() {
            if mount.destination().starts_with("/sys") {
                let options = mount.options().clone().unwrap_or_default();
                assert!(options.contains(&"rw".to_string()), "{mount:?}");
            }
        }
        let caps = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone())
            .expect("caps");
        assert!(caps
            .bounding()
            .as_ref()
            .is_some_and(|b| b.contains(&Capability::SysAdmin)));

        let unmasked = build(&plan(Some(SecurityContext {
            proc_mount: Some("Unmasked".to_string()),
            ..Default::default()
        })));
        assert!(unmasked
            .linux()
            .as_ref()
            .is_some_and(|l| l.masked_paths().is_none()));
    }

    #[test]
    fn unknown_capability_fails_the_build() {
        let err = build_spec(&plan(Some(SecurityContext {
            capabilities: Some(K8sCapabilities {
                add: Some(vec!["WARP_DRIVE".to_string()]),
                drop: None,
            }),
            ..Default::default()
        })))
        .expect_err("unknown cap");
        assert_eq!(err.reason(), "CreateContainerError");
    }

    #[test]
    fn serializes_to_config_json() {
        let json = serde_json::to_value(build(&plan(None))).expect("json");
        assert_eq!(json["ociVersion"], "1.0.2");
        // Cgroup resources are the cgroups module's; nothing else sneaks in from defaults.
        assert!(json["linux"]["resources"].is_null());
        assert!(json["hooks"].is_null());
        assert!(json["process"]["apparmorProfile"].is_null());
        assert_eq!(json["root"]["path"], "/run/skiff/pods/u-1/app/rootfs");
        assert_eq!(json["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(json["linux"]["namespaces"][1]["type"], "network");
        assert_eq!(
            json["linux"]["namespaces"][1]["path"],
            "/run/skiff/netns/u-1"
        );
        assert_eq!(
            json["annotations"][ANNOTATION_UPPERDIR],
            "/var/lib/skiff/pods/u-1/app/upper"
        );
        // And back: the executor reads it with the same types.
        let back: Spec = serde_json::from_value(json).expect("parse");
        assert_eq!(back.hostname().as_deref(), Some("web-0"));
    }
}
