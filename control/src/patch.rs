//! The patch formats the API server accepts on `PATCH`, as pure functions over JSON values:
//! JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes' strategic merge patch,
//! which `kubectl apply`, `patch`, `edit`, `label`, `annotate` and `scale` send.
//!
//! Strategic merge differs from a merge patch in lists: a list Kubernetes declares mergeable
//! (`patchStrategy: merge`, e.g. a pod's containers, keyed by `name`) is merged element by
//! element instead of being replaced, and the patch can carry directives (`$patch`,
//! `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`). The table of mergeable
//! lists below comes from the `patchStrategy`/`patchMergeKey` tags of `k8s.io/api`; kinds it
//! does not know get merge-patch semantics for lists (they replace), as Kubernetes gives custom
//! resources. Directives never reach the result.

use serde_json::{Map, Value};

/// A `PATCH` request's format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`: a list of RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7386, lists replace.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' list-aware merge.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply, not implemented here.
    Apply,
}

impl PatchType {
    /// The patch type of a request's `Content-Type`, parameters (`; charset=utf-8`) ignored.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media_type = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The media type a client sends for this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }

    fn name(self) -> &'static str {
        match self {
            PatchType::Json => "json",
            PatchType::Merge => "merge",
            PatchType::StrategicMerge => "strategic merge",
            PatchType::Apply => "apply",
        }
    }
}

/// Why a patch could not be applied. Paths are field paths into the patch (`spec.containers[1]`:
/// the second element of the patch's list).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("malformed {patch_type} patch: {source}")]
    Malformed {
        patch_type: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{patch_type} patch must be a JSON object, not {found}")]
    NotAnObject {
        patch_type: &'static str,
        found: &'static str,
    },
    #[error("the object being patched is {found}, not a JSON object")]
    OriginalNotAnObject { found: &'static str },
    #[error("json patch operation {index} ({op} {path}) failed: {reason}")]
    JsonPatchOperation {
        index: usize,
        op: &'static str,
        path: String,
        reason: String,
    },
    #[error("{path}: unknown $patch directive {value}; expected replace, delete or merge")]
    UnknownDirective { path: String, value: String },
    #[error("{path}: missing merge key {key:?}")]
    MissingMergeKey { path: String, key: String },
    #[error("{path}: {reason}")]
    InvalidDirective { path: String, reason: String },
    #[error("{path}: {reason}")]
    InvalidList { path: String, reason: String },
    #[error("{patch_type} patches are not supported")]
    Unsupported { patch_type: &'static str },
}

impl PatchError {
    /// The HTTP status Kubernetes answers with: 400 for a patch it cannot read, 422 for one it
    /// read but cannot apply to this object, 415 for an unsupported patch type.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::Malformed { .. }
            | PatchError::NotAnObject { .. }
            | PatchError::UnknownDirective { .. }
            | PatchError::InvalidDirective { .. } => 400,
            PatchError::OriginalNotAnObject { .. }
            | PatchError::JsonPatchOperation { .. }
            | PatchError::MissingMergeKey { .. }
            | PatchError::InvalidList { .. } => 422,
            PatchError::Unsupported { .. } => 415,
        }
    }
}

