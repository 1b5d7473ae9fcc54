//! StatefulSet controller: pods with stable names (`web-0`, `web-1`, …), a stable network
//! identity (`hostname` = pod name, `subdomain` = the headless Service) and stable storage
//! (one PersistentVolumeClaim per pod and claim template, kept across scale-down and reused).
//!
//! Each reconcile reads the set's pods and the namespace's claims from the caches and asks
//! the pure [`plan`] what to do next, as Kubernetes' `StatefulSetControl` decides it:
//!
//! 1. Ordinals `start .. start+replicas` in ascending order: a missing pod is created (its
//!    claims first); a failed or succeeded pod is deleted, to be recreated under the same
//!    name. With `OrderedReady` the walk stops at the first pod that is missing, terminating
//!    or not yet Running and Ready (and available for `minReadySeconds`); `Parallel` goes on.
//! 2. Pods with ordinals outside the range are deleted from the highest ordinal down, one at
//!    a time with `OrderedReady` (each gone before the next), all at once with `Parallel`.
//! 3. `RollingUpdate`: the pod with the highest ordinal ≥ `partition` that is not at the
//!    update revision is deleted (and recreated at it on a later pass), one at a time, each
//!    healthy before the next. `OnDelete` replaces only pods someone else deleted.
//!
//! Revisions are ControllerRevision objects named `<set>-<hash of the pod template>`, with the
//! template as a replace patch in `data` (what `kubectl rollout history` reads); pods carry
//! the name in `controller-revision-hash`. Pods below the partition are (re)created from the
//! current revision's template, the others from the update revision's.
//!
//! Names are deterministic, so a create the cache has not shown yet answers 409 and nothing
//! is duplicated; deletes carry a uid precondition so a stale cache never deletes a pod's
//! replacement.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorder};
use crate::objects::{already_gone, delete_exactly};
use crate::objects::{
    controller_of, controller_reference, is_controlled_by, is_pod_available, is_terminating, phase,
    pod_from_template, seconds_until_available, selector, PodName,
};

/// Label with the pod's own name (a Service can select one member).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label with the name of the ControllerRevision the pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

const COMPONENT: &str = "statefulset-controller";

// ---- pure planning ----

/// Which of the set's two revisions a new pod is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    Current,
    Update,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// The pod failed or succeeded; it is recreated under the same name.
    Finished,
    /// Its ordinal is no longer in the range.
    ScaleDown,
    /// It is not at the update revision.
    Update,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the claims of `ordinal` that are missing (template names), then its pod.
    CreatePod {
        ordinal: i32,
        revision: Revision,
        missing_claims: Vec<String>,
    },
    /// Create claims missing under an existing pod (someone deleted them).
    CreateClaims {
        ordinal: i32,
        missing_claims: Vec<String>,
    },
    DeletePod {
        name: String,
        uid: String,
        why: DeleteReason,
    },
    /// A claim of a removed ordinal under `whenScaled: Delete`.
    DeleteClaim { name: String, uid: String },
}

/// What to do now, and when to look again if time alone changes the picture.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub recheck_after: Option<Duration>,
}

/// What the planner sees of one set.
pub struct View<'a> {
    pub set: &'a StatefulSet,
    /// The pods the set controls.
    pub pods: &'a [Arc<Pod>],
    /// The claims in the set's namespace.
    pub claims: &'a [Arc<PersistentVolumeClaim>],
    /// The name of the update revision (pods at it carry it in `controller-revision-hash`).
    pub update_revision: &'a str,
    pub now: Timestamp,
}

/// The ordinal of a pod named `<set>-<n>`, if the name has that form.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

/// `<template>-<set>-<ordinal>`: the claim of one pod for one claim template.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

/// Running, Ready, and ready for `minReadySeconds`.
fn is_healthy(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(pod) == "Running"
        && !is_terminating(&pod.metadata)
        && is_pod_available(pod, min_ready_seconds, now)
}

struct Settings {
    name: String,
    start: i32,
    end: i32,
    ordered: bool,
    min_ready_seconds: i32,
    /// `Some(partition)` under RollingUpdate, `None` under OnDelete.
    partition: Option<i32>,
    delete_claims_when_scaled: bool,
    claim_templates: Vec<String>,
}

