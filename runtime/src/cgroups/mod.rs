//! Pod and container cgroups, on cgroup v1 and cgroup v2 hosts.
//!
//! Layout, below the hierarchy root (`/sys/fs/cgroup`, or `/sys/fs/cgroup/{controller}` on
//! v1) and a configurable node parent (`--cgroup-parent`, default `skiff`), as the kubelet
//! lays out `kubepods`:
//!
//! ```text
//! {parent}/pod{uid}/{container}               Guaranteed pods
//! {parent}/burstable/pod{uid}/{container}     Burstable pods
//! {parent}/besteffort/pod{uid}/{container}    BestEffort pods (the parent gets minimal shares)
//! ```
//!
//! On v1 the same path exists in each hierarchy skiff uses (`cpu`, `cpuacct`, `memory`,
//! `pids`; see `v1.rs`); on v2 once, with those controllers handed down to it (see `v2.rs`).
//!
//! The work is split the way the rest of the runtime is: [`Resources`] is a pure function of
//! the pod spec (what the kubelet would ask of the kernel), and [`CgroupManager`] turns it
//! into directories and files. Creating is idempotent (existing directories are fine, every
//! limit is written again, unset ones back to the kernel default), and so is removing
//! (absent is fine). Removing kills what is left in the cgroup first, so a pod deleted while
//! the daemon was down leaves nothing behind.
//!
//! Processes join a cgroup before they exec: the container's init writes `0` to each file of
//! [`Cgroup::procs_files`] (one per v1 hierarchy, one on v2).
//!
//! Everything here blocks (file system calls, and up to a few seconds of killing in
//! removals): call it from `spawn_blocking` in async code.

mod files;
mod resources;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
use tracing::{debug, info};

pub use resources::{
    cpu_shares_to_weight, memory_request_bytes, milli_cpu_to_quota, milli_cpu_to_shares,
    oom_score_adj, CpuQuota, QosClass, Resources, CFS_PERIOD_US, MIN_CPU_SHARES,
};

/// Where the kernel mounts cgroups.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The node parent used when `--cgroup-parent` is not given.
pub const DEFAULT_CGROUP_PARENT: &str = "skiff";

const BURSTABLE_DIR: &str = "burstable";
const BEST_EFFORT_DIR: &str = "besteffort";
const POD_DIR_PREFIX: &str = "pod";

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid {resource} quantity {value:?} in {object}: {reason}")]
    InvalidQuantity {
        object: String,
        resource: &'static str,
        value: String,
        reason: String,
    },
    #[error("unknown QoS class {0:?} (expected Guaranteed, Burstable or BestEffort)")]
    UnknownQosClass(String),
    #[error("cannot tell the cgroup version of {}: {reason}", path.display())]
    UnknownHierarchy { path: PathBuf, reason: String },
    #[error("cgroup controller {controller} is not available under {}", root.display())]
    MissingController {
        controller: &'static str,
        root: PathBuf,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {value:?} to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot set {file} to {value} in {}: {source}", dir.display())]
    Controller {
        dir: PathBuf,
        file: &'static str,
        value: String,
        // Boxed: the crate's error is large, and every result here carries this enum.
        #[source]
        source: Box<cgroups_rs::fs::error::Error>,
    },
    #[error("unexpected content in {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("cgroup {} still has processes {pids:?} after {waited:?} of SIGKILL", path.display())]
    StillPopulated {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
}

/// Which cgroup hierarchy the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller. Hybrid hosts (v1 controllers plus an empty cgroup2 at
    /// `unified/`) count as v1: that is where the controllers are.
    V1,
    /// The unified hierarchy.
    V2,
}

