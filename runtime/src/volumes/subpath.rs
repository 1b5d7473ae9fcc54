//! subPath mounts, done the way the kubelet does them since CVE-2017-1002101: the subPath is
//! resolved one component at a time with `openat(O_NOFOLLOW)` from the volume root, symlinks
//! inside the volume are followed by hand and any step out of the volume (`..` above the
//! root, an absolute symlink) is refused; missing components are created as directories with
//! the volume root's mode. The opened file is then bind-mounted through `/proc/self/fd` to
//! `{pod_dir}/volume-subpaths/{volume}/{container}/{index}`, and that stable path is what the
//! container mounts, so a container that swaps a directory for a symlink later cannot
//! redirect the mount.
//!
//! A subPath of a configMap, secret, downwardAPI or projected volume is a bind mount of one
//! version of the data: it does not receive updates (the same as in Kubernetes).

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{DirBuilder, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{open, openat, readlinkat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode, SFlag};
use tracing::info;

use super::mountinfo;

/// Symlinks followed at most while resolving one subPath (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Expands `$(VAR)` in a subPathExpr as Kubernetes does: unknown variables stay as written,
/// `$$` is a literal `$`.
pub(super) fn expand(input: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        match after.chars().next() {
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(other) => {
                out.push('$');
                out.push(other);
                rest = &after[other.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks that a subPath stays inside its volume by its text: relative, no `..`.
pub(super) fn validate(sub_path: &str) -> Result<(), String> {
    let path = Path::new(sub_path);
    if path.is_absolute() {
        return Err(format!("subPath {sub_path:?} must be a relative path"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("subPath {sub_path:?} must not contain '..'"));
    }
    if sub_path.contains('\0') {
        return Err(format!("subPath {sub_path:?} contains a NUL byte"));
    }
    Ok(())
}

/// Opens `sub_path` below `volume_root` without leaving the volume, creating missing
/// directories; returns an `O_PATH` descriptor of the result.
pub(super) fn open_inside(volume_root: &Path, sub_path: &str) -> Result<OwnedFd, String> {
    let errno_text = |what: String| move |errno: Errno| format!("{what}: {}", errno.desc());
    let root = open(
        volume_root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_text(format!(
        "cannot open the volume at {}",
        volume_root.display()
    )))?;
    let root_mode = fstat(&root)
        .map_err(errno_text("cannot inspect the volume root".to_string()))?
        .st_mode
        & 0o7777;
    let mut stack: Vec<OwnedFd> = vec![root];
    let mut pending: VecDeque<OsString> = components(OsStr::new(sub_path));
    let mut symlinks_followed = 0;
    let mut final_is_file = false;
    while let Some(name) = pending.pop_front() {
        if final_is_file {
            return Err(format!(
                "subPath {sub_path:?} goes through a file that is not a directory"
            ));
        }
        if name == ".." {
            if stack.len() == 1 {
                return Err(format!("subPath {sub_path:?} leads out of the volume"));
            }
            stack.pop();
            continue;
        }
        let parent = stack
            .last()
            .ok_or("subPath resolution lost its directory")?;
        let stat = match fstatat(parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => {
                match mkdirat(
                    parent,
                    name.as_os_str(),
                    Mode::from_bits_truncate(root_mode),
                ) {
                    Ok(()) => {
                        // mkdirat is subject to the umask; give the new dir the volume's mode
                        // so that, as in the kubelet, containers can write where they could.
                        let created = openat(
                            parent,
                            name.as_os_str(),
                            OFlag::O_RDONLY
                                | OFlag::O_DIRECTORY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        )
                        .and_then(|dir| fchmod(&dir, Mode::from_bits_truncate(root_mode)));
                        if let Err(errno) = created {
                            return Err(errno_text(format!("cannot set the mode of {name:?}"))(
                                errno,
                            ));
                        }
                    }
                    Err(Errno::EEXIST) => {}
                    Err(errno) => {
                        return Err(
                            errno_text(format!("cannot create {name:?} in the subPath"))(errno),
                        )
                    }
                }
                pending.push_front(name);
                continue;
            }
            Err(errno) => return Err(errno_text(format!("cannot inspect {name:?}"))(errno)),
        };
        let file_type = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        if file_type == SFlag::S_IFLNK {
            symlinks_followed += 1;
            if symlinks_followed > MAX_SYMLINKS {
                return Err(format!(
                    "subPath {sub_path:?} has too many levels of symlinks"
                ));
            }
            let target = readlinkat(parent, name.as_os_str())
                .map_err(errno_text(format!("cannot read the symlink {name:?}")))?;
            if Path::new(&target).is_absolute() {
                return Err(format!(
                    "subPath {sub_path:?} goes through the symlink {name:?} to the absolute \
                     path {target:?}, which may lead out of the volume"
                ));
            }
            for component in components(&target).into_iter().rev() {
                pending.push_front(component);
            }
            continue;
        }
        let is_dir = file_type == SFlag::S_IFDIR;
        let mut flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if is_dir {
            flags |= OFlag::O_DIRECTORY;
        }
        let fd = openat(parent, name.as_os_str(), flags, Mode::empty())
            .map_err(errno_text(format!("cannot open {name:?}")))?;
        // It may have been swapped for a symlink between fstatat and openat.
        let opened = fstat(&fd).map_err(errno_text(format!("cannot inspect {name:?}")))?;
        if opened.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits() {
            return Err(format!("{name:?} changed while the subPath was resolved"));
        }
        final_is_file = !is_dir;
        stack.push(fd);
    }
    stack
        .pop()
        .ok_or_else(|| "subPath resolution lost its directory".to_string())
}

fn components(path: &OsStr) -> VecDeque<OsString> {
    path.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect()
}

/// Bind-mounts the opened subPath onto `target` (made a file or dir to match) unless
/// `target` is already a mount point from an earlier run; returns `target`.
pub(super) fn bind(opened: &OwnedFd, target: &Path) -> Result<PathBuf, String> {
    if let Some(parent) = target.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    if target.exists() {
        let canonical = target
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", target.display()))?;
        if mountinfo::find(&canonical)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(canonical);
        }
    }
    let stat = fstat(opened).map_err(|e| format!("cannot inspect the subPath: {}", e.desc()))?;
    let is_dir = stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits();
    let made = if is_dir {
        DirBuilder::new().mode(0o750).recursive(true).create(target)
    } else {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .map(drop)
    };
    made.map_err(|e| format!("cannot create the mount point {}: {e}", target.display()))?;
    let source = format!("/proc/self/fd/{}", opened.as_raw_fd());
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "cannot bind-mount the subPath on {}: {}",
            target.display(),
            e.desc()
        )
    })?;
    info!(target = %target.display(), "bind-mounted subPath");
    Ok(target.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubernetes() {
        let env = BTreeMap::from([
            ("POD_NAME".to_string(), "web-0".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]);
        assert_eq!(expand("logs/$(POD_NAME)", &env), "logs/web-0");
        assert_eq!(expand("$(MISSING)/x", &env), "$(MISSING)/x");
        assert_eq!(expand("a$$(POD_NAME)", &env), "a$(POD_NAME)");
        assert_eq!(expand("a$(EMPTY)b", &env), "ab");
        assert_eq!(expand("$(unclosed", &env), "$(unclosed");
        assert_eq!(expand("cost$5$", &env), "cost$5$");
        assert_eq!(expand("é$é", &env), "é$é");
    }

    #[test]
    fn validates_text() {
        assert!(validate("a/b").is_ok());
        assert!(validate("/etc").is_err());
        assert!(validate("a/../../etc").is_err());
        assert!(validate("..").is_err());
        assert!(validate("..a").is_ok());
    }
}
