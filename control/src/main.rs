//! `skiff-control`: the control plane binary.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use skiff_control::bench::{self, BenchConfig};
use skiff_control::server::{ApiServer, ServerConfig};
use skiff_control::store::{etcd::EtcdStore, sqlite, Store};

#[derive(Parser)]
#[command(
    name = "skiff-control",
    version,
    about = "skiff's control plane: a Kubernetes-compatible API server with its scheduler and controllers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API over HTTPS.
    Serve(Box<ServeArgs>),
    /// Measure create throughput/latency and watch fan-out on a scratch store.
    Bench(BenchArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Where the store, credentials and admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff/control")]
    data_dir: PathBuf,
    /// Address and port to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:6443")]
    listen: SocketAddr,
    /// `sqlite` (embedded, in the data dir) or `etcd=URL,URL…`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Address other machines reach the API at (default: the listen address or a host address).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Range Service ClusterIPs come from.
    #[arg(long, default_value = skiff_api::constants::DEFAULT_SERVICE_CIDR)]
    service_cidr: String,
    /// Range pod CIDRs come from; each node gets one block of it.
    #[arg(long, default_value = skiff_api::constants::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
    /// Size of each node's pod CIDR block.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// NodePort range, `LOW-HIGH`.
    #[arg(long, default_value = "30000-32767")]
    node_port_range: String,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 60)]
    bookmark_interval: u64,
    /// Extra DNS names or IPs for the serving certificate.
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    #[cfg(feature = "loops")]
    #[command(flatten)]
    loops: LoopArgs,
}

/// The scheduler and controllers that run beside the API server.
#[cfg(feature = "loops")]
#[derive(Args)]
struct LoopArgs {
    /// Loops to run: `*` (all), `none`, or names separated by commas (scheduler,
    /// replicaset, deployment, …; an unknown name is refused with the list).
    #[arg(long, default_value = "*", value_delimiter = ',')]
    controllers: Vec<String>,
    /// Take a Lease before running the loops, so that of several skiff-control processes
    /// on one store only one runs them.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a leader's Lease is honoured without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long a leader tries to renew before it steps down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to take the Lease and the leader renews it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// This process's name in the Lease (default: hostname and a random suffix).
    #[arg(long)]
    leader_elect_identity: Option<String>,
    /// How the scheduler ranks nodes that fit.
    #[arg(long, value_enum, default_value = "least-allocated")]
    scheduler_scoring: Scoring,
    /// A node whose Lease is not renewed for this long becomes Ready=Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How long pods stay on an unreachable or not-ready node unless they say otherwise.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    default_unreachable_toleration: Duration,
    /// HPA: recommendations considered before scaling down.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    hpa_downscale_stabilization: Duration,
    /// HPA: recommendations considered before scaling up.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    hpa_upscale_stabilization: Duration,
    /// HPA: how often each autoscaler is evaluated.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    hpa_sync_period: Duration,
    /// Objects of one kind reconciled at the same time.
    #[arg(long, default_value_t = 8)]
    concurrent_syncs: u16,
}

#[cfg(feature = "loops")]
#[derive(Clone, Copy, clap::ValueEnum)]
enum Scoring {
    LeastAllocated,
    MostAllocated,
}

/// `15s`, `5m`, `1h30m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 15s, 5m or 1h30m: {e}"))?;
    Duration::try_from(signed).map_err(|_| format!("{text:?}: a duration cannot be negative"))
}

#[derive(Args)]
struct BenchArgs {
    /// `sqlite` (a temp dir) or `etcd=URL,URL…`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Pods created per concurrency level.
    #[arg(long, default_value_t = 4000)]
    pods: usize,
    /// Concurrency levels, comma-separated.
    #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Watchers for the fan-out measurement.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Writes observed by the watchers.
    #[arg(long, default_value_t = 200)]
    writes: usize,
}

