/// Failures of the resolver service.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// The bus could not be set up or used.
    #[error(transparent)]
    Bus(#[from] rebake_bus::BusError),
    /// A Git source could not be read.
    #[error("failed to read branch {branch} of {url}: {reason}")]
    Git {
        /// Repository URL.
        url: String,
        /// Branch.
        branch: String,
        /// Why.
        reason: String,
    },
    /// A registry could not be asked about a tag.
    #[error("failed to resolve {reference}")]
    Registry {
        /// Reference.
        reference: String,
        /// Cause.
        #[source]
        source: rebake_oci::OciError,
    },
}

/// Result with [`ResolverError`].
pub type Result<T, E = ResolverError> = std::result::Result<T, E>;
