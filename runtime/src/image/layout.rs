//! Import of OCI image layout archives (`index.json`, `oci-layout`, `blobs/sha256/…` in a
//! tar, optionally gzip-compressed), as written by `docker save` (v25+), `skopeo copy …
//! oci-archive:`, `buildah push … oci-archive:` or `ctr image export`.
//!
//! Names come from the annotations of the descriptors in `index.json`:
//! - `io.containerd.image.name` is a full reference;
//! - `org.opencontainers.image.ref.name` is taken as a full reference when it contains `/`,
//!   `:` or `@` (`busybox:1`, `localhost:5000/app`); a bare tag (`latest`, `1.36`) has no
//!   repository, so it is combined with the `default_repository` the caller gives and
//!   refused otherwise, unless a containerd name is also present (as in `docker save`,
//!   whose `ref.name` repeats the tag of its containerd name).
//!
//! An index entry that is itself an index (multi-platform image) resolves to its
//! linux/<our architecture> manifest.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use tracing::{info, warn};

use super::blobs::{sha256_digest, sha256_hex};
use super::reference::normalize_reference;
use super::{
    parse_manifest_document, run_blocking, select_platform_manifest, ImageError, ImageRecord,
    ImageStore, ManifestDocument,
};

/// The annotation containerd and docker put the full image name in.
const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation for the reference name (a tag or a full reference).
const OCI_REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// `index.json` and `oci-layout` are small; anything larger is not a layout.
const MAX_METADATA_BYTES: u64 = 16 * 1024 * 1024;
/// How deep indexes may nest inside `index.json`.
const MAX_INDEX_DEPTH: usize = 4;

impl ImageStore {
    /// Imports every image of the OCI layout archive at `archive` (see the module docs for
    /// naming). Returns the records of the imported images.
    pub async fn import_archive(&self, archive: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        self.import_archive_as(archive, None).await
    }

    /// Like [`ImageStore::import_archive`], naming images that carry only a bare tag as
    /// `default_repository:<tag>`.
    pub async fn import_archive_as(
        &self,
        archive: &Path,
        default_repository: Option<&str>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let default_repository = default_repository
            .map(|repository| {
                // Validated now so that a bad repository fails before any work.
                normalize_reference(repository)?;
                Ok::<_, ImageError>(repository.to_string())
            })
            .transpose()?;
        let imported = {
            let shared = self.inner.content_lock.clone().read_owned().await;
            let store = self.clone();
            let archive = archive.to_path_buf();
            run_blocking("archive import", move || {
                let _shared = shared;
                store.import_blocking(&archive, default_repository.as_deref())
            })
            .await?
        };
        // The archive may have carried blobs no image uses (other platforms, attestations).
        self.collect_garbage().await?;
        let mut records = Vec::new();
        for manifest_digest in imported {
            let table = self.read_table()?;
            records.push(self.record(&table, &manifest_digest)?);
        }
        Ok(records)
    }

    /// Reads the archive, stores its blobs, unpacks and names its images. Returns the
    /// manifest digests imported.
    fn import_blocking(
        &self,
        archive: &Path,
        default_repository: Option<&str>,
    ) -> Result<Vec<String>, ImageError> {
        let invalid = |reason: String| ImageError::InvalidArchive {
            archive: archive.to_path_buf(),
            reason,
        };
        let LayoutMetadata {
            index: index_bytes,
            layout: layout_bytes,
        } = self.store_archive_blobs(archive)?;
        let index_bytes = index_bytes.ok_or_else(|| {
            invalid(
                "no index.json: not an OCI image layout (docker save before v25 is not supported)"
                    .to_string(),
            )
        })?;
        match layout_bytes {
            Some(bytes) => {
                let layout: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|err| invalid(format!("oci-layout is not JSON: {err}")))?;
                let version = layout.get("imageLayoutVersion").and_then(|v| v.as_str());
                if version != Some("1.0.0") {
                    return Err(invalid(format!(
                        "unsupported oci-layout imageLayoutVersion {version:?}"
                    )));
                }
            }
            None => warn!(archive = %archive.display(), "archive has no oci-layout file"),
        }
        let index_digest = sha256_digest(&index_bytes);
        let ManifestDocument::Index(index) =
            parse_manifest_document(&index_bytes, &index_digest)
                .map_err(|err| invalid(format!("index.json: {err}")))?
        else {
            return Err(invalid("index.json is not an image index".to_string()));
        };

