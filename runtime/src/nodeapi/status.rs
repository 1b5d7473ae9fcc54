//! Errors as Kubernetes `Status` objects, the body clients such as kube-rs parse.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

use super::LookupError;

/// A failure `Status` with `reason` and `message`.
pub fn failure_status(code: StatusCode, reason: &str, message: String) -> Status {
    Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message),
        reason: Some(reason.to_string()),
        status: Some("Failure".into()),
        ..Status::default()
    }
}

/// An HTTP response carrying a failure `Status` as JSON.
pub fn status_response(code: StatusCode, reason: &str, message: String) -> Response {
    let status = failure_status(code, reason, message);
    let body = serde_json::to_vec(&status).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The response for a failed lookup in the node's view.
pub fn lookup_failure(err: &LookupError) -> Response {
    let (code, reason) = match err {
        LookupError::PodNotFound { .. } | LookupError::ContainerNotFound { .. } => {
            (StatusCode::NOT_FOUND, "NotFound")
        }
        LookupError::NoPreviousInstance { .. } => (StatusCode::BAD_REQUEST, "BadRequest"),
        LookupError::Unavailable { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    };
    status_response(code, reason, err.to_string())
}
