//! `skiff-runtime`: the node daemon, and the helper modes it execs for container work.
//!
//! Helper modes (`shim`, `run`, `exec`) run before any async runtime exists: they are
//! single-threaded processes, so they may fork, setns and pivot_root safely.

use clap::{Parser, Subcommand};

mod daemon;
mod image_cli;

#[derive(Parser)]
#[command(
    name = "skiff-runtime",
    version,
    about = "skiff's node daemon",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    daemon: daemon::DaemonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start a container from an OCI bundle and stay as its parent (logs, exit status).
    Shim(skiff_runtime::container::ShimArgs),
    /// Run an OCI bundle in the foreground, like `crun run` (benchmarks, debugging).
    Run(skiff_runtime::container::RunArgs),
    /// Run a command inside a running container's namespaces and cgroups.
    Exec(skiff_runtime::container::ExecArgs),
    /// The node's image store: import, pull, ls, rm.
    Image(image_cli::ImageArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Shim(args)) => skiff_runtime::container::shim_main(args),
        Some(Command::Run(args)) => skiff_runtime::container::run_main(args),
        Some(Command::Exec(args)) => skiff_runtime::container::exec_main(args),
        Some(Command::Image(args)) => run_async(image_cli::run(args)),
        None => run_daemon(cli.daemon),
    };
    std::process::exit(code);
}

/// Runs a command's future on a fresh runtime; errors become a message and exit status 1.
fn run_async(task: impl std::future::Future<Output = anyhow::Result<()>>) -> i32 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff-runtime: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(task) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("skiff-runtime: {e:#}");
            1
        }
    }
}

fn run_daemon(args: daemon::DaemonArgs) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    run_async(daemon::run(args))
}