fn parse_port_range(s: &str) -> Result<(u16, u16)> {
    let (lo, hi) = s
        .split_once('-')
        .with_context(|| format!("node port range {s:?}: expected LOW-HIGH"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .with_context(|| format!("node port range {s:?}: bad low port"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .with_context(|| format!("node port range {s:?}: bad high port"))?;
    if lo == 0 || lo > hi {
        bail!("node port range {s:?}: low must be between 1 and high");
    }
    Ok((lo, hi))
}

/// Opens the store named by `--store`.
pub async fn open_store(spec: &str, data_dir: &std::path::Path) -> Result<Arc<dyn Store>> {
    if spec == "sqlite" {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join("state.db");
        let store = sqlite::SqliteStore::open(&path, sqlite::SqliteOptions::default())
            .await
            .with_context(|| format!("opening sqlite store {}", path.display()))?;
        Ok(store)
    } else if let Some(urls) = spec.strip_prefix("etcd=") {
        let endpoints: Vec<String> = urls
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if endpoints.is_empty() {
            bail!("--store etcd=…: no endpoints given");
        }
        let store = EtcdStore::connect(&endpoints, "/skiff")
            .await
            .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
        Ok(store)
    } else {
        bail!("--store {spec:?}: expected `sqlite` or `etcd=URL,URL…`")
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let store = open_store(&args.store, &args.data_dir).await?;
    let mut config = ServerConfig::new(args.data_dir.clone(), args.listen);
    config.advertise_address = args.advertise_address;
    config.service_cidr = args.service_cidr;
    config.cluster_cidr = args.cluster_cidr;
    config.node_cidr_mask_size = args.node_cidr_mask_size;
    config.node_port_range = parse_port_range(&args.node_port_range)?;
    config.bookmark_interval = Duration::from_secs(args.bookmark_interval.max(1));
    config.extra_sans = args.tls_sans;
    let api = ApiServer::new(store, config).context("setting up the API server")?;
    let handle = api.start().await.context("starting the API server")?;
    let kubeconfig = args.data_dir.join("admin.kubeconfig");
    println!("skiff-control serving https://{}", handle.local_addr);
    println!("admin kubeconfig: {}", kubeconfig.display());
    println!(
        "node join token:  {}",
        args.data_dir.join("node-token").display()
    );
    println!(
        "try: skiffctl --kubeconfig {} get namespaces",
        kubeconfig.display()
    );

    #[cfg(feature = "loops")]
    let (stop_loops, loops) = start_loops(&args.loops, &kubeconfig, &api.pki.ca_pem).await?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    #[cfg(feature = "loops")]
    {
        // Loops first: a leader gives its Lease up while the API still answers.
        let _ = stop_loops.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), loops).await;
    }
    handle.shutdown().await;
    Ok(())
}

/// Starts the control loops as a kube-rs client of this server; they stop when the sender
/// fires (or is dropped).
#[cfg(feature = "loops")]
async fn start_loops(
    args: &LoopArgs,
    kubeconfig: &std::path::Path,
    cluster_ca_pem: &str,
) -> Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    use skiff_controllers::clock::SystemClock;
    use skiff_controllers::context::{ControllerConfig, ScoringStrategy};
    use skiff_controllers::leader::LeaderElectionConfig;
    use skiff_controllers::manager::{self, ManagerConfig};

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let enabled: Vec<String> = args
        .controllers
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if enabled.iter().any(|e| e == "none") {
        tracing::info!("control loops disabled (--controllers=none)");
        return Ok((stop, tokio::spawn(async {})));
    }
    manager::select_loops(&enabled).map_err(|e| anyhow::anyhow!("--controllers: {e}"))?;
    let controllers = ControllerConfig {
        scoring: match args.scheduler_scoring {
            Scoring::LeastAllocated => ScoringStrategy::LeastAllocated,
            Scoring::MostAllocated => ScoringStrategy::MostAllocated,
        },
        node_monitor_grace_period: args.node_monitor_grace_period,
        default_unreachable_toleration: args.default_unreachable_toleration,
        hpa_downscale_stabilization: args.hpa_downscale_stabilization,
        hpa_upscale_stabilization: args.hpa_upscale_stabilization,
        hpa_sync_period: args.hpa_sync_period,
        concurrency: args.concurrent_syncs.max(1),
        cluster_ca_pem: Some(cluster_ca_pem.to_string()),
        ..ControllerConfig::default()
    };
    let leader_election = args.leader_elect.then(|| {
        let identity = args.leader_elect_identity.clone().unwrap_or_else(|| {
            let host = nix_hostname();
            format!("{host}_{:08x}", rand::random::<u32>())
        });
        let mut le = LeaderElectionConfig::new("skiff-control", &identity);
        le.lease_duration = args.leader_elect_lease_duration;
        le.renew_deadline = args.leader_elect_renew_deadline;
        le.retry_period = args.leader_elect_retry_period;
        le
    });
    if let Some(le) = &leader_election {
        le.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .with_context(|| format!("using {}", kubeconfig.display()))?;
    let client = kube::Client::try_from(config).context("creating the loops' API client")?;
    let config = ManagerConfig {
        controllers,
        leader_election,
        enabled,
    };
    let task = tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(e) = manager::run(client, Arc::new(SystemClock), config, stopped).await {
            tracing::error!(error = %e, "control loops");
        }
    });
    Ok((stop, task))
}

#[cfg(feature = "loops")]
fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "skiff-control".to_string())
}

async fn run_bench(args: BenchArgs) -> Result<()> {
    let scratch = tempfile_dir()?;
    let store = open_store(&args.store, &scratch).await?;
    let config = BenchConfig {
        pods: args.pods,
        clients: args.clients,
        watchers: args.watchers,
        writes: args.writes,
    };
    let report = bench::run(store, &scratch, &config).await?;
    println!("{report}");
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("skiff-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Bench(args) => run_bench(args).await,
        }
    })
}
