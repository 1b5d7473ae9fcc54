//! httpGet probes and hooks: one GET per connection, as the kubelet's probe client
//! (keep-alive off, no compression, no proxy, TLS without verification).
//!
//! Redirects: like the kubelet, 301/302/303/307/308 to the same host name (any port or
//! scheme) are followed, up to 10; a redirect to another host is not followed and its 3xx
//! response is the result: a success (the kubelet adds a `ProbeWarning` event, which
//! skiff only logs).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use super::tcp::{connect, join_host_port};
use super::{resolve_port, ProbeError, ProbeResult, ProbeTarget, MAX_REDIRECTS};

/// Characters of a probe path that must be percent-encoded to form a request target.
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^');

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where one request of a GET (the first, or one after a redirect) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    scheme: Scheme,
    host: String,
    port: u16,
    /// `host:port` as written in the URL (and sent as the Host header by default).
    authority: String,
    /// Path and query, starting with `/`.
    target: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.name(),
            self.authority,
            self.target
        )
    }
}

impl Url {
    /// The URL a `Location` header points to, relative to this one; `None` when it cannot
    /// be understood (the 3xx response is then the answer, as Go does).
    fn join(&self, location: &str) -> Option<Url> {
        let (scheme, rest) = if let Some(rest) = location.strip_prefix("http://") {
            (Some(Scheme::Http), rest)
        } else if let Some(rest) = location.strip_prefix("https://") {
            (Some(Scheme::Https), rest)
        } else if location.contains("://") {
            return None;
        } else {
            (None, location)
        };
        let absolute = match (scheme, rest.strip_prefix("//")) {
            (Some(scheme), _) => Some((scheme, rest)),
            (None, Some(rest)) => Some((self.scheme, rest)),
            (None, None) => None,
        };
        if let Some((scheme, rest)) = absolute {
            let (authority, target) = match rest.find(['/', '?']) {
                Some(at) => (&rest[..at], &rest[at..]),
                None => (rest, "/"),
            };
            let (host, port) = split_authority(authority, scheme.default_port())?;
            let target = if target.starts_with('?') {
                format!("/{target}")
            } else {
                target.to_string()
            };
            return Some(Url {
                scheme,
                host,
                port,
                authority: authority.to_string(),
                target,
            });
        }
        let target = if rest.starts_with('/') {
            rest.to_string()
        } else {
            // Relative to the directory of the current path.
            let path = self.target.split('?').next().unwrap_or("/");
            let directory = &path[..path.rfind('/').map_or(0, |at| at + 1)];
            format!("{directory}{rest}")
        };
        Some(Url {
            target,
            ..self.clone()
        })
    }
}

/// Splits `host[:port]` (IPv6 in brackets); the port defaults to the scheme's.
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None if authority.is_empty() => None,
        None => Some((authority.to_string(), default_port)),
    }
}

/// A GET request built from an httpGet action, the kubelet's way.
#[derive(Debug, Clone)]
pub(crate) struct HttpGet {
    url: Url,
    /// Headers to send besides Host and Connection.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A Host header given in `httpHeaders`.
    host_header: Option<HeaderValue>,
}

impl HttpGet {
    /// Scheme (HTTP default), host (the pod IP by default), port (number or container port
    /// name), path, and headers; `User-Agent` and `Accept: */*` unless given (an empty
    /// Accept removes it).
    pub(crate) fn from_action(
        action: &HTTPGetAction,
        target: &ProbeTarget,
        user_agent: &str,
    ) -> Result<Self, ProbeError> {
        let scheme = match action.scheme.as_deref().map(str::to_ascii_lowercase) {
            None => Scheme::Http,
            Some(s) if s.is_empty() || s == "http" => Scheme::Http,
            Some(s) if s == "https" => Scheme::Https,
            Some(other) => {
                return Err(ProbeError::InvalidUrl {
                    url: other,
                    reason: "scheme must be HTTP or HTTPS".into(),
                })
            }
        };
        let host = action
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.to_string());
        let port = resolve_port(&action.port, &target.container_ports)?;
        let path = action.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let url = Url {
            scheme,
            authority: join_host_port(&host, port),
            host,
            port,
            target: utf8_percent_encode(&path, PATH_ESCAPES).to_string(),
        };
        let mut headers = Vec::new();
        let mut host_header = None;
        for header in action.http_headers.iter().flatten() {
            let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|err| {
                ProbeError::Header {
                    name: header.name.clone(),
                    reason: err.to_string(),
                }
            })?;
            let value = HeaderValue::from_str(&header.value).map_err(|err| ProbeError::Header {
                name: header.name.clone(),
                reason: err.to_string(),
            })?;
            if name == HOST {
                host_header.get_or_insert(value);
            } else {
                headers.push((name, value));
            }
        }
        if !headers.iter().any(|(name, _)| name == USER_AGENT) {
            headers.push((
                USER_AGENT,
                HeaderValue::from_str(user_agent).map_err(|err| ProbeError::Header {
                    name: "User-Agent".into(),
                    reason: err.to_string(),
                })?,
            ));
        }
        match headers.iter().find(|(name, _)| name == ACCEPT) {
            None => headers.push((ACCEPT, HeaderValue::from_static("*/*"))),
            Some((_, value)) if value.is_empty() => headers.retain(|(name, _)| name != ACCEPT),
            Some(_) => {}
        }
        Ok(Self {
            url,
            headers,
            host_header,
        })
    }

    /// The first request's URL.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }
}

