//! The node's own HTTPS API, the kubelet's port 10250: container logs, exec, port-forward
//! and stats, for the control plane only.
//!
//! The API server proxies `pods/{name}/log`, `pods/{name}/exec`, `pods/{name}/portforward`
//! and `nodes/{name}/proxy/...` here. Routes (the kubelet's paths):
//!
//! - `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines`,
//!   `sinceSeconds`, `sinceTime`, `timestamps`, `previous`, `limitBytes` ([`logs`]).
//! - `GET|POST /exec/{namespace}/{pod}/{container}?command=..&stdin=1&stdout=1&stderr=1&tty=1`,
//!   a WebSocket upgrade speaking `v5.channel.k8s.io` or `v4.channel.k8s.io` ([`exec`]).
//! - `GET|POST /portForward/{namespace}/{pod}?ports=80,8080`, a WebSocket upgrade ([`portforward`]).
//! - `GET /stats/summary`, the kubelet's Summary API ([`stats`]).
//! - `GET /healthz`: `ok`.
//!
//! Every route, `/healthz` included, needs a client certificate chaining to the cluster CA
//! (refused at the TLS handshake otherwise) whose subject CN is
//! `skiff-apiserver-kubelet-client` (403 otherwise). The serving certificate is the node's
//! own, self-signed, under `{pki_dir}/node.crt|node.key` ([`tls`]).
//!
//! The daemon answers the lookups through [`NodeView`]. Errors are Kubernetes `Status`
//! objects in JSON.

mod der;
pub mod exec;
pub mod logs;
pub mod portforward;
mod query;
pub mod stats;
mod status;
pub mod tls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::cgroups::{ContainerCgroup, PodCgroup};

pub use logs::LogOptions;
pub use tls::CONTROL_PLANE_CLIENT_CN;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the node API needs to know about the pods on this node; the daemon implements it.
///
/// The methods are called from blocking threads, so they may read files.
pub trait NodeView: Send + Sync + 'static {
    /// Finds a container instance; `previous` picks the instance before the current one.
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerInstance, LookupError>;

    /// The pod's network namespace file (e.g. `{run}/netns/{uid}`).
    fn pod_netns(&self, namespace: &str, pod: &str) -> Result<PathBuf, LookupError>;

    /// Every pod on the node with its cgroups, for stats.
    fn pods(&self) -> Vec<PodCgroups>;
}

/// One instance (one start) of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInstance {
    /// The pod's uid.
    pub pod_uid: String,
    /// The instance's OCI bundle and shim state dir: holds `config.json`, `shim.json` and,
    /// once it has ended, `exit.json`.
    pub instance_dir: PathBuf,
    /// The instance's CRI log file (rotated files are `{log}.1`, `{log}.2`, ...).
    pub log: PathBuf,
    /// Host pid of the container's init while it runs.
    pub running_pid: Option<i32>,
}

/// A pod's cgroups, for stats.
#[derive(Debug, Clone)]
pub struct PodCgroups {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid.
    pub uid: String,
    /// The pod's cgroup.
    pub pod: PodCgroup,
    /// Each container's name and cgroup.
    pub containers: Vec<(String, ContainerCgroup)>,
}

/// Why a lookup in the node's view failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No such pod on this node (404).
    #[error("pods \"{pod}\" not found in namespace \"{namespace}\" on this node")]
    PodNotFound {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        pod: String,
    },
    /// The pod has no such container, or it never started (404).
    #[error("container \"{container}\" in pod \"{pod}\" not found")]
    ContainerNotFound {
        /// The pod's name.
        pod: String,
        /// The container's name.
        container: String,
    },
    /// `previous` was asked but the container has not restarted (400).
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPreviousInstance {
        /// The pod's name.
        pod: String,
        /// The container's name.
        container: String,
    },
    /// The node could not answer (500).
    #[error("{what}: {reason}")]
    Unavailable {
        /// What was being looked up.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

/// How the node API is served.
#[derive(Debug, Clone)]
pub struct NodeApiConfig {
    /// Address to listen on (port 10250 by default; port 0 in tests).
    pub listen: SocketAddr,
    /// The node's name, a name of the serving certificate.
    pub node_name: String,
    /// The node's IP, an address of the serving certificate.
    pub node_ip: IpAddr,
    /// The cluster CA (PEM) that client certificates must chain to (`--ca-file`).
    pub ca_file: PathBuf,
    /// Where the serving certificate and key are kept (`{root}/pki`).
    pub pki_dir: PathBuf,
    /// The `skiff-runtime` binary, run as `skiff-runtime exec` for exec.
    pub exec_binary: PathBuf,
}

/// Why the node API could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeApiError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file or address.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error("{what}: {reason}")]
    Tls {
        /// Which certificate, key or setting.
        what: String,
        /// Why.
        reason: String,
    },
    /// The serving certificate could not be made.
    #[error("{what}: {source}")]
    Certificate {
        /// Which part of the certificate.
        what: String,
        /// The underlying error.
        source: rcgen::Error,
    },
}

