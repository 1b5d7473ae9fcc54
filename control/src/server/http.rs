//! HTTPS serving and the mapping of Kubernetes REST requests onto [`ApiServer`] operations.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use skiff_api::fields::FieldSelector;
use skiff_api::labels::Selector;
use skiff_api::resources::ResourceInfo;
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::auth;
use super::discovery;
use super::ops::{DeleteOptions, ListOptions, Part, ScaleChange};
use super::request::{parse_path, Query, ResourcePath, Route};
use super::status::{self, ApiError, ApiResult};
use super::watch::{self, WatchParams};
use super::{ApiServer, ServerError};
use crate::object;
use crate::patch::PatchType;
use crate::pki::ClusterPki;
use crate::printers::{self, IncludeObject};

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Longest watch when the client names no timeout.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

pub fn tls_acceptor(pki: &ClusterPki) -> Result<TlsAcceptor, ServerError> {
    let certs = rustls_pemfile::certs(&mut pki.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("serving certificate: {e}")))?;
    let key = rustls_pemfile::private_key(&mut pki.key_pem.as_bytes())
        .map_err(|e| ServerError::Tls(format!("serving key: {e}")))?
        .ok_or_else(|| ServerError::Tls("serving key: no key in PEM".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS connections until `shutdown` turns true.
pub async fn serve(
    api: Arc<ApiServer>,
    listener: TcpListener,
    tls: TlsAcceptor,
    mut shutdown: tokio_watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let tls = tls.clone();
                let api = api.clone();
                connections.spawn(async move {
                    let stream = match tls.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "tls handshake");
                            return;
                        }
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(handle(api, req).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

fn text_response(code: u16, content_type: &str, body: impl Into<Body>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The verb kube-apiserver would log for this request.
fn verb_of(method: &Method, rp: &ResourcePath, query: &Query) -> &'static str {
    let watch = rp.legacy_watch || query.flag("watch");
    match (
        method.as_str(),
        rp.name.is_some(),
        rp.subresource.as_deref(),
    ) {
        ("GET", _, _) if watch => "watch",
        ("GET", false, _) => "list",
        ("GET", true, _) => "get",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", false, _) => "deletecollection",
        ("DELETE", true, _) => "delete",
        _ => "unknown",
    }
}

async fn handle(api: Arc<ApiServer>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    if let Some((node, node_path)) = super::proxy::parse_node_proxy_path(&path) {
        return serve_node_proxy(&api, req, &node, &node_path, started).await;
    }
    if let Some(target) = super::metrics_api::parse_path(&path) {
        return serve_metrics_api(&api, req, target, &query, started).await;
    }
    let route = match parse_path(&path) {
        Ok(r) => r,
        Err(e) => {
            api.metrics.observe_request("unknown", "", e.code, started);
            return error_response(&e);
        }
    };
    // Health and version are public, as in Kubernetes.
    match &route {
        Route::Healthz | Route::Livez => return text_response(200, "text/plain", "ok"),
        Route::Readyz => {
            return if api.is_ready() {
                text_response(200, "text/plain", "ok")
            } else {
                text_response(503, "text/plain", "not ready: bootstrapping")
            }
        }
        Route::Version => return json_response(200, &discovery::version()),
        _ => {}
    }
    let user = match api.auth_check(req.headers()) {
        Ok(u) => u,
        Err(e) => {
            api.metrics.observe_request("unknown", "", e.code, started);
            return error_response(&e);
        }
    };
    let (verb, resource_label, response) = match route {
        Route::Resource(rp) => {
            let verb = verb_of(req.method(), &rp, &query);
            let label = match &rp.subresource {
                Some(s) => format!("{}/{}", rp.resource.plural, s),
                None => rp.resource.plural.to_string(),
            };
            let result = match auth::authorize(
                &user,
                verb,
                rp.resource,
                rp.subresource.as_deref(),
                rp.namespace.as_deref(),
            ) {
                Ok(()) => serve_resource(&api, req, rp, &query).await,
                Err(e) => Err(e),
            };
            (verb, label, result.unwrap_or_else(|e| error_response(&e)))
        }
        other => ("get", String::new(), serve_non_resource(&api, &req, other)),
    };
    api.metrics
        .observe_request(verb, &resource_label, response.status().as_u16(), started);
    response
}

/// `nodes/{name}/proxy/…`: not a resource path kube-rs or the router knows, so it is
/// authenticated and authorized here before going to the node.
async fn serve_node_proxy(
    api: &Arc<ApiServer>,
    req: Request<Incoming>,
    node: &str,
    node_path: &str,
    started: Instant,
) -> Response<Body> {
    let verb = match *req.method() {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    };
    let result = async {
        let user = api.auth_check(req.headers())?;
        let nodes = skiff_api::resources::by_plural("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("no nodes resource"))?;
        auth::authorize(&user, verb, nodes, Some("proxy"), None)?;
        super::proxy::node_proxy(api, req, node, node_path).await
    }
    .await;
    let response = result.unwrap_or_else(|e| error_response(&e));
    api.metrics
        .observe_request(verb, "nodes/proxy", response.status().as_u16(), started);
    response
}

/// `metrics.k8s.io/v1beta1` (not in the resource table: it has no storage): any
/// authenticated user may read it.
async fn serve_metrics_api(
    api: &Arc<ApiServer>,
    req: Request<Incoming>,
    target: super::metrics_api::MetricsPath,
    query: &Query,
    started: Instant,
) -> Response<Body> {
    let (verb, label) = (target.verb(), target.resource_label());
    let result = match api.auth_check(req.headers()) {
        Ok(_) => super::metrics_api::serve(api, req.method(), target, query).await,
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(body) => json_response(200, &body),
        Err(e) => error_response(&e),
    };
    api.metrics
        .observe_request(verb, label, response.status().as_u16(), started);
    response
}

fn serve_non_resource(api: &ApiServer, req: &Request<Incoming>, route: Route) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(String::from)
        .unwrap_or_else(|| api.config.listen.to_string());
    let not_found = || error_response(&ApiError::path_not_found(req.uri().path()));
    match route {
        Route::Metrics => text_response(200, "text/plain; version=0.0.4", api.metrics.render()),
        Route::CoreVersions => json_response(200, &discovery::core_versions(&host)),
        Route::Groups => json_response(200, &discovery::groups()),
        Route::Group(g) => discovery::group(&g)
            .map(|d| json_response(200, &d))
            .unwrap_or_else(not_found),
        Route::ResourceList { group, version } => discovery::resource_list(&group, &version)
            .map(|d| json_response(200, &d))
            .unwrap_or_else(not_found),
        Route::OpenApiV2 => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .unwrap_or("");
            if accept.contains("protobuf") {
                // The `@` form is only for Accept: Go clients cannot parse it as a Content-Type.
                text_response(
                    200,
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    discovery::openapi_v2_protobuf(),
                )
            } else {
                json_response(200, &discovery::openapi_v2_json())
            }
        }
        Route::OpenApiV3 => json_response(200, &discovery::openapi_v3_root()),
        _ => not_found(),
    }
}

impl ApiServer {
    fn auth_check(&self, headers: &HeaderMap) -> ApiResult<auth::User> {
        self.auth.authenticate(headers)
    }
}

async fn read_body(req: Request<Incoming>) -> ApiResult<(HeaderMap, Bytes)> {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| {
            if e.to_string().contains("length limit") {
                ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("request body is larger than {MAX_BODY} bytes"),
                )
            } else {
                ApiError::bad_request(format!("reading request body: {e}"))
            }
        })?
        .to_bytes();
    Ok((parts.headers, bytes))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decodes a JSON or YAML object body.
fn decode_object(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = content_type(headers);
    let value: Value = match ct.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request is not valid JSON: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| {
                ApiError::bad_request(format!("the body of the request is not valid YAML: {e}"))
            })?,
        "application/vnd.kubernetes.protobuf" => {
            return Err(ApiError::unsupported_media_type(&ct));
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(value)
}

/// Whether the client asked for a server-side printed Table.
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

fn list_options(query: &Query) -> ApiResult<ListOptions> {
    Ok(ListOptions {
        labels: label_selector(query)?,
        fields: None,
        limit: query.number::<usize>("limit")?.unwrap_or(0),
        continue_token: query.get_nonempty("continue").map(String::from),
    })
}

fn label_selector(query: &Query) -> ApiResult<Option<Selector>> {
    query
        .get_nonempty("labelSelector")
        .map(|s| {
            Selector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))
        })
        .transpose()
}

