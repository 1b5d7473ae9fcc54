//! `GET|POST /exec/{namespace}/{pod}/{container}`: a command in a running container over
//! a WebSocket, the remote-command protocol kube-rs and kubectl speak.
//!
//! Binary frames start with a channel byte: 0 stdin (client → node), 1 stdout, 2 stderr,
//! 3 the final `metav1.Status` (Success, or Failure with reason `NonZeroExitCode` and
//! cause `ExitCode`), 4 terminal resize `{"Width":..,"Height":..}`; `v5.channel.k8s.io`
//! adds 255 (`[255, 0]` closes stdin). All output is sent before the status, and the
//! status is the last frame before the close.
//!
//! The command runs as `skiff-runtime exec --bundle <instance dir> --pid <pid> [--tty] --
//! CMD...`, which enters the container's namespaces, cgroups and user. Without a TTY its
//! stdin/stdout/stderr are pipes; with one they are the slave side of a pty whose master
//! the node keeps (resizes are `TIOCSWINSZ` on it). When the client goes away the
//! command's stdin is closed (a TTY hangs up) and the command is left to end by itself.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path as UrlPath, RawQuery, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
use serde::Deserialize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::query::QueryPairs;
use super::status::{failure_status, lookup_failure, status_response};
use super::{ContainerInstance, SharedState};

/// The remote-command subprotocol with stream close (channel 255).
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// The remote-command subprotocol with a JSON `Status` on channel 3.
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long output is still copied after the command exited (a background process may
/// hold the pipes or the terminal open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What an exec request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecParams {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Whether the client sends stdin.
    pub stdin: bool,
    /// Whether the client wants stdout.
    pub stdout: bool,
    /// Whether the client wants stderr (never with a TTY, whose output is one stream).
    pub stderr: bool,
    /// Whether the command gets a terminal.
    pub tty: bool,
}

impl ExecParams {
    /// Reads `command` (repeated), `stdin`, `stdout`, `stderr`, `tty`.
    pub fn from_query(query: &QueryPairs) -> Result<Self, String> {
        let command: Vec<String> = query.all("command").into_iter().map(String::from).collect();
        if command.is_empty() {
            return Err("a command is required (query parameter command, repeated)".into());
        }
        let tty = query.flag("tty")?;
        let params = Self {
            command,
            stdin: query.flag("stdin")?,
            stdout: query.flag("stdout")?,
            stderr: query.flag("stderr")? && !tty,
            tty,
        };
        if !params.stdin && !params.stdout && !query.flag("stderr")? {
            return Err("you must specify at least one of stdin, stdout, stderr".into());
        }
        Ok(params)
    }
}

/// The route handler.
pub(super) async fn handle(
    State(state): State<SharedState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let params = match ExecParams::from_query(&QueryPairs::parse(query.as_deref())) {
        Ok(params) => params,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", message),
    };
    let view = state.view.clone();
    let (lookup_pod, lookup_container) = (pod.clone(), container.clone());
    let instance = match tokio::task::spawn_blocking(move || {
        view.container(&namespace, &lookup_pod, &lookup_container, false)
    })
    .await
    {
        Ok(Ok(instance)) => instance,
        Ok(Err(err)) => return lookup_failure(&err),
        Err(err) => {
            return status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("container lookup failed: {err}"),
            )
        }
    };
    let Some(pid) = instance.running_pid else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("container \"{container}\" in pod \"{pod}\" is not running"),
        );
    };
    let upgrade = match websocket_upgrade(request, &[PROTOCOL_V5, PROTOCOL_V4]).await {
        Ok(upgrade) => upgrade,
        Err(response) => return response,
    };
    let v5 = upgrade
        .selected_protocol()
        .is_some_and(|protocol| protocol == PROTOCOL_V5);
    let exec_binary = state.exec_binary.clone();
    info!(pod, container, command = ?params.command, tty = params.tty, "exec");
    upgrade.on_upgrade(move |socket| async move {
        run(socket, exec_binary, instance, pid, params, v5).await;
    })
}

/// The WebSocket upgrade of `request` (POST is taken as GET: kubectl's SPDY habit), with
/// one of `protocols` chosen; a `Status` response when that is not possible.
pub(super) async fn websocket_upgrade(
    request: Request,
    protocols: &[&'static str],
) -> Result<WebSocketUpgrade, Response> {
    let (mut parts, _body) = request.into_parts();
    parts.method = Method::GET;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|rejection| {
            status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "a WebSocket upgrade with subprotocol {} is required (SPDY is not supported): {rejection}",
                    protocols.join(" or ")
                ),
            )
        })?;
    let upgrade = upgrade.protocols(protocols.iter().copied());
    if upgrade.selected_protocol().is_none() {
        let offered: Vec<String> = upgrade
            .requested_protocols()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .collect();
        return Err(status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "none of the offered WebSocket subprotocols {offered:?} is supported; use {}",
                protocols.join(" or ")
            ),
        ));
    }
    Ok(upgrade)
}

