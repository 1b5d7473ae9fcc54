//! The Deployment controller: a ReplicaSet per pod template, rolled over by the strategy.
//!
//! Each pass of a Deployment:
//!
//! 1. claims ReplicaSets (adopts orphans whose labels match its selector, releases those
//!    that stopped matching);
//! 2. finds the new ReplicaSet — the oldest one whose template equals the Deployment's
//!    ignoring the `pod-template-hash` label — and syncs its revision annotation to one
//!    more than any old ReplicaSet's (so a rollback, which is just the old template again,
//!    re-uses the old ReplicaSet and makes its revision the newest);
//! 3. asks `rollout::plan` for one step (create the new ReplicaSet, resize some, wait for
//!    old pods, or scale only when paused or when `spec.replicas` changed) and applies it,
//!    each write carrying the `resourceVersion` it was computed from;
//! 4. prunes old ReplicaSets beyond `revisionHistoryLimit` once the rollout completed;
//! 5. writes the status with the Available and Progressing conditions (`status`), and
//!    asks to be looked at again when the progress deadline could pass.
//!
//! The ReplicaSets report back through their status (the ReplicaSet controller keeps their
//! pods), which triggers the next pass.

pub mod history;
pub mod rollout;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::{error_policy, log_outcome, object_key, Context};
use crate::error::{Error, Result};
use crate::events::{EventType, Recorder};
use crate::objects::{
    controller_of, controller_reference, is_pod_active, is_terminating, labels, phase, selector,
};
use crate::replicaset::{adopted_references, claim, released_references, resync, Claim};
use history::{POD_TEMPLATE_HASH, REVISION};
use rollout::{RsState, Step, Strategy, Target};

const COMPONENT: &str = "deployment-controller";
/// How soon a Recreate rollout looks again for old pods to be gone (pod deletions are not
/// reported by the informer).
const OLD_PODS_POLL: Duration = Duration::from_secs(1);

