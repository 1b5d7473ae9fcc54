//! What the three node benchmarks share: prerequisites, interruption, guards for network
//! namespaces and cgroup trees, running async code inside a namespace, statistics and the
//! Markdown tables they print.

use std::fmt::Write as _;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};

/// Set once SIGINT, SIGTERM or SIGHUP arrived: every loop checks it and unwinds, so the
/// guards remove what the benchmark made.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Blocks SIGINT/SIGTERM/SIGHUP in this thread (and every thread started after it) and
/// starts a thread that waits for them and raises [`INTERRUPTED`]. Call before any other
/// thread exists. Children started with `std::process::Command` get an empty signal mask
/// back, so they still react to signals as usual.
pub fn install_interrupt_handler() -> Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .context("blocking SIGINT/SIGTERM/SIGHUP")?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || loop {
            if let Ok(signal) = signals.wait() {
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    eprintln!("\nbench: {signal:?} again: still cleaning up, please wait");
                } else {
                    eprintln!("\nbench: {signal:?}: stopping and cleaning up");
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Whether an interruption was asked for.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error once an interruption was asked for.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `duration` in small steps, failing early on interruption.
pub async fn sleep_checked(duration: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        check_interrupted()?;
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(50))).await;
    }
}

/// Fails unless we run as root.
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the node benchmarks need root (namespaces, cgroups, mounts): run them with sudo or as root");
    }
    Ok(())
}

/// Fails with `hint` unless `path` is a file.
pub fn require_file(path: &Path, hint: &str) -> Result<()> {
    if !path.is_file() {
        bail!("{} is missing: {hint}", path.display());
    }
    Ok(())
}

/// The full path of `program` on `PATH` (plus the sbin directories, which root's `PATH`
/// may lack), or an error carrying `hint`.
pub fn require_program(program: &str, hint: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("`{program}` is not installed: {hint}"))
}

/// Runs a command to completion, failing with its stderr when it fails.
pub fn run_command(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A network namespace made with `ip netns add` (so it is at `/run/netns/{name}`, where
/// CNI and `ip -n` find it); deleted when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with its loopback up.
    pub fn create(name: &str) -> Result<Netns> {
        run_command("ip", &["netns", "add", name])
            .with_context(|| format!("creating network namespace {name}"))?;
        let netns = Netns {
            name: name.to_string(),
        };
        run_command("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its file.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Opens its file (for `setns`).
    pub fn open(&self) -> Result<File> {
        File::open(self.path()).with_context(|| format!("opening {}", self.path().display()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `body` to completion on a fresh thread that entered `netns`, on a tokio runtime
/// built there (so its worker threads, and every process they start, are in `netns` too).
/// The caller's thread never changes namespace.
pub fn block_on_in_netns<T, F>(
    netns: &Netns,
    worker_threads: usize,
    body: impl FnOnce() -> F + Send + 'static,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
    T: Send + 'static,
{
    let ns_file = netns.open()?;
    let name = netns.name().to_string();
    let thread = std::thread::Builder::new()
        .name(format!("bench-{name}"))
        .spawn(move || -> Result<T> {
            nix::sched::setns(ns_file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {name}"))?;
            let runtime = if worker_threads == 0 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(worker_threads)
                    .enable_all()
                    .build()
            }
            .context("building the tokio runtime")?;
            runtime.block_on(body())
        })
        .context("starting the namespace thread")?;
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The mount points of every cgroup v1 hierarchy and of cgroup2, from
/// `/proc/self/mountinfo`: (mount point, fstype, super options).
pub fn cgroup_mounts() -> Vec<(PathBuf, String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let options = right.nth(1).unwrap_or("");
            matches!(fstype, "cgroup" | "cgroup2").then(|| {
                (
                    PathBuf::from(mount_point),
                    fstype.to_string(),
                    options.to_string(),
                )
            })
        })
        .collect()
}

/// Kills what is left in, then removes, the cgroup `relative` and everything below it in
/// every mounted hierarchy. Absent is fine.
pub fn remove_cgroup_tree(relative: &str) {
    fn remove(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&entry.path());
            }
        }
        for _ in 0..50 {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: could not remove cgroup {}", dir.display());
    }
    let relative = relative.trim_start_matches('/');
    if relative.is_empty() {
        return;
    }
    for (mount, _, _) in cgroup_mounts() {
        remove(&mount.join(relative));
    }
}

/// Removes the cgroup tree `relative` (in every hierarchy) when dropped.
pub struct CgroupTree(pub String);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.0);
    }
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let root = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == root || m.starts_with(&format!("{root}/")))
        .map(PathBuf::from)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    mounts.dedup();
    mounts
}

/// Detaches every mount at or below `dir`.
pub fn unmount_under(dir: &Path) {
    for mount in mounts_under(dir) {
        let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Pids of processes whose command line mentions `needle` (but not this process).
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// SIGKILLs every process whose command line mentions `needle`.
pub fn kill_processes_mentioning(needle: &str) {
    for pid in processes_mentioning(needle) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Resident memory of a process, from `/proc/{pid}/status`, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    /// `VmRSS`: everything resident, shared file pages (the binary, libc) included.
    pub total: u64,
    /// `RssAnon`: the process's own heap and stacks.
    pub anon: u64,
    /// `Pss`: resident pages, each shared page divided among its users (0 if unknown).
    pub proportional: u64,
}

/// The resident memory of process `pid`.
pub fn rss(pid: i32) -> Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .with_context(|| format!("no {key} in /proc/{pid}/status"))
    };
    // smaps_rollup is missing on old kernels; Pss is a bonus.
    let proportional = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024);
    Ok(Rss {
        total: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        proportional,
    })
}

