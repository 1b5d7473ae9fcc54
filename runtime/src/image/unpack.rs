//! Unpacking one layer blob into a directory that overlayfs can use as a lower dir.
//!
//! The layer is extracted into a temporary directory and renamed into place only when it is
//! complete and its diffID (the sha256 of the uncompressed tar) matched the image config, so
//! a `layers/<diffid-hex>` directory always holds a whole, verified layer.
//!
//! Entries are written by hand rather than with `tar::Entry::unpack_in` because a layer is
//! not a plain archive:
//! - AUFS whiteouts become overlayfs ones: `.wh.<name>` → a 0:0 character device `<name>`,
//!   `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory;
//! - absolute paths and `..` are rejected, not silently rewritten;
//! - a parent path that runs through a symlink is resolved inside the layer the way the
//!   container will see it (an absolute target is re-rooted at the layer root) and rejected
//!   when it climbs above the root, so nothing is ever written outside the layer;
//! - an existing file at the destination is replaced, never written through.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};
use tracing::{debug, warn};

use super::ImageError;

/// The AUFS prefix that marks a whiteout entry.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The AUFS marker that makes its directory opaque.
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to treat a directory as opaque.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// How many symlinks one path may traverse, as the kernel's MAXSYMLINKS.
const MAX_SYMLINK_HOPS: u32 = 40;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerCompression {
    /// A plain tar.
    None,
    /// A gzip-compressed tar.
    Gzip,
}

impl LayerCompression {
    /// The compression of a layer with `media_type`, for OCI and Docker layer types.
    pub(crate) fn from_media_type(media_type: &str, digest: &str) -> Result<Self, ImageError> {
        let unsupported = || ImageError::UnsupportedLayer {
            digest: digest.to_string(),
            media_type: media_type.to_string(),
        };
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(LayerCompression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Ok(LayerCompression::Gzip)
            }
            _ => Err(unsupported()),
        }
    }
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buf)?;
        self.hasher.update(&buf[..count]);
        self.bytes += count as u64;
        Ok(count)
    }
}

/// Unpacks the layer blob at `blob_path` into `staging_dir` (which must not exist), checks
/// that the uncompressed tar hashes to `diff_id`, then renames it to `final_dir`. When
/// `final_dir` already exists (another unpack won the race) the staging copy is dropped.
/// Returns the uncompressed size.
pub(crate) fn unpack_layer(
    blob_path: &Path,
    compression: LayerCompression,
    diff_id: &str,
    staging_dir: &Path,
    final_dir: &Path,
) -> Result<u64, ImageError> {
    let result = unpack_into(blob_path, compression, diff_id, staging_dir)
        .and_then(|size| publish(staging_dir, final_dir).map(|()| size));
    if staging_dir.exists() {
        if let Err(err) = fs::remove_dir_all(staging_dir) {
            warn!(path = %staging_dir.display(), %err, "could not remove a staging layer dir");
        }
    }
    result
}

fn unpack_into(
    blob_path: &Path,
    compression: LayerCompression,
    diff_id: &str,
    staging_dir: &Path,
) -> Result<u64, ImageError> {
    let io_err = |path: &Path, action: &'static str| {
        let path = path.to_path_buf();
        move |source: io::Error| ImageError::Io {
            action,
            path,
            source,
        }
    };
    fs::create_dir(staging_dir).map_err(io_err(staging_dir, "create staging layer dir"))?;
    let blob = File::open(blob_path).map_err(io_err(blob_path, "open layer blob"))?;
    let blob = io::BufReader::with_capacity(256 * 1024, blob);
    let decompressed: Box<dyn Read> = match compression {
        LayerCompression::None => Box::new(blob),
        LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
    };
    let mut reader = HashingReader {
        inner: decompressed,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut writer = LayerWriter {
        root: staging_dir.to_path_buf(),
        diff_id,
        dir_times: Vec::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut reader);
        let entries = archive.entries().map_err(|source| ImageError::LayerTar {
            diff_id: diff_id.to_string(),
            source,
        })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| ImageError::LayerTar {
                diff_id: diff_id.to_string(),
                source,
            })?;
            writer.write_entry(&mut entry)?;
        }
    }
    // The tar ends with padding the archive reader may not consume; it is part of the diffID.
    io::copy(&mut reader, &mut io::sink()).map_err(|source| ImageError::LayerTar {
        diff_id: diff_id.to_string(),
        source,
    })?;
    let actual = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
    if actual != diff_id {
        return Err(ImageError::DiffIdMismatch {
            blob: blob_path.to_path_buf(),
            expected: diff_id.to_string(),
            actual,
        });
    }
    writer.apply_dir_times();
    // No fsync of the unpacked files: a killed daemon loses nothing the page cache holds,
    // and syncing a whole layer (syncfs waits for every writer on the file system) costs
    // seconds on a busy node. After a power loss a layer may need `image rm` and a re-pull.
    Ok(reader.bytes)
}