fn settings(set: &StatefulSet) -> Option<Settings> {
    let spec = set.spec.as_ref()?;
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let strategy = spec.update_strategy.as_ref();
    let partition = match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => None,
        _ => Some(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0)
                .max(0),
        ),
    };
    Some(Settings {
        name: set.name_any(),
        start,
        end: start.saturating_add(replicas),
        ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
        min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        partition,
        delete_claims_when_scaled: spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete"),
        claim_templates: spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|t| t.metadata.name.clone())
            .collect(),
    })
}

/// The next actions for one set (see the module comment for the order).
pub fn plan(v: &View<'_>) -> Plan {
    let mut plan = Plan::default();
    let Some(s) = settings(v.set) else {
        return plan;
    };
    let by_ordinal: BTreeMap<i32, &Pod> = v
        .pods
        .iter()
        .filter_map(|p| {
            Some((
                ordinal_of(&s.name, p.metadata.name.as_deref()?)?,
                p.as_ref(),
            ))
        })
        .collect();
    let claims: BTreeMap<&str, &PersistentVolumeClaim> = v
        .claims
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
        .collect();
    let missing_claims = |ordinal: i32| -> Vec<String> {
        s.claim_templates
            .iter()
            .filter(|t| !claims.contains_key(claim_name(t, &s.name, ordinal).as_str()))
            .cloned()
            .collect()
    };
    let claim_terminating = |ordinal: i32| {
        s.claim_templates.iter().any(|t| {
            claims
                .get(claim_name(t, &s.name, ordinal).as_str())
                .is_some_and(|c| is_terminating(&c.metadata))
        })
    };
    let revision_for = |ordinal: i32| match s.partition {
        Some(p) if ordinal - s.start < p => Revision::Current,
        _ => Revision::Update,
    };
    let healthy = |pod: &Pod| is_healthy(pod, s.min_ready_seconds, v.now);

    // 1. The ordinals in range, lowest first.
    for ordinal in s.start..s.end {
        match by_ordinal.get(&ordinal) {
            None => {
                // A claim on its way out would be recreated only after it is gone.
                if !claim_terminating(ordinal) {
                    plan.steps.push(Step::CreatePod {
                        ordinal,
                        revision: revision_for(ordinal),
                        missing_claims: missing_claims(ordinal),
                    });
                }
                if s.ordered {
                    return plan;
                }
            }
            Some(pod) if is_terminating(&pod.metadata) => {
                if s.ordered {
                    return plan;
                }
            }
            Some(pod) if matches!(phase(pod), "Failed" | "Succeeded") => {
                plan.steps.push(delete_pod(pod, DeleteReason::Finished));
                if s.ordered {
                    return plan;
                }
            }
            Some(pod) => {
                let missing = missing_claims(ordinal);
                if !missing.is_empty() && !claim_terminating(ordinal) {
                    plan.steps.push(Step::CreateClaims {
                        ordinal,
                        missing_claims: missing,
                    });
                }
                if !healthy(pod) {
                    let wait = seconds_until_available(pod, s.min_ready_seconds, v.now);
                    if wait > 0 {
                        let d = Duration::from_secs(wait.unsigned_abs());
                        plan.recheck_after =
                            Some(plan.recheck_after.map_or(d, |r: Duration| r.min(d)));
                    }
                    if s.ordered {
                        return plan;
                    }
                }
            }
        }
    }

    // 2. Ordinals out of range, highest first.
    for (_, pod) in by_ordinal
        .iter()
        .rev()
        .filter(|(o, _)| **o < s.start || **o >= s.end)
    {
        if !is_terminating(&pod.metadata) {
            plan.steps.push(delete_pod(pod, DeleteReason::ScaleDown));
        }
        if s.ordered {
            return plan;
        }
    }

    // Claims of removed ordinals, once their pods are gone.
    if s.delete_claims_when_scaled {
        let set_labels = v
            .set
            .spec
            .as_ref()
            .map(|spec| &spec.selector)
            .and_then(|sel| selector(Some(sel), &s.name).ok());
        for claim in v.claims {
            let Some(name) = claim.metadata.name.as_deref() else {
                continue;
            };
            let ordinal = s
                .claim_templates
                .iter()
                .find_map(|t| ordinal_of(&format!("{t}-{}", s.name), name));
            let Some(ordinal) = ordinal else { continue };
            let labels_match = set_labels
                .as_ref()
                .is_some_and(|sel| sel.matches(crate::objects::labels(&claim.metadata)));
            if (ordinal < s.start || ordinal >= s.end)
                && !by_ordinal.contains_key(&ordinal)
                && labels_match
                && !is_terminating(&claim.metadata)
            {
                plan.steps.push(Step::DeleteClaim {
                    name: name.to_string(),
                    uid: claim.metadata.uid.clone().unwrap_or_default(),
                });
            }
        }
    }

    // 3. Rolling update, highest ordinal first, one at a time.
    if let Some(partition) = s.partition {
        let lowest = s.start.saturating_add(partition);
        for ordinal in (lowest..s.end).rev() {
            let Some(pod) = by_ordinal.get(&ordinal) else {
                return plan;
            };
            if pod_revision(pod) != v.update_revision && !is_terminating(&pod.metadata) {
                plan.steps.push(delete_pod(pod, DeleteReason::Update));
                return plan;
            }
            if !healthy(pod) {
                return plan;
            }
        }
    }
    plan
}