/// Shared by the route handlers.
pub(crate) struct ApiState {
    pub(crate) view: Arc<dyn NodeView>,
    pub(crate) exec_binary: PathBuf,
    pub(crate) node_name: String,
    pub(crate) samples: stats::CpuSamples,
}

pub(crate) type SharedState = Arc<ApiState>;

/// The routes, for an authorized client.
fn router(state: SharedState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::handle),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(exec::handle).post(exec::handle),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(portforward::handle).post(portforward::handle),
        )
        .route("/stats/summary", get(stats::handle))
        .fallback(|uri: axum::http::Uri| async move {
            status::status_response(
                axum::http::StatusCode::NOT_FOUND,
                "NotFound",
                format!("the node API has no route {}", uri.path()),
            )
        })
        .with_state(state)
}

/// Every request refused with 403 and `reason`.
fn forbidden(reason: String) -> Router {
    Router::new().fallback(move || {
        let reason = reason.clone();
        async move {
            status::status_response(axum::http::StatusCode::FORBIDDEN, "Forbidden", reason)
        }
    })
}

/// A running node API server.
pub struct NodeApiServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl NodeApiServer {
    /// The address it listens on (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes the open HTTP connections. Exec and port-forward sessions
    /// already upgraded to WebSockets run on until their command or connection ends.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for NodeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Loads or makes the serving certificate, binds and starts serving in the background.
pub async fn start(
    config: NodeApiConfig,
    view: Arc<dyn NodeView>,
) -> Result<NodeApiServer, NodeApiError> {
    let ca_pem = tokio::fs::read_to_string(&config.ca_file)
        .await
        .map_err(|source| NodeApiError::Io {
            what: format!("read cluster CA {}", config.ca_file.display()),
            source,
        })?;
    let identity = {
        let (pki_dir, node_name, node_ip) = (
            config.pki_dir.clone(),
            config.node_name.clone(),
            config.node_ip,
        );
        tokio::task::spawn_blocking(move || {
            tls::ensure_serving_identity(&pki_dir, &node_name, node_ip)
        })
        .await
        .map_err(|err| NodeApiError::Tls {
            what: "serving certificate".into(),
            reason: err.to_string(),
        })??
    };
    let acceptor = TlsAcceptor::from(tls::server_config(&identity, &ca_pem)?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeApiError::Io {
            what: format!("listen on {}", config.listen),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| NodeApiError::Io {
        what: format!("address of the listener on {}", config.listen),
        source,
    })?;
    let state = Arc::new(ApiState {
        view,
        exec_binary: config.exec_binary.clone(),
        node_name: config.node_name.clone(),
        samples: stats::CpuSamples::default(),
    });
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, acceptor, router(state), stopped));
    info!(%local_addr, node = config.node_name, "node API listening");
    Ok(NodeApiServer {
        local_addr,
        stop: Some(stop),
        task,
    })
}

/// Serves until `shutdown` completes.
pub async fn serve(
    config: NodeApiConfig,
    view: Arc<dyn NodeView>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeApiError> {
    let server = start(config, view).await?;
    shutdown.await;
    server.stop().await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    routes: Router,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(serve_connection(tcp, peer, acceptor.clone(), routes.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(%err, "node API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

async fn serve_connection(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, routes: Router) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            info!(%peer, %err, "node API refused a TLS client");
            return;
        }
        Err(_) => {
            debug!(%peer, "node API TLS handshake timed out");
            return;
        }
    };
    let routes = match tls::authorize_peer(tls.get_ref().1.peer_certificates()) {
        Ok(()) => routes,
        Err(reason) => {
            warn!(%peer, reason, "node API refused a client certificate");
            forbidden(reason)
        }
    };
    let service = TowerToHyperService::new(routes);
    if let Err(err) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades()
        .await
    {
        debug!(%peer, %err, "node API connection ended with an error");
    }
}