impl CgroupVersion {
    /// The version of the hierarchy mounted at `root`: cgroup2 there means v2, a tmpfs
    /// holding per-controller mounts means v1.
    pub fn detect(root: &Path) -> Result<CgroupVersion, CgroupError> {
        let stat = statfs(root).map_err(|errno| CgroupError::UnknownHierarchy {
            path: root.to_path_buf(),
            reason: format!("statfs failed: {errno}"),
        })?;
        let fs_type = stat.filesystem_type();
        if fs_type == CGROUP2_SUPER_MAGIC {
            Ok(CgroupVersion::V2)
        } else if fs_type == TMPFS_MAGIC {
            Ok(CgroupVersion::V1)
        } else {
            Err(CgroupError::UnknownHierarchy {
                path: root.to_path_buf(),
                reason: format!(
                    "file system type {:#x} is neither cgroup2 nor tmpfs",
                    fs_type.0
                ),
            })
        }
    }
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        })
    }
}

/// Resource usage of a cgroup and everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupStats {
    /// CPU time used since the cgroup was created, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory charged, page cache included.
    pub memory_usage_bytes: u64,
    /// Memory charged less the inactive file cache, which the kernel can drop: the number
    /// the kubelet reports and evicts on.
    pub memory_working_set_bytes: u64,
}

/// Where one cgroup lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// A directory in each v1 hierarchy.
    V1(v1::ControllerDirs),
    /// A directory in the unified hierarchy.
    V2(PathBuf),
}

impl Location {
    fn join(&self, relative: &str) -> Location {
        match self {
            Location::V1(dirs) => Location::V1(dirs.join(relative)),
            Location::V2(dir) => Location::V2(dir.join(relative)),
        }
    }

    /// Every directory, once.
    fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Location::V1(dirs) => dirs.unique_dirs(),
            Location::V2(dir) => vec![dir.clone()],
        }
    }
}

/// One cgroup skiff manages: its path below the hierarchy root and its directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// Below the root, without a leading slash: `skiff/burstable/pod{uid}`.
    relative: String,
    location: Location,
}

impl Cgroup {
    /// The path below the hierarchy root with a leading slash, as OCI's
    /// `linux.cgroupsPath` takes it: `/skiff/burstable/pod{uid}/{name}`.
    pub fn relative_path(&self) -> String {
        format!("/{}", self.relative)
    }

    /// Which hierarchy the cgroup is in.
    pub fn version(&self) -> CgroupVersion {
        match self.location {
            Location::V1(_) => CgroupVersion::V1,
            Location::V2(_) => CgroupVersion::V2,
        }
    }

    /// The cgroup's directory in every hierarchy it is in.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.location.dirs()
    }

    /// Every `cgroup.procs` a process must write `0` to (itself) to join this cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match &self.location {
            Location::V1(dirs) => v1::procs_files(dirs),
            Location::V2(dir) => vec![v2::procs_file(dir)],
        }
    }

    /// Whether the cgroup exists (in its first hierarchy).
    pub fn exists(&self) -> bool {
        self.dirs().first().is_some_and(|dir| dir.is_dir())
    }

    /// Every process in this cgroup and below it, sorted; none when it does not exist.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        files::subtree_pids(&self.dirs())
    }

    /// CPU and memory usage of this cgroup and below it.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        match &self.location {
            Location::V1(dirs) => v1::stats(dirs),
            Location::V2(dir) => v2::stats(dir),
        }
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup (and below it):
    /// a container whose count grew while it ran ended `OOMKilled`.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        match &self.location {
            Location::V1(dirs) => v1::oom_kill_count(dirs),
            Location::V2(dir) => v2::oom_kill_count(dir),
        }
    }
}

/// A pod's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    uid: String,
    qos: QosClass,
    cgroup: Cgroup,
}

impl PodCgroup {
    /// The pod's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The pod's QoS class, which placed the cgroup.
    pub fn qos(&self) -> QosClass {
        self.qos
    }

    /// The cgroup itself.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }
}

/// A container's cgroup, inside its pod's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    name: String,
    cgroup: Cgroup,
}

impl ContainerCgroup {
    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup itself.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// The OCI `linux.cgroupsPath`: `/skiff/burstable/pod{uid}/{name}`.
    pub fn relative_path(&self) -> String {
        self.cgroup.relative_path()
    }

