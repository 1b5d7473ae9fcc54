//! A real etcd on loopback with a temporary data directory, for tests of the etcd store and
//! of several control planes sharing one store.
//!
//! The etcd binary comes from `SKIFF_ETCD_BIN` or `PATH` (Debian: `etcd-server`).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A running etcd, killed when dropped (also when the test panics).
pub struct EtcdProcess {
    pub child: Child,
    pub endpoint: String,
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
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

pub fn find_etcd() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("SKIFF_ETCD_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

pub fn start_etcd(bin: &Path) -> EtcdProcess {
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

/// The etcd binary, or the reason the test cannot run: it fails unless `SKIFF_SKIP_ETCD=1`.
pub fn etcd_or_skip() -> Option<PathBuf> {
    match find_etcd() {
        Some(bin) => Some(bin),
        None if std::env::var("SKIFF_SKIP_ETCD").as_deref() == Ok("1") => {
            eprintln!("etcd not found; skipped because SKIFF_SKIP_ETCD=1");
            None
        }
        None => panic!(
            "etcd not found: install it (Debian: apt-get install etcd-server) or point \
             SKIFF_ETCD_BIN at it; set SKIFF_SKIP_ETCD=1 to skip this test"
        ),
    }
}
