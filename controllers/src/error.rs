//! What a control loop can fail on.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {what}: {source}")]
    Api {
        verb: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The object itself cannot be acted on as written (a bad selector, a bad schedule);
    /// retrying does not help until someone changes it.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn api(verb: &'static str, what: impl Into<String>, source: kube::Error) -> Error {
        Error::Api {
            verb,
            what: what.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status the API answered with, if this came from the API.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Api {
                source: kube::Error::Api(s),
                ..
            } => Some(s.code),
            _ => None,
        }
    }

    pub fn is_conflict(&self) -> bool {
        self.status_code() == Some(409)
    }

    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
