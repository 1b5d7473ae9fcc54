//! Service ClusterIP and NodePort allocation.
//!
//! Each allocation is a key in the store (`/registry/ranges/serviceips/{ip}`,
//! `/registry/ranges/servicenodeports/{port}`) created with create-if-absent, so two API
//! servers on one etcd can never hand out the same address, and a restart forgets nothing.
//! A repair pass releases allocations whose Service is gone (a crash between allocating and
//! creating the Service leaves such a key); it only releases keys seen orphaned on two passes
//! in a row, so an allocation whose Service create is still in flight is never taken back.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use rand::Rng;
use serde_json::Value;

use crate::store::{Store, StoreError};

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("invalid service CIDR {cidr:?}: {why}")]
    BadCidr { cidr: String, why: &'static str },
    #[error("provided IP {0} is not in the valid range of the service CIDR {1}")]
    IpOutOfRange(Ipv4Addr, String),
    #[error("provided IP {0} is already allocated")]
    IpTaken(Ipv4Addr),
    #[error("range of service IPs {0} is full")]
    IpsExhausted(String),
    #[error("provided port {0} is not in the valid range {1}-{2}")]
    PortOutOfRange(u16, u16, u16),
    #[error("provided port {0} is already allocated")]
    PortTaken(u16),
    #[error("range of node ports {0}-{1} is full")]
    PortsExhausted(u16, u16),
    #[error("pod CIDR {0} is already assigned to another node")]
    PodCidrTaken(String),
    #[error("the cluster CIDR {0} has no free pod CIDR left")]
    PodCidrsExhausted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A parsed IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub base: u32,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn parse(s: &str) -> Result<Self, AllocError> {
        let bad = |why| AllocError::BadCidr {
            cidr: s.to_string(),
            why,
        };
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/LENGTH"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| bad("prefix length is not a number"))?;
        if !(8..=30).contains(&prefix_len) {
            return Err(bad("prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix_len);
        Ok(Ipv4Cidr {
            base: u32::from(ip) & mask,
            prefix_len,
        })
    }

    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix_len)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v >= self.base && v - self.base < self.size()
    }

    /// The `n`th address of the range.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + n)
    }

    pub fn display(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix_len)
    }
}

pub struct ServiceAllocator {
    store: Arc<dyn Store>,
    cidr: Ipv4Cidr,
    ports: (u16, u16),
    /// Orphans seen by the previous repair pass.
    suspects: Mutex<HashSet<String>>,
}

