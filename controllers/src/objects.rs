//! Facts about objects that several loops need: who controls an object, whether a pod is
//! ready or available, selectors, and pods stamped out of a template.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use skiff_api::labels::Selector;

use crate::clock::seconds_between;
use crate::error::Error;

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// The objects in `namespace` that the object with `uid` controls, from a cache's state.
pub fn controlled_by<'a, K: kube::Resource>(
    objects: &'a [std::sync::Arc<K>],
    namespace: &str,
    uid: &str,
) -> Vec<&'a K> {
    objects
        .iter()
        .map(|o| o.as_ref())
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter(|o| is_controlled_by(o.meta(), uid))
        .collect()
}

/// A controller owner reference to `owner`: deletion of the owner waits for the dependent
/// under foreground propagation.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Delete parameters that remove only this incarnation of an object: a replacement created
/// under the same name (another uid) is left alone.
pub fn delete_exactly(uid: Option<&str>) -> kube::api::DeleteParams {
    kube::api::DeleteParams {
        preconditions: uid
            .filter(|u| !u.is_empty())
            .map(|u| kube::api::Preconditions {
                uid: Some(u.to_string()),
                resource_version: None,
            }),
        ..Default::default()
    }
}

/// A delete that had nothing left to do: the object is gone (404), or the uid precondition
/// of `delete_exactly` failed because it was already replaced (409).
pub fn already_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

pub fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// A `LabelSelector` as a matcher; `what` names the object for the error.
pub fn selector(sel: Option<&LabelSelector>, what: &str) -> Result<Selector, Error> {
    let Some(sel) = sel else {
        return Err(Error::invalid(what, "spec.selector is missing"));
    };
    Selector::from_label_selector(sel)
        .map_err(|e| Error::invalid(what, format!("spec.selector: {e}")))
}

/// An equality selector from a plain map (ReplicationController, Service).
pub fn map_selector(map: &BTreeMap<String, String>, what: &str) -> Result<Selector, Error> {
    Selector::from_map(map).map_err(|e| Error::invalid(what, format!("spec.selector: {e}")))
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Neither finished nor on its way out: it counts towards a controller's replicas.
pub fn is_pod_active(pod: &Pod) -> bool {
    !is_terminating(&pod.metadata) && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// The `Ready` condition's status is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod last became ready, if it is ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        cond.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => seconds_between(since, now) >= i64::from(min_ready_seconds),
    }
}

/// Seconds until a ready pod becomes available (0 when it already is or is not ready).
pub fn seconds_until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> i64 {
    match ready_since(pod) {
        Some(since) if min_ready_seconds > 0 => {
            (i64::from(min_ready_seconds) - seconds_between(since, now)).max(0)
        }
        _ => 0,
    }
}

/// A pod for `owner` from its template, named `name` or generated from `generate_name`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    name: PodName<'_>,
    owner: OwnerReference,
) -> Pod {
    let t_meta = template.metadata.clone().unwrap_or_default();
    let (name, generate_name) = match name {
        PodName::Exact(n) => (Some(n.to_string()), None),
        PodName::Generate(prefix) => (None, Some(prefix.to_string())),
    };
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(namespace.to_string()),
            labels: t_meta.labels,
            annotations: t_meta.annotations,
            finalizers: t_meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

pub enum PodName<'a> {
    Exact(&'a str),
    /// A prefix ending in `-`; the server appends a random suffix.
    Generate(&'a str),
}

/// The prefix generated names of a controller's pods start with (`web-` for `web`), kept
/// short enough for the server's random suffix to fit 63 characters.
pub fn generate_name_prefix(owner_name: &str) -> String {
    let mut prefix: String = owner_name.chars().take(57).collect();
    prefix.push('-');
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_pod(since: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(since.parse().unwrap())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let pod = ready_pod("2026-01-01T00:00:00Z");
        let at = |s: &str| -> Timestamp { s.parse().unwrap() };
        assert!(is_pod_ready(&pod));
        assert!(is_pod_available(&pod, 0, at("2026-01-01T00:00:00Z")));
        assert!(!is_pod_available(&pod, 10, at("2026-01-01T00:00:09Z")));
        assert!(is_pod_available(&pod, 10, at("2026-01-01T00:00:10Z")));
        assert_eq!(
            seconds_until_available(&pod, 10, at("2026-01-01T00:00:04Z")),
            6
        );
        assert!(!is_pod_ready(&Pod::default()));
        assert!(is_pod_active(&Pod::default()));
    }

    #[test]
    fn long_owner_names_leave_room_for_the_suffix() {
        assert_eq!(generate_name_prefix("web"), "web-");
        assert_eq!(generate_name_prefix(&"a".repeat(80)).len(), 58);
    }

    #[test]
    fn deletes_name_the_incarnation_when_its_uid_is_known() {
        let p = delete_exactly(Some("u1")).preconditions.unwrap();
        assert_eq!(p.uid.as_deref(), Some("u1"));
        assert!(delete_exactly(Some("")).preconditions.is_none());
        assert!(delete_exactly(None).preconditions.is_none());
    }
}
