//! `skiff-runtime exec`: a command inside a running container.
//!
//! The exec process opens the container's cgroup files and namespace files while it
//! still sees the host, joins the namespaces (mount last, pid only takes effect for
//! children), forks, and the child joins the cgroups and becomes the bundle's process
//! (user, capabilities, no_new_privs, env) running the given command.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use nix::sched::{setns, CloneFlags};
use nix::unistd::setsid;

use super::args::ExecArgs;
use super::bundle::Bundle;
use super::cgroup::{cgroup_mounts, join_opened, open_process_cgroups};
use super::init::{at_step, become_process, reset_signals, EXIT_SETUP_FAILED};
use super::launch::{fork_with_report, wait_exit, Launch};
use super::ContainerError;

/// The namespaces joined, in order: the mount namespace last, since joining it changes
/// what paths mean.
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Runs the command and returns its exit code (128 + signal when killed); setup failures
/// are printed to stderr (127 when the command is not found).
pub fn exec_main(args: ExecArgs) -> i32 {
    match exec(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("skiff-runtime exec: pid {}: {err}", args.pid);
            match err {
                ContainerError::Init(failure) => failure.exit_code(),
                _ => EXIT_SETUP_FAILED,
            }
        }
    }
}

fn exec(args: &ExecArgs) -> Result<i32, ContainerError> {
    let bundle = Bundle::load(&args.bundle)?;
    let process = bundle.process()?.clone();
    let mut cgroups = open_process_cgroups(&cgroup_mounts()?, args.pid)?;
    let namespaces = open_namespaces(args.pid)?;
    for (name, flag, file) in &namespaces {
        setns(file, *flag).map_err(|err| {
            ContainerError::sys(format!("join {name} namespace of pid {}", args.pid), err)
        })?;
    }
    let env = merge_env(process.env().as_deref().unwrap_or_default(), &args.env);
    let cwd = args.cwd.clone().unwrap_or_else(|| process.cwd().clone());
    let tty = args.tty;
    let launch = fork_with_report(move || {
        at_step("cgroups", join_opened(&mut cgroups))?;
        at_step("signals", reset_signals())?;
        if tty {
            at_step("tty", take_terminal())?;
        }
        become_process(&process, &cwd, &args.command, &env)
    })?;
    match launch {
        Launch::Running(pid) => Ok(wait_exit(pid)?.0),
        Launch::Failed { pid, failure } => {
            let _ = wait_exit(pid);
            Err(ContainerError::Init(failure))
        }
    }
}

/// Opens `/proc/PID/ns/*` for the namespaces that differ from the caller's.
fn open_namespaces(pid: i32) -> Result<Vec<(&'static str, CloneFlags, File)>, ContainerError> {
    let mut opened = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{pid}/ns/{name}");
        let file =
            File::open(&path).map_err(|err| ContainerError::io(format!("open {path}"), err))?;
        let theirs = file
            .metadata()
            .map_err(|err| ContainerError::io(format!("stat {path}"), err))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map_err(|err| ContainerError::io(format!("stat /proc/self/ns/{name}"), err))?;
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            opened.push((name, flag, file));
        }
    }
    Ok(opened)
}

/// The bundle's env with `KEY=VALUE` overrides applied (same key replaced, new appended).
pub(crate) fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |entry: &str| entry.split_once('=').map_or(entry, |(k, _)| k).to_string();
    let mut merged: Vec<String> = base.to_vec();
    for entry in overrides {
        let wanted = key(entry);
        match merged.iter_mut().find(|existing| key(existing) == wanted) {
            Some(existing) => existing.clone_from(entry),
            None => merged.push(entry.clone()),
        }
    }
    merged
}

/// Makes stdin (a terminal) the controlling terminal of a new session.
fn take_terminal() -> Result<(), ContainerError> {
    setsid().map_err(|err| ContainerError::sys("setsid", err))?;
    let stdin = std::io::stdin();
    // SAFETY: TIOCSCTTY takes an integer argument.
    let rc = unsafe { libc::ioctl(stdin.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if rc < 0 {
        return Err(ContainerError::sys(
            "make stdin the controlling terminal (TIOCSCTTY)",
            nix::Error::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_env_overrides_by_key() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let merged = merge_env(&base, &["A=2".to_string(), "B=3".to_string()]);
        assert_eq!(merged, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
