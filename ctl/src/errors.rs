//! Error messages that read like kubectl's.
//!
//! Errors from the API server print as `Error from server (Reason): message`; everything
//! else prints as `error: message`. Commands that work on many objects print each failure
//! as it happens and finish with [`Reported`], which only sets the exit code.

use std::fmt;

/// A failure answered by the API server (a `metav1.Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "Error from server: {}", self.message)
        } else {
            write!(f, "Error from server ({}): {}", self.reason, self.message)
        }
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    pub fn is_conflict(&self) -> bool {
        self.code == 409 && self.reason == "Conflict"
    }

    /// The same error with kubectl's `error when creating "file": ` style context in front.
    pub fn with_context(mut self, context: &str) -> ServerError {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

/// The reason kube-apiserver gives for an HTTP code, used when a body carried none.
fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

/// A message for a bare HTTP failure, as kubectl phrases them.
fn message_for_code(code: u16) -> &'static str {
    match code {
        401 => "the server has asked for the client to provide credentials",
        403 => "the server does not allow access to the requested resource",
        404 => "the server could not find the requested resource",
        405 => "the server does not allow this method on the requested resource",
        409 => "the server reported a conflict",
        415 => "the server has rejected the request's media type",
        500 => "an error on the server has prevented the request from succeeding",
        503 => "the server is currently unable to handle the request",
        _ => "unknown",
    }
}

/// Turns a kube-rs error into the message a person should see.
pub fn from_kube(err: kube::Error) -> anyhow::Error {
    match err {
        kube::Error::Api(status) => {
            let code = status.code;
            // kube-rs builds a Status itself when the body was not one; its reason then
            // describes kube-rs' parsing, not the server's answer.
            let parsed = status.reason != "Failed to parse error data";
            let reason = if parsed && !status.reason.is_empty() {
                status.reason.clone()
            } else {
                reason_for_code(code).to_string()
            };
            // A bare 404 body ("404 page not found") says less than kubectl's wording.
            let message = if !status.message.is_empty() && (parsed || code != 404) {
                status.message.clone()
            } else {
                message_for_code(code).to_string()
            };
            anyhow::Error::new(ServerError {
                code,
                reason,
                message,
            })
        }
        kube::Error::HyperError(e) => {
            anyhow::anyhow!("unable to connect to the server: {e}")
        }
        kube::Error::Service(e) => {
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            anyhow::anyhow!("unable to connect to the server: {text}")
        }
        other => anyhow::Error::new(other),
    }
}

/// The server error inside an anyhow error, if that is what it is.
pub fn server_error(err: &anyhow::Error) -> Option<&ServerError> {
    err.downcast_ref::<ServerError>()
}

/// True when `err` is a 404 from the server.
pub fn is_not_found(err: &anyhow::Error) -> bool {
    server_error(err).is_some_and(ServerError::is_not_found)
}

/// Marks a command whose failures were already printed; main only sets the exit code.
#[derive(Debug)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("errors were reported")
    }
}

impl std::error::Error for Reported {}

/// A remote command (`exec`) ran and ended with this exit code, already reported; main exits
/// with the same code.
#[derive(Debug)]
pub struct Exit(pub i32);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command terminated with exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// How an error is shown on stderr: server errors as they are, the rest behind `error: `.
pub fn render(err: &anyhow::Error) -> String {
    if let Some(server) = server_error(err) {
        return server.to_string();
    }
    format!("error: {err:#}")
}

/// Collects the failures of a command that goes on after one object fails.
#[derive(Default)]
pub struct Failures {
    count: usize,
}

impl Failures {
    /// Prints the error now, as kubectl does, and remembers that something failed.
    pub fn report(&mut self, err: &anyhow::Error) {
        eprintln!("{}", render(err));
        self.count += 1;
    }

    pub fn finish(self) -> anyhow::Result<()> {
        if self.count > 0 {
            Err(anyhow::Error::new(Reported))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn server_errors_read_like_kubectl() {
        let status = Status::failure("pods \"x\" not found", "NotFound").with_code(404);
        let err = from_kube(kube::Error::Api(status.boxed()));
        assert_eq!(
            render(&err),
            "Error from server (NotFound): pods \"x\" not found"
        );
        assert!(is_not_found(&err));
        let bare =
            Status::failure("404 page not found", "Failed to parse error data").with_code(404);
        let err = from_kube(kube::Error::Api(bare.boxed()));
        assert_eq!(
            render(&err),
            "Error from server (NotFound): the server could not find the requested resource"
        );
        let other = anyhow::anyhow!("the server doesn't have a resource type \"gadgets\"");
        assert_eq!(
            render(&other),
            "error: the server doesn't have a resource type \"gadgets\""
        );
    }
}
