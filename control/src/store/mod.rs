//! The revisioned key/value store with watch that holds every API object (the model of etcd
//! and of k3s's kine). Two backends implement [`Store`]: embedded SQLite (the default) and etcd.
//!
//! Revisions are global and strictly increasing: every successful write gets the next one, and
//! it becomes the object's `resourceVersion`. Watches replay the log from a revision, so a
//! client that saw revision N can resume and see exactly the later writes, in order; once
//! compaction has dropped the history a watch from before it fails with [`StoreError::Compacted`].

pub mod etcd;
pub mod sqlite;
pub mod suite;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

/// The current value of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key (since its last deletion).
    pub create_revision: i64,
    /// The revision of the last write to the key.
    pub mod_revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated; a create has `create_revision == revision`.
    Put,
    Delete,
}

/// One write seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: String,
    /// The new value (`Put`); empty for `Delete`.
    pub value: Vec<u8>,
    /// The value before this write, when there was one (always present for `Delete`).
    pub prev_value: Option<Vec<u8>>,
    pub create_revision: i64,
    /// The revision of this write.
    pub revision: i64,
}

/// What a watch stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    Event(Event),
    /// Every write up to this revision under the watched prefix has been delivered
    /// (used for watch bookmarks).
    Progress(i64),
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at.
    pub revision: i64,
    /// Whether more keys follow the last item.
    pub more: bool,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem, StoreError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// The precondition on the key's mod revision failed; `current` is what is stored now.
    #[error("key {key} was modified: expected revision {expected}, found {}", current.as_ref().map(|c| c.mod_revision.to_string()).unwrap_or_else(|| "none (deleted)".into()))]
    Conflict {
        key: String,
        expected: i64,
        current: Option<KeyValue>,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("store backend {backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}

impl StoreError {
    pub fn backend(backend: &'static str, err: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            backend,
            message: err.to_string(),
        }
    }
}

/// The storage interface of the API server.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`sqlite`, `etcd`), for metrics and logs.
    fn name(&self) -> &'static str;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys under `prefix` in key order, starting after `start_after` when given, at most
    /// `limit` of them (0 = no limit).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StoreError>;

    /// Number of keys under `prefix` (for quota and metrics).
    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        Ok(self.list(prefix, None, 0).await?.items.len())
    }

    /// Creates `key`; fails with `AlreadyExists` if it is there. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StoreError>;

    /// Replaces `key` if its mod revision is `expected_revision`; `NotFound` if the key is
    /// gone, `Conflict` if it changed. Returns the new revision.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: i64,
    ) -> Result<i64, StoreError>;

    /// Deletes `key`, if `expected_revision` is given only when it matches. Returns the
    /// deletion's revision and the value that was deleted.
    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> Result<(i64, KeyValue), StoreError>;

    /// Streams every write under `prefix` with a revision greater than `after_revision`, in
    /// revision order, then follows new writes. `Compacted` if that history is gone.
    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream, StoreError>;

    /// The latest revision of the whole store.
    async fn current_revision(&self) -> Result<i64, StoreError>;

    /// Drops the history at and below `revision` (current values stay).
    async fn compact(&self, revision: i64) -> Result<(), StoreError>;
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): no upper bound; etcd spells that as a single zero byte.
    vec![0]
}
