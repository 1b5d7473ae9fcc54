//! Pulling images from registries that speak the distribution API, with `oci-client`.
//!
//! The manifest is fetched raw and stored as received (its digest is what the registry
//! and the user know the image by); an index resolves to the linux/<our architecture>
//! manifest. Config and layers already in the blob store are not fetched again. A mirror
//! configured for the reference's registry is tried first, then the registry itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use tracing::{info, warn};

use super::auth::RegistryCredentials;
use super::blobs::sha256_digest;
use super::reference::ImageReference;
use super::{
    parse_manifest_document, run_blocking, select_platform_manifest, ImageError, ImageRecord,
    ImageStore, ManifestDocument,
};

/// The manifest media types we ask registries for.
const ACCEPTED_MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Progress is reported at least every this many bytes of a layer.
const PROGRESS_STEP_BYTES: u64 = 1024 * 1024;

/// How to reach registries for a pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Credentials for the registry (or mirror) pulled from.
    pub credentials: RegistryCredentials,
    /// Registry hosts (`host[:port]`) spoken to over plain HTTP, e.g. `127.0.0.1:5000`.
    pub insecure_registries: Vec<String>,
    /// Registry (as in a normalised reference, e.g. `docker.io`) → mirror host to pull
    /// from first.
    pub mirrors: HashMap<String, String>,
}

/// What a pull reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum PullProgress {
    /// The manifest is known: how many layers and bytes the image has.
    Resolved {
        /// The normalised reference being pulled.
        reference: String,
        /// The registry host serving it (the mirror, if one is used).
        registry: String,
        /// The image manifest digest.
        manifest_digest: String,
        /// The number of layers.
        layers: usize,
        /// Config plus compressed layer bytes.
        total_bytes: u64,
    },
    /// Bytes of one layer blob received so far.
    Layer {
        /// The layer blob digest.
        digest: String,
        /// Bytes done.
        bytes_done: u64,
        /// Bytes in the layer blob.
        bytes_total: u64,
        /// The blob was already in the store and was not fetched.
        already_present: bool,
    },
    /// The image is pulled, unpacked and recorded.
    Done {
        /// The normalised reference pulled.
        reference: String,
        /// The image ID (config digest).
        image_id: String,
        /// The image's content size (see [`ImageRecord::size`]).
        size: u64,
        /// Bytes actually downloaded (zero when everything was present).
        bytes_fetched: u64,
        /// Wall time of the whole pull.
        elapsed: Duration,
    },
}

impl ImageStore {
    /// Pulls `reference` (normalised with Docker Hub semantics) into the store, reporting
    /// progress, and records it under its normalised reference.
    pub async fn pull(
        &self,
        reference: &str,
        options: &PullOptions,
        mut progress: impl FnMut(PullProgress),
    ) -> Result<ImageRecord, ImageError> {
        let started = Instant::now();
        let parsed = ImageReference::parse(reference)?;
        let normalized = parsed.to_string();
        let _shared = self.inner.content_lock.clone().read_owned().await;

        let mut hosts = Vec::new();
        if let Some(mirror) = options.mirrors.get(parsed.registry()) {
            hosts.push(mirror.clone());
        }
        hosts.push(parsed.registry().to_string());

        let mut outcome = None;
        for (attempt, host) in hosts.iter().enumerate() {
            match self.pull_from(&parsed, host, options, &mut progress).await {
                Ok(done) => {
                    outcome = Some(done);
                    break;
                }
                Err(err) if attempt + 1 < hosts.len() => {
                    warn!(reference = %normalized, mirror = %host, %err, "pull from mirror failed, trying the registry");
                }
                Err(err) => return Err(err),
            }
        }
        let Some((manifest_digest, bytes_fetched)) = outcome else {
            return Err(ImageError::Registry {
                reference: normalized,
                registry: parsed.registry().to_string(),
                reason: "no registry to pull from".to_string(),
            });
        };

        let store = self.clone();
        let digest = manifest_digest.clone();
        run_blocking(&format!("unpack {normalized}"), move || {
            store.unpack_image(&digest)
        })
        .await?;
        self.commit_references(std::slice::from_ref(&normalized), &manifest_digest)?;
        let table = self.read_table()?;
        let record = self.record(&table, &manifest_digest)?;
        let elapsed = started.elapsed();
        info!(
            reference = %normalized,
            image_id = %record.config_digest,
            size = record.size,
            bytes_fetched,
            elapsed_ms = elapsed.as_millis() as u64,
            "image pulled"
        );
        progress(PullProgress::Done {
            reference: normalized,
            image_id: record.image_id(),
            size: record.size,
            bytes_fetched,
            elapsed,
        });
        Ok(record)
    }

