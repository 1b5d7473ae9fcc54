//! API errors as Kubernetes reports them: a `metav1.Status` with the HTTP code, a reason and a
//! message a person can act on.

use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::validation::FieldError;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

fn details(resource: &ResourceInfo, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": resource.plural });
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden_message(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// `pods "x" is forbidden: why`.
    pub fn forbidden(resource: &ResourceInfo, name: &str, why: impl std::fmt::Display) -> Self {
        ApiError {
            details: Some(details(resource, name)),
            ..Self::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{}\" is forbidden: {}",
                    resource.group_resource(),
                    name,
                    why
                ),
            )
        }
    }

    pub fn not_found(resource: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(resource, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{}\" not found", resource.group_resource(), name),
            )
        }
    }

    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn method_not_allowed(method: &str, what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {what})"
            ),
        )
    }

    pub fn already_exists(resource: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", resource.group_resource(), name),
            )
        }
    }

    pub fn conflict(resource: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource.group_resource(),
                    name
                ),
            )
        }
    }

    pub fn conflict_message(
        resource: &ResourceInfo,
        name: &str,
        why: impl std::fmt::Display,
    ) -> Self {
        ApiError {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {}",
                    resource.group_resource(),
                    name,
                    why
                ),
            )
        }
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 422 with one cause per field error: `Pod "x" is invalid: spec.containers[0].image: Required value`.
    pub fn invalid(resource: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| {
                json!({
                    "reason": field_error_reason(e),
                    "message": e.to_string().split_once(": ").map(|(_, m)| m.to_string()).unwrap_or_else(|| e.to_string()),
                    "field": e.field,
                })
            })
            .collect();
        let mut d = details(resource, name);
        d["kind"] = json!(resource.kind);
        d["causes"] = json!(causes);
        ApiError {
            details: Some(d),
            ..Self::new(
                422,
                "Invalid",
                format!(
                    "{} \"{}\" is invalid: {}",
                    resource.kind,
                    name,
                    skiff_api::validation::summarize(errors)
                ),
            )
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"),
        )
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

fn field_error_reason(e: &FieldError) -> &'static str {
    use skiff_api::validation::FieldErrorKind::*;
    match e.kind {
        Required => "FieldValueRequired",
        Invalid => "FieldValueInvalid",
        Duplicate => "FieldValueDuplicate",
        NotSupported => "FieldValueNotSupported",
        TooLong => "FieldValueTooLong",
        TooMany => "FieldValueTooMany",
        Forbidden => "FieldValueForbidden",
        NotFound => "FieldValueNotFound",
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            other => ApiError::internal(other),
        }
    }
}

/// A success Status (as returned by some deletes).
pub fn success_status(resource: &ResourceInfo, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": name, "group": resource.group, "kind": resource.plural, "uid": uid },
    })
}
