//! Conformance checks every [`Store`] backend must pass; the backends' integration tests run
//! them on a real store (`tests/store_sqlite.rs`, `tests/store_etcd.rs`).
//!
//! Each check works under its own randomly named prefix, so the suite can run on a store that
//! holds other data. The checks panic with a message naming what went wrong, like any test.
//! Compaction affects the whole store, so run [`compaction`] after the checks that watch from
//! old revisions (as [`run_all`] does).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;

use super::{Event, EventKind, KeyValue, Store, StoreError, WatchItem, WatchStream};

/// How long a check waits for a watch to deliver something before failing.
const WATCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs every check in order on `store`.
pub async fn run_all(store: Arc<dyn Store>) {
    let base = unique_prefix();
    crud(&*store, &format!("{base}crud/")).await;
    list(&*store, &format!("{base}list/")).await;
    watch_history(&*store, &format!("{base}history/")).await;
    watch_live(&*store, &format!("{base}live/")).await;
    concurrent_writers(store.clone(), &format!("{base}concurrent/")).await;
    compaction(&*store, &format!("{base}compaction/")).await;
}

/// A prefix no earlier run used, like `/suite-3f9a…/`.
pub fn unique_prefix() -> String {
    let n: u64 = rand::rng().random();
    format!("/suite-{n:016x}/")
}

fn unexpected<T: std::fmt::Debug>(what: &str, got: T) -> ! {
    panic!("{what}: unexpected result {got:?}")
}

/// create, get, update and delete with their preconditions.
pub async fn crud(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}a");
    assert_eq!(
        store.get(&key).await.expect("get of a missing key"),
        None,
        "a key never written must be absent"
    );
    let before = store.current_revision().await.expect("current revision");

    let created = store.create(&key, b"v1".to_vec()).await.expect("create");
    assert!(
        created > before,
        "create revision {created} must exceed {before}"
    );
    let kv = store.get(&key).await.expect("get").expect("created key");
    assert_eq!(
        kv,
        KeyValue {
            key: key.clone(),
            value: b"v1".to_vec(),
            create_revision: created,
            mod_revision: created,
        }
    );
    match store.create(&key, b"again".to_vec()).await {
        Err(StoreError::AlreadyExists(k)) => assert_eq!(k, key),
        other => unexpected("second create of a key", other),
    }

    let updated = store
        .update(&key, b"v2".to_vec(), created)
        .await
        .expect("update with the right revision");
    assert!(
        updated > created,
        "update revision {updated} must exceed {created}"
    );
    let kv = store.get(&key).await.expect("get").expect("updated key");
    assert_eq!(kv.value, b"v2");
    assert_eq!(kv.create_revision, created, "update keeps create revision");
    assert_eq!(kv.mod_revision, updated);

    match store.update(&key, b"stale".to_vec(), created).await {
        Err(StoreError::Conflict {
            key: k,
            expected,
            current: Some(current),
        }) => {
            assert_eq!(k, key);
            assert_eq!(expected, created);
            assert_eq!(current, kv, "conflict carries the current value");
        }
        other => unexpected("update with a stale revision", other),
    }
    match store
        .update(&format!("{prefix}missing"), b"x".to_vec(), updated)
        .await
    {
        Err(StoreError::NotFound(k)) => assert_eq!(k, format!("{prefix}missing")),
        other => unexpected("update of a missing key", other),
    }
    match store
        .update(&format!("{prefix}missing"), b"x".to_vec(), 0)
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => unexpected("update of a missing key at revision 0", other),
    }
    assert_eq!(
        store.get(&format!("{prefix}missing")).await.expect("get"),
        None,
        "a failed update must not create the key"
    );

    match store.delete(&key, Some(created)).await {
        Err(StoreError::Conflict {
            current: Some(current),
            ..
        }) => assert_eq!(current.mod_revision, updated),
        other => unexpected("delete with a stale revision", other),
    }
    let (deleted_at, deleted) = store
        .delete(&key, Some(updated))
        .await
        .expect("delete with the right revision");
    assert!(deleted_at > updated);
    assert_eq!(deleted, kv, "delete returns the value it removed");
    assert_eq!(store.get(&key).await.expect("get"), None);
    match store.delete(&key, None).await {
        Err(StoreError::NotFound(k)) => assert_eq!(k, key),
        other => unexpected("delete of a deleted key", other),
    }
    match store.update(&key, b"v3".to_vec(), updated).await {
        Err(StoreError::NotFound(_)) => {}
        other => unexpected("update of a deleted key", other),
    }

    // Recreated keys start a new life; deletes without precondition work.
    let recreated = store.create(&key, b"v4".to_vec()).await.expect("recreate");
    assert!(recreated > deleted_at);
    let kv = store.get(&key).await.expect("get").expect("recreated key");
    assert_eq!(kv.create_revision, recreated);
    let (gone_at, gone) = store
        .delete(&key, None)
        .await
        .expect("unconditional delete");
    assert!(gone_at > recreated);
    assert_eq!(gone.value, b"v4");

    let after = store.current_revision().await.expect("current revision");
    assert!(
        after >= gone_at,
        "current revision {after} is behind a write at {gone_at}"
    );
}

