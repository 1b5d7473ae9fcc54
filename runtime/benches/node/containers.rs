//! `containers`: create + start + exit of `/bin/true` on one busybox bundle, side by side:
//! `skiff-runtime run`, `crun run` and `runc run`, interleaved.
//!
//! crun 1.8 refuses the hybrid cgroup layout of these machines (v1 controllers plus an empty
//! cgroup2 at `/sys/fs/cgroup/unified`) unless that mount is gone. So the loop runs in a
//! helper process (this benchmark binary again, in [`helper_main`]) started in a private
//! mount namespace where `/sys/fs/cgroup/unified` is unmounted, and inside a network
//! namespace the benchmark made. All three runtimes run from that one helper, interleaved
//! (the order rotates every round), so the namespace set-up is paid once and by nobody's
//! timings, and every runtime sees the same mounts.
//!
//! Cgroups: crun and runc get `linux.cgroupsPath = /{tag}/{runtime}` and create and remove
//! that cgroup themselves on every run (cgroupfs driver, every v1 hierarchy). skiff's
//! executor only joins cgroups (its daemon creates them), so for skiff the helper makes the
//! leaf in the hierarchies skiff uses for pods (cpu, cpuacct, memory, pids) before each run
//! and removes it after, inside the timed span.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    get_default_maskedpaths, get_default_readonly_paths, Capability, LinuxBuilder,
    LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};
use serde::{Deserialize, Serialize};

use crate::common::{self, ms, CgroupTree, Netns, Samples, Summary, Table};
use crate::rootfs;

/// The environment variable that turns the benchmark binary into the loop helper.
pub const HELPER_ENV: &str = "SKIFF_NODE_BENCH_CONTAINERS_PLAN";

const BENCH: &str = "containers";
/// Untimed runs of each runtime before the timed ones (page cache, first-run costs).
const WARMUP_RUNS: usize = 5;
/// The hierarchies skiff's daemon puts pods and containers in on cgroup v1.
const SKIFF_V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids"];

/// One runtime as the helper runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RuntimePlan {
    name: String,
    program: PathBuf,
    /// Arguments; `{id}` is replaced by a fresh container id per run.
    args: Vec<String>,
    /// Cgroup directories the helper makes before and removes after each run (timed).
    cgroup_dirs: Vec<PathBuf>,
}

/// What the helper is told to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    runs: usize,
    warmup: usize,
    runtimes: Vec<RuntimePlan>,
}

/// What the helper answers: nanoseconds per run, or why a runtime could not run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Outcome {
    nanos: BTreeMap<String, Vec<u64>>,
    failed: BTreeMap<String, String>,
}