fn field_selector(
    r: &ResourceInfo,
    query: &Query,
    name: Option<&str>,
) -> ApiResult<Option<FieldSelector>> {
    let mut text = query
        .get_nonempty("fieldSelector")
        .unwrap_or("")
        .to_string();
    if let Some(name) = name {
        // A watch on one object is a watch on the collection with a name selector.
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(&format!("metadata.name={name}"));
    }
    if text.is_empty() {
        return Ok(None);
    }
    let sel = FieldSelector::parse(&text)
        .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
    sel.check_supported(r.kind)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Some(sel))
}

fn dry_run(query: &Query) -> ApiResult<bool> {
    match query.get_nonempty("dryRun") {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

fn include_object(query: &Query) -> ApiResult<IncludeObject> {
    match query.get_nonempty("includeObject") {
        None => Ok(IncludeObject::default()),
        Some(v) => IncludeObject::parse(v)
            .ok_or_else(|| ApiError::bad_request(format!("includeObject: Unsupported value: {v:?}: supported values: \"None\", \"Metadata\", \"Object\""))),
    }
}

fn list_json(r: &ResourceInfo, list: super::ops::ObjectList) -> Value {
    let mut meta = json!({"resourceVersion": list.revision.to_string()});
    if let Some(c) = list.continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": r.list_kind(),
        "apiVersion": r.api_version(),
        "metadata": meta,
        "items": list.items,
    })
}

