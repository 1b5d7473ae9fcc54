//! The node bridge and the per-pod veth pairs.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::{netlink_errno, NetworkError, PodNetworkConfig};

/// Longest interface name the kernel takes (IFNAMSIZ minus the NUL).
pub(crate) const MAX_IFNAME_LEN: usize = 15;

/// Name of the pod's end of its veth pair, inside the pod netns.
pub const POD_INTERFACE_NAME: &str = "eth0";

const HOST_VETH_PREFIX: &str = "veth";
const HOST_VETH_HASH_CHARS: usize = MAX_IFNAME_LEN - HOST_VETH_PREFIX.len();
const LOOPBACK_NAME: &str = "lo";
const HOST_NETNS: &str = "the host network namespace";

/// The pod's network link as set up by [`setup_pod`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// Name of the host end (a port of the bridge).
    pub host_veth: String,
    /// Interface index of the host end.
    pub host_ifindex: u32,
    /// Interface index of `eth0` inside the pod netns.
    pub pod_ifindex: u32,
    /// MAC address of `eth0`.
    pub pod_mac: [u8; 6],
    /// MAC address of the host end.
    pub host_mac: [u8; 6],
}

/// The host veth name of a pod: "veth" and 11 hex digits of a hash of its uid.
///
/// Deterministic, so a restarted daemon finds the link of a pod it set up before.
pub fn host_veth_name(pod_uid: &str) -> String {
    let digest = Sha256::digest(pod_uid.as_bytes());
    let mut name = String::with_capacity(MAX_IFNAME_LEN);
    name.push_str(HOST_VETH_PREFIX);
    name.push_str(&hex::encode(digest)[..HOST_VETH_HASH_CHARS]);
    name
}

/// Whether `name` has the shape of a name made by [`host_veth_name`].
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == MAX_IFNAME_LEN
        && name.starts_with(HOST_VETH_PREFIX)
        && name[HOST_VETH_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The MAC of a pod's `eth0`: `0a:58` and the four bytes of its IP, as the Kubernetes
/// CNI plugins do; locally administered unicast, and stable for a given address.
pub fn pod_mac_for_ip(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x0a, 0x58, a, b, c, d]
}

/// The MAC of a host veth end: hashed from its name, locally administered unicast, and
/// never starting with 0x0a, so it cannot collide with a pod MAC.
fn host_mac_for_veth(name: &str) -> [u8; 6] {
    let digest = Sha256::digest(format!("skiff-host-veth:{name}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    // Low nibble 0b0010: unicast, locally administered; so the first byte is never 0x0a.
    mac[0] = (mac[0] & 0xf0) | 0x02;
    mac
}

/// The bridge MAC. A bridge without a MAC of its own takes the lowest MAC of its ports,
/// which changes as pods come and go and leaves stale gateway entries in pods' ARP caches.
fn bridge_mac_for_gateway(gateway: Ipv4Addr) -> [u8; 6] {
    // No pod gets the gateway address, so this is never a pod's MAC.
    pod_mac_for_ip(gateway)
}

fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn netlink_failed<'a>(
    action: &'static str,
    object: impl Into<String> + 'a,
) -> impl FnOnce(rtnetlink::Error) -> NetworkError + 'a {
    move |source| NetworkError::Netlink {
        action,
        object: object.into(),
        source,
    }
}

/// The link named `name`, or `None` when there is none.
async fn find_link(
    handle: &Handle,
    name: &str,
    netns: &str,
) -> Result<Option<LinkMessage>, NetworkError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(error) if netlink_errno(&error) == Some(libc::ENODEV) => Ok(None),
        Err(error) => Err(netlink_failed(
            "look up link",
            format!("{name:?} in {netns}"),
        )(error)),
    }
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
                LinkInfo::Kind(kind) => Some(kind),
                _ => None,
            }),
            _ => None,
        })
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.as_str()),
            _ => None,
        })
}

fn link_controller(link: &LinkMessage) -> Option<u32> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Controller(index) => Some(*index),
            _ => None,
        })
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
}

fn check_ifname(name: &str) -> Result<(), NetworkError> {
    if name.is_empty() || name.len() > MAX_IFNAME_LEN || name.contains(['/', ' ', '\0']) {
        return Err(NetworkError::InvalidConfig {
            reason: format!(
                "interface name {name:?} must have 1 to {MAX_IFNAME_LEN} bytes and no '/', space or NUL"
            ),
        });
    }
    Ok(())
}

