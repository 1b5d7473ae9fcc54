//! Events (`core/v1`) that say what a loop did to an object, as `kubectl describe` shows
//! them. Repeats of the same reason and message on the same object bump `count` on the
//! existing Event instead of adding another, as Kubernetes' event correlator does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::clock::Clock;

/// Repeats remembered per recorder before the oldest knowledge is dropped.
const REMEMBERED_EVENTS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct EventKey {
    uid: String,
    reason: String,
    message: String,
}

struct Posted {
    namespace: String,
    name: String,
    count: i32,
}

/// Posts Events for one component (`replicaset-controller`, `default-scheduler`, …).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    clock: Arc<dyn Clock>,
    posted: Arc<Mutex<HashMap<EventKey, Posted>>>,
}

/// The reference an Event about `obj` carries.
pub fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    pub fn new(client: Client, component: &str, clock: Arc<dyn Clock>) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
            clock,
            posted: Default::default(),
        }
    }

    /// Records an event about `obj`; failures are logged, never returned: an event that
    /// cannot be written must not stop the work it describes.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        self.publish_ref(object_reference(obj), kind, reason, message)
            .await
    }

    pub async fn publish_ref(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let namespace = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key = EventKey {
            uid: involved.uid.clone().unwrap_or_default(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let now = Time(self.clock.now());
        let repeat = {
            let posted = self.posted.lock().unwrap_or_else(|e| e.into_inner());
            posted
                .get(&key)
                .map(|p| (p.namespace.clone(), p.name.clone(), p.count + 1))
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Some((ns, name, count)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": now});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.remember(key, ns, name, count);
                return;
            }
        }
        let object_name = involved.name.clone().unwrap_or_else(|| "object".into());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{object_name}.{:x}",
                    self.clock.now().as_nanosecond() as u64 ^ rand::random::<u32>() as u64
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => self.remember(key, namespace, created.name_any(), 1),
            Err(e) => tracing::warn!(reason, error = %e, "posting event"),
        }
    }

    fn remember(&self, key: EventKey, namespace: String, name: String, count: i32) {
        let mut posted = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        if posted.len() >= REMEMBERED_EVENTS {
            posted.clear();
        }
        posted.insert(
            key,
            Posted {
                namespace,
                name,
                count,
            },
        );
    }
}
