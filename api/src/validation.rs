//! Kubernetes' validation rules for names, metadata and the common object kinds.
//!
//! Two layers, as in Kubernetes:
//!
//! - predicates (`is_dns1123_label`, `is_qualified_name`, …) return the list of problems
//!   with a value, empty when it is valid, worded exactly as Kubernetes words them so that
//!   users and tools see familiar messages;
//! - validators (`validate_pod`, `validate_service`, …) walk typed objects and return
//!   [`FieldError`]s carrying the full field path (`spec.containers[0].image`).
//!
//! The validators expect objects as they are after defaulting, but tolerate fields that
//! defaulting would fill: an absent `restartPolicy` is read as `Always`, an absent port
//! protocol as `TCP`, an absent Service type as `ClusterIP`, and a volume without a source
//! is accepted because defaulting makes it an `emptyDir`. Empty strings in enum fields are
//! treated as absent, as Kubernetes' defaulting does. Update rules (immutable fields) are
//! not here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, Lifecycle, LifecycleHandler, Namespace, Node, Pod, PodSpec,
    PodTemplateSpec, Probe, ReplicationController, ResourceRequirements, Secret, Service,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels::Selector;
use crate::quantity::Quantity;

// ---------------------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------------------

/// What is wrong with a field; the kinds of Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldErrorKind {
    /// A required field is missing or empty.
    Required,
    /// The value is malformed or out of range.
    Invalid,
    /// The value repeats one that must be unique.
    Duplicate,
    /// The value is not one of a fixed set.
    NotSupported,
    /// The value is longer than allowed.
    TooLong,
    /// A list has more items than allowed.
    TooMany,
    /// The field may not be set here.
    Forbidden,
    /// The value refers to something that does not exist (a volume mount naming an
    /// undeclared volume).
    NotFound,
}

impl FieldErrorKind {
    /// The phrase Kubernetes prints for this kind (`Required value`, `Invalid value`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::NotFound => "Not found",
        }
    }

    /// The `metav1.StatusCause` type Kubernetes reports for this kind.
    pub fn cause_type(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }
}

/// One problem with one field of an object.
///
/// Displays as Kubernetes does: `<field>: <kind>[: "<value>"][: <detail>]`. The value is
/// shown (quoted) for `Invalid`, `Duplicate`, `NotSupported`, `TooMany` and `NotFound`
/// when present; Kubernetes prints numbers unquoted, skiff quotes every value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    /// `field: Required value[: detail]`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required,
            value: None,
            detail: detail.into(),
        }
    }

    /// `field: Invalid value: "value": detail`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            value: Some(value.to_string()),
            detail: detail.into(),
        }
    }

    /// `field: Duplicate value: "value"`.
    pub fn duplicate(field: impl Into<String>, value: impl ToString) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Duplicate,
            value: Some(value.to_string()),
            detail: String::new(),
        }
    }

    /// `field: Unsupported value: "value": supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl ToString,
        supported: &[&str],
    ) -> FieldError {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported,
            value: Some(value.to_string()),
            detail,
        }
    }

    /// `field: Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> FieldError {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::TooLong,
            value: None,
            detail: format!("may not be more than {max_bytes} {unit}"),
        }
    }

    /// `field: Too many: "actual": must have at most N items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::TooMany,
            value: Some(actual.to_string()),
            detail: format!("must have at most {max} items"),
        }
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            value: None,
            detail: detail.into(),
        }
    }

    /// `field: Not found: "value"`.
    pub fn not_found(field: impl Into<String>, value: impl ToString) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotFound,
            value: Some(value.to_string()),
            detail: String::new(),
        }
    }

    /// Sets the detail (for kinds whose constructor takes none).
    pub fn with_detail(mut self, detail: impl Into<String>) -> FieldError {
        self.detail = detail.into();
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind.as_str())?;
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        if let (true, Some(value)) = (shows_value, &self.value) {
            write!(f, ": {value:?}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldError {}

/// Joins field errors as Kubernetes' aggregate errors do: one error alone, several as
/// `[a, b]`, repeated messages once; no errors give the empty string.
pub fn summarize(errors: &[FieldError]) -> String {
    let mut seen = BTreeSet::new();
    let messages: Vec<String> = errors
        .iter()
        .map(ToString::to_string)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    match messages.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The message of Kubernetes' `422 Invalid` status: `Pod "web" is invalid: <summary>`.
/// `kind` is the qualified kind as Kubernetes prints it (`Pod`, `Deployment.apps`).
pub fn invalid_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    format!("{kind} {name:?} is invalid: {}", summarize(errors))
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

const NON_NEGATIVE: &str = "must be greater than or equal to 0";

fn non_negative(errs: &mut Vec<FieldError>, value: Option<impl Into<i64>>, field: String) {
    if let Some(v) = value.map(Into::into) {
        if v < 0 {
            errs.push(FieldError::invalid(field, v, NON_NEGATIVE));
        }
    }
}

/// Pushes one `Invalid` error per problem.
fn push_problems(errs: &mut Vec<FieldError>, field: &str, value: &str, problems: Vec<String>) {
    errs.extend(
        problems
            .into_iter()
            .map(|p| FieldError::invalid(field, value, p)),
    );
}

/// A non-empty enum-like string field, or `None` (empty counts as unset; defaulting
/// fills it).
fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Checks an optional enum-like field against its allowed values.
fn check_enum(errs: &mut Vec<FieldError>, value: &Option<String>, field: String, allowed: &[&str]) {
    if let Some(v) = set(value) {
        if !allowed.contains(&v) {
            errs.push(FieldError::not_supported(field, v, allowed));
        }
    }
}

/// The names of the fields a k8s-openapi struct has set (serialised and not null), minus
/// `ignore`; counts the members of one-of unions such as volume sources or probe handlers.
fn set_fields<T: serde::Serialize>(value: &T, ignore: &[&str]) -> Vec<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter(|(k, v)| !v.is_null() && !ignore.contains(&k.as_str()))
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Predicates
// ---------------------------------------------------------------------------------------

/// Longest DNS-1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1035 label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Largest total size of an object's annotations (keys and values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// Largest total size of a ConfigMap's or Secret's data.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
    alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower \
    case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
    character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric \
    characters or '-', start with an alphabetic character, and end with an alphanumeric \
    character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
    and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of \
    alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
    character";
const C_IDENTIFIER_FMT: &str = "[A-Za-z_][A-Za-z0-9_]*";
const C_IDENTIFIER_MSG: &str = "a valid C identifier must start with alphabetic character \
    or '_', followed by a string of alphanumeric characters or '_'";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_MSG: &str = "a valid environment variable name must consist of \
    alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an \
    ending '%'";

/// Kubernetes' `RegexError` wording, examples included (its double space too).
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn qualified_name_shape(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Problems with a DNS-1123 label (a namespace name, a container name): at most 63 lower
/// case alphanumerics or `-`, starting and ending alphanumeric.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !label_shape(value) {
        errs.push(regex_error(
            DNS1123_LABEL_MSG,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// Problems with a DNS-1123 subdomain (most object names): at most 253 characters, dot
/// separated DNS-1123 labels.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(label_shape) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Problems with a DNS-1035 label (a Service name): like a DNS-1123 label but starting
/// with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !(label_shape(value) && value.as_bytes()[0].is_ascii_lowercase()) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Problems with a qualified name (a label or annotation key, a finalizer): an optional
/// DNS-1123 subdomain prefix and `/`, then a name of at most 63 characters.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !qualified_name_shape(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Problems with a label value: empty, or at most 63 characters shaped like a qualified
/// name's name part.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !qualified_name_shape(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Problems with a C identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_c_identifier(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let ok = b
        .first()
        .is_some_and(|f| f.is_ascii_alphabetic() || *f == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Vec::new()
    } else {
        vec![regex_error(
            C_IDENTIFIER_MSG,
            C_IDENTIFIER_FMT,
            &["my_name", "MY_NAME", "MyName"],
        )]
    }
}

/// Names that would escape a directory when used as a file name.
fn ch_dir_problems(value: &str) -> Vec<String> {
    if value == "." {
        vec!["must not be '.'".to_string()]
    } else if value == ".." {
        vec!["must not be '..'".to_string()]
    } else if value.starts_with("..") {
        vec!["must not start with '..'".to_string()]
    } else {
        Vec::new()
    }
}

/// Problems with an environment variable name: `[-._a-zA-Z][-._a-zA-Z0-9]*`, and not
/// `.`, `..` or starting with `..`.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let name_char = |c: &u8| c.is_ascii_alphabetic() || matches!(c, b'-' | b'.' | b'_');
    let ok =
        b.first().is_some_and(name_char) && b.iter().all(|c| name_char(c) || c.is_ascii_digit());
    let mut errs = Vec::new();
    if !ok {
        errs.push(regex_error(
            ENV_VAR_NAME_MSG,
            ENV_VAR_NAME_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errs.extend(ch_dir_problems(value));
    errs
}

/// Problems with a ConfigMap or Secret key: `[-._a-zA-Z0-9]+`, at most 253 characters,
/// not `.`, `..` or starting with `..` (keys become file names in volumes).
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !ok {
        errs.push(regex_error(
            CONFIG_MAP_KEY_MSG,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(ch_dir_problems(value));
    errs
}

/// Problems with a port number: it must be 1–65535.
pub fn is_valid_port_num(port: impl Into<i64>) -> Vec<String> {
    let port = port.into();
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Problems with a port name (IANA_SVC_NAME): at most 15 lower case alphanumerics or
/// `-`, at least one letter, no `--`, not starting or ending with `-`.
pub fn is_valid_port_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push(max_len_error(15));
    }
    if name.is_empty() || !name.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    } else if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Problems with a percentage such as `25%`.
pub fn is_valid_percent(value: &str) -> Vec<String> {
    match value.strip_suffix('%') {
        Some(n) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => Vec::new(),
        _ => vec![regex_error(PERCENT_MSG, PERCENT_FMT, &["1%", "93%"])],
    }
}

/// Problems with an IP address (v4 or v6).
pub fn is_valid_ip(value: &str) -> Vec<String> {
    if value.parse::<IpAddr>().is_ok() {
        Vec::new()
    } else {
        vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()]
    }
}

/// Problems with a CIDR such as `10.244.1.0/24`.
pub fn is_valid_cidr(value: &str) -> Vec<String> {
    let ok = value.split_once('/').is_some_and(|(ip, bits)| {
        let max = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        !bits.is_empty()
            && bits.bytes().all(|c| c.is_ascii_digit())
            && bits.parse::<u32>().is_ok_and(|b| b <= max)
    });
    if ok {
        Vec::new()
    } else {
        vec!["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".to_string()]
    }
}

// ---------------------------------------------------------------------------------------
// Names and metadata
// ---------------------------------------------------------------------------------------

/// Which rule an object kind's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameRule {
    /// Most kinds (Pod, Deployment, ConfigMap, Node, …).
    Dns1123Subdomain,
    /// Namespaces.
    Dns1123Label,
    /// Services (their names become DNS labels and environment variable prefixes).
    Dns1035Label,
    /// Kinds whose names only have to be usable in a URL path (RBAC objects).
    PathSegment,
}

impl NameRule {
    /// Problems with `name` under this rule. With `prefix`, `name` is a `generateName`
    /// prefix, which may end in `-` (random characters follow).
    pub fn problems(&self, name: &str, prefix: bool) -> Vec<String> {
        if *self == NameRule::PathSegment {
            return path_segment_problems(name, prefix);
        }
        let masked;
        let name = match name.strip_suffix('-') {
            Some(stem) if prefix && !stem.is_empty() => {
                masked = format!("{stem}a");
                masked.as_str()
            }
            _ => name,
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => Vec::new(),
        }
    }
}

fn path_segment_problems(name: &str, prefix: bool) -> Vec<String> {
    if !prefix && (name == "." || name == "..") {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// Errors for an object name at `field` (empty names are `Required`). Also what a caller
/// uses on a name generated from `generateName`.
pub fn validate_name(name: &str, rule: NameRule, field: &str) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![FieldError::required(field, "")];
    }
    let mut errs = Vec::new();
    push_problems(&mut errs, field, name, rule.problems(name, false));
    errs
}

/// Errors for a `generateName` prefix at `field`.
pub fn validate_generate_name(prefix: &str, rule: NameRule, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    push_problems(&mut errs, field, prefix, rule.problems(prefix, true));
    errs
}

/// Errors for labels at `path` (`metadata.labels`): keys must be qualified names, values
/// label values. Like Kubernetes, the errors name the map, not the key.
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        push_problems(&mut errs, path, k, is_qualified_name(k));
        push_problems(&mut errs, path, v, is_valid_label_value(v));
    }
    errs
}

/// Errors for annotations at `path`: keys must be qualified names (case-insensitively),
/// and keys plus values may total at most 256 KiB.
pub fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        total = total.saturating_add(k.len()).saturating_add(v.len());
        push_problems(&mut errs, path, k, is_qualified_name(&k.to_lowercase()));
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Errors for a `metav1.LabelSelector` at `path`: keys, operators, and values as their
/// operators require.
pub fn validate_label_selector(sel: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(sel.match_labels.as_ref(), &child(path, "matchLabels"));
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        push_problems(
            &mut errs,
            &child(&p, "key"),
            &expr.key,
            is_qualified_name(&expr.key),
        );
        let values = expr.values.as_deref().unwrap_or(&[]);
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                child(&p, "operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for (j, v) in values.iter().enumerate() {
            push_problems(
                &mut errs,
                &index(&child(&p, "values"), j),
                v,
                is_valid_label_value(v),
            );
        }
    }
    errs
}

/// Errors for an object's `metadata`.
///
/// The name follows `rule` and is required unless `generateName` is set (the API server
/// generates it; check the result with [`validate_name`]). The namespace is required for
/// namespaced kinds (a DNS-1123 label) and forbidden for cluster-scoped ones — Kubernetes'
/// API server clears it for those before validating, and so should the caller. Labels,
/// annotations, finalizers and owner references are checked too.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        errs.extend(validate_generate_name(
            generate_name,
            rule,
            "metadata.generateName",
        ));
    }
    match meta.name.as_deref().unwrap_or("") {
        "" if generate_name.is_empty() => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        "" => {}
        name => errs.extend(validate_name(name, rule, "metadata.name")),
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            push_problems(
                &mut errs,
                "metadata.namespace",
                namespace,
                is_dns1123_label(namespace),
            );
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    non_negative(&mut errs, meta.generation, "metadata.generation".into());
    errs.extend(validate_labels(meta.labels.as_ref(), "metadata.labels"));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        "metadata.annotations",
    ));
    errs.extend(validate_owner_references(
        meta.owner_references.as_deref().unwrap_or(&[]),
        "metadata.ownerReferences",
    ));
    errs.extend(validate_finalizers(
        meta.finalizers.as_deref().unwrap_or(&[]),
        "metadata.finalizers",
    ));
    errs
}

