//! `delete`: by type and names, `TYPE/NAME`, manifest files, label selector or `--all`,
//! with kubectl's grace-period, force and cascade rules, then waits for the objects to go.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;

use crate::apply;
use crate::client::{resource_path, with_query, Cluster};
use crate::errors::{self, Failures};
use crate::manifest;
use crate::target;

#[derive(Debug, Clone)]
pub struct DeleteArgs {
    pub args: Vec<String>,
    pub files: Vec<String>,
    pub selector: Option<String>,
    pub all: bool,
    /// Negative: the object's own default.
    pub grace_period: i64,
    pub force: bool,
    pub cascade: String,
    pub ignore_not_found: bool,
    pub wait: bool,
    pub timeout: Option<Duration>,
}

/// The DeleteOptions body for these flags.
pub fn delete_options(grace_period: i64, force: bool, cascade: &str) -> Result<Value> {
    let policy = match cascade {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        other => bail!(
            "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
        ),
    };
    let mut grace = grace_period;
    if grace == 0 && !force {
        // kubectl keeps --grace-period=0 without --force from deleting immediately.
        grace = 1;
    }
    if force && grace < 0 {
        grace = 0;
    }
    let mut options = json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": policy,
    });
    if grace >= 0 {
        options["gracePeriodSeconds"] = json!(grace);
    }
    Ok(options)
}

struct Victim {
    resource: &'static ResourceInfo,
    namespace: Option<String>,
    name: String,
}

pub async fn run(cluster: &Cluster, args: &DeleteArgs) -> Result<()> {
    let options = delete_options(args.grace_period, args.force, &args.cascade)?;
    let immediate = options.get("gracePeriodSeconds").and_then(Value::as_i64) == Some(0);
    if immediate {
        eprintln!("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.");
    }
    let mut failures = Failures::default();
    let mut victims = Vec::new();
    if !args.files.is_empty() {
        if !args.args.is_empty() {
            bail!("resource(s) were provided, but files were also given; use one or the other");
        }
        for doc in manifest::read_sources(&args.files, false)? {
            match apply::place(cluster, &doc, true) {
                Ok(p) => victims.push(Victim {
                    resource: p.resource,
                    namespace: p.namespace,
                    name: p.name,
                }),
                Err(e) => failures.report(&e),
            }
        }
    } else {
        let targets = target::parse(&args.args, "delete")?;
        for t in targets {
            let ns = cluster.object_namespace(t.resource).map(str::to_string);
            if !t.names.is_empty() {
                if args.all || args.selector.is_some() {
                    bail!("name cannot be provided when a selector or --all is specified");
                }
                for name in t.names {
                    victims.push(Victim {
                        resource: t.resource,
                        namespace: ns.clone(),
                        name,
                    });
                }
                continue;
            }
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
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let item_ns = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                victims.push(Victim {
                    resource: t.resource,
                    namespace: if t.resource.namespaced {
                        item_ns.or(ns.clone())
                    } else {
                        None
                    },
                    name: name.to_string(),
                });
            }
        }
        if victims.is_empty() {
            eprintln!("No resources found");
            return failures.finish();
        }
    }

    let mut deleted = Vec::new();
    for v in victims {
        let path = resource_path(v.resource, v.namespace.as_deref(), Some(&v.name), None);
        match cluster.delete(&path, &options).await {
            Ok(answer) => {
                let word = if immediate {
                    "force deleted"
                } else {
                    "deleted"
                };
                println!("{} \"{}\" {word}", v.resource.singular_group(), v.name);
                let uid = answer
                    .pointer("/metadata/uid")
                    .or_else(|| answer.pointer("/details/uid"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                deleted.push((path, uid));
            }
            Err(e) if args.ignore_not_found && errors::is_not_found(&e) => {}
            Err(e) => failures.report(&e),
        }
    }
    if args.wait {
        for (path, uid) in deleted {
            if let Err(e) = wait_gone(cluster, &path, uid.as_deref(), args.timeout).await {
                failures.report(&e);
            }
        }
    }
    failures.finish()
}

/// Polls until the object is gone (or replaced by a new one with another uid).
async fn wait_gone(
    cluster: &Cluster,
    path: &str,
    uid: Option<&str>,
    timeout: Option<Duration>,
) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        match cluster.get(path).await {
            Err(e) if errors::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
            Ok(obj) => {
                let now_uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
                if uid.is_some() && now_uid != uid {
                    return Ok(());
                }
            }
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Err(anyhow!("timed out waiting for {path} to be deleted"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_and_cascade_rules() {
        let o = delete_options(-1, false, "background").expect("default");
        assert_eq!(o["propagationPolicy"], "Background");
        assert!(o.get("gracePeriodSeconds").is_none());
        let o = delete_options(0, false, "orphan").expect("zero without force");
        assert_eq!(o["gracePeriodSeconds"], 1);
        assert_eq!(o["propagationPolicy"], "Orphan");
        let o = delete_options(-1, true, "foreground").expect("force");
        assert_eq!(o["gracePeriodSeconds"], 0);
        assert_eq!(o["propagationPolicy"], "Foreground");
        let o = delete_options(30, false, "true").expect("legacy cascade");
        assert_eq!(o["gracePeriodSeconds"], 30);
        assert!(delete_options(-1, false, "sideways").is_err());
    }
}