    /// Every `cgroup.procs` the container's init writes `0` to before it execs.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.cgroup.procs_files()
    }
}

/// Creates, inspects and removes the cgroups of the pods on this node.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    /// The node parent below the root, without leading or trailing slashes.
    parent: String,
    /// The hierarchy root(s).
    root: Location,
}

impl CgroupManager {
    /// A manager for the host's hierarchy at `/sys/fs/cgroup`, its version detected.
    pub fn new(parent: &str) -> Result<CgroupManager, CgroupError> {
        let root = PathBuf::from(DEFAULT_CGROUP_ROOT);
        let version = CgroupVersion::detect(&root)?;
        CgroupManager::with_root(root, version, parent)
    }

    /// A manager for the hierarchy at `root` (a temp-dir fixture in tests), of the given
    /// version. Fails when a controller skiff uses is missing: on v1
    /// `{root}/{cpu,cpuacct,memory,pids}` must exist, on v2 the root's `cgroup.controllers`
    /// must list cpu, memory and pids.
    pub fn with_root(
        root: PathBuf,
        version: CgroupVersion,
        parent: &str,
    ) -> Result<CgroupManager, CgroupError> {
        let parent = validate_parent(parent)?;
        let root = match version {
            CgroupVersion::V1 => Location::V1(v1::ControllerDirs::discover(&root)?),
            CgroupVersion::V2 => {
                v2::check_controllers(&root)?;
                Location::V2(root)
            }
        };
        Ok(CgroupManager { parent, root })
    }

    /// Which hierarchy this manager works in.
    pub fn version(&self) -> CgroupVersion {
        match self.root {
            Location::V1(_) => CgroupVersion::V1,
            Location::V2(_) => CgroupVersion::V2,
        }
    }

    /// Creates the node parent and its Burstable and BestEffort parents. BestEffort pods
    /// share the minimal CPU weight between them, as on a kubelet node.
    pub fn ensure_node_hierarchy(&self) -> Result<(), CgroupError> {
        self.create(&self.cgroup(self.parent.clone()), None)?;
        self.create(&self.cgroup(self.qos_parent(QosClass::Burstable)), None)?;
        let best_effort = Resources {
            cpu_shares: Some(MIN_CPU_SHARES),
            ..Resources::default()
        };
        self.create(
            &self.cgroup(self.qos_parent(QosClass::BestEffort)),
            Some(&best_effort),
        )
    }

    /// The cgroup of pod `uid` of class `qos`, whether or not it exists (to adopt a pod
    /// after a restart).
    pub fn pod_cgroup(&self, uid: &str, qos: QosClass) -> Result<PodCgroup, CgroupError> {
        validate_component("pod uid", uid)?;
        let relative = format!("{}/{POD_DIR_PREFIX}{uid}", self.qos_parent(qos));
        Ok(PodCgroup {
            uid: uid.to_string(),
            qos,
            cgroup: self.cgroup(relative),
        })
    }

    /// Creates (or updates) the cgroup of pod `uid` with `resources`; see
    /// [`Resources::for_pod`].
    pub fn create_pod(
        &self,
        uid: &str,
        qos: QosClass,
        resources: &Resources,
    ) -> Result<PodCgroup, CgroupError> {
        let pod = self.pod_cgroup(uid, qos)?;
        self.create(&pod.cgroup, Some(resources))?;
        debug!(uid, %qos, path = %pod.cgroup.relative_path(), ?resources, "pod cgroup ready");
        Ok(pod)
    }

    /// The cgroup of container `name` in `pod`, whether or not it exists.
    pub fn container_cgroup(
        &self,
        pod: &PodCgroup,
        name: &str,
    ) -> Result<ContainerCgroup, CgroupError> {
        validate_component("container name", name)?;
        let relative = format!("{}/{name}", pod.cgroup.relative);
        Ok(ContainerCgroup {
            name: name.to_string(),
            cgroup: self.cgroup(relative),
        })
    }

