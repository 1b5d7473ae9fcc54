//! `network`: a pod's network (veth pair, address, routes, IPAM) set up by skiff's
//! in-process netlink code vs the CNI `bridge` plugin with `host-local` IPAM, invoked the
//! way a container runtime invokes it.
//!
//! Each side has its own bench "host" network namespace holding its bridge (same name
//! style, same /24 subnet, gateway .1, MTU 1450, hairpin on, no masquerading) and one pod
//! namespace per pod, made with `ip netns add` before the clock starts. Pods alternate
//! between the two sides (skiff first on even pods, CNI first on odd ones).
//!
//! - skiff: `Ipam::allocate` (persistent, fsynced, like host-local's files) then
//!   `network::setup_pod` over an rtnetlink connection the node daemon keeps open; DEL is
//!   `network::teardown_pod` then `Ipam::release`.
//! - CNI: `/usr/lib/cni/bridge` started with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//!   `CNI_IFNAME`, `CNI_PATH` and the network config on stdin, in the CNI host namespace
//!   (it calls `host-local` itself); the time is from spawn to exit.
//!
//! Both bridges are created by one untimed warm-up pod per side.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_runtime::ipam::Ipam;
use skiff_runtime::network::{self, PodNetworkConfig};

use crate::common::{self, ms, Netns, Samples, Summary, Table};

const BENCH: &str = "network";
const CNI_DIR: &str = "/usr/lib/cni";
const SUBNET: &str = "10.244.1.0/24";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const MTU: u32 = 1450;

/// Timings of one side.
#[derive(Default)]
struct SideTimes {
    add: Vec<Duration>,
    del: Vec<Duration>,
    /// skiff only: the IPAM part of `add` and of `del`.
    ipam_add: Vec<Duration>,
    ipam_del: Vec<Duration>,
}

