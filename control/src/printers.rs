//! Server-side printing: turns objects into a `meta.k8s.io/v1` `Table`, as kube-apiserver
//! does when a client asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Stock kubectl renders whatever columns the server sends, so the columns and cell texts
//! here follow kube-apiserver's printers (pod status strings, `<none>`, ages like `3m2s`).
//! Everything is computed from JSON so any stored object prints, even one a newer client
//! wrote with fields k8s-openapi does not know. Wide columns carry `priority: 1`; clients
//! show them only for `-o wide`.

use serde_json::{json, Map, Value};
use skiff_api::resources::ResourceInfo;

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object at all.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the Kubernetes default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; `None` for an unknown value.
    pub fn parse(value: &str) -> Option<IncludeObject> {
        match value {
            "None" => Some(IncludeObject::None),
            "Metadata" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// A column of the table.
struct Column {
    name: &'static str,
    kind: &'static str,
    description: &'static str,
    priority: u32,
}

const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        description,
        priority: 1,
    }
}

const NAME: Column = col("Name", "string", "Name must be unique within a namespace.");
const AGE: Column = col(
    "Age",
    "string",
    "Time since the object was created (its creationTimestamp).",
);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = wide("Selector", "string", "The label selector of the object.");

/// Builds the Table for `objects`, all of the kind `resource` describes.
///
/// The returned Table has an empty `metadata`; the caller copies the list's
/// `resourceVersion`/`continue` into it when it has them.
pub fn table(
    resource: &ResourceInfo,
    objects: &[Value],
    include_object: IncludeObject,
    now: jiff::Timestamp,
) -> Value {
    let columns = columns_for(resource);
    let column_defs: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells_for(resource, obj, now)));
            if let Some(conditions) = row_conditions(resource, obj) {
                row.insert("conditions".into(), conditions);
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                        }),
                    );
                }
                IncludeObject::Object => {
                    let mut full = obj.clone();
                    if let Some(m) = full.as_object_mut() {
                        m.entry("kind")
                            .or_insert_with(|| Value::String(resource.kind.to_string()));
                        m.entry("apiVersion")
                            .or_insert_with(|| Value::String(resource.api_version()));
                    }
                    row.insert("object".into(), full);
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_defs,
        "rows": rows,
    })
}