fn publish(staging_dir: &Path, final_dir: &Path) -> Result<(), ImageError> {
    match fs::rename(staging_dir, final_dir) {
        Ok(()) => Ok(()),
        // Lost a race with a concurrent unpack of the same diffID: its copy is as good.
        Err(err) if final_dir.is_dir() => {
            debug!(path = %final_dir.display(), %err, "layer already unpacked concurrently");
            Ok(())
        }
        Err(source) => Err(ImageError::Io {
            action: "rename unpacked layer into place",
            path: final_dir.to_path_buf(),
            source,
        }),
    }
}

/// Writes tar entries under `root`, never outside it.
struct LayerWriter<'a> {
    root: PathBuf,
    diff_id: &'a str,
    /// Directory mtimes, applied last because creating children changes them.
    dir_times: Vec<(PathBuf, u64)>,
}

impl LayerWriter<'_> {
    fn bad_entry(&self, entry: &Path, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeLayerEntry {
            diff_id: self.diff_id.to_string(),
            entry: entry.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError {
        let path = path.to_path_buf();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }

    /// Splits an archive path into its normal components, rejecting absolute paths and `..`.
    fn relative_components(&self, path: &Path) -> Result<Vec<OsString>, ImageError> {
        let mut components = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(name) => components.push(name.to_os_string()),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(self.bad_entry(path, "path contains \"..\""));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.bad_entry(path, "path is absolute"));
                }
            }
        }
        Ok(components)
    }

    /// Resolves the directory `components` inside the layer, following symlinks the way the
    /// container will (absolute targets start again at the layer root) and creating missing
    /// directories. Fails when a symlink climbs above the root.
    fn resolve_dir(
        &self,
        entry: &Path,
        components: &[OsString],
        create_missing: bool,
    ) -> Result<PathBuf, ImageError> {
        let mut pending: VecDeque<OsString> = components.iter().cloned().collect();
        let mut resolved: Vec<OsString> = Vec::new();
        let mut hops = 0u32;
        while let Some(name) = pending.pop_front() {
            if name == "." || name.is_empty() {
                continue;
            }
            if name == ".." {
                if resolved.pop().is_none() {
                    return Err(
                        self.bad_entry(entry, "a symlink in its path points outside the layer")
                    );
                }
                continue;
            }
            let mut candidate = self.root.clone();
            candidate.extend(&resolved);
            candidate.push(&name);
            match fs::symlink_metadata(&candidate) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(self.bad_entry(entry, "too many levels of symlinks"));
                    }
                    let target =
                        fs::read_link(&candidate).map_err(self.io("read symlink", &candidate))?;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    for component in target.components().rev() {
                        match component {
                            Component::Normal(part) => pending.push_front(part.to_os_string()),
                            Component::ParentDir => pending.push_front(OsString::from("..")),
                            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                        }
                    }
                }
                Ok(meta) if meta.is_dir() => resolved.push(name),
                Ok(_) => {
                    return Err(self
                        .bad_entry(entry, format!("{} is not a directory", candidate.display())));
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound && create_missing => {
                    // Tars may omit directory entries; the parents get root-owned 0755.
                    fs::create_dir(&candidate).map_err(self.io("create directory", &candidate))?;
                    resolved.push(name);
                }
                Err(err) => return Err(self.io("inspect", &candidate)(err)),
            }
        }
        let mut dir = self.root.clone();
        dir.extend(&resolved);
        Ok(dir)
    }

    /// Removes whatever is at `path` (not following symlinks) unless it is a directory
    /// and `keep_dir` is set. Returns whether a directory was kept.
    fn clear_destination(&self, path: &Path, keep_dir: bool) -> Result<bool, ImageError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                if keep_dir {
                    return Ok(true);
                }
                fs::remove_dir_all(path).map_err(self.io("replace directory", path))?;
                Ok(false)
            }
            Ok(_) => {
                fs::remove_file(path).map_err(self.io("replace file", path))?;
                Ok(false)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(self.io("inspect", path)(err)),
        }
    }

    fn write_entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), ImageError> {
        let entry_path = entry
            .path()
            .map_err(|source| ImageError::LayerTar {
                diff_id: self.diff_id.to_string(),
                source,
            })?
            .into_owned();
        let entry_type = entry.header().entry_type();
        if matches!(
            entry_type,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            return Ok(());
        }
        let mut components = self.relative_components(&entry_path)?;
        let Some(name) = components.pop() else {
            // "./" itself: the layer root, whose attributes we do not take.
            return Ok(());
        };
        let parent = self.resolve_dir(&entry_path, &components, true)?;
        let name_text = name.to_string_lossy();

        if name_text == OPAQUE_MARKER {
            return set_xattr(&parent, OVERLAY_OPAQUE_XATTR, b"y")
                .map_err(self.io("set trusted.overlay.opaque", &parent));
        }
        if name_text.starts_with(".wh..wh.") {
            // Other AUFS bookkeeping (e.g. `.wh..wh.plnk`) means nothing to overlayfs.
            return Ok(());
        }
        if let Some(hidden) = name_text.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(self.bad_entry(&entry_path, "malformed whiteout name"));
            }
            let target = parent.join(hidden);
            self.clear_destination(&target, false)?;
            nix::sys::stat::mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|errno| {
                self.io("create whiteout device", &target)(io::Error::from(errno))
            })?;
            let header = entry.header();
            let (uid, gid) = owner(header, self.diff_id, &entry_path)?;
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(self.io("chown whiteout", &target))?;
            return Ok(());
        }

        let target = parent.join(&name);
        let header = entry.header().clone();
        let (uid, gid) = owner(&header, self.diff_id, &entry_path)?;
        let mode = header.mode().map_err(|source| ImageError::LayerTar {
            diff_id: self.diff_id.to_string(),
            source,
        })? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);

        match entry_type {
            tar::EntryType::Directory => {
                let kept = self.clear_destination(&target, true)?;
                if !kept {
                    fs::create_dir(&target).map_err(self.io("create directory", &target))?;
                }
                std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                    .map_err(self.io("chown directory", &target))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .map_err(self.io("chmod directory", &target))?;
                self.dir_times.push((target.clone(), mtime));
            }
            // tar-rs fills the holes of GNU sparse entries when they are read.
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.clear_destination(&target, false)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(self.io("create file", &target))?;
                io::copy(entry, &mut file).map_err(self.io("write file", &target))?;
                // chown before chmod: chown clears the set-id bits.
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                    .map_err(self.io("chown file", &target))?;
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(self.io("chmod file", &target))?;
                set_mtime(&target, mtime);
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|source| ImageError::LayerTar {
                        diff_id: self.diff_id.to_string(),
                        source,
                    })?
                    .ok_or_else(|| self.bad_entry(&entry_path, "symlink without a target"))?
                    .into_owned();
                self.clear_destination(&target, false)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(self.io("create symlink", &target))?;
                std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                    .map_err(self.io("chown symlink", &target))?;
                set_mtime(&target, mtime);
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|source| ImageError::LayerTar {
                        diff_id: self.diff_id.to_string(),
                        source,
                    })?
                    .ok_or_else(|| self.bad_entry(&entry_path, "hardlink without a target"))?
                    .into_owned();
                let mut link_components = self.relative_components(&link).map_err(|_| {
                    self.bad_entry(
                        &entry_path,
                        format!("hardlink target {link:?} leaves the layer"),
                    )
                })?;
                let Some(link_name) = link_components.pop() else {
                    return Err(self.bad_entry(&entry_path, "hardlink to the layer root"));
                };
                let link_parent = self.resolve_dir(&entry_path, &link_components, false)?;
                let source = link_parent.join(&link_name);
                match fs::symlink_metadata(&source) {
                    Ok(meta) if !meta.is_dir() => {}
                    _ => {
                        return Err(self.bad_entry(
                            &entry_path,
                            format!("hardlink target {link:?} is not a file in this layer"),
                        ));
                    }
                }
                if source == target {
                    return Ok(());
                }
                self.clear_destination(&target, false)?;
                fs::hard_link(&source, &target).map_err(self.io("create hardlink", &target))?;
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                self.clear_destination(&target, false)?;
                let kind = match entry_type {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let device = nix::sys::stat::makedev(u64::from(major), u64::from(minor));
                nix::sys::stat::mknod(&target, kind, Mode::from_bits_truncate(mode), device)
                    .map_err(|errno| {
                        self.io("create device node", &target)(io::Error::from(errno))
                    })?;
                std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                    .map_err(self.io("chown device node", &target))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .map_err(self.io("chmod device node", &target))?;
                set_mtime(&target, mtime);
            }
            other => {
                debug!(entry = %entry_path.display(), kind = ?other, "skipping unsupported tar entry type");
                return Ok(());
            }
        }
        self.apply_pax_xattrs(entry, &target, &entry_path)
    }

    /// Applies `SCHILY.xattr.*` records (file capabilities and user xattrs). Overlay and
    /// other trusted xattrs from an image are refused: they would let a layer forge
    /// overlayfs metadata such as redirects.
    fn apply_pax_xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<R>,
        target: &Path,
        entry_path: &Path,
    ) -> Result<(), ImageError> {
        let Ok(Some(extensions)) = entry.pax_extensions() else {
            return Ok(());
        };
        for extension in extensions.flatten() {
            let Ok(key) = extension.key() else { continue };
            let Some(xattr) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            if !(xattr.starts_with("user.") || xattr == "security.capability") {
                debug!(entry = %entry_path.display(), xattr, "ignoring xattr from layer");
                continue;
            }
            if let Err(err) = set_xattr(target, xattr, extension.value_bytes()) {
                warn!(entry = %entry_path.display(), xattr, %err, "could not set xattr from layer");
            }
        }
        Ok(())
    }

    fn apply_dir_times(&self) {
        for (dir, mtime) in self.dir_times.iter().rev() {
            set_mtime(dir, *mtime);
        }
    }
}

