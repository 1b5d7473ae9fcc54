//! Per-kind rules of the API server (kube-apiserver's "strategies"): decoding into the typed
//! object, defaulting, validation, what a create or update may change, and the admission
//! steps (namespace lifecycle, LimitRange, ResourceQuota, Service IP and port allocation).

pub mod admission;
pub mod allocator;
pub mod lifecycle;

use k8s_openapi::api::{
    apps, autoscaling, batch, coordination, core, discovery, networking, storage,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::validation::{self, FieldError, NameRule};
use skiff_api::{defaults, validation::FieldErrorKind};

use crate::object;
use crate::server::status::{ApiError, ApiResult};

/// Decodes `obj` as the typed object of `resource`, naming the field on failure.
fn decode<T: DeserializeOwned>(resource: &ResourceInfo, obj: Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(obj).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {at}{inner}",
            resource.kind, resource.version, resource.kind
        ))
    })
}

fn encode<T: Serialize>(typed: &T) -> ApiResult<Value> {
    serde_json::to_value(typed).map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

/// The name rule Kubernetes applies to objects of `kind`.
pub fn name_rule(kind: &str) -> NameRule {
    match kind {
        "Namespace" => NameRule::Dns1123Label,
        "Service" => NameRule::Dns1035Label,
        "Event" => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Decodes, defaults and validates an object, returning its canonical JSON (unknown fields
/// dropped, defaults filled). Validation failures answer 422 naming each field.
pub fn normalize(resource: &ResourceInfo, obj: Value) -> ApiResult<Value> {
    macro_rules! typed {
        ($ty:ty, $default:expr, $validate:expr) => {{
            let mut typed: $ty = decode(resource, obj)?;
            #[allow(clippy::redundant_closure_call)]
            ($default)(&mut typed);
            #[allow(clippy::redundant_closure_call)]
            let errors: Vec<FieldError> = ($validate)(&typed);
            let value = encode(&typed)?;
            (value, errors)
        }};
    }
    fn none<T>(_: &mut T) {}
    fn valid<T>(_: &T) -> Vec<FieldError> {
        Vec::new()
    }

    let (value, mut errors) = match resource.kind {
        "Namespace" => typed!(
            core::v1::Namespace,
            defaults::namespace,
            validation::validate_namespace
        ),
        "Pod" => typed!(core::v1::Pod, defaults::pod, validation::validate_pod),
        "Service" => typed!(
            core::v1::Service,
            defaults::service,
            validation::validate_service
        ),
        "Endpoints" => typed!(core::v1::Endpoints, none, valid),
        "Node" => typed!(core::v1::Node, defaults::node, validation::validate_node),
        "ConfigMap" => typed!(core::v1::ConfigMap, none, validation::validate_config_map),
        "Secret" => typed!(
            core::v1::Secret,
            defaults::secret,
            validation::validate_secret
        ),
        "Event" => typed!(core::v1::Event, none, valid),
        "ServiceAccount" => typed!(core::v1::ServiceAccount, none, valid),
        "PersistentVolume" => typed!(
            core::v1::PersistentVolume,
            defaults::persistent_volume,
            valid
        ),
        "PersistentVolumeClaim" => typed!(
            core::v1::PersistentVolumeClaim,
            defaults::persistent_volume_claim,
            valid
        ),
        "LimitRange" => typed!(core::v1::LimitRange, none, valid),
        "ResourceQuota" => typed!(core::v1::ResourceQuota, none, valid),
        "ReplicationController" => typed!(
            core::v1::ReplicationController,
            defaults::replication_controller,
            validation::validate_replication_controller
        ),
        "Deployment" => typed!(
            apps::v1::Deployment,
            defaults::deployment,
            validation::validate_deployment
        ),
        "ReplicaSet" => typed!(
            apps::v1::ReplicaSet,
            defaults::replica_set,
            validation::validate_replica_set
        ),
        "DaemonSet" => typed!(
            apps::v1::DaemonSet,
            defaults::daemon_set,
            validation::validate_daemon_set
        ),
        "StatefulSet" => typed!(
            apps::v1::StatefulSet,
            defaults::stateful_set,
            validation::validate_stateful_set
        ),
        "ControllerRevision" => typed!(apps::v1::ControllerRevision, none, valid),
        "Job" => typed!(batch::v1::Job, defaults::job, validation::validate_job),
        "CronJob" => typed!(
            batch::v1::CronJob,
            defaults::cron_job,
            validation::validate_cron_job
        ),
        "Lease" => typed!(coordination::v1::Lease, none, valid),
        "HorizontalPodAutoscaler" => typed!(
            autoscaling::v2::HorizontalPodAutoscaler,
            defaults::horizontal_pod_autoscaler,
            valid
        ),
        "NetworkPolicy" => typed!(networking::v1::NetworkPolicy, none, valid),
        "EndpointSlice" => typed!(discovery::v1::EndpointSlice, none, valid),
        "StorageClass" => typed!(storage::v1::StorageClass, defaults::storage_class, valid),
        other => return Err(ApiError::internal(format!("no rules for kind {other}"))),
    };

    // Metadata rules common to every kind (the kind-specific validators check the rest).
    if let Some(meta) = value.get("metadata") {
        let meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            decode(resource, meta.clone())?;
        let mut meta_errors =
            validation::validate_object_meta(&meta, resource.namespaced, name_rule(resource.kind));
        meta_errors.retain(|e| !errors.contains(e));
        errors.splice(0..0, meta_errors);
    }
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(ApiError::invalid(resource, object::name(&value), &errors))
    }
}

/// Whether changes to an object's spec bump `metadata.generation` (kinds with a status
/// subresource: the spec/status split is what generation tracks).
pub fn tracks_generation(resource: &ResourceInfo) -> bool {
    resource.has_status() && resource.kind != "Namespace"
}

/// Kinds whose status the create call may not set (controllers and node daemons own it).
fn status_reset_on_create(kind: &str) -> Option<Value> {
    match kind {
        "Pod" => Some(json!({})),
        "Service" => Some(json!({"loadBalancer": {}})),
        "Deployment"
        | "ReplicaSet"
        | "ReplicationController"
        | "DaemonSet"
        | "StatefulSet"
        | "Job"
        | "CronJob"
        | "HorizontalPodAutoscaler" => Some(json!({})),
        _ => None,
    }
}

/// Prepares a new object before defaulting: system metadata set, status reset where the
/// client may not set it.
pub fn prepare_for_create(resource: &ResourceInfo, obj: &mut Value) {
    let meta = object::metadata_mut(obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now()));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("resourceVersion");
    meta.remove("managedFields");
    meta.remove("selfLink");
    if tracks_generation(resource) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if let Some(status) = status_reset_on_create(resource.kind) {
        obj["status"] = status;
    }
    if resource.kind == "Namespace" {
        obj["status"] = json!({"phase": "Active"});
    }
}

/// Carries over what an update of the main resource may not change: identity, creation,
/// deletion state, and the status (owned by the status subresource).
pub fn prepare_for_update(resource: &ResourceInfo, new: &mut Value, old: &Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        let v = object::metadata(old)
            .and_then(|m| m.get(field))
            .cloned()
            .unwrap_or(Value::Null);
        object::set_meta(new, field, v);
    }
    object::metadata_mut(new).remove("managedFields");
    if resource.kind == "Service" {
        drop_type_dependent_service_fields(new, old);
    }
    if resource.has_status() {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
}

/// When a Service changes to a type that has no use for them, fields only the old type used
/// go away unless the client set them anew (Kubernetes' dropTypeDependentFields): a patch
/// from NodePort to ClusterIP must not fail on the leftover `externalTrafficPolicy`.
fn drop_type_dependent_service_fields(new: &mut Value, old: &Value) {
    let ty = |v: &Value| {
        v.pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string()
    };
    let external = |t: &str| t == "NodePort" || t == "LoadBalancer";
    if !external(&ty(old)) || external(&ty(new)) {
        return;
    }
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in [
        "externalTrafficPolicy",
        "healthCheckNodePort",
        "allocateLoadBalancerNodePorts",
    ] {
        if spec.get(field) == old.pointer(&format!("/spec/{field}")) {
            spec.remove(field);
        }
    }
}

/// A status update changes only the status: everything else comes from the stored object.
pub fn prepare_for_status_update(new: &mut Value, old: &Value) {
    let status = new.get("status").cloned();
    let mut merged = old.clone();
    match status {
        Some(s) => merged["status"] = s,
        None => {
            if let Some(o) = merged.as_object_mut() {
                o.remove("status");
            }
        }
    }
    // Keep the caller's resourceVersion so the precondition is checked against it.
    if let Some(rv) = object::resource_version(new).map(String::from) {
        object::set_meta(&mut merged, "resourceVersion", json!(rv));
    }
    *new = merged;
}

/// Bumps generation when anything but metadata and status changed.
pub fn bump_generation(resource: &ResourceInfo, new: &mut Value, old: &Value) {
    if !tracks_generation(resource) {
        return;
    }
    let strip = |v: &Value| {
        let mut c = v.clone();
        if let Some(o) = c.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        c
    };
    let old_generation = object::metadata(old)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let changed =
        strip(new) != strip(old) || (object::is_terminating(new) && !object::is_terminating(old));
    let generation = if changed {
        old_generation + 1
    } else {
        old_generation
    };
    object::set_meta(new, "generation", json!(generation));
}

/// Update rules beyond validation: fields Kubernetes makes immutable.
pub fn validate_update(resource: &ResourceInfo, new: &Value, old: &Value) -> ApiResult<()> {
    let mut errors = Vec::new();
    let forbid = |errors: &mut Vec<FieldError>, field: &str, detail: &str| {
        errors.push(FieldError {
            field: field.to_string(),
            kind: FieldErrorKind::Invalid,
            value: None,
            detail: detail.to_string(),
        })
    };
    match resource.kind {
        "Pod" => {
            // Only images, activeDeadlineSeconds and added tolerations may change in a pod spec.
            let neutral = |v: &Value| {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                for list in ["containers", "initContainers", "ephemeralContainers"] {
                    if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                        for c in cs {
                            c["image"] = Value::Null;
                        }
                    }
                }
                if let Some(s) = spec.as_object_mut() {
                    s.remove("activeDeadlineSeconds");
                    s.remove("tolerations");
                    // The scheduler's binding sets nodeName once.
                    s.remove("nodeName");
                }
                spec
            };
            if neutral(new) != neutral(old) {
                errors.push(FieldError {
                    field: "spec".into(),
                    kind: FieldErrorKind::Forbidden,
                    value: None,
                    detail: "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations)".into(),
                });
            }
            let node = |v: &Value| {
                v.pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            if !node(old).is_empty() && node(new) != node(old) {
                forbid(
                    &mut errors,
                    "spec.nodeName",
                    "field is immutable once the pod is bound",
                );
            }
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet"
            if new.pointer("/spec/selector") != old.pointer("/spec/selector") =>
        {
            forbid(&mut errors, "spec.selector", "field is immutable");
        }
        "Job"
            if new.pointer("/spec/selector") != old.pointer("/spec/selector")
                || new.pointer("/spec/template") != old.pointer("/spec/template") =>
        {
            forbid(&mut errors, "spec.template", "field is immutable");
        }
        "Service" => {
            let ip = |v: &Value| {
                v.pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            if !ip(old).is_empty() && ip(new) != ip(old) {
                forbid(&mut errors, "spec.clusterIPs[0]", "may not change once set");
            }
        }
        "ConfigMap" | "Secret"
            if old.get("immutable") == Some(&json!(true))
                && (new.get("data") != old.get("data")
                    || new.get("binaryData") != old.get("binaryData")) =>
        {
            errors.push(FieldError {
                field: "data".into(),
                kind: FieldErrorKind::Forbidden,
                value: None,
                detail: "field is immutable when `immutable` is set".into(),
            });
        }
        _ => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(resource, object::name(new), &errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::by_kind;

    #[test]
    fn defaults_and_canonical_form() {
        let pods = by_kind("v1", "Pod").unwrap();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx", "bogus": 1}]}
        });
        let out = normalize(pods, pod).unwrap();
        assert_eq!(out["spec"]["restartPolicy"], "Always");
        assert_eq!(out["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert!(out["spec"]["containers"][0].get("bogus").is_none());
    }

    #[test]
    fn bad_types_name_the_field() {
        let deploy = by_kind("apps/v1", "Deployment").unwrap();
        let obj =
            json!({"metadata": {"name": "d", "namespace": "x"}, "spec": {"replicas": "three"}});
        let err = normalize(deploy, obj).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("spec.replicas"), "{}", err.message);
    }

    #[test]
    fn invalid_objects_are_422_with_fields() {
        let pods = by_kind("v1", "Pod").unwrap();
        let pod = json!({"metadata": {"name": "Bad_Name", "namespace": "default"},
                         "spec": {"containers": [{"name": "c"}]}});
        let err = normalize(pods, pod).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err.message.contains("metadata.name"), "{}", err.message);
        assert!(
            err.message.contains("spec.containers[0].image"),
            "{}",
            err.message
        );
    }

    #[test]
    fn generation_follows_spec() {
        let deploy = by_kind("apps/v1", "Deployment").unwrap();
        let old = json!({"metadata": {"generation": 3}, "spec": {"replicas": 1}});
        let mut same = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"replicas": 1}});
        bump_generation(deploy, &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 3);
        let mut changed = json!({"metadata": {}, "spec": {"replicas": 2}});
        bump_generation(deploy, &mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 4);
    }

    #[test]
    fn pod_spec_is_mostly_immutable() {
        let pods = by_kind("v1", "Pod").unwrap();
        let old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}], "restartPolicy": "Always"}});
        let image = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "b"}], "restartPolicy": "Always"}});
        assert!(validate_update(pods, &image, &old).is_ok());
        let policy = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}], "restartPolicy": "Never"}});
        assert_eq!(validate_update(pods, &policy, &old).unwrap_err().code, 422);
    }
}
