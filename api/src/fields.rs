//! Field selectors (`status.phase=Running,spec.nodeName!=n1`), parsed and matched as
//! Kubernetes does.
//!
//! A selector is a comma-separated conjunction of `field=value`, `field==value` and
//! `field!=value`. In values, `\,`, `\=`, `\!` and `\\` stand for the character itself
//! (Kubernetes knows the first, second and last; skiff also accepts `\!`); an unescaped `=`
//! in a value is an error. Whitespace around fields and values is ignored.
//!
//! Matching reads the field from the object's JSON by its dotted path. Kubernetes matches
//! against a per-kind "field set" of strings rather than the object itself; the differences
//! that matter are reproduced here: a missing field is the empty string, booleans are
//! `"true"`/`"false"` (absent `spec.hostNetwork` / `spec.unschedulable` is `"false"`),
//! numbers are their decimal form (absent `status.replicas` is `"0"`), a Job's
//! `status.successful` is its `status.succeeded`, an Event's `source` is
//! `source.component` (or `reportingComponent` when that is empty), and a Pod's
//! `status.podIP` falls back to the first of `status.podIPs`.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Why a field selector is not valid, or not valid for a kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term has no `=`, `==` or `!=`, or no field name.
    #[error("invalid field selector {selector:?}: can't understand {term:?}")]
    Term { selector: String, term: String },
    /// A backslash is followed by a character that needs no escaping, or ends the value.
    #[error(
        "invalid field selector {selector:?}: invalid escape sequence {sequence:?} in {term:?}"
    )]
    Escape {
        selector: String,
        term: String,
        sequence: String,
    },
    /// A value holds an `=` that is not escaped.
    #[error(
        "invalid field selector {selector:?}: unescaped {character:?} in the value of {term:?}"
    )]
    Unescaped {
        selector: String,
        term: String,
        character: char,
    },
    /// The field cannot be selected on for this kind.
    #[error("field label not supported: {field}")]
    NotSupported { kind: String, field: String },
}

/// How a term compares a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `f=v` or `f==v`.
    Equals,
    /// `f!=v`.
    NotEquals,
}

impl FieldOperator {
    /// The operator as written in a selector.
    pub fn as_str(&self) -> &'static str {
        match self {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        }
    }
}

/// One term: a dotted field path, an operator and the (unescaped) value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldRequirement {
    /// Whether the object's field satisfies this term.
    pub fn matches(&self, obj: &Value) -> bool {
        let actual = field_value(obj, &self.field);
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.field,
            self.operator.as_str(),
            escape_value(&self.value)
        )
    }
}

