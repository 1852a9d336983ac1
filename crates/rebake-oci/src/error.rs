/// Everything that can go wrong in image references, layers, OCI JSON and registry I/O.
///
/// Callers classify with a `match` on the variant (or [`OciError::is_transient`] /
/// [`OciError::is_not_found`]), never on the message text.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A reference, repository, tag or digest string is malformed. Bad input.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The rejected string.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The registry does not know the manifest, blob, tag or repository.
    #[error("{kind} {reference} not found")]
    NotFound {
        /// `manifest`, `blob` or `repository`.
        kind: &'static str,
        /// What was asked for, as `registry/repository@reference`.
        reference: String,
    },
    /// Content does not hash to the digest it was asked for or announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being verified.
        what: String,
        /// The digest that was expected.
        expected: String,
        /// The digest the content actually has.
        actual: String,
    },
    /// The registry answered with an error status (or an error envelope).
    #[error("registry {registry} refused {operation}: {}{message}", status_prefix(*status, code.as_deref()))]
    Registry {
        /// The registry host.
        registry: String,
        /// What was attempted, e.g. `put manifest apps/app:v1`.
        operation: String,
        /// The HTTP status, when known (oci-client error envelopes do not carry it).
        status: Option<u16>,
        /// The distribution error code (`MANIFEST_INVALID`, `DENIED`…), when the body had one.
        code: Option<String>,
        /// The registry's message, or the body text.
        message: String,
    },
    /// The registry could not be reached or the connection broke (DNS, connect, timeout,
    /// reset). Always transient.
    #[error("registry {registry} unavailable during {operation}: {message}")]
    Unavailable {
        /// The registry host.
        registry: String,
        /// What was attempted.
        operation: String,
        /// The transport error, flattened to text.
        message: String,
    },
    /// The registry answered, but not in a way the distribution spec allows (missing
    /// header, unexpected status, unparsable body). Permanent.
    #[error("registry {registry} violated the protocol during {operation}: {message}")]
    Protocol {
        /// The registry host.
        registry: String,
        /// What was attempted.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// An entry given to [`crate::build_layer`] cannot be written (bad path, conflict).
    #[error("invalid layer entry {path:?}: {reason}")]
    InvalidLayerEntry {
        /// The entry path as given.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A tar or gzip stream could not be written or read.
    #[error("{context}")]
    Layer {
        /// What was being done, e.g. `failed to read layer sha256:…`.
        context: String,
        /// The tar/gzip I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// OCI JSON could not be encoded or decoded.
    #[error("{context}")]
    Json {
        /// What was being done, e.g. `failed to decode image manifest`.
        context: String,
        /// The serde failure.
        #[source]
        source: serde_json::Error,
    },
}

fn status_prefix(status: Option<u16>, code: Option<&str>) -> String {
    match (status, code) {
        (Some(status), Some(code)) => format!("{status} {code}: "),
        (Some(status), None) => format!("{status}: "),
        (None, Some(code)) => format!("{code}: "),
        (None, None) => String::new(),
    }
}

impl OciError {
    /// True when retrying later may succeed: connection failures, timeouts, HTTP 5xx and
    /// 429 (or a `TOOMANYREQUESTS` error code).
    pub fn is_transient(&self) -> bool {
        match self {
            OciError::Unavailable { .. } => true,
            OciError::Registry { status, code, .. } => {
                matches!(status, Some(s) if *s >= 500 || *s == 429) || code.as_deref() == Some("TOOMANYREQUESTS")
            }
            _ => false,
        }
    }

    /// True for [`OciError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, OciError::NotFound { .. })
    }

    pub(crate) fn invalid_reference(reference: &str, reason: impl Into<String>) -> Self {
        OciError::InvalidReference {
            reference: reference.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        OciError::Json {
            context: context.into(),
            source,
        }
    }
}

/// Result with [`OciError`].
pub type Result<T, E = OciError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_error(status: Option<u16>, code: Option<&str>) -> OciError {
        OciError::Registry {
            registry: "r".into(),
            operation: "op".into(),
            status,
            code: code.map(str::to_string),
            message: "m".into(),
        }
    }

    #[test]
    fn transient_classification() {
        assert!(registry_error(Some(503), None).is_transient());
        assert!(registry_error(Some(429), None).is_transient());
        assert!(registry_error(None, Some("TOOMANYREQUESTS")).is_transient());
        assert!(!registry_error(Some(400), Some("MANIFEST_INVALID")).is_transient());
        assert!(!registry_error(Some(403), None).is_transient());
        let unavailable = OciError::Unavailable {
            registry: "r".into(),
            operation: "op".into(),
            message: "connection refused".into(),
        };
        assert!(unavailable.is_transient());
    }

    #[test]
    fn registry_message_is_lowercase_and_readable() {
        let error = registry_error(Some(400), Some("MANIFEST_INVALID"));
        assert_eq!(error.to_string(), "registry r refused op: 400 MANIFEST_INVALID: m");
    }
}
