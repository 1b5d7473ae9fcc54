//! Persistent namespaces (bind mounts of `/proc/<pid>/ns/<kind>`) and netlink sockets
//! opened inside a given network namespace.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};
use tracing::{debug, warn};

use super::NetworkError;

/// A kind of namespace a pod keeps alive beyond its processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceKind {
    /// Network namespace.
    Net,
    /// System V IPC / POSIX message queue namespace.
    Ipc,
    /// Hostname namespace.
    Uts,
    /// PID namespace.
    Pid,
}

impl NamespaceKind {
    /// The name of this kind under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NamespaceKind::Net => "net",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Pid => "pid",
        }
    }

    /// Parses the `/proc/<pid>/ns/` name ("net", "ipc", "uts" or "pid").
    pub fn from_proc_name(name: &str) -> Option<NamespaceKind> {
        match name {
            "net" => Some(NamespaceKind::Net),
            "ipc" => Some(NamespaceKind::Ipc),
            "uts" => Some(NamespaceKind::Uts),
            "pid" => Some(NamespaceKind::Pid),
            _ => None,
        }
    }
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> NetworkError + 'a {
    move |source| NetworkError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn ns_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> NetworkError + 'a {
    move |source| NetworkError::Namespace {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Keeps namespace `kind` of process `pid` alive by bind-mounting it onto `target`.
///
/// Creates `target` (and its parent directories) as an empty file first. Binding the same
/// namespace again is a no-op; a target that already holds another namespace is an error
/// (the caller must [`unbind_namespace`] it first), so a stale sandbox is never shadowed.
pub fn bind_namespace(pid: u32, kind: NamespaceKind, target: &Path) -> Result<(), NetworkError> {
    let source = PathBuf::from(format!("/proc/{pid}/ns/{}", kind.proc_name()));
    let source_meta = fs::metadata(&source).map_err(io_error("inspect", &source))?;

    match fs::metadata(target) {
        Ok(target_meta) => {
            if target_meta.dev() == source_meta.dev() && target_meta.ino() == source_meta.ino() {
                debug!(target = %target.display(), pid, kind = kind.proc_name(), "namespace already bound");
                return Ok(());
            }
            if is_namespace_file(target) {
                return Err(NetworkError::NamespaceTargetBusy {
                    path: target.to_path_buf(),
                    pid,
                    kind: kind.proc_name(),
                });
            }
            // A plain file left by a crash between creating and mounting: reuse it.
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
            }
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(target)
            {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(io_error("create mount point", target)(error)),
            }
        }
        Err(error) => return Err(io_error("inspect", target)(error)),
    }

    if let Err(error) = mount(
        Some(&source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        // Leave no empty mount point behind: a later bind would have to tell it apart.
        if let Err(remove_error) = fs::remove_file(target) {
            warn!(target = %target.display(), error = %remove_error, "cannot remove unused namespace mount point");
        }
        return Err(NetworkError::Namespace {
            action: "bind-mount namespace onto",
            path: target.to_path_buf(),
            source: error,
        });
    }
    debug!(target = %target.display(), pid, kind = kind.proc_name(), "namespace bound");
    Ok(())
}

/// Whether `path` is a namespace file (a `/proc/<pid>/ns/*` entry or a bind mount of one).
fn is_namespace_file(path: &Path) -> bool {
    statfs(path).is_ok_and(|stat| stat.filesystem_type() == NSFS_MAGIC)
}

/// Releases a namespace bound by [`bind_namespace`]: lazy unmount, then removes the file.
///
/// Absent targets and targets that are no longer mounted are fine, so it can be repeated.
pub fn unbind_namespace(target: &Path) -> Result<(), NetworkError> {
    // Several binds may be stacked on one file after crashes; peel them all.
    const MAX_STACKED_MOUNTS: usize = 16;
    for _ in 0..MAX_STACKED_MOUNTS {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(error) => return Err(ns_error("unmount namespace", target)(error)),
        }
    }
    match fs::remove_file(target) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error("remove namespace file", target)(error)),
    }
}

/// A pod's persistent network namespace: a file that keeps the namespace alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsHandle {
    path: PathBuf,
}

impl NetnsHandle {
    /// Binds the network namespace of running process `pid` onto `path`.
    pub fn bind_from_pid(pid: u32, path: impl Into<PathBuf>) -> Result<NetnsHandle, NetworkError> {
        let path = path.into();
        bind_namespace(pid, NamespaceKind::Net, &path)?;
        Ok(NetnsHandle { path })
    }

