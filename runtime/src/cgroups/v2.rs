//! cgroup v2: one unified hierarchy. A cgroup's controllers are those its parent lists in
//! `cgroup.subtree_control`, so creating `a/b/c` first enables skiff's controllers in the
//! root, `a` and `a/b`, and never in `c`: the leaf is where processes live, and the kernel
//! keeps processes out of cgroups that hand controllers down ("no internal processes").
//!
//! One small piece per controller: `cpu` (`cpu.weight`, `cpu.max`), `memory`
//! (`memory.max`; usage and OOM kills from `memory.current`, `memory.stat`,
//! `memory.events`) and `pids` (`pids.max`).

use std::path::Path;

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::MaxValue;

use super::files::{self, controller_error, PROCS_FILE};
use super::resources::{Resources, CFS_PERIOD_US, DEFAULT_CPU_WEIGHT};
use super::{CgroupError, CgroupStats};

/// The controllers skiff enables for its cgroups.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
const CONTROLLERS_FILE: &str = "cgroup.controllers";
const SUBTREE_CONTROL_FILE: &str = "cgroup.subtree_control";

/// Fails unless the root cgroup at `root` offers every controller skiff uses.
pub(super) fn check_controllers(root: &Path) -> Result<(), CgroupError> {
    let available = files::read_string(&root.join(CONTROLLERS_FILE))?;
    let available: Vec<&str> = available.split_whitespace().collect();
    match CONTROLLERS.iter().find(|c| !available.contains(c)) {
        Some(missing) => Err(CgroupError::MissingController {
            controller: missing,
            root: root.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Creates `relative` (and its missing parents) below `root` with skiff's controllers
/// enabled down to it, then applies `resources` when given.
pub(super) fn create(
    root: &Path,
    relative: &str,
    resources: Option<&Resources>,
) -> Result<(), CgroupError> {
    let mut dir = root.to_path_buf();
    for component in relative.split('/') {
        enable_controllers(&dir)?;
        dir.push(component);
        files::create_dir(&dir)?;
    }
    if let Some(resources) = resources {
        apply_cpu(&dir, resources)?;
        apply_memory(&dir, resources)?;
        apply_pids(&dir, resources)?;
    }
    Ok(())
}

/// Enables in `dir`'s children the controllers it does not hand down yet. The file lists
/// them as `cpu memory`; writing takes `+cpu +memory`.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join(SUBTREE_CONTROL_FILE);
    // Absent only in test fixtures: cgroupfs has the file in every cgroup.
    let enabled = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(files::io_error("read", &path)(e)),
    };
    let enabled: Vec<&str> = enabled
        .split_whitespace()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    let missing: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| !enabled.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    files::write_value(&path, &missing.join(" "))
}

fn apply_cpu(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    let cpu = CpuController::new(dir.to_path_buf(), dir.to_path_buf(), true);
    let weight = resources.cpu_weight().unwrap_or(DEFAULT_CPU_WEIGHT);
    // In v2 mode cgroups-rs writes the value as given to cpu.weight.
    cpu.set_shares(weight)
        .map_err(controller_error(dir, "cpu.weight", weight))?;
    // Written directly: cgroups-rs reads cpu.max back first and turns a zero quota into
    // "max"; skiff always knows both numbers.
    let max = match resources.cpu_quota {
        Some(quota) => format!("{} {}", quota.quota_us, quota.period_us),
        None => format!("max {CFS_PERIOD_US}"),
    };
    files::write_value(&dir.join("cpu.max"), &max)
}

fn apply_memory(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    let memory = MemController::new(dir.to_path_buf(), dir.to_path_buf(), true);
    // cgroups-rs writes -1 as "max".
    let limit = resources.memory_limit.unwrap_or(-1);
    memory
        .set_limit(limit)
        .map_err(controller_error(dir, "memory.max", limit))
}

fn apply_pids(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    let pids = PidController::new(dir.to_path_buf(), dir.to_path_buf(), true);
    let max = resources.pids_limit.map_or(MaxValue::Max, MaxValue::Value);
    let shown = max.to_string();
    pids.set_pid_max(max)
        .map_err(controller_error(dir, "pids.max", shown))
}

/// The one `cgroup.procs` a process writes itself to.
pub(super) fn procs_file(dir: &Path) -> std::path::PathBuf {
    dir.join(PROCS_FILE)
}

/// CPU time from `cpu.stat` (`usage_usec`); memory from `memory.current`, less the
/// inactive file cache for the working set.
pub(super) fn stats(dir: &Path) -> Result<CgroupStats, CgroupError> {
    let cpu_usage_us = files::read_keyed_u64(&dir.join("cpu.stat"), "usage_usec")?;
    let memory_usage_bytes = files::read_u64(&dir.join("memory.current"))?;
    let inactive_file = files::read_keyed_u64(&dir.join("memory.stat"), "inactive_file")?;
    Ok(CgroupStats {
        cpu_usage_ns: cpu_usage_us.saturating_mul(1000),
        memory_usage_bytes,
        memory_working_set_bytes: memory_usage_bytes.saturating_sub(inactive_file),
    })
}

/// The `oom_kill` count of `memory.events` (this cgroup and below).
pub(super) fn oom_kill_count(dir: &Path) -> Result<u64, CgroupError> {
    files::read_keyed_u64(&dir.join("memory.events"), "oom_kill")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::resources::CpuQuota;
    use std::fs;

    fn fixture() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join(CONTROLLERS_FILE),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .unwrap();
        // systemd usually hands cpu down already.
        fs::write(root.path().join(SUBTREE_CONTROL_FILE), "cpu\n").unwrap();
        root
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn missing_controller_is_named() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join(CONTROLLERS_FILE), "cpu memory\n").unwrap();
        let err = check_controllers(root.path()).unwrap_err().to_string();
        assert!(err.contains("pids"), "{err}");
        check_controllers(fixture().path()).unwrap();
    }

    #[test]
    fn enables_controllers_down_to_the_parent_only() {
        let root = fixture();
        create(
            root.path(),
            "skiff/burstable/pod1",
            Some(&Resources::default()),
        )
        .unwrap();
        assert_eq!(
            read(&root.path().join(SUBTREE_CONTROL_FILE)),
            "+memory +pids"
        );
        for parent in ["skiff", "skiff/burstable"] {
            let file = root.path().join(parent).join(SUBTREE_CONTROL_FILE);
            assert_eq!(read(&file), "+cpu +memory +pids", "{parent}");
        }
        assert!(!root
            .path()
            .join("skiff/burstable/pod1")
            .join(SUBTREE_CONTROL_FILE)
            .exists());
        // Kernel-style content ("cpu memory pids") counts as enabled: nothing is rewritten.
        let file = root.path().join("skiff").join(SUBTREE_CONTROL_FILE);
        fs::write(&file, "cpu memory pids\n").unwrap();
        create(root.path(), "skiff/burstable/pod1", None).unwrap();
        assert_eq!(read(&file), "cpu memory pids\n");
    }

    #[test]
    fn writes_limits() {
        let root = fixture();
        let resources = Resources {
            cpu_shares: Some(1024),
            cpu_quota: Some(CpuQuota {
                quota_us: 20_000,
                period_us: 100_000,
            }),
            memory_limit: Some(32 << 20),
            pids_limit: Some(100),
        };
        create(root.path(), "skiff/pod1", Some(&resources)).unwrap();
        let dir = root.path().join("skiff/pod1");
        assert_eq!(read(&dir.join("cpu.weight")), "100");
        assert_eq!(read(&dir.join("cpu.max")), "20000 100000");
        assert_eq!(read(&dir.join("memory.max")), "33554432");
        assert_eq!(read(&dir.join("pids.max")), "100");

        let minimal = Resources {
            cpu_shares: Some(2),
            ..Resources::default()
        };
        create(root.path(), "skiff/pod1", Some(&minimal)).unwrap();
        assert_eq!(read(&dir.join("cpu.weight")), "1");
        assert_eq!(read(&dir.join("cpu.max")), "max 100000");
        assert_eq!(read(&dir.join("memory.max")), "max");
        assert_eq!(read(&dir.join("pids.max")), "max");
    }

    #[test]
    fn reads_stats_and_oom_kills() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        fs::write(dir.join("memory.current"), "8192\n").unwrap();
        fs::write(
            dir.join("memory.stat"),
            "anon 4096\nfile 4096\ninactive_file 3072\n",
        )
        .unwrap();
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(
            stats(dir).unwrap(),
            CgroupStats {
                cpu_usage_ns: 1_500_000,
                memory_usage_bytes: 8192,
                memory_working_set_bytes: 5120,
            }
        );
        assert_eq!(oom_kill_count(dir).unwrap(), 1);
    }
}
