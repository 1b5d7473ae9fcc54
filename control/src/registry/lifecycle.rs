//! What happens around writes: built-in objects at start, a `default` ServiceAccount per new
//! namespace, releasing a deleted Service's allocations, namespace deletion (empty the
//! namespace, then drop it), and cascading deletion through ownerReferences
//! (background, foreground and orphan propagation).
//!
//! Cascading here is a scan of the owner's namespace on each delete; the garbage collector
//! with informer caches (the controllers issue) replaces it for large clusters.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use skiff_api::constants::{
    BUILTIN_NAMESPACES, DEFAULT_STORAGE_CLASS_ANNOTATION, NAMESPACE_FINALIZER,
};
use skiff_api::resources::{self, ResourceInfo, RESOURCES};

use super::admission;
use crate::object;
use crate::server::ops::{DeleteOptions, Part, Propagation};
use crate::server::status::{ApiError, ApiResult};
use crate::server::ApiServer;

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

/// How often deleted built-in objects (namespaces, the `kubernetes` Service) are put back.
const BUILTIN_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

fn core(plural: &str) -> ApiResult<&'static ResourceInfo> {
    resources::by_plural("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} resource missing")))
}

/// Creates `obj` unless it exists.
async fn ensure(
    api: &Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    obj: Value,
) -> ApiResult<()> {
    // Look first: a create of an existing Service would fail on its fixed IP, not as 409.
    match api.get(r, ns, object::name(&obj)).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    match api.create(r, ns, obj, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The objects every cluster has: the built-in namespaces with their `default`
/// ServiceAccounts, and the `kubernetes` Service pointing at this API server.
pub async fn bootstrap(api: &Arc<ApiServer>, advertise: IpAddr, port: u16) -> ApiResult<()> {
    let namespaces = core("namespaces")?;
    for ns in BUILTIN_NAMESPACES {
        ensure(api, namespaces, None, json!({"metadata": {"name": ns}})).await?;
        ensure_default_service_account(api, ns).await?;
    }
    let services = core("services")?;
    let api_ip = api.allocator.api_service_ip().to_string();
    ensure(
        api,
        services,
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": api_ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}
        }),
    )
    .await?;
    ensure_default_storage_class(api).await?;
    let endpoints = core("endpoints")?;
    let desired = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
    });
    match api.get(endpoints, Some("default"), "kubernetes").await {
        Ok(current) if current.get("subsets") == desired.get("subsets") => {}
        Ok(_) => {
            api.update(
                endpoints,
                Some("default"),
                "kubernetes",
                desired,
                Part::Main,
                false,
            )
            .await?;
        }
        Err(e) if e.code == 404 => ensure(api, endpoints, Some("default"), desired).await?,
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The default StorageClass: hostPath volumes made on the node the pod lands on
/// (provisioned by the volume binder among the controllers).
async fn ensure_default_storage_class(api: &Arc<ApiServer>) -> ApiResult<()> {
    let classes = resources::by_plural("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("storageclasses resource missing"))?;
    ensure(
        api,
        classes,
        None,
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path", "annotations": {(DEFAULT_STORAGE_CLASS_ANNOTATION): "true"}},
            "provisioner": "skiff.io/local-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"
        }),
    )
    .await
}

async fn ensure_default_service_account(api: &Arc<ApiServer>, ns: &str) -> ApiResult<()> {
    ensure(
        api,
        core("serviceaccounts")?,
        Some(ns),
        json!({"metadata": {"name": "default"}}),
    )
    .await
}

/// Called after a create landed.
pub async fn after_create(api: &Arc<ApiServer>, r: &ResourceInfo, ns: Option<&str>, obj: &Value) {
    if r.kind == "Namespace" {
        // The ServiceAccount controller's job, done at once so pods can be created right away.
        default_service_account_task(api.clone(), object::name(obj).to_string()).await;
    }
    refresh_quota_later(api, r, ns);
}

pub async fn after_update(
    api: &Arc<ApiServer>,
    r: &ResourceInfo,
    ns: Option<&str>,
    new: &Value,
    old: &Value,
) {
    let quota_relevant = (r.kind == "ResourceQuota" && new.get("spec") != old.get("spec"))
        || (r.kind == "Pod" && new.pointer("/status/phase") != old.pointer("/status/phase"));
    if quota_relevant {
        refresh_quota_later(api, r, ns);
    }
}

/// Called after an object is gone from the store.
pub async fn after_delete(
    api: &Arc<ApiServer>,
    r: &ResourceInfo,
    ns: Option<&str>,
    obj: &Value,
    propagation: Propagation,
) {
    if r.kind == "Service" {
        let (ip, ports) = admission::service_holdings(obj);
        if let Some(ip) = ip {
            if let Err(e) = api.allocator.release_ip(ip).await {
                tracing::warn!(%ip, error = %e, "releasing service IP");
            }
        }
        for port in ports {
            if let Err(e) = api.allocator.release_port(port).await {
                tracing::warn!(port, error = %e, "releasing node port");
            }
        }
    }
    refresh_quota_later(api, r, ns);
    let uid = object::uid(obj).to_string();
    if uid.is_empty() || !may_own(r) {
        return;
    }
    tokio::spawn(cascade_task(
        api.clone(),
        r.namespaced,
        ns.map(String::from),
        uid,
        propagation,
    ));
}

