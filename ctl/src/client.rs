//! The connection to the API server: kube-rs' client built from the kubeconfig, the
//! namespace in effect, and small helpers for the raw requests kubectl makes (tables,
//! subresources, patches of a chosen type).

use std::path::PathBuf;

use anyhow::{Context, Result};
use http::{header, Method, Request};
use serde_json::Value;
use skiff_api::resources::ResourceInfo;

use crate::errors;
use crate::kubeconfig;

/// What kubectl asks for when it wants server-side printing.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// Flags every command shares.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub all_namespaces: bool,
}

/// A connected client and the namespace commands work in.
pub struct Cluster {
    pub client: kube::Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// Whether `-n` was given (a manifest's own namespace must then agree with it).
    pub namespace_explicit: bool,
    pub all_namespaces: bool,
    /// The API server's URL, for `cluster-info`.
    pub server: String,
}

/// The patch types `--type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Strategic,
    Merge,
    Json,
}

impl PatchType {
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        }
    }
}

impl Cluster {
    pub async fn connect(globals: &Globals) -> Result<Cluster> {
        let paths = kubeconfig::paths(globals.kubeconfig.as_deref())?;
        let kc = kubeconfig::load(&paths)?;
        let options = kube::config::KubeConfigOptions {
            context: globals.context.clone(),
            cluster: None,
            user: None,
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .context("loading kubeconfig")?;
        let server = config.cluster_url.to_string();
        let default_ns = config.default_namespace.clone();
        let client = kube::Client::try_from(config).context("building the API client")?;
        let namespace = match &globals.namespace {
            Some(ns) => ns.clone(),
            None if default_ns.is_empty() => "default".to_string(),
            None => default_ns,
        };
        Ok(Cluster {
            client,
            namespace,
            namespace_explicit: globals.namespace.is_some(),
            all_namespaces: globals.all_namespaces,
            server: server.trim_end_matches('/').to_string(),
        })
    }

    /// The namespace a list of `resource` covers: none for cluster-scoped resources or `-A`.
    pub fn list_namespace(&self, resource: &ResourceInfo) -> Option<&str> {
        if !resource.namespaced || self.all_namespaces {
            None
        } else {
            Some(&self.namespace)
        }
    }

    /// The namespace a single object of `resource` lives in.
    pub fn object_namespace(&self, resource: &ResourceInfo) -> Option<&str> {
        resource.namespaced.then_some(self.namespace.as_str())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<String> {
        tracing::debug!(%method, path, "request");
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ACCEPT, accept);
        let bytes = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        let request = builder
            .body(bytes)
            .with_context(|| format!("building request for {path}"))?;
        self.client
            .request_text(request)
            .await
            .map_err(errors::from_kube)
    }

    fn parse(path: &str, text: &str) -> Result<Value> {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text).with_context(|| format!("decoding the answer to {path}"))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let text = self
            .send(Method::GET, path, "application/json", None)
            .await?;
        Self::parse(path, &text)
    }

    /// GET asking for a server-side Table (the answer may still be a plain object or list
    /// if the server does not print tables).
    pub async fn get_table(&self, path: &str) -> Result<Value> {
        let text = self.send(Method::GET, path, TABLE_ACCEPT, None).await?;
        Self::parse(path, &text)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let text = self
            .send(
                Method::POST,
                path,
                "application/json",
                Some(("application/json", serde_json::to_vec(body)?)),
            )
            .await?;
        Self::parse(path, &text)
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let text = self
            .send(
                Method::PUT,
                path,
                "application/json",
                Some(("application/json", serde_json::to_vec(body)?)),
            )
            .await?;
        Self::parse(path, &text)
    }

    pub async fn patch(&self, path: &str, kind: PatchType, body: &Value) -> Result<Value> {
        let text = self
            .send(
                Method::PATCH,
                path,
                "application/json",
                Some((kind.content_type(), serde_json::to_vec(body)?)),
            )
            .await?;
        Self::parse(path, &text)
    }

    pub async fn delete(&self, path: &str, options: &Value) -> Result<Value> {
        let text = self
            .send(
                Method::DELETE,
                path,
                "application/json",
                Some(("application/json", serde_json::to_vec(options)?)),
            )
            .await?;
        Self::parse(path, &text)
    }

    /// Opens a watch and yields its events as JSON values, one per line.
    pub async fn watch(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<impl futures::Stream<Item = Result<Value>> + use<>> {
        use futures::{AsyncBufReadExt, TryStreamExt};
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::ACCEPT, accept)
            .body(Vec::new())
            .with_context(|| format!("building request for {path}"))?;
        let reader = self
            .client
            .request_stream(request)
            .await
            .map_err(errors::from_kube)?;
        Ok(reader
            .lines()
            .map_err(|e| anyhow::anyhow!("reading watch stream: {e}"))
            .try_filter(|line| futures::future::ready(!line.trim().is_empty()))
            .and_then(|line| async move {
                serde_json::from_str::<Value>(&line).context("decoding watch event")
            }))
    }
}

/// `/api/v1/namespaces/ns/pods/name/status` and friends.
pub fn resource_path(
    resource: &ResourceInfo,
    namespace: Option<&str>,
    name: Option<&str>,
    subresource: Option<&str>,
) -> String {
    let mut path = resource.group_version_path();
    if let (true, Some(ns)) = (resource.namespaced, namespace) {
        path.push_str("/namespaces/");
        path.push_str(&encode(ns));
    }
    path.push('/');
    path.push_str(resource.plural);
    if let Some(name) = name {
        path.push('/');
        path.push_str(&encode(name));
        if let Some(sub) = subresource {
            path.push('/');
            path.push_str(sub);
        }
    }
    path
}

/// Appends `?a=b&c=d`, skipping empty values.
pub fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::resolve;

    #[test]
    fn paths_and_queries() {
        let pods = resolve("po").expect("pods");
        assert_eq!(
            resource_path(pods, Some("default"), Some("x"), Some("status")),
            "/api/v1/namespaces/default/pods/x/status"
        );
        let nodes = resolve("no").expect("nodes");
        assert_eq!(
            resource_path(nodes, Some("default"), None, None),
            "/api/v1/nodes"
        );
        let deploy = resolve("deploy").expect("deployments");
        assert_eq!(
            resource_path(deploy, None, None, None),
            "/apis/apps/v1/deployments"
        );
        assert_eq!(
            with_query(
                "/api/v1/pods",
                &[("labelSelector", "app in (a,b)"), ("x", "")]
            ),
            "/api/v1/pods?labelSelector=app%20in%20%28a%2Cb%29"
        );
    }
}