/// Applies `patch` (the request body) of `patch_type` to `original`, an object of `kind`
/// (`Deployment`, `Pod`, …; it selects the strategic merge table). The original is not
/// touched; the result is the patched copy.
pub fn apply_patch(
    original: &Value,
    patch: &[u8],
    patch_type: PatchType,
    kind: &str,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json_patch_apply(original, patch),
        PatchType::Merge => {
            let patch = parse(patch, patch_type)?;
            if !patch.is_object() {
                return Err(PatchError::NotAnObject {
                    patch_type: patch_type.name(),
                    found: type_name(&patch),
                });
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::StrategicMerge => {
            let patch = match parse(patch, patch_type)? {
                Value::Object(map) => map,
                other => {
                    return Err(PatchError::NotAnObject {
                        patch_type: patch_type.name(),
                        found: type_name(&other),
                    })
                }
            };
            let Value::Object(doc) = original else {
                return Err(PatchError::OriginalNotAnObject {
                    found: type_name(original),
                });
            };
            let merged = merge_map(doc.clone(), patch, Schema::root(kind), "")?;
            Ok(Value::Object(merged))
        }
        PatchType::Apply => Err(PatchError::Unsupported {
            patch_type: patch_type.name(),
        }),
    }
}

fn parse(bytes: &[u8], patch_type: PatchType) -> Result<Value, PatchError> {
    serde_json::from_slice(bytes).map_err(|source| PatchError::Malformed {
        patch_type: patch_type.name(),
        source,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn json_patch_apply(original: &Value, bytes: &[u8]) -> Result<Value, PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_slice(bytes).map_err(|source| PatchError::Malformed {
            patch_type: PatchType::Json.name(),
            source,
        })?;
    let mut doc = original.clone();
    // The copy is thrown away on failure, so the cheaper non-transactional variant will do.
    json_patch::patch_unsafe(&mut doc, &patch.0).map_err(|e| {
        let op = match patch.0.get(e.operation) {
            Some(json_patch::PatchOperation::Add(_)) => "add",
            Some(json_patch::PatchOperation::Remove(_)) => "remove",
            Some(json_patch::PatchOperation::Replace(_)) => "replace",
            Some(json_patch::PatchOperation::Move(_)) => "move",
            Some(json_patch::PatchOperation::Copy(_)) => "copy",
            Some(json_patch::PatchOperation::Test(_)) => "test",
            None => "unknown",
        };
        PatchError::JsonPatchOperation {
            index: e.operation,
            op,
            path: e.path.to_string(),
            reason: e.kind.to_string(),
        }
    })?;
    Ok(doc)
}

// ---------------------------------------------------------------------------------------------
// Patch metadata: which lists merge, by which key.

/// Where in an object the merge currently is, as far as patch metadata goes. Only the types
/// that hold (or lead to) mergeable lists are told apart; everything else is `Opaque`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// No patch metadata below: maps merge, lists replace.
    Opaque,
    Root(Kind),
    ObjectMeta,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    /// A spec with a pod `template` (Deployment, ReplicaSet, …, Job, a job template's spec).
    WorkloadSpec,
    CronJobSpec,
    JobTemplateSpec,
    /// A status whose `conditions` merge by `type`.
    ConditionsStatus,
    ServiceSpec,
    NodeSpec,
    NodeStatus,
    PodDisruptionBudgetSpec,
}

/// Kinds grouped by the shape of their patch metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pod,
    PodTemplate,
    Workload,
    CronJob,
    Service,
    Node,
    ServiceAccount,
    PodDisruptionBudget,
    /// Only a `status.conditions` list besides the metadata.
    WithConditions,
    /// Only the metadata.
    Plain,
}

impl Schema {
    fn root(kind: &str) -> Schema {
        let kind = match kind {
            "Pod" => Kind::Pod,
            "PodTemplate" => Kind::PodTemplate,
            "Deployment"
            | "ReplicaSet"
            | "DaemonSet"
            | "StatefulSet"
            | "ReplicationController"
            | "Job" => Kind::Workload,
            "CronJob" => Kind::CronJob,
            "Service" => Kind::Service,
            "Node" => Kind::Node,
            "ServiceAccount" => Kind::ServiceAccount,
            "PodDisruptionBudget" => Kind::PodDisruptionBudget,
            "Namespace" | "PersistentVolumeClaim" | "HorizontalPodAutoscaler" => {
                Kind::WithConditions
            }
            "ConfigMap" | "Secret" | "Endpoints" | "EndpointSlice" | "Event" | "LimitRange"
            | "ResourceQuota" | "PersistentVolume" | "StorageClass" | "Role" | "ClusterRole"
            | "RoleBinding" | "ClusterRoleBinding" | "Lease" | "PriorityClass" | "Ingress"
            | "IngressClass" | "NetworkPolicy" | "ControllerRevision" | "RuntimeClass" => {
                Kind::Plain
            }
            _ => return Schema::Opaque,
        };
        Schema::Root(kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    Replace,
    /// Merge; by this key for lists of objects, by value for lists of scalars.
    Merge(Option<&'static str>),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    list: ListStrategy,
    /// `patchStrategy: replace` on a map: the patch's map replaces the object's.
    replace_map: bool,
    schema: Schema,
}

impl Field {
    fn opaque() -> Field {
        Field::to(Schema::Opaque)
    }
    fn to(schema: Schema) -> Field {
        Field {
            list: ListStrategy::Replace,
            replace_map: false,
            schema,
        }
    }
    fn merge_by(key: &'static str, schema: Schema) -> Field {
        Field {
            list: ListStrategy::Merge(Some(key)),
            replace_map: false,
            schema,
        }
    }
    fn merge_values() -> Field {
        Field {
            list: ListStrategy::Merge(None),
            replace_map: false,
            schema: Schema::Opaque,
        }
    }
    fn merge_key(&self) -> Option<&'static str> {
        match self.list {
            ListStrategy::Merge(key) => key,
            ListStrategy::Replace => None,
        }
    }
}

/// The patch metadata of `key` inside `schema`.
fn field(schema: Schema, key: &str) -> Field {
    use Schema as S;
    match (schema, key) {
        (S::Root(_), "metadata") => Field::to(S::ObjectMeta),
        (S::Root(Kind::Pod), "spec") => Field::to(S::PodSpec),
        (S::Root(Kind::Pod), "status") => Field::to(S::PodStatus),
        (S::Root(Kind::PodTemplate), "template") => Field::to(S::PodTemplateSpec),
        (S::Root(Kind::Workload), "spec") => Field::to(S::WorkloadSpec),
        (S::Root(Kind::CronJob), "spec") => Field::to(S::CronJobSpec),
        (S::Root(Kind::Service), "spec") => Field::to(S::ServiceSpec),
        (S::Root(Kind::Node), "spec") => Field::to(S::NodeSpec),
        (S::Root(Kind::Node), "status") => Field::to(S::NodeStatus),
        (S::Root(Kind::ServiceAccount), "secrets") => Field::merge_by("name", S::Opaque),
        (S::Root(Kind::PodDisruptionBudget), "spec") => Field::to(S::PodDisruptionBudgetSpec),
        (
            S::Root(
                Kind::Workload | Kind::Service | Kind::PodDisruptionBudget | Kind::WithConditions,
            ),
            "status",
        ) => Field::to(S::ConditionsStatus),

        (S::ObjectMeta, "finalizers") => Field::merge_values(),
        (S::ObjectMeta, "ownerReferences") => Field::merge_by("uid", S::Opaque),

        (S::PodTemplateSpec | S::JobTemplateSpec, "metadata") => Field::to(S::ObjectMeta),
        (S::PodTemplateSpec, "spec") => Field::to(S::PodSpec),
        (S::JobTemplateSpec, "spec") => Field::to(S::WorkloadSpec),
        (S::WorkloadSpec, "template") => Field::to(S::PodTemplateSpec),
        (S::CronJobSpec, "jobTemplate") => Field::to(S::JobTemplateSpec),

        (S::PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
            Field::merge_by("name", S::Container)
        }
        (S::PodSpec, "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims") => {
            Field::merge_by("name", S::Opaque)
        }
        (S::PodSpec, "hostAliases") => Field::merge_by("ip", S::Opaque),
        (S::PodSpec, "topologySpreadConstraints") => Field::merge_by("topologyKey", S::Opaque),

        (S::Container, "ports") => Field::merge_by("containerPort", S::Opaque),
        (S::Container, "env") => Field::merge_by("name", S::Opaque),
        (S::Container, "volumeMounts") => Field::merge_by("mountPath", S::Opaque),
        (S::Container, "volumeDevices") => Field::merge_by("devicePath", S::Opaque),

        (S::PodStatus | S::ConditionsStatus | S::NodeStatus, "conditions") => {
            Field::merge_by("type", S::Opaque)
        }
        (S::PodStatus, "podIPs" | "hostIPs") => Field::merge_by("ip", S::Opaque),
        (S::PodStatus, "resourceClaimStatuses") => Field::merge_by("name", S::Opaque),

        (S::ServiceSpec, "ports") => Field::merge_by("port", S::Opaque),
        (S::NodeSpec, "podCIDRs") => Field::merge_values(),
        (S::NodeStatus, "addresses") => Field::merge_by("type", S::Opaque),
        (S::PodDisruptionBudgetSpec, "selector") => Field {
            replace_map: true,
            ..Field::opaque()
        },
        _ => Field::opaque(),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "patch".to_string()
    } else {
        path.to_string()
    }
}

fn unknown_directive(path: &str, value: &Value) -> PatchError {
    PatchError::UnknownDirective {
        path: shown(path),
        value: value.to_string(),
    }
}

fn missing_key(path: &str, key: &str) -> PatchError {
    PatchError::MissingMergeKey {
        path: shown(path),
        key: key.to_string(),
    }
}

fn invalid_directive(path: &str, reason: impl Into<String>) -> PatchError {
    PatchError::InvalidDirective {
        path: shown(path),
        reason: reason.into(),
    }
}

fn is_delete_directive(map: &Map<String, Value>) -> bool {
    map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

/// Merges `patch` into `original`, both maps of type `schema` found at `path`. Directives go
/// first: `$patch`, then `$retainKeys` (it clears fields before the patch sets others), then
/// deletions from scalar lists and the ordered merges, so the plain fields merge last.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            // The patch's map, cleaned of its own directives, is the result.
            Some("replace") => return merge_map(Map::new(), patch, schema, path),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => return Err(unknown_directive(path, &directive)),
        }
    }

    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        let retain_path = child_path(path, RETAIN_KEYS);
        let keys: Option<Vec<&str>> = retain
            .as_array()
            .and_then(|list| list.iter().map(Value::as_str).collect());
        let Some(keys) = keys else {
            return Err(invalid_directive(
                &retain_path,
                "must be a list of field names",
            ));
        };
        for (key, value) in &patch {
            let directive =
                key.starts_with(SET_ELEMENT_ORDER) || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
            if !value.is_null() && !directive && !keys.contains(&key.as_str()) {
                return Err(invalid_directive(
                    &retain_path,
                    format!("the patch sets {key:?}, which the list does not retain"),
                ));
            }
        }
        original.retain(|key, _| keys.contains(&key.as_str()));
    }

    let deletions: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(DELETE_FROM_PRIMITIVE_LIST))
        .cloned()
        .collect();
    for key in deletions {
        let Some(values) = patch.remove(&key) else {
            continue;
        };
        let directive_path = child_path(path, &key);
        let name = &key[DELETE_FROM_PRIMITIVE_LIST.len()..];
        if name.is_empty() {
            return Err(invalid_directive(&directive_path, "names no list"));
        }
        let Value::Array(values) = values else {
            return Err(invalid_directive(
                &directive_path,
                "must be a list of the values to delete",
            ));
        };
        if let Some(Value::Array(list)) = original.get_mut(name) {
            list.retain(|v| !values.contains(v));
        }
    }

    let orders: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in orders {
        let Some(order) = patch.remove(&key) else {
            continue;
        };
        let name = key[SET_ELEMENT_ORDER.len()..].to_string();
        merge_ordered_list(&mut original, &mut patch, schema, path, &key, &name, order)?;
    }

    for (key, patch_value) in patch {
        let field_path = child_path(path, &key);
        let current = original.remove(&key);
        if patch_value.is_null() {
            continue;
        }
        let meta = field(schema, &key);
        let merged = match (current, patch_value) {
            (_, Value::Object(p)) if is_delete_directive(&p) => continue,
            (Some(Value::Object(o)), Value::Object(p)) if !meta.replace_map => {
                Value::Object(merge_map(o, p, meta.schema, &field_path)?)
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                Value::Array(merge_list(o, p, &meta, &field_path)?)
            }
            // Absent, of another type, or replaced by strategy: the patch's value, cleaned.
            (_, Value::Object(p)) => {
                Value::Object(merge_map(Map::new(), p, meta.schema, &field_path)?)
            }
            (_, Value::Array(p)) => Value::Array(merge_list(Vec::new(), p, &meta, &field_path)?),
            (_, scalar) => scalar,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// Merges the list `name` under a `$setElementOrder/name` directive and puts its elements in
/// the order the directive gives; elements it does not name (the server's own) keep their
/// place relative to the others as well as they can.
fn merge_ordered_list(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
    path: &str,
    directive: &str,
    name: &str,
    order: Value,
) -> Result<(), PatchError> {
    let order_path = child_path(path, directive);
    let list_path = child_path(path, name);
    if name.is_empty() {
        return Err(invalid_directive(&order_path, "names no list"));
    }
    let Value::Array(order) = order else {
        return Err(invalid_directive(&order_path, "must be a list"));
    };
    let meta = field(schema, name);
    if meta.list == ListStrategy::Replace {
        // A list replaced whole is already in the patch's order; the patch list (if any) is
        // merged with the other fields.
        return Ok(());
    }
    let key = meta.merge_key();
    let mut order_ids = Vec::with_capacity(order.len());
    for (i, item) in order.iter().enumerate() {
        let id = element_id(item, key)
            .ok_or_else(|| missing_key(&index_path(&order_path, i), key.unwrap_or_default()))?;
        order_ids.push(id);
    }

    let original_list = match original.remove(name) {
        Some(Value::Array(list)) => Some(list),
        Some(other) => {
            // Not a list: the patch's list, if any, replaces it below; else it stays.
            original.insert(name.to_string(), other);
            None
        }
        None => None,
    };
    let patch_list = match patch.remove(name) {
        Some(Value::Array(list)) => Some(list),
        Some(other) => {
            return Err(PatchError::InvalidList {
                path: list_path,
                reason: format!(
                    "expected a list next to {directive}, got {}",
                    type_name(&other)
                ),
            })
        }
        None => None,
    };
    if let Some(list) = &patch_list {
        check_order(list, &order_ids, key, &list_path, &order_path)?;
    }
    let server_ids: Vec<Value> = original_list
        .iter()
        .flatten()
        .filter_map(|e| element_id(e, key))
        .collect();
    let merged = match (original_list, patch_list) {
        (Some(o), Some(p)) => merge_list(o, p, &meta, &list_path)?,
        (Some(o), None) => o,
        (None, Some(p)) => merge_list(Vec::new(), p, &meta, &list_path)?,
        (None, None) => return Ok(()),
    };
    let ordered = normalize_order(merged, &order_ids, &server_ids, key);
    original.insert(name.to_string(), Value::Array(ordered));
    Ok(())
}

/// The patch list must name its elements in the order `$setElementOrder` does (it may name
/// fewer); anything else is a client bug Kubernetes reports rather than guesses at.
fn check_order(
    list: &[Value],
    order_ids: &[Value],
    key: Option<&'static str>,
    list_path: &str,
    order_path: &str,
) -> Result<(), PatchError> {
    let mut cursor = 0;
    for (i, item) in list.iter().enumerate() {
        if item.get(DIRECTIVE).is_some() {
            continue;
        }
        let id = element_id(item, key)
            .ok_or_else(|| missing_key(&index_path(list_path, i), key.unwrap_or_default()))?;
        match order_ids[cursor..].iter().position(|o| *o == id) {
            Some(offset) => cursor += offset + 1,
            None => {
                return Err(invalid_directive(
                    order_path,
                    format!("does not list {id} where the patch list has it"),
                ))
            }
        }
    }
    Ok(())
}

/// An element's identity in a list: its merge key's value, or the element itself in a list of
/// scalars.
fn element_id(element: &Value, key: Option<&str>) -> Option<Value> {
    match key {
        Some(key) => element.get(key).cloned(),
        None => Some(element.clone()),
    }
}

/// Merges two lists by the field's strategy.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &Field,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    match meta.list {
        ListStrategy::Replace => {
            let mut out = Vec::with_capacity(patch.len());
            for (i, item) in patch.into_iter().enumerate() {
                let element_path = index_path(path, i);
                let item = match item {
                    Value::Object(mut element) => match element.remove(DIRECTIVE) {
                        None => Value::Object(element),
                        // Element directives mean nothing in a list that is replaced whole
                        // (a client that thinks the list merges sent them): the element goes.
                        Some(d) if matches!(d.as_str(), Some("delete" | "replace")) => continue,
                        Some(d) if d.as_str() == Some("merge") => Value::Object(element),
                        Some(d) => return Err(unknown_directive(&element_path, &d)),
                    },
                    other => other,
                };
                out.push(clean(item, meta.schema, &element_path)?);
            }
            Ok(out)
        }
        ListStrategy::Merge(key) => merge_merging_list(original, patch, key, meta.schema, path),
    }
}