/// A conjunction of field terms; the empty selector selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that selects every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// The one-term selector `field=value`, the common case (`spec.nodeName=node1`).
    pub fn equal(field: impl Into<String>, value: impl Into<String>) -> FieldSelector {
        FieldSelector {
            requirements: vec![FieldRequirement {
                field: field.into(),
                operator: FieldOperator::Equals,
                value: value.into(),
            }],
        }
    }

    /// Whether there are no terms (and so everything is selected).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, sorted.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value the selector demands for `field` with `=`, if it does; lets a store
    /// answer `spec.nodeName=n1` from an index instead of scanning.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Parses the syntax described in the module documentation.
    pub fn parse(s: &str) -> Result<FieldSelector, FieldSelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped_commas(s) {
            let trimmed = term.trim();
            if trimmed.is_empty() {
                continue;
            }
            let term_err = || FieldSelectorError::Term {
                selector: s.to_string(),
                term: trimmed.to_string(),
            };
            let (field, operator, raw_value) = split_term(trimmed).ok_or_else(term_err)?;
            let field = field.trim();
            if field.is_empty() || field.contains(char::is_whitespace) {
                return Err(term_err());
            }
            let value = unescape_value(raw_value.trim()).map_err(|e| match e {
                Unescape::Sequence(sequence) => FieldSelectorError::Escape {
                    selector: s.to_string(),
                    term: trimmed.to_string(),
                    sequence,
                },
                Unescape::Unescaped(character) => FieldSelectorError::Unescaped {
                    selector: s.to_string(),
                    term: trimmed.to_string(),
                    character,
                },
            })?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        requirements.sort();
        Ok(FieldSelector { requirements })
    }

    /// Whether the object (its JSON form) satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(obj))
    }

    /// Rejects fields Kubernetes does not let one select `kind` objects by (`Pod`,
    /// `Event`, …; the kind as written in manifests). Every kind supports `metadata.name`
    /// and `metadata.namespace`.
    pub fn check_supported(&self, kind: &str) -> Result<(), FieldSelectorError> {
        let supported = supported_fields(kind);
        match self
            .requirements
            .iter()
            .find(|r| !supported.contains(&r.field.as_str()))
        {
            Some(r) => Err(FieldSelectorError::NotSupported {
                kind: kind.to_string(),
                field: r.field.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// The canonical form: terms sorted, values escaped; it parses back to an equal selector.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;
    fn from_str(s: &str) -> Result<FieldSelector, FieldSelectorError> {
        FieldSelector::parse(s)
    }
}

/// The fields one may select `kind` objects by, as Kubernetes' field label conversion
/// functions allow them.
pub fn supported_fields(kind: &str) -> Vec<&'static str> {
    let specific: &[&'static str] = match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        _ => &[],
    };
    let mut fields = vec!["metadata.name", "metadata.namespace"];
    fields.extend_from_slice(specific);
    fields
}

/// The string Kubernetes' field set would hold for `field` of this object.
pub fn field_value(obj: &Value, field: &str) -> String {
    match field {
        "source" => {
            if let Some(source) = obj.get("source").filter(|v| v.is_object()) {
                let component = scalar(source.get("component"));
                if !component.is_empty() {
                    return component;
                }
                return scalar(obj.get("reportingComponent"));
            }
        }
        "status.successful" => return scalar_or(lookup(obj, "status.succeeded"), "0"),
        "status.replicas" => return scalar_or(lookup(obj, field), "0"),
        "spec.hostNetwork" | "spec.unschedulable" => return scalar_or(lookup(obj, field), "false"),
        "status.podIP" => {
            let ip = scalar(lookup(obj, field));
            if ip.is_empty() {
                let first = lookup(obj, "status.podIPs")
                    .and_then(|ips| ips.get(0))
                    .and_then(|ip| ip.get("ip"));
                return scalar(first);
            }
            return ip;
        }
        _ => {}
    }
    scalar(lookup(obj, field))
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, key| v.get(key))
}

/// A JSON scalar as a field-set string; anything else (absent, null, objects, arrays) is
/// the empty string.
fn scalar(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn scalar_or(v: Option<&Value>, default: &str) -> String {
    match v {
        None | Some(Value::Null) => default.to_string(),
        other => scalar(other),
    }
}

/// Splits on commas that are not escaped with a backslash.
fn split_unescaped_commas(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at its first unescaped operator; `!=` and `==` win over `=`.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        let rest = &term[i..];
        if c == '\\' {
            escaped = true;
        } else if rest.starts_with("!=") {
            return Some((&term[..i], FieldOperator::NotEquals, &term[i + 2..]));
        } else if rest.starts_with("==") {
            return Some((&term[..i], FieldOperator::Equals, &term[i + 2..]));
        } else if c == '=' {
            return Some((&term[..i], FieldOperator::Equals, &term[i + 1..]));
        }
    }
    None
}

enum Unescape {
    Sequence(String),
    Unescaped(char),
}

fn unescape_value(raw: &str) -> Result<String, Unescape> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('\\' | ',' | '=' | '!')) => out.push(n),
                Some(n) => return Err(Unescape::Sequence(format!("\\{n}"))),
                None => return Err(Unescape::Sequence("\\".to_string())),
            },
            '=' | ',' => return Err(Unescape::Unescaped(c)),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Escapes a value so it parses back unchanged.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> FieldSelector {
        match FieldSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-a", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}]}
        })
    }

    #[test]
    fn parses_terms() {
        let sel = parse("status.phase=Running,spec.nodeName!=n1,metadata.name==x");
        assert_eq!(sel.requirements().len(), 3);
        assert_eq!(
            sel.requirements()[0],
            FieldRequirement {
                field: "metadata.name".into(),
                operator: FieldOperator::Equals,
                value: "x".into()
            }
        );
        assert_eq!(
            sel.to_string(),
            "metadata.name=x,spec.nodeName!=n1,status.phase=Running"
        );
        assert_eq!(sel.exact_match("status.phase"), Some("Running"));
        assert_eq!(sel.exact_match("spec.nodeName"), None);
    }

    #[test]
    fn empty_selects_everything() {
        for s in ["", " ", ",", " , "] {
            let sel = parse(s);
            assert!(sel.is_empty());
            assert!(sel.matches(&pod()));
        }
        assert_eq!(FieldSelector::everything().to_string(), "");
    }

    #[test]
    fn whitespace_and_empty_values() {
        let sel = parse(" status.phase = Running , a= ");
        assert_eq!(sel.requirements()[1].field, "status.phase");
        assert_eq!(sel.requirements()[1].value, "Running");
        assert_eq!(sel.requirements()[0].value, "");
    }

    #[test]
    fn escapes() {
        let sel = parse(r"metadata.name=a\,b\=c\\d\!e");
        assert_eq!(sel.requirements()[0].value, r"a,b=c\d!e");
        assert_eq!(sel.to_string(), r"metadata.name=a\,b\=c\\d!e");
        assert_eq!(parse(&sel.to_string()), sel);
        // An escaped comma does not split terms.
        assert_eq!(parse(r"a=x\,y").requirements().len(), 1);
        // `!` needs no escaping in a value.
        assert_eq!(parse("a=b!c").requirements()[0].value, "b!c");
    }

    #[test]
    fn rejects_malformed() {
        let err = FieldSelector::parse("status.phase").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid field selector \"status.phase\": can't understand \"status.phase\""
        );
        assert!(matches!(
            FieldSelector::parse("=x"),
            Err(FieldSelectorError::Term { .. })
        ));
        assert!(matches!(
            FieldSelector::parse("a b=x"),
            Err(FieldSelectorError::Term { .. })
        ));
        let err = FieldSelector::parse(r"a=b\x").unwrap_err();
        assert!(
            err.to_string().contains(r#"invalid escape sequence "\\x""#),
            "{err}"
        );
        assert!(matches!(
            FieldSelector::parse(r"a=b\"),
            Err(FieldSelectorError::Escape { .. })
        ));
        let err = FieldSelector::parse("a=b=c").unwrap_err();
        assert!(err.to_string().contains("unescaped '='"), "{err}");
        assert!(matches!(
            FieldSelector::parse("a!=b=c"),
            Err(FieldSelectorError::Unescaped { .. })
        ));
    }

    #[test]
    fn matches_pod_fields() {
        let p = pod();
        assert!(parse("metadata.name=web-1").matches(&p));
        assert!(parse("metadata.namespace=default,status.phase=Running").matches(&p));
        assert!(!parse("status.phase=Pending").matches(&p));
        assert!(parse("status.phase!=Pending").matches(&p));
        assert!(parse("spec.nodeName=node-a").matches(&p));
        assert!(parse("spec.nodeName!=").matches(&p));
        assert!(parse("spec.schedulerName=").matches(&p));
        assert!(parse("spec.hostNetwork=false").matches(&p));
        assert!(parse("status.podIP=10.244.1.5").matches(&p));
        let mut host = p.clone();
        host["spec"]["hostNetwork"] = json!(true);
        host["status"]["podIP"] = json!("192.168.1.2");
        assert!(parse("spec.hostNetwork=true").matches(&host));
        assert!(parse("status.podIP=192.168.1.2").matches(&host));
        // Unscheduled pods select by an empty node name.
        let mut pending = p.clone();
        if let Some(spec) = pending["spec"].as_object_mut() {
            spec.remove("nodeName");
        }
        assert!(parse("spec.nodeName=").matches(&pending));
        assert!(!parse("spec.nodeName!=").matches(&pending));
    }

    #[test]
    fn matches_other_kinds() {
        let node = json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {}});
        assert!(parse("spec.unschedulable=false").matches(&node));
        assert!(parse("metadata.namespace=").matches(&node));
        let cordoned = json!({"kind": "Node", "spec": {"unschedulable": true}});
        assert!(parse("spec.unschedulable=true").matches(&cordoned));

        let rs = json!({"kind": "ReplicaSet", "status": {"replicas": 3}});
        assert!(parse("status.replicas=3").matches(&rs));
        assert!(parse("status.replicas=0").matches(&json!({"kind": "ReplicaSet"})));

        let job = json!({"kind": "Job", "status": {"succeeded": 1}});
        assert!(parse("status.successful=1").matches(&job));
        assert!(parse("status.successful=0").matches(&json!({"kind": "Job"})));

        let event = json!({
            "kind": "Event",
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "reason": "Scheduled",
            "source": {"component": "default-scheduler"},
            "reportingComponent": "",
            "type": "Normal"
        });
        assert!(parse("involvedObject.kind=Pod,involvedObject.name=web-1").matches(&event));
        assert!(parse("source=default-scheduler,type=Normal,reason=Scheduled").matches(&event));
        let event2 = json!({"kind": "Event", "source": {}, "reportingComponent": "kubelet"});
        assert!(parse("source=kubelet,reportingComponent=kubelet").matches(&event2));

        let secret = json!({"kind": "Secret", "type": "Opaque"});
        assert!(parse("type=Opaque").matches(&secret));
        // Objects and arrays are not scalars: they read as empty.
        assert!(parse("metadata=").matches(&secret));
    }

    #[test]
    fn supported_fields_per_kind() {
        assert!(parse("metadata.name=x,metadata.namespace=y")
            .check_supported("ConfigMap")
            .is_ok());
        assert!(
            parse("spec.nodeName=x,status.phase=Running,spec.hostNetwork=true")
                .check_supported("Pod")
                .is_ok()
        );
        let err = parse("spec.foo=x").check_supported("Pod").unwrap_err();
        assert_eq!(err.to_string(), "field label not supported: spec.foo");
        assert!(parse("spec.nodeName=x").check_supported("Service").is_err());
        assert!(parse("type=Opaque").check_supported("Secret").is_ok());
        assert!(parse("type=Opaque").check_supported("ConfigMap").is_err());
        assert!(parse("spec.unschedulable=true")
            .check_supported("Node")
            .is_ok());
        assert!(parse("status.phase=Active")
            .check_supported("Namespace")
            .is_ok());
        assert!(parse("status.replicas=1")
            .check_supported("ReplicaSet")
            .is_ok());
        assert!(parse("status.replicas=1")
            .check_supported("ReplicationController")
            .is_ok());
        assert!(parse("status.successful=1").check_supported("Job").is_ok());
        assert!(parse("source=x,involvedObject.uid=u")
            .check_supported("Event")
            .is_ok());
        assert!(FieldSelector::everything()
            .check_supported("Anything")
            .is_ok());
    }

    #[test]
    fn equal_constructor() {
        let sel = FieldSelector::equal("spec.nodeName", "a,b");
        assert_eq!(sel.to_string(), r"spec.nodeName=a\,b");
        assert_eq!(parse(&sel.to_string()), sel);
        assert_eq!("a=b".parse::<FieldSelector>(), Ok(parse("a=b")));
    }
}