impl ServiceAllocator {
    pub fn new(store: Arc<dyn Store>, cidr: Ipv4Cidr, ports: (u16, u16)) -> Self {
        ServiceAllocator {
            store,
            cidr,
            ports,
            suspects: Mutex::new(HashSet::new()),
        }
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn api_service_ip(&self) -> Ipv4Addr {
        self.cidr.nth(1)
    }

    /// The tenth address: the cluster DNS Service's.
    pub fn dns_service_ip(&self) -> Ipv4Addr {
        self.cidr.nth(10)
    }

    /// Addresses below this offset are only given when asked for by name (Kubernetes'
    /// static band), so fixed addresses such as the DNS service's stay free.
    fn static_band(&self) -> u32 {
        (self.cidr.size() / 16).clamp(16, 256)
    }

    /// Allocates `requested`, or a free address when `None`.
    pub async fn allocate_ip(
        &self,
        requested: Option<Ipv4Addr>,
        owner: &str,
    ) -> Result<Ipv4Addr, AllocError> {
        let size = self.cidr.size();
        if let Some(ip) = requested {
            let offset = u32::from(ip).wrapping_sub(self.cidr.base);
            if !self.cidr.contains(ip) || offset == 0 || offset == size - 1 {
                return Err(AllocError::IpOutOfRange(ip, self.cidr.display()));
            }
            return match self.claim(&format!("{IP_PREFIX}{ip}"), owner).await? {
                true => Ok(ip),
                false => Err(AllocError::IpTaken(ip)),
            };
        }
        let band = self.static_band().min(size - 2);
        let dynamic = size - 1 - band;
        // Random probing first: with a sparse range one try almost always succeeds.
        for _ in 0..32 {
            let offset = band + rand::rng().random_range(0..dynamic.max(1));
            if offset == 0 || offset >= size - 1 {
                continue;
            }
            let ip = self.cidr.nth(offset);
            if self.claim(&format!("{IP_PREFIX}{ip}"), owner).await? {
                return Ok(ip);
            }
        }
        // Crowded: pick from the complement of what is allocated, upper band first.
        let taken: HashSet<String> = self.allocated(IP_PREFIX).await?;
        let candidates = (band..size - 1).chain(1..band);
        for offset in candidates {
            let ip = self.cidr.nth(offset);
            if !taken.contains(&ip.to_string())
                && self.claim(&format!("{IP_PREFIX}{ip}"), owner).await?
            {
                return Ok(ip);
            }
        }
        Err(AllocError::IpsExhausted(self.cidr.display()))
    }

    pub async fn release_ip(&self, ip: Ipv4Addr) -> Result<(), AllocError> {
        release(&*self.store, &format!("{IP_PREFIX}{ip}")).await
    }

    pub async fn allocate_port(
        &self,
        requested: Option<u16>,
        owner: &str,
    ) -> Result<u16, AllocError> {
        let (lo, hi) = self.ports;
        if let Some(port) = requested {
            if !(lo..=hi).contains(&port) {
                return Err(AllocError::PortOutOfRange(port, lo, hi));
            }
            return match self.claim(&format!("{PORT_PREFIX}{port}"), owner).await? {
                true => Ok(port),
                false => Err(AllocError::PortTaken(port)),
            };
        }
        let taken = self.allocated(PORT_PREFIX).await?;
        let free: Vec<u16> = (lo..=hi)
            .filter(|p| !taken.contains(&p.to_string()))
            .collect();
        if free.is_empty() {
            return Err(AllocError::PortsExhausted(lo, hi));
        }
        let start = rand::rng().random_range(0..free.len());
        for port in free[start..].iter().chain(&free[..start]) {
            if self.claim(&format!("{PORT_PREFIX}{port}"), owner).await? {
                return Ok(*port);
            }
        }
        Err(AllocError::PortsExhausted(lo, hi))
    }

    pub async fn release_port(&self, port: u16) -> Result<(), AllocError> {
        release(&*self.store, &format!("{PORT_PREFIX}{port}")).await
    }

    /// Creates the allocation key; `false` when someone holds it already.
    async fn claim(&self, key: &str, owner: &str) -> Result<bool, AllocError> {
        match self.store.create(key, owner.as_bytes().to_vec()).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn allocated(&self, prefix: &str) -> Result<HashSet<String>, AllocError> {
        Ok(self
            .store
            .list(prefix, None, 0)
            .await?
            .items
            .into_iter()
            .map(|kv| kv.key[prefix.len()..].to_string())
            .collect())
    }

    /// Releases allocations no Service holds, given every Service object. Returns how many
    /// were released.
    pub async fn repair(&self, services: &[Value]) -> Result<usize, AllocError> {
        let mut held: HashSet<String> = HashSet::new();
        for svc in services {
            if let Some(ips) = svc.pointer("/spec/clusterIPs").and_then(Value::as_array) {
                held.extend(
                    ips.iter()
                        .filter_map(Value::as_str)
                        .map(|ip| format!("{IP_PREFIX}{ip}")),
                );
            }
            if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
                held.insert(format!("{IP_PREFIX}{ip}"));
            }
            for port in svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(np) = port.get("nodePort").and_then(Value::as_u64) {
                    held.insert(format!("{PORT_PREFIX}{np}"));
                }
            }
            if let Some(np) = svc
                .pointer("/spec/healthCheckNodePort")
                .and_then(Value::as_u64)
            {
                held.insert(format!("{PORT_PREFIX}{np}"));
            }
        }
        let mut orphans = HashSet::new();
        for prefix in [IP_PREFIX, PORT_PREFIX] {
            for kv in self.store.list(prefix, None, 0).await?.items {
                if !held.contains(&kv.key) {
                    orphans.insert(kv.key);
                }
            }
        }
        let confirmed: Vec<String> = {
            let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
            let confirmed = orphans.intersection(&suspects).cloned().collect();
            *suspects = orphans;
            confirmed
        };
        for key in &confirmed {
            tracing::warn!(key, "releasing service allocation no Service holds");
            release(&*self.store, key).await?;
        }
        Ok(confirmed.len())
    }
}

const POD_CIDR_PREFIX: &str = "/registry/ranges/podcidrs/";

/// Hands each Node a pod CIDR (`spec.podCIDR`): the next free block of the cluster CIDR, as
/// kube-controller-manager's node IPAM controller does. Blocks are store keys like the
/// service allocations, owned by the node's name.
pub struct PodCidrAllocator {
    store: Arc<dyn Store>,
    cluster: Ipv4Cidr,
    node_prefix_len: u8,
    suspects: Mutex<HashSet<String>>,
}

