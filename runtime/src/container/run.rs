//! `skiff-runtime run`: a container in the foreground, like `crun run`.

use super::args::RunArgs;
use super::bundle::Bundle;
use super::init::{ChildStdio, EXIT_SETUP_FAILED};
use super::launch::{launch_container, wait_exit, Launch};
use super::ContainerError;

/// Runs the bundle with the caller's stdio and returns the container's exit code (128 +
/// signal when it was killed). Setup failures are printed to stderr.
pub fn run_main(args: RunArgs) -> i32 {
    let name = args
        .id
        .clone()
        .unwrap_or_else(|| args.bundle.display().to_string());
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("skiff-runtime run: container {name}: {err}");
            match err {
                ContainerError::Init(failure) => failure.exit_code(),
                _ => EXIT_SETUP_FAILED,
            }
        }
    }
}

fn run(args: &RunArgs) -> Result<i32, ContainerError> {
    let bundle = Bundle::load(&args.bundle)?;
    match launch_container(&bundle, ChildStdio::default())? {
        Launch::Running(pid) => Ok(wait_exit(pid)?.0),
        Launch::Failed { pid, failure } => {
            // The child exits right after reporting; reap it before saying why.
            let _ = wait_exit(pid);
            Err(ContainerError::Init(failure))
        }
    }
}
