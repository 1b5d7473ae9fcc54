//! What every pod worker shares: the daemon's settings and its handles on the kernel and API.

use std::path::PathBuf;

use skiff_runtime::cgroups::CgroupManager;
use skiff_runtime::image::{ImageStore, PullOptions};
use skiff_runtime::ipam::Ipam;
use skiff_runtime::network::{PodFileSettings, PodNetworkConfig};

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub node_name: String,
    pub node_ip: String,
    pub root_dir: PathBuf,
    pub run_dir: PathBuf,
    pub pause_binary: PathBuf,
    /// This binary, for the `shim` and `exec` helper modes.
    pub self_binary: PathBuf,
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub node_allocatable_cpu_milli: i64,
    pub node_allocatable_memory: i64,
    pub node_memory_capacity: i64,
}

impl DaemonConfig {
    pub fn pods_dir(&self) -> PathBuf {
        self.root_dir.join("pods")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }
}

/// Shared by every pod worker.
pub struct NodeContext {
    pub config: DaemonConfig,
    pub client: kube::Client,
    pub ipam: Ipam,
    pub netlink: rtnetlink::Handle,
    pub pod_network: PodNetworkConfig,
    pub pod_files: PodFileSettings,
    pub cgroups: CgroupManager,
    pub images: ImageStore,
    pub pull_options: PullOptions,
    pub cache: super::sources::ClusterCache,
}