/// A patch value as it lands in the object where nothing is there to merge with: directives
/// applied to nothing and removed, nulls dropped.
fn clean(value: Value, schema: Schema, path: &str) -> Result<Value, PatchError> {
    match value {
        Value::Object(map) => Ok(Value::Object(merge_map(Map::new(), map, schema, path)?)),
        other => Ok(other),
    }
}

fn merge_merging_list(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&'static str>,
    schema: Schema,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let any_object = original.iter().chain(&patch).any(Value::is_object);
    let all_objects = original.iter().chain(&patch).all(Value::is_object);
    if any_object && !all_objects {
        return Err(PatchError::InvalidList {
            path: shown(path),
            reason: "a merging list must hold only objects or only scalars".into(),
        });
    }

    if !any_object {
        // Scalars (finalizers, podCIDRs): a set union.
        let server_ids = original.clone();
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.into_iter().chain(patch.iter().cloned()) {
            if !merged.contains(&v) {
                merged.push(v);
            }
        }
        return Ok(normalize_order(merged, &patch, &server_ids, None));
    }

    let Some(key) = key else {
        return Err(PatchError::InvalidList {
            path: shown(path),
            reason: "cannot merge a list of objects that has no merge key".into(),
        });
    };

    let mut replace = false;
    let mut elements: Vec<(usize, Map<String, Value>)> = Vec::with_capacity(patch.len());
    for (i, item) in patch.into_iter().enumerate() {
        let Value::Object(mut element) = item else {
            continue; // unreachable: all_objects
        };
        let element_path = index_path(path, i);
        let Some(directive) = element.remove(DIRECTIVE) else {
            elements.push((i, element));
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let id = element
                    .get(key)
                    .ok_or_else(|| missing_key(&element_path, key))?;
                original.retain(|o| o.get(key) != Some(id));
            }
            // `{"$patch": "replace"}` among the elements: the list becomes the others.
            Some("replace") => replace = true,
            Some("merge") => {
                if element.contains_key(key) {
                    elements.push((i, element));
                }
            }
            _ => return Err(unknown_directive(&element_path, &directive)),
        }
    }
    if replace {
        original.clear();
    }

    let server_ids: Vec<Value> = original
        .iter()
        .filter_map(|o| o.get(key).cloned())
        .collect();
    let mut patch_ids = Vec::with_capacity(elements.len());
    for (i, element) in elements {
        let element_path = index_path(path, i);
        let id = element
            .get(key)
            .cloned()
            .ok_or_else(|| missing_key(&element_path, key))?;
        match original.iter().position(|o| o.get(key) == Some(&id)) {
            Some(pos) => {
                let existing = match std::mem::take(&mut original[pos]) {
                    Value::Object(map) => map,
                    _ => Map::new(), // unreachable: all_objects
                };
                original[pos] = Value::Object(merge_map(existing, element, schema, &element_path)?);
            }
            None => {
                let added = merge_map(Map::new(), element, schema, &element_path)?;
                original.push(Value::Object(added));
            }
        }
        patch_ids.push(id);
    }
    Ok(normalize_order(
        original,
        &patch_ids,
        &server_ids,
        Some(key),
    ))
}

