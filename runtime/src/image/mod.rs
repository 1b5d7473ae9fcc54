//! The node's OCI image store under `{root}/images`.
//!
//! ```text
//! images/
//!   blobs/sha256/<hex>     manifests, configs and layer blobs, verified by sha256
//!   layers/<diffid-hex>/   each layer unpacked once, ready to be an overlayfs lower dir
//!   tmp/                   blobs and layers being written (`<kind>-<hex>-<pid>-<n>`)
//!   images.json            reference → manifest digest
//! ```
//!
//! Everything appears atomically: blobs and layers are staged in `tmp/` and renamed into
//! place once verified, and `images.json` is replaced by rename. A reference is recorded
//! only after its manifest, config and every layer are in place, so a recorded image is
//! always usable. Leftovers of a crashed process in `tmp/` are removed on open.
//!
//! Pulls and imports hold a shared lock for their whole run, garbage collection (after
//! `remove` and `import`) an exclusive one, so collection never deletes content an
//! in-flight pull or import has written but not yet referenced. Two concurrent pulls of
//! one image each stage their own copies; the renames make the result the same.

mod auth;
mod blobs;
mod layout;
mod pull;
mod reference;
mod unpack;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, Os};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

pub use auth::{auth_from_docker_config, RegistryCredentials};
pub use pull::{PullOptions, PullProgress};
pub use reference::{
    is_image_id, needs_pull, normalize_reference, ImageReference, PullPolicy, DOCKER_HUB_REGISTRY,
};

