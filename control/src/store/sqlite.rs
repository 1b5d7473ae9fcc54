//! The embedded SQLite backend (the default store).
//!
//! Layout on disk (one database file plus its `-wal` and `-shm`):
//! - `kv(key, value, create_rev, mod_rev)`: the current value of every key;
//! - `log(rev, key, kind, value, prev_value, create_rev)`: one row per write, for watches;
//! - `meta(name, value)`: `current_revision` (survives compaction and restarts) and
//!   `compacted_revision` (the log holds nothing at or below it).
//!
//! Writes go through a channel to one OS thread that owns the only write connection. It drains
//! every pending request into one transaction (group commit): each request's precondition is
//! checked against the state left by the requests before it, the ones that pass get the next
//! revisions, and the batch is committed with a single fsync (WAL, `synchronous=FULL`). Only
//! then are the events published and the callers answered, so an acknowledged write survives
//! `kill -9`. Compaction and WAL checkpoints run on the same thread between batches, in small
//! steps, so nothing ever waits on SQLite's file lock ("database is locked").
//!
//! Reads use a small pool of read connections on the blocking thread pool; WAL lets them run
//! beside the writer, each inside one snapshot.
//!
//! A watch subscribes to the in-process broadcast of committed batches first, then replays the
//! log from its revision, then follows the broadcast, skipping what the replay already sent. If
//! it falls behind the broadcast it re-reads the log from the last revision it handled, so no
//! event is lost or sent twice.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, error, info, trace, warn};

use super::{
    prefix_end, Event, EventKind, KeyValue, ListResult, Store, StoreError, WatchItem, WatchStream,
};

const BACKEND: &str = "sqlite";

/// The busy timeout of every connection. Only the writer thread writes, so waiting should only
/// happen when another process opened the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `TRUNCATE` checkpoint may wait for readers before giving up until next time; the
/// writer thread is blocked meanwhile, so keep it short.
const CHECKPOINT_BUSY_TIMEOUT: Duration = Duration::from_millis(200);
/// Rows read per query while a watch replays the log.
const REPLAY_CHUNK: usize = 1000;
/// Items buffered between a watch task and its consumer.
const WATCH_BUFFER: usize = 256;
/// After a checkpoint, SQLite truncates the WAL file down to this size.
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

/// Tuning of the SQLite store. `Duration::ZERO` turns a background task off.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How often the background compactor looks at the history.
    pub compaction_interval: Duration,
    /// How much history (by age) the background compactor keeps.
    pub compaction_retention: Duration,
    /// The background compactor always keeps at least this many of the newest revisions.
    pub compaction_min_revisions: i64,
    /// Log rows deleted per step of a compaction (each step is one short write transaction).
    pub compaction_chunk: usize,
    /// How often the WAL is checkpointed and truncated.
    pub checkpoint_interval: Duration,
    /// How often an idle watch reports how far it is complete (`WatchItem::Progress`).
    pub progress_interval: Duration,
    /// Number of read connections.
    pub read_connections: usize,
    /// Most write requests committed in one transaction.
    pub max_batch: usize,
    /// Committed batches kept for watches that fall behind (they re-read the log past that).
    pub event_buffer: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            compaction_interval: Duration::from_secs(60),
            compaction_retention: Duration::from_secs(5 * 60),
            compaction_min_revisions: 1000,
            compaction_chunk: 2000,
            checkpoint_interval: Duration::from_secs(30),
            progress_interval: Duration::from_secs(1),
            read_connections: 4,
            max_batch: 512,
            event_buffer: 256,
        }
    }
}

/// What a WAL checkpoint achieved (SQLite's `wal_checkpoint` result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointResult {
    /// The checkpoint could not finish because readers still used the WAL.
    pub busy: bool,
    /// Frames in the WAL (-1 if unknown).
    pub wal_frames: i64,
    /// Frames copied into the database (-1 if unknown).
    pub checkpointed_frames: i64,
}

/// The SQLite-backed [`Store`].
pub struct SqliteStore {
    shared: Arc<Shared>,
    jobs: std_mpsc::Sender<Job>,
}

/// What the writer thread, the readers and the watch tasks share.
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    read_permits: Arc<Semaphore>,
    events: broadcast::Sender<Arc<Batch>>,
    /// The last committed revision.
    committed: AtomicI64,
    options: SqliteOptions,
}

/// The events of one committed transaction. Revisions are contiguous across batches, so a
/// watch can tell from `first_revision` whether it missed one.
struct Batch {
    first_revision: i64,
    last_revision: i64,
    events: Vec<Event>,
}

enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: i64,
    },
    Delete {
        key: String,
        expected: Option<i64>,
    },
}

enum WriteOutcome {
    Put(i64),
    Deleted(i64, KeyValue),
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Write(WriteRequest),
    /// Records a new compacted revision; answers whether it moved.
    MarkCompacted {
        revision: i64,
        reply: Reply<bool>,
    },
    /// Deletes up to one chunk of log rows at or below `upto`; answers how many.
    CompactChunk {
        upto: i64,
        reply: Reply<usize>,
    },
    Checkpoint {
        reply: Reply<CheckpointResult>,
    },
}

fn db_err(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::backend(BACKEND, format!("{what}: {err}"))
}

fn writer_gone() -> StoreError {
    StoreError::backend(BACKEND, "the sqlite writer thread has stopped")
}

fn key_from_blob(blob: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(blob).map_err(|e| db_err("stored key is not valid utf-8", e))
}

/// The byte range `[start, end)` of the keys under a prefix (`end == None`: no upper bound).
#[derive(Clone)]
struct KeyRange {
    prefix: String,
    end: Option<Vec<u8>>,
}

impl KeyRange {
    fn new(prefix: &str) -> Self {
        let end = prefix_end(prefix);
        // `prefix_end` spells "no upper bound" as a single zero byte.
        let end = if prefix.is_empty() || end == [0] {
            None
        } else {
            Some(end)
        };
        KeyRange {
            prefix: prefix.to_string(),
            end,
        }
    }

    fn contains(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }

    /// `AND key < ?n` when there is an upper bound, binding it into `params`.
    fn end_clause(&self, params: &mut Vec<Value>) -> String {
        match &self.end {
            Some(end) => {
                params.push(Value::Blob(end.clone()));
                format!(" AND key < ?{}", params.len())
            }
            None => String::new(),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts the writer thread and the
    /// background compaction and checkpoint tasks. Must be called inside a tokio runtime.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<Arc<SqliteStore>, StoreError> {
        let owned_path = path.to_path_buf();
        let opts = options.clone();
        let (write_conn, readers, revision) =
            tokio::task::spawn_blocking(move || open_files(&owned_path, &opts))
                .await
                .map_err(|e| db_err("opening the database", e))??;

        let (events, _) = broadcast::channel(options.event_buffer.max(1));
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            read_permits: Arc::new(Semaphore::new(readers.len())),
            readers: Mutex::new(readers),
            events,
            committed: AtomicI64::new(revision),
            options,
        });
        let (jobs, job_rx) = std_mpsc::channel();
        let writer = Writer {
            conn: write_conn,
            revision,
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("skiff-sqlite-writer".into())
            .spawn(move || writer.run(job_rx))
            .map_err(|e| db_err("starting the sqlite writer thread", e))?;

        let store = Arc::new(SqliteStore { shared, jobs });
        spawn_compactor(&store);
        spawn_checkpointer(&store);
        info!(path = %path.display(), revision, "opened sqlite store");
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The write-ahead log beside the database file.
    pub fn wal_path(&self) -> PathBuf {
        let mut name = self.shared.path.clone().into_os_string();
        name.push("-wal");
        PathBuf::from(name)
    }

    /// Copies the WAL into the database and truncates it (skipped, with `busy`, when readers
    /// hold on to it for too long).
    pub async fn checkpoint(&self) -> Result<CheckpointResult, StoreError> {
        self.submit(|reply| Job::Checkpoint { reply }).await
    }

    /// Drops history at and below `revision`, in chunks between write batches. Returns how many
    /// log rows were deleted.
    pub async fn compact_to(&self, revision: i64) -> Result<usize, StoreError> {
        // Mark first: from now on watches from before `revision` fail instead of seeing a log
        // with holes while the rows are deleted.
        self.submit(|reply| Job::MarkCompacted { revision, reply })
            .await?;
        let chunk = self.shared.options.compaction_chunk.max(1);
        let mut total = 0;
        loop {
            let deleted = self
                .submit(|reply| Job::CompactChunk {
                    upto: revision,
                    reply,
                })
                .await?;
            total += deleted;
            if deleted < chunk {
                break;
            }
        }
        debug!(revision, deleted = total, "compacted sqlite log");
        Ok(total)
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(job(reply)).map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        self.submit(|reply| Job::Write(WriteRequest { op, reply }))
            .await
    }

    /// One pass of the background compactor: remembers the current revision, and compacts to
    /// the newest remembered revision that is older than the retention window.
    async fn auto_compact(&self, samples: &mut VecDeque<(Instant, i64)>) {
        let options = &self.shared.options;
        let now = Instant::now();
        let current = self.shared.committed.load(Ordering::Acquire);
        samples.push_back((now, current));
        let old_enough = |at: Instant| now.duration_since(at) >= options.compaction_retention;
        // Drop samples until the front one is the newest that is old enough; it stays, so the
        // next pass still has a revision to compact to.
        while samples.len() > 1 && samples.get(1).is_some_and(|&(at, _)| old_enough(at)) {
            samples.pop_front();
        }
        let Some(&(at, revision)) = samples.front() else {
            return;
        };
        if !old_enough(at) {
            return;
        }
        let target = revision.min(current - options.compaction_min_revisions);
        if target <= 0 {
            return;
        }
        match self.compact_to(target).await {
            Ok(deleted) if deleted > 0 => {
                info!(revision = target, deleted, "sqlite store compacted history")
            }
            Ok(_) => {}
            Err(err) => {
                error!(revision = target, error = %err, "sqlite background compaction failed")
            }
        }
    }
}

fn spawn_compactor(store: &Arc<SqliteStore>) {
    let period = store.shared.options.compaction_interval;
    if period.is_zero() {
        return;
    }
    let weak: Weak<SqliteStore> = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut samples = VecDeque::new();
        loop {
            ticker.tick().await;
            let Some(store) = weak.upgrade() else { break };
            store.auto_compact(&mut samples).await;
        }
    });
}