async fn serve_resource(
    api: &Arc<ApiServer>,
    req: Request<Incoming>,
    rp: ResourcePath,
    query: &Query,
) -> ApiResult<Response<Body>> {
    let r = rp.resource;
    let ns = rp.namespace.clone();
    let nsr = ns.as_deref();
    let method = req.method().clone();
    let table = wants_table(req.headers());
    let is_watch = rp.legacy_watch || query.flag("watch");
    let sub = rp.subresource.as_deref();

    match (&method, rp.name.as_deref(), sub) {
        (&Method::GET, name, None) if is_watch => {
            let after_revision = match query.get_nonempty("resourceVersion") {
                None | Some("0") => None,
                Some(v) => Some(v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {v:?}: not a number"))
                })?),
            };
            let params = WatchParams {
                after_revision,
                labels: label_selector(query)?,
                fields: field_selector(r, query, name)?,
                bookmarks: query.flag("allowWatchBookmarks"),
                timeout: query
                    .number::<u64>("timeoutSeconds")?
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_WATCH_TIMEOUT),
            };
            let render: watch::Render = if table {
                let inc = include_object(query)?;
                Arc::new(move |obj: &Value| {
                    printers::table(r, std::slice::from_ref(obj), inc, jiff::Timestamp::now())
                })
            } else {
                Arc::new(|obj: &Value| obj.clone())
            };
            let rx = watch::start(api.clone(), r, ns, params, render).await?;
            let stream = ReceiverStream::new(rx).map_ok_infallible();
            Ok(Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, "no-cache, private")
                .body(Body::from_stream(stream))
                .map_err(ApiError::internal)?)
        }
        (&Method::GET, None, None) => {
            let mut opts = list_options(query)?;
            opts.fields = field_selector(r, query, None)?;
            let list = api.list(r, nsr, &opts).await?;
            if table {
                let mut t = printers::table(
                    r,
                    &list.items,
                    include_object(query)?,
                    jiff::Timestamp::now(),
                );
                t["metadata"]["resourceVersion"] = json!(list.revision.to_string());
                if let Some(c) = &list.continue_token {
                    t["metadata"]["continue"] = json!(c);
                }
                return Ok(json_response(200, &t));
            }
            Ok(json_response(200, &list_json(r, list)))
        }
        (&Method::GET, Some(name), None | Some("status")) => {
            let obj = api.get(r, nsr, name).await?;
            if table && sub.is_none() {
                return Ok(json_response(
                    200,
                    &printers::table(r, &[obj], include_object(query)?, jiff::Timestamp::now()),
                ));
            }
            Ok(json_response(200, &obj))
        }
        (&Method::GET, Some(name), Some("scale")) => {
            let obj = api.get(r, nsr, name).await?;
            Ok(json_response(200, &ApiServer::scale_of(r, &obj)))
        }
        (&Method::POST, None, None) => {
            let dry = dry_run(query)?;
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(&headers, &body)?;
            let created = api.create(r, nsr, obj, dry).await?;
            Ok(json_response(201, &created))
        }
        (&Method::POST, Some(name), Some("binding")) => {
            let (headers, body) = read_body(req).await?;
            let binding = decode_object(&headers, &body)?;
            let ns = nsr.ok_or_else(|| ApiError::bad_request("binding needs a namespace"))?;
            let result = api.bind(ns, name, &binding).await?;
            Ok(json_response(201, &result))
        }
        (&Method::POST, Some(name), Some("eviction")) => {
            let (headers, body) = read_body(req).await?;
            let eviction = decode_object(&headers, &body)?;
            let opts = DeleteOptions::from_request(eviction.get("deleteOptions"), query)?;
            let pod = api.delete(r, nsr, name, &opts).await?;
            Ok(json_response(
                201,
                &status::success_status(r, name, object::uid(&pod)),
            ))
        }
        (_, Some(name), Some(node_sub @ ("log" | "exec" | "attach" | "portforward"))) => {
            let ns = nsr.ok_or_else(|| ApiError::bad_request("pods need a namespace"))?;
            super::proxy::pod_subresource(api, req, ns, name, node_sub).await
        }
        (&Method::PUT, Some(name), None | Some("status") | Some("finalize")) => {
            let dry = dry_run(query)?;
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(&headers, &body)?;
            let part = if sub == Some("status") {
                Part::Status
            } else {
                Part::Main
            };
            let updated = api.update(r, nsr, name, obj, part, dry).await?;
            Ok(json_response(200, &updated))
        }
        (&Method::PUT, Some(name), Some("scale")) => {
            let dry = dry_run(query)?;
            let (headers, body) = read_body(req).await?;
            let scale = decode_object(&headers, &body)?;
            let ns = nsr.ok_or_else(|| ApiError::bad_request("scale needs a namespace"))?;
            Ok(json_response(
                200,
                &api.update_scale(r, ns, name, ScaleChange::Replace(&scale), dry)
                    .await?,
            ))
        }
        (&Method::PATCH, Some(name), None | Some("status") | Some("scale")) => {
            let dry = dry_run(query)?;
            let (headers, body) = read_body(req).await?;
            let ct = content_type(&headers);
            let patch_type = PatchType::from_content_type(&ct)
                .ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
            if sub == Some("scale") {
                let ns = nsr.ok_or_else(|| ApiError::bad_request("scale needs a namespace"))?;
                return Ok(json_response(
                    200,
                    &api.update_scale(r, ns, name, ScaleChange::Patch(patch_type, &body), dry)
                        .await?,
                ));
            }
            let part = if sub == Some("status") {
                Part::Status
            } else {
                Part::Main
            };
            let patched = api
                .patch(r, nsr, name, part, patch_type, &body, dry)
                .await?;
            Ok(json_response(200, &patched))
        }
        (&Method::DELETE, Some(name), None) => {
            let (headers, body) = read_body(req).await?;
            let opts_body = if body.is_empty() {
                None
            } else {
                Some(decode_object(&headers, &body)?)
            };
            let opts = DeleteOptions::from_request(opts_body.as_ref(), query)?;
            let obj = api.delete(r, nsr, name, &opts).await?;
            Ok(json_response(200, &obj))
        }
        (&Method::DELETE, None, None) => {
            let (headers, body) = read_body(req).await?;
            let opts_body = if body.is_empty() {
                None
            } else {
                Some(decode_object(&headers, &body)?)
            };
            let opts = DeleteOptions::from_request(opts_body.as_ref(), query)?;
            let mut list_opts = list_options(query)?;
            list_opts.fields = field_selector(r, query, None)?;
            list_opts.limit = 0;
            list_opts.continue_token = None;
            let list = api.list(r, nsr, &list_opts).await?;
            let mut deleted = Vec::new();
            for obj in &list.items {
                match api
                    .delete(r, object::namespace(obj), object::name(obj), &opts)
                    .await
                {
                    Ok(o) => deleted.push(o),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                200,
                &json!({
                    "kind": r.list_kind(),
                    "apiVersion": r.api_version(),
                    "metadata": {"resourceVersion": list.revision.to_string()},
                    "items": deleted,
                }),
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            method.as_str(),
            req.uri().path(),
        )),
    }
}

type InfallibleFrames<S> = futures::stream::Map<S, fn(Bytes) -> Result<Bytes, Infallible>>;

/// Maps a stream of bytes into body frames that never fail.
trait MapOkInfallible: Sized {
    fn map_ok_infallible(self) -> InfallibleFrames<Self>;
}

impl<S: futures::Stream<Item = Bytes>> MapOkInfallible for S {
    fn map_ok_infallible(self) -> InfallibleFrames<Self> {
        futures::StreamExt::map(self, Ok as fn(Bytes) -> Result<Bytes, Infallible>)
    }
}