struct Loop {
    ctx: Arc<Context>,
    rss: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Runs the Deployment controller.
pub fn start(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let deployments = ctx.informers.deployments.reader();
    let trigger = ctx.informers.deployments.subscribe();
    let rss = ctx.informers.replica_sets.reader();
    let rs_events = ctx.informers.replica_sets.subscribe();
    let pods = ctx.informers.pods.reader();
    let pod_events = ctx.informers.pods.subscribe();
    let rs_mapper = {
        let deployments = deployments.clone();
        move |rs: Arc<ReplicaSet>| deployments_of_rs(&rs, &deployments)
    };
    let pod_mapper = {
        let rss = rss.clone();
        move |pod: Arc<Pod>| deployment_of_finished_pod(&pod, &rss)
    };
    let state = Arc::new(Loop {
        ctx: ctx.clone(),
        rss,
        pods,
        recorder: ctx.recorder(COMPONENT),
    });
    Controller::for_shared_stream(trigger, deployments)
        .watches_shared_stream(rs_events, rs_mapper)
        .watches_shared_stream(pod_events, pod_mapper)
        .with_config(Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(resync(ctx))
        .run(
            reconcile,
            |obj, err, state: Arc<Loop>| error_policy(obj, err, state.ctx.clone()),
            state,
        )
        .for_each(log_outcome(COMPONENT))
        .boxed()
}

fn is_deployment_ref(r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    r.kind == "Deployment" && r.api_version == "apps/v1"
}

/// The Deployment controlling `rs`, or for an orphan every Deployment that could adopt it.
fn deployments_of_rs(
    rs: &ReplicaSet,
    deployments: &Store<Deployment>,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(r) = controller_of(&rs.metadata) {
        return if is_deployment_ref(r) {
            vec![ObjectRef::new(&r.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| selector(Some(&s.selector), "").ok())
                .is_some_and(|s| !s.is_empty() && s.matches(labels(&rs.metadata)))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// The Deployment of a pod that is going away or finished (a Recreate waits for those).
fn deployment_of_finished_pod(pod: &Pod, rss: &Store<ReplicaSet>) -> Option<ObjectRef<Deployment>> {
    if is_pod_active(pod) {
        return None;
    }
    let ns = pod.namespace()?;
    let r = controller_of(&pod.metadata)?;
    if r.kind != "ReplicaSet" {
        return None;
    }
    let rs = rss.get(&ObjectRef::new(&r.name).within(&ns))?;
    let d = controller_of(&rs.metadata)?;
    is_deployment_ref(d).then(|| ObjectRef::new(&d.name).within(&ns))
}

fn annotation_i32(meta: &ObjectMeta, key: &str) -> Option<i32> {
    meta.annotations.as_ref()?.get(key)?.parse().ok()
}

/// A ReplicaSet as the planning sees it.
fn rs_state(rs: &ReplicaSet) -> RsState {
    let status = rs.status.as_ref();
    RsState {
        name: rs.name_any(),
        replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        actual: status.map_or(0, |s| s.replicas),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        available: status.and_then(|s| s.available_replicas).unwrap_or(0),
        created: rs
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0),
        revision: history::revision(rs.metadata.annotations.as_ref()),
        desired_annotation: annotation_i32(&rs.metadata, history::DESIRED_REPLICAS),
        max_annotation: annotation_i32(&rs.metadata, history::MAX_REPLICAS),
        settled: status.and_then(|s| s.observed_generation).unwrap_or(0)
            >= rs.metadata.generation.unwrap_or(0),
        terminating: is_terminating(&rs.metadata),
    }
}

/// One pass over one Deployment; `d` and `rss` follow the writes it makes.
struct Pass<'a> {
    state: &'a Loop,
    d: Deployment,
    what: String,
    rss: Vec<ReplicaSet>,
    target: Target,
    now: jiff::Timestamp,
}

impl Pass<'_> {
    fn ns(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn spec(&self) -> Result<&k8s_openapi::api::apps::v1::DeploymentSpec> {
        self.d
            .spec
            .as_ref()
            .ok_or_else(|| Error::invalid(&self.what, "spec is missing"))
    }

    fn deadline(&self) -> Option<i32> {
        self.d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .filter(|s| *s != i32::MAX)
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.state.ctx.client.clone(), &self.ns())
    }

    fn deployment_api(&self) -> Api<Deployment> {
        Api::namespaced(self.state.ctx.client.clone(), &self.ns())
    }

    /// The index of the new ReplicaSet (oldest with the Deployment's template).
    fn new_index(&self) -> Option<usize> {
        let template = &self.d.spec.as_ref()?.template;
        let mut candidates: Vec<(usize, RsState)> = self
            .rss
            .iter()
            .enumerate()
            .filter(|(_, rs)| {
                rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| history::equal_ignoring_hash(t, template))
            })
            .map(|(i, rs)| (i, rs_state(rs)))
            .collect();
        candidates.sort_by(|a, b| rollout::by_creation(&a.1, &b.1));
        candidates.first().map(|(i, _)| *i)
    }

    fn states(&self) -> (Option<RsState>, Vec<RsState>) {
        let new = self.new_index();
        let mut olds = Vec::new();
        let mut new_state = None;
        for (i, rs) in self.rss.iter().enumerate() {
            if Some(i) == new {
                new_state = Some(rs_state(rs));
            } else {
                olds.push(rs_state(rs));
            }
        }
        (new_state, olds)
    }

    async fn write_status(&mut self, status: DeploymentStatus) -> Result<()> {
        let patch = json!({
            "metadata": {"resourceVersion": self.d.metadata.resource_version},
            "status": status,
        });
        self.d = self
            .deployment_api()
            .patch_status(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| Error::api("update status of", &self.what, e))?;
        Ok(())
    }

    async fn set_condition(&mut self, cond: DeploymentCondition) -> Result<()> {
        let mut s = self.status();
        status::set(&mut s, cond);
        if Some(&s) != self.d.status.as_ref() {
            self.write_status(s).await?;
        }
        Ok(())
    }

    /// Records the new ReplicaSet's revision on the Deployment too (`rollout history`).
    async fn sync_deployment_revision(&mut self, revision: i64) -> Result<()> {
        let revision = revision.to_string();
        if self.d.annotations().get(REVISION) == Some(&revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {
            "resourceVersion": self.d.metadata.resource_version,
            "annotations": {REVISION: revision},
        }});
        self.d = self
            .deployment_api()
            .patch(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| Error::api("annotate", &self.what, e))?;
        Ok(())
    }

    /// Brings the existing new ReplicaSet's annotations (revision, change-cause) and
    /// minReadySeconds up to date; returns its index.
    async fn sync_revision(&mut self) -> Result<Option<usize>> {
        let Some(i) = self.new_index() else {
            return Ok(None);
        };
        let (_, olds) = self.states();
        let next = history::next_revision(&olds.iter().collect::<Vec<_>>());
        let min_ready = self.spec()?.min_ready_seconds;
        let rs = &self.rss[i];
        let annotations = history::new_rs_annotations(
            self.d.metadata.annotations.as_ref(),
            rs.metadata.annotations.as_ref(),
            next,
            None,
        );
        let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if annotations.is_some() || rs_min_ready.unwrap_or(0) != min_ready.unwrap_or(0) {
            let mut patch = json!({
                "metadata": {"resourceVersion": rs.metadata.resource_version},
                "spec": {"minReadySeconds": min_ready},
            });
            if let Some(a) = annotations {
                patch["metadata"]["annotations"] = json!(a);
            }
            let name = rs.name_any();
            self.rss[i] = self
                .rs_api()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::api("update", format!("ReplicaSet {}/{name}", self.ns()), e))?;
        }
        let revision = history::revision(self.rss[i].metadata.annotations.as_ref());
        self.sync_deployment_revision(revision).await?;
        if self.deadline().is_some() && status::get(&self.status(), status::PROGRESSING).is_none() {
            let msg = format!("Found new replica set \"{}\"", self.rss[i].name_any());
            let cond = status::condition(
                status::PROGRESSING,
                "True",
                status::FOUND_NEW_RS,
                msg,
                self.now,
            );
            self.set_condition(cond).await?;
        }
        Ok(Some(i))
    }

