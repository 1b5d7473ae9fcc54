//! Commands that change one object in place: `scale` (through the scale subresource) and
//! `patch` (strategic, merge or JSON patch).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::client::{resource_path, Cluster, PatchType};
use crate::errors::{self, Failures};
use crate::target::{self, Target};

/// Every (resource, name) the arguments name; names are required.
pub fn named(args: &[String], verb: &str) -> Result<Vec<(Target, String)>> {
    let mut out = Vec::new();
    for t in target::parse(args, verb)? {
        if t.names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        for name in &t.names {
            out.push((t.clone(), name.clone()));
        }
    }
    Ok(out)
}

pub async fn scale(
    cluster: &Cluster,
    args: &[String],
    replicas: i64,
    current: Option<i64>,
) -> Result<()> {
    if replicas < 0 {
        bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let mut failures = Failures::default();
    for (t, name) in named(args, "scale")? {
        let resource = t.resource;
        if !resource.has_subresource("scale") {
            failures.report(&anyhow!(
                "no scaler has been implemented for {{\"{}\" \"{}\"}}",
                resource.group,
                resource.kind
            ));
            continue;
        }
        let path = resource_path(
            resource,
            cluster.object_namespace(resource),
            Some(&name),
            Some("scale"),
        );
        let result = async {
            if let Some(want) = current {
                let scale = cluster.get(&path).await?;
                let have = scale
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if have != want {
                    bail!("Expected replicas to be {want}, was {have}");
                }
            }
            let body = json!({"spec": {"replicas": replicas}});
            match cluster.patch(&path, PatchType::Merge, &body).await {
                Ok(_) => Ok(()),
                // Servers that only take whole Scale objects on this path.
                Err(e)
                    if errors::server_error(&e).is_some_and(|s| s.code == 405 || s.code == 415) =>
                {
                    let mut scale = cluster.get(&path).await?;
                    scale["spec"]["replicas"] = json!(replicas);
                    cluster.put(&path, &scale).await.map(|_| ())
                }
                Err(e) => Err(e),
            }
        }
        .await;
        match result {
            Ok(()) => println!("{}/{name} scaled", resource.singular_group()),
            Err(e) => failures.report(&e),
        }
    }
    failures.finish()
}

/// Reads `-p` as JSON, or as YAML when it is not JSON.
pub fn parse_patch(text: &str) -> Result<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_yaml_ng::from_str::<Value>(text)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
            .ok_or_else(|| anyhow!("unable to parse \"{text}\": {json_err}")),
    }
}

pub fn parse_patch_type(name: &str) -> Result<PatchType> {
    match name {
        "strategic" => Ok(PatchType::Strategic),
        "merge" => Ok(PatchType::Merge),
        "json" => Ok(PatchType::Json),
        other => bail!("--type must be one of [json merge strategic], not \"{other}\""),
    }
}

pub async fn patch(
    cluster: &Cluster,
    args: &[String],
    patch_text: &str,
    kind: PatchType,
    subresource: Option<&str>,
) -> Result<()> {
    let body = parse_patch(patch_text).context("parsing the patch")?;
    if kind == PatchType::Json && !body.is_array() {
        bail!("a JSON patch must be a list of operations");
    }
    let mut failures = Failures::default();
    for (t, name) in named(args, "patch")? {
        let resource = t.resource;
        let path = resource_path(
            resource,
            cluster.object_namespace(resource),
            Some(&name),
            subresource,
        );
        let result = async {
            let before = cluster.get(&path).await?;
            let after = cluster.patch(&path, kind, &body).await?;
            let rv = |v: &Value| v.pointer("/metadata/resourceVersion").cloned();
            Ok::<bool, anyhow::Error>(rv(&before) != rv(&after))
        }
        .await;
        match result {
            Ok(true) => println!("{}/{name} patched", resource.singular_group()),
            Ok(false) => println!("{}/{name} patched (no change)", resource.singular_group()),
            Err(e) => failures.report(&e),
        }
    }
    failures.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_parse_as_json_or_yaml() {
        assert_eq!(
            parse_patch(r#"{"spec":{"replicas":2}}"#).expect("json"),
            json!({"spec": {"replicas": 2}})
        );
        assert_eq!(
            parse_patch("spec:\n  replicas: 2\n").expect("yaml"),
            json!({"spec": {"replicas": 2}})
        );
        assert!(parse_patch("just words").is_err());
        assert_eq!(parse_patch_type("merge").expect("merge"), PatchType::Merge);
        assert!(parse_patch_type("weird").is_err());
    }
}
