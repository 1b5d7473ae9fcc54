//! The container's mount namespace: rootfs, spec mounts, `/dev`, pivot_root, masked and
//! read-only paths. Runs in the child, after the mount namespace is unshared.
//!
//! Order: make every mount a slave of the host (nothing propagates back), mount the rootfs
//! (overlay from annotations, or a bind of the ready rootfs onto itself, as pivot_root
//! needs a mount point), a tmpfs on `/dev` unless the spec mounts one, the spec's mounts
//! in order, `/dev/pts` and `/dev/shm` unless the spec has them, device nodes and the
//! standard `/dev` symlinks, pivot_root, read-only and masked paths, read-only root.
//!
//! Mount destinations are resolved inside the rootfs with symlinks interpreted as if the
//! rootfs were `/` (as runc and crun do), so a symlink in an image can never send a mount
//! outside the container's root.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmodat, makedev, mknod, FchmodatFlags, Mode, SFlag};
use nix::unistd::{chdir, chown, pivot_root, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::bundle::{Bundle, OverlayRootfs};
use super::ContainerError;

/// Symlinks followed while resolving one path before giving up (the kernel's limit).
const MAX_SYMLINKS: u32 = 40;

/// Flags, propagation and data parsed from a mount's `options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// Flags for the mount call (and the remount of a bind).
    pub flags: MsFlags,
    /// Propagation flags, applied by a separate call.
    pub propagation: MsFlags,
    /// Whether this is a bind mount (`bind` or `rbind`).
    pub bind: bool,
    /// Whether a bind mount is recursive (`rbind`).
    pub recursive: bool,
    /// Filesystem-specific options, joined with commas.
    pub data: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            bind: false,
            recursive: false,
            data: String::new(),
        }
    }
}

/// Splits OCI mount options into mount flags and filesystem data.
pub(crate) fn parse_options(options: &[String]) -> MountOptions {
    let mut parsed = MountOptions::default();
    let mut data = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "defaults" | "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                parsed.bind = true;
                continue;
            }
            "rbind" => {
                parsed.bind = true;
                parsed.recursive = true;
                continue;
            }
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable"
            | "runbindable" => {
                parsed.propagation |= propagation_flags(option);
                continue;
            }
            _ => {
                data.push(option.as_str());
                continue;
            }
        };
        parsed.flags.insert(set);
        parsed.flags.remove(clear);
    }
    parsed.data = data.join(",");
    parsed
}

fn propagation_flags(option: &str) -> MsFlags {
    let (kind, recursive) = match option.strip_prefix('r') {
        Some(rest) => (rest, true),
        None => (option, false),
    };
    let flag = match kind {
        "private" => MsFlags::MS_PRIVATE,
        "slave" => MsFlags::MS_SLAVE,
        "shared" => MsFlags::MS_SHARED,
        _ => MsFlags::MS_UNBINDABLE,
    };
    if recursive {
        flag | MsFlags::MS_REC
    } else {
        flag
    }
}

/// Resolves `path` (absolute in the container) to a host path inside `root`, following
/// symlinks as if `root` were `/`: `..` stops at `root`, absolute targets restart there.
/// Components that do not exist yet are taken as they are.
pub(crate) fn scoped_path(root: &Path, path: &Path) -> Result<PathBuf, ContainerError> {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = components(path);
    let mut followed = 0;
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&component);
        let host = root.join(&candidate);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(ContainerError::Invalid {
                        what: format!("path {} in {}", path.display(), root.display()),
                        reason: "too many levels of symbolic links".into(),
                    });
                }
                let target = fs::read_link(&host).map_err(|err| {
                    ContainerError::io(format!("read symlink {}", host.display()), err)
                })?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut expanded = components(&target);
                expanded.extend(pending);
                pending = expanded;
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// The named components of a path, with `..` kept and `/` and `.` dropped.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// One mount call, with an error naming everything that was asked.
fn mount_at(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), ContainerError> {
    let data = data.filter(|data| !data.is_empty());
    mount(source, target, fstype, flags, data).map_err(|err| {
        ContainerError::sys(
            format!(
                "mount {} on {} (type {}, flags {:?}, data {:?})",
                source.map_or("none".into(), |s| s.display().to_string()),
                target.display(),
                fstype.unwrap_or("none"),
                flags,
                data.unwrap_or("")
            ),
            err,
        )
    })
}

