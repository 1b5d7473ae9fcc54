//! Pod and container cgroups on the real kernel (root only): limits land in the cgroup
//! files, processes that join a cgroup before exec are held to its CPU quota and memory
//! limit, and removing a pod kills what is left and leaves no directory.
//!
//! Each test works below its own parent, `skiff-test-{pid}-{n}`, removed by a guard even
//! when the test fails, so tests run in parallel with each other and with other suites.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_runtime::cgroups::{
    cpu_shares_to_weight, milli_cpu_to_shares, CgroupManager, CgroupVersion, ContainerCgroup,
    QosClass, Resources,
};

const BUSYBOX: &str = "/bin/busybox";
const MIB: i64 = 1024 * 1024;

/// A node parent of its own, removed with everything in it when the test ends.
struct TestNode {
    manager: CgroupManager,
    parent: String,
}

impl TestNode {
    /// `None` (the test is skipped) when not root: cgroups need it.
    fn new() -> Option<TestNode> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: cgroup tests need root");
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let parent = format!(
            "skiff-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let manager = CgroupManager::new(&parent).expect("cgroup manager");
        let node = TestNode { manager, parent };
        node.manager
            .ensure_node_hierarchy()
            .expect("node hierarchy");
        Some(node)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Err(e) = self.manager.remove_node_hierarchy() {
            eprintln!("cannot clean up test cgroups: {e}");
        }
    }
}

fn resource_list(entries: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
    Some(
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect(),
    )
}

fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    Container {
        name: name.to_string(),
        resources: Some(ResourceRequirements {
            requests: resource_list(requests),
            limits: resource_list(limits),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the pod's cgroup and each container's, as the runtime does.
fn create_pod(node: &TestNode, uid: &str, spec: &PodSpec) -> Vec<ContainerCgroup> {
    let qos: QosClass = skiff_api::defaults::qos_class(spec).parse().unwrap();
    let pod_resources = Resources::for_pod(spec).unwrap();
    let pod = node.manager.create_pod(uid, qos, &pod_resources).unwrap();
    spec.containers
        .iter()
        .map(|c| {
            let resources = Resources::for_container(c).unwrap();
            node.manager
                .create_container(&pod, &c.name, &resources)
                .unwrap()
        })
        .collect()
}

/// Starts `busybox sh -c script` inside `container`'s cgroup: the child writes "0" to each
/// `cgroup.procs` between fork and exec, so the script never runs outside the cgroup.
fn spawn_in(container: &ContainerCgroup, script: &str) -> Child {
    // Paths prepared before the fork: the child may not allocate.
    let procs_files: Vec<CString> = container
        .procs_files()
        .iter()
        .map(|path| CString::new(path.as_os_str().as_bytes()).unwrap())
        .collect();
    let mut command = Command::new(BUSYBOX);
    command
        .args(["sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: join_cgroups only makes async-signal-safe calls (open, write, close) on
    // memory prepared before the fork.
    unsafe {
        command.pre_exec(move || join_cgroups(&procs_files));
    }
    command.spawn().expect("spawn busybox")
}

fn join_cgroups(procs_files: &[CString]) -> io::Result<()> {
    for path in procs_files {
        // SAFETY: a valid NUL-terminated path; the descriptor is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: writes one byte from a static buffer to the descriptor just opened.
        let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        let error = (written != 1).then(io::Error::last_os_error);
        // SAFETY: closes the descriptor opened above.
        unsafe { libc::close(fd) };
        if let Some(error) = error {
            return Err(error);
        }
    }
    Ok(())
}

/// Waits for `child` to end, for at most `timeout`.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < timeout,
            "process still running after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The value of `file` in the cgroup's directory of the hierarchy that has it.
fn cgroup_file(container_dirs: &[std::path::PathBuf], file: &str) -> String {
    let dir = container_dirs
        .iter()
        .find(|dir| dir.join(file).exists())
        .unwrap_or_else(|| panic!("no {file} in {container_dirs:?}"));
    read(&dir.join(file))
}

#[test]
fn detected_version_matches_the_mount_table() {
    let detected = CgroupVersion::detect(Path::new("/sys/fs/cgroup")).unwrap();
    // The mount table's fields 5 and 9 (after " - ") are the mount point and its type.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let unified = mountinfo.lines().any(|line| {
        let mount_point = line.split(' ').nth(4);
        let fs_type = line
            .split(" - ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next());
        mount_point == Some("/sys/fs/cgroup") && fs_type == Some("cgroup2")
    });
    let expected = if unified {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    };
    assert_eq!(detected, expected);
}

#[test]
fn limits_are_visible_in_cgroup_files() {
    let Some(node) = TestNode::new() else { return };
    let spec = PodSpec {
        containers: vec![
            container(
                "web",
                &[("cpu", "250m"), ("memory", "64Mi")],
                &[("cpu", "500m"), ("memory", "128Mi")],
            ),
            container(
                "sidecar",
                &[("cpu", "100m")],
                &[("cpu", "100m"), ("memory", "32Mi")],
            ),
        ],
        ..Default::default()
    };
    let containers = create_pod(&node, "limits", &spec);
    let pod = node
        .manager
        .pod_cgroup("limits", QosClass::Burstable)
        .unwrap();
    assert!(pod.cgroup().exists());
    assert_eq!(
        containers[0].relative_path(),
        format!("/{}/burstable/podlimits/web", node.parent)
    );

    let pod_dirs = pod.cgroup().dirs();
    let web_dirs = containers[0].cgroup().dirs();
    match node.manager.version() {
        CgroupVersion::V1 => {
            assert_eq!(
                cgroup_file(&pod_dirs, "cpu.shares"),
                milli_cpu_to_shares(350).to_string()
            );
            assert_eq!(cgroup_file(&pod_dirs, "cpu.cfs_quota_us"), "60000");
            assert_eq!(cgroup_file(&pod_dirs, "cpu.cfs_period_us"), "100000");
            assert_eq!(
                cgroup_file(&pod_dirs, "memory.limit_in_bytes"),
                (160 * MIB).to_string()
            );
            assert_eq!(cgroup_file(&pod_dirs, "pids.max"), "max");
            assert_eq!(cgroup_file(&web_dirs, "cpu.shares"), "256");
            assert_eq!(cgroup_file(&web_dirs, "cpu.cfs_quota_us"), "50000");
            assert_eq!(
                cgroup_file(&web_dirs, "memory.limit_in_bytes"),
                (128 * MIB).to_string()
            );
        }
        CgroupVersion::V2 => {
            let weight = cpu_shares_to_weight(milli_cpu_to_shares(350));
            assert_eq!(cgroup_file(&pod_dirs, "cpu.weight"), weight.to_string());
            assert_eq!(cgroup_file(&pod_dirs, "cpu.max"), "60000 100000");
            assert_eq!(
                cgroup_file(&pod_dirs, "memory.max"),
                (160 * MIB).to_string()
            );
            assert_eq!(cgroup_file(&pod_dirs, "pids.max"), "max");
            assert_eq!(cgroup_file(&web_dirs, "cpu.max"), "50000 100000");
            assert_eq!(
                cgroup_file(&web_dirs, "memory.max"),
                (128 * MIB).to_string()
            );
        }
    }

    // Creating again updates the limits in place.
    let updated = Resources {
        pids_limit: Some(100),
        memory_limit: Some(256 * MIB),
        ..Resources::for_pod(&spec).unwrap()
    };
    node.manager
        .create_pod("limits", QosClass::Burstable, &updated)
        .unwrap();
    assert_eq!(cgroup_file(&pod_dirs, "pids.max"), "100");
    let memory_file = match node.manager.version() {
        CgroupVersion::V1 => "memory.limit_in_bytes",
        CgroupVersion::V2 => "memory.max",
    };
    assert_eq!(cgroup_file(&pod_dirs, memory_file), (256 * MIB).to_string());
    assert_eq!(
        node.manager.list_pods().unwrap(),
        vec![("limits".to_string(), QosClass::Burstable)]
    );
}

#[test]
fn cpu_limit_holds_a_busy_loop_near_its_quota() {
    let Some(node) = TestNode::new() else { return };
    let spec = PodSpec {
        containers: vec![container("spin", &[("cpu", "200m")], &[("cpu", "200m")])],
        ..Default::default()
    };
    let containers = create_pod(&node, "cpu", &spec);
    let spin = &containers[0];
    let mut child = spawn_in(spin, "while :; do :; done");
    assert_eq!(spin.cgroup().pids().unwrap(), vec![child.id() as i32]);

    // Let the loop reach its steady state, then measure over two seconds.
    thread::sleep(Duration::from_millis(300));
    let before = spin.cgroup().stats().unwrap().cpu_usage_ns;
    let started = Instant::now();
    thread::sleep(Duration::from_secs(2));
    let used = spin.cgroup().stats().unwrap().cpu_usage_ns - before;
    let share = used as f64 / started.elapsed().as_nanos() as f64;

    eprintln!(
        "200m limit: the busy loop used {:.1}% of a CPU",
        share * 100.0
    );
    node.manager.remove_pod("cpu").unwrap();
    assert_eq!(
        wait_with_timeout(&mut child, Duration::from_secs(5)).signal(),
        Some(libc::SIGKILL)
    );
    assert!(
        (0.10..=0.30).contains(&share),
        "a 200m limit let the loop use {:.1}% of a CPU",
        share * 100.0
    );
}

#[test]
fn memory_limit_oom_kills_and_is_counted() {
    let Some(node) = TestNode::new() else { return };
    let spec = PodSpec {
        containers: vec![container(
            "hog",
            &[("memory", "32Mi")],
            &[("memory", "32Mi")],
        )],
        ..Default::default()
    };
    let containers = create_pod(&node, "oom", &spec);
    let hog = &containers[0];
    assert_eq!(hog.cgroup().oom_kill_count().unwrap(), 0);

    // Doubling a shell string reaches 32 MiB within a second (there is no swap to hide in).
    let mut child = spawn_in(hog, "x=a; while true; do x=$x$x; done");
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(hog.cgroup().oom_kill_count().unwrap() >= 1);

    let stats = hog.cgroup().stats().unwrap();
    assert!(stats.memory_usage_bytes <= 32 * MIB as u64, "{stats:?}");
    assert!(stats.memory_working_set_bytes <= stats.memory_usage_bytes);
}

#[test]
fn remove_pod_kills_leftovers_and_leaves_no_directory() {
    let Some(node) = TestNode::new() else { return };
    let spec = PodSpec {
        containers: vec![
            container("a", &[("cpu", "100m")], &[]),
            container("b", &[], &[]),
        ],
        ..Default::default()
    };
    let containers = create_pod(&node, "leftovers", &spec);
    let mut first = spawn_in(&containers[0], "busybox sleep 1000");
    // A shell with background children: they outlive the shell's own kill and must be
    // found in cgroup.procs, not through the process tree.
    let mut second = spawn_in(
        &containers[1],
        "busybox sleep 1000 & busybox sleep 1000 & wait",
    );

    let pod = node
        .manager
        .pod_cgroup("leftovers", QosClass::Burstable)
        .unwrap();
    let started = Instant::now();
    while pod.cgroup().pids().unwrap().len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "processes did not start"
        );
        thread::sleep(Duration::from_millis(10));
    }

    node.manager.remove_pod("leftovers").unwrap();
    for child in [&mut first, &mut second] {
        let status = wait_with_timeout(child, Duration::from_secs(5));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
    for dir in pod.cgroup().dirs() {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    assert!(pod.cgroup().pids().unwrap().is_empty());
    assert!(node.manager.list_pods().unwrap().is_empty());
    // Removing again is fine.
    node.manager.remove_pod("leftovers").unwrap();
    node.manager.remove_container(&containers[0]).unwrap();
}
