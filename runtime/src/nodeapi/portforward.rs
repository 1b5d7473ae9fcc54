//! `GET|POST /portForward/{namespace}/{pod}?ports=80,8080`: TCP connections to ports of a
//! pod over a WebSocket, the framing kube-rs's `Portforwarder` speaks.
//!
//! Requested port number `i` (in the order of `ports`, comma-separated or repeated) gets
//! data channel `2i` and error channel `2i+1`. Each channel opens with a frame of its
//! port number (little endian) after the channel byte; then data frames go both ways on
//! the data channel, and a connection failure is one text message on the error channel.
//! The connection is made to `127.0.0.1:PORT` inside the pod's network namespace: a
//! thread joins that namespace and creates the socket there (a socket stays in the
//! namespace it was made in), then hands it to tokio. With `v5.channel.k8s.io`, `[255, 2i]`
//! half-closes the connection to the pod. The WebSocket is closed once every port's pod
//! side has ended, or when the client closes it.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use nix::sched::{setns, CloneFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::exec::{websocket_upgrade, PROTOCOL_V4, PROTOCOL_V5};
use super::query::QueryPairs;
use super::status::{lookup_failure, status_response};
use super::SharedState;

/// The kubelet's own port-forward subprotocol name, accepted as well.
pub const PROTOCOL_PORTFORWARD: &str = "portforward.k8s.io";

/// How long connecting to a pod port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE: u8 = 255;

/// The ports of a request, in order; `Err` says what is wrong.
pub fn ports_from_query(query: &QueryPairs) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for value in query.all("ports") {
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let port = item
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| format!("ports: {item:?} is not a port number"))?;
            if ports.contains(&port) {
                return Err(format!("ports: {port} is given twice"));
            }
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err("at least one port is required (query parameter ports)".into());
    }
    if ports.len() > 127 {
        return Err("at most 127 ports can be forwarded at once".into());
    }
    Ok(ports)
}

/// The route handler.
pub(super) async fn handle(
    State(state): State<SharedState>,
    UrlPath((namespace, pod)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let ports = match ports_from_query(&QueryPairs::parse(query.as_deref())) {
        Ok(ports) => ports,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", message),
    };
    let view = state.view.clone();
    let lookup_pod = pod.clone();
    let netns =
        match tokio::task::spawn_blocking(move || view.pod_netns(&namespace, &lookup_pod)).await {
            Ok(Ok(netns)) => netns,
            Ok(Err(err)) => return lookup_failure(&err),
            Err(err) => {
                return status_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("pod lookup failed: {err}"),
                )
            }
        };
    let upgrade =
        match websocket_upgrade(request, &[PROTOCOL_V5, PROTOCOL_V4, PROTOCOL_PORTFORWARD]).await {
            Ok(upgrade) => upgrade,
            Err(response) => return response,
        };
    let v5 = upgrade
        .selected_protocol()
        .is_some_and(|protocol| protocol == PROTOCOL_V5);
    info!(pod, ?ports, "port-forward");
    upgrade.on_upgrade(move |socket| forward(socket, netns, ports, v5))
}

/// Connects to `127.0.0.1:port` inside the network namespace at `netns`.
pub async fn connect_in_netns(netns: PathBuf, port: u16) -> Result<TcpStream, String> {
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let thread_netns = netns.clone();
    // A thread of its own: it leaves the host's namespace and ends right after.
    let spawned = std::thread::Builder::new()
        .name("skiff-portfwd".into())
        .spawn(move || {
            let result = (|| -> Result<StdTcpStream, String> {
                let file = File::open(&thread_netns)
                    .map_err(|err| format!("open {}: {err}", thread_netns.display()))?;
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|err| format!("join {}: {err}", thread_netns.display()))?;
                let stream = StdTcpStream::connect_timeout(&target, CONNECT_TIMEOUT)
                    .map_err(|err| format!("connect to {target} in the pod: {err}"))?;
                stream.set_nonblocking(true).map_err(|err| {
                    format!("make the connection to {target} non-blocking: {err}")
                })?;
                Ok(stream)
            })();
            let _ = sender.send(result);
        });
    spawned.map_err(|err| format!("start a thread to join {}: {err}", netns.display()))?;
    let stream = receiver
        .await
        .map_err(|_| "the connecting thread ended without an answer".to_string())??;
    TcpStream::from_std(stream).map_err(|err| format!("register the connection to {target}: {err}"))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// What the pod side of one port sends to the client loop.
enum FromPod {
    Data(u8, Vec<u8>),
    Ended,
}

async fn forward(socket: WebSocket, netns: PathBuf, ports: Vec<u16>, v5: bool) {
    let (mut sink, mut incoming) = socket.split();
    for (index, port) in ports.iter().enumerate() {
        let data_channel = (2 * index) as u8;
        for channel in [data_channel, data_channel + 1] {
            if sink
                .send(frame(channel, &port.to_le_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let (to_client, mut from_pods) = mpsc::channel::<FromPod>(32);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::with_capacity(ports.len());
    let mut open = 0usize;
    for (index, port) in ports.iter().enumerate() {
        let data_channel = (2 * index) as u8;
        match connect_in_netns(netns.clone(), *port).await {
            Ok(stream) => {
                let (mut reader, writer) = stream.into_split();
                writers.push(Some(writer));
                open += 1;
                let to_client = to_client.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 32 * 1024];
                    loop {
                        match reader.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => {
                                let data = buffer[..read].to_vec();
                                if to_client
                                    .send(FromPod::Data(data_channel, data))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = to_client.send(FromPod::Ended).await;
                });
            }
            Err(message) => {
                debug!(port, message, "port-forward connection failed");
                writers.push(None);
                let text = format!("error forwarding port {port} to pod: {message}");
                if sink
                    .send(frame(data_channel + 1, text.as_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    drop(to_client);
    while open > 0 {
        tokio::select! {
            from_pod = from_pods.recv() => match from_pod {
                Some(FromPod::Data(channel, data)) => {
                    if sink.send(frame(channel, &data)).await.is_err() {
                        return;
                    }
                }
                Some(FromPod::Ended) => open -= 1,
                None => break,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    let Some((&channel, payload)) = data.split_first() else { continue };
                    if channel == CLOSE && v5 {
                        if let Some(&closed) = payload.first() {
                            if let Some(Some(mut writer)) = writers.get_mut(usize::from(closed / 2)).map(Option::take) {
                                let _ = writer.shutdown().await;
                            }
                        }
                        continue;
                    }
                    // Odd channels (errors) carry nothing from the client.
                    if channel % 2 != 0 || payload.is_empty() {
                        continue;
                    }
                    if let Some(slot) = writers.get_mut(usize::from(channel / 2)) {
                        if let Some(writer) = slot {
                            if writer.write_all(payload).await.is_err() {
                                *slot = None;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_comma_separated_or_repeated() {
        let query = QueryPairs::parse(Some("ports=80%2C8080&ports=9000"));
        assert_eq!(ports_from_query(&query), Ok(vec![80, 8080, 9000]));
        assert!(ports_from_query(&QueryPairs::parse(Some("ports=80,80"))).is_err());
        assert!(ports_from_query(&QueryPairs::parse(Some("ports=0"))).is_err());
        assert!(ports_from_query(&QueryPairs::parse(None)).is_err());
    }
}
