//! Pod IP allocation from the node's pod CIDR, kept on disk.
//!
//! Nothing here is fsynced: what the files must outlive is the daemon (a crash, `kill -9`),
//! and the kernel's page cache outlives it. After a power loss no pod runs any more, and the
//! daemon's start-up cleanup releases the addresses of pods it has no record of. (An fsync
//! per allocation was more than half of a pod's network setup time.)
//!
//! The daemon must survive `kill -9` without handing one address to two pods or losing
//! track of an address a running pod still uses, so every allocation is a file, written
//! before the address is returned. Layout of the IPAM directory:
//!
//! - `10.244.3.7`: one file per allocated address, holding its owner (the pod uid) and a
//!   newline. Created with `O_CREAT | O_EXCL`, so an address is never given twice, even by
//!   two processes sharing the directory.
//! - `last-reserved`: the address handed out last. Allocation goes round-robin from there,
//!   so an address released a moment ago (whose old pod peers may still have in their ARP
//!   caches and conntrack tables) is reused only once the others are taken.
//! - `lock`: held with an exclusive `flock` around every read-modify-write (allocate,
//!   release), which makes "look for the owner, else take the next free address" atomic.
//!
//! The network address, the gateway (the first host address, given to the bridge) and the
//! broadcast address are never allocated. Files for addresses outside the current CIDR (left
//! from an earlier CIDR of the node) are ignored with a warning. An empty allocation file
//! can only come from a crash between creating and writing it, under the lock; allocation
//! reclaims it.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tracing::{debug, info, warn};

const LOCK_FILE: &str = "lock";
const LAST_RESERVED_FILE: &str = "last-reserved";
const LAST_RESERVED_TMP: &str = "last-reserved.tmp";

/// Why an IPAM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("invalid pod CIDR {input:?}: {reason}")]
    InvalidCidr { input: String, reason: String },
    #[error("invalid IP owner {owner:?}: {reason}")]
    InvalidOwner { owner: String, reason: &'static str },
    #[error("pod CIDR {cidr} is full ({in_use} addresses in use)")]
    Full { cidr: String, in_use: u64 },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IpamError + 'a {
    move |source| IpamError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// An IPv4 network: its address with the host bits clear, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The longest prefix that still leaves one address for a pod beside the gateway.
    const MAX_PREFIX: u8 = 30;

    fn parse(input: &str) -> Result<Ipv4Cidr, IpamError> {
        let invalid = |reason: String| IpamError::InvalidCidr {
            input: input.to_string(),
            reason,
        };
        let (address, prefix) = input
            .split_once('/')
            .ok_or_else(|| invalid("expected ADDRESS/PREFIX, such as 10.244.3.0/24".into()))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| invalid(format!("{address:?} is not an IPv4 address")))?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!("prefix length {prefix:?} is not a number")));
        }
        let prefix: u8 = match prefix.parse() {
            Ok(prefix) if prefix <= 32 => prefix,
            _ => return Err(invalid(format!("prefix length {prefix} is above 32"))),
        };
        if prefix > Self::MAX_PREFIX {
            return Err(invalid(format!(
                "a /{prefix} leaves no address for pods beside the gateway (at most /{})",
                Self::MAX_PREFIX
            )));
        }
        let cidr = Ipv4Cidr {
            network: u32::from(address) & !host_mask(prefix),
            prefix,
        };
        if cidr.network != u32::from(address) {
            return Err(invalid(format!(
                "host bits are set (the network is {cidr})"
            )));
        }
        Ok(cidr)
    }

    fn gateway(&self) -> u32 {
        self.network + 1
    }

    fn broadcast(&self) -> u32 {
        self.network | host_mask(self.prefix)
    }

    /// The first address a pod may get: right after the gateway.
    fn first_pod(&self) -> u32 {
        self.network + 2
    }

    /// How many addresses pods may get: all but network, gateway and broadcast.
    fn pod_capacity(&self) -> u64 {
        u64::from(self.broadcast() - self.network) - 2
    }

    fn is_pod_address(&self, ip: u32) -> bool {
        ip >= self.first_pod() && ip < self.broadcast()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

fn host_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
}

/// Persistent allocator of pod addresses in one node's pod CIDR. Cheap to share between
/// threads (`&Ipam`), and safe to use from several processes on the same directory.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Cidr,
}

