//! The PersistentVolume binder: binds claims to volumes, provisions `local-path` volumes on
//! the node a pod landed on, and reclaims volumes whose claims are gone.
//!
//! Two loops share one set of caches:
//! - **claims**: a Pending claim is bound to the volume pre-bound to it, else to the smallest
//!   Available volume that fits (same class — an empty class matches only an empty class —,
//!   capacity ≥ request, access modes a superset, the claim's selector, the volume mode, and
//!   for a claim waiting for its first consumer the node the pod was scheduled to). With no
//!   match: a claim without any class gets the default class (Kubernetes' retroactive default
//!   class assignment; skiff has no admission plugin doing it at create); a claim of a class
//!   with `WaitForFirstConsumer` waits until a pod using it has `spec.nodeName`, then gets
//!   `volume.kubernetes.io/selected-node`; the `skiff.io/local-path` provisioner then creates
//!   `pvc-<uid>`, a hostPath volume (`DirectoryOrCreate`, made by the node daemon at mount)
//!   with a required node affinity to that node, and binds it.
//! - **volumes**: a volume's phase follows its `claimRef` (Available / Bound); when the claim
//!   is gone the reclaim policy applies: `Retain` → Released, `Delete` → the volume object is
//!   deleted, `Recycle` → Available again with the claimRef cleared.
//!
//! Binding writes the volume first (claimRef, then status Bound), then the claim (volumeName
//! and the `pv.kubernetes.io/bind-completed` annotation, then status Bound with capacity and
//! access modes), as Kubernetes' PV controller does; each step is idempotent, so a pass that
//! stopped halfway is finished by the next. Volume writes use the cached resourceVersion:
//! two claims racing for one volume cannot both win.
//!
//! Limits: no scrubbing on Recycle; nothing removes a deleted local-path volume's directory
//! on its node; no volume expansion, snapshots or data sources; StorageClass
//! `allowedTopologies` and `parameters` are ignored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Pod,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;
use skiff_api::labels::Selector;
use skiff_api::quantity::Quantity;

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorder};
use crate::objects::{already_gone, delete_exactly};
use crate::objects::{is_terminating, phase};
use crate::placement::term_matches;

/// The provisioner of skiff's default `local-path` class.
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.io/local-path";
/// Where local-path volumes live on their node.
pub const LOCAL_PATH_ROOT: &str = "/var/lib/skiff/local-path";

pub use skiff_api::constants::DEFAULT_STORAGE_CLASS_ANNOTATION as DEFAULT_CLASS_ANNOTATION;
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

const COMPONENT: &str = "persistentvolume-controller";

// ---- pure matching ----

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The class a claim asks for (the beta annotation wins, as in Kubernetes); `""` for none.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    annotation(&pvc.metadata, BETA_CLASS_ANNOTATION)
        .or_else(|| pvc.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The class of a volume; `""` for none.
pub fn volume_class(pv: &PersistentVolume) -> &str {
    annotation(&pv.metadata, BETA_CLASS_ANNOTATION)
        .or_else(|| pv.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The default class: annotated `is-default-class: "true"`; the newest when several are.
pub fn default_class(classes: &[Arc<StorageClass>]) -> Option<&StorageClass> {
    classes
        .iter()
        .filter(|c| {
            annotation(&c.metadata, DEFAULT_CLASS_ANNOTATION)
                .or_else(|| annotation(&c.metadata, BETA_DEFAULT_CLASS_ANNOTATION))
                == Some("true")
        })
        .map(Arc::as_ref)
        .max_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| b.name_any().cmp(&a.name_any()))
        })
}

fn requested_storage(pvc: &PersistentVolumeClaim) -> Quantity {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::from_k8s(q).ok())
        .unwrap_or_default()
}

fn volume_capacity(pv: &PersistentVolume) -> Option<Quantity> {
    pv.spec
        .as_ref()?
        .capacity
        .as_ref()?
        .get("storage")
        .and_then(|q| Quantity::from_k8s(q).ok())
}

fn volume_mode_of(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

/// Whether the volume's `claimRef` names this claim (by uid when it has one).
pub fn is_bound_to(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == pvc.metadata.name.as_deref()
        && r.namespace.as_deref() == pvc.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|u| Some(u) == pvc.metadata.uid.as_deref())
}

/// The node a volume must be used on, as far as it matters for matching.
pub struct NodeFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Whether a volume may be used on `node` (no required affinity: anywhere).
pub fn node_affinity_allows(pv: &PersistentVolume, node: &NodeFacts) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, &node.name, &node.labels))
}