        let mut imported: Vec<(Vec<String>, String)> = Vec::new();
        for descriptor in index.manifests() {
            let top_digest = descriptor.digest().to_string();
            let names = names_from_annotations(
                descriptor.annotations().as_ref(),
                default_repository,
                &top_digest,
            )
            .map_err(&invalid)?;
            let manifest_digest = self.resolve_image_manifest(archive, &top_digest, 0)?;
            self.unpack_image(&manifest_digest)?;
            info!(archive = %archive.display(), manifest = %manifest_digest, references = ?names, "image imported");
            imported.push((names, manifest_digest));
        }
        if imported.is_empty() {
            return Err(invalid("index.json lists no images".to_string()));
        }
        for (names, manifest_digest) in &imported {
            self.commit_references(names, manifest_digest)?;
        }
        let unique: BTreeSet<String> = imported.into_iter().map(|(_, digest)| digest).collect();
        Ok(unique.into_iter().collect())
    }

    /// Follows `digest` (a manifest or an index) to the image manifest for our platform.
    fn resolve_image_manifest(
        &self,
        archive: &Path,
        digest: &str,
        depth: usize,
    ) -> Result<String, ImageError> {
        let invalid = |reason: String| ImageError::InvalidArchive {
            archive: archive.to_path_buf(),
            reason,
        };
        if !self.inner.blobs.contains(digest) {
            return Err(invalid(format!(
                "blob {digest} is referenced but not in the archive"
            )));
        }
        let bytes = self.inner.blobs.read(digest)?;
        match parse_manifest_document(&bytes, digest)? {
            ManifestDocument::Image(_) => Ok(digest.to_string()),
            ManifestDocument::Index(index) => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(invalid(format!(
                        "indexes nest deeper than {MAX_INDEX_DEPTH} at {digest}"
                    )));
                }
                let chosen = select_platform_manifest(&index).ok_or_else(|| {
                    invalid(format!(
                        "index {digest} has no linux/{} image",
                        std::env::consts::ARCH
                    ))
                })?;
                self.resolve_image_manifest(archive, chosen.digest().as_ref(), depth + 1)
            }
        }
    }

    /// Streams the archive once: every `blobs/sha256/<hex>` entry goes to the blob store
    /// (verified against its name), `index.json` and `oci-layout` are kept in memory.
    fn store_archive_blobs(&self, archive: &Path) -> Result<LayoutMetadata, ImageError> {
        let invalid = |reason: String| ImageError::InvalidArchive {
            archive: archive.to_path_buf(),
            reason,
        };
        let file = File::open(archive).map_err(|source| ImageError::Io {
            action: "open image archive",
            path: archive.to_path_buf(),
            source,
        })?;
        let mut buffered = BufReader::with_capacity(256 * 1024, file);
        let is_gzip = {
            use std::io::BufRead;
            let head = buffered.fill_buf().map_err(|source| ImageError::Read {
                what: format!("image archive {}", archive.display()),
                source,
            })?;
            head.starts_with(&[0x1f, 0x8b])
        };
        let reader: Box<dyn Read> = if is_gzip {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        let mut tar = tar::Archive::new(reader);
        let entries = tar
            .entries()
            .map_err(|err| invalid(format!("not a tar archive: {err}")))?;
        let mut index = None;
        let mut layout = None;
        let source = archive.display().to_string();
        for entry in entries {
            let mut entry = entry.map_err(|err| invalid(format!("bad tar entry: {err}")))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|err| invalid(format!("bad tar entry name: {err}")))?
                .into_owned();
            let parts = normal_components(&path);
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            match parts.as_slice() {
                ["index.json"] => index = Some(read_small(&mut entry, archive, "index.json")?),
                ["oci-layout"] => layout = Some(read_small(&mut entry, archive, "oci-layout")?),
                ["blobs", "sha256", hex] => {
                    let digest = format!("sha256:{hex}");
                    sha256_hex(&digest).map_err(|_| {
                        invalid(format!(
                            "blob entry {} is not named by a sha256 digest",
                            path.display()
                        ))
                    })?;
                    if self.inner.blobs.contains(&digest) {
                        continue;
                    }
                    self.inner.blobs.write_from(&digest, &source, &mut entry)?;
                }
                ["blobs", algorithm, _] => {
                    warn!(archive = %archive.display(), algorithm, "skipping blob with unsupported digest algorithm");
                }
                _ => {}
            }
        }
        Ok(LayoutMetadata { index, layout })
    }
}