use blobs::{sha256_hex, temp_name, temp_name_pid, BlobStore};
use unpack::LayerCompression;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A reference that does not follow the distribution grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An `imagePullPolicy` that is not Always, IfNotPresent or Never.
    #[error("invalid image pull policy {policy:?}: expected Always, IfNotPresent or Never")]
    InvalidPullPolicy {
        /// The policy as given.
        policy: String,
    },
    /// The image is absent and the pull policy forbids pulling (`ErrImageNeverPull`).
    #[error("container image {reference:?} is not present with pull policy of Never")]
    NeverPull {
        /// The image reference.
        reference: String,
    },
    /// A dockerconfigjson document that cannot be used.
    #[error("docker config credentials for registry {registry:?}: {reason}")]
    InvalidDockerConfig {
        /// The registry credentials were looked up for.
        registry: String,
        /// What is wrong with the document.
        reason: String,
    },
    /// A digest that is not `sha256:<64 hex>`.
    #[error("unsupported or malformed digest {digest:?}: expected sha256:<64 hex digits>")]
    InvalidDigest {
        /// The digest as found.
        digest: String,
    },
    /// Content whose sha256 is not the digest it was announced under.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which content.
        what: String,
        /// The announced digest.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// Content whose size is not the size its descriptor announced.
    #[error("size mismatch for blob {digest}: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob digest.
        digest: String,
        /// The size in the descriptor.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// An uncompressed layer whose sha256 is not the diffID in the image config.
    #[error(
        "layer {} does not match the image config: diffID should be {expected}, the uncompressed tar hashes to {actual}",
        blob.display()
    )]
    DiffIdMismatch {
        /// The layer blob.
        blob: PathBuf,
        /// The diffID from the config.
        expected: String,
        /// The sha256 of the uncompressed tar.
        actual: String,
    },
    /// A layer media type we cannot unpack (e.g. zstd).
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    UnsupportedLayer {
        /// The layer blob digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// A layer tar entry that would escape the layer or is malformed.
    #[error("layer {diff_id}: refusing entry {}: {reason}", entry.display())]
    UnsafeLayerEntry {
        /// The layer diffID.
        diff_id: String,
        /// The entry path in the tar.
        entry: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A layer that is not a readable tar.
    #[error("layer {diff_id}: bad tar stream: {source}")]
    LayerTar {
        /// The layer diffID.
        diff_id: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A manifest, index or config that cannot be used.
    #[error("{what} {digest}: {reason}")]
    InvalidManifest {
        /// Which document (manifest, index, config).
        what: &'static str,
        /// Its digest.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An OCI layout archive that cannot be imported.
    #[error("image archive {}: {reason}", archive.display())]
    InvalidArchive {
        /// The archive file.
        archive: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No image under that reference.
    #[error("image {reference:?} not found in the image store")]
    NotFound {
        /// The reference as given.
        reference: String,
    },
    /// A registry request failed.
    #[error("pull {reference} from {registry}: {reason}")]
    Registry {
        /// The normalised reference.
        reference: String,
        /// The registry host contacted.
        registry: String,
        /// The failure.
        reason: String,
    },
    /// A read from an archive or download failed.
    #[error("read {what}: {source}")]
    Read {
        /// What was being read.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A file system operation on the store failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Blocking work could not be run to completion.
    #[error("image store task for {what} failed: {reason}")]
    Task {
        /// What the task was doing.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The normalised references that name this image, sorted.
    pub references: Vec<String>,
    /// The digest of the (platform-specific) image manifest.
    pub manifest_digest: String,
    /// The digest of the image config: the image ID.
    pub config_digest: String,
    /// The image config (entrypoint, cmd, env, working dir, user, …).
    pub config: ImageConfiguration,
    /// The unpacked layer directories, lowest layer first (reverse them for `lowerdir=`).
    pub layer_dirs: Vec<PathBuf>,
    /// The content size: config plus compressed layers, as pulled.
    pub size: u64,
}

impl ImageRecord {
    /// The image ID, `sha256:<hex>` of the config.
    pub fn image_id(&self) -> String {
        self.config_digest.clone()
    }

    /// `registry/repository@<manifest digest>` for each repository naming this image (what
    /// the kubelet reports as `imageID`).
    pub fn repo_digests(&self) -> Vec<String> {
        let names: BTreeSet<String> = self
            .references
            .iter()
            .filter_map(|reference| ImageReference::parse(reference).ok())
            .map(|parsed| format!("{}@{}", parsed.name(), self.manifest_digest))
            .collect();
        names.into_iter().collect()
    }
}

/// The on-disk reference table.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ReferenceTable {
    /// Normalised reference → manifest digest.
    references: BTreeMap<String, String>,
}

/// A manifest and config read back from the store.
struct StoredImage {
    manifest: ImageManifest,
    config_digest: String,
    config: ImageConfiguration,
}

struct StoreInner {
    root: PathBuf,
    blobs: BlobStore,
    layers: PathBuf,
    tmp: PathBuf,
    table_path: PathBuf,
    /// Serialises read-modify-write of `images.json` within the process.
    table_lock: Mutex<()>,
    /// Shared by pulls and imports, exclusive for garbage collection.
    content_lock: Arc<tokio::sync::RwLock<()>>,
}

/// Held while `images.json` is read, changed and written.
struct TableGuard<'a> {
    _process: std::sync::MutexGuard<'a, ()>,
    _file: Option<nix::fcntl::Flock<fs::File>>,
}

/// The image store; cheap to clone, all clones share one store.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// Media types of image indexes (OCI) and manifest lists (Docker).
const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Media types of single-platform image manifests (OCI and Docker schema 2).
const MANIFEST_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// A parsed top-level manifest document: either an index or an image manifest.
enum ManifestDocument {
    Index(Box<ImageIndex>),
    Image(Box<ImageManifest>),
}

/// Parses manifest bytes as an index or an image manifest, by `mediaType` (or shape).
fn parse_manifest_document(bytes: &[u8], digest: &str) -> Result<ManifestDocument, ImageError> {
    let invalid = |reason: String| ImageError::InvalidManifest {
        what: "manifest",
        digest: digest.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|err| invalid(format!("not JSON: {err}")))?;
    let media_type = value.get("mediaType").and_then(|v| v.as_str());
    let is_index = match media_type {
        Some(media_type) if INDEX_MEDIA_TYPES.contains(&media_type) => true,
        Some(media_type) if MANIFEST_MEDIA_TYPES.contains(&media_type) => false,
        Some(other) => return Err(invalid(format!("unsupported media type {other:?}"))),
        None => value.get("manifests").is_some(),
    };
    if is_index {
        serde_json::from_value(value)
            .map(|index| ManifestDocument::Index(Box::new(index)))
            .map_err(|err| invalid(format!("bad image index: {err}")))
    } else {
        serde_json::from_value(value)
            .map(|manifest| ManifestDocument::Image(Box::new(manifest)))
            .map_err(|err| invalid(format!("bad image manifest: {err}")))
    }
}

/// Picks the linux entry for the architecture we run on from an index.
fn select_platform_manifest(index: &ImageIndex) -> Option<&Descriptor> {
    let wanted_arch = Arch::default();
    index.manifests().iter().find(|descriptor| {
        descriptor.platform().as_ref().is_some_and(|platform| {
            *platform.os() == Os::Linux && *platform.architecture() == wanted_arch
        })
    })
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store under `{root_dir}/images` and discards what
    /// dead processes left half-written.
    pub fn open(root_dir: &Path) -> Result<Self, ImageError> {
        let root = root_dir.join("images");
        let blob_dir = root.join("blobs").join("sha256");
        let layers = root.join("layers");
        let tmp = root.join("tmp");
        for dir in [&blob_dir, &layers, &tmp] {
            fs::create_dir_all(dir).map_err(io_error("create image store dir", dir))?;
        }
        let store = Self {
            inner: Arc::new(StoreInner {
                table_path: root.join("images.json"),
                blobs: BlobStore::new(blob_dir, tmp.clone()),
                root,
                layers,
                tmp,
                table_lock: Mutex::new(()),
                content_lock: Arc::new(tokio::sync::RwLock::new(())),
            }),
        };
        store.discard_stale_temporaries()?;
        Ok(store)
    }

    /// The store directory (`{root}/images`).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The image `reference` (any form [`ImageReference::parse`] accepts, a
    /// `name@sha256:` pin of a stored manifest, or an image ID), if it is in the store.
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let table = self.read_table()?;
        let Some(manifest_digest) = Self::lookup(&table, reference, |digest| {
            self.read_image(digest).map(|image| image.config_digest)
        })?
        else {
            return Ok(None);
        };
        self.record(&table, &manifest_digest).map(Some)
    }

    /// Every image in the store, one record per manifest, ordered by first reference.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let table = self.read_table()?;
        let digests: BTreeSet<&String> = table.references.values().collect();
        let mut records = digests
            .into_iter()
            .map(|digest| self.record(&table, digest))
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.references.cmp(&b.references));
        Ok(records)
    }

    /// Removes `reference` (or, given an image ID, every reference to that image), then
    /// deletes the blobs and layers no remaining image uses. Returns the references removed.
    ///
    /// The caller must make sure no running container still uses the image's layers.
    pub async fn remove(&self, reference: &str) -> Result<Vec<String>, ImageError> {
        let removed = {
            let _table_guard = self.lock_table();
            let mut table = self.read_table()?;
            let removed: Vec<String> = if is_image_id(reference) {
                let mut matching = Vec::new();
                for (name, digest) in &table.references {
                    if self.read_image(digest)?.config_digest == reference {
                        matching.push(name.clone());
                    }
                }
                matching
            } else {
                let normalized = normalize_reference(reference)?;
                if table.references.contains_key(&normalized) {
                    vec![normalized]
                } else {
                    Vec::new()
                }
            };
            if removed.is_empty() {
                return Err(ImageError::NotFound {
                    reference: reference.to_string(),
                });
            }
            for name in &removed {
                table.references.remove(name);
            }
            self.write_table(&table)?;
            removed
        };
        info!(references = ?removed, "removed image references");
        self.collect_garbage().await?;
        Ok(removed)
    }

    /// Deletes blobs and unpacked layers that no recorded image uses.
    pub async fn collect_garbage(&self) -> Result<(), ImageError> {
        let _exclusive = self.inner.content_lock.clone().write_owned().await;
        let store = self.clone();
        run_blocking("garbage collection", move || {
            store.collect_garbage_blocking()
        })
        .await
    }

    fn collect_garbage_blocking(&self) -> Result<(), ImageError> {
        let table = self.read_table()?;
        let mut live_blobs: HashSet<String> = HashSet::new();
        let mut live_layers: HashSet<String> = HashSet::new();
        for digest in table.references.values() {
            // An unreadable image aborts collection: what it uses cannot be known.
            let image = self.read_image(digest)?;
            live_blobs.insert(sha256_hex(digest)?.to_string());
            live_blobs.insert(sha256_hex(&image.config_digest)?.to_string());
            for layer in image.manifest.layers() {
                live_blobs.insert(sha256_hex(layer.digest().as_ref())?.to_string());
            }
            for diff_id in image.config.rootfs().diff_ids() {
                live_layers.insert(sha256_hex(diff_id)?.to_string());
            }
        }
        let mut freed_blobs = 0usize;
        let blob_dir = self.inner.blobs.dir().to_path_buf();
        for entry in fs::read_dir(&blob_dir).map_err(io_error("list blobs", &blob_dir))? {
            let entry = entry.map_err(io_error("list blobs", &blob_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live_blobs.contains(&name) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error("delete unused blob", &path))?;
                freed_blobs += 1;
            }
        }
        let mut freed_layers = 0usize;
        let layers = self.inner.layers.clone();
        for entry in fs::read_dir(&layers).map_err(io_error("list layers", &layers))? {
            let entry = entry.map_err(io_error("list layers", &layers))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if live_layers.contains(&name) {
                continue;
            }
            // Renamed away first so that a crash mid-delete never leaves a partial layer
            // under a valid name.
            let doomed = self.inner.tmp.join(temp_name("gc", &name));
            let path = entry.path();
            fs::rename(&path, &doomed).map_err(io_error("move unused layer away", &path))?;
            fs::remove_dir_all(&doomed).map_err(io_error("delete unused layer", &doomed))?;
            freed_layers += 1;
        }
        if freed_blobs + freed_layers > 0 {
            info!(
                blobs = freed_blobs,
                layers = freed_layers,
                "image garbage collected"
            );
        }
        Ok(())
    }

    /// Finds the manifest digest for `reference` in `table`. `config_of` maps a manifest
    /// digest to its config digest, for lookups by image ID.
    fn lookup(
        table: &ReferenceTable,
        reference: &str,
        config_of: impl Fn(&str) -> Result<String, ImageError>,
    ) -> Result<Option<String>, ImageError> {
        if is_image_id(reference) {
            for digest in table.references.values() {
                if config_of(digest)? == reference {
                    return Ok(Some(digest.clone()));
                }
            }
            return Ok(None);
        }
        let parsed = ImageReference::parse(reference)?;
        if let Some(digest) = table.references.get(&parsed.to_string()) {
            return Ok(Some(digest.clone()));
        }
        // `name@sha256:<manifest>` names any stored image of that repository with that
        // manifest, whatever tag it was pulled by.
        if let Some(pinned) = parsed.digest() {
            let name = parsed.name();
            let found = table.references.iter().find(|(stored, digest)| {
                digest.as_str() == pinned
                    && ImageReference::parse(stored).is_ok_and(|stored| stored.name() == name)
            });
            return Ok(found.map(|(_, digest)| digest.clone()));
        }
        Ok(None)
    }

    fn record(
        &self,
        table: &ReferenceTable,
        manifest_digest: &str,
    ) -> Result<ImageRecord, ImageError> {
        let image = self.read_image(manifest_digest)?;
        let references = table
            .references
            .iter()
            .filter(|(_, digest)| digest.as_str() == manifest_digest)
            .map(|(name, _)| name.clone())
            .collect();
        let mut layer_dirs = Vec::new();
        for diff_id in image.config.rootfs().diff_ids() {
            let dir = self.inner.layers.join(sha256_hex(diff_id)?);
            if !dir.is_dir() {
                return Err(ImageError::InvalidManifest {
                    what: "image",
                    digest: manifest_digest.to_string(),
                    reason: format!("unpacked layer {} is missing", dir.display()),
                });
            }
            layer_dirs.push(dir);
        }
        let size = image.manifest.config().size()
            + image
                .manifest
                .layers()
                .iter()
                .map(|layer| layer.size())
                .sum::<u64>();
        Ok(ImageRecord {
            references,
            manifest_digest: manifest_digest.to_string(),
            config_digest: image.config_digest,
            config: image.config,
            layer_dirs,
            size,
        })
    }

    /// Reads and checks a stored image manifest and its config.
    fn read_image(&self, manifest_digest: &str) -> Result<StoredImage, ImageError> {
        let bytes = self.inner.blobs.read(manifest_digest)?;
        let manifest = match parse_manifest_document(&bytes, manifest_digest)? {
            ManifestDocument::Image(manifest) => *manifest,
            ManifestDocument::Index(_) => {
                return Err(ImageError::InvalidManifest {
                    what: "manifest",
                    digest: manifest_digest.to_string(),
                    reason: "is an index, not an image manifest".to_string(),
                });
            }
        };
        let config_digest = manifest.config().digest().to_string();
        let config_bytes = self.inner.blobs.read(&config_digest)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|err| ImageError::InvalidManifest {
                what: "image config",
                digest: config_digest.clone(),
                reason: err.to_string(),
            })?;
        if config.rootfs().diff_ids().len() != manifest.layers().len() {
            return Err(ImageError::InvalidManifest {
                what: "manifest",
                digest: manifest_digest.to_string(),
                reason: format!(
                    "{} layers but its config {config_digest} lists {} diffIDs",
                    manifest.layers().len(),
                    config.rootfs().diff_ids().len()
                ),
            });
        }
        Ok(StoredImage {
            manifest,
            config_digest,
            config,
        })
    }

    /// Checks the stored image `manifest_digest` (config and layer blobs present, sizes
    /// right) and unpacks each layer not unpacked yet. Blocking.
    fn unpack_image(&self, manifest_digest: &str) -> Result<(), ImageError> {
        let image = self.read_image(manifest_digest)?;
        let config_size = self.inner.blobs.size(&image.config_digest)?;
        if config_size != image.manifest.config().size() {
            return Err(ImageError::SizeMismatch {
                digest: image.config_digest.clone(),
                expected: image.manifest.config().size(),
                actual: config_size,
            });
        }
        for (layer, diff_id) in image
            .manifest
            .layers()
            .iter()
            .zip(image.config.rootfs().diff_ids())
        {
            let digest = layer.digest().to_string();
            let blob_size = self.inner.blobs.size(&digest)?;
            if blob_size != layer.size() {
                return Err(ImageError::SizeMismatch {
                    digest,
                    expected: layer.size(),
                    actual: blob_size,
                });
            }
            let diff_hex = sha256_hex(diff_id)?;
            let final_dir = self.inner.layers.join(diff_hex);
            if final_dir.is_dir() {
                debug!(diff_id, "layer already unpacked");
                continue;
            }
            let compression =
                LayerCompression::from_media_type(layer.media_type().as_ref(), &digest)?;
            let staging = self.inner.tmp.join(temp_name("layer", diff_hex));
            let blob_path = self.inner.blobs.path(&digest)?;
            let size =
                unpack::unpack_layer(&blob_path, compression, diff_id, &staging, &final_dir)?;
            info!(diff_id, blob = %digest, uncompressed_bytes = size, "layer unpacked");
        }
        Ok(())
    }

    /// Points each of `references` at `manifest_digest` in `images.json`.
    fn commit_references(
        &self,
        references: &[String],
        manifest_digest: &str,
    ) -> Result<(), ImageError> {
        let _table_guard = self.lock_table();
        let mut table = self.read_table()?;
        for reference in references {
            if let Some(previous) = table
                .references
                .insert(reference.clone(), manifest_digest.to_string())
                .filter(|previous| previous != manifest_digest)
            {
                info!(
                    reference,
                    previous,
                    current = manifest_digest,
                    "image reference moved"
                );
            }
        }
        self.write_table(&table)
    }

    /// Serialises read-modify-write of `images.json` within the process (mutex) and with
    /// other processes on the same store, such as `skiff-runtime image import` beside the
    /// daemon (an exclusive `flock` on `images.lock`).
    fn lock_table(&self) -> TableGuard<'_> {
        // The guarded value is (); a panic elsewhere cannot leave it inconsistent.
        let process = self
            .inner
            .table_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = self.inner.root.join("images.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ok()
            .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok());
        if file.is_none() {
            warn!(path = %path.display(), "cannot lock the image table against other processes");
        }
        TableGuard {
            _process: process,
            _file: file,
        }
    }

    fn read_table(&self) -> Result<ReferenceTable, ImageError> {
        let path = &self.inner.table_path;
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| ImageError::Io {
                action: "parse reference table",
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, err),
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(ReferenceTable::default()),
            Err(err) => Err(io_error("read reference table", path)(err)),
        }
    }

    /// Replaces `images.json` atomically (temporary file, fsync, rename, fsync of the dir).
    fn write_table(&self, table: &ReferenceTable) -> Result<(), ImageError> {
        let path = &self.inner.table_path;
        let bytes = serde_json::to_vec_pretty(table).map_err(|err| ImageError::Io {
            action: "serialise reference table",
            path: path.clone(),
            source: io::Error::other(err),
        })?;
        let temp = self.inner.tmp.join(temp_name("table", "images"));
        let mut file =
            fs::File::create(&temp).map_err(io_error("create reference table", &temp))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(io_error("write reference table", &temp))?;
        fs::rename(&temp, path).map_err(io_error("replace reference table", path))?;
        fs::File::open(&self.inner.root)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("fsync image store dir", &self.inner.root))
    }

    /// Removes staging files and dirs of processes that no longer run.
    fn discard_stale_temporaries(&self) -> Result<(), ImageError> {
        let tmp = &self.inner.tmp;
        let own_pid = std::process::id();
        for entry in fs::read_dir(tmp).map_err(io_error("list staging dir", tmp))? {
            let entry = entry.map_err(io_error("list staging dir", tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let alive = match temp_name_pid(&name) {
                Some(pid) => pid == own_pid || Path::new(&format!("/proc/{pid}")).exists(),
                None => false,
            };
            if alive {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    warn!(path = %path.display(), "discarded leftover of an interrupted image write")
                }
                Err(err) => return Err(io_error("discard stale staging entry", &path)(err)),
            }
        }
        Ok(())
    }
}