/// Orders a merged list as Kubernetes does: the elements the patch names in the patch's order,
/// the server's other elements in their old order, the two interleaved where the old order
/// relates them. An element new to the list is not in the old order, so it lands before the
/// server-only elements that follow it in the patch's sequence (Kubernetes prepends new
/// elements unless the client sends `$setElementOrder`, as kubectl apply does).
fn normalize_order(
    merged: Vec<Value>,
    patch_ids: &[Value],
    server_ids: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let position = |ids: &[Value], v: &Value| -> Option<usize> {
        let id = element_id(v, key)?;
        ids.iter().position(|x| *x == id)
    };
    let (mut from_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position(patch_ids, v).is_some());
    from_patch.sort_by_key(|v| position(patch_ids, v));

    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => matches!(
                (position(server_ids, l), position(server_ids, r)),
                (Some(li), Some(ri)) if li < ri
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(original: Value, patch: Value, kind: &str) -> Result<Value, PatchError> {
        apply_patch(
            &original,
            patch.to_string().as_bytes(),
            PatchType::StrategicMerge,
            kind,
        )
    }

    fn smp_ok(original: Value, patch: Value, kind: &str) -> Value {
        match smp(original, patch, kind) {
            Ok(v) => v,
            Err(e) => panic!("patch failed: {e}"),
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.25",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "env": [
                                    {"name": "MODE", "value": "prod"},
                                    {"name": "LOG", "value": "info"}
                                ]
                            },
                            {"name": "sidecar", "image": "busybox:1.36"}
                        ],
                        "volumes": [{"name": "cache", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    fn containers(obj: &Value) -> &Vec<Value> {
        obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .expect("a list")
            .iter()
            .map(|v| v["name"].as_str().expect("a name"))
            .collect()
    }

    fn assert_no_directives(v: &Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    assert!(!k.starts_with('$'), "directive {k} left in result");
                    assert_no_directives(v);
                }
            }
            Value::Array(list) => list.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("Application/Strategic-Merge-Patch+JSON"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        for t in [
            PatchType::Json,
            PatchType::Merge,
            PatchType::StrategicMerge,
            PatchType::Apply,
        ] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn kubectl_apply_three_way_patch_on_a_deployment() {
        // What kubectl apply sends after the manifest changed the image and added a port.
        let patch = json!({
            "metadata": {
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}"
                }
            },
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                        "containers": [{
                            "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                            "image": "nginx:1.27",
                            "name": "web",
                            "ports": [{"containerPort": 443}]
                        }]
                    }
                }
            }
        });
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_no_directives(&out);
        let c = containers(&out);
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["web", "sidecar"]
        );
        assert_eq!(c[0]["image"], "nginx:1.27");
        assert_eq!(
            c[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}])
        );
        // Untouched fields survive.
        assert_eq!(c[0]["env"][1], json!({"name": "LOG", "value": "info"}));
        assert_eq!(c[1]["image"], "busybox:1.36");
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{\"kind\":\"Deployment\"}"
        );
    }

    #[test]
    fn set_element_order_reorders_and_keeps_server_only_elements() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]
        }}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["sidecar", "web"]
        );

        // A container added through apply lands where the manifest has it.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "proxy"}, {"name": "sidecar"}],
            "containers": [{"name": "proxy", "image": "envoy:1"}]
        }}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["web", "proxy", "sidecar"]
        );

        // A server-only container the order does not name stays, after the ones it precedes.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}]
        }}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["web", "sidecar"]
        );
    }

    #[test]
    fn set_element_order_must_match_the_patch_list() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"name": "sidecar", "image": "b:2"}, {"name": "web", "image": "a:2"}]
        }}}});
        let err = smp(deployment(), patch, "Deployment").unwrap_err();
        assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err}");
        assert_eq!(err.status_code(), 400);
        assert!(
            err.to_string()
                .starts_with("spec.template.spec.$setElementOrder/containers:"),
            "{err}"
        );
    }

    #[test]
    fn null_removes_a_label() {
        let patch = json!({"metadata": {"labels": {"tier": null, "track": "stable"}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "track": "stable"})
        );
        // A null for a field that is not there is ignored, not stored.
        let patch =
            json!({"metadata": {"annotations": {"absent": null}}, "spec": {"paused": null}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert!(out["metadata"]["annotations"].get("absent").is_none());
        assert!(out["spec"].get("paused").is_none());
    }

    #[test]
    fn patch_delete_removes_a_container() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "sidecar", "$patch": "delete"}]
        }}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["web"]
        );
        assert_no_directives(&out);
    }

    #[test]
    fn patch_delete_needs_the_merge_key() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "web", "image": "x:1"}, {"$patch": "delete"}]
        }}}});
        let err = smp(deployment(), patch, "Deployment").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.template.spec.containers[1]: missing merge key \"name\""
        );
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn list_element_without_merge_key_is_rejected() {
        let pod = json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "x"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a"}, {"image": "y"}]}});
        let err = smp(pod, patch, "Pod").unwrap_err();
        assert!(matches!(err, PatchError::MissingMergeKey { .. }));
        assert_eq!(
            err.to_string(),
            "spec.containers[1]: missing merge key \"name\""
        );
    }

    #[test]
    fn delete_from_primitive_list_finalizers() {
        let obj = json!({"metadata": {"name": "x", "finalizers": ["a/one", "b/two", "c/three"]}});
        let patch =
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b/two", "z/none"]}});
        let out = smp_ok(obj.clone(), patch, "ConfigMap");
        assert_eq!(out["metadata"]["finalizers"], json!(["a/one", "c/three"]));
        assert_no_directives(&out);

        // kubectl apply sends the order too; deleting and adding in one patch.
        let patch = json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": ["a/one"],
            "$setElementOrder/finalizers": ["b/two", "d/four"],
            "finalizers": ["d/four"]
        }});
        let out = smp_ok(obj, patch, "ConfigMap");
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["b/two", "d/four", "c/three"])
        );

        // Deleting from a list that is not there is a no-op.
        let out = smp_ok(
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
            "Pod",
        );
        assert_eq!(out, json!({"metadata": {}}));
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let obj = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp_ok(
            obj,
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            "Secret",
        );
        // "a" keeps its place before "b"; the new "c" follows "b" as in the patch.
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    }

    #[test]
    fn service_ports_merge_by_port() {
        let svc = json!({
            "kind": "Service",
            "spec": {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
                ]
            }
        });
        let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}, {"port": 9090, "name": "metrics"}]}});
        let out = smp_ok(svc, patch, "Service");
        let ports = out["spec"]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 3);
        let https = ports.iter().find(|p| p["port"] == 443).unwrap();
        assert_eq!(
            https,
            &json!({"name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP"})
        );
        assert!(ports
            .iter()
            .any(|p| p["port"] == 80 && p["targetPort"] == 8080));
        assert!(ports.iter().any(|p| p["port"] == 9090));
        assert_eq!(out["spec"]["selector"], json!({"app": "web"}));
    }

    #[test]
    fn env_merges_by_name() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{
            "name": "web",
            "env": [{"name": "LOG", "value": "debug"}, {"name": "NEW", "value": "1"}]
        }]}}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        let env = &containers(&out)[0]["env"];
        let get = |name: &str| {
            env.as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        assert_eq!(env.as_array().unwrap().len(), 3);
        assert_eq!(get("MODE"), Some(json!("prod")));
        assert_eq!(get("LOG"), Some(json!("debug")));
        assert_eq!(get("NEW"), Some(json!("1")));
        // Without $setElementOrder: patched entries in patch order, server-only entries
        // before the patched ones they preceded.
        assert_eq!(names(env), ["MODE", "LOG", "NEW"]);
    }

    #[test]
    fn new_elements_are_prepended_without_order_directive() {
        // kubectl patch adding a container: Kubernetes' documented result lists it first.
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "proxy", "image": "envoy:1"}
        ]}}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["proxy", "web", "sidecar"]
        );
    }

    #[test]
    fn kubectl_edit_style_two_way_patch() {
        // Remove the sidecar, change an env value, delete a volume, all in one patch.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "$setElementOrder/volumes": [],
            "containers": [
                {
                    "$setElementOrder/env": [{"name": "MODE"}, {"name": "LOG"}],
                    "env": [{"name": "MODE", "value": "staging"}],
                    "name": "web"
                },
                {"$patch": "delete", "name": "sidecar"}
            ],
            "volumes": [{"$patch": "delete", "name": "cache"}]
        }}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_no_directives(&out);
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(names(&spec["containers"]), ["web"]);
        assert_eq!(
            spec["containers"][0]["env"],
            json!([{"name": "MODE", "value": "staging"}, {"name": "LOG", "value": "info"}])
        );
        assert_eq!(spec["volumes"], json!([]));
    }

    #[test]
    fn patch_replace_on_lists_and_maps() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"},
            {"name": "only", "image": "x:1"}
        ]}}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "x:1"}])
        );

        let patch = json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(out["metadata"]["labels"], json!({"new": "1"}));
    }

    #[test]
    fn patch_delete_and_merge_on_maps() {
        let patch = json!({"spec": {"strategy": {"$patch": "delete"}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert!(out["spec"].get("strategy").is_none());

        let patch = json!({"metadata": {"labels": {"$patch": "merge", "x": "y"}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "tier": "front", "x": "y"})
        );

        // Deleting the whole object leaves nothing.
        let out = smp_ok(deployment(), json!({"$patch": "delete"}), "Deployment");
        assert_eq!(out, json!({}));
    }

    #[test]
    fn unknown_patch_directive_is_rejected() {
        let patch = json!({"metadata": {"labels": {"$patch": "explode"}}});
        let err = smp(deployment(), patch, "Deployment").unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata.labels: unknown $patch directive \"explode\"; expected replace, delete or merge"
        );
        assert_eq!(err.status_code(), 400);

        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "$patch": 7}
        ]}}}});
        let err = smp(deployment(), patch, "Deployment").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.template.spec.containers[0]: unknown $patch directive 7"),
            "{err}"
        );
    }

    #[test]
    fn retain_keys_clears_other_fields() {
        // kubectl apply switching a Deployment to Recreate.
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"],
            "type": "Recreate"
        }}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

        // Switching a volume's source.
        let patch = json!({"spec": {"template": {"spec": {"volumes": [{
            "$retainKeys": ["configMap", "name"],
            "configMap": {"name": "settings"},
            "name": "cache"
        }]}}}});
        let out = smp_ok(deployment(), patch, "Deployment");
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "cache", "configMap": {"name": "settings"}}])
        );

        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        let err = smp(deployment(), patch, "Deployment").unwrap_err();
        assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err}");
        let patch = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
        assert!(smp(deployment(), patch, "Deployment").is_err());
    }

    #[test]
    fn lists_without_patch_strategy_replace() {
        let pod = json!({"spec": {
            "containers": [{"name": "a", "image": "x", "envFrom": [{"configMapRef": {"name": "one"}}]}],
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "readinessGates": [{"conditionType": "x"}]
        }});
        let patch = json!({"spec": {
            "containers": [{"name": "a", "envFrom": [{"secretRef": {"name": "two"}}]}],
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "readinessGates": [{"conditionType": "y"}]
        }});
        let out = smp_ok(pod, patch, "Pod");
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
        assert_eq!(
            out["spec"]["readinessGates"],
            json!([{"conditionType": "y"}])
        );
        assert_eq!(
            out["spec"]["containers"][0]["envFrom"],
            json!([{"secretRef": {"name": "two"}}])
        );
        assert_eq!(out["spec"]["containers"][0]["image"], "x");
    }

    #[test]
    fn merge_directives_on_replaced_lists_are_dropped() {
        // A client that believes tolerations merge sends kubectl's list directives.
        let pod = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/tolerations": [{"key": "c"}],
            "tolerations": [{"key": "c"}, {"key": "a", "$patch": "delete"}]
        }});
        let out = smp_ok(pod, patch, "Pod");
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
        // An order directive alone leaves the list as it is.
        let pod = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}});
        let patch = json!({"spec": {"$setElementOrder/tolerations": [{"key": "b"}, {"key": "a"}]}});
        let out = smp_ok(pod, patch, "Pod");
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key": "a"}, {"key": "b"}])
        );
    }

    #[test]
    fn set_element_order_on_a_non_list_keeps_the_value() {
        let obj = json!({"spec": {"template": {"spec": {"containers": "odd"}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}]
        }}}});
        let out = smp_ok(obj, patch, "Deployment");
        assert_eq!(out["spec"]["template"]["spec"]["containers"], "odd");
    }

    #[test]
    fn node_taints_replace_and_pod_cidrs_merge() {
        let node = json!({"spec": {
            "podCIDRs": ["10.244.1.0/24"],
            "taints": [{"key": "a", "effect": "NoSchedule"}]
        }});
        let patch = json!({"spec": {
            "podCIDRs": ["fd00::/64"],
            "taints": [{"key": "b", "effect": "NoExecute"}],
            "unschedulable": true
        }});
        let out = smp_ok(node, patch, "Node");
        assert_eq!(
            out["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
        assert_eq!(
            out["spec"]["podCIDRs"],
            json!(["fd00::/64", "10.244.1.0/24"])
        );
        assert_eq!(out["spec"]["unschedulable"], true);
    }

    #[test]
    fn node_status_conditions_merge_by_type() {
        let node = json!({"status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "MemoryPressure", "status": "False"}
            ],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]
        }});
        let patch = json!({"status": {
            "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "MemoryPressure"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "n1"}]
        }});
        let out = smp_ok(node, patch, "Node");
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}])
        );
        assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn pod_paths_and_status() {
        let pod = json!({
            "kind": "Pod",
            "metadata": {"ownerReferences": [{"uid": "1", "kind": "ReplicaSet", "name": "rs"}]},
            "spec": {
                "containers": [{
                    "name": "app", "image": "x",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }],
                "imagePullSecrets": [{"name": "reg"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "app", "ready": false}]
            }
        });
        let patch = json!({
            "metadata": {"ownerReferences": [{"uid": "2", "kind": "Other", "name": "o"}]},
            "spec": {
                "containers": [{"name": "app", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}],
                "imagePullSecrets": [{"name": "other"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}]
            },
            "status": {
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "app", "ready": true}]
            }
        });
        let out = smp_ok(pod, patch, "Pod");
        assert_eq!(
            out["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(out["spec"]["imagePullSecrets"].as_array().unwrap().len(), 2);
        assert_eq!(
            out["spec"]["hostAliases"],
            json!([{"ip": "10.0.0.1", "hostnames": ["b"]}])
        );
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
        assert_eq!(
            out["status"]["containerStatuses"],
            json!([{"name": "app", "ready": true}])
        );
    }

    #[test]
    fn cron_job_template_path() {
        let cj = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]
        }}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "b", "image": "y:2"}]
        }}}}}});
        let out = smp_ok(cj, patch, "CronJob");
        let list = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
        assert_eq!(list.as_array().unwrap().len(), 2);
        assert!(list
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "b" && c["image"] == "y:2"));
    }

    #[test]
    fn every_workload_kind_merges_its_template() {
        for kind in [
            "Deployment",
            "ReplicaSet",
            "DaemonSet",
            "StatefulSet",
            "ReplicationController",
            "Job",
        ] {
            let patch = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2"}
            ]}}}});
            let out = smp_ok(deployment(), patch, kind);
            assert_eq!(containers(&out).len(), 2, "{kind}");
        }
        // A pod template path is not a pod's.
        let patch = json!({"spec": {"containers": [{"name": "x"}]}});
        let out = smp_ok(
            json!({"spec": {"containers": [{"name": "y"}]}}),
            patch,
            "Deployment",
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "x"}]));
    }

    #[test]
    fn service_account_secrets_merge_by_name() {
        let sa = json!({"secrets": [{"name": "a"}]});
        let out = smp_ok(sa, json!({"secrets": [{"name": "b"}]}), "ServiceAccount");
        assert_eq!(out["secrets"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn unknown_kinds_replace_lists_but_merge_maps() {
        let obj = json!({
            "metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"containers": [{"name": "a"}], "nested": {"keep": 1}}
        });
        let patch = json!({
            "metadata": {"labels": {"b": "2"}, "finalizers": ["y"]},
            "spec": {
                "containers": [{"name": "b"}],
                "nested": {"$patch": "replace", "new": 2}
            }
        });
        let out = smp_ok(obj, patch, "Widget");
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
        assert_eq!(out["spec"]["nested"], json!({"new": 2}));
    }

    #[test]
    fn directives_in_new_subtrees_are_stripped() {
        let obj = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "a"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{
                "name": "new",
                "image": "b",
                "$setElementOrder/ports": [{"containerPort": 1}],
                "ports": [{"containerPort": 1}, {"containerPort": 2, "$patch": "delete"}],
                "resources": {"limits": {"cpu": "1", "memory": null}}
            }],
            "securityContext": {"$patch": "delete"},
            "affinity": {"$patch": "replace", "nodeAffinity": {}}
        }}}});
        let out = smp_ok(obj, patch, "Deployment");
        assert_no_directives(&out);
        let spec = &out["spec"]["template"]["spec"];
        let new = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "new")
            .unwrap();
        assert_eq!(new["ports"], json!([{"containerPort": 1}]));
        assert_eq!(new["resources"], json!({"limits": {"cpu": "1"}}));
        assert!(spec.get("securityContext").is_none());
        assert_eq!(spec["affinity"], json!({"nodeAffinity": {}}));
    }

    #[test]
    fn scale_and_annotate_style_patches() {
        let out = smp_ok(deployment(), json!({"spec": {"replicas": 5}}), "Deployment");
        assert_eq!(out["spec"]["replicas"], 5);
        let out = smp_ok(
            deployment(),
            json!({"metadata": {"annotations": {"note": "hi"}}}),
            "Deployment",
        );
        assert_eq!(out["metadata"]["annotations"]["note"], "hi");
        assert!(out["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/last-applied-configuration")
            .is_some());
    }

    #[test]
    fn pdb_selector_replaces() {
        let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
        let patch = json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}});
        let out = smp_ok(pdb, patch, "PodDisruptionBudget");
        assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
        assert_eq!(out["spec"]["minAvailable"], 1);
    }

    #[test]
    fn type_changes_take_the_patch_value() {
        let obj =
            json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a"}]}}}});
        let patch = json!({"spec": {"replicas": {"weird": true}, "template": {"spec": {"containers": "none"}}}});
        let out = smp_ok(obj, patch, "Deployment");
        assert_eq!(out["spec"]["replicas"], json!({"weird": true}));
        assert_eq!(out["spec"]["template"]["spec"]["containers"], "none");
    }

    #[test]
    fn mixed_merging_lists_are_rejected() {
        let obj = json!({"metadata": {"finalizers": ["a"]}});
        let err = smp(obj, json!({"metadata": {"finalizers": [{"x": 1}]}}), "Pod").unwrap_err();
        assert!(matches!(err, PatchError::InvalidList { .. }), "{err}");
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn strategic_merge_input_errors() {
        let err = apply_patch(
            &deployment(),
            b"{not json",
            PatchType::StrategicMerge,
            "Deployment",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("malformed strategic merge patch: "),
            "{err}"
        );
        assert_eq!(err.status_code(), 400);
        let err = apply_patch(
            &deployment(),
            b"[1]",
            PatchType::StrategicMerge,
            "Deployment",
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::NotAnObject { .. }));
        let err =
            apply_patch(&json!([1]), b"{}", PatchType::StrategicMerge, "Deployment").unwrap_err();
        assert!(matches!(err, PatchError::OriginalNotAnObject { .. }));
        let err = apply_patch(&deployment(), b"{}", PatchType::Apply, "Deployment").unwrap_err();
        assert!(matches!(err, PatchError::Unsupported { .. }));
        assert_eq!(err.status_code(), 415);
    }

    #[test]
    fn original_is_not_modified() {
        let original = deployment();
        let copy = original.clone();
        let _ = apply_patch(
            &original,
            br#"{"spec": {"replicas": 9}}"#,
            PatchType::StrategicMerge,
            "Deployment",
        );
        assert_eq!(original, copy);
    }

    #[test]
    fn json_patch_add_replace_remove() {
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/track", "value": "canary"},
            {"op": "remove", "path": "/metadata/labels/tier"},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "x", "image": "y"}},
            {"op": "test", "path": "/spec/replicas", "value": 3}
        ]);
        let out = apply_patch(
            &deployment(),
            patch.to_string().as_bytes(),
            PatchType::Json,
            "Deployment",
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "track": "canary"})
        );
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["web", "sidecar", "x"]
        );
    }

    #[test]
    fn json_patch_failures_name_the_operation() {
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "test", "path": "/spec/replicas", "value": 4}
        ]);
        let err = apply_patch(
            &deployment(),
            patch.to_string().as_bytes(),
            PatchType::Json,
            "Deployment",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "json patch operation 1 (test /spec/replicas) failed: value did not match"
        );
        assert_eq!(err.status_code(), 422);

        let patch = json!([{"op": "remove", "path": "/spec/nothing"}]);
        let err = apply_patch(
            &deployment(),
            patch.to_string().as_bytes(),
            PatchType::Json,
            "Deployment",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("json patch operation 0 (remove /spec/nothing) failed"),
            "{err}"
        );

        let err = apply_patch(
            &deployment(),
            br#"[{"op": "frobnicate"}]"#,
            PatchType::Json,
            "Deployment",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("malformed json patch: "),
            "{err}"
        );
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn merge_patch_on_config_map_data() {
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "finalizers": ["a"]},
            "data": {"mode": "prod", "level": "info", "old": "x"}
        });
        let patch = json!({
            "metadata": {"finalizers": ["b"]},
            "data": {"level": "debug", "old": null, "new": "y"}
        });
        let out = apply_patch(
            &cm,
            patch.to_string().as_bytes(),
            PatchType::Merge,
            "ConfigMap",
        )
        .unwrap();
        assert_eq!(
            out["data"],
            json!({"mode": "prod", "level": "debug", "new": "y"})
        );
        // Merge patch replaces lists, even mergeable ones.
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(out["metadata"]["name"], "settings");

        let err = apply_patch(&cm, b"\"x\"", PatchType::Merge, "ConfigMap").unwrap_err();
        assert!(matches!(err, PatchError::NotAnObject { .. }));
        let err = apply_patch(&cm, b"{", PatchType::Merge, "ConfigMap").unwrap_err();
        assert!(
            err.to_string().starts_with("malformed merge patch: "),
            "{err}"
        );
    }

    #[test]
    fn strategic_merge_on_config_map_and_secret_data() {
        let cm = json!({"data": {"a": "1", "b": "2"}});
        let out = smp_ok(cm, json!({"data": {"a": null, "c": "3"}}), "ConfigMap");
        assert_eq!(out["data"], json!({"b": "2", "c": "3"}));
        let secret = json!({"type": "Opaque", "data": {"k": "dg=="}});
        let out = smp_ok(secret, json!({"stringData": {"p": "w"}}), "Secret");
        assert_eq!(out["stringData"], json!({"p": "w"}));
        assert_eq!(out["data"], json!({"k": "dg=="}));
    }
}
