//! Column alignment (what Go's tabwriter does for kubectl) and rendering of the
//! server-side `Table`s that `get` asks for.

use serde_json::Value;

use crate::age;

/// Aligns tab-separated cells: each column is as wide as its widest cell plus `padding`
/// (at least `min_width`), computed over each run of consecutive lines that have that
/// column. A line's last cell is never padded.
pub fn align(lines: &[Vec<String>], min_width: usize, padding: usize) -> String {
    let widths = column_widths(lines, min_width, padding, &[]);
    render_with(lines, &widths)
}

/// Per line, per column, the width to pad to. `floor` holds widths already used (watch
/// output keeps its columns from moving left).
pub fn column_widths(
    lines: &[Vec<String>],
    min_width: usize,
    padding: usize,
    floor: &[usize],
) -> Vec<Vec<usize>> {
    let mut widths: Vec<Vec<usize>> = lines
        .iter()
        .map(|l| vec![0; l.len().saturating_sub(1)])
        .collect();
    let max_cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    for col in 0..max_cols.saturating_sub(1) {
        let mut start = 0;
        while start < lines.len() {
            if lines[start].len() <= col + 1 {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < lines.len() && lines[end].len() > col + 1 {
                end += 1;
            }
            let text = lines[start..end]
                .iter()
                .map(|l| l[col].chars().count())
                .max()
                .unwrap_or(0);
            let width = (text + padding)
                .max(min_width)
                .max(floor.get(col).copied().unwrap_or(0));
            for w in &mut widths[start..end] {
                w[col] = width;
            }
            start = end;
        }
    }
    widths
}

pub fn render_with(lines: &[Vec<String>], widths: &[Vec<usize>]) -> String {
    let mut out = String::new();
    for (line, w) in lines.iter().zip(widths) {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            text.push_str(cell);
            if let Some(width) = w.get(i) {
                let pad = width.saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        // Like Go's tabwriter, a padded cell before an empty last one leaves its spaces.
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// How `get` shows a table.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub wide: bool,
    pub no_headers: bool,
    pub show_labels: bool,
    /// `-L key,…`: one column per label key.
    pub label_columns: Vec<String>,
    /// `-A`: a NAMESPACE column first.
    pub namespace_column: bool,
    /// `deployment.apps/` in front of names when several kinds are printed.
    pub kind_prefix: Option<String>,
}

/// A cell as kubectl prints it.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Header and rows of a `Table` (or, when the server answered a plain object or list,
/// NAME and AGE), as text cells.
pub fn rows(
    answer: &Value,
    opts: &Options,
    now: jiff::Timestamp,
) -> (Vec<String>, Vec<Vec<String>>) {
    if answer.get("kind").and_then(Value::as_str) == Some("Table") {
        table_rows(answer, opts)
    } else {
        plain_rows(answer, opts, now)
    }
}

fn table_rows(table: &Value, opts: &Options) -> (Vec<String>, Vec<Vec<String>>) {
    let columns: Vec<&Value> = table
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| opts.wide || c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let name_col = columns
        .iter()
        .position(|c| c.get("format").and_then(Value::as_str) == Some("name"));
    let mut header: Vec<String> = shown
        .iter()
        .map(|&i| {
            columns[i]
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_uppercase()
        })
        .collect();
    decorate_header(&mut header, opts);
    let mut out = Vec::new();
    for row in table
        .get("rows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cells = row.get("cells").and_then(Value::as_array);
        let mut line: Vec<String> = shown
            .iter()
            .map(|&i| {
                let text = cells
                    .and_then(|c| c.get(i))
                    .map(cell_text)
                    .unwrap_or_default();
                match (&opts.kind_prefix, name_col == Some(i)) {
                    (Some(prefix), true) => format!("{prefix}{text}"),
                    _ => text,
                }
            })
            .collect();
        let metadata = row.pointer("/object/metadata");
        decorate_row(&mut line, metadata, opts);
        out.push(line);
    }
    (header, out)
}

fn plain_rows(
    answer: &Value,
    opts: &Options,
    now: jiff::Timestamp,
) -> (Vec<String>, Vec<Vec<String>>) {
    let items: Vec<&Value> = match answer.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None if answer.is_object() => vec![answer],
        None => Vec::new(),
    };
    let mut header = vec!["NAME".to_string(), "AGE".to_string()];
    decorate_header(&mut header, opts);
    let mut out = Vec::new();
    for item in items {
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut line = vec![
            format!("{}{name}", opts.kind_prefix.as_deref().unwrap_or("")),
            age::age(item.pointer("/metadata/creationTimestamp"), now),
        ];
        decorate_row(&mut line, item.get("metadata"), opts);
        out.push(line);
    }
    (header, out)
}

fn decorate_header(header: &mut Vec<String>, opts: &Options) {
    if opts.namespace_column {
        header.insert(0, "NAMESPACE".to_string());
    }
    for key in &opts.label_columns {
        let last = key.rsplit('/').next().unwrap_or(key);
        header.push(last.to_uppercase());
    }
    if opts.show_labels {
        header.push("LABELS".to_string());
    }
}

fn decorate_row(line: &mut Vec<String>, metadata: Option<&Value>, opts: &Options) {
    if opts.namespace_column {
        let ns = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("");
        line.insert(0, ns.to_string());
    }
    let labels = metadata
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object);
    for key in &opts.label_columns {
        let value = labels
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .unwrap_or("");
        line.push(value.to_string());
    }
    if opts.show_labels {
        line.push(match labels {
            Some(l) if !l.is_empty() => l
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(","),
            _ => "<none>".to_string(),
        });
    }
}

/// Prints header and rows with kubectl's `get` spacing (three spaces, columns at least six
/// wide).
pub fn render(header: Vec<String>, rows: Vec<Vec<String>>, no_headers: bool) -> String {
    let mut lines = Vec::new();
    if !no_headers {
        lines.push(header);
    }
    lines.extend(rows);
    align(&lines, GET_MIN_WIDTH, GET_PADDING)
}

pub const GET_MIN_WIDTH: usize = 6;
pub const GET_PADDING: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("ts")
    }

    fn sample() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Ready", "type": "string", "format": "", "priority": 0},
                {"name": "Age", "type": "string", "format": "", "priority": 0},
                {"name": "Containers", "type": "string", "format": "", "priority": 1}
            ],
            "rows": [
                {"cells": ["web", "1/1", "5m", "nginx"], "object": {"metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web", "app.kubernetes.io/name": "w"}}}},
                {"cells": ["db-long-name", "0/1", "10s", "pg"], "object": {"metadata": {"name": "db-long-name", "namespace": "data"}}}
            ]
        })
    }

    #[test]
    fn aligns_like_tabwriter() {
        let lines = vec![
            vec!["NAME".to_string(), "AGE".to_string()],
            vec!["a".to_string(), "5s".to_string()],
        ];
        assert_eq!(align(&lines, 6, 3), "NAME   AGE\na      5s\n");
        // Describe-style blocks: a line without tabs splits the alignment runs.
        let lines = vec![
            vec!["Name:".to_string(), "x".to_string()],
            vec!["Namespace:".to_string(), "y".to_string()],
            vec!["IPs:".to_string()],
            vec!["  IP:".to_string(), "z".to_string()],
        ];
        assert_eq!(
            align(&lines, 0, 2),
            "Name:       x\nNamespace:  y\nIPs:\n  IP:  z\n"
        );
    }

    #[test]
    fn renders_tables_narrow_and_wide() {
        let opts = Options::default();
        let (h, r) = rows(&sample(), &opts, now());
        assert_eq!(
            render(h, r, false),
            "NAME           READY   AGE\nweb            1/1     5m\ndb-long-name   0/1     10s\n"
        );
        let opts = Options {
            wide: true,
            namespace_column: true,
            ..Options::default()
        };
        let (h, r) = rows(&sample(), &opts, now());
        assert_eq!(h, ["NAMESPACE", "NAME", "READY", "AGE", "CONTAINERS"]);
        assert_eq!(r[1], ["data", "db-long-name", "0/1", "10s", "pg"]);
    }

    #[test]
    fn labels_columns_and_prefix() {
        let opts = Options {
            show_labels: true,
            label_columns: vec!["app.kubernetes.io/name".into()],
            kind_prefix: Some("pod/".into()),
            ..Options::default()
        };
        let (h, r) = rows(&sample(), &opts, now());
        assert_eq!(h, ["NAME", "READY", "AGE", "NAME", "LABELS"]);
        assert_eq!(
            r[0],
            [
                "pod/web",
                "1/1",
                "5m",
                "w",
                "app=web,app.kubernetes.io/name=w"
            ]
        );
        assert_eq!(r[1][4], "<none>");
        let (_, r) = rows(&sample(), &Options::default(), now());
        assert_eq!(render(vec![], r, true).lines().count(), 2);
    }

    #[test]
    fn plain_lists_fall_back_to_name_and_age() {
        let list = json!({"kind": "PodList", "items": [
            {"metadata": {"name": "a", "creationTimestamp": "2024-05-01T11:59:00Z"}}
        ]});
        let (h, r) = rows(&list, &Options::default(), now());
        assert_eq!(h, ["NAME", "AGE"]);
        assert_eq!(r, [["a", "60s"]]);
    }
}