/// A set of durations and its order statistics.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    /// The statistics of `samples`.
    pub fn new(mut samples: Vec<Duration>) -> Samples {
        samples.sort();
        Samples { sorted: samples }
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The arithmetic mean (zero when empty).
    pub fn mean(&self) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        self.sorted.iter().sum::<Duration>() / self.sorted.len() as u32
    }

    /// The `p`th percentile, nearest rank (zero when empty).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// The smallest sample.
    pub fn min(&self) -> Duration {
        self.sorted.first().copied().unwrap_or_default()
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// MiB with two decimals.
pub fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A Markdown table, printed with aligned columns.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                // Numbers right-aligned, text left-aligned.
                if i > 0 && cell.parse::<f64>().is_ok() {
                    let _ = write!(out, " {}{} |", " ".repeat(pad), cell);
                } else {
                    let _ = write!(out, " {}{} |", cell, " ".repeat(pad));
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.header);
        out.push('|');
        for width in &widths {
            let _ = write!(out, "{}|", "-".repeat(width + 2));
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// One line of the final summary: a measured figure against its goal.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The benchmark that measured it.
    pub benchmark: &'static str,
    /// What was measured.
    pub metric: String,
    /// The figure, with its unit.
    pub value: String,
    /// The goal, or empty.
    pub goal: String,
    /// Whether the goal was met, when there is one.
    pub met: Option<bool>,
}

/// The summary every benchmark adds its findings to; printed as Markdown at the end.
#[derive(Debug, Default)]
pub struct Summary {
    findings: Vec<Finding>,
    notes: Vec<String>,
}

impl Summary {
    /// Records a figure without a goal.
    pub fn figure(&mut self, benchmark: &'static str, metric: impl Into<String>, value: String) {
        self.findings.push(Finding {
            benchmark,
            metric: metric.into(),
            value,
            goal: String::new(),
            met: None,
        });
    }

    /// Records a figure and whether it met `goal`.
    pub fn against_goal(
        &mut self,
        benchmark: &'static str,
        metric: impl Into<String>,
        value: String,
        goal: impl Into<String>,
        met: bool,
    ) {
        self.findings.push(Finding {
            benchmark,
            metric: metric.into(),
            value,
            goal: goal.into(),
            met: Some(met),
        });
    }

    /// Adds a note printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The summary as Markdown.
    pub fn render(&self, machine: &str) -> String {
        let mut table = Table::new(&["benchmark", "measure", "result", "goal", ""]);
        for f in &self.findings {
            table.row(vec![
                f.benchmark.to_string(),
                f.metric.clone(),
                f.value.clone(),
                f.goal.clone(),
                match f.met {
                    Some(true) => "✅".into(),
                    Some(false) => "❌".into(),
                    None => String::new(),
                },
            ]);
        }
        let mut out = format!("### Node benchmarks\n\n{machine}\n\n");
        out.push_str(&table.render());
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

/// One line describing the machine: kernel, CPUs, memory.
pub fn machine_description() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("Linux {kernel}, {cpus} CPUs ({model}), {memory} RAM; release build.")
}

/// Time since `start` in a form for progress lines.
pub fn elapsed(start: Instant) -> String {
    format!("{:.1} s", start.elapsed().as_secs_f64())
}
