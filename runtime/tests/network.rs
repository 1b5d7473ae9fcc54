//! The pod network against the real kernel, as root, inside network namespaces each test
//! makes for itself: a "host" namespace holds the bridge, pod namespaces hold `eth0`.
//! Results are checked through the kernel's own view (`ip -n NS -d link show`, ping).

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use skiff_runtime::network::{
    bind_namespace, connect_current, connect_in_netns, ensure_bridge, host_veth_name,
    list_host_veths, setup_pod, teardown_pod, unbind_namespace, NamespaceKind, NetnsHandle,
    NetworkError, PodNetworkConfig,
};

static NEXT_NS: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made with `ip netns add`, deleted on drop (with every link in it).
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn new(role: &str) -> TestNetns {
        let name = format!(
            "skiff-nt-{}-{}-{role}",
            std::process::id(),
            NEXT_NS.fetch_add(1, Ordering::SeqCst)
        );
        run_ok("ip", &["netns", "add", &name]);
        TestNetns { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip -n NS ARGS...` and returns stdout (panics on failure).
    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok("ip", &full)
    }

    /// Whether `ip -n NS ARGS...` succeeds.
    fn ip_succeeds(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|status| status.success())
            .unwrap_or(false)
    }

    /// Whether one ping from this namespace to `target` gets an answer.
    fn ping(&self, target: Ipv4Addr) -> bool {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "/bin/busybox",
                "ping",
                "-c1",
                "-W1",
            ])
            .arg(target.to_string())
            .output()
            .expect("run ping");
        if !output.status.success() {
            eprintln!(
                "ping {target} from {} failed: {}{}",
                self.name,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output.status.success()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A process in a fresh network namespace, killed on drop.
struct NetnsProcess {
    child: Child,
}

impl NetnsProcess {
    fn start() -> NetnsProcess {
        let mut command = Command::new("/bin/busybox");
        command.args(["sleep", "600"]);
        // unshare is a plain syscall: safe between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        NetnsProcess {
            child: command.spawn().expect("start sleep in a new netns"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NetnsProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A namespace bound with `bind_namespace`, unbound on drop.
struct BoundNamespace(PathBuf);

impl Drop for BoundNamespace {
    fn drop(&mut self) {
        let _ = unbind_namespace(&self.0);
    }
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `body` on a thread inside `netns` with its own current-thread tokio runtime, so
/// the test process's own network namespace is never touched.
fn in_netns<F, Fut, T>(netns: &Path, body: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).expect("open test netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter test netns");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build runtime");
        runtime.block_on(body())
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn config(third_octet: u8) -> PodNetworkConfig {
    PodNetworkConfig::new(Ipv4Addr::new(10, 250, third_octet, 1), 24)
}

fn pod_ip(third_octet: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, third_octet, last)
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn inet_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("inet "))
        .map(str::to_string)
        .collect()
}

#[test]
fn bridge_gets_gateway_address_mtu_and_stays_unique() {
    let host = TestNetns::new("host");
    let mut cfg = config(1);
    cfg.mtu = 1400;
    let cfg_in = cfg.clone();
    let first_index = in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        let a = ensure_bridge(&handle, &cfg_in).await.unwrap();
        let b = ensure_bridge(&handle, &cfg_in).await.unwrap();
        assert_eq!(a, b, "the second call finds the same bridge");
        a
    });
    let link = host.ip(&["-d", "link", "show", "skiff0"]);
    assert!(
        link.starts_with(&format!("{first_index}: skiff0:")),
        "{link}"
    );
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(link.contains(",UP"), "{link}");
    assert!(link.contains("bridge "), "{link}");
    assert!(link.contains("link/ether 0a:58:0a:fa:01:01"), "{link}");
    let addresses = host.ip(&["-4", "addr", "show", "dev", "skiff0"]);
    assert_eq!(inet_lines(&addresses).len(), 1, "{addresses}");
    assert!(addresses.contains("inet 10.250.1.1/24"), "{addresses}");

    // A changed MTU and prefix are fixed in place.
    cfg.mtu = 1450;
    cfg.prefix_len = 16;
    let cfg_in = cfg.clone();
    in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        ensure_bridge(&handle, &cfg_in).await.unwrap();
    });
    assert!(host.ip(&["link", "show", "skiff0"]).contains("mtu 1450"));
    let addresses = host.ip(&["-4", "addr", "show", "dev", "skiff0"]);
    assert_eq!(inet_lines(&addresses).len(), 1, "{addresses}");
    assert!(addresses.contains("inet 10.250.1.1/16"), "{addresses}");
}

#[test]
fn a_link_of_another_kind_is_not_taken_for_the_bridge() {
    let host = TestNetns::new("host");
    host.ip(&[
        "link", "add", "skiff0", "type", "veth", "peer", "name", "other0",
    ]);
    let error = in_netns(&host.path(), || async {
        let handle = connect_current().unwrap();
        ensure_bridge(&handle, &config(9)).await.unwrap_err()
    });
    assert!(matches!(error, NetworkError::NotABridge { .. }), "{error}");
    assert!(error.to_string().contains("skiff0"), "{error}");
}

#[test]
fn setup_without_bridge_names_the_missing_bridge() {
    let host = TestNetns::new("host");
    let pod = TestNetns::new("pod");
    let pod_path = pod.path();
    let error = in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        setup_pod(
            &handle,
            &config(8),
            &pod_path,
            pod_ip(8, 2),
            "vethnobridge01",
        )
        .await
        .unwrap_err()
    });
    assert!(matches!(error, NetworkError::LinkMissing { .. }), "{error}");
    assert!(error.to_string().contains("skiff0"), "{error}");
}

#[test]
fn pods_get_eth0_and_reach_the_host_and_each_other() {
    let host = TestNetns::new("host");
    let pod_a = TestNetns::new("poda");
    let pod_b = TestNetns::new("podb");
    let cfg = config(2);
    let veth_a = host_veth_name(&format!("uid-a-{}", std::process::id()));
    let veth_b = host_veth_name(&format!("uid-b-{}", std::process::id()));

    let (cfg_in, a_path, b_path, va, vb) = (
        cfg.clone(),
        pod_a.path(),
        pod_b.path(),
        veth_a.clone(),
        veth_b.clone(),
    );
    let (iface_a, iface_b, listed) = in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        ensure_bridge(&handle, &cfg_in).await.unwrap();
        let a = setup_pod(&handle, &cfg_in, &a_path, pod_ip(2, 2), &va)
            .await
            .unwrap();
        let b = setup_pod(&handle, &cfg_in, &b_path, pod_ip(2, 3), &vb)
            .await
            .unwrap();
        let listed = list_host_veths(&handle, &cfg_in).await.unwrap();
        (a, b, listed)
    });
    assert_eq!(iface_a.host_veth, veth_a);
    assert_eq!(iface_a.pod_mac, [0x0a, 0x58, 10, 250, 2, 2]);
    let mut expected = vec![veth_a.clone(), veth_b.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    // Pod side: eth0 with MAC, MTU, address, default route; lo up.
    let eth0 = pod_a.ip(&["-d", "link", "show", "eth0"]);
    assert!(
        eth0.starts_with(&format!("{}: eth0@", iface_a.pod_ifindex)),
        "{eth0}"
    );
    assert!(eth0.contains("mtu 1450"), "{eth0}");
    assert!(eth0.contains(",UP"), "{eth0}");
    assert!(eth0.contains("link/ether 0a:58:0a:fa:02:02"), "{eth0}");
    assert!(eth0.contains("veth"), "{eth0}");
    let addresses = pod_a.ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(addresses.contains("inet 10.250.2.2/24"), "{addresses}");
    let routes = pod_a.ip(&["-4", "route", "show", "default"]);
    assert!(
        routes.contains("default via 10.250.2.1 dev eth0"),
        "{routes}"
    );
    let lo = pod_a.ip(&["link", "show", "lo"]);
    assert!(lo.contains("LOOPBACK,UP"), "{lo}");
    let pod_links = pod_a.ip(&["-o", "link", "show"]);
    assert_eq!(
        pod_links.lines().count(),
        2,
        "only lo and eth0: {pod_links}"
    );

    // Host side: on the bridge, hairpin on, MTU, MAC, up; no eth0 ever on the host.
    let port = host.ip(&["-d", "link", "show", &veth_a]);
    assert!(
        port.starts_with(&format!("{}: {veth_a}@", iface_a.host_ifindex)),
        "{port}"
    );
    assert!(port.contains("master skiff0"), "{port}");
    assert!(port.contains("hairpin on"), "{port}");
    assert!(port.contains("mtu 1450"), "{port}");
    assert!(port.contains(",UP"), "{port}");
    assert!(
        port.contains(&format!("link/ether {}", mac_text(iface_a.host_mac))),
        "{port}"
    );
    assert!(!host.ip_succeeds(&["link", "show", "eth0"]));

    // Traffic: host to pod, pod to pod, pod to gateway.
    assert!(host.ping(pod_ip(2, 2)));
    assert!(pod_b.ping(pod_ip(2, 2)));
    assert!(pod_a.ping(pod_ip(2, 3)));
    assert!(pod_a.ping(Ipv4Addr::new(10, 250, 2, 1)));

    // Retry after a "crash": same name again works, the old pair is replaced.
    let (cfg_in, b_path, vb) = (cfg.clone(), pod_b.path(), veth_b.clone());
    let again = in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        setup_pod(&handle, &cfg_in, &b_path, pod_ip(2, 3), &vb)
            .await
            .unwrap()
    });
    assert_ne!(again.host_ifindex, iface_b.host_ifindex, "a new pair");
    assert_eq!(
        host.ip(&["-o", "link", "show", "master", "skiff0"])
            .lines()
            .count(),
        2
    );
    assert!(pod_a.ping(pod_ip(2, 3)));

    // Teardown removes both ends; a second teardown is fine.
    let va = veth_a.clone();
    let listed = in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        teardown_pod(&handle, &va).await.unwrap();
        teardown_pod(&handle, &va).await.unwrap();
        list_host_veths(&handle, &config(2)).await.unwrap()
    });
    assert_eq!(listed, vec![veth_b.clone()]);
    assert!(!host.ip_succeeds(&["link", "show", &veth_a]));
    assert!(!pod_a.ip_succeeds(&["link", "show", "eth0"]));
    assert!(pod_b.ip_succeeds(&["link", "show", "eth0"]));
}

#[test]
fn hairpin_follows_the_config_and_stray_eth0_is_replaced() {
    let host = TestNetns::new("host");
    let pod = TestNetns::new("pod");
    // A stray eth0 in the pod netns (not ours) is replaced.
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "stray0",
    ]);
    let mut cfg = config(3);
    cfg.hairpin = false;
    let (cfg_in, pod_path) = (cfg.clone(), pod.path());
    in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        ensure_bridge(&handle, &cfg_in).await.unwrap();
        setup_pod(&handle, &cfg_in, &pod_path, pod_ip(3, 2), "vethhairpinoff")
            .await
            .unwrap();
    });
    let port = host.ip(&["-d", "link", "show", "vethhairpinoff"]);
    assert!(port.contains("hairpin off"), "{port}");
    let eth0 = pod.ip(&["-d", "link", "show", "eth0"]);
    assert!(eth0.contains("link/ether 0a:58:0a:fa:03:02"), "{eth0}");
    assert!(!pod.ip_succeeds(&["link", "show", "stray0"]));
}

fn mountinfo_mentions(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = path.to_string_lossy().into_owned();
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(needle.as_str()))
}

#[test]
fn bound_namespace_outlives_its_process_and_unbinds_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let target = run_dir.join("netns").join("pod-uid-1");
    let mut process = NetnsProcess::start();
    let guard = BoundNamespace(target.clone());

    let handle = NetnsHandle::bind_from_pid(process.pid(), &target).unwrap();
    assert!(mountinfo_mentions(&target));
    // Binding the same namespace again is a no-op, not a second mount.
    bind_namespace(process.pid(), NamespaceKind::Net, &target).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = target.to_string_lossy().into_owned();
    assert_eq!(
        mounts
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(needle.as_str()))
            .count(),
        1
    );
    // Another process's namespace cannot be bound over it.
    let other = NetnsProcess::start();
    let busy = bind_namespace(other.pid(), NamespaceKind::Net, &target).unwrap_err();
    assert!(
        matches!(busy, NetworkError::NamespaceTargetBusy { .. }),
        "{busy}"
    );
    // The other kinds bind with the same helper.
    let uts_target = run_dir.join("uts").join("pod-uid-1");
    let _uts_guard = BoundNamespace(uts_target.clone());
    bind_namespace(other.pid(), NamespaceKind::Uts, &uts_target).unwrap();
    unbind_namespace(&uts_target).unwrap();
    assert!(!uts_target.exists());

    process.stop();
    // The namespace is still there: bring lo up in it over netlink, check with nsenter.
    let netns_path = handle.path().to_path_buf();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pod = connect_in_netns(&netns_path).await.unwrap();
        let lo = rtnetlink::LinkUnspec::new_with_name("lo").up().build();
        pod.link().set(lo).execute().await.unwrap();
    });
    let lo = run_ok(
        "nsenter",
        &[
            &format!("--net={}", netns_path.display()),
            "ip",
            "link",
            "show",
            "lo",
        ],
    );
    assert!(lo.contains("LOOPBACK,UP"), "{lo}");

    NetnsHandle::open(&netns_path).unwrap().release().unwrap();
    assert!(!target.exists());
    assert!(!mountinfo_mentions(&target));
    unbind_namespace(&target).unwrap();
    assert!(NetnsHandle::open(&target).is_err());
    drop(guard);
}

#[test]
fn pod_in_a_bound_namespace_of_a_sandbox_process() {
    let host = TestNetns::new("host");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("netns").join("pod-uid-2");
    let mut sandbox = NetnsProcess::start();
    let _guard = BoundNamespace(target.clone());
    bind_namespace(sandbox.pid(), NamespaceKind::Net, &target).unwrap();
    sandbox.stop();

    let cfg = config(4);
    let (cfg_in, netns) = (cfg.clone(), target.clone());
    let iface = in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        ensure_bridge(&handle, &cfg_in).await.unwrap();
        // Many pods from one long-lived host handle: setup, teardown, setup.
        let veth = host_veth_name("uid-2");
        setup_pod(&handle, &cfg_in, &netns, pod_ip(4, 9), &veth)
            .await
            .unwrap();
        teardown_pod(&handle, &veth).await.unwrap();
        setup_pod(&handle, &cfg_in, &netns, pod_ip(4, 9), &veth)
            .await
            .unwrap()
    });
    let eth0 = run_ok(
        "nsenter",
        &[
            &format!("--net={}", target.display()),
            "ip",
            "-4",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert!(eth0.contains("inet 10.250.4.9/24"), "{eth0}");
    assert!(host.ping(pod_ip(4, 9)));
    assert_eq!(iface.host_veth, host_veth_name("uid-2"));
}

#[test]
fn many_pods_from_one_long_lived_handle_are_quick() {
    const PODS: u8 = 20;
    let host = TestNetns::new("host");
    let pods: Vec<TestNetns> = (0..PODS)
        .map(|i| TestNetns::new(&format!("p{i}")))
        .collect();
    let paths: Vec<PathBuf> = pods.iter().map(TestNetns::path).collect();
    let cfg = config(5);
    let (listed, emptied, elapsed) = in_netns(&host.path(), move || async move {
        let handle = connect_current().unwrap();
        ensure_bridge(&handle, &cfg).await.unwrap();
        let started = std::time::Instant::now();
        for (i, path) in paths.iter().enumerate() {
            let veth = host_veth_name(&format!("bulk-{i}"));
            let ip = pod_ip(5, 10 + i as u8);
            setup_pod(&handle, &cfg, path, ip, &veth).await.unwrap();
        }
        let elapsed = started.elapsed();
        let listed = list_host_veths(&handle, &cfg).await.unwrap();
        for i in 0..paths.len() {
            teardown_pod(&handle, &host_veth_name(&format!("bulk-{i}")))
                .await
                .unwrap();
        }
        let emptied = list_host_veths(&handle, &cfg).await.unwrap();
        (listed, emptied, elapsed)
    });
    eprintln!(
        "setup_pod: {PODS} pods in {elapsed:?} ({:?} each)",
        elapsed / u32::from(PODS)
    );
    assert_eq!(listed.len(), usize::from(PODS));
    assert!(emptied.is_empty(), "{emptied:?}");
    // Generous bound: a pod costs a few netlink round trips and one short thread.
    assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");
}
