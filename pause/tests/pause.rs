//! skiff-pause against the real kernel: signals, zombie reaping (as a subreaper and as PID 1
//! of a new PID namespace) and its memory footprint, all checked through `/proc`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const PAUSE: &str = env!("CARGO_BIN_EXE_skiff-pause");

/// Generous bound for anything that should take milliseconds: the machine is shared with
/// compilers.
const PATIENCE: Duration = Duration::from_secs(10);

/// Kills the process (and any extra pids it learnt about) on drop, so a failing assertion
/// leaves nothing behind.
struct Guard {
    child: Child,
    extra: Vec<i32>,
}

impl Guard {
    fn spawn(command: &mut Command) -> Guard {
        Guard {
            child: command.spawn().expect("spawn under test"),
            extra: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit in time");
            sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for &pid in &self.extra {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pause() -> Command {
    let mut command = Command::new(PAUSE);
    command.stdin(Stdio::null()).stdout(Stdio::null());
    command
}

fn signal(pid: i32, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(5));
    }
}

fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// Waits until pause has its handlers for SIGTERM, SIGINT and SIGCHLD in place: before
/// that, a signal would take its default action and the test would race pause's start-up.
fn wait_ready(pid: i32) {
    let wanted: u64 = [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD]
        .iter()
        .map(|&sig| 1u64 << (sig - 1))
        .sum();
    wait_until("pause to install its signal handlers", || {
        status_field(pid, "SigCgt")
            .and_then(|mask| u64::from_str_radix(&mask, 16).ok())
            .is_some_and(|mask| mask & wanted == wanted)
    });
}

/// A process as `/proc/PID/stat` shows it.
#[derive(Debug)]
struct ProcEntry {
    pid: i32,
    comm: String,
    state: char,
}

/// The processes whose parent is `parent`, from a scan of `/proc`.
fn children_of(parent: i32) -> Vec<ProcEntry> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // The process may have gone between listing and reading.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ...", where COMM may itself hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(-1);
        if ppid == parent {
            children.push(ProcEntry {
                pid,
                comm: stat[open + 1..close].to_string(),
                state,
            });
        }
    }
    children
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Starts `count` `sleep 1` processes whose parent shell exits at once, orphaning them.
const ORPHANS: &str = "for i in 1 2 3 4 5; do sleep 1 & done; exit 0";

/// Waits until `reaper` has adopted the five orphans of [`ORPHANS`], then until every one
/// of them has exited and been reaped: a child left in state Z fails the test.
fn assert_orphans_adopted_and_reaped(reaper: i32) {
    wait_until("the orphaned sleeps to be re-parented to pause", || {
        children_of(reaper)
            .iter()
            .filter(|c| c.comm == "sleep")
            .count()
            == 5
    });
    let deadline = Instant::now() + PATIENCE;
    loop {
        let children = children_of(reaper);
        if children.is_empty() {
            break;
        }
        let zombies = children.iter().filter(|c| c.state == 'Z').count();
        assert!(
            Instant::now() < deadline,
            "pause left {} children behind, {zombies} of them unreaped zombies: {children:?}",
            children.len()
        );
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn version_prints_the_package_version() {
    let output = Command::new(PAUSE).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("skiff-pause {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_argument_is_a_usage_error() {
    let output = Command::new(PAUSE).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unknown argument --bogus"), "{stderr}");
    assert!(stderr.contains("usage:"), "{stderr}");

    let output = Command::new(PAUSE).arg("--").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

fn exits_zero_on(sig: i32) {
    let mut pause = Guard::spawn(&mut pause());
    wait_ready(pause.pid());
    let sent = Instant::now();
    signal(pause.pid(), sig);
    let status = pause.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "took {:?} to exit",
        sent.elapsed()
    );
}

#[test]
fn sigterm_exits_zero_quickly() {
    exits_zero_on(libc::SIGTERM);
}

#[test]
fn sigint_exits_zero_quickly() {
    exits_zero_on(libc::SIGINT);
}

#[test]
fn sleeps_without_spinning() {
    let pause = Guard::spawn(&mut pause());
    wait_ready(pause.pid());
    sleep(Duration::from_millis(300));
    let stat = fs::read_to_string(format!("/proc/{}/stat", pause.pid())).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // Fields 3 (state), 14 and 15 (utime, stime) of proc(5), counted after the comm.
    assert_eq!(fields[0], "S", "pause should be asleep: {stat}");
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    assert!(
        ticks <= 5,
        "pause used {ticks} clock ticks of CPU while idle"
    );
}

#[test]
fn reaps_orphans_as_a_subreaper() {
    let mut pause = Guard::spawn(pause().args(["--subreaper", "--", "sh", "-c", ORPHANS]));
    wait_ready(pause.pid());
    assert_orphans_adopted_and_reaped(pause.pid());
    // The command exiting does not end pause: it still holds the namespaces.
    assert!(pause.child.try_wait().unwrap().is_none());
    signal(pause.pid(), libc::SIGTERM);
    assert_eq!(pause.wait_exit().code(), Some(0));
}

#[test]
fn command_that_cannot_run_is_reported_and_pause_stays() {
    let mut pause = Guard::spawn(
        pause()
            .args(["--", "/nonexistent/skiff-test-command"])
            .stderr(Stdio::piped()),
    );
    wait_ready(pause.pid());
    // The failed child exits 127 and is reaped; pause itself keeps running.
    wait_until("the failed command to be reaped", || {
        children_of(pause.pid()).is_empty()
    });
    assert!(pause.child.try_wait().unwrap().is_none());
    signal(pause.pid(), libc::SIGTERM);
    assert_eq!(pause.wait_exit().code(), Some(0));
    let mut stderr = String::new();
    pause
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("cannot execute /nonexistent/skiff-test-command: No such file"),
        "{stderr}"
    );
}

#[test]
fn reaps_orphans_as_pid_1_of_a_pid_namespace() {
    if !is_root() || !on_path("unshare") || !on_path("nsenter") {
        eprintln!("skipped: needs root, unshare and nsenter");
        return;
    }
    // --kill-child: if the test dies, the kernel kills pause (PID 1), and with it the
    // namespace.
    let mut unshare = Guard::spawn(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", PAUSE])
            .stdin(Stdio::null()),
    );
    let mut pause_pid = 0;
    wait_until("unshare to start pause", || {
        match children_of(unshare.pid())
            .iter()
            .find(|c| c.comm == "skiff-pause")
        {
            Some(child) => {
                pause_pid = child.pid;
                true
            }
            None => false,
        }
    });
    unshare.extra.push(pause_pid);
    wait_ready(pause_pid);
    assert_eq!(
        status_field(pause_pid, "NSpid")
            .as_deref()
            .map(|ns| ns.split_whitespace().last()),
        Some(Some("1")),
        "pause should be PID 1 in its namespace"
    );

    // A shell entering the namespace from outside orphans its children there; the kernel
    // hands them to the namespace's PID 1.
    let status = Command::new("nsenter")
        .args([
            "--target",
            &pause_pid.to_string(),
            "--pid",
            "sh",
            "-c",
            ORPHANS,
        ])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "nsenter: {status:?}");
    assert_orphans_adopted_and_reaped(pause_pid);

    // As PID 1 the default action of SIGTERM would be ignored; pause's handler must run.
    signal(pause_pid, libc::SIGTERM);
    let status = unshare.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "pause as PID 1 should exit 0: {status:?}"
    );
}

/// What `/proc` says about a freshly started, idle pause built at `binary`.
struct Footprint {
    /// VmRSS: every mapped resident page, including shared page-cache text that the
    /// kernel's fault-around maps in 64 KiB batches.
    rss_kb: u64,
    /// RssAnon: the memory this process alone costs.
    anon_kb: u64,
    /// No libc.so mapped.
    is_static: bool,
}

fn kb(pid: i32, field: &str) -> u64 {
    let value = status_field(pid, field).unwrap();
    value.trim_end_matches("kB").trim().parse().unwrap()
}

fn measure(binary: &Path) -> Footprint {
    let mut pause = Guard::spawn(
        Command::new(binary)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    wait_ready(pause.pid());
    let maps = fs::read_to_string(format!("/proc/{}/maps", pause.pid())).unwrap();
    let footprint = Footprint {
        rss_kb: kb(pause.pid(), "VmRSS"),
        anon_kb: kb(pause.pid(), "RssAnon"),
        is_static: !maps.contains("libc.so"),
    };
    signal(pause.pid(), libc::SIGTERM);
    assert_eq!(pause.wait_exit().code(), Some(0));
    footprint
}

/// Whether the ELF file is a fixed-address executable (ET_EXEC) rather than PIE (ET_DYN).
fn is_fixed_address(binary: &Path) -> bool {
    let header = fs::read(binary).unwrap();
    header.get(16..18) == Some(&2u16.to_le_bytes()[..])
}

#[test]
fn stays_small() {
    let under_test = measure(Path::new(PAUSE));
    eprintln!(
        "skiff-pause under test: VmRSS {} kB, RssAnon {} kB, static: {}",
        under_test.rss_kb, under_test.anon_kb, under_test.is_static
    );
    assert!(under_test.rss_kb < 2048, "VmRSS {} kB", under_test.rss_kb);
    assert!(
        under_test.anon_kb < 512,
        "RssAnon {} kB",
        under_test.anon_kb
    );

    // The release build, when one is present next to this build. Built as pause/README.md
    // says (static, fixed address) it must stay under 1 MiB even counting shared pages.
    let release: PathBuf = Path::new(PAUSE)
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("release/skiff-pause"))
        .unwrap();
    if !release.is_file() {
        return;
    }
    let built = measure(&release);
    let as_documented = built.is_static && is_fixed_address(&release);
    eprintln!(
        "release {}: VmRSS {} kB, RssAnon {} kB, static: {}, built as documented: {as_documented}",
        release.display(),
        built.rss_kb,
        built.anon_kb,
        built.is_static
    );
    let limit = if as_documented { 1024 } else { 2048 };
    assert!(
        built.rss_kb < limit,
        "release VmRSS {} kB, limit {limit} kB",
        built.rss_kb
    );
    assert!(built.anon_kb < 512, "release RssAnon {} kB", built.anon_kb);
}
