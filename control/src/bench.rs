//! `skiff-control bench`: pod create throughput and latency at several client concurrencies,
//! and watch fan-out latency, measured through a real kube-rs client against an in-process
//! API server on loopback, on the store under test.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::server::{ApiServer, ServerConfig};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("server: {0}")]
    Server(#[from] crate::server::ServerError),
    #[error("client: {0}")]
    Client(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("watcher {0} ended before seeing every write")]
    WatchEnded(usize),
}

pub struct BenchConfig {
    pub pods: usize,
    pub clients: Vec<usize>,
    pub watchers: usize,
    pub writes: usize,
}

/// Latency percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort();
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let idx = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[idx].as_secs_f64() * 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

pub struct CreateResult {
    pub clients: usize,
    pub pods: usize,
    pub per_second: f64,
    pub latency: Percentiles,
}

pub struct Report {
    pub store: &'static str,
    pub creates: Vec<CreateResult>,
    pub watchers: usize,
    pub writes: usize,
    pub fanout: Percentiles,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "store: {}", self.store)?;
        writeln!(
            f,
            "{:>8} {:>8} {:>12} {:>10} {:>10}",
            "clients", "pods", "creates/s", "p50 ms", "p99 ms"
        )?;
        for c in &self.creates {
            writeln!(
                f,
                "{:>8} {:>8} {:>12.0} {:>10.2} {:>10.2}",
                c.clients, c.pods, c.per_second, c.latency.p50, c.latency.p99
            )?;
        }
        write!(
            f,
            "watch fan-out: {} watchers, {} writes: write→last delivery p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.watchers, self.writes, self.fanout.p50, self.fanout.p99, self.fanout.max
        )
    }
}

async fn client_for(dir: &Path) -> Result<Client, BenchError> {
    let kubeconfig = kube::config::Kubeconfig::read_from(dir.join("admin.kubeconfig"))
        .map_err(|e| BenchError::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| BenchError::Kubeconfig(e.to_string()))?;
    Ok(Client::try_from(config)?)
}

fn pod(name: &str) -> Result<Pod, BenchError> {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "10m"}}}]}
    }))
    .map_err(|e| BenchError::Kubeconfig(e.to_string()))
}

async fn namespace(client: &Client, name: &str) -> Result<(), BenchError> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
        .map_err(|e| BenchError::Kubeconfig(e.to_string()))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Runs the benchmark against a server on `store`, with credentials written to `dir`.
pub async fn run(
    store: Arc<dyn Store>,
    dir: &Path,
    config: &BenchConfig,
) -> Result<Report, BenchError> {
    let store_name = store.name();
    let api = ApiServer::new(
        store,
        ServerConfig::new(
            dir.to_path_buf(),
            "127.0.0.1:0".parse().expect("literal address"),
        ),
    )?;
    let handle = api.start().await?;
    let client = client_for(dir).await?;

    let mut creates = Vec::new();
    for &clients in &config.clients {
        let ns = format!("bench-c{clients}");
        namespace(&client, &ns).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients.max(1) {
            let pods = pods.clone();
            let next = next.clone();
            let total = config.pods;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, BenchError>(latencies);
                    }
                    let p = pod(&format!("p-{i}"))?;
                    let t = Instant::now();
                    pods.create(&PostParams::default(), &p).await?;
                    latencies.push(t.elapsed());
                }
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(
                t.await
                    .map_err(|e| BenchError::Kubeconfig(format!("create task: {e}")))??,
            );
        }
        let elapsed = started.elapsed();
        creates.push(CreateResult {
            clients,
            pods: latencies.len(),
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            latency: Percentiles::of(&mut latencies),
        });
    }

    // Watch fan-out: every watcher must see every write; the latency of a write is the time
    // from the start of its create call to its delivery at the slowest watcher.
    let ns = "bench-watch";
    namespace(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watchers = Vec::new();
    for w in 0..config.watchers {
        let pods = pods.clone();
        let rv = rv.clone();
        let writes = config.writes;
        let stream = pods
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?;
        watchers.push(tokio::spawn(async move {
            let mut seen = vec![None; writes];
            let mut count = 0;
            let mut stream = stream.boxed();
            while count < writes {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(p))) => {
                        let idx = p
                            .metadata
                            .name
                            .as_deref()
                            .and_then(|n| n.strip_prefix("w-"))
                            .and_then(|i| i.parse::<usize>().ok());
                        if let Some(i) = idx.filter(|i| *i < writes) {
                            if seen[i].is_none() {
                                seen[i] = Some(Instant::now());
                                count += 1;
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Err(BenchError::WatchEnded(w)),
                }
            }
            Ok(seen)
        }));
    }
    let mut starts = Vec::new();
    for i in 0..config.writes {
        starts.push(Instant::now());
        pods.create(&PostParams::default(), &pod(&format!("w-{i}"))?)
            .await?;
    }
    let mut last_delivery: Vec<Option<Instant>> = vec![None; config.writes];
    for w in watchers {
        let seen = w
            .await
            .map_err(|e| BenchError::Kubeconfig(format!("watch task: {e}")))??;
        for (i, t) in seen.into_iter().enumerate() {
            if let Some(t) = t {
                last_delivery[i] = Some(last_delivery[i].map_or(t, |l: Instant| l.max(t)));
            }
        }
    }
    let mut fanout: Vec<Duration> = last_delivery
        .iter()
        .zip(&starts)
        .filter_map(|(d, s)| d.map(|d| d.saturating_duration_since(*s)))
        .collect();
    handle.shutdown().await;
    Ok(Report {
        store: store_name,
        creates,
        watchers: config.watchers,
        writes: config.writes,
        fanout: Percentiles::of(&mut fanout),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut s);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
    }
}
