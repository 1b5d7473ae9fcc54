//! `rollout status|history|undo|pause|resume|restart` for Deployments, DaemonSets and
//! StatefulSets, client-side as kubectl does them: the status messages are read from the
//! object's status, the history from the Deployment's ReplicaSets (their
//! `deployment.kubernetes.io/revision` annotation) or the DaemonSet's/StatefulSet's
//! ControllerRevisions, and an undo copies an old revision's template back into the object.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use thiserror::Error;

use crate::client::{encode, resource_path, with_query, Cluster, PatchType};
use crate::errors::Failures;
use crate::fields::{annotation, controlled_by, int_at, items_at, name, opt_int_at, str_at};
use crate::modify;

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The Deployment condition reason that ends a rollout as failed.
const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// Annotations an undo leaves as they are on the Deployment instead of copying them from
/// the ReplicaSet.
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    skiff_api::constants::LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RolloutError {
    #[error("deployment \"{0}\" exceeded its progress deadline")]
    ProgressDeadlineExceeded(String),
    #[error("rollout status is only available for RollingUpdate strategy type")]
    NotRollingUpdate,
    #[error("desired revision ({want}) is different from the running revision ({have})")]
    RevisionMismatch { want: i64, have: i64 },
    #[error("no status viewer has been implemented for {0}")]
    NoStatusViewer(String),
    #[error("no history viewer has been implemented for {0}")]
    NoHistoryViewer(String),
    #[error("no rollbacker has been implemented for {0}")]
    NoRollbacker(String),
    #[error("unable to find specified revision {0} in history")]
    RevisionNotFound(i64),
    #[error("unable to find the specified revision")]
    HistoryRevisionNotFound,
    #[error("no rollout history found for {kind} \"{name}\"")]
    NoHistory { kind: String, name: String },
    #[error("no last revision to roll back to")]
    NoLastRevision,
    #[error("you cannot rollback a paused deployment; resume it first with 'skiffctl rollout resume' and try again")]
    PausedRollback,
}

/// kubectl names kinds as `Kind.group` in these messages.
fn group_kind(resource: &ResourceInfo) -> String {
    if resource.group.is_empty() {
        resource.kind.to_string()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    }
}

// ---- status ----

/// The rollout status message of an object and whether the rollout is done.
pub fn status_of(
    resource: &ResourceInfo,
    obj: &Value,
    revision: Option<i64>,
) -> Result<(String, bool), RolloutError> {
    match (resource.group, resource.kind) {
        ("apps", "Deployment") => deployment_status(obj, revision),
        ("apps", "DaemonSet") => daemonset_status(obj),
        ("apps", "StatefulSet") => statefulset_status(obj),
        _ => Err(RolloutError::NoStatusViewer(group_kind(resource))),
    }
}

fn generation_observed(obj: &Value) -> bool {
    int_at(obj, "/metadata/generation") <= int_at(obj, "/status/observedGeneration")
}

pub fn deployment_status(d: &Value, revision: Option<i64>) -> Result<(String, bool), RolloutError> {
    let name = name(d);
    if let Some(want) = revision.filter(|r| *r > 0) {
        let have = annotation(d, REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if want != have {
            return Err(RolloutError::RevisionMismatch { want, have });
        }
    }
    if !generation_observed(d) {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    let progressing = items_at(d, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Progressing");
    if progressing.is_some_and(|c| str_at(c, "/reason") == PROGRESS_DEADLINE_EXCEEDED) {
        return Err(RolloutError::ProgressDeadlineExceeded(name.to_string()));
    }
    let updated = int_at(d, "/status/updatedReplicas");
    let total = int_at(d, "/status/replicas");
    let available = int_at(d, "/status/availableReplicas");
    if let Some(want) = opt_int_at(d, "/spec/replicas").filter(|w| updated < *w) {
        return Ok((
            format!("Waiting for deployment \"{name}\" rollout to finish: {updated} out of {want} new replicas have been updated..."),
            false,
        ));
    }
    if total > updated {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                total - updated
            ),
            false,
        ));
    }
    if available < updated {
        return Ok((
            format!("Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."),
            false,
        ));
    }
    Ok((
        format!("deployment \"{name}\" successfully rolled out"),
        true,
    ))
}

