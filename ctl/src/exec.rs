//! `skiffctl exec`: runs a command in a container through the API server (`pods/{name}/exec`,
//! a WebSocket the API server splices through to the node daemon), with `-i` for stdin and
//! `-t` for a terminal: the local terminal goes raw for the session and is restored after,
//! window size changes (SIGWINCH) are sent along, and skiffctl exits with the command's exit
//! code, as kubectl does.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, TerminalSize};
use kube::Api;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::Cluster;
use crate::errors;
use crate::podref;

/// What `exec` was asked for.
#[derive(Debug, Clone)]
pub struct ExecArgs {
    pub pod: String,
    pub container: Option<String>,
    pub stdin: bool,
    pub tty: bool,
    pub command: Vec<String>,
}

/// The local terminal in raw mode until dropped.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("putting the terminal in raw mode")?;
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        if let Err(e) = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved) {
            eprintln!("error: restoring the terminal's settings: {e}");
        }
    }
}

nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// The size of the terminal on stdout (else stdin), if there is one.
fn terminal_size() -> Option<TerminalSize> {
    use std::os::fd::AsRawFd;
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    for fd in [std::io::stdout().as_raw_fd(), std::io::stdin().as_raw_fd()] {
        // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given, which lives
        // for the whole call.
        if unsafe { tiocgwinsz(fd, &mut ws) }.is_ok() && ws.ws_col > 0 {
            return Some(TerminalSize {
                width: ws.ws_col,
                height: ws.ws_row,
            });
        }
    }
    None
}

/// Copies `from` to `to` chunk by chunk, flushing each, until `from` ends.
async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) -> Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.context("reading from the pod")?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])
            .await
            .and(to.flush().await)
            .context("writing the command's output")?;
    }
}

/// Reads stdin on a thread of its own (a blocking read must not hold up the exit) and feeds
/// it to the remote stdin, closing that at end of input.
fn feed_stdin(mut remote: impl AsyncWrite + Unpin + Send + 'static) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if remote.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = remote.shutdown().await;
    });
}

/// The exit code a finished command's status carries: 0 on success.
pub fn exit_code(status: &Status) -> Result<i32> {
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
            })
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.trim().parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    let message = status
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "the command failed without a reason".into());
    anyhow::bail!("{message}")
}

pub async fn run(cluster: &Cluster, args: &ExecArgs) -> Result<()> {
    if args.command.is_empty() {
        anyhow::bail!("you must specify at least one command for the container");
    }
    let name = podref::pod_name(&args.pod, "exec")?;
    let pod = podref::fetch(cluster, &name).await?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        anyhow::bail!("cannot exec into a container in a completed pod; current phase is {phase}");
    }
    let container = podref::choose_container(&pod, args.container.as_deref())?;
    let mut tty = args.tty;
    if tty && !(args.stdin && std::io::stdin().is_terminal()) {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        tty = false;
    }
    let ap = AttachParams::default()
        .container(container)
        .stdin(args.stdin)
        .stdout(true)
        .stderr(!tty)
        .tty(tty);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut process = pods
        .exec(&name, args.command.clone(), &ap)
        .await
        .map_err(errors::from_kube)?;

    let raw = if tty {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    if let Some(remote) = process.stdin() {
        feed_stdin(remote);
    }
    if let Some(mut sizes) = process.terminal_size() {
        tokio::spawn(async move {
            use futures::SinkExt;
            if let Some(size) = terminal_size() {
                let _ = sizes.send(size).await;
            }
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size() {
                    if sizes.send(size).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    let out = process
        .stdout()
        .map(|r| tokio::spawn(pump(r, tokio::io::stdout())));
    let err = process
        .stderr()
        .map(|r| tokio::spawn(pump(r, tokio::io::stderr())));
    let status = match process.take_status() {
        Some(s) => s.await,
        None => None,
    };
    for task in [out, err].into_iter().flatten() {
        match task.await {
            Ok(result) => result?,
            Err(e) => anyhow::bail!("copying the command's output: {e}"),
        }
    }
    let ended = process.join().await;
    drop(raw);
    match status {
        Some(status) => {
            let code = exit_code(&status)?;
            if code == 0 {
                Ok(())
            } else {
                eprintln!("command terminated with exit code {code}");
                Err(anyhow::Error::new(errors::Exit(code)))
            }
        }
        None => ended.map_err(|e| anyhow::anyhow!("exec in {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(v: serde_json::Value) -> Status {
        serde_json::from_value(v).expect("status")
    }

    #[test]
    fn exit_codes_from_status() {
        assert_eq!(
            exit_code(&status(serde_json::json!({"status": "Success"}))).unwrap(),
            0
        );
        let failed = status(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code",
            "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}
        }));
        assert_eq!(exit_code(&failed).unwrap(), 42);
        let broken = status(serde_json::json!({
            "status": "Failure", "reason": "InternalError", "message": "no such file: sh"
        }));
        assert_eq!(
            exit_code(&broken).unwrap_err().to_string(),
            "no such file: sh"
        );
    }
}