/// Creates the node bridge if absent, gives it `gateway/prefix` (once), sets its MTU and
/// brings it up. Returns its interface index.
pub async fn ensure_bridge(handle: &Handle, cfg: &PodNetworkConfig) -> Result<u32, NetworkError> {
    cfg.validate()?;
    let name = cfg.bridge.as_str();
    let bridge = match find_link(handle, name, HOST_NETNS).await? {
        Some(link) => {
            match link_kind(&link) {
                Some(InfoKind::Bridge) => {}
                other => {
                    return Err(NetworkError::NotABridge {
                        name: name.to_string(),
                        kind: other.map_or_else(
                            || "link of unknown kind".to_string(),
                            |kind| format!("{kind:?}"),
                        ),
                    })
                }
            }
            if link_mtu(&link) != Some(cfg.mtu) {
                info!(bridge = name, mtu = cfg.mtu, "fixing bridge MTU");
            }
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(link.header.index)
                        .mtu(cfg.mtu)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(netlink_failed("set MTU and up on bridge", name))?;
            link
        }
        None => {
            let message = LinkBridge::new(name)
                .mtu(cfg.mtu)
                .address(bridge_mac_for_gateway(cfg.gateway).to_vec())
                .build();
            match handle.link().add(message).execute().await {
                Ok(()) => info!(bridge = name, mtu = cfg.mtu, "created bridge"),
                // Another caller created it meanwhile: the lookup below finds it.
                Err(error) if netlink_errno(&error) == Some(libc::EEXIST) => {}
                Err(error) => return Err(netlink_failed("create bridge", name)(error)),
            }
            find_link(handle, name, HOST_NETNS)
                .await?
                .ok_or_else(|| NetworkError::LinkMissing {
                    name: name.to_string(),
                    netns: HOST_NETNS.to_string(),
                })?
        }
    };
    let index = bridge.header.index;
    ensure_gateway_address(handle, cfg, index).await?;
    Ok(index)
}

/// Puts `gateway/prefix` on the bridge unless it is there; a gateway address with another
/// prefix (an earlier pod CIDR) is replaced.
async fn ensure_gateway_address(
    handle: &Handle,
    cfg: &PodNetworkConfig,
    index: u32,
) -> Result<(), NetworkError> {
    let object = || {
        format!(
            "{}/{} on bridge {}",
            cfg.gateway, cfg.prefix_len, cfg.bridge
        )
    };
    let addresses: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_failed(
            "list addresses of",
            format!("bridge {}", cfg.bridge),
        ))?;
    let gateway = IpAddr::V4(cfg.gateway);
    let mut present = false;
    for address in addresses {
        if address.header.family != AddressFamily::Inet {
            continue;
        }
        let is_gateway = address.attributes.iter().any(|attribute| {
            matches!(attribute, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == gateway)
        });
        if !is_gateway {
            continue;
        }
        if address.header.prefix_len == cfg.prefix_len {
            present = true;
        } else {
            warn!(bridge = %cfg.bridge, gateway = %cfg.gateway, old_prefix = address.header.prefix_len, new_prefix = cfg.prefix_len, "replacing gateway address with another prefix");
            handle
                .address()
                .del(address)
                .execute()
                .await
                .map_err(netlink_failed("remove old gateway address", object()))?;
        }
    }
    if !present {
        handle
            .address()
            .add(index, gateway, cfg.prefix_len)
            .execute()
            .await
            .map_err(netlink_failed("add gateway address", object()))?;
        debug!(bridge = %cfg.bridge, gateway = %cfg.gateway, prefix = cfg.prefix_len, "gateway address added");
    }
    Ok(())
}

/// Deletes link `name` if present. Returns whether it was there.
async fn delete_link_by_name(
    handle: &Handle,
    name: &str,
    netns: &str,
) -> Result<bool, NetworkError> {
    let Some(link) = find_link(handle, name, netns).await? else {
        return Ok(false);
    };
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        // Gone between the lookup and the delete: the outcome wanted.
        Err(error) if netlink_errno(&error) == Some(libc::ENODEV) => Ok(false),
        Err(error) => Err(netlink_failed(
            "delete link",
            format!("{name:?} in {netns}"),
        )(error)),
    }
}