    /// Fetches manifest, config and missing layer blobs from `host`. Returns the image
    /// manifest digest and the bytes downloaded.
    async fn pull_from(
        &self,
        parsed: &ImageReference,
        host: &str,
        options: &PullOptions,
        progress: &mut impl FnMut(PullProgress),
    ) -> Result<(String, u64), ImageError> {
        let normalized = parsed.to_string();
        let registry_error = |reason: String| ImageError::Registry {
            reference: normalized.clone(),
            registry: host.to_string(),
            reason,
        };
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(options.insecure_registries.clone()),
            // Indexes are resolved here, so that the index itself is seen and checked.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config)
            .map_err(|err| registry_error(format!("cannot build an HTTP client: {err}")))?;
        let auth = options.credentials.to_oci();
        let oci_reference = parsed.to_oci(host);

        let (mut manifest_bytes, mut manifest_digest) = client
            .pull_manifest_raw(&oci_reference, &auth, &ACCEPTED_MANIFEST_TYPES)
            .await
            .map_err(|err| registry_error(format!("manifest: {err}")))?;
        check_digest(&manifest_bytes, &manifest_digest, &normalized)?;
        let mut document = parse_manifest_document(&manifest_bytes, &manifest_digest)?;
        if let ManifestDocument::Index(index) = &document {
            let chosen = select_platform_manifest(index).ok_or_else(|| {
                registry_error(format!(
                    "index {manifest_digest} has no linux/{} image",
                    std::env::consts::ARCH
                ))
            })?;
            let platform_digest = chosen.digest().to_string();
            let (bytes, digest) = client
                .pull_manifest_raw(
                    &oci_reference.clone_with_digest(platform_digest.clone()),
                    &auth,
                    &ACCEPTED_MANIFEST_TYPES,
                )
                .await
                .map_err(|err| registry_error(format!("manifest {platform_digest}: {err}")))?;
            if digest != platform_digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("platform manifest of {normalized}"),
                    expected: platform_digest,
                    actual: digest,
                });
            }
            check_digest(&bytes, &digest, &normalized)?;
            document = parse_manifest_document(&bytes, &digest)?;
            manifest_bytes = bytes;
            manifest_digest = digest;
        }
        let ManifestDocument::Image(manifest) = document else {
            return Err(ImageError::InvalidManifest {
                what: "manifest",
                digest: manifest_digest,
                reason: "an index inside an index".to_string(),
            });
        };
        let source = format!("{host}/{}", parsed.repository());
        if !self.inner.blobs.contains(&manifest_digest) {
            self.inner
                .blobs
                .write_bytes(&manifest_digest, &source, &manifest_bytes)?;
        }

        let config_digest = manifest.config().digest().to_string();
        let total_bytes = manifest.config().size()
            + manifest
                .layers()
                .iter()
                .map(|layer| layer.size())
                .sum::<u64>();
        progress(PullProgress::Resolved {
            reference: normalized.clone(),
            registry: host.to_string(),
            manifest_digest: manifest_digest.clone(),
            layers: manifest.layers().len(),
            total_bytes,
        });
        let mut bytes_fetched = 0u64;
        if !self.inner.blobs.contains(&config_digest) {
            let mut config_bytes: Vec<u8> = Vec::new();
            client
                .pull_blob(&oci_reference, config_digest.as_str(), &mut config_bytes)
                .await
                .map_err(|err| registry_error(format!("config {config_digest}: {err}")))?;
            bytes_fetched +=
                self.inner
                    .blobs
                    .write_bytes(&config_digest, &source, &config_bytes)?;
        }

        for layer in manifest.layers() {
            let digest = layer.digest().to_string();
            let bytes_total = layer.size();
            if self.inner.blobs.contains(&digest) {
                progress(PullProgress::Layer {
                    digest,
                    bytes_done: bytes_total,
                    bytes_total,
                    already_present: true,
                });
                continue;
            }
            progress(PullProgress::Layer {
                digest: digest.clone(),
                bytes_done: 0,
                bytes_total,
                already_present: false,
            });
            let mut stream = client
                .pull_blob_stream(&oci_reference, digest.as_str())
                .await
                .map_err(|err| registry_error(format!("layer {digest}: {err}")))?;
            let mut writer = self.inner.blobs.writer(&digest, &source)?;
            let mut reported = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| ImageError::Read {
                    what: format!("layer {digest} of {normalized} from {host}"),
                    source,
                })?;
                writer.write(&chunk)?;
                if writer.written() > bytes_total {
                    return Err(ImageError::SizeMismatch {
                        digest,
                        expected: bytes_total,
                        actual: writer.written(),
                    });
                }
                if writer.written() - reported >= PROGRESS_STEP_BYTES {
                    reported = writer.written();
                    progress(PullProgress::Layer {
                        digest: digest.clone(),
                        bytes_done: reported,
                        bytes_total,
                        already_present: false,
                    });
                }
            }
            let written = writer.written();
            if written != bytes_total {
                return Err(ImageError::SizeMismatch {
                    digest,
                    expected: bytes_total,
                    actual: written,
                });
            }
            writer.commit()?;
            bytes_fetched += written;
            progress(PullProgress::Layer {
                digest,
                bytes_done: written,
                bytes_total,
                already_present: false,
            });
        }
        Ok((manifest_digest, bytes_fetched))
    }
}

fn check_digest(bytes: &[u8], digest: &str, reference: &str) -> Result<(), ImageError> {
    let actual = sha256_digest(bytes);
    if actual == digest {
        Ok(())
    } else {
        Err(ImageError::DigestMismatch {
            what: format!("manifest of {reference}"),
            expected: digest.to_string(),
            actual,
        })
    }
}