    /// Creates the ReplicaSet of the current template with `replicas` pods.
    async fn create_new(&mut self, replicas: i32) -> Result<()> {
        let spec = self.spec()?.clone();
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = history::template_hash(&spec.template, collisions);
        let name = format!("{}-{hash}", self.d.name_any());
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut sel = spec.selector.clone();
        sel.match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let (_, olds) = self.states();
        let revision = history::next_revision(&olds.iter().collect::<Vec<_>>());
        let t = self.target;
        let annotations = history::new_rs_annotations(
            self.d.metadata.annotations.as_ref(),
            None,
            revision,
            Some((t.replicas, t.replicas + t.max_surge())),
        );
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations,
                owner_references: Some(vec![controller_reference(&self.d)]),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector: sel,
                template: Some(template),
            }),
            status: None,
        };
        let created = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = self.rs_api().get(&name).await.map_err(|e| {
                    Error::api("get", format!("ReplicaSet {}/{name}", self.ns()), e)
                })?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| history::equal_ignoring_hash(t, &spec.template));
                if ours && same {
                    // The cache had not shown it yet.
                    self.rss.push(existing);
                    return Ok(());
                }
                // Another template hashed to the same name: hash again with a new count.
                let mut s = self.status();
                s.collision_count = Some(collisions.unwrap_or(0) + 1);
                self.write_status(s).await?;
                return Err(Error::Other(format!(
                    "{}: ReplicaSet name {name} is taken by another template; retrying with collision count {}",
                    self.what,
                    collisions.unwrap_or(0) + 1
                )));
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set \"{name}\": {e}");
                self.state
                    .recorder
                    .publish(&self.d, EventType::Warning, "FailedCreate", &msg)
                    .await;
                if self.deadline().is_some() {
                    let cond = status::condition(
                        status::REPLICA_FAILURE,
                        "True",
                        "FailedRSCreate",
                        msg,
                        self.now,
                    );
                    self.set_condition(cond).await?;
                }
                return Err(Error::api(
                    "create",
                    format!("ReplicaSet {}/{name}", self.ns()),
                    e,
                ));
            }
        };
        tracing::info!(
            deployment = self.what,
            replica_set = name,
            replicas,
            "created new replica set"
        );
        if replicas > 0 {
            self.state
                .recorder
                .publish(
                    &self.d,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {name} to {replicas}"),
                )
                .await;
        }
        self.rss.push(created);
        self.sync_deployment_revision(revision).await?;
        if self.deadline().is_some() {
            let msg = format!("Created new replica set \"{name}\"");
            let cond = status::condition(
                status::PROGRESSING,
                "True",
                status::NEW_RS_CREATED,
                msg,
                self.now,
            );
            self.set_condition(cond).await?;
        }
        Ok(())
    }

    /// Sizes a ReplicaSet and records the Deployment's size on it.
    async fn scale_rs(&mut self, name: &str, to: i32) -> Result<()> {
        let Some(i) = self.rss.iter().position(|r| r.name_any() == name) else {
            return Ok(());
        };
        let rs = &self.rss[i];
        let from = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let t = self.target;
        let annotated = history::set_replicas_annotations(
            &mut annotations,
            t.replicas,
            t.replicas + t.max_surge(),
        );
        if from == to && !annotated {
            return Ok(());
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": rs.metadata.resource_version,
                "annotations": {
                    history::DESIRED_REPLICAS: annotations.get(history::DESIRED_REPLICAS),
                    history::MAX_REPLICAS: annotations.get(history::MAX_REPLICAS),
                },
            },
            "spec": {"replicas": to},
        });
        self.rss[i] = self
            .rs_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::api("scale", format!("ReplicaSet {}/{name}", self.ns()), e))?;
        if from != to {
            let direction = if to > from { "up" } else { "down" };
            let msg = format!("Scaled {direction} replica set {name} to {to} from {from}");
            tracing::info!(deployment = self.what, "{msg}");
            self.state
                .recorder
                .publish(&self.d, EventType::Normal, "ScalingReplicaSet", &msg)
                .await;
        }
        Ok(())
    }

    /// Deletes old ReplicaSets beyond `revisionHistoryLimit`.
    async fn cleanup(&mut self) -> Result<()> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let (_, olds) = self.states();
        for name in history::history_to_delete(&olds.iter().collect::<Vec<_>>(), limit) {
            tracing::info!(
                deployment = self.what,
                replica_set = name,
                "deleting old replica set beyond the history limit"
            );
            match self.rs_api().delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(Error::api(
                        "delete",
                        format!("ReplicaSet {}/{name}", self.ns()),
                        e,
                    ))
                }
            }
            self.rss.retain(|r| r.name_any() != name);
        }
        Ok(())
    }

    /// Some pod of an old ReplicaSet still exists and has not finished.
    fn old_pods_running(&self) -> bool {
        let new = self.new_index();
        let old_uids: Vec<&str> = self
            .rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new)
            .filter_map(|(_, rs)| rs.metadata.uid.as_deref())
            .collect();
        let ns = self.ns();
        self.state.pods.state().iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid.as_str()))
                && !matches!(phase(p), "Succeeded" | "Failed")
        })
    }

    /// The ReplicaFailure condition of the new (else any) ReplicaSet, as the Deployment's.
    fn replica_failure(&self) -> Option<DeploymentCondition> {
        let new = self.new_index();
        let order = new
            .into_iter()
            .chain((0..self.rss.len()).filter(|i| Some(*i) != new));
        order
            .filter_map(|i| {
                let c = self.rss[i]
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == status::REPLICA_FAILURE)?
                    .clone();
                Some(DeploymentCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time,
                })
            })
            .next()
    }

    /// Writes the status; with `rollout` the Progressing condition too. Returns when the
    /// progress deadline must be checked again.
    async fn sync_status(&mut self, rollout: bool) -> Result<Option<i64>> {
        let replicas = self.target.replicas;
        let generation = self.d.metadata.generation.unwrap_or(0);
        let (new, olds) = self.states();
        let all: Vec<&RsState> = new.iter().chain(olds.iter()).collect();
        let current = self.status();
        let inputs = status::Inputs {
            replicas,
            max_unavailable: self.target.max_unavailable(),
            generation,
            all: &all,
            new: new.as_ref(),
        };
        let mut next = status::calculate(&current, &inputs, self.now);
        if rollout {
            let r = status::Rollout {
                replicas,
                generation,
                deadline: self.deadline(),
                new_rs_name: new.as_ref().map(|n| n.name.as_str()),
            };
            next = status::rollout_conditions(&current, next, &r, self.replica_failure(), self.now);
        }
        if Some(&next) != self.d.status.as_ref() {
            self.write_status(next).await?;
        }
        if !rollout {
            return Ok(None);
        }
        Ok(status::deadline_check_in(
            &self.status(),
            replicas,
            generation,
            self.deadline(),
            self.now,
        ))
    }
}

