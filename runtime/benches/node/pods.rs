//! `pods`: pod create → Running on one node, with the real `skiff-runtime` daemon.
//!
//! A control plane runs in-process (skiff_control on SQLite) and the release daemon as a
//! process, both inside a network namespace the benchmark makes (the node's "host"
//! namespace: bridge, veths, routes go there), with their own temp root/run dirs and a
//! bench-specific cgroup parent. The busybox test image is imported into the node's store
//! before the daemon starts, and one untimed warm-up pod unpacks it and warms every path.
//!
//! Each pod: one container `sleep 3600`, pod network, BestEffort. "Running" is the moment a
//! watch (opened before the pods are made) sees `status.phase == Running` with the
//! container's state `running`; the clock starts just before the create call.
//!
//! 1. `n` pods one after another: create → Running latency distribution.
//! 2. Delete them all at once: time until the API has none left, and until the node is
//!    clean (no veth, pod cgroup, pod dir, netns file, mount, IP allocation, shim).
//! 3. `n` pods created at once: time until all are Running.
//! 4. Memory with those `n` pods running: VmRSS of the daemon, of all shims, of pause.
//! 5. Delete them all at once, timed, and check the node is clean.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use skiff_control::server::{ApiServer, ServerConfig, ServerHandle};
use skiff_control::store::sqlite::{SqliteOptions, SqliteStore};
use tokio::sync::watch;

use crate::common::{self, mib, ms, Netns, Rss, Samples, Summary, Table};
use crate::image_support;

const BENCH: &str = "pods";
const NODE_NAME: &str = "bench-node";
const CONTAINER: &str = "c";
/// Pod deletion is graceful (the daemon stops the pod, then confirms); `sleep` as PID 1 of
/// its pid namespace ignores SIGTERM, so each deletion waits this long before SIGKILL.
const GRACE_SECONDS: i64 = 1;

/// What the benchmark made; dropping the [`PodWorld`] guard removes it all.
struct Shared {
    dir: PathBuf,
    cgroup_parent: String,
    daemon: Mutex<Option<Child>>,
}

impl Shared {
    fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn daemon_log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    fn daemon_pid(&self) -> Option<i32> {
        self.daemon
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.id() as i32)
    }

    /// An error if the daemon has exited.
    fn check_daemon(&self) -> Result<()> {
        let mut slot = self.daemon.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = slot.as_mut() {
            if let Some(status) = child.try_wait().context("checking the daemon")? {
                bail!("the daemon exited ({status})\n{}", self.log_tail());
            }
        }
        Ok(())
    }

    /// The last lines of the daemon's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.daemon_log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- last lines of {} ---\n{tail}",
            self.daemon_log().display()
        )
    }

    fn kill_daemon(&self) {
        if let Some(mut child) = self.daemon.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct PodWorld {
    shared: Arc<Shared>,
    netns: Netns,
    _dir: tempfile::TempDir,
}

impl Drop for PodWorld {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.kill_daemon();
        // Shims (their command lines name bundles under the temp dir), then everything in
        // the pod cgroups (pause, containers), then mounts; the netns and the temp dir go
        // when the fields drop.
        common::kill_processes_mentioning(&shared.dir.to_string_lossy());
        common::remove_cgroup_tree(&shared.cgroup_parent);
        common::unmount_under(&shared.dir);
    }
}