fn validate_owner_references(refs: &[OwnerReference], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut controller: Option<String> = None;
    for (i, r) in refs.iter().enumerate() {
        let p = index(path, i);
        // The version is what follows the last '/' of apiVersion (`apps/v1` → `v1`).
        let version = r.api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(
                child(&p, "apiVersion"),
                &r.api_version,
                "version must not be empty",
            ));
        }
        for (field, value) in [("kind", &r.kind), ("name", &r.name), ("uid", &r.uid)] {
            if value.is_empty() {
                errs.push(FieldError::invalid(
                    child(&p, field),
                    value,
                    format!("{field} must not be empty"),
                ));
            }
        }
        if r.controller == Some(true) {
            let this = format!("{}/{}", r.kind, r.name);
            match &controller {
                Some(first) => errs.push(FieldError {
                    field: path.to_string(),
                    kind: FieldErrorKind::Invalid,
                    value: None,
                    detail: format!(
                        "Only one reference can have Controller set to true. Found \"true\" \
                         in references for {first} and {this}"
                    ),
                }),
                None => controller = Some(this),
            }
        }
    }
    errs
}

fn validate_finalizers(finalizers: &[String], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, f) in finalizers.iter().enumerate() {
        push_problems(&mut errs, &index(path, i), f, is_qualified_name(f));
    }
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    if has("orphan") && has("foregroundDeletion") {
        errs.push(FieldError {
            field: path.to_string(),
            kind: FieldErrorKind::Invalid,
            value: None,
            detail: "finalizer orphan and foregroundDeletion cannot be both set".to_string(),
        });
    }
    errs
}

