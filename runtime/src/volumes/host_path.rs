//! hostPath type checks, as the kubelet does them: the path is followed through symlinks
//! (`stat`, not `lstat`), `DirectoryOrCreate` makes the directory and its parents (0755),
//! and `FileOrCreate` makes an empty file (0644) but not its parent directory — Kubernetes
//! documents that a missing parent makes the pod fail, and skiff behaves the same.

use std::fs::{self, DirBuilder, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use tracing::info;

use super::VolumeError;

/// Checks (and for the `…OrCreate` types creates) `path` according to hostPath `type_`.
pub(super) fn check_type(volume: &str, path: &Path, type_: &str) -> Result<(), VolumeError> {
    let expected = match type_ {
        "" => return Ok(()),
        "DirectoryOrCreate" | "Directory" => "Directory",
        "FileOrCreate" | "File" => "File",
        "Socket" => "Socket",
        "CharDevice" => "CharDevice",
        "BlockDevice" => "BlockDevice",
        other => {
            return Err(VolumeError::Invalid {
                volume: volume.to_string(),
                reason: format!(
                    "unknown hostPath type {other:?} (expected one of \"\", DirectoryOrCreate, \
                     Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice)"
                ),
            })
        }
    };
    let io_err = |action: &'static str| {
        move |source: io::Error| VolumeError::Io {
            volume: volume.to_string(),
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => match type_ {
            "DirectoryOrCreate" => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .map_err(io_err("create the hostPath directory"))?;
                info!(volume, path = %path.display(), "created hostPath directory");
                fs::metadata(path).map_err(io_err("inspect"))?
            }
            "FileOrCreate" => {
                let parent_missing = path
                    .parent()
                    .is_some_and(|parent| !parent.as_os_str().is_empty() && !parent.exists());
                if parent_missing {
                    return Err(VolumeError::HostPathType {
                        volume: volume.to_string(),
                        path: path.to_path_buf(),
                        expected,
                        found: "nothing, and its parent directory does not exist \
                                (FileOrCreate does not create parent directories)"
                            .to_string(),
                    });
                }
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(path)
                {
                    Ok(_) => info!(volume, path = %path.display(), "created hostPath file"),
                    // Someone else created it meanwhile: check what it is below.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("create the hostPath file")(e)),
                }
                fs::metadata(path).map_err(io_err("inspect"))?
            }
            _ => {
                return Err(VolumeError::HostPathType {
                    volume: volume.to_string(),
                    path: path.to_path_buf(),
                    expected,
                    found: "nothing (the path does not exist)".to_string(),
                })
            }
        },
        Err(e) => return Err(io_err("inspect")(e)),
    };
    let found = describe(&metadata);
    let matches = match expected {
        "Directory" => metadata.is_dir(),
        "File" => metadata.is_file(),
        "Socket" => metadata.file_type().is_socket(),
        "CharDevice" => metadata.file_type().is_char_device(),
        "BlockDevice" => metadata.file_type().is_block_device(),
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(VolumeError::HostPathType {
            volume: volume.to_string(),
            path: path.to_path_buf(),
            expected,
            found: found.to_string(),
        })
    }
}

/// What kind of file `metadata` describes, in words for error messages.
pub(super) fn describe(metadata: &Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a regular file"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_symlink() {
        "a symlink"
    } else {
        "an unknown kind of file"
    }
}
