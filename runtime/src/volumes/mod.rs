//! Pod volumes on the node.
//!
//! Every volume of a pod gets a host path that the container module bind-mounts into the
//! containers. Layout under the pod directory (kubelet names, so a reader who knows the
//! kubelet finds their way):
//!
//! ```text
//! {pod_dir}/volumes/kubernetes.io~empty-dir/{name}     emptyDir (a tmpfs for medium Memory)
//! {pod_dir}/volumes/kubernetes.io~configmap/{name}     configMap (on disk)
//! {pod_dir}/volumes/kubernetes.io~secret/{name}        secret (on a tmpfs, never on disk)
//! {pod_dir}/volumes/kubernetes.io~downward-api/{name}  downwardAPI (tmpfs)
//! {pod_dir}/volumes/kubernetes.io~projected/{name}     projected (tmpfs: may hold secrets)
//! {pod_dir}/volume-subpaths/{volume}/{container}/{i}   bind mounts of subPaths
//! ```
//!
//! hostPath and persistentVolumeClaim volumes (hostPath or local PVs) live where they are on
//! the host and are never written or deleted here beyond the hostPath `…OrCreate` types.
//!
//! configMap, secret, downwardAPI and projected volumes are written with the kubelet's
//! atomic writer (module `atomic`); [`update`] rewrites those whose content changed, and since
//! containers bind-mount the volume directory they see the new version at once. A subPath
//! mount of such a volume is a bind of one file or directory of one version: it does not
//! receive updates, as in Kubernetes.
//!
//! Everything is idempotent, so a restarted daemon calls [`prepare`] again for its running
//! pods: tmpfs mounts are found in `/proc/self/mountinfo` instead of being stacked, and
//! unchanged data keeps its data directory.
//!
//! Not supported: fsGroup ownership of volume files, `recursiveReadOnly`, emptyDir
//! `sizeLimit` on disk (only a tmpfs enforces it), serviceAccountToken projections (left out
//! and reported in [`PreparedVolume::omitted`]), block-mode claims and every volume type
//! other than the ones above (a clear error).

mod atomic;
mod host_path;
mod mountinfo;
mod projected;
mod subpath;

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, DownwardAPIVolumeSource, EmptyDirVolumeSource,
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, Pod, ProjectedVolumeSource, Secret, SecretVolumeSource,
    Volume,
};
use skiff_api::quantity::Quantity;
use tracing::{debug, info, warn};

use atomic::Payload;
use projected::{KeySelection, ObjectKind, DEFAULT_MODE};

/// The directory of a pod's volumes, below the pod directory.
pub const VOLUMES_DIR: &str = "volumes";
/// The directory of a pod's subPath bind mounts, below the pod directory.
pub const SUBPATHS_DIR: &str = "volume-subpaths";

/// Smallest tmpfs for secret-like volumes; grown when an object needs more.
const MIN_SECRET_TMPFS: u64 = 1 << 20;
const PAGE_SIZE: u64 = 4096;
/// Unmount rounds in teardown; mounts stacked on one point need one round each.
const MAX_UNMOUNT_ROUNDS: usize = 16;

/// The objects volumes read, from the pod's namespace (PVs by name), fetched by the daemon.
#[derive(Debug, Clone, Default)]
pub struct VolumeSources {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    pub pvcs: BTreeMap<String, PersistentVolumeClaim>,
    pub pvs: BTreeMap<String, PersistentVolume>,
    pub node_name: String,
}

/// The volume types skiff sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeKind {
    EmptyDir,
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    PersistentVolumeClaim,
}

impl VolumeKind {
    /// The field name in the pod spec (`emptyDir`, `configMap`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeKind::EmptyDir => "emptyDir",
            VolumeKind::HostPath => "hostPath",
            VolumeKind::ConfigMap => "configMap",
            VolumeKind::Secret => "secret",
            VolumeKind::DownwardApi => "downwardAPI",
            VolumeKind::Projected => "projected",
            VolumeKind::PersistentVolumeClaim => "persistentVolumeClaim",
        }
    }

    /// Whether the files come from API objects, are written by skiff and follow updates.
    pub fn is_projected_data(self) -> bool {
        matches!(
            self,
            VolumeKind::ConfigMap
                | VolumeKind::Secret
                | VolumeKind::DownwardApi
                | VolumeKind::Projected
        )
    }

    fn plugin_dir(self) -> &'static str {
        match self {
            VolumeKind::EmptyDir => "kubernetes.io~empty-dir",
            VolumeKind::ConfigMap => "kubernetes.io~configmap",
            VolumeKind::Secret => "kubernetes.io~secret",
            VolumeKind::DownwardApi => "kubernetes.io~downward-api",
            VolumeKind::Projected => "kubernetes.io~projected",
            VolumeKind::HostPath => "kubernetes.io~host-path",
            VolumeKind::PersistentVolumeClaim => "kubernetes.io~pvc",
        }
    }
}