fn spawn_checkpointer(store: &Arc<SqliteStore>) {
    let period = store.shared.options.checkpoint_interval;
    if period.is_zero() {
        return;
    }
    let weak: Weak<SqliteStore> = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut busy_in_a_row = 0u32;
        loop {
            ticker.tick().await;
            let Some(store) = weak.upgrade() else { break };
            match store.checkpoint().await {
                Ok(result) if result.busy => {
                    busy_in_a_row += 1;
                    // Readers kept the WAL busy; one miss is normal, a streak means it grows.
                    if busy_in_a_row >= 3 {
                        warn!(
                            path = %store.path().display(),
                            attempts = busy_in_a_row,
                            wal_frames = result.wal_frames,
                            "sqlite wal checkpoint keeps being blocked by readers"
                        );
                    }
                }
                Ok(result) => {
                    busy_in_a_row = 0;
                    trace!(
                        frames = result.checkpointed_frames,
                        "sqlite wal checkpointed"
                    );
                }
                Err(err) => error!(error = %err, "sqlite wal checkpoint failed"),
            }
        }
    });
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| db_err(&format!("opening {}", path.display()), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| db_err("setting busy timeout", e))?;
    Ok(conn)
}

/// Opens the write connection (creating the schema) and the read connections; returns the
/// current revision too.
fn open_files(
    path: &Path,
    options: &SqliteOptions,
) -> Result<(Connection, Vec<Connection>, i64), StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = open_connection(path, flags)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(|e| db_err("enabling wal journal", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(db_err(
            &format!("enabling wal journal on {}", path.display()),
            format!("sqlite kept journal mode {mode}"),
        ));
    }
    // FULL: the WAL is fsynced on every commit, so an acknowledged write is on disk.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| db_err("setting synchronous=FULL", e))?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
        .map_err(|e| db_err("setting journal_size_limit", e))?;

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db_err("creating schema", e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (
             key BLOB PRIMARY KEY,
             value BLOB NOT NULL,
             create_rev INTEGER NOT NULL,
             mod_rev INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS log (
             rev INTEGER PRIMARY KEY,
             key BLOB NOT NULL,
             kind INTEGER NOT NULL,
             value BLOB NOT NULL,
             prev_value BLOB,
             create_rev INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS meta (
             name TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         );
         -- Revisions start at 1 like etcd's, so a fresh store never reports revision 0
         -- (which Kubernetes clients read as \"any\").
         INSERT OR IGNORE INTO meta (name, value) VALUES ('current_revision', 1);
         INSERT OR IGNORE INTO meta (name, value) VALUES ('compacted_revision', 0);",
    )
    .map_err(|e| db_err(&format!("creating schema in {}", path.display()), e))?;
    let meta_rev = read_meta(&tx, "current_revision")?;
    let log_rev: Option<i64> = tx
        .query_row("SELECT MAX(rev) FROM log", [], |row| row.get(0))
        .map_err(|e| db_err("reading the newest log revision", e))?;
    tx.commit().map_err(|e| db_err("creating schema", e))?;
    let revision = meta_rev.max(log_rev.unwrap_or(0));

    let mut readers = Vec::new();
    for _ in 0..options.read_connections.max(1) {
        let reader = open_connection(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(|e| db_err("making a read connection read-only", e))?;
        readers.push(reader);
    }
    Ok((conn, readers, revision))
}

fn read_meta(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
        .map_err(|e| db_err(&format!("reading {name}"), e))
}

fn load_kv(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached("SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1")?
        .query_row([key.as_bytes()], |row| {
            Ok(KeyValue {
                key: key.to_string(),
                value: row.get(0)?,
                create_revision: row.get(1)?,
                mod_revision: row.get(2)?,
            })
        })
        .optional()
}

/// The state of the one thread that writes.
struct Writer {
    conn: Connection,
    /// The last committed revision.
    revision: i64,
    shared: Arc<Shared>,
}

/// A write that passed its precondition, before commit.
struct Applied {
    outcome: WriteOutcome,
    event: Event,
}

impl Writer {
    fn run(mut self, jobs: std_mpsc::Receiver<Job>) {
        let max_batch = self.shared.options.max_batch.max(1);
        while let Ok(first) = jobs.recv() {
            // Group commit: everything that queued up while the last fsync ran goes into one
            // transaction.
            let mut pending = vec![first];
            while pending.len() < max_batch {
                match jobs.try_recv() {
                    Ok(job) => pending.push(job),
                    Err(_) => break,
                }
            }
            let mut writes = Vec::new();
            for job in pending {
                match job {
                    Job::Write(request) => writes.push(request),
                    other => {
                        // Keep the order callers submitted in.
                        if !writes.is_empty() {
                            self.commit_batch(std::mem::take(&mut writes));
                        }
                        self.maintenance(other);
                    }
                }
            }
            if !writes.is_empty() {
                self.commit_batch(writes);
            }
        }
        debug!(path = %self.shared.path.display(), "sqlite writer thread stopped");
    }

    fn commit_batch(&mut self, requests: Vec<WriteRequest>) {
        match self.apply_batch(&requests) {
            Ok(results) => self.publish(requests, results),
            Err(err) if requests.len() > 1 => {
                // Something failed below the preconditions (disk, corruption, a value too big):
                // retry one by one so that only the request at fault fails.
                warn!(error = %err, size = requests.len(), "sqlite batch failed; retrying its writes one by one");
                for request in requests {
                    match self.apply_batch(std::slice::from_ref(&request)) {
                        Ok(results) => self.publish(vec![request], results),
                        Err(err) => {
                            error!(error = %err, "sqlite write failed");
                            let _ = request.reply.send(Err(db_err("writing", err)));
                        }
                    }
                }
            }
            Err(err) => {
                error!(error = %err, "sqlite write failed");
                for request in requests {
                    let _ = request.reply.send(Err(db_err("writing", &err)));
                }
            }
        }
    }

    /// Applies the requests in one transaction and commits; the outer error means nothing was
    /// committed, the inner ones are the requests whose precondition failed.
    fn apply_batch(
        &mut self,
        requests: &[WriteRequest],
    ) -> rusqlite::Result<Vec<Result<Applied, StoreError>>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read under the write lock rather than trusting memory: should another process ever
        // write to the same file, revisions still do not collide (and watches see the gap).
        let stored: i64 = tx
            .prepare_cached("SELECT value FROM meta WHERE name = 'current_revision'")?
            .query_row([], |row| row.get(0))?;
        let start = stored.max(self.revision);
        let mut revision = start;
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            results.push(apply_one(&tx, &mut revision, &request.op)?);
        }
        if revision != start {
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'current_revision'")?
                .execute([revision])?;
        }
        tx.commit()?;
        self.revision = revision;
        Ok(results)
    }

    /// After commit: publish the events, then answer the callers.
    fn publish(&mut self, requests: Vec<WriteRequest>, results: Vec<Result<Applied, StoreError>>) {
        let mut events = Vec::new();
        let mut answers = Vec::with_capacity(requests.len());
        for (request, result) in requests.into_iter().zip(results) {
            match result {
                Ok(applied) => {
                    events.push(applied.event);
                    answers.push((request.reply, Ok(applied.outcome)));
                }
                Err(err) => answers.push((request.reply, Err(err))),
            }
        }
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            let batch = Batch {
                first_revision: first.revision,
                last_revision: last.revision,
                events,
            };
            trace!(
                first = batch.first_revision,
                last = batch.last_revision,
                "sqlite batch committed"
            );
            // No receivers is fine: nobody watches.
            let _ = self.shared.events.send(Arc::new(batch));
        }
        self.shared
            .committed
            .store(self.revision, Ordering::Release);
        for (reply, answer) in answers {
            // The caller may have given up waiting; the write stands anyway.
            let _ = reply.send(answer);
        }
    }

    fn maintenance(&mut self, job: Job) {
        match job {
            Job::Write(request) => self.commit_batch(vec![request]),
            Job::MarkCompacted { revision, reply } => {
                let _ = reply.send(self.mark_compacted(revision));
            }
            Job::CompactChunk { upto, reply } => {
                let chunk = self.shared.options.compaction_chunk.max(1);
                let result = self
                    .conn
                    .prepare_cached(
                        "DELETE FROM log WHERE rev IN \
                         (SELECT rev FROM log WHERE rev <= ?1 ORDER BY rev LIMIT ?2)",
                    )
                    .and_then(|mut stmt| stmt.execute(params![upto, chunk as i64]))
                    .map_err(|e| db_err(&format!("deleting log rows up to revision {upto}"), e));
                let _ = reply.send(result);
            }
            Job::Checkpoint { reply } => {
                let _ = reply.send(self.checkpoint());
            }
        }
    }

    fn mark_compacted(&mut self, revision: i64) -> Result<bool, StoreError> {
        if revision > self.revision {
            return Err(db_err(
                &format!("compacting to revision {revision}"),
                format!("it is newer than the current revision {}", self.revision),
            ));
        }
        let compacted = read_meta(&self.conn, "compacted_revision")?;
        if revision <= compacted {
            return Ok(false);
        }
        self.conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted_revision'",
                [revision],
            )
            .map_err(|e| db_err(&format!("recording compacted revision {revision}"), e))?;
        Ok(true)
    }

    fn checkpoint(&mut self) -> Result<CheckpointResult, StoreError> {
        // The writer thread waits while the checkpoint waits for readers: bound that.
        self.conn
            .busy_timeout(CHECKPOINT_BUSY_TIMEOUT)
            .map_err(|e| db_err("setting checkpoint busy timeout", e))?;
        let result = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok(CheckpointResult {
                    busy: row.get::<_, i64>(0)? != 0,
                    wal_frames: row.get(1)?,
                    checkpointed_frames: row.get(2)?,
                })
            })
            .map_err(|e| db_err("checkpointing the wal", e));
        let restored = self
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| db_err("restoring busy timeout", e));
        let result = result?;
        restored?;
        Ok(result)
    }
}

