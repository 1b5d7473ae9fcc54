//! The API server's side of the node API: `pods/{name}/log`, `pods/{name}/exec`,
//! `pods/{name}/attach`, `pods/{name}/portforward` and `nodes/{name}/proxy/…` are forwarded to
//! the node daemon of the pod's node, as kube-apiserver forwards them to the kubelet.
//!
//! The node daemon serves HTTPS on its Node's InternalIP (else ExternalIP) and
//! `status.daemonEndpoints.kubeletEndpoint.Port` (default 10250). Its serving certificate is
//! self-signed and is not verified (kube-apiserver does not verify the kubelet's by default);
//! the API server authenticates itself with the kubelet client certificate from
//! [`crate::pki`] (CN `skiff-apiserver-kubelet-client`, signed by the cluster CA).
//!
//! Log and proxy requests are streamed through chunk by chunk. Exec, attach and port-forward
//! are WebSocket upgrades: the upgrade request goes to the node with the client's WebSocket
//! headers (key, version, offered subprotocols); once the node has answered 101 the client
//! gets the node's 101 (with the subprotocol it chose and its accept key) and the two
//! upgraded connections are spliced byte for byte.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderMap, HeaderName, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use skiff_api::resources::{self, ResourceInfo};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::status::{ApiError, ApiResult};
use super::ApiServer;
use crate::pki::{self, ClusterPki};

/// The port a node daemon serves on when its Node does not say.
pub const DEFAULT_NODE_PORT: u16 = 10250;
/// How long connecting to a node daemon (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a node's error answer is quoted back.
const MAX_ERROR_BODY: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("kubelet client credentials: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("kubelet client TLS configuration: {0}")]
    TlsConfig(rustls::Error),
    #[error("node {node:?} has no InternalIP or ExternalIP address in status.addresses")]
    NoAddress { node: String },
    #[error("connecting to the node daemon of node {node:?} at {addr}: {source}")]
    Connect {
        node: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to the node daemon of node {node:?} at {addr}: timed out after {CONNECT_TIMEOUT:?}")]
    Timeout { node: String, addr: SocketAddr },
    #[error("TLS handshake with the node daemon of node {node:?} at {addr}: {source}")]
    Handshake {
        node: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to the node daemon of node {node:?} at {addr}: {source}")]
    Http {
        node: String,
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("building the request to node {node:?}: {source}")]
    Request { node: String, source: http::Error },
    #[error("reading the answer of node {node:?}: {source}")]
    Body { node: String, source: hyper::Error },
}

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> Self {
        match e {
            ProxyError::Pki(_) | ProxyError::TlsConfig(_) | ProxyError::Request { .. } => {
                ApiError::internal(e)
            }
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

/// A node daemon's address, from its Node object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    pub node: String,
    pub addr: SocketAddr,
}

impl NodeTarget {
    /// InternalIP (else ExternalIP) and the kubelet endpoint port of `node`.
    pub fn from_node(node: &Value) -> Result<NodeTarget, ProxyError> {
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let addresses = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let find = |kind: &str| {
            addresses.iter().find_map(|a| {
                (a.get("type").and_then(Value::as_str) == Some(kind))
                    .then(|| a.get("address").and_then(Value::as_str))
                    .flatten()
                    .and_then(|s| s.parse::<IpAddr>().ok())
            })
        };
        let ip = find("InternalIP")
            .or_else(|| find("ExternalIP"))
            .ok_or_else(|| ProxyError::NoAddress { node: name.clone() })?;
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_NODE_PORT);
        Ok(NodeTarget {
            node: name,
            addr: SocketAddr::new(ip, port),
        })
    }
}

/// Opens HTTPS connections to node daemons with the kubelet client certificate.
#[derive(Clone)]
pub struct NodeConnector {
    tls: TlsConnector,
}

impl NodeConnector {
    pub fn new(pki: &ClusterPki) -> Result<NodeConnector, ProxyError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = pki::parse_certs(&pki.kubelet_client_cert_pem, "kubelet client certificate")?;
        let key = pki::parse_key(&pki.kubelet_client_key_pem, "kubelet client key")?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(ProxyError::TlsConfig)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(skiff_api::tls::AcceptAnyServerCert::new(
                provider,
            )))
            .with_client_auth_cert(certs, key)
            .map_err(ProxyError::TlsConfig)?;
        // HTTP/1.1 only: upgrades (exec, port-forward) need it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(NodeConnector {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends `req` (origin-form URI) to the node daemon over a fresh connection. The
    /// connection serves upgrades, so a 101 answer can be taken over with
    /// `hyper::upgrade::on`.
    pub async fn send(
        &self,
        target: &NodeTarget,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let NodeTarget { node, addr } = target;
        let connect = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| ProxyError::Connect {
                    node: node.clone(),
                    addr: *addr,
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            self.tls
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await
                .map_err(|source| ProxyError::Handshake {
                    node: node.clone(),
                    addr: *addr,
                    source,
                })
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| ProxyError::Timeout {
                node: node.clone(),
                addr: *addr,
            })??;
        let http_err = |source| ProxyError::Http {
            node: node.clone(),
            addr: *addr,
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http_err)?;
        let peer = *addr;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%peer, error = %e, "node connection ended");
            }
        });
        sender.send_request(req).await.map_err(http_err)
    }
}

