//! `explain TYPE[.field.path]`: documentation of a resource's fields, from the JSON schemas
//! k8s-openapi carries for every type (its `schemars` implementations).

use anyhow::{bail, Result};
use serde_json::Value;
use skiff_api::resources::ResourceInfo;

use crate::target;

/// The root schema of a kind, with its definitions.
fn schema_for(resource: &ResourceInfo) -> Option<Value> {
    use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery, networking};
    fn root<T: schemars::JsonSchema>() -> Value {
        schemars::SchemaGenerator::default()
            .into_root_schema_for::<T>()
            .to_value()
    }
    Some(match (resource.group, resource.kind) {
        ("", "Namespace") => root::<core::v1::Namespace>(),
        ("", "Pod") => root::<core::v1::Pod>(),
        ("", "Service") => root::<core::v1::Service>(),
        ("", "Endpoints") => root::<core::v1::Endpoints>(),
        ("", "Node") => root::<core::v1::Node>(),
        ("", "ConfigMap") => root::<core::v1::ConfigMap>(),
        ("", "Secret") => root::<core::v1::Secret>(),
        ("", "Event") => root::<core::v1::Event>(),
        ("", "ServiceAccount") => root::<core::v1::ServiceAccount>(),
        ("", "PersistentVolume") => root::<core::v1::PersistentVolume>(),
        ("", "PersistentVolumeClaim") => root::<core::v1::PersistentVolumeClaim>(),
        ("", "LimitRange") => root::<core::v1::LimitRange>(),
        ("", "ResourceQuota") => root::<core::v1::ResourceQuota>(),
        ("", "ReplicationController") => root::<core::v1::ReplicationController>(),
        ("apps", "Deployment") => root::<apps::v1::Deployment>(),
        ("apps", "ReplicaSet") => root::<apps::v1::ReplicaSet>(),
        ("apps", "DaemonSet") => root::<apps::v1::DaemonSet>(),
        ("apps", "StatefulSet") => root::<apps::v1::StatefulSet>(),
        ("apps", "ControllerRevision") => root::<apps::v1::ControllerRevision>(),
        ("batch", "Job") => root::<batch::v1::Job>(),
        ("batch", "CronJob") => root::<batch::v1::CronJob>(),
        ("coordination.k8s.io", "Lease") => root::<coordination::v1::Lease>(),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            root::<autoscaling::v2::HorizontalPodAutoscaler>()
        }
        ("networking.k8s.io", "NetworkPolicy") => root::<networking::v1::NetworkPolicy>(),
        ("discovery.k8s.io", "EndpointSlice") => root::<discovery::v1::EndpointSlice>(),
        _ => return None,
    })
}

struct Schemas<'a> {
    defs: Option<&'a Value>,
}

impl<'a> Schemas<'a> {
    fn new(root: &'a Value) -> Self {
        Schemas {
            defs: root.get("$defs").or_else(|| root.get("definitions")),
        }
    }

    /// Follows `$ref` to the definition.
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let mut current = schema;
        for _ in 0..8 {
            let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
                return current;
            };
            let name = reference.rsplit('/').next().unwrap_or("");
            match self.defs.and_then(|d| d.get(name)) {
                Some(target) => current = target,
                None => return current,
            }
        }
        current
    }

    /// `string`, `integer`, `PodSpec`, `[]Container`, `map[string]string`, `IntOrString`…
    fn type_name(&self, schema: &Value) -> String {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let def = reference.rsplit('/').next().unwrap_or("");
            let short = def.rsplit('.').next().unwrap_or(def);
            let target = self.resolve(schema);
            if target.get("properties").is_some() {
                return short.to_string();
            }
            if short == "Quantity" {
                return "Quantity".to_string();
            }
            if target.get("x-kubernetes-int-or-string").is_some() || short == "IntOrString" {
                return "IntOrString".to_string();
            }
            return match target.get("type").and_then(Value::as_str) {
                Some("object") | None => short.to_string(),
                Some(t) => t.to_string(),
            };
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("array") => match schema.get("items") {
                Some(items) => format!("[]{}", self.type_name(items)),
                None => "[]Object".to_string(),
            },
            Some("object") => match schema.get("additionalProperties") {
                Some(v) if v.is_object() => format!("map[string]{}", self.type_name(v)),
                _ if schema.get("properties").is_some() => "Object".to_string(),
                _ => "Object".to_string(),
            },
            Some(t) => t.to_string(),
            None => "Object".to_string(),
        }
    }

    /// The schema one step down: a property, looking through arrays and maps.
    fn child(&self, schema: &'a Value, field: &str) -> Option<&'a Value> {
        let mut node = self.resolve(schema);
        loop {
            match node.get("type").and_then(Value::as_str) {
                Some("array") => node = self.resolve(node.get("items")?),
                Some("object") if node.get("properties").is_none() => {
                    node = self.resolve(node.get("additionalProperties")?)
                }
                _ => break,
            }
        }
        node.get("properties")?.get(field)
    }

    /// The object whose fields are listed under FIELDS.
    fn fields_of(&self, schema: &'a Value) -> Option<&'a Value> {
        let mut node = self.resolve(schema);
        for _ in 0..4 {
            if node.get("properties").is_some() {
                return Some(node);
            }
            node = match node.get("type").and_then(Value::as_str) {
                Some("array") => self.resolve(node.get("items")?),
                Some("object") => self.resolve(node.get("additionalProperties")?),
                _ => return None,
            };
        }
        None
    }
}

/// Wraps `text` at `width` columns, each line indented by `indent` spaces.
pub fn wrap(text: &str, indent: usize, width: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
                out.push_str(&pad);
                out.push_str(&line);
                out.push('\n');
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(&line);
        }
        out.push('\n');
    }
    out
}