fn insert_log(
    conn: &Connection,
    revision: i64,
    key: &str,
    kind: i64,
    value: &[u8],
    prev_value: Option<&[u8]>,
    create_revision: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO log (rev, key, kind, value, prev_value, create_rev) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key.as_bytes(),
        kind,
        value,
        prev_value,
        create_revision
    ])?;
    Ok(())
}

/// Checks one request's precondition against the transaction's state and applies it.
fn apply_one(
    conn: &Connection,
    revision: &mut i64,
    op: &WriteOp,
) -> rusqlite::Result<Result<Applied, StoreError>> {
    match op {
        WriteOp::Create { key, value } => {
            if load_kv(conn, key)?.is_some() {
                return Ok(Err(StoreError::AlreadyExists(key.clone())));
            }
            let rev = *revision + 1;
            conn.prepare_cached(
                "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![key.as_bytes(), value, rev])?;
            insert_log(conn, rev, key, KIND_PUT, value, None, rev)?;
            *revision = rev;
            Ok(Ok(Applied {
                outcome: WriteOutcome::Put(rev),
                event: Event {
                    kind: EventKind::Put,
                    key: key.clone(),
                    value: value.clone(),
                    prev_value: None,
                    create_revision: rev,
                    revision: rev,
                },
            }))
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let current = match check_revision(load_kv(conn, key)?, key, Some(*expected)) {
                Ok(current) => current,
                Err(err) => return Ok(Err(err)),
            };
            let rev = *revision + 1;
            conn.prepare_cached("UPDATE kv SET value = ?2, mod_rev = ?3 WHERE key = ?1")?
                .execute(params![key.as_bytes(), value, rev])?;
            insert_log(
                conn,
                rev,
                key,
                KIND_PUT,
                value,
                Some(&current.value),
                current.create_revision,
            )?;
            *revision = rev;
            Ok(Ok(Applied {
                outcome: WriteOutcome::Put(rev),
                event: Event {
                    kind: EventKind::Put,
                    key: key.clone(),
                    value: value.clone(),
                    prev_value: Some(current.value),
                    create_revision: current.create_revision,
                    revision: rev,
                },
            }))
        }
        WriteOp::Delete { key, expected } => {
            let current = match check_revision(load_kv(conn, key)?, key, *expected) {
                Ok(current) => current,
                Err(err) => return Ok(Err(err)),
            };
            let rev = *revision + 1;
            conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([key.as_bytes()])?;
            insert_log(
                conn,
                rev,
                key,
                KIND_DELETE,
                &[],
                Some(&current.value),
                current.create_revision,
            )?;
            *revision = rev;
            let event = Event {
                kind: EventKind::Delete,
                key: key.clone(),
                value: Vec::new(),
                prev_value: Some(current.value.clone()),
                create_revision: current.create_revision,
                revision: rev,
            };
            Ok(Ok(Applied {
                outcome: WriteOutcome::Deleted(rev, current),
                event,
            }))
        }
    }
}

fn check_revision(
    current: Option<KeyValue>,
    key: &str,
    expected: Option<i64>,
) -> Result<KeyValue, StoreError> {
    let Some(current) = current else {
        return Err(StoreError::NotFound(key.to_string()));
    };
    match expected {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            current: Some(current),
        }),
        _ => Ok(current),
    }
}

