//! Image references with Docker Hub semantics.
//!
//! `nginx:1.19.2-alpine` → `docker.io/library/nginx:1.19.2-alpine`, `foo/bar` →
//! `docker.io/foo/bar:latest`, `localhost:5000/x` keeps its registry, `x@sha256:…` is a
//! reference by digest. Parsing is pure: the grammar is the distribution project's, as
//! implemented by `oci_spec::distribution::Reference`.

use std::fmt;

use super::ImageError;

/// The registry that short names such as `nginx` resolve to.
pub const DOCKER_HUB_REGISTRY: &str = "docker.io";

/// A fully qualified image reference: registry, repository, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageReference {
    /// Parses and normalises `reference` (Docker Hub defaults, `latest` when neither a tag
    /// nor a digest is given).
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        let trimmed = reference.trim();
        let invalid = |reason: String| ImageError::InvalidReference {
            reference: reference.to_string(),
            reason,
        };
        if trimmed.is_empty() {
            return Err(invalid("the reference is empty".to_string()));
        }
        if trimmed.contains("://") {
            return Err(invalid(
                "a reference names no URL scheme (drop the http:// or https:// prefix)".to_string(),
            ));
        }
        let parsed = oci_spec::distribution::Reference::try_from(trimmed)
            .map_err(|err| invalid(err.to_string()))?;
        if parsed.repository().is_empty() {
            return Err(invalid("the repository name is empty".to_string()));
        }
        // The grammar lets a first component without dots pass as a registry host; Docker
        // then treats it as part of the repository, which must be lower-case.
        if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase".to_string()));
        }
        Ok(Self {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag: parsed.tag().map(str::to_string),
            digest: parsed.digest().map(str::to_string),
        })
    }

    /// The registry host (with port if any), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`), if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository, pinned to `digest` and without a tag.
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }

    /// The reference as `oci-client` wants it, fetched from `registry_host` (the origin or a
    /// mirror).
    pub(crate) fn to_oci(&self, registry_host: &str) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                registry_host.to_string(),
                self.repository.clone(),
                tag.clone(),
                digest.clone(),
            ),
            (None, Some(digest)) => oci_client::Reference::with_digest(
                registry_host.to_string(),
                self.repository.clone(),
                digest.clone(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                registry_host.to_string(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".to_string()),
            ),
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalises `reference` to its fully qualified form (see [`ImageReference::parse`]).
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    ImageReference::parse(reference).map(|parsed| parsed.to_string())
}

/// Whether `text` is an image ID (`sha256:<64 hex>`), which names an image by its config
/// digest rather than by a registry reference.
pub fn is_image_id(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(is_sha256_hex)
}

/// Whether `hex` is 64 lower-case hexadecimal characters.
pub(crate) fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Kubernetes' `imagePullPolicy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull (or at least check the registry) every time a container starts.
    Always,
    /// Pull only when the image is not in the store.
    IfNotPresent,
    /// Never pull; fail when the image is absent.
    Never,
}

impl PullPolicy {
    /// The policy Kubernetes defaults to for `reference`: `Always` for `:latest` or no tag
    /// (and no digest), otherwise `IfNotPresent`.
    pub fn default_for(reference: &ImageReference) -> Self {
        match (reference.tag(), reference.digest()) {
            (Some("latest"), _) => PullPolicy::Always,
            (None, None) => PullPolicy::Always,
            _ => PullPolicy::IfNotPresent,
        }
    }

    /// Parses the API spelling (`Always`, `IfNotPresent`, `Never`).
    pub fn parse(policy: &str) -> Result<Self, ImageError> {
        match policy {
            "Always" => Ok(PullPolicy::Always),
            "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
            "Never" => Ok(PullPolicy::Never),
            other => Err(ImageError::InvalidPullPolicy {
                policy: other.to_string(),
            }),
        }
    }
}