/// Why a volume does not fit a claim, or `None` when it does.
pub fn mismatch(
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    node: Option<&NodeFacts>,
) -> Option<String> {
    let (Some(cspec), Some(vspec)) = (pvc.spec.as_ref(), pv.spec.as_ref()) else {
        return Some("spec is missing".into());
    };
    if is_terminating(&pv.metadata) {
        return Some("volume is being deleted".into());
    }
    if claim_class(pvc) != volume_class(pv) {
        return Some(format!(
            "storage class {:?} is not the claim's {:?}",
            volume_class(pv),
            claim_class(pvc)
        ));
    }
    if volume_mode_of(cspec.volume_mode.as_ref()) != volume_mode_of(vspec.volume_mode.as_ref()) {
        return Some("volume mode differs".into());
    }
    let has = vspec.access_modes.as_deref().unwrap_or_default();
    if let Some(missing) = cspec
        .access_modes
        .iter()
        .flatten()
        .find(|m| !has.contains(m))
    {
        return Some(format!("access mode {missing} is not offered"));
    }
    let capacity = volume_capacity(pv).unwrap_or_default();
    if capacity < requested_storage(pvc) {
        return Some(format!(
            "capacity {capacity} is less than the request {}",
            requested_storage(pvc)
        ));
    }
    if let Some(sel) = cspec.selector.as_ref() {
        match Selector::from_label_selector(sel) {
            Ok(sel) if sel.matches(crate::objects::labels(&pv.metadata)) => {}
            Ok(_) => return Some("labels do not match the claim's selector".into()),
            Err(e) => return Some(format!("claim selector: {e}")),
        }
    }
    if let Some(node) = node {
        if !node_affinity_allows(pv, node) {
            return Some(format!("node affinity does not allow node {}", node.name));
        }
    }
    None
}

/// The volume for a Pending claim: the one pre-bound to it if it fits, else the smallest
/// free one that fits.
pub fn best_match<'a>(
    pvc: &PersistentVolumeClaim,
    volumes: &'a [Arc<PersistentVolume>],
    node: Option<&NodeFacts>,
) -> Option<&'a PersistentVolume> {
    if let Some(pre) = volumes
        .iter()
        .find(|pv| is_bound_to(pv, pvc) && mismatch(pvc, pv, node).is_none())
    {
        return Some(pre);
    }
    volumes
        .iter()
        .filter(|pv| {
            pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none())
                && !matches!(pv_phase(pv), "Released" | "Failed")
                && mismatch(pvc, pv, node).is_none()
        })
        .min_by(|a, b| {
            volume_capacity(a)
                .cmp(&volume_capacity(b))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        })
        .map(Arc::as_ref)
}

fn pv_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn pvc_phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// A reference to a claim, as a volume's `claimRef` holds it.
pub fn claim_reference(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: pvc.metadata.name.clone(),
        namespace: pvc.metadata.namespace.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The local-path volume for a claim on `node`: `pvc-<uid>`, a hostPath directory under
/// [`LOCAL_PATH_ROOT`] that only that node has, pre-bound to the claim.
pub fn local_path_volume(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
) -> PersistentVolume {
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.name_any();
    let cspec = pvc.spec.clone().unwrap_or_default();
    let capacity = cspec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            annotations: Some([(PROVISIONED_BY.to_string(), class.provisioner.clone())].into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: capacity.map(|q| [("storage".to_string(), q)].into()),
            access_modes: cspec
                .access_modes
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(|| Some(vec!["ReadWriteOnce".into()])),
            host_path: Some(HostPathVolumeSource {
                path: format!("{LOCAL_PATH_ROOT}/pvc-{uid}_{ns}_{name}"),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(class.name_any()),
            volume_mode: Some(volume_mode_of(cspec.volume_mode.as_ref()).to_string()),
            mount_options: class.mount_options.clone(),
            claim_ref: Some(claim_reference(pvc)),
            ..Default::default()
        }),
        status: None,
    }
}

/// What happens to a volume whose claim is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaim {
    Release,
    Delete,
    Recycle,
}

pub fn reclaim_of(pv: &PersistentVolume) -> Reclaim {
    match pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
    {
        Some("Delete") => Reclaim::Delete,
        Some("Recycle") => Reclaim::Recycle,
        _ => Reclaim::Release,
    }
}

