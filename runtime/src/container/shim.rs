//! `skiff-runtime shim`: starts a container and stays as its parent.
//!
//! Protocol with the daemon: the shim's stdout is a pipe; the shim writes exactly one
//! JSON line ([`ShimReply`]) and then points its stdout and stderr at `/dev/null`. Before
//! answering `{"pid":..}` it writes `shim.json`; when the container has exited and its
//! output is drained it writes `exit.json` and exits 0. On a start failure it answers
//! `{"error":".."}` and exits 1. Its own diagnostics go to `shim.log`. It is a session
//! leader and a child subreaper, so it outlives the daemon and reaps orphans of the
//! container. It forwards no signal: the daemon signals the container pid directly.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, setsid, Pid};

use super::args::ShimArgs;
use super::bundle::Bundle;
use super::init::ChildStdio;
use super::launch::{launch_container, wait_exit, Launch};
use super::log::{CriLogWriter, Stream};
use super::state::{
    now_rfc3339_nanos, process_start_time, write_state, ExitState, ShimReply, ShimState,
    EXIT_STATE_FILE, SHIM_LOG_FILE, SHIM_STATE_FILE,
};
use super::{exit_code_of, ContainerError};

/// How long output is still collected after the container exited while a descendant
/// outside its pid namespace keeps the pipes open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// Runs the shim; returns its exit code (0 once `exit.json` is written, 1 if the
/// container could not be started).
pub fn shim_main(args: ShimArgs) -> i32 {
    // Fails only when already a group leader, which changes nothing for the shim.
    let _ = setsid();
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    init_diagnostics(&args);
    tracing::info!(id = %args.id, bundle = %args.bundle.display(), "shim starting");

    let running = match start(&args) {
        Ok(running) => running,
        Err(err) => {
            tracing::error!(id = %args.id, "start failed: {err}");
            answer(&ShimReply::Failed {
                error: error_line(&err),
            });
            return 1;
        }
    };
    answer(&ShimReply::Started {
        pid: running.pid.as_raw(),
    });
    match supervise(running) {
        Ok(exit) => {
            tracing::info!(id = %args.id, exit_code = exit.exit_code, "container exited");
            match write_state(&args.state_dir, EXIT_STATE_FILE, &exit) {
                Ok(()) => 0,
                Err(err) => {
                    tracing::error!(id = %args.id, "{err}");
                    1
                }
            }
        }
        Err(err) => {
            tracing::error!(id = %args.id, "supervising failed: {err}");
            1
        }
    }
}

/// `"<step>: <reason>"` for the daemon.
fn error_line(err: &ContainerError) -> String {
    match err {
        ContainerError::Init(failure) => failure.to_string(),
        other => format!("setup: {other}"),
    }
}

/// Sends diagnostics to `SDIR/shim.log`; without that file they are dropped.
fn init_diagnostics(args: &ShimArgs) {
    let path = args.state_dir.join(SHIM_LOG_FILE);
    if let Ok(file) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    }
}

/// Writes the one reply line, then detaches stdin, stdout and stderr from the daemon.
fn answer(reply: &ShimReply) {
    let line =
        serde_json::to_string(reply).unwrap_or_else(|_| r#"{"error":"reply: encoding"}"#.into());
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        tracing::warn!("cannot answer the daemon: {err}");
    }
    drop(stdout);
    match File::options().read(true).write(true).open("/dev/null") {
        Ok(null) => {
            let _ = nix::unistd::dup2_stdin(&null);
            let _ = nix::unistd::dup2_stdout(&null);
            let _ = nix::unistd::dup2_stderr(&null);
        }
        Err(err) => tracing::warn!("cannot open /dev/null: {err}"),
    }
}

/// A started container and what the shim needs to follow it.
struct Running {
    pid: Pid,
    stdout: OwnedFd,
    stderr: OwnedFd,
    log: CriLogWriter,
}

