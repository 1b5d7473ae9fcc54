//! The etcd store against a real etcd: this test starts one on loopback with a temporary data
//! directory and runs the shared conformance suite on it.
//!
//! The etcd binary comes from `SKIFF_ETCD_BIN` or `PATH` (Debian: `etcd-server`). Without it
//! the test fails, unless `SKIFF_SKIP_ETCD=1` says to skip it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_control::store::etcd::EtcdStore;
use skiff_control::store::{suite, Store};

/// A running etcd, killed when dropped (also when the test panics).
struct EtcdProcess {
    child: Child,
    endpoint: String,
    log: PathBuf,
    _data: tempfile::TempDir,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EtcdProcess {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn find_etcd() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("SKIFF_ETCD_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("finding a free loopback port")
}

fn start_etcd(bin: &Path) -> EtcdProcess {
    let data = tempfile::tempdir().expect("temp dir for etcd");
    let client_port = free_port();
    let peer_port = free_port();
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log = data.path().join("etcd.log");
    let log_file = std::fs::File::create(&log).expect("etcd log file");
    let log_err = log_file.try_clone().expect("etcd log file");
    let child = Command::new(bin)
        .arg("--name=default")
        .arg(format!("--data-dir={}", data.path().join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=default={peer}"))
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|err| panic!("starting {}: {err}", bin.display()));
    let mut etcd = EtcdProcess {
        child,
        endpoint: client,
        log,
        _data: data,
    };

    let addr: SocketAddr = ([127, 0, 0, 1], client_port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = etcd.child.try_wait() {
            panic!(
                "etcd exited with {status} while starting:\n{}",
                etcd.log_tail()
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return etcd;
        }
        if Instant::now() > deadline {
            panic!(
                "etcd did not listen on {addr} within 30s:\n{}",
                etcd.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connects, retrying while etcd elects itself leader.
async fn connect(etcd: &EtcdProcess, prefix: &str) -> std::sync::Arc<EtcdStore> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), prefix).await {
            Ok(store) => return store,
            Err(err) if Instant::now() > deadline => {
                panic!(
                    "connecting to etcd at {}: {err}\n{}",
                    etcd.endpoint,
                    etcd.log_tail()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(bin) = find_etcd() else {
        if std::env::var("SKIFF_SKIP_ETCD").as_deref() == Ok("1") {
            eprintln!("etcd not found; skipped because SKIFF_SKIP_ETCD=1");
            return;
        }
        panic!(
            "etcd not found: install it (Debian: apt-get install etcd-server) or point \
             SKIFF_ETCD_BIN at it; set SKIFF_SKIP_ETCD=1 to skip this test"
        );
    };
    let etcd = start_etcd(&bin);
    let store = connect(&etcd, "/skiff-test").await;
    assert_eq!(store.name(), "etcd");
    suite::run_all(store.clone()).await;

    // A second store on another prefix sees none of the first one's keys.
    let other = connect(&etcd, "/skiff-other").await;
    assert_eq!(other.count("/").await.expect("count"), 0);
    assert!(store.count("/").await.expect("count") > 0);
    // Both share etcd's revision.
    assert_eq!(
        other.current_revision().await.expect("revision"),
        store.current_revision().await.expect("revision")
    );
}