fn delete_pod(pod: &Pod, why: DeleteReason) -> Step {
    Step::DeletePod {
        name: pod.name_any(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        why,
    }
}

/// The pod of `ordinal`, made from `template` (the template of revision `revision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let set_name = set.name_any();
    let name = pod_name(&set_name, ordinal);
    let namespace = set.namespace().unwrap_or_default();
    let mut pod = pod_from_template(
        template,
        &namespace,
        PodName::Exact(&name),
        controller_reference(set),
    );
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    let spec_in = set.spec.as_ref();
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(name.clone());
        if let Some(service) = spec_in
            .and_then(|s| s.service_name.as_deref())
            .filter(|s| !s.is_empty())
        {
            spec.subdomain = Some(service.to_string());
        }
        let templates = spec_in
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|t| t.metadata.name.as_deref());
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        for template_name in templates {
            let volume = Volume {
                name: template_name.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(template_name, &set_name, ordinal),
                    read_only: None,
                }),
                ..Default::default()
            };
            match volumes.iter_mut().find(|v| v.name == template_name) {
                Some(existing) => *existing = volume,
                None => volumes.push(volume),
            }
        }
        if volumes.is_empty() {
            spec.volumes = None;
        }
    }
    pod
}

/// The claim of `ordinal` for the claim template named `template_name`.
pub fn new_claim(
    set: &StatefulSet,
    template_name: &str,
    ordinal: i32,
) -> Option<PersistentVolumeClaim> {
    let spec = set.spec.as_ref()?;
    let template = spec
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(template_name))?;
    let set_name = set.name_any();
    let mut labels = template.metadata.labels.clone().unwrap_or_default();
    for (k, v) in spec.selector.match_labels.iter().flatten() {
        labels.insert(k.clone(), v.clone());
    }
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(template_name, &set_name, ordinal)),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: template.metadata.annotations.clone(),
            owner_references: delete_with_set.then(|| vec![controller_reference(set)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// A short hash of a pod template (FNV-1a of its JSON, spelled in Kubernetes' safe
/// alphabet so it never forms words or looks like a number).
pub fn template_hash(template: &PodTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

/// `<set>-<hash>`: the revision name for a template.
pub fn revision_name(set: &str, template: &PodTemplateSpec) -> String {
    format!("{set}-{}", template_hash(template))
}

/// A ControllerRevision's `data`: the template as a replace patch of the set, as Kubernetes
/// stores it.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision holds.
pub fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The status the set's pods add up to. `current_revision` is the revision all pods were at
/// before the update began; it becomes the update revision once every pod is updated and
/// ready.
pub fn status(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    current_revision: &str,
    update_revision: &str,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut st = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current_revision.to_string()),
        update_revision: Some(update_revision.to_string()),
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        replicas += 1;
        if phase(pod) == "Running" && crate::objects::is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !is_terminating(&pod.metadata) {
            if pod_revision(pod) == current_revision {
                current += 1;
            }
            if pod_revision(pod) == update_revision {
                updated += 1;
            }
        }
    }
    st.replicas = replicas;
    st.ready_replicas = Some(ready);
    st.available_replicas = Some(available);
    st.current_replicas = Some(current);
    st.updated_replicas = Some(updated);
    let wanted = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if updated == replicas && ready == replicas && replicas == wanted {
        st.current_revision = Some(update_revision.to_string());
        st.current_replicas = Some(updated);
    }
    st
}

// ---- the loop ----

struct Loop {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
}

/// Builds the StatefulSet loop.
pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let sets = ctx.informers.stateful_sets.subscribe();
    let set_reader = ctx.informers.stateful_sets.reader();
    let pod_changes = ctx.informers.pods.subscribe();
    let lp = Arc::new(Loop {
        ctx: ctx.clone(),
        pods: ctx.informers.pods.reader(),
        claims: ctx.informers.persistent_volume_claims.reader(),
        revisions: ctx.informers.controller_revisions.reader(),
        recorder: ctx.recorder(COMPONENT),
    });
    let controller = Controller::for_shared_stream(sets, set_reader)
        .owns_shared_stream(pod_changes)
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(ctx.clock.ticks());
    async move {
        // Plans made from half-filled caches would only bounce off the API.
        let _ = lp.pods.wait_until_ready().await;
        let _ = lp.claims.wait_until_ready().await;
        let _ = lp.revisions.wait_until_ready().await;
        controller
            .run(
                reconcile,
                |set, error, lp: Arc<Loop>| error_policy(set, error, lp.ctx.clone()),
                lp,
            )
            .for_each(log_outcome("statefulset"))
            .await
    }
    .boxed()
}

