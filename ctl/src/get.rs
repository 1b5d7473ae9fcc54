//! `get`: lists or fetches objects, printed from the server-side Table kubectl asks for,
//! or in one of the `-o` formats; `-w` keeps printing rows as objects change.

use anyhow::{bail, Result};
use futures::StreamExt;
use serde_json::Value;
use skiff_api::resources::ResourceInfo;

use crate::client::{resource_path, with_query, Cluster, TABLE_ACCEPT};
use crate::errors::{self, Failures};
use crate::output::{self, Format};
use crate::table::{self, Options};
use crate::target::{self, Target};

#[derive(Debug, Clone, Default)]
pub struct GetArgs {
    pub args: Vec<String>,
    pub output: Option<String>,
    pub selector: Option<String>,
    pub field_selector: Option<String>,
    pub show_labels: bool,
    pub label_columns: Vec<String>,
    pub watch: bool,
    pub watch_only: bool,
    pub no_headers: bool,
    pub ignore_not_found: bool,
}

/// Fills in `kind`/`apiVersion`, which items of a list leave out.
pub fn with_kind(resource: &ResourceInfo, mut obj: Value) -> Value {
    if let Value::Object(map) = &mut obj {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(resource.api_version()));
        map.entry("kind")
            .or_insert_with(|| Value::String(resource.kind.to_string()));
    }
    obj
}

/// `deployment.apps/web` for an object that carries its `apiVersion` and `kind`.
pub fn object_kind_name(obj: &Value) -> String {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    match skiff_api::resources::by_kind(api_version, kind) {
        Some(resource) => kind_name(resource, obj),
        None => format!(
            "{}/{}",
            kind.to_ascii_lowercase(),
            obj.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        ),
    }
}

/// `deployment.apps/web`.
pub fn kind_name(resource: &ResourceInfo, obj: &Value) -> String {
    format!(
        "{}/{}",
        resource.singular_group(),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    )
}

fn list_query(args: &GetArgs) -> Vec<(&'static str, &str)> {
    vec![
        ("labelSelector", args.selector.as_deref().unwrap_or("")),
        (
            "fieldSelector",
            args.field_selector.as_deref().unwrap_or(""),
        ),
    ]
}

pub async fn run(cluster: &Cluster, args: &GetArgs) -> Result<()> {
    let format = Format::parse(args.output.as_deref())?;
    let targets = target::parse(&args.args, "get")?;
    if args.watch || args.watch_only {
        if targets.len() != 1 {
            bail!(
                "you may only specify a single resource type when watching, {} given",
                targets.len()
            );
        }
        return watch(cluster, &targets[0], args, &format).await;
    }
    let mut failures = Failures::default();
    let several = targets.len() > 1;
    let single = !several && targets[0].names.len() == 1;
    let now = jiff::Timestamp::now();
    let mut printed_any = false;
    let mut objects = Vec::new();
    for target in &targets {
        let resource = target.resource;
        if format.wants_table() {
            let answers = fetch(cluster, target, args, true, &mut failures).await?;
            let opts = Options {
                wide: format == Format::Wide,
                no_headers: args.no_headers,
                show_labels: args.show_labels,
                label_columns: args.label_columns.clone(),
                namespace_column: cluster.all_namespaces && resource.namespaced,
                kind_prefix: several.then(|| format!("{}/", resource.singular_group())),
            };
            let mut header = Vec::new();
            let mut rows = Vec::new();
            let mut answers = answers;
            if is_events(resource) {
                answers.iter_mut().for_each(sort_events);
            }
            for answer in &answers {
                let (h, r) = table::rows(answer, &opts, now);
                header = h;
                rows.extend(r);
            }
            if rows.is_empty() {
                continue;
            }
            if printed_any {
                println!();
            }
            print!("{}", table::render(header, rows, opts.no_headers));
            printed_any = true;
        } else {
            for answer in fetch(cluster, target, args, false, &mut failures).await? {
                let items = match answer.get("items").and_then(Value::as_array) {
                    Some(items) if target.names.is_empty() => items.clone(),
                    _ => vec![answer],
                };
                for item in items {
                    let item = with_kind(resource, item);
                    objects.push(item);
                }
            }
        }
    }
    if !format.wants_table() {
        printed_any = !objects.is_empty() || single;
        print!(
            "{}",
            output::render(&format, objects, single, object_kind_name)
        );
    }
    let asked_names = targets.iter().any(|t| !t.names.is_empty());
    if !printed_any && !asked_names && format.wants_table() {
        no_resources(cluster, &targets);
    }
    failures.finish()
}

fn no_resources(cluster: &Cluster, targets: &[Target]) {
    let namespaced = targets.iter().any(|t| t.resource.namespaced);
    if namespaced && !cluster.all_namespaces {
        eprintln!("No resources found in {} namespace.", cluster.namespace);
    } else {
        eprintln!("No resources found");
    }
}

