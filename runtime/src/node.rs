//! This node in the API: its Node object (capacity, allocatable, addresses, conditions, system
//! info), registration, the heartbeat Lease in `kube-node-lease`, and the API client the
//! daemon uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use skiff_api::quantity::Quantity;
use tracing::{debug, info, warn};

/// How long a Lease holds without renewal; renewals come every quarter of it (10 s).
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);

/// The version the node reports as its kubelet's: the Kubernetes API it implements.
pub const KUBELET_VERSION: &str = concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("cannot build the API client for {server}: {source}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error("API request ({action}) failed: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
}

/// What the daemon is told about this node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub node_ip: String,
    /// Kept back from capacity for the system and the daemon itself.
    pub reserved_cpu: Quantity,
    pub reserved_memory: Quantity,
    pub max_pods: u32,
    /// The port of the node's own API (logs, exec, stats).
    pub node_api_port: u16,
    pub labels: BTreeMap<String, String>,
}

/// What the host is, read from /proc and /etc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
    pub machine_id: String,
    pub boot_id: String,
    pub hostname: String,
}

fn read(path: &Path) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// `PRETTY_NAME` of an os-release file.
pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

/// Go's name for this machine's architecture, as Kubernetes reports it.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl HostFacts {
    /// Reads this host's facts.
    pub fn read() -> Result<HostFacts, NodeError> {
        let uname = nix::sys::utsname::uname().map_err(|e| NodeError::Read {
            path: PathBuf::from("uname(2)"),
            source: e.into(),
        })?;
        let meminfo = read(Path::new("/proc/meminfo"))?;
        let memory_bytes = parse_mem_total(&meminfo).ok_or_else(|| NodeError::Invalid {
            what: "/proc/meminfo",
            value: meminfo.lines().next().unwrap_or("").to_string(),
            why: "no MemTotal line".into(),
        })?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let os_image = read(Path::new("/etc/os-release"))
            .ok()
            .and_then(|t| parse_os_release(&t))
            .unwrap_or_else(|| "Linux".to_string());
        let machine_id = read(Path::new("/etc/machine-id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let boot_id = read(Path::new("/proc/sys/kernel/random/boot_id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Ok(HostFacts {
            cpus,
            memory_bytes,
            kernel_version: uname.release().to_string_lossy().into_owned(),
            os_image,
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            machine_id,
            boot_id,
            hostname: uname.nodename().to_string_lossy().into_owned(),
        })
    }
}

fn quantity(q: Quantity) -> K8sQuantity {
    q.to_k8s()
}

/// Capacity and allocatable (capacity less the reserve, never negative).
pub fn resources(
    cfg: &NodeConfig,
    facts: &HostFacts,
) -> (BTreeMap<String, K8sQuantity>, BTreeMap<String, K8sQuantity>) {
    let cpu = Quantity::parse(&facts.cpus.to_string()).unwrap_or_default();
    let memory = Quantity::parse(&facts.memory_bytes.to_string()).unwrap_or_default();
    let pods = Quantity::parse(&cfg.max_pods.to_string()).unwrap_or_default();
    let zero = Quantity::default();
    let less = |total: Quantity, reserve: Quantity| {
        total
            .checked_sub(reserve)
            .filter(|q| *q > zero)
            .unwrap_or(zero)
    };
    let capacity = BTreeMap::from([
        ("cpu".to_string(), quantity(cpu)),
        ("memory".to_string(), quantity(memory)),
        ("pods".to_string(), quantity(pods)),
    ]);
    let allocatable = BTreeMap::from([
        ("cpu".to_string(), quantity(less(cpu, cfg.reserved_cpu))),
        (
            "memory".to_string(),
            quantity(less(memory, cfg.reserved_memory)),
        ),
        ("pods".to_string(), quantity(pods)),
    ]);
    (capacity, allocatable)
}

fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> NodeCondition {
    NodeCondition {
        type_: kind.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The node's status as the daemon reports it.
pub fn node_status(cfg: &NodeConfig, facts: &HostFacts, now: Timestamp) -> NodeStatus {
    let (capacity, allocatable) = resources(cfg, facts);
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.node_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.name.clone(),
            },
        ]),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "skiff-runtime has sufficient memory available",
                now,
            ),
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "skiff-runtime has no disk pressure",
                now,
            ),
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "skiff-runtime has sufficient PID available",
                now,
            ),
            condition(
                "Ready",
                true,
                "KubeletReady",
                "skiff-runtime is posting ready status",
                now,
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: i32::from(cfg.node_api_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: facts.architecture.clone(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: format!("skiff://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.to_string(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.machine_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The labels every node carries, plus the configured ones.
pub fn node_labels(cfg: &NodeConfig, facts: &HostFacts) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), cfg.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), facts.architecture.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            facts.architecture.clone(),
        ),
    ]);
    labels.extend(cfg.labels.clone());
    labels
}

/// Builds the daemon's API client: the server's URL, the cluster CA, the join token.
pub fn client(server: &str, ca_file: &Path, token: &str) -> Result<kube::Client, NodeError> {
    let uri: http::Uri = server
        .parse()
        .map_err(|e: http::uri::InvalidUri| NodeError::Invalid {
            what: "--server",
            value: server.to_string(),
            why: e.to_string(),
        })?;
    // Fail early and clearly on a missing CA rather than on the first TLS handshake.
    read(ca_file)?;
    let mut config = kube::Config::new(uri);
    config.root_cert_file = Some(ca_file.to_path_buf());
    let bearer =
        http::HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
            NodeError::Invalid {
                what: "--token",
                value: "(hidden)".into(),
                why: "contains characters not allowed in an HTTP header".into(),
            }
        })?;
    config.headers.push((http::header::AUTHORIZATION, bearer));
    config.read_timeout = None;
    kube::Client::try_from(config).map_err(|source| NodeError::Client {
        server: server.to_string(),
        source,
    })
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> NodeError {
    let action = action.into();
    move |source| NodeError::Api { action, source }
}

