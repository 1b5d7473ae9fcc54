//! Admission: what the API server checks or fills in beyond an object's own validity —
//! namespace lifecycle, LimitRange defaults and bounds, ResourceQuota, Job selectors, and
//! Service ClusterIP/NodePort allocation.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{json, Value};
use skiff_api::quantity::Quantity;
use skiff_api::resources::{self, ResourceInfo};

use super::allocator::AllocError;
use crate::object;
use crate::server::status::{ApiError, ApiResult};
use crate::server::ApiServer;

fn resource(plural: &str) -> ApiResult<&'static ResourceInfo> {
    resources::by_plural("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} resource missing")))
}

/// New objects may only go into namespaces that exist and are not being deleted.
pub async fn check_namespace_accepts(
    api: &ApiServer,
    ns: &str,
    r: &ResourceInfo,
    name: &str,
) -> ApiResult<()> {
    let namespaces = resource("namespaces")?;
    match api.store.get(&object::key(namespaces, None, ns)).await? {
        None => Err(ApiError::not_found(namespaces, ns)),
        Some(kv) => {
            let obj = object::decode(&kv)?;
            if object::is_terminating(&obj) {
                Err(ApiError::forbidden(
                    r,
                    name,
                    format!("unable to create new content in namespace {ns} because it is being terminated"),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Changes made to a new object before it is defaulted and validated.
pub async fn before_create(
    api: &ApiServer,
    r: &ResourceInfo,
    ns: Option<&str>,
    obj: &mut Value,
    uid: &str,
) -> ApiResult<()> {
    match (r.kind, ns) {
        ("Pod", Some(ns)) => {
            apply_limit_ranges(api, ns, obj).await?;
            add_default_toleration_seconds(obj);
            Ok(())
        }
        ("PersistentVolumeClaim", Some(_)) => assign_default_storage_class(api, obj).await,
        ("Node", None) => assign_pod_cidr(api, r, obj).await,
        ("Job", _) => {
            let mut job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(obj.clone())
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "Job in version \"v1\" cannot be handled as a Job: {e}"
                    ))
                })?;
            // Defaults first, as Kubernetes: labels on the Job come from its template then.
            skiff_api::defaults::job(&mut job);
            skiff_api::defaults::job_selector_and_labels(&mut job, uid);
            *obj = serde_json::to_value(&job)
                .map_err(|e| ApiError::internal(format!("encoding job: {e}")))?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// How long pods stay on a node that is not ready or unreachable before the node lifecycle
/// controller evicts them, unless they say otherwise (Kubernetes' DefaultTolerationSeconds).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Adds `not-ready` and `unreachable` NoExecute tolerations for 300 s to a pod that has
/// none for them, so `kubectl get pod -o yaml` shows how long it would survive its node.
fn add_default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        skiff_api::constants::TAINT_NODE_NOT_READY,
        skiff_api::constants::TAINT_NODE_UNREACHABLE,
    ] {
        let covered = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let exists = t.get("operator").and_then(Value::as_str) == Some("Exists");
            (effect.is_empty() || effect == "NoExecute")
                && (t_key == key || (t_key.is_empty() && exists))
        });
        if !covered {
            list.push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

/// A claim that does not name a class gets the default StorageClass (Kubernetes'
/// DefaultStorageClass admission); an explicit `""` means "no class" and stays.
async fn assign_default_storage_class(api: &ApiServer, claim: &mut Value) -> ApiResult<()> {
    if claim
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
    {
        return Ok(());
    }
    let storage_classes = resources::by_plural("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("storageclasses resource missing"))?;
    let classes = api.list_all(storage_classes, None).await?;
    let default = classes
        .iter()
        .filter(|c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(skiff_api::constants::DEFAULT_STORAGE_CLASS_ANNOTATION))
                .and_then(Value::as_str)
                == Some("true")
        })
        // The newest default wins, as in Kubernetes when several are marked.
        .max_by_key(|c| {
            object::meta_str(c, "creationTimestamp")
                .unwrap_or("")
                .to_string()
        });
    if let (Some(class), Some(spec)) = (
        default,
        claim.get_mut("spec").and_then(Value::as_object_mut),
    ) {
        spec.insert("storageClassName".into(), json!(object::name(class)));
    }
    Ok(())
}

/// Gives a new Node its pod CIDR (or claims the one it asks for), so the node daemon can
/// number its pods from the moment it registers.
async fn assign_pod_cidr(api: &ApiServer, r: &ResourceInfo, node: &mut Value) -> ApiResult<()> {
    let name = object::name(node).to_string();
    let requested = node
        .pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let cidr = api
        .pod_cidrs
        .allocate(&name, requested.as_deref())
        .await
        .map_err(|e| {
            let value = requested.clone().unwrap_or_default();
            alloc_error(r, node, "spec.podCIDR", value, e)
        })?;
    if !node.get("spec").is_some_and(Value::is_object) {
        node["spec"] = json!({});
    }
    node["spec"]["podCIDR"] = json!(cidr);
    node["spec"]["podCIDRs"] = json!([cidr]);
    Ok(())
}

fn quantity_map(v: Option<&Value>) -> BTreeMap<String, Quantity> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    v.as_str()
                        .and_then(|s| Quantity::parse(s).ok())
                        .map(|q| (k.clone(), q))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// LimitRanger: fills container requests/limits from the namespace's LimitRange defaults and
/// rejects containers or pods outside its min/max.
async fn apply_limit_ranges(api: &ApiServer, ns: &str, pod: &mut Value) -> ApiResult<()> {
    let limit_ranges = api.list_all(resource("limitranges")?, Some(ns)).await?;
    if limit_ranges.is_empty() {
        return Ok(());
    }
    let pods = resource("pods")?;
    let name = object::name(pod).to_string();
    let mut problems = Vec::new();
    for lr in &limit_ranges {
        for item in lr
            .pointer("/spec/limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
            let min = quantity_map(item.get("min"));
            let max = quantity_map(item.get("max"));
            match kind {
                "Container" => {
                    let defaults = item.get("default").cloned().unwrap_or(json!({}));
                    let default_requests = item
                        .get("defaultRequest")
                        .cloned()
                        .unwrap_or_else(|| defaults.clone());
                    for list in ["initContainers", "containers"] {
                        let Some(containers) = pod
                            .pointer_mut(&format!("/spec/{list}"))
                            .and_then(Value::as_array_mut)
                        else {
                            continue;
                        };
                        for c in containers {
                            let resources = c
                                .as_object_mut()
                                .map(|o| o.entry("resources").or_insert_with(|| json!({})));
                            let Some(resources) = resources else { continue };
                            fill_missing(resources, "limits", &defaults);
                            fill_missing(resources, "requests", &default_requests);
                            let requests = quantity_map(resources.get("requests"));
                            let limits = quantity_map(resources.get("limits"));
                            for (res, lo) in &min {
                                match requests.get(res) {
                                    Some(q) if q < lo => problems.push(format!("minimum {res} usage per Container is {lo}, but request is {q}")),
                                    None => problems.push(format!("minimum {res} usage per Container is {lo}.  No request is specified")),
                                    _ => {}
                                }
                            }
                            for (res, hi) in &max {
                                match limits.get(res) {
                                    Some(q) if q > hi => problems.push(format!("maximum {res} usage per Container is {hi}, but limit is {q}")),
                                    None => problems.push(format!("maximum {res} usage per Container is {hi}.  No limit is specified")),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
                "Pod" => {
                    let (requests, limits) = pod_totals(pod);
                    for (res, lo) in &min {
                        if let Some(q) = requests.get(res).filter(|q| *q < lo) {
                            problems.push(format!(
                                "minimum {res} usage per Pod is {lo}, but request is {q}"
                            ));
                        }
                    }
                    for (res, hi) in &max {
                        if let Some(q) = limits.get(res).filter(|q| *q > hi) {
                            problems.push(format!(
                                "maximum {res} usage per Pod is {hi}, but limit is {q}"
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.dedup();
        Err(ApiError::forbidden(pods, &name, problems.join(", ")))
    }
}

fn fill_missing(resources: &mut Value, field: &str, defaults: &Value) {
    let Some(defaults) = defaults.as_object().filter(|d| !d.is_empty()) else {
        return;
    };
    if !resources.is_object() {
        *resources = json!({});
    }
    let target = resources
        .as_object_mut()
        .map(|o| o.entry(field).or_insert_with(|| json!({})));
    if let Some(target) = target.and_then(Value::as_object_mut) {
        for (k, v) in defaults {
            target.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// A pod's effective requests and limits: the sum over containers, or the largest init
/// container's when that is more (init containers run one at a time).
pub fn pod_totals(pod: &Value) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut out = (BTreeMap::new(), BTreeMap::new());
    for (which, field) in [(0, "requests"), (1, "limits")] {
        let mut sum: BTreeMap<String, Quantity> = BTreeMap::new();
        for c in pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (k, q) in quantity_map(c.pointer(&format!("/resources/{field}"))) {
                let entry = sum.entry(k).or_insert_with(Quantity::zero);
                *entry = entry.checked_add(q).unwrap_or(*entry);
            }
        }
        for c in pod
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (k, q) in quantity_map(c.pointer(&format!("/resources/{field}"))) {
                let entry = sum.entry(k).or_insert_with(Quantity::zero);
                if q > *entry {
                    *entry = q;
                }
            }
        }
        if which == 0 {
            out.0 = sum;
        } else {
            out.1 = sum;
        }
    }
    out
}

fn is_terminal_pod(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded") | Some("Failed")
    )
}

/// Kinds with usage of their own in a quota (`pods`, `services`, `requests.cpu`…); any other
/// kind counts only through `count/<resource>` entries.
pub fn counted_by_quota(kind: &str) -> bool {
    matches!(
        kind,
        "Pod"
            | "Service"
            | "ConfigMap"
            | "Secret"
            | "PersistentVolumeClaim"
            | "ReplicationController"
            | "ResourceQuota"
    )
}

/// What one object counts against quota names (`pods`, `requests.cpu`, `count/deployments.apps`…).
pub fn quota_usage(r: &ResourceInfo, obj: &Value) -> BTreeMap<String, Quantity> {
    let mut usage = BTreeMap::new();
    let one = Quantity::from_units(1);
    usage.insert(format!("count/{}", r.group_resource()), one);
    match r.kind {
        "Pod" if !is_terminal_pod(obj) => {
            usage.insert("pods".into(), one);
            let (requests, limits) = pod_totals(obj);
            for (res, q) in requests {
                usage.insert(format!("requests.{res}"), q);
                if res == "cpu" || res == "memory" || res == "ephemeral-storage" {
                    usage.insert(res.clone(), q);
                }
            }
            for (res, q) in limits {
                usage.insert(format!("limits.{res}"), q);
            }
        }
        "Service" => {
            usage.insert("services".into(), one);
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0) as i64;
            match ty {
                "NodePort" => {
                    usage.insert("services.nodeports".into(), Quantity::from_units(ports));
                }
                "LoadBalancer" => {
                    usage.insert("services.loadbalancers".into(), one);
                    usage.insert("services.nodeports".into(), Quantity::from_units(ports));
                }
                _ => {}
            }
        }
        "ConfigMap" => {
            usage.insert("configmaps".into(), one);
        }
        "Secret" => {
            usage.insert("secrets".into(), one);
        }
        "PersistentVolumeClaim" => {
            usage.insert("persistentvolumeclaims".into(), one);
            if let Some(q) = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(|s| Quantity::parse(s).ok())
            {
                usage.insert("requests.storage".into(), q);
            }
        }
        "ReplicationController" => {
            usage.insert("replicationcontrollers".into(), one);
        }
        "ResourceQuota" => {
            usage.insert("resourcequotas".into(), one);
        }
        _ => {}
    }
    usage
}

/// Sum of the usage of every object of `r` in `ns`.
async fn namespace_usage(
    api: &ApiServer,
    r: &ResourceInfo,
    ns: &str,
) -> ApiResult<BTreeMap<String, Quantity>> {
    let mut total: BTreeMap<String, Quantity> = BTreeMap::new();
    for obj in api.list_all(r, Some(ns)).await? {
        for (k, q) in quota_usage(r, &obj) {
            let entry = total.entry(k).or_insert_with(Quantity::zero);
            *entry = entry.checked_add(q).unwrap_or(*entry);
        }
    }
    Ok(total)
}

/// ResourceQuota admission. Namespaces without quotas cost one list and take no lock (so
/// creates there batch freely in the store); with quotas, admission in the namespace is
/// serialized and the returned guard must be held until the write lands.
pub async fn admit_quota(
    api: &ApiServer,
    r: &ResourceInfo,
    ns: &str,
    obj: &Value,
    old: Option<&Value>,
) -> ApiResult<Option<tokio::sync::OwnedMutexGuard<()>>> {
    if api
        .list_all(resource("resourcequotas")?, Some(ns))
        .await?
        .is_empty()
    {
        return Ok(None);
    }
    let guard = api.quota_lock(ns).lock_owned().await;
    check_quota(api, r, ns, obj, old).await?;
    Ok(Some(guard))
}

/// Rejects a create (or an update that grows usage) that would take any constrained
/// quantity over its hard limit.
async fn check_quota(
    api: &ApiServer,
    r: &ResourceInfo,
    ns: &str,
    obj: &Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    if r.kind == "ResourceQuota" && old.is_some() {
        return Ok(());
    }
    let quotas = api.list_all(resource("resourcequotas")?, Some(ns)).await?;
    if quotas.is_empty() {
        return Ok(());
    }
    let mut delta = quota_usage(r, obj);
    if let Some(old) = old {
        // Only growth counts on update (e.g. a pod becoming non-terminal does not happen).
        let before = quota_usage(r, old);
        delta.retain(|k, q| before.get(k).is_none_or(|b| *q > *b));
        for (k, q) in delta.iter_mut() {
            if let Some(b) = before.get(k) {
                *q = q.checked_sub(*b).unwrap_or(*q);
            }
        }
    }
    if delta.is_empty() {
        return Ok(());
    }
    let mut usage: Option<BTreeMap<String, Quantity>> = None;
    for quota in &quotas {
        let hard = quantity_map(quota.pointer("/spec/hard"));
        let quota_name = object::name(quota);
        // A quota on compute resources requires pods to state them.
        if r.kind == "Pod" && old.is_none() {
            let missing: Vec<&String> = hard
                .keys()
                .filter(|k| {
                    k.starts_with("requests.")
                        || k.starts_with("limits.")
                        || *k == "cpu"
                        || *k == "memory"
                })
                .filter(|k| !delta.contains_key(*k))
                .collect();
            if !missing.is_empty() {
                let list = missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                return Err(ApiError::forbidden(
                    r,
                    object::name(obj),
                    format!("failed quota: {quota_name}: must specify {list}"),
                ));
            }
        }
        let constrained: Vec<&String> = delta.keys().filter(|k| hard.contains_key(*k)).collect();
        if constrained.is_empty() {
            continue;
        }
        if usage.is_none() {
            usage = Some(namespace_usage(api, r, ns).await?);
        }
        let used_map = usage.as_ref().cloned().unwrap_or_default();
        let mut requested = Vec::new();
        let mut used = Vec::new();
        let mut limited = Vec::new();
        for key in constrained {
            let want = delta[key];
            let have = used_map.get(key).copied().unwrap_or_else(Quantity::zero);
            let limit = hard[key];
            if have.checked_add(want).is_none_or(|total| total > limit) {
                requested.push(format!("{key}={want}"));
                used.push(format!("{key}={have}"));
                limited.push(format!("{key}={limit}"));
            }
        }
        if !requested.is_empty() {
            return Err(ApiError::forbidden(
                r,
                object::name(obj),
                format!(
                    "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                    requested.join(","),
                    used.join(","),
                    limited.join(",")
                ),
            ));
        }
    }
    Ok(())
}

/// Recomputes `status.hard`/`status.used` of every quota in `ns` (after a change there).
pub async fn refresh_quota_status(api: &Arc<ApiServer>, ns: &str) -> ApiResult<()> {
    let rq = resource("resourcequotas")?;
    if api.list_all(rq, Some(ns)).await?.is_empty() {
        return Ok(());
    }
    // Serialized with admission in the namespace, so a slower refresh that counted before a
    // write cannot overwrite the status of one that counted after it.
    let lock = api.quota_lock(ns);
    let _guard = lock.lock().await;
    let quotas = api.list_all(rq, Some(ns)).await?;
    let mut totals: BTreeMap<String, Quantity> = BTreeMap::new();
    for r in resources::RESOURCES.iter().filter(|r| r.namespaced) {
        if !counted_by_quota(r.kind)
            && !quotas.iter().any(|q| {
                q.pointer(&format!("/spec/hard/count~1{}", r.group_resource()))
                    .is_some()
            })
        {
            continue;
        }
        for (k, q) in namespace_usage(api, r, ns).await? {
            let e = totals.entry(k).or_insert_with(Quantity::zero);
            *e = e.checked_add(q).unwrap_or(*e);
        }
    }
    for quota in quotas {
        let hard = quota.pointer("/spec/hard").cloned().unwrap_or(json!({}));
        let used: serde_json::Map<String, Value> = hard
            .as_object()
            .map(|h| {
                h.keys()
                    .map(|k| {
                        (
                            k.clone(),
                            json!(totals
                                .get(k)
                                .copied()
                                .unwrap_or_else(Quantity::zero)
                                .to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = json!({"hard": hard, "used": used});
        if quota.get("status") == Some(&status) {
            continue;
        }
        let name = object::name(&quota).to_string();
        let result = api
            .guaranteed_update(
                rq,
                Some(ns),
                &name,
                None,
                crate::server::ops::Part::Status,
                false,
                |old| {
                    let mut new = old.clone();
                    new["status"] = status.clone();
                    Ok(new)
                },
            )
            .await;
        if let Err(e) = result {
            if e.code != 404 {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Allocations made for a Service write: kept when the write lands, given back otherwise;
/// what the old object held and the new one dropped is released only after the write.
#[derive(Debug, Default)]
pub struct Allocation {
    new_ips: Vec<Ipv4Addr>,
    new_ports: Vec<u16>,
    dropped_ips: Vec<Ipv4Addr>,
    dropped_ports: Vec<u16>,
}

impl Allocation {
    pub async fn commit(self, api: &ApiServer) {
        for ip in self.dropped_ips {
            if let Err(e) = api.allocator.release_ip(ip).await {
                tracing::warn!(%ip, error = %e, "releasing service IP");
            }
        }
        for port in self.dropped_ports {
            if let Err(e) = api.allocator.release_port(port).await {
                tracing::warn!(port, error = %e, "releasing node port");
            }
        }
    }

    pub async fn rollback(self, api: &ApiServer) {
        Allocation {
            dropped_ips: self.new_ips,
            dropped_ports: self.new_ports,
            ..Default::default()
        }
        .commit(api)
        .await
    }
}

/// What a Service holds: its ClusterIP and node ports.
pub fn service_holdings(svc: &Value) -> (Option<Ipv4Addr>, Vec<u16>) {
    let ip = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    (ip, ports)
}

fn alloc_error(
    r: &ResourceInfo,
    svc: &Value,
    field: &str,
    value: String,
    e: AllocError,
) -> ApiError {
    match e {
        AllocError::Store(s) => s.into(),
        other => ApiError::invalid(
            r,
            object::name(svc),
            &[skiff_api::validation::FieldError {
                field: field.into(),
                kind: skiff_api::validation::FieldErrorKind::Invalid,
                value: Some(value),
                detail: other.to_string(),
            }],
        ),
    }
}

/// Allocates the ClusterIP and node ports a Service needs (create: `old` is `None`), keeping
/// what the old object held where the new one still asks for it.
pub async fn allocate_service(
    api: &ApiServer,
    r: &ResourceInfo,
    svc: &mut Value,
    old: Option<&Value>,
) -> ApiResult<Allocation> {
    let mut alloc = Allocation::default();
    if r.kind != "Service" {
        return Ok(alloc);
    }
    let result = allocate_service_inner(api, r, svc, old, &mut alloc).await;
    match result {
        Ok(()) => Ok(alloc),
        Err(e) => {
            alloc.rollback(api).await;
            Err(e)
        }
    }
}

async fn allocate_service_inner(
    api: &ApiServer,
    r: &ResourceInfo,
    svc: &mut Value,
    old: Option<&Value>,
    alloc: &mut Allocation,
) -> ApiResult<()> {
    let owner = format!(
        "{}/{}",
        object::namespace(svc).unwrap_or(""),
        object::name(svc)
    );
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let (old_ip, old_ports) = old.map(service_holdings).unwrap_or((None, Vec::new()));

    // ClusterIP.
    let requested = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if ty == "ExternalName" {
        if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        alloc.dropped_ips.extend(old_ip);
    } else if requested == "None" {
        svc["spec"]["clusterIPs"] = json!(["None"]);
    } else {
        let ip = match (requested.as_str(), old_ip) {
            ("", Some(ip)) => ip,
            (s, Some(ip)) if s == ip.to_string() => ip,
            ("", None) => {
                let ip = api
                    .allocator
                    .allocate_ip(None, &owner)
                    .await
                    .map_err(|e| alloc_error(r, svc, "spec.clusterIPs", String::new(), e))?;
                alloc.new_ips.push(ip);
                ip
            }
            (s, _) => {
                let want: Ipv4Addr = s.parse().map_err(|_| {
                    alloc_error(
                        r,
                        svc,
                        "spec.clusterIPs",
                        s.to_string(),
                        AllocError::BadCidr {
                            cidr: s.to_string(),
                            why: "must be a valid IPv4 address",
                        },
                    )
                })?;
                let ip = api
                    .allocator
                    .allocate_ip(Some(want), &owner)
                    .await
                    .map_err(|e| alloc_error(r, svc, "spec.clusterIPs", format!("[\"{s}\"]"), e))?;
                alloc.new_ips.push(ip);
                ip
            }
        };
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
    }

    // Node ports.
    let wants_node_ports = ty == "NodePort" || ty == "LoadBalancer";
    let mut kept: Vec<u16> = Vec::new();
    let old_port_of = |port: &Value| -> Option<u16> {
        let key = (port.get("port").cloned(), port.get("protocol").cloned());
        old?.pointer("/spec/ports")
            .and_then(Value::as_array)?
            .iter()
            .find(|p| (p.get("port").cloned(), p.get("protocol").cloned()) == key)
            .and_then(|p| p.get("nodePort").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok())
    };
    let port_count = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    for i in 0..port_count {
        let port = svc["spec"]["ports"][i].clone();
        if !wants_node_ports {
            if let Some(p) = svc["spec"]["ports"][i].as_object_mut() {
                p.remove("nodePort");
            }
            continue;
        }
        let requested = port
            .get("nodePort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        let node_port = match requested.or_else(|| old_port_of(&port)) {
            Some(p) if old_ports.contains(&p) && !kept.contains(&p) => p,
            Some(p) => {
                let got = api
                    .allocator
                    .allocate_port(Some(p), &owner)
                    .await
                    .map_err(|e| {
                        alloc_error(
                            r,
                            svc,
                            &format!("spec.ports[{i}].nodePort"),
                            p.to_string(),
                            e,
                        )
                    })?;
                alloc.new_ports.push(got);
                got
            }
            None => {
                let got = api
                    .allocator
                    .allocate_port(None, &owner)
                    .await
                    .map_err(|e| {
                        alloc_error(
                            r,
                            svc,
                            &format!("spec.ports[{i}].nodePort"),
                            String::new(),
                            e,
                        )
                    })?;
                alloc.new_ports.push(got);
                got
            }
        };
        kept.push(node_port);
        svc["spec"]["ports"][i]["nodePort"] = json!(node_port);
    }
    alloc
        .dropped_ports
        .extend(old_ports.into_iter().filter(|p| !kept.contains(p)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_default_toleration_seconds_unless_they_have_their_own() {
        let mut pod = json!({"spec": {"containers": []}});
        add_default_toleration_seconds(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[1]["tolerationSeconds"], 300);

        let mut own = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]}});
        add_default_toleration_seconds(&mut own);
        let t = own["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2, "only not-ready is added");
        assert_eq!(t[0]["tolerationSeconds"], 60);

        // Tolerating everything covers both.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_toleration_seconds(&mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }
}