/// Runs the benchmark with `n` pods per phase.
pub fn run(summary: &mut Summary, n: usize) -> Result<()> {
    println!("\n## pods: create → Running on one node, {n} pods, real daemon, cached image\n");
    common::require_file(
        Path::new(image_support::BUSYBOX),
        "install Debian's busybox-static (apt-get install -y busybox-static)",
    )?;
    let daemon = PathBuf::from(env!("CARGO_BIN_EXE_skiff-runtime"));
    common::require_file(
        &daemon,
        "build it with `cargo build --release -p skiff-runtime` (scripts/bench-node.sh does)",
    )?;
    let pause = daemon
        .parent()
        .map(|d| d.join("skiff-pause"))
        .context("the daemon binary has no directory")?;
    common::require_file(
        &pause,
        "build it with `cargo build --release -p skiff-pause` (scripts/bench-node.sh does)",
    )?;
    common::require_program("ip", "apt-get install -y iproute2")?;

    let pid = std::process::id();
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-pods-")
        .tempdir()
        .context("creating a temp dir")?;
    let world = PodWorld {
        shared: Arc::new(Shared {
            dir: dir.path().to_path_buf(),
            cgroup_parent: format!("skiff-bench-{pid}-pods"),
            daemon: Mutex::new(None),
        }),
        netns: Netns::create(&format!("skiff-bp-{pid}"))?,
        _dir: dir,
    };
    let shared = world.shared.clone();
    let started = Instant::now();
    let report = common::block_on_in_netns(&world.netns, 2, move || async move {
        body(shared, daemon, pause, n).await
    })?;
    println!("(took {})\n", common::elapsed(started));
    drop(world);
    report.print(summary, n);
    Ok(())
}

/// Everything measured.
struct Report {
    sequential: Samples,
    burst_total: Duration,
    burst_created: Duration,
    burst: Samples,
    daemon_idle_rss: Rss,
    memory: Memory,
    delete_sequential: DeleteTimes,
    delete_burst: DeleteTimes,
}

struct DeleteTimes {
    api_gone: Duration,
    node_clean: Duration,
}