/// Connects a pod's network namespace to the node bridge; see the module docs for the
/// order of kernel calls. `host_handle` talks to the namespace holding the bridge.
///
/// Safe to repeat after a crash: an existing host veth of that name (and its peer) is
/// deleted first. On failure after the pair was created, the pair is deleted again.
pub async fn setup_pod(
    host_handle: &Handle,
    cfg: &PodNetworkConfig,
    netns: &Path,
    pod_ip: Ipv4Addr,
    host_veth_name: &str,
) -> Result<PodInterface, NetworkError> {
    cfg.validate()?;
    check_ifname(host_veth_name)?;
    let bridge = find_link(host_handle, &cfg.bridge, HOST_NETNS)
        .await?
        .ok_or_else(|| NetworkError::LinkMissing {
            name: cfg.bridge.clone(),
            netns: HOST_NETNS.to_string(),
        })?;
    let bridge_index = bridge.header.index;

    if delete_link_by_name(host_handle, host_veth_name, HOST_NETNS).await? {
        info!(
            veth = host_veth_name,
            "deleted host veth left by an earlier attempt"
        );
    }

    let netns_file = File::open(netns).map_err(|source| NetworkError::Io {
        action: "open network namespace",
        path: netns.to_path_buf(),
        source,
    })?;
    let pod_handle = super::connect_in_netns(netns).await?;
    let pod_netns = format!("pod netns {}", netns.display());
    // An eth0 without our host end (e.g. created by hand) would make the create fail.
    if delete_link_by_name(&pod_handle, POD_INTERFACE_NAME, &pod_netns).await? {
        warn!(netns = %netns.display(), "deleted a stale {POD_INTERFACE_NAME} in the pod netns");
    }

    let pod_mac = pod_mac_for_ip(pod_ip);
    let host_mac = host_mac_for_veth(host_veth_name);
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(POD_INTERFACE_NAME)
        .address(pod_mac.to_vec())
        .mtu(cfg.mtu)
        .setns_by_fd(netns_file.as_raw_fd())
        .build();
    let pair = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(host_veth_name)
        .address(host_mac.to_vec())
        .mtu(cfg.mtu)
        .controller(bridge_index)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    host_handle
        .link()
        .add(pair)
        .execute()
        .await
        .map_err(netlink_failed(
            "create veth pair",
            format!(
                "{host_veth_name} (mac {}) / {POD_INTERFACE_NAME} (mac {}) in {pod_netns}",
                format_mac(&host_mac),
                format_mac(&pod_mac)
            ),
        ))?;
    drop(netns_file);

    let result = configure_pair(
        host_handle,
        &pod_handle,
        cfg,
        pod_ip,
        host_veth_name,
        &pod_netns,
    )
    .await;
    match result {
        Ok((host_ifindex, pod_ifindex)) => {
            info!(veth = host_veth_name, %pod_ip, netns = %netns.display(), "pod network set up");
            Ok(PodInterface {
                host_veth: host_veth_name.to_string(),
                host_ifindex,
                pod_ifindex,
                pod_mac,
                host_mac,
            })
        }
        Err(error) => {
            if let Err(cleanup) = delete_link_by_name(host_handle, host_veth_name, HOST_NETNS).await
            {
                warn!(veth = host_veth_name, error = %cleanup, "cannot roll back veth pair");
            }
            Err(error)
        }
    }
}

/// Everything after the pair exists: hairpin on the host port, then the pod side.
/// Returns the host and pod interface indexes.
async fn configure_pair(
    host_handle: &Handle,
    pod_handle: &Handle,
    cfg: &PodNetworkConfig,
    pod_ip: Ipv4Addr,
    host_veth_name: &str,
    pod_netns: &str,
) -> Result<(u32, u32), NetworkError> {
    let host_link = find_link(host_handle, host_veth_name, HOST_NETNS)
        .await?
        .ok_or_else(|| NetworkError::LinkMissing {
            name: host_veth_name.to_string(),
            netns: HOST_NETNS.to_string(),
        })?;
    let host_ifindex = host_link.header.index;
    // Port attributes go in the slave data of the port (IFLA_INFO_SLAVE_DATA with
    // IFLA_BRPORT_MODE); the kernel parses them only once the link is a bridge port.
    host_handle
        .link()
        .set_port(
            LinkBridgePort::new(host_ifindex)
                .hairpin(cfg.hairpin)
                .build(),
        )
        .execute()
        .await
        .map_err(netlink_failed(
            "set hairpin mode on bridge port",
            host_veth_name,
        ))?;

    let pod_link = find_link(pod_handle, POD_INTERFACE_NAME, pod_netns)
        .await?
        .ok_or_else(|| NetworkError::LinkMissing {
            name: POD_INTERFACE_NAME.to_string(),
            netns: pod_netns.to_string(),
        })?;
    let pod_ifindex = pod_link.header.index;
    let eth0 = || format!("{POD_INTERFACE_NAME} in {pod_netns}");

    pod_handle
        .link()
        .set(LinkUnspec::new_with_name(LOOPBACK_NAME).up().build())
        .execute()
        .await
        .map_err(netlink_failed(
            "bring up",
            format!("{LOOPBACK_NAME} in {pod_netns}"),
        ))?;
    pod_handle
        .address()
        .add(pod_ifindex, IpAddr::V4(pod_ip), cfg.prefix_len)
        .replace()
        .execute()
        .await
        .map_err(netlink_failed(
            "add address",
            format!("{pod_ip}/{} to {}", cfg.prefix_len, eth0()),
        ))?;
    pod_handle
        .link()
        .set(LinkUnspec::new_with_index(pod_ifindex).up().build())
        .execute()
        .await
        .map_err(netlink_failed("bring up", eth0()))?;
    // The gateway must be reachable through an up link, so the route comes last.
    let default_route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(cfg.gateway)
        .output_interface(pod_ifindex)
        .build();
    pod_handle
        .route()
        .add(default_route)
        .replace()
        .execute()
        .await
        .map_err(netlink_failed(
            "add default route",
            format!("via {} on {}", cfg.gateway, eth0()),
        ))?;
    Ok((host_ifindex, pod_ifindex))
}