/// A piece of the log read in one snapshot.
struct LogChunk {
    events: Vec<Event>,
    /// The store's revision in that snapshot.
    current: i64,
    /// Whether the chunk reaches the end of the log (it may then be short).
    complete: bool,
}

impl Shared {
    /// Runs `work` on a read connection on the blocking pool.
    async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| db_err("waiting for a read connection", e))?;
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = shared
                .readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop();
            // The semaphore has as many permits as there are connections.
            let Some(mut conn) = conn else {
                return Err(db_err("reading", "no read connection available"));
            };
            let result = work(&mut conn);
            shared
                .readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|e| db_err("read task", e))?
    }

    /// Reads log rows under `range` after `after`, checking in the same snapshot that they
    /// have not been compacted away.
    async fn read_log(
        self: &Arc<Self>,
        range: KeyRange,
        after: i64,
        limit: usize,
    ) -> Result<LogChunk, StoreError> {
        self.read(move |conn| {
            let what = "reading the sqlite log";
            let tx = conn.transaction().map_err(|e| db_err(what, e))?;
            let compacted = read_meta(&tx, "compacted_revision")?;
            let current = read_meta(&tx, "current_revision")?;
            if after < compacted {
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted,
                });
            }
            let mut params = vec![
                Value::Integer(after),
                Value::Blob(range.prefix.as_bytes().to_vec()),
            ];
            let end = range.end_clause(&mut params);
            params.push(Value::Integer(limit as i64));
            let sql = format!(
                "SELECT rev, key, kind, value, prev_value, create_rev FROM log \
                 WHERE rev > ?1 AND key >= ?2{end} ORDER BY rev LIMIT ?{}",
                params.len()
            );
            let mut stmt = tx.prepare_cached(&sql).map_err(|e| db_err(what, e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                        row.get::<_, Option<Vec<u8>>>(4)?,
                        row.get::<_, i64>(5)?,
                    ))
                })
                .map_err(|e| db_err(what, e))?;
            let mut events = Vec::new();
            for row in rows {
                let (revision, key, kind, value, prev_value, create_revision) =
                    row.map_err(|e| db_err(what, e))?;
                events.push(Event {
                    kind: if kind == KIND_DELETE {
                        EventKind::Delete
                    } else {
                        EventKind::Put
                    },
                    key: key_from_blob(key)?,
                    value,
                    prev_value,
                    create_revision,
                    revision,
                });
            }
            drop(stmt);
            Ok(LogChunk {
                complete: events.len() < limit,
                events,
                current,
            })
        })
        .await
    }
}

