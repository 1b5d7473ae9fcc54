//! cgroup v1: one hierarchy per controller (`{root}/cpu`, `{root}/memory`, …), each holding
//! the same relative path. A process joins a v1 cgroup by joining it in every hierarchy.
//!
//! skiff uses four controllers, one small piece each: `cpu` (shares, CFS quota), `cpuacct`
//! (usage only), `memory` (limit, usage, OOM kills) and `pids` (task limit). It leaves
//! `cpuset` alone (no CPU pinning, and an empty cpuset would refuse every task), `devices`
//! (containers get only the device nodes their `/dev` holds) and `freezer`.

use std::path::{Path, PathBuf};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::MaxValue;

use super::files::{self, controller_error, PROCS_FILE};
use super::resources::{Resources, CFS_PERIOD_US};
use super::{CgroupError, CgroupStats};

/// The kernel's default `cpu.shares`, restored when a cgroup asks for none.
const DEFAULT_CPU_SHARES: u64 = 1024;

/// A v1 controller skiff uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Controller {
    Cpu,
    CpuAcct,
    Memory,
    Pids,
}

impl Controller {
    /// The controller's name, which is also its hierarchy's directory under the root.
    fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::CpuAcct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }

    /// Writes this controller's part of `resources` into the cgroup at `dir`, putting the
    /// kernel default back for every limit `resources` does not set.
    fn apply(self, dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
        match self {
            Controller::Cpu => apply_cpu(dir, resources),
            Controller::CpuAcct => Ok(()),
            Controller::Memory => apply_memory(dir, resources),
            Controller::Pids => apply_pids(dir, resources),
        }
    }
}

fn apply_cpu(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    let cpu = CpuController::new(dir.to_path_buf(), dir.to_path_buf(), false);
    let shares = resources.cpu_shares.unwrap_or(DEFAULT_CPU_SHARES);
    cpu.set_shares(shares)
        .map_err(controller_error(dir, "cpu.shares", shares))?;
    let (quota_us, period_us) = match resources.cpu_quota {
        Some(quota) => (quota.quota_us, quota.period_us),
        None => (-1, CFS_PERIOD_US),
    };
    // Period first: the kernel checks the quota against the period in place.
    cpu.set_cfs_period(period_us)
        .map_err(controller_error(dir, "cpu.cfs_period_us", period_us))?;
    cpu.set_cfs_quota(quota_us)
        .map_err(controller_error(dir, "cpu.cfs_quota_us", quota_us))
}

fn apply_memory(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    let memory = MemController::new(dir.to_path_buf(), dir.to_path_buf(), false);
    let limit = resources.memory_limit.unwrap_or(-1);
    memory
        .set_limit(limit)
        .map_err(controller_error(dir, "memory.limit_in_bytes", limit))
}

fn apply_pids(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    let pids = PidController::new(dir.to_path_buf(), dir.to_path_buf(), false);
    let max = resources.pids_limit.map_or(MaxValue::Max, MaxValue::Value);
    let shown = max.to_string();
    pids.set_pid_max(max)
        .map_err(controller_error(dir, "pids.max", shown))
}

/// The directories of one cgroup (or of the hierarchy roots), one per controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ControllerDirs {
    cpu: PathBuf,
    cpuacct: PathBuf,
    memory: PathBuf,
    pids: PathBuf,
}

impl ControllerDirs {
    /// The hierarchies mounted under `root`, each at `{root}/{controller}`. Every controller
    /// skiff uses must be there. Co-mounted controllers (`cpu,cpuacct` with `cpu` and
    /// `cpuacct` as symlinks) resolve to one directory, so it is joined and removed once.
    pub(super) fn discover(root: &Path) -> Result<ControllerDirs, CgroupError> {
        let mount = |controller: Controller| {
            root.join(controller.name()).canonicalize().map_err(|_| {
                CgroupError::MissingController {
                    controller: controller.name(),
                    root: root.to_path_buf(),
                }
            })
        };
        Ok(ControllerDirs {
            cpu: mount(Controller::Cpu)?,
            cpuacct: mount(Controller::CpuAcct)?,
            memory: mount(Controller::Memory)?,
            pids: mount(Controller::Pids)?,
        })
    }

    /// The same cgroup path `relative` below each of these directories.
    pub(super) fn join(&self, relative: &str) -> ControllerDirs {
        ControllerDirs {
            cpu: self.cpu.join(relative),
            cpuacct: self.cpuacct.join(relative),
            memory: self.memory.join(relative),
            pids: self.pids.join(relative),
        }
    }

    /// Each controller with its directory, in the order cgroups are created and limits
    /// applied.
    fn each(&self) -> [(Controller, &Path); 4] {
        [
            (Controller::Cpu, &self.cpu),
            (Controller::CpuAcct, &self.cpuacct),
            (Controller::Memory, &self.memory),
            (Controller::Pids, &self.pids),
        ]
    }

    /// Each distinct directory once, in controller order.
    pub(super) fn unique_dirs(&self) -> Vec<PathBuf> {
        let mut unique: Vec<PathBuf> = Vec::new();
        for (_, dir) in self.each() {
            if !unique.iter().any(|seen| seen == dir) {
                unique.push(dir.to_path_buf());
            }
        }
        unique
    }
}

