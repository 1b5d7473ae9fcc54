//! The container executor for real: `skiff-runtime run|shim|exec` on busybox bundles.
//! Needs root. Each test works in its own temp dir; namespaces and cgroups it creates are
//! removed by guards, also when it fails.

#[path = "support/rootfs.rs"]
mod rootfs;

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    get_default_maskedpaths, get_default_readonly_paths, Capability, LinuxBuilder,
    LinuxCapabilitiesBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};
use skiff_runtime::container::{
    read_exit_state, read_shim_state, ShimReply, ANNOTATION_ROOTFS_LOWERDIR,
    ANNOTATION_ROOTFS_UPPERDIR, ANNOTATION_ROOTFS_WORKDIR,
};

const BIN: &str = env!("CARGO_BIN_EXE_skiff-runtime");

static NEXT_NAME: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test run) uses at the same time.
fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_NAME.fetch_add(1, Ordering::SeqCst)
    )
}

/// A temp dir with a busybox rootfs and a bundle dir.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        rootfs::build_busybox_rootfs(&dir.path().join("rootfs")).expect("busybox rootfs");
        fs::create_dir_all(dir.path().join("bundle")).expect("bundle dir");
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn rootfs(&self) -> PathBuf {
        self.path("rootfs")
    }

    fn bundle(&self) -> PathBuf {
        self.path("bundle")
    }

    /// A spec like the daemon's: new pid, ipc, uts and mount namespaces, the usual
    /// mounts, and the default masked and read-only paths.
    fn spec(&self, args: &[&str]) -> Spec {
        SpecBuilder::default()
            .root(
                RootBuilder::default()
                    .path(self.rootfs())
                    .readonly(false)
                    .build()
                    .expect("root"),
            )
            .hostname("skiff-test")
            .process(
                ProcessBuilder::default()
                    .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
                    .env(vec!["PATH=/bin".to_string()])
                    .cwd("/")
                    .user(
                        UserBuilder::default()
                            .uid(0u32)
                            .gid(0u32)
                            .build()
                            .expect("user"),
                    )
                    .build()
                    .expect("process"),
            )
            .mounts(standard_mounts())
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces(&[
                        LinuxNamespaceType::Pid,
                        LinuxNamespaceType::Ipc,
                        LinuxNamespaceType::Uts,
                        LinuxNamespaceType::Mount,
                    ]))
                    .masked_paths(get_default_maskedpaths())
                    .readonly_paths(get_default_readonly_paths())
                    .build()
                    .expect("linux"),
            )
            .build()
            .expect("spec")
    }

    fn write(&self, spec: &Spec) {
        spec.save(self.bundle().join("config.json"))
            .expect("save config.json");
    }

    /// `skiff-runtime run` on the bundle, output captured.
    fn run(&self, spec: &Spec) -> Output {
        self.write(spec);
        Command::new(BIN)
            .args(["run", "--id", "test", "--bundle"])
            .arg(self.bundle())
            .output()
            .expect("start skiff-runtime run")
    }

    fn shim_command(&self, state_dir: &Path, log: &Path) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(["shim", "--id", "test", "--bundle"])
            .arg(self.bundle())
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--log")
            .arg(log);
        command
    }
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount")
}

fn standard_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
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
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ]
}

fn namespaces(kinds: &[LinuxNamespaceType]) -> Vec<LinuxNamespace> {
    kinds
        .iter()
        .map(|kind| {
            LinuxNamespaceBuilder::default()
                .typ(*kind)
                .build()
                .expect("namespace")
        })
        .collect()
}

fn set_args(spec: &mut Spec, args: &[&str]) {
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    }
}

fn without_pid_namespace(spec: &mut Spec) {
    if let Some(linux) = spec.linux_mut() {
        linux.set_namespaces(Some(namespaces(&[
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ])));
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The value of a `Key:\tvalue` line of /proc/self/status.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exit_codes_of_true_false_and_a_signal() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["/bin/true"]);
    let output = fixture.run(&spec);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    set_args(&mut spec, &["false"]);
    assert_eq!(fixture.run(&spec).status.code(), Some(1));
    // PID 1 of a pid namespace cannot be killed from inside it, so this one shares the
    // caller's pid namespace.
    without_pid_namespace(&mut spec);
    set_args(&mut spec, &["sh", "-c", "kill -9 $$"]);
    let output = fixture.run(&spec);
    assert_eq!(output.status.code(), Some(137), "{}", describe(&output));
}