/// Prefix isolation, paging and the revision a list is read at.
pub async fn list(store: &dyn Store, prefix: &str) {
    let pods = format!("{prefix}pods/");
    let mut last = 0;
    for name in ["c", "a", "d", "b"] {
        last = store
            .create(&format!("{pods}{name}"), name.as_bytes().to_vec())
            .await
            .expect("create pod");
    }
    // Neighbours that share the prefix as a string but not as a directory.
    store
        .create(&format!("{prefix}podsx/e"), b"e".to_vec())
        .await
        .expect("create podsx");
    store
        .create(&format!("{prefix}pods"), b"bare".to_vec())
        .await
        .expect("create pods");

    let names = |items: &[KeyValue]| -> Vec<String> {
        items
            .iter()
            .map(|kv| kv.key.trim_start_matches(&pods).to_string())
            .collect()
    };

    let all = store.list(&pods, None, 0).await.expect("list");
    assert_eq!(
        names(&all.items),
        ["a", "b", "c", "d"],
        "keys in order, prefix only"
    );
    assert!(!all.more);
    assert!(
        all.revision >= last,
        "list revision {} < last write {last}",
        all.revision
    );
    assert_eq!(all.items[0].value, b"a");
    assert_eq!(store.count(&pods).await.expect("count"), 4);

    let page = store.list(&pods, None, 2).await.expect("first page");
    assert_eq!(names(&page.items), ["a", "b"]);
    assert!(page.more, "more after the first page");
    let start = page.items.last().map(|kv| kv.key.clone());
    let page = store
        .list(&pods, start.as_deref(), 2)
        .await
        .expect("second page");
    assert_eq!(names(&page.items), ["c", "d"]);
    assert!(!page.more, "no more after the last page");
    let page = store
        .list(&pods, Some(&format!("{pods}a")), 1)
        .await
        .expect("page of one");
    assert_eq!(names(&page.items), ["b"]);
    assert!(page.more);
    let page = store
        .list(&pods, Some(&format!("{pods}d")), 5)
        .await
        .expect("page after the end");
    assert!(page.items.is_empty() && !page.more);

    // Revisions only go forward.
    let first = store.list(&pods, None, 0).await.expect("list").revision;
    store
        .delete(&format!("{pods}a"), None)
        .await
        .expect("delete pod");
    let second = store.list(&pods, None, 0).await.expect("list");
    assert!(
        second.revision > first,
        "list revision must grow with writes"
    );
    assert_eq!(names(&second.items), ["b", "c", "d"]);
    let current = store.current_revision().await.expect("current revision");
    assert!(current >= second.revision);
}

/// Waits for the next event of `stream`, skipping progress reports.
pub async fn next_event(stream: &mut WatchStream) -> Event {
    loop {
        match tokio::time::timeout(WATCH_TIMEOUT, stream.next()).await {
            Err(_) => panic!("no watch event within {}s", WATCH_TIMEOUT.as_secs()),
            Ok(None) => panic!("watch stream ended while waiting for an event"),
            Ok(Some(Err(err))) => panic!("watch failed: {err}"),
            Ok(Some(Ok(WatchItem::Progress(_)))) => continue,
            Ok(Some(Ok(WatchItem::Event(event)))) => return event,
        }
    }
}