/// Why a watch task stops.
enum Stop {
    /// The consumer dropped the stream, or the stream ended with an error it was sent.
    Done,
}

struct WatchTask {
    shared: Arc<Shared>,
    range: KeyRange,
    /// Events at or below this revision are not sent (the watch starts after it).
    after: i64,
    /// Every write up to this revision has been looked at.
    seen: i64,
    /// The highest revision the consumer has been told about (event or progress).
    reported: i64,
    out: mpsc::Sender<Result<WatchItem, StoreError>>,
}

impl WatchTask {
    async fn run(mut self, first: LogChunk, mut batches: broadcast::Receiver<Arc<Batch>>) {
        let _ = self.follow(first, &mut batches).await;
        trace!(prefix = %self.range.prefix, "sqlite watch ended");
    }

    async fn follow(
        &mut self,
        first: LogChunk,
        batches: &mut broadcast::Receiver<Arc<Batch>>,
    ) -> Result<(), Stop> {
        let complete = self.deliver_chunk(first).await?;
        if !complete {
            self.catch_up().await?;
        }
        let period = self.shared.options.progress_interval;
        // A zero period turns progress off (the branch below is disabled); tokio refuses zero.
        let tick = period.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(Instant::now() + tick, tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.out.closed() => return Err(Stop::Done),
                received = batches.recv() => match received {
                    Ok(batch) => self.on_batch(&batch).await?,
                    Err(RecvError::Lagged(missed)) => {
                        debug!(prefix = %self.range.prefix, missed, "sqlite watch fell behind; re-reading the log");
                        self.catch_up().await?;
                    }
                    // The store is gone.
                    Err(RecvError::Closed) => return Err(Stop::Done),
                },
                _ = ticker.tick(), if !period.is_zero() => {
                    // Take in what is already published so the progress covers it.
                    loop {
                        match batches.try_recv() {
                            Ok(batch) => self.on_batch(&batch).await?,
                            Err(TryRecvError::Lagged(_)) => self.catch_up().await?,
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Closed) => return Err(Stop::Done),
                        }
                    }
                    if self.seen > self.reported {
                        self.reported = self.seen;
                        self.send(Ok(WatchItem::Progress(self.seen))).await?;
                    }
                }
            }
        }
    }

    async fn send(&self, item: Result<WatchItem, StoreError>) -> Result<(), Stop> {
        self.out.send(item).await.map_err(|_| Stop::Done)
    }

    /// Sends a chunk read from the log; returns whether it reached the end of the log.
    async fn deliver_chunk(&mut self, chunk: LogChunk) -> Result<bool, Stop> {
        for event in chunk.events {
            let revision = event.revision;
            self.deliver(event).await?;
            self.seen = self.seen.max(revision);
        }
        if chunk.complete {
            self.seen = self.seen.max(chunk.current);
        }
        Ok(chunk.complete)
    }

    async fn deliver(&mut self, event: Event) -> Result<(), Stop> {
        if event.revision <= self.seen.max(self.after) || !self.range.contains(&event.key) {
            return Ok(());
        }
        self.reported = self.reported.max(event.revision);
        self.send(Ok(WatchItem::Event(event))).await
    }

    /// Reads the log from where the watch is up to its end.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let from = self.seen.max(self.after);
            let chunk = match self
                .shared
                .read_log(self.range.clone(), from, REPLAY_CHUNK)
                .await
            {
                Ok(chunk) => chunk,
                Err(err) => {
                    self.send(Err(err)).await?;
                    return Err(Stop::Done);
                }
            };
            if self.deliver_chunk(chunk).await? {
                return Ok(());
            }
        }
    }

    async fn on_batch(&mut self, batch: &Batch) -> Result<(), Stop> {
        if batch.last_revision <= self.seen {
            return Ok(());
        }
        if batch.first_revision > self.seen + 1 {
            // A gap (cannot happen while revisions are contiguous): the log has it.
            warn!(prefix = %self.range.prefix, seen = self.seen, next = batch.first_revision, "sqlite watch saw a gap; re-reading the log");
            self.catch_up().await?;
        }
        for event in &batch.events {
            if event.revision > self.seen.max(self.after) && self.range.contains(&event.key) {
                self.deliver(event.clone()).await?;
            }
        }
        self.seen = self.seen.max(batch.last_revision);
        Ok(())
    }
}