#[test]
fn env_cwd_and_args_reach_the_process() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; echo \"$@\"",
        "zero",
        "one",
        "two words",
    ]);
    if let Some(process) = spec.process_mut() {
        process.set_env(Some(vec![
            "PATH=/bin".into(),
            "GREETING=hello there".into(),
        ]));
        process.set_cwd("/home/user".into());
    }
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "hello there\n/home/user\none two words\n");
}

#[test]
fn init_is_pid_1_with_its_own_hostname() {
    let fixture = Fixture::new();
    let spec = fixture.spec(&["sh", "-c", "echo $$; hostname; ls /proc | grep -c '^[0-9]'"]);
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    // sh is PID 1; besides it only the pipeline's ls and grep may be listed.
    let lines: Vec<&str> = stdout(&output)
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "skiff-test");
    let processes: u32 = lines[2].parse().expect("count");
    assert!(processes <= 3, "host processes visible: {processes}");
}

#[test]
fn readonly_root_refuses_writes_but_tmpfs_works() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["touch", "/written"]);
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(true));
    }
    if let Some(mounts) = spec.mounts_mut() {
        mounts.push(mount(
            "/tmp",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777", "size=1m"],
        ));
    }
    let output = fixture.run(&spec);
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Read-only"),
        "{}",
        describe(&output)
    );
    assert!(!fixture.rootfs().join("written").exists());

    set_args(
        &mut spec,
        &["sh", "-c", "echo data > /tmp/file && cat /tmp/file"],
    );
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "data\n");
    assert!(
        !fixture.rootfs().join("tmp/file").exists(),
        "tmpfs write reached the rootfs"
    );
}

#[test]
fn user_groups_and_ambient_capabilities() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["cat", "/proc/self/status"]);
    let bind_only = [Capability::NetBindService];
    if let Some(process) = spec.process_mut() {
        process.set_user(
            UserBuilder::default()
                .uid(1000u32)
                .gid(1000u32)
                .additional_gids(vec![10u32, 1000])
                .build()
                .expect("user"),
        );
        process.set_capabilities(Some(
            LinuxCapabilitiesBuilder::default()
                .bounding(bind_only)
                .effective(bind_only)
                .permitted(bind_only)
                .inheritable(bind_only)
                .ambient(bind_only)
                .build()
                .expect("caps"),
        ));
    }
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    let status = stdout(&output);
    assert_eq!(status_field(&status, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(&status, "Gid"), "1000\t1000\t1000\t1000");
    let groups: HashSet<&str> = status_field(&status, "Groups").split_whitespace().collect();
    assert_eq!(groups, HashSet::from(["10", "1000"]));
    // A non-root process keeps only its ambient capabilities across execve.
    assert_eq!(status_field(&status, "CapEff"), "0000000000000400");
    assert_eq!(status_field(&status, "CapAmb"), "0000000000000400");
    assert_eq!(status_field(&status, "CapBnd"), "0000000000000400");
}

#[test]
fn dropped_capability_is_absent_and_no_new_privs_set() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["cat", "/proc/self/status"]);
    // Docker's default set without CAP_NET_RAW.
    let docker_default_without_net_raw = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ];
    if let Some(process) = spec.process_mut() {
        process.set_capabilities(Some(
            LinuxCapabilitiesBuilder::default()
                .bounding(docker_default_without_net_raw)
                .effective(docker_default_without_net_raw)
                .permitted(docker_default_without_net_raw)
                .inheritable(HashSet::<Capability>::new())
                .ambient(HashSet::<Capability>::new())
                .build()
                .expect("caps"),
        ));
        process.set_no_new_privileges(Some(true));
    }
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    let status = stdout(&output);
    // Docker's 0xa80425fb minus bit 13 (CAP_NET_RAW).
    assert_eq!(status_field(&status, "CapEff"), "00000000a80405fb");
    assert_eq!(status_field(&status, "CapBnd"), "00000000a80405fb");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
}