/// Runs blocking store work on tokio's blocking pool.
async fn run_blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ImageError::Task {
            what: what.to_string(),
            reason: err.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str)]) -> ReferenceTable {
        ReferenceTable {
            references: entries
                .iter()
                .map(|(name, digest)| (name.to_string(), digest.to_string()))
                .collect(),
        }
    }

    const M1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const M2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const C1: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn config_of(digest: &str) -> Result<String, ImageError> {
        Ok(if digest == M1 {
            C1.to_string()
        } else {
            format!("{digest}-config")
        })
    }

    #[test]
    fn lookup_by_normalised_name_digest_pin_and_image_id() {
        let table = table(&[
            ("docker.io/library/busybox:1", M1),
            ("localhost:5000/app:v2", M2),
        ]);
        assert_eq!(
            ImageStore::lookup(&table, "busybox:1", config_of)
                .unwrap()
                .as_deref(),
            Some(M1)
        );
        assert_eq!(
            ImageStore::lookup(&table, "busybox", config_of).unwrap(),
            None
        );
        assert_eq!(
            ImageStore::lookup(&table, &format!("busybox@{M1}"), config_of)
                .unwrap()
                .as_deref(),
            Some(M1)
        );
        assert_eq!(
            ImageStore::lookup(&table, &format!("other@{M1}"), config_of).unwrap(),
            None
        );
        assert_eq!(
            ImageStore::lookup(&table, C1, config_of)
                .unwrap()
                .as_deref(),
            Some(M1)
        );
        assert!(ImageStore::lookup(&table, "Bad", config_of).is_err());
    }

    #[test]
    fn index_and_manifest_documents_are_told_apart() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest_document(index, M1).unwrap(),
            ManifestDocument::Index(_)
        ));
        let docker_manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"{C1}"}},"layers":[]}}"#
        );
        assert!(matches!(
            parse_manifest_document(docker_manifest.as_bytes(), M1).unwrap(),
            ManifestDocument::Image(_)
        ));
        let err = parse_manifest_document(br#"{"mediaType":"text/plain"}"#, M1)
            .err()
            .unwrap();
        assert!(err.to_string().contains("text/plain"), "{err}");
    }

    #[test]
    fn platform_selection_prefers_linux_on_this_architecture() {
        let arch = serde_json::to_value(Arch::default()).unwrap();
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": M1,
                 "platform": {"os": "linux", "architecture": "s390x"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": M2,
                 "platform": {"os": "linux", "architecture": arch}},
            ]
        }))
        .unwrap();
        let chosen = select_platform_manifest(&index).unwrap();
        assert_eq!(chosen.digest().to_string(), M2);
    }
}