/// Runs the benchmark: `runs` runs of each runtime.
pub fn run(summary: &mut Summary, runs: usize) -> Result<()> {
    println!(
        "\n## containers: create + start + exit of /bin/true, {runs} runs each, interleaved\n"
    );
    common::require_file(
        Path::new(rootfs::HOST_BUSYBOX),
        "install Debian's busybox-static (apt-get install -y busybox-static)",
    )?;
    let skiff = PathBuf::from(env!("CARGO_BIN_EXE_skiff-runtime"));
    common::require_file(
        &skiff,
        "build it with `cargo build --release -p skiff-runtime` (scripts/bench-node.sh does)",
    )?;
    let crun = common::require_program(
        "crun",
        "apt-get install -y crun (scripts/bench-node.sh does)",
    )?;
    let runc = common::require_program(
        "runc",
        "apt-get install -y runc (scripts/bench-node.sh does)",
    )?;

    let pid = std::process::id();
    let tag = format!("skiff-bench-{pid}-ctr");
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-ctr-")
        .tempdir()
        .context("creating a temp dir")?;
    // Guards, dropped in reverse order: processes first, then cgroups, then the netns.
    let netns = Netns::create(&format!("skiff-bc-{pid}"))?;
    let _cgroups = CgroupTree(tag.clone());
    let _processes = KillMentioning(dir.path().to_string_lossy().into_owned());

    let rootfs_dir = dir.path().join("rootfs");
    rootfs::build_busybox_rootfs(&rootfs_dir)
        .with_context(|| format!("building the busybox rootfs in {}", rootfs_dir.display()))?;

    let mut plan = Plan {
        runs,
        warmup: WARMUP_RUNS,
        runtimes: Vec::new(),
    };
    let skiff_dirs = skiff_cgroup_dirs(&tag)?;
    for (name, program) in [("skiff", skiff), ("crun", crun), ("runc", runc)] {
        let bundle = dir.path().join(format!("bundle-{name}"));
        std::fs::create_dir_all(&bundle)
            .with_context(|| format!("creating {}", bundle.display()))?;
        let spec = bundle_spec(&rootfs_dir, &format!("/{tag}/{name}"))?;
        spec.save(bundle.join("config.json"))
            .with_context(|| format!("writing {}/config.json", bundle.display()))?;
        let bundle_arg = bundle.to_string_lossy().into_owned();
        let (args, cgroup_dirs): (Vec<String>, Vec<PathBuf>) = match name {
            "skiff" => (
                strings(&["run", "--bundle", &bundle_arg, "--id", "{id}"]),
                skiff_dirs.iter().map(|parent| parent.join(name)).collect(),
            ),
            _ => {
                let state = dir.path().join(format!("{name}-state"));
                std::fs::create_dir_all(&state)
                    .with_context(|| format!("creating {}", state.display()))?;
                let state = state.to_string_lossy().into_owned();
                (
                    strings(&["--root", &state, "run", "--bundle", &bundle_arg, "{id}"]),
                    Vec::new(),
                )
            }
        };
        plan.runtimes.push(RuntimePlan {
            name: name.to_string(),
            program,
            args,
            cgroup_dirs,
        });
    }
    // The parents of skiff's per-run cgroups; crun and runc make theirs.
    for parent in &skiff_dirs {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating cgroup {}", parent.display()))?;
    }

    let started = Instant::now();
    let outcome = run_helper(&plan, &netns)?;
    println!("(took {})\n", common::elapsed(started));

    let mut table = Table::new(&[
        "runtime", "runs", "mean ms", "p50 ms", "p99 ms", "min ms", "max ms",
    ]);
    let mut means = BTreeMap::new();
    for runtime in &plan.runtimes {
        let name = runtime.name.as_str();
        if let Some(error) = outcome.failed.get(name) {
            table.row(vec![name.into(), "failed".into(), error.clone()]);
            summary.figure(
                BENCH,
                format!("`{name} run` /bin/true"),
                format!("failed: {error}"),
            );
            continue;
        }
        let samples = Samples::new(
            outcome
                .nanos
                .get(name)
                .map(|v| v.iter().map(|n| Duration::from_nanos(*n)).collect())
                .unwrap_or_default(),
        );
        table.row(vec![
            name.into(),
            samples.len().to_string(),
            ms(samples.mean()),
            ms(samples.percentile(50.0)),
            ms(samples.percentile(99.0)),
            ms(samples.min()),
            ms(samples.max()),
        ]);
        means.insert(name.to_string(), samples);
    }
    print!("{}", table.render());

    if let Some(skiff) = means.get("skiff") {
        for other in ["crun", "runc"] {
            if let Some(theirs) = means.get(other) {
                let ratio = theirs.mean().as_secs_f64() / skiff.mean().as_secs_f64().max(1e-9);
                println!("skiff vs {other}: {ratio:.2}× (mean {other} / mean skiff)");
            }
        }
        let row = |name: &str| {
            means.get(name).map(|s| {
                format!(
                    "{} / {} / {} ms",
                    ms(s.mean()),
                    ms(s.percentile(50.0)),
                    ms(s.percentile(99.0))
                )
            })
        };
        let crun_mean = means.get("crun").map(Samples::mean);
        summary.against_goal(
            BENCH,
            "`skiff-runtime run` /bin/true (mean / p50 / p99)",
            row("skiff").unwrap_or_default(),
            "not slower than crun",
            crun_mean.is_some_and(|c| skiff.mean() <= c),
        );
        for other in ["crun", "runc"] {
            if let Some(value) = row(other) {
                summary.figure(
                    BENCH,
                    format!("`{other} run` /bin/true (mean / p50 / p99)"),
                    value,
                );
            }
        }
    }
    summary.note(format!(
        "containers: {runs} runs per runtime, interleaved, same busybox bundle (crun's default spec: new pid/net/ipc/uts/mount namespaces, \
         its mounts without /sys/fs/cgroup, its 3 capabilities without the ambient set, no_new_privs); one private mount namespace with \
         /sys/fs/cgroup/unified unmounted for the whole loop (crun 1.8 needs it on this hybrid layout); \
         crun/runc create and remove their cgroup (cgroupsPath under a bench parent) on every run, \
         skiff's cgroup (cpu, cpuacct, memory, pids) is made and removed by the loop inside the timed span."
    ));
    Ok(())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// SIGKILLs processes whose command line mentions the given text when dropped.
struct KillMentioning(String);

impl Drop for KillMentioning {
    fn drop(&mut self) {
        common::kill_processes_mentioning(&self.0);
    }
}

/// `/sys/fs/cgroup/{controller}/{tag}/` for the v1 hierarchies skiff uses, one per
/// hierarchy (co-mounted controllers share one).
fn skiff_cgroup_dirs(tag: &str) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (mount, fstype, options) in common::cgroup_mounts() {
        if fstype != "cgroup" {
            continue;
        }
        let controllers: Vec<&str> = options.split(',').collect();
        if SKIFF_V1_CONTROLLERS.iter().any(|c| controllers.contains(c))
            && !dirs.iter().any(|d| d.starts_with(&mount))
        {
            dirs.push(mount.join(tag));
        }
    }
    if dirs.is_empty() {
        bail!("no cgroup v1 hierarchy for cpu, cpuacct, memory or pids is mounted: this benchmark is written for the hybrid v1 layout");
    }
    Ok(dirs)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// crun's default spec (`crun spec`), non-interactive, running `/bin/true`, without the
/// `/sys/fs/cgroup` mount (skiff does not mount cgroupfs into containers), the device
/// cgroup rule (skiff's executor applies no cgroup resources) and the ambient capability
/// set (crun's default lists ambient capabilities with an empty inheritable set, which
/// the kernel refuses; crun ignores that failure, skiff's executor reports it). What is
/// left is what a Kubernetes container gets: bounding, effective and permitted sets.
fn bundle_spec(rootfs: &Path, cgroups_path: &str) -> Result<Spec> {
    let caps: std::collections::HashSet<Capability> = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into_iter()
    .collect();
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<Vec<_>, _>>()?;
    Ok(SpecBuilder::default()
        .version("1.0.0")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()?,
        )
        .hostname("bench")
        .process(
            ProcessBuilder::default()
                .terminal(false)
                .args(vec!["/bin/true".to_string()])
                .env(vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
                    "TERM=xterm".to_string(),
                ])
                .cwd("/")
                .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
                .capabilities(
                    LinuxCapabilitiesBuilder::default()
                        .bounding(caps.clone())
                        .effective(caps.clone())
                        .permitted(caps)
                        .inheritable(std::collections::HashSet::new())
                        .ambient(std::collections::HashSet::new())
                        .build()?,
                )
                .rlimits(vec![PosixRlimitBuilder::default()
                    .typ(PosixRlimitType::RlimitNofile)
                    .soft(1024u64)
                    .hard(1024u64)
                    .build()?])
                .no_new_privileges(true)
                .build()?,
        )
        .mounts(vec![
            mount("/proc", "proc", "proc", &[])?,
            mount(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            )?,
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            )?,
            mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            )?,
            mount(
                "/dev/mqueue",
                "mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            )?,
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            )?,
        ])
        .linux(
            LinuxBuilder::default()
                .namespaces(namespaces)
                .cgroups_path(PathBuf::from(cgroups_path))
                .masked_paths(get_default_maskedpaths())
                .readonly_paths(get_default_readonly_paths())
                .build()?,
        )
        .build()?)
}