#[test]
fn sysctls_rlimits_and_oom_score() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj; ulimit -n",
    ]);
    if let Some(process) = spec.process_mut() {
        process.set_oom_score_adj(Some(500));
        process.set_rlimits(Some(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(321u64)
            .hard(654u64)
            .build()
            .expect("rlimit")]));
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_namespaces(Some(namespaces(&[
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
        ])));
        linux.set_sysctl(Some(
            [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
        ));
    }
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "1\n500\n321\n");

    // A sysctl that is not namespaced would change the host: refused.
    if let Some(linux) = spec.linux_mut() {
        linux.set_sysctl(Some(
            [("vm.swappiness".to_string(), "1".to_string())].into(),
        ));
    }
    let output = fixture.run(&spec);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sysctl") && stderr.contains("vm.swappiness"),
        "{stderr}"
    );
}

#[test]
fn dev_has_the_standard_nodes() {
    let fixture = Fixture::new();
    let spec = fixture.spec(&[
        "sh",
        "-c",
        "ls /dev; ls -d /dev/pts /dev/shm; echo x > /dev/null; head -c 8 /dev/urandom | wc -c; \
         head -c 3 /dev/zero | wc -c; test -c /dev/null && test -c /dev/full && echo chars; \
         stat -c %a /dev/null /dev/urandom /dev/tty; \
         readlink /dev/ptmx; readlink /dev/fd",
    ]);
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    let out = stdout(&output);
    let words: HashSet<&str> = out.split_whitespace().collect();
    for name in [
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "pts",
        "shm",
        "mqueue",
        "stdin",
        "stdout",
        "stderr",
        "/dev/pts",
        "/dev/shm",
        "8",
        "3",
        "chars",
        "pts/ptmx",
        "/proc/self/fd",
    ] {
        assert!(words.contains(name), "{name} missing in {out}");
    }
    assert!(out.contains("\n666\n666\n666\n"), "device modes in {out}");
}

#[test]
fn masked_and_readonly_paths() {
    let fixture = Fixture::new();
    fs::create_dir_all(fixture.rootfs().join("secrets")).expect("mkdir");
    fs::write(fixture.rootfs().join("secrets/key"), "hidden").expect("write");
    fs::write(fixture.rootfs().join("token"), "hidden").expect("write");
    fs::create_dir_all(fixture.rootfs().join("frozen")).expect("mkdir");
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "ls /secrets | wc -l; wc -c < /token; wc -c < /proc/timer_list; ls /proc/acpi | wc -l; \
         touch /frozen/x 2>/dev/null && echo writable || echo frozen",
    ]);
    if let Some(linux) = spec.linux_mut() {
        let mut masked = get_default_maskedpaths();
        masked.extend(["/secrets".to_string(), "/token".to_string()]);
        linux.set_masked_paths(Some(masked));
        let mut readonly = get_default_readonly_paths();
        readonly.push("/frozen".into());
        linux.set_readonly_paths(Some(readonly));
    }
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "0\n0\n0\n0\nfrozen\n");
    assert_eq!(
        fs::read_to_string(fixture.rootfs().join("token")).expect("read"),
        "hidden"
    );
}

#[test]
fn mount_destinations_cannot_escape_through_symlinks() {
    let fixture = Fixture::new();
    let host_dir = fixture.path("host-side");
    fs::create_dir_all(&host_dir).expect("mkdir");
    std::os::unix::fs::symlink(&host_dir, fixture.rootfs().join("escape")).expect("symlink");
    std::os::unix::fs::symlink("../../../../../../..", fixture.rootfs().join("up"))
        .expect("symlink");
    let mut spec = fixture.spec(&["true"]);
    if let Some(mounts) = spec.mounts_mut() {
        mounts.push(mount("/escape/m1", "tmpfs", "tmpfs", &["size=1m"]));
        mounts.push(mount("/up/m2", "tmpfs", "tmpfs", &["size=1m"]));
    }
    // The absolute link target is taken inside the rootfs.
    let inside = fixture
        .rootfs()
        .join(host_dir.strip_prefix("/").expect("absolute"));
    let probe = format!(
        "ls -d {}/m1 /m2 >/dev/null && echo inside",
        host_dir.display()
    );
    set_args(&mut spec, &["sh", "-c", &probe]);
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "inside\n");
    assert!(
        !host_dir.join("m1").exists(),
        "mount point created outside the rootfs"
    );
    assert!(inside.join("m1").is_dir());
    assert!(fixture.rootfs().join("m2").is_dir());
    assert!(!Path::new("/m2").exists());
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct NetnsGuard(String);