/// Creates a mount destination: a file when `is_file`, otherwise a directory.
fn create_destination(destination: &Path, is_file: bool) -> Result<(), ContainerError> {
    let result = if is_file {
        match destination.parent() {
            Some(parent) => fs::create_dir_all(parent),
            None => Ok(()),
        }
        .and_then(|()| {
            if destination.exists() {
                Ok(())
            } else {
                fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(destination)
                    .map(drop)
            }
        })
    } else {
        fs::create_dir_all(destination)
    };
    result.map_err(|err| {
        ContainerError::io(format!("create mount point {}", destination.display()), err)
    })
}

/// Mounts the root filesystem on `bundle.rootfs` and every mount below it, then
/// pivots into it. Must run in a fresh mount namespace.
pub(crate) fn prepare_rootfs(bundle: &Bundle) -> Result<(), ContainerError> {
    let spec = &bundle.spec;
    let rootfs = &bundle.rootfs;
    let linux = spec.linux().as_ref();

    // Nothing mounted from here on may reach the host.
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") | Some("rslave") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some("slave") => MsFlags::MS_SLAVE,
        Some("rprivate") => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        Some("private") => MsFlags::MS_PRIVATE,
        Some(other) => {
            return Err(ContainerError::Unsupported {
                what: format!("linux.rootfsPropagation {other:?}"),
            })
        }
    };
    mount_at(None, Path::new("/"), None, propagation, None)?;

    match &bundle.overlay {
        Some(overlay) => mount_overlay(overlay, rootfs)?,
        None => mount_at(
            Some(rootfs),
            rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?,
    }

    let mounts: &[Mount] = spec.mounts().as_deref().unwrap_or_default();
    let has_mount = |destination: &str| {
        mounts
            .iter()
            .any(|m| m.destination().as_os_str() == destination)
    };
    let dev = rootfs.join("dev");
    let dev_is_tmpfs = match mounts
        .iter()
        .find(|m| m.destination().as_os_str() == "/dev")
    {
        Some(spec_dev) => spec_dev.typ().as_deref() == Some("tmpfs"),
        None => {
            create_destination(&dev, false)?;
            mount_at(
                Some(Path::new("tmpfs")),
                &dev,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
                Some("mode=755,size=65536k"),
            )?;
            true
        }
    };

    for entry in mounts {
        mount_entry(&bundle.dir, rootfs, entry)?;
    }

    if !has_mount("/dev/pts") {
        let pts = rootfs.join("dev/pts");
        create_destination(&pts, false)?;
        mount_at(
            Some(Path::new("devpts")),
            &pts,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )?;
    }
    if !has_mount("/dev/shm") {
        let shm = rootfs.join("dev/shm");
        create_destination(&shm, false)?;
        mount_at(
            Some(Path::new("shm")),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )?;
    }
    if dev_is_tmpfs {
        create_standard_devices(&dev)?;
        let devices: &[LinuxDevice] = linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default();
        for device in devices {
            create_spec_device(rootfs, device)?;
        }
        create_dev_symlinks(&dev)?;
    }

    enter_rootfs(rootfs)?;
    protect_paths(spec)?;
    if spec.root().as_ref().and_then(|root| root.readonly()) == Some(true) {
        mount_at(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

fn mount_overlay(overlay: &OverlayRootfs, rootfs: &Path) -> Result<(), ContainerError> {
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        overlay.lowerdir,
        overlay.upperdir.display(),
        overlay.workdir.display()
    );
    mount_at(
        Some(Path::new("overlay")),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(&data),
    )
}

/// Mounts one entry of the spec's `mounts` inside `rootfs`.
fn mount_entry(bundle_dir: &Path, rootfs: &Path, entry: &Mount) -> Result<(), ContainerError> {
    let options = parse_options(entry.options().as_deref().unwrap_or_default());
    let fstype = entry.typ().as_deref().unwrap_or("none");
    let destination = scoped_path(rootfs, entry.destination())?;
    if matches!(fstype, "cgroup" | "cgroup2") {
        return Err(ContainerError::Unsupported {
            what: format!("mount type {fstype} (on {})", entry.destination().display()),
        });
    }
    if options.bind || fstype == "bind" {
        let source = entry
            .source()
            .as_ref()
            .ok_or_else(|| ContainerError::Invalid {
                what: format!("bind mount on {}", entry.destination().display()),
                reason: "no source".into(),
            })?;
        // A relative bind source is relative to the bundle.
        let source = bundle_dir.join(source);
        let meta = fs::metadata(&source)
            .map_err(|err| ContainerError::io(format!("bind source {}", source.display()), err))?;
        create_destination(&destination, !meta.is_dir())?;
        let mut bind_flags = MsFlags::MS_BIND;
        if options.recursive {
            bind_flags |= MsFlags::MS_REC;
        }
        mount_at(Some(&source), &destination, None, bind_flags, None)?;
        // Flags of a bind mount only take effect through a remount.
        if !options.flags.is_empty() {
            mount_at(
                None,
                &destination,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | options.flags,
                None,
            )?;
        }
    } else {
        create_destination(&destination, false)?;
        let source = entry
            .source()
            .clone()
            .unwrap_or_else(|| PathBuf::from(fstype));
        mount_at(
            Some(&source),
            &destination,
            Some(fstype),
            options.flags,
            Some(&options.data),
        )?;
    }
    if !options.propagation.is_empty() {
        mount_at(None, &destination, None, options.propagation, None)?;
    }
    Ok(())
}

/// The character devices every container gets: (name, major, minor).
const STANDARD_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn create_standard_devices(dev: &Path) -> Result<(), ContainerError> {
    for (name, major, minor) in STANDARD_DEVICES {
        let node = dev.join(name);
        if node.exists() {
            continue;
        }
        let mode = Mode::from_bits_truncate(0o666);
        match mknod(&node, SFlag::S_IFCHR, mode, makedev(major, minor)) {
            // mknod applied the umask.
            Ok(()) => set_mode(&node, mode)?,
            // Where mknod is not allowed, bind the host's node instead.
            Err(nix::Error::EPERM) => {
                create_destination(&node, true)?;
                let host = Path::new("/dev").join(name);
                mount_at(Some(&host), &node, None, MsFlags::MS_BIND, None)?;
            }
            Err(err) => {
                return Err(ContainerError::sys(
                    format!("create device {}", node.display()),
                    err,
                ))
            }
        }
    }
    Ok(())
}

fn create_spec_device(rootfs: &Path, device: &LinuxDevice) -> Result<(), ContainerError> {
    let node = scoped_path(rootfs, device.path())?;
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(ContainerError::Invalid {
                what: format!("device {}", device.path().display()),
                reason: "type \"a\" is for cgroup rules, not nodes".into(),
            })
        }
    };
    if let Some(parent) = node.parent() {
        create_destination(parent, false)?;
    }
    let mode = Mode::from_bits_truncate(device.file_mode().unwrap_or(0o666));
    let dev = makedev(device.major() as u64, device.minor() as u64);
    match mknod(&node, kind, mode, dev) {
        Ok(()) => set_mode(&node, mode)?,
        Err(nix::Error::EEXIST) => {}
        Err(err) => {
            return Err(ContainerError::sys(
                format!("create device {}", node.display()),
                err,
            ))
        }
    }
    chown(
        &node,
        device.uid().map(Uid::from_raw),
        device.gid().map(Gid::from_raw),
    )
    .map_err(|err| ContainerError::sys(format!("chown device {}", node.display()), err))
}

