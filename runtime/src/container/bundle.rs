//! Loading an OCI bundle: its `config.json` and where its root filesystem comes from.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, Spec};

use super::ContainerError;

/// Annotation holding the overlay `lowerdir=` value (top-most layer first, `:`-separated).
pub const ANNOTATION_ROOTFS_LOWERDIR: &str = "io.skiff.rootfs.lowerdir";
/// Annotation holding the overlay upper dir (the container's writable layer).
pub const ANNOTATION_ROOTFS_UPPERDIR: &str = "io.skiff.rootfs.upperdir";
/// Annotation holding the overlay work dir (same filesystem as the upper dir).
pub const ANNOTATION_ROOTFS_WORKDIR: &str = "io.skiff.rootfs.workdir";

/// An overlay to mount on the root path inside the container's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayRootfs {
    /// The `lowerdir=` value, top-most layer first.
    pub lowerdir: String,
    /// The writable layer.
    pub upperdir: PathBuf,
    /// Overlayfs's work dir.
    pub workdir: PathBuf,
}

/// A loaded bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// Its parsed `config.json`.
    pub spec: Spec,
    /// The root filesystem path, absolute.
    pub rootfs: PathBuf,
    /// The overlay to build the rootfs from, if the bundle asks for one.
    pub overlay: Option<OverlayRootfs>,
}

impl Bundle {
    /// Loads `dir/config.json` and resolves the root path against `dir`.
    pub fn load(dir: &Path) -> Result<Self, ContainerError> {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|err| ContainerError::io("get current directory", err))?
                .join(dir)
        };
        let config = dir.join("config.json");
        let spec = Spec::load(&config).map_err(|source| ContainerError::Spec {
            path: config.clone(),
            source,
        })?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| ContainerError::Invalid {
                what: format!("{}", config.display()),
                reason: "no root".into(),
            })?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        let overlay = overlay_from_annotations(&spec)?;
        Ok(Self {
            dir,
            spec,
            rootfs,
            overlay,
        })
    }

    /// The spec's `process`, which every container needs.
    pub fn process(&self) -> Result<&Process, ContainerError> {
        self.spec
            .process()
            .as_ref()
            .ok_or_else(|| ContainerError::Invalid {
                what: format!("bundle {}", self.dir.display()),
                reason: "config.json has no process".into(),
            })
    }
}

/// Reads the overlay annotations: all three, or none.
fn overlay_from_annotations(spec: &Spec) -> Result<Option<OverlayRootfs>, ContainerError> {
    let Some(annotations) = spec.annotations() else {
        return Ok(None);
    };
    let Some(lowerdir) = annotations.get(ANNOTATION_ROOTFS_LOWERDIR) else {
        return Ok(None);
    };
    let required = |key: &str| {
        annotations
            .get(key)
            .map(PathBuf::from)
            .ok_or_else(|| ContainerError::Invalid {
                what: format!("annotation {ANNOTATION_ROOTFS_LOWERDIR}"),
                reason: format!("it needs {key} as well"),
            })
    };
    if lowerdir.is_empty() {
        return Err(ContainerError::Invalid {
            what: format!("annotation {ANNOTATION_ROOTFS_LOWERDIR}"),
            reason: "empty".into(),
        });
    }
    Ok(Some(OverlayRootfs {
        lowerdir: lowerdir.clone(),
        upperdir: required(ANNOTATION_ROOTFS_UPPERDIR)?,
        workdir: required(ANNOTATION_ROOTFS_WORKDIR)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{RootBuilder, SpecBuilder};
    use std::collections::HashMap;

    fn write_bundle(dir: &Path, annotations: HashMap<String, String>) {
        let spec = SpecBuilder::default()
            .root(RootBuilder::default().path("rootfs").build().expect("root"))
            .process(Process::default())
            .annotations(annotations)
            .build()
            .expect("spec");
        spec.save(dir.join("config.json")).expect("save");
    }

    #[test]
    fn relative_root_resolves_against_the_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_bundle(dir.path(), HashMap::new());
        let bundle = Bundle::load(dir.path()).expect("load");
        assert_eq!(bundle.rootfs, dir.path().join("rootfs"));
        assert_eq!(bundle.overlay, None);
    }

    #[test]
    fn overlay_needs_all_three_annotations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut annotations = HashMap::from([(
            ANNOTATION_ROOTFS_LOWERDIR.to_string(),
            "/l2:/l1".to_string(),
        )]);
        write_bundle(dir.path(), annotations.clone());
        let err = Bundle::load(dir.path()).expect_err("incomplete overlay");
        assert!(
            err.to_string().contains(ANNOTATION_ROOTFS_UPPERDIR),
            "{err}"
        );
        annotations.insert(ANNOTATION_ROOTFS_UPPERDIR.into(), "/u".into());
        annotations.insert(ANNOTATION_ROOTFS_WORKDIR.into(), "/w".into());
        write_bundle(dir.path(), annotations);
        let bundle = Bundle::load(dir.path()).expect("load");
        assert_eq!(
            bundle.overlay,
            Some(OverlayRootfs {
                lowerdir: "/l2:/l1".into(),
                upperdir: "/u".into(),
                workdir: "/w".into(),
            })
        );
    }
}