/// Whether the image `reference` must be pulled under `policy` (None or empty → the
/// Kubernetes default) given whether it is `present` in the store. `Never` with an absent
/// image is an [`ImageError::NeverPull`] (the kubelet's `ErrImageNeverPull`).
pub fn needs_pull(
    policy: Option<&str>,
    reference: &str,
    present: bool,
) -> Result<bool, ImageError> {
    let parsed = ImageReference::parse(reference)?;
    let policy = match policy {
        None | Some("") => PullPolicy::default_for(&parsed),
        Some(text) => PullPolicy::parse(text)?,
    };
    match policy {
        PullPolicy::Always => Ok(true),
        PullPolicy::IfNotPresent => Ok(!present),
        PullPolicy::Never if present => Ok(false),
        PullPolicy::Never => Err(ImageError::NeverPull {
            reference: reference.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn short_names_get_docker_hub_and_library() {
        assert_eq!(
            normalize_reference("nginx:1.19.2-alpine").unwrap(),
            "docker.io/library/nginx:1.19.2-alpine"
        );
        assert_eq!(
            normalize_reference("nginx").unwrap(),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            normalize_reference("foo/bar").unwrap(),
            "docker.io/foo/bar:latest"
        );
        assert_eq!(
            normalize_reference("index.docker.io/library/busybox:1").unwrap(),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            normalize_reference("docker.io/busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn registries_with_dots_ports_or_localhost_stay() {
        assert_eq!(
            normalize_reference("localhost:5000/x").unwrap(),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            normalize_reference("localhost/x:1").unwrap(),
            "localhost/x:1"
        );
        assert_eq!(
            normalize_reference("127.0.0.1:5000/team/app:v2").unwrap(),
            "127.0.0.1:5000/team/app:v2"
        );
        assert_eq!(
            normalize_reference("registry.k8s.io/pause:3.9").unwrap(),
            "registry.k8s.io/pause:3.9"
        );
        let parsed = ImageReference::parse("quay.io/org/app:1").unwrap();
        assert_eq!(parsed.registry(), "quay.io");
        assert_eq!(parsed.repository(), "org/app");
        assert_eq!(parsed.tag(), Some("1"));
        assert_eq!(parsed.name(), "quay.io/org/app");
    }

    #[test]
    fn digests_are_kept_without_adding_latest() {
        let parsed = ImageReference::parse(&format!("busybox@{DIGEST}")).unwrap();
        assert_eq!(parsed.tag(), None);
        assert_eq!(parsed.digest(), Some(DIGEST));
        assert_eq!(
            parsed.to_string(),
            format!("docker.io/library/busybox@{DIGEST}")
        );
        assert_eq!(
            normalize_reference(&format!("busybox:1.36@{DIGEST}")).unwrap(),
            format!("docker.io/library/busybox:1.36@{DIGEST}")
        );
        let pinned = ImageReference::parse("busybox:1")
            .unwrap()
            .with_digest(DIGEST);
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/busybox@{DIGEST}")
        );
    }

    #[test]
    fn invalid_references_are_rejected_with_the_reference_named() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "https://docker.io/nginx",
            "nginx@sha256:1234",
            "a//b",
            "nginx:bad tag",
            "UPPER/case",
        ] {
            let err = normalize_reference(bad).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidReference { .. }),
                "{bad:?} gave {err:?}"
            );
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn oci_reference_uses_the_given_host() {
        let parsed = ImageReference::parse("busybox:1").unwrap();
        let oci = parsed.to_oci("127.0.0.1:5000");
        assert_eq!(oci.registry(), "127.0.0.1:5000");
        assert_eq!(oci.repository(), "library/busybox");
        assert_eq!(oci.tag(), Some("1"));
    }

    #[test]
    fn image_ids() {
        assert!(is_image_id(
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ));
        assert!(!is_image_id("sha256:0123"));
        assert!(!is_image_id("busybox"));
    }

    #[test]
    fn pull_policy_defaults_follow_kubernetes() {
        // :latest or no tag → Always.
        assert!(needs_pull(None, "nginx", true).unwrap());
        assert!(needs_pull(None, "nginx:latest", true).unwrap());
        assert!(needs_pull(Some(""), "nginx:latest", true).unwrap());
        // Another tag or a digest → IfNotPresent.
        assert!(!needs_pull(None, "nginx:1.19", true).unwrap());
        assert!(needs_pull(None, "nginx:1.19", false).unwrap());
        assert!(!needs_pull(None, &format!("nginx@{DIGEST}"), true).unwrap());
    }

    #[test]
    fn explicit_pull_policies() {
        assert!(needs_pull(Some("Always"), "nginx:1.19", true).unwrap());
        assert!(!needs_pull(Some("IfNotPresent"), "nginx:latest", true).unwrap());
        assert!(needs_pull(Some("IfNotPresent"), "nginx:latest", false).unwrap());
        assert!(!needs_pull(Some("Never"), "nginx:1.19", true).unwrap());
        let err = needs_pull(Some("Never"), "nginx:1.19", false).unwrap_err();
        assert!(matches!(err, ImageError::NeverPull { .. }));
        assert!(err.to_string().contains("nginx:1.19"), "{err}");
        assert!(err.to_string().contains("Never"), "{err}");
        let err = needs_pull(Some("Sometimes"), "nginx", false).unwrap_err();
        assert!(matches!(err, ImageError::InvalidPullPolicy { .. }));
    }
}