fn set_mode(node: &Path, mode: Mode) -> Result<(), ContainerError> {
    fchmodat(AT_FDCWD, node, mode, FchmodatFlags::FollowSymlink).map_err(|err| {
        ContainerError::sys(format!("chmod {:o} {}", mode.bits(), node.display()), err)
    })
}

fn create_dev_symlinks(dev: &Path) -> Result<(), ContainerError> {
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    for (name, target) in links {
        let link = dev.join(name);
        match symlink(target, &link) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(ContainerError::io(
                    format!("create symlink {}", link.display()),
                    err,
                ))
            }
        }
    }
    Ok(())
}

/// pivot_root into `rootfs` without a put-old directory: stack the old root under the
/// new one, then detach it.
fn enter_rootfs(rootfs: &Path) -> Result<(), ContainerError> {
    chdir(rootfs).map_err(|err| ContainerError::sys(format!("chdir {}", rootfs.display()), err))?;
    pivot_root(".", ".")
        .map_err(|err| ContainerError::sys(format!("pivot_root {}", rootfs.display()), err))?;
    // The old root is now on top of "."; make sure its unmount stays in this namespace.
    mount_at(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|err| ContainerError::sys("detach the old root", err))?;
    chdir("/").map_err(|err| ContainerError::sys("chdir / in the new root", err))
}

