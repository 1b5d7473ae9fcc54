//! What the cluster says about itself: `version`, `cluster-info` and `api-resources`
//! (from discovery, `/api/v1` and `/apis/{group}/{version}`).

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::client::{with_query, Cluster};
use crate::output;
use crate::table;

pub fn client_version() -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    json!({
        "major": parts.next().unwrap_or("0"),
        "minor": parts.next().unwrap_or("0"),
        "gitVersion": format!("v{version}"),
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }),
    })
}

pub async fn version(cluster: Option<&Cluster>, output: Option<&str>) -> Result<()> {
    let client = client_version();
    let server = match cluster {
        Some(c) => Some(c.get("/version").await?),
        None => None,
    };
    match output {
        Some("json" | "yaml") => {
            let mut doc = json!({"clientVersion": client});
            if let Some(s) = &server {
                doc["serverVersion"] = s.clone();
            }
            if output == Some("json") {
                print!("{}", output::to_json(&doc));
            } else {
                print!("{}", output::to_yaml(&doc));
            }
        }
        None | Some("") => {
            println!(
                "Client Version: {}",
                client["gitVersion"].as_str().unwrap_or("")
            );
            if let Some(s) = server {
                println!(
                    "Server Version: {}",
                    s.get("gitVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                );
            }
        }
        Some(other) => bail!("--output must be 'yaml' or 'json', not {other:?}"),
    }
    Ok(())
}

pub async fn cluster_info(cluster: &Cluster) -> Result<()> {
    // Reaching the server is part of the answer: fail here if it does not respond.
    let path = with_query(
        "/api/v1/namespaces/kube-system/services",
        &[("labelSelector", "kubernetes.io/cluster-service=true")],
    );
    let services = cluster.get(&path).await?;
    println!("Kubernetes control plane is running at {}", cluster.server);
    for svc in services
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let display = svc
            .pointer("/metadata/labels")
            .and_then(|l| l.get("kubernetes.io/name"))
            .and_then(Value::as_str)
            .unwrap_or(name);
        let port = svc
            .pointer("/spec/ports/0")
            .map(|p| match p.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => format!(":{n}"),
                _ => p
                    .get("port")
                    .and_then(Value::as_i64)
                    .map(|n| format!(":{n}"))
                    .unwrap_or_default(),
            })
            .unwrap_or_default();
        println!(
            "{display} is running at {}/api/v1/namespaces/kube-system/services/{name}{port}/proxy",
            cluster.server
        );
    }
    println!();
    println!("To further debug and diagnose cluster problems, use 'skiffctl get events -A' and 'skiffctl describe'.");
    Ok(())
}

/// One row of `api-resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResource {
    pub name: String,
    pub short_names: Vec<String>,
    pub api_version: String,
    pub namespaced: bool,
    pub kind: String,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
    pub group: String,
}

/// The resources of one discovery document (subresources left out).
pub fn parse_resource_list(list: &Value, group: &str) -> Vec<ApiResource> {
    let api_version = list
        .get("groupVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    list.get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let name = r.get("name").and_then(Value::as_str)?;
            if name.contains('/') {
                return None;
            }
            Some(ApiResource {
                name: name.to_string(),
                short_names: strings(r.get("shortNames")),
                api_version: api_version.clone(),
                namespaced: r
                    .get("namespaced")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                kind: r
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                verbs: strings(r.get("verbs")),
                categories: strings(r.get("categories")),
                group: group.to_string(),
            })
        })
        .collect()
}

pub struct ApiResourcesArgs {
    pub namespaced: Option<bool>,
    pub api_group: Option<String>,
    pub output: Option<String>,
    pub no_headers: bool,
}

pub async fn api_resources(cluster: &Cluster, args: &ApiResourcesArgs) -> Result<()> {
    let mut all = parse_resource_list(&cluster.get("/api/v1").await?, "");
    let groups = cluster.get("/apis").await?;
    for group in groups
        .get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = group.get("name").and_then(Value::as_str).unwrap_or("");
        let gv = group
            .pointer("/preferredVersion/groupVersion")
            .or_else(|| group.pointer("/versions/0/groupVersion"))
            .and_then(Value::as_str);
        let Some(gv) = gv else { continue };
        let list = cluster.get(&format!("/apis/{gv}")).await?;
        all.extend(parse_resource_list(&list, name));
    }
    // kubectl lists by group, the core group first, then by name.
    all.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    let rows: Vec<&ApiResource> = all
        .iter()
        .filter(|r| args.namespaced.is_none_or(|n| n == r.namespaced))
        .filter(|r| args.api_group.as_deref().is_none_or(|g| g == r.group))
        .collect();
    print!(
        "{}",
        render_resources(&rows, args.output.as_deref(), args.no_headers)?
    );
    Ok(())
}

pub fn render_resources(
    rows: &[&ApiResource],
    output: Option<&str>,
    no_headers: bool,
) -> Result<String> {
    match output {
        Some("name") => Ok(rows
            .iter()
            .map(|r| {
                if r.group.is_empty() {
                    format!("{}\n", r.name)
                } else {
                    format!("{}.{}\n", r.name, r.group)
                }
            })
            .collect()),
        None | Some("wide") => {
            let wide = output == Some("wide");
            let mut header: Vec<String> =
                ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            if wide {
                header.push("VERBS".into());
                header.push("CATEGORIES".into());
            }
            let lines = rows
                .iter()
                .map(|r| {
                    let mut line = vec![
                        r.name.clone(),
                        r.short_names.join(","),
                        r.api_version.clone(),
                        r.namespaced.to_string(),
                        r.kind.clone(),
                    ];
                    if wide {
                        line.push(r.verbs.join(","));
                        line.push(r.categories.join(","));
                    }
                    line
                })
                .collect();
            Ok(table::render(header, lines, no_headers))
        }
        Some(other) => bail!("--output {other} is not available"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_rows() {
        let list = json!({"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"], "verbs": ["get", "list"]},
            {"name": "deployments/scale", "namespaced": true, "kind": "Scale"}
        ]});
        let rows = parse_resource_list(&list, "apps");
        assert_eq!(rows.len(), 1);
        let refs: Vec<&ApiResource> = rows.iter().collect();
        assert_eq!(
            render_resources(&refs, None, false).expect("table"),
            "NAME          SHORTNAMES   APIVERSION   NAMESPACED   KIND\ndeployments   deploy       apps/v1      true         Deployment\n"
        );
        assert_eq!(
            render_resources(&refs, Some("name"), false).expect("names"),
            "deployments.apps\n"
        );
    }
}
