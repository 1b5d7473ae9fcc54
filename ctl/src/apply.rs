//! `apply -f`, `create -f` and `replace -f`.
//!
//! `apply` keeps the manifest it applied in the `last-applied-configuration` annotation, as
//! kubectl does, so the next apply can tell fields the user removed (delete them) from
//! fields the server or controllers set (leave them).

use anyhow::{anyhow, Result};
use serde_json::Value;
use skiff_api::constants::LAST_APPLIED_ANNOTATION;
use skiff_api::resources::{self, ResourceInfo};

use crate::client::{resource_path, Cluster, PatchType};
use crate::errors::{self, Failures, ServerError};
use crate::manifest::{self, Document};
use crate::threeway;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Apply,
    Create,
    Replace,
}

/// An object ready to send: its resource, namespace and name.
pub struct Placed {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
}

/// Finds the resource of a manifest object and settles its namespace: the object's own,
/// else `-n`, else the context's. An explicit `-n` that disagrees is an error, as in
/// kubectl.
pub fn place(cluster: &Cluster, doc: &Document, need_name: bool) -> Result<Placed> {
    let mut object = doc.object.clone();
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let resource = resources::by_kind(api_version, kind).ok_or_else(|| {
        anyhow!(
            "resource mapping not found for name: \"{name}\" namespace: \"\" from \"{}\": no matches for kind \"{kind}\" in version \"{api_version}\"",
            doc.source
        )
    })?;
    if need_name && name.is_empty() {
        return Err(anyhow!(
            "error when retrieving current configuration of {} from \"{}\" (document {}): resource name may not be empty",
            resource.kind,
            doc.source,
            doc.index
        ));
    }
    let namespace = if resource.namespaced {
        let own = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if let Some(own) = &own {
            if cluster.namespace_explicit && *own != cluster.namespace {
                return Err(anyhow!(
                    "the namespace from the provided object \"{own}\" does not match the namespace \"{}\". You must pass '--namespace={own}' to perform this operation.",
                    cluster.namespace
                ));
            }
        }
        let ns = own.unwrap_or_else(|| cluster.namespace.clone());
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        Some(ns)
    } else {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("namespace");
        }
        None
    };
    if object.get("metadata").is_none_or(|m| !m.is_object()) {
        if let Some(map) = object.as_object_mut() {
            map.insert("metadata".into(), Value::Object(Default::default()));
        }
    }
    Ok(Placed {
        resource,
        namespace,
        name,
        object,
    })
}

/// The manifest with the annotation recording it, as kubectl writes it.
pub fn with_last_applied(object: &Value) -> Value {
    let mut clean = object.clone();
    if let Some(ann) = clean
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        ann.remove(LAST_APPLIED_ANNOTATION);
    }
    if clean
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.is_empty())
    {
        if let Some(meta) = clean.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("annotations");
        }
    }
    let recorded = format!("{}\n", serde_json::to_string(&clean).unwrap_or_default());
    let mut modified = clean;
    if let Some(meta) = modified.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(recorded));
        }
    }
    modified
}

/// The manifest the live object was last applied from, if it carries one.
pub fn last_applied(current: &Value) -> Option<Value> {
    current
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
}

fn in_context(err: anyhow::Error, context: String) -> anyhow::Error {
    match errors::server_error(&err) {
        Some(server) => anyhow::Error::new(ServerError::with_context(server.clone(), &context)),
        None => err,
    }
}

/// Runs `verb` on every object of `files`. `save_config` makes `create` record the
/// manifest for a later `apply`, like kubectl's `--save-config`.
pub async fn run(
    cluster: &Cluster,
    verb: Verb,
    files: &[String],
    validate: bool,
    save_config: bool,
) -> Result<()> {
    if files.is_empty() {
        return Err(anyhow!("must specify one of -f and -k"));
    }
    let docs = manifest::read_sources(files, validate)?;
    if docs.is_empty() {
        return Err(anyhow!("no objects passed to {}", verb_name(verb)));
    }
    let mut failures = Failures::default();
    for doc in &docs {
        let outcome = match place(cluster, doc, verb != Verb::Create) {
            Ok(placed) => match verb {
                Verb::Apply => apply_one(cluster, &placed, &doc.source).await,
                Verb::Create => create_one(cluster, &placed, &doc.source, save_config).await,
                Verb::Replace => replace_one(cluster, &placed, &doc.source).await,
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(line) => println!("{line}"),
            Err(e) => failures.report(&e),
        }
    }
    failures.finish()
}

fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Apply => "apply",
        Verb::Create => "create",
        Verb::Replace => "replace",
    }
}

fn label(placed: &Placed, name: &str) -> String {
    format!("{}/{name}", placed.resource.singular_group())
}