/// Deletes a pod's host veth (its peer in the pod netns goes with it). Absent is fine.
pub async fn teardown_pod(host_handle: &Handle, host_veth_name: &str) -> Result<(), NetworkError> {
    check_ifname(host_veth_name)?;
    if delete_link_by_name(host_handle, host_veth_name, HOST_NETNS).await? {
        info!(veth = host_veth_name, "pod network torn down");
    }
    Ok(())
}

/// The host veths on the bridge whose names [`host_veth_name`] makes: what the daemon
/// compares with its pods to clean up after pods deleted while it was down.
pub async fn list_host_veths(
    handle: &Handle,
    cfg: &PodNetworkConfig,
) -> Result<Vec<String>, NetworkError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink_failed("list links in", HOST_NETNS))?;
    let Some(bridge_index) = links
        .iter()
        .find(|link| link_name(link) == Some(cfg.bridge.as_str()))
        .map(|link| link.header.index)
    else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = links
        .iter()
        .filter(|link| link_controller(link) == Some(bridge_index))
        .filter(|link| matches!(link_kind(link), Some(InfoKind::Veth)))
        .filter_map(|link| link_name(link))
        .filter(|name| is_host_veth_name(name))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_name_is_short_stable_and_distinct() {
        let a = host_veth_name("0b6a7c1e-5f6d-4a3b-9c2d-1e0f9a8b7c6d");
        let b = host_veth_name("0b6a7c1e-5f6d-4a3b-9c2d-1e0f9a8b7c6e");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("veth"));
        assert_eq!(a, host_veth_name("0b6a7c1e-5f6d-4a3b-9c2d-1e0f9a8b7c6d"));
        assert_ne!(a, b);
        assert!(is_host_veth_name(&a));
        // sha256("abc") starts with ba7816bf8f0...
        assert_eq!(host_veth_name("abc"), "vethba7816bf8f0");
    }

    #[test]
    fn foreign_names_are_not_ours() {
        assert!(!is_host_veth_name("eth0"));
        assert!(!is_host_veth_name("veth1234"));
        assert!(!is_host_veth_name("vethABCDEF01234"));
        assert!(!is_host_veth_name("skiff0"));
    }

    #[test]
    fn pod_mac_is_derived_from_ip() {
        let mac = pod_mac_for_ip(Ipv4Addr::new(10, 244, 3, 7));
        assert_eq!(mac, [0x0a, 0x58, 10, 244, 3, 7]);
        assert_eq!(mac[0] & 0x01, 0, "unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        assert_eq!(format_mac(&mac), "0a:58:0a:f4:03:07");
    }

    #[test]
    fn host_mac_is_local_unicast_and_never_a_pod_mac() {
        for uid in ["a", "b", "c", "pod-1", "pod-2", "0b6a7c1e"] {
            let mac = host_mac_for_veth(&host_veth_name(uid));
            assert_eq!(mac[0] & 0x01, 0, "unicast");
            assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
            assert_ne!(mac[0], 0x0a);
            assert_eq!(mac, host_mac_for_veth(&host_veth_name(uid)));
        }
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_ifname("veth0123456789a").is_ok());
        assert!(check_ifname("veth0123456789ab").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
    }

    #[test]
    fn config_validation_names_the_problem() {
        let mut cfg = PodNetworkConfig::new(Ipv4Addr::new(10, 244, 1, 1), 24);
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.bridge, "skiff0");
        assert_eq!(cfg.mtu, 1450);
        assert!(cfg.hairpin);
        cfg.prefix_len = 31;
        assert!(cfg.validate().unwrap_err().to_string().contains("/31"));
        cfg.prefix_len = 24;
        cfg.mtu = 10;
        assert!(cfg.validate().unwrap_err().to_string().contains("MTU 10"));
    }
}
