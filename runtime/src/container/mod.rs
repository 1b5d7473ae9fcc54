//! The in-house OCI executor: skiff's replacement for runc/crun.
//!
//! Three helper modes of the `skiff-runtime` binary use it, each a fresh single-threaded
//! process (so forking is safe there, never in the daemon):
//!
//! - `run`: start a bundle in the foreground and exit with its exit code (benchmarks).
//! - `shim`: start a bundle, answer one JSON line to the daemon, then stay as the
//!   container's parent: copy its stdout/stderr into a CRI log file and record how it
//!   ended in `exit.json` (see [`ShimState`], [`ExitState`]).
//! - `exec`: run a command in a running container's namespaces and cgroups.
//!
//! Starting a container is one fork. The parent chooses the pid namespace (unshare or
//! setns only takes effect for children), forks, and reads a close-on-exec pipe: EOF
//! with no data means the child reached `execve`; otherwise the child wrote an
//! [`InitFailure`] naming the failing step and errno. The child ([`init`]) runs, in
//! order: join cgroups, oom score, setns/unshare, sysctls, mount namespace setup and
//! pivot_root ([`mounts`]), hostname, rlimits, cwd, bounding set, user ([`user`]),
//! capabilities ([`caps`]), no_new_privs, execve.

mod args;
mod bundle;
mod caps;
mod cgroup;
mod exec;
mod init;
mod launch;
mod log;
mod mounts;
mod namespaces;
mod run;
mod shim;
mod state;
mod user;

use std::path::PathBuf;

pub use args::{ExecArgs, RunArgs, ShimArgs, DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE};
pub use bundle::{
    Bundle, ANNOTATION_ROOTFS_LOWERDIR, ANNOTATION_ROOTFS_UPPERDIR, ANNOTATION_ROOTFS_WORKDIR,
};
pub use exec::exec_main;
pub use init::InitFailure;
pub use log::{CriLogWriter, Stream as LogStream, MAX_ENTRY_CONTENT};
pub use run::run_main;
pub use shim::shim_main;
pub use state::{
    process_alive, process_start_time, read_exit_state, read_shim_state, ExitState, ProcStat,
    ShimReply, ShimState, EXIT_STATE_FILE, SHIM_LOG_FILE, SHIM_STATE_FILE,
};

/// Everything that can go wrong while preparing, starting or watching a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The bundle's `config.json` could not be read or parsed.
    #[error("bundle config {path}: {source}")]
    Spec {
        /// Path of the config file.
        path: PathBuf,
        /// Why it could not be loaded.
        source: oci_spec::OciSpecError,
    },
    /// The spec asks for something this executor does not do.
    #[error("{what} is not supported")]
    Unsupported {
        /// The unsupported feature, with its value.
        what: String,
    },
    /// A value in the spec or the arguments is wrong.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The object and value at fault.
        what: String,
        /// Why it is refused.
        reason: String,
    },
    /// A system call failed.
    #[error("{step}: {source}")]
    Sys {
        /// What was being done, naming the object.
        step: String,
        /// The errno.
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done, naming the file.
        step: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A state file could not be encoded or decoded.
    #[error("{what}: {source}")]
    Json {
        /// The file or message at fault.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The container process failed before reaching `execve`.
    #[error("{0}")]
    Init(InitFailure),
}

impl ContainerError {
    /// Shorthand for a failed system call.
    pub(crate) fn sys(step: impl Into<String>, source: nix::Error) -> Self {
        Self::Sys {
            step: step.into(),
            source,
        }
    }

    /// Shorthand for a failed file operation.
    pub(crate) fn io(step: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            step: step.into(),
            source,
        }
    }

    /// The errno behind this error, when there is one.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Self::Sys { source, .. } => Some(*source as i32),
            Self::Io { source, .. } => source.raw_os_error(),
            Self::Init(failure) => failure.errno,
            _ => None,
        }
    }
}

/// Exit code of a process as a shell reports it: the code, or 128 + the signal number.
pub(crate) fn exit_code_of(status: nix::sys::wait::WaitStatus) -> Option<(i32, Option<i32>)> {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => Some((code, None)),
        WaitStatus::Signaled(_, signal, _) => Some((128 + signal as i32, Some(signal as i32))),
        _ => None,
    }
}
