//! Reading manifests: files, directories and stdin, each holding one or more YAML or JSON
//! documents. Every object remembers the file and the document it came from so an error
//! can point at it, and objects of a kind skiff serves are checked against the Kubernetes
//! type before anything is sent, naming the field that is wrong.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// One object read from a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file as the user named it (`STDIN` for `-`).
    pub source: String,
    /// 1-based position of the YAML document in its file.
    pub index: usize,
    pub object: Value,
}

#[derive(Debug, Error, PartialEq)]
pub enum ManifestError {
    #[error("the path \"{0}\" does not exist")]
    Missing(String),
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error("error parsing {file} (document {index}): {message}")]
    Parse {
        file: String,
        index: usize,
        message: String,
    },
}

/// Reads every `-f` argument: a file, a directory (recursively, `.yaml`, `.yml` and
/// `.json` files in name order) or `-` for stdin.
pub fn read_sources(sources: &[String], validate: bool) -> Result<Vec<Document>, ManifestError> {
    let mut docs = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| ManifestError::Read {
                    path: "STDIN".into(),
                    message: e.to_string(),
                })?;
            docs.extend(parse("STDIN", &text, validate)?);
            continue;
        }
        let path = Path::new(source);
        if !path.exists() {
            return Err(ManifestError::Missing(source.clone()));
        }
        let files = if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|e| ManifestError::Read {
                path: name.clone(),
                message: e.to_string(),
            })?;
            docs.extend(parse(&name, &text, validate)?);
        }
    }
    Ok(docs)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let read_err = |e: std::io::Error| ManifestError::Read {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, out)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(entry);
        }
    }
    Ok(())
}

/// Splits `text` into objects. Empty documents are skipped; `kind: List` is unpacked.
pub fn parse(source: &str, text: &str, validate: bool) -> Result<Vec<Document>, ManifestError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let err = |message: String| ManifestError::Parse {
            file: source.to_string(),
            index,
            message,
        };
        let value = Value::deserialize(de).map_err(|e| err(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        if !value.is_object() {
            return Err(err("a manifest document must be a mapping".into()));
        }
        let objects = if value.get("kind").and_then(Value::as_str) == Some("List") {
            value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        } else {
            vec![value]
        };
        for object in objects {
            check_object(&object, validate).map_err(err)?;
            docs.push(Document {
                source: source.to_string(),
                index,
                object,
            });
        }
    }
    Ok(docs)
}

fn check_object(object: &Value, validate: bool) -> Result<(), String> {
    let mut missing = Vec::new();
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    if api_version.is_none_or(str::is_empty) {
        missing.push("apiVersion not set");
    }
    if kind.is_none_or(str::is_empty) {
        missing.push("kind not set");
    }
    if !missing.is_empty() {
        return Err(missing.join(", "));
    }
    if validate {
        if let (Some(api_version), Some(kind)) = (api_version, kind) {
            check_typed(api_version, kind, object)?;
        }
    }
    Ok(())
}

/// Decodes `object` as the k8s-openapi type of its kind; the error names the field path
/// (`spec.template.spec.containers[0].image`). Unknown fields are errors, as with
/// kubectl's strict validation.
fn check_typed(api_version: &str, kind: &str, object: &Value) -> Result<(), String> {
    use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery, networking};
    macro_rules! kinds {
        ($( ($av:literal, $kind:literal) => $ty:ty ),* $(,)?) => {
            match (api_version, kind) {
                $( ($av, $kind) => decode::<$ty>(object), )*
                _ => Ok(()),
            }
        };
    }
    kinds! {
        ("v1", "Namespace") => core::v1::Namespace,
        ("v1", "Pod") => core::v1::Pod,
        ("v1", "Service") => core::v1::Service,
        ("v1", "Endpoints") => core::v1::Endpoints,
        ("v1", "Node") => core::v1::Node,
        ("v1", "ConfigMap") => core::v1::ConfigMap,
        ("v1", "Secret") => core::v1::Secret,
        ("v1", "Event") => core::v1::Event,
        ("v1", "ServiceAccount") => core::v1::ServiceAccount,
        ("v1", "PersistentVolume") => core::v1::PersistentVolume,
        ("v1", "PersistentVolumeClaim") => core::v1::PersistentVolumeClaim,
        ("v1", "LimitRange") => core::v1::LimitRange,
        ("v1", "ResourceQuota") => core::v1::ResourceQuota,
        ("v1", "ReplicationController") => core::v1::ReplicationController,
        ("apps/v1", "Deployment") => apps::v1::Deployment,
        ("apps/v1", "ReplicaSet") => apps::v1::ReplicaSet,
        ("apps/v1", "DaemonSet") => apps::v1::DaemonSet,
        ("apps/v1", "StatefulSet") => apps::v1::StatefulSet,
        ("apps/v1", "ControllerRevision") => apps::v1::ControllerRevision,
        ("batch/v1", "Job") => batch::v1::Job,
        ("batch/v1", "CronJob") => batch::v1::CronJob,
        ("coordination.k8s.io/v1", "Lease") => coordination::v1::Lease,
        ("autoscaling/v2", "HorizontalPodAutoscaler") => autoscaling::v2::HorizontalPodAutoscaler,
        ("networking.k8s.io/v1", "NetworkPolicy") => networking::v1::NetworkPolicy,
        ("discovery.k8s.io/v1", "EndpointSlice") => discovery::v1::EndpointSlice,
    }
}