fn is_wait_for_first_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The claims a pod uses (by name, in its namespace).
fn claims_of(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

fn is_scheduled_user(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
        && !is_terminating(&pod.metadata)
        && !matches!(phase(pod), "Succeeded" | "Failed")
}

// ---- the loops ----

struct Binder {
    ctx: Arc<Context>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    classes: Store<StorageClass>,
    recorder: Recorder,
}

/// Builds the binder's two loops (claims and volumes).
pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let classes = ctx.informers.storage_classes.reader();
    let class_changes = ctx.informers.storage_classes.subscribe();

    let b = Arc::new(Binder {
        ctx: ctx.clone(),
        claims: ctx.informers.persistent_volume_claims.reader(),
        volumes: ctx.informers.persistent_volumes.reader(),
        pods: ctx.informers.pods.reader(),
        nodes: ctx.informers.nodes.reader(),
        classes,
        recorder: ctx.recorder(COMPONENT),
    });
    let config = Config::default().concurrency(ctx.config.concurrency);

    // Claims: their own changes, volumes that free up, point at them or are deleted, pods
    // scheduled with them, and class changes.
    let pending = {
        let claims = b.claims.clone();
        move || -> Vec<ObjectRef<PersistentVolumeClaim>> {
            claims
                .state()
                .iter()
                .filter(|c| {
                    c.spec
                        .as_ref()
                        .and_then(|s| s.volume_name.as_deref())
                        .is_none_or(str::is_empty)
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect()
        }
    };
    let on_volume = {
        let pending = pending.clone();
        move |pv: Arc<PersistentVolume>| match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            Some(r) => match (&r.name, &r.namespace) {
                (Some(n), Some(ns)) => vec![ObjectRef::new(n).within(ns)],
                _ => Vec::new(),
            },
            None => pending(),
        }
    };
    let claims_loop = Controller::for_shared_stream(
        ctx.informers.persistent_volume_claims.subscribe(),
        b.claims.clone(),
    )
    .watches_shared_stream(ctx.informers.persistent_volumes.subscribe(), on_volume)
    .watches_shared_stream(ctx.informers.pods.subscribe(), |pod: Arc<Pod>| {
        let ns = pod.namespace().unwrap_or_default();
        if !is_scheduled_user(&pod) {
            return Vec::new();
        }
        claims_of(&pod)
            .map(|c| ObjectRef::new(c).within(&ns))
            .collect::<Vec<_>>()
    })
    .watches_shared_stream(class_changes, move |_: Arc<StorageClass>| pending())
    .with_config(config.clone());

    // Volumes: their own changes, and changes or deletions of the claims they are bound to.
    let volumes_loop = Controller::for_shared_stream(
        ctx.informers.persistent_volumes.subscribe(),
        b.volumes.clone(),
    )
    .watches_shared_stream(ctx.informers.persistent_volume_claims.subscribe(), {
        let volumes = b.volumes.clone();
        move |pvc: Arc<PersistentVolumeClaim>| {
            let named = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|n| !n.is_empty())
                .map(|n| ObjectRef::new(&n));
            volumes
                .state()
                .iter()
                .filter(|pv| is_bound_to(pv, &pvc))
                .map(|pv| ObjectRef::from_obj(pv.as_ref()))
                .chain(named)
                .collect::<Vec<_>>()
        }
    })
    .with_config(config);

    let run = {
        let b = b.clone();
        async move {
            let _ = b.claims.wait_until_ready().await;
            let _ = b.volumes.wait_until_ready().await;
            let _ = b.pods.wait_until_ready().await;
            let _ = b.nodes.wait_until_ready().await;
            let _ = b.classes.wait_until_ready().await;
            let policy =
                |obj, error: &Error, b: Arc<Binder>| error_policy(obj, error, b.ctx.clone());
            let claims = claims_loop
                .run(reconcile_claim, policy, b.clone())
                .for_each(log_outcome("persistentvolume-binder"));
            let volumes = volumes_loop
                .run(
                    reconcile_volume,
                    |obj, error: &Error, b: Arc<Binder>| error_policy(obj, error, b.ctx.clone()),
                    b,
                )
                .for_each(log_outcome("persistentvolume-reclaimer"));
            futures::future::join(claims, volumes).await;
        }
    };
    run.boxed()
}

async fn reconcile_claim(pvc: Arc<PersistentVolumeClaim>, b: Arc<Binder>) -> Result<Action> {
    let key = object_key(pvc.as_ref());
    if is_terminating(&pvc.metadata) {
        return Ok(Action::await_change());
    }
    let action = b.sync_claim(&pvc).await?;
    b.ctx.succeeded(&key);
    Ok(action)
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, b: Arc<Binder>) -> Result<Action> {
    let key = object_key(pv.as_ref());
    if is_terminating(&pv.metadata) {
        return Ok(Action::await_change());
    }
    b.sync_volume(&pv).await?;
    b.ctx.succeeded(&key);
    Ok(Action::await_change())
}