/// The answers for one target: one per name, or the list.
async fn fetch(
    cluster: &Cluster,
    target: &Target,
    args: &GetArgs,
    as_table: bool,
    failures: &mut Failures,
) -> Result<Vec<Value>> {
    let resource = target.resource;
    let mut out = Vec::new();
    if target.names.is_empty() {
        let mut query = list_query(args);
        if as_table && is_events(resource) {
            // The rows are sorted by when each event last happened, which needs the events.
            query.push(("includeObject", "Object"));
        }
        let path = with_query(
            &resource_path(resource, cluster.list_namespace(resource), None, None),
            &query,
        );
        out.push(if as_table {
            cluster.get_table(&path).await?
        } else {
            cluster.get(&path).await?
        });
        return Ok(out);
    }
    for name in &target.names {
        let path = resource_path(
            resource,
            cluster.object_namespace(resource),
            Some(name),
            None,
        );
        let answer = if as_table {
            cluster.get_table(&path).await
        } else {
            cluster.get(&path).await
        };
        match answer {
            Ok(v) => out.push(v),
            Err(e) if args.ignore_not_found && errors::is_not_found(&e) => {}
            Err(e) => failures.report(&e),
        }
    }
    Ok(out)
}

fn is_events(resource: &ResourceInfo) -> bool {
    resource.group.is_empty() && resource.kind == "Event"
}

/// When an event last happened: lastTimestamp, else the series' last observation, else
/// eventTime, firstTimestamp, creationTimestamp.
pub fn event_time(ev: &Value) -> Option<jiff::Timestamp> {
    [
        "/lastTimestamp",
        "/series/lastObservedTime",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| crate::age::parse(ev.pointer(p)))
}

/// Orders a Table of events (or a list) oldest first, as kubectl shows them.
fn sort_events(answer: &mut Value) {
    let (field, object) = if answer.get("kind").and_then(Value::as_str) == Some("Table") {
        ("rows", "/object")
    } else {
        ("items", "")
    };
    if let Some(rows) = answer.get_mut(field).and_then(Value::as_array_mut) {
        rows.sort_by_key(|r| r.pointer(object).and_then(event_time));
    }
}

/// Row printing that keeps columns where they were (like tabwriter's RememberWidths).
struct RowPrinter {
    widths: Vec<usize>,
}