/// Checks that nothing but progress arrives for a moment.
async fn expect_quiet(stream: &mut WatchStream, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return,
            Ok(Some(Ok(WatchItem::Progress(_)))) => continue,
            Ok(other) => unexpected("watch that should be quiet", other),
        }
    }
}

/// A watch from a past revision replays exactly the later writes under its prefix, in order.
pub async fn watch_history(store: &dyn Store, prefix: &str) {
    let dir = format!("{prefix}w/");
    let start = store.current_revision().await.expect("current revision");
    let a = format!("{dir}a");
    let b = format!("{dir}b");
    let r1 = store.create(&a, b"1".to_vec()).await.expect("create a");
    store
        .create(&format!("{prefix}wx/noise"), b"n".to_vec())
        .await
        .expect("create outside");
    let r2 = store.update(&a, b"2".to_vec(), r1).await.expect("update a");
    let r3 = store.create(&b, b"b".to_vec()).await.expect("create b");
    let (r4, _) = store.delete(&a, Some(r2)).await.expect("delete a");

    let expected = [
        Event {
            kind: EventKind::Put,
            key: a.clone(),
            value: b"1".to_vec(),
            prev_value: None,
            create_revision: r1,
            revision: r1,
        },
        Event {
            kind: EventKind::Put,
            key: a.clone(),
            value: b"2".to_vec(),
            prev_value: Some(b"1".to_vec()),
            create_revision: r1,
            revision: r2,
        },
        Event {
            kind: EventKind::Put,
            key: b.clone(),
            value: b"b".to_vec(),
            prev_value: None,
            create_revision: r3,
            revision: r3,
        },
        Event {
            kind: EventKind::Delete,
            key: a.clone(),
            value: Vec::new(),
            prev_value: Some(b"2".to_vec()),
            create_revision: r1,
            revision: r4,
        },
    ];

    let mut stream = store
        .watch(&dir, start)
        .await
        .expect("watch from the start");
    for want in &expected {
        assert_eq!(&next_event(&mut stream).await, want);
    }
    expect_quiet(&mut stream, Duration::from_millis(300)).await;

    // From the middle: only what came after.
    let mut stream = store.watch(&dir, r2).await.expect("watch from the middle");
    assert_eq!(next_event(&mut stream).await, expected[2]);
    assert_eq!(next_event(&mut stream).await, expected[3]);
    expect_quiet(&mut stream, Duration::from_millis(300)).await;

    // From the last write: nothing, then live writes.
    let mut stream = store.watch(&dir, r4).await.expect("watch from the end");
    expect_quiet(&mut stream, Duration::from_millis(300)).await;
    let r5 = store.create(&a, b"3".to_vec()).await.expect("recreate a");
    let event = next_event(&mut stream).await;
    assert_eq!(
        (event.kind, event.revision, event.key),
        (EventKind::Put, r5, a)
    );
}

/// A watch opened before the writes sees them as they happen, and reports progress when idle.
pub async fn watch_live(store: &dyn Store, prefix: &str) {
    let start = store.current_revision().await.expect("current revision");
    let mut stream = store.watch(prefix, start).await.expect("watch");
    let key = format!("{prefix}k");
    let r1 = store.create(&key, b"1".to_vec()).await.expect("create");
    let event = next_event(&mut stream).await;
    assert_eq!((event.kind, event.revision), (EventKind::Put, r1));
    let r2 = store.update(&key, b"2".to_vec(), r1).await.expect("update");
    let event = next_event(&mut stream).await;
    assert_eq!(event.revision, r2);
    assert_eq!(event.prev_value.as_deref(), Some(&b"1"[..]));
    let (r3, _) = store.delete(&key, None).await.expect("delete");
    let event = next_event(&mut stream).await;
    assert_eq!((event.kind, event.revision), (EventKind::Delete, r3));
    assert_eq!(event.prev_value.as_deref(), Some(&b"2"[..]));
    assert_eq!(event.create_revision, r1);

    // A write elsewhere moves the store on; an idle watch must say it is complete past it.
    let elsewhere = store
        .create(
            &format!("{}x/other", prefix.trim_end_matches('/')),
            b"x".to_vec(),
        )
        .await
        .expect("create elsewhere");
    let deadline = tokio::time::Instant::now() + WATCH_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => panic!("no progress report reaching revision {elsewhere}"),
            Ok(Some(Ok(WatchItem::Progress(revision)))) => {
                assert!(revision >= r3, "progress {revision} went back before {r3}");
                if revision >= elsewhere {
                    break;
                }
            }
            Ok(other) => unexpected("idle watch", other),
        }
    }
}

