//! Finding, reading and editing kubeconfig files, the way kubectl does.
//!
//! Lookup order: `--kubeconfig`, then every file in `$KUBECONFIG` (merged, first one wins
//! for each name), then `~/.kube/config`. Connecting goes through kube-rs' own loader;
//! `config view` and `config use-context` work on the raw YAML so nothing the file holds is
//! lost when it is written back.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KubeconfigError {
    #[error("no kubeconfig found: pass --kubeconfig, set $KUBECONFIG or create ~/.kube/config")]
    Missing,
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing kubeconfig {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("writing kubeconfig {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no context exists with the name: \"{0}\"")]
    NoContext(String),
    #[error("current-context is not set")]
    NoCurrentContext,
}

/// The kubeconfig files to read, in priority order.
pub fn paths(flag: Option<&Path>) -> Result<Vec<PathBuf>, KubeconfigError> {
    if let Some(p) = flag {
        return Ok(vec![p.to_path_buf()]);
    }
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        // Like kubectl, files named in $KUBECONFIG that do not exist are skipped.
        let found: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty() && p.exists())
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let home = std::env::var_os("HOME").ok_or(KubeconfigError::Missing)?;
    let default = Path::new(&home).join(".kube").join("config");
    if default.exists() {
        Ok(vec![default])
    } else {
        Err(KubeconfigError::Missing)
    }
}