/// `linux.readonlyPaths` then `linux.maskedPaths`; runs after pivot_root.
fn protect_paths(spec: &Spec) -> Result<(), ContainerError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let root = Path::new("/");
    for path in linux.readonly_paths().iter().flatten() {
        let target = scoped_path(root, Path::new(path))?;
        if !target.exists() {
            continue;
        }
        mount_at(
            Some(&target),
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        mount_at(
            None,
            &target,
            None,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None,
        )?;
    }
    for path in linux.masked_paths().iter().flatten() {
        let target = scoped_path(root, Path::new(path))?;
        match fs::metadata(&target) {
            Err(_) => continue,
            Ok(meta) if meta.is_dir() => mount_at(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )?,
            Ok(_) => mount_at(
                Some(Path::new("/dev/null")),
                &target,
                None,
                MsFlags::MS_BIND,
                None,
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(options: &[&str]) -> Vec<String> {
        options.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let parsed = parse_options(&strings(&[
            "rbind", "ro", "nosuid", "nodev", "rslave", "size=64k", "mode=755",
        ]));
        assert!(parsed.bind && parsed.recursive);
        assert_eq!(
            parsed.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert_eq!(parsed.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(parsed.data, "size=64k,mode=755");
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let parsed = parse_options(&strings(&["ro", "rw", "noexec", "exec", "private"]));
        assert_eq!(parsed.flags, MsFlags::empty());
        assert_eq!(parsed.propagation, MsFlags::MS_PRIVATE);
        assert!(!parsed.bind);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("real/dir")).expect("mkdir");
        symlink("/real", root.join("abs")).expect("symlink");
        symlink("../../../../../..", root.join("up")).expect("symlink");
        symlink("/etc", root.join("real/host_etc")).expect("symlink");
        symlink("loop2", root.join("loop1")).expect("symlink");
        symlink("loop1", root.join("loop2")).expect("symlink");

        assert_eq!(
            scoped_path(root, Path::new("/abs/dir/x")).expect("resolve"),
            root.join("real/dir/x")
        );
        assert_eq!(
            scoped_path(root, Path::new("/up/etc/passwd")).expect("resolve"),
            root.join("etc/passwd")
        );
        assert_eq!(
            scoped_path(root, Path::new("/real/host_etc/shadow")).expect("resolve"),
            root.join("etc/shadow")
        );
        assert_eq!(
            scoped_path(root, Path::new("/../../x")).expect("resolve"),
            root.join("x")
        );
        assert!(scoped_path(root, Path::new("/loop1/x")).is_err());
    }
}
