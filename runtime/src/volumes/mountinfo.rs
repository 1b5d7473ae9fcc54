//! The mount table of the daemon's mount namespace (`/proc/self/mountinfo`) and the few
//! mount operations volumes need: tmpfs mounts made once (a restarted daemon finds them in the
//! table instead of stacking a second tmpfs over files containers already see) and unmounting
//! everything below a directory.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tracing::{debug, info};

use super::VolumeError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of the mount table, with the fields volumes look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

impl MountEntry {
    /// The `size=` of a tmpfs in bytes, as the kernel prints it (`size=1024k`).
    pub fn tmpfs_size_bytes(&self) -> Option<u64> {
        let size = self
            .super_options
            .split(',')
            .find_map(|option| option.strip_prefix("size="))?;
        let (digits, multiplier) = match size.as_bytes().last()? {
            b'k' | b'K' => (&size[..size.len() - 1], 1u64 << 10),
            b'm' | b'M' => (&size[..size.len() - 1], 1 << 20),
            b'g' | b'G' => (&size[..size.len() - 1], 1 << 30),
            _ => (size, 1),
        };
        digits.parse::<u64>().ok()?.checked_mul(multiplier)
    }
}

/// Reads the mount table of this process's mount namespace.
pub(super) fn read() -> Result<Vec<MountEntry>, VolumeError> {
    let text = std::fs::read(MOUNTINFO).map_err(|source| VolumeError::MountTable {
        path: PathBuf::from(MOUNTINFO),
        reason: source.to_string(),
    })?;
    Ok(parse(&text))
}

/// Parses mountinfo text; lines that do not have the documented shape are skipped.
pub(super) fn parse(text: &[u8]) -> Vec<MountEntry> {
    text.split(|b| *b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            // id parent major:minor root mount-point options [optional...] - fstype source super
            let separator = fields.iter().position(|f| *f == b"-")?;
            if separator < 6 || fields.len() < separator + 4 {
                return None;
            }
            Some(MountEntry {
                mount_point: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
                fs_type: String::from_utf8_lossy(&unescape(fields[separator + 1])).into_owned(),
                super_options: String::from_utf8_lossy(&unescape(fields[separator + 3]))
                    .into_owned(),
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\012`, `\011`, `\134`).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let octal = &field[i + 1..i + 4];
            if octal.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = octal
                    .iter()
                    .fold(0u32, |acc, digit| acc * 8 + u32::from(digit - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// The topmost mount at exactly `mount_point` (a canonical path), if any.
pub(super) fn find(mount_point: &Path) -> Result<Option<MountEntry>, VolumeError> {
    Ok(read()?
        .into_iter()
        .rev()
        .find(|entry| entry.mount_point == mount_point))
}

/// Mounts a tmpfs on `dir` (a canonical path) unless one is already there, and grows an
/// existing one when `grow_to` is above its current size. Returns whether anything was mounted.
pub(super) fn ensure_tmpfs(
    volume: &str,
    dir: &Path,
    mode: u32,
    size: Option<u64>,
    grow_to: Option<u64>,
) -> Result<bool, VolumeError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mount_err = |action: &'static str| {
        move |errno: Errno| VolumeError::Io {
            volume: volume.to_string(),
            action,
            path: dir.to_path_buf(),
            source: errno.into(),
        }
    };
    if let Some(existing) = find(dir)? {
        if existing.fs_type != "tmpfs" {
            return Err(VolumeError::Invalid {
                volume: volume.to_string(),
                reason: format!(
                    "{} is already a {} mount, expected tmpfs",
                    dir.display(),
                    existing.fs_type
                ),
            });
        }
        if let (Some(wanted), Some(current)) = (grow_to, existing.tmpfs_size_bytes()) {
            if wanted > current {
                info!(volume, dir = %dir.display(), current, wanted, "growing tmpfs");
                let data = format!("size={wanted}");
                mount(
                    None::<&str>,
                    dir,
                    None::<&str>,
                    flags | MsFlags::MS_REMOUNT,
                    Some(data.as_str()),
                )
                .map_err(mount_err("resize tmpfs on"))?;
            }
        }
        debug!(volume, dir = %dir.display(), "tmpfs already mounted");
        return Ok(false);
    }
    let mut data = format!("mode={mode:04o}");
    if let Some(bytes) = size {
        data.push_str(&format!(",size={bytes}"));
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some(data.as_str()),
    )
    .map_err(mount_err("mount tmpfs on"))?;
    info!(volume, dir = %dir.display(), options = %data, "mounted tmpfs");
    Ok(true)
}

/// Mounts strictly below `root` (canonical), deepest first.
pub(super) fn mounts_below(root: &Path) -> Result<Vec<PathBuf>, VolumeError> {
    let mut points: Vec<PathBuf> = read()?
        .into_iter()
        .map(|entry| entry.mount_point)
        .filter(|point| point != root && point.starts_with(root))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    points.dedup();
    Ok(points)
}

/// Lazily unmounts `point`; a point that is no longer mounted is not an error.
pub(super) fn detach(point: &Path) -> Result<(), Errno> {
    match umount2(point, MntFlags::MNT_DETACH) {
        Ok(()) => {
            info!(mount_point = %point.display(), "unmounted");
            Ok(())
        }
        Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = b"36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
                     40 36 0:50 / /tmp/x tmpfs rw - tmpfs tmpfs rw,size=1024k,mode=755\n\
                     garbage line\n";
        let entries = parse(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].mount_point, PathBuf::from("/mnt two"));
        assert_eq!(entries[0].fs_type, "ext3");
        assert_eq!(entries[1].super_options, "rw,size=1024k,mode=755");
        assert_eq!(entries[1].tmpfs_size_bytes(), Some(1024 * 1024));
        assert_eq!(entries[0].tmpfs_size_bytes(), None);
    }

    #[test]
    fn unescapes_octal_and_keeps_other_backslashes() {
        assert_eq!(unescape(b"a\\011b\\134c"), b"a\tb\\c".to_vec());
        assert_eq!(unescape(b"a\\9"), b"a\\9".to_vec());
        assert_eq!(unescape(b"end\\04"), b"end\\04".to_vec());
    }
}