// The two tasks below are boxed behind plain functions: creating or deleting an object can
// create or delete others, and the explicit future type breaks that cycle for the compiler.

fn default_service_account_task(api: Arc<ApiServer>, namespace: String) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        if let Err(e) = ensure_default_service_account(&api, &namespace).await {
            tracing::warn!(namespace, error = %e, "creating default service account");
        }
    })
}

fn cascade_task(
    api: Arc<ApiServer>,
    owner_namespaced: bool,
    owner_ns: Option<String>,
    uid: String,
    propagation: Propagation,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let result = match propagation {
            Propagation::Orphan => {
                orphan_dependents(&api, owner_namespaced, owner_ns.as_deref(), &uid).await
            }
            _ => delete_dependents(&api, owner_namespaced, owner_ns.as_deref(), &uid)
                .await
                .map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(owner = uid, error = %e, "cascading deletion");
        }
    })
}

/// Kinds that own other objects in practice; deleting anything else skips the dependents scan.
fn may_own(r: &ResourceInfo) -> bool {
    !matches!(
        r.kind,
        "Event" | "Endpoints" | "EndpointSlice" | "Lease" | "ControllerRevision" | "Pod"
    )
}

fn refresh_quota_later(api: &Arc<ApiServer>, r: &ResourceInfo, ns: Option<&str>) {
    let Some(ns) = ns.map(String::from) else {
        return;
    };
    if !admission::counted_by_quota(r.kind) {
        return;
    }
    let api = api.clone();
    tokio::spawn(async move {
        if let Err(e) = admission::refresh_quota_status(&api, &ns).await {
            tracing::warn!(namespace = ns, error = %e, "refreshing quota status");
        }
    });
}

/// Every object owned by `uid` (in `ns` for a namespaced owner, anywhere otherwise).
async fn dependents(
    api: &ApiServer,
    owner_namespaced: bool,
    ns: Option<&str>,
    uid: &str,
) -> ApiResult<Vec<(&'static ResourceInfo, Value)>> {
    let mut out = Vec::new();
    for r in RESOURCES {
        if owner_namespaced && !r.namespaced {
            continue;
        }
        let scope = if owner_namespaced { ns } else { None };
        for obj in api.list_all(r, scope).await? {
            if object::owner_uids(&obj).iter().any(|u| u == uid) {
                out.push((r, obj));
            }
        }
    }
    Ok(out)
}

/// Deletes the dependents of `uid` (each cascading in turn); returns how many remain.
async fn delete_dependents(
    api: &Arc<ApiServer>,
    owner_namespaced: bool,
    ns: Option<&str>,
    uid: &str,
) -> ApiResult<usize> {
    let deps = dependents(api, owner_namespaced, ns, uid).await?;
    let remaining = deps.len();
    for (r, obj) in deps {
        if object::is_terminating(&obj) {
            continue;
        }
        let opts = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..Default::default()
        };
        match api
            .delete(r, object::namespace(&obj), object::name(&obj), &opts)
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(remaining)
}