impl NetnsGuard {
    fn new() -> Self {
        let name = unique_name("skiff-test");
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip");
        assert!(status.success(), "ip netns add {name}");
        Self(name)
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.0)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn joins_a_network_namespace_by_path() {
    let netns = NetnsGuard::new();
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "ls /sys/class/net; tail -n +3 /proc/net/dev | cut -d: -f1",
    ]);
    if let Some(linux) = spec.linux_mut() {
        let mut kinds = namespaces(&[
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ]);
        kinds.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(netns.path())
                .build()
                .expect("netns"),
        );
        linux.set_namespaces(Some(kinds));
    }
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    let names: Vec<String> = stdout(&output)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(names, vec!["lo", "lo"]);
}

/// v1 cgroups `<controller>/<parent>/c` for some controllers, removed on drop.
struct CgroupGuard {
    parent: String,
    controllers: Vec<&'static str>,
}

impl CgroupGuard {
    fn new(controllers: &[&'static str]) -> Self {
        let parent = unique_name("skiff-test");
        for controller in controllers {
            fs::create_dir_all(
                Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(&parent)
                    .join("c"),
            )
            .expect("create cgroup");
        }
        Self {
            parent,
            controllers: controllers.to_vec(),
        }
    }

    fn path(&self) -> String {
        format!("/{}/c", self.parent)
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for controller in &self.controllers {
            let parent = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(&self.parent);
            for _ in 0..50 {
                let _ = fs::remove_dir(parent.join("c"));
                if fs::remove_dir(&parent).is_ok() || !parent.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn joins_the_cgroups_of_cgroups_path() {
    let cgroup = CgroupGuard::new(&["pids", "memory"]);
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&["cat", "/proc/self/cgroup"]);
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(cgroup.path())));
    }
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    let out = stdout(&output);
    assert!(out.contains(&format!(":pids:{}\n", cgroup.path())), "{out}");
    assert!(
        out.contains(&format!(":memory:{}\n", cgroup.path())),
        "{out}"
    );

    // A path that exists nowhere is an error, not a silent no-op.
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(format!("/{}/absent", cgroup.parent))));
    }
    let output = fixture.run(&spec);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cgroups:"),
        "{}",
        describe(&output)
    );
}

#[test]
fn overlay_rootfs_from_annotations_leaves_nothing_on_the_host() {
    let fixture = Fixture::new();
    for dir in ["upper", "work", "merged"] {
        fs::create_dir_all(fixture.path(dir)).expect("mkdir");
    }
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "echo layered > /newfile && cat /etc/passwd | head -n 1",
    ]);
    if let Some(root) = spec.root_mut() {
        root.set_path(fixture.path("merged"));
    }
    spec.set_annotations(Some(
        [
            (ANNOTATION_ROOTFS_LOWERDIR, fixture.rootfs()),
            (ANNOTATION_ROOTFS_UPPERDIR, fixture.path("upper")),
            (ANNOTATION_ROOTFS_WORKDIR, fixture.path("work")),
        ]
        .into_iter()
        .map(|(key, path)| (key.to_string(), path.display().to_string()))
        .collect(),
    ));
    let output = fixture.run(&spec);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), "root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(
        fs::read_to_string(fixture.path("upper/newfile")).expect("upper"),
        "layered\n"
    );
    assert!(
        !fixture.rootfs().join("newfile").exists(),
        "write reached the lower layer"
    );
    assert!(
        !fixture.path("merged/newfile").exists(),
        "overlay visible on the host"
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let merged = fixture.path("merged").display().to_string();
    assert!(
        !mountinfo.contains(&merged),
        "overlay left mounted on the host"
    );
}

#[test]
fn exec_failure_is_reported_by_run_and_shim() {
    let fixture = Fixture::new();
    let spec = fixture.spec(&["/nonexistent"]);
    let output = fixture.run(&spec);
    assert_eq!(output.status.code(), Some(127), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("exec") && stderr.contains("/nonexistent"),
        "{stderr}"
    );

    let state_dir = fixture.path("state");
    fs::create_dir_all(&state_dir).expect("state dir");
    let output = fixture
        .shim_command(&state_dir, &fixture.path("c.log"))
        .output()
        .expect("run shim");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let reply: ShimReply = serde_json::from_slice(&output.stdout).expect("one JSON line");
    match reply {
        ShimReply::Failed { error } => {
            assert!(
                error.starts_with("exec: ") && error.contains("/nonexistent"),
                "{error}"
            )
        }
        other => panic!("unexpected reply {other:?}"),
    }
    assert_eq!(read_shim_state(&state_dir).expect("read"), None);
}