/// Formats how long ago `then` was, as kubectl does (`5s`, `3m2s`, `2d3h`, `4y10d`).
pub fn human_duration(seconds: i64) -> String {
    // A couple of seconds in the future is clock skew, not an error.
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of an RFC 3339 timestamp field, or `<unknown>` when absent or unparsable.
pub fn age(timestamp: Option<&Value>, now: jiff::Timestamp) -> String {
    match timestamp
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    {
        Some(t) => human_duration(now.duration_since(t).as_secs()),
        None => "<unknown>".to_string(),
    }
}

fn columns_for(resource: &ResourceInfo) -> Vec<Column> {
    match (resource.group, resource.kind) {
        ("", "Pod") => vec![
            NAME,
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", "The aggregate status of the containers in this pod."),
            col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            wide("IP", "string", "IP address allocated to the pod."),
            wide("Node", "string", "The node the pod is bound to."),
            wide("Nominated Node", "string", "The node the scheduler nominated for this pod after preemption."),
            wide("Readiness Gates", "string", "How many of the pod's readiness gates are true."),
        ],
        ("", "Service") => vec![
            NAME,
            col("Type", "string", "How the Service is exposed."),
            col("Cluster-IP", "string", "The IP address of the service inside the cluster."),
            col("External-IP", "string", "External addresses of the service."),
            col("Port(s)", "string", "The ports the service exposes."),
            AGE,
            wide("Selector", "string", "Pods with these labels receive the service's traffic."),
        ],
        ("", "Endpoints") => vec![
            NAME,
            col("Endpoints", "string", "The addresses and ports of the endpoints."),
            AGE,
        ],
        ("", "Node") => vec![
            NAME,
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            AGE,
            col("Version", "string", "Version reported by the node daemon."),
            wide("Internal-IP", "string", "The node's internal address."),
            wide("External-IP", "string", "The node's external address."),
            wide("OS-Image", "string", "OS image reported by the node."),
            wide("Kernel-Version", "string", "Kernel version reported by the node."),
            wide("Container-Runtime", "string", "Container runtime version reported by the node."),
        ],
        ("", "Namespace") => vec![
            NAME,
            col("Status", "string", "The status of the namespace"),
            AGE,
        ],
        ("", "ConfigMap") => vec![
            NAME,
            col("Data", "string", "Number of data entries in the ConfigMap."),
            AGE,
        ],
        ("", "Secret") => vec![
            NAME,
            col("Type", "string", "The type of the secret"),
            col("Data", "string", "Number of data entries in the secret."),
            AGE,
        ],
        ("", "Event") => vec![
            col("Last Seen", "string", "When the event was last observed."),
            col("Type", "string", "Type of this event (Normal, Warning)."),
            col("Reason", "string", "Why the action was taken."),
            col("Object", "string", "The object this event is about."),
            wide("Subobject", "string", "The part of the object this event is about."),
            wide("Source", "string", "The component reporting this event."),
            col("Message", "string", "A human-readable description of the event."),
            wide("First Seen", "string", "When the event was first observed."),
            wide("Count", "string", "How many times this event has occurred."),
            wide("Name", "string", "Name of the event object."),
        ],
        ("", "ServiceAccount") => vec![
            NAME,
            col("Secrets", "string", "Number of secrets listed by the service account."),
            AGE,
        ],
        ("", "PersistentVolume") => vec![
            NAME,
            col("Capacity", "string", "The storage capacity of the volume."),
            col("Access Modes", "string", "The ways the volume can be mounted."),
            col("Reclaim Policy", "string", "What happens to the volume when released."),
            col("Status", "string", "The phase of the volume."),
            col("Claim", "string", "The claim bound to the volume."),
            col("StorageClass", "string", "The storage class of the volume."),
            col("VolumeAttributesClass", "string", "The volume attributes class of the volume."),
            col("Reason", "string", "Why the volume is in its phase."),
            AGE,
            wide("VolumeMode", "string", "Filesystem or Block."),
        ],
        ("", "PersistentVolumeClaim") => vec![
            NAME,
            col("Status", "string", "The phase of the claim."),
            col("Volume", "string", "The volume bound to the claim."),
            col("Capacity", "string", "The capacity of the bound volume."),
            col("Access Modes", "string", "The access modes of the bound volume."),
            col("StorageClass", "string", "The storage class of the claim."),
            col("VolumeAttributesClass", "string", "The volume attributes class of the claim."),
            AGE,
            wide("VolumeMode", "string", "Filesystem or Block."),
        ],
        ("", "LimitRange") => vec![
            NAME,
            col("Created At", "date", "When the object was created."),
        ],
        ("", "ResourceQuota") => vec![
            NAME,
            AGE,
            col("Request", "string", "Used and hard request quotas."),
            col("Limit", "string", "Used and hard limit quotas."),
        ],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => vec![
            NAME,
            col("Desired", "integer", "Number of desired pods."),
            col("Current", "integer", "Number of pods that exist."),
            col("Ready", "integer", "Number of ready pods."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "Deployment") => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "DaemonSet") => vec![
            NAME,
            col("Desired", "integer", "Number of nodes that should run the daemon pod."),
            col("Current", "integer", "Number of nodes running at least one daemon pod."),
            col("Ready", "integer", "Number of nodes with a ready daemon pod."),
            col("Up-to-date", "integer", "Number of nodes running the updated daemon pod."),
            col("Available", "integer", "Number of nodes with an available daemon pod."),
            col("Node Selector", "string", "Nodes the daemon pods may run on."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "StatefulSet") => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("apps", "ControllerRevision") => vec![
            NAME,
            col("Controller", "string", "The object that owns this revision."),
            col("Revision", "integer", "The revision number."),
            AGE,
        ],
        ("batch", "Job") => vec![
            NAME,
            col("Status", "string", "Status of the job."),
            col("Completions", "string", "The desired number of successfully finished pods the job should be run with."),
            col("Duration", "string", "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => vec![
            NAME,
            col("Schedule", "string", "The schedule in Cron format."),
            col("Timezone", "string", "The time zone of the schedule."),
            col("Suspend", "boolean", "Whether subsequent executions are suspended."),
            col("Active", "integer", "Number of running jobs."),
            col("Last Schedule", "string", "When a job was last scheduled."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("coordination.k8s.io", "Lease") => vec![
            NAME,
            col("Holder", "string", "The holder of the lease."),
            AGE,
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            NAME,
            col("Reference", "string", "The object whose replicas are scaled."),
            col("Targets", "string", "Current and target values of the metrics."),
            col("MinPods", "string", "Lower limit of replicas."),
            col("MaxPods", "integer", "Upper limit of replicas."),
            col("Replicas", "integer", "Current number of replicas."),
            AGE,
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![
            NAME,
            col("Pod-Selector", "string", "Pods this policy applies to."),
            AGE,
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            NAME,
            col("Provisioner", "string", "The provisioner of the class."),
            col("ReclaimPolicy", "string", "What happens to volumes of the class when released."),
            col("VolumeBindingMode", "string", "When volumes of the class are bound."),
            col("AllowVolumeExpansion", "string", "Whether volumes of the class can grow."),
            AGE,
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            NAME,
            col("AddressType", "string", "The type of the addresses."),
            col("Ports", "string", "The ports of the endpoints."),
            col("Endpoints", "string", "The addresses of the endpoints."),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

fn cells_for(resource: &ResourceInfo, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let name = Value::String(str_at(obj, &["metadata", "name"]).to_string());
    let age = Value::String(age(obj.pointer("/metadata/creationTimestamp"), now));
    let text = |s: String| Value::String(s);
    match (resource.group, resource.kind) {
        ("", "Pod") => pod_cells(obj, now),
        ("", "Service") => vec![
            name,
            text(service_type(obj).to_string()),
            text(none_if_empty(str_at(obj, &["spec", "clusterIP"]))),
            text(service_external_ip(obj)),
            text(service_ports(obj)),
            age,
            text(format_labels(obj.pointer("/spec/selector"))),
        ],
        ("", "Endpoints") => vec![name, text(endpoints_text(obj)), age],
        ("", "Node") => node_cells(obj, name, age),
        ("", "Namespace") => vec![
            name,
            text(str_at(obj, &["status", "phase"]).to_string()),
            age,
        ],
        ("", "ConfigMap") => {
            let n = obj_len(obj.get("data")) + obj_len(obj.get("binaryData"));
            vec![name, json!(n), age]
        }
        ("", "Secret") => {
            let kind = match str_at(obj, &["type"]) {
                "" => "Opaque",
                t => t,
            };
            vec![
                name,
                text(kind.to_string()),
                json!(obj_len(obj.get("data"))),
                age,
            ]
        }
        ("", "Event") => event_cells(obj, now),
        ("", "ServiceAccount") => {
            let n = arr(obj.get("secrets")).len();
            vec![name, json!(n), age]
        }
        ("", "PersistentVolume") => pv_cells(obj, name, age),
        ("", "PersistentVolumeClaim") => pvc_cells(obj, name, age),
        ("", "LimitRange") => {
            let created = obj
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            vec![name, text(created)]
        }
        ("", "ResourceQuota") => {
            let (requests, limits) = quota_texts(obj);
            vec![name, age, text(requests), text(limits)]
        }
        ("", "ReplicationController") | ("apps", "ReplicaSet") => {
            let selector = if resource.kind == "ReplicationController" {
                format_labels(obj.pointer("/spec/selector"))
            } else {
                format_label_selector(obj.pointer("/spec/selector"))
            };
            let (containers, images) = containers_images(obj.pointer("/spec/template/spec"));
            vec![
                name,
                json!(int_at(obj, "/spec/replicas", 1)),
                json!(int_at(obj, "/status/replicas", 0)),
                json!(int_at(obj, "/status/readyReplicas", 0)),
                age,
                text(containers),
                text(images),
                text(selector),
            ]
        }
        ("apps", "Deployment") => {
            let (containers, images) = containers_images(obj.pointer("/spec/template/spec"));
            vec![
                name,
                text(format!(
                    "{}/{}",
                    int_at(obj, "/status/readyReplicas", 0),
                    int_at(obj, "/spec/replicas", 1)
                )),
                json!(int_at(obj, "/status/updatedReplicas", 0)),
                json!(int_at(obj, "/status/availableReplicas", 0)),
                age,
                text(containers),
                text(images),
                text(format_label_selector(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "DaemonSet") => {
            let (containers, images) = containers_images(obj.pointer("/spec/template/spec"));
            vec![
                name,
                json!(int_at(obj, "/status/desiredNumberScheduled", 0)),
                json!(int_at(obj, "/status/currentNumberScheduled", 0)),
                json!(int_at(obj, "/status/numberReady", 0)),
                json!(int_at(obj, "/status/updatedNumberScheduled", 0)),
                json!(int_at(obj, "/status/numberAvailable", 0)),
                text(format_labels(
                    obj.pointer("/spec/template/spec/nodeSelector"),
                )),
                age,
                text(containers),
                text(images),
                text(format_label_selector(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "StatefulSet") => {
            let (containers, images) = containers_images(obj.pointer("/spec/template/spec"));
            vec![
                name,
                text(format!(
                    "{}/{}",
                    int_at(obj, "/status/readyReplicas", 0),
                    int_at(obj, "/spec/replicas", 1)
                )),
                age,
                text(containers),
                text(images),
            ]
        }
        ("apps", "ControllerRevision") => vec![
            name,
            text(controller_of(obj)),
            json!(int_at(obj, "/revision", 0)),
            age,
        ],
        ("batch", "Job") => job_cells(obj, name, age, now),
        ("batch", "CronJob") => {
            let (containers, images) =
                containers_images(obj.pointer("/spec/jobTemplate/spec/template/spec"));
            let last = match obj.pointer("/status/lastScheduleTime") {
                Some(v) if !v.is_null() => self::age(Some(v), now),
                _ => "<none>".to_string(),
            };
            vec![
                name,
                text(str_at(obj, &["spec", "schedule"]).to_string()),
                text(none_if_empty(str_at(obj, &["spec", "timeZone"]))),
                text(
                    if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
                        "True"
                    } else {
                        "False"
                    }
                    .to_string(),
                ),
                json!(arr(obj.pointer("/status/active")).len()),
                text(last),
                age,
                text(containers),
                text(images),
                text(format_label_selector(
                    obj.pointer("/spec/jobTemplate/spec/selector"),
                )),
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![
            name,
            text(str_at(obj, &["spec", "holderIdentity"]).to_string()),
            age,
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let reference = format!(
                "{}/{}",
                str_at(obj, &["spec", "scaleTargetRef", "kind"]),
                str_at(obj, &["spec", "scaleTargetRef", "name"])
            );
            let min = match obj.pointer("/spec/minReplicas").and_then(Value::as_i64) {
                Some(n) => n.to_string(),
                None => "<unset>".to_string(),
            };
            vec![
                name,
                text(reference),
                text(hpa_targets(obj)),
                text(min),
                json!(int_at(obj, "/spec/maxReplicas", 0)),
                json!(int_at(obj, "/status/currentReplicas", 0)),
                age,
            ]
        }
        ("networking.k8s.io", "NetworkPolicy") => vec![
            name,
            text(format_label_selector(obj.pointer("/spec/podSelector"))),
            age,
        ],
        ("storage.k8s.io", "StorageClass") => storage_class_cells(obj, name, age),
        ("discovery.k8s.io", "EndpointSlice") => vec![
            name,
            text(str_at(obj, &["addressType"]).to_string()),
            text(slice_ports(obj)),
            text(slice_endpoints(obj)),
            age,
        ],
        _ => vec![name, age],
    }
}

/// Completed and failed pods carry a row condition, as kube-apiserver marks them.
fn row_conditions(resource: &ResourceInfo, obj: &Value) -> Option<Value> {
    if !resource.group.is_empty() || resource.kind != "Pod" {
        return None;
    }
    match str_at(obj, &["status", "phase"]) {
        "Succeeded" => Some(json!([{
            "type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "The pod has completed successfully."
        }])),
        "Failed" => Some(json!([{
            "type": "Completed", "status": "True", "reason": "Failed",
            "message": "The pod failed."
        }])),
        _ => None,
    }
}

// ---- pods ----

/// The STATUS column of a pod, computed the way kubectl does: the phase, overridden by the
/// pod's reason, by init container progress, then by the last container's waiting or
/// terminated reason, and finally by deletion.
pub fn pod_status(pod: &Value) -> String {
    pod_summary(pod).status
}

struct PodSummary {
    ready: usize,
    total: usize,
    status: String,
    restarts: i64,
    last_restart: Option<jiff::Timestamp>,
}

fn is_restartable_init(container: Option<&Value>) -> bool {
    container
        .and_then(|c| c.get("restartPolicy"))
        .and_then(Value::as_str)
        == Some("Always")
}

fn finished_at(status: &Value) -> Option<jiff::Timestamp> {
    status
        .pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn later(a: Option<jiff::Timestamp>, b: Option<jiff::Timestamp>) -> Option<jiff::Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn condition_true(obj: &Value, kind: &str) -> bool {
    arr(obj.pointer("/status/conditions")).iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(kind)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

fn pod_summary(pod: &Value) -> PodSummary {
    let init_specs = arr(pod.pointer("/spec/initContainers"));
    let mut total = arr(pod.pointer("/spec/containers")).len();
    total += init_specs
        .iter()
        .filter(|c| is_restartable_init(Some(c)))
        .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut last_restart = None;
    let mut sidecar_restarts = 0i64;
    let mut sidecar_last_restart = None;

    let phase = str_at(pod, &["status", "phase"]);
    let mut reason = match str_at(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let gated = arr(pod.pointer("/status/conditions")).iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("PodScheduled")
            && c.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
    });
    if gated {
        reason = "SchedulingGated".to_string();
    }

    let spec_of = |name: &str| {
        init_specs
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
    };
    let mut initializing = false;
    let init_statuses = arr(pod.pointer("/status/initContainerStatuses"));
    for (i, status) in init_statuses.iter().enumerate() {
        let count = status
            .get("restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        restarts += count;
        last_restart = later(last_restart, finished_at(status));
        let name = status.get("name").and_then(Value::as_str).unwrap_or("");
        let sidecar = is_restartable_init(spec_of(name));
        if sidecar {
            sidecar_restarts += count;
            sidecar_last_restart = later(sidecar_last_restart, finished_at(status));
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let exit_code = terminated
            .and_then(|t| t.get("exitCode"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if terminated.is_some() && exit_code == 0 {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match t.get("reason").and_then(Value::as_str).unwrap_or("") {
                "" => match t.get("signal").and_then(Value::as_i64).unwrap_or(0) {
                    0 => format!("Init:ExitCode:{exit_code}"),
                    signal => format!("Init:Signal:{signal}"),
                },
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        // kubectl walks the containers from the last one, so the first container's state
        // is the one that wins.
        for status in arr(pod.pointer("/status/containerStatuses")).iter().rev() {
            restarts += status
                .get("restartCount")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            last_restart = later(last_restart, finished_at(status));
            let waiting = status
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            let terminated = status.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match t.get("reason").and_then(Value::as_str).unwrap_or("") {
                    "" => match t.get("signal").and_then(Value::as_i64).unwrap_or(0) {
                        0 => format!(
                            "ExitCode:{}",
                            t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                        ),
                        signal => format!("Signal:{signal}"),
                    },
                    r => r.to_string(),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && str_at(pod, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    PodSummary {
        ready,
        total,
        status: reason,
        restarts,
        last_restart,
    }
}

fn pod_cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let summary = pod_summary(pod);
    let restarts = match summary.last_restart {
        Some(t) if summary.restarts != 0 => format!(
            "{} ({} ago)",
            summary.restarts,
            human_duration(now.duration_since(t).as_secs())
        ),
        _ => summary.restarts.to_string(),
    };
    let ip = arr(pod.pointer("/status/podIPs"))
        .first()
        .and_then(|p| p.get("ip"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(pod, &["status", "podIP"]));
    let gates = arr(pod.pointer("/spec/readinessGates"));
    let gates_text = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let kind = g.get("conditionType").and_then(Value::as_str).unwrap_or("");
                arr(pod.pointer("/status/conditions"))
                    .iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str)
                    == Some("True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        Value::String(str_at(pod, &["metadata", "name"]).to_string()),
        Value::String(format!("{}/{}", summary.ready, summary.total)),
        Value::String(summary.status),
        Value::String(restarts),
        Value::String(age(pod.pointer("/metadata/creationTimestamp"), now)),
        Value::String(none_if_empty(ip)),
        Value::String(none_if_empty(str_at(pod, &["spec", "nodeName"]))),
        Value::String(none_if_empty(str_at(pod, &["status", "nominatedNodeName"]))),
        Value::String(gates_text),
    ]
}

// ---- services and endpoints ----

fn service_type(svc: &Value) -> &str {
    match str_at(svc, &["spec", "type"]) {
        "" => "ClusterIP",
        t => t,
    }
}

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = arr(svc.pointer("/spec/externalIPs"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match service_type(svc) {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut addrs: Vec<String> = arr(svc.pointer("/status/loadBalancer/ingress"))
                .iter()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            addrs.extend(external.iter().map(|s| s.to_string()));
            if addrs.is_empty() {
                "<pending>".to_string()
            } else {
                addrs.join(",")
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc.pointer("/spec/ports"))
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) {
                0 => format!("{port}/{protocol}"),
                node => format!("{port}:{node}/{protocol}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    }
}

/// Shows at most three endpoints and how many more there are.
fn first_three(list: Vec<String>, empty: &str) -> String {
    if list.is_empty() {
        return empty.to_string();
    }
    let shown = list.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if list.len() > 3 {
        format!("{shown} + {} more...", list.len() - 3)
    } else {
        shown
    }
}

fn endpoints_text(ep: &Value) -> String {
    let mut list = Vec::new();
    for subset in arr(ep.get("subsets")) {
        let addresses = arr(subset.get("addresses"));
        let ports = arr(subset.get("ports"));
        for addr in addresses {
            let ip = addr.get("ip").and_then(Value::as_str).unwrap_or("");
            if ports.is_empty() {
                list.push(ip.to_string());
            }
            for port in ports {
                let p = port.get("port").and_then(Value::as_i64).unwrap_or(0);
                list.push(format!("{ip}:{p}"));
            }
        }
    }
    first_three(list, "<none>")
}

fn slice_ports(slice: &Value) -> String {
    let ports: Vec<String> = arr(slice.get("ports"))
        .iter()
        .filter_map(|p| p.get("port").and_then(Value::as_i64))
        .map(|p| p.to_string())
        .collect();
    if ports.is_empty() {
        "<unset>".to_string()
    } else {
        ports.join(",")
    }
}

fn slice_endpoints(slice: &Value) -> String {
    let list: Vec<String> = arr(slice.get("endpoints"))
        .iter()
        .flat_map(|e| arr(e.get("addresses")).iter())
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    first_three(list, "<unset>")
}

// ---- nodes ----

fn node_cells(node: &Value, name: Value, age: Value) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(ready) = arr(node.pointer("/status/conditions"))
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
    {
        if ready.get("status").and_then(Value::as_str) == Some("True") {
            status.push("Ready".into());
        } else {
            status.push("NotReady".into());
        }
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(role) = v.as_str().filter(|r| !r.is_empty()) {
                    roles.push(role.to_string());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();
    let address = |kind: &str| {
        arr(node.pointer("/status/addresses"))
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address"))
            .and_then(Value::as_str)
            .unwrap_or("<none>")
            .to_string()
    };
    let info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        s => s.to_string(),
    };
    vec![
        name,
        Value::String(status.join(",")),
        Value::String(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        age,
        Value::String(str_at(node, &["status", "nodeInfo", "kubeletVersion"]).to_string()),
        Value::String(address("InternalIP")),
        Value::String(address("ExternalIP")),
        Value::String(info("osImage")),
        Value::String(info("kernelVersion")),
        Value::String(info("containerRuntimeVersion")),
    ]
}

// ---- events ----

fn event_cells(ev: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let present = |p: &str| {
        ev.pointer(p)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
    };
    let first = match present("/firstTimestamp").or_else(|| present("/eventTime")) {
        Some(t) => age(Some(t), now),
        None => "<unknown>".to_string(),
    };
    let mut last = match present("/lastTimestamp") {
        Some(t) => age(Some(t), now),
        None => first.clone(),
    };
    let mut count = ev.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = present("/series") {
        last = age(series.get("lastObservedTime"), now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        // Events written through the newer API carry no count when they happened once.
        count = 1;
    }
    let kind = str_at(ev, &["involvedObject", "kind"]).to_ascii_lowercase();
    let target = match str_at(ev, &["involvedObject", "name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = match str_at(ev, &["source", "component"]) {
        "" => str_at(ev, &["reportingComponent"]),
        c => c,
    };
    let host = match str_at(ev, &["source", "host"]) {
        "" => str_at(ev, &["reportingInstance"]),
        h => h,
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        Value::String(last),
        Value::String(str_at(ev, &["type"]).to_string()),
        Value::String(str_at(ev, &["reason"]).to_string()),
        Value::String(target),
        Value::String(str_at(ev, &["involvedObject", "fieldPath"]).to_string()),
        Value::String(source),
        Value::String(str_at(ev, &["message"]).trim().to_string()),
        Value::String(first),
        json!(count),
        Value::String(str_at(ev, &["metadata", "name"]).to_string()),
    ]
}

// ---- storage ----

fn access_modes(modes: Option<&Value>) -> String {
    let mut out = Vec::new();
    let list: Vec<&str> = arr(modes).iter().filter_map(Value::as_str).collect();
    for (mode, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if list.contains(&mode) {
            out.push(short);
        }
    }
    out.join(",")
}

fn deleting_or(obj: &Value, phase: &str) -> String {
    if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating".to_string()
    } else {
        phase.to_string()
    }
}

fn unset_if_empty(s: &str) -> String {
    if s.is_empty() {
        "<unset>".to_string()
    } else {
        s.to_string()
    }
}

fn pv_cells(pv: &Value, name: Value, age: Value) -> Vec<Value> {
    let claim = match (
        str_at(pv, &["spec", "claimRef", "namespace"]),
        str_at(pv, &["spec", "claimRef", "name"]),
    ) {
        (_, "") => String::new(),
        (ns, n) => format!("{ns}/{n}"),
    };
    vec![
        name,
        Value::String(str_at(pv, &["spec", "capacity", "storage"]).to_string()),
        Value::String(access_modes(pv.pointer("/spec/accessModes"))),
        Value::String(str_at(pv, &["spec", "persistentVolumeReclaimPolicy"]).to_string()),
        Value::String(deleting_or(pv, str_at(pv, &["status", "phase"]))),
        Value::String(claim),
        Value::String(str_at(pv, &["spec", "storageClassName"]).to_string()),
        Value::String(unset_if_empty(str_at(
            pv,
            &["spec", "volumeAttributesClassName"],
        ))),
        Value::String(str_at(pv, &["status", "reason"]).to_string()),
        age,
        Value::String(unset_if_empty(str_at(pv, &["spec", "volumeMode"]))),
    ]
}

fn pvc_cells(pvc: &Value, name: Value, age: Value) -> Vec<Value> {
    let volume = str_at(pvc, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            str_at(pvc, &["status", "capacity", "storage"]).to_string(),
            access_modes(pvc.pointer("/status/accessModes")),
        )
    };
    vec![
        name,
        Value::String(deleting_or(pvc, str_at(pvc, &["status", "phase"]))),
        Value::String(volume.to_string()),
        Value::String(capacity),
        Value::String(modes),
        Value::String(str_at(pvc, &["spec", "storageClassName"]).to_string()),
        Value::String(unset_if_empty(str_at(
            pvc,
            &["spec", "volumeAttributesClassName"],
        ))),
        age,
        Value::String(unset_if_empty(str_at(pvc, &["spec", "volumeMode"]))),
    ]
}

fn storage_class_cells(class: &Value, name: Value, age: Value) -> Vec<Value> {
    let default = str_at(
        class,
        &[
            "metadata",
            "annotations",
            "storageclass.kubernetes.io/is-default-class",
        ],
    ) == "true";
    let name = match (default, name.as_str()) {
        (true, Some(n)) => Value::String(format!("{n} (default)")),
        _ => name,
    };
    let expansion = class
        .pointer("/allowVolumeExpansion")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    vec![
        name,
        Value::String(str_at(class, &["provisioner"]).to_string()),
        Value::String(str_at(class, &["reclaimPolicy"]).to_string()),
        Value::String(str_at(class, &["volumeBindingMode"]).to_string()),
        Value::String(expansion.to_string()),
        age,
    ]
}

fn quota_texts(quota: &Value) -> (String, String) {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    if let Some(hard) = quota.pointer("/status/hard").and_then(Value::as_object) {
        // serde_json keeps keys sorted, which is the order kubectl prints them in.
        for (resource, limit) in hard {
            let used = quota
                .pointer("/status/used")
                .and_then(|u| u.get(resource))
                .map(quantity_text)
                .unwrap_or_else(|| "0".to_string());
            let entry = format!("{resource}: {used}/{}", quantity_text(limit));
            if resource.starts_with("limits.") {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
    }
    (requests.join(", "), limits.join(", "))
}

fn quantity_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---- workloads ----

fn containers_images(pod_spec: Option<&Value>) -> (String, String) {
    let containers = arr(pod_spec.and_then(|s| s.get("containers")));
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.get("image").and_then(Value::as_str).unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

fn controller_of(obj: &Value) -> String {
    for owner in arr(obj.pointer("/metadata/ownerReferences")) {
        if owner.get("controller").and_then(Value::as_bool) == Some(true) {
            let api_version = owner
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let kind = owner
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            let name = owner.get("name").and_then(Value::as_str).unwrap_or("");
            return match api_version.split_once('/') {
                Some((group, _)) => format!("{kind}.{group}/{name}"),
                None => format!("{kind}/{name}"),
            };
        }
    }
    "<none>".to_string()
}

fn job_cells(job: &Value, name: Value, age: Value, now: jiff::Timestamp) -> Vec<Value> {
    let succeeded = int_at(job, "/status/succeeded", 0);
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match job.pointer("/spec/parallelism").and_then(Value::as_i64) {
            Some(p) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |p: &str| {
        job.pointer(p)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    };
    let duration = match (time("/status/startTime"), time("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start).as_secs()),
        (Some(start), Some(end)) => human_duration(end.duration_since(start).as_secs()),
    };
    let status = if condition_true(job, "Complete") {
        "Complete"
    } else if condition_true(job, "Failed") {
        "Failed"
    } else if job
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else if condition_true(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if condition_true(job, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(job, "Suspended") {
        "Suspended"
    } else {
        "Running"
    };
    let (containers, images) = containers_images(job.pointer("/spec/template/spec"));
    vec![
        name,
        Value::String(status.to_string()),
        Value::String(completions),
        Value::String(duration),
        age,
        Value::String(containers),
        Value::String(images),
        Value::String(format_label_selector(job.pointer("/spec/selector"))),
    ]
}

fn hpa_targets(hpa: &Value) -> String {
    let specs = arr(hpa.pointer("/spec/metrics"));
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let current = arr(hpa.pointer("/status/currentMetrics"));
    let mut parts = Vec::new();
    for spec in specs {
        let kind = spec.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "Resource" && kind != "ContainerResource" {
            parts.push("<unknown>/<unknown>".to_string());
            continue;
        }
        let field = if kind == "Resource" {
            "resource"
        } else {
            "containerResource"
        };
        let name = spec
            .pointer(&format!("/{field}/name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let target = spec.pointer(&format!("/{field}/target"));
        let found = current
            .iter()
            .find(|c| c.pointer(&format!("/{field}/name")).and_then(Value::as_str) == Some(name));
        let text = if let Some(util) = target
            .and_then(|t| t.get("averageUtilization"))
            .and_then(Value::as_i64)
        {
            let now = found
                .and_then(|c| c.pointer(&format!("/{field}/current/averageUtilization")))
                .and_then(Value::as_i64)
                .map(|v| format!("{v}%"))
                .unwrap_or_else(|| "<unknown>".to_string());
            format!("{now}/{util}%")
        } else {
            let want = target
                .and_then(|t| t.get("averageValue").or_else(|| t.get("value")))
                .map(quantity_text)
                .unwrap_or_else(|| "<unknown>".to_string());
            let now = found
                .and_then(|c| c.pointer(&format!("/{field}/current/averageValue")))
                .map(quantity_text)
                .unwrap_or_else(|| "<unknown>".to_string());
            format!("{now}/{want}")
        };
        parts.push(format!("{name}: {text}"));
    }
    parts.join(", ")
}

// ---- helpers ----

/// `a=b,c=d` from a string map, `<none>` when empty.
pub fn format_labels(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A LabelSelector as text: `app=web,tier in (a,b),!legacy`; `<none>` when it selects
/// everything or is absent.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return "<none>".to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    for expr in arr(selector.get("matchExpressions")) {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = arr(expr.get("values"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let op = expr.get("operator").and_then(Value::as_str).unwrap_or("");
        parts.push(match op {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        });
    }
    if parts.is_empty() {
        "<none>".to_string()
    } else {
        parts.join(",")
    }
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = obj;
    for key in path {
        match cur.get(*key) {
            Some(v) => cur = v,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn int_at(obj: &Value, pointer: &str, default: i64) -> i64 {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn obj_len(v: Option<&Value>) -> usize {
    v.and_then(Value::as_object).map(Map::len).unwrap_or(0)
}

fn none_if_empty(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::resolve;

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("timestamp")
    }

    fn cells(kind: &str, obj: Value) -> Vec<Value> {
        let r = resolve(kind).expect("resource");
        let t = table(r, &[obj], IncludeObject::Metadata, now());
        t["rows"][0]["cells"].as_array().expect("cells").clone()
    }

    fn names(kind: &str) -> Vec<String> {
        let r = resolve(kind).expect("resource");
        let t = table(r, &[], IncludeObject::None, now());
        t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .filter(|c| c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(182), "3m2s");
        assert_eq!(human_duration(300), "5m");
        assert_eq!(human_duration(11 * 60 + 5), "11m");
        assert_eq!(human_duration(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(51 * 3600), "2d3h");
        assert_eq!(human_duration(48 * 3600), "2d");
        assert_eq!(human_duration(20 * 86400), "20d");
        assert_eq!(human_duration(3 * 365 * 86400 + 10 * 86400), "3y10d");
        assert_eq!(human_duration(9 * 365 * 86400), "9y");
        assert_eq!(age(None, now()), "<unknown>");
        assert_eq!(age(Some(&json!("2024-05-01T11:59:55Z")), now()), "5s");
    }

    #[test]
    fn table_shape_and_include_object() {
        let r = resolve("cm").expect("configmaps");
        let obj = json!({"metadata": {"name": "a", "namespace": "default"}, "data": {"x": "1", "y": "2"}});
        let t = table(
            r,
            std::slice::from_ref(&obj),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["rows"][0]["cells"], json!(["a", 2, "<unknown>"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "default");
        let full = table(r, std::slice::from_ref(&obj), IncludeObject::Object, now());
        assert_eq!(full["rows"][0]["object"]["kind"], "ConfigMap");
        assert_eq!(full["rows"][0]["object"]["data"]["y"], "2");
        let none = table(r, &[obj], IncludeObject::None, now());
        assert!(none["rows"][0].get("object").is_none());
        assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
        assert_eq!(IncludeObject::parse("bogus"), None);
    }

    #[test]
    fn pod_columns_and_running_pod() {
        assert_eq!(names("po"), ["Name", "Ready", "Status", "Restarts", "Age"]);
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.5",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}
                ]}
        });
        let c = cells("pods", pod);
        assert_eq!(
            c,
            json!([
                "web",
                "1/2",
                "Running",
                "2 (60s ago)",
                "3m",
                "10.244.0.5",
                "n1",
                "<none>",
                "<none>"
            ])
            .as_array()
            .expect("array")
            .clone()
        );
    }

    #[test]
    fn pod_status_strings() {
        let waiting = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending",
            "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        assert_eq!(pod_status(&waiting), "ImagePullBackOff");

        let init = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending",
            "initContainerStatuses": [{"name": "i", "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(pod_status(&init), "Init:0/1");

        let init_crash = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending",
            "initContainerStatuses": [{"name": "i", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&init_crash), "Init:CrashLoopBackOff");

        let init_failed = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending",
            "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 3}}}]}});
        assert_eq!(pod_status(&init_failed), "Init:ExitCode:3");

        let completed = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Succeeded",
            "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(pod_status(&completed), "Completed");

        let signal = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Failed",
            "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}});
        assert_eq!(pod_status(&signal), "Signal:9");

        let terminating = json!({"metadata": {"deletionTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(pod_status(&terminating), "Terminating");

        let evicted = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Failed", "reason": "Evicted"}});
        assert_eq!(pod_status(&evicted), "Evicted");

        let pending =
            json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        assert_eq!(pod_status(&pending), "Pending");

        let not_ready = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Running",
            "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(pod_status(&not_ready), "NotReady");

        let gated = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(pod_status(&gated), "SchedulingGated");
    }

    #[test]
    fn sidecar_counts_in_ready() {
        let pod = json!({"spec": {"initContainers": [{"name": "s", "restartPolicy": "Always"}],
            "containers": [{"name": "a"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}});
        let c = cells("po", pod);
        assert_eq!(c[1], "2/2");
        assert_eq!(c[2], "Running");
    }

    #[test]
    fn services() {
        assert_eq!(
            names("svc"),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age"
            ]
        );
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
            "selector": {"app": "web", "tier": "fe"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        let c = cells("svc", svc);
        assert_eq!(c[1], "NodePort");
        assert_eq!(c[2], "10.96.0.20");
        assert_eq!(c[3], "<none>");
        assert_eq!(c[4], "80:30080/TCP,53/UDP");
        assert_eq!(c[6], "app=web,tier=fe");
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.21"}});
        assert_eq!(cells("svc", lb)[3], "<pending>");
        let ext = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "example.org"}});
        let c = cells("svc", ext);
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], "example.org");
        assert_eq!(c[4], "<none>");
    }

    #[test]
    fn deployments_and_replicasets() {
        assert_eq!(
            names("deploy"),
            ["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        let d = json!({"metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]},
                                     {"key": "legacy", "operator": "DoesNotExist"}]},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let c = cells("deploy", d);
        assert_eq!(c[1], "2/3");
        assert_eq!(c[2], 3);
        assert_eq!(c[3], 2);
        assert_eq!(c[5], "nginx,side");
        assert_eq!(c[6], "nginx:1.25,busybox");
        assert_eq!(c[7], "app=web,env in (a,b),!legacy");
        let rs = json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2}, "status": {"replicas": 2}});
        let c = cells("rs", rs);
        assert_eq!(c[1], 2);
        assert_eq!(c[2], 2);
        assert_eq!(c[3], 0);
        assert_eq!(c[7], "<none>");
    }

    #[test]
    fn nodes() {
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "False"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "skiff://0.1"}}});
        let c = cells("no", node);
        assert_eq!(c[1], "NotReady,SchedulingDisabled");
        assert_eq!(c[2], "control-plane,worker");
        assert_eq!(c[4], "v1.33.0");
        assert_eq!(c[5], "192.168.1.2");
        assert_eq!(c[6], "<none>");
        let bare = json!({"metadata": {"name": "n2"}});
        let c = cells("no", bare);
        assert_eq!(c[1], "Unknown");
        assert_eq!(c[2], "<none>");
        assert_eq!(c[7], "<unknown>");
    }

    #[test]
    fn jobs_and_cronjobs() {
        let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 3},
            "status": {"succeeded": 3, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:01:05Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        let c = cells("jobs", job);
        assert_eq!(c[1], "Complete");
        assert_eq!(c[2], "3/3");
        assert_eq!(c[3], "65s");
        let running = json!({"metadata": {"name": "j"}, "spec": {"parallelism": 2}, "status": {}});
        let c = cells("jobs", running);
        assert_eq!(c[1], "Running");
        assert_eq!(c[2], "0/1 of 2");
        assert_eq!(c[3], "");
        let cj =
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *"}, "status": {}});
        let c = cells("cj", cj);
        assert_eq!(c[1], "*/5 * * * *");
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], "False");
        assert_eq!(c[4], 0);
        assert_eq!(c[5], "<none>");
    }

    #[test]
    fn small_kinds() {
        let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells("secrets", secret)[1..3],
            [json!("kubernetes.io/tls"), json!(2)]
        );
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(cells("ns", ns)[1], "Active");
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cells("ep", ep)[1],
            "10.0.0.1:80,10.0.0.1:443,10.0.0.2:80 + 1 more..."
        );
        let quota = json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "1"}}});
        let c = cells("quota", quota);
        assert_eq!(c[2], "pods: 1/10");
        assert_eq!(c[3], "limits.cpu: 0/2");
        let ev = json!({"metadata": {"name": "e1"}, "type": "Normal", "reason": "Scheduled", "message": " hi ",
            "involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "default-scheduler"},
            "firstTimestamp": "2024-05-01T11:59:00Z", "lastTimestamp": "2024-05-01T11:59:30Z", "count": 2});
        let c = cells("ev", ev);
        assert_eq!(c[0], "30s");
        assert_eq!(c[3], "pod/web");
        assert_eq!(c[5], "default-scheduler");
        assert_eq!(c[6], "hi");
        assert_eq!(c[7], "60s");
        assert_eq!(c[8], 2);
        let cr = json!({"metadata": {"name": "r", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true}]}, "revision": 4});
        assert_eq!(
            cells("controllerrevisions", cr)[1..3],
            [json!("daemonset.apps/ds"), json!(4)]
        );
        let unknown = json!({"metadata": {"name": "l", "creationTimestamp": "2024-05-01T11:00:00Z"}, "spec": {"holderIdentity": "me"}});
        assert_eq!(cells("leases", unknown)[1..3], [json!("me"), json!("60m")]);
        let lr = json!({"metadata": {"name": "l", "creationTimestamp": "2024-05-01T11:00:00Z"}});
        assert_eq!(cells("limits", lr)[1], "2024-05-01T11:00:00Z");
    }
}