async fn reconcile(d: Arc<Deployment>, state: Arc<Loop>) -> Result<Action> {
    let key = object_key(d.as_ref());
    let what = format!("Deployment {key}");
    for ready in [
        state.rss.wait_until_ready().boxed(),
        state.pods.wait_until_ready().boxed(),
    ] {
        ready
            .await
            .map_err(|_| Error::Other("an informer cache closed".into()))?;
    }
    let spec = d
        .spec
        .as_ref()
        .ok_or_else(|| Error::invalid(&what, "spec is missing"))?;
    let sel = selector(Some(&spec.selector), &what)?;
    if sel.is_empty() {
        return Err(Error::invalid(
            &what,
            "spec.selector is empty; it would select every pod",
        ));
    }
    let strategy = rollout::strategy_of(spec).map_err(|e| Error::invalid(&what, e))?;
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let paused = spec.paused.unwrap_or(false);
    let target = Target {
        replicas,
        strategy,
        observed_replicas: d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
    };
    let now = state.ctx.clock.now();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let ns = d.namespace().unwrap_or_default();
    let terminating = is_terminating(&d.metadata);

    // Claim ReplicaSets.
    let mut owned = Vec::new();
    let mut adopt = Vec::new();
    for rs in state.rss.state() {
        if rs.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        match claim(
            &rs.metadata,
            &uid,
            terminating,
            sel.matches(labels(&rs.metadata)),
        ) {
            Claim::Owned => owned.push(rs.as_ref().clone()),
            Claim::Adopt => adopt.push(rs),
            Claim::Release => {
                patch_owner_refs(&state, &what, &rs, Ownership::Release(&uid)).await?;
            }
            Claim::Ignore => {}
        }
    }
    if !adopt.is_empty() && can_adopt(&state, &d, &what).await? {
        for rs in adopt {
            if let Some(rs) = patch_owner_refs(&state, &what, &rs, Ownership::Adopt(&d)).await? {
                owned.push(rs);
            }
        }
    }

    let mut pass = Pass {
        state: &state,
        d: (*d).clone(),
        what: what.clone(),
        rss: owned,
        target,
        now,
    };
    if terminating {
        pass.sync_status(false).await?;
        return Ok(Action::await_change());
    }
    if let Some(s) = status::paused_condition(&pass.status(), paused, pass.deadline(), now) {
        pass.write_status(s).await?;
    }

    pass.sync_revision().await?;
    let (new, olds) = pass.states();
    let old_refs: Vec<&RsState> = olds.iter().collect();
    let old_pods_running = strategy == Strategy::Recreate && pass.old_pods_running();
    let step = rollout::plan(&target, paused, new.as_ref(), &old_refs, old_pods_running);
    tracing::debug!(deployment = what, ?step, "planned");
    let mut rollout = true;
    let mut poll = None;
    match step {
        Step::Scale(sizes) => {
            rollout = false;
            for (name, to) in sizes {
                pass.scale_rs(&name, to).await?;
            }
            if paused {
                pass.cleanup().await?;
            }
        }
        Step::CreateNew(n) => pass.create_new(n).await?,
        Step::Roll(changes) => {
            for (name, to) in changes {
                pass.scale_rs(&name, to).await?;
            }
        }
        Step::WaitForOldPods => poll = Some(OLD_PODS_POLL),
        Step::Idle => {
            let s = pass.status();
            if status::complete(replicas, d.metadata.generation.unwrap_or(0), &s) {
                pass.cleanup().await?;
            }
        }
    }
    let check_in = pass.sync_status(rollout).await?;
    state.ctx.succeeded(&key);
    let mut after = check_in.map(|s| Duration::from_secs(s.max(1) as u64));
    if let Some(p) = poll {
        after = Some(after.map_or(p, |a| a.min(p)));
    }
    Ok(after.map_or_else(Action::await_change, Action::requeue))
}

