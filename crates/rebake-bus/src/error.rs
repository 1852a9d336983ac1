/// Failures talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not connect (or lost the connection).
    #[error("failed to connect to nats at {url}")]
    Connect {
        /// Server URL.
        url: String,
        /// Cause.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A stream, consumer or bucket could not be created or opened.
    #[error("failed to set up {what}: {reason}")]
    Setup {
        /// What was being set up.
        what: String,
        /// Server or client message.
        reason: String,
    },
    /// JetStream did not acknowledge a publish.
    #[error("failed to publish to {subject}: {reason}")]
    Publish {
        /// Subject.
        subject: String,
        /// Cause.
        reason: String,
    },
    /// A KV read or write failed.
    #[error("failed to {op} key {key} in {bucket}: {reason}")]
    Kv {
        /// `get`, `put`, `update`, `keys`.
        op: &'static str,
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Cause.
        reason: String,
    },
    /// A KV value is not the JSON expected.
    #[error("corrupt value for key {key} in {bucket}")]
    Corrupt {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Decode failure.
        #[source]
        source: serde_json::Error,
    },
    /// A compare-and-set kept losing to other writers.
    #[error("gave up updating key {key} in {bucket} after {attempts} conflicting writes")]
    Contention {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Consuming failed (consumer gone, stream deleted…).
    #[error("failed to consume from {stream}: {reason}")]
    Consume {
        /// Stream.
        stream: String,
        /// Cause.
        reason: String,
    },
}

impl BusError {
    /// Whether retrying later may succeed (NATS unavailable, timeouts, contention).
    pub fn is_transient(&self) -> bool {
        !matches!(self, BusError::Corrupt { .. })
    }
}

/// An error and all its sources, `outer: inner: innermost`, for logs, failure reasons and
/// messages to clients (every service reports failures this way).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Result with [`BusError`].
pub type Result<T, E = BusError> = std::result::Result<T, E>;