/// Starts the helper in the bench netns and a private mount namespace without
/// `/sys/fs/cgroup/unified`, and collects its answer.
fn run_helper(plan: &Plan, netns: &Netns) -> Result<Outcome> {
    let exe = std::env::current_exe().context("locating the benchmark binary")?;
    let plan_json = serde_json::to_string(plan).context("encoding the helper plan")?;
    let ns_file = netns.open()?;
    let ns_fd = ns_file.as_raw_fd();
    let root = CString::new("/")?;
    let unified = CString::new("/sys/fs/cgroup/unified")?;
    let mut command = Command::new(exe);
    command
        .env(HELPER_ENV, plan_json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: only raw syscalls (setns, unshare, mount, umount2) on data prepared before
    // the fork; nothing allocates.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Private first, so the unmount below cannot propagate to the host.
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Absent on pure v1 or pure v2 hosts: nothing to hide then.
            libc::umount2(unified.as_ptr(), libc::MNT_DETACH);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .context("starting the container loop helper")?;
    let mut stdout = child.stdout.take().context("helper stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the helper")? {
            break status;
        }
        if common::interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(ns_file);
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("the container loop helper failed ({status}); see its message above");
    }
    serde_json::from_str(text.trim()).with_context(|| format!("helper answered {text:?}"))
}