    /// Refers to an existing network namespace file, such as one bound before a restart.
    pub fn open(path: impl Into<PathBuf>) -> Result<NetnsHandle, NetworkError> {
        let path = path.into();
        if !is_namespace_file(&path) {
            return Err(NetworkError::Io {
                action: "use as network namespace",
                path,
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a namespace file"),
            });
        }
        Ok(NetnsHandle { path })
    }

    /// The file that holds the namespace.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens an rtnetlink connection inside this namespace (see [`connect_in_netns`]).
    pub async fn connect(&self) -> Result<rtnetlink::Handle, NetworkError> {
        connect_in_netns(&self.path).await
    }

    /// Unmounts and removes the namespace file; the namespace dies with its last user.
    pub fn release(self) -> Result<(), NetworkError> {
        unbind_namespace(&self.path)
    }
}

/// The tokio runtime the connection task will run on; an error rather than tokio's panic
/// when there is none.
fn current_runtime(netns: &Path) -> Result<tokio::runtime::Handle, NetworkError> {
    tokio::runtime::Handle::try_current().map_err(|error| NetworkError::Socket {
        netns: netns.to_path_buf(),
        source: io::Error::other(format!(
            "no tokio runtime to drive the netlink connection: {error}"
        )),
    })
}

/// Opens an rtnetlink connection in the caller's network namespace, driven by a task on
/// the current tokio runtime.
pub fn connect_current() -> Result<rtnetlink::Handle, NetworkError> {
    let current_netns = Path::new("/proc/thread-self/ns/net");
    let runtime = current_runtime(current_netns)?;
    let _entered = runtime.enter();
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| NetworkError::Socket {
            netns: current_netns.to_path_buf(),
            source,
        })?;
    runtime.spawn(connection);
    Ok(handle)
}

/// Opens an rtnetlink connection inside the network namespace held by `netns`.
///
/// A netlink socket stays in the namespace it was created in, so a short-lived thread
/// enters the namespace and creates the socket there; the connection then runs as a task
/// on the caller's tokio runtime, and the caller's own threads never change namespace.
pub async fn connect_in_netns(netns: &Path) -> Result<rtnetlink::Handle, NetworkError> {
    let ns_file = File::open(netns).map_err(io_error("open network namespace", netns))?;
    let runtime = current_runtime(netns)?;
    let thread_runtime = runtime.clone();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let thread_netns = netns.to_path_buf();
    std::thread::Builder::new()
        .name("skiff-netns".to_string())
        .spawn(move || {
            let result = setns(&ns_file, CloneFlags::CLONE_NEWNET)
                .map_err(ns_error("enter network namespace", &thread_netns))
                .and_then(|()| {
                    // The socket registers with the caller's reactor, not a new one.
                    let _entered = thread_runtime.enter();
                    rtnetlink::new_connection().map_err(|source| NetworkError::Socket {
                        netns: thread_netns.clone(),
                        source,
                    })
                });
            // The receiver only goes away if the caller was cancelled; nothing to report.
            let _ = sender.send(result);
        })
        .map_err(io_error("start thread to enter network namespace", netns))?;
    let (connection, handle, _) = receiver.await.map_err(|_| NetworkError::Io {
        action: "open netlink socket in",
        path: netns.to_path_buf(),
        source: io::Error::other("the namespace thread ended without an answer"),
    })??;
    runtime.spawn(connection);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_kinds_round_trip() {
        for kind in [
            NamespaceKind::Net,
            NamespaceKind::Ipc,
            NamespaceKind::Uts,
            NamespaceKind::Pid,
        ] {
            assert_eq!(NamespaceKind::from_proc_name(kind.proc_name()), Some(kind));
        }
        assert_eq!(NamespaceKind::from_proc_name("mnt"), None);
    }

    #[test]
    fn connecting_without_a_runtime_is_an_error_not_a_panic() {
        let error = connect_current().unwrap_err();
        assert!(error.to_string().contains("no tokio runtime"), "{error}");
    }

    #[test]
    fn unbinding_nothing_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        unbind_namespace(&dir.path().join("absent")).unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        unbind_namespace(&plain).unwrap();
        assert!(!plain.exists());
    }
}