fn read_raw(path: &Path) -> Result<Value, KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_yaml_ng::from_str(&text).map_err(|source| KubeconfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and merges the files: named entries from earlier files win, as do the first
/// `current-context` and scalar settings.
pub fn merged(paths: &[PathBuf]) -> Result<Value, KubeconfigError> {
    let mut out = Map::new();
    for path in paths {
        let doc = read_raw(path)?;
        let Value::Object(doc) = doc else { continue };
        for (key, value) in doc {
            match (key.as_str(), &value) {
                ("clusters" | "contexts" | "users", Value::Array(items)) => {
                    let list = out
                        .entry(key.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(existing) = list {
                        for item in items {
                            let name = item.get("name");
                            if !existing.iter().any(|e| e.get("name") == name) {
                                existing.push(item.clone());
                            }
                        }
                    }
                }
                _ => {
                    let empty = match out.get(&key) {
                        None | Some(Value::Null) => true,
                        Some(Value::String(s)) => s.is_empty(),
                        _ => false,
                    };
                    if empty {
                        out.insert(key, value);
                    }
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// The merged config as `config view` prints it.
pub fn view(config: &Value, raw: bool, minify: bool) -> Result<Value, KubeconfigError> {
    let mut config = config.clone();
    if minify {
        config = minified(&config)?;
    }
    if let Value::Object(map) = &mut config {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String("v1".into()));
        map.entry("kind")
            .or_insert_with(|| Value::String("Config".into()));
        map.entry("preferences")
            .or_insert_with(|| Value::Object(Map::new()));
        for list in ["clusters", "contexts", "users"] {
            let entry = map.entry(list).or_insert(Value::Null);
            if entry.as_array().is_some_and(Vec::is_empty) {
                *entry = Value::Null;
            }
        }
    }
    if !raw {
        redact(&mut config);
    }
    Ok(config)
}

/// Only the current context, its cluster and its user.
fn minified(config: &Value) -> Result<Value, KubeconfigError> {
    let current = config
        .get("current-context")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(KubeconfigError::NoCurrentContext)?;
    let context = find_named(config, "contexts", current)
        .ok_or_else(|| KubeconfigError::NoContext(current.to_string()))?;
    let cluster = context
        .pointer("/context/cluster")
        .and_then(Value::as_str)
        .unwrap_or("");
    let user = context
        .pointer("/context/user")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut out = config.clone();
    if let Value::Object(map) = &mut out {
        let keep = |list: &str, name: &str| {
            Value::Array(
                find_named(config, list, name)
                    .into_iter()
                    .cloned()
                    .collect(),
            )
        };
        map.insert("contexts".into(), keep("contexts", current));
        map.insert("clusters".into(), keep("clusters", cluster));
        map.insert("users".into(), keep("users", user));
    }
    Ok(out)
}

fn find_named<'a>(config: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    config
        .get(list)?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
}

/// Hides secrets as kubectl does: certificate and key data become `DATA+OMITTED`, tokens
/// and passwords `REDACTED`.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "certificate-authority-data"
                    | "client-certificate-data"
                    | "client-key-data"
                        if v.is_string() =>
                    {
                        *v = Value::String("DATA+OMITTED".into());
                    }
                    "token" | "password" if v.is_string() => {
                        *v = Value::String("REDACTED".into());
                    }
                    _ => redact(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Names of the contexts, with the current one.
pub fn contexts(config: &Value) -> (Vec<Value>, String) {
    let list = config
        .get("contexts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let current = config
        .get("current-context")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (list, current)
}

/// Sets `current-context` in the first file, after checking the context exists.
pub fn use_context(paths: &[PathBuf], name: &str) -> Result<(), KubeconfigError> {
    let all = merged(paths)?;
    if find_named(&all, "contexts", name).is_none() {
        return Err(KubeconfigError::NoContext(name.to_string()));
    }
    let target = paths.first().ok_or(KubeconfigError::Missing)?;
    let mut doc = read_raw(target)?;
    if let Value::Object(map) = &mut doc {
        map.insert("current-context".into(), Value::String(name.to_string()));
    }
    let text = serde_yaml_ng::to_string(&doc).map_err(|source| KubeconfigError::Parse {
        path: target.clone(),
        source,
    })?;
    std::fs::write(target, text).map_err(|source| KubeconfigError::Write {
        path: target.clone(),
        source,
    })
}

/// kube-rs' view of the same files, for connecting.
pub fn load(paths: &[PathBuf]) -> Result<kube::config::Kubeconfig, anyhow::Error> {
    let mut merged: Option<kube::config::Kubeconfig> = None;
    for path in paths {
        let next = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| anyhow::anyhow!("loading kubeconfig {}: {e}", path.display()))?;
        merged = Some(match merged {
            None => next,
            Some(prev) => prev
                .merge(next)
                .map_err(|e| anyhow::anyhow!("merging kubeconfig {}: {e}", path.display()))?,
        });
    }
    merged.ok_or_else(|| anyhow::Error::new(KubeconfigError::Missing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: LS0tLS1CRUdJTg==
contexts:
- name: skiff
  context: {cluster: skiff, user: admin, namespace: apps}
- name: other
  context: {cluster: other, user: bob}
current-context: skiff
users:
- name: admin
  user: {token: s3cret}
- name: bob
  user: {client-certificate-data: QUJD, client-key-data: REVG, password: pw, username: bob}
"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn view_redacts_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "config", CONFIG);
        let all = merged(&[p]).expect("merged");
        let v = view(&all, false, false).expect("view");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "DATA+OMITTED"
        );
        assert_eq!(v["users"][0]["user"]["token"], "REDACTED");
        assert_eq!(v["users"][1]["user"]["client-key-data"], "DATA+OMITTED");
        assert_eq!(v["users"][1]["user"]["password"], "REDACTED");
        assert_eq!(v["users"][1]["user"]["username"], "bob");
        assert_eq!(v["preferences"], json!({}));
        let raw = view(&all, true, false).expect("raw");
        assert_eq!(raw["users"][0]["user"]["token"], "s3cret");
        let min = view(&all, false, true).expect("minify");
        assert_eq!(min["users"].as_array().map(Vec::len), Some(1));
        assert_eq!(min["contexts"][0]["name"], "skiff");
    }

    #[test]
    fn merge_first_wins_and_use_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write(dir.path(), "a", CONFIG);
        let b = write(
            dir.path(),
            "b",
            "contexts:\n- name: skiff\n  context: {cluster: x}\n- name: third\n  context: {cluster: y}\ncurrent-context: third\n",
        );
        let all = merged(&[a.clone(), b.clone()]).expect("merged");
        assert_eq!(all["current-context"], "skiff");
        assert_eq!(all["contexts"].as_array().map(Vec::len), Some(3));
        assert_eq!(all["contexts"][0]["context"]["cluster"], "skiff");

        use_context(&[a.clone(), b], "third").expect("switch");
        let after = merged(std::slice::from_ref(&a)).expect("reread");
        assert_eq!(after["current-context"], "third");
        assert_eq!(after["users"][0]["user"]["token"], "s3cret");
        let err = use_context(&[a], "nope").expect_err("missing context");
        assert_eq!(err.to_string(), "no context exists with the name: \"nope\"");
    }
}
