//! The SQLite store: the shared conformance suite, plus what only an embedded store has to
//! prove — values and revisions survive a restart and a `kill -9`, the WAL stays bounded,
//! background compaction runs, and slow watches catch up from the log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use skiff_control::store::sqlite::{SqliteOptions, SqliteStore};
use skiff_control::store::{suite, Store, StoreError, WatchItem};

/// The child side of `acknowledged_writes_survive_kill` reads its database path from here.
const CHILD_DB_ENV: &str = "SKIFF_TEST_SQLITE_CHILD_DB";

/// Shows the store's logs with `RUST_LOG=skiff_control=debug`.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn open(path: &Path) -> Arc<SqliteStore> {
    init_logs();
    SqliteStore::open(path, SqliteOptions::default())
        .await
        .expect("open sqlite store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir.path().join("state.db")).await;
    suite::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_values_and_revision() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let store = open(&path).await;
    let a = store
        .create("/r/a", b"a1".to_vec())
        .await
        .expect("create a");
    let a2 = store
        .update("/r/a", b"a2".to_vec(), a)
        .await
        .expect("update a");
    store.create("/r/b", b"b".to_vec()).await.expect("create b");
    let (last, _) = store.delete("/r/b", None).await.expect("delete b");
    // Compacting everything must not lose the current revision.
    store.compact(last).await.expect("compact");
    assert_eq!(store.current_revision().await.expect("revision"), last);
    drop(store);

    let store = open(&path).await;
    assert_eq!(store.current_revision().await.expect("revision"), last);
    let kv = store.get("/r/a").await.expect("get").expect("a survives");
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"a2"[..], a, a2)
    );
    assert_eq!(store.get("/r/b").await.expect("get"), None);
    let next = store.create("/r/c", b"c".to_vec()).await.expect("create c");
    assert_eq!(next, last + 1, "revisions continue where they stopped");
    match store.watch("/r/", a).await {
        Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, last),
        Err(err) => panic!("watch from before compaction: wrong error {err}"),
        Ok(_) => panic!("watch from before compaction must fail after reopening"),
    }
    let mut stream = store
        .watch("/r/", last)
        .await
        .expect("watch after compaction");
    assert_eq!(suite::next_event(&mut stream).await.revision, next);
}