/// The helper: runs the plan in `HELPER_ENV` and prints the [`Outcome`] as JSON. Returns
/// the process exit code.
pub fn helper_main(plan_json: &str) -> i32 {
    match helper(plan_json) {
        Ok(outcome) => match serde_json::to_string(&outcome) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(error) => {
                eprintln!("container loop helper: encoding the outcome: {error}");
                1
            }
        },
        Err(error) => {
            eprintln!("container loop helper: {error:#}");
            1
        }
    }
}

fn helper(plan_json: &str) -> Result<Outcome> {
    let plan: Plan = serde_json::from_str(plan_json).context("decoding the plan")?;
    let mut outcome = Outcome::default();
    let mut working = Vec::new();
    for runtime in &plan.runtimes {
        let mut result = Ok(Duration::ZERO);
        for i in 0..plan.warmup {
            result = run_once(runtime, &format!("warmup-{i}"));
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(_) => working.push(runtime),
            Err(error) => {
                eprintln!("{}: {error:#}", runtime.name);
                outcome
                    .failed
                    .insert(runtime.name.clone(), format!("{error:#}"));
            }
        }
    }
    let progress_every = (plan.runs / 4).max(1);
    for round in 0..plan.runs {
        for k in 0..working.len() {
            let runtime = working[(round + k) % working.len()];
            let elapsed = run_once(runtime, &round.to_string())
                .with_context(|| format!("{} run {round}", runtime.name))?;
            outcome
                .nanos
                .entry(runtime.name.clone())
                .or_default()
                .push(elapsed.as_nanos() as u64);
        }
        if (round + 1) % progress_every == 0 {
            eprintln!("  {}/{} rounds", round + 1, plan.runs);
        }
    }
    Ok(outcome)
}

/// One timed run: cgroup dirs made, the runtime started and waited for, dirs removed.
fn run_once(runtime: &RuntimePlan, round: &str) -> Result<Duration> {
    let id = format!("bench-{}-{}-{round}", runtime.name, std::process::id());
    let args: Vec<String> = runtime
        .args
        .iter()
        .map(|a| a.replace("{id}", &id))
        .collect();
    let start = Instant::now();
    for dir in &runtime.cgroup_dirs {
        std::fs::create_dir(dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
    }
    let output = Command::new(&runtime.program)
        .args(&args)
        .env_remove(HELPER_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    for dir in runtime.cgroup_dirs.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
    let elapsed = start.elapsed();
    let output = output.with_context(|| format!("starting {}", runtime.program.display()))?;
    if !output.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            runtime.program.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(elapsed)
}
