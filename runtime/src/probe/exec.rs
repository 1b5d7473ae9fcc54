//! Exec probes and hooks: `skiff-runtime exec --bundle DIR --pid PID -- CMD...`.
//!
//! The exec helper is started in a process group of its own; the command it forks inside
//! the container stays in that group (it does not call setsid without a TTY), so on a
//! timeout, or when the caller drops the future, killing the group kills the command
//! inside the container too, not only the helper. Stdout and stderr share one pipe so the
//! captured output keeps their order, as the kubelet's single buffer does.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe::Receiver;
use tracing::debug;

use super::{ProbeError, ProbeResult, ProbeTarget, MAX_EXEC_OUTPUT};

/// How a command run in a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecEnd {
    /// It exited (code 128 + signal when killed by one); combined output, truncated.
    Exited {
        /// The exit code.
        code: i32,
        /// Stdout and stderr, at most [`MAX_EXEC_OUTPUT`] bytes.
        output: String,
    },
    /// It ran past the timeout and its process group was killed.
    TimedOut,
}

/// Kills a process group on drop unless disarmed.
struct GroupKill {
    pgid: Option<Pid>,
}

impl GroupKill {
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            if let Err(err) = killpg(pgid, Signal::SIGKILL) {
                debug!(pgid = pgid.as_raw(), error = %err, "kill exec process group");
            }
        }
    }
}

/// Runs `command` in the container of `target`, killing it after `timeout`.
pub(crate) async fn exec_in_container(
    target: &ProbeTarget,
    command: &[String],
    timeout: Duration,
) -> Result<ExecEnd, ProbeError> {
    if command.is_empty() {
        return Err(ProbeError::EmptyCommand);
    }
    let fail = |source: std::io::Error| ProbeError::Exec {
        binary: target.exec_binary.clone(),
        pid: target.pid,
        source,
    };
    let (read_end, write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| fail(errno.into()))?;
    let write_end_for_stderr = write_end.try_clone().map_err(fail)?;
    let mut child = {
        let mut helper = tokio::process::Command::new(&target.exec_binary);
        helper
            .arg("exec")
            .arg("--bundle")
            .arg(&target.instance_dir)
            .arg("--pid")
            .arg(target.pid.to_string())
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::from(write_end_for_stderr))
            .process_group(0)
            .kill_on_drop(true);
        // The command (and with it our copies of the write end) is dropped at the end of
        // this block, so the reader sees EOF when the helper and its command are done.
        helper.spawn().map_err(fail)?
    };
    let mut group = GroupKill {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    let output = Receiver::from_owned_fd(read_end).map_err(fail)?;
    let run = async { tokio::join!(child.wait(), read_limited(output)) };
    match tokio::time::timeout(timeout, run).await {
        Ok((status, output)) => {
            group.disarm();
            let status = status.map_err(fail)?;
            let code = status
                .code()
                .or_else(|| status.signal().map(|signal| 128 + signal))
                .unwrap_or(-1);
            Ok(ExecEnd::Exited { code, output })
        }
        Err(_) => {
            drop(group);
            // Reap the helper; the group was killed, so this returns at once.
            if let Err(err) = child.wait().await {
                debug!(error = %err, "reap timed-out exec helper");
            }
            Ok(ExecEnd::TimedOut)
        }
    }
}

/// Reads to EOF, keeping the first [`MAX_EXEC_OUTPUT`] bytes; the rest is drained so the
/// writer never blocks on a full pipe.
async fn read_limited(mut pipe: Receiver) -> String {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(err) => {
                debug!(error = %err, "read exec output");
                break;
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The kubelet's text for a command that ran past its timeout.
pub(crate) fn timed_out_message(command: &[String]) -> String {
    format!("command {:?} timed out", command.join(" "))
}

/// An exec probe: exit 0 is success; otherwise the output is the failure message.
pub(crate) async fn exec_probe(
    target: &ProbeTarget,
    command: &[String],
    timeout: Duration,
) -> ProbeResult {
    match exec_in_container(target, command, timeout).await {
        Ok(ExecEnd::Exited { code: 0, .. }) => ProbeResult::Success,
        Ok(ExecEnd::Exited { output, .. }) => ProbeResult::Failure(output),
        Ok(ExecEnd::TimedOut) => ProbeResult::Failure(timed_out_message(command)),
        Err(err) => ProbeResult::Unknown(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn timeout_message_quotes_the_command() {
        let command = vec!["sh".to_string(), "-c".into(), "sleep 5".into()];
        assert_eq!(
            timed_out_message(&command),
            "command \"sh -c sleep 5\" timed out"
        );
    }

    #[tokio::test]
    async fn missing_binary_is_unknown_not_failure() {
        let target = ProbeTarget {
            pod_ip: "127.0.0.1".parse().expect("ip"),
            container_ports: Vec::new(),
            exec_binary: PathBuf::from("/nonexistent/skiff-runtime"),
            instance_dir: PathBuf::from("/nonexistent"),
            pid: 1,
        };
        let result = exec_probe(&target, &["true".into()], Duration::from_secs(1)).await;
        assert!(
            matches!(&result, ProbeResult::Unknown(m) if m.contains("/nonexistent/skiff-runtime")),
            "{result:?}"
        );
    }
}