/// A volume ready to be mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    pub name: String,
    pub kind: VolumeKind,
    /// Where the volume is on the host.
    pub host_path: PathBuf,
    /// Read-only whatever the volume mount says (API data, read-only claims).
    pub read_only: bool,
    /// Parts of the volume that were left out, with why (for pod events).
    pub omitted: Vec<String>,
}

/// One bind mount of a volume into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: String,
    pub source: PathBuf,
    pub read_only: bool,
    /// OCI propagation option: `rprivate` (the default, `None`), `rslave`
    /// (`HostToContainer`) or `rshared` (`Bidirectional`). Always set.
    pub propagation: Option<&'static str>,
}

/// Why a volume could not be set up, mounted or torn down.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume:?}: volume type {kind} is not supported by skiff")]
    Unsupported { volume: String, kind: &'static str },
    #[error("volume {volume:?}: {reason}")]
    Invalid { volume: String, reason: String },
    #[error("volume {volume:?}: hostPath type check failed for {}: expected {expected}, found {found}", path.display())]
    HostPathType {
        volume: String,
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error("volume {volume:?}: {kind} {name:?} not found in the pod's namespace (and the volume is not optional)")]
    ObjectNotFound {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error("volume {volume:?}: key {key:?} not found in {kind} {name:?} (and the volume is not optional)")]
    KeyNotFound {
        volume: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("volume {volume:?}: persistentVolumeClaim {claim:?}: {reason}")]
    Claim {
        volume: String,
        claim: String,
        reason: String,
    },
    #[error("volume {volume:?}: downward API item {path:?}: {reason}")]
    DownwardApi {
        volume: String,
        path: String,
        reason: String,
    },
    #[error("volume {volume:?}: cannot {action} {}: {source}", path.display())]
    Io {
        volume: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("container {container:?}: volume mount {volume:?} at {mount_path:?}: {reason}")]
    VolumeMount {
        container: String,
        volume: String,
        mount_path: String,
        reason: String,
    },
    #[error("cannot read the mount table {}: {reason}", path.display())]
    MountTable { path: PathBuf, reason: String },
    #[error("pod directory {}: {reason}", pod_dir.display())]
    PodDir { pod_dir: PathBuf, reason: String },
    #[error(
        "updating volumes failed ({}); updated before the failures: {updated:?}",
        join_errors(failures)
    )]
    UpdateFailed {
        updated: Vec<String>,
        failures: Vec<VolumeError>,
    },
}

