//! `GET /stats/summary`: the kubelet's Summary API (`stats/v1alpha1`) for the node and
//! its pods and containers, from cgroups and `/proc`.
//!
//! CPU usage in cores (`usageNanoCores`) is a rate, so it needs two readings of the
//! cumulative counter: the previous reading of each cgroup (and of the node) is kept
//! between requests; when there is none yet (the first request, a new pod) the request
//! takes a second reading a moment after the first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::debug;

use super::status::status_response;
use super::{NodeView, SharedState};
use crate::cgroups::Cgroup;

/// The gap between two readings when a cgroup has no earlier one.
const SECOND_READING_AFTER: Duration = Duration::from_millis(250);
/// Readings closer together than this give no usable rate.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(50);
const NODE_KEY: &str = "/";

/// The last cumulative CPU reading of each cgroup (by path) and of the node.
#[derive(Debug, Default)]
pub struct CpuSamples(Mutex<HashMap<String, (Instant, u64)>>);

/// `stats/v1alpha1.Summary`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The node's totals.
    pub node: NodeStats,
    /// One entry per pod.
    pub pods: Vec<PodStats>,
}

/// `stats/v1alpha1.NodeStats`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node's name.
    pub node_name: String,
    /// When the node booted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// CPU of the whole machine.
    pub cpu: CpuStats,
    /// Memory of the whole machine.
    pub memory: MemoryStats,
}

/// `stats/v1alpha1.PodStats`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// Which pod.
    pub pod_ref: PodReference,
    /// Its containers.
    pub containers: Vec<ContainerStats>,
    /// The pod cgroup's CPU.
    pub cpu: CpuStats,
    /// The pod cgroup's memory.
    pub memory: MemoryStats,
}

/// `stats/v1alpha1.PodReference`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PodReference {
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's uid.
    pub uid: String,
}

/// `stats/v1alpha1.ContainerStats`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// The container's name.
    pub name: String,
    /// Its CPU.
    pub cpu: CpuStats,
    /// Its memory.
    pub memory: MemoryStats,
}

/// `stats/v1alpha1.CPUStats`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When it was read, RFC 3339.
    pub time: String,
    /// CPU in use, in billionths of a core, over the last interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// CPU time used in total, nanoseconds.
    pub usage_core_nano_seconds: u64,
}

/// `stats/v1alpha1.MemoryStats`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// When it was read, RFC 3339.
    pub time: String,
    /// Memory still available (node only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Memory in use, page cache included.
    pub usage_bytes: u64,
    /// Memory in use less the inactive file cache.
    pub working_set_bytes: u64,
}

/// One reading of everything, before rates.
struct Reading {
    time: String,
    node: MachineReading,
    pods: Vec<PodReading>,
}

struct MachineReading {
    boot_time: Option<String>,
    cpu_ns: u64,
    memory: MemoryStats,
}

struct PodReading {
    pod_ref: PodReference,
    key: String,
    cpu_ns: u64,
    memory: MemoryStats,
    containers: Vec<(String, String, u64, MemoryStats)>,
}

impl Reading {
    /// Every (key, cumulative CPU ns) in this reading.
    fn cpu_counters(&self) -> Vec<(String, u64)> {
        let mut counters = vec![(NODE_KEY.to_string(), self.node.cpu_ns)];
        for pod in &self.pods {
            counters.push((pod.key.clone(), pod.cpu_ns));
            for (_, key, cpu_ns, _) in &pod.containers {
                counters.push((key.clone(), *cpu_ns));
            }
        }
        counters
    }
}

/// The route handler.
pub(super) async fn handle(State(state): State<SharedState>) -> Response {
    match summarize(&state).await {
        Ok(summary) => match serde_json::to_vec(&summary) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(err) => status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("encode the stats summary: {err}"),
            ),
        },
        Err(message) => {
            status_response(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
        }
    }
}

async fn take_reading(view: std::sync::Arc<dyn NodeView>) -> Result<Reading, String> {
    tokio::task::spawn_blocking(move || read_everything(view.as_ref()))
        .await
        .map_err(|err| format!("reading stats failed: {err}"))?
}

async fn summarize(state: &SharedState) -> Result<Summary, String> {
    let mut reading = take_reading(state.view.clone()).await?;
    let mut now = Instant::now();
    let needs_second = {
        let samples = state.samples.0.lock().map_err(|_| "stats state poisoned")?;
        reading.cpu_counters().iter().any(|(key, _)| {
            samples
                .get(key)
                .is_none_or(|(at, _)| now.duration_since(*at) < MIN_RATE_WINDOW)
        })
    };
    if needs_second {
        record(state, &reading, now, false)?;
        tokio::time::sleep(SECOND_READING_AFTER).await;
        reading = take_reading(state.view.clone()).await?;
        now = Instant::now();
    }
    let rates = record(state, &reading, now, true)?;
    let cpu = |key: &str, ns: u64| CpuStats {
        time: reading.time.clone(),
        usage_nano_cores: rates.get(key).copied(),
        usage_core_nano_seconds: ns,
    };
    let node = NodeStats {
        node_name: state.node_name.clone(),
        start_time: reading.node.boot_time.clone(),
        cpu: cpu(NODE_KEY, reading.node.cpu_ns),
        memory: reading.node.memory.clone(),
    };
    let pods = reading
        .pods
        .iter()
        .map(|pod| PodStats {
            pod_ref: pod.pod_ref.clone(),
            containers: pod
                .containers
                .iter()
                .map(|(name, key, ns, memory)| ContainerStats {
                    name: name.clone(),
                    cpu: cpu(key, *ns),
                    memory: memory.clone(),
                })
                .collect(),
            cpu: cpu(&pod.key, pod.cpu_ns),
            memory: pod.memory.clone(),
        })
        .collect();
    Ok(Summary { node, pods })
}

