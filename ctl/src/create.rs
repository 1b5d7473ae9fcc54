//! `create namespace|configmap|secret generic|secret tls`: builds the object from flags
//! (`--from-literal`, `--from-file` with `key=path` and directories, `--cert`/`--key`) and
//! creates it, or prints it with `--dry-run=client`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::client::{resource_path, with_query, Cluster};
use crate::get;
use crate::output::{self, Format};

/// Keys of ConfigMaps and Secrets: letters, digits, `-`, `_` and `.`.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Entries gathered from the flags: key → bytes, in key order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Entries(pub BTreeMap<String, Vec<u8>>);

impl Entries {
    fn add(&mut self, key: &str, value: Vec<u8>, kind: &str, name: &str) -> Result<()> {
        if !valid_key(key) {
            bail!("\"{key}\" is not a valid key name for a {kind}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
        }
        if self.0.contains_key(key) {
            bail!("cannot add key {key}, another key by that name already exists in data for {kind} \"{name}\"");
        }
        self.0.insert(key.to_string(), value);
        Ok(())
    }
}

/// Reads `--from-literal k=v` and `--from-file [k=]path` (a directory adds each of its
/// regular files, keyed by file name).
pub fn gather(literals: &[String], files: &[String], kind: &str, name: &str) -> Result<Entries> {
    let mut entries = Entries::default();
    for lit in literals {
        let (k, v) = lit
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid literal source {lit}, expected key=value"))?;
        entries.add(k, v.as_bytes().to_vec(), kind, name)?;
    }
    for spec in files {
        let (key, path) = match spec.split_once('=') {
            Some((k, p)) if !k.is_empty() => (Some(k), p),
            Some(_) => bail!("key names or file paths cannot be empty: {spec}"),
            None => (None, spec.as_str()),
        };
        let p = Path::new(path);
        if p.is_dir() {
            if key.is_some() {
                bail!("cannot give a key name for a directory path");
            }
            let mut files: Vec<_> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {path}"))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|f| f.is_file())
                .collect();
            files.sort();
            for f in files {
                let k = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string();
                let data = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                entries.add(&k, data, kind, name)?;
            }
        } else {
            let data = std::fs::read(p).map_err(|e| anyhow!("error reading {path}: {e}"))?;
            let k = match key {
                Some(k) => k.to_string(),
                None => p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string(),
            };
            entries.add(&k, data, kind, name)?;
        }
    }
    Ok(entries)
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "creationTimestamp": null}, "spec": {}, "status": {}})
}

/// A ConfigMap: UTF-8 values go to `data`, the rest base64 to `binaryData`.
pub fn configmap(name: &str, entries: &Entries) -> Value {
    let mut data = Map::new();
    let mut binary = Map::new();
    for (k, v) in &entries.0 {
        match std::str::from_utf8(v) {
            Ok(s) => {
                data.insert(k.clone(), Value::String(s.to_string()));
            }
            Err(_) => {
                binary.insert(
                    k.clone(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
                );
            }
        }
    }
    // kubectl prints `creationTimestamp: null` in dry runs; the server ignores it.
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "creationTimestamp": null}});
    if !data.is_empty() {
        cm["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        cm["binaryData"] = Value::Object(binary);
    }
    cm
}

pub fn secret(name: &str, kind: &str, entries: &Entries) -> Value {
    let data: Map<String, Value> = entries
        .0
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    let mut s =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": kind});
    if !data.is_empty() {
        s["data"] = Value::Object(data);
    }
    s
}

/// A `kubernetes.io/tls` Secret from PEM files.
pub fn tls_secret(name: &str, cert: &str, key: &str) -> Result<Value> {
    let read = |p: &str, what: &str, marker: &str| -> Result<Vec<u8>> {
        let data = std::fs::read(p).map_err(|e| anyhow!("failed to load key pair: {p}: {e}"))?;
        if !String::from_utf8_lossy(&data).contains(marker) {
            bail!("failed to load key pair: {p} does not hold a PEM {what}");
        }
        Ok(data)
    };
    let mut entries = Entries::default();
    entries.add(
        "tls.crt",
        read(cert, "certificate", "-----BEGIN CERTIFICATE-----")?,
        "Secret",
        name,
    )?;
    entries.add(
        "tls.key",
        read(key, "private key", "PRIVATE KEY-----")?,
        "Secret",
        name,
    )?;
    Ok(secret(name, "kubernetes.io/tls", &entries))
}

