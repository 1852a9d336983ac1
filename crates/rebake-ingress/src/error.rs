/// Failures of the ingress service as a whole (not of one webhook: those are answered with
/// an HTTP status and never end the service).
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The HTTP server stopped with an I/O error (the listener failed).
    #[error("failed to serve webhooks")]
    Serve {
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// Something the ingress needs could not be set up at start.
    #[error("failed to set up {what}: {reason}")]
    Setup {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
}

/// Result with [`IngressError`].
pub type Result<T, E = IngressError> = std::result::Result<T, E>;
