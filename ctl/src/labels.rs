//! `label` and `annotate`: `key=value` sets, `key-` removes, and changing an existing value
//! needs `--overwrite` — with kubectl's messages for each case.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::client::{resource_path, with_query, Cluster, PatchType};
use crate::errors::Failures;
use crate::target;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }
    fn word(self) -> &'static str {
        match self {
            Field::Labels => "label",
            Field::Annotations => "annotation",
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("at least one {0} update is required")]
    NoChanges(&'static str),
    #[error("invalid {0} spec: {1}")]
    BadSpec(&'static str, String),
    #[error("can not both modify and remove the same {0} in the same command")]
    Both(&'static str),
    #[error("'{key}' already has a value ({value}), and --overwrite is false")]
    NoOverwrite { key: String, value: String },
    #[error("invalid label value: \"{0}\": {1}")]
    InvalidLabel(String, String),
}

/// What to set and what to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

/// Splits arguments into resource arguments and changes (`k=v`, `k-`).
pub fn parse_args(args: &[String], field: Field) -> Result<(Vec<String>, Changes), ChangeError> {
    let mut resources = Vec::new();
    let mut changes = Changes::default();
    for arg in args {
        if let Some((key, value)) = arg.split_once('=') {
            if key.is_empty() || value.contains('=') {
                return Err(ChangeError::BadSpec(field.word(), arg.clone()));
            }
            if field == Field::Labels {
                validate_label(key, value)
                    .map_err(|why| ChangeError::InvalidLabel(arg.clone(), why))?;
            }
            changes.set.push((key.to_string(), value.to_string()));
        } else if let Some(key) = arg.strip_suffix('-').filter(|_| !resources.is_empty()) {
            if key.is_empty() {
                return Err(ChangeError::BadSpec(field.word(), arg.clone()));
            }
            changes.remove.push(key.to_string());
        } else {
            resources.push(arg.clone());
        }
    }
    if changes.set.is_empty() && changes.remove.is_empty() {
        return Err(ChangeError::NoChanges(field.word()));
    }
    if changes.set.iter().any(|(k, _)| changes.remove.contains(k)) {
        return Err(ChangeError::Both(field.word()));
    }
    Ok((resources, changes))
}

fn valid_segment(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Kubernetes' rules for label keys (optional DNS prefix, 63-character name) and values.
fn validate_label(key: &str, value: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let prefix_ok = prefix.len() <= 253
                && prefix.split('.').all(|p| {
                    valid_segment(p, 63)
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                });
            if !prefix_ok {
                return Err(format!(
                    "prefix part of \"{key}\" must be a lowercase RFC 1123 subdomain"
                ));
            }
            name
        }
        None => key,
    };
    if !valid_segment(name, 63) {
        return Err(format!(
            "name part of \"{key}\" must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters"
        ));
    }
    if !value.is_empty() && !valid_segment(value, 63) {
        return Err(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters".to_string(),
        );
    }
    Ok(())
}

/// What changing one object's map takes.
#[derive(Debug)]
pub struct Plan {
    /// The merge patch for the map.
    pub patch: Map<String, Value>,
    /// Keys asked to be removed that were not there.
    pub missing: Vec<String>,
    /// Whether anything changes at all.
    pub changed: bool,
}

/// The plan for one object's current map, or the refusal to overwrite.
pub fn plan(
    current: Option<&Map<String, Value>>,
    changes: &Changes,
    overwrite: bool,
) -> Result<Plan, ChangeError> {
    let empty = Map::new();
    let current = current.unwrap_or(&empty);
    let mut patch = Map::new();
    let mut missing = Vec::new();
    let mut changed = false;
    for (key, value) in &changes.set {
        match current.get(key).and_then(Value::as_str) {
            Some(old) if old == value => {}
            Some(old) if !overwrite => {
                return Err(ChangeError::NoOverwrite {
                    key: key.clone(),
                    value: old.to_string(),
                })
            }
            _ => {
                changed = true;
                patch.insert(key.clone(), Value::String(value.clone()));
            }
        }
    }
    for key in &changes.remove {
        if current.contains_key(key) {
            changed = true;
            patch.insert(key.clone(), Value::Null);
        } else {
            missing.push(key.clone());
        }
    }
    Ok(Plan {
        patch,
        missing,
        changed,
    })
}

/// Whether the map only loses entries (kubectl then says "unlabeled").
fn only_removes(current: Option<&Map<String, Value>>, changes: &Changes) -> bool {
    let empty = Map::new();
    let current = current.unwrap_or(&empty);
    changes
        .set
        .iter()
        .all(|(k, v)| current.get(k).and_then(Value::as_str) == Some(v.as_str()))
        && changes.remove.iter().any(|k| current.contains_key(k))
}

pub struct LabelArgs {
    pub args: Vec<String>,
    pub overwrite: bool,
    pub selector: Option<String>,
    pub all: bool,
}

pub async fn run(cluster: &Cluster, field: Field, args: &LabelArgs) -> Result<()> {
    let (resource_args, changes) = parse_args(&args.args, field)?;
    let targets = target::parse(&resource_args, field.word())?;
    let mut objects = Vec::new();
    for t in &targets {
        let ns = cluster.object_namespace(t.resource);
        if t.names.is_empty() {
            if !args.all && args.selector.is_none() {
                bail!("resource(s) were provided, but no name was specified");
            }
            let path = with_query(
                &resource_path(t.resource, cluster.list_namespace(t.resource), None, None),
                &[("labelSelector", args.selector.as_deref().unwrap_or(""))],
            );
            let list = cluster.get(&path).await?;
            for item in list
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                objects.push((t.resource, item.clone()));
            }
        } else {
            for name in &t.names {
                let path = resource_path(t.resource, ns, Some(name), None);
                objects.push((t.resource, cluster.get(&path).await?));
            }
        }
    }
    let mut failures = Failures::default();
    for (resource, obj) in objects {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let current = obj
            .pointer(&format!("/metadata/{}", field.key()))
            .and_then(Value::as_object);
        let Plan {
            patch,
            missing,
            changed,
        } = match plan(current, &changes, args.overwrite) {
            Ok(p) => p,
            Err(e) => {
                failures.report(&anyhow::Error::new(e));
                continue;
            }
        };
        for key in missing {
            println!("{} \"{key}\" not found.", field.word());
        }
        let label = format!("{}/{name}", resource.singular_group());
        if changed {
            let path = resource_path(resource, ns, Some(&name), None);
            let body = json!({"metadata": {field.key(): Value::Object(patch)}});
            if let Err(e) = cluster.patch(&path, PatchType::Merge, &body).await {
                failures.report(&e);
                continue;
            }
        }
        let shrank = !args.overwrite && only_removes(current, &changes);
        match (field, changed) {
            (Field::Labels, true) if shrank => println!("{label} unlabeled"),
            (Field::Labels, true) => println!("{label} labeled"),
            (Field::Labels, false) => println!("{label} not labeled"),
            (Field::Annotations, _) => println!("{label} annotated"),
        }
    }
    failures.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_sets_and_removals() {
        let (res, ch) = parse_args(
            &args(&["pods", "web", "app=x", "tier-", "empty="]),
            Field::Labels,
        )
        .expect("parse");
        assert_eq!(res, ["pods", "web"]);
        assert_eq!(
            ch.set,
            [("app".into(), "x".into()), ("empty".into(), String::new())]
        );
        assert_eq!(ch.remove, ["tier"]);
        // A name ending in '-' before any resource argument is the type, not a removal.
        let (res, _) = parse_args(&args(&["pod/my-", "a=b"]), Field::Labels).expect("parse");
        assert_eq!(res, ["pod/my-"]);
    }

    #[test]
    fn rejects_bad_specs() {
        assert_eq!(
            parse_args(&args(&["pods", "web"]), Field::Labels),
            Err(ChangeError::NoChanges("label"))
        );
        assert_eq!(
            parse_args(&args(&["pods", "web", "a=b=c"]), Field::Labels),
            Err(ChangeError::BadSpec("label", "a=b=c".into()))
        );
        assert_eq!(
            parse_args(&args(&["pods", "web", "a=b", "a-"]), Field::Labels),
            Err(ChangeError::Both("label"))
        );
        assert!(matches!(
            parse_args(&args(&["pods", "web", "a=has space"]), Field::Labels),
            Err(ChangeError::InvalidLabel(..))
        ));
        assert!(parse_args(&args(&["pods", "web", "example.com/a=ok"]), Field::Labels).is_ok());
        assert!(parse_args(&args(&["pods", "web", "Bad_Prefix/a=ok"]), Field::Labels).is_err());
        // Annotation values may hold anything.
        assert!(parse_args(
            &args(&["pods", "web", "note=has space"]),
            Field::Annotations
        )
        .is_ok());
    }

    #[test]
    fn overwrite_rules() {
        let mut current = Map::new();
        current.insert("app".into(), json!("web"));
        let ch = Changes {
            set: vec![("app".into(), "db".into())],
            remove: vec!["gone".into()],
        };
        let err = plan(Some(&current), &ch, false).expect_err("needs overwrite");
        assert_eq!(
            err.to_string(),
            "'app' already has a value (web), and --overwrite is false"
        );
        let p = plan(Some(&current), &ch, true).expect("overwrite");
        assert_eq!(Value::Object(p.patch), json!({"app": "db"}));
        assert_eq!(p.missing, ["gone"]);
        assert!(p.changed);
        let same = Changes {
            set: vec![("app".into(), "web".into())],
            remove: vec![],
        };
        let p = plan(Some(&current), &same, false).expect("same value");
        assert!(!p.changed);
        let removal = Changes {
            set: vec![],
            remove: vec!["app".into()],
        };
        assert!(only_removes(Some(&current), &removal));
        assert!(!only_removes(Some(&current), &ch));
    }
}
