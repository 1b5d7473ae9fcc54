//! The API operations on objects: get, list, create, update (main and status), patch, scale,
//! bind and delete, with Kubernetes' metadata rules, optimistic concurrency, graceful pod
//! deletion, finalizers and admission.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use skiff_api::fields::FieldSelector;
use skiff_api::labels::Selector;
use skiff_api::resources::{self, ResourceInfo};

use super::status::{ApiError, ApiResult};
use super::ApiServer;
use crate::object;
use crate::patch::{self, PatchType};
use crate::registry::{self, admission, lifecycle};
use crate::store::StoreError;

/// How many times an update is retried when another writer got there first (only for writes
/// without a client-supplied resourceVersion).
const MAX_UPDATE_ATTEMPTS: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: Option<Selector>,
    pub fields: Option<FieldSelector>,
    pub limit: usize,
    pub continue_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (when present) and the query parameters, the query winning.
    pub fn from_request(body: Option<&Value>, query: &super::request::Query) -> ApiResult<Self> {
        let mut opts = DeleteOptions::default();
        if let Some(b) = body {
            opts.grace_period_seconds = b.get("gracePeriodSeconds").and_then(Value::as_i64);
            if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
                opts.propagation = Some(parse_propagation(p)?);
            }
            if b.get("orphanDependents") == Some(&json!(true)) {
                opts.propagation = Some(Propagation::Orphan);
            }
            opts.precondition_uid = b
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(String::from);
            opts.precondition_resource_version = b
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
            opts.dry_run = b
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        }
        if let Some(g) = query.number::<i64>("gracePeriodSeconds")? {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(p) = query.get_nonempty("propagationPolicy") {
            opts.propagation = Some(parse_propagation(p)?);
        }
        if query.flag("orphanDependents") {
            opts.propagation = Some(Propagation::Orphan);
        }
        if query.get_nonempty("dryRun").is_some() {
            opts.dry_run = true;
        }
        if opts.grace_period_seconds.is_some_and(|g| g < 0) {
            opts.grace_period_seconds = Some(0);
        }
        Ok(opts)
    }
}

fn parse_propagation(p: &str) -> ApiResult<Propagation> {
    match p {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        other => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// Which part of an object an update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
    /// A pod's binding: `spec.nodeName` and its `PodScheduled` condition in one write.
    Binding,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let token = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::bad_request(format!("continue key is not valid: {token:?}")))
}

fn parse_rv(rv: &str) -> ApiResult<i64> {
    rv.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}: not a number")))
}

/// Checks and fills `apiVersion`/`kind` against the URL's resource.
pub fn check_type(resource: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {} object",
            resource.kind
        )));
    }
    let expected = resource.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(expected),
        Some(v) if v == expected => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(resource.kind),
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )))
        }
    }
    Ok(())
}