/// Errors for a pod template's metadata: only labels and annotations matter there.
fn validate_template_meta(meta: Option<&ObjectMeta>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(meta) = meta {
        errs.extend(validate_labels(
            meta.labels.as_ref(),
            &child(path, "labels"),
        ));
        errs.extend(validate_annotations(
            meta.annotations.as_ref(),
            &child(path, "annotations"),
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------

const PORT_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

/// What the checks of one container need from the rest of the pod.
struct PodContext {
    container_names: BTreeSet<String>,
    volume_names: BTreeSet<String>,
    host_network: bool,
    host_ports: BTreeSet<String>,
}

/// Errors for a pod spec at `path` (`spec`, or `spec.template.spec` in a workload).
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut ctx = PodContext {
        container_names: BTreeSet::new(),
        volume_names: validate_volumes(
            spec.volumes.as_deref().unwrap_or(&[]),
            &child(path, "volumes"),
            &mut errs,
        ),
        host_network: spec.host_network.unwrap_or(false),
        host_ports: BTreeSet::new(),
    };
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let p = index(&child(path, "initContainers"), i);
        validate_container(c, &p, true, &mut ctx, &mut errs);
    }
    if spec.containers.is_empty() {
        errs.push(FieldError::required(child(path, "containers"), ""));
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let p = index(&child(path, "containers"), i);
        validate_container(c, &p, false, &mut ctx, &mut errs);
    }
    check_enum(
        &mut errs,
        &spec.restart_policy,
        child(path, "restartPolicy"),
        &RESTART_POLICIES,
    );
    check_enum(
        &mut errs,
        &spec.dns_policy,
        child(path, "dnsPolicy"),
        &DNS_POLICIES,
    );
    if set(&spec.dns_policy) == Some("None") && spec.dns_config.is_none() {
        errs.push(FieldError::required(
            child(path, "dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    for (field, value, rule) in [
        ("hostname", &spec.hostname, NameRule::Dns1123Label),
        ("subdomain", &spec.subdomain, NameRule::Dns1123Label),
        ("nodeName", &spec.node_name, NameRule::Dns1123Subdomain),
        (
            "serviceAccountName",
            &spec.service_account_name,
            NameRule::Dns1123Subdomain,
        ),
    ] {
        if let Some(v) = set(value) {
            errs.extend(validate_name(v, rule, &child(path, field)));
        }
    }
    errs.extend(validate_labels(
        spec.node_selector.as_ref(),
        &child(path, "nodeSelector"),
    ));
    non_negative(
        &mut errs,
        spec.termination_grace_period_seconds,
        child(path, "terminationGracePeriodSeconds"),
    );
    if let Some(v) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&v) {
            errs.push(FieldError::invalid(
                child(path, "activeDeadlineSeconds"),
                v,
                inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        validate_toleration(t, &index(&child(path, "tolerations"), i), &mut errs);
    }
    errs
}

/// Errors for a Pod: its metadata (namespaced, DNS-1123 subdomain name) and spec.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pod.metadata, true, NameRule::Dns1123Subdomain);
    match &pod.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec")),
        None => errs.push(FieldError::required("spec", "")),
    }
    errs
}

fn validate_volumes(
    volumes: &[Volume],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = index(path, i);
        let name_path = child(&p, "name");
        if v.name.is_empty() {
            errs.push(FieldError::required(name_path, ""));
        } else {
            push_problems(errs, &name_path, &v.name, is_dns1123_label(&v.name));
            if !names.insert(v.name.clone()) {
                errs.push(FieldError::duplicate(name_path, &v.name));
            }
        }
        // No source at all is fine: defaulting turns it into an emptyDir.
        if set_fields(v, &["name"]).len() > 1 {
            errs.push(FieldError::forbidden(
                &p,
                "may not specify more than 1 volume type",
            ));
        }
        if let Some(hp) = &v.host_path {
            let hp_path = child(&child(&p, "hostPath"), "path");
            if hp.path.is_empty() {
                errs.push(FieldError::required(hp_path, ""));
            } else if hp.path.split('/').any(|c| c == "..") {
                errs.push(FieldError::invalid(
                    hp_path,
                    &hp.path,
                    "must not contain '..'",
                ));
            }
        }
        if let Some(cm) = &v.config_map {
            if cm.name.is_empty() {
                errs.push(FieldError::required(
                    child(&child(&p, "configMap"), "name"),
                    "",
                ));
            }
        }
        if let Some(s) = &v.secret {
            if set(&s.secret_name).is_none() {
                errs.push(FieldError::required(
                    child(&child(&p, "secret"), "secretName"),
                    "",
                ));
            }
        }
        if let Some(pvc) = &v.persistent_volume_claim {
            if pvc.claim_name.is_empty() {
                errs.push(FieldError::required(
                    child(&child(&p, "persistentVolumeClaim"), "claimName"),
                    "",
                ));
            }
        }
    }
    names
}

fn validate_container(
    c: &Container,
    path: &str,
    init: bool,
    ctx: &mut PodContext,
    errs: &mut Vec<FieldError>,
) {
    let name_path = child(path, "name");
    if c.name.is_empty() {
        errs.push(FieldError::required(name_path, ""));
    } else {
        push_problems(errs, &name_path, &c.name, is_dns1123_label(&c.name));
        if !ctx.container_names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(name_path, &c.name));
        }
    }
    match c.image.as_deref() {
        None | Some("") => errs.push(FieldError::required(child(path, "image"), "")),
        Some(image) if image.trim() != image => errs.push(FieldError::invalid(
            child(path, "image"),
            image,
            "must not have leading or trailing whitespace",
        )),
        Some(_) => {}
    }
    check_enum(
        errs,
        &c.image_pull_policy,
        child(path, "imagePullPolicy"),
        &PULL_POLICIES,
    );
    validate_container_ports(c, path, ctx, errs);
    validate_env(c.env.as_deref().unwrap_or(&[]), &child(path, "env"), errs);
    validate_volume_mounts(
        c.volume_mounts.as_deref().unwrap_or(&[]),
        &child(path, "volumeMounts"),
        &ctx.volume_names,
        errs,
    );
    if let Some(r) = &c.resources {
        validate_resources_into(r, &child(path, "resources"), errs);
    }

    let restart_policy = set(&c.restart_policy);
    if init {
        if let Some(rp) = restart_policy {
            if rp != "Always" {
                errs.push(FieldError::not_supported(
                    child(path, "restartPolicy"),
                    rp,
                    &["Always"],
                ));
            }
        }
    } else if restart_policy.is_some() {
        errs.push(FieldError::forbidden(
            child(path, "restartPolicy"),
            "may not be set for non-init containers",
        ));
    }
    // Plain init containers run to completion: probes and hooks make no sense there.
    let plain_init = init && restart_policy != Some("Always");
    let probes = [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ];
    for (field, probe, success_must_be_one) in probes {
        let Some(probe) = probe else { continue };
        if plain_init {
            errs.push(FieldError::forbidden(
                child(path, field),
                "may not be set for init containers without restartPolicy=Always",
            ));
        } else {
            validate_probe(probe, &child(path, field), success_must_be_one, errs);
        }
    }
    if let Some(lifecycle) = &c.lifecycle {
        if plain_init {
            errs.push(FieldError::forbidden(
                child(path, "lifecycle"),
                "may not be set for init containers without restartPolicy=Always",
            ));
        } else {
            validate_lifecycle(lifecycle, &child(path, "lifecycle"), errs);
        }
    }
}

fn validate_container_ports(
    c: &Container,
    path: &str,
    ctx: &mut PodContext,
    errs: &mut Vec<FieldError>,
) {
    let mut names = BTreeSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = index(&child(path, "ports"), i);
        if let Some(name) = set(&port.name) {
            let problems = is_valid_port_name(name);
            if !problems.is_empty() {
                push_problems(errs, &child(&p, "name"), name, problems);
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(child(&p, "name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(child(&p, "containerPort"), ""));
        } else {
            push_problems(
                errs,
                &child(&p, "containerPort"),
                &port.container_port.to_string(),
                is_valid_port_num(port.container_port),
            );
        }
        let protocol = set(&port.protocol).unwrap_or("TCP");
        if !PORT_PROTOCOLS.contains(&protocol) {
            errs.push(FieldError::not_supported(
                child(&p, "protocol"),
                protocol,
                &PORT_PROTOCOLS,
            ));
        }
        let Some(host_port) = port.host_port.filter(|h| *h != 0) else {
            continue;
        };
        let host_port_path = child(&p, "hostPort");
        let problems = is_valid_port_num(host_port);
        if !problems.is_empty() {
            push_problems(errs, &host_port_path, &host_port.to_string(), problems);
            continue;
        }
        if ctx.host_network && host_port != port.container_port {
            errs.push(FieldError::invalid(
                &host_port_path,
                host_port,
                "must match `containerPort` when `hostNetwork` is true",
            ));
        }
        let host_ip = set(&port.host_ip).unwrap_or("");
        let taken = format!("{host_ip}/{host_port}/{protocol}");
        if !ctx.host_ports.insert(taken) {
            errs.push(FieldError::duplicate(
                host_port_path,
                format!("{host_port}/{protocol}"),
            ));
        }
    }
}

fn validate_env(env: &[EnvVar], path: &str, errs: &mut Vec<FieldError>) {
    for (i, e) in env.iter().enumerate() {
        let p = index(path, i);
        if e.name.is_empty() {
            errs.push(FieldError::required(child(&p, "name"), ""));
        } else {
            push_problems(errs, &child(&p, "name"), &e.name, is_env_var_name(&e.name));
        }
        let Some(source) = &e.value_from else {
            continue;
        };
        let from_path = child(&p, "valueFrom");
        let sources = set_fields(source, &[]).len();
        if set(&e.value).is_some() {
            errs.push(FieldError::invalid(
                from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources == 0 {
            errs.push(FieldError::invalid(
                from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or \
                 `secretKeyRef`",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                from_path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    path: &str,
    volumes: &BTreeSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_paths = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = index(path, i);
        if m.name.is_empty() {
            errs.push(FieldError::required(child(&p, "name"), ""));
        } else if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(child(&p, "name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(child(&p, "mountPath"), ""));
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                child(&p, "mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        if let Some(sub) = set(&m.sub_path) {
            if sub.starts_with('/') {
                errs.push(FieldError::invalid(
                    child(&p, "subPath"),
                    sub,
                    "must be a relative path",
                ));
            }
            if sub.split('/').any(|c| c == "..") {
                errs.push(FieldError::invalid(
                    child(&p, "subPath"),
                    sub,
                    "must not contain '..'",
                ));
            }
        }
    }
}

/// Resources a container may ask for by a bare name.
fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Whether requests may be below limits: native resources except huge pages. Extended
/// resources (`vendor.com/gpu`) and huge pages must have request == limit.
fn is_overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

/// Errors for a container's `resources` at `path`: known resource names, well-formed
/// non-negative quantities, and each request at most its limit.
pub fn validate_resources(r: &ResourceRequirements, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_resources_into(r, path, &mut errs);
    errs
}

fn validate_resources_into(r: &ResourceRequirements, path: &str, errs: &mut Vec<FieldError>) {
    let limits_path = child(path, "limits");
    let requests_path = child(path, "requests");
    let mut parse_all = |map: &Option<BTreeMap<_, _>>, base: &str| {
        let mut parsed = BTreeMap::new();
        for (name, q) in map.iter().flatten() {
            let name: &String = name;
            let q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity = q;
            let p = key(base, name);
            if name.contains('/') {
                push_problems(errs, &p, name, is_qualified_name(name));
            } else if !is_standard_container_resource(name) {
                errs.push(FieldError::invalid(
                    &p,
                    name,
                    "must be a standard resource for containers",
                ));
            }
            match Quantity::from_k8s(q) {
                Ok(v) if v.is_negative() => {
                    errs.push(FieldError::invalid(&p, &q.0, NON_NEGATIVE));
                }
                Ok(v) => {
                    parsed.insert(name.clone(), v);
                }
                Err(e) => errs.push(FieldError::invalid(&p, &q.0, e.reason())),
            }
        }
        parsed
    };
    let limits = parse_all(&r.limits, &limits_path);
    let requests = parse_all(&r.requests, &requests_path);
    for (name, request) in &requests {
        match limits.get(name) {
            Some(limit) if !is_overcommit_allowed(name) && request != limit => {
                errs.push(FieldError::invalid(
                    &requests_path,
                    request,
                    format!("must be equal to {name} limit of {limit}"),
                ));
            }
            Some(limit) if request > limit => {
                errs.push(FieldError::invalid(
                    &requests_path,
                    request,
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
            None if !is_overcommit_allowed(name)
                && r.limits.as_ref().is_none_or(|l| !l.contains_key(name)) =>
            {
                errs.push(FieldError::required(
                    &limits_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
    }
}

fn validate_port_num_or_name(port: &IntOrString, path: &str, errs: &mut Vec<FieldError>) {
    match port {
        IntOrString::Int(n) => push_problems(errs, path, &n.to_string(), is_valid_port_num(*n)),
        IntOrString::String(s) => push_problems(errs, path, s, is_valid_port_name(s)),
    }
}

fn validate_probe(
    probe: &Probe,
    path: &str,
    success_must_be_one: bool,
    errs: &mut Vec<FieldError>,
) {
    let handlers = set_fields(probe, &[])
        .into_iter()
        .filter(|f| matches!(f.as_str(), "exec" | "httpGet" | "tcpSocket" | "grpc"))
        .count();
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    } else if handlers > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        ));
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        non_negative(errs, value, child(path, field));
    }
    if let Some(v) = probe.success_threshold {
        if success_must_be_one && v != 1 {
            errs.push(FieldError::invalid(
                child(path, "successThreshold"),
                v,
                "must be 1",
            ));
        }
    }
    if let Some(v) = probe.termination_grace_period_seconds {
        if v <= 0 {
            errs.push(FieldError::invalid(
                child(path, "terminationGracePeriodSeconds"),
                v,
                "must be greater than 0",
            ));
        }
    }
    if let Some(h) = &probe.http_get {
        let p = child(path, "httpGet");
        validate_port_num_or_name(&h.port, &child(&p, "port"), errs);
        check_enum(errs, &h.scheme, child(&p, "scheme"), &["HTTP", "HTTPS"]);
    }
    if let Some(t) = &probe.tcp_socket {
        validate_port_num_or_name(&t.port, &child(&child(path, "tcpSocket"), "port"), errs);
    }
    if let Some(g) = &probe.grpc {
        let p = child(&child(path, "grpc"), "port");
        push_problems(errs, &p, &g.port.to_string(), is_valid_port_num(g.port));
    }
}

fn validate_lifecycle(lifecycle: &Lifecycle, path: &str, errs: &mut Vec<FieldError>) {
    let hooks = [
        ("postStart", &lifecycle.post_start),
        ("preStop", &lifecycle.pre_stop),
    ];
    for (field, hook) in hooks {
        if let Some(h) = hook {
            validate_lifecycle_handler(h, &child(path, field), errs);
        }
    }
}

fn validate_lifecycle_handler(h: &LifecycleHandler, path: &str, errs: &mut Vec<FieldError>) {
    let handlers = set_fields(h, &[]).len();
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    } else if handlers > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        ));
    }
    if let Some(g) = &h.http_get {
        validate_port_num_or_name(&g.port, &child(&child(path, "httpGet"), "port"), errs);
    }
    if let Some(t) = &h.tcp_socket {
        validate_port_num_or_name(&t.port, &child(&child(path, "tcpSocket"), "port"), errs);
    }
}

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn validate_toleration(t: &Toleration, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(k) = set(&t.key) {
        push_problems(errs, &child(path, "key"), k, is_qualified_name(k));
    }
    let operator = set(&t.operator).unwrap_or("Equal");
    match operator {
        "Exists" => {
            if let Some(v) = set(&t.value) {
                errs.push(FieldError::invalid(
                    child(path, "operator"),
                    v,
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        "Equal" => {
            if set(&t.key).is_none() {
                errs.push(FieldError::invalid(
                    child(path, "operator"),
                    operator,
                    "operator must be Exists when `key` is empty, which means \"match all \
                     values and all keys\"",
                ));
            }
            if let Some(v) = set(&t.value) {
                push_problems(errs, &child(path, "value"), v, is_valid_label_value(v));
            }
        }
        other => errs.push(FieldError::not_supported(
            child(path, "operator"),
            other,
            &["Equal", "Exists"],
        )),
    }
    check_enum(errs, &t.effect, child(path, "effect"), &TAINT_EFFECTS);
    if t.toleration_seconds.is_some() && set(&t.effect) != Some("NoExecute") {
        errs.push(FieldError::invalid(
            child(path, "effect"),
            set(&t.effect).unwrap_or(""),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// Errors for a Service: a DNS-1035 label name; a known type; ports (required except for
/// ExternalName and headless services) with valid numbers, protocols and target ports,
/// named when there are several; `clusterIP: None` only for ClusterIP services;
/// `externalName` for ExternalName services. NodePort ranges are the allocator's business.
pub fn validate_service(svc: &Service) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&svc.metadata, true, NameRule::Dns1035Label);
    let Some(spec) = &svc.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    let type_ = set(&spec.type_).unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&type_) {
        errs.push(FieldError::not_supported(
            "spec.type",
            type_,
            &SERVICE_TYPES,
        ));
    }
    let cluster_ip = set(&spec.cluster_ip).unwrap_or("");
    let headless = type_ == "ClusterIP" && cluster_ip == "None";
    if type_ == "ExternalName" {
        match set(&spec.external_name) {
            None => errs.push(FieldError::required("spec.externalName", "")),
            Some(name) => {
                let cname = name.strip_suffix('.').unwrap_or(name);
                push_problems(
                    &mut errs,
                    "spec.externalName",
                    name,
                    is_dns1123_subdomain(cname),
                );
            }
        }
        if !cluster_ip.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.clusterIP",
                "may not be set for ExternalName services",
            ));
        }
    } else if cluster_ip == "None" {
        if type_ != "ClusterIP" {
            errs.push(FieldError::invalid(
                "spec.clusterIP",
                "None",
                format!("may not be set to 'None' for {type_} services"),
            ));
        }
    } else if !cluster_ip.is_empty() {
        push_problems(
            &mut errs,
            "spec.clusterIP",
            cluster_ip,
            is_valid_ip(cluster_ip),
        );
    }
    if let (Some(first), false) = (
        spec.cluster_ips.as_ref().and_then(|ips| ips.first()),
        cluster_ip.is_empty(),
    ) {
        if first != cluster_ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                first,
                "must match `clusterIP`",
            ));
        }
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        push_problems(
            &mut errs,
            &index("spec.externalIPs", i),
            ip,
            is_valid_ip(ip),
        );
    }

    let ports = spec.ports.as_deref().unwrap_or(&[]);
    if ports.is_empty() && type_ != "ExternalName" && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let require_name = ports.len() > 1;
    let mut names = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = index("spec.ports", i);
        match set(&port.name) {
            None if require_name => errs.push(FieldError::required(child(&p, "name"), "")),
            None => {}
            Some(name) => {
                push_problems(&mut errs, &child(&p, "name"), name, is_dns1123_label(name));
                if !names.insert(name) {
                    errs.push(FieldError::duplicate(child(&p, "name"), name));
                }
            }
        }
        push_problems(
            &mut errs,
            &child(&p, "port"),
            &port.port.to_string(),
            is_valid_port_num(port.port),
        );
        let protocol = set(&port.protocol).unwrap_or("TCP");
        if !PORT_PROTOCOLS.contains(&protocol) {
            errs.push(FieldError::not_supported(
                child(&p, "protocol"),
                protocol,
                &PORT_PROTOCOLS,
            ));
        }
        if let Some(target) = &port.target_port {
            validate_port_num_or_name(target, &child(&p, "targetPort"), &mut errs);
        }
        let key = format!("{}/{protocol}", port.port);
        if !keys.insert(key.clone()) {
            errs.push(FieldError::duplicate(&p, key));
        }
        if let Some(node_port) = port.node_port.filter(|n| *n != 0) {
            if matches!(type_, "ClusterIP" | "ExternalName") {
                errs.push(FieldError::forbidden(
                    child(&p, "nodePort"),
                    format!("may not be used when `type` is '{type_}'"),
                ));
            } else if !node_ports.insert(format!("{node_port}/{protocol}")) {
                errs.push(FieldError::duplicate(child(&p, "nodePort"), node_port));
            }
        }
    }
    check_enum(
        &mut errs,
        &spec.session_affinity,
        "spec.sessionAffinity".into(),
        &["ClientIP", "None"],
    );
    if let Some(policy) = set(&spec.external_traffic_policy) {
        if !["Cluster", "Local"].contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.externalTrafficPolicy",
                policy,
                &["Cluster", "Local"],
            ));
        } else if !matches!(type_, "NodePort" | "LoadBalancer") {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                policy,
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            ));
        }
    }
    check_enum(
        &mut errs,
        &spec.internal_traffic_policy,
        "spec.internalTrafficPolicy".into(),
        &["Cluster", "Local"],
    );
    errs.extend(validate_labels(spec.selector.as_ref(), "spec.selector"));
    errs
}

// ---------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------

/// Renders labels as `a=b,c=d` for error values.
fn render_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Errors for a workload's selector and its template's labels, under the spec at `path`:
/// the selector is required, must not be empty, must be well formed, and must select the
/// template's labels (or the workload would not own its own pods).
pub fn validate_pod_template_and_selector(
    selector: Option<&LabelSelector>,
    template_labels: Option<&BTreeMap<String, String>>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sel_path = child(path, "selector");
    let Some(selector) = selector else {
        errs.push(FieldError::required(sel_path, ""));
        return errs;
    };
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        errs.push(FieldError {
            field: sel_path,
            kind: FieldErrorKind::Invalid,
            value: None,
            detail: "empty selector is invalid".to_string(),
        });
        return errs;
    }
    errs.extend(validate_label_selector(selector, &sel_path));
    if let Ok(sel) = Selector::from_label_selector(selector) {
        let no_labels = BTreeMap::new();
        if !sel.matches(template_labels.unwrap_or(&no_labels)) {
            errs.push(FieldError::invalid(
                child(path, "template.metadata.labels"),
                render_labels(template_labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs
}

/// Errors for a pod template at `path`: its labels and annotations, its spec, and the
/// restart policies the owning workload allows (absent counts as `Always`).
fn validate_pod_template(
    template: &PodTemplateSpec,
    path: &str,
    restart_policies: &[&str],
    forbid_active_deadline: bool,
    errs: &mut Vec<FieldError>,
) {
    errs.extend(validate_template_meta(
        template.metadata.as_ref(),
        &child(path, "metadata"),
    ));
    let spec_path = child(path, "spec");
    let Some(spec) = &template.spec else {
        errs.push(FieldError::required(spec_path, ""));
        return;
    };
    errs.extend(validate_pod_spec(spec, &spec_path));
    let restart = set(&spec.restart_policy).unwrap_or("Always");
    if RESTART_POLICIES.contains(&restart) && !restart_policies.contains(&restart) {
        errs.push(FieldError::not_supported(
            child(&spec_path, "restartPolicy"),
            restart,
            restart_policies,
        ));
    }
    if forbid_active_deadline && spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            child(&spec_path, "activeDeadlineSeconds"),
            "must not be specified for pods of long-running workloads",
        ));
    }
}

fn template_labels(template: &PodTemplateSpec) -> Option<&BTreeMap<String, String>> {
    template.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

/// Validates an int-or-percent rollout field; returns whether it is zero.
fn validate_int_or_percent(
    value: &IntOrString,
    path: &str,
    at_most_100: bool,
    errs: &mut Vec<FieldError>,
) -> bool {
    match value {
        IntOrString::Int(n) => {
            non_negative(errs, Some(*n), path.to_string());
            *n == 0
        }
        IntOrString::String(s) => {
            let problems = is_valid_percent(s);
            if !problems.is_empty() {
                push_problems(errs, path, s, problems);
                return false;
            }
            let pct: u64 = s.trim_end_matches('%').parse().unwrap_or(u64::MAX);
            if at_most_100 && pct > 100 {
                errs.push(FieldError::invalid(
                    path,
                    s,
                    "must not be greater than 100%",
                ));
            }
            pct == 0
        }
    }
}

/// maxUnavailable / maxSurge of a rolling update; `surge_defaults_to_zero` for DaemonSets,
/// whose absent maxSurge means 0.
fn validate_rollout(
    max_unavailable: Option<&IntOrString>,
    max_surge: Option<&IntOrString>,
    path: &str,
    surge_defaults_to_zero: bool,
    errs: &mut Vec<FieldError>,
) {
    let unavailable_path = child(path, "maxUnavailable");
    let unavailable_zero =
        max_unavailable.is_some_and(|v| validate_int_or_percent(v, &unavailable_path, true, errs));
    let surge_zero = match max_surge {
        Some(v) => validate_int_or_percent(v, &child(path, "maxSurge"), false, errs),
        None => surge_defaults_to_zero,
    };
    if unavailable_zero && surge_zero {
        let shown = match max_unavailable {
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(s)) => s.clone(),
            None => String::new(),
        };
        errs.push(FieldError::invalid(
            unavailable_path,
            shown,
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

/// Errors for a Deployment.
pub fn validate_deployment(d: &Deployment) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&d.metadata, true, NameRule::Dns1123Subdomain);
    let Some(spec) = &d.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    non_negative(&mut errs, spec.replicas, "spec.replicas".into());
    non_negative(
        &mut errs,
        spec.min_ready_seconds,
        "spec.minReadySeconds".into(),
    );
    non_negative(
        &mut errs,
        spec.revision_history_limit,
        "spec.revisionHistoryLimit".into(),
    );
    non_negative(
        &mut errs,
        spec.progress_deadline_seconds,
        "spec.progressDeadlineSeconds".into(),
    );
    if let Some(deadline) = spec.progress_deadline_seconds {
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs.extend(validate_pod_template_and_selector(
        Some(&spec.selector),
        template_labels(&spec.template),
        "spec",
    ));
    validate_pod_template(
        &spec.template,
        "spec.template",
        &["Always"],
        true,
        &mut errs,
    );
    if let Some(strategy) = &spec.strategy {
        let type_ = set(&strategy.type_).unwrap_or("RollingUpdate");
        match type_ {
            "Recreate" => {
                if strategy.rolling_update.is_some() {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = &strategy.rolling_update {
                    validate_rollout(
                        ru.max_unavailable.as_ref(),
                        ru.max_surge.as_ref(),
                        "spec.strategy.rollingUpdate",
                        false,
                        &mut errs,
                    );
                }
            }
            other => errs.push(FieldError::not_supported(
                "spec.strategy.type",
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    errs
}

/// Errors for a ReplicaSet.
pub fn validate_replica_set(rs: &ReplicaSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&rs.metadata, true, NameRule::Dns1123Subdomain);
    let Some(spec) = &rs.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    non_negative(&mut errs, spec.replicas, "spec.replicas".into());
    non_negative(
        &mut errs,
        spec.min_ready_seconds,
        "spec.minReadySeconds".into(),
    );
    let Some(template) = &spec.template else {
        errs.push(FieldError::required("spec.template", ""));
        return errs;
    };
    errs.extend(validate_pod_template_and_selector(
        Some(&spec.selector),
        template_labels(template),
        "spec",
    ));
    validate_pod_template(template, "spec.template", &["Always"], true, &mut errs);
    errs
}

/// Errors for a ReplicationController, whose selector is a plain label map.
pub fn validate_replication_controller(rc: &ReplicationController) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&rc.metadata, true, NameRule::Dns1123Subdomain);
    let Some(spec) = &rc.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    non_negative(&mut errs, spec.replicas, "spec.replicas".into());
    non_negative(
        &mut errs,
        spec.min_ready_seconds,
        "spec.minReadySeconds".into(),
    );
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty());
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(s) => errs.extend(validate_labels(Some(s), "spec.selector")),
    }
    let Some(template) = &spec.template else {
        errs.push(FieldError::required("spec.template", ""));
        return errs;
    };
    if let Some(Ok(sel)) = selector.map(Selector::from_map) {
        let labels = template_labels(template);
        let no_labels = BTreeMap::new();
        if !sel.matches(labels.unwrap_or(&no_labels)) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                render_labels(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_pod_template(template, "spec.template", &["Always"], true, &mut errs);
    errs
}

/// Errors for a DaemonSet.
pub fn validate_daemon_set(ds: &DaemonSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&ds.metadata, true, NameRule::Dns1123Subdomain);
    let Some(spec) = &ds.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    non_negative(
        &mut errs,
        spec.min_ready_seconds,
        "spec.minReadySeconds".into(),
    );
    non_negative(
        &mut errs,
        spec.revision_history_limit,
        "spec.revisionHistoryLimit".into(),
    );
    errs.extend(validate_pod_template_and_selector(
        Some(&spec.selector),
        template_labels(&spec.template),
        "spec",
    ));
    validate_pod_template(
        &spec.template,
        "spec.template",
        &["Always"],
        true,
        &mut errs,
    );
    if let Some(strategy) = &spec.update_strategy {
        match set(&strategy.type_).unwrap_or("RollingUpdate") {
            "RollingUpdate" => {
                if let Some(ru) = &strategy.rolling_update {
                    validate_rollout(
                        ru.max_unavailable.as_ref(),
                        ru.max_surge.as_ref(),
                        "spec.updateStrategy.rollingUpdate",
                        true,
                        &mut errs,
                    );
                }
            }
            "OnDelete" => {}
            other => errs.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                other,
                &["OnDelete", "RollingUpdate"],
            )),
        }
    }
    errs
}

/// Errors for a StatefulSet. Names follow the DNS-1123 subdomain rule as in Kubernetes
/// 1.33.
pub fn validate_stateful_set(sts: &StatefulSet) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&sts.metadata, true, NameRule::Dns1123Subdomain);
    let Some(spec) = &sts.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    non_negative(&mut errs, spec.replicas, "spec.replicas".into());
    non_negative(
        &mut errs,
        spec.min_ready_seconds,
        "spec.minReadySeconds".into(),
    );
    non_negative(
        &mut errs,
        spec.revision_history_limit,
        "spec.revisionHistoryLimit".into(),
    );
    check_enum(
        &mut errs,
        &spec.pod_management_policy,
        "spec.podManagementPolicy".into(),
        &["OrderedReady", "Parallel"],
    );
    if let Some(name) = set(&spec.service_name) {
        errs.extend(validate_name(
            name,
            NameRule::Dns1123Label,
            "spec.serviceName",
        ));
    }
    errs.extend(validate_pod_template_and_selector(
        Some(&spec.selector),
        template_labels(&spec.template),
        "spec",
    ));
    // Containers mount the claim templates by name: the pods get those volumes.
    let mut template = spec.template.clone();
    if let Some(pod_spec) = template.spec.as_mut() {
        let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
        for claim in spec.volume_claim_templates.iter().flatten() {
            let Some(name) = set(&claim.metadata.name) else {
                continue;
            };
            if !volumes.iter().any(|v| v.name == name) {
                volumes.push(k8s_openapi::api::core::v1::Volume {
                    name: name.to_string(),
                    persistent_volume_claim: Some(
                        k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                            claim_name: name.to_string(),
                            read_only: None,
                        },
                    ),
                    ..Default::default()
                });
            }
        }
    }
    validate_pod_template(&template, "spec.template", &["Always"], true, &mut errs);
    if let Some(strategy) = &spec.update_strategy {
        match set(&strategy.type_).unwrap_or("RollingUpdate") {
            "RollingUpdate" => {
                if let Some(ru) = &strategy.rolling_update {
                    let p = "spec.updateStrategy.rollingUpdate";
                    non_negative(&mut errs, ru.partition, child(p, "partition"));
                    if let Some(mu) = &ru.max_unavailable {
                        validate_int_or_percent(mu, &child(p, "maxUnavailable"), true, &mut errs);
                    }
                }
            }
            "OnDelete" => {
                if strategy.rolling_update.is_some() {
                    errs.push(FieldError {
                        field: "spec.updateStrategy.rollingUpdate".to_string(),
                        kind: FieldErrorKind::Invalid,
                        value: None,
                        detail: "only allowed for updateStrategy 'RollingUpdate'".to_string(),
                    });
                }
            }
            other => errs.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                other,
                &["OnDelete", "RollingUpdate"],
            )),
        }
    }
    for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let p = index("spec.volumeClaimTemplates", i);
        match set(&claim.metadata.name) {
            None => errs.push(FieldError::required(child(&p, "metadata.name"), "")),
            Some(name) => errs.extend(validate_name(
                name,
                NameRule::Dns1123Subdomain,
                &child(&p, "metadata.name"),
            )),
        }
    }
    errs
}