    /// Creates (or updates) the cgroup of container `name` in `pod` with `resources`; see
    /// [`Resources::for_container`].
    pub fn create_container(
        &self,
        pod: &PodCgroup,
        name: &str,
        resources: &Resources,
    ) -> Result<ContainerCgroup, CgroupError> {
        let container = self.container_cgroup(pod, name)?;
        self.create(&container.cgroup, Some(resources))?;
        debug!(
            uid = pod.uid,
            container = name,
            path = %container.cgroup.relative_path(),
            ?resources,
            "container cgroup ready"
        );
        Ok(container)
    }

    /// Kills what is left in the container's cgroup and removes it; gone already is fine.
    pub fn remove_container(&self, container: &ContainerCgroup) -> Result<(), CgroupError> {
        remove(&container.cgroup)
    }

    /// Kills what is left in pod `uid`'s cgroup and removes it with its containers', under
    /// whichever QoS parent it is; gone already is fine.
    pub fn remove_pod(&self, uid: &str) -> Result<(), CgroupError> {
        for qos in QosClass::ALL {
            let pod = self.pod_cgroup(uid, qos)?;
            if pod.cgroup.dirs().iter().any(|dir| dir.exists()) {
                info!(uid, %qos, "removing pod cgroup");
                remove(&pod.cgroup)?;
            }
        }
        Ok(())
    }

    /// Kills everything below the node parent and removes it all (node teardown, tests).
    pub fn remove_node_hierarchy(&self) -> Result<(), CgroupError> {
        remove(&self.cgroup(self.parent.clone()))
    }

    /// The pods that have a cgroup, as `(uid, QoS class)` sorted by uid: after a restart,
    /// those of pods that no longer exist are to be removed.
    pub fn list_pods(&self) -> Result<Vec<(String, QosClass)>, CgroupError> {
        // A set: on v1 each pod shows up once per hierarchy.
        let mut pods = BTreeSet::new();
        for qos in QosClass::ALL {
            for dir in self.cgroup(self.qos_parent(qos)).dirs() {
                for uid in pod_uids_in(&dir)? {
                    pods.insert((uid, qos));
                }
            }
        }
        Ok(pods.into_iter().collect())
    }

    fn cgroup(&self, relative: String) -> Cgroup {
        Cgroup {
            location: self.root.join(&relative),
            relative,
        }
    }

    /// The directory, below the root, holding the pods of class `qos`.
    fn qos_parent(&self, qos: QosClass) -> String {
        match qos {
            QosClass::Guaranteed => self.parent.clone(),
            QosClass::Burstable => format!("{}/{BURSTABLE_DIR}", self.parent),
            QosClass::BestEffort => format!("{}/{BEST_EFFORT_DIR}", self.parent),
        }
    }

    fn create(&self, cgroup: &Cgroup, resources: Option<&Resources>) -> Result<(), CgroupError> {
        match (&self.root, &cgroup.location) {
            (Location::V2(root), Location::V2(_)) => v2::create(root, &cgroup.relative, resources),
            (_, Location::V1(dirs)) => v1::create(dirs, resources),
            // A cgroup's location is always the manager's root joined with its path.
            (Location::V1(_), Location::V2(dir)) => Err(CgroupError::UnknownHierarchy {
                path: dir.clone(),
                reason: "a cgroup v2 path under a cgroup v1 manager".to_string(),
            }),
        }
    }
}

/// Kills every process in `cgroup` and below, then removes the directories, deepest first.
fn remove(cgroup: &Cgroup) -> Result<(), CgroupError> {
    let dirs = cgroup.dirs();
    files::kill_all(&dirs)?;
    for dir in &dirs {
        files::remove_tree(dir)?;
    }
    debug!(path = %cgroup.relative_path(), "cgroup removed");
    Ok(())
}

