//! The three-way strategic merge patch `apply` sends.
//!
//! Three states meet: `original` (the manifest applied last time, kept in the
//! last-applied annotation), `modified` (the manifest now) and `current` (the live object,
//! with everything the server defaulted or controllers wrote). The patch sets what
//! `modified` says and `current` lacks or has otherwise, and removes what `original` had
//! but `modified` dropped; fields only the server set are left alone. Lists of objects that
//! Kubernetes merges by a key (containers by `name`, ports by `containerPort`, …) are diffed
//! item by item, so a defaulted field inside a container is not a change; removed items
//! become `{"$patch": "delete", key: value}`.

use serde_json::{Map, Value};

/// The key strategic merge patch merges a list field's items by, as Kubernetes' types
/// declare it (`patchMergeKey`); `None` for lists that are replaced whole.
pub fn merge_key(field: &str, items: &[&Value]) -> Option<&'static str> {
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        // Container ports merge by containerPort, Service ports by port.
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    };
    // Only merge when every item is an object carrying the key; anything else is replaced.
    items.iter().all(|i| i.get(key).is_some()).then_some(key)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Additions and changes only (current → modified: what the server added stays).
    IgnoreDeletions,
    /// Deletions only (original → modified: what the user dropped goes).
    DeletionsOnly,
}

/// The patch taking `current` to `modified`, deleting fields `original` had and `modified`
/// no longer has. An empty object means nothing to do.
pub fn three_way(original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    let empty = Map::new();
    let as_map = |v: &Value| v.as_object().cloned().unwrap_or_default();
    let modified = as_map(modified);
    let additions = diff_maps(
        current.as_object().unwrap_or(&empty),
        &modified,
        Mode::IgnoreDeletions,
    );
    let deletions = match original.and_then(Value::as_object) {
        Some(orig) => diff_maps(orig, &modified, Mode::DeletionsOnly),
        None => Map::new(),
    };
    let mut patch = merge_patch_maps(deletions, additions);
    add_element_order(&mut patch, &modified);
    Value::Object(patch)
}

/// Adds `$setElementOrder/<list>` beside every merged list in the patch, naming the items
/// in the manifest's order (as kubectl does), and puts the patch's own items in that order,
/// which the directive requires.
fn add_element_order(patch: &mut Map<String, Value>, modified: &Map<String, Value>) {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| !k.starts_with('$'))
        .cloned()
        .collect();
    for key in keys {
        let Some(want) = modified.get(&key) else {
            continue;
        };
        let Some(value) = patch.get_mut(&key) else {
            continue;
        };
        match (value, want) {
            (Value::Object(sub), Value::Object(want)) => add_element_order(sub, want),
            (Value::Array(items), Value::Array(want_items)) => {
                let all: Vec<&Value> = items.iter().chain(want_items.iter()).collect();
                let Some(merge) = merge_key(&key, &all) else {
                    continue;
                };
                let position = |item: &Value| {
                    want_items
                        .iter()
                        .position(|w| w.get(merge) == item.get(merge))
                        .unwrap_or(usize::MAX)
                };
                // Directives ($patch: delete) may sit anywhere; the rest follow the order.
                items.sort_by_key(|item| {
                    if item.get("$patch").is_some() {
                        usize::MAX
                    } else {
                        position(item)
                    }
                });
                for item in items.iter_mut() {
                    if item.get("$patch").is_some() {
                        continue;
                    }
                    let matching = want_items
                        .iter()
                        .find(|w| w.get(merge) == item.get(merge))
                        .and_then(Value::as_object);
                    if let (Some(sub), Some(want)) = (item.as_object_mut(), matching) {
                        add_element_order(sub, want);
                    }
                }
                let order: Vec<Value> = want_items
                    .iter()
                    .filter_map(|w| w.get(merge))
                    .map(|id| {
                        let mut m = Map::new();
                        m.insert(merge.to_string(), id.clone());
                        Value::Object(m)
                    })
                    .collect();
                patch.insert(format!("$setElementOrder/{key}"), Value::Array(order));
            }
            _ => {}
        }
    }
}

