//! The etcd backend, for control planes on several machines.
//!
//! Every key lives under a configurable prefix. Writes are etcd transactions whose compare
//! encodes the precondition (`create_revision == 0` for create, `mod_revision == expected`
//! for update and conditional delete); when the compare fails the transaction reads the key
//! instead, which tells `NotFound` from `Conflict` in the same round trip. Revisions are etcd's
//! own, so they are already global and strictly increasing.
//!
//! Watches are etcd watches from `after_revision + 1` with previous values. Progress comes from
//! etcd's progress notifications, which the watch requests every second. etcd before 3.4.24 and
//! 3.5.8 may send a requested notification ahead of events it still has queued (etcd issue
//! #15220), so a per-watch notification is only reported once the next one arrives; by then the
//! events it overtook have been delivered. Newer servers answer with watch id -1 from the event
//! queue itself, and those are reported at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchResponse,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, trace, warn};

use super::{
    prefix_end, Event, EventKind, KeyValue, ListResult, Store, StoreError, WatchItem, WatchStream,
};

const BACKEND: &str = "etcd";

/// Upper bound on one unary request, so a hung etcd fails requests instead of holding them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a watch asks etcd for a progress notification.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long to wait for etcd to confirm a new watch, or to name the compacted revision.
const WATCH_SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Items buffered between a watch task and its consumer.
const WATCH_BUFFER: usize = 256;

/// The etcd-backed [`Store`].
pub struct EtcdStore {
    client: Client,
    prefix: String,
}

fn etcd_err(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::backend(BACKEND, format!("{what}: {err}"))
}

fn revision_of(
    header: Option<&etcd_client::ResponseHeader>,
    what: &str,
) -> Result<i64, StoreError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| etcd_err(what, "response has no header"))
}

/// Whether an etcd error says the requested revision has been compacted.
fn is_compacted(err: &etcd_client::Error) -> bool {
    err.to_string()
        .contains("required revision has been compacted")
}

/// Sends one request with a deadline; the outer error is the timeout, the inner one etcd's.
async fn call_raw<T>(
    what: &str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<Result<T, etcd_client::Error>, StoreError> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| {
            etcd_err(
                what,
                format!("no answer from etcd within {}s", REQUEST_TIMEOUT.as_secs()),
            )
        })
}

async fn call<T>(
    what: &str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    call_raw(what, request)
        .await?
        .map_err(|e| etcd_err(what, e))
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers. Keys are stored under `key_prefix`.
    pub async fn connect(
        endpoints: &[String],
        key_prefix: &str,
    ) -> Result<Arc<EtcdStore>, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let what = format!("connecting to etcd at {}", endpoints.join(","));
        let client =
            tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(endpoints, Some(options)))
                .await
                .map_err(|_| etcd_err(&what, "timed out"))?
                .map_err(|e| etcd_err(&what, e))?;
        let store = Arc::new(EtcdStore {
            client,
            prefix: key_prefix.to_string(),
        });
        let revision = store.current_revision().await.map_err(|e| match e {
            StoreError::Backend { message, .. } => etcd_err(&what, message),
            other => other,
        })?;
        info!(endpoints = %endpoints.join(","), prefix = key_prefix, revision, "connected to etcd");
        Ok(store)
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        format!("{}{}", self.prefix, key).into_bytes()
    }

    fn short_key(&self, full: &[u8]) -> Result<String, StoreError> {
        let key = std::str::from_utf8(full).map_err(|e| etcd_err("key is not valid utf-8", e))?;
        key.strip_prefix(self.prefix.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                etcd_err(
                    "reading a key",
                    format!("{key} is outside the prefix {}", self.prefix),
                )
            })
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.short_key(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// Runs a transaction: `compares` guard `then`; when they fail the key is read instead.
    async fn guarded(
        &self,
        what: &str,
        compares: Vec<Compare>,
        then: TxnOp,
        full: &[u8],
    ) -> Result<(i64, Result<TxnOpResponse, Option<KeyValue>>), StoreError> {
        let txn = Txn::new()
            .when(compares)
            .and_then([then])
            .or_else([TxnOp::get(full.to_vec(), None)]);
        let mut kv = self.client.kv_client();
        let resp = call(what, kv.txn(txn)).await?;
        let revision = revision_of(resp.header(), what)?;
        let mut responses = resp.op_responses().into_iter();
        let first = responses
            .next()
            .ok_or_else(|| etcd_err(what, "transaction answered no operation"))?;
        if resp.succeeded() {
            return Ok((revision, Ok(first)));
        }
        let current = match first {
            TxnOpResponse::Get(get) => match get.kvs().first() {
                Some(kv) => Some(self.key_value(kv)?),
                None => None,
            },
            _ => {
                return Err(etcd_err(
                    what,
                    "transaction answered an unexpected operation",
                ))
            }
        };
        Ok((revision, Err(current)))
    }

    fn watch_options(&self, prefix: &str, after_revision: i64) -> (Vec<u8>, WatchOptions) {
        let full = self.full_key(prefix);
        let options = WatchOptions::new()
            .with_range(prefix_end_bytes(&full))
            .with_start_revision(after_revision + 1)
            .with_prev_key()
            .with_progress_notify();
        (full, options)
    }

    /// Once etcd said `after_revision` is compacted: the watch created alongside reports the
    /// compacted revision soon (etcd checks unsynced watches every 100 ms).
    async fn compacted_error(
        &self,
        responses: &mut etcd_client::WatchResponseStream,
        after_revision: i64,
    ) -> StoreError {
        let deadline = Instant::now() + WATCH_SETUP_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, responses.message()).await {
                Ok(Ok(Some(resp))) if resp.compact_revision() != 0 => {
                    return compacted(after_revision, resp.compact_revision());
                }
                Ok(Ok(Some(_))) => continue,
                // etcd did not name the revision; it is at least the next one.
                _ => {
                    return StoreError::Compacted {
                        requested: after_revision,
                        compacted: after_revision + 1,
                    }
                }
            }
        }
    }
}