/// The explanation of `TYPE[.field…]`, as kubectl's plaintext template lays it out.
pub fn explain(spec: &str) -> Result<String> {
    let mut parts = spec.split('.');
    let kind = parts.next().unwrap_or("");
    let mut fields: Vec<&str> = parts.collect();
    // `deployments.apps.spec`: a group may follow the type name.
    let mut resource = target::resolve_type(kind);
    if let Some(first) = fields.first() {
        if let Some(r) = skiff_api::resources::resolve(&format!("{kind}.{first}"))
            .filter(|r| !r.group.is_empty())
        {
            resource = Ok(r);
            fields.remove(0);
            while fields
                .first()
                .is_some_and(|f| r.group.split('.').any(|g| g == *f))
            {
                fields.remove(0);
            }
        }
    }
    let resource = resource?;
    let Some(root) = schema_for(resource) else {
        bail!("no documentation is available for {}", resource.kind);
    };
    let schemas = Schemas::new(&root);
    let mut node: &Value = &root;
    let mut field_line = None;
    for field in &fields {
        let Some(next) = schemas.child(node, field) else {
            bail!("field \"{field}\" does not exist");
        };
        field_line = Some(format!("FIELD: {field} <{}>", schemas.type_name(next)));
        node = next;
    }
    let mut out = format!(
        "KIND:       {}\nVERSION:    {}\n\n",
        resource.kind,
        resource.api_version()
    );
    if let Some(line) = field_line {
        out.push_str(&line);
        out.push_str("\n\n");
    }
    let description = node
        .get("description")
        .and_then(Value::as_str)
        .or_else(|| {
            schemas
                .resolve(node)
                .get("description")
                .and_then(Value::as_str)
        })
        .unwrap_or("<empty>");
    out.push_str("DESCRIPTION:\n");
    out.push_str(&wrap(description, 4, 80));
    out.push('\n');
    if let Some(object) = schemas.fields_of(node) {
        let required: Vec<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str("FIELDS:\n");
        if let Some(props) = object.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                // Every object has metadata; kubectl does not flag it as required.
                let req = if required.contains(&name.as_str()) && name != "metadata" {
                    " -required-"
                } else {
                    ""
                };
                out.push_str(&format!("  {name}\t<{}>{req}\n", schemas.type_name(prop)));
                let desc = prop
                    .get("description")
                    .and_then(Value::as_str)
                    .or_else(|| {
                        schemas
                            .resolve(prop)
                            .get("description")
                            .and_then(Value::as_str)
                    })
                    .unwrap_or("<no description>");
                out.push_str(&wrap(desc, 4, 80));
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_kinds_and_fields() {
        let top = explain("pods").expect("pods");
        assert!(
            top.starts_with("KIND:       Pod\nVERSION:    v1\n\nDESCRIPTION:\n"),
            "{top}"
        );
        assert!(top.contains("  spec\t<PodSpec>\n"), "{top}");
        let field = explain("po.spec.containers").expect("containers");
        assert!(field.contains("FIELD: containers <[]Container>"), "{field}");
        assert!(field.contains("  image\t<string>\n"), "{field}");
        assert!(field.contains("  name\t<string> -required-\n"), "{field}");
        let deep = explain("deployments.apps.spec.replicas").expect("replicas");
        assert!(deep.contains("FIELD: replicas <integer>"), "{deep}");
        let labels = explain("deploy.metadata.labels").expect("labels");
        assert!(labels.contains("<map[string]string>"), "{labels}");
        assert_eq!(
            explain("pods.spec.nope").expect_err("missing").to_string(),
            "field \"nope\" does not exist"
        );
        assert!(explain("gadgets").is_err());
    }

    #[test]
    fn wraps_text() {
        assert_eq!(wrap("a b c", 2, 4), "  a\n  b\n  c\n");
        assert_eq!(wrap("a b c", 2, 5), "  a b\n  c\n");
        assert_eq!(wrap("short", 4, 80), "    short\n");
    }
}