fn strategy_type(obj: &Value) -> &str {
    match str_at(obj, "/spec/updateStrategy/type") {
        "" => "RollingUpdate",
        t => t,
    }
}

pub fn daemonset_status(ds: &Value) -> Result<(String, bool), RolloutError> {
    if strategy_type(ds) != "RollingUpdate" {
        return Err(RolloutError::NotRollingUpdate);
    }
    let name = name(ds);
    if !generation_observed(ds) {
        return Ok((
            "Waiting for daemon set spec update to be observed...".into(),
            false,
        ));
    }
    let desired = int_at(ds, "/status/desiredNumberScheduled");
    let updated = int_at(ds, "/status/updatedNumberScheduled");
    let available = int_at(ds, "/status/numberAvailable");
    if updated < desired {
        return Ok((
            format!("Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated..."),
            false,
        ));
    }
    if available < desired {
        return Ok((
            format!("Waiting for daemon set \"{name}\" rollout to finish: {available} of {desired} updated pods are available..."),
            false,
        ));
    }
    Ok((
        format!("daemon set \"{name}\" successfully rolled out"),
        true,
    ))
}

pub fn statefulset_status(sts: &Value) -> Result<(String, bool), RolloutError> {
    if strategy_type(sts) != "RollingUpdate" {
        return Err(RolloutError::NotRollingUpdate);
    }
    let observed = int_at(sts, "/status/observedGeneration");
    if observed == 0 || int_at(sts, "/metadata/generation") > observed {
        return Ok((
            "Waiting for statefulset spec update to be observed...".into(),
            false,
        ));
    }
    let replicas = opt_int_at(sts, "/spec/replicas");
    let ready = int_at(sts, "/status/readyReplicas");
    if let Some(want) = replicas.filter(|w| ready < *w) {
        return Ok((
            format!("Waiting for {} pods to be ready...", want - ready),
            false,
        ));
    }
    let updated = int_at(sts, "/status/updatedReplicas");
    if sts
        .pointer("/spec/updateStrategy/rollingUpdate")
        .is_some_and(|r| !r.is_null())
    {
        let partition = opt_int_at(sts, "/spec/updateStrategy/rollingUpdate/partition");
        if let (Some(replicas), Some(partition)) = (replicas, partition) {
            if updated < replicas - partition {
                return Ok((
                    format!(
                        "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                        replicas - partition
                    ),
                    false,
                ));
            }
        }
        return Ok((
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
            true,
        ));
    }
    let update_revision = str_at(sts, "/status/updateRevision");
    let current_revision = str_at(sts, "/status/currentRevision");
    if update_revision != current_revision {
        return Ok((
            format!("waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."),
            false,
        ));
    }
    Ok((
        format!(
            "statefulset rolling update complete {} pods at revision {current_revision}...",
            int_at(sts, "/status/currentReplicas")
        ),
        true,
    ))
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StatusOptions {
    pub watch: bool,
    pub timeout: Option<Duration>,
    pub revision: Option<i64>,
}

pub async fn status(cluster: &Cluster, args: &[String], opts: StatusOptions) -> Result<()> {
    for (t, obj_name) in modify::named(args, "rollout status")? {
        let resource = t.resource;
        // Refuse kinds without a status viewer before any request.
        if !matches!(
            (resource.group, resource.kind),
            ("apps", "Deployment" | "DaemonSet" | "StatefulSet")
        ) {
            return Err(RolloutError::NoStatusViewer(group_kind(resource)).into());
        }
        let wait = watch_status(cluster, resource, &obj_name, opts);
        match opts.timeout {
            Some(limit) => tokio::time::timeout(limit, wait)
                .await
                .map_err(|_| anyhow!("timed out waiting for the condition"))??,
            None => wait.await?,
        }
    }
    Ok(())
}

/// Prints the status on every change until the rollout is done (or once without --watch).
async fn watch_status(
    cluster: &Cluster,
    resource: &'static ResourceInfo,
    obj_name: &str,
    opts: StatusOptions,
) -> Result<()> {
    let ns = cluster.object_namespace(resource);
    let path = resource_path(resource, ns, Some(obj_name), None);
    let mut last = String::new();
    let mut show = |obj: &Value| -> Result<bool> {
        let (message, done) = status_of(resource, obj, opts.revision)?;
        if message != last {
            println!("{message}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            last = message;
        }
        Ok(done)
    };
    loop {
        let obj = cluster.get(&path).await?;
        if show(&obj)? || !opts.watch {
            return Ok(());
        }
        let rv = str_at(&obj, "/metadata/resourceVersion").to_string();
        let selector = format!("metadata.name={obj_name}");
        let watch_path = with_query(
            &resource_path(resource, ns, None, None),
            &[
                ("fieldSelector", &selector),
                ("watch", "1"),
                ("resourceVersion", &rv),
            ],
        );
        let mut events = Box::pin(cluster.watch(&watch_path, "application/json").await?);
        while let Some(event) = events.next().await {
            let event = event?;
            let object = event.get("object").cloned().unwrap_or(Value::Null);
            match event.get("type").and_then(Value::as_str).unwrap_or("") {
                "ADDED" | "MODIFIED" if show(&object)? => return Ok(()),
                "DELETED" => bail!("object has been deleted"),
                // An expired resourceVersion or a server hiccup: read the object again.
                "ERROR" => break,
                _ => {}
            }
        }
    }
}

// ---- history ----

/// One revision of an object: its number, its pod template and the change-cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub template: Value,
    pub change_cause: String,
    /// For DaemonSets and StatefulSets: the ControllerRevision's patch.
    pub data: Option<Value>,
}

/// The revisions of a Deployment from its ReplicaSets, by number.
pub fn deployment_revisions(replicasets: &[Value]) -> BTreeMap<i64, Revision> {
    let mut out = BTreeMap::new();
    for rs in replicasets {
        let Some(number) = annotation(rs, REVISION_ANNOTATION).and_then(|r| r.parse().ok()) else {
            continue;
        };
        let mut template = rs
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let change_cause = annotation(rs, CHANGE_CAUSE_ANNOTATION)
            .unwrap_or("")
            .to_string();
        if !change_cause.is_empty() {
            template["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = json!(change_cause);
        }
        out.insert(
            number,
            Revision {
                number,
                template,
                change_cause,
                data: None,
            },
        );
    }
    out
}

/// The revisions of a DaemonSet or StatefulSet from its ControllerRevisions.
pub fn controller_revisions(revisions: &[Value]) -> BTreeMap<i64, Revision> {
    let mut out = BTreeMap::new();
    for cr in revisions {
        let number = int_at(cr, "/revision");
        let data = cr.get("data").cloned().unwrap_or(Value::Null);
        let mut template = data
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Some(t) = template.as_object_mut() {
            t.remove("$patch");
        }
        let change_cause = annotation(cr, CHANGE_CAUSE_ANNOTATION)
            .unwrap_or("")
            .to_string();
        out.insert(
            number,
            Revision {
                number,
                template,
                change_cause,
                data: Some(data),
            },
        );
    }
    out
}

/// `REVISION  CHANGE-CAUSE` lines, as kubectl's tabwriter (padding 2) lays them out.
pub fn history_table(revisions: &BTreeMap<i64, Revision>) -> String {
    let mut lines = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    for r in revisions.values() {
        let cause = if r.change_cause.is_empty() {
            "<none>".to_string()
        } else {
            r.change_cause.clone()
        };
        lines.push(vec![r.number.to_string(), cause]);
    }
    crate::table::align(&lines, 0, 2)
}

/// The revisions of the object: Deployments from their ReplicaSets, DaemonSets and
/// StatefulSets from their ControllerRevisions.
async fn revisions_of(
    cluster: &Cluster,
    resource: &ResourceInfo,
    obj: &Value,
) -> Result<BTreeMap<i64, Revision>> {
    let ns = encode(str_at(obj, "/metadata/namespace"));
    let uid = str_at(obj, "/metadata/uid");
    let owned = |list: Value| -> Vec<Value> {
        items_at(&list, "/items")
            .iter()
            .filter(|o| controlled_by(o, uid))
            .cloned()
            .collect()
    };
    match (resource.group, resource.kind) {
        ("apps", "Deployment") => {
            let list = cluster
                .get(&format!("/apis/apps/v1/namespaces/{ns}/replicasets"))
                .await?;
            Ok(deployment_revisions(&owned(list)))
        }
        ("apps", "DaemonSet" | "StatefulSet") => {
            let list = cluster
                .get(&format!(
                    "/apis/apps/v1/namespaces/{ns}/controllerrevisions"
                ))
                .await?;
            Ok(controller_revisions(&owned(list)))
        }
        _ => Err(RolloutError::NoHistoryViewer(group_kind(resource)).into()),
    }
}

async fn get_object(cluster: &Cluster, resource: &ResourceInfo, obj_name: &str) -> Result<Value> {
    cluster
        .get(&resource_path(
            resource,
            cluster.object_namespace(resource),
            Some(obj_name),
            None,
        ))
        .await
}

fn template_text(template: &Value) -> String {
    let mut doc = crate::describe::Doc::default();
    crate::describe::template_block(&mut doc, Some(template));
    doc.render()
}

pub async fn history(cluster: &Cluster, args: &[String], revision: i64) -> Result<()> {
    let mut failures = Failures::default();
    for (t, obj_name) in modify::named(args, "rollout history")? {
        let resource = t.resource;
        let result = async {
            if !matches!(
                (resource.group, resource.kind),
                ("apps", "Deployment" | "DaemonSet" | "StatefulSet")
            ) {
                return Err(RolloutError::NoHistoryViewer(group_kind(resource)).into());
            }
            let obj = get_object(cluster, resource, &obj_name).await?;
            let revisions = revisions_of(cluster, resource, &obj).await?;
            let kind_name = format!("{}/{obj_name}", resource.singular_group());
            if revision > 0 {
                let r = revisions
                    .get(&revision)
                    .ok_or(RolloutError::HistoryRevisionNotFound)?;
                Ok::<String, anyhow::Error>(format!(
                    "{kind_name} with revision #{revision}\n{}\n",
                    template_text(&r.template)
                ))
            } else if revisions.is_empty() {
                Ok(format!("{kind_name} \nNo rollout history found.\n"))
            } else {
                Ok(format!("{kind_name} \n{}\n", history_table(&revisions)))
            }
        }
        .await;
        match result {
            Ok(text) => print!("{text}"),
            Err(e) => failures.report(&e),
        }
    }
    failures.finish()
}

// ---- undo ----

/// The revision an undo goes back to: `to` if given, else the one before the newest.
pub fn pick_revision(
    revisions: &BTreeMap<i64, Revision>,
    to: i64,
    kind: &str,
    obj_name: &str,
) -> Result<Revision, RolloutError> {
    if to > 0 {
        return revisions
            .get(&to)
            .cloned()
            .ok_or(RolloutError::RevisionNotFound(to));
    }
    if to < 0 {
        return Err(RolloutError::RevisionNotFound(to));
    }
    match revisions.values().rev().nth(1) {
        Some(r) => Ok(r.clone()),
        None if kind == "Deployment" => Err(RolloutError::NoHistory {
            kind: "deployment".into(),
            name: obj_name.to_string(),
        }),
        None => Err(RolloutError::NoLastRevision),
    }
}

/// A template without the `pod-template-hash` label (the label ReplicaSets add).
pub fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    t
}

/// The JSON patch that puts `revision`'s template back into Deployment `d` (None when the
/// template is already the same), with the annotations kubectl carries over.
pub fn deployment_undo_patch(
    d: &Value,
    rs_annotations: &Value,
    revision: &Revision,
) -> Option<Value> {
    let template = without_hash(&revision.template);
    let mut current = without_hash(d.pointer("/spec/template").unwrap_or(&Value::Null));
    // The change-cause that history shows comes from the ReplicaSet, not the template.
    let mut wanted = template.clone();
    for t in [&mut current, &mut wanted] {
        if let Some(a) = t
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove(CHANGE_CAUSE_ANNOTATION);
            if a.is_empty() {
                if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("annotations");
                }
            }
        }
    }
    if current == wanted {
        return None;
    }
    let mut annotations = serde_json::Map::new();
    if let Some(own) = d
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in own {
            if ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(theirs) = rs_annotations.as_object() {
        for (k, v) in theirs {
            if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    Some(json!([
        {"op": "replace", "path": "/spec/template", "value": wanted},
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
    ]))
}

pub async fn undo(cluster: &Cluster, args: &[String], to_revision: i64) -> Result<()> {
    let mut failures = Failures::default();
    for (t, obj_name) in modify::named(args, "rollout undo")? {
        let resource = t.resource;
        let result = async {
            if !matches!(
                (resource.group, resource.kind),
                ("apps", "Deployment" | "DaemonSet" | "StatefulSet")
            ) {
                return Err(RolloutError::NoRollbacker(group_kind(resource)).into());
            }
            let obj = get_object(cluster, resource, &obj_name).await?;
            let path = resource_path(
                resource,
                cluster.object_namespace(resource),
                Some(&obj_name),
                None,
            );
            if resource.kind == "Deployment" {
                undo_deployment(cluster, &path, &obj, to_revision).await
            } else {
                undo_controller_revision(cluster, resource, &path, &obj, to_revision).await
            }
        }
        .await;
        match result {
            Ok(outcome) => println!("{}/{obj_name} {outcome}", resource.singular_group()),
            Err(e) => failures.report(&e),
        }
    }
    failures.finish()
}

async fn undo_deployment(cluster: &Cluster, path: &str, d: &Value, to: i64) -> Result<String> {
    let ns = encode(str_at(d, "/metadata/namespace"));
    let uid = str_at(d, "/metadata/uid");
    let list = cluster
        .get(&format!("/apis/apps/v1/namespaces/{ns}/replicasets"))
        .await?;
    let owned: Vec<Value> = items_at(&list, "/items")
        .iter()
        .filter(|rs| controlled_by(rs, uid))
        .cloned()
        .collect();
    let revisions = deployment_revisions(&owned);
    let revision = pick_revision(&revisions, to, "Deployment", name(d))?;
    if d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err(RolloutError::PausedRollback.into());
    }
    let rs = owned
        .iter()
        .find(|rs| annotation(rs, REVISION_ANNOTATION) == Some(&revision.number.to_string()))
        .ok_or(RolloutError::RevisionNotFound(revision.number))?;
    let rs_annotations = rs
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(Value::Null);
    match deployment_undo_patch(d, &rs_annotations, &revision) {
        None => Ok(format!(
            "skipped rollback (current template already matches revision {})",
            revision.number
        )),
        Some(patch) => {
            cluster.patch(path, PatchType::Json, &patch).await?;
            Ok("rolled back".into())
        }
    }
}

async fn undo_controller_revision(
    cluster: &Cluster,
    resource: &ResourceInfo,
    path: &str,
    obj: &Value,
    to: i64,
) -> Result<String> {
    let revisions = revisions_of(cluster, resource, obj).await?;
    let revision = pick_revision(&revisions, to, resource.kind, name(obj))?;
    let current = obj
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    if current == revision.template {
        return Ok(format!(
            "skipped rollback (current template already matches revision {})",
            revision.number
        ));
    }
    let data = revision
        .data
        .clone()
        .filter(|d| d.is_object())
        .unwrap_or_else(|| json!({"spec": {"template": revision.template}}));
    cluster.patch(path, PatchType::Strategic, &data).await?;
    Ok("rolled back".into())
}

// ---- pause, resume, restart ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pause,
    Resume,
    Restart,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Change::Pause => "pausing",
            Change::Resume => "resuming",
            Change::Restart => "restarting",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Change::Pause => "paused",
            Change::Resume => "resumed",
            Change::Restart => "restarted",
        }
    }
}