enum Ownership<'a> {
    Adopt(&'a Deployment),
    Release(&'a str),
}

/// Adopts or releases a ReplicaSet; `None` when it changed meanwhile (its next event
/// brings it back).
async fn patch_owner_refs(
    state: &Loop,
    what: &str,
    rs: &ReplicaSet,
    change: Ownership<'_>,
) -> Result<Option<ReplicaSet>> {
    let current = rs.metadata.owner_references.as_deref().unwrap_or_default();
    let refs = match change {
        Ownership::Adopt(d) => json!(adopted_references(current, controller_reference(d))),
        Ownership::Release(uid) => {
            let refs = released_references(current, uid);
            if refs.is_empty() {
                serde_json::Value::Null
            } else {
                json!(refs)
            }
        }
    };
    let patch = json!({"metadata": {
        "resourceVersion": rs.metadata.resource_version,
        "ownerReferences": refs,
    }});
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let api: Api<ReplicaSet> = Api::namespaced(state.ctx.client.clone(), &ns);
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(rs) => {
            tracing::info!(
                deployment = what,
                replica_set = name,
                "changed ownership of replica set"
            );
            Ok(Some(rs))
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(e) => Err(Error::api("claim", format!("ReplicaSet {ns}/{name}"), e)),
    }
}

/// A fresh read shows the same Deployment, not being deleted.
async fn can_adopt(state: &Loop, d: &Deployment, what: &str) -> Result<bool> {
    let api: Api<Deployment> =
        Api::namespaced(state.ctx.client.clone(), &d.namespace().unwrap_or_default());
    match api.get(&d.name_any()).await {
        Ok(fresh) => Ok(fresh.metadata.uid == d.metadata.uid && !is_terminating(&fresh.metadata)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(Error::api("get", what, e)),
    }
}