/// A frame on `channel`.
fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// `{"Width":..,"Height":..}` on channel 4.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TerminalSize {
    width: u16,
    height: u16,
}

/// How the command's standard streams are connected.
enum Streams {
    Pipes {
        stdin: Option<ChildStdin>,
    },
    Tty {
        master: Arc<AsyncFd<OwnedFd>>,
        stdin_open: bool,
    },
}

async fn run(
    socket: WebSocket,
    exec_binary: PathBuf,
    instance: ContainerInstance,
    pid: i32,
    params: ExecParams,
    v5: bool,
) {
    let (mut sink, mut incoming) = socket.split();
    let (outgoing, mut to_send) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(message) = to_send.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let status = match execute(
        &mut incoming,
        &outgoing,
        &exec_binary,
        &instance,
        pid,
        &params,
        v5,
    )
    .await
    {
        Ok(status) => status,
        Err(message) => failure_status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message),
    };
    match serde_json::to_vec(&status) {
        Ok(json) => {
            let _ = outgoing.send(frame(STATUS, &json)).await;
        }
        Err(err) => debug!(%err, "exec status could not be encoded"),
    }
    drop(outgoing);
    let _ = writer.await;
}

/// Runs the command, copying streams, and returns its final status; `Err` when it could
/// not be started.
async fn execute(
    incoming: &mut futures::stream::SplitStream<WebSocket>,
    outgoing: &mpsc::Sender<Message>,
    exec_binary: &PathBuf,
    instance: &ContainerInstance,
    pid: i32,
    params: &ExecParams,
    v5: bool,
) -> Result<Status, String> {
    let mut command = Command::new(exec_binary);
    command
        .arg("exec")
        .arg("--bundle")
        .arg(&instance.instance_dir)
        .arg("--pid")
        .arg(pid.to_string());
    if params.tty {
        command.arg("--tty");
    }
    command.arg("--").args(&params.command);
    let mut copiers = Vec::new();
    let (mut child, mut streams) = if params.tty {
        let pty = nix::pty::openpty(None, None).map_err(|err| format!("open a pty: {err}"))?;
        let slave = |what: &str| {
            pty.slave
                .try_clone()
                .map(Stdio::from)
                .map_err(|err| format!("duplicate the pty for {what}: {err}"))
        };
        command
            .stdin(slave("stdin")?)
            .stdout(slave("stdout")?)
            .stderr(slave("stderr")?);
        let child = command
            .spawn()
            .map_err(|err| format!("start {}: {err}", exec_binary.display()))?;
        // Only the command may hold the slave: the master reads EIO once it is gone.
        drop(command);
        drop(pty.slave);
        nix::fcntl::fcntl(
            &pty.master,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|err| format!("make the pty master non-blocking: {err}"))?;
        // SAFETY: the master fd is owned by the AsyncFd from here on and neither replaced
        // nor closed while registered.
        let master = unsafe { AsyncFd::register(pty.master) }
            .map_err(|err| format!("register the pty master: {err}"))?;
        let master = Arc::new(master);
        copiers.push(tokio::spawn(copy_pty_output(
            master.clone(),
            params.stdout.then(|| outgoing.clone()),
        )));
        (
            child,
            Streams::Tty {
                master,
                stdin_open: params.stdin,
            },
        )
    } else {
        let piped = |wanted: bool| {
            if wanted {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        command
            .stdin(piped(params.stdin))
            .stdout(piped(params.stdout))
            .stderr(piped(params.stderr));
        let mut child = command
            .spawn()
            .map_err(|err| format!("start {}: {err}", exec_binary.display()))?;
        if let Some(stdout) = child.stdout.take() {
            copiers.push(tokio::spawn(copy_output(stdout, STDOUT, outgoing.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            copiers.push(tokio::spawn(copy_output(stderr, STDERR, outgoing.clone())));
        }
        let stdin = child.stdin.take();
        (child, Streams::Pipes { stdin })
    };

    let mut client_open = true;
    let exit = loop {
        tokio::select! {
            exit = child.wait() => break exit,
            message = incoming.next(), if client_open => match message {
                Some(Ok(Message::Binary(data))) => handle_input(&mut streams, &data, v5).await,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    client_open = false;
                    close_stdin(&mut streams);
                }
                Some(Ok(_)) => {}
            },
        }
    };
    let exit = exit.map_err(|err| format!("wait for the exec process: {err}"))?;
    for copier in copiers {
        if tokio::time::timeout(DRAIN_AFTER_EXIT, copier)
            .await
            .is_err()
        {
            debug!("exec output still open after the command exited; not waiting for it");
        }
    }
    let code = exit
        .code()
        .or_else(|| exit.signal().map(|signal| 128 + signal))
        .unwrap_or(-1);
    Ok(exit_status(code))
}

/// The final status for an exit code.
fn exit_status(code: i32) -> Status {
    if code == 0 {
        return Status {
            status: Some("Success".into()),
            ..Status::default()
        };
    }
    Status {
        status: Some("Failure".into()),
        reason: Some("NonZeroExitCode".into()),
        message: Some(format!(
            "command terminated with non-zero exit code: exit code {code}"
        )),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ExitCode".into()),
                message: Some(code.to_string()),
                ..StatusCause::default()
            }]),
            ..StatusDetails::default()
        }),
        ..Status::default()
    }
}