impl Ipam {
    /// Opens (creating if needed) the allocation store in `dir` for the pod CIDR `cidr`,
    /// such as `10.244.3.0/24`.
    pub fn open(dir: &Path, cidr: &str) -> Result<Ipam, IpamError> {
        let cidr = Ipv4Cidr::parse(cidr)?;
        fs::create_dir_all(dir).map_err(io_error("create IPAM directory", dir))?;
        let ipam = Ipam {
            dir: dir.to_path_buf(),
            cidr,
        };
        // Fail now, not at the first pod, if the directory is not writable.
        drop(ipam.lock()?);
        ipam.warn_foreign_allocations();
        debug!(dir = %dir.display(), %cidr, "opened pod IP allocations");
        Ok(ipam)
    }

    /// The bridge's address: the first host address of the CIDR, never given to a pod.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.cidr.gateway())
    }

    /// The CIDR's prefix length, for configuring the pod's `eth0` address.
    pub fn prefix_len(&self) -> u8 {
        self.cidr.prefix
    }

    /// Gives `owner` (a pod uid) an address. Asking again for the same owner returns the
    /// same address, so a daemon restarting half-way through a pod's setup is harmless.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        check_owner(owner)?;
        let _lock = self.lock()?;
        let entries = self.scan()?;
        if let Some((ip, _)) = entries.iter().find(|(_, o)| o == owner) {
            debug!(%owner, %ip, "pod already has an address");
            return Ok(*ip);
        }

        let mut taken = HashSet::new();
        for (ip, entry_owner) in &entries {
            if entry_owner.is_empty() {
                // Under the lock nobody is between create and write: a crash left it.
                let path = self.allocation_path(*ip);
                warn!(path = %path.display(), "reclaiming an allocation file left empty by a crash");
                remove_if_exists(&path).map_err(io_error("remove empty allocation", &path))?;
            } else {
                taken.insert(u32::from(*ip));
            }
        }

        let capacity = self.cidr.pod_capacity();
        let first = self.cidr.first_pod();
        let start = match self.last_reserved() {
            Some(last) if self.cidr.is_pod_address(last) => u64::from(last - first) + 1,
            _ => 0,
        };
        for step in 0..capacity {
            let offset = (start + step) % capacity;
            // offset < capacity < 2^32 - first, so this stays in range.
            let candidate = first + offset as u32;
            if taken.contains(&candidate) {
                continue;
            }
            let ip = Ipv4Addr::from(candidate);
            if self.create_allocation(ip, owner)? {
                self.set_last_reserved(ip)?;
                info!(%owner, %ip, cidr = %self.cidr, "allocated pod address");
                return Ok(ip);
            }
        }
        Err(IpamError::Full {
            cidr: self.cidr.to_string(),
            in_use: capacity,
        })
    }

    /// Frees the address of `owner`, returning it, or `None` if the owner had none (a
    /// second release after a restart is not an error).
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        check_owner(owner)?;
        let _lock = self.lock()?;
        let mut released = None;
        for (ip, entry_owner) in self.scan()? {
            if entry_owner == owner {
                let path = self.allocation_path(ip);
                remove_if_exists(&path).map_err(io_error("remove allocation", &path))?;
                info!(%owner, %ip, "released pod address");
                released.get_or_insert(ip);
            }
        }
        Ok(released)
    }

    /// The address `owner` holds, if any. Reads without the lock (a lookup never waits for
    /// an allocation), so an allocation being made at this very moment may not be seen yet.
    pub fn lookup(&self, owner: &str) -> Option<Ipv4Addr> {
        match self.scan() {
            Ok(entries) => entries
                .into_iter()
                .find(|(_, entry_owner)| entry_owner == owner)
                .map(|(ip, _)| ip),
            Err(error) => {
                warn!(%owner, %error, "cannot look up pod address");
                None
            }
        }
    }

    /// Every allocation as (address, owner), in address order.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let mut entries: Vec<_> = self
            .scan()?
            .into_iter()
            .filter(|(_, owner)| !owner.is_empty())
            .collect();
        entries.sort();
        Ok(entries)
    }

    /// Allocation files for addresses outside this CIDR are left from an earlier pod CIDR
    /// of the node; they are ignored, and said so once.
    fn warn_foreign_allocations(&self) {
        let Ok(read_dir) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in read_dir.flatten() {
            let name = entry.file_name();
            let Some(ip) = name.to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            if !self.cidr.is_pod_address(u32::from(ip)) {
                warn!(%ip, cidr = %self.cidr, dir = %self.dir.display(),
                    "ignoring allocation outside the pod CIDR");
            }
        }
    }

    fn allocation_path(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// Takes the exclusive lock; released when the returned guard drops. Each call opens
    /// the file anew, so threads of one process exclude each other as processes do.
    fn lock(&self) -> Result<Flock<File>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open IPAM lock file", &path))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => return Ok(lock),
                Err((again, Errno::EINTR)) => file = again,
                Err((_, errno)) => {
                    return Err(IpamError::Io {
                        action: "lock IPAM lock file",
                        path,
                        source: errno.into(),
                    })
                }
            }
        }
    }

    /// Reads every allocation file for an address of this CIDR. An empty owner marks a
    /// file being written or left empty by a crash.
    fn scan(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let read_dir =
            fs::read_dir(&self.dir).map_err(io_error("list IPAM directory", &self.dir))?;
        let mut entries = Vec::new();
        for entry in read_dir {
            let entry = entry.map_err(io_error("list IPAM directory", &self.dir))?;
            // Anything not named like an address (the lock, last-reserved) is not ours.
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            if !self.cidr.is_pod_address(u32::from(ip)) {
                // Reported once by `open`; not ours to hand out or to list.
                continue;
            }
            let path = entry.path();
            let content = match fs::read_to_string(&path) {
                Ok(content) => content,
                // Released between listing and reading.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error("read allocation", &path)(error)),
            };
            let owner = content.strip_suffix('\n').unwrap_or(&content).to_string();
            entries.push((ip, owner));
        }
        Ok(entries)
    }

    /// Creates the allocation file for `ip`; `false` if another owner has it already.
    fn create_allocation(&self, ip: Ipv4Addr, owner: &str) -> Result<bool, IpamError> {
        let path = self.allocation_path(ip);
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(error) => return Err(io_error("create allocation", &path)(error)),
        };
        let written = file.write_all(format!("{owner}\n").as_bytes());
        if let Err(error) = written {
            // Leave no half-written claim behind; the error below is the one that matters.
            let _ = fs::remove_file(&path);
            return Err(io_error("write allocation", &path)(error));
        }
        Ok(true)
    }

    fn last_reserved(&self) -> Option<u32> {
        let path = self.dir.join(LAST_RESERVED_FILE);
        match fs::read_to_string(&path) {
            Ok(content) => match content.trim().parse::<Ipv4Addr>() {
                Ok(ip) => Some(u32::from(ip)),
                Err(_) => {
                    warn!(path = %path.display(), "ignoring unreadable last-reserved address");
                    None
                }
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                warn!(path = %path.display(), %error, "ignoring unreadable last-reserved address");
                None
            }
        }
    }

    /// Replaces `last-reserved` atomically (write a temporary file, rename it over).
    fn set_last_reserved(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let tmp = self.dir.join(LAST_RESERVED_TMP);
        fs::write(&tmp, format!("{ip}\n")).map_err(io_error("write", &tmp))?;
        let path = self.dir.join(LAST_RESERVED_FILE);
        fs::rename(&tmp, &path).map_err(io_error("replace", &path))
    }
}