/// Many concurrent writers: distinct, increasing revisions, and one watch sees every write
/// exactly once, in order.
pub async fn concurrent_writers(store: Arc<dyn Store>, prefix: &str) {
    const TASKS: usize = 32;
    const PER_TASK: usize = 20;
    let start = store.current_revision().await.expect("current revision");
    let mut stream = store.watch(prefix, start).await.expect("watch");

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let key = format!("{prefix}t{task:02}/{i:02}");
                revisions.push((key.clone(), store.create(&key, vec![b'x'; 64]).await));
            }
            revisions
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        let revisions = task.await.expect("writer task panicked");
        let mut previous = 0;
        for (key, result) in revisions {
            let revision = match result {
                Ok(revision) => revision,
                Err(err) => panic!("concurrent create of {key} failed: {err}"),
            };
            assert!(revision > previous, "one writer's revisions must increase");
            previous = revision;
            written.push((revision, key));
        }
    }
    let distinct: HashSet<i64> = written.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        distinct.len(),
        TASKS * PER_TASK,
        "every write gets its own revision"
    );
    written.sort();

    let mut previous = start;
    for (revision, key) in &written {
        let event = next_event(&mut stream).await;
        assert!(event.revision > previous, "watch revisions must increase");
        assert_eq!(
            (&event.revision, &event.key),
            (revision, key),
            "watch sees every write once, in order"
        );
        previous = event.revision;
    }
    expect_quiet(&mut stream, Duration::from_millis(300)).await;
    assert_eq!(store.count(prefix).await.expect("count"), TASKS * PER_TASK);
}

/// Expects `watch(prefix, after)` to fail as compacted, either at once or as its first item.
pub async fn expect_compacted(store: &dyn Store, prefix: &str, after: i64) {
    match store.watch(prefix, after).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, after);
            assert!(
                compacted > after,
                "compacted revision {compacted} must exceed {after}"
            );
        }
        Err(err) => panic!("watch from compacted revision {after}: wrong error {err}"),
        Ok(mut stream) => match tokio::time::timeout(WATCH_TIMEOUT, stream.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => unexpected(&format!("watch from compacted revision {after}"), other),
        },
    }
}

/// After compaction, old revisions fail with `Compacted`; later ones and values remain.
pub async fn compaction(store: &dyn Store, prefix: &str) {
    let start = store.current_revision().await.expect("current revision");
    let mut revisions = Vec::new();
    for i in 0..6 {
        revisions.push(
            store
                .create(&format!("{prefix}{i}"), vec![b'0' + i])
                .await
                .expect("create"),
        );
    }
    let cut = revisions[3];
    store.compact(cut).await.expect("compact");
    // Compacting again, or below, is harmless.
    store.compact(cut).await.expect("compact again");
    store.compact(revisions[1]).await.expect("compact below");

    expect_compacted(store, prefix, start).await;
    expect_compacted(store, prefix, revisions[1]).await;

    let mut stream = store.watch(prefix, cut).await.expect("watch after the cut");
    for revision in &revisions[4..] {
        assert_eq!(next_event(&mut stream).await.revision, *revision);
    }
    let live = store
        .create(&format!("{prefix}live"), b"l".to_vec())
        .await
        .expect("create after compaction");
    assert_eq!(next_event(&mut stream).await.revision, live);

    // Values survive compaction; the revision does not go back.
    let listed = store.list(prefix, None, 0).await.expect("list");
    assert_eq!(listed.items.len(), 7);
    assert!(store.current_revision().await.expect("current revision") >= live);
    match store.compact(live + 1000).await {
        Err(_) => {}
        Ok(()) => panic!("compacting to a future revision must fail"),
    }
}