impl Report {
    fn print(&self, summary: &mut Summary, n: usize) {
        let mut table = Table::new(&[
            "create → Running",
            "pods",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "mean ms",
        ]);
        table.row(vec![
            "one after another".into(),
            self.sequential.len().to_string(),
            ms(self.sequential.percentile(50.0)),
            ms(self.sequential.percentile(90.0)),
            ms(self.sequential.percentile(99.0)),
            ms(self.sequential.max()),
            ms(self.sequential.mean()),
        ]);
        table.row(vec![
            "all at once (from the burst's start)".into(),
            self.burst.len().to_string(),
            ms(self.burst.percentile(50.0)),
            ms(self.burst.percentile(90.0)),
            ms(self.burst.percentile(99.0)),
            ms(self.burst.max()),
            ms(self.burst.mean()),
        ]);
        print!("{}", table.render());
        println!(
            "\n{n} pods at once: all created (API) after {} ms, all Running after {} ms\n",
            ms(self.burst_created),
            ms(self.burst_total)
        );

        let m = &self.memory;
        let shims = m.shims.len().max(1) as u64;
        let shim_total: u64 = m.shims.iter().map(|r| r.total).sum();
        let shim_anon: u64 = m.shims.iter().map(|r| r.anon).sum();
        let shim_pss: u64 = m.shims.iter().map(|r| r.proportional).sum();
        let mut pause_totals: Vec<u64> = m.pauses.iter().map(|r| r.total).collect();
        pause_totals.sort_unstable();
        let mut pause_anons: Vec<u64> = m.pauses.iter().map(|r| r.anon).collect();
        pause_anons.sort_unstable();
        let median = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
        let pause_median = median(&pause_totals);
        let pause_max = pause_totals.last().copied().unwrap_or(0);
        let mut memory = Table::new(&["memory", "VmRSS", "RssAnon", "Pss"]);
        memory.row(vec![
            "daemon, no pods".into(),
            mib(self.daemon_idle_rss.total),
            mib(self.daemon_idle_rss.anon),
            mib(self.daemon_idle_rss.proportional),
        ]);
        memory.row(vec![
            format!("daemon, {n} pods running"),
            mib(m.daemon.total),
            mib(m.daemon.anon),
            mib(m.daemon.proportional),
        ]);
        memory.row(vec![
            format!("{} shims, sum", m.shims.len()),
            mib(shim_total),
            mib(shim_anon),
            mib(shim_pss),
        ]);
        memory.row(vec![
            "one shim, mean".into(),
            mib(shim_total / shims),
            mib(shim_anon / shims),
            mib(shim_pss / shims),
        ]);
        let mut pause_pss: Vec<u64> = m.pauses.iter().map(|r| r.proportional).collect();
        pause_pss.sort_unstable();
        memory.row(vec![
            "one pause, median".into(),
            mib(pause_median),
            mib(median(&pause_anons)),
            mib(median(&pause_pss)),
        ]);
        memory.row(vec![
            "one pause, largest".into(),
            mib(pause_max),
            mib(pause_anons.last().copied().unwrap_or(0)),
            mib(pause_pss.last().copied().unwrap_or(0)),
        ]);
        print!("{}", memory.render());
        println!(
            "(VmRSS counts shared pages of the binary and libc in full; RssAnon is the process's own memory; \
             Pss shares the shared pages out among their users)"
        );

        let mut deletion = Table::new(&[
            "delete all at once",
            "pods",
            "gone from API ms",
            "node clean ms",
        ]);
        for (what, d) in [
            ("after one-after-another", &self.delete_sequential),
            ("after all-at-once", &self.delete_burst),
        ] {
            deletion.row(vec![
                what.into(),
                n.to_string(),
                ms(d.api_gone),
                ms(d.node_clean),
            ]);
        }
        println!();
        print!("{}", deletion.render());

        let p99 = self.sequential.percentile(99.0);
        summary.against_goal(
            BENCH,
            format!("create → Running, {n} pods one after another (p50 / p99)"),
            format!("{} / {} ms", ms(self.sequential.percentile(50.0)), ms(p99)),
            "p99 ≤ 100 ms",
            p99 <= Duration::from_millis(100),
        );
        summary.against_goal(
            BENCH,
            format!("{n} pods at once → all Running"),
            format!("{:.2} s", self.burst_total.as_secs_f64()),
            "≤ 5 s",
            self.burst_total <= Duration::from_secs(5),
        );
        summary.against_goal(
            BENCH,
            format!("skiff-runtime RSS with {n} pods"),
            format!("{} (RssAnon {})", mib(m.daemon.total), mib(m.daemon.anon)),
            "≤ 50 MiB",
            m.daemon.total <= 50 * 1024 * 1024,
        );
        summary.against_goal(
            BENCH,
            "skiff-pause RSS (median / largest)",
            format!(
                "{} / {} (RssAnon {})",
                mib(pause_median),
                mib(pause_max),
                mib(median(&pause_anons))
            ),
            "≤ 1 MiB",
            pause_max <= 1024 * 1024,
        );
        summary.figure(
            BENCH,
            format!("shims' RSS, {} shims (sum / each)", m.shims.len()),
            format!(
                "{} / {} (Pss {} / {})",
                mib(shim_total),
                mib(shim_total / shims),
                mib(shim_pss),
                mib(shim_pss / shims)
            ),
        );
        summary.figure(
            BENCH,
            format!("delete {n} pods at once → node clean"),
            format!(
                "{:.2} s ({GRACE_SECONDS} s grace period included)",
                self.delete_burst.node_clean.as_secs_f64()
            ),
        );
        summary.note(format!(
            "pods: in-process control plane (SQLite) and the release daemon in a bench netns; pods with one `sleep 3600` \
             container of the busybox test image (already imported and unpacked), pod network on; Running = a watch sees phase \
             Running and the container running; deletion is graceful with terminationGracePeriodSeconds={GRACE_SECONDS} \
             (sleep ignores SIGTERM as PID 1, so the grace period runs out)."
        ));
    }
}

/// Pods whose watch showed them Running, and pods whose deletion the watch saw.
#[derive(Default)]
struct Seen {
    running: HashMap<String, Instant>,
    deleted: HashMap<String, Instant>,
}

/// Follows every pod through one watch, noting when each is first seen Running and when
/// it is deleted.
#[derive(Clone)]
struct Tracker {
    seen: Arc<Mutex<Seen>>,
    changes: watch::Receiver<u64>,
    shared: Arc<Shared>,
}