fn owner(header: &tar::Header, diff_id: &str, entry: &Path) -> Result<(u32, u32), ImageError> {
    let bad = |what: &str, source: io::Error| ImageError::UnsafeLayerEntry {
        diff_id: diff_id.to_string(),
        entry: entry.to_path_buf(),
        reason: format!("bad {what}: {source}"),
    };
    let uid = header.uid().map_err(|err| bad("uid", err))?;
    let gid = header.gid().map_err(|err| bad("gid", err))?;
    let uid = u32::try_from(uid).map_err(|_| bad("uid", io::Error::other(uid.to_string())))?;
    let gid = u32::try_from(gid).map_err(|_| bad("gid", io::Error::other(gid.to_string())))?;
    Ok((uid, gid))
}

/// Best effort: a wrong mtime breaks nothing, so failures are only logged.
fn set_mtime(path: &Path, mtime: u64) {
    let seconds = i64::try_from(mtime).unwrap_or(0);
    let time = TimeSpec::new(seconds, 0);
    if let Err(errno) = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &time,
        &time,
        UtimensatFlags::NoFollowSymlink,
    ) {
        debug!(path = %path.display(), %errno, "could not set mtime");
    }
}

/// Sets an xattr on `path` itself (not a symlink's target).
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains NUL"))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; value is a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