/// The merge patch that makes `change` to `obj`, or the reason it can't (kubectl's words).
pub fn change_patch(
    change: Change,
    resource: &ResourceInfo,
    obj: &Value,
    now: &str,
) -> Result<Value, String> {
    let paused = obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let deployment = (resource.group, resource.kind) == ("apps", "Deployment");
    match change {
        Change::Pause | Change::Resume if !deployment => {
            Err(format!("{} is not supported", change.verb()))
        }
        Change::Pause if paused => Err("is already paused".into()),
        Change::Resume if !paused => Err("is not paused".into()),
        Change::Pause => Ok(json!({"spec": {"paused": true}})),
        Change::Resume => Ok(json!({"spec": {"paused": null}})),
        Change::Restart => {
            if !matches!(
                (resource.group, resource.kind),
                ("apps", "Deployment" | "DaemonSet" | "StatefulSet")
            ) {
                return Err(format!("{} is not supported", change.verb()));
            }
            if deployment && paused {
                return Err("can't restart paused deployment (run rollout resume first)".into());
            }
            Ok(json!({"spec": {"template": {"metadata": {"annotations": {
                RESTARTED_AT_ANNOTATION: now
            }}}}}))
        }
    }
}

pub async fn change(cluster: &Cluster, args: &[String], change: Change) -> Result<()> {
    let verb = match change {
        Change::Pause => "rollout pause",
        Change::Resume => "rollout resume",
        Change::Restart => "rollout restart",
    };
    let mut failures = Failures::default();
    let now = crate::fields::now_rfc3339();
    for (t, obj_name) in modify::named(args, verb)? {
        let resource = t.resource;
        let path = resource_path(
            resource,
            cluster.object_namespace(resource),
            Some(&obj_name),
            None,
        );
        let result = async {
            let obj = cluster.get(&path).await?;
            let patch = change_patch(change, resource, &obj, &now).map_err(|reason| {
                anyhow!("{} \"{obj_name}\" {reason}", resource.group_resource())
            })?;
            cluster.patch(&path, PatchType::Merge, &patch).await?;
            Ok::<(), anyhow::Error>(())
        }
        .await;
        match result {
            Ok(()) => println!("{}/{obj_name} {}", resource.singular_group(), change.done()),
            Err(e) => failures.report(&e),
        }
    }
    failures.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::resolve;

    fn deploy(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn deployment_messages() {
        let msg = |status: Value| deployment_status(&deploy(status), None).expect("status");
        assert_eq!(
            msg(json!({"observedGeneration": 1})),
            (
                "Waiting for deployment spec update to be observed...".into(),
                false
            )
        );
        assert_eq!(
            msg(json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3})).0,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert_eq!(
            msg(json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4})).0,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        assert_eq!(
            msg(json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2})).0,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
        );
        assert_eq!(
            msg(
                json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3})
            ),
            ("deployment \"web\" successfully rolled out".into(), true)
        );
        let failed = deploy(json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}));
        assert_eq!(
            deployment_status(&failed, None)
                .expect_err("deadline")
                .to_string(),
            "deployment \"web\" exceeded its progress deadline"
        );
        let mut with_rev = deploy(json!({"observedGeneration": 2}));
        with_rev["metadata"]["annotations"] = json!({REVISION_ANNOTATION: "3"});
        assert_eq!(
            deployment_status(&with_rev, Some(2)),
            Err(RolloutError::RevisionMismatch { want: 2, have: 3 })
        );
    }

    #[test]
    fn daemonset_and_statefulset_messages() {
        let ds = json!({"metadata": {"name": "log", "generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 2}});
        assert_eq!(
            daemonset_status(&ds).expect("ds").0,
            "Waiting for daemon set \"log\" rollout to finish: 2 out of 3 new pods have been updated..."
        );
        let ds = json!({"metadata": {"name": "log", "generation": 1}, "spec": {"updateStrategy": {"type": "OnDelete"}}});
        assert_eq!(daemonset_status(&ds), Err(RolloutError::NotRollingUpdate));
        let sts = json!({"metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate"}},
            "status": {"observedGeneration": 1, "readyReplicas": 1}});
        assert_eq!(
            statefulset_status(&sts).expect("sts").0,
            "Waiting for 2 pods to be ready..."
        );
        let sts = json!({"metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}},
            "status": {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 1}});
        assert_eq!(
            statefulset_status(&sts).expect("sts").0,
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated..."
        );
        let sts = json!({"metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "currentReplicas": 2, "currentRevision": "db-1", "updateRevision": "db-1"}});
        assert_eq!(
            statefulset_status(&sts).expect("sts"),
            (
                "statefulset rolling update complete 2 pods at revision db-1...".into(),
                true
            )
        );
    }

    fn rs(rev: &str, image: &str, cause: Option<&str>) -> Value {
        let mut annotations = json!({REVISION_ANNOTATION: rev});
        if let Some(c) = cause {
            annotations[CHANGE_CAUSE_ANNOTATION] = json!(c);
        }
        json!({"metadata": {"name": format!("web-{rev}"), "annotations": annotations},
            "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": format!("h{rev}")}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    #[test]
    fn history_and_undo_plans() {
        let sets = [
            rs("1", "nginx:1", None),
            rs("3", "nginx:3", Some("set image")),
            rs("2", "nginx:2", None),
        ];
        let revisions = deployment_revisions(&sets);
        assert_eq!(
            history_table(&revisions),
            "REVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n3         set image\n"
        );
        assert_eq!(
            pick_revision(&revisions, 0, "Deployment", "web")
                .expect("previous")
                .number,
            2
        );
        assert_eq!(
            pick_revision(&revisions, 7, "Deployment", "web")
                .expect_err("missing")
                .to_string(),
            "unable to find specified revision 7 in history"
        );
        let only: BTreeMap<i64, Revision> = revisions.clone().into_iter().take(1).collect();
        assert_eq!(
            pick_revision(&only, 0, "Deployment", "web")
                .expect_err("no history")
                .to_string(),
            "no rollout history found for deployment \"web\""
        );
        let d = json!({"metadata": {"name": "web", "annotations": {REVISION_ANNOTATION: "3", "team": "a"}},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:3"}]}}}});
        let r1 = revisions.get(&1).expect("r1");
        let patch =
            deployment_undo_patch(&d, &sets[0]["metadata"]["annotations"], r1).expect("a change");
        assert_eq!(
            patch[0]["value"],
            json!({"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}})
        );
        // The Deployment keeps its own revision; other annotations come from the ReplicaSet.
        assert_eq!(patch[1]["value"], json!({REVISION_ANNOTATION: "3"}));
        let r3 = revisions.get(&3).expect("r3");
        assert_eq!(deployment_undo_patch(&d, &Value::Null, r3), None);
    }

    #[test]
    fn pause_resume_restart() {
        let deploy_res = resolve("deploy").expect("deployments");
        let ds_res = resolve("ds").expect("daemonsets");
        let running = json!({"spec": {}});
        let paused = json!({"spec": {"paused": true}});
        assert_eq!(
            change_patch(Change::Pause, deploy_res, &running, "t"),
            Ok(json!({"spec": {"paused": true}}))
        );
        assert_eq!(
            change_patch(Change::Pause, deploy_res, &paused, "t"),
            Err("is already paused".into())
        );
        assert_eq!(
            change_patch(Change::Resume, deploy_res, &running, "t"),
            Err("is not paused".into())
        );
        assert_eq!(
            change_patch(Change::Pause, ds_res, &running, "t"),
            Err("pausing is not supported".into())
        );
        assert_eq!(
            change_patch(Change::Restart, ds_res, &running, "t"),
            Ok(
                json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: "t"}}}}})
            )
        );
        assert!(change_patch(Change::Restart, deploy_res, &paused, "t").is_err());
    }
}