fn row_to_kv(
    key: Vec<u8>,
    value: Vec<u8>,
    create: i64,
    modified: i64,
) -> Result<KeyValue, StoreError> {
    Ok(KeyValue {
        key: key_from_blob(key)?,
        value,
        create_revision: create,
        mod_revision: modified,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.shared
            .read(move |conn| load_kv(conn, &key).map_err(|e| db_err(&format!("reading {key}"), e)))
            .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StoreError> {
        let range = KeyRange::new(prefix);
        let start_after = start_after
            .filter(|after| *after >= prefix)
            .map(str::to_string);
        self.shared
            .read(move |conn| {
                let what = format!("listing {}", range.prefix);
                // One snapshot for the rows and the revision they are at.
                let tx = conn.transaction().map_err(|e| db_err(&what, e))?;
                let revision = read_meta(&tx, "current_revision")?;
                let (lower, op) = match &start_after {
                    Some(after) => (after.as_bytes().to_vec(), ">"),
                    None => (range.prefix.as_bytes().to_vec(), ">="),
                };
                let mut params = vec![Value::Blob(lower)];
                let end = range.end_clause(&mut params);
                let limit_clause = if limit > 0 {
                    params.push(Value::Integer(limit as i64 + 1));
                    format!(" LIMIT ?{}", params.len())
                } else {
                    String::new()
                };
                let sql = format!(
                    "SELECT key, value, create_rev, mod_rev FROM kv \
                     WHERE key {op} ?1{end} ORDER BY key{limit_clause}"
                );
                let mut stmt = tx.prepare_cached(&sql).map_err(|e| db_err(&what, e))?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params), |row| {
                        Ok((
                            row.get::<_, Vec<u8>>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, i64>(3)?,
                        ))
                    })
                    .map_err(|e| db_err(&what, e))?;
                let mut items = Vec::new();
                for row in rows {
                    let (key, value, create, modified) = row.map_err(|e| db_err(&what, e))?;
                    items.push(row_to_kv(key, value, create, modified)?);
                }
                drop(stmt);
                let more = limit > 0 && items.len() > limit;
                items.truncate(if limit > 0 { limit } else { items.len() });
                Ok(ListResult {
                    items,
                    revision,
                    more,
                })
            })
            .await
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let range = KeyRange::new(prefix);
        self.shared
            .read(move |conn| {
                let mut params = vec![Value::Blob(range.prefix.as_bytes().to_vec())];
                let end = range.end_clause(&mut params);
                let sql = format!("SELECT COUNT(*) FROM kv WHERE key >= ?1{end}");
                let count: i64 = conn
                    .prepare_cached(&sql)
                    .and_then(|mut stmt| {
                        stmt.query_row(rusqlite::params_from_iter(params), |row| row.get(0))
                    })
                    .map_err(|e| db_err(&format!("counting {}", range.prefix), e))?;
                Ok(usize::try_from(count).unwrap_or(0))
            })
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StoreError> {
        match self
            .write(WriteOp::Create {
                key: key.to_string(),
                value,
            })
            .await?
        {
            WriteOutcome::Put(revision) => Ok(revision),
            WriteOutcome::Deleted(..) => Err(db_err("creating", "writer answered a delete")),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: i64,
    ) -> Result<i64, StoreError> {
        match self
            .write(WriteOp::Update {
                key: key.to_string(),
                value,
                expected: expected_revision,
            })
            .await?
        {
            WriteOutcome::Put(revision) => Ok(revision),
            WriteOutcome::Deleted(..) => Err(db_err("updating", "writer answered a delete")),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> Result<(i64, KeyValue), StoreError> {
        match self
            .write(WriteOp::Delete {
                key: key.to_string(),
                expected: expected_revision,
            })
            .await?
        {
            WriteOutcome::Deleted(revision, kv) => Ok((revision, kv)),
            WriteOutcome::Put(_) => Err(db_err("deleting", "writer answered a put")),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream, StoreError> {
        // Subscribe before reading the log: every write is then either in the replay or in
        // the broadcast (or both, and the task skips the duplicates).
        let batches = self.shared.events.subscribe();
        let range = KeyRange::new(prefix);
        // The first chunk is read here so a compacted revision fails the call itself.
        let first = self
            .shared
            .read_log(range.clone(), after_revision, REPLAY_CHUNK)
            .await?;
        let (out, items) = mpsc::channel(WATCH_BUFFER);
        let task = WatchTask {
            shared: self.shared.clone(),
            range,
            after: after_revision,
            seen: after_revision,
            reported: after_revision,
            out,
        };
        tokio::spawn(task.run(first, batches));
        Ok(Box::pin(ReceiverStream::new(items)))
    }

    async fn current_revision(&self) -> Result<i64, StoreError> {
        Ok(self.shared.committed.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.compact_to(revision).await.map(|_| ())
    }
}
