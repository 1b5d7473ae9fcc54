//! Watch streams: the store's revisioned events turned into Kubernetes watch events
//! (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`), filtered by label and field
//! selectors with Kubernetes' transition rules (an object that stops matching is `DELETED`
//! for this watcher, one that starts matching is `ADDED`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::fields::FieldSelector;
use skiff_api::labels::Selector;
use skiff_api::resources::ResourceInfo;
use tokio::sync::mpsc;

use super::status::{ApiError, ApiResult};
use super::ApiServer;
use crate::object;
use crate::store::{Event, EventKind, StoreError, WatchItem};

/// Turns an object into what the client asked to see (the object itself, or a Table row).
pub type Render = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

pub struct WatchParams {
    /// Resume after this revision; `None` starts from now with the current objects as `ADDED`.
    pub after_revision: Option<i64>,
    pub labels: Option<Selector>,
    pub fields: Option<FieldSelector>,
    pub bookmarks: bool,
    pub timeout: Duration,
}

impl WatchParams {
    fn matches(&self, obj: &Value) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|s| s.matches(&object::labels(obj)))
            && self.fields.as_ref().is_none_or(|f| f.matches(obj))
    }
}

fn line(event_type: &str, object: Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The watch event a store event means for a watcher with these selectors, if any.
fn translate(params: &WatchParams, event: &Event) -> ApiResult<Option<(&'static str, Value)>> {
    let prev = event
        .prev_value
        .as_ref()
        .map(|p| object::decode_at(p, event.revision, &event.key))
        .transpose()?;
    let prev_matches = prev.as_ref().is_some_and(|p| params.matches(p));
    Ok(match event.kind {
        EventKind::Delete => prev.filter(|_| prev_matches).map(|p| ("DELETED", p)),
        EventKind::Put => {
            let new = object::decode_at(&event.value, event.revision, &event.key)?;
            let created = prev.is_none() || event.create_revision == event.revision;
            match (params.matches(&new), prev_matches && !created) {
                (true, true) => Some(("MODIFIED", new)),
                (true, false) => Some(("ADDED", new)),
                (false, true) => Some(("DELETED", new)),
                (false, false) => None,
            }
        }
    })
}

/// Starts a watch; the receiver yields newline-delimited JSON events until the timeout, an
/// error, or the client going away.
pub async fn start(
    api: Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<String>,
    params: WatchParams,
    render: Render,
) -> ApiResult<mpsc::Receiver<Bytes>> {
    let prefix = object::prefix(r, ns.as_deref());
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut initial = Vec::new();
    let after = match params.after_revision {
        Some(rev) => rev,
        None => {
            let page = api.store.list(&prefix, None, 0).await?;
            for kv in &page.items {
                let obj = object::decode(kv)?;
                if params.matches(&obj) {
                    initial.push(obj);
                }
            }
            page.revision
        }
    };
    let mut stream = match api.store.watch(&prefix, after).await {
        Ok(s) => s,
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            // As kube-apiserver: the watch opens, then reports 410 Gone as an ERROR event.
            let status = ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            ))
            .to_status();
            let _ = tx.send(line("ERROR", status)).await;
            return Ok(rx);
        }
        Err(e) => return Err(e.into()),
    };
    api.metrics.watch_opened();
    let bookmark_every = api.config.bookmark_interval;
    tokio::spawn(async move {
        let _guard = WatchGuard(api.clone());
        for obj in initial {
            if tx.send(line("ADDED", render(&obj))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(params.timeout);
        tokio::pin!(deadline);
        let mut bookmark_tick = tokio::time::interval(bookmark_every);
        bookmark_tick.tick().await;
        let mut delivered = after;
        let mut last_bookmark = after;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = bookmark_tick.tick() => {
                    if params.bookmarks && delivered > last_bookmark {
                        let obj = json!({
                            "kind": r.kind,
                            "apiVersion": r.api_version(),
                            "metadata": {"resourceVersion": delivered.to_string()},
                        });
                        if tx.send(line("BOOKMARK", obj)).await.is_err() {
                            return;
                        }
                        last_bookmark = delivered;
                    }
                }
                item = stream.next() => {
                    match item {
                        None => return,
                        Some(Ok(WatchItem::Progress(rev))) => delivered = delivered.max(rev),
                        Some(Ok(WatchItem::Event(event))) => {
                            delivered = delivered.max(event.revision);
                            match translate(&params, &event) {
                                Ok(Some((ty, obj))) => {
                                    if tx.send(line(ty, render(&obj))).await.is_err() {
                                        return;
                                    }
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    let _ = tx.send(line("ERROR", e.to_status())).await;
                                    return;
                                }
                            }
                        }
                        Some(Err(e)) => {
                            let err: ApiError = e.into();
                            let _ = tx.send(line("ERROR", err.to_status())).await;
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(rx)
}

struct WatchGuard(Arc<ApiServer>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.metrics.watch_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sel: &str) -> WatchParams {
        WatchParams {
            after_revision: Some(0),
            labels: Some(Selector::parse(sel).unwrap()),
            fields: None,
            bookmarks: false,
            timeout: Duration::from_secs(1),
        }
    }

    fn put(labels: Value, prev_labels: Option<Value>, created: bool) -> Event {
        let obj = |l: Value| {
            serde_json::to_vec(&json!({"metadata": {"name": "a", "labels": l}})).unwrap()
        };
        Event {
            kind: EventKind::Put,
            key: "/registry/pods/d/a".into(),
            value: obj(labels),
            prev_value: prev_labels.map(obj),
            create_revision: if created { 5 } else { 1 },
            revision: 5,
        }
    }

    #[test]
    fn selector_transitions() {
        let p = params("app=web");
        let ty = |e: &Event| translate(&p, e).unwrap().map(|(t, _)| t);
        assert_eq!(ty(&put(json!({"app": "web"}), None, true)), Some("ADDED"));
        assert_eq!(
            ty(&put(
                json!({"app": "web"}),
                Some(json!({"app": "web"})),
                false
            )),
            Some("MODIFIED")
        );
        assert_eq!(
            ty(&put(
                json!({"app": "web"}),
                Some(json!({"app": "db"})),
                false
            )),
            Some("ADDED")
        );
        assert_eq!(
            ty(&put(
                json!({"app": "db"}),
                Some(json!({"app": "web"})),
                false
            )),
            Some("DELETED")
        );
        assert_eq!(
            ty(&put(
                json!({"app": "db"}),
                Some(json!({"app": "db"})),
                false
            )),
            None
        );
        let mut del = put(json!({}), Some(json!({"app": "web"})), false);
        del.kind = EventKind::Delete;
        del.value.clear();
        let (t, obj) = translate(&p, &del).unwrap().unwrap();
        assert_eq!(t, "DELETED");
        assert_eq!(obj["metadata"]["resourceVersion"], "5");
    }
}