fn decode<T: DeserializeOwned>(object: &Value) -> Result<(), String> {
    let mut unknown: Vec<String> = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let inner = serde_path_to_error::Deserializer::new(object, &mut track);
        let mut note = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
        let de = serde_ignored::Deserializer::new(inner, &mut note);
        T::deserialize(de).map(|_| ())
    };
    if let Err(e) = result {
        let path = track.path().to_string();
        return Err(if path.is_empty() || path == "." {
            e.to_string()
        } else {
            format!("{path}: {e}")
        });
    }
    if let Some(first) = unknown.first() {
        return Err(format!("unknown field \"{first}\""));
    }
    Ok(())
}

/// `spec.template.spec.containers[0].imagePullPolicyy` from serde_ignored's path.
fn ignored_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => {
            let head = ignored_path(parent);
            if head.is_empty() {
                key.clone()
            } else {
                format!("{head}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
data: {x: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: three
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"#;

    #[test]
    fn documents_keep_their_index() {
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"s\"}}\n";
        let docs = parse("x.yaml", text, true).expect("parse");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].object["kind"], "ConfigMap");
        assert_eq!(docs[1].object["kind"], "Secret");
        assert!(docs[1].index > docs[0].index);
    }

    #[test]
    fn bad_field_names_file_document_and_path() {
        let err = parse("deploy.yaml", TWO, true).expect_err("bad replicas");
        assert_eq!(
            err.to_string(),
            "error parsing deploy.yaml (document 2): spec.replicas: invalid type: string \"three\", expected i32"
        );
        // Without validation the document passes through untouched.
        assert_eq!(parse("deploy.yaml", TWO, false).expect("lenient").len(), 2);
    }

    #[test]
    fn nested_paths_unknown_fields_and_missing_kind() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: 5\n";
        let err = parse("p.yaml", text, true).expect_err("image not a string");
        assert_eq!(
            err.to_string(),
            "error parsing p.yaml (document 1): spec.containers[0].image: invalid type: integer `5`, expected a string"
        );
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    imagee: x\n";
        let err = parse("p.yaml", text, true).expect_err("unknown field");
        assert_eq!(
            err.to_string(),
            "error parsing p.yaml (document 1): unknown field \"spec.containers[0].imagee\""
        );
        let err = parse("m.yaml", "metadata: {name: x}\n", true).expect_err("no kind");
        assert_eq!(
            err.to_string(),
            "error parsing m.yaml (document 1): apiVersion not set, kind not set"
        );
        let err = parse("y.yaml", "a: [1,\n", true).expect_err("bad yaml");
        assert!(err
            .to_string()
            .starts_with("error parsing y.yaml (document 1): "));
    }

    #[test]
    fn lists_unpack_and_directories_recurse() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}]}"#;
        let docs = parse("l.json", text, true).expect("list");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].object["metadata"]["name"], "b");

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").expect("write");
        std::fs::write(
            dir.path().join("sub/a.json"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
        )
        .expect("write");
        let docs = read_sources(&[dir.path().display().to_string()], true).expect("dir");
        let names: Vec<&str> = docs
            .iter()
            .filter_map(|d| d.object["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names, ["b", "a"]);
        let err = read_sources(&["/nonexistent/x.yaml".into()], true).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "the path \"/nonexistent/x.yaml\" does not exist"
        );
    }
}