/// Creates (or with `dry_run` only prints) `object`.
pub async fn submit(
    cluster: Option<&Cluster>,
    object: Value,
    dry_run: &str,
    output: Option<&str>,
) -> Result<()> {
    submit_as(cluster, object, dry_run, output, "created").await
}

/// Creates `object` (or prints it with `--dry-run=client`) and reports it with `verb`
/// (`created`, `exposed`, `autoscaled`), or in the `-o` format.
pub async fn submit_as(
    cluster: Option<&Cluster>,
    object: Value,
    dry_run: &str,
    output: Option<&str>,
    verb: &str,
) -> Result<()> {
    let format = Format::parse(output)?;
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let resource = skiff_api::resources::by_kind(api_version, kind)
        .ok_or_else(|| anyhow!("no resource for kind {kind}"))?;
    let mut object = object;
    let suffix = match dry_run {
        "client" => " (dry run)",
        "server" => " (server dry run)",
        "none" | "" => "",
        other => {
            bail!("Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\".")
        }
    };
    let result = if dry_run == "client" {
        object
    } else {
        let cluster = cluster.ok_or_else(|| anyhow!("no cluster connection"))?;
        if resource.namespaced {
            object["metadata"]["namespace"] = Value::String(cluster.namespace.clone());
        }
        let path = resource_path(resource, cluster.object_namespace(resource), None, None);
        let path = if dry_run == "server" {
            with_query(&path, &[("dryRun", "All")])
        } else {
            path
        };
        get::with_kind(resource, cluster.post(&path, &object).await?)
    };
    match format {
        Format::Table | Format::Wide => {
            println!("{}{suffix} {verb}", get::kind_name(resource, &result))
        }
        other => print!(
            "{}",
            output::render(&other, vec![result], true, get::object_kind_name)
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_files_and_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).expect("mkdir");
        std::fs::write(conf.join("a.txt"), "hello").expect("write");
        std::fs::write(conf.join("bin"), [0xff, 0x00, 0x01]).expect("write");
        let single = dir.path().join("single.conf");
        std::fs::write(&single, "x=1\n").expect("write");
        let entries = gather(
            &["k=v=w".into()],
            &[
                conf.display().to_string(),
                format!("renamed={}", single.display()),
            ],
            "ConfigMap",
            "c",
        )
        .expect("gather");
        let cm = configmap("c", &entries);
        assert_eq!(cm["data"]["k"], "v=w");
        assert_eq!(cm["data"]["a.txt"], "hello");
        assert_eq!(cm["data"]["renamed"], "x=1\n");
        assert_eq!(cm["binaryData"]["bin"], "/wAB");
        let s = secret("s", "Opaque", &entries);
        assert_eq!(s["data"]["a.txt"], "aGVsbG8=");
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn bad_keys_and_duplicates() {
        let err = gather(&["a=1".into(), "a=2".into()], &[], "ConfigMap", "c").expect_err("dup");
        assert!(err.to_string().contains("cannot add key a"));
        assert!(gather(&["bad key=1".into()], &[], "ConfigMap", "c").is_err());
        assert!(gather(&["novalue".into()], &[], "ConfigMap", "c").is_err());
        assert!(gather(&[], &["/nonexistent/file".into()], "ConfigMap", "c").is_err());
    }

    #[test]
    fn tls_needs_pem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let s =
            tls_secret("t", &cert.display().to_string(), &key.display().to_string()).expect("tls");
        assert_eq!(s["type"], "kubernetes.io/tls");
        assert!(s["data"]["tls.crt"].is_string());
        assert!(tls_secret("t", &key.display().to_string(), &key.display().to_string()).is_err());
    }
}