fn is_running(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .container_statuses
            .iter()
            .flatten()
            .any(|c| c.name == CONTAINER && c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

impl Tracker {
    fn start(client: kube::Client, shared: Arc<Shared>) -> Tracker {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, changes) = watch::channel(0u64);
        let task_seen = seen.clone();
        let pods: Api<Pod> = Api::namespaced(client, "default");
        tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let now = Instant::now();
                let mut seen = task_seen.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                        if is_running(&pod) {
                            if let Some(name) = pod.metadata.name {
                                seen.running.entry(name).or_insert(now);
                            }
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(name) = pod.metadata.name {
                            seen.deleted.entry(name).or_insert(now);
                        }
                    }
                    Ok(_) => {}
                    Err(error) => eprintln!("pod watch: {error}"),
                }
                drop(seen);
                tx.send_modify(|v| *v += 1);
            }
        });
        Tracker {
            seen,
            changes,
            shared,
        }
    }

    /// Waits until `done` holds for what the watch saw; fails after `timeout`, on
    /// interruption, or when the daemon died.
    async fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Seen) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = done(&self.seen.lock().unwrap_or_else(|e| e.into_inner())) {
                return Ok(value);
            }
            common::check_interrupted()?;
            self.shared.check_daemon()?;
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}\n{}", self.shared.log_tail());
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.changes.changed()).await;
        }
    }
}

struct Cluster {
    server: ServerHandle,
    data: PathBuf,
    url: String,
}

async fn start_control_plane(data: &Path) -> Result<Cluster> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let store = SqliteStore::open(&data.join("state.db"), SqliteOptions::default())
        .await
        .context("opening the control plane's SQLite store")?;
    let config = ServerConfig::new(data.to_path_buf(), "127.0.0.1:0".parse()?);
    let api = ApiServer::new(store, config).context("setting up the API server")?;
    let server = api.start().await.context("starting the API server")?;
    let url = format!("https://127.0.0.1:{}", server.local_addr.port());
    Ok(Cluster {
        server,
        data: data.to_path_buf(),
        url,
    })
}

impl Cluster {
    async fn admin(&self) -> Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(self.data.join("admin.kubeconfig"))
            .context("reading the admin kubeconfig")?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .context("loading the admin kubeconfig")?;
        Ok(kube::Client::try_from(config)?)
    }
}