impl PodCidrAllocator {
    pub fn new(
        store: Arc<dyn Store>,
        cluster: Ipv4Cidr,
        node_prefix_len: u8,
    ) -> Result<Self, AllocError> {
        if node_prefix_len < cluster.prefix_len || node_prefix_len > 30 {
            return Err(AllocError::BadCidr {
                cidr: cluster.display(),
                why: "the node CIDR mask must be at least the cluster CIDR's and at most 30",
            });
        }
        Ok(PodCidrAllocator {
            store,
            cluster,
            node_prefix_len,
            suspects: Mutex::new(HashSet::new()),
        })
    }

    fn blocks(&self) -> u32 {
        1u32 << (self.node_prefix_len - self.cluster.prefix_len)
    }

    fn block(&self, n: u32) -> Ipv4Cidr {
        Ipv4Cidr {
            base: self.cluster.base + (n << (32 - self.node_prefix_len)),
            prefix_len: self.node_prefix_len,
        }
    }

    fn key(cidr: &Ipv4Cidr) -> String {
        format!("{POD_CIDR_PREFIX}{}", Ipv4Addr::from(cidr.base))
    }

    /// Gives `node` the block `requested` (when the Node names one) or the first free block.
    /// Idempotent for a node that already holds the block.
    pub async fn allocate(
        &self,
        node: &str,
        requested: Option<&str>,
    ) -> Result<String, AllocError> {
        if let Some(requested) = requested {
            let cidr = Ipv4Cidr::parse(requested)?;
            let key = Self::key(&cidr);
            if self.claim_for(&key, node).await? {
                return Ok(cidr.display());
            }
            return Err(AllocError::PodCidrTaken(cidr.display()));
        }
        // One read of the blocks already handed out, then writes only for free ones: trying
        // every block in turn costs a write per node already registered.
        let held = self.store.list(POD_CIDR_PREFIX, None, 0).await?.items;
        let mut taken = HashSet::with_capacity(held.len());
        for kv in held {
            if kv.value == node.as_bytes() {
                if let Some(base) = kv.key.strip_prefix(POD_CIDR_PREFIX) {
                    if let Ok(base) = base.parse::<Ipv4Addr>() {
                        let cidr = Ipv4Cidr {
                            base: u32::from(base),
                            prefix_len: self.node_prefix_len,
                        };
                        return Ok(cidr.display());
                    }
                }
            }
            taken.insert(kv.key);
        }
        for n in 0..self.blocks() {
            let cidr = self.block(n);
            let key = Self::key(&cidr);
            if taken.contains(&key) {
                continue;
            }
            if self.claim_for(&key, node).await? {
                return Ok(cidr.display());
            }
        }
        Err(AllocError::PodCidrsExhausted(self.cluster.display()))
    }

    /// Claims `key` for `node`; true when it is (now or already) that node's.
    async fn claim_for(&self, key: &str, node: &str) -> Result<bool, AllocError> {
        match self.store.create(key, node.as_bytes().to_vec()).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists(_)) => Ok(self
                .store
                .get(key)
                .await?
                .is_some_and(|kv| kv.value == node.as_bytes())),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases blocks whose node is gone (seen orphaned on two passes in a row, so a node
    /// being created right now keeps its block). Returns how many were released.
    pub async fn repair(&self, nodes: &[Value]) -> Result<usize, AllocError> {
        let names: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
            .collect();
        let orphans: HashSet<String> = self
            .store
            .list(POD_CIDR_PREFIX, None, 0)
            .await?
            .items
            .into_iter()
            .filter(|kv| !names.contains(String::from_utf8_lossy(&kv.value).as_ref()))
            .map(|kv| kv.key)
            .collect();
        let confirmed: Vec<String> = {
            let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
            let confirmed = orphans.intersection(&suspects).cloned().collect();
            *suspects = orphans;
            confirmed
        };
        for key in &confirmed {
            tracing::info!(key, "releasing the pod CIDR of a deleted node");
            release(&*self.store, key).await?;
        }
        Ok(confirmed.len())
    }
}

async fn release(store: &dyn Store, key: &str) -> Result<(), AllocError> {
    match store.delete(key, None).await {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs() {
        let c = Ipv4Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.size(), 1 << 20);
        assert_eq!(c.nth(1), Ipv4Addr::new(10, 96, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 112, 0, 0)));
        assert_eq!(Ipv4Cidr::parse("10.96.0.5/12").unwrap().base, c.base);
        for bad in ["10.96.0.0", "x/12", "10.96.0.0/40", "10.96.0.0/abc"] {
            assert!(Ipv4Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
