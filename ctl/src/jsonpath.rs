//! The part of kubectl's JSONPath templates people use: `{.a.b}`, `[n]`, `[*]`, `[a:b]`,
//! `['key.with.dots']`, `..name`, filters `[?(@.type=="Ready")]`, `{range …}{end}` and
//! string literals like `{"\n"}`. Missing keys print nothing, as with kubectl get.

use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("error parsing jsonpath {template}: {message}")]
pub struct JsonPathError {
    template: String,
    message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Recursive(String),
    AllChildren,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: Vec<Step>,
    op: Option<(String, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(template: &str) -> Result<Template, JsonPathError> {
        let err = |message: String| JsonPathError {
            template: template.to_string(),
            message,
        };
        let mut actions: Vec<Action> = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                None => {
                    actions.push(Action::Text(rest.to_string()));
                    break;
                }
                Some(start) => {
                    if start > 0 {
                        actions.push(Action::Text(rest[..start].to_string()));
                    }
                    let end =
                        find_close(&rest[start..]).ok_or_else(|| err("unclosed action".into()))?;
                    let inner = rest[start + 1..start + end].trim();
                    actions.push(parse_action(inner).map_err(err)?);
                    rest = &rest[start + end + 1..];
                }
            }
        }
        let mut iter = actions.into_iter();
        let nodes = build(&mut iter, false).map_err(err)?;
        Ok(Template { nodes })
    }

    /// Renders the template against `root`.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, root, root, &mut out);
        out
    }

    /// The values one bare path selects (for custom columns).
    pub fn values(&self, root: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        for node in &self.nodes {
            if let Node::Path(steps) = node {
                out.extend(eval(steps, root, root).into_iter().cloned());
            }
        }
        out
    }
}

enum Action {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>),
    End,
}

/// Index of the `}` closing the action opened at 0, skipping quoted text.
fn find_close(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (_, '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_action(inner: &str) -> Result<Action, String> {
    if inner == "end" {
        return Ok(Action::End);
    }
    if let Some(path) = inner
        .strip_prefix("range")
        .filter(|rest| rest.starts_with([' ', '.', '$', '@', '[']))
    {
        return Ok(Action::Range(parse_path(path.trim())?));
    }
    if let Some(lit) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Ok(Action::Text(unescape(lit)));
    }
    Ok(Action::Path(parse_path(inner)?))
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn build(iter: &mut impl Iterator<Item = Action>, in_range: bool) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some(action) = iter.next() {
        match action {
            Action::Text(t) => nodes.push(Node::Text(t)),
            Action::Path(p) => nodes.push(Node::Path(p)),
            Action::Range(p) => {
                let body = build(iter, true)?;
                nodes.push(Node::Range(p, body));
            }
            Action::End if in_range => return Ok(nodes),
            Action::End => return Err("{end} without {range}".into()),
        }
    }
    if in_range {
        return Err("{range} without {end}".into());
    }
    Ok(nodes)
}

/// Parses `.a.b[0]`, `$.a`, `@.a`, `..a`, `a.b` (a leading dot is optional).
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let chars: Vec<char> = path.chars().collect();
    let mut i = 0;
    let mut steps = Vec::new();
    if matches!(chars.first(), Some('$' | '@')) {
        i = 1;
    }
    let read_name = |i: &mut usize| {
        let mut name = String::new();
        while *i < chars.len() && chars[*i] != '.' && chars[*i] != '[' {
            if chars[*i] == '\\' && *i + 1 < chars.len() {
                *i += 1;
            }
            name.push(chars[*i]);
            *i += 1;
        }
        name
    };
    if i < chars.len() && chars[i] != '.' && chars[i] != '[' {
        steps.push(Step::Field(read_name(&mut i)));
    }
    while i < chars.len() {
        match chars[i] {
            '.' => {
                if chars.get(i + 1) == Some(&'.') {
                    i += 2;
                    let name = read_name(&mut i);
                    steps.push(Step::Recursive(name));
                } else {
                    i += 1;
                    if chars.get(i) == Some(&'*') {
                        i += 1;
                        steps.push(Step::AllChildren);
                    } else {
                        let name = read_name(&mut i);
                        if !name.is_empty() {
                            steps.push(Step::Field(name));
                        }
                    }
                }
            }
            '[' => {
                let close = matching_bracket(&chars, i).ok_or("unclosed [")?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(parse_bracket(inner.trim())?);
                i = close + 1;
            }
            c => return Err(format!("unexpected {c:?} in {path:?}")),
        }
    }
    Ok(steps)
}

fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::AllChildren);
    }
    if let Some(q) = inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
    {
        return Ok(Step::Field(q.to_string()));
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
        return parse_filter(filter.trim()).map(Step::Filter);
    }
    if let Some((a, b)) = inner.split_once(':') {
        let num = |s: &str| -> Result<Option<i64>, String> {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse()
                    .map(Some)
                    .map_err(|_| format!("bad slice index {s:?}"))
            }
        };
        // A step after a second colon is rare; only the bounds are honoured.
        let b = b.split(':').next().unwrap_or("");
        return Ok(Step::Slice(num(a)?, num(b)?));
    }
    inner
        .parse()
        .map(Step::Index)
        .map_err(|_| format!("bad index {inner:?}"))
}

fn parse_filter(expr: &str) -> Result<Filter, String> {
    for op in ["==", "!=", "<=", ">=", "<", ">"] {
        if let Some((left, right)) = expr.split_once(op) {
            let path = parse_path(left.trim())?;
            let right = right.trim();
            let value = if let Some(s) = right
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| right.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            {
                Value::String(s.to_string())
            } else {
                serde_json::from_str(right).map_err(|_| format!("bad filter value {right:?}"))?
            };
            return Ok(Filter {
                path,
                op: Some((op.to_string(), value)),
            });
        }
    }
    Ok(Filter {
        path: parse_path(expr)?,
        op: None,
    })
}

fn eval<'a>(steps: &[Step], _root: &'a Value, current: &'a Value) -> Vec<&'a Value> {
    let mut nodes = vec![current];
    for step in steps {
        let mut next = Vec::new();
        for node in nodes {
            apply(step, node, &mut next);
        }
        nodes = next;
    }
    nodes
}

fn apply<'a>(step: &Step, node: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(name) => {
            if let Some(v) = node.get(name.as_str()) {
                out.push(v);
            }
        }
        Step::AllChildren => match node {
            Value::Array(items) => out.extend(items.iter()),
            Value::Object(map) => out.extend(map.values()),
            _ => {}
        },
        Step::Recursive(name) => collect_recursive(node, name, out),
        Step::Index(i) => {
            if let Value::Array(items) = node {
                let len = items.len() as i64;
                let idx = if *i < 0 { len + i } else { *i };
                if (0..len).contains(&idx) {
                    out.push(&items[idx as usize]);
                }
            }
        }
        Step::Slice(a, b) => {
            if let Value::Array(items) = node {
                let len = items.len() as i64;
                let fix = |v: i64| if v < 0 { (len + v).max(0) } else { v.min(len) };
                let start = fix(a.unwrap_or(0));
                let end = fix(b.unwrap_or(len));
                if start < end {
                    out.extend(items[start as usize..end as usize].iter());
                }
            }
        }
        Step::Filter(filter) => {
            let candidates: Vec<&Value> = match node {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for item in candidates {
                if matches_filter(filter, item) {
                    out.push(item);
                }
            }
        }
    }
}

fn collect_recursive<'a>(node: &'a Value, name: &str, out: &mut Vec<&'a Value>) {
    match node {
        Value::Object(map) => {
            if name.is_empty() || name == "*" {
                out.extend(map.values());
            } else if let Some(v) = map.get(name) {
                out.push(v);
            }
            for v in map.values() {
                collect_recursive(v, name, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_recursive(v, name, out);
            }
        }
        _ => {}
    }
}