fn start_daemon(
    shared: &Shared,
    cluster: &Cluster,
    daemon: &Path,
    pause: &Path,
    max_pods: usize,
) -> Result<()> {
    let log = std::fs::File::create(shared.daemon_log())
        .with_context(|| format!("creating {}", shared.daemon_log().display()))?;
    let child = Command::new(daemon)
        .args(["--server", &cluster.url])
        .arg("--token")
        .arg(format!("@{}", cluster.data.join("node-token").display()))
        .arg("--ca-file")
        .arg(cluster.data.join("pki/ca.crt"))
        .args(["--node-name", NODE_NAME, "--node-ip", "127.0.0.1"])
        .arg("--root-dir")
        .arg(shared.root_dir())
        .arg("--run-dir")
        .arg(shared.run_dir())
        .args(["--cgroup-parent", &shared.cgroup_parent])
        .arg("--pause-binary")
        .arg(pause)
        .args(["--cluster-dns", "10.96.0.10"])
        .args(["--max-pods", &max_pods.to_string()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: a Ctrl-C in the terminal reaches the benchmark, which
        // then stops the daemon itself and cleans up after it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", daemon.display()))?;
    *shared.daemon.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    Ok(())
}

fn pod(name: &str, image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE_NAME,
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "containers": [{
                "name": CONTAINER,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))?)
}

/// What remains on the node of deleted pods; empty when clean.
fn leftovers(shared: &Shared, cidr: &str) -> Vec<String> {
    let mut left = Vec::new();
    let veths =
        common::run_command("ip", &["-o", "link", "show", "type", "veth"]).unwrap_or_default();
    let veth_count = veths.lines().count();
    if veth_count > 0 {
        left.push(format!("{veth_count} veths"));
    }
    match skiff_runtime::cgroups::CgroupManager::new(&shared.cgroup_parent)
        .and_then(|cg| cg.list_pods())
    {
        Ok(pods) if !pods.is_empty() => left.push(format!("{} pod cgroups", pods.len())),
        Ok(_) => {}
        Err(error) => left.push(format!("cgroups unreadable: {error}")),
    }
    let count = |dir: PathBuf| {
        std::fs::read_dir(dir)
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    let pod_dirs = count(shared.root_dir().join("pods"));
    if pod_dirs > 0 {
        left.push(format!("{pod_dirs} pod dirs"));
    }
    let netns_files = count(shared.run_dir().join("netns"));
    if netns_files > 0 {
        left.push(format!("{netns_files} netns files"));
    }
    let mounts = common::mounts_under(&shared.dir).len();
    if mounts > 0 {
        left.push(format!("{mounts} mounts"));
    }
    match skiff_runtime::ipam::Ipam::open(&shared.root_dir().join("ipam"), cidr)
        .and_then(|ipam| ipam.allocations())
    {
        Ok(a) if !a.is_empty() => left.push(format!("{} IP allocations", a.len())),
        Ok(_) => {}
        Err(error) => left.push(format!("IPAM unreadable: {error}")),
    }
    let shims = common::processes_mentioning(&shared.root_dir().join("pods").to_string_lossy());
    if !shims.is_empty() {
        left.push(format!("{} shims", shims.len()));
    }
    left
}

async fn delete_all(
    pods: &Api<Pod>,
    tracker: &mut Tracker,
    names: &[String],
    shared: &Shared,
    cidr: &str,
) -> Result<DeleteTimes> {
    let start = Instant::now();
    let deletes = names.iter().map(|name| async move {
        pods.delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting pod {name}"))
    });
    for result in futures::future::join_all(deletes).await {
        result?;
    }
    let last_gone = tracker
        .wait(
            "the pods to be gone from the API",
            Duration::from_secs(120),
            |seen| {
                names
                    .iter()
                    .map(|n| seen.deleted.get(n).copied())
                    .collect::<Option<Vec<_>>>()
                    .and_then(|times| times.into_iter().max())
            },
        )
        .await?;
    let api_gone = last_gone.duration_since(start);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = leftovers(shared, cidr);
        if left.is_empty() {
            break;
        }
        common::check_interrupted()?;
        shared.check_daemon()?;
        if Instant::now() > deadline {
            bail!(
                "the node is not clean a minute after the pods were deleted: {}\n{}",
                left.join(", "),
                shared.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(DeleteTimes {
        api_gone,
        node_clean: start.elapsed(),
    })
}

/// Resident memory with the pods running.
struct Memory {
    daemon: Rss,
    shims: Vec<Rss>,
    pauses: Vec<Rss>,
}

/// Memory of the daemon, the shims and the pause processes of `names`.
async fn memory(pods: &Api<Pod>, names: &[String], shared: &Shared) -> Result<Memory> {
    let daemon_pid = shared.daemon_pid().context("the daemon is not running")?;
    let mut memory = Memory {
        daemon: common::rss(daemon_pid)?,
        shims: Vec::new(),
        pauses: Vec::new(),
    };
    for name in names {
        let pod = pods
            .get(name)
            .await
            .with_context(|| format!("reading pod {name}"))?;
        let uid = pod.metadata.uid.context("pod without uid")?;
        let pod_dir = shared.root_dir().join("pods").join(&uid);
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(pod_dir.join("record.json"))
                .with_context(|| format!("reading {}/record.json", pod_dir.display()))?,
        )?;
        let pause_pid = record
            .pointer("/sandbox/pause_pid")
            .and_then(serde_json::Value::as_i64)
            .with_context(|| {
                format!("no sandbox.pause_pid in {}/record.json", pod_dir.display())
            })?;
        memory.pauses.push(common::rss(pause_pid as i32)?);
        let state_dir = pod_dir.join("containers").join(CONTAINER).join("0");
        let shim = skiff_runtime::container::read_shim_state(&state_dir)?
            .with_context(|| format!("no shim state in {}", state_dir.display()))?;
        memory.shims.push(common::rss(shim.shim_pid)?);
    }
    Ok(memory)
}

async fn body(shared: Arc<Shared>, daemon: PathBuf, pause: PathBuf, n: usize) -> Result<Report> {
    let cluster = start_control_plane(&shared.dir.join("control")).await?;
    let client = cluster.admin().await?;

    let layout = image_support::build_busybox_layout(&shared.dir);
    let store = skiff_runtime::image::ImageStore::open(&shared.root_dir())?;
    store
        .import_archive(&layout.archive)
        .await
        .context("importing the busybox image into the node's store")?;
    drop(store);
    let image = layout.reference;

    start_daemon(&shared, &cluster, &daemon, &pause, n + 10)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let cidr = loop {
        if let Some(cidr) = nodes
            .get_opt(NODE_NAME)
            .await
            .ok()
            .flatten()
            .and_then(|node| node.spec?.pod_cidr)
        {
            break cidr;
        }
        shared.check_daemon()?;
        if Instant::now() > deadline {
            bail!(
                "the node did not register within 30 s\n{}",
                shared.log_tail()
            );
        }
        common::sleep_checked(Duration::from_millis(50)).await?;
    };

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut tracker = Tracker::start(client.clone(), shared.clone());
    let post = PostParams::default();

    // Warm-up: unpacks the image, opens every path once.
    println!("warm-up pod…");
    let warmup = vec!["warmup".to_string()];
    pods.create(&post, &pod("warmup", &image)?).await?;
    tracker
        .wait("the warm-up pod to run", Duration::from_secs(60), |seen| {
            seen.running.get("warmup").copied()
        })
        .await?;
    delete_all(&pods, &mut tracker, &warmup, &shared, &cidr).await?;
    // Let the daemon settle after the warm-up before sampling its idle memory.
    common::sleep_checked(Duration::from_millis(500)).await?;
    let daemon_idle_rss = common::rss(shared.daemon_pid().context("no daemon")?)?;

    println!("{n} pods one after another…");
    let mut sequential = Vec::with_capacity(n);
    let sequential_names: Vec<String> = (0..n).map(|i| format!("seq-{i}")).collect();
    for name in &sequential_names {
        let manifest = pod(name, &image)?;
        let start = Instant::now();
        pods.create(&post, &manifest)
            .await
            .with_context(|| format!("creating pod {name}"))?;
        let running = tracker
            .wait(
                &format!("pod {name} to run"),
                Duration::from_secs(30),
                |seen| seen.running.get(name).copied(),
            )
            .await?;
        sequential.push(running.duration_since(start));
    }
    println!("deleting them…");
    let delete_sequential =
        delete_all(&pods, &mut tracker, &sequential_names, &shared, &cidr).await?;

    println!("{n} pods at once…");
    let burst_names: Vec<String> = (0..n).map(|i| format!("burst-{i}")).collect();
    let manifests: Vec<Pod> = burst_names
        .iter()
        .map(|name| pod(name, &image))
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let creates = manifests.iter().map(|manifest| {
        let pods = pods.clone();
        let post = post.clone();
        async move { pods.create(&post, manifest).await }
    });
    for (result, name) in futures::future::join_all(creates)
        .await
        .into_iter()
        .zip(&burst_names)
    {
        result.with_context(|| format!("creating pod {name}"))?;
    }
    let burst_created = start.elapsed();
    let burst_times = tracker
        .wait(
            &format!("{n} pods to run"),
            Duration::from_secs(120),
            |seen| {
                burst_names
                    .iter()
                    .map(|name| seen.running.get(name).map(|t| t.duration_since(start)))
                    .collect::<Option<Vec<_>>>()
            },
        )
        .await?;
    let burst = Samples::new(burst_times);
    let burst_total = burst.max();

    println!("memory with {n} pods running…");
    let memory = memory(&pods, &burst_names, &shared).await?;

    println!("deleting them…");
    let delete_burst = delete_all(&pods, &mut tracker, &burst_names, &shared, &cidr).await?;
    cluster.server.shutdown().await;
    Ok(Report {
        sequential: Samples::new(sequential),
        burst_total,
        burst_created,
        burst,
        daemon_idle_rss,
        memory,
        delete_sequential,
        delete_burst,
    })
}