/// Owners are stored as a file's one line, so they must be non-empty and free of control
/// characters to read back as written.
fn check_owner(owner: &str) -> Result<(), IpamError> {
    let reason = if owner.is_empty() {
        "it is empty"
    } else if owner.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(IpamError::InvalidOwner {
        owner: owner.to_string(),
        reason,
    })
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn open(dir: &tempfile::TempDir, cidr: &str) -> Ipam {
        Ipam::open(dir.path(), cidr).unwrap()
    }

    #[test]
    fn gateway_is_the_first_host_address() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.0/24");
        assert_eq!(ipam.gateway(), ip("10.244.3.1"));
        assert_eq!(ipam.prefix_len(), 24);
    }

    #[test]
    fn fills_a_29_without_network_gateway_or_broadcast() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.8/29");
        let mut given: Vec<Ipv4Addr> = (0..5)
            .map(|i| ipam.allocate(&format!("pod-{i}")).unwrap())
            .collect();
        given.sort();
        let expected: Vec<Ipv4Addr> = (10..=14).map(|d| Ipv4Addr::new(10, 244, 3, d)).collect();
        assert_eq!(given, expected);

        let error = ipam.allocate("pod-5").unwrap_err();
        assert!(matches!(error, IpamError::Full { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "pod CIDR 10.244.3.8/29 is full (5 addresses in use)"
        );
        // A full CIDR still answers for the owners it has.
        assert_eq!(ipam.allocate("pod-2").unwrap(), ip("10.244.3.12"));
    }

    #[test]
    fn full_24_names_the_cidr_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.0/24");
        for i in 0..253 {
            ipam.allocate(&format!("pod-{i}")).unwrap();
        }
        let error = ipam.allocate("one-too-many").unwrap_err();
        assert_eq!(
            error.to_string(),
            "pod CIDR 10.244.3.0/24 is full (253 addresses in use)"
        );
        let all = ipam.allocations().unwrap();
        assert_eq!(all.len(), 253);
        assert_eq!(all[0].0, ip("10.244.3.2"));
        assert_eq!(all[252].0, ip("10.244.3.254"));
    }

    #[test]
    fn allocation_is_idempotent_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.0/24");
        let first = ipam.allocate("uid-a").unwrap();
        assert_eq!(first, ip("10.244.3.2"));
        assert_eq!(ipam.allocate("uid-a").unwrap(), first);
        assert_eq!(ipam.allocate("uid-b").unwrap(), ip("10.244.3.3"));
        assert_eq!(ipam.allocate("uid-a").unwrap(), first);
        assert_eq!(ipam.lookup("uid-a"), Some(first));
        assert_eq!(ipam.allocations().unwrap().len(), 2);
    }

    #[test]
    fn release_frees_the_address_and_forgets_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.0/24");
        let a = ipam.allocate("uid-a").unwrap();
        ipam.allocate("uid-b").unwrap();
        assert_eq!(ipam.release("uid-a").unwrap(), Some(a));
        assert_eq!(ipam.lookup("uid-a"), None);
        assert!(!dir.path().join(a.to_string()).exists());
        // Releasing twice, or an owner never seen, is not an error.
        assert_eq!(ipam.release("uid-a").unwrap(), None);
        assert_eq!(ipam.release("never-allocated").unwrap(), None);
        assert_eq!(
            ipam.allocations().unwrap(),
            vec![(ip("10.244.3.3"), "uid-b".to_string())]
        );
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.0/24");
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.244.3.2"));
        assert_eq!(ipam.allocate("b").unwrap(), ip("10.244.3.3"));
        ipam.release("a").unwrap();
        assert_eq!(ipam.allocate("c").unwrap(), ip("10.244.3.4"));
        // Re-allocating a released owner also moves on.
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.244.3.5"));
    }

    #[test]
    fn round_robin_wraps_to_released_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.0/29");
        for owner in ["a", "b", "c", "d", "e"] {
            ipam.allocate(owner).unwrap();
        }
        assert_eq!(ipam.release("b").unwrap(), Some(ip("10.244.3.3")));
        assert_eq!(ipam.allocate("f").unwrap(), ip("10.244.3.3"));
        ipam.release("a").unwrap();
        ipam.release("e").unwrap();
        // Last given was .3: the search goes on from .4, so .6 (e's) comes before .2 (a's).
        assert_eq!(ipam.allocate("g").unwrap(), ip("10.244.3.6"));
        assert_eq!(ipam.allocate("h").unwrap(), ip("10.244.3.2"));
    }

    #[test]
    fn allocations_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ipam = open(&dir, "10.244.3.0/24");
            ipam.allocate("a").unwrap();
            ipam.allocate("b").unwrap();
            ipam.allocate("c").unwrap();
            ipam.release("c").unwrap();
        }
        let ipam = open(&dir, "10.244.3.0/24");
        assert_eq!(ipam.lookup("a"), Some(ip("10.244.3.2")));
        assert_eq!(ipam.allocate("b").unwrap(), ip("10.244.3.3"));
        assert_eq!(
            ipam.allocations().unwrap(),
            vec![
                (ip("10.244.3.2"), "a".to_string()),
                (ip("10.244.3.3"), "b".to_string()),
            ]
        );
        // The round-robin position survives too: .4 was given last.
        assert_eq!(ipam.allocate("d").unwrap(), ip("10.244.3.5"));
    }

    #[test]
    fn concurrent_allocations_are_distinct() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = Arc::clone(&dir);
                std::thread::spawn(move || {
                    // One Ipam per thread, as separate processes would have.
                    let ipam = Ipam::open(dir.path(), "10.244.3.0/24").unwrap();
                    (0..20)
                        .map(|i| {
                            let owner = format!("pod-{t}-{i}");
                            (ipam.allocate(&owner).unwrap(), owner)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut given: Vec<(Ipv4Addr, String)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        given.sort();
        let distinct: HashSet<Ipv4Addr> = given.iter().map(|(ip, _)| *ip).collect();
        assert_eq!(distinct.len(), 160, "an address was given twice");
        let gateway = ip("10.244.3.1");
        assert!(distinct.iter().all(|a| *a != gateway && a.octets()[3] >= 2));
        let ipam = open(&dir, "10.244.3.0/24");
        assert_eq!(ipam.allocations().unwrap(), given);
    }

    #[test]
    fn concurrent_allocations_for_one_owner_agree() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let start = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (dir, start) = (Arc::clone(&dir), Arc::clone(&start));
                std::thread::spawn(move || {
                    let ipam = Ipam::open(dir.path(), "10.244.3.0/24").unwrap();
                    start.wait();
                    ipam.allocate("the-pod").unwrap()
                })
            })
            .collect();
        let given: HashSet<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(given.len(), 1, "one owner got several addresses: {given:?}");
        let ipam = open(&dir, "10.244.3.0/24");
        assert_eq!(ipam.allocations().unwrap().len(), 1);
    }

    #[test]
    fn reclaims_a_file_left_empty_by_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.0/24");
        fs::write(dir.path().join("10.244.3.2"), "").unwrap();
        assert!(ipam.allocations().unwrap().is_empty());
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.244.3.2"));
        assert_eq!(
            fs::read_to_string(dir.path().join("10.244.3.2")).unwrap(),
            "a\n"
        );
    }

    #[test]
    fn ignores_allocations_outside_the_cidr() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("10.244.9.2"), "old\n").unwrap();
        fs::write(dir.path().join("10.244.3.1"), "gateway?\n").unwrap();
        let ipam = open(&dir, "10.244.3.0/24");
        assert!(ipam.allocations().unwrap().is_empty());
        assert_eq!(ipam.lookup("old"), None);
        assert_eq!(ipam.allocate("new").unwrap(), ip("10.244.3.2"));
    }

    #[test]
    fn bad_cidrs_name_the_input() {
        let dir = tempfile::tempdir().unwrap();
        for (input, reason) in [
            ("10.244.3.0", "expected ADDRESS/PREFIX"),
            ("", "expected ADDRESS/PREFIX"),
            ("10.244.3/24", "is not an IPv4 address"),
            ("fd00::/64", "is not an IPv4 address"),
            ("10.244.3.0/", "is not a number"),
            ("10.244.3.0/+24", "is not a number"),
            ("10.244.3.0/x", "is not a number"),
            ("10.244.3.0/33", "above 32"),
            ("10.244.3.0/300", "above 32"),
            ("10.244.3.0/31", "leaves no address for pods"),
            ("10.244.3.0/32", "leaves no address for pods"),
            (
                "10.244.3.5/24",
                "host bits are set (the network is 10.244.3.0/24)",
            ),
        ] {
            let error = Ipam::open(&dir.path().join("ipam"), input).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid pod CIDR {input:?}: ")),
                "{message}"
            );
            assert!(message.contains(reason), "{input}: {message}");
        }
        // Nothing was created for a CIDR that was refused.
        assert!(!dir.path().join("ipam").exists());
        assert!(Ipam::open(dir.path(), "10.244.3.0/30").is_ok());
    }

    #[test]
    fn a_30_has_one_pod_address() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.4/30");
        assert_eq!(ipam.gateway(), ip("10.244.3.5"));
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.244.3.6"));
        assert_eq!(
            ipam.allocate("b").unwrap_err().to_string(),
            "pod CIDR 10.244.3.4/30 is full (1 addresses in use)"
        );
    }

    #[test]
    fn rejects_owners_that_cannot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = open(&dir, "10.244.3.0/24");
        for owner in ["", "a\nb", "tab\t"] {
            let error = ipam.allocate(owner).unwrap_err();
            assert!(matches!(error, IpamError::InvalidOwner { .. }), "{error:?}");
            assert!(error.to_string().starts_with("invalid IP owner"));
        }
        assert!(ipam.allocations().unwrap().is_empty());
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let error = Ipam::open(&file.join("ipam"), "10.244.3.0/24").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("cannot create IPAM directory ") && message.contains("not-a-dir"),
            "{message}"
        );
    }
}
