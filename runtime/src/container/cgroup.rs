//! Joining cgroups the daemon has already created (the executor never creates or limits).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::ContainerError;

/// One mounted cgroup hierarchy, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point (usually `/`).
    pub root: String,
    /// v1: the controllers (and `name=` option) of the hierarchy; v2: `None`.
    pub controllers: Option<Vec<String>>,
}

/// The cgroup hierarchies mounted in the caller's mount namespace.
pub(crate) fn cgroup_mounts() -> Result<Vec<CgroupMount>, ContainerError> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| ContainerError::io("read /proc/self/mountinfo", err))?;
    Ok(parse_cgroup_mounts(&text))
}

/// Picks the cgroup and cgroup2 mounts out of a mountinfo text.
pub(crate) fn parse_cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let fs_type = after.next()?;
            let _source = after.next()?;
            let super_options = after.next().unwrap_or("");
            let root = unescape(fields.get(3)?);
            let mount_point = PathBuf::from(unescape(fields.get(4)?));
            let controllers = match fs_type {
                "cgroup2" => None,
                "cgroup" => Some(
                    super_options
                        .split(',')
                        .filter(|option| !matches!(*option, "rw" | "ro"))
                        .map(str::to_string)
                        .collect(),
                ),
                _ => return None,
            };
            Some(CgroupMount {
                mount_point,
                root,
                controllers,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, etc.).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(value) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Moves the calling process into `cgroups_path` of every mounted hierarchy where that
/// cgroup exists (writes "0" to its `cgroup.procs`). Fails if it exists in none, which
/// means the daemon and the bundle disagree.
pub(crate) fn join_cgroups_path(
    mounts: &[CgroupMount],
    cgroups_path: &Path,
) -> Result<(), ContainerError> {
    let relative = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let mut joined = 0;
    for mount in mounts {
        let dir = mount.mount_point.join(relative);
        if !dir.is_dir() {
            continue;
        }
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, b"0")
            .map_err(|err| ContainerError::io(format!("join cgroup {}", procs.display()), err))?;
        joined += 1;
    }
    if joined == 0 {
        return Err(ContainerError::Invalid {
            what: format!("linux.cgroupsPath {}", cgroups_path.display()),
            reason: "no mounted cgroup hierarchy has this cgroup".into(),
        });
    }
    Ok(())
}

/// Opens, for writing, the `cgroup.procs` files of the cgroups process `pid` is in, so a
/// later [`join_opened`] can move a process there even after it left the host's mount
/// namespace. The root cgroups and hierarchies not mounted here are skipped.
pub(crate) fn open_process_cgroups(
    mounts: &[CgroupMount],
    pid: i32,
) -> Result<Vec<(PathBuf, File)>, ContainerError> {
    let path = format!("/proc/{pid}/cgroup");
    let text =
        fs::read_to_string(&path).map_err(|err| ContainerError::io(format!("read {path}"), err))?;
    let mut opened = Vec::new();
    for (mount, cgroup) in match_process_cgroups(mounts, &text) {
        let procs = mount
            .mount_point
            .join(cgroup.trim_start_matches('/'))
            .join("cgroup.procs");
        let file = OpenOptions::new()
            .write(true)
            .open(&procs)
            .map_err(|err| ContainerError::io(format!("open {}", procs.display()), err))?;
        opened.push((procs, file));
    }
    Ok(opened)
}

/// Pairs each line of a `/proc/<pid>/cgroup` text with the hierarchy mounted for it and
/// the cgroup path relative to that mount. Root cgroups are left out.
pub(crate) fn match_process_cgroups<'a>(
    mounts: &'a [CgroupMount],
    proc_cgroup: &str,
) -> Vec<(&'a CgroupMount, String)> {
    let mut matched = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_hierarchy), Some(controllers), Some(cgroup)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let mount = mounts.iter().find(|mount| match &mount.controllers {
            None => controllers.is_empty(),
            Some(options) => {
                !controllers.is_empty()
                    && controllers
                        .split(',')
                        .all(|c| options.iter().any(|o| o == c))
            }
        });
        let Some(mount) = mount else { continue };
        let relative = if mount.root == "/" {
            cgroup
        } else {
            match cgroup.strip_prefix(mount.root.as_str()) {
                Some(rest) => rest,
                None => continue,
            }
        };
        if relative.trim_start_matches('/').is_empty() {
            continue;
        }
        matched.push((mount, relative.to_string()));
    }
    matched
}

/// Moves the calling process into the cgroups opened by [`open_process_cgroups`].
pub(crate) fn join_opened(opened: &mut [(PathBuf, File)]) -> Result<(), ContainerError> {
    for (procs, file) in opened {
        file.write_all(b"0")
            .map_err(|err| ContainerError::io(format!("join cgroup {}", procs.display()), err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 /sub /mnt/odd\\040dir rw - cgroup cgroup rw,pids
";

    #[test]
    fn finds_v1_and_v2_hierarchies() {
        let mounts = parse_cgroup_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(mounts[0].controllers, Some(vec!["cpu".to_string()]));
        assert_eq!(
            mounts[2].controllers,
            Some(vec!["name=systemd".to_string()])
        );
        assert_eq!(mounts[3].controllers, None);
        assert_eq!(mounts[4].mount_point, PathBuf::from("/mnt/odd dir"));
        assert_eq!(mounts[4].root, "/sub");
    }

    #[test]
    fn process_cgroups_map_to_mounts_and_skip_roots() {
        let mounts = parse_cgroup_mounts(MOUNTINFO);
        let proc_cgroup = "\
12:pids:/sub/pod/c
4:memory:/pod/c
3:cpu:/
1:name=systemd:/user.slice
0::/
2:blkio:/pod/c
";
        let matched: Vec<(PathBuf, String)> = match_process_cgroups(&mounts, proc_cgroup)
            .into_iter()
            .map(|(mount, path)| (mount.mount_point.clone(), path))
            .collect();
        assert_eq!(
            matched,
            vec![
                (PathBuf::from("/mnt/odd dir"), "/pod/c".to_string()),
                (PathBuf::from("/sys/fs/cgroup/memory"), "/pod/c".to_string()),
                (
                    PathBuf::from("/sys/fs/cgroup/systemd"),
                    "/user.slice".to_string()
                ),
            ]
        );
    }

    #[test]
    fn joining_a_path_found_nowhere_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounts = vec![CgroupMount {
            mount_point: dir.path().to_path_buf(),
            root: "/".into(),
            controllers: None,
        }];
        let err = join_cgroups_path(&mounts, Path::new("/absent")).expect_err("absent");
        assert!(err.to_string().contains("/absent"), "{err}");
    }
}