/// Runs the benchmark with `pods` pod namespaces per side.
pub fn run(summary: &mut Summary, pods: usize) -> Result<()> {
    println!(
        "\n## network: pod network setup, skiff vs CNI bridge + host-local, {pods} pods each\n"
    );
    let cni_bridge = Path::new(CNI_DIR).join("bridge");
    let hint = "apt-get install -y containernetworking-plugins (scripts/bench-node.sh does)";
    common::require_file(&cni_bridge, hint)?;
    common::require_file(&Path::new(CNI_DIR).join("host-local"), hint)?;
    common::require_program("ip", "apt-get install -y iproute2")?;
    let cni_version = cni_plugin_version(&cni_bridge);

    let pid = std::process::id();
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-net-")
        .tempdir()
        .context("creating a temp dir")?;
    let skiff_host = Netns::create(&format!("skiff-bn-{pid}-skiff"))?;
    let cni_host = Netns::create(&format!("skiff-bn-{pid}-cni"))?;
    // Pod namespaces: index 0 is the warm-up pod of each side.
    let started = Instant::now();
    let mut skiff_pods = Vec::with_capacity(pods + 1);
    let mut cni_pods = Vec::with_capacity(pods + 1);
    for i in 0..=pods {
        common::check_interrupted()?;
        skiff_pods.push(Netns::create(&format!("skiff-bn-{pid}-s{i}"))?);
        cni_pods.push(Netns::create(&format!("skiff-bn-{pid}-c{i}"))?);
    }
    println!(
        "({} pod namespaces made in {})",
        2 * (pods + 1),
        common::elapsed(started)
    );

    let cni = CniInvoker {
        plugin: cni_bridge,
        host_netns: cni_host.open()?,
        config: cni_config(&dir.path().join("cni-ipam")),
    };
    let skiff_pod_paths: Vec<PathBuf> = skiff_pods.iter().map(Netns::path).collect();
    let ipam_dir = dir.path().join("skiff-ipam");
    let cni_pod_paths: Vec<PathBuf> = cni_pods.iter().map(Netns::path).collect();

    let started = Instant::now();
    let (skiff, cni_times) = common::block_on_in_netns(&skiff_host, 0, move || async move {
        let host = network::connect_current()?;
        let ipam = Ipam::open(&ipam_dir, SUBNET)?;
        let mut cfg = PodNetworkConfig::new(ipam.gateway(), ipam.prefix_len());
        cfg.mtu = MTU;
        network::ensure_bridge(&host, &cfg).await?;
        let skiff_side = SkiffSide { host, ipam, cfg };
        let mut skiff = SideTimes::default();
        let mut cni_times = SideTimes::default();

        // Warm-up: creates the CNI bridge, loads both code paths.
        skiff_side.add(0, &skiff_pod_paths[0]).await?;
        cni.invoke("ADD", 0, &cni_pod_paths[0])?;
        verify_pod(&skiff_pod_paths[0], "skiff")?;
        verify_pod(&cni_pod_paths[0], "CNI bridge")?;

        for i in 1..=pods {
            common::check_interrupted()?;
            let skiff_first = i % 2 == 0;
            for side in [skiff_first, !skiff_first] {
                if side {
                    let (total, ipam) = skiff_side.add(i, &skiff_pod_paths[i]).await?;
                    skiff.add.push(total);
                    skiff.ipam_add.push(ipam);
                } else {
                    cni_times.add.push(cni.invoke("ADD", i, &cni_pod_paths[i])?);
                }
            }
        }
        for (i, cni_path) in cni_pod_paths.iter().enumerate().skip(1) {
            common::check_interrupted()?;
            let skiff_first = i % 2 == 0;
            for side in [skiff_first, !skiff_first] {
                if side {
                    let (total, ipam) = skiff_side.del(i).await?;
                    skiff.del.push(total);
                    skiff.ipam_del.push(ipam);
                } else {
                    cni_times.del.push(cni.invoke("DEL", i, cni_path)?);
                }
            }
        }
        skiff_side.del(0).await?;
        cni.invoke("DEL", 0, &cni_pod_paths[0])?;
        Ok((skiff, cni_times))
    })?;
    println!("(took {})\n", common::elapsed(started));

    let stats = |v: &[Duration]| Samples::new(v.to_vec());
    let (skiff_add, skiff_del) = (stats(&skiff.add), stats(&skiff.del));
    let (cni_add, cni_del) = (stats(&cni_times.add), stats(&cni_times.del));
    let mut table = Table::new(&["", "n", "mean ms", "p50 ms", "p99 ms", "max ms"]);
    let (ipam_add, ipam_del) = (stats(&skiff.ipam_add), stats(&skiff.ipam_del));
    for (name, s) in [
        ("skiff ADD (IPAM + setup_pod)", &skiff_add),
        ("  of which IPAM allocate", &ipam_add),
        ("CNI bridge ADD", &cni_add),
        ("skiff DEL (teardown_pod + release)", &skiff_del),
        ("  of which IPAM release", &ipam_del),
        ("CNI bridge DEL", &cni_del),
    ] {
        table.row(vec![
            name.into(),
            s.len().to_string(),
            ms(s.mean()),
            ms(s.percentile(50.0)),
            ms(s.percentile(99.0)),
            ms(s.max()),
        ]);
    }
    print!("{}", table.render());
    let ratio = |cni: &Samples, skiff: &Samples| {
        cni.mean().as_secs_f64() / skiff.mean().as_secs_f64().max(1e-9)
    };
    let add_ratio = ratio(&cni_add, &skiff_add);
    let del_ratio = ratio(&cni_del, &skiff_del);
    println!("\nADD: skiff is {add_ratio:.1}× faster (mean); DEL: {del_ratio:.1}×");

    summary.against_goal(
        BENCH,
        "pod network ADD, skiff vs CNI bridge (mean / p99)",
        format!(
            "{} / {} ms vs {} / {} ms: {add_ratio:.1}×",
            ms(skiff_add.mean()),
            ms(skiff_add.percentile(99.0)),
            ms(cni_add.mean()),
            ms(cni_add.percentile(99.0))
        ),
        "≥ 5× faster",
        add_ratio >= 5.0,
    );
    summary.figure(
        BENCH,
        "pod network DEL, skiff vs CNI bridge (mean / p99)",
        format!(
            "{} / {} ms vs {} / {} ms: {del_ratio:.1}×",
            ms(skiff_del.mean()),
            ms(skiff_del.percentile(99.0)),
            ms(cni_del.mean()),
            ms(cni_del.percentile(99.0))
        ),
    );
    summary.note(format!(
        "network: {pods} pod netns per side, interleaved; skiff = `Ipam::allocate` + `network::setup_pod` (veth pair with both MACs, \
         eth0 moved in, address, lo up, default route, hairpin) on the daemon's open rtnetlink socket; CNI = Debian's \
         containernetworking-plugins {cni_version} `bridge` (+ `host-local`), one process per call as a runtime runs it, \
         same subnet/MTU/hairpin, ipMasq off; each side in its own bench host netns."
    ));
    drop(cni_pods);
    drop(skiff_pods);
    Ok(())
}

