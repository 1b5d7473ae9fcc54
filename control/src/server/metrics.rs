//! Prometheus metrics: API request counts and latency by verb, resource and code, and store
//! operation latency (the store is wrapped so every backend is measured the same way).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::{KeyValue, ListResult, Store, StoreError, WatchStream};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub operation: String,
    pub backend: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    store_latency: Family<StoreLabels, Histogram, fn() -> Histogram>,
    watchers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_latency: Family<LatencyLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let store_latency: Family<StoreLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let watchers = Gauge::default();
        registry.register(
            "apiserver_request",
            "API requests by verb, resource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "API request latency by verb and resource (watches: time to first byte)",
            request_latency.clone(),
        );
        registry.register(
            "skiff_store_operation_duration_seconds",
            "Store operation latency by operation and backend",
            store_latency.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Open watch streams",
            watchers.clone(),
        );
        Metrics {
            registry,
            requests,
            request_latency,
            store_latency,
            watchers,
        }
    }

    pub fn observe_request(&self, verb: &str, resource: &str, code: u16, started: Instant) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.into(),
                resource: resource.into(),
                code: code.to_string(),
            })
            .inc();
        self.request_latency
            .get_or_create(&LatencyLabels {
                verb: verb.into(),
                resource: resource.into(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    fn observe_store(&self, operation: &str, backend: &'static str, started: Instant) {
        self.store_latency
            .get_or_create(&StoreLabels {
                operation: operation.into(),
                backend: backend.into(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn watch_opened(&self) {
        self.watchers.inc();
    }

    pub fn watch_closed(&self) {
        self.watchers.dec();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# metrics encoding failed\n");
        }
        out
    }
}

/// A store that times every operation into [`Metrics`].
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        InstrumentedStore { inner, metrics }
    }
}

macro_rules! timed {
    ($self:ident, $op:expr, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        $self
            .metrics
            .observe_store($op, $self.inner.name(), started);
        result
    }};
}

#[async_trait]
impl Store for InstrumentedStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        timed!(self, "get", self.inner.get(key))
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StoreError> {
        timed!(self, "list", self.inner.list(prefix, start_after, limit))
    }
    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        timed!(self, "count", self.inner.count(prefix))
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StoreError> {
        timed!(self, "create", self.inner.create(key, value))
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: i64,
    ) -> Result<i64, StoreError> {
        timed!(
            self,
            "update",
            self.inner.update(key, value, expected_revision)
        )
    }
    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> Result<(i64, KeyValue), StoreError> {
        timed!(self, "delete", self.inner.delete(key, expected_revision))
    }
    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream, StoreError> {
        timed!(self, "watch", self.inner.watch(prefix, after_revision))
    }
    async fn current_revision(&self) -> Result<i64, StoreError> {
        timed!(self, "current_revision", self.inner.current_revision())
    }
    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        timed!(self, "compact", self.inner.compact(revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.observe_request("list", "pods", 200, Instant::now());
        let text = m.render();
        assert!(
            text.contains(
                "apiserver_request_total{verb=\"list\",resource=\"pods\",code=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("apiserver_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
