//! A Deployment's revision history: one ReplicaSet per pod template, named and labelled by
//! the template's hash, numbered by the `deployment.kubernetes.io/revision` annotation, and
//! pruned to `revisionHistoryLimit` old ReplicaSets with no pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

use super::rollout::RsState;

pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The longest revision-history annotation kept (older numbers are dropped first).
const REVISION_HISTORY_CHARS: usize = 2000;

/// Annotations of the Deployment that are not copied to its ReplicaSets.
fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        skiff_api::constants::LAST_APPLIED_ANNOTATION
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deprecated.deployment.rollback.to"
    )
}

/// JSON with object keys sorted, whatever map type produced it.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn fnv32a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Characters of the rendered hash: no vowels (no words) and no look-alikes, as
/// Kubernetes' `rand.SafeEncodeString`.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a template: FNV-1a (32 bits) of its canonical JSON and of the
/// collision count, rendered like Kubernetes (each decimal digit mapped to a safe letter).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut text = String::new();
    canonical_json(
        &serde_json::to_value(template).unwrap_or(Value::Null),
        &mut text,
    );
    let mut hash = fnv32a(text.as_bytes(), 0x811c_9dc5);
    if let Some(c) = collision_count {
        hash = fnv32a(&(c as u32).to_le_bytes(), hash);
    }
    hash.to_string()
        .bytes()
        .map(|d| SAFE_ALPHABET[usize::from(d) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// Whether a ReplicaSet's template is the Deployment's, ignoring the hash label the
/// Deployment added to it.
pub fn equal_ignoring_hash(rs_template: &PodTemplateSpec, template: &PodTemplateSpec) -> bool {
    fn normalized(t: &PodTemplateSpec) -> Value {
        let mut t = t.clone();
        if let Some(meta) = t.metadata.as_mut() {
            if let Some(labels) = meta.labels.as_mut() {
                labels.remove(POD_TEMPLATE_HASH);
                if labels.is_empty() {
                    meta.labels = None;
                }
            }
        }
        serde_json::to_value(&t).unwrap_or(Value::Null)
    }
    normalized(rs_template) == normalized(template)
}

/// The revision number in annotations (0 when absent or not a number).
pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The revision the Deployment's current template gets: one more than any old one.
pub fn next_revision(olds: &[&RsState]) -> i64 {
    olds.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// The annotations of the new ReplicaSet (Kubernetes' SetNewReplicaSetAnnotations): the
/// Deployment's own annotations copied (change-cause among them), the revision raised to
/// `new_revision` when lower (a rollback to this template keeps the numbers it had in
/// `revision-history`), and for a ReplicaSet about to be created its replica annotations.
/// `None` when nothing changes.
pub fn new_rs_annotations(
    deployment: Option<&BTreeMap<String, String>>,
    current: Option<&BTreeMap<String, String>>,
    new_revision: i64,
    creating: Option<(i32, i32)>,
) -> Option<BTreeMap<String, String>> {
    let mut out = current.cloned().unwrap_or_default();
    for (k, v) in deployment.into_iter().flatten() {
        if !skip_copy(k) && out.get(k) != Some(v) {
            out.insert(k.clone(), v.clone());
        }
    }
    let old = out.get(REVISION).cloned();
    let old_number = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(n)) => n,
        // An unreadable revision is left alone.
        Some(Err(_)) => i64::MAX,
    };
    if old_number < new_revision {
        out.insert(REVISION.into(), new_revision.to_string());
        if let Some(old) = old {
            let history = out.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut numbers: Vec<&str> = history.split(',').filter(|s| !s.is_empty()).collect();
            numbers.push(&old);
            while numbers.len() > 1 && numbers.join(",").len() > REVISION_HISTORY_CHARS {
                numbers.remove(0);
            }
            out.insert(REVISION_HISTORY.into(), numbers.join(","));
        }
    }
    if let Some((desired, max)) = creating {
        set_replicas_annotations(&mut out, desired, max);
    }
    let changed = current.map_or(!out.is_empty(), |c| *c != out);
    changed.then_some(out)
}

/// Records the Deployment's size (and size plus surge) on a ReplicaSet; true if changed.
pub fn set_replicas_annotations(
    annotations: &mut BTreeMap<String, String>,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if annotations.get(k) != Some(&v) {
            annotations.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

/// The old ReplicaSets to delete so that at most `limit` remain: oldest revisions first,
/// only those with no pods, scaled to zero and settled (Kubernetes' cleanupDeployment).
pub fn history_to_delete(olds: &[&RsState], limit: i32) -> Vec<String> {
    let mut alive: Vec<&RsState> = olds.iter().copied().filter(|r| !r.terminating).collect();
    let excess = alive.len() as i64 - i64::from(limit.max(0));
    if excess <= 0 {
        return Vec::new();
    }
    alive.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| super::rollout::by_creation(a, b))
    });
    alive
        .into_iter()
        .take(excess as usize)
        .filter(|r| r.replicas == 0 && r.actual == 0 && r.settled)
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use serde_json::json;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .unwrap()
    }

    #[test]
    fn hash_is_stable_short_safe_and_changes_with_template_and_collisions() {
        let a = template("nginx:1");
        let h = template_hash(&a, None);
        assert_eq!(h, template_hash(&a.clone(), None));
        assert!(h.len() <= 10 && !h.is_empty(), "{h}");
        assert!(h.bytes().all(|c| SAFE_ALPHABET.contains(&c)), "{h}");
        assert_ne!(h, template_hash(&template("nginx:2"), None));
        assert_ne!(h, template_hash(&a, Some(1)));
        assert_ne!(template_hash(&a, Some(1)), template_hash(&a, Some(2)));
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut s = String::new();
        canonical_json(
            &json!({"b": 1, "a": {"d": [1, {"z": 0, "y": "x"}], "c": null}}),
            &mut s,
        );
        assert_eq!(s, r#"{"a":{"c":null,"d":[1,{"y":"x","z":0}]},"b":1}"#);
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let d = template("nginx:1");
        let mut rs = d.clone();
        rs.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        assert!(equal_ignoring_hash(&rs, &d));
        assert!(!equal_ignoring_hash(&rs, &template("nginx:2")));
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn new_replica_sets_get_revision_change_cause_and_sizes() {
        let d = map(&[
            (CHANGE_CAUSE, "set image"),
            (REVISION, "7"),
            (skiff_api::constants::LAST_APPLIED_ANNOTATION, "{}"),
        ]);
        let a = new_rs_annotations(Some(&d), None, 3, Some((4, 5))).unwrap();
        assert_eq!(
            a,
            map(&[
                (CHANGE_CAUSE, "set image"),
                (REVISION, "3"),
                (DESIRED_REPLICAS, "4"),
                (MAX_REPLICAS, "5")
            ])
        );
        // Nothing new: no change.
        assert_eq!(new_rs_annotations(Some(&d), Some(&a), 3, None), None);
        assert_eq!(
            new_rs_annotations(Some(&d), Some(&a), 2, None),
            None,
            "revisions never go down"
        );
    }

    #[test]
    fn rollback_raises_the_revision_and_keeps_the_old_number() {
        let current = map(&[(REVISION, "1")]);
        let a = new_rs_annotations(None, Some(&current), 3, None).unwrap();
        assert_eq!(a.get(REVISION).unwrap(), "3");
        assert_eq!(a.get(REVISION_HISTORY).unwrap(), "1");
        let b = new_rs_annotations(None, Some(&a), 5, None).unwrap();
        assert_eq!(b.get(REVISION_HISTORY).unwrap(), "1,3");
    }

    fn old(name: &str, revision: i64, replicas: i32) -> RsState {
        RsState {
            name: name.into(),
            replicas,
            actual: replicas,
            ready: replicas,
            available: replicas,
            created: Timestamp::from_second(1_800_000_000 + revision).unwrap(),
            revision,
            desired_annotation: None,
            max_annotation: None,
            settled: true,
            terminating: false,
        }
    }

    #[test]
    fn history_keeps_the_newest_empty_replica_sets() {
        let rss = [
            old("r3", 3, 0),
            old("r1", 1, 0),
            old("r2", 2, 0),
            old("r4", 4, 0),
        ];
        let refs: Vec<&RsState> = rss.iter().collect();
        assert_eq!(history_to_delete(&refs, 2), vec!["r1", "r2"]);
        assert_eq!(history_to_delete(&refs, 4), Vec::<String>::new());
        assert_eq!(history_to_delete(&refs, 0).len(), 4);
        // One with pods is skipped (it is not cleaned up, and not replaced by a newer one).
        let busy = [old("r1", 1, 2), old("r2", 2, 0), old("r3", 3, 0)];
        let refs: Vec<&RsState> = busy.iter().collect();
        assert_eq!(history_to_delete(&refs, 1), vec!["r2"]);
    }

    #[test]
    fn revisions_parse_and_increase() {
        assert_eq!(revision(Some(&map(&[(REVISION, "12")]))), 12);
        assert_eq!(revision(Some(&map(&[(REVISION, "x")]))), 0);
        assert_eq!(revision(None), 0);
        let rss = [old("a", 2, 0), old("b", 5, 0)];
        assert_eq!(next_revision(&rss.iter().collect::<Vec<_>>()), 6);
        assert_eq!(next_revision(&[]), 1);
    }
}
