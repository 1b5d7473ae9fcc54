//! Reading and writing cgroup files, and emptying and removing cgroup trees: the parts that
//! are the same in both hierarchies.
//!
//! cgroups-rs reads statistics with `unwrap_or(0)`, so a missing file reads as zero usage;
//! the readers here fail instead, naming the file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, warn};

use super::CgroupError;

/// The file listing a cgroup's processes, in both hierarchies.
pub(super) const PROCS_FILE: &str = "cgroup.procs";

/// How long [`kill_all`] keeps killing before it gives up on a cgroup that keeps processes
/// (one in uninterruptible sleep, say).
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between rounds of killing, which gives SIGKILL time to land.
const KILL_ROUND_PAUSE: Duration = Duration::from_millis(20);
/// Attempts at `rmdir`: right after its last process dies the kernel may still report a
/// cgroup busy for a moment (runc retries the same way).
const RMDIR_ATTEMPTS: u32 = 5;

pub(super) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}

/// Wraps an error of a cgroups-rs controller with the cgroup, file and value it was writing.
pub(super) fn controller_error(
    dir: &Path,
    file: &'static str,
    value: impl ToString,
) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError {
    let dir = dir.to_path_buf();
    let value = value.to_string();
    move |source| CgroupError::Controller {
        dir,
        file,
        value,
        source: Box::new(source),
    }
}

pub(super) fn read_string(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(io_error("read", path))
}

/// A file holding one number (`cpuacct.usage`, `memory.current`).
pub(super) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read_string(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {:?}", text.trim()),
    })
}

/// The value of `key` in a flat keyed file (`memory.stat`, `memory.events`, `cpu.stat`:
/// one `key value` pair a line).
pub(super) fn read_keyed_u64(path: &Path, key: &str) -> Result<u64, CgroupError> {
    let text = read_string(path)?;
    let value = text
        .lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim())
        .ok_or_else(|| CgroupError::Parse {
            path: path.to_path_buf(),
            reason: format!("no {key:?} line"),
        })?;
    value.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("{key:?} is {value:?}, not a number"),
    })
}

/// Writes a whole value to a cgroup file in one `write`, as the kernel expects. Creating the
/// file is only for fixtures: cgroupfs files exist already.
pub(super) fn write_value(path: &Path, value: &str) -> Result<(), CgroupError> {
    let write_error = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(write_error)?;
    file.write_all(value.as_bytes()).map_err(write_error)
}

/// Creates `dir` and any missing parent; an existing directory is fine.
pub(super) fn create_dir(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(dir).map_err(io_error("create cgroup", dir))
}

/// The processes of one cgroup (not its children); none when the cgroup does not exist.
pub(super) fn procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join(PROCS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    text.lines()
        .map(|line| {
            line.trim().parse().map_err(|_| CgroupError::Parse {
                path: path.clone(),
                reason: format!("{line:?} is not a process id"),
            })
        })
        .collect()
}

/// `dir` and every cgroup below it, children before their parents (the order `rmdir` needs);
/// empty when `dir` does not exist.
pub(super) fn subtree(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    let mut tree = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let is_dir = entry
            .file_type()
            .map_err(io_error("inspect", &entry.path()))?
            .is_dir();
        if is_dir {
            tree.extend(subtree(&entry.path())?);
        }
    }
    tree.push(dir.to_path_buf());
    Ok(tree)
}

/// Every process in the cgroups `dirs` and below them, sorted, without repeats.
pub(super) fn subtree_pids(dirs: &[PathBuf]) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    for dir in dirs {
        for cgroup in subtree(dir)? {
            pids.extend(procs(&cgroup)?);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// SIGKILLs every process in the cgroups `dirs` and below, round after round until none is
/// left (a process may fork while we kill), for at most [`KILL_TIMEOUT`].
///
/// A pid read from `cgroup.procs` could in principle be reused by an unrelated process
/// before the signal lands; the window is a few microseconds, and runc without a freezer
/// takes the same risk.
pub(super) fn kill_all(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let started = Instant::now();
    loop {
        let pids = subtree_pids(dirs)?;
        if pids.is_empty() {
            return Ok(());
        }
        if started.elapsed() > KILL_TIMEOUT {
            return Err(CgroupError::StillPopulated {
                path: dirs.first().cloned().unwrap_or_default(),
                pids,
                waited: KILL_TIMEOUT,
            });
        }
        debug!(?pids, "killing processes left in cgroup");
        for pid in pids {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(errno) => warn!(pid, %errno, "cannot kill process left in cgroup"),
            }
        }
        thread::sleep(KILL_ROUND_PAUSE);
    }
}

/// Removes the cgroup `dir` and every cgroup below it, children first; already gone is fine.
/// The cgroups must hold no processes ([`kill_all`] first).
pub(super) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for cgroup in subtree(dir)? {
        remove_dir(&cgroup)?;
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let mut pause = Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_ATTEMPTS => {
                thread::sleep(pause);
                pause *= 2;
                attempt += 1;
            }
            Err(e) => return Err(io_error("remove cgroup", dir)(e)),
        }
    }
}
