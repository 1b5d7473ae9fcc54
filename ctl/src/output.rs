//! `-o` formats for objects: yaml, json, name, jsonpath and custom-columns. (Tables, the
//! default and `-o wide`, are rendered from the server's Table by `table`.)

use serde::Serialize;
use serde_json::{json, Value};
use thiserror::Error;

use crate::jsonpath::{self, Template};
use crate::table;

#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
    JsonPath(Template),
    CustomColumns(Vec<(String, Template)>),
}

#[derive(Debug, Error, PartialEq)]
pub enum FormatError {
    #[error("unable to match a printer suitable for the output format \"{0}\", allowed formats are: custom-columns,json,jsonpath,name,wide,yaml")]
    Unknown(String),
    #[error("custom-columns format specified but no custom columns given")]
    NoColumns,
    #[error("unexpected custom-columns spec: {0}, expected <header>:<json-path-expr>")]
    BadColumn(String),
    #[error(transparent)]
    JsonPath(#[from] jsonpath::JsonPathError),
}

impl Format {
    pub fn parse(spec: Option<&str>) -> Result<Format, FormatError> {
        let Some(spec) = spec else {
            return Ok(Format::Table);
        };
        let (kind, arg) = match spec.split_once('=') {
            Some((k, a)) => (k, Some(a)),
            None => (spec, None),
        };
        match (kind, arg) {
            ("wide", None) => Ok(Format::Wide),
            ("yaml", None) => Ok(Format::Yaml),
            ("json", None) => Ok(Format::Json),
            ("name", None) => Ok(Format::Name),
            ("jsonpath", Some(t)) => Ok(Format::JsonPath(Template::parse(t)?)),
            ("custom-columns", Some(spec)) => {
                let mut columns = Vec::new();
                for part in spec.split(',').filter(|p| !p.is_empty()) {
                    let (header, path) = part
                        .split_once(':')
                        .ok_or_else(|| FormatError::BadColumn(part.to_string()))?;
                    columns.push((header.to_string(), Template::parse(&relaxed(path))?));
                }
                if columns.is_empty() {
                    return Err(FormatError::NoColumns);
                }
                Ok(Format::CustomColumns(columns))
            }
            ("custom-columns", None) => Err(FormatError::NoColumns),
            _ => Err(FormatError::Unknown(spec.to_string())),
        }
    }

    /// Whether `get` should ask the server for a Table.
    pub fn wants_table(&self) -> bool {
        matches!(self, Format::Table | Format::Wide)
    }
}

/// kubectl accepts `.metadata.name` and `metadata.name` as well as `{.metadata.name}`.
fn relaxed(path: &str) -> String {
    let p = path.trim();
    if p.starts_with('{') {
        return p.to_string();
    }
    let p = p.strip_prefix('.').unwrap_or(p);
    format!("{{.{p}}}")
}

/// Several objects as kubectl wraps them: a `v1` `List`.
pub fn as_list(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

pub fn to_yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_else(|e| format!("# cannot print as YAML: {e}\n"))
}

/// JSON with kubectl's four-space indentation.
pub fn to_json(v: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    s.push('\n');
    s
}

/// Renders objects in a non-table format. `single` is a lone object asked for by name:
/// yaml, json and jsonpath then see the object itself rather than a List.
pub fn render(
    format: &Format,
    objects: Vec<Value>,
    single: bool,
    kind_name: impl Fn(&Value) -> String,
) -> String {
    let root = if single && objects.len() == 1 {
        objects[0].clone()
    } else {
        as_list(objects.clone())
    };
    match format {
        Format::Yaml => to_yaml(&root),
        Format::Json => to_json(&root),
        Format::JsonPath(t) => t.render(&root),
        Format::Name => objects
            .iter()
            .map(|o| format!("{}\n", kind_name(o)))
            .collect(),
        Format::CustomColumns(columns) => {
            let mut lines = vec![columns.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>()];
            for obj in &objects {
                lines.push(
                    columns
                        .iter()
                        .map(|(_, t)| {
                            let values = t.values(obj);
                            if values.is_empty() {
                                "<none>".to_string()
                            } else {
                                values
                                    .iter()
                                    .map(jsonpath::value_text)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            }
                        })
                        .collect(),
                );
            }
            table::align(&lines, table::GET_MIN_WIDTH, table::GET_PADDING)
        }
        Format::Table | Format::Wide => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"image": "nginx"}, {"image": "redis"}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bb"}, "spec": {}}),
        ]
    }

    fn name(o: &Value) -> String {
        format!("pod/{}", o["metadata"]["name"].as_str().unwrap_or(""))
    }

    #[test]
    fn parses_formats() {
        assert_eq!(Format::parse(None), Ok(Format::Table));
        assert_eq!(Format::parse(Some("wide")), Ok(Format::Wide));
        assert!(matches!(
            Format::parse(Some("jsonpath={.a}")),
            Ok(Format::JsonPath(_))
        ));
        assert_eq!(
            Format::parse(Some("xml")).expect_err("unknown").to_string(),
            "unable to match a printer suitable for the output format \"xml\", allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"
        );
        assert_eq!(
            Format::parse(Some("custom-columns=")),
            Err(FormatError::NoColumns)
        );
        assert!(matches!(
            Format::parse(Some("custom-columns=NAME")),
            Err(FormatError::BadColumn(_))
        ));
    }

    #[test]
    fn renders_objects() {
        let name_out = render(&Format::Name, pods(), false, name);
        assert_eq!(name_out, "pod/a\npod/bb\n");
        let cc = Format::parse(Some(
            "custom-columns=NAME:.metadata.name,IMAGES:spec.containers[*].image",
        ))
        .expect("cc");
        assert_eq!(
            render(&cc, pods(), false, name),
            "NAME   IMAGES\na      nginx,redis\nbb     <none>\n"
        );
        let jp = Format::parse(Some("jsonpath={.items[*].metadata.name}")).expect("jp");
        assert_eq!(render(&jp, pods(), false, name), "a bb");
        let jp = Format::parse(Some("jsonpath={.metadata.name}")).expect("jp");
        assert_eq!(render(&jp, vec![pods().remove(0)], true, name), "a");
        let yaml = render(&Format::Yaml, pods(), false, name);
        assert!(yaml.starts_with("apiVersion: v1\nitems:\n"), "{yaml}");
        assert!(yaml.contains("kind: List"));
        let json_out = render(&Format::Json, vec![pods().remove(1)], true, name);
        assert!(
            json_out.starts_with("{\n    \"apiVersion\": \"v1\","),
            "{json_out}"
        );
    }
}
