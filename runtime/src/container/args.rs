//! Command-line arguments of the `shim`, `run` and `exec` helper modes.

use std::path::PathBuf;

/// `skiff-runtime run`: run a bundle in the foreground, like `crun run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The OCI bundle directory (holds `config.json`).
    #[arg(long)]
    pub bundle: PathBuf,
    /// A name for the container, used in messages only.
    #[arg(long)]
    pub id: Option<String>,
}

/// Default size at which the container log file is rotated (10 MiB).
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of log files kept, the live one included.
pub const DEFAULT_LOG_MAX_FILES: u32 = 5;

/// `skiff-runtime shim`: start a container and stay as its parent (logs, exit status).
#[derive(clap::Args, Debug, Clone)]
pub struct ShimArgs {
    /// The OCI bundle directory (holds `config.json`).
    #[arg(long)]
    pub bundle: PathBuf,
    /// The container's id, used in messages.
    #[arg(long)]
    pub id: String,
    /// Directory for `shim.json`, `exit.json` and the shim's own `shim.log`.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The container's log file, written in the CRI log format.
    #[arg(long)]
    pub log: PathBuf,
    /// Size in bytes past which the log file is rotated.
    #[arg(long, default_value_t = DEFAULT_LOG_MAX_SIZE)]
    pub log_max_size: u64,
    /// Number of log files kept, the live one included.
    #[arg(long, default_value_t = DEFAULT_LOG_MAX_FILES)]
    pub log_max_files: u32,
}

/// `skiff-runtime exec`: run a command inside a running container.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// The container's OCI bundle directory (user, capabilities and env come from it).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Host pid of the container's init process.
    #[arg(long)]
    pub pid: i32,
    /// Make stdin (a terminal) the controlling terminal of the command.
    #[arg(long)]
    pub tty: bool,
    /// Working directory of the command (default: the bundle's `process.cwd`).
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables, `KEY=VALUE`, overriding the bundle's.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}
