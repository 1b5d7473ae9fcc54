//! `skiff-runtime`: the node daemon, and the helper modes it execs for container work.
//!
//! Helper modes (`shim`, `run`, `exec`) run before any async runtime exists: they are
//! single-threaded processes, so they may fork, setns and pivot_root safely.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "skiff-runtime", version, about = "skiff's node daemon")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start a container from an OCI bundle and stay as its parent (logs, exit status).
    #[cfg(feature = "wip-container")]
    Shim(skiff_runtime::container::ShimArgs),
    /// Run an OCI bundle in the foreground, like `crun run` (benchmarks, debugging).
    #[cfg(feature = "wip-container")]
    Run(skiff_runtime::container::RunArgs),
    /// Run a command inside a running container's namespaces and cgroups.
    #[cfg(feature = "wip-container")]
    Exec(skiff_runtime::container::ExecArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        #[cfg(feature = "wip-container")]
        Some(Command::Shim(args)) => skiff_runtime::container::shim_main(args),
        #[cfg(feature = "wip-container")]
        Some(Command::Run(args)) => skiff_runtime::container::run_main(args),
        #[cfg(feature = "wip-container")]
        Some(Command::Exec(args)) => skiff_runtime::container::exec_main(args),
        None => {
            eprintln!("skiff-runtime: the daemon is not wired yet");
            2
        }
    };
    std::process::exit(code);
}