fn start(args: &ShimArgs) -> Result<Running, ContainerError> {
    let bundle = Bundle::load(&args.bundle)?;
    let log = CriLogWriter::open(&args.log, args.log_max_size, args.log_max_files)?;
    let (stdout_read, stdout_write) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|err| ContainerError::sys("create the stdout pipe", err))?;
    let (stderr_read, stderr_write) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|err| ContainerError::sys("create the stderr pipe", err))?;
    let null = File::open("/dev/null").map_err(|err| ContainerError::io("open /dev/null", err))?;
    // Blocked before the fork so no SIGCHLD is lost before the signalfd exists; the child
    // clears its mask.
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&sigchld), None)
        .map_err(|err| ContainerError::sys("block SIGCHLD", err))?;

    let stdio = ChildStdio {
        stdin: Some(null.into()),
        stdout: Some(stdout_write),
        stderr: Some(stderr_write),
    };
    let pid = match launch_container(&bundle, stdio)? {
        Launch::Running(pid) => pid,
        Launch::Failed { pid, failure } => {
            let _ = wait_exit(pid);
            return Err(ContainerError::Init(failure));
        }
    };
    let recorded = process_start_time(pid.as_raw()).and_then(|pid_start_time| {
        write_state(
            &args.state_dir,
            SHIM_STATE_FILE,
            &ShimState {
                shim_pid: std::process::id() as i32,
                pid: pid.as_raw(),
                pid_start_time,
                started_at: now_rfc3339_nanos(),
            },
        )
    });
    if let Err(err) = recorded {
        // A container the daemon cannot find after a restart must not run.
        let _ = kill(pid, Signal::SIGKILL);
        let _ = wait_exit(pid);
        return Err(err);
    }
    Ok(Running {
        pid,
        stdout: stdout_read,
        stderr: stderr_read,
        log,
    })
}

/// Copies the container's output into the log until it has exited and its pipes are
/// drained, reaping every child on the way; returns how it ended.
fn supervise(mut running: Running) -> Result<ExitState, ContainerError> {
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    let signals = SignalFd::with_flags(&sigchld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|err| ContainerError::sys("create a signalfd for SIGCHLD", err))?;
    let mut open = [true, true];
    let mut exit: Option<(i32, Option<i32>)> = reap(running.pid);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if open == [false, false] && exit.is_some() {
            break;
        }
        let timeout = if exit.is_some() {
            PollTimeout::try_from(DRAIN_AFTER_EXIT).unwrap_or(PollTimeout::NONE)
        } else {
            PollTimeout::NONE
        };
        let (ready_sig, ready_out, ready_err) = {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            let streams = [running.stdout.as_fd(), running.stderr.as_fd()];
            let mut slots = [None, None];
            for (index, fd) in streams.into_iter().enumerate() {
                if open[index] {
                    slots[index] = Some(fds.len());
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
            }
            let ready = match poll(&mut fds, timeout) {
                Ok(ready) => ready,
                Err(nix::Error::EINTR) => continue,
                Err(err) => return Err(ContainerError::sys("poll the container's output", err)),
            };
            if ready == 0 {
                // The container is gone and nothing more came: stop waiting for
                // descendants that still hold the pipes.
                break;
            }
            let is_ready = |slot: Option<usize>| {
                slot.and_then(|i| fds[i].revents())
                    .is_some_and(|events| !events.is_empty())
            };
            (is_ready(Some(0)), is_ready(slots[0]), is_ready(slots[1]))
        };
        if ready_sig {
            while let Ok(Some(_)) = signals.read_signal() {}
            if let Some(code) = reap(running.pid) {
                exit = Some(code);
            }
        }
        for (ready, stream, index) in [
            (ready_out, Stream::Stdout, 0),
            (ready_err, Stream::Stderr, 1),
        ] {
            if !ready {
                continue;
            }
            let fd = if index == 0 {
                &running.stdout
            } else {
                &running.stderr
            };
            match nix::unistd::read(fd.as_fd(), &mut buf) {
                Ok(0) => {
                    open[index] = false;
                    log_error(running.log.finish(stream));
                }
                Ok(n) => log_error(running.log.write(stream, &buf[..n])),
                Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
                Err(err) => {
                    tracing::error!("read container {stream:?}: {err}");
                    open[index] = false;
                }
            }
        }
    }
    for stream in [Stream::Stdout, Stream::Stderr] {
        log_error(running.log.finish(stream));
    }
    reap(running.pid);
    let (exit_code, signal) = exit.ok_or_else(|| ContainerError::Invalid {
        what: format!("container pid {}", running.pid),
        reason: "exit status lost".into(),
    })?;
    Ok(ExitState {
        exit_code,
        signal,
        finished_at: now_rfc3339_nanos(),
    })
}

/// Reaps every child that has ended; returns the container's exit if it was among them.
fn reap(container: Pid) -> Option<(i32, Option<i32>)> {
    let mut container_exit = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return container_exit,
            Ok(status) => {
                if status.pid() == Some(container) {
                    container_exit = exit_code_of(status);
                }
            }
        }
    }
}

/// Log writing must never stop the shim from draining the pipes (the container would
/// block on a full pipe), so its errors are only recorded.
fn log_error(result: Result<(), ContainerError>) {
    if let Err(err) = result {
        tracing::error!("container log: {err}");
    }
}