/// Creates the cgroup in every hierarchy, then applies `resources` when given.
pub(super) fn create(
    dirs: &ControllerDirs,
    resources: Option<&Resources>,
) -> Result<(), CgroupError> {
    for (_, dir) in dirs.each() {
        files::create_dir(dir)?;
    }
    if let Some(resources) = resources {
        for (controller, dir) in dirs.each() {
            controller.apply(dir, resources)?;
        }
    }
    Ok(())
}

/// Every `cgroup.procs` a process writes itself to, one per hierarchy.
pub(super) fn procs_files(dirs: &ControllerDirs) -> Vec<PathBuf> {
    dirs.unique_dirs()
        .into_iter()
        .map(|dir| dir.join(PROCS_FILE))
        .collect()
}

/// CPU time from `cpuacct.usage`; memory from `memory.usage_in_bytes`, less the inactive
/// file cache for the working set (what the kubelet reports and evicts on).
pub(super) fn stats(dirs: &ControllerDirs) -> Result<CgroupStats, CgroupError> {
    let cpu_usage_ns = files::read_u64(&dirs.cpuacct.join("cpuacct.usage"))?;
    let memory_usage_bytes = files::read_u64(&dirs.memory.join("memory.usage_in_bytes"))?;
    let inactive_file =
        files::read_keyed_u64(&dirs.memory.join("memory.stat"), "total_inactive_file")?;
    Ok(CgroupStats {
        cpu_usage_ns,
        memory_usage_bytes,
        memory_working_set_bytes: memory_usage_bytes.saturating_sub(inactive_file),
    })
}

/// The `oom_kill` count of `memory.oom_control` (Linux 4.13 and later).
pub(super) fn oom_kill_count(dirs: &ControllerDirs) -> Result<u64, CgroupError> {
    files::read_keyed_u64(&dirs.memory.join("memory.oom_control"), "oom_kill")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::resources::CpuQuota;
    use std::fs;

    fn fixture() -> (tempfile::TempDir, ControllerDirs) {
        let root = tempfile::tempdir().unwrap();
        for controller in ["cpu", "cpuacct", "memory", "pids"] {
            fs::create_dir(root.path().join(controller)).unwrap();
        }
        let dirs = ControllerDirs::discover(root.path()).unwrap();
        (root, dirs)
    }

    fn read(path: PathBuf) -> String {
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn applies_limits_per_controller() {
        let (_root, roots) = fixture();
        let dirs = roots.join("skiff/pod1");
        let resources = Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(CpuQuota {
                quota_us: 20_000,
                period_us: 100_000,
            }),
            memory_limit: Some(32 << 20),
            pids_limit: Some(64),
        };
        create(&dirs, Some(&resources)).unwrap();
        let cpu = &dirs.cpu;
        assert_eq!(read(cpu.join("cpu.shares")), "512");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "20000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        let memory = &dirs.memory;
        assert_eq!(read(memory.join("memory.limit_in_bytes")), "33554432");
        let pids = &dirs.pids;
        assert_eq!(read(pids.join("pids.max")), "64");

        // Re-applying without limits puts the defaults back.
        create(&dirs, Some(&Resources::default())).unwrap();
        assert_eq!(read(cpu.join("cpu.shares")), "1024");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "-1");
        assert_eq!(read(memory.join("memory.limit_in_bytes")), "-1");
        assert_eq!(read(pids.join("pids.max")), "max");
    }

    #[test]
    fn missing_hierarchy_is_named() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("cpu")).unwrap();
        let err = ControllerDirs::discover(root.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpuacct"), "{err}");
    }

    #[test]
    fn co_mounted_hierarchies_are_listed_once() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("cpu,cpuacct")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpuacct")).unwrap();
        fs::create_dir(root.path().join("memory")).unwrap();
        fs::create_dir(root.path().join("pids")).unwrap();
        let dirs = ControllerDirs::discover(root.path()).unwrap().join("a");
        assert_eq!(procs_files(&dirs).len(), 3);
    }

    #[test]
    fn reads_stats_and_oom_kills() {
        let (_root, roots) = fixture();
        let dirs = roots.join("c");
        create(&dirs, None).unwrap();
        let cpuacct = &dirs.cpuacct;
        let memory = &dirs.memory;
        fs::write(cpuacct.join("cpuacct.usage"), "123456789\n").unwrap();
        fs::write(memory.join("memory.usage_in_bytes"), "10000\n").unwrap();
        fs::write(
            memory.join("memory.stat"),
            "cache 5000\ninactive_file 1\ntotal_inactive_file 4000\n",
        )
        .unwrap();
        fs::write(
            memory.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(
            stats(&dirs).unwrap(),
            CgroupStats {
                cpu_usage_ns: 123_456_789,
                memory_usage_bytes: 10_000,
                memory_working_set_bytes: 6_000,
            }
        );
        assert_eq!(oom_kill_count(&dirs).unwrap(), 2);

        fs::write(memory.join("memory.oom_control"), "oom_kill_disable 0\n").unwrap();
        let err = oom_kill_count(&dirs).unwrap_err().to_string();
        assert!(
            err.contains("oom_kill") && err.contains("memory.oom_control"),
            "{err}"
        );
    }
}
