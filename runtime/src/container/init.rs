//! The code between fork and exec: what the container process does to itself.
//!
//! It runs in a forked child of a single-threaded process, so allocating is safe. Any
//! failure is written as one JSON [`InitFailure`] to a close-on-exec pipe that the parent
//! reads; a successful `execve` closes that pipe with nothing written.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, execve, sethostname};
use oci_spec::runtime::{PosixRlimitType, Process};
use serde::{Deserialize, Serialize};

use super::bundle::Bundle;
use super::caps::CapabilitySets;
use super::cgroup::{cgroup_mounts, join_cgroups_path};
use super::mounts::prepare_rootfs;
use super::namespaces::NamespacePlan;
use super::user::switch_user;
use super::ContainerError;

/// PATH used to find the command when the process env has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit code of a child that could not find its command (as shells use).
pub(crate) const EXIT_NOT_FOUND: i32 = 127;
/// Exit code of a child whose command could not be executed (as shells use).
pub(crate) const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit code of a child that failed in another step.
pub(crate) const EXIT_SETUP_FAILED: i32 = 1;

/// Why a container (or exec) process failed before `execve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{step}: {message}")]
pub struct InitFailure {
    /// The failing step (`namespaces`, `mounts`, `user`, `exec`, ...).
    pub step: String,
    /// The errno, when a system call failed.
    pub errno: Option<i32>,
    /// What failed, naming the object.
    pub message: String,
}

impl InitFailure {
    fn new(step: &str, err: &ContainerError) -> Self {
        Self {
            step: step.to_string(),
            errno: err.errno(),
            message: err.to_string(),
        }
    }

    /// The exit code the failed child uses: 127 when the command was not found, 126 when
    /// it could not be executed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match (self.step.as_str(), self.errno) {
            ("exec", Some(libc::ENOENT)) | ("exec", Some(libc::ENOTDIR)) => EXIT_NOT_FOUND,
            ("exec", _) => EXIT_CANNOT_EXECUTE,
            _ => EXIT_SETUP_FAILED,
        }
    }
}

/// Standard streams to give the child; `None` keeps the inherited one.
#[derive(Debug, Default)]
pub(crate) struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Runs `steps` in the child and, as they only return on failure, reports that failure
/// on `report` and exits. Never returns.
pub(crate) fn run_child(
    report: OwnedFd,
    steps: impl FnOnce() -> Result<std::convert::Infallible, InitFailure>,
) -> ! {
    let failure = match steps() {
        Ok(never) => match never {},
        Err(failure) => failure,
    };
    if let Ok(json) = serde_json::to_vec(&failure) {
        // Nothing more can be done if the parent is gone.
        let _ = nix::unistd::write(report.as_fd(), &json);
    }
    // SAFETY: _exit skips atexit handlers and buffered output shared with the parent.
    unsafe { libc::_exit(failure.exit_code()) }
}

/// Tags an error with the step it happened in.
pub(crate) fn at_step<T>(step: &str, result: Result<T, ContainerError>) -> Result<T, InitFailure> {
    result.map_err(|err| InitFailure::new(step, &err))
}

/// The container init: everything from joining cgroups to `execve`.
pub(crate) fn container_steps(
    bundle: &Bundle,
    plan: &NamespacePlan,
    stdio: ChildStdio,
) -> Result<std::convert::Infallible, InitFailure> {
    let process = at_step("config", bundle.process())?;
    at_step("stdio", set_stdio(stdio))?;
    at_step("signals", reset_signals())?;
    let linux = bundle.spec.linux().as_ref();
    if let Some(cgroups_path) = linux.and_then(|linux| linux.cgroups_path().as_ref()) {
        at_step(
            "cgroups",
            cgroup_mounts().and_then(|mounts| join_cgroups_path(&mounts, cgroups_path)),
        )?;
    }
    if let Some(score) = process.oom_score_adj() {
        at_step(
            "oom_score_adj",
            fs::write("/proc/self/oom_score_adj", score.to_string())
                .map_err(|err| ContainerError::io(format!("set oom_score_adj {score}"), err)),
        )?;
    }
    at_step("namespaces", plan.enter_other_namespaces())?;
    if let Some(sysctls) = linux.and_then(|linux| linux.sysctl().as_ref()) {
        at_step("sysctl", apply_sysctls(sysctls, plan))?;
    }
    // Mount points the executor creates must not be group or world writable; device
    // nodes get their modes set explicitly.
    umask(Mode::from_bits_truncate(0o022));
    at_step("mounts", prepare_rootfs(bundle))?;
    if plan.creates_uts() {
        if let Some(hostname) = bundle.spec.hostname() {
            at_step(
                "hostname",
                sethostname(hostname)
                    .map_err(|err| ContainerError::sys(format!("sethostname {hostname:?}"), err)),
            )?;
        }
    }
    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    become_process(process, process.cwd(), &args, &env)
}