/// The uids of the `pod{uid}` cgroups directly in `dir`; none when `dir` does not exist.
fn pod_uids_in(dir: &Path) -> Result<Vec<String>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(files::io_error("list", dir)(e)),
    };
    let mut uids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(files::io_error("list", dir))?;
        let is_dir = entry
            .file_type()
            .map_err(files::io_error("inspect", &entry.path()))?
            .is_dir();
        let name = entry.file_name();
        let uid = name
            .to_str()
            .and_then(|name| name.strip_prefix(POD_DIR_PREFIX))
            .filter(|uid| !uid.is_empty());
        if let (true, Some(uid)) = (is_dir, uid) {
            uids.push(uid.to_string());
        }
    }
    Ok(uids)
}

/// The parent without surrounding slashes; each of its components must be a plain name.
fn validate_parent(parent: &str) -> Result<String, CgroupError> {
    let trimmed = parent.trim_matches('/');
    if trimmed.is_empty() {
        return Err(CgroupError::InvalidName {
            what: "cgroup parent",
            value: parent.to_string(),
            reason: "must name a directory below the cgroup root",
        });
    }
    for component in trimmed.split('/') {
        validate_component("cgroup parent", component).map_err(|_| CgroupError::InvalidName {
            what: "cgroup parent",
            value: parent.to_string(),
            reason: "components must be non-empty names other than \".\" and \"..\"",
        })?;
    }
    Ok(trimmed.to_string())
}

/// A name that becomes one directory: not empty, no `/`, not `.` or `..`.
/// The leaf cgroup of a pod's pause processes: cgroup v2 allows processes only in leaves once
/// a cgroup hands controllers to children. Not a valid container name (a DNS label), so it
/// never meets a container's cgroup.
pub const SANDBOX_CGROUP: &str = "_sandbox";

