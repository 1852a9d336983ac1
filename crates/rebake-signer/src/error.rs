use rebake_bus::BusError;
use rebake_oci::OciError;

/// Everything that can go wrong while signing and publishing an image.
///
/// [`SignerError::is_transient`] is the one question the worker asks: retry later (the
/// registry or NATS may come back) or record a failure (retrying cannot help).
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The signing key cannot be used. The reason never quotes the key or the password.
    #[error("invalid signing key: {reason}")]
    Key {
        /// What is wrong, in fixed words.
        reason: &'static str,
    },
    /// The key could not sign (the crypto backend failed).
    #[error("failed to sign {what}: {reason}")]
    Sign {
        /// What was being signed.
        what: String,
        /// The backend's message.
        reason: String,
    },
    /// An input (spec, repository, digest, tag, message) is malformed. Bad input.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which input.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A registry operation failed; the source says whether it is worth retrying.
    #[error("failed to {action}")]
    Registry {
        /// What was attempted, e.g. `push signature manifest to 127.0.0.1:5000/apps/app`.
        action: String,
        /// The registry failure (boxed: it is large, and errors are the rare path).
        #[source]
        source: Box<OciError>,
    },
    /// A NATS operation (publish, KV update) failed.
    #[error("failed to {action}")]
    Bus {
        /// What was attempted, e.g. `publish image.published for apps/app`.
        action: String,
        /// The bus failure.
        #[source]
        source: Box<BusError>,
    },
}

impl SignerError {
    /// True when retrying later may succeed: registry unavailable, 5xx or 429, NATS
    /// unavailable or KV contention. Everything else is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            SignerError::Registry { source, .. } => source.is_transient(),
            SignerError::Bus { source, .. } => source.is_transient(),
            SignerError::Key { .. } | SignerError::Sign { .. } | SignerError::Invalid { .. } => false,
        }
    }

    pub(crate) fn registry(action: impl Into<String>) -> impl FnOnce(OciError) -> SignerError {
        let action = action.into();
        move |source| SignerError::Registry {
            action,
            source: Box::new(source),
        }
    }

    pub(crate) fn bus(action: impl Into<String>) -> impl FnOnce(BusError) -> SignerError {
        let action = action.into();
        move |source| SignerError::Bus {
            action,
            source: Box::new(source),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> SignerError {
        SignerError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

pub(crate) use rebake_bus::error_chain;

/// Result with [`SignerError`].
pub type Result<T, E = SignerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let unavailable = OciError::Unavailable {
            registry: "r".into(),
            operation: "op".into(),
            message: "connection refused".into(),
        };
        let error = SignerError::registry("push blob")(unavailable);
        assert!(error.is_transient());
        assert_eq!(
            error_chain(&error),
            "failed to push blob: registry r unavailable during op: connection refused"
        );
        let denied = OciError::Registry {
            registry: "r".into(),
            operation: "op".into(),
            status: Some(403),
            code: Some("DENIED".into()),
            message: "no".into(),
        };
        assert!(!SignerError::registry("push blob")(denied).is_transient());
        assert!(!SignerError::invalid("spec", "bad json").is_transient());
        assert!(!SignerError::Key { reason: "x" }.is_transient());
    }
}