impl RowPrinter {
    fn print(&mut self, lines: Vec<Vec<String>>) {
        if lines.is_empty() {
            return;
        }
        let widths = table::column_widths(
            &lines,
            table::GET_MIN_WIDTH,
            table::GET_PADDING,
            &self.widths,
        );
        if let Some(w) = widths.iter().max_by_key(|w| w.len()) {
            for (i, width) in w.iter().enumerate() {
                if i >= self.widths.len() {
                    self.widths.push(*width);
                } else {
                    self.widths[i] = self.widths[i].max(*width);
                }
            }
        }
        let full: Vec<Vec<usize>> = lines
            .iter()
            .map(|l| {
                self.widths
                    .iter()
                    .take(l.len().saturating_sub(1))
                    .copied()
                    .collect()
            })
            .collect();
        print!("{}", table::render_with(&lines, &full));
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
}

async fn watch(cluster: &Cluster, target: &Target, args: &GetArgs, format: &Format) -> Result<()> {
    let resource = target.resource;
    let mut args = args.clone();
    if let [name] = target.names.as_slice() {
        let by_name = format!("metadata.name={name}");
        args.field_selector = Some(match &args.field_selector {
            Some(f) if !f.is_empty() => format!("{f},{by_name}"),
            _ => by_name,
        });
    } else if !target.names.is_empty() {
        bail!("watch is only supported on individual resources and resource collections, but {} resources were found", target.names.len());
    }
    let base = resource_path(resource, cluster.list_namespace(resource), None, None);
    let mut initial_query = list_query(&args);
    if format.wants_table() && is_events(resource) {
        initial_query.push(("includeObject", "Object"));
    }
    let list_path = with_query(&base, &initial_query);
    let opts = Options {
        wide: *format == Format::Wide,
        no_headers: args.no_headers,
        show_labels: args.show_labels,
        label_columns: args.label_columns.clone(),
        namespace_column: cluster.all_namespaces && resource.namespaced,
        kind_prefix: None,
    };
    let now = jiff::Timestamp::now();
    let mut printer = RowPrinter { widths: Vec::new() };
    let mut header_done = args.no_headers;
    let mut last_rows: std::collections::HashMap<(String, String), Vec<String>> =
        Default::default();

    let mut initial = if format.wants_table() {
        cluster.get_table(&list_path).await?
    } else {
        cluster.get(&list_path).await?
    };
    if is_events(resource) {
        sort_events(&mut initial);
    }
    let mut rv = initial
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if rv.is_empty() {
        // Some servers leave the Table's list metadata empty; a plain list has it.
        let plain = cluster.get(&list_path).await?;
        rv = plain
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
    }
    if format.wants_table() {
        let (header, rows) = table::rows(&initial, &opts, now);
        remember_rows(&initial, &rows, &mut last_rows);
        if !args.watch_only {
            let mut lines = Vec::new();
            if !header_done {
                lines.push(header);
                header_done = true;
            }
            lines.extend(rows);
            printer.print(lines);
        }
    } else if !args.watch_only {
        let items = initial
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for item in items {
            let item = with_kind(resource, item);
            print_object(format, resource, &item);
        }
    }

    let mut query = list_query(&args);
    query.push(("watch", "1"));
    query.push(("resourceVersion", rv.as_str()));
    query.push(("allowWatchBookmarks", "true"));
    let watch_path = with_query(&base, &query);
    let accept = if format.wants_table() {
        TABLE_ACCEPT
    } else {
        "application/json"
    };
    let mut events = Box::pin(cluster.watch(&watch_path, accept).await?);
    while let Some(event) = events.next().await {
        let event = event?;
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let object = event.get("object").cloned().unwrap_or(Value::Null);
        match kind {
            "BOOKMARK" => continue,
            "ERROR" => {
                let message = object
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("watch failed");
                bail!("watch ended: {message}");
            }
            _ => {}
        }
        if !format.wants_table() {
            print_object(format, resource, &with_kind(resource, object));
            continue;
        }
        let now = jiff::Timestamp::now();
        let rows = if object.get("kind").and_then(Value::as_str) == Some("Table") {
            let (_, rows) = table::rows(&object, &opts, now);
            remember_rows(&object, &rows, &mut last_rows);
            rows
        } else {
            // The server sent the object itself: ask for its row, or reuse the last one
            // printed when it is gone.
            let key = object_key(&object);
            let fresh = if kind == "DELETED" {
                None
            } else {
                let ns = object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str);
                let path = resource_path(resource, ns, Some(&key.1), None);
                cluster.get_table(&path).await.ok()
            };
            match fresh {
                Some(t) => {
                    let (_, rows) = table::rows(&t, &opts, now);
                    remember_rows(&t, &rows, &mut last_rows);
                    rows
                }
                None => match last_rows.get(&key) {
                    Some(row) => vec![row.clone()],
                    None => table::rows(&object, &opts, now).1,
                },
            }
        };
        let mut lines = Vec::new();
        if !header_done {
            let (header, _) = table::rows(&initial, &opts, now);
            lines.push(header);
            header_done = true;
        }
        lines.extend(rows);
        printer.print(lines);
    }
    Ok(())
}

fn object_key(obj: &Value) -> (String, String) {
    let get = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (get("/metadata/namespace"), get("/metadata/name"))
}

fn remember_rows(
    table: &Value,
    rows: &[Vec<String>],
    memory: &mut std::collections::HashMap<(String, String), Vec<String>>,
) {
    let Some(raw) = table.get("rows").and_then(Value::as_array) else {
        return;
    };
    for (row, text) in raw.iter().zip(rows) {
        if let Some(obj) = row.get("object") {
            memory.insert(object_key(obj), text.clone());
        }
    }
}

fn print_object(format: &Format, resource: &ResourceInfo, obj: &Value) {
    let text = match format {
        Format::Yaml => format!("---\n{}", output::to_yaml(obj)),
        _ => output::render(format, vec![obj.clone()], true, |o| kind_name(resource, o)),
    };
    print!("{text}");
    if matches!(format, Format::JsonPath(_)) {
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_sort_by_when_they_last_happened() {
        let ev = |name: &str, last: Value, series: Value, created: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created},
                "lastTimestamp": last, "series": series})
        };
        let mut table = json!({"kind": "Table", "rows": [
            {"cells": ["a"], "object": ev("a", json!("2024-05-01T12:05:00Z"), Value::Null, "2024-05-01T11:00:00Z")},
            {"cells": ["b"], "object": ev("b", Value::Null, json!({"lastObservedTime": "2024-05-01T12:01:00.000000Z"}), "2024-05-01T11:00:00Z")},
            {"cells": ["c"], "object": ev("c", Value::Null, Value::Null, "2024-05-01T12:03:00Z")},
        ]});
        sort_events(&mut table);
        let order: Vec<&str> = table["rows"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["cells"][0].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(order, ["b", "c", "a"]);
        let mut list = json!({"items": [
            ev("late", json!("2024-05-01T12:05:00Z"), Value::Null, ""),
            ev("early", json!("2024-05-01T12:00:00Z"), Value::Null, ""),
        ]});
        sort_events(&mut list);
        assert_eq!(list["items"][0]["metadata"]["name"], "early");
    }
}