/// Acts on one frame from the client.
async fn handle_input(streams: &mut Streams, data: &[u8], v5: bool) {
    let Some((&channel, payload)) = data.split_first() else {
        return;
    };
    match channel {
        STDIN if !payload.is_empty() => match streams {
            Streams::Pipes { stdin } => {
                if let Some(pipe) = stdin {
                    if pipe.write_all(payload).await.is_err() {
                        // The command closed its stdin: drop what else comes.
                        *stdin = None;
                    }
                }
            }
            Streams::Tty { master, stdin_open } => {
                if *stdin_open {
                    write_pty(master, payload).await;
                }
            }
        },
        RESIZE => {
            if let Streams::Tty { master, .. } = streams {
                match serde_json::from_slice::<TerminalSize>(payload) {
                    Ok(size) => resize(master.get_ref(), &size),
                    Err(err) => debug!(%err, "ignoring a malformed resize frame"),
                }
            }
        }
        CLOSE if v5 && payload.first() == Some(&STDIN) => close_stdin(streams),
        _ => {}
    }
}

fn close_stdin(streams: &mut Streams) {
    match streams {
        Streams::Pipes { stdin } => *stdin = None,
        Streams::Tty { stdin_open, .. } => *stdin_open = false,
    }
}

fn resize(master: &OwnedFd, size: &TerminalSize) {
    let winsize = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
    if rc < 0 {
        debug!(err = %std::io::Error::last_os_error(), "TIOCSWINSZ failed");
    }
}

async fn write_pty(master: &AsyncFd<OwnedFd>, mut data: &[u8]) {
    while !data.is_empty() {
        let Ok(mut guard) = master.writable().await else {
            return;
        };
        match guard.try_io(|fd| {
            nix::unistd::write(fd.get_ref().as_fd(), data).map_err(std::io::Error::from)
        }) {
            Ok(Ok(written)) => data = &data[written..],
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}

/// Copies the terminal's output to channel 1 until every holder of the slave is gone.
async fn copy_pty_output(master: Arc<AsyncFd<OwnedFd>>, outgoing: Option<mpsc::Sender<Message>>) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let Ok(mut guard) = master.readable().await else {
            return;
        };
        match guard.try_io(|fd| {
            nix::unistd::read(fd.get_ref().as_fd(), &mut buffer).map_err(std::io::Error::from)
        }) {
            // EIO: the last slave holder is gone, the terminal's end of file.
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(read)) => {
                if let Some(outgoing) = &outgoing {
                    if outgoing.send(frame(STDOUT, &buffer[..read])).await.is_err() {
                        return;
                    }
                }
            }
            Err(_would_block) => {}
        }
    }
}

/// Copies a pipe to `channel` until its end.
async fn copy_output(
    mut pipe: impl AsyncRead + Unpin,
    channel: u8,
    outgoing: mpsc::Sender<Message>,
) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                if outgoing
                    .send(frame(channel, &buffer[..read]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_from_the_query() {
        let query = QueryPairs::parse(Some(
            "command=sh&command=-c&command=exit%203&stdin=true&stdout=true&stderr=true&tty=true",
        ));
        let params = ExecParams::from_query(&query).expect("params");
        assert_eq!(params.command, vec!["sh", "-c", "exit 3"]);
        assert!(params.stdin && params.stdout && params.tty);
        assert!(!params.stderr, "a TTY has no separate stderr");
        assert!(ExecParams::from_query(&QueryPairs::parse(Some("stdout=1"))).is_err());
        assert!(ExecParams::from_query(&QueryPairs::parse(Some("command=ls"))).is_err());
    }

    #[test]
    fn exit_codes_become_statuses() {
        let ok = serde_json::to_value(exit_status(0)).expect("json");
        assert_eq!(ok["status"], "Success");
        let failed = serde_json::to_value(exit_status(3)).expect("json");
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }
}