/// The answer to a GET, redirects followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpAnswer {
    pub(crate) status: StatusCode,
    /// The answer is a redirect to another host, not followed.
    pub(crate) redirect_not_followed: bool,
}

/// Sends the GET, following same-host redirects, all within `timeout`; errors are Go's
/// `url.Error` text (`Get "URL": ...`).
pub(crate) async fn http_get(request: &HttpGet, timeout: Duration) -> Result<HttpAnswer, String> {
    let exchange = async {
        let mut url = request.url.clone();
        let mut host_header = request.host_header.clone();
        let mut redirects = 0;
        loop {
            let (status, location) = send_once(&url, host_header.as_ref(), &request.headers)
                .await
                .map_err(|err| format!("Get \"{url}\": {err}"))?;
            let is_redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let next = location.filter(|_| is_redirect).and_then(|l| url.join(&l));
            let Some(next) = next else {
                return Ok(HttpAnswer {
                    status,
                    redirect_not_followed: false,
                });
            };
            if next.host != request.url.host {
                debug!(from = %url, to = %next, "probe: redirect to another host not followed");
                return Ok(HttpAnswer {
                    status,
                    redirect_not_followed: true,
                });
            }
            if redirects >= MAX_REDIRECTS {
                return Err(format!(
                    "Get \"{next}\": stopped after {MAX_REDIRECTS} redirects"
                ));
            }
            redirects += 1;
            // Go keeps a custom Host header only through relative redirects.
            if next.authority != url.authority || next.scheme != url.scheme {
                host_header = None;
            }
            url = next;
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(format!(
            "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            request.url
        )),
    }
}

/// An httpGet probe: 200–399 is success, anything else a failure with the kubelet's
/// message (the body is never put in it).
pub(crate) async fn http_probe(request: &HttpGet, timeout: Duration) -> ProbeResult {
    match http_get(request, timeout).await {
        Ok(answer) if answer.status.is_success() => ProbeResult::Success,
        Ok(answer) if answer.status.is_redirection() => {
            warn!(url = %request.url(), status = answer.status.as_u16(), "probe terminated redirects; counted as success");
            ProbeResult::Success
        }
        Ok(answer) => ProbeResult::Failure(format!(
            "HTTP probe failed with statuscode: {}",
            answer.status.as_u16()
        )),
        Err(message) => ProbeResult::Failure(message),
    }
}

/// One request on a fresh connection: status and Location of the response.
async fn send_once(
    url: &Url,
    host_header: Option<&HeaderValue>,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<(StatusCode, Option<String>), String> {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(url.target.as_str());
    let default_host;
    let host = match host_header {
        Some(value) => value,
        None => {
            default_host = HeaderValue::from_str(&url.authority).map_err(|e| e.to_string())?;
            &default_host
        }
    };
    builder = builder.header(HOST, host).header(CONNECTION, "close");
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|err| format!("build request: {err}"))?;
    // The whole exchange is bounded by the caller; connect needs no timeout of its own.
    let stream = connect(&url.host, url.port, Duration::MAX).await?;
    match url.scheme {
        Scheme::Http => exchange(stream, request).await,
        Scheme::Https => {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|err| format!("tls: server name {}: {err}", url.host))?;
            let stream = tokio_rustls::TlsConnector::from(insecure_tls_config()?)
                .connect(name, stream)
                .await
                .map_err(|err| format!("tls: {err}"))?;
            exchange(stream, request).await
        }
    }
}

