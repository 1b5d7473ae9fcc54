//! `edit`: opens the live object in `$KUBE_EDITOR`/`$EDITOR` (default `vi`), and sends
//! what changed. When the server refuses, the file is reopened with the error on top as
//! comments, as kubectl does.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::client::{resource_path, Cluster, PatchType};
use crate::errors;
use crate::modify;
use crate::output;
use crate::threeway;

const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
";

/// The editor command: `$KUBE_EDITOR`, then `$EDITOR`, then `vi`.
pub fn editor() -> String {
    ["KUBE_EDITOR", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string())
}

fn run_editor(file: &Path) -> Result<()> {
    let editor = editor();
    // Editors given with arguments ("code --wait") need a shell, as kubectl does it.
    let status = if editor.contains(char::is_whitespace) {
        let quoted = format!("'{}'", file.display().to_string().replace('\'', "'\\''"));
        Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} {quoted}"))
            .status()
    } else {
        Command::new(&editor).arg(file).status()
    }
    .with_context(|| format!("starting editor {editor:?}"))?;
    if !status.success() {
        bail!("there was a problem with the editor {editor:?}");
    }
    Ok(())
}

/// The document without comment lines; `None` when nothing is left.
pub fn strip_comments(text: &str) -> Option<String> {
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let body = kept.join("\n");
    if body.trim().is_empty() {
        None
    } else {
        Some(body)
    }
}

/// The comment block describing why the last save failed.
pub fn error_comment(what: &str, message: &str) -> String {
    let mut out = format!("# {what} was not valid:\n");
    for line in message.lines() {
        out.push_str(&format!("# * {line}\n"));
    }
    out.push_str("#\n");
    out
}

pub async fn run(cluster: &Cluster, args: &[String], json_output: bool) -> Result<()> {
    let targets = modify::named(args, "edit")?;
    if targets.len() != 1 {
        bail!("skiffctl edit works on one object at a time");
    }
    let (t, name) = &targets[0];
    let resource = t.resource;
    let path = resource_path(
        resource,
        cluster.object_namespace(resource),
        Some(name),
        None,
    );
    let original = crate::get::with_kind(resource, cluster.get(&path).await?);
    let render = |v: &Value| {
        if json_output {
            output::to_json(v)
        } else {
            output::to_yaml(v)
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("skiffctl-edit-")
        .tempdir()?;
    let ext = if json_output { "json" } else { "yaml" };
    let file = dir.path().join(format!("{}-{name}.{ext}", resource.plural));
    let what = format!("{} \"{name}\"", resource.group_resource());
    let mut content = format!("{HEADER}{}", render(&original));
    let mut last_error: Option<String> = None;
    let mut last_attempt: Option<Value> = None;
    loop {
        std::fs::write(&file, &content).with_context(|| format!("writing {}", file.display()))?;
        run_editor(&file)?;
        let edited_text = std::fs::read_to_string(&file)?;
        let Some(body) = strip_comments(&edited_text) else {
            eprintln!("Edit cancelled, saved file was empty.");
            return Ok(());
        };
        let edited: Value = match serde_yaml_ng::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                let message = format!("error parsing {}: {e}", file.display());
                content = format!("{HEADER}{}{body}\n", error_comment(&what, &message));
                if last_error.as_deref() == Some(message.as_str()) {
                    bail!("Edit cancelled, no valid changes were saved.");
                }
                last_error = Some(message);
                continue;
            }
        };
        if edited == original {
            if last_error.is_some() {
                bail!("Edit cancelled, no valid changes were saved.");
            }
            eprintln!("Edit cancelled, no changes made.");
            return Ok(());
        }
        if last_attempt.as_ref() == Some(&edited) {
            // Saved again unchanged after an error: nothing new to try.
            bail!("Edit cancelled, no valid changes were saved.");
        }
        let mut patch = threeway::merge_patch(&original, &edited);
        // The version read is a precondition: a concurrent change makes this a conflict.
        if let (Some(rv), Some(meta)) = (
            original.pointer("/metadata/resourceVersion").cloned(),
            patch.as_object_mut().map(|p| {
                p.entry("metadata")
                    .or_insert_with(|| Value::Object(Default::default()))
            }),
        ) {
            if let Some(meta) = meta.as_object_mut() {
                meta.entry("resourceVersion").or_insert(rv);
            }
        }
        match cluster.patch(&path, PatchType::Merge, &patch).await {
            Ok(_) => {
                println!("{}/{name} edited", resource.singular_group());
                return Ok(());
            }
            Err(e) => {
                let message = errors::server_error(&e)
                    .map(|s| s.message.clone())
                    .unwrap_or_else(|| format!("{e:#}"));
                eprintln!("{}", errors::render(&e));
                content = format!(
                    "{HEADER}{}{}",
                    error_comment(&what, &message),
                    render(&edited)
                );
                last_error = Some(message);
                last_attempt = Some(edited);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_errors() {
        assert_eq!(strip_comments("# a\n#b\n\n"), None);
        assert_eq!(
            strip_comments("# header\napiVersion: v1\n  # indented comment\nkind: X\n").as_deref(),
            Some("apiVersion: v1\nkind: X")
        );
        assert_eq!(
            error_comment("pods \"x\"", "spec.containers: Required value\nsecond"),
            "# pods \"x\" was not valid:\n# * spec.containers: Required value\n# * second\n#\n"
        );
    }
}
