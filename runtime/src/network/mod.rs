//! The pod network, built in-process over rtnetlink: no CNI plugin, no `ip` commands.
//!
//! Layout on a node: one bridge (`skiff0`) holding the node's gateway address from its pod
//! CIDR; per pod a veth pair whose host end is a port of the bridge (hairpin on, so a pod
//! can reach itself through a Service address) and whose other end is `eth0` in the pod's
//! network namespace, with the pod's address and a default route via the gateway.
//!
//! Order of kernel calls in [`setup_pod`]:
//! 1. delete a host veth left by an earlier, interrupted attempt (its peer goes with it);
//! 2. one `RTM_NEWLINK` creates the pair: host end with its MAC, MTU, bridge and up flag;
//!    peer named `eth0` with the pod MAC and MTU, created directly in the pod netns
//!    (`IFLA_NET_NS_FD`), so no interface named `eth0` ever appears on the host;
//! 3. hairpin mode on the bridge port (`IFLA_BRPORT_MODE` in the port's slave data);
//! 4. inside the pod netns, over a netlink socket opened there: `lo` up, address on
//!    `eth0`, `eth0` up, default route via the gateway (replace, so a retry converges).
//!
//! Namespaces are kept alive by bind-mounting `/proc/<pid>/ns/<kind>` onto a file
//! ([`bind_namespace`]); a netlink socket belongs to the netns its creator was in, so
//! [`connect_in_netns`] creates it from a short-lived thread that entered the netns.
//!
//! Pod files (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`) are pure functions of the
//! pod and the node's settings ([`podfiles`]), written atomically under the pod's dir.

mod link;
mod netns;
pub mod podfiles;

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use link::{
    ensure_bridge, host_veth_name, is_host_veth_name, list_host_veths, pod_mac_for_ip, setup_pod,
    teardown_pod, PodInterface, POD_INTERFACE_NAME,
};
pub use netns::{
    bind_namespace, connect_current, connect_in_netns, unbind_namespace, NamespaceKind, NetnsHandle,
};
pub use podfiles::{write_pod_files, PodFileSettings, PodFiles};

/// The node's pod network: the bridge, its gateway address and the MTU of pod links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkConfig {
    /// Name of the node bridge.
    pub bridge: String,
    /// Gateway address, given to the bridge and used as pods' default route.
    pub gateway: Ipv4Addr,
    /// Prefix length of the node's pod CIDR.
    pub prefix_len: u8,
    /// MTU of the bridge and both veth ends (leaves room for VXLAN on a 1500 underlay).
    pub mtu: u32,
    /// Whether bridge ports reflect traffic back to the port it came from.
    pub hairpin: bool,
}

impl PodNetworkConfig {
    /// Default bridge name.
    pub const DEFAULT_BRIDGE: &'static str = "skiff0";
    /// Default MTU: a 1500-byte underlay minus the 50 bytes of VXLAN encapsulation.
    pub const DEFAULT_MTU: u32 = 1450;

    /// A config with the default bridge name, MTU and hairpin mode.
    pub fn new(gateway: Ipv4Addr, prefix_len: u8) -> PodNetworkConfig {
        PodNetworkConfig {
            bridge: Self::DEFAULT_BRIDGE.to_string(),
            gateway,
            prefix_len,
            mtu: Self::DEFAULT_MTU,
            hairpin: true,
        }
    }

    /// Checks what the kernel would reject with a less helpful message.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let invalid = |reason: String| NetworkError::InvalidConfig { reason };
        if self.bridge.is_empty() || self.bridge.len() > link::MAX_IFNAME_LEN {
            return Err(invalid(format!(
                "bridge name {:?} must have 1 to {} bytes",
                self.bridge,
                link::MAX_IFNAME_LEN
            )));
        }
        if self.prefix_len == 0 || self.prefix_len > 30 {
            return Err(invalid(format!(
                "prefix length /{} leaves no room for a gateway and pods (1..=30)",
                self.prefix_len
            )));
        }
        // 68 is the IPv4 minimum; 65535 the largest a veth or bridge takes.
        if !(68..=65535).contains(&self.mtu) {
            return Err(invalid(format!("MTU {} is outside 68..=65535", self.mtu)));
        }
        Ok(())
    }
}

/// Why a pod network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid pod network config: {reason}")]
    InvalidConfig { reason: String },
    #[error("cannot {action} {object}: {source}")]
    Netlink {
        action: &'static str,
        object: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("link {name:?} not found in {netns}")]
    LinkMissing { name: String, netns: String },
    #[error("link {name:?} exists but is a {kind}, not a bridge")]
    NotABridge { name: String, kind: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Namespace {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("{} already holds another namespace than /proc/{pid}/ns/{kind}", path.display())]
    NamespaceTargetBusy {
        path: PathBuf,
        pid: u32,
        kind: &'static str,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open a netlink socket in {}: {source}", netns.display())]
    Socket {
        netns: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pod {pod}: {reason}")]
    PodSpec { pod: String, reason: String },
}

impl NetworkError {
    /// The errno the kernel answered with, when the failure was a netlink error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetworkError::Netlink { source, .. } => netlink_errno(source),
            NetworkError::Namespace { source, .. } => Some(*source as i32),
            _ => None,
        }
    }
}

/// The positive errno inside a netlink error answer.
pub(crate) fn netlink_errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io().raw_os_error(),
        _ => None,
    }
}
