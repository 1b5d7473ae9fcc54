//! The node daemon: joins the cluster, then keeps every pod bound to this node running as
//! its spec says, one worker task per pod.

mod containers;
mod context;
mod events;
mod record;
mod sandbox;
mod sources;
mod view;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use skiff_api::quantity::Quantity;
use skiff_runtime::cgroups::CgroupManager;
use skiff_runtime::image::{ImageStore, PullOptions};
use skiff_runtime::ipam::Ipam;
use skiff_runtime::network::{self, PodFileSettings, PodNetworkConfig};
use skiff_runtime::node::{self, HostFacts, NodeConfig};
use tokio::sync::watch;
use tracing::{info, warn};

use context::{DaemonConfig, NodeContext};
use events::Recorder;

/// `skiff-runtime --server URL --token TOKEN …`: run the node daemon.
#[derive(clap::Args, Debug, Clone)]
pub struct DaemonArgs {
    /// The API server's URL.
    #[arg(long, env = "SKIFF_SERVER")]
    pub server: Option<String>,
    /// The join token: the content of the control plane's `node-token` file, or `@FILE`.
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: Option<String>,
    /// The cluster CA certificate (the control plane's `pki/ca.crt`).
    #[arg(long, default_value = "/var/lib/skiff/ca.crt")]
    pub ca_file: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address other nodes and the control plane reach this node at.
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// Where images, pods and IP allocations are kept.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub root_dir: PathBuf,
    /// Where namespaces are bind-mounted (a tmpfs, so a reboot starts clean).
    #[arg(long, default_value = "/run/skiff")]
    pub run_dir: PathBuf,
    /// The cgroup all pods go under.
    #[arg(long, default_value = "skiff")]
    pub cgroup_parent: String,
    /// The pause binary (default: `skiff-pause` beside this binary).
    #[arg(long)]
    pub pause_binary: Option<PathBuf>,
    /// The pod bridge.
    #[arg(long, default_value = "skiff0")]
    pub bridge: String,
    /// Pod interface MTU (1450 leaves room for VXLAN on a 1500 underlay).
    #[arg(long, default_value_t = 1450)]
    pub mtu: u32,
    /// Nameserver written into pods' resolv.conf (the cluster DNS).
    #[arg(long = "cluster-dns")]
    pub cluster_dns: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// CPU kept back from pods.
    #[arg(long, default_value = "100m")]
    pub reserved_cpu: String,
    /// Memory kept back from pods.
    #[arg(long, default_value = "256Mi")]
    pub reserved_memory: String,
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Port of the node's own API (logs, exec, port-forward, stats) for the control plane.
    #[arg(long, default_value_t = 10250)]
    pub node_api_port: u16,
    /// Registries spoken to over plain HTTP (`host:port`).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// `REGISTRY=MIRROR`: pull images of REGISTRY (e.g. docker.io) from MIRROR first.
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// Container log size before rotation, bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub container_log_max_size: u64,
    #[arg(long, default_value_t = 5)]
    pub container_log_max_files: u32,
}

fn read_token(token: &str) -> Result<String> {
    match token.strip_prefix('@') {
        Some(path) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading the join token from {path}"))?
            .trim()
            .to_string()),
        None => Ok(token.trim().to_string()),
    }
}

fn parse_mirrors(specs: &[String]) -> Result<HashMap<String, String>> {
    specs
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(r, m)| (r.to_string(), m.to_string()))
                .with_context(|| format!("--registry-mirror {s:?}: expected REGISTRY=MIRROR"))
        })
        .collect()
}

/// The host's first non-loopback IPv4 address (the default `--node-ip`).
fn default_node_ip() -> Result<Ipv4Addr> {
    // A UDP socket "connected" to an outside address picks the route's source address
    // without sending anything.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.connect("192.0.2.1:9")?;
    match socket.local_addr()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Ok(ip),
        other => bail!("cannot tell this node's address (got {other}); pass --node-ip"),
    }
}

/// Waits until the control plane has given the node a pod CIDR.
async fn pod_cidr(client: &kube::Client, name: &str) -> Result<String> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    for _ in 0..60 {
        let node = nodes.get(name).await.context("reading our Node")?;
        if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
            return Ok(cidr);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("node {name} has no spec.podCIDR after 30 s: is the control plane allocating pod CIDRs (--cluster-cidr)?")
}