/// The part shared by container init and exec: rlimits, cwd, user, capabilities,
/// no_new_privs, umask, then `execve`.
pub(crate) fn become_process(
    process: &Process,
    cwd: &Path,
    args: &[String],
    env: &[String],
) -> Result<std::convert::Infallible, InitFailure> {
    at_step("rlimits", apply_rlimits(process))?;
    at_step(
        "cwd",
        chdir(cwd).map_err(|err| ContainerError::sys(format!("chdir {}", cwd.display()), err)),
    )?;
    let capabilities = process
        .capabilities()
        .as_ref()
        .map(CapabilitySets::from_spec)
        .transpose();
    let capabilities = at_step("capabilities", capabilities)?;
    if let Some(sets) = &capabilities {
        at_step("capabilities", sets.drop_bounding())?;
    }
    at_step("user", switch_user(process.user(), capabilities.is_some()))?;
    if let Some(sets) = &capabilities {
        at_step("capabilities", sets.apply())?;
    }
    if process.no_new_privileges() == Some(true) {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if rc < 0 {
            let err = ContainerError::sys("prctl PR_SET_NO_NEW_PRIVS", nix::Error::last());
            return Err(InitFailure::new("no_new_privs", &err));
        }
    }
    let mask = process.user().umask().unwrap_or(0o022);
    umask(Mode::from_bits_truncate(mask));
    Err(InitFailure::new("exec", &exec_command(args, env)))
}

fn set_stdio(stdio: ChildStdio) -> Result<(), ContainerError> {
    if let Some(fd) = &stdio.stdin {
        dup2_stdin(fd).map_err(|err| ContainerError::sys("set stdin", err))?;
    }
    if let Some(fd) = &stdio.stdout {
        dup2_stdout(fd).map_err(|err| ContainerError::sys("set stdout", err))?;
    }
    if let Some(fd) = &stdio.stderr {
        dup2_stderr(fd).map_err(|err| ContainerError::sys("set stderr", err))?;
    }
    drop(stdio);
    // No descriptor of the caller beyond stdio may reach the container.
    // SAFETY: close_range with integer arguments only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(ContainerError::sys(
            "mark inherited descriptors close-on-exec",
            nix::Error::last(),
        ));
    }
    Ok(())
}

/// Undoes what the caller's runtime set and `execve` would keep: the blocked signal
/// mask (the shim blocks SIGCHLD) and ignored SIGPIPE (Rust's default).
pub(crate) fn reset_signals() -> Result<(), ContainerError> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|err| ContainerError::sys("clear the signal mask", err))?;
    // SAFETY: installing the default disposition runs no handler code.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .map_err(|err| ContainerError::sys("reset SIGPIPE", err))?;
    Ok(())
}

/// Checks that a sysctl only touches a namespace the container has of its own.
pub(crate) fn check_sysctl(key: &str, plan: &NamespacePlan) -> Result<(), ContainerError> {
    use nix::sched::CloneFlags;
    let needs = if key.starts_with("net.") {
        CloneFlags::CLONE_NEWNET
    } else if key.starts_with("fs.mqueue.")
        || matches!(
            key,
            "kernel.msgmax" | "kernel.msgmnb" | "kernel.msgmni" | "kernel.sem"
        )
        || matches!(key, "kernel.shmall" | "kernel.shmmax" | "kernel.shmmni")
        || key == "kernel.shm_rmid_forced"
    {
        CloneFlags::CLONE_NEWIPC
    } else if matches!(key, "kernel.hostname" | "kernel.domainname") {
        CloneFlags::CLONE_NEWUTS
    } else {
        return Err(ContainerError::Invalid {
            what: format!("sysctl {key}"),
            reason: "not namespaced, it would change the host".into(),
        });
    };
    if !plan.private.contains(needs) {
        return Err(ContainerError::Invalid {
            what: format!("sysctl {key}"),
            reason: format!("the container shares the host's {needs:?} namespace"),
        });
    }
    Ok(())
}

/// Writes the sysctls through the host's /proc: namespaced entries resolve against the
/// namespaces of the writing process, which are the container's by now.
fn apply_sysctls(
    sysctls: &HashMap<String, String>,
    plan: &NamespacePlan,
) -> Result<(), ContainerError> {
    for (key, value) in sysctls {
        check_sysctl(key, plan)?;
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        fs::write(&path, value)
            .map_err(|err| ContainerError::io(format!("set sysctl {key}={value}"), err))?;
    }
    Ok(())
}