fn join_errors(errors: &[VolumeError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn io_error<'a>(
    volume: &'a str,
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        volume: volume.to_string(),
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Sets up every volume of the pod (idempotent) and says where each one is.
pub fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    sources: &VolumeSources,
) -> Result<Vec<PreparedVolume>, VolumeError> {
    let pod_dir = canonical_pod_dir(pod_dir)?;
    pod_volumes(pod)
        .iter()
        .map(|volume| set_up(pod, &pod_dir, volume, sources).map(|(prepared, _)| prepared))
        .collect()
}

/// Rewrites the configMap, secret, downwardAPI and projected volumes whose content changed
/// (objects, labels, annotations); returns the names of the volumes rewritten. Every volume
/// is tried; failures are collected into [`VolumeError::UpdateFailed`].
pub fn update(
    pod: &Pod,
    pod_dir: &Path,
    sources: &VolumeSources,
) -> Result<Vec<String>, VolumeError> {
    let pod_dir = canonical_pod_dir(pod_dir)?;
    let mut updated = Vec::new();
    let mut failures = Vec::new();
    for volume in pod_volumes(pod) {
        let is_data = match classify(volume) {
            Ok(source) => source.kind().is_projected_data(),
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if !is_data {
            continue;
        }
        match set_up(pod, &pod_dir, volume, sources) {
            Ok((_, true)) => updated.push(volume.name.clone()),
            Ok((_, false)) => {}
            Err(e) => {
                warn!(volume = %volume.name, error = %e, "volume update failed; keeping the old files");
                failures.push(e);
            }
        }
    }
    if failures.is_empty() {
        Ok(updated)
    } else {
        Err(VolumeError::UpdateFailed { updated, failures })
    }
}

/// Resolves a container's `volumeMounts` against the prepared volumes; subPaths are
/// created if missing and bind-mounted under `{pod_dir}/volume-subpaths` (module `subpath`);
/// `subPathExpr` is expanded with `env`, the container's environment.
pub fn container_mounts(
    pod: &Pod,
    container: &Container,
    prepared: &[PreparedVolume],
    pod_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Vec<MountSpec>, VolumeError> {
    let pod_dir = canonical_pod_dir(pod_dir)?;
    let privileged = container
        .security_context
        .as_ref()
        .and_then(|context| context.privileged)
        .unwrap_or(false);
    let mut mounts = Vec::new();
    for (index, volume_mount) in container.volume_mounts.iter().flatten().enumerate() {
        let mount_error = |reason: String| VolumeError::VolumeMount {
            container: container.name.clone(),
            volume: volume_mount.name.clone(),
            mount_path: volume_mount.mount_path.clone(),
            reason,
        };
        let volume = prepared
            .iter()
            .find(|volume| volume.name == volume_mount.name)
            .ok_or_else(|| {
                mount_error(format!(
                    "pod {:?} has no volume named {:?}",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    volume_mount.name
                ))
            })?;
        if volume_mount.mount_path.is_empty() {
            return Err(mount_error("mountPath must not be empty".to_string()));
        }
        let sub_path = volume_mount.sub_path.as_deref().unwrap_or_default();
        let sub_path_expr = volume_mount.sub_path_expr.as_deref().unwrap_or_default();
        let sub_path = match (sub_path.is_empty(), sub_path_expr.is_empty()) {
            (true, true) => None,
            (false, true) => Some(sub_path.to_string()),
            (true, false) => Some(subpath::expand(sub_path_expr, env)),
            (false, false) => {
                return Err(mount_error(
                    "subPath and subPathExpr are mutually exclusive".to_string(),
                ))
            }
        };
        let source = match sub_path.filter(|sub| !sub.is_empty()) {
            None => volume.host_path.clone(),
            Some(sub) => {
                subpath::validate(&sub).map_err(&mount_error)?;
                let opened = subpath::open_inside(&volume.host_path, &sub)
                    .map_err(|reason| mount_error(format!("subPath {sub:?}: {reason}")))?;
                let target = pod_dir
                    .join(SUBPATHS_DIR)
                    .join(&volume.name)
                    .join(&container.name)
                    .join(index.to_string());
                subpath::bind(&opened, &target)
                    .map_err(|reason| mount_error(format!("subPath {sub:?}: {reason}")))?
            }
        };
        let propagation =
            match volume_mount.mount_propagation.as_deref() {
                None | Some("") | Some("None") => "rprivate",
                Some("HostToContainer") => "rslave",
                Some("Bidirectional") if privileged => "rshared",
                Some("Bidirectional") => return Err(mount_error(
                    "Bidirectional mount propagation is available only to privileged containers"
                        .to_string(),
                )),
                Some(other) => {
                    return Err(mount_error(format!(
                        "unknown mountPropagation {other:?} (expected None, HostToContainer or \
                     Bidirectional)"
                    )))
                }
            };
        mounts.push(MountSpec {
            destination: volume_mount.mount_path.clone(),
            source,
            read_only: volume.read_only || volume_mount.read_only.unwrap_or(false),
            propagation: Some(propagation),
        });
    }
    Ok(mounts)
}

/// Unmounts everything below the pod directory (deepest first, lazily) and removes the
/// pod's volume and subPath directories; idempotent. Nothing is deleted while a mount is
/// left below the pod directory, and deletion never follows symlinks.
pub fn teardown(pod_dir: &Path) -> Result<(), VolumeError> {
    let root = match pod_dir.canonicalize() {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(VolumeError::PodDir {
                pod_dir: pod_dir.to_path_buf(),
                reason: format!("cannot resolve the pod directory: {e}"),
            })
        }
    };
    let mut failures = Vec::new();
    for _ in 0..MAX_UNMOUNT_ROUNDS {
        let points = mountinfo::mounts_below(&root)?;
        if points.is_empty() {
            break;
        }
        failures.clear();
        for point in points {
            if let Err(errno) = mountinfo::detach(&point) {
                failures.push(format!(
                    "cannot unmount {}: {}",
                    point.display(),
                    errno.desc()
                ));
            }
        }
    }
    let left = mountinfo::mounts_below(&root)?;
    if !left.is_empty() {
        let listed: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
        return Err(VolumeError::PodDir {
            pod_dir: root,
            reason: format!(
                "mounts remain ({}){}; not deleting anything",
                listed.join(", "),
                if failures.is_empty() {
                    String::new()
                } else {
                    format!(": {}", failures.join("; "))
                }
            ),
        });
    }
    for dir in [VOLUMES_DIR, SUBPATHS_DIR] {
        let path = root.join(dir);
        // remove_dir_all removes symlinks themselves and never descends through them.
        match fs::remove_dir_all(&path) {
            Ok(()) => info!(path = %path.display(), "removed pod volumes"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(VolumeError::PodDir {
                    pod_dir: root.clone(),
                    reason: format!("cannot remove {}: {e}", path.display()),
                })
            }
        }
    }
    Ok(())
}

fn pod_volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.volumes.as_deref())
        .unwrap_or_default()
}