pub async fn run(args: DaemonArgs) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = args
        .server
        .clone()
        .context("--server is required (the API server's URL)")?;
    let token = read_token(
        args.token
            .as_deref()
            .context("--token is required (the control plane's node-token)")?,
    )?;
    let facts = HostFacts::read()?;
    let node_name = args
        .node_name
        .clone()
        .unwrap_or_else(|| facts.hostname.clone());
    let node_ip = match args.node_ip {
        Some(ip) => ip,
        None => default_node_ip()?,
    };
    let self_binary = std::env::current_exe().context("locating this binary")?;
    let pause_binary = args.pause_binary.clone().unwrap_or_else(|| {
        self_binary
            .parent()
            .map(|d| d.join("skiff-pause"))
            .unwrap_or_else(|| PathBuf::from("skiff-pause"))
    });
    sandbox::check_pause(&pause_binary)?;

    let node_cfg = NodeConfig {
        name: node_name.clone(),
        node_ip: node_ip.to_string(),
        reserved_cpu: Quantity::parse(&args.reserved_cpu).map_err(|e| {
            anyhow::anyhow!("--reserved-cpu {:?}: {}", args.reserved_cpu, e.reason())
        })?,
        reserved_memory: Quantity::parse(&args.reserved_memory).map_err(|e| {
            anyhow::anyhow!(
                "--reserved-memory {:?}: {}",
                args.reserved_memory,
                e.reason()
            )
        })?,
        max_pods: args.max_pods,
        node_api_port: args.node_api_port,
        labels: BTreeMap::new(),
    };
    let client = node::client(&server, &args.ca_file, &token)?;
    let registered = node::register(&client, &node_cfg, &facts).await?;
    info!(node = %node_name, ip = %node_ip, "node registered");
    let cidr = match registered.spec.and_then(|s| s.pod_cidr) {
        Some(c) if !c.is_empty() => c,
        _ => pod_cidr(&client, &node_name).await?,
    };

    std::fs::create_dir_all(&args.root_dir)
        .with_context(|| format!("creating {}", args.root_dir.display()))?;
    std::fs::create_dir_all(&args.run_dir)
        .with_context(|| format!("creating {}", args.run_dir.display()))?;
    let ipam = Ipam::open(&args.root_dir.join("ipam"), &cidr)?;
    let mut pod_network = PodNetworkConfig::new(ipam.gateway(), ipam.prefix_len());
    pod_network.bridge = args.bridge.clone();
    pod_network.mtu = args.mtu;
    let netlink = network::connect_current()?;
    network::ensure_bridge(&netlink, &pod_network).await?;
    let cgroups = CgroupManager::new(&args.cgroup_parent)?;
    cgroups.ensure_node_hierarchy()?;
    let images = ImageStore::open(&args.root_dir)?;
    let mut pod_files = PodFileSettings::new(args.cluster_dns.clone(), facts.hostname.clone());
    pod_files.cluster_domain = args.cluster_domain.clone();

    let (_, allocatable) = node::resources(&node_cfg, &facts);
    let alloc = |k: &str| {
        allocatable
            .get(k)
            .and_then(|q| Quantity::from_k8s(q).ok())
            .unwrap_or_default()
    };
    let config = DaemonConfig {
        node_name: node_name.clone(),
        node_ip: node_ip.to_string(),
        root_dir: args.root_dir.clone(),
        run_dir: args.run_dir.clone(),
        pause_binary,
        self_binary,
        log_max_size: args.container_log_max_size,
        log_max_files: args.container_log_max_files,
        node_allocatable_cpu_milli: alloc("cpu").milli_value() as i64,
        node_allocatable_memory: alloc("memory").value() as i64,
        node_memory_capacity: facts.memory_bytes as i64,
    };
    let ctx = Arc::new(NodeContext {
        config,
        client: client.clone(),
        ipam,
        netlink,
        pod_network,
        pod_files,
        cgroups,
        images,
        pull_options: PullOptions {
            insecure_registries: args.insecure_registries.clone(),
            mirrors: parse_mirrors(&args.registry_mirrors)?,
            ..Default::default()
        },
        cache: sources::ClusterCache::start(&client),
    });
    let api = skiff_runtime::nodeapi::start(
        skiff_runtime::nodeapi::NodeApiConfig {
            listen: std::net::SocketAddr::new(node_ip.into(), args.node_api_port),
            node_name: node_name.clone(),
            node_ip: node_ip.into(),
            ca_file: args.ca_file.clone(),
            pki_dir: args.root_dir.join("pki"),
            exec_binary: ctx.config.self_binary.clone(),
        },
        Arc::new(view::DiskView { ctx: ctx.clone() }),
    )
    .await
    .context("starting the node API")?;
    info!(address = %api.local_addr(), "node API serving");
    tokio::spawn(node::heartbeat(client.clone(), node_cfg, facts));
    watch_pods(ctx).await
}