/// Aborts the connection task when the exchange ends (or is cancelled by the timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Option<String>), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        if let Err(err) = connection.await {
            debug!(error = %err, "probe connection ended");
        }
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())?;
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // The body is ignored: dropping the response and the connection closes the socket.
    Ok((response.status(), location))
}

/// A TLS client that accepts any server certificate (the kubelet's
/// `InsecureSkipVerify`), still checking the handshake signatures.
fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|err| format!("tls: {err}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    skiff_api::tls::AcceptAnyServerCert::new(provider),
                ))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPHeader};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::path::PathBuf;

    fn target() -> ProbeTarget {
        ProbeTarget {
            pod_ip: "10.1.0.5".parse().expect("ip"),
            container_ports: vec![ContainerPort {
                name: Some("web".into()),
                container_port: 8080,
                ..Default::default()
            }],
            exec_binary: PathBuf::from("/bin/false"),
            instance_dir: PathBuf::from("/nonexistent"),
            pid: 1,
        }
    }

    fn header(name: &str, value: &str) -> HTTPHeader {
        HTTPHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    fn url(text: &str) -> Url {
        let base = Url {
            scheme: Scheme::Http,
            host: "h".into(),
            port: 1,
            authority: "h:1".into(),
            target: "/".into(),
        };
        base.join(text).expect("absolute url")
    }

    #[test]
    fn request_from_action_has_kubelet_defaults() {
        let action = HTTPGetAction {
            port: IntOrString::String("web".into()),
            path: Some("healthz?full=1".into()),
            ..Default::default()
        };
        let request = HttpGet::from_action(&action, &target(), "kube-probe/1.33").expect("ok");
        assert_eq!(
            request.url().to_string(),
            "http://10.1.0.5:8080/healthz?full=1"
        );
        let names: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("user-agent".into(), "kube-probe/1.33".into()),
                ("accept".into(), "*/*".into())
            ]
        );
        assert_eq!(request.host_header, None);
    }

    #[test]
    fn headers_override_and_empty_accept_removes_it() {
        let action = HTTPGetAction {
            port: IntOrString::Int(443),
            host: Some("example.test".into()),
            scheme: Some("HTTPS".into()),
            http_headers: Some(vec![
                header("Host", "virtual.test"),
                header("User-Agent", "mine"),
                header("Accept", ""),
                header("X-Custom", "a"),
                header("X-Custom", "b"),
            ]),
            ..Default::default()
        };
        let request = HttpGet::from_action(&action, &target(), "kube-probe/1.33").expect("ok");
        assert_eq!(request.url().to_string(), "https://example.test:443/");
        assert_eq!(
            request.host_header,
            Some(HeaderValue::from_static("virtual.test"))
        );
        let names: Vec<String> = request.headers.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, vec!["user-agent", "x-custom", "x-custom"]);

        let bad = HTTPGetAction {
            port: IntOrString::Int(80),
            http_headers: Some(vec![header("bad header", "x")]),
            ..Default::default()
        };
        assert!(matches!(
            HttpGet::from_action(&bad, &target(), "ua"),
            Err(ProbeError::Header { .. })
        ));
        let missing = HTTPGetAction {
            port: IntOrString::String("nope".into()),
            ..Default::default()
        };
        assert!(matches!(
            HttpGet::from_action(&missing, &target(), "ua"),
            Err(ProbeError::Port(_))
        ));
    }

    #[test]
    fn redirect_locations_resolve_like_a_browser() {
        let base = url("http://10.0.0.1:8080/a/b?x=1");
        assert_eq!(
            base.join("/c").map(|u| u.to_string()),
            Some("http://10.0.0.1:8080/c".into())
        );
        assert_eq!(
            base.join("d").map(|u| u.to_string()),
            Some("http://10.0.0.1:8080/a/d".into())
        );
        let other = base.join("https://10.0.0.1/x").expect("absolute");
        assert_eq!((other.scheme, other.port), (Scheme::Https, 443));
        let relative_scheme = base.join("//other.test:81").expect("scheme-relative");
        assert_eq!(relative_scheme.to_string(), "http://other.test:81/");
        assert_eq!(relative_scheme.host, "other.test");
        let v6 = base.join("http://[fd00::1]:9/z").expect("v6");
        assert_eq!((v6.host.as_str(), v6.port), ("fd00::1", 9));
        assert_eq!(base.join("ftp://x/"), None);
    }
}