/// Removes the owner reference to `uid` from every dependent.
async fn orphan_dependents(
    api: &Arc<ApiServer>,
    owner_namespaced: bool,
    ns: Option<&str>,
    uid: &str,
) -> ApiResult<()> {
    for (r, obj) in dependents(api, owner_namespaced, ns, uid).await? {
        let result = api
            .guaranteed_update(
                r,
                object::namespace(&obj),
                object::name(&obj),
                None,
                Part::Main,
                false,
                |old| {
                    let mut new = old.clone();
                    if let Some(refs) = new
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|o| o.get("uid").and_then(Value::as_str) != Some(uid));
                    }
                    Ok(new)
                },
            )
            .await;
        match result {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes one finalizer from an object (completing its deletion if it was the last).
async fn remove_finalizer(
    api: &Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    finalizer: &str,
) -> ApiResult<()> {
    let result = api
        .guaranteed_update(r, ns, name, None, Part::Main, false, |old| {
            let mut new = old.clone();
            let mut f = object::finalizers(old);
            f.retain(|x| x != finalizer);
            object::set_finalizers(&mut new, &f);
            Ok(new)
        })
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Works off the propagation finalizers of a terminating object.
pub fn spawn_finalizer_work(
    api: Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<String>,
    name: String,
) {
    tokio::spawn(async move {
        loop {
            let obj = match api.get(r, ns.as_deref(), &name).await {
                Ok(o) => o,
                Err(e) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(name, error = %e, "reading terminating object");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let finalizers = object::finalizers(&obj);
            let uid = object::uid(&obj).to_string();
            let step = if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                match orphan_dependents(&api, r.namespaced, ns.as_deref(), &uid).await {
                    Ok(()) => {
                        remove_finalizer(&api, r, ns.as_deref(), &name, ORPHAN_FINALIZER).await
                    }
                    Err(e) => Err(e),
                }
            } else if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                match delete_dependents(&api, r.namespaced, ns.as_deref(), &uid).await {
                    Ok(0) => {
                        remove_finalizer(&api, r, ns.as_deref(), &name, FOREGROUND_FINALIZER).await
                    }
                    Ok(_) => {
                        // Dependents are still going away (graceful pods): look again shortly.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            } else {
                // Other finalizers belong to other controllers.
                return;
            };
            if let Err(e) = step {
                tracing::warn!(name, error = %e, "working off deletion finalizer");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
}

/// Empties a terminating namespace, then removes it.
pub fn spawn_namespace_deletion(api: Arc<ApiServer>, name: String) {
    tokio::spawn(async move {
        loop {
            match empty_namespace(&api, &name).await {
                Ok(0) => break,
                Ok(left) => tracing::debug!(namespace = name, left, "namespace still has objects"),
                Err(e) => tracing::warn!(namespace = name, error = %e, "emptying namespace"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let namespaces = match core("namespaces") {
            Ok(r) => r,
            Err(_) => return,
        };
        let result = api
            .guaranteed_update(namespaces, None, &name, None, Part::Main, false, |old| {
                let mut new = old.clone();
                if let Some(f) = new
                    .pointer_mut("/spec/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|x| x.as_str() != Some(NAMESPACE_FINALIZER));
                }
                Ok(new)
            })
            .await;
        let finished = match result {
            Ok(ns) if !object::finalizers(&ns).is_empty() => false,
            Ok(_) => true,
            Err(e) if e.code == 404 => return,
            Err(e) => {
                tracing::warn!(namespace = name, error = %e, "finalizing namespace");
                false
            }
        };
        if finished {
            let key = object::key(namespaces, None, &name);
            match api.store.get(&key).await {
                Ok(Some(kv)) => {
                    if let Err(e) = api.store.delete(&key, Some(kv.mod_revision)).await {
                        tracing::warn!(namespace = name, error = %e, "removing namespace");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(namespace = name, error = %e, "removing namespace"),
            }
            tracing::info!(namespace = name, "namespace deleted");
        }
    });
}

/// Deletes everything in `ns`; returns how many objects were still there.
async fn empty_namespace(api: &Arc<ApiServer>, ns: &str) -> ApiResult<usize> {
    let mut left = 0;
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        for obj in api.list_all(r, Some(ns)).await? {
            left += 1;
            if object::is_terminating(&obj) && object::finalizers(&obj).is_empty() {
                // A pod waiting for its node: nothing more to do here.
                continue;
            }
            let opts = DeleteOptions {
                propagation: Some(Propagation::Background),
                ..Default::default()
            };
            match api.delete(r, Some(ns), object::name(&obj), &opts).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(left)
}

/// Loops that keep the server's own state right: resuming interrupted namespace deletions
/// and finalizer work after a restart, putting back built-in objects someone deleted (as
/// kube-apiserver's bootstrap controller does), and repairing service allocations.
pub fn spawn_background_loops(api: Arc<ApiServer>, advertise: IpAddr, port: u16) {
    let resume = api.clone();
    tokio::spawn(async move {
        if let Err(e) = resume_interrupted_work(&resume).await {
            tracing::warn!(error = %e, "resuming interrupted deletions");
        }
    });
    let builtins = api.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(BUILTIN_RECONCILE_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = bootstrap(&builtins, advertise, port).await {
                tracing::warn!(error = %e, "restoring built-in objects");
            }
        }
    });
    tokio::spawn(async move {
        let services = match core("services") {
            Ok(r) => r,
            Err(_) => return,
        };
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let result = match api.list_all(services, None).await {
                Ok(all) => api.allocator.repair(&all).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "repairing service allocations");
            }
            let nodes = match core("nodes") {
                Ok(r) => api.list_all(r, None).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let result = match nodes {
                Ok(all) => api.pod_cidrs.repair(&all).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "repairing pod CIDR allocations");
            }
        }
    });
}

async fn resume_interrupted_work(api: &Arc<ApiServer>) -> ApiResult<()> {
    for r in RESOURCES {
        for obj in api.list_all(r, None).await? {
            if !object::is_terminating(&obj) {
                continue;
            }
            let name = object::name(&obj).to_string();
            if r.kind == "Namespace" {
                spawn_namespace_deletion(api.clone(), name);
            } else if object::finalizers(&obj)
                .iter()
                .any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER)
            {
                spawn_finalizer_work(
                    api.clone(),
                    r,
                    object::namespace(&obj).map(String::from),
                    name,
                );
            }
        }
    }
    Ok(())
}