/// Kills a container process on drop, in case the test failed before it ended.
struct KillGuard(i32);

impl Drop for KillGuard {
    fn drop(&mut self) {
        // SAFETY: kill with integer arguments.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// The (stream, tag, content) of every entry of a CRI log file.
fn log_entries(path: &Path) -> Vec<(String, String, String)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let time = parts.next().unwrap_or_default();
            assert!(
                time.ends_with('Z') && time.contains('T'),
                "bad timestamp in {line:?}"
            );
            let mut next = || parts.next().unwrap_or_default().to_string();
            (next(), next(), next())
        })
        .collect()
}

#[test]
fn shim_reports_pid_logs_output_and_records_the_exit() {
    let fixture = Fixture::new();
    let spec = fixture.spec(&[
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2; printf tail; exit 3",
    ]);
    fixture.write(&spec);
    let state_dir = fixture.path("state");
    fs::create_dir_all(&state_dir).expect("state dir");
    let log = fixture.path("c.log");
    let mut shim = fixture
        .shim_command(&state_dir, &log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn shim");
    let mut line = String::new();
    let mut reader = BufReader::new(shim.stdout.take().expect("stdout"));
    reader.read_line(&mut line).expect("reply");
    let pid = match serde_json::from_str(&line).expect("reply JSON") {
        ShimReply::Started { pid } => pid,
        other => panic!("unexpected reply {other:?}"),
    };
    let _guard = KillGuard(pid);
    let state = read_shim_state(&state_dir)
        .expect("read")
        .expect("shim.json");
    assert_eq!(state.pid, pid);
    assert_eq!(state.shim_pid, shim.id() as i32);
    assert!(state.pid_start_time > 0);
    assert!(
        state.started_at.parse::<jiff::Timestamp>().is_ok(),
        "{}",
        state.started_at
    );
    // Exactly one line: the shim closed its stdout after answering.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("rest");
    assert_eq!(rest, "");

    assert!(shim.wait().expect("wait shim").success());
    let exit = read_exit_state(&state_dir)
        .expect("read")
        .expect("exit.json");
    assert_eq!((exit.exit_code, exit.signal), (3, None));
    assert!(exit.finished_at.parse::<jiff::Timestamp>().is_ok());

    let entries = log_entries(&log);
    let of = |stream: &str| -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|(s, _, _)| s == stream)
            .map(|(_, tag, content)| (tag.clone(), content.clone()))
            .collect()
    };
    let pair = |tag: &str, content: &str| (tag.to_string(), content.to_string());
    assert_eq!(
        of("stdout"),
        vec![pair("F", "out1"), pair("F", "out2"), pair("P", "tail")]
    );
    assert_eq!(of("stderr"), vec![pair("F", "err1")]);
    assert!(fs::read_to_string(state_dir.join("shim.log"))
        .expect("shim.log")
        .contains("exited"));
}

#[test]
fn shim_rotates_the_log_and_records_signals() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(&[
        "sh",
        "-c",
        "for i in $(seq 1 60); do echo line-$i; done; kill -9 $$",
    ]);
    without_pid_namespace(&mut spec);
    fixture.write(&spec);
    let state_dir = fixture.path("state");
    fs::create_dir_all(&state_dir).expect("state dir");
    let log = fixture.path("c.log");
    let output = fixture
        .shim_command(&state_dir, &log)
        .args(["--log-max-size", "400", "--log-max-files", "3"])
        .output()
        .expect("run shim");
    assert!(output.status.success(), "{}", describe(&output));
    let exit = read_exit_state(&state_dir)
        .expect("read")
        .expect("exit.json");
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));

    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    assert!(rotated(1).exists() && rotated(2).exists());
    assert!(!rotated(3).exists(), "more than max-files files kept");
    for path in [log.clone(), rotated(1), rotated(2)] {
        let size = fs::metadata(&path).expect("stat").len();
        assert!(size <= 400, "{} is {size} bytes", path.display());
    }
    let current = log_entries(&log);
    assert_eq!(current.last().map(|e| e.2.as_str()), Some("line-60"));
    // The oldest lines were dropped with the oldest file.
    let kept: Vec<String> = [rotated(2), rotated(1), log.clone()]
        .iter()
        .flat_map(|path| log_entries(path))
        .map(|(_, _, content)| content)
        .collect();
    assert!(!kept.contains(&"line-1".to_string()));
    let first: u32 = kept[0].trim_start_matches("line-").parse().expect("number");
    let expected: Vec<String> = (first..=60).map(|i| format!("line-{i}")).collect();
    assert_eq!(kept, expected, "kept lines are not contiguous");
}