/// Reconciles the namespace in the body with the one in the URL.
fn check_namespace(
    resource: &ResourceInfo,
    namespace: Option<&str>,
    obj: &mut Value,
) -> ApiResult<()> {
    if !resource.namespaced {
        object::set_meta(obj, "namespace", Value::Null);
        return Ok(());
    }
    let url_ns = namespace.ok_or_else(|| {
        ApiError::bad_request(format!(
            "{} must be created in a namespace",
            resource.plural
        ))
    })?;
    match object::namespace(obj) {
        None => object::set_meta(obj, "namespace", json!(url_ns)),
        Some(ns) if ns == url_ns => {}
        Some(_) => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
    Ok(())
}

impl ApiServer {
    async fn get_current(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<(Value, i64)> {
        match self.store.get(&object::key(r, ns, name)).await? {
            Some(kv) => Ok((object::decode(&kv)?, kv.mod_revision)),
            None => Err(ApiError::not_found(r, name)),
        }
    }

    pub async fn get(&self, r: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        Ok(self.get_current(r, ns, name).await?.0)
    }

    /// Every object of `r` (in `ns` when given), unfiltered.
    pub async fn list_all(&self, r: &ResourceInfo, ns: Option<&str>) -> ApiResult<Vec<Value>> {
        let page = self.store.list(&object::prefix(r, ns), None, 0).await?;
        page.items.iter().map(object::decode).collect()
    }

    pub async fn list(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ObjectList> {
        let prefix = object::prefix(r, ns);
        let (mut cursor, mut revision) = match &opts.continue_token {
            Some(t) => {
                let t = decode_continue(t)?;
                if !t.start.starts_with(&prefix) {
                    return Err(ApiError::bad_request(
                        "continue key does not belong to this list",
                    ));
                }
                (Some(t.start), Some(t.rv))
            }
            None => (None, None),
        };
        let matches = |obj: &Value| {
            opts.labels
                .as_ref()
                .is_none_or(|s| s.matches(&object::labels(obj)))
                && opts.fields.as_ref().is_none_or(|f| f.matches(obj))
        };
        let mut items = Vec::new();
        // Read pages until `limit` objects matched, so selectors do not shrink pages.
        let page_size = if opts.limit == 0 {
            0
        } else {
            opts.limit.max(50)
        };
        loop {
            let page = self
                .store
                .list(&prefix, cursor.as_deref(), page_size)
                .await?;
            let rev = *revision.get_or_insert(page.revision);
            let count = page.items.len();
            for (i, kv) in page.items.iter().enumerate() {
                let obj = object::decode(kv)?;
                if matches(&obj) {
                    items.push(obj);
                    if opts.limit > 0 && items.len() == opts.limit {
                        let more = i + 1 < count || page.more;
                        let token = more.then(|| encode_continue(rev, &kv.key));
                        return Ok(ObjectList {
                            items,
                            revision: rev,
                            continue_token: token,
                        });
                    }
                }
            }
            if !page.more || count == 0 {
                return Ok(ObjectList {
                    items,
                    revision: rev,
                    continue_token: None,
                });
            }
            cursor = page.items.last().map(|kv| kv.key.clone());
        }
    }

    /// Creates an object (POST to a collection).
    pub async fn create(
        self: &Arc<Self>,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        check_type(r, &mut obj)?;
        check_namespace(r, ns, &mut obj)?;
        if object::name(&obj).is_empty() {
            match object::meta_str(&obj, "generateName").filter(|g| !g.is_empty()) {
                Some(prefix) => {
                    let name = format!("{prefix}{}", object::random_suffix());
                    object::set_meta(&mut obj, "name", json!(name));
                }
                None => {
                    return Err(ApiError::invalid(
                        r,
                        "",
                        &[skiff_api::validation::FieldError {
                            field: "metadata.name".into(),
                            kind: skiff_api::validation::FieldErrorKind::Required,
                            value: None,
                            detail: "name or generateName is required".into(),
                        }],
                    ))
                }
            }
        }
        let name = object::name(&obj).to_string();
        let ns = if r.namespaced { ns } else { None };
        if let Some(ns) = ns {
            admission::check_namespace_accepts(self, ns, r, &name).await?;
        }
        registry::prepare_for_create(r, &mut obj);
        let uid = object::uid(&obj).to_string();
        admission::before_create(self, r, ns, &mut obj, &uid).await?;
        let mut obj = registry::normalize(r, obj)?;

        // Held until the write lands, so concurrent creates cannot both take the last unit.
        let _quota_guard = match ns {
            Some(ns) => admission::admit_quota(self, r, ns, &obj, None).await?,
            None => None,
        };
        if dry_run {
            return Ok(obj);
        }
        let allocation = admission::allocate_service(self, r, &mut obj, None).await?;
        let key = object::key(r, ns, &name);
        match self.store.create(&key, object::encode(&obj)).await {
            Ok(rev) => {
                allocation.commit(self).await;
                object::set_meta(&mut obj, "resourceVersion", json!(rev.to_string()));
                lifecycle::after_create(self, r, ns, &obj).await;
                Ok(obj)
            }
            Err(e) => {
                allocation.rollback(self).await;
                match e {
                    StoreError::AlreadyExists(_) => Err(ApiError::already_exists(r, &name)),
                    other => Err(other.into()),
                }
            }
        }
    }

    /// Replaces an object (PUT), or its status.
    pub async fn update(
        self: &Arc<Self>,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        part: Part,
        dry_run: bool,
    ) -> ApiResult<Value> {
        check_type(r, &mut obj)?;
        check_namespace(r, ns, &mut obj)?;
        match object::meta_str(&obj, "name") {
            None | Some("") => object::set_meta(&mut obj, "name", json!(name)),
            Some(n) if n == name => {}
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
        }
        let precondition = object::resource_version(&obj).map(parse_rv).transpose()?;
        let result = self
            .guaranteed_update(r, ns, name, precondition, part, dry_run, |_old| {
                Ok(obj.clone())
            })
            .await;
        match result {
            // Leases and Endpoints may be created by PUT, as Kubernetes allows.
            Err(e)
                if e.code == 404
                    && matches!(r.kind, "Lease" | "Endpoints")
                    && part == Part::Main =>
            {
                self.create(r, ns, obj, dry_run).await
            }
            other => other,
        }
    }

    /// Applies a patch to an object or its status.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        self: &Arc<Self>,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        part: Part,
        patch_type: PatchType,
        body: &[u8],
        dry_run: bool,
    ) -> ApiResult<Value> {
        if patch_type == PatchType::Apply {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "server-side apply (application/apply-patch+yaml) is not supported; use client-side apply",
            ));
        }
        self.guaranteed_update(r, ns, name, None, part, dry_run, |old| {
            let patched = patch::apply_patch(old, body, patch_type, r.kind).map_err(patch_error)?;
            // A resourceVersion in the patch is a precondition.
            if object::resource_version(&patched) != object::resource_version(old) {
                return Err(ApiError::conflict(r, name));
            }
            Ok(patched)
        })
        .await
    }

    /// The read-modify-write loop behind update and patch: re-reads and retries when another
    /// writer won, unless the client pinned a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn guaranteed_update(
        self: &Arc<Self>,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        precondition: Option<i64>,
        part: Part,
        dry_run: bool,
        mutate: impl Fn(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        let ns = if r.namespaced { ns } else { None };
        let key = object::key(r, ns, name);
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (old, old_rv) = self.get_current(r, ns, name).await?;
            if precondition.is_some_and(|p| p != old_rv) {
                return Err(ApiError::conflict(r, name));
            }
            let mut new = mutate(&old)?;
            check_type(r, &mut new)?;
            match object::meta_str(&new, "name") {
                None | Some("") => object::set_meta(&mut new, "name", json!(name)),
                Some(n) if n == name => {}
                Some(n) => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )))
                }
            }
            if let Some(ns) = ns {
                if object::namespace(&new).is_some_and(|n| n != ns) {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                object::set_meta(&mut new, "namespace", json!(ns));
            }
            match part {
                Part::Main => registry::prepare_for_update(r, &mut new, &old),
                Part::Status => registry::prepare_for_status_update(&mut new, &old),
                Part::Binding => {
                    let status = new.get("status").cloned();
                    registry::prepare_for_update(r, &mut new, &old);
                    if let Some(status) = status {
                        new["status"] = status;
                    }
                }
            }
            let mut new = registry::normalize(r, new)?;
            if part != Part::Status {
                registry::validate_update(r, &new, &old)?;
            }
            registry::bump_generation(r, &mut new, &old);
            object::set_meta(&mut new, "resourceVersion", json!(old_rv.to_string()));
            if new == old {
                // Nothing changed: no write, no new resourceVersion (as Kubernetes).
                return Ok(old);
            }
            let _quota_guard = match ns {
                Some(ns) if part == Part::Main => {
                    admission::admit_quota(self, r, ns, &new, Some(&old)).await?
                }
                _ => None,
            };
            if dry_run {
                return Ok(new);
            }
            if object::is_terminating(&new) && !holds_deletion(r, &new) {
                // The last finalizer is gone: the deletion completes.
                return match self.store.delete(&key, Some(old_rv)).await {
                    Ok((rev, _)) => {
                        object::set_meta(&mut new, "resourceVersion", json!(rev.to_string()));
                        lifecycle::after_delete(self, r, ns, &new, Propagation::Background).await;
                        Ok(new)
                    }
                    Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                    Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(r, name)),
                    Err(StoreError::NotFound(_)) => Err(ApiError::not_found(r, name)),
                    Err(e) => Err(e.into()),
                };
            }
            let allocation = if part == Part::Main {
                admission::allocate_service(self, r, &mut new, Some(&old)).await?
            } else {
                admission::Allocation::default()
            };
            match self.store.update(&key, object::encode(&new), old_rv).await {
                Ok(rev) => {
                    allocation.commit(self).await;
                    object::set_meta(&mut new, "resourceVersion", json!(rev.to_string()));
                    lifecycle::after_update(self, r, ns, &new, &old).await;
                    return Ok(new);
                }
                Err(StoreError::Conflict { .. }) => {
                    allocation.rollback(self).await;
                    if precondition.is_some() {
                        return Err(ApiError::conflict(r, name));
                    }
                }
                Err(StoreError::NotFound(_)) => {
                    allocation.rollback(self).await;
                    return Err(ApiError::not_found(r, name));
                }
                Err(e) => {
                    allocation.rollback(self).await;
                    return Err(e.into());
                }
            }
        }
        Err(ApiError::conflict_message(
            r,
            name,
            "too many concurrent writers; try again",
        ))
    }

    /// Deletes an object: gracefully for pods on a node, after finalizers for objects that
    /// carry them, at once otherwise. Returns the object as last stored.
    pub async fn delete(
        self: &Arc<Self>,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let ns = if r.namespaced { ns } else { None };
        let key = object::key(r, ns, name);
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (old, old_rv) = self.get_current(r, ns, name).await?;
            if let Some(uid) = &opts.precondition_uid {
                if uid != object::uid(&old) {
                    return Err(ApiError::conflict_message(
                        r,
                        name,
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", object::uid(&old)),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if parse_rv(rv)? != old_rv {
                    return Err(ApiError::conflict_message(
                        r,
                        name,
                        format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {old_rv}"),
                    ));
                }
            }
            if r.kind == "Namespace" && skiff_api::constants::BUILTIN_NAMESPACES.contains(&name) {
                return Err(ApiError::forbidden(
                    r,
                    name,
                    "this namespace may not be deleted",
                ));
            }
            if opts.dry_run {
                return Ok(old);
            }
            let propagation = opts.propagation.unwrap_or(Propagation::Background);
            let mut new = old.clone();
            let mut finalizers = object::finalizers(&old);
            match propagation {
                Propagation::Foreground
                    if !finalizers
                        .iter()
                        .any(|f| f == lifecycle::FOREGROUND_FINALIZER) =>
                {
                    finalizers.push(lifecycle::FOREGROUND_FINALIZER.into())
                }
                Propagation::Orphan
                    if !finalizers.iter().any(|f| f == lifecycle::ORPHAN_FINALIZER) =>
                {
                    finalizers.push(lifecycle::ORPHAN_FINALIZER.into())
                }
                _ => {}
            }
            if r.kind == "Namespace" {
                // Namespaces empty themselves first (the `kubernetes` finalizer in spec).
                if object::is_terminating(&old) {
                    return Ok(old);
                }
                object::set_meta(&mut new, "deletionTimestamp", json!(object::now()));
                object::set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
                new["status"]["phase"] = json!("Terminating");
                let stored = self.write_terminating(r, &key, new, old_rv).await;
                match stored {
                    Ok(v) => {
                        lifecycle::spawn_namespace_deletion(self.clone(), name.to_string());
                        return Ok(v);
                    }
                    Err(e) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                }
            }
            let grace = self.graceful_period(r, &old, opts).await?;
            if grace > 0 {
                // Graceful pod deletion: the node stops the pod, then confirms with grace 0.
                let current = old
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                if current.is_some_and(|c| c <= grace) {
                    return Ok(old);
                }
                let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                object::set_meta(
                    &mut new,
                    "deletionTimestamp",
                    json!(object::timestamp(deadline)),
                );
                object::set_meta(&mut new, "deletionGracePeriodSeconds", json!(grace));
                object::set_finalizers(&mut new, &finalizers);
                match self.write_terminating(r, &key, new, old_rv).await {
                    Ok(v) => return Ok(v),
                    Err(e) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                }
            }
            if !finalizers.is_empty() {
                if !object::is_terminating(&old) {
                    object::set_meta(&mut new, "deletionTimestamp", json!(object::now()));
                }
                object::set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
                object::set_finalizers(&mut new, &finalizers);
                if new == old {
                    return Ok(old);
                }
                match self.write_terminating(r, &key, new, old_rv).await {
                    Ok(v) => {
                        lifecycle::spawn_finalizer_work(
                            self.clone(),
                            r,
                            ns.map(String::from),
                            name.to_string(),
                        );
                        return Ok(v);
                    }
                    Err(e) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                }
            }
            match self.store.delete(&key, Some(old_rv)).await {
                Ok((rev, _)) => {
                    let mut gone = old;
                    object::set_meta(&mut gone, "resourceVersion", json!(rev.to_string()));
                    lifecycle::after_delete(self, r, ns, &gone, propagation).await;
                    return Ok(gone);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound(_)) => return Err(ApiError::not_found(r, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict_message(
            r,
            name,
            "too many concurrent writers; try again",
        ))
    }

    async fn write_terminating(
        &self,
        r: &ResourceInfo,
        key: &str,
        mut new: Value,
        old_rv: i64,
    ) -> ApiResult<Value> {
        let name = object::name(&new).to_string();
        match self.store.update(key, object::encode(&new), old_rv).await {
            Ok(rev) => {
                object::set_meta(&mut new, "resourceVersion", json!(rev.to_string()));
                Ok(new)
            }
            Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(r, &name)),
            Err(StoreError::NotFound(_)) => Err(ApiError::not_found(r, &name)),
            Err(e) => Err(e.into()),
        }
    }

    /// The grace period of a deletion: only pods bound to an existing node that has not
    /// finished get one (Kubernetes' CheckGracefulDeleteStrategy).
    async fn graceful_period(
        &self,
        r: &ResourceInfo,
        pod: &Value,
        opts: &DeleteOptions,
    ) -> ApiResult<i64> {
        if r.kind != "Pod" {
            return Ok(0);
        }
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if node.is_empty() || matches!(phase, "Succeeded" | "Failed") {
            return Ok(0);
        }
        let requested = opts.grace_period_seconds.unwrap_or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        if requested == 0 {
            return Ok(0);
        }
        // A pod on a node that does not exist has nobody to stop it (PodGC would remove it).
        let nodes = resources::by_plural("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("nodes resource missing"))?;
        if self
            .store
            .get(&object::key(nodes, None, node))
            .await?
            .is_none()
        {
            return Ok(0);
        }
        // Kubernetes treats 0 as "immediately" and clamps other values to at least 1 s.
        Ok(requested.max(1))
    }

    /// `pods/{name}/binding`: assigns a pod to a node once.
    pub async fn bind(self: &Arc<Self>, ns: &str, name: &str, binding: &Value) -> ApiResult<Value> {
        let pods = resources::by_plural("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods resource missing"))?;
        let target = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_request("binding target.name: Required value"))?
            .to_string();
        if binding
            .pointer("/target/kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Node" && !k.is_empty())
        {
            return Err(ApiError::bad_request("binding target.kind must be Node"));
        }
        let uid_precondition = binding
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(String::from);
        self.guaranteed_update(pods, Some(ns), name, None, Part::Binding, false, |old| {
            if let Some(uid) = &uid_precondition {
                if uid != object::uid(old) {
                    return Err(ApiError::conflict_message(
                        pods,
                        name,
                        "the pod's UID changed",
                    ));
                }
            }
            if object::is_terminating(old) {
                return Err(ApiError::conflict_message(
                    pods,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let current = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !current.is_empty() {
                return Err(ApiError::conflict_message(
                    pods,
                    name,
                    format!("pod {name} is already assigned to node \"{current}\""),
                ));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(target);
            let mut conditions: Vec<Value> = old
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now()}));
            new["status"]["conditions"] = json!(conditions);
            Ok(new)
        })
        .await?;
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }

    /// The `scale` subresource view of a workload (autoscaling/v1 Scale).
    pub fn scale_of(r: &ResourceInfo, obj: &Value) -> Value {
        let selector = match obj.pointer("/spec/selector") {
            Some(sel) if r.kind == "ReplicationController" => {
                let map = object::string_map(Some(sel));
                map.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }
            Some(sel) => serde_json::from_value::<
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
            >(sel.clone())
            .ok()
            .and_then(|s| Selector::from_label_selector(&s).ok())
            .map(|s| s.to_string())
            .unwrap_or_default(),
            None => String::new(),
        };
        let meta = object::metadata(obj).cloned().unwrap_or_default();
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
            "status": {
                "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
                "selector": selector,
            },
        })
    }

    /// Writes `spec.replicas` from a Scale (PUT) or a patch of the Scale (PATCH).
    pub async fn update_scale(
        self: &Arc<Self>,
        r: &'static ResourceInfo,
        ns: &str,
        name: &str,
        change: ScaleChange<'_>,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let precondition = match &change {
            ScaleChange::Replace(scale) => {
                object::resource_version(scale).map(parse_rv).transpose()?
            }
            ScaleChange::Patch(..) => None,
        };
        let updated = self
            .guaranteed_update(
                r,
                Some(ns),
                name,
                precondition,
                Part::Main,
                dry_run,
                |old| {
                    let scale = match &change {
                        ScaleChange::Replace(scale) => (*scale).clone(),
                        ScaleChange::Patch(ty, body) => {
                            patch::apply_patch(&Self::scale_of(r, old), body, *ty, "Scale")
                                .map_err(patch_error)?
                        }
                    };
                    let replicas = scale
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| {
                            ApiError::bad_request("Scale spec.replicas: Required value")
                        })?;
                    if replicas < 0 {
                        return Err(ApiError::invalid(
                            r,
                            name,
                            &[skiff_api::validation::FieldError {
                                field: "spec.replicas".into(),
                                kind: skiff_api::validation::FieldErrorKind::Invalid,
                                value: Some(replicas.to_string()),
                                detail: "must be greater than or equal to 0".into(),
                            }],
                        ));
                    }
                    let mut new = old.clone();
                    new["spec"]["replicas"] = json!(replicas);
                    Ok(new)
                },
            )
            .await?;
        Ok(Self::scale_of(r, &updated))
    }
}

/// How a scale subresource write changes replicas.
pub enum ScaleChange<'a> {
    Replace(&'a Value),
    Patch(PatchType, &'a [u8]),
}

/// Whether something still holds a terminating object back from removal: a finalizer, a
/// namespace's spec finalizers (its content is being deleted), or a pod's node that has not
/// confirmed the pod stopped.
fn holds_deletion(r: &ResourceInfo, obj: &Value) -> bool {
    !object::finalizers(obj).is_empty()
        || (r.kind == "Namespace"
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty()))
        || (r.kind == "Pod"
            && obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0)
}

fn patch_error(e: patch::PatchError) -> ApiError {
    match e.status_code() {
        400 => ApiError::bad_request(format!("the patch is not valid: {e}")),
        code => ApiError::new(
            code,
            "Invalid",
            format!("the patch could not be applied: {e}"),
        ),
    }
}