fn pods() -> ApiResult<&'static ResourceInfo> {
    resources::by_plural("", "v1", "pods").ok_or_else(|| ApiError::internal("no pods resource"))
}

fn nodes() -> ApiResult<&'static ResourceInfo> {
    resources::by_plural("", "v1", "nodes").ok_or_else(|| ApiError::internal("no nodes resource"))
}

fn names_of(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a log/exec/attach request is for, as kube-apiserver picks it: the one named,
/// else the pod's only container.
pub fn resolve_container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let containers = names_of(pod, "containers");
    let init = names_of(pod, "initContainers");
    let ephemeral = names_of(pod, "ephemeralContainers");
    match requested {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                message.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// The query without the parameters the API server consumed.
fn pass_query(query: Option<&str>, drop: &[&str]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !drop.contains(&k.as_ref()) {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

fn with_query(path: String, query: &str) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// A node's non-success answer as an API error with the same code: the message of its
/// `Status` body, else its text.
async fn node_error(target: &NodeTarget, resp: Response<Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BODY);
    let text = match limited.collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_string(),
        Err(e) => format!("(unreadable answer: {e})"),
    };
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
        .unwrap_or(text);
    let message = if message.is_empty() {
        format!(
            "the node daemon of node {:?} answered {code} with no message",
            target.node
        )
    } else {
        message
    };
    ApiError::new(
        if (400..600).contains(&code) {
            code
        } else {
            502
        },
        reason_for(code),
        message,
    )
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The headers of a WebSocket handshake, which pass between client and node unchanged.
const WS_REQUEST_HEADERS: [HeaderName; 5] = [
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];
const WS_RESPONSE_HEADERS: [HeaderName; 4] = [
    header::UPGRADE,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, names: &[HeaderName]) {
    for name in names {
        for value in from.get_all(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Forwards a WebSocket upgrade to the node and splices the two connections once both sides
/// have switched protocols.
async fn proxy_upgrade(
    connector: &NodeConnector,
    target: &NodeTarget,
    mut req: Request<Incoming>,
    node_uri: String,
) -> ApiResult<Response<Body>> {
    if req.version() != Version::HTTP_11 {
        return Err(ApiError::bad_request(
            "WebSocket upgrades need HTTP/1.1 (the request came over another version)",
        ));
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(&node_uri)
        .header(header::HOST, target.addr.to_string())
        .header(header::CONNECTION, "Upgrade");
    if let Some(headers) = out.headers_mut() {
        copy_headers(req.headers(), headers, &WS_REQUEST_HEADERS);
    }
    let out = out
        .body(Body::empty())
        .map_err(|source| ProxyError::Request {
            node: target.node.clone(),
            source,
        })?;
    let resp = connector.send(target, out).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(node_error(target, resp).await);
    }
    let mut answer = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade");
    if let Some(headers) = answer.headers_mut() {
        copy_headers(resp.headers(), headers, &WS_RESPONSE_HEADERS);
    }
    let answer = answer.body(Body::empty()).map_err(ApiError::internal)?;
    let node_upgrade = hyper::upgrade::on(resp);
    let node = target.clone();
    tokio::spawn(async move {
        let (client, upstream) = tokio::join!(client_upgrade, node_upgrade);
        match (client, upstream) {
            (Ok(client), Ok(upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((up, down)) => {
                        tracing::debug!(node = %node.node, up, down, "upgraded stream ended")
                    }
                    Err(e) => {
                        tracing::debug!(node = %node.node, error = %e, "upgraded stream failed")
                    }
                }
            }
            (Err(e), _) => tracing::debug!(node = %node.node, error = %e, "client upgrade"),
            (_, Err(e)) => tracing::debug!(node = %node.node, error = %e, "node upgrade"),
        }
    });
    Ok(answer)
}

/// Forwards a plain request and streams the node's answer back. With `pass_errors` a node's
/// error answer goes back as it is (a proxy); otherwise it becomes a `Status`.
async fn proxy_plain(
    connector: &NodeConnector,
    target: &NodeTarget,
    method: Method,
    headers: &HeaderMap,
    body: Body,
    node_uri: String,
    pass_errors: bool,
) -> ApiResult<Response<Body>> {
    let mut out = Request::builder()
        .method(method)
        .uri(&node_uri)
        .header(header::HOST, target.addr.to_string());
    if let Some(h) = out.headers_mut() {
        copy_headers(
            headers,
            h,
            &[header::ACCEPT, header::CONTENT_TYPE, header::CONTENT_LENGTH],
        );
    }
    let out = out.body(body).map_err(|source| ProxyError::Request {
        node: target.node.clone(),
        source,
    })?;
    let resp = connector.send(target, out).await?;
    if !pass_errors && !resp.status().is_success() {
        return Err(node_error(target, resp).await);
    }
    let mut answer = Response::builder().status(resp.status());
    if let Some(h) = answer.headers_mut() {
        copy_headers(
            resp.headers(),
            h,
            &[header::CONTENT_TYPE, header::CACHE_CONTROL],
        );
    }
    answer
        .body(Body::new(resp.into_body()))
        .map_err(ApiError::internal)
}

async fn target_of(api: &ApiServer, node: &str) -> ApiResult<NodeTarget> {
    let obj = api.get(nodes()?, None, node).await?;
    Ok(NodeTarget::from_node(&obj)?)
}

/// `pods/{name}/{log|exec|attach|portforward}`.
pub async fn pod_subresource(
    api: &Arc<ApiServer>,
    req: Request<Incoming>,
    namespace: &str,
    name: &str,
    sub: &str,
) -> ApiResult<Response<Body>> {
    let pod = api.get(pods()?, Some(namespace), name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let raw_query = req.uri().query().map(String::from);
    let requested = form_urlencoded::parse(raw_query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    let (ns_seg, pod_seg) = (seg(namespace), seg(name));
    let node_uri = match sub {
        "log" | "exec" | "attach" => {
            let container = resolve_container(&pod, requested.as_deref())?;
            let route = match sub {
                "log" => "containerLogs",
                other => other,
            };
            with_query(
                format!("/{route}/{ns_seg}/{pod_seg}/{}", seg(&container)),
                &pass_query(raw_query.as_deref(), &["container"]),
            )
        }
        "portforward" => with_query(
            format!("/portForward/{ns_seg}/{pod_seg}"),
            &pass_query(raw_query.as_deref(), &[]),
        ),
        other => return Err(ApiError::path_not_found(&format!("pods/{name}/{other}"))),
    };
    let target = target_of(api, &node).await?;
    let connector = NodeConnector::new(&api.pki)?;
    tracing::debug!(node = %target.node, addr = %target.addr, uri = %node_uri, "proxying to node");
    if sub == "log" {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed(
                req.method().as_str(),
                req.uri().path(),
            ));
        }
        let headers = req.headers().clone();
        return proxy_plain(
            &connector,
            &target,
            Method::GET,
            &headers,
            Body::empty(),
            node_uri,
            false,
        )
        .await;
    }
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Err(ApiError::method_not_allowed(
            req.method().as_str(),
            req.uri().path(),
        ));
    }
    if !is_upgrade(req.headers()) {
        return Err(ApiError::bad_request(format!(
            "pods/{sub} needs a WebSocket upgrade (Upgrade: websocket, subprotocol v5.channel.k8s.io or v4.channel.k8s.io)"
        )));
    }
    proxy_upgrade(&connector, &target, req, node_uri).await
}

/// `/api/v1/nodes/{name}/proxy[/{path}]`: the node's name and the path on the node.
pub fn parse_node_proxy_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/v1/nodes/")?;
    let (name, tail) = rest.split_once('/')?;
    let tail = tail.strip_prefix("proxy")?;
    if !(tail.is_empty() || tail.starts_with('/')) || name.is_empty() {
        return None;
    }
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .into_owned();
    let node_path = if tail.is_empty() { "/" } else { tail };
    Some((name, node_path.to_string()))
}

/// `nodes/{name}/proxy/{path}`: any method, streamed both ways, answers passed through.
pub async fn node_proxy(
    api: &Arc<ApiServer>,
    req: Request<Incoming>,
    node: &str,
    node_path: &str,
) -> ApiResult<Response<Body>> {
    let target = target_of(api, node).await?;
    let connector = NodeConnector::new(&api.pki)?;
    let node_uri = match req.uri().query() {
        Some(q) if !q.is_empty() => format!("{node_path}?{q}"),
        _ => node_path.to_string(),
    };
    let (parts, body) = req.into_parts();
    let body = if matches!(parts.method, Method::GET | Method::HEAD) {
        Body::empty()
    } else {
        Body::new(body)
    };
    proxy_plain(
        &connector,
        &target,
        parts.method,
        &parts.headers,
        body,
        node_uri,
        true,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_target_prefers_internal_ip_and_kubelet_port() {
        let node = json!({
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "n1"},
                    {"type": "ExternalIP", "address": "192.0.2.9"},
                    {"type": "InternalIP", "address": "10.0.0.5"}
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}
            }
        });
        assert_eq!(
            NodeTarget::from_node(&node).unwrap(),
            NodeTarget {
                node: "n1".into(),
                addr: "10.0.0.5:12345".parse().unwrap()
            }
        );
        let bare = json!({"metadata": {"name": "n2"}, "status": {"addresses": [{"type": "ExternalIP", "address": "192.0.2.9"}]}});
        assert_eq!(
            NodeTarget::from_node(&bare).unwrap().addr,
            "192.0.2.9:10250".parse().unwrap()
        );
        let none = json!({"metadata": {"name": "n3"}, "status": {}});
        let err = NodeTarget::from_node(&none).unwrap_err();
        assert!(err.to_string().contains("\"n3\""), "{err}");
    }

    #[test]
    fn containers_default_as_kube_apiserver_does() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        assert_eq!(resolve_container(&one, None).unwrap(), "app");
        let two = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "setup"}],
            "containers": [{"name": "a"}, {"name": "b"}]}});
        let err = resolve_container(&two, None).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [setup]"
        );
        assert_eq!(resolve_container(&two, Some("b")).unwrap(), "b");
        assert_eq!(resolve_container(&two, Some("setup")).unwrap(), "setup");
        let err = resolve_container(&two, Some("zzz")).unwrap_err();
        assert_eq!(err.message, "container zzz is not valid for pod p");
    }

    #[test]
    fn queries_pass_through_without_container() {
        assert_eq!(
            pass_query(
                Some("container=a&follow=true&command=sh&command=-c&command=echo%20hi"),
                &["container"]
            ),
            "follow=true&command=sh&command=-c&command=echo+hi"
        );
        assert_eq!(pass_query(None, &["container"]), "");
    }

    #[test]
    fn node_proxy_paths() {
        assert_eq!(
            parse_node_proxy_path("/api/v1/nodes/n1/proxy/stats/summary"),
            Some(("n1".into(), "/stats/summary".into()))
        );
        assert_eq!(
            parse_node_proxy_path("/api/v1/nodes/n1/proxy"),
            Some(("n1".into(), "/".into()))
        );
        assert_eq!(parse_node_proxy_path("/api/v1/nodes/n1/status"), None);
        assert_eq!(parse_node_proxy_path("/api/v1/nodes/n1/proxyx"), None);
        assert_eq!(parse_node_proxy_path("/api/v1/nodes/n1"), None);
    }
}