/// Child process for `acknowledged_writes_survive_kill`: writes until killed, printing every
/// acknowledged write. Does nothing in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_child_process() {
    let Ok(path) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let store = open(Path::new(&path)).await;
    let mut writers = Vec::new();
    for task in 0..16 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/d/{task}/{i}");
                match store.create(&key, vec![b'v'; 512]).await {
                    Ok(revision) => println!("acked {key} {revision}"),
                    Err(err) => panic!("child write of {key} failed: {err}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    panic!("the parent test should have killed this process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "durability_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writing child process");
    let stdout = child.stdout.take().expect("child stdout");

    // Read acknowledgements on a thread; kill the child mid-stream once enough arrived.
    let (acked_tx, acked_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            if parts.next() != Some("acked") {
                continue;
            }
            if let (Some(key), Some(revision)) = (parts.next(), parts.next()) {
                let revision: i64 = revision.parse().expect("revision in child output");
                acked.push((key.to_string(), revision));
                if acked.len() == 2000 {
                    let _ = acked_tx.send(());
                }
            }
        }
        acked
    });
    let enough =
        tokio::task::spawn_blocking(move || acked_rx.recv_timeout(Duration::from_secs(60)))
            .await
            .expect("waiting task");
    // SIGKILL: no destructor, no checkpoint, no clean close.
    child.kill().expect("kill the child");
    let _ = child.wait();
    assert!(
        enough.is_ok(),
        "the child did not acknowledge 2000 writes within 60s"
    );
    let acked = reader.join().expect("reader thread");

    let store = open(&path).await;
    let current = store.current_revision().await.expect("revision");
    let max_acked = acked.iter().map(|(_, r)| *r).max().unwrap_or(0);
    assert!(
        current >= max_acked,
        "revision {current} is behind acknowledged {max_acked}"
    );
    for (key, revision) in &acked {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged write {key} at {revision} was lost"));
        assert_eq!(kv.mod_revision, *revision, "{key} has the wrong revision");
    }
    // The log agrees with the values: a watch from the start sees every acknowledged write.
    let listed = store.list("/d/", None, 0).await.expect("list");
    assert!(listed.items.len() >= acked.len());
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_stays_bounded() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions {
        checkpoint_interval: Duration::from_millis(200),
        compaction_interval: Duration::ZERO,
        ..SqliteOptions::default()
    };
    init_logs();
    let store = SqliteStore::open(&dir.path().join("state.db"), options)
        .await
        .expect("open");
    let wal = store.wal_path();

    // A watch and a lister keep read snapshots open while the writes go on.
    let mut stream = store.watch("/w/", 0).await.expect("watch");
    let watcher = tokio::spawn(async move {
        let mut seen = 0usize;
        while let Some(Ok(item)) = stream.next().await {
            if let WatchItem::Event(_) = item {
                seen += 1;
                if seen == 8000 {
                    break;
                }
            }
        }
        seen
    });
    let lister = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                let _ = store.list("/w/", None, 100).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut largest = 0;
    let value = vec![b'x'; 4096];
    let mut writers = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        let value = value.clone();
        writers.push(tokio::spawn(async move {
            let key = format!("/w/{task}");
            let mut revision = store.create(&key, value.clone()).await.expect("create");
            for _ in 1..1000 {
                revision = store
                    .update(&key, value.clone(), revision)
                    .await
                    .expect("update");
            }
        }));
    }
    for writer in writers {
        while !writer.is_finished() {
            largest = largest.max(file_size(&wal));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        writer.await.expect("writer");
    }
    assert_eq!(
        watcher.await.expect("watcher"),
        8000,
        "the watch saw every write"
    );
    lister.await.expect("lister");
    // 8000 writes of 4 KiB and their previous values: ~64 MiB through the WAL.
    assert!(
        largest < 20 * MIB,
        "wal grew to {} MiB while writing",
        largest / MIB
    );

    let current = store.current_revision().await.expect("revision");
    let deleted = store.compact_to(current).await.expect("compact");
    assert!(
        deleted >= 8000,
        "compaction deleted only {deleted} log rows"
    );
    let result = store.checkpoint().await.expect("checkpoint");
    assert!(!result.busy, "nothing reads, the checkpoint must complete");
    assert!(
        file_size(&wal) < MIB,
        "wal is {} bytes after a truncating checkpoint",
        file_size(&wal)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_keeps_recent_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions {
        compaction_interval: Duration::from_millis(100),
        compaction_retention: Duration::ZERO,
        compaction_min_revisions: 50,
        ..SqliteOptions::default()
    };
    init_logs();
    let store = SqliteStore::open(&dir.path().join("state.db"), options)
        .await
        .expect("open");
    let start = store.current_revision().await.expect("revision");
    let mut last = start;
    for i in 0..300 {
        last = store
            .create(&format!("/c/{i}"), b"x".to_vec())
            .await
            .expect("create");
    }
    // Give the compactor a few passes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.watch("/c/", start).await {
            Err(StoreError::Compacted { compacted, .. }) => {
                assert!(
                    compacted <= last - 50,
                    "compacted {compacted} ate the newest 50"
                );
                break;
            }
            Err(err) => panic!("watch: {err}"),
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => panic!("background compaction did not run within 10s"),
        }
    }
    // The newest 50 revisions are still there.
    let mut stream = store.watch("/c/", last - 50).await.expect("recent watch");
    for revision in last - 49..=last {
        assert_eq!(suite::next_event(&mut stream).await.revision, revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watch_catches_up_from_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A tiny broadcast buffer so the idle watch below falls behind it.
    let options = SqliteOptions {
        event_buffer: 2,
        max_batch: 4,
        ..SqliteOptions::default()
    };
    init_logs();
    let store = SqliteStore::open(&dir.path().join("state.db"), options)
        .await
        .expect("open");
    let start = store.current_revision().await.expect("revision");
    let mut stream = store.watch("/s/", start).await.expect("watch");

    let mut writers = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..150 {
                store
                    .create(&format!("/s/{task}/{i}"), vec![b'x'; 100])
                    .await
                    .expect("create");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let last = store.current_revision().await.expect("revision");
    assert_eq!(last - start, 1200);
    for revision in start + 1..=last {
        assert_eq!(suite::next_event(&mut stream).await.revision, revision);
    }
    // A write outside the prefix: the watch then reports being complete up to it, not beyond.
    let outside = store.create("/t/x", b"x".to_vec()).await.expect("create");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(WatchItem::Progress(revision)))) if revision >= outside => {
                assert_eq!(revision, outside);
                break;
            }
            Ok(Some(Ok(WatchItem::Progress(_)))) => continue,
            other => panic!("expected progress, got {other:?}"),
        }
    }
}