/// Errors for a Job spec at `path`. A missing selector is accepted unless
/// `manualSelector` is set: the API server generates it (and the matching template label).
fn validate_job_spec(spec: &JobSpec, path: &str, errs: &mut Vec<FieldError>) {
    for (field, value) in [
        ("parallelism", spec.parallelism),
        ("completions", spec.completions),
        ("backoffLimit", spec.backoff_limit),
        ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished),
    ] {
        non_negative(errs, value, child(path, field));
    }
    non_negative(
        errs,
        spec.active_deadline_seconds,
        child(path, "activeDeadlineSeconds"),
    );
    match (&spec.selector, spec.manual_selector) {
        (Some(sel), _) => errs.extend(validate_pod_template_and_selector(
            Some(sel),
            template_labels(&spec.template),
            path,
        )),
        (None, Some(true)) => errs.push(FieldError::required(child(path, "selector"), "")),
        (None, _) => {}
    }
    match set(&spec.completion_mode) {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    child(path, "completions"),
                    "when completion mode is Indexed",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            child(path, "completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    validate_pod_template(
        &spec.template,
        &child(path, "template"),
        &["OnFailure", "Never"],
        false,
        errs,
    );
}

/// Errors for a Job: its template's restart policy must be `OnFailure` or `Never` (an
/// absent one defaults to `Always` and is refused, as in Kubernetes).
pub fn validate_job(job: &Job) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&job.metadata, true, NameRule::Dns1123Subdomain);
    match &job.spec {
        Some(spec) => validate_job_spec(spec, "spec", &mut errs),
        None => errs.push(FieldError::required("spec", "")),
    }
    errs
}

/// CronJob names get a timestamp suffix in their Jobs' names, which must stay ≤ 63.
const CRON_JOB_NAME_MAX_LENGTH: usize = 52;

/// Errors for a CronJob: a non-empty, well-formed schedule, a known concurrency policy,
/// and a valid job template.
pub fn validate_cron_job(cj: &CronJob) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&cj.metadata, true, NameRule::Dns1123Subdomain);
    if let Some(name) = set(&cj.metadata.name) {
        if name.len() > CRON_JOB_NAME_MAX_LENGTH {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                max_len_error(CRON_JOB_NAME_MAX_LENGTH),
            ));
        }
    }
    let Some(spec) = &cj.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if spec.schedule.trim().is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else if let Some(problem) = schedule_problem(&spec.schedule) {
        errs.push(FieldError::invalid(
            "spec.schedule",
            &spec.schedule,
            problem,
        ));
    }
    check_enum(
        &mut errs,
        &spec.concurrency_policy,
        "spec.concurrencyPolicy".into(),
        &["Allow", "Forbid", "Replace"],
    );
    non_negative(
        &mut errs,
        spec.starting_deadline_seconds,
        "spec.startingDeadlineSeconds".into(),
    );
    non_negative(
        &mut errs,
        spec.successful_jobs_history_limit,
        "spec.successfulJobsHistoryLimit".into(),
    );
    non_negative(
        &mut errs,
        spec.failed_jobs_history_limit,
        "spec.failedJobsHistoryLimit".into(),
    );
    errs.extend(validate_template_meta(
        spec.job_template.metadata.as_ref(),
        "spec.jobTemplate.metadata",
    ));
    match &spec.job_template.spec {
        Some(job_spec) => validate_job_spec(job_spec, "spec.jobTemplate.spec", &mut errs),
        None => errs.push(FieldError::required("spec.jobTemplate.spec", "")),
    }
    errs
}

/// What is wrong with a cron schedule, if anything: five fields (minute, hour, day of
/// month, month, day of week) of numbers, names, `*`, `?`, ranges, lists and steps within
/// bounds, or one of the `@` descriptors.
pub fn schedule_problem(schedule: &str) -> Option<String> {
    let schedule = schedule.trim();
    if schedule.starts_with("TZ=") || schedule.starts_with("CRON_TZ=") {
        return Some(
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string(),
        );
    }
    if let Some(descriptor) = schedule.strip_prefix('@') {
        let known = matches!(
            descriptor,
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly"
        ) || descriptor
            .strip_prefix("every ")
            .is_some_and(|d| !d.trim().is_empty());
        return (!known).then(|| format!("unrecognized descriptor: @{descriptor}"));
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!(
            "expected exactly 5 fields, found {}: {schedule}",
            fields.len()
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(&str, u32, u32, &[&str]); 5] = [
        ("minute", 0, 59, &[]),
        ("hour", 0, 23, &[]),
        ("day of month", 1, 31, &[]),
        ("month", 1, 12, &MONTHS),
        ("day of week", 0, 6, &DAYS),
    ];
    for (field, (what, lo, hi, names)) in fields.iter().zip(specs) {
        if let Err(reason) = check_cron_field(field, lo, hi, names) {
            return Some(format!("{what} field {field:?}: {reason}"));
        }
    }
    None
}

fn check_cron_field(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<(), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Names start at the field's lower bound (jan = 1, sun = 0).
            return Ok(lo + i as u32);
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("failed to parse {s:?} as a number"))?;
        if v < lo || v > hi {
            return Err(format!("{v} is out of range {lo}-{hi}"));
        }
        Ok(v)
    };
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s > 0 => {}
                _ => return Err(format!("invalid step {step:?}")),
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("range start {a} is above its end {b}"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Configuration and cluster objects
// ---------------------------------------------------------------------------------------

/// Errors for a ConfigMap: keys valid (they become file names), no key in both `data` and
/// `binaryData`, and at most 1 MiB of values in total.
pub fn validate_config_map(cm: &ConfigMap) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&cm.metadata, true, NameRule::Dns1123Subdomain);
    let data = cm.data.as_ref();
    let binary = cm.binary_data.as_ref();
    let mut total = 0usize;
    for (k, v) in data.into_iter().flatten() {
        total = total.saturating_add(v.len());
        let p = key("data", k);
        push_problems(&mut errs, &p, k, is_config_map_key(k));
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.push(FieldError::invalid(
                p,
                k,
                "duplicate of key present in binaryData",
            ));
        }
    }
    for (k, v) in binary.into_iter().flatten() {
        total = total.saturating_add(v.0.len());
        let p = key("binaryData", k);
        push_problems(&mut errs, &p, k, is_config_map_key(k));
        if data.is_some_and(|d| d.contains_key(k)) {
            errs.push(FieldError::invalid(
                p,
                k,
                "duplicate of key present in data",
            ));
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("data", MAX_DATA_SIZE));
    }
    errs
}

