//! The kubelet's AtomicWriter layout, so that a container sees either all of an object's old
//! files or all of its new ones, never a mix:
//!
//! ```text
//! {volume}/..2026_11_24_03_10_00.123456789/   the files of one version (dirs 0755)
//! {volume}/..data -> ..2026_11_24_03_10_00.123456789
//! {volume}/key    -> ..data/key               one symlink per top-level entry
//! ```
//!
//! An update writes a new timestamped dir, points a temporary symlink `..data_tmp` at it and
//! renames that over `..data` (rename is atomic), then adds/removes the user-visible
//! symlinks and deletes the old dir. Containers bind-mount the volume directory, so they see
//! the switch; a container that bind-mounted one file (subPath) keeps the old inode.
//!
//! Nothing is rewritten when the files on disk already hold the payload (same paths,
//! contents and modes), so an unchanged object keeps its data dir. Leftovers of a crash
//! (`..data_tmp`, data dirs `..data` does not point at) are removed on the next write.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use tracing::{debug, info};

use super::VolumeError;

const DATA_LINK: &str = "..data";
const DATA_LINK_TMP: &str = "..data_tmp";
const DIR_MODE: u32 = 0o755;
/// Kubernetes' limits on a projected path and on one of its components.
const MAX_PATH_LEN: usize = 4096;
const MAX_COMPONENT_LEN: usize = 255;

/// One file to project: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path (normalised, `/`-separated) → file.
pub(super) type Payload = BTreeMap<String, FileProjection>;

/// Normalises a user-given relative path (`a//./b` → `a/b`) or says why it is not allowed.
pub(super) fn clean_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("path must not be empty".to_string());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!("path {path:?} is longer than {MAX_PATH_LEN} bytes"));
    }
    if path.starts_with('/') {
        return Err(format!("path {path:?} must be relative"));
    }
    let components: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let Some(first) = components.first() else {
        return Err(format!("path {path:?} names no file"));
    };
    if components.contains(&"..") {
        return Err(format!("path {path:?} must not contain '..'"));
    }
    if first.starts_with("..") {
        return Err(format!("path {path:?} must not start with '..'"));
    }
    if let Some(long) = components.iter().find(|c| c.len() > MAX_COMPONENT_LEN) {
        return Err(format!(
            "path component {long:?} is longer than {MAX_COMPONENT_LEN} bytes"
        ));
    }
    if components.iter().any(|c| c.contains('\0')) {
        return Err(format!("path {path:?} contains a NUL byte"));
    }
    Ok(components.join("/"))
}

/// Checks that no path of the payload is also a directory of another path.
pub(super) fn check_conflicts(payload: &Payload) -> Result<(), String> {
    for path in payload.keys() {
        let mut prefix = String::new();
        for component in path.split('/') {
            if !prefix.is_empty() && payload.contains_key(&prefix) {
                return Err(format!(
                    "path {prefix:?} is both a file and a directory (of {path:?})"
                ));
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
        }
    }
    Ok(())
}

/// Makes `target_dir` (which must exist) hold exactly `payload`; returns whether it wrote
/// a new version.
pub(super) fn write(
    volume: &str,
    target_dir: &Path,
    payload: &Payload,
) -> Result<bool, VolumeError> {
    let err = |action: &'static str, path: &Path| {
        let volume = volume.to_string();
        let path = path.to_path_buf();
        move |source: io::Error| VolumeError::Io {
            volume,
            action,
            path,
            source,
        }
    };
    check_conflicts(payload).map_err(|reason| VolumeError::Invalid {
        volume: volume.to_string(),
        reason,
    })?;
    let data_link = target_dir.join(DATA_LINK);
    let old_data_dir = match fs::read_link(&data_link) {
        Ok(target) => Some(target),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(err("read the symlink", &data_link)(e)),
    };
    let unchanged = match &old_data_dir {
        Some(old) => holds_payload(&target_dir.join(old), payload)
            .map_err(err("compare the files in", &target_dir.join(old)))?,
        None => false,
    };

    let current_data_dir = if unchanged {
        old_data_dir.clone().unwrap_or_default()
    } else {
        let tmp_link = target_dir.join(DATA_LINK_TMP);
        remove_if_present(&tmp_link).map_err(err("remove", &tmp_link))?;
        let new_dir_name = create_timestamped_dir(target_dir)
            .map_err(err("create a data directory in", target_dir))?;
        let new_dir = target_dir.join(&new_dir_name);
        write_files(&new_dir, payload).map_err(err("write the files of", &new_dir))?;
        std::os::unix::fs::symlink(&new_dir_name, &tmp_link)
            .map_err(err("create the symlink", &tmp_link))?;
        fs::rename(&tmp_link, &data_link).map_err(err("rename over", &data_link))?;
        info!(volume, dir = %target_dir.display(), data = %new_dir_name.display(), files = payload.len(), "wrote volume data");
        new_dir_name
    };

    // User-visible entries: one symlink per top-level name, made even when nothing was
    // written (a crash may have happened between the rename and here).
    let top_level: BTreeSet<&str> = payload
        .keys()
        .filter_map(|path| path.split('/').next())
        .collect();
    for name in &top_level {
        let link = target_dir.join(name);
        let wanted = Path::new(DATA_LINK).join(name);
        match fs::read_link(&link) {
            Ok(existing) if existing == wanted => continue,
            Ok(_) => fs::remove_file(&link).map_err(err("remove", &link))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("read the symlink", &link)(e)),
        }
        std::os::unix::fs::symlink(&wanted, &link).map_err(err("create the symlink", &link))?;
    }

    // Remove what is no longer part of the payload: stale user-visible symlinks and every
    // data dir other than the current one.
    for entry in fs::read_dir(target_dir).map_err(err("list", target_dir))? {
        let entry = entry.map_err(err("list", target_dir))?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        let path = entry.path();
        let file_type = entry.file_type().map_err(err("inspect", &path))?;
        if name_str == DATA_LINK {
            continue;
        }
        if name_str.starts_with("..") {
            if Path::new(&name) != current_data_dir {
                debug!(volume, path = %path.display(), "removing old volume data");
                if file_type.is_dir() {
                    fs::remove_dir_all(&path).map_err(err("remove", &path))?;
                } else {
                    fs::remove_file(&path).map_err(err("remove", &path))?;
                }
            }
        } else if file_type.is_symlink() && !top_level.contains(name_str.as_ref()) {
            fs::remove_file(&path).map_err(err("remove", &path))?;
        }
    }
    Ok(!unchanged)
}