/// Creates `{pod_dir}/volumes` and returns the canonical pod dir, so that the paths built
/// from it compare equal to the mount table's.
fn canonical_pod_dir(pod_dir: &Path) -> Result<PathBuf, VolumeError> {
    let volumes = pod_dir.join(VOLUMES_DIR);
    let pod_dir_error = |reason: String| VolumeError::PodDir {
        pod_dir: pod_dir.to_path_buf(),
        reason,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&volumes)
        .map_err(|e| pod_dir_error(format!("cannot create {}: {e}", volumes.display())))?;
    pod_dir
        .canonicalize()
        .map_err(|e| pod_dir_error(format!("cannot resolve the pod directory: {e}")))
}

/// A volume's source, once checked that exactly one supported type is set.
enum Source<'a> {
    EmptyDir(Option<&'a EmptyDirVolumeSource>),
    HostPath(&'a HostPathVolumeSource),
    ConfigMap(&'a ConfigMapVolumeSource),
    Secret(&'a SecretVolumeSource),
    DownwardApi(&'a DownwardAPIVolumeSource),
    Projected(&'a ProjectedVolumeSource),
    Claim(&'a PersistentVolumeClaimVolumeSource),
}

impl Source<'_> {
    fn kind(&self) -> VolumeKind {
        match self {
            Source::EmptyDir(_) => VolumeKind::EmptyDir,
            Source::HostPath(_) => VolumeKind::HostPath,
            Source::ConfigMap(_) => VolumeKind::ConfigMap,
            Source::Secret(_) => VolumeKind::Secret,
            Source::DownwardApi(_) => VolumeKind::DownwardApi,
            Source::Projected(_) => VolumeKind::Projected,
            Source::Claim(_) => VolumeKind::PersistentVolumeClaim,
        }
    }
}

fn classify(volume: &Volume) -> Result<Source<'_>, VolumeError> {
    let name = &volume.name;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(VolumeError::Invalid {
            volume: name.clone(),
            reason: "volume names must be non-empty file names".to_string(),
        });
    }
    let unsupported = [
        (
            "awsElasticBlockStore",
            volume.aws_elastic_block_store.is_some(),
        ),
        ("azureDisk", volume.azure_disk.is_some()),
        ("azureFile", volume.azure_file.is_some()),
        ("cephfs", volume.cephfs.is_some()),
        ("cinder", volume.cinder.is_some()),
        ("csi", volume.csi.is_some()),
        ("ephemeral", volume.ephemeral.is_some()),
        ("fc", volume.fc.is_some()),
        ("flexVolume", volume.flex_volume.is_some()),
        ("flocker", volume.flocker.is_some()),
        ("gcePersistentDisk", volume.gce_persistent_disk.is_some()),
        ("gitRepo", volume.git_repo.is_some()),
        ("glusterfs", volume.glusterfs.is_some()),
        ("image", volume.image.is_some()),
        ("iscsi", volume.iscsi.is_some()),
        ("nfs", volume.nfs.is_some()),
        (
            "photonPersistentDisk",
            volume.photon_persistent_disk.is_some(),
        ),
        ("portworxVolume", volume.portworx_volume.is_some()),
        ("quobyte", volume.quobyte.is_some()),
        ("rbd", volume.rbd.is_some()),
        ("scaleIO", volume.scale_io.is_some()),
        ("storageos", volume.storageos.is_some()),
        ("vsphereVolume", volume.vsphere_volume.is_some()),
    ];
    if let Some((kind, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(VolumeError::Unsupported {
            volume: name.clone(),
            kind,
        });
    }
    let mut sources: Vec<Source<'_>> = [
        volume.empty_dir.as_ref().map(|s| Source::EmptyDir(Some(s))),
        volume.host_path.as_ref().map(Source::HostPath),
        volume.config_map.as_ref().map(Source::ConfigMap),
        volume.secret.as_ref().map(Source::Secret),
        volume.downward_api.as_ref().map(Source::DownwardApi),
        volume.projected.as_ref().map(Source::Projected),
        volume.persistent_volume_claim.as_ref().map(Source::Claim),
    ]
    .into_iter()
    .flatten()
    .collect();
    match sources.len() {
        // The API server defaults a volume without a source to an emptyDir.
        0 => Ok(Source::EmptyDir(None)),
        1 => sources.pop().ok_or_else(|| VolumeError::Invalid {
            volume: name.clone(),
            reason: "no volume source".to_string(),
        }),
        _ => {
            let kinds: Vec<&str> = sources.iter().map(|s| s.kind().as_str()).collect();
            Err(VolumeError::Invalid {
                volume: name.clone(),
                reason: format!("sets more than one volume type ({})", kinds.join(", ")),
            })
        }
    }
}

/// Sets up one volume; the flag says whether projected data was (re)written.
fn set_up(
    pod: &Pod,
    pod_dir: &Path,
    volume: &Volume,
    sources: &VolumeSources,
) -> Result<(PreparedVolume, bool), VolumeError> {
    let name = volume.name.as_str();
    let source = classify(volume)?;
    let kind = source.kind();
    let prepared = |host_path: PathBuf, read_only: bool, omitted: Vec<String>| PreparedVolume {
        name: name.to_string(),
        kind,
        host_path,
        read_only,
        omitted,
    };
    let data_dir = || pod_dir.join(VOLUMES_DIR).join(kind.plugin_dir()).join(name);
    match source {
        Source::EmptyDir(empty_dir) => {
            let dir = data_dir();
            set_up_empty_dir(name, &dir, empty_dir)?;
            Ok((prepared(dir, false, Vec::new()), false))
        }
        Source::HostPath(host_path) => {
            let path = PathBuf::from(&host_path.path);
            if !path.is_absolute() {
                return Err(VolumeError::Invalid {
                    volume: name.to_string(),
                    reason: format!("hostPath {:?} must be absolute", host_path.path),
                });
            }
            host_path::check_type(name, &path, host_path.type_.as_deref().unwrap_or_default())?;
            Ok((prepared(path, false, Vec::new()), false))
        }
        Source::Claim(claim) => {
            let path = claim_path(name, claim, sources)?;
            Ok((
                prepared(path, claim.read_only.unwrap_or(false), Vec::new()),
                false,
            ))
        }
        Source::ConfigMap(config_map) => {
            let mut payload = Payload::new();
            let selection = KeySelection {
                kind: ObjectKind::ConfigMap,
                name: &config_map.name,
                items: config_map.items.as_deref(),
                optional: config_map.optional.unwrap_or(false),
                default_mode: projected::file_mode(
                    name,
                    config_map.default_mode,
                    DEFAULT_MODE as u32,
                )?,
            };
            projected::add_keys(name, &selection, sources, &mut payload)?;
            let dir = data_dir();
            let written = write_data(name, &dir, &payload, false)?;
            Ok((prepared(dir, true, Vec::new()), written))
        }
        Source::Secret(secret) => {
            let secret_name = secret
                .secret_name
                .as_deref()
                .filter(|secret_name| !secret_name.is_empty())
                .ok_or_else(|| VolumeError::Invalid {
                    volume: name.to_string(),
                    reason: "secret volume without secretName".to_string(),
                })?;
            let mut payload = Payload::new();
            let selection = KeySelection {
                kind: ObjectKind::Secret,
                name: secret_name,
                items: secret.items.as_deref(),
                optional: secret.optional.unwrap_or(false),
                default_mode: projected::file_mode(name, secret.default_mode, DEFAULT_MODE as u32)?,
            };
            projected::add_keys(name, &selection, sources, &mut payload)?;
            let dir = data_dir();
            let written = write_data(name, &dir, &payload, true)?;
            Ok((prepared(dir, true, Vec::new()), written))
        }
        Source::DownwardApi(downward_api) => {
            let mut payload = Payload::new();
            let default_mode =
                projected::file_mode(name, downward_api.default_mode, DEFAULT_MODE as u32)?;
            projected::add_downward_api(
                name,
                pod,
                downward_api.items.as_deref().unwrap_or_default(),
                default_mode,
                &mut payload,
            )?;
            let dir = data_dir();
            let written = write_data(name, &dir, &payload, true)?;
            Ok((prepared(dir, true, Vec::new()), written))
        }
        Source::Projected(projected_source) => {
            let mut payload = Payload::new();
            let default_mode =
                projected::file_mode(name, projected_source.default_mode, DEFAULT_MODE as u32)?;
            let omitted = projected::add_projections(
                name,
                pod,
                projected_source.sources.as_deref().unwrap_or_default(),
                default_mode,
                sources,
                &mut payload,
            )?;
            for reason in &omitted {
                warn!(volume = name, "{reason}");
            }
            let dir = data_dir();
            let written = write_data(name, &dir, &payload, true)?;
            Ok((prepared(dir, true, omitted), written))
        }
    }
}

fn set_up_empty_dir(
    volume: &str,
    dir: &Path,
    source: Option<&EmptyDirVolumeSource>,
) -> Result<(), VolumeError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(io_error(volume, "create", dir))?;
    match source.and_then(|s| s.medium.as_deref()).unwrap_or_default() {
        "" => {}
        "Memory" => {
            let size = match source.and_then(|s| s.size_limit.as_ref()) {
                Some(limit) => {
                    let bytes = Quantity::from_k8s(limit)
                        .map_err(|e| VolumeError::Invalid {
                            volume: volume.to_string(),
                            reason: format!("sizeLimit {:?}: {e}", limit.0),
                        })?
                        .value();
                    // As the kubelet: a non-positive limit means no size option.
                    u64::try_from(bytes).ok().filter(|bytes| *bytes > 0)
                }
                None => None,
            };
            mountinfo::ensure_tmpfs(volume, dir, 0o777, size, None)?;
        }
        other => {
            return Err(VolumeError::Invalid {
                volume: volume.to_string(),
                reason: format!(
                    "emptyDir medium {other:?} is not supported by skiff (only \"\" and Memory)"
                ),
            })
        }
    }
    // World-writable as the kubelet makes it, so containers running as any user can use it.
    fs::set_permissions(dir, Permissions::from_mode(0o777)).map_err(io_error(
        volume,
        "set the mode of",
        dir,
    ))
}

/// Writes a payload into its volume dir, on a tmpfs sized for it when `on_tmpfs`.
fn write_data(
    volume: &str,
    dir: &Path,
    payload: &Payload,
    on_tmpfs: bool,
) -> Result<bool, VolumeError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io_error(volume, "create", dir))?;
    if on_tmpfs {
        // Room for two versions side by side during an update, in whole pages.
        let pages: u64 = payload
            .values()
            .map(|file| (file.data.len() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE)
            .sum();
        let size = MIN_SECRET_TMPFS + 2 * pages;
        mountinfo::ensure_tmpfs(volume, dir, 0o755, Some(size), Some(size))?;
    }
    let written = atomic::write(volume, dir, payload)?;
    if !written {
        debug!(volume, dir = %dir.display(), "volume data unchanged");
    }
    Ok(written)
}

/// The host path of a claim bound to a hostPath or local PersistentVolume.
fn claim_path(
    volume: &str,
    source: &PersistentVolumeClaimVolumeSource,
    sources: &VolumeSources,
) -> Result<PathBuf, VolumeError> {
    let claim_name = source.claim_name.as_str();
    let claim_error = |reason: String| VolumeError::Claim {
        volume: volume.to_string(),
        claim: claim_name.to_string(),
        reason,
    };
    let claim = sources
        .pvcs
        .get(claim_name)
        .ok_or_else(|| claim_error("not found in the pod's namespace".to_string()))?;
    let phase = claim
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        .unwrap_or("Pending");
    if phase != "Bound" {
        return Err(claim_error(format!("is not bound (phase {phase})")));
    }
    let claim_spec = claim.spec.as_ref();
    if claim_spec.and_then(|spec| spec.volume_mode.as_deref()) == Some("Block") {
        return Err(claim_error(
            "volumeMode Block is not supported by skiff (only Filesystem)".to_string(),
        ));
    }
    let pv_name = claim_spec
        .and_then(|spec| spec.volume_name.as_deref())
        .filter(|pv_name| !pv_name.is_empty())
        .ok_or_else(|| claim_error("is Bound but names no volume (spec.volumeName)".to_string()))?;
    let pv = sources.pvs.get(pv_name).ok_or_else(|| {
        claim_error(format!(
            "is bound to PersistentVolume {pv_name:?}, which was not found"
        ))
    })?;
    let pv_spec = pv
        .spec
        .as_ref()
        .ok_or_else(|| claim_error(format!("PersistentVolume {pv_name:?} has no spec")))?;
    if let Some(claim_ref) = &pv_spec.claim_ref {
        let other_claim = claim_ref
            .name
            .as_deref()
            .is_some_and(|name| name != claim_name);
        let other_namespace = match (&claim_ref.namespace, &claim.metadata.namespace) {
            (Some(theirs), Some(ours)) => theirs != ours,
            _ => false,
        };
        if other_claim || other_namespace {
            return Err(claim_error(format!(
                "PersistentVolume {pv_name:?} is bound to another claim ({}/{})",
                claim_ref.namespace.as_deref().unwrap_or_default(),
                claim_ref.name.as_deref().unwrap_or_default()
            )));
        }
    }
    if let Some(host_path) = &pv_spec.host_path {
        let path = PathBuf::from(&host_path.path);
        host_path::check_type(
            volume,
            &path,
            host_path.type_.as_deref().unwrap_or_default(),
        )
        .map_err(|e| claim_error(format!("PersistentVolume {pv_name:?}: {e}")))?;
        if !path.exists() {
            return Err(claim_error(format!(
                "PersistentVolume {pv_name:?}: hostPath {} does not exist",
                path.display()
            )));
        }
        return Ok(path);
    }
    if let Some(local) = &pv_spec.local {
        if !node_affinity_allows(pv, &sources.node_name) {
            return Err(claim_error(format!(
                "local PersistentVolume {pv_name:?} belongs to another node than {:?}",
                sources.node_name
            )));
        }
        let path = PathBuf::from(&local.path);
        return match fs::metadata(&path) {
            Ok(_) => Ok(path),
            Err(e) => Err(claim_error(format!(
                "local PersistentVolume {pv_name:?}: path {}: {e}",
                path.display()
            ))),
        };
    }
    let kind = serde_json::to_value(pv_spec)
        .ok()
        .and_then(|value| {
            value.as_object().and_then(|fields| {
                PV_SOURCE_FIELDS
                    .iter()
                    .find(|field| fields.contains_key(**field))
                    .map(|field| field.to_string())
            })
        })
        .unwrap_or_else(|| "no volume source".to_string());
    Err(claim_error(format!(
        "PersistentVolume {pv_name:?} is of type {kind}; skiff supports only hostPath and \
         local PersistentVolumes"
    )))
}

/// The PersistentVolume source fields other than hostPath and local.
const PV_SOURCE_FIELDS: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// Whether a local PV's required node affinity admits this node. Only the
/// `kubernetes.io/hostname` label is known here; terms on other labels are taken as met.
fn node_affinity_allows(pv: &PersistentVolume, node_name: &str) -> bool {
    if node_name.is_empty() {
        return true;
    }
    let Some(terms) = pv
        .spec
        .as_ref()
        .and_then(|spec| spec.node_affinity.as_ref())
        .and_then(|affinity| affinity.required.as_ref())
        .map(|selector| &selector.node_selector_terms)
        .filter(|terms| !terms.is_empty())
    else {
        return true;
    };
    terms.iter().any(|term| {
        term.match_expressions.iter().flatten().all(|requirement| {
            if requirement.key != "kubernetes.io/hostname" {
                return true;
            }
            let listed = requirement
                .values
                .iter()
                .flatten()
                .any(|value| value == node_name);
            match requirement.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                "DoesNotExist" => false,
                _ => true,
            }
        })
    })
}
