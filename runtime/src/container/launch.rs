//! Parent side of starting a process: fork, then learn from a close-on-exec pipe whether
//! the child reached `execve`.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use super::bundle::Bundle;
use super::init::{container_steps, run_child, ChildStdio, InitFailure};
use super::namespaces::NamespacePlan;
use super::{exit_code_of, ContainerError};

/// How a forked child ended its setup.
#[derive(Debug)]
pub(crate) enum Launch {
    /// The child is running its command.
    Running(Pid),
    /// The child failed before `execve` and is exiting; it still has to be reaped.
    Failed {
        /// The child's pid.
        pid: Pid,
        /// What failed.
        failure: InitFailure,
    },
}

/// Starts the container of `bundle` as a child of the calling (single-threaded) process.
pub(crate) fn launch_container(
    bundle: &Bundle,
    stdio: ChildStdio,
) -> Result<Launch, ContainerError> {
    let process = bundle.process()?;
    if process.terminal() == Some(true) {
        return Err(ContainerError::Unsupported {
            what: "process.terminal true".into(),
        });
    }
    if process.args().as_ref().is_none_or(|args| args.is_empty()) {
        return Err(ContainerError::Invalid {
            what: "process.args".into(),
            reason: "empty".into(),
        });
    }
    let plan = NamespacePlan::from_spec(&bundle.spec)?;
    plan.enter_pid_namespace()?;
    fork_with_report(move || container_steps(bundle, &plan, stdio))
}

/// Forks; the child runs `steps`, which return only on failure. Must be called from a
/// single-threaded process.
pub(crate) fn fork_with_report(
    steps: impl FnOnce() -> Result<std::convert::Infallible, InitFailure>,
) -> Result<Launch, ContainerError> {
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|err| ContainerError::sys("create the report pipe", err))?;
    // SAFETY: the helper modes are single-threaded, so the child may run arbitrary code.
    match unsafe { fork() }.map_err(|err| ContainerError::sys("fork", err))? {
        ForkResult::Child => {
            drop(report_read);
            run_child(report_write, steps)
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            // The closure (and any descriptors it owns for the child) is only needed there.
            drop(steps);
            match read_report(report_read)? {
                None => Ok(Launch::Running(child)),
                Some(failure) => Ok(Launch::Failed {
                    pid: child,
                    failure,
                }),
            }
        }
    }
}

/// Reads the child's report until EOF: nothing means `execve` succeeded.
fn read_report(report: OwnedFd) -> Result<Option<InitFailure>, ContainerError> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(report.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(nix::Error::EINTR) => continue,
            Err(err) => return Err(ContainerError::sys("read the child's report", err)),
        }
    }
    if bytes.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        InitFailure {
            step: "init".into(),
            errno: None,
            message: format!(
                "unreadable failure report {:?}: {err}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    })))
}

/// Waits for `pid` to end and returns its exit code and killing signal.
pub(crate) fn wait_exit(pid: Pid) -> Result<(i32, Option<i32>), ContainerError> {
    loop {
        match waitpid(pid, None) {
            Ok(status) => {
                if let Some(code) = exit_code_of(status) {
                    return Ok(code);
                }
            }
            Err(nix::Error::EINTR) => continue,
            Err(err) => return Err(ContainerError::sys(format!("wait for pid {pid}"), err)),
        }
    }
}