/// Whether `dir` holds exactly the payload's files with the same contents and modes.
fn holds_payload(dir: &Path, payload: &Payload) -> io::Result<bool> {
    let mut on_disk = BTreeMap::new();
    if !collect_files(dir, "", &mut on_disk)? {
        return Ok(false);
    }
    if on_disk.len() != payload.len() {
        return Ok(false);
    }
    for (path, projection) in payload {
        let Some((file, mode)) = on_disk.get(path) else {
            return Ok(false);
        };
        if *mode != projection.mode || fs::read(file)? != projection.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Collects regular files below `dir` as relative path → (path, mode); false when the dir
/// holds anything else (a symlink, a device), which a written version never does.
fn collect_files(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, (PathBuf, u32)>,
) -> io::Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let metadata = fs::symlink_metadata(entry.path())?;
        if metadata.is_dir() {
            if !collect_files(&entry.path(), &relative, files)? {
                return Ok(false);
            }
        } else if metadata.is_file() {
            files.insert(
                relative,
                (entry.path(), metadata.permissions().mode() & 0o7777),
            );
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Creates `..YYYY_MM_DD_HH_MM_SS.nnnnnnnnn` (UTC) in `parent`, mode 0755; returns its name.
fn create_timestamped_dir(parent: &Path) -> io::Result<PathBuf> {
    loop {
        let now = Timestamp::now();
        let name = format!(
            "..{}.{:09}",
            now.to_zoned(TimeZone::UTC).strftime("%Y_%m_%d_%H_%M_%S"),
            now.subsec_nanosecond()
        );
        let path = parent.join(&name);
        match DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => {
                fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))?;
                return Ok(PathBuf::from(name));
            }
            // Two writes within one nanosecond tick: take the next one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn write_files(dir: &Path, payload: &Payload) -> io::Result<()> {
    for (relative, projection) in payload {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(parent)?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(projection.mode)
            .open(&path)?;
        file.write_all(&projection.data)?;
        // The umask may have cleared bits the pod asked for.
        file.set_permissions(Permissions::from_mode(projection.mode))?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_and_rejects_paths() {
        assert_eq!(clean_path("a//./b").as_deref(), Ok("a/b"));
        assert_eq!(clean_path("key").as_deref(), Ok("key"));
        assert!(clean_path("/abs").is_err());
        assert!(clean_path("a/../b").is_err());
        assert!(clean_path("..data").is_err());
        assert!(clean_path("./.").is_err());
        assert!(clean_path("").is_err());
        assert_eq!(clean_path("a/..b").as_deref(), Ok("a/..b"));
    }

    #[test]
    fn finds_file_directory_conflicts() {
        let file = |data: &str| FileProjection {
            data: data.as_bytes().to_vec(),
            mode: 0o644,
        };
        let mut payload = Payload::new();
        payload.insert("a".into(), file("1"));
        payload.insert("b/c".into(), file("2"));
        assert!(check_conflicts(&payload).is_ok());
        payload.insert("a/d".into(), file("3"));
        assert!(check_conflicts(&payload).is_err());
    }
}
