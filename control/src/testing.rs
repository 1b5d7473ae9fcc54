//! A real API server on loopback for tests of this crate and of the crates that talk to it
//! (the controllers, skiffctl): in-process on a temp-dir SQLite store, with an admin
//! kube-rs client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::{ApiServer, ServerConfig, ServerHandle};
use crate::store::sqlite::{SqliteOptions, SqliteStore};

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub handle: Option<ServerHandle>,
    pub url: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` changed its configuration.
    ///
    /// # Panics
    /// When the server cannot start: this is for tests.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default())
            .await
            .expect("open sqlite store");
        let mut config = ServerConfig::new(
            dir.path().to_path_buf(),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        );
        adjust(&mut config);
        let api = ApiServer::new(store, config).expect("api server");
        let handle = api.start().await.expect("start api server");
        let url = format!("https://127.0.0.1:{}", handle.local_addr.port());
        TestServer {
            dir,
            handle: Some(handle),
            url,
        }
    }

    pub fn api(&self) -> &Arc<ApiServer> {
        &self.handle.as_ref().expect("running").api
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    pub async fn client(&self) -> kube::Client {
        client_for(&self.kubeconfig()).await
    }
}

/// A kube-rs client from a kubeconfig file.
///
/// # Panics
/// When the file cannot be read or used: this is for tests.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
///
/// # Panics
/// After `timeout`, naming `what` was waited for.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
