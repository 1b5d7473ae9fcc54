//! The API server: Kubernetes REST over HTTPS on the revisioned store.
//!
//! `ApiServer` holds the operations (get, list, create, update, patch, delete, watch) that the
//! HTTP layer (`http.rs`) maps requests onto and that the server's own loops (namespace
//! deletion, cascading deletes) call directly.

pub mod auth;
pub mod discovery;
pub mod http;
pub mod metrics;
pub mod metrics_api;
pub mod ops;
pub mod proxy;
pub mod request;
pub mod status;
pub mod tokens;
pub mod watch;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;

use crate::pki::{self, ClusterPki};
use crate::registry::allocator::{Ipv4Cidr, PodCidrAllocator, ServiceAllocator};
use crate::store::Store;
use auth::Authenticator;
use metrics::{InstrumentedStore, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("credentials: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("tls configuration: {0}")]
    Tls(String),
    #[error("service allocation: {0}")]
    Alloc(#[from] crate::registry::allocator::AllocError),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("create {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How the API server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The address other machines reach the API at (the `kubernetes` Service's endpoint and
    /// the kubeconfig's server); defaults to the listen address, or a host address when that
    /// is a wildcard.
    pub advertise_address: Option<IpAddr>,
    pub service_cidr: String,
    /// Range pod CIDRs come from: each Node gets a block of `node_cidr_mask_size` bits.
    pub cluster_cidr: String,
    pub node_cidr_mask_size: u8,
    pub node_port_range: (u16, u16),
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Extra names for the serving certificate.
    pub extra_sans: Vec<String>,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        ServerConfig {
            data_dir,
            listen,
            advertise_address: None,
            service_cidr: skiff_api::constants::DEFAULT_SERVICE_CIDR.to_string(),
            cluster_cidr: skiff_api::constants::DEFAULT_CLUSTER_CIDR.to_string(),
            node_cidr_mask_size: 24,
            node_port_range: skiff_api::constants::DEFAULT_NODE_PORT_RANGE,
            bookmark_interval: Duration::from_secs(60),
            extra_sans: Vec::new(),
        }
    }
}

pub struct ApiServer {
    pub store: Arc<dyn Store>,
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    pub allocator: ServiceAllocator,
    pub pod_cidrs: PodCidrAllocator,
    pub pki: ClusterPki,
    auth: Authenticator,
    service_account_tokens: Arc<tokens::ServiceAccountTokens>,
    ready: AtomicBool,
    quota_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A running server: its address and a way to stop it.
pub struct ServerHandle {
    pub api: Arc<ApiServer>,
    pub local_addr: SocketAddr,
    shutdown: tokio_watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Stops accepting connections and ends the serving task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

impl ApiServer {
    /// Sets up credentials and allocators on `store`; `start` then serves it.
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Result<Arc<Self>, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(store, metrics.clone()));
        let cidr = Ipv4Cidr::parse(&config.service_cidr)?;
        let allocator = ServiceAllocator::new(store.clone(), cidr, config.node_port_range);
        let pod_cidrs = PodCidrAllocator::new(
            store.clone(),
            Ipv4Cidr::parse(&config.cluster_cidr)?,
            config.node_cidr_mask_size,
        )?;
        let sans = pki::default_sans(
            config.listen.ip(),
            &config.extra_sans,
            IpAddr::V4(allocator.api_service_ip()),
        );
        let mut sans = sans;
        if let Some(adv) = config.advertise_address {
            sans.push(adv.to_string());
        }
        let pki = pki::load_or_create(&config.data_dir, &sans)?;
        let service_account_tokens = Arc::new(tokens::ServiceAccountTokens::default());
        let auth = Authenticator::new(
            pki.admin_token.clone(),
            pki.node_token.clone(),
            service_account_tokens.clone(),
        );
        Ok(Arc::new(ApiServer {
            store,
            config,
            metrics,
            allocator,
            pod_cidrs,
            pki,
            auth,
            service_account_tokens,
            ready: AtomicBool::new(false),
            quota_locks: Default::default(),
        }))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The address clients on other machines use.
    pub fn advertise_ip(&self, bound: SocketAddr) -> IpAddr {
        if let Some(ip) = self.config.advertise_address {
            return ip;
        }
        if !bound.ip().is_unspecified() {
            return bound.ip();
        }
        first_host_address().unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    pub(crate) fn quota_lock(&self, namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.quota_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(namespace.to_string()).or_default().clone()
    }

    /// Binds, writes the admin kubeconfig, bootstraps built-in objects and serves until
    /// the handle is shut down.
    pub async fn start(self: &Arc<Self>) -> Result<ServerHandle, ServerError> {
        let listener = TcpListener::bind(self.config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: self.config.listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: self.config.listen,
                source,
            })?;
        let url_host = match self.config.listen.ip() {
            ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        let server_url = match url_host {
            IpAddr::V6(v6) => format!("https://[{v6}]:{}", local_addr.port()),
            IpAddr::V4(v4) => format!("https://{v4}:{}", local_addr.port()),
        };
        let kubeconfig = pki::kubeconfig(
            &server_url,
            &self.pki.ca_pem,
            "skiff-admin",
            &self.pki.admin_token,
        );
        pki::write_secret_file(&self.config.data_dir.join("admin.kubeconfig"), &kubeconfig)?;

        let advertise = self.advertise_ip(local_addr);
        crate::registry::lifecycle::bootstrap(self, advertise, local_addr.port())
            .await
            .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
        self.service_account_tokens.spawn_index(self.store.clone());
        self.ready.store(true, Ordering::Release);
        crate::registry::lifecycle::spawn_background_loops(
            self.clone(),
            advertise,
            local_addr.port(),
        );

        let tls = http::tls_acceptor(&self.pki)?;
        let (shutdown, shutdown_rx) = tokio_watch::channel(false);
        let api = self.clone();
        let task = tokio::spawn(http::serve(api, listener, tls, shutdown_rx));
        tracing::info!(%local_addr, store = self.store.name(), "API server listening");
        Ok(ServerHandle {
            api: self.clone(),
            local_addr,
            shutdown,
            task,
        })
    }
}

fn first_host_address() -> Option<IpAddr> {
    pki::local_addresses()
        .into_iter()
        .find(|ip| !ip.is_loopback())
}
