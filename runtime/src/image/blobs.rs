//! The content-addressed blob store: `blobs/sha256/<hex>`.
//!
//! A blob is written to a temporary file in the store's `tmp/` dir while its sha256 is
//! computed, fsynced, checked against the expected digest and only then renamed to its
//! final name, so a blob file that exists is always complete and verified. Concurrent
//! writers of the same blob each use their own temporary file; the last rename wins with
//! identical content.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::reference::is_sha256_hex;
use super::ImageError;

/// Distinguishes temporary names made by one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary file or dir that no other writer uses: `<kind>-<hex>-<pid>-<n>`.
/// The pid lets a later start tell leftovers of dead processes from live work.
pub(crate) fn temp_name(kind: &str, hex: &str) -> String {
    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{kind}-{hex}-{}-{counter}", std::process::id())
}

/// The pid embedded in a name made by [`temp_name`].
pub(crate) fn temp_name_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(3, '-');
    let _counter = parts.next()?;
    parts.next()?.parse().ok()
}

/// The hex part of a `sha256:<hex>` digest, or an error naming the digest.
pub(crate) fn sha256_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(hex),
        _ => Err(ImageError::InvalidDigest {
            digest: digest.to_string(),
        }),
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The blob directory of an image store.
#[derive(Debug, Clone)]
pub(crate) struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    /// A blob store in `dir` (`…/blobs/sha256`) staging writes in `tmp`.
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf) -> Self {
        Self { dir, tmp }
    }

    /// The directory holding the blobs.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join(sha256_hex(digest)?))
    }

    /// Whether the blob `digest` is in the store.
    pub(crate) fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|path| path.is_file())
    }

    /// The size of the stored blob `digest`.
    pub(crate) fn size(&self, digest: &str) -> Result<u64, ImageError> {
        let path = self.path(digest)?;
        fs::metadata(&path)
            .map(|meta| meta.len())
            .map_err(|source| ImageError::Io {
                action: "stat blob",
                path,
                source,
            })
    }

    /// Reads a small blob (manifest, config) and checks it still matches its digest.
    pub(crate) fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest)?;
        let bytes = fs::read(&path).map_err(|source| ImageError::Io {
            action: "read blob",
            path: path.clone(),
            source,
        })?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Starts writing the blob `digest`; `source` names where it comes from, for errors.
    pub(crate) fn writer(&self, digest: &str, source: &str) -> Result<BlobWriter, ImageError> {
        let hex = sha256_hex(digest)?;
        let temp_path = self.tmp.join(temp_name("blob", hex));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|source| ImageError::Io {
                action: "create temporary blob",
                path: temp_path.clone(),
                source,
            })?;
        Ok(BlobWriter {
            file: Some(file),
            temp_path,
            final_path: self.dir.join(hex),
            digest: digest.to_string(),
            source: source.to_string(),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Stores everything `reader` yields as blob `digest`, verified; returns its size.
    pub(crate) fn write_from(
        &self,
        digest: &str,
        source: &str,
        reader: &mut impl Read,
    ) -> Result<u64, ImageError> {
        let mut writer = self.writer(digest, source)?;
        let mut buffer = vec![0u8; 128 * 1024];
        loop {
            let count = reader.read(&mut buffer).map_err(|err| ImageError::Read {
                what: format!("blob {digest} from {source}"),
                source: err,
            })?;
            if count == 0 {
                break;
            }
            writer.write(&buffer[..count])?;
        }
        writer.commit()
    }

    /// Stores `bytes` as blob `digest`, verified.
    pub(crate) fn write_bytes(
        &self,
        digest: &str,
        source: &str,
        bytes: &[u8],
    ) -> Result<u64, ImageError> {
        let mut writer = self.writer(digest, source)?;
        writer.write(bytes)?;
        writer.commit()
    }
}

/// A blob being written; dropped without [`BlobWriter::commit`] it leaves nothing behind.
pub(crate) struct BlobWriter {
    file: Option<File>,
    temp_path: PathBuf,
    final_path: PathBuf,
    digest: String,
    source: String,
    hasher: Sha256,
    written: u64,
}

impl BlobWriter {
    /// Appends `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        let Some(file) = self.file.as_mut() else {
            return Err(ImageError::Io {
                action: "write temporary blob",
                path: self.temp_path.clone(),
                source: io::Error::other("writer already finished"),
            });
        };
        file.write_all(bytes).map_err(|source| ImageError::Io {
            action: "write temporary blob",
            path: self.temp_path.clone(),
            source,
        })?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Verifies the digest, makes the data durable and moves the blob into place.
    pub(crate) fn commit(mut self) -> Result<u64, ImageError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if actual != self.digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob from {}", self.source),
                expected: self.digest.clone(),
                actual,
            });
        }
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|source| ImageError::Io {
                action: "fsync temporary blob",
                path: self.temp_path.clone(),
                source,
            })?;
        }
        fs::rename(&self.temp_path, &self.final_path).map_err(|source| ImageError::Io {
            action: "rename blob into place",
            path: self.final_path.clone(),
            source,
        })?;
        Ok(self.written)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful commit the temporary file has been renamed away.
        if self.temp_path.exists() {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&blobs).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        (dir, BlobStore::new(blobs, tmp))
    }

    #[test]
    fn verified_blobs_are_stored_under_their_digest() {
        let (_dir, store) = store();
        let digest = sha256_digest(b"hello");
        assert!(!store.contains(&digest));
        assert_eq!(store.write_bytes(&digest, "test", b"hello").unwrap(), 5);
        assert!(store.contains(&digest));
        assert_eq!(store.read(&digest).unwrap(), b"hello");
        assert_eq!(store.size(&digest).unwrap(), 5);
        assert_eq!(fs::read_dir(&store.tmp).unwrap().count(), 0);
    }

    #[test]
    fn mismatching_content_is_rejected_and_leaves_nothing() {
        let (_dir, store) = store();
        let digest = sha256_digest(b"hello");
        let err = store.write_bytes(&digest, "a test", b"HELLO").unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains(&digest), "{err}");
        assert!(!store.contains(&digest));
        assert_eq!(fs::read_dir(&store.tmp).unwrap().count(), 0);
    }

    #[test]
    fn malformed_digests_are_rejected() {
        let (_dir, store) = store();
        for bad in ["sha256:abc", "md5:00", "sha256:../../etc/passwd", ""] {
            assert!(matches!(
                store.path(bad),
                Err(ImageError::InvalidDigest { .. })
            ));
        }
    }

    #[test]
    fn temp_names_carry_the_pid() {
        let name = temp_name("layer", "abcd");
        assert_eq!(temp_name_pid(&name), Some(std::process::id()));
        assert_eq!(temp_name_pid("garbage"), None);
    }
}
