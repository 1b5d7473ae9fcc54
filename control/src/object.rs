//! API objects as the server handles them: JSON values with Kubernetes metadata, and how they
//! map to store keys. The resourceVersion is never stored: it is the key's mod revision, set
//! on every read (as kube-apiserver does with etcd).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use skiff_api::resources::ResourceInfo;

use crate::server::status::{ApiError, ApiResult};
use crate::store::KeyValue;

/// Store key prefix of every API object.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// `/registry/{group-resource}/{ns}/{name}` or `/registry/{group-resource}/{name}`.
pub fn key(resource: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|_| resource.namespaced) {
        Some(ns) => format!("{REGISTRY_PREFIX}{}/{ns}/{name}", resource.group_resource()),
        None => format!("{REGISTRY_PREFIX}{}/{name}", resource.group_resource()),
    }
}

/// The prefix of all objects of `resource`, in `namespace` when given.
pub fn prefix(resource: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| resource.namespaced) {
        Some(ns) => format!("{REGISTRY_PREFIX}{}/{ns}/", resource.group_resource()),
        None => format!("{REGISTRY_PREFIX}{}/", resource.group_resource()),
    }
}

/// Parses a stored value and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    decode_at(&kv.value, kv.mod_revision, &kv.key)
}

/// Parses stored bytes and stamps `revision` as the resourceVersion.
pub fn decode_at(bytes: &[u8], revision: i64, key: &str) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored object {key} is not valid JSON: {e}")))?;
    set_meta(&mut obj, "resourceVersion", json!(revision.to_string()));
    Ok(obj)
}

/// Serializes an object for the store, without its resourceVersion.
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    // Serializing a Value cannot fail: every map key is a string.
    serde_json::to_vec(&copy).unwrap_or_default()
}

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let root = obj.as_object_mut().expect("just made an object");
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("just made an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if value.is_null() {
        metadata_mut(obj).remove(field);
    } else {
        metadata_mut(obj).insert(field.to_string(), value);
    }
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|s| !s.is_empty())
}

pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or("")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|s| !s.is_empty())
}

/// The object's labels (non-string values are ignored).
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(metadata(obj).and_then(|m| m.get("labels")))
}

pub fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    if finalizers.is_empty() {
        metadata_mut(obj).remove("finalizers");
    } else {
        set_meta(obj, "finalizers", json!(finalizers));
    }
}

pub fn is_terminating(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// The uids of the object's owners.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 time with second precision, as Kubernetes writes `metav1.Time`.
pub fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn now() -> String {
    timestamp(jiff::Timestamp::now())
}

/// Random suffix for `generateName`, from Kubernetes' alphabet (no vowels, no look-alikes).
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::{by_kind, by_plural};

    #[test]
    fn keys_and_prefixes() {
        let pods = by_plural("", "v1", "pods").unwrap();
        let nodes = by_plural("", "v1", "nodes").unwrap();
        let deploy = by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(key(pods, Some("d"), "x"), "/registry/pods/d/x");
        assert_eq!(key(nodes, Some("ignored"), "n"), "/registry/nodes/n");
        assert_eq!(prefix(deploy, Some("d")), "/registry/deployments.apps/d/");
        assert_eq!(prefix(pods, None), "/registry/pods/");
    }

    #[test]
    fn resource_version_is_not_stored() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let bytes = encode(&obj);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let back = decode_at(&bytes, 9, "k").unwrap();
        assert_eq!(resource_version(&back), Some("9"));
    }

    #[test]
    fn suffix_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