/// Errors for a Secret: keys valid, at most 1 MiB in total, and the keys or annotation
/// each well-known type requires (`tls.crt` and `tls.key` for `kubernetes.io/tls`, …),
/// counting `stringData` as the API server merges it into `data`.
pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&secret.metadata, true, NameRule::Dns1123Subdomain);
    let mut keys = BTreeSet::new();
    let mut total = 0usize;
    for (k, v) in secret.data.iter().flatten() {
        total = total.saturating_add(v.0.len());
        push_problems(&mut errs, &key("data", k), k, is_config_map_key(k));
        keys.insert(k.as_str());
    }
    for (k, v) in secret.string_data.iter().flatten() {
        total = total.saturating_add(v.len());
        push_problems(&mut errs, &key("stringData", k), k, is_config_map_key(k));
        keys.insert(k.as_str());
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("data", MAX_DATA_SIZE));
    }
    let require = |errs: &mut Vec<FieldError>, k: &str| {
        if !keys.contains(k) {
            errs.push(FieldError::required(key("data", k), ""));
        }
    };
    match set(&secret.type_).unwrap_or("Opaque") {
        "kubernetes.io/service-account-token" => {
            let annotation = "kubernetes.io/service-account.name";
            let has = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotation))
                .is_some_and(|v| !v.is_empty());
            if !has {
                errs.push(FieldError::required(
                    key("metadata.annotations", annotation),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => require(&mut errs, ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => require(&mut errs, ".dockerconfigjson"),
        "kubernetes.io/basic-auth" if !keys.contains("username") && !keys.contains("password") => {
            require(&mut errs, "username");
            require(&mut errs, "password");
        }
        "kubernetes.io/ssh-auth" => require(&mut errs, "ssh-privatekey"),
        "kubernetes.io/tls" => {
            require(&mut errs, "tls.crt");
            require(&mut errs, "tls.key");
        }
        _ => {}
    }
    errs
}

/// Errors for a Namespace: a DNS-1123 label name, and finalizers that are either
/// `kubernetes` or qualified with a domain.
pub fn validate_namespace(ns: &Namespace) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&ns.metadata, false, NameRule::Dns1123Label);
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.as_deref());
    for (i, f) in finalizers.unwrap_or(&[]).iter().enumerate() {
        let p = index("spec.finalizers", i);
        let problems = is_qualified_name(f);
        if !problems.is_empty() {
            push_problems(&mut errs, &p, f, problems);
        } else if !f.contains('/') && f != "kubernetes" {
            errs.push(FieldError::invalid(
                p,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// Errors for a Node: a DNS-1123 subdomain name, pod CIDRs, and taints (qualified keys,
/// label values, a known effect, unique by key and effect).
pub fn validate_node(node: &Node) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&node.metadata, false, NameRule::Dns1123Subdomain);
    let Some(spec) = &node.spec else {
        return errs;
    };
    if let Some(cidr) = set(&spec.pod_cidr) {
        push_problems(&mut errs, "spec.podCIDR", cidr, is_valid_cidr(cidr));
    }
    for (i, cidr) in spec.pod_cidrs.iter().flatten().enumerate() {
        push_problems(
            &mut errs,
            &index("spec.podCIDRs", i),
            cidr,
            is_valid_cidr(cidr),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, taint) in spec.taints.iter().flatten().enumerate() {
        let p = index("spec.taints", i);
        if taint.key.is_empty() {
            errs.push(FieldError::required(child(&p, "key"), ""));
        } else {
            push_problems(
                &mut errs,
                &child(&p, "key"),
                &taint.key,
                is_qualified_name(&taint.key),
            );
        }
        if let Some(v) = set(&taint.value) {
            push_problems(&mut errs, &child(&p, "value"), v, is_valid_label_value(v));
        }
        if taint.effect.is_empty() {
            errs.push(FieldError::required(child(&p, "effect"), ""));
        } else if !TAINT_EFFECTS.contains(&taint.effect.as_str()) {
            errs.push(FieldError::not_supported(
                child(&p, "effect"),
                &taint.effect,
                &TAINT_EFFECTS,
            ));
        }
        if !seen.insert((taint.key.as_str(), taint.effect.as_str())) {
            errs.push(
                FieldError::duplicate(child(&p, "effect"), &taint.effect)
                    .with_detail("taints must be unique by key and effect pair"),
            );
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Builds a k8s-openapi object from JSON, as a manifest would give it.
    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        match serde_json::from_value(v) {
            Ok(o) => o,
            Err(e) => panic!("test object does not deserialize: {e}"),
        }
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    /// Asserts that some error message contains `needle`.
    fn assert_has(errs: &[FieldError], needle: &str) {
        assert!(
            errs.iter().any(|e| e.to_string().contains(needle)),
            "no error contains {needle:?}; got {:#?}",
            messages(errs)
        );
    }

    fn assert_valid(errs: &[FieldError]) {
        assert!(errs.is_empty(), "unexpected errors: {:#?}", messages(errs));
    }

    fn pod(spec: serde_json::Value) -> Pod {
        obj(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec
        }))
    }

    fn simple_spec() -> serde_json::Value {
        json!({"containers": [{"name": "app", "image": "nginx:1.27"}]})
    }

    // --- field errors -------------------------------------------------------------------

    #[test]
    fn field_errors_read_like_kubernetes() {
        let errs = validate_name("Foo_1", NameRule::Dns1123Subdomain, "metadata.name");
        assert_eq!(
            messages(&errs),
            [
                "metadata.name: Invalid value: \"Foo_1\": a lowercase RFC 1123 subdomain must \
                 consist of lower case alphanumeric characters, '-' or '.', and must start and \
                 end with an alphanumeric character (e.g. 'example.com', regex used for \
                 validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(
            FieldError::required("spec.containers[0].image", "").to_string(),
            "spec.containers[0].image: Required value"
        );
        assert_eq!(
            FieldError::not_supported("spec.ports[0].protocol", "SCTPX", &PORT_PROTOCOLS)
                .to_string(),
            "spec.ports[0].protocol: Unsupported value: \"SCTPX\": supported values: \
             \"SCTP\", \"TCP\", \"UDP\""
        );
        assert_eq!(
            FieldError::required("metadata.name", "name or generateName is required").to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        assert_eq!(
            FieldError::too_long("metadata.annotations", 262144).to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        assert_eq!(
            FieldError::too_many("spec.items", 5, 3).to_string(),
            "spec.items: Too many: \"5\": must have at most 3 items"
        );
        assert_eq!(
            FieldError::forbidden("metadata.namespace", "not allowed on this type").to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
        assert_eq!(
            FieldError::duplicate("spec.containers[1].name", "app").to_string(),
            "spec.containers[1].name: Duplicate value: \"app\""
        );
        assert_eq!(
            FieldError::not_found("spec.containers[0].volumeMounts[0].name", "data").to_string(),
            "spec.containers[0].volumeMounts[0].name: Not found: \"data\""
        );
        let no_value = FieldError {
            field: "spec.selector".into(),
            kind: FieldErrorKind::Invalid,
            value: None,
            detail: "empty selector is invalid".into(),
        };
        assert_eq!(
            no_value.to_string(),
            "spec.selector: Invalid value: empty selector is invalid"
        );
        assert_eq!(
            FieldErrorKind::NotSupported.cause_type(),
            "FieldValueNotSupported"
        );
    }

    #[test]
    fn summarize_joins_like_an_aggregate() {
        let a = FieldError::required("a", "");
        let b = FieldError::required("b", "");
        assert_eq!(summarize(&[]), "");
        assert_eq!(summarize(std::slice::from_ref(&a)), "a: Required value");
        assert_eq!(
            summarize(&[a.clone(), b.clone(), a.clone()]),
            "[a: Required value, b: Required value]"
        );
        assert_eq!(
            invalid_message("Pod", "web", &[a]),
            "Pod \"web\" is invalid: a: Required value"
        );
    }

    // --- predicates ---------------------------------------------------------------------

    #[test]
    fn dns_labels_and_subdomains() {
        for ok in ["a", "abc", "a-b", "0", "123-abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok).is_empty(), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a.b", "a_b", "ä", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad).is_empty(), "{bad}");
        }
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            ["must be no more than 63 characters"]
        );
        assert_eq!(
            is_dns1123_label("A"),
            [
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
              or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  \
              or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        for ok in [
            "a",
            "example.com",
            "a-b.c-d.e",
            "a.".repeat(126).trim_end_matches('.'),
        ] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "A.b", "a_b.c", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        for ok in ["a", "a-1", "abc"] {
            assert!(is_dns1035_label(ok).is_empty(), "{ok}");
        }
        for bad in ["1a", "", "-a", "a-", "A", &"a".repeat(64)] {
            assert!(!is_dns1035_label(bad).is_empty(), "{bad}");
        }
        assert!(is_dns1035_label("1a")[0].starts_with("a DNS-1035 label must"));
    }

    #[test]
    fn qualified_names_and_label_values() {
        for ok in [
            "a",
            "A",
            "MyName",
            "my.name",
            "123-abc",
            "a_b",
            "example.com/MyName",
            "kubernetes.io/hostname",
            &"a".repeat(63),
        ] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(is_qualified_name("/a"), ["prefix part must be non-empty"]);
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            ["name part must be no more than 63 characters"]
        );
        assert!(
            is_qualified_name("Example.com/a")[0].starts_with("prefix part a lowercase RFC 1123")
        );
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        let empty = is_qualified_name("");
        assert_eq!(empty[0], "name part must be non-empty");
        assert_eq!(empty.len(), 2);
        assert!(is_qualified_name("a/")[0].starts_with("name part must be non-empty"));
        assert!(is_qualified_name("_a")[0].contains("(e.g. 'MyName',  or 'my.name',  or '123-abc'"));
        for ok in ["", "a", "MyValue", "my_value", "12345", "a.b-c_d"] {
            assert!(is_valid_label_value(ok).is_empty(), "{ok}");
        }
        for bad in ["-a", "a-", "a b", "a/b", &"a".repeat(64)] {
            assert!(!is_valid_label_value(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn identifiers_keys_and_ports() {
        assert!(is_c_identifier("_a1").is_empty());
        assert!(is_c_identifier("A_B").is_empty());
        assert!(!is_c_identifier("1a").is_empty());
        assert!(!is_c_identifier("a-b").is_empty());
        assert!(!is_c_identifier("").is_empty());

        for ok in [
            "PATH",
            "my.env-name",
            "MY_ENV.NAME",
            "MyEnvName1",
            "-x",
            "_",
        ] {
            assert!(is_env_var_name(ok).is_empty(), "{ok}");
        }
        assert!(!is_env_var_name("1A").is_empty());
        assert!(!is_env_var_name("A B").is_empty());
        assert!(!is_env_var_name("").is_empty());
        assert_eq!(is_env_var_name("."), ["must not be '.'"]);
        assert_eq!(is_env_var_name(".."), ["must not be '..'"]);
        assert_eq!(is_env_var_name("..a"), ["must not start with '..'"]);

        for ok in ["key.name", "KEY_NAME", "key-name", ".hidden", "a"] {
            assert!(is_config_map_key(ok).is_empty(), "{ok}");
        }
        assert!(!is_config_map_key("").is_empty());
        assert!(!is_config_map_key("a/b").is_empty());
        assert!(!is_config_map_key("a b").is_empty());
        assert_eq!(is_config_map_key(".."), ["must not be '..'"]);
        assert_eq!(
            is_config_map_key(&"a".repeat(254)),
            ["must be no more than 253 characters"]
        );

        assert!(is_valid_port_num(1).is_empty());
        assert!(is_valid_port_num(65535).is_empty());
        assert_eq!(
            is_valid_port_num(0),
            ["must be between 1 and 65535, inclusive"]
        );
        assert!(!is_valid_port_num(65536).is_empty());
        assert!(!is_valid_port_num(-1i64).is_empty());

        assert!(is_valid_port_name("http").is_empty());
        assert!(is_valid_port_name("h2c-1").is_empty());
        assert!(!is_valid_port_name("8080").is_empty());
        assert!(!is_valid_port_name("Http").is_empty());
        assert!(!is_valid_port_name("a--b").is_empty());
        assert!(!is_valid_port_name("-a").is_empty());
        assert!(!is_valid_port_name("abcdefghijklmnop").is_empty());

        assert!(is_valid_percent("25%").is_empty());
        assert!(!is_valid_percent("25").is_empty());
        assert!(!is_valid_percent("%").is_empty());
        assert!(!is_valid_percent("-5%").is_empty());
        assert!(is_valid_ip("10.0.0.1").is_empty());
        assert!(is_valid_ip("2001:db8::1").is_empty());
        assert!(!is_valid_ip("10.0.0.256").is_empty());
        assert!(is_valid_cidr("10.244.1.0/24").is_empty());
        assert!(is_valid_cidr("2001:db8::/64").is_empty());
        assert!(!is_valid_cidr("10.244.1.0/33").is_empty());
        assert!(!is_valid_cidr("10.244.1.0").is_empty());
        assert!(!is_valid_cidr("x/8").is_empty());
    }

    #[test]
    fn name_rules() {
        assert!(NameRule::Dns1123Subdomain.problems("a.b", false).is_empty());
        assert!(!NameRule::Dns1123Label.problems("a.b", false).is_empty());
        assert!(!NameRule::Dns1035Label.problems("1a", false).is_empty());
        assert!(NameRule::PathSegment
            .problems("Any_Thing:1", false)
            .is_empty());
        assert_eq!(
            NameRule::PathSegment.problems("..", false),
            ["may not be '..'"]
        );
        assert_eq!(
            NameRule::PathSegment.problems("a/b%", false),
            ["may not contain '/'", "may not contain '%'"]
        );
        // generateName prefixes may end in '-'.
        assert!(NameRule::Dns1123Subdomain.problems("web-", true).is_empty());
        assert!(!NameRule::Dns1123Subdomain
            .problems("web-", false)
            .is_empty());
        assert!(!NameRule::Dns1123Subdomain.problems("-", true).is_empty());
        assert_eq!(
            validate_name("", NameRule::Dns1123Label, "x"),
            [FieldError::required("x", "")]
        );
    }

    // --- metadata -----------------------------------------------------------------------

    fn meta(v: serde_json::Value) -> ObjectMeta {
        obj(v)
    }

    #[test]
    fn object_meta_names_and_namespaces() {
        let ok = meta(json!({"name": "web", "namespace": "default"}));
        assert_valid(&validate_object_meta(&ok, true, NameRule::Dns1123Subdomain));

        let nameless = meta(json!({"namespace": "default"}));
        assert_eq!(
            messages(&validate_object_meta(
                &nameless,
                true,
                NameRule::Dns1123Subdomain
            )),
            ["metadata.name: Required value: name or generateName is required"]
        );
        let generated = meta(json!({"generateName": "web-", "namespace": "default"}));
        assert_valid(&validate_object_meta(
            &generated,
            true,
            NameRule::Dns1123Subdomain,
        ));
        let bad_generated = meta(json!({"generateName": "Web_", "namespace": "default"}));
        assert_has(
            &validate_object_meta(&bad_generated, true, NameRule::Dns1123Subdomain),
            "metadata.generateName: Invalid value: \"Web_\"",
        );

        let no_ns = meta(json!({"name": "web"}));
        assert_eq!(
            messages(&validate_object_meta(
                &no_ns,
                true,
                NameRule::Dns1123Subdomain
            )),
            ["metadata.namespace: Required value"]
        );
        let bad_ns = meta(json!({"name": "web", "namespace": "Team.A"}));
        assert_has(
            &validate_object_meta(&bad_ns, true, NameRule::Dns1123Subdomain),
            "metadata.namespace: Invalid value: \"Team.A\"",
        );
        let cluster = meta(json!({"name": "n1", "namespace": "default"}));
        assert_eq!(
            messages(&validate_object_meta(
                &cluster,
                false,
                NameRule::Dns1123Subdomain
            )),
            ["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let svc_name = meta(json!({"name": "1web", "namespace": "default"}));
        assert_has(
            &validate_object_meta(&svc_name, true, NameRule::Dns1035Label),
            "a DNS-1035 label",
        );
        let negative = meta(json!({"name": "a", "namespace": "b", "generation": -1}));
        assert_has(
            &validate_object_meta(&negative, true, NameRule::Dns1123Subdomain),
            "metadata.generation: Invalid value: \"-1\": must be greater than or equal to 0",
        );
    }

    #[test]
    fn object_meta_labels_annotations_finalizers_owners() {
        let m = meta(json!({
            "name": "web", "namespace": "default",
            "labels": {"app": "web", "bad key": "x", "tier": "-front"},
            "annotations": {"example.com/Note": "anything goes here", "/bad": ""},
            "finalizers": ["example.com/cleanup", "bad finalizer", "orphan", "foregroundDeletion"],
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1", "controller": true},
                {"apiVersion": "", "kind": "", "name": "", "uid": "", "controller": true}
            ]
        }));
        let errs = validate_object_meta(&m, true, NameRule::Dns1123Subdomain);
        assert_has(
            &errs,
            "metadata.labels: Invalid value: \"bad key\": name part must consist of",
        );
        assert_has(
            &errs,
            "metadata.labels: Invalid value: \"-front\": a valid label must be",
        );
        assert_has(
            &errs,
            "metadata.annotations: Invalid value: \"/bad\": prefix part must be non-empty",
        );
        assert_has(
            &errs,
            "metadata.finalizers[1]: Invalid value: \"bad finalizer\"",
        );
        assert_has(
            &errs,
            "finalizer orphan and foregroundDeletion cannot be both set",
        );
        assert_has(&errs, "metadata.ownerReferences[1].apiVersion: Invalid value: \"\": version must not be empty");
        assert_has(
            &errs,
            "metadata.ownerReferences[1].kind: Invalid value: \"\": kind must not be empty",
        );
        assert_has(
            &errs,
            "metadata.ownerReferences[1].name: Invalid value: \"\": name must not be empty",
        );
        assert_has(
            &errs,
            "metadata.ownerReferences[1].uid: Invalid value: \"\": uid must not be empty",
        );
        assert_has(&errs, "Only one reference can have Controller set to true");
        assert!(!errs
            .iter()
            .any(|e| e.field.starts_with("metadata.ownerReferences[0]")));
        // Upper-case annotation keys are fine (checked case-insensitively).
        assert!(!errs
            .iter()
            .any(|e| e.value.as_deref() == Some("example.com/Note")));
        assert_eq!(errs.len(), 10, "{:#?}", messages(&errs));
    }

    #[test]
    fn annotation_size_limit() {
        let mut big = BTreeMap::new();
        big.insert("a".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT));
        assert_eq!(
            messages(&validate_annotations(Some(&big), "metadata.annotations")),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
        big.insert("a".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT - 1));
        assert_valid(&validate_annotations(Some(&big), "metadata.annotations"));
    }

    #[test]
    fn label_selectors() {
        let sel: LabelSelector = obj(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": []},
                {"key": "env", "operator": "Exists", "values": ["x"]},
                {"key": "zone", "operator": "Near", "values": ["a"]},
                {"key": "bad key", "operator": "NotIn", "values": ["-x"]}
            ]
        }));
        let errs = validate_label_selector(&sel, "spec.selector");
        assert_eq!(
            messages(&errs)[..3],
            [
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator",
            ]
        );
        assert_has(
            &errs,
            "spec.selector.matchExpressions[3].key: Invalid value: \"bad key\"",
        );
        assert_has(
            &errs,
            "spec.selector.matchExpressions[3].values[0]: Invalid value: \"-x\"",
        );
    }

    // --- pods ---------------------------------------------------------------------------

    #[test]
    fn minimal_pod_is_valid() {
        assert_valid(&validate_pod(&pod(simple_spec())));
    }

    #[test]
    fn full_pod_is_valid() {
        let p = pod(json!({
            "restartPolicy": "OnFailure",
            "dnsPolicy": "ClusterFirst",
            "nodeName": "node-1.example",
            "serviceAccountName": "default",
            "hostname": "web-0",
            "subdomain": "web",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "terminationGracePeriodSeconds": 30,
            "activeDeadlineSeconds": 600,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"operator": "Exists"}
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "web-config"}},
                {"name": "scratch"}
            ],
            "initContainers": [
                {"name": "init", "image": "busybox", "command": ["true"]},
                {"name": "sidecar", "image": "envoy", "restartPolicy": "Always",
                 "readinessProbe": {"tcpSocket": {"port": 9901}}}
            ],
            "containers": [{
                "name": "app",
                "image": "nginx",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                          {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"}],
                "env": [{"name": "MODE", "value": "prod"},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                 {"name": "config", "mountPath": "/etc/web", "subPath": "conf.d"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi", "example.com/gpu": "1"},
                              "limits": {"cpu": "1", "memory": "128Mi", "example.com/gpu": "1"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                "startupProbe": {"exec": {"command": ["true"]}, "successThreshold": 1},
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}
            }]
        }));
        assert_valid(&validate_pod(&p));
    }

    #[test]
    fn pod_needs_spec_and_containers() {
        let mut p = pod(simple_spec());
        p.spec = None;
        assert_eq!(messages(&validate_pod(&p)), ["spec: Required value"]);
        let p = pod(json!({"containers": []}));
        assert_eq!(
            messages(&validate_pod(&p)),
            ["spec.containers: Required value"]
        );
    }

    #[test]
    fn container_names_and_images() {
        let p = pod(json!({
            "initContainers": [{"name": "app", "image": "busybox"}],
            "containers": [
                {"name": "app", "image": "nginx"},
                {"name": "Bad_Name", "image": " nginx"},
                {"name": "", "image": ""},
                {"name": "noimage"}
            ]
        }));
        let errs = validate_pod(&p);
        assert_has(&errs, "spec.containers[0].name: Duplicate value: \"app\"");
        assert_has(
            &errs,
            "spec.containers[1].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label",
        );
        assert_has(&errs, "spec.containers[1].image: Invalid value: \" nginx\": must not have leading or trailing whitespace");
        assert_has(&errs, "spec.containers[2].name: Required value");
        assert_has(&errs, "spec.containers[2].image: Required value");
        assert_has(&errs, "spec.containers[3].image: Required value");
        assert_eq!(errs.len(), 6, "{:#?}", messages(&errs));
    }

    #[test]
    fn container_ports() {
        let p = pod(json!({
            "containers": [{
                "name": "app", "image": "nginx",
                "ports": [
                    {"containerPort": 0},
                    {"containerPort": 70000, "protocol": "SCTPX"},
                    {"containerPort": 80, "hostPort": 8080, "name": "http"},
                    {"containerPort": 81, "hostPort": 8080, "name": "http"},
                    {"containerPort": 82, "hostPort": 99999, "name": "Bad--"}
                ]
            }]
        }));
        let errs = validate_pod(&p);
        assert_has(
            &errs,
            "spec.containers[0].ports[0].containerPort: Required value",
        );
        assert_has(&errs, "spec.containers[0].ports[1].containerPort: Invalid value: \"70000\": must be between 1 and 65535, inclusive");
        assert_has(&errs, "spec.containers[0].ports[1].protocol: Unsupported value: \"SCTPX\": supported values: \"SCTP\", \"TCP\", \"UDP\"");
        assert_has(
            &errs,
            "spec.containers[0].ports[3].name: Duplicate value: \"http\"",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[3].hostPort: Duplicate value: \"8080/TCP\"",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[4].hostPort: Invalid value: \"99999\"",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[4].name: Invalid value: \"Bad--\"",
        );

        let host = pod(json!({
            "hostNetwork": true,
            "containers": [{"name": "app", "image": "nginx",
                            "ports": [{"containerPort": 80, "hostPort": 8080}]}]
        }));
        assert_has(
            &validate_pod(&host),
            "must match `containerPort` when `hostNetwork` is true",
        );
    }

    #[test]
    fn env_vars() {
        let p = pod(json!({
            "containers": [{
                "name": "app", "image": "nginx",
                "env": [
                    {"name": ""},
                    {"name": "1BAD"},
                    {"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "B", "valueFrom": {}},
                    {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"},
                                                "secretKeyRef": {"name": "s", "key": "k"}}}
                ]
            }]
        }));
        let errs = validate_pod(&p);
        assert_eq!(
            messages(&errs)[..1],
            ["spec.containers[0].env[0].name: Required value"]
        );
        assert_has(&errs, "spec.containers[0].env[1].name: Invalid value: \"1BAD\": a valid environment variable name");
        assert_has(&errs, "spec.containers[0].env[2].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty");
        assert_has(
            &errs,
            "spec.containers[0].env[3].valueFrom: Invalid value: \"\": must specify one of",
        );
        assert_has(&errs, "spec.containers[0].env[4].valueFrom: Invalid value: \"\": may not have more than one field specified at a time");
        assert_eq!(errs.len(), 5);
    }

    #[test]
    fn volumes_and_mounts() {
        let p = pod(json!({
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "data", "emptyDir": {}},
                {"name": "Bad", "emptyDir": {}, "hostPath": {"path": "/x"}},
                {"name": "", "hostPath": {"path": "/a/../etc"}},
                {"name": "cm", "configMap": {"name": ""}},
                {"name": "sec", "secret": {}}
            ],
            "containers": [{
                "name": "app", "image": "nginx",
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "missing", "mountPath": "/data"},
                    {"name": "", "mountPath": ""},
                    {"name": "data", "mountPath": "/x", "subPath": "/abs"},
                    {"name": "data", "mountPath": "/y", "subPath": "a/../../b"}
                ]
            }]
        }));
        let errs = validate_pod(&p);
        assert_has(&errs, "spec.volumes[1].name: Duplicate value: \"data\"");
        assert_has(&errs, "spec.volumes[2].name: Invalid value: \"Bad\"");
        assert_has(
            &errs,
            "spec.volumes[2]: Forbidden: may not specify more than 1 volume type",
        );
        assert_has(&errs, "spec.volumes[3].name: Required value");
        assert_has(
            &errs,
            "spec.volumes[3].hostPath.path: Invalid value: \"/a/../etc\": must not contain '..'",
        );
        assert_has(&errs, "spec.volumes[4].configMap.name: Required value");
        assert_has(&errs, "spec.volumes[5].secret.secretName: Required value");
        assert_has(
            &errs,
            "spec.containers[0].volumeMounts[1].name: Not found: \"missing\"",
        );
        assert_has(&errs, "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/data\": must be unique");
        assert_has(
            &errs,
            "spec.containers[0].volumeMounts[2].name: Required value",
        );
        assert_has(
            &errs,
            "spec.containers[0].volumeMounts[2].mountPath: Required value",
        );
        assert_has(&errs, "spec.containers[0].volumeMounts[3].subPath: Invalid value: \"/abs\": must be a relative path");
        assert_has(&errs, "spec.containers[0].volumeMounts[4].subPath: Invalid value: \"a/../../b\": must not contain '..'");
    }

    #[test]
    fn resources() {
        let p = pod(json!({
            "containers": [{
                "name": "app", "image": "nginx",
                "resources": {
                    "requests": {"cpu": "2", "memory": "1Gi", "example.com/gpu": "1",
                                 "hugepages-2Mi": "2Mi", "vendor.io/fpga": "1", "storage": "1"},
                    "limits": {"cpu": "1", "memory": "1024Mi", "example.com/gpu": "2",
                               "hugepages-2Mi": "abc", "ephemeral-storage": "-1"}
                }
            }]
        }));
        let errs = validate_pod(&p);
        let r = "spec.containers[0].resources";
        assert_has(
            &errs,
            &format!(
                "{r}.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
            ),
        );
        assert_has(
            &errs,
            &format!(
                "{r}.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2"
            ),
        );
        assert_has(&errs, &format!("{r}.limits[hugepages-2Mi]: Invalid value: \"abc\": quantities must match the regular expression"));
        assert_has(&errs, &format!("{r}.limits[ephemeral-storage]: Invalid value: \"-1\": must be greater than or equal to 0"));
        assert_has(
            &errs,
            &format!(
                "{r}.limits: Required value: Limit must be set for non overcommitable resources"
            ),
        );
        assert_has(&errs, &format!("{r}.requests[storage]: Invalid value: \"storage\": must be a standard resource for containers"));
        // 1Gi == 1024Mi: not an error.
        assert!(!errs.iter().any(|e| e.detail.contains("memory limit")));
        assert_eq!(errs.len(), 6, "{:#?}", messages(&errs));
    }

    #[test]
    fn probes_and_hooks() {
        let p = pod(json!({
            "initContainers": [{"name": "init", "image": "busybox",
                                "livenessProbe": {"exec": {"command": ["true"]}},
                                "restartPolicy": "OnFailure"}],
            "containers": [{
                "name": "app", "image": "nginx", "restartPolicy": "Always",
                "livenessProbe": {"exec": {"command": ["true"]}, "httpGet": {"port": 80}, "successThreshold": 2},
                "readinessProbe": {"periodSeconds": -1},
                "startupProbe": {"httpGet": {"port": 0, "scheme": "FTP"}},
                "lifecycle": {"postStart": {}, "preStop": {"tcpSocket": {"port": "8080"}}}
            }]
        }));
        let errs = validate_pod(&p);
        let c = "spec.containers[0]";
        assert_has(&errs, "spec.initContainers[0].restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"");
        assert_has(&errs, "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always");
        assert_has(
            &errs,
            &format!("{c}.restartPolicy: Forbidden: may not be set for non-init containers"),
        );
        assert_has(
            &errs,
            &format!("{c}.livenessProbe: Forbidden: may not specify more than 1 handler type"),
        );
        assert_has(
            &errs,
            &format!("{c}.livenessProbe.successThreshold: Invalid value: \"2\": must be 1"),
        );
        assert_has(
            &errs,
            &format!("{c}.readinessProbe: Required value: must specify a handler type"),
        );
        assert_has(&errs, &format!("{c}.readinessProbe.periodSeconds: Invalid value: \"-1\": must be greater than or equal to 0"));
        assert_has(
            &errs,
            &format!("{c}.startupProbe.httpGet.port: Invalid value: \"0\""),
        );
        assert_has(
            &errs,
            &format!("{c}.startupProbe.httpGet.scheme: Unsupported value: \"FTP\""),
        );
        assert_has(
            &errs,
            &format!("{c}.lifecycle.postStart: Required value: must specify a handler type"),
        );
        assert_has(&errs, &format!("{c}.lifecycle.preStop.tcpSocket.port: Invalid value: \"8080\": must contain at least one letter (a-z)"));
    }

    #[test]
    fn pod_level_fields() {
        let p = pod(json!({
            "restartPolicy": "Sometimes",
            "dnsPolicy": "None",
            "nodeName": "Node_1",
            "hostname": "a.b",
            "nodeSelector": {"bad key": "v"},
            "terminationGracePeriodSeconds": -5,
            "activeDeadlineSeconds": 0,
            "tolerations": [{"operator": "Equal", "value": "x"},
                            {"key": "k", "operator": "Exists", "value": "v"},
                            {"key": "k", "operator": "Maybe"},
                            {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}],
            "containers": [{"name": "app", "image": "nginx", "imagePullPolicy": "Sometimes"}]
        }));
        let errs = validate_pod(&p);
        assert_has(&errs, "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"");
        assert_has(
            &errs,
            "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        );
        assert_has(&errs, "spec.nodeName: Invalid value: \"Node_1\"");
        assert_has(&errs, "spec.hostname: Invalid value: \"a.b\"");
        assert_has(&errs, "spec.nodeSelector: Invalid value: \"bad key\"");
        assert_has(
            &errs,
            "spec.terminationGracePeriodSeconds: Invalid value: \"-5\"",
        );
        assert_has(&errs, "spec.activeDeadlineSeconds: Invalid value: \"0\": must be between 1 and 2147483647, inclusive");
        assert_has(&errs, "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty");
        assert_has(&errs, "spec.tolerations[1].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'");
        assert_has(
            &errs,
            "spec.tolerations[2].operator: Unsupported value: \"Maybe\"",
        );
        assert_has(&errs, "spec.tolerations[3].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set");
        assert_has(
            &errs,
            "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\"",
        );
        let bad_dns =
            pod(json!({"dnsPolicy": "Google", "containers": [{"name": "a", "image": "b"}]}));
        assert_has(&validate_pod(&bad_dns), "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"");
    }

    // --- services -----------------------------------------------------------------------

    fn service(spec: serde_json::Value) -> Service {
        obj(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec
        }))
    }

    #[test]
    fn valid_services() {
        for spec in [
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}),
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080},
                                                 {"name": "https", "port": 443, "targetPort": "https"}],
                   "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP"}),
            json!({"type": "LoadBalancer", "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}
            ]}),
            json!({"type": "ExternalName", "externalName": "db.example.com."}),
            json!({"clusterIP": "None", "selector": {"app": "db"}}),
            json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 53}]}),
        ] {
            assert_valid(&validate_service(&service(spec)));
        }
    }

    #[test]
    fn invalid_services() {
        let errs = validate_service(&service(json!({"selector": {"app": "web"}})));
        assert_eq!(messages(&errs), ["spec.ports: Required value"]);

        let errs = validate_service(&service(json!({
            "type": "Magic",
            "ports": [{"port": 0, "protocol": "SCTPX"}, {"port": 80, "name": "Web"},
                      {"port": 81, "name": "web", "targetPort": 0}, {"port": 82, "name": "web"}]
        })));
        assert_has(&errs, "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"");
        assert_has(&errs, "spec.ports[0].name: Required value");
        assert_has(&errs, "spec.ports[0].port: Invalid value: \"0\"");
        assert_has(&errs, "spec.ports[0].protocol: Unsupported value: \"SCTPX\": supported values: \"SCTP\", \"TCP\", \"UDP\"");
        assert_has(&errs, "spec.ports[1].name: Invalid value: \"Web\"");
        assert_has(&errs, "spec.ports[2].targetPort: Invalid value: \"0\"");
        assert_has(&errs, "spec.ports[3].name: Duplicate value: \"web\"");

        let errs = validate_service(&service(json!({"type": "ExternalName"})));
        assert_eq!(messages(&errs), ["spec.externalName: Required value"]);
        let errs = validate_service(&service(
            json!({"type": "ExternalName", "externalName": "Not Valid", "clusterIP": "10.0.0.1"}),
        ));
        assert_has(&errs, "spec.externalName: Invalid value: \"Not Valid\"");
        assert_has(
            &errs,
            "spec.clusterIP: Forbidden: may not be set for ExternalName services",
        );

        let errs = validate_service(&service(
            json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}),
        ));
        assert_eq!(
            messages(&errs),
            ["spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services"]
        );
        let errs = validate_service(&service(
            json!({"clusterIP": "10.96.0.300", "ports": [{"port": 80, "nodePort": 30000}],
                                                   "externalTrafficPolicy": "Local"}),
        ));
        assert_has(
            &errs,
            "spec.clusterIP: Invalid value: \"10.96.0.300\": must be a valid IP address",
        );
        assert_has(
            &errs,
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        );
        assert_has(&errs, "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set when `type` is 'NodePort' or 'LoadBalancer'");
        let errs = validate_service(&service(json!({
            "type": "NodePort",
            "ports": [{"name": "a", "port": 80, "nodePort": 30000}, {"name": "b", "port": 80, "nodePort": 30000}],
            "sessionAffinity": "Sticky", "selector": {"app": "-x"}
        })));
        assert_has(&errs, "spec.ports[1]: Duplicate value: \"80/TCP\"");
        assert_has(&errs, "spec.ports[1].nodePort: Duplicate value: \"30000\"");
        assert_has(&errs, "spec.sessionAffinity: Unsupported value: \"Sticky\"");
        assert_has(&errs, "spec.selector: Invalid value: \"-x\"");

        let mut nameless = service(json!({"ports": [{"port": 80}]}));
        nameless.metadata.name = Some("1web".into());
        assert_has(
            &validate_service(&nameless),
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label",
        );
        let mut no_spec = service(json!({}));
        no_spec.spec = None;
        assert_eq!(
            messages(&validate_service(&no_spec)),
            ["spec: Required value"]
        );
    }

    // --- workloads ----------------------------------------------------------------------

    fn template(labels: serde_json::Value, restart: Option<&str>) -> serde_json::Value {
        let mut spec = simple_spec();
        if let Some(r) = restart {
            spec["restartPolicy"] = json!(r);
        }
        json!({"metadata": {"labels": labels}, "spec": spec})
    }

    fn deployment(spec: serde_json::Value) -> Deployment {
        obj(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec
        }))
    }

    #[test]
    fn selector_and_template() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let sel: LabelSelector = obj(json!({"matchLabels": {"app": "web"}}));
        assert_valid(&validate_pod_template_and_selector(
            Some(&sel),
            Some(&labels),
            "spec",
        ));
        assert_eq!(
            messages(&validate_pod_template_and_selector(
                None,
                Some(&labels),
                "spec"
            )),
            ["spec.selector: Required value"]
        );
        let empty = LabelSelector::default();
        assert_eq!(
            messages(&validate_pod_template_and_selector(
                Some(&empty),
                Some(&labels),
                "spec"
            )),
            ["spec.selector: Invalid value: empty selector is invalid"]
        );
        let other: LabelSelector = obj(json!({"matchLabels": {"app": "db"}}));
        assert_eq!(
            messages(&validate_pod_template_and_selector(Some(&other), Some(&labels), "spec")),
            ["spec.template.metadata.labels: Invalid value: \"app=web\": `selector` does not match template `labels`"]
        );
        assert_has(
            &validate_pod_template_and_selector(Some(&other), None, "spec"),
            "spec.template.metadata.labels: Invalid value: \"\": `selector` does not match",
        );
        let expr: LabelSelector =
            obj(json!({"matchExpressions": [{"key": "app", "operator": "In"}]}));
        assert_eq!(
            messages(&validate_pod_template_and_selector(Some(&expr), Some(&labels), "spec")),
            ["spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]
        );
    }

    #[test]
    fn deployments() {
        let good = deployment(json!({
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"app": "web", "tier": "front"}), None),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "progressDeadlineSeconds": 600
        }));
        assert_valid(&validate_deployment(&good));

        let bad = deployment(json!({
            "replicas": -1,
            "minReadySeconds": 10,
            "progressDeadlineSeconds": 5,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"app": "db"}), Some("Never")),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
        }));
        let errs = validate_deployment(&bad);
        assert_has(
            &errs,
            "spec.replicas: Invalid value: \"-1\": must be greater than or equal to 0",
        );
        assert_has(&errs, "spec.progressDeadlineSeconds: Invalid value: \"5\": must be greater than minReadySeconds");
        assert_has(&errs, "spec.template.metadata.labels: Invalid value: \"app=db\": `selector` does not match template `labels`");
        assert_has(&errs, "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"");
        assert_has(&errs, "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0");

        let recreate = deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"app": "web"}), None),
            "strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": "x", "maxUnavailable": "150%"}}
        }));
        assert_eq!(
            messages(&validate_deployment(&recreate)),
            ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
        );
        let rolling = deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"app": "web"}), None),
            "strategy": {"rollingUpdate": {"maxSurge": "x", "maxUnavailable": "150%"}}
        }));
        let errs = validate_deployment(&rolling);
        assert_has(
            &errs,
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x\": a valid percent string",
        );
        assert_has(&errs, "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%");
        let unknown = deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"app": "web"}), None),
            "strategy": {"type": "BlueGreen"}
        }));
        assert_has(
            &validate_deployment(&unknown),
            "spec.strategy.type: Unsupported value: \"BlueGreen\"",
        );
        let no_template_spec = deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}}
        }));
        assert_eq!(
            messages(&validate_deployment(&no_template_spec)),
            ["spec.template.spec: Required value"]
        );
        let deadline = deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"activeDeadlineSeconds": 5, "containers": [{"name": "a", "image": "b"}]}}
        }));
        assert_has(
            &validate_deployment(&deadline),
            "spec.template.spec.activeDeadlineSeconds: Forbidden",
        );
    }

    #[test]
    fn replica_sets_and_controllers() {
        let rs: ReplicaSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": template(json!({"app": "web"}), None)}
        }));
        assert_valid(&validate_replica_set(&rs));
        let rs: ReplicaSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"replicas": -2, "selector": {"matchLabels": {"app": "web"}}}
        }));
        assert_eq!(
            messages(&validate_replica_set(&rs)),
            [
                "spec.replicas: Invalid value: \"-2\": must be greater than or equal to 0",
                "spec.template: Required value"
            ]
        );

        let rc: ReplicationController = obj(json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"app": "web"},
                     "template": template(json!({"app": "web"}), None)}
        }));
        assert_valid(&validate_replication_controller(&rc));
        let rc: ReplicationController = obj(json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": -1, "selector": {"app": "db"},
                     "template": template(json!({"app": "web"}), Some("OnFailure"))}
        }));
        let errs = validate_replication_controller(&rc);
        assert_has(&errs, "spec.replicas: Invalid value: \"-1\"");
        assert_has(&errs, "spec.template.metadata.labels: Invalid value: \"app=web\": `selector` does not match template `labels`");
        assert_has(
            &errs,
            "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\"",
        );
        let rc: ReplicationController = obj(json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {}}
        }));
        assert_eq!(
            messages(&validate_replication_controller(&rc)),
            [
                "spec.selector: Required value",
                "spec.template: Required value"
            ]
        );
    }

    #[test]
    fn daemon_sets_and_stateful_sets() {
        let ds: DaemonSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": template(json!({"app": "agent"}), None),
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}
        }));
        assert_valid(&validate_daemon_set(&ds));
        let ds: DaemonSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {"selector": {},
                     "template": template(json!({"app": "agent"}), None),
                     "updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}
        }));
        let errs = validate_daemon_set(&ds);
        assert_has(
            &errs,
            "spec.selector: Invalid value: empty selector is invalid",
        );
        assert_has(&errs, "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"0\": may not be 0 when `maxSurge` is 0");
        let ds: DaemonSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": template(json!({"app": "agent"}), None),
                     "updateStrategy": {"type": "Sometimes"}}
        }));
        assert_has(
            &validate_daemon_set(&ds),
            "spec.updateStrategy.type: Unsupported value: \"Sometimes\"",
        );

        let sts: StatefulSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": template(json!({"app": "db"}), None),
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}
        }));
        assert_valid(&validate_stateful_set(&sts));
        // Containers may mount the claim templates by name.
        let mounted: StatefulSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                      "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}
        }));
        assert_valid(&validate_stateful_set(&mounted));
        let sts: StatefulSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": -3, "serviceName": "Bad.Name", "podManagementPolicy": "Random",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": template(json!({"app": "db"}), None),
                     "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}},
                     "volumeClaimTemplates": [{"metadata": {}}]}
        }));
        let errs = validate_stateful_set(&sts);
        assert_has(&errs, "spec.replicas: Invalid value: \"-3\"");
        assert_has(&errs, "spec.serviceName: Invalid value: \"Bad.Name\"");
        assert_has(&errs, "spec.podManagementPolicy: Unsupported value: \"Random\": supported values: \"OrderedReady\", \"Parallel\"");
        assert_has(&errs, "spec.updateStrategy.rollingUpdate: Invalid value: only allowed for updateStrategy 'RollingUpdate'");
        assert_has(
            &errs,
            "spec.volumeClaimTemplates[0].metadata.name: Required value",
        );
        let sts: StatefulSet = obj(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "db"}},
                     "template": template(json!({"app": "db"}), None),
                     "updateStrategy": {"rollingUpdate": {"partition": -1}}}
        }));
        assert_has(
            &validate_stateful_set(&sts),
            "spec.updateStrategy.rollingUpdate.partition: Invalid value: \"-1\"",
        );
    }

    #[test]
    fn jobs() {
        let job: Job = obj(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 4,
                     "template": template(json!({}), Some("Never"))}
        }));
        assert_valid(&validate_job(&job));
        // Kubernetes' best-known Job error: restartPolicy left to default to Always.
        let job: Job = obj(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"template": template(json!({}), None)}
        }));
        assert_eq!(
            messages(&validate_job(&job)),
            ["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
        let job: Job = obj(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"completions": -1, "parallelism": -2, "manualSelector": true,
                     "completionMode": "Indexed",
                     "template": template(json!({}), Some("OnFailure"))}
        }));
        let errs = validate_job(&job);
        assert_has(&errs, "spec.completions: Invalid value: \"-1\"");
        assert_has(&errs, "spec.parallelism: Invalid value: \"-2\"");
        assert_has(&errs, "spec.selector: Required value");
        let job: Job = obj(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"job": "pi"}}, "completionMode": "Indexed",
                     "template": template(json!({"job": "other"}), Some("OnFailure"))}
        }));
        let errs = validate_job(&job);
        assert_has(
            &errs,
            "spec.template.metadata.labels: Invalid value: \"job=other\"",
        );
        assert_has(
            &errs,
            "spec.completions: Required value: when completion mode is Indexed",
        );
    }

    fn cron_job(name: &str, spec: serde_json::Value) -> CronJob {
        obj(json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec
        }))
    }

    #[test]
    fn cron_jobs() {
        let job_template = json!({"spec": {"template": template(json!({}), Some("OnFailure"))}});
        let good = cron_job(
            "backup",
            json!({
                "schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": job_template
            }),
        );
        assert_valid(&validate_cron_job(&good));
        let bad = cron_job(
            &"c".repeat(53),
            json!({
                "schedule": "", "concurrencyPolicy": "Sometimes", "successfulJobsHistoryLimit": -1,
                "jobTemplate": {"spec": {"template": template(json!({}), None)}}
            }),
        );
        let errs = validate_cron_job(&bad);
        assert_has(&errs, "metadata.name: Invalid value: \"ccccc");
        assert_has(&errs, "must be no more than 52 characters");
        assert_has(&errs, "spec.schedule: Required value");
        assert_has(&errs, "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"");
        assert_has(
            &errs,
            "spec.successfulJobsHistoryLimit: Invalid value: \"-1\"",
        );
        assert_has(
            &errs,
            "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\"",
        );
        let no_spec = cron_job("c", json!({"schedule": "@daily", "jobTemplate": {}}));
        assert_eq!(
            messages(&validate_cron_job(&no_spec)),
            ["spec.jobTemplate.spec: Required value"]
        );
        let bad_schedule = cron_job(
            "c",
            json!({"schedule": "61 * * * *", "jobTemplate": job_template}),
        );
        assert_eq!(
            messages(&validate_cron_job(&bad_schedule)),
            ["spec.schedule: Invalid value: \"61 * * * *\": minute field \"61\": 61 is out of range 0-59"]
        );
    }

    #[test]
    fn cron_schedules() {
        for ok in [
            "* * * * *",
            "0 0 * * 0",
            "*/15 0-6,18-23 1,15 jan-jun MON-FRI",
            "5 4 ? * sun",
            "@hourly",
            "@every 1h30m",
            "@yearly",
            "0 12 31 12 6",
            "1-59/2 * * * *",
        ] {
            assert_eq!(schedule_problem(ok), None, "{ok}");
        }
        for (bad, needle) in [
            ("* * * *", "expected exactly 5 fields, found 4"),
            ("* * * * * *", "expected exactly 5 fields, found 6"),
            ("@sometimes", "unrecognized descriptor"),
            ("@every", "unrecognized descriptor"),
            ("* 24 * * *", "hour field \"24\": 24 is out of range 0-23"),
            ("* * 0 * *", "day of month field"),
            ("* * * 13 *", "month field"),
            ("* * * * 7", "day of week field"),
            ("*/0 * * * *", "invalid step"),
            ("5-1 * * * *", "range start 5 is above its end 1"),
            ("x * * * *", "failed to parse \"x\" as a number"),
            ("* * * foo *", "failed to parse"),
            ("TZ=UTC * * * * *", "cannot use TZ or CRON_TZ"),
        ] {
            let problem = schedule_problem(bad).unwrap_or_default();
            assert!(problem.contains(needle), "{bad}: {problem}");
        }
    }

    // --- configuration and cluster objects ------------------------------------------------

    #[test]
    fn config_maps() {
        let cm: ConfigMap = obj(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "default"},
            "data": {"nginx.conf": "x", "a_b-c": "y"},
            "binaryData": {"logo.png": "aGVsbG8="}
        }));
        assert_valid(&validate_config_map(&cm));
        let cm: ConfigMap = obj(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "default"},
            "data": {"bad/key": "x", "both": "y", "..": ""},
            "binaryData": {"both": "aGVsbG8="}
        }));
        let errs = validate_config_map(&cm);
        assert_has(
            &errs,
            "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of",
        );
        assert_has(
            &errs,
            "data[both]: Invalid value: \"both\": duplicate of key present in binaryData",
        );
        assert_has(
            &errs,
            "binaryData[both]: Invalid value: \"both\": duplicate of key present in data",
        );
        assert_has(&errs, "data[..]: Invalid value: \"..\": must not be '..'");
        let mut big = ConfigMap {
            metadata: meta(json!({"name": "big", "namespace": "default"})),
            ..ConfigMap::default()
        };
        big.data = Some(
            [("a".to_string(), "x".repeat(MAX_DATA_SIZE + 1))]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            messages(&validate_config_map(&big)),
            ["data: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn secrets() {
        let s: Secret = obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tls", "namespace": "default"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "aGVsbG8="},
            "stringData": {"tls.key": "key"}
        }));
        assert_valid(&validate_secret(&s));
        let s: Secret = obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tls", "namespace": "default"},
            "type": "kubernetes.io/tls",
            "data": {"bad key": "aGVsbG8="},
            "stringData": {"also bad": "x"}
        }));
        let errs = validate_secret(&s);
        assert_has(&errs, "data[bad key]: Invalid value: \"bad key\"");
        assert_has(&errs, "stringData[also bad]: Invalid value: \"also bad\"");
        assert_has(&errs, "data[tls.crt]: Required value");
        assert_has(&errs, "data[tls.key]: Required value");
        let token: Secret = obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "t", "namespace": "default"},
            "type": "kubernetes.io/service-account-token"
        }));
        assert_eq!(
            messages(&validate_secret(&token)),
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        for (type_, key) in [
            ("kubernetes.io/dockercfg", ".dockercfg"),
            ("kubernetes.io/dockerconfigjson", ".dockerconfigjson"),
            ("kubernetes.io/ssh-auth", "ssh-privatekey"),
        ] {
            let s: Secret = obj(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "default"}, "type": type_
            }));
            assert_eq!(
                messages(&validate_secret(&s)),
                [format!("data[{key}]: Required value")]
            );
        }
        let basic: Secret = obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default"},
            "type": "kubernetes.io/basic-auth", "stringData": {"username": "u"}
        }));
        assert_valid(&validate_secret(&basic));
        let opaque: Secret = obj(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default"}, "data": {".env": ""}
        }));
        assert_valid(&validate_secret(&opaque));
    }

    #[test]
    fn namespaces() {
        let ns: Namespace = obj(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a"},
            "spec": {"finalizers": ["kubernetes", "example.com/cleanup"]}
        }));
        assert_valid(&validate_namespace(&ns));
        let ns: Namespace = obj(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team.a", "namespace": "default"},
            "spec": {"finalizers": ["cleanup", "bad finalizer"]}
        }));
        let errs = validate_namespace(&ns);
        assert_has(
            &errs,
            "metadata.name: Invalid value: \"team.a\": a lowercase RFC 1123 label",
        );
        assert_has(
            &errs,
            "metadata.namespace: Forbidden: not allowed on this type",
        );
        assert_has(&errs, "spec.finalizers[0]: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified");
        assert_has(
            &errs,
            "spec.finalizers[1]: Invalid value: \"bad finalizer\"",
        );
        assert_eq!(errs.len(), 4, "{:#?}", messages(&errs));
    }

    #[test]
    fn nodes() {
        let node: Node = obj(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1.example.com", "labels": {"kubernetes.io/hostname": "node-1"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
                     "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}
        }));
        assert_valid(&validate_node(&node));
        let node: Node = obj(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "Node_1"},
            "spec": {"podCIDR": "10.244.1.0/40", "podCIDRs": ["nope"],
                     "taints": [{"key": "", "effect": ""},
                                {"key": "k", "value": "-v", "effect": "Sometimes"},
                                {"key": "a", "effect": "NoExecute"},
                                {"key": "a", "effect": "NoExecute"}]}
        }));
        let errs = validate_node(&node);
        assert_has(&errs, "metadata.name: Invalid value: \"Node_1\"");
        assert_has(
            &errs,
            "spec.podCIDR: Invalid value: \"10.244.1.0/40\": must be a valid CIDR value",
        );
        assert_has(&errs, "spec.podCIDRs[0]: Invalid value: \"nope\"");
        assert_has(&errs, "spec.taints[0].key: Required value");
        assert_has(&errs, "spec.taints[0].effect: Required value");
        assert_has(&errs, "spec.taints[1].value: Invalid value: \"-v\"");
        assert_has(&errs, "spec.taints[1].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"");
        assert_has(&errs, "spec.taints[3].effect: Duplicate value: \"NoExecute\": taints must be unique by key and effect pair");
        let bare: Node =
            obj(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}));
        assert_valid(&validate_node(&bare));
    }

    #[test]
    fn resources_helper_is_public() {
        let r: ResourceRequirements =
            obj(json!({"requests": {"cpu": "1"}, "limits": {"cpu": "500m"}}));
        assert_eq!(
            messages(&validate_resources(&r, "resources")),
            ["resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"]
        );
    }
}