fn diff_maps(from: &Map<String, Value>, to: &Map<String, Value>, mode: Mode) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, want) in to {
        let have = from.get(key);
        if have == Some(want) {
            continue;
        }
        match (have, want) {
            (Some(Value::Object(h)), Value::Object(w)) => {
                let sub = diff_maps(h, w, mode);
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Some(Value::Array(h)), Value::Array(w)) => {
                let all: Vec<&Value> = h.iter().chain(w.iter()).collect();
                match merge_key(key, &all) {
                    Some(merge) => {
                        let sub = diff_keyed_lists(h, w, merge, mode);
                        if !sub.is_empty() {
                            patch.insert(key.clone(), Value::Array(sub));
                        }
                    }
                    None => {
                        if mode == Mode::IgnoreDeletions {
                            patch.insert(key.clone(), want.clone());
                        }
                    }
                }
            }
            _ => {
                if mode == Mode::IgnoreDeletions {
                    patch.insert(key.clone(), want.clone());
                }
            }
        }
    }
    if mode == Mode::DeletionsOnly {
        for key in from.keys() {
            if !to.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    patch
}

fn diff_keyed_lists(from: &[Value], to: &[Value], key: &str, mode: Mode) -> Vec<Value> {
    let find = |list: &[Value], id: &Value| list.iter().find(|i| i.get(key) == Some(id)).cloned();
    let mut out = Vec::new();
    match mode {
        Mode::IgnoreDeletions => {
            for want in to {
                let Some(id) = want.get(key) else { continue };
                match find(from, id) {
                    Some(have) => {
                        let (Some(h), Some(w)) = (have.as_object(), want.as_object()) else {
                            continue;
                        };
                        let mut sub = diff_maps(h, w, mode);
                        if !sub.is_empty() {
                            sub.insert(key.to_string(), id.clone());
                            out.push(Value::Object(sub));
                        }
                    }
                    None => out.push(want.clone()),
                }
            }
        }
        Mode::DeletionsOnly => {
            for had in from {
                let Some(id) = had.get(key) else { continue };
                match find(to, id) {
                    Some(want) => {
                        let (Some(h), Some(w)) = (had.as_object(), want.as_object()) else {
                            continue;
                        };
                        let mut sub = diff_maps(h, w, mode);
                        if !sub.is_empty() {
                            sub.insert(key.to_string(), id.clone());
                            out.push(Value::Object(sub));
                        }
                    }
                    None => {
                        let mut gone = Map::new();
                        gone.insert("$patch".into(), Value::String("delete".into()));
                        gone.insert(key.to_string(), id.clone());
                        out.push(Value::Object(gone));
                    }
                }
            }
        }
    }
    out
}

/// Combines two patches of the same object; `b` wins where both set a value.
fn merge_patch_maps(mut a: Map<String, Value>, b: Map<String, Value>) -> Map<String, Value> {
    for (key, bv) in b {
        let merged = match (a.remove(&key), bv) {
            (Some(Value::Object(am)), Value::Object(bm)) => Value::Object(merge_patch_maps(am, bm)),
            (Some(Value::Array(al)), Value::Array(bl)) => {
                let all: Vec<&Value> = al.iter().chain(bl.iter()).collect();
                match merge_key(&key, &all) {
                    Some(mk) => Value::Array(merge_keyed_items(al, bl, mk)),
                    None => Value::Array(bl),
                }
            }
            (_, bv) => bv,
        };
        a.insert(key, merged);
    }
    a
}

fn merge_keyed_items(a: Vec<Value>, b: Vec<Value>, key: &str) -> Vec<Value> {
    let mut out = a;
    for item in b {
        let id = item.get(key).cloned();
        match out.iter_mut().find(|i| i.get(key) == id.as_ref()) {
            Some(existing) => {
                if let (Value::Object(e), Value::Object(n)) = (existing.clone(), item) {
                    *existing = Value::Object(merge_patch_maps(e, n));
                }
            }
            None => out.push(item),
        }
    }
    out
}

/// A two-way JSON merge patch from `from` to `to` (used by `edit` and `label`).
pub fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut patch = Map::new();
            for (k, tv) in t {
                match f.get(k) {
                    Some(fv) if fv == tv => {}
                    Some(fv) if fv.is_object() && tv.is_object() => {
                        patch.insert(k.clone(), merge_patch(fv, tv));
                    }
                    _ => {
                        patch.insert(k.clone(), tv.clone());
                    }
                }
            }
            for k in f.keys() {
                if !t.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
            ]}}}
        })
    }

    fn live(from: &Value) -> Value {
        // What the server makes of it: defaults, status, metadata of its own.
        let mut l = from.clone();
        l["metadata"]["uid"] = json!("u1");
        l["metadata"]["resourceVersion"] = json!("7");
        l["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        l["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        l["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        l["status"] = json!({"replicas": 1});
        l
    }

    #[test]
    fn unchanged_manifest_gives_empty_patch() {
        let m = deployment("nginx", 1);
        let p = three_way(Some(&m), &m, &live(&m));
        assert_eq!(p, json!({}));
    }

    #[test]
    fn changes_merge_containers_by_name() {
        let orig = deployment("nginx", 1);
        let modified = deployment("nginx:1.25", 3);
        let p = three_way(Some(&orig), &modified, &live(&orig));
        assert_eq!(
            p,
            json!({"spec": {"replicas": 3, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"name": "web", "image": "nginx:1.25"}]
            }}}})
        );
    }

    #[test]
    fn dropped_fields_and_items_are_deleted() {
        let mut orig = deployment("nginx", 1);
        orig["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(
                json!({"name": "side", "image": "busybox", "env": [{"name": "A", "value": "1"}]}),
            );
        let mut modified = deployment("nginx", 1);
        modified["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove("tier");
        let p = three_way(Some(&orig), &modified, &live(&orig));
        assert_eq!(
            p,
            json!({
                "metadata": {"labels": {"tier": null}},
                "spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [{"$patch": "delete", "name": "side"}]
                }}}
            })
        );
    }

    #[test]
    fn server_set_fields_survive_without_original() {
        // No last-applied annotation: nothing is deleted, only what differs is set.
        let m = deployment("nginx", 2);
        let p = three_way(None, &m, &live(&deployment("nginx", 1)));
        assert_eq!(p, json!({"spec": {"replicas": 2}}));
    }

    #[test]
    fn atomic_lists_replace_whole_and_keys_chosen_by_field() {
        let orig = json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}});
        let modified = json!({"spec": {"containers": [{"name": "a", "args": ["x"]}]}});
        let p = three_way(Some(&orig), &modified, &orig);
        assert_eq!(
            p,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "args": ["x"]}]
            }})
        );
        let svc_port = json!({"port": 80});
        assert_eq!(merge_key("ports", &[&svc_port]), Some("port"));
        assert_eq!(merge_key("tolerations", &[&svc_port]), None);
        let odd = json!("x");
        assert_eq!(merge_key("containers", &[&odd]), None);
    }

    #[test]
    fn service_ports_keep_allocated_node_port() {
        let orig =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080}]}});
        let current = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.5",
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 31000, "protocol": "TCP"}]}});
        let modified = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}});
        let p = three_way(Some(&orig), &modified, &current);
        assert_eq!(
            p,
            json!({"spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                "ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]
            }})
        );
    }

    #[test]
    fn patch_items_follow_the_manifest_order() {
        let orig = json!({"spec": {"containers": [
            {"name": "a", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "old"}
        ]}});
        let modified = json!({"spec": {"containers": [
            {"name": "b", "image": "new"},
            {"name": "a"}
        ]}});
        let p = three_way(Some(&orig), &modified, &orig);
        assert_eq!(
            p,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "b", "image": "new"}, {"name": "a", "env": null}]
            }})
        );
    }

    #[test]
    fn two_way_merge_patch() {
        let from = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": [1]}});
        let to = json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"x": [2]}});
        assert_eq!(
            merge_patch(&from, &to),
            json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"x": [2]}})
        );
    }
}
