/// Failures of naming and envelope handling: all of them mean bad input.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The configured prefix cannot be used in subjects and stream names.
    #[error("invalid prefix {prefix:?}: use 1 to 32 characters of [a-z0-9_-], starting with a letter")]
    InvalidPrefix {
        /// The rejected prefix.
        prefix: String,
    },
    /// An image name does not follow the catalog's naming rules.
    #[error("invalid image name {name:?}: use lowercase [a-z0-9_-] segments separated by '/'")]
    InvalidImageName {
        /// The rejected name.
        name: String,
    },
    /// A digest is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {digest:?}: expected sha256:<64 hex>")]
    InvalidDigest {
        /// The rejected digest.
        digest: String,
    },
    /// A message lacks a CloudEvents header or carries an unknown type.
    #[error("invalid cloudevent: {reason}")]
    InvalidEnvelope {
        /// What is wrong with it.
        reason: String,
    },
    /// The body does not decode as the message its type names.
    #[error("failed to decode {kind} body")]
    Decode {
        /// The event type.
        kind: &'static str,
        /// The protobuf decode failure.
        #[source]
        source: prost::DecodeError,
    },
}

/// Result with [`EventsError`].
pub type Result<T, E = EventsError> = std::result::Result<T, E>;
