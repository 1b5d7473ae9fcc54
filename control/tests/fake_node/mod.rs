//! A fake node daemon for tests: the node API contract (HTTPS with a self-signed serving
//! certificate, a client certificate required that chains to the cluster CA and has CN
//! `skiff-apiserver-kubelet-client`) on 127.0.0.1, with canned answers:
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}`: three lines `line N of ns/pod/container`;
//!   `tailLines`, `timestamps`, `previous` honoured; with `follow` the three lines come at
//!   once, then a fourth only after [`FakeNode::release_logs`], then the end. Container
//!   `crashy` answers 400 "is waiting to start".
//! - `/exec/{ns}/{pod}/{container}` (WebSocket, v5/v4.channel.k8s.io): `cat` echoes stdin to
//!   stdout until stdin closes; `echo A B` prints `A B`; `exit N` prints to stderr and ends
//!   with exit code N; `size` waits for a terminal resize and prints `WxH`.
//! - `/portForward/{ns}/{pod}?ports=…` (WebSocket): echoes every port's data back.
//! - `GET /stats/summary`: a Summary API document; `GET /healthz`: ok.
//!
//! Shared by the control plane's and skiffctl's tests (`#[path]`-included).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const KUBELET_CLIENT_CN: &str = "skiff-apiserver-kubelet-client";

/// One request the fake node served.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: String,
    /// The subject CN of the client certificate the caller presented.
    pub client_cn: String,
    /// The WebSocket subprotocol offered by the caller (for upgrades).
    pub offered_protocols: String,
}

#[derive(Default)]
pub struct FakeState {
    pub seen: Mutex<Vec<Seen>>,
    release: Mutex<Option<watch::Sender<bool>>>,
}

pub struct FakeNode {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
    release_rx: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Peer {
    cn: String,
}

#[derive(Clone)]
struct AppState {
    state: Arc<FakeState>,
    release: watch::Receiver<bool>,
}

fn subject_cn(der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("")
            .to_string(),
        Err(_) => String::new(),
    }
}

impl FakeNode {
    /// Serves on a free 127.0.0.1 port, trusting client certificates signed by `ca_pem`.
    pub async fn start(ca_pem: &str) -> FakeNode {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile_certs(ca_pem) {
            roots.add(ca).expect("CA certificate");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("self-signed cert");
        let key_der =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.der().clone()], key_der)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake node");
        let addr = listener.local_addr().expect("fake node address");
        let state = Arc::new(FakeState::default());
        let (release_tx, release_rx) = watch::channel(false);
        *state.release.lock().unwrap() = Some(release_tx);
        let app = AppState {
            state: state.clone(),
            release: release_rx.clone(),
        };
        let router = Router::new()
            .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
            .route("/exec/{ns}/{pod}/{container}", get(exec).post(exec))
            .route(
                "/portForward/{ns}/{pod}",
                get(port_forward).post(port_forward),
            )
            .route("/stats/summary", get(summary))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(app);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let cn = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| subject_cn(c.as_ref()))
                        .unwrap_or_default();
                    let svc = TowerToHyperService::new(router.layer(Extension(Peer { cn })));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        FakeNode {
            addr,
            state,
            release_rx,
            task,
        }
    }

    /// Lets every following log stream send its last line and end.
    pub fn release_logs(&self) {
        if let Some(tx) = self.state.release.lock().unwrap().as_ref() {
            let _ = tx.send(true);
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The last request whose path starts with `prefix`.
    pub fn last(&self, prefix: &str) -> Option<Seen> {
        self.seen()
            .into_iter()
            .rev()
            .find(|s| s.path.starts_with(prefix))
    }

    /// A Node object for this fake (its status carries the address and port).
    pub fn node_object(&self, name: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {},
        })
    }

    /// The status the fake's Node needs: InternalIP 127.0.0.1 and the fake's port.
    pub fn node_status(&self) -> Value {
        json!({"status": {
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": "fake"}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.addr.port()}},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}
        }})
    }
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

fn record(state: &FakeState, path: String, query: &Option<String>, peer: &Peer, offered: String) {
    state.seen.lock().unwrap().push(Seen {
        path,
        query: query.clone().unwrap_or_default(),
        client_cn: peer.cn.clone(),
        offered_protocols: offered,
    });
}