/// etcd's `compact_revision` is the oldest revision it still has; the oldest `after_revision`
/// a watch can start from is the one before it.
fn compacted(requested: i64, compact_revision: i64) -> StoreError {
    StoreError::Compacted {
        requested,
        compacted: compact_revision - 1,
    }
}

fn prefix_end_bytes(full: &[u8]) -> Vec<u8> {
    // `prefix_end` works on bytes; the prefix is always valid UTF-8 here.
    match std::str::from_utf8(full) {
        Ok(text) => prefix_end(text),
        Err(_) => vec![0],
    }
}

/// Follows one etcd watch and turns its responses into [`WatchItem`]s.
struct EtcdWatch {
    store: Arc<EtcdStore>,
    prefix: String,
    /// The highest revision the consumer knows about (event or progress).
    reported: i64,
    /// A per-watch progress notification not yet reported (see the module comment).
    pending_progress: Option<i64>,
    out: mpsc::Sender<Result<WatchItem, StoreError>>,
}

impl EtcdWatch {
    async fn run(
        mut self,
        mut requests: etcd_client::WatchRequestSender,
        mut responses: etcd_client::WatchResponseStream,
    ) {
        let mut ticker =
            tokio::time::interval_at(Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Responses first: whatever etcd already sent lands before a progress report.
                biased;
                _ = self.out.closed() => break,
                message = responses.message() => {
                    let keep_going = match message {
                        Ok(Some(resp)) => self.on_response(resp).await,
                        Ok(None) => {
                            self.fail(etcd_err(&format!("watching {}", self.prefix), "etcd closed the watch stream")).await;
                            false
                        }
                        Err(err) => {
                            self.fail(etcd_err(&format!("watching {}", self.prefix), err)).await;
                            false
                        }
                    };
                    if !keep_going {
                        break;
                    }
                }
                _ = ticker.tick() => {
                    if let Some(revision) = self.pending_progress.take() {
                        if !self.progress(revision).await {
                            break;
                        }
                    }
                    if let Err(err) = requests.request_progress().await {
                        debug!(prefix = %self.prefix, error = %err, "requesting etcd watch progress failed");
                    }
                }
            }
        }
        trace!(prefix = %self.prefix, "etcd watch ended");
    }

    async fn fail(&self, err: StoreError) {
        let _ = self.out.send(Err(err)).await;
    }

    async fn progress(&mut self, revision: i64) -> bool {
        if revision <= self.reported {
            return true;
        }
        self.reported = revision;
        self.out
            .send(Ok(WatchItem::Progress(revision)))
            .await
            .is_ok()
    }

    /// Handles one response; false when the watch is over.
    async fn on_response(&mut self, resp: WatchResponse) -> bool {
        if resp.compact_revision() != 0 {
            self.fail(compacted(self.reported, resp.compact_revision()))
                .await;
            return false;
        }
        if resp.canceled() {
            let reason = match resp.cancel_reason() {
                "" => "no reason given",
                reason => reason,
            };
            self.fail(etcd_err(
                &format!("watching {}", self.prefix),
                format!("etcd canceled the watch: {reason}"),
            ))
            .await;
            return false;
        }
        if resp.created() {
            return true;
        }
        if resp.events().is_empty() {
            let Some(revision) = resp.header().map(|h| h.revision()) else {
                return true;
            };
            if resp.watch_id() == -1 {
                // Sent from the event queue by a fixed etcd: already in order.
                return self.progress(revision).await;
            }
            if let Some(previous) = self.pending_progress.replace(revision) {
                return self.progress(previous).await;
            }
            return true;
        }
        for event in resp.events() {
            let item = match self.store.map_event(event) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(err) => {
                    self.fail(err).await;
                    return false;
                }
            };
            self.reported = self.reported.max(item.revision);
            if self.out.send(Ok(WatchItem::Event(item))).await.is_err() {
                return false;
            }
        }
        true
    }
}

