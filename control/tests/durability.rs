//! Durability: a write acknowledged before `kill -9` of skiff-control is there after the
//! restart, and a watch from before the crash resumes with every later write, in order, once.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client_for, ServerProcess};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_watch_resumes_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut server = ServerProcess::start(dir.path(), port, &[]);
    server.wait_ready().await;
    let client = client_for(&dir.path().join("admin.kubeconfig")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "before"}})).unwrap();
    let start_rv = cms
        .create(&PostParams::default(), &first)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // Writers keep writing; the server is killed while they do.
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let cms = cms.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": name}, "data": {"i": i.to_string()}}),
                )
                .unwrap();
                match cms.create(&PostParams::default(), &cm).await {
                    Ok(c) => {
                        let rv = c.metadata.resource_version.unwrap().parse().unwrap();
                        acked.lock().unwrap().push((name, rv));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "writers made progress before the kill ({} writes)",
        acked.len()
    );

    let mut server = ServerProcess::start(dir.path(), port, &[]);
    server.wait_ready().await;
    let client = client_for(&dir.path().join("admin.kubeconfig")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stored: BTreeSet<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost after kill -9: {lost:?}"
    );

    // A watch from before the crash replays every later write in revision order, once each.
    let expected: BTreeSet<String> = stored
        .iter()
        .filter(|n| n.starts_with('w'))
        .cloned()
        .collect();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &start_rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    let mut last_rv = start_rv.parse::<i64>().unwrap();
    while seen.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.try_next())
            .await
            .expect("watch stalled")
            .unwrap();
        match event {
            Some(WatchEvent::Added(c)) => {
                let rv: i64 = c.metadata.resource_version.unwrap().parse().unwrap();
                assert!(rv > last_rv, "events in revision order");
                last_rv = rv;
                let name = c.metadata.name.unwrap();
                // The control loops write ConfigMaps of their own (kube-root-ca.crt).
                if name.starts_with('w') {
                    seen.push(name);
                }
            }
            Some(WatchEvent::Modified(c))
                if !c.metadata.name.as_deref().unwrap_or("").starts_with('w') => {}
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), seen_set.len(), "no event twice");
    assert_eq!(seen_set, expected, "watch resumed without gaps");
}