fn params(query: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn flag(params: &[(String, String)], key: &str) -> bool {
    params
        .iter()
        .any(|(k, v)| k == key && (v == "true" || v == "1"))
}

fn forbidden_unless_apiserver(peer: &Peer) -> Option<Response> {
    (peer.cn != KUBELET_CLIENT_CN).then(|| {
        (
            http::StatusCode::FORBIDDEN,
            format!("client certificate CN {:?} is not allowed", peer.cn),
        )
            .into_response()
    })
}

async fn logs(
    State(app): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    record(
        &app.state,
        format!("/containerLogs/{ns}/{pod}/{container}"),
        &query,
        &peer,
        String::new(),
    );
    if let Some(r) = forbidden_unless_apiserver(&peer) {
        return r;
    }
    if container == "crashy" {
        return (
            http::StatusCode::BAD_REQUEST,
            format!("container \"crashy\" in pod \"{pod}\" is waiting to start: ContainerCreating"),
        )
            .into_response();
    }
    let p = params(&query);
    let timestamps = flag(&p, "timestamps");
    let what = if flag(&p, "previous") {
        "previous line"
    } else {
        "line"
    };
    let mut lines: Vec<String> = (1..=3)
        .map(|i| {
            let ts = if timestamps {
                format!("2024-05-01T10:00:0{i}.000000000Z ")
            } else {
                String::new()
            };
            format!("{ts}{what} {i} of {ns}/{pod}/{container}\n")
        })
        .collect();
    if let Some(n) = p
        .iter()
        .find(|(k, _)| k == "tailLines")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let head: String = lines.concat();
    if !flag(&p, "follow") {
        return ([(http::header::CONTENT_TYPE, "text/plain")], head).into_response();
    }
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<String, std::io::Error>>(4);
    let mut release = app.release.clone();
    let tail = format!("{what} 4 of {ns}/{pod}/{container} (followed)\n");
    tokio::spawn(async move {
        let _ = tx.send(Ok(head)).await;
        let _ = release.wait_for(|r| *r).await;
        let _ = tx.send(Ok(tail)).await;
    });
    (
        [(http::header::CONTENT_TYPE, "text/plain")],
        axum::body::Body::from_stream(rx),
    )
        .into_response()
}

const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

fn offered(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn exec(
    State(app): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    record(
        &app.state,
        format!("/exec/{ns}/{pod}/{container}"),
        &query,
        &peer,
        offered(&headers),
    );
    if let Some(r) = forbidden_unless_apiserver(&peer) {
        return r;
    }
    let command: Vec<String> = params(&query)
        .into_iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v)
        .collect();
    let ws = ws.protocols(PROTOCOLS);
    let v5 = ws
        .selected_protocol()
        .is_some_and(|p| p.as_bytes() == PROTOCOLS[0].as_bytes());
    ws.on_upgrade(move |socket| exec_session(socket, command, v5))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

async fn exec_session(mut socket: WebSocket, command: Vec<String>, v5: bool) {
    let status = match command.first().map(String::as_str) {
        Some("cat") => {
            while let Some(Ok(msg)) = socket.recv().await {
                match msg {
                    Message::Binary(b) if b.first() == Some(&0) => {
                        let sent = socket.send(frame(1, &b[1..])).await;
                        if sent.is_err() {
                            return;
                        }
                    }
                    // v5: stdin closed.
                    Message::Binary(b) if v5 && b.as_ref() == [255, 0] => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            json!({"metadata": {}, "status": "Success"})
        }
        Some("echo") => {
            let text = format!("{}\n", command[1..].join(" "));
            let _ = socket.send(frame(1, text.as_bytes())).await;
            json!({"metadata": {}, "status": "Success"})
        }
        Some("exit") => {
            let code = command.get(1).cloned().unwrap_or_else(|| "1".into());
            let _ = socket
                .send(frame(2, format!("exiting with {code}\n").as_bytes()))
                .await;
            json!({
                "metadata": {}, "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code}]}
            })
        }
        Some("size") => {
            let mut size = String::from("no resize\n");
            while let Some(Ok(msg)) = socket.recv().await {
                if let Message::Binary(b) = msg {
                    if b.first() == Some(&4) {
                        let v: Value = serde_json::from_slice(&b[1..]).unwrap_or(Value::Null);
                        size = format!("{}x{}\n", v["Width"], v["Height"]);
                        break;
                    }
                }
            }
            let _ = socket.send(frame(1, size.as_bytes())).await;
            json!({"metadata": {}, "status": "Success"})
        }
        _ => {
            let _ = socket
                .send(frame(
                    2,
                    format!("fake node: no such command {command:?}\n").as_bytes(),
                ))
                .await;
            json!({
                "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                "message": "command terminated with non-zero exit code: exit code 127",
                "details": {"causes": [{"reason": "ExitCode", "message": "127"}]}
            })
        }
    };
    let body = serde_json::to_vec(&status).unwrap_or_default();
    let _ = socket.send(frame(3, &body)).await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn port_forward(
    State(app): State<AppState>,
    Extension(peer): Extension<Peer>,
    Path((ns, pod)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    record(
        &app.state,
        format!("/portForward/{ns}/{pod}"),
        &query,
        &peer,
        offered(&headers),
    );
    if let Some(r) = forbidden_unless_apiserver(&peer) {
        return r;
    }
    let ports: Vec<u16> = params(&query)
        .into_iter()
        .filter(|(k, _)| k == "ports")
        .flat_map(|(_, v)| {
            v.split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<u16>>()
        })
        .collect();
    ws.protocols(PROTOCOLS)
        .on_upgrade(move |socket| forward_session(socket, ports))
}

async fn forward_session(socket: WebSocket, ports: Vec<u16>) {
    let (mut tx, mut rx) = socket.split();
    for (i, port) in ports.iter().enumerate() {
        let le = port.to_le_bytes();
        let ch = 2 * i as u8;
        if tx.send(frame(ch, &le)).await.is_err() || tx.send(frame(ch + 1, &le)).await.is_err() {
            return;
        }
    }
    let mut open: HashMap<u8, bool> = (0..ports.len()).map(|i| (2 * i as u8, true)).collect();
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Binary(b) if b.len() > 1 && b[0] % 2 == 0 => {
                let sent = tx.send(frame(b[0], &b[1..])).await;
                if sent.is_err() {
                    return;
                }
            }
            Message::Binary(b) if b.len() == 2 && b[0] == 255 => {
                open.insert(b[1], false);
                if open.values().all(|o| !o) {
                    break;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

async fn summary(
    State(app): State<AppState>,
    Extension(peer): Extension<Peer>,
    RawQuery(query): RawQuery,
) -> Response {
    record(
        &app.state,
        "/stats/summary".into(),
        &query,
        &peer,
        String::new(),
    );
    if let Some(r) = forbidden_unless_apiserver(&peer) {
        return r;
    }
    let doc = json!({
        "node": {
            "nodeName": "fake-node",
            "cpu": {"time": "2024-05-01T10:00:00Z", "usageNanoCores": 250_000_000u64, "usageCoreNanoSeconds": 1_000_000_000u64},
            "memory": {"time": "2024-05-01T10:00:00Z", "workingSetBytes": 1_073_741_824u64, "usageBytes": 2_147_483_648u64}
        },
        "pods": [
            {
                "podRef": {"name": "solo", "namespace": "default", "uid": "u1"},
                "cpu": {"usageNanoCores": 5_000_000u64},
                "memory": {"workingSetBytes": 12_582_912u64},
                "containers": [
                    {"name": "app", "cpu": {"usageNanoCores": 5_000_000u64}, "memory": {"workingSetBytes": 12_582_912u64}}
                ]
            },
            {
                "podRef": {"name": "duo", "namespace": "default", "uid": "u2"},
                "containers": [
                    {"name": "a", "cpu": {"usageNanoCores": 1_500_000u64}, "memory": {"workingSetBytes": 1_048_576u64}},
                    {"name": "b", "cpu": {"usageNanoCores": 500_000u64}, "memory": {"workingSetBytes": 2_097_152u64}}
                ]
            },
            {
                "podRef": {"name": "elsewhere", "namespace": "other", "uid": "u3"},
                "cpu": {"usageNanoCores": 100_000_000u64},
                "memory": {"workingSetBytes": 104_857_600u64}
            }
        ]
    });
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}