/// The small files of a layout, kept in memory while the blobs stream to the store.
struct LayoutMetadata {
    /// `index.json`.
    index: Option<Vec<u8>>,
    /// `oci-layout`.
    layout: Option<Vec<u8>>,
}

/// The normal components of an archive path (`./blobs/sha256/x` → blobs, sha256, x).
fn normal_components(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

fn read_small(entry: &mut impl Read, archive: &Path, name: &str) -> Result<Vec<u8>, ImageError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ImageError::Read {
            what: format!("{name} in {}", archive.display()),
            source,
        })?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(ImageError::InvalidArchive {
            archive: PathBuf::from(archive),
            reason: format!("{name} is larger than {MAX_METADATA_BYTES} bytes"),
        });
    }
    Ok(bytes)
}

/// The normalised references an `index.json` descriptor names (see the module docs).
/// Errors are reasons, naming the descriptor's digest.
pub(crate) fn names_from_annotations(
    annotations: Option<&HashMap<String, String>>,
    default_repository: Option<&str>,
    digest: &str,
) -> Result<Vec<String>, String> {
    let empty = HashMap::new();
    let annotations = annotations.unwrap_or(&empty);
    let mut names = BTreeSet::new();
    let containerd_name = annotations.get(CONTAINERD_NAME_ANNOTATION);
    if let Some(name) = containerd_name {
        names
            .insert(normalize_reference(name).map_err(|err| {
                format!("manifest {digest}: {CONTAINERD_NAME_ANNOTATION}: {err}")
            })?);
    }
    if let Some(ref_name) = annotations.get(OCI_REF_NAME_ANNOTATION) {
        let is_full = ref_name.contains(['/', ':', '@']);
        if is_full {
            names.insert(
                normalize_reference(ref_name).map_err(|err| {
                    format!("manifest {digest}: {OCI_REF_NAME_ANNOTATION}: {err}")
                })?,
            );
        } else if let Some(repository) = default_repository {
            names.insert(
                normalize_reference(&format!("{repository}:{ref_name}"))
                    .map_err(|err| format!("manifest {digest}: tag {ref_name:?}: {err}"))?,
            );
        } else if containerd_name.is_none() {
            return Err(format!(
                "manifest {digest} is named only by the tag {ref_name:?}; give a repository to import it under"
            ));
        }
    }
    if names.is_empty() {
        return Err(format!(
            "manifest {digest} has no {OCI_REF_NAME_ANNOTATION} or {CONTAINERD_NAME_ANNOTATION} annotation to name it"
        ));
    }
    Ok(names.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn full_reference_in_ref_name() {
        let names = names_from_annotations(
            Some(&annotations(&[(OCI_REF_NAME_ANNOTATION, "busybox:1.36")])),
            None,
            DIGEST,
        )
        .unwrap();
        assert_eq!(names, vec!["docker.io/library/busybox:1.36"]);
    }

    #[test]
    fn docker_save_style_annotations() {
        let names = names_from_annotations(
            Some(&annotations(&[
                (
                    CONTAINERD_NAME_ANNOTATION,
                    "docker.io/library/busybox:latest",
                ),
                (OCI_REF_NAME_ANNOTATION, "latest"),
            ])),
            None,
            DIGEST,
        )
        .unwrap();
        assert_eq!(names, vec!["docker.io/library/busybox:latest"]);
    }

    #[test]
    fn bare_tag_needs_a_repository() {
        let only_tag = annotations(&[(OCI_REF_NAME_ANNOTATION, "1.0")]);
        let err = names_from_annotations(Some(&only_tag), None, DIGEST).unwrap_err();
        assert!(err.contains("\"1.0\"") && err.contains(DIGEST), "{err}");
        let names =
            names_from_annotations(Some(&only_tag), Some("localhost:5000/app"), DIGEST).unwrap();
        assert_eq!(names, vec!["localhost:5000/app:1.0"]);
    }

    #[test]
    fn unnamed_and_invalid_names_are_errors() {
        assert!(names_from_annotations(None, None, DIGEST).is_err());
        let bad = annotations(&[(CONTAINERD_NAME_ANNOTATION, "UPPER/case")]);
        let err = names_from_annotations(Some(&bad), None, DIGEST).unwrap_err();
        assert!(err.contains("UPPER/case"), "{err}");
    }
}