/// Stores this reading's counters and returns the rates against the previous ones;
/// with `replace_all`, counters of cgroups no longer present are forgotten.
fn record(
    state: &SharedState,
    reading: &Reading,
    now: Instant,
    replace_all: bool,
) -> Result<HashMap<String, u64>, String> {
    let mut samples = state.samples.0.lock().map_err(|_| "stats state poisoned")?;
    let mut rates = HashMap::new();
    let mut current = HashMap::new();
    for (key, ns) in reading.cpu_counters() {
        if let Some((at, previous)) = samples.get(&key) {
            let elapsed = now.duration_since(*at);
            if elapsed >= MIN_RATE_WINDOW {
                rates.insert(key.clone(), nano_cores(*previous, ns, elapsed));
            }
        }
        current.insert(key, (now, ns));
    }
    if replace_all {
        *samples = current;
    } else {
        samples.extend(current);
    }
    Ok(rates)
}

/// Cores used between two cumulative readings, in billionths of a core.
fn nano_cores(previous_ns: u64, current_ns: u64, elapsed: Duration) -> u64 {
    let used = u128::from(current_ns.saturating_sub(previous_ns));
    let elapsed = elapsed.as_nanos().max(1);
    u64::try_from(used * 1_000_000_000 / elapsed).unwrap_or(u64::MAX)
}

fn read_everything(view: &dyn NodeView) -> Result<Reading, String> {
    let time = format!("{:.0}", jiff::Timestamp::now());
    let proc_stat =
        std::fs::read_to_string("/proc/stat").map_err(|err| format!("read /proc/stat: {err}"))?;
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|err| format!("read /proc/meminfo: {err}"))?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let (cpu_ticks, boot_time) = parse_proc_stat(&proc_stat);
    let node = MachineReading {
        boot_time: boot_time
            .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
            .map(|at| format!("{at:.0}")),
        cpu_ns: ticks_to_ns(cpu_ticks.unwrap_or(0), ticks_per_second),
        memory: parse_meminfo(&meminfo, &time),
    };
    let mut pods = Vec::new();
    for pod in view.pods() {
        let Some((cpu_ns, memory)) = cgroup_reading(pod.pod.cgroup(), &time) else {
            continue;
        };
        let containers = pod
            .containers
            .iter()
            .filter_map(|(name, cgroup)| {
                let (ns, memory) = cgroup_reading(cgroup.cgroup(), &time)?;
                Some((name.clone(), cgroup.relative_path(), ns, memory))
            })
            .collect();
        pods.push(PodReading {
            pod_ref: PodReference {
                name: pod.name,
                namespace: pod.namespace,
                uid: pod.uid,
            },
            key: pod.pod.cgroup().relative_path(),
            cpu_ns,
            memory,
            containers,
        });
    }
    Ok(Reading { time, node, pods })
}

/// A cgroup's CPU counter and memory; `None` (and a debug log) when it cannot be read,
/// e.g. a container that has just been removed.
fn cgroup_reading(cgroup: &Cgroup, time: &str) -> Option<(u64, MemoryStats)> {
    match cgroup.stats() {
        Ok(stats) => Some((
            stats.cpu_usage_ns,
            MemoryStats {
                time: time.to_string(),
                available_bytes: None,
                usage_bytes: stats.memory_usage_bytes,
                working_set_bytes: stats.memory_working_set_bytes,
            },
        )),
        Err(err) => {
            debug!(cgroup = cgroup.relative_path(), %err, "no stats for cgroup");
            None
        }
    }
}

fn ticks_to_ns(ticks: u64, ticks_per_second: i64) -> u64 {
    let per_second = u64::try_from(ticks_per_second)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(100);
    ticks.saturating_mul(1_000_000_000 / per_second)
}

/// Busy ticks of all CPUs (idle and iowait left out) and the boot time, from `/proc/stat`.
fn parse_proc_stat(text: &str) -> (Option<u64>, Option<i64>) {
    let mut busy = None;
    let mut boot = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest is in user).
                let total: u64 = values.iter().take(8).sum();
                let idle =
                    values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
                busy = Some(total.saturating_sub(idle));
            }
            Some("btime") => boot = fields.next().and_then(|f| f.parse().ok()),
            _ => {}
        }
    }
    (busy, boot)
}

/// The machine's memory from `/proc/meminfo`: used is total less free, the working set
/// leaves out the inactive file cache, as the kubelet computes them.
fn parse_meminfo(text: &str, time: &str) -> MemoryStats {
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .unwrap_or(0)
            * 1024
    };
    let usage = field("MemTotal").saturating_sub(field("MemFree"));
    MemoryStats {
        time: time.to_string(),
        available_bytes: Some(field("MemAvailable")),
        usage_bytes: usage,
        working_set_bytes: usage.saturating_sub(field("Inactive(file)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_ticks_and_boot_time() {
        let text = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3 4\nbtime 1700000000\n";
        assert_eq!(parse_proc_stat(text), (Some(161), Some(1_700_000_000)));
        assert_eq!(ticks_to_ns(161, 100), 1_610_000_000);
    }

    #[test]
    fn meminfo_usage_and_working_set() {
        let text = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nInactive(file):  300 kB\n";
        let memory = parse_meminfo(text, "t");
        assert_eq!(memory.usage_bytes, 800 * 1024);
        assert_eq!(memory.working_set_bytes, 500 * 1024);
        assert_eq!(memory.available_bytes, Some(600 * 1024));
    }

    #[test]
    fn rate_in_nano_cores() {
        assert_eq!(
            nano_cores(0, 500_000_000, Duration::from_secs(1)),
            500_000_000
        );
        assert_eq!(nano_cores(10, 5, Duration::from_secs(1)), 0);
    }
}