impl EtcdStore {
    fn map_event(&self, event: &etcd_client::Event) -> Result<Option<Event>, StoreError> {
        let Some(kv) = event.kv() else {
            warn!("etcd watch event without a key; skipped");
            return Ok(None);
        };
        let key = self.short_key(kv.key())?;
        let prev = event.prev_kv();
        Ok(Some(match event.event_type() {
            EventType::Put => Event {
                kind: EventKind::Put,
                key,
                value: kv.value().to_vec(),
                prev_value: prev.map(|p| p.value().to_vec()),
                create_revision: kv.create_revision(),
                revision: kv.mod_revision(),
            },
            EventType::Delete => {
                if prev.is_none() {
                    // etcd drops the previous value when it was compacted meanwhile.
                    warn!(key = %key, revision = kv.mod_revision(), "etcd delete event without its previous value");
                }
                Event {
                    kind: EventKind::Delete,
                    key,
                    value: Vec::new(),
                    prev_value: prev.map(|p| p.value().to_vec()),
                    create_revision: prev.map(|p| p.create_revision()).unwrap_or(0),
                    revision: kv.mod_revision(),
                }
            }
        }))
    }
}

#[async_trait]
impl Store for EtcdStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let what = format!("reading {key}");
        let mut kv = self.client.kv_client();
        let resp = call(&what, kv.get(self.full_key(key), None)).await?;
        resp.kvs().first().map(|kv| self.key_value(kv)).transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StoreError> {
        let what = format!("listing {prefix}");
        let full_prefix = self.full_key(prefix);
        let start = match start_after {
            // The smallest key after `start_after`.
            Some(after) if after >= prefix => {
                let mut start = self.full_key(after);
                start.push(0);
                start
            }
            _ => full_prefix.clone(),
        };
        // etcd's ranges come in key order already; asking for a sort would make it read the
        // whole range before applying the limit.
        let mut options = GetOptions::new().with_range(prefix_end_bytes(&full_prefix));
        if limit > 0 {
            // One more than asked tells whether more follow.
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1);
        }
        let mut kv = self.client.kv_client();
        let resp = call(&what, kv.get(start, Some(options))).await?;
        let revision = revision_of(resp.header(), &what)?;
        let mut items = resp
            .kvs()
            .iter()
            .map(|kv| self.key_value(kv))
            .collect::<Result<Vec<_>, _>>()?;
        let more = limit > 0 && items.len() > limit;
        if more {
            items.truncate(limit);
        }
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let what = format!("counting {prefix}");
        let full_prefix = self.full_key(prefix);
        let options = GetOptions::new()
            .with_range(prefix_end_bytes(&full_prefix))
            .with_count_only();
        let mut kv = self.client.kv_client();
        let resp = call(&what, kv.get(full_prefix, Some(options))).await?;
        Ok(usize::try_from(resp.count()).unwrap_or(0))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StoreError> {
        let what = format!("creating {key}");
        let full = self.full_key(key);
        let (revision, outcome) = self
            .guarded(
                &what,
                vec![Compare::create_revision(full.clone(), CompareOp::Equal, 0)],
                TxnOp::put(full.clone(), value, None),
                &full,
            )
            .await?;
        match outcome {
            Ok(_) => Ok(revision),
            Err(_) => Err(StoreError::AlreadyExists(key.to_string())),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: i64,
    ) -> Result<i64, StoreError> {
        let what = format!("updating {key}");
        let full = self.full_key(key);
        let compares = vec![
            Compare::mod_revision(full.clone(), CompareOp::Equal, expected_revision),
            // A missing key has mod revision 0; never let that turn an update into a create.
            Compare::create_revision(full.clone(), CompareOp::Greater, 0),
        ];
        let (revision, outcome) = self
            .guarded(
                &what,
                compares,
                TxnOp::put(full.clone(), value, None),
                &full,
            )
            .await?;
        match outcome {
            Ok(_) => Ok(revision),
            Err(None) => Err(StoreError::NotFound(key.to_string())),
            Err(Some(current)) => Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expected_revision,
                current: Some(current),
            }),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> Result<(i64, KeyValue), StoreError> {
        let what = format!("deleting {key}");
        let full = self.full_key(key);
        let delete = TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()));
        let mut compares = vec![Compare::create_revision(
            full.clone(),
            CompareOp::Greater,
            0,
        )];
        if let Some(expected) = expected_revision {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let (revision, outcome) = self.guarded(&what, compares, delete, &full).await?;
        match outcome {
            Ok(TxnOpResponse::Delete(deleted)) => match deleted.prev_kvs().first() {
                Some(prev) => Ok((revision, self.key_value(prev)?)),
                // Deleted between the compare and the delete: impossible inside a txn.
                None => Err(etcd_err(&what, "etcd deleted nothing")),
            },
            Ok(_) => Err(etcd_err(
                &what,
                "transaction answered an unexpected operation",
            )),
            Err(None) => Err(StoreError::NotFound(key.to_string())),
            Err(Some(current)) => Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expected_revision.unwrap_or(0),
                current: Some(current),
            }),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream, StoreError> {
        let what = format!("watching {prefix} after revision {after_revision}");
        let (full, options) = self.watch_options(prefix, after_revision);
        let mut watch_client = self.client.watch_client();
        let stream = call(&what, watch_client.watch(full.clone(), Some(options))).await?;
        let (requests, mut responses) = stream.split();

        // Wait until etcd confirms the watch, so errors surface from this call.
        let created = tokio::time::timeout(WATCH_SETUP_TIMEOUT, responses.message())
            .await
            .map_err(|_| etcd_err(&what, "etcd did not confirm the watch"))?
            .map_err(|e| etcd_err(&what, e))?
            .ok_or_else(|| etcd_err(&what, "etcd closed the watch stream"))?;
        if created.compact_revision() != 0 {
            return Err(compacted(after_revision, created.compact_revision()));
        }
        if created.canceled() {
            return Err(etcd_err(
                &what,
                format!("etcd refused the watch: {}", created.cancel_reason()),
            ));
        }
        // etcd reports a compacted start revision only later, on the stream; ask directly so
        // the common case fails here.
        let current = revision_of(created.header(), &what)?;
        if after_revision < current {
            let options = GetOptions::new()
                .with_revision(after_revision + 1)
                .with_count_only();
            let mut kv = self.client.kv_client();
            match call_raw(&what, kv.get(full.clone(), Some(options))).await? {
                Ok(_) => {}
                Err(err) if is_compacted(&err) => {
                    return Err(self.compacted_error(&mut responses, after_revision).await);
                }
                Err(err) => return Err(etcd_err(&what, err)),
            }
        }

        let (out, items) = mpsc::channel(WATCH_BUFFER);
        let store = Arc::new(EtcdStore {
            client: self.client.clone(),
            prefix: self.prefix.clone(),
        });
        let watch = EtcdWatch {
            store,
            prefix: prefix.to_string(),
            reported: after_revision,
            pending_progress: None,
            out,
        };
        tokio::spawn(watch.run(requests, responses));
        Ok(Box::pin(ReceiverStream::new(items)))
    }

    async fn current_revision(&self) -> Result<i64, StoreError> {
        let what = "reading the etcd revision";
        let mut kv = self.client.kv_client();
        // Any read answers with the store's revision in its header; a count of one key is
        // the cheapest.
        let resp = call(
            what,
            kv.get(
                self.prefix.as_bytes().to_vec(),
                Some(GetOptions::new().with_count_only()),
            ),
        )
        .await?;
        revision_of(resp.header(), what)
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let what = format!("compacting etcd to revision {revision}");
        let mut kv = self.client.kv_client();
        match call_raw(&what, kv.compact(revision, None)).await? {
            Ok(_) => {
                debug!(revision, "compacted etcd");
                Ok(())
            }
            // Someone (another API server, etcd's own auto-compaction) got there first.
            Err(err) if is_compacted(&err) => Ok(()),
            Err(err) => Err(etcd_err(&what, err)),
        }
    }
}
