//! Pod events (`Pulling`, `Created`, `Started`, `Killing`, `BackOff`, `OOMKilling`, …) posted
//! to the API, best effort:
//! an event that cannot be posted is logged, never a reason to stop.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tracing::{debug, warn};

#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    node: String,
}

impl Recorder {
    pub fn new(client: kube::Client, node: String) -> Self {
        Recorder { client, node }
    }

    pub async fn normal(&self, pod: &Pod, reason: &str, message: String) {
        self.post(pod, "Normal", reason, message).await
    }

    pub async fn warning(&self, pod: &Pod, reason: &str, message: String) {
        self.post(pod, "Warning", reason, message).await
    }

    async fn post(&self, pod: &Pod, kind: &str, reason: &str, message: String) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = Time(Timestamp::now());
        let suffix = format!("{:x}", Timestamp::now().as_nanosecond() as u64);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{suffix}")),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message.clone()),
            type_: Some(kind.to_string()),
            source: Some(EventSource {
                component: Some("skiff-runtime".into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some("skiff-runtime".into()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        debug!(pod = %format!("{ns}/{name}"), reason, "{message}");
        // Posted in the background: a pod's start never waits on its events.
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                warn!(pod = %format!("{ns}/{name}"), reason, error = %e, "posting an event");
            }
        });
    }
}