/// Creates this node's Node, or brings an existing one up to date; returns it as stored
/// (with the pod CIDR the control plane gave it).
pub async fn register(
    client: &kube::Client,
    cfg: &NodeConfig,
    facts: &HostFacts,
) -> Result<Node, NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = node_labels(cfg, facts);
    let status = node_status(cfg, facts, Timestamp::now());
    let existing = nodes
        .get_opt(&cfg.name)
        .await
        .map_err(api_error(format!("get node {}", cfg.name)))?;
    if existing.is_none() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: None,
        };
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => info!(node = %cfg.name, "registered node"),
            // Another instance raced us; the update below converges.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_error(format!("create node {}", cfg.name))(e)),
        }
    }
    let patch = serde_json::json!({"metadata": {"labels": labels}});
    nodes
        .patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_error(format!("label node {}", cfg.name)))?;
    let patch = serde_json::json!({"status": status});
    let node = nodes
        .patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_error(format!("update status of node {}", cfg.name)))?;
    Ok(node)
}

/// Reports the node's status again (conditions' heartbeat).
pub async fn report_status(
    client: &kube::Client,
    cfg: &NodeConfig,
    facts: &HostFacts,
) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"status": node_status(cfg, facts, Timestamp::now())});
    nodes
        .patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_error(format!("update status of node {}", cfg.name)))?;
    Ok(())
}

/// Creates or renews this node's Lease.
pub async fn renew_lease(client: &kube::Client, node: &str) -> Result<(), NodeError> {
    let leases: Api<Lease> =
        Api::namespaced(client.clone(), skiff_api::constants::NODE_LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    match leases
        .get_opt(node)
        .await
        .map_err(api_error(format!("get lease {node}")))?
    {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(node.to_string());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            spec.renew_time = Some(now);
            leases
                .replace(node, &PostParams::default(), &lease)
                .await
                .map_err(api_error(format!("renew lease {node}")))?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    namespace: Some(skiff_api::constants::NODE_LEASE_NAMESPACE.to_string()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.to_string()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map_err(api_error(format!("create lease {node}")))?;
        }
    }
    debug!(node, "renewed lease");
    Ok(())
}

/// Whether the API shows this node Ready. The node lifecycle controller marks a node that
/// went silent `Unknown`; the node then reports at once instead of at the next minute.
async fn shown_ready(client: &kube::Client, name: &str) -> bool {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get_opt(name).await {
        Ok(Some(node)) => node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        _ => false,
    }
}

/// Renews the Lease every 10 s and the status every minute — or at once when the API no
/// longer shows the node Ready — until the task is dropped.
pub async fn heartbeat(client: kube::Client, cfg: NodeConfig, facts: HostFacts) {
    let mut tick = tokio::time::interval(LEASE_RENEW_INTERVAL);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = renew_lease(&client, &cfg.name).await {
            warn!(error = %e, "renewing the node lease");
        }
        n += 1;
        if n.is_multiple_of(6) || !shown_ready(&client, &cfg.name).await {
            if let Err(e) = report_status(&client, &cfg, &facts).await {
                warn!(error = %e, "reporting node status");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            node_ip: "192.168.50.11".into(),
            reserved_cpu: Quantity::parse("100m").unwrap(),
            reserved_memory: Quantity::parse("256Mi").unwrap(),
            max_pods: 110,
            node_api_port: 10250,
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        }
    }

    fn facts() -> HostFacts {
        HostFacts {
            cpus: 2,
            memory_bytes: 4 << 30,
            kernel_version: "6.18.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
            machine_id: "abc".into(),
            boot_id: "def".into(),
            hostname: "h".into(),
        }
    }

    #[test]
    fn parses_host_files() {
        assert_eq!(
            parse_mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(
            parse_os_release("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            Some("Debian GNU/Linux 12 (bookworm)".into())
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }

    #[test]
    fn allocatable_is_capacity_less_the_reserve() {
        let (cap, alloc) = resources(&cfg(), &facts());
        let q = |m: &BTreeMap<String, K8sQuantity>, k: &str| Quantity::from_k8s(&m[k]).unwrap();
        assert_eq!(q(&cap, "cpu").milli_value(), 2000);
        assert_eq!(q(&alloc, "cpu").milli_value(), 1900);
        assert_eq!(q(&cap, "memory").value(), 4 << 30);
        assert_eq!(q(&alloc, "memory").value(), (4 << 30) - (256 << 20));
        assert_eq!(q(&alloc, "pods").value(), 110);

        let mut greedy = cfg();
        greedy.reserved_cpu = Quantity::parse("8").unwrap();
        let (_, alloc) = resources(&greedy, &facts());
        assert_eq!(q(&alloc, "cpu").milli_value(), 0);
    }

    #[test]
    fn status_and_labels() {
        let st = node_status(&cfg(), &facts(), Timestamp::UNIX_EPOCH);
        let ready = st
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(st.addresses.unwrap()[0].address, "192.168.50.11");
        assert_eq!(st.node_info.unwrap().kubelet_version, KUBELET_VERSION);
        let labels = node_labels(&cfg(), &facts());
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["zone"], "a");
    }
}
