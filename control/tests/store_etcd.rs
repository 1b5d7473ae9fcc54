//! The etcd store against a real etcd: this test starts one on loopback with a temporary data
//! directory and runs the shared conformance suite on it.
//!
//! The etcd binary comes from `SKIFF_ETCD_BIN` or `PATH` (Debian: `etcd-server`). Without it
//! the test fails, unless `SKIFF_SKIP_ETCD=1` says to skip it.

mod common;

use std::time::{Duration, Instant};

use common::etcd::{etcd_or_skip, start_etcd, EtcdProcess};

use skiff_control::store::etcd::EtcdStore;
use skiff_control::store::{suite, Store};

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
    let Some(bin) = etcd_or_skip() else {
        return;
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