impl Binder {
    fn claim_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    fn volume_api(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    fn node_facts(&self, name: &str) -> NodeFacts {
        let labels = self
            .nodes
            .get(&ObjectRef::new(name))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_else(|| [(HOSTNAME_LABEL.to_string(), name.to_string())].into());
        NodeFacts {
            name: name.to_string(),
            labels,
        }
    }

    /// The node the claim's first consumer runs on: the scheduler's choice if recorded, else
    /// the node of a scheduled pod that uses the claim.
    fn consumer_node(&self, pvc: &PersistentVolumeClaim) -> Option<String> {
        if let Some(n) = annotation(&pvc.metadata, SELECTED_NODE).filter(|n| !n.is_empty()) {
            return Some(n.to_string());
        }
        let ns = pvc.metadata.namespace.as_deref();
        let name = pvc.name_any();
        let mut users: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == ns
                    && is_scheduled_user(p)
                    && claims_of(p).any(|c| c == name)
            })
            .collect();
        users.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        users
            .first()
            .and_then(|p| p.spec.as_ref()?.node_name.clone())
    }

    async fn sync_claim(&self, pvc: &PersistentVolumeClaim) -> Result<Action> {
        let what = format!("persistentvolumeclaim {}", object_key(pvc));
        let volume_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|n| !n.is_empty());
        if let Some(volume_name) = volume_name {
            return self.sync_named_claim(pvc, &volume_name).await;
        }
        let class_name = claim_class(pvc).to_string();
        let classes = self.classes.state();
        let class = classes.iter().find(|c| c.name_any() == class_name).cloned();
        let volumes = self.volumes.state();

        let node = if is_wait_for_first_consumer(class.as_deref()) {
            match self.consumer_node(pvc) {
                Some(n) => Some(n),
                None => {
                    // A volume already pre-bound to the claim needs no consumer.
                    if let Some(pv) =
                        best_match(pvc, &volumes, None).filter(|pv| is_bound_to(pv, pvc))
                    {
                        self.bind(pvc, pv).await?;
                        return Ok(Action::await_change());
                    }
                    self.recorder
                        .publish(
                            pvc,
                            EventType::Normal,
                            "WaitForFirstConsumer",
                            "waiting for first consumer to be created before binding",
                        )
                        .await;
                    return Ok(Action::await_change());
                }
            }
        } else {
            None
        };
        let facts = node.as_deref().map(|n| self.node_facts(n));
        if let Some(pv) = best_match(pvc, &volumes, facts.as_ref()) {
            self.bind(pvc, pv).await?;
            return Ok(Action::await_change());
        }

        // Nothing fits.
        let unset = pvc
            .spec
            .as_ref()
            .is_none_or(|s| s.storage_class_name.is_none())
            && annotation(&pvc.metadata, BETA_CLASS_ANNOTATION).is_none();
        if unset {
            if let Some(default) = default_class(&classes) {
                let patch = json!({"spec": {"storageClassName": default.name_any()}});
                self.claim_api(pvc.metadata.namespace.as_deref().unwrap_or_default())
                    .patch(
                        &pvc.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map_err(|e| Error::api("set the default storage class of", &what, e))?;
                return Ok(Action::await_change());
            }
        }
        if class_name.is_empty() {
            self.recorder
                .publish(
                    pvc,
                    EventType::Normal,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                )
                .await;
            return Ok(Action::await_change());
        }
        let Some(class) = class else {
            self.recorder
                .publish(
                    pvc,
                    EventType::Warning,
                    "ProvisioningFailed",
                    &format!("storageclass.storage.k8s.io {class_name:?} not found"),
                )
                .await;
            return Ok(Action::await_change());
        };
        if class.provisioner != LOCAL_PATH_PROVISIONER {
            self.annotate_claim(
                pvc,
                &[
                    (STORAGE_PROVISIONER, &class.provisioner),
                    (BETA_STORAGE_PROVISIONER, &class.provisioner),
                ],
            )
            .await?;
            self.recorder
                .publish(
                    pvc,
                    EventType::Normal,
                    "ExternalProvisioning",
                    &format!(
                        "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                        class.provisioner
                    ),
                )
                .await;
            return Ok(Action::await_change());
        }
        let Some(node) = node else {
            self.recorder
                .publish(
                    pvc,
                    EventType::Warning,
                    "ProvisioningFailed",
                    &format!(
                        "storage class {class_name:?}: the {LOCAL_PATH_PROVISIONER} provisioner needs volumeBindingMode WaitForFirstConsumer to know the node"
                    ),
                )
                .await;
            return Ok(Action::await_change());
        };
        self.provision(pvc, &class, &node).await?;
        Ok(Action::await_change())
    }

    async fn annotate_claim(
        &self,
        pvc: &PersistentVolumeClaim,
        pairs: &[(&str, &str)],
    ) -> Result<()> {
        if pairs
            .iter()
            .all(|(k, v)| annotation(&pvc.metadata, k) == Some(*v))
        {
            return Ok(());
        }
        let annotations: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.claim_api(pvc.metadata.namespace.as_deref().unwrap_or_default())
            .patch(
                &pvc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
            )
            .await
            .map_err(|e| {
                Error::api(
                    "annotate",
                    format!("persistentvolumeclaim {}", object_key(pvc)),
                    e,
                )
            })?;
        Ok(())
    }

    async fn provision(
        &self,
        pvc: &PersistentVolumeClaim,
        class: &StorageClass,
        node: &str,
    ) -> Result<()> {
        self.annotate_claim(
            pvc,
            &[
                (SELECTED_NODE, node),
                (STORAGE_PROVISIONER, LOCAL_PATH_PROVISIONER),
                (BETA_STORAGE_PROVISIONER, LOCAL_PATH_PROVISIONER),
            ],
        )
        .await?;
        let desired = local_path_volume(pvc, class, node);
        let name = desired.name_any();
        let api = self.volume_api();
        let pv = match api.create(&PostParams::default(), &desired).await {
            Ok(pv) => {
                self.recorder
                    .publish(
                        pvc,
                        EventType::Normal,
                        "ProvisioningSucceeded",
                        &format!("Successfully provisioned volume {name} on node {node} using {LOCAL_PATH_PROVISIONER}"),
                    )
                    .await;
                pv
            }
            Err(kube::Error::Api(s)) if s.code == 409 => api
                .get(&name)
                .await
                .map_err(|e| Error::api("get", format!("persistentvolume {name}"), e))?,
            Err(e) => {
                self.recorder
                    .publish(
                        pvc,
                        EventType::Warning,
                        "ProvisioningFailed",
                        &format!("creating volume {name}: {e}"),
                    )
                    .await;
                return Err(Error::api("create", format!("persistentvolume {name}"), e));
            }
        };
        if !is_bound_to(&pv, pvc) {
            return Err(Error::Other(format!(
                "persistentvolume {name} exists and is bound to another claim"
            )));
        }
        self.bind(pvc, &pv).await
    }

    /// A claim that names its volume: finish the binding, or report what is wrong.
    async fn sync_named_claim(
        &self,
        pvc: &PersistentVolumeClaim,
        volume_name: &str,
    ) -> Result<Action> {
        let completed = annotation(&pvc.metadata, BIND_COMPLETED).is_some();
        let pv = self.volumes.get(&ObjectRef::new(volume_name));
        let Some(pv) = pv else {
            if completed && pvc_phase(pvc) != "Lost" {
                // Confirm through the API: the cache may not have the volume yet.
                match self.volume_api().get_opt(volume_name).await {
                    Ok(Some(_)) => return Ok(Action::requeue(Duration::from_secs(1))),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(Error::api(
                            "get",
                            format!("persistentvolume {volume_name}"),
                            e,
                        ))
                    }
                }
                self.set_claim_phase(pvc, "Lost").await?;
                self.recorder
                    .publish(
                        pvc,
                        EventType::Warning,
                        "ClaimLost",
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                    )
                    .await;
            }
            return Ok(Action::await_change());
        };
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_none() || is_bound_to(&pv, pvc) {
            if claim_ref.is_none() {
                if let Some(why) = mismatch(pvc, &pv, None) {
                    self.recorder
                        .publish(
                            pvc,
                            EventType::Warning,
                            "VolumeMismatch",
                            &format!("Cannot bind to requested volume {volume_name:?}: {why}"),
                        )
                        .await;
                    return Ok(Action::await_change());
                }
            }
            self.bind(pvc, &pv).await?;
            return Ok(Action::await_change());
        }
        if completed {
            if pvc_phase(pvc) != "Lost" {
                self.set_claim_phase(pvc, "Lost").await?;
                self.recorder
                    .publish(
                        pvc,
                        EventType::Warning,
                        "ClaimMisbound",
                        "Two claims are bound to the same volume, this one is bound incorrectly",
                    )
                    .await;
            }
        } else {
            self.recorder
                .publish(
                    pvc,
                    EventType::Warning,
                    "FailedBinding",
                    &format!("volume {volume_name:?} already bound to a different claim."),
                )
                .await;
        }
        Ok(Action::await_change())
    }

    async fn set_claim_phase(&self, pvc: &PersistentVolumeClaim, phase: &str) -> Result<()> {
        self.claim_api(pvc.metadata.namespace.as_deref().unwrap_or_default())
            .patch_status(
                &pvc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": phase}})),
            )
            .await
            .map_err(|e| {
                Error::api(
                    "update status of",
                    format!("persistentvolumeclaim {}", object_key(pvc)),
                    e,
                )
            })?;
        Ok(())
    }

    /// Binds `pvc` to `pv`: volume claimRef, volume Bound, claim volumeName, claim Bound.
    async fn bind(&self, pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<()> {
        let pv_name = pv.name_any();
        let claim_what = format!("persistentvolumeclaim {}", object_key(pvc));
        let pv_what = format!("persistentvolume {pv_name}");
        let api = self.volume_api();
        let mut pv = pv.clone();
        let ref_current = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid.as_deref() == pvc.metadata.uid.as_deref());
        if !ref_current {
            let by_us = pv.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
            let spec = pv.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(claim_reference(pvc));
            if by_us {
                pv.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            // The cached resourceVersion guards against a second claim binding it meanwhile.
            pv = api
                .replace(&pv_name, &PostParams::default(), &pv)
                .await
                .map_err(|e| Error::api("bind", &pv_what, e))?;
        }
        if pv_phase(&pv) != "Bound" {
            api.patch_status(
                &pv_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await
            .map_err(|e| Error::api("update status of", &pv_what, e))?;
        }

        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let claims = self.claim_api(&ns);
        let named =
            pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(pv_name.as_str());
        if !named || annotation(&pvc.metadata, BIND_COMPLETED).is_none() {
            let mut annotations = serde_json::Map::new();
            annotations.insert(BIND_COMPLETED.into(), json!("yes"));
            if !named {
                annotations.insert(BOUND_BY_CONTROLLER.into(), json!("yes"));
            }
            let patch = json!({
                "metadata": {"annotations": annotations, "resourceVersion": pvc.metadata.resource_version},
                "spec": {"volumeName": pv_name},
            });
            claims
                .patch(
                    &pvc.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| Error::api("bind", &claim_what, e))?;
        }
        let spec = pv.spec.clone().unwrap_or_default();
        let status = pvc.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Bound")
            || status.capacity != spec.capacity
            || status.access_modes != spec.access_modes
        {
            let patch = json!({"status": {
                "phase": "Bound",
                "capacity": spec.capacity,
                "accessModes": spec.access_modes,
            }});
            claims
                .patch_status(
                    &pvc.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| Error::api("update status of", &claim_what, e))?;
        }
        tracing::debug!(claim = %object_key(pvc), volume = pv_name, "bound");
        Ok(())
    }

    async fn sync_volume(&self, pv: &PersistentVolume) -> Result<()> {
        let name = pv.name_any();
        let what = format!("persistentvolume {name}");
        let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            if pv_phase(pv) != "Available" {
                self.set_volume_phase(pv, "Available").await?;
            }
            return Ok(());
        };
        let (Some(claim_name), Some(claim_ns)) =
            (claim_ref.name.clone(), claim_ref.namespace.clone())
        else {
            return Err(Error::invalid(
                &what,
                "spec.claimRef needs a name and a namespace",
            ));
        };
        let ref_uid = claim_ref.uid.clone().filter(|u| !u.is_empty());
        let cached = self
            .claims
            .get(&ObjectRef::new(&claim_name).within(&claim_ns));
        let claim = match cached {
            Some(c) if ref_uid.is_none() || c.metadata.uid == ref_uid => Some(c),
            _ => {
                // Confirm through the API before reclaiming: the cache may lag.
                self.claim_api(&claim_ns)
                    .get_opt(&claim_name)
                    .await
                    .map_err(|e| {
                        Error::api(
                            "get",
                            format!("persistentvolumeclaim {claim_ns}/{claim_name}"),
                            e,
                        )
                    })?
                    .filter(|c| ref_uid.is_none() || c.metadata.uid == ref_uid)
                    .map(Arc::new)
            }
        };
        match claim {
            None if ref_uid.is_none() => {
                // Pre-bound by a user to a claim that does not exist yet.
                if pv_phase(pv) != "Available" {
                    self.set_volume_phase(pv, "Available").await?;
                }
            }
            None => self.reclaim(pv).await?,
            Some(c) => {
                let claimed = c
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .filter(|n| !n.is_empty());
                match claimed {
                    Some(n) if n == name && pv_phase(pv) != "Bound" => {
                        self.set_volume_phase(pv, "Bound").await?;
                    }
                    // The claim went to another volume: free this one if we bound it.
                    Some(n)
                        if n != name && annotation(&pv.metadata, BOUND_BY_CONTROLLER).is_some() =>
                    {
                        self.unbind(pv).await?;
                    }
                    // Bound already; or being bound (the claims loop finishes it); or a
                    // user's pre-binding the claim did not take.
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn set_volume_phase(&self, pv: &PersistentVolume, phase: &str) -> Result<()> {
        self.volume_api()
            .patch_status(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": phase}})),
            )
            .await
            .map_err(|e| {
                Error::api(
                    "update status of",
                    format!("persistentvolume {}", pv.name_any()),
                    e,
                )
            })?;
        Ok(())
    }

    async fn unbind(&self, pv: &PersistentVolume) -> Result<()> {
        let mut pv = pv.clone();
        if let Some(spec) = pv.spec.as_mut() {
            spec.claim_ref = None;
        }
        if let Some(a) = pv.metadata.annotations.as_mut() {
            a.remove(BOUND_BY_CONTROLLER);
        }
        let name = pv.name_any();
        let pv = self
            .volume_api()
            .replace(&name, &PostParams::default(), &pv)
            .await
            .map_err(|e| Error::api("unbind", format!("persistentvolume {name}"), e))?;
        self.set_volume_phase(&pv, "Available").await
    }

    /// The claim is gone: apply the reclaim policy.
    async fn reclaim(&self, pv: &PersistentVolume) -> Result<()> {
        let name = pv.name_any();
        match reclaim_of(pv) {
            Reclaim::Release => {
                if pv_phase(pv) != "Released" {
                    self.set_volume_phase(pv, "Released").await?;
                }
            }
            Reclaim::Delete => {
                let params = delete_exactly(pv.metadata.uid.as_deref());
                match self.volume_api().delete(&name, &params).await {
                    Ok(_) => {
                        tracing::info!(volume = name, "deleted volume whose claim is gone");
                    }
                    Err(e) if already_gone(&e) => {}
                    Err(e) => {
                        self.recorder
                            .publish(pv, EventType::Warning, "VolumeFailedDelete", &e.to_string())
                            .await;
                        return Err(Error::api("delete", format!("persistentvolume {name}"), e));
                    }
                }
            }
            Reclaim::Recycle => {
                self.unbind(pv).await?;
                self.recorder
                    .publish(pv, EventType::Normal, "VolumeRecycled", "Volume recycled")
                    .await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pv(name: &str, size: &str, class: &str, extra: Value) -> Arc<PersistentVolume> {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                     "storageClassName": class, "hostPath": {"path": "/tmp/x"}},
            "status": {"phase": "Available"}
        });
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn pvc(extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "claim-uid"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": ""}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn the_smallest_fitting_volume_wins() {
        let vols = [
            pv("big", "10Gi", "", json!({})),
            pv("small", "512Mi", "", json!({})),
            pv("fits", "2Gi", "", json!({})),
            pv(
                "exact",
                "1Gi",
                "",
                json!({"spec": {"claimRef": {"name": "other", "namespace": "default"}}}),
            ),
        ];
        assert_eq!(
            best_match(&pvc(json!({})), &vols, None)
                .map(|p| p.name_any())
                .as_deref(),
            Some("fits")
        );
    }

    #[test]
    fn class_modes_selector_and_volume_mode_must_match() {
        let claim = pvc(json!({}));
        let slow = pv("slow", "5Gi", "slow", json!({}));
        assert!(mismatch(&claim, &slow, None)
            .unwrap()
            .contains("storage class"));
        let rwx = pvc(json!({"spec": {"accessModes": ["ReadWriteMany"]}}));
        assert!(mismatch(&rwx, &pv("a", "5Gi", "", json!({})), None)
            .unwrap()
            .contains("ReadWriteMany"));
        let sel = pvc(json!({"spec": {"selector": {"matchLabels": {"tier": "slow"}}}}));
        assert!(mismatch(&sel, &pv("a", "5Gi", "", json!({})), None).is_some());
        let block = pvc(json!({"spec": {"volumeMode": "Block"}}));
        assert!(mismatch(&block, &pv("a", "5Gi", "", json!({})), None).is_some());
        assert!(mismatch(&claim, &pv("a", "5Gi", "", json!({})), None).is_none());
        // No class on either side matches; a class-less claim (nil) matches class-less volumes.
        let nil = pvc(json!({"spec": {"storageClassName": null}}));
        assert!(mismatch(&nil, &pv("a", "5Gi", "", json!({})), None).is_none());
    }

    #[test]
    fn a_pre_bound_volume_is_preferred() {
        let vols = [
            pv("fits", "1Gi", "", json!({})),
            pv(
                "mine",
                "8Gi",
                "",
                json!({"spec": {"claimRef": {"name": "data", "namespace": "default"}}}),
            ),
        ];
        assert_eq!(
            best_match(&pvc(json!({})), &vols, None)
                .map(|p| p.name_any())
                .as_deref(),
            Some("mine")
        );
        let other_uid = [pv(
            "theirs",
            "1Gi",
            "",
            json!({"spec": {"claimRef": {"name": "data", "namespace": "default", "uid": "old"}}}),
        )];
        assert!(best_match(&pvc(json!({})), &other_uid, None).is_none());
    }

    #[test]
    fn node_affinity_limits_where_a_volume_fits() {
        let claim = pvc(json!({}));
        let local = pv(
            "local",
            "1Gi",
            "",
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}),
        );
        let n1 = NodeFacts {
            name: "n1".into(),
            labels: [("kubernetes.io/hostname".to_string(), "n1".to_string())].into(),
        };
        let n2 = NodeFacts {
            name: "n2".into(),
            labels: [("kubernetes.io/hostname".to_string(), "n2".to_string())].into(),
        };
        assert!(mismatch(&claim, &local, Some(&n1)).is_none());
        assert!(mismatch(&claim, &local, Some(&n2)).is_some());
        assert!(
            mismatch(&claim, &local, None).is_none(),
            "no node: affinity not checked"
        );
    }

    #[test]
    fn default_class_is_the_newest_annotated_one() {
        let class = |name: &str, default: bool, created: &str| -> Arc<StorageClass> {
            Arc::new(serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created,
                             "annotations": {DEFAULT_CLASS_ANNOTATION: if default {"true"} else {"false"}}},
                "provisioner": "x"})).unwrap())
        };
        let classes = [
            class("a", true, "2026-01-01T00:00:00Z"),
            class("b", true, "2026-01-02T00:00:00Z"),
            class("c", false, "2026-01-03T00:00:00Z"),
        ];
        assert_eq!(
            default_class(&classes).map(|c| c.name_any()).as_deref(),
            Some("b")
        );
        assert!(default_class(&classes[2..]).is_none());
    }

    #[test]
    fn local_path_volumes_live_on_the_consumers_node() {
        let claim = pvc(json!({"spec": {"storageClassName": "local-path"}}));
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "local-path"}, "provisioner": LOCAL_PATH_PROVISIONER,
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}))
        .unwrap();
        let v = local_path_volume(&claim, &class, "n1");
        assert_eq!(v.name_any(), "pvc-claim-uid");
        let spec = v.spec.as_ref().unwrap();
        let hp = spec.host_path.as_ref().unwrap();
        assert_eq!(
            hp.path,
            "/var/lib/skiff/local-path/pvc-claim-uid_default_data"
        );
        assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        let n1 = NodeFacts {
            name: "n1".into(),
            labels: [("kubernetes.io/hostname".to_string(), "n1".to_string())].into(),
        };
        assert!(node_affinity_allows(&v, &n1));
        assert!(is_bound_to(&v, &claim));
        assert!(mismatch(&claim, &v, Some(&n1)).is_none());
        assert_eq!(
            annotation(&v.metadata, PROVISIONED_BY),
            Some(LOCAL_PATH_PROVISIONER)
        );
    }

    #[test]
    fn reclaim_follows_the_policy() {
        let with = |p: &str| {
            pv(
                "a",
                "1Gi",
                "",
                json!({"spec": {"persistentVolumeReclaimPolicy": p}}),
            )
        };
        assert_eq!(reclaim_of(&with("Retain")), Reclaim::Release);
        assert_eq!(reclaim_of(&with("Delete")), Reclaim::Delete);
        assert_eq!(reclaim_of(&with("Recycle")), Reclaim::Recycle);
    }
}