/// The version `bridge` reports on `CNI_COMMAND=VERSION`, for the notes.
fn cni_plugin_version(plugin: &Path) -> String {
    let output = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output();
    let package = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "containernetworking-plugins"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match (package, output) {
        (Some(version), _) => version,
        (None, Ok(o)) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        (None, Err(_)) => "?".into(),
    }
}

/// The network config a runtime would hand the plugin.
fn cni_config(ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "skiff-bench",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "mtu": MTU,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY.to_string()}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": ipam_dir,
        },
    })
    .to_string()
}

/// skiff's side: the daemon's state (netlink handle, IPAM, config).
struct SkiffSide {
    host: rtnetlink::Handle,
    ipam: Ipam,
    cfg: PodNetworkConfig,
}

impl SkiffSide {
    fn owner(i: usize) -> String {
        format!("bench-pod-{i}")
    }

    /// Sets up pod `i`; returns the total time and the IPAM part of it.
    async fn add(&self, i: usize, netns: &Path) -> Result<(Duration, Duration)> {
        let owner = Self::owner(i);
        let veth = network::host_veth_name(&owner);
        let start = Instant::now();
        let ip = self.ipam.allocate(&owner)?;
        let ipam = start.elapsed();
        network::setup_pod(&self.host, &self.cfg, netns, ip, &veth)
            .await
            .with_context(|| format!("skiff setup_pod for {}", netns.display()))?;
        Ok((start.elapsed(), ipam))
    }

    /// Tears down pod `i`; returns the total time and the IPAM part of it.
    async fn del(&self, i: usize) -> Result<(Duration, Duration)> {
        let owner = Self::owner(i);
        let veth = network::host_veth_name(&owner);
        let start = Instant::now();
        network::teardown_pod(&self.host, &veth).await?;
        let ipam_start = Instant::now();
        self.ipam.release(&owner)?;
        Ok((start.elapsed(), ipam_start.elapsed()))
    }
}

/// Runs the CNI plugin as a runtime does.
struct CniInvoker {
    plugin: PathBuf,
    host_netns: std::fs::File,
    config: String,
}

impl CniInvoker {
    /// One call; returns its wall time.
    fn invoke(&self, command: &str, i: usize, netns: &Path) -> Result<Duration> {
        use std::io::Write;
        let host_fd = self.host_netns.as_raw_fd();
        let mut cmd = Command::new(&self.plugin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", format!("bench-pod-{i}"))
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_DIR)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setns is a plain syscall on an fd opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(host_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.plugin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(self.config.as_bytes())
                .context("writing the CNI config")?;
        }
        let output = child
            .wait_with_output()
            .context("waiting for the CNI plugin")?;
        let elapsed = start.elapsed();
        if !output.status.success() {
            bail!(
                "CNI {command} for {} failed ({}): {}{}",
                netns.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(elapsed)
    }
}

/// Checks a pod netns got what both sides promise: an address on eth0 in the subnet and a
/// default route via the gateway.
fn verify_pod(netns: &Path, who: &str) -> Result<()> {
    let name = netns
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let addresses = common::run_command(
        "ip",
        &["-n", &name, "-4", "-o", "addr", "show", "dev", "eth0"],
    )?;
    let routes = common::run_command("ip", &["-n", &name, "-4", "route", "show", "default"])?;
    let prefix = "10.244.1.";
    if !addresses.contains(prefix) || !routes.contains(&format!("via {GATEWAY}")) {
        bail!("{who} left pod netns {name} without the expected setup: addresses {addresses:?}, routes {routes:?}");
    }
    Ok(())
}