fn apply_rlimits(process: &Process) -> Result<(), ContainerError> {
    for limit in process.rlimits().iter().flatten() {
        let resource = match limit.typ() {
            PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
            PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
            PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
            PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
            PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
            PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
            PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
            PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
            PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
            PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
            PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
            PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
            PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
            PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
            PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
            PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
        };
        let (mut soft, mut hard) = (limit.soft(), limit.hard());
        // Raising a hard limit needs CAP_SYS_RESOURCE, which some hosts withhold even from
        // root: the container then gets the highest limit it may have, not a failed start.
        if let (Err(Errno::EPERM), Ok((_, current_hard))) =
            (setrlimit(resource, soft, hard), getrlimit(resource))
        {
            if hard > current_hard {
                hard = current_hard;
                soft = soft.min(current_hard);
            }
        }
        setrlimit(resource, soft, hard).map_err(|err| {
            ContainerError::sys(
                format!(
                    "setrlimit {:?} soft {} hard {}",
                    limit.typ(),
                    limit.soft(),
                    limit.hard()
                ),
                err,
            )
        })?;
    }
    Ok(())
}

/// Executes `args` with `env`, searching the env's PATH like execvp when the command has
/// no slash. Only returns on failure.
fn exec_command(args: &[String], env: &[String]) -> ContainerError {
    let Some(command) = args.first() else {
        return ContainerError::Invalid {
            what: "process.args".into(),
            reason: "empty".into(),
        };
    };
    let to_cstrings = |items: &[String], what: &str| {
        items
            .iter()
            .map(|item| CString::new(item.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ContainerError::Invalid {
                what: what.to_string(),
                reason: "contains a NUL byte".into(),
            })
    };
    let (c_args, c_env) = match (
        to_cstrings(args, "process.args"),
        to_cstrings(env, "process.env"),
    ) {
        (Ok(c_args), Ok(c_env)) => (c_args, c_env),
        (Err(err), _) | (_, Err(err)) => return err,
    };
    let failed = |path: &str, err: nix::Error| ContainerError::sys(format!("exec {path:?}"), err);
    if command.contains('/') {
        let Ok(path) = CString::new(command.as_bytes()) else {
            return failed(command, nix::Error::EINVAL);
        };
        return match execve(&path, &c_args, &c_env) {
            Err(err) => failed(command, err),
            Ok(never) => match never {},
        };
    }
    let search = env
        .iter()
        .find_map(|entry| entry.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    for dir in search.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let Ok(candidate) = CString::new(format!("{dir}/{command}")) else {
            continue;
        };
        match execve(&candidate, &c_args, &c_env) {
            Err(nix::Error::ENOENT) | Err(nix::Error::ENOTDIR) => {}
            Err(nix::Error::EACCES) => denied = true,
            Err(err) => return failed(command, err),
            Ok(never) => match never {},
        }
    }
    let err = if denied {
        nix::Error::EACCES
    } else {
        nix::Error::ENOENT
    };
    ContainerError::sys(format!("exec {command:?} (searched PATH {search})"), err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, SpecBuilder};

    fn plan_with(kinds: &[LinuxNamespaceType]) -> NamespacePlan {
        let namespaces = kinds
            .iter()
            .map(|kind| {
                LinuxNamespaceBuilder::default()
                    .typ(*kind)
                    .build()
                    .expect("ns")
            })
            .collect::<Vec<_>>();
        let spec = SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces)
                    .build()
                    .expect("linux"),
            )
            .build()
            .expect("spec");
        NamespacePlan::from_spec(&spec).expect("plan")
    }

    #[test]
    fn sysctls_must_stay_in_the_containers_namespaces() {
        let plan = plan_with(&[LinuxNamespaceType::Network]);
        assert!(check_sysctl("net.ipv4.ip_forward", &plan).is_ok());
        assert!(check_sysctl("kernel.shmmax", &plan).is_err());
        assert!(check_sysctl("vm.swappiness", &plan).is_err());
        let plan = plan_with(&[LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts]);
        assert!(check_sysctl("kernel.shmmax", &plan).is_ok());
        assert!(check_sysctl("kernel.hostname", &plan).is_ok());
        assert!(check_sysctl("net.core.somaxconn", &plan).is_err());
    }

    #[test]
    fn failure_exit_codes_follow_the_shell() {
        let failure = |step: &str, errno| InitFailure {
            step: step.into(),
            errno,
            message: String::new(),
        };
        assert_eq!(failure("exec", Some(libc::ENOENT)).exit_code(), 127);
        assert_eq!(failure("exec", Some(libc::EACCES)).exit_code(), 126);
        assert_eq!(failure("mounts", Some(libc::ENOENT)).exit_code(), 1);
    }
}