fn matches_filter(filter: &Filter, item: &Value) -> bool {
    let found = eval(&filter.path, item, item);
    match &filter.op {
        None => !found.is_empty(),
        Some((op, want)) => found.iter().any(|v| compare(v, op, want)),
    }
}

fn compare(have: &Value, op: &str, want: &Value) -> bool {
    let ordering = match (have, want) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    use std::cmp::Ordering::*;
    match op {
        "==" => have == want,
        "!=" => have != want,
        "<" => ordering == Some(Less),
        ">" => ordering == Some(Greater),
        "<=" => matches!(ordering, Some(Less | Equal)),
        ">=" => matches!(ordering, Some(Greater | Equal)),
        _ => false,
    }
}

/// A value as JSONPath prints it: strings bare, everything else as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_nodes(nodes: &[Node], root: &Value, current: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(steps) => {
                let found = eval(steps, root, current);
                let texts: Vec<String> = found.iter().map(|v| value_text(v)).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(steps, body) => {
                for item in eval(steps, root, current) {
                    render_nodes(body, root, item, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "web"}},
             "spec": {"containers": [{"name": "c1", "image": "nginx"}, {"name": "c2", "image": "redis"}]},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "restarts": 3}},
            {"metadata": {"name": "b"},
             "spec": {"containers": [{"name": "c1", "image": "busybox"}]},
             "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}], "restarts": 0}}
        ]})
    }

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).expect("parse").render(v)
    }

    #[test]
    fn fields_wildcards_and_indexes() {
        let l = list();
        assert_eq!(render("{.items[*].metadata.name}", &l), "a b");
        assert_eq!(render("{.items[0].spec.containers[1].image}", &l), "redis");
        assert_eq!(render("{.items[-1].metadata.name}", &l), "b");
        assert_eq!(render("{.items[0:1].metadata.name}", &l), "a");
        assert_eq!(render("name={$.items[1].metadata.name}!", &l), "name=b!");
        assert_eq!(render("{.items[0].metadata.missing}", &l), "");
        assert_eq!(
            render("{.items[0].metadata.labels['app.kubernetes.io/name']}", &l),
            "web"
        );
        assert_eq!(
            render("{.items[0].metadata.labels.app\\.kubernetes\\.io/name}", &l),
            "web"
        );
        assert_eq!(
            render("{.items[1].status.conditions[0]}", &l),
            r#"{"status":"False","type":"Ready"}"#
        );
    }

    #[test]
    fn range_filters_literals_and_recursion() {
        let l = list();
        assert_eq!(
            render(
                r#"{range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\n"}{end}"#,
                &l
            ),
            "a\tRunning\nb\tPending\n"
        );
        assert_eq!(
            render(
                r#"{.items[?(@.status.phase=="Pending")].metadata.name}"#,
                &l
            ),
            "b"
        );
        assert_eq!(
            render(r#"{.items[?(@.status.restarts>1)].metadata.name}"#, &l),
            "a"
        );
        assert_eq!(
            render(
                r#"{.items[*].status.conditions[?(@.type=="Ready")].status}"#,
                &l
            ),
            "True False"
        );
        assert_eq!(
            render("{.items[?(@.metadata.labels)].metadata.name}", &l),
            "a"
        );
        assert_eq!(render("{..image}", &l), "nginx redis busybox");
        assert_eq!(
            render("{range.items[*]}[{.metadata.name}]{end}", &l),
            "[a][b]"
        );
    }

    #[test]
    fn parse_errors() {
        assert!(Template::parse("{.items[*]").is_err());
        assert!(Template::parse("{range .items[*]}{.x}").is_err());
        assert!(Template::parse("{end}").is_err());
        assert!(Template::parse("{.items[x]}").is_err());
    }
}