#[test]
fn shim_outlives_its_parent() {
    let fixture = Fixture::new();
    let spec = fixture.spec(&["sh", "-c", "sleep 1; echo done"]);
    fixture.write(&spec);
    let state_dir = fixture.path("state");
    fs::create_dir_all(&state_dir).expect("state dir");
    let log = fixture.path("c.log");
    let reply = fixture.path("reply");
    // The parent shell exits right after starting the shim in the background.
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" shim --id test --bundle "$1" --state-dir "$2" --log "$3" > "$4" &"#)
        .arg(BIN)
        .arg(fixture.bundle())
        .arg(&state_dir)
        .arg(&log)
        .arg(&reply)
        .status()
        .expect("sh");
    assert!(status.success());
    let exit = wait_for("exit.json", Duration::from_secs(10), || {
        read_exit_state(&state_dir).ok().flatten()
    });
    assert_eq!(exit.exit_code, 0);
    let reply: ShimReply =
        serde_json::from_str(&fs::read_to_string(&reply).expect("reply")).expect("JSON");
    assert!(matches!(reply, ShimReply::Started { .. }), "{reply:?}");
    assert_eq!(
        log_entries(&log),
        vec![("stdout".into(), "F".into(), "done".into())]
    );
}

#[test]
fn exec_runs_inside_a_running_container() {
    let fixture = Fixture::new();
    fs::write(fixture.rootfs().join("marker"), "inside\n").expect("marker");
    let mut spec = fixture.spec(&["sleep", "30"]);
    spec.set_hostname(Some("exec-host".into()));
    if let Some(process) = spec.process_mut() {
        process.set_user(
            UserBuilder::default()
                .uid(1000u32)
                .gid(1000u32)
                .build()
                .expect("user"),
        );
        process.set_env(Some(vec!["PATH=/bin".into(), "FROM_BUNDLE=yes".into()]));
    }
    fixture.write(&spec);
    let state_dir = fixture.path("state");
    fs::create_dir_all(&state_dir).expect("state dir");
    let mut shim = fixture
        .shim_command(&state_dir, &fixture.path("c.log"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn shim");
    let mut line = String::new();
    BufReader::new(shim.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("reply");
    let pid = match serde_json::from_str(&line).expect("reply JSON") {
        ShimReply::Started { pid } => pid,
        other => panic!("unexpected reply {other:?}"),
    };
    let guard = KillGuard(pid);

    let output = Command::new(BIN)
        .args(["exec", "--bundle"])
        .arg(fixture.bundle())
        .args(["--pid", &pid.to_string(), "--cwd", "/tmp", "--env", "EXTRA=1", "--"])
        .args(["sh", "-c", "hostname; cat /marker; id -u; pwd; echo $FROM_BUNDLE$EXTRA; ps -o pid,comm | grep -c sleep; exit 7"])
        .output()
        .expect("run exec");
    assert_eq!(output.status.code(), Some(7), "{}", describe(&output));
    assert_eq!(stdout(&output), "exec-host\ninside\n1000\n/tmp\nyes1\n1\n");

    let output = Command::new(BIN)
        .args(["exec", "--bundle"])
        .arg(fixture.bundle())
        .args(["--pid", &pid.to_string(), "--", "no-such-command"])
        .output()
        .expect("run exec");
    assert_eq!(output.status.code(), Some(127), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-command"));

    drop(guard);
    assert!(shim.wait().expect("wait shim").success());
    let exit = read_exit_state(&state_dir)
        .expect("read")
        .expect("exit.json");
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
}