struct Revisions {
    current: String,
    update: String,
    current_template: PodTemplateSpec,
    update_template: PodTemplateSpec,
}

async fn reconcile(set: Arc<StatefulSet>, lp: Arc<Loop>) -> Result<Action> {
    let key = object_key(set.as_ref());
    if is_terminating(&set.metadata) {
        // The garbage collector removes the pods through their owner references.
        return Ok(Action::await_change());
    }
    let Some(spec) = set.spec.as_ref() else {
        return Err(Error::invalid(
            format!("statefulset {key}"),
            "spec is missing",
        ));
    };
    let ns = set.namespace().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let what = format!("statefulset {key}");
    let sel = selector(Some(&spec.selector), &what)?;

    let mut pods: Vec<Arc<Pod>> = Vec::new();
    for pod in lp.pods.state() {
        if pod.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        if is_controlled_by(&pod.metadata, &uid) {
            pods.push(pod);
        } else if controller_of(&pod.metadata).is_none()
            && !is_terminating(&pod.metadata)
            && sel.matches(crate::objects::labels(&pod.metadata))
            && ordinal_of(&set.name_any(), &pod.name_any()).is_some()
        {
            if let Some(adopted) = lp.adopt(&set, &pod).await? {
                pods.push(Arc::new(adopted));
            }
        }
    }
    let claims: Vec<Arc<PersistentVolumeClaim>> = lp
        .claims
        .state()
        .into_iter()
        .filter(|c| c.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let revisions = lp.revisions(&set).await?;
    let now = lp.ctx.clock.now();
    let plan = plan(&View {
        set: &set,
        pods: &pods,
        claims: &claims,
        update_revision: &revisions.update,
        now,
    });
    for step in &plan.steps {
        lp.apply(&set, &revisions, step).await?;
    }

    let status = status(&set, &pods, &revisions.current, &revisions.update, now);
    if set.status.as_ref() != Some(&status) {
        let api: Api<StatefulSet> = Api::namespaced(lp.ctx.client.clone(), &ns);
        api.patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(|e| Error::api("update status of", &what, e))?;
    }
    lp.trim_history(&set, &pods, &revisions).await;
    lp.ctx.succeeded(&key);
    Ok(match plan.recheck_after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Loop {
    async fn adopt(&self, set: &StatefulSet, pod: &Pod) -> Result<Option<Pod>> {
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let patch = json!({"metadata": {"ownerReferences": [controller_reference(set)]}});
        match api
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(e) if already_gone(&e) => Ok(None),
            Err(e) => Err(Error::api("adopt", format!("pod {}", object_key(pod)), e)),
        }
    }

    /// The set's current and update revisions, creating the update revision's
    /// ControllerRevision when the template is new.
    async fn revisions(&self, set: &StatefulSet) -> Result<Revisions> {
        let spec = set.spec.as_ref().ok_or_else(|| {
            Error::invalid(
                format!("statefulset {}", object_key(set)),
                "spec is missing",
            )
        })?;
        let ns = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let owned: Vec<Arc<ControllerRevision>> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| {
                r.metadata.namespace.as_deref() == Some(ns.as_str())
                    && is_controlled_by(&r.metadata, &uid)
            })
            .collect();
        let update = revision_name(&set.name_any(), &spec.template);
        let highest = owned.iter().map(|r| r.revision).max().unwrap_or(0);
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &ns);
        match owned.iter().find(|r| r.name_any() == update) {
            // Back to an older template (an undo): it becomes the newest revision again.
            Some(existing) if existing.revision < highest => {
                let patch = json!({"revision": highest + 1});
                api.patch(&update, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| {
                        Error::api("update", format!("controllerrevision {ns}/{update}"), e)
                    })?;
            }
            Some(_) => {}
            None => {
                let mut labels = spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.insert(REVISION_LABEL.into(), update.clone());
                let rev = ControllerRevision {
                    metadata: ObjectMeta {
                        name: Some(update.clone()),
                        namespace: Some(ns.clone()),
                        labels: Some(labels),
                        owner_references: Some(vec![controller_reference(set)]),
                        ..Default::default()
                    },
                    data: Some(RawExtension(revision_data(&spec.template))),
                    revision: highest + 1,
                };
                match api.create(&PostParams::default(), &rev).await {
                    Ok(_) => {}
                    Err(e) if is_already_exists(&e) => {
                        // Made by an earlier pass the cache has not shown yet, or a stranger.
                        let there = api.get(&update).await.map_err(|e| {
                            Error::api("get", format!("controllerrevision {ns}/{update}"), e)
                        })?;
                        if !is_controlled_by(&there.metadata, &uid) {
                            return Err(Error::Other(format!(
                                "controllerrevision {ns}/{update} exists and does not belong to statefulset {}",
                                object_key(set)
                            )));
                        }
                    }
                    Err(e) => {
                        return Err(Error::api(
                            "create",
                            format!("controllerrevision {ns}/{update}"),
                            e,
                        ))
                    }
                }
            }
        }
        let recorded = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .filter(|c| !c.is_empty());
        let current_template = recorded
            .as_ref()
            .filter(|c| **c != update)
            .and_then(|c| owned.iter().find(|r| r.name_any() == *c))
            .and_then(|r| revision_template(r));
        let (current, current_template) = match (recorded, current_template) {
            (Some(c), Some(t)) => (c, t),
            // Unknown or gone: the update revision is the current one.
            _ => (update.clone(), spec.template.clone()),
        };
        Ok(Revisions {
            current,
            update,
            current_template,
            update_template: spec.template.clone(),
        })
    }

    async fn apply(&self, set: &StatefulSet, revs: &Revisions, step: &Step) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let set_name = set.name_any();
        match step {
            Step::CreatePod {
                ordinal,
                revision,
                missing_claims,
            } => {
                let pod_name = pod_name(&set_name, *ordinal);
                self.create_claims(set, *ordinal, missing_claims, &pod_name)
                    .await?;
                let (template, rev) = match revision {
                    Revision::Current => (&revs.current_template, &revs.current),
                    Revision::Update => (&revs.update_template, &revs.update),
                };
                let pod = new_pod(set, template, *ordinal, rev);
                let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        self.recorder
                            .publish(
                                set,
                                EventType::Normal,
                                "SuccessfulCreate",
                                &format!(
                                    "create Pod {pod_name} in StatefulSet {set_name} successful"
                                ),
                            )
                            .await;
                        Ok(())
                    }
                    Err(e) if is_already_exists(&e) => Ok(()),
                    Err(e) => {
                        self.recorder
                            .publish(
                                set,
                                EventType::Warning,
                                "FailedCreate",
                                &format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                            )
                            .await;
                        Err(Error::api("create", format!("pod {ns}/{pod_name}"), e))
                    }
                }
            }
            Step::CreateClaims {
                ordinal,
                missing_claims,
            } => {
                let pod_name = pod_name(&set_name, *ordinal);
                self.create_claims(set, *ordinal, missing_claims, &pod_name)
                    .await
            }
            Step::DeletePod { name, uid, why } => {
                let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
                let params = delete_exactly(Some(uid));
                match api.delete(name, &params).await {
                    Ok(_) => {
                        tracing::debug!(statefulset = %object_key(set), pod = name, ?why, "deleted pod");
                        self.recorder
                            .publish(
                                set,
                                EventType::Normal,
                                "SuccessfulDelete",
                                &format!("delete Pod {name} in StatefulSet {set_name} successful"),
                            )
                            .await;
                        Ok(())
                    }
                    Err(e) if already_gone(&e) => Ok(()),
                    Err(e) => {
                        self.recorder
                            .publish(
                                set,
                                EventType::Warning,
                                "FailedDelete",
                                &format!(
                                    "delete Pod {name} in StatefulSet {set_name} failed error: {e}"
                                ),
                            )
                            .await;
                        Err(Error::api("delete", format!("pod {ns}/{name}"), e))
                    }
                }
            }
            Step::DeleteClaim { name, uid } => {
                let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
                let params = delete_exactly(Some(uid));
                match api.delete(name, &params).await {
                    Ok(_) => {
                        self.recorder
                            .publish(
                                set,
                                EventType::Normal,
                                "SuccessfulDelete",
                                &format!(
                                    "delete Claim {name} in StatefulSet {set_name} successful"
                                ),
                            )
                            .await;
                        Ok(())
                    }
                    Err(e) if already_gone(&e) => Ok(()),
                    Err(e) => Err(Error::api(
                        "delete",
                        format!("persistentvolumeclaim {ns}/{name}"),
                        e,
                    )),
                }
            }
        }
    }

    async fn create_claims(
        &self,
        set: &StatefulSet,
        ordinal: i32,
        templates: &[String],
        pod_name: &str,
    ) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let set_name = set.name_any();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        for template in templates {
            let Some(claim) = new_claim(set, template, ordinal) else {
                continue;
            };
            let name = claim.name_any();
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.recorder
                        .publish(
                            set,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!(
                            "create Claim {name} Pod {pod_name} in StatefulSet {set_name} success"
                        ),
                        )
                        .await
                }
                Err(e) if is_already_exists(&e) => {}
                Err(e) => {
                    self.recorder
                        .publish(
                            set,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("create Claim {name} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                        )
                        .await;
                    return Err(Error::api(
                        "create",
                        format!("persistentvolumeclaim {ns}/{name}"),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that no pod uses.
    async fn trim_history(&self, set: &StatefulSet, pods: &[Arc<Pod>], revs: &Revisions) {
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let ns = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let in_use: BTreeSet<&str> = pods
            .iter()
            .map(|p| pod_revision(p))
            .chain([revs.current.as_str(), revs.update.as_str()])
            .collect();
        let mut spare: Vec<Arc<ControllerRevision>> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| {
                r.metadata.namespace.as_deref() == Some(ns.as_str())
                    && is_controlled_by(&r.metadata, &uid)
                    && !in_use.contains(r.name_any().as_str())
            })
            .collect();
        if spare.len() <= limit {
            return;
        }
        spare.sort_by_key(|r| r.revision);
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &ns);
        for rev in &spare[..spare.len() - limit] {
            let params = delete_exactly(rev.metadata.uid.as_deref());
            if let Err(e) = api.delete(&rev.name_any(), &params).await {
                if !already_gone(&e) {
                    tracing::warn!(revision = %object_key(rev.as_ref()), error = %e, "deleting old revision");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(extra: Value) -> StatefulSet {
        let mut base = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid", "generation": 2},
            "spec": {
                "replicas": 3,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "podManagementPolicy": "OrderedReady"
            }
        });
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
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

    const NOW: &str = "2026-01-01T00:01:00Z";

    fn pod(name: &str, state: &str, revision: &str) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web", REVISION_LABEL: revision}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Pending"}
        });
        match state {
            "ready" => {
                p["status"] = json!({"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
            }
            "running" => p["status"] = json!({"phase": "Running"}),
            "failed" => p["status"] = json!({"phase": "Failed"}),
            "terminating" => {
                p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
                p["status"] = json!({"phase": "Running"});
            }
            _ => {}
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn claim(name: &str) -> Arc<PersistentVolumeClaim> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
                "uid": format!("uid-{name}"), "labels": {"app": "web"}}}))
            .unwrap(),
        )
    }

    fn plan_of(
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        claims: &[Arc<PersistentVolumeClaim>],
    ) -> Plan {
        plan(&View {
            set,
            pods,
            claims,
            update_revision: "web-new",
            now: NOW.parse().unwrap(),
        })
    }

    fn create(ordinal: i32, claims: &[&str]) -> Step {
        Step::CreatePod {
            ordinal,
            revision: Revision::Update,
            missing_claims: claims.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn delete(name: &str, why: DeleteReason) -> Step {
        Step::DeletePod {
            name: name.into(),
            uid: format!("uid-{name}"),
            why,
        }
    }

    #[test]
    fn ordinals_parse_only_the_canonical_form() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web--1"), None);
        assert_eq!(claim_name("data", "web", 2), "data-web-2");
    }

    #[test]
    fn ordered_creation_waits_for_each_pod_to_be_ready() {
        let s = set(json!({}));
        assert_eq!(plan_of(&s, &[], &[]).steps, vec![create(0, &["data"])]);
        let p0 = pod("web-0", "pending", "web-new");
        assert_eq!(plan_of(&s, &[p0], &[claim("data-web-0")]).steps, vec![]);
        // Running but not ready is not enough.
        let p0 = pod("web-0", "running", "web-new");
        assert_eq!(plan_of(&s, &[p0], &[claim("data-web-0")]).steps, vec![]);
        let p0 = pod("web-0", "ready", "web-new");
        assert_eq!(
            plan_of(
                &s,
                std::slice::from_ref(&p0),
                &[claim("data-web-0"), claim("data-web-1")]
            )
            .steps,
            vec![create(1, &[])],
            "an existing claim is reused"
        );
        let all = [
            p0,
            pod("web-1", "ready", "web-new"),
            pod("web-2", "ready", "web-new"),
        ];
        assert_eq!(
            plan_of(&s, &all, &[]).steps.len(),
            3,
            "claims recreated under pods"
        );
    }

    #[test]
    fn parallel_creates_everything_at_once() {
        let s = set(json!({"spec": {"podManagementPolicy": "Parallel"}}));
        assert_eq!(
            plan_of(
                &s,
                &[pod("web-1", "pending", "web-new")],
                &[claim("data-web-1")]
            )
            .steps,
            vec![create(0, &["data"]), create(2, &["data"])]
        );
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let s = set(json!({"spec": {"replicas": 1}}));
        let pods = [
            pod("web-0", "ready", "web-new"),
            pod("web-1", "ready", "web-new"),
            pod("web-2", "ready", "web-new"),
        ];
        let claims = [
            claim("data-web-0"),
            claim("data-web-1"),
            claim("data-web-2"),
        ];
        assert_eq!(
            plan_of(&s, &pods, &claims).steps,
            vec![delete("web-2", DeleteReason::ScaleDown)]
        );
        let terminating = [
            pods[0].clone(),
            pods[1].clone(),
            pod("web-2", "terminating", "web-new"),
        ];
        assert_eq!(
            plan_of(&s, &terminating, &claims).steps,
            vec![],
            "waits for web-2 to go"
        );
        assert_eq!(
            plan_of(&s, &pods[..2], &claims).steps,
            vec![delete("web-1", DeleteReason::ScaleDown)],
            "claims are retained by default"
        );
        // Parallel: all condemned at once.
        let s = set(json!({"spec": {"replicas": 1, "podManagementPolicy": "Parallel"}}));
        assert_eq!(
            plan_of(&s, &pods, &claims).steps,
            vec![
                delete("web-2", DeleteReason::ScaleDown),
                delete("web-1", DeleteReason::ScaleDown)
            ]
        );
    }

    #[test]
    fn when_scaled_delete_removes_claims_after_their_pods() {
        let s = set(json!({"spec": {"replicas": 1,
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"}}}));
        let claims = [
            claim("data-web-0"),
            claim("data-web-1"),
            claim("other-web-1"),
        ];
        let pods = [
            pod("web-0", "ready", "web-new"),
            pod("web-1", "ready", "web-new"),
        ];
        assert_eq!(
            plan_of(&s, &pods, &claims).steps,
            vec![delete("web-1", DeleteReason::ScaleDown)]
        );
        assert_eq!(
            plan_of(&s, &pods[..1], &claims).steps,
            vec![Step::DeleteClaim {
                name: "data-web-1".into(),
                uid: "uid-data-web-1".into()
            }]
        );
    }

    #[test]
    fn failed_pods_are_replaced_under_the_same_name() {
        let s = set(json!({"spec": {"replicas": 2}}));
        let claims = [claim("data-web-0"), claim("data-web-1")];
        let pods = [
            pod("web-0", "failed", "web-new"),
            pod("web-1", "ready", "web-new"),
        ];
        assert_eq!(
            plan_of(&s, &pods, &claims).steps,
            vec![delete("web-0", DeleteReason::Finished)]
        );
        assert_eq!(plan_of(&s, &pods[1..], &claims).steps, vec![create(0, &[])]);
    }

    #[test]
    fn rolling_update_respects_the_partition_from_the_top_down() {
        let s = set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}));
        let claims = [
            claim("data-web-0"),
            claim("data-web-1"),
            claim("data-web-2"),
        ];
        let old = [
            pod("web-0", "ready", "web-old"),
            pod("web-1", "ready", "web-old"),
            pod("web-2", "ready", "web-old"),
        ];
        assert_eq!(
            plan_of(&s, &old, &claims).steps,
            vec![delete("web-2", DeleteReason::Update)]
        );
        // web-2 recreated at the update revision but not ready yet: wait.
        let mid = [
            old[0].clone(),
            old[1].clone(),
            pod("web-2", "pending", "web-new"),
        ];
        assert_eq!(plan_of(&s, &mid, &claims).steps, vec![]);
        let mid = [
            old[0].clone(),
            old[1].clone(),
            pod("web-2", "ready", "web-new"),
        ];
        assert_eq!(
            plan_of(&s, &mid, &claims).steps,
            vec![delete("web-1", DeleteReason::Update)]
        );
        let done = [
            old[0].clone(),
            pod("web-1", "ready", "web-new"),
            pod("web-2", "ready", "web-new"),
        ];
        assert_eq!(
            plan_of(&s, &done, &claims).steps,
            vec![],
            "web-0 is below the partition"
        );
        // A pod below the partition is recreated from the current revision.
        assert_eq!(
            plan_of(&s, &done[1..], &claims).steps,
            vec![Step::CreatePod {
                ordinal: 0,
                revision: Revision::Current,
                missing_claims: vec![]
            }]
        );
        // OnDelete never deletes for an update.
        let s =
            set(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
        assert_eq!(plan_of(&s, &old, &claims).steps, vec![]);
    }

    #[test]
    fn min_ready_seconds_delays_the_next_pod_and_asks_for_a_recheck() {
        let s = set(json!({"spec": {"minReadySeconds": 90}}));
        let p = plan_of(
            &s,
            &[pod("web-0", "ready", "web-new")],
            &[claim("data-web-0")],
        );
        assert_eq!(p.steps, vec![]);
        assert_eq!(p.recheck_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn pods_get_identity_labels_and_claims() {
        let s = set(json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "data", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]}}}}));
        let spec = s.spec.as_ref().unwrap();
        let pod = new_pod(&s, &spec.template, 2, "web-abc");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(labels["app"], "web");
        let pspec = pod.spec.as_ref().unwrap();
        assert_eq!(pspec.hostname.as_deref(), Some("web-2"));
        assert_eq!(pspec.subdomain.as_deref(), Some("nginx"));
        let vols = pspec.volumes.as_ref().unwrap();
        assert_eq!(vols.len(), 2);
        let data = vols.iter().find(|v| v.name == "data").unwrap();
        assert!(
            data.empty_dir.is_none(),
            "the claim replaces the template's volume"
        );
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", "set-uid")
        );

        let claim = new_claim(&s, "data", 2).unwrap();
        assert_eq!(claim.metadata.name.as_deref(), Some("data-web-2"));
        assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "web");
        assert!(
            claim.metadata.owner_references.is_none(),
            "Retain: no owner"
        );
        let s = set(
            json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}}}),
        );
        assert!(new_claim(&s, "data", 0)
            .unwrap()
            .metadata
            .owner_references
            .is_some());
    }

    #[test]
    fn revisions_follow_the_template() {
        let a = set(json!({}));
        let b = set(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}),
        );
        let ta = &a.spec.as_ref().unwrap().template;
        let tb = &b.spec.as_ref().unwrap().template;
        assert_eq!(revision_name("web", ta), revision_name("web", &ta.clone()));
        assert_ne!(revision_name("web", ta), revision_name("web", tb));
        assert!(revision_name("web", ta).starts_with("web-"));
        let rev = ControllerRevision {
            data: Some(RawExtension(revision_data(tb))),
            ..Default::default()
        };
        assert_eq!(revision_template(&rev).as_ref(), Some(tb));
    }

    #[test]
    fn status_counts_revisions_and_completes_the_rollout() {
        let s = set(json!({"status": {"replicas": 0, "currentRevision": "web-old"}}));
        let now: Timestamp = NOW.parse().unwrap();
        let pods = [
            pod("web-0", "ready", "web-old"),
            pod("web-1", "ready", "web-old"),
            pod("web-2", "pending", "web-new"),
        ];
        let st = status(&s, &pods, "web-old", "web-new", now);
        assert_eq!(st.replicas, 3);
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(2));
        assert_eq!(st.current_replicas, Some(2));
        assert_eq!(st.updated_replicas, Some(1));
        assert_eq!(st.observed_generation, Some(2));
        assert_eq!(st.current_revision.as_deref(), Some("web-old"));
        let pods = [
            pod("web-0", "ready", "web-new"),
            pod("web-1", "ready", "web-new"),
            pod("web-2", "ready", "web-new"),
        ];
        let st = status(&s, &pods, "web-old", "web-new", now);
        assert_eq!(st.current_revision.as_deref(), Some("web-new"));
        assert_eq!(st.current_replicas, Some(3));
    }
}