/// Pods this node has on disk (adopted on start).
fn pods_on_disk(ctx: &NodeContext) -> Vec<String> {
    std::fs::read_dir(ctx.config.pods_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(record::RECORD_FILE).exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

/// Removes what belongs to no pod the node knows: cgroups, veths, addresses and namespace
/// mounts left by pods whose records are gone (a crash between removing the record and the
/// rest, or a wiped pods dir). Pods with records are adopted, or removed by their worker.
async fn cleanup_orphans(ctx: &NodeContext, known: &HashSet<String>) {
    match ctx.cgroups.list_pods() {
        Ok(pods) => {
            for (uid, _) in pods.into_iter().filter(|(uid, _)| !known.contains(uid)) {
                info!(uid, "removing the cgroup of an unknown pod");
                if let Err(e) = ctx.cgroups.remove_pod(&uid) {
                    warn!(uid, error = %e, "removing an orphaned pod cgroup");
                }
            }
        }
        Err(e) => warn!(error = %e, "listing pod cgroups"),
    }
    let ours: HashSet<String> = known
        .iter()
        .map(|uid| network::host_veth_name(uid))
        .collect();
    match network::list_host_veths(&ctx.netlink, &ctx.pod_network).await {
        Ok(veths) => {
            for veth in veths.into_iter().filter(|v| !ours.contains(v)) {
                info!(veth, "removing the veth of an unknown pod");
                if let Err(e) = network::teardown_pod(&ctx.netlink, &veth).await {
                    warn!(veth, error = %e, "removing an orphaned veth");
                }
            }
        }
        Err(e) => warn!(error = %e, "listing pod veths"),
    }
    match ctx.ipam.allocations() {
        Ok(allocations) => {
            for (ip, owner) in allocations.into_iter().filter(|(_, o)| !known.contains(o)) {
                info!(%ip, owner, "releasing the address of an unknown pod");
                if let Err(e) = ctx.ipam.release(&owner) {
                    warn!(%ip, error = %e, "releasing an orphaned address");
                }
            }
        }
        Err(e) => warn!(error = %e, "listing pod addresses"),
    }
    let ns_files = std::fs::read_dir(ctx.config.run_dir.join("netns"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name(), e.path()));
    let ns_dirs = std::fs::read_dir(ctx.config.run_dir.join("ns"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name(), e.path()));
    for (name, path) in ns_files.chain(ns_dirs) {
        if known.contains(name.to_string_lossy().as_ref()) {
            continue;
        }
        info!(path = %path.display(), "removing the namespaces of an unknown pod");
        let targets: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(&path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect()
        } else {
            vec![path.clone()]
        };
        for target in targets {
            if let Err(e) = network::unbind_namespace(&target) {
                warn!(path = %target.display(), error = %e, "unmounting an orphaned namespace");
            }
        }
        let _ = std::fs::remove_dir(&path);
    }
}

/// Watches the pods bound to this node and gives each its worker.
async fn watch_pods(ctx: Arc<NodeContext>) -> Result<()> {
    let events = Recorder::new(ctx.client.clone(), ctx.config.node_name.clone());
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let on_disk: HashSet<String> = pods_on_disk(&ctx).into_iter().collect();
    if !on_disk.is_empty() {
        info!(pods = on_disk.len(), "adopting pods found on disk");
    }
    cleanup_orphans(&ctx, &on_disk).await;
    let pods: kube::Api<Pod> = kube::Api::all(ctx.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut stream = watcher(pods, config).boxed();
    let mut seen_in_listing: HashSet<String> = HashSet::new();
    let mut listed_once = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "pod watch");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match event {
            watcher::Event::Init => seen_in_listing.clear(),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                seen_in_listing.insert(uid.clone());
                deliver(&ctx, &events, &mut workers, uid, Some(pod));
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    deliver(&ctx, &events, &mut workers, uid, None);
                }
            }
            watcher::Event::InitDone => {
                // Pods the node has but the API no longer does: remove them.
                let known: Vec<String> = workers
                    .keys()
                    .cloned()
                    .chain(if listed_once {
                        Vec::new()
                    } else {
                        on_disk.iter().cloned().collect()
                    })
                    .collect();
                for uid in known {
                    if !seen_in_listing.contains(&uid) {
                        deliver(&ctx, &events, &mut workers, uid, None);
                    }
                }
                listed_once = true;
            }
        }
        workers.retain(|_, tx| !tx.is_closed());
    }
    bail!("the pod watch ended")
}

fn deliver(
    ctx: &Arc<NodeContext>,
    events: &Recorder,
    workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    uid: String,
    pod: Option<Pod>,
) {
    if let Some(tx) = workers.get(&uid) {
        if tx.send(pod.clone()).is_ok() {
            return;
        }
    }
    let (tx, rx) = watch::channel(pod);
    tokio::spawn(worker::run(ctx.clone(), uid.clone(), rx, events.clone()));
    workers.insert(uid, tx);
}