async fn apply_one(cluster: &Cluster, placed: &Placed, source: &str) -> Result<String> {
    let path = resource_path(
        placed.resource,
        placed.namespace.as_deref(),
        Some(&placed.name),
        None,
    );
    let modified = with_last_applied(&placed.object);
    // A controller may change the object between our read and our patch; the patch carries
    // no resourceVersion, so only a conflict from the server's own retries can surface.
    for attempt in 0..3 {
        let current = match cluster.get(&path).await {
            Ok(c) => c,
            Err(e) if errors::is_not_found(&e) => {
                let collection =
                    resource_path(placed.resource, placed.namespace.as_deref(), None, None);
                cluster
                    .post(&collection, &modified)
                    .await
                    .map_err(|e| in_context(e, format!("error when creating \"{source}\"")))?;
                return Ok(format!("{} created", label(placed, &placed.name)));
            }
            Err(e) => {
                return Err(in_context(
                    e,
                    format!(
                        "error when retrieving current configuration of {} from \"{source}\"",
                        placed.name
                    ),
                ))
            }
        };
        let original = last_applied(&current);
        if original.is_none() && attempt == 0 {
            eprintln!(
                "Warning: resource {}/{} is missing the {LAST_APPLIED_ANNOTATION} annotation which is required by skiffctl apply. skiffctl apply should only be used on resources created declaratively by either skiffctl create --save-config or skiffctl apply. The missing annotation will be patched automatically.",
                placed.resource.group_resource(),
                placed.name
            );
        }
        let patch = threeway::three_way(original.as_ref(), &modified, &current);
        if patch.as_object().is_some_and(|p| p.is_empty()) {
            return Ok(format!("{} unchanged", label(placed, &placed.name)));
        }
        tracing::debug!(%patch, "apply patch");
        match cluster.patch(&path, PatchType::Strategic, &patch).await {
            Ok(_) => return Ok(format!("{} configured", label(placed, &placed.name))),
            Err(e)
                if attempt < 2
                    && errors::server_error(&e).is_some_and(ServerError::is_conflict) =>
            {
                continue
            }
            Err(e) => {
                return Err(in_context(
                    e,
                    format!("error when applying patch to \"{source}\""),
                ))
            }
        }
    }
    Err(anyhow!(
        "{} kept changing while it was being applied",
        label(placed, &placed.name)
    ))
}

async fn create_one(
    cluster: &Cluster,
    placed: &Placed,
    source: &str,
    save_config: bool,
) -> Result<String> {
    let collection = resource_path(placed.resource, placed.namespace.as_deref(), None, None);
    let body = if save_config {
        with_last_applied(&placed.object)
    } else {
        placed.object.clone()
    };
    let created = cluster
        .post(&collection, &body)
        .await
        .map_err(|e| in_context(e, format!("error when creating \"{source}\"")))?;
    let name = created
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(&placed.name)
        .to_string();
    Ok(format!("{} created", label(placed, &name)))
}

async fn replace_one(cluster: &Cluster, placed: &Placed, source: &str) -> Result<String> {
    let path = resource_path(
        placed.resource,
        placed.namespace.as_deref(),
        Some(&placed.name),
        None,
    );
    let mut object = placed.object.clone();
    let has_version = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_version {
        // Replace the object as it is now: take its current resourceVersion.
        let current = cluster
            .get(&path)
            .await
            .map_err(|e| in_context(e, format!("error when replacing \"{source}\"")))?;
        if let (Some(rv), Some(meta)) = (
            current.pointer("/metadata/resourceVersion").cloned(),
            object.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("resourceVersion".into(), rv);
        }
    }
    cluster
        .put(&path, &object)
        .await
        .map_err(|e| in_context(e, format!("error when replacing \"{source}\"")))?;
    Ok(format!("{} replaced", label(placed, &placed.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn last_applied_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "default", "annotations": {LAST_APPLIED_ANNOTATION: "old"}},
            "data": {"x": "1"}});
        let modified = with_last_applied(&obj);
        let recorded = last_applied(&modified).expect("annotation");
        assert_eq!(
            recorded,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "namespace": "default"}, "data": {"x": "1"}})
        );
        let text = modified["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .expect("string");
        assert!(text.ends_with("}\n"));
        // Applying the same manifest again finds nothing to patch.
        let mut live = modified.clone();
        live["metadata"]["uid"] = json!("u");
        live["metadata"]["resourceVersion"] = json!("3");
        let patch = threeway::three_way(
            last_applied(&live).as_ref(),
            &with_last_applied(&obj),
            &live,
        );
        assert_eq!(patch, json!({}));
    }
}