fn validate_component(what: &'static str, value: &str) -> Result<(), CgroupError> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.contains('/') || value.contains('\0') {
        "must not contain '/' or NUL"
    } else if value == "." || value == ".." {
        "must not be \".\" or \"..\""
    } else {
        return Ok(());
    };
    Err(CgroupError::InvalidName {
        what,
        value: value.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn v1_fixture() -> (tempfile::TempDir, CgroupManager) {
        let root = tempfile::tempdir().unwrap();
        for controller in ["cpu", "cpuacct", "memory", "pids"] {
            fs::create_dir(root.path().join(controller)).unwrap();
        }
        let manager =
            CgroupManager::with_root(root.path().to_path_buf(), CgroupVersion::V1, "/skiff/")
                .unwrap();
        (root, manager)
    }

    fn v2_fixture() -> (tempfile::TempDir, CgroupManager) {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        let manager =
            CgroupManager::with_root(root.path().to_path_buf(), CgroupVersion::V2, "skiff")
                .unwrap();
        (root, manager)
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn pods_are_placed_by_qos_class() {
        let (_root, manager) = v1_fixture();
        let path = |qos| {
            manager
                .pod_cgroup("u1", qos)
                .unwrap()
                .cgroup
                .relative_path()
        };
        assert_eq!(path(QosClass::Guaranteed), "/skiff/podu1");
        assert_eq!(path(QosClass::Burstable), "/skiff/burstable/podu1");
        assert_eq!(path(QosClass::BestEffort), "/skiff/besteffort/podu1");
    }

    #[test]
    fn v1_container_joins_every_hierarchy() {
        let (root, manager) = v1_fixture();
        let pod = manager
            .create_pod("u1", QosClass::Burstable, &Resources::default())
            .unwrap();
        let container = manager
            .create_container(&pod, "app", &Resources::default())
            .unwrap();
        assert_eq!(container.relative_path(), "/skiff/burstable/podu1/app");
        let root = root.path().canonicalize().unwrap();
        let expected: Vec<PathBuf> = ["cpu", "cpuacct", "memory", "pids"]
            .iter()
            .map(|c| root.join(c).join("skiff/burstable/podu1/app/cgroup.procs"))
            .collect();
        assert_eq!(container.procs_files(), expected);
        assert!(container.cgroup().exists());
    }

    #[test]
    fn v2_pod_and_container() {
        let (root, manager) = v2_fixture();
        manager.ensure_node_hierarchy().unwrap();
        let root = root.path();
        assert_eq!(read(&root.join("skiff/besteffort/cpu.weight")), "1");

        let pod_resources = Resources {
            cpu_shares: Some(1024),
            cpu_quota: milli_cpu_to_quota(500, CFS_PERIOD_US),
            memory_limit: Some(64 << 20),
            pids_limit: Some(1024),
        };
        let pod = manager
            .create_pod("u2", QosClass::Guaranteed, &pod_resources)
            .unwrap();
        let container_resources = Resources {
            cpu_shares: Some(512),
            cpu_quota: milli_cpu_to_quota(200, CFS_PERIOD_US),
            memory_limit: Some(32 << 20),
            pids_limit: None,
        };
        let container = manager
            .create_container(&pod, "app", &container_resources)
            .unwrap();

        let pod_dir = root.join("skiff/podu2");
        assert_eq!(read(&pod_dir.join("cpu.weight")), "100");
        assert_eq!(read(&pod_dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(&pod_dir.join("memory.max")), "67108864");
        assert_eq!(read(&pod_dir.join("pids.max")), "1024");
        // Creating the container handed the controllers down from the pod.
        assert_eq!(
            read(&pod_dir.join("cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        assert_eq!(
            read(&root.join("cgroup.subtree_control")),
            "+cpu +memory +pids"
        );

        let app_dir = pod_dir.join("app");
        assert_eq!(
            read(&app_dir.join("cpu.weight")),
            cpu_shares_to_weight(512).to_string()
        );
        assert_eq!(read(&app_dir.join("cpu.max")), "20000 100000");
        assert_eq!(read(&app_dir.join("memory.max")), "33554432");
        assert_eq!(read(&app_dir.join("pids.max")), "max");
        assert!(!app_dir.join("cgroup.subtree_control").exists());
        assert_eq!(container.procs_files(), vec![app_dir.join("cgroup.procs")]);
        assert_eq!(container.relative_path(), "/skiff/podu2/app");
    }

    #[test]
    fn list_pods_scans_the_three_qos_parents() {
        let (_root, manager) = v2_fixture();
        manager.ensure_node_hierarchy().unwrap();
        for (uid, qos) in [
            ("c", QosClass::Guaranteed),
            ("a", QosClass::Burstable),
            ("b", QosClass::BestEffort),
        ] {
            manager.create_pod(uid, qos, &Resources::default()).unwrap();
        }
        assert_eq!(
            manager.list_pods().unwrap(),
            vec![
                ("a".to_string(), QosClass::Burstable),
                ("b".to_string(), QosClass::BestEffort),
                ("c".to_string(), QosClass::Guaranteed),
            ]
        );
    }

    #[test]
    fn names_are_validated() {
        let root = tempfile::tempdir().unwrap();
        for parent in ["", "/", "a/../b", "a//b", "."] {
            let err = CgroupManager::with_root(root.path().into(), CgroupVersion::V2, parent)
                .unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidName { .. }),
                "{parent:?}: {err}"
            );
        }
        let (_root, manager) = v1_fixture();
        for uid in ["", "..", "a/b"] {
            assert!(
                manager.pod_cgroup(uid, QosClass::Burstable).is_err(),
                "{uid:?}"
            );
        }
        let pod = manager.pod_cgroup("u", QosClass::Burstable).unwrap();
        assert!(manager.container_cgroup(&pod, "x/y").is_err());
    }

    #[test]
    fn removing_absent_cgroups_is_fine() {
        let (_root, manager) = v1_fixture();
        manager.remove_pod("nothing-here").unwrap();
        let pod = manager
            .pod_cgroup("nothing-here", QosClass::Burstable)
            .unwrap();
        let container = manager.container_cgroup(&pod, "app").unwrap();
        manager.remove_container(&container).unwrap();
        manager.remove_node_hierarchy().unwrap();
    }
}
