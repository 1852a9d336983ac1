/// Why a build failed. [`BuilderError::is_transient`] decides between retrying (nak) and
/// recording a failure.
#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    /// The request or its spec cannot be built (bad spec, bad reference).
    #[error("invalid build request: {reason}")]
    InvalidRequest {
        /// Why.
        reason: String,
    },
    /// The base image is not usable.
    #[error("base image {reference}: {reason}")]
    Base {
        /// Base reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The base does not carry the signature its spec (`base_verify`) or the config
    /// (`registries.verify`) requires: nothing is built on it. Permanent for these inputs.
    #[error("base {reference}@{digest} is not trusted: {reason}")]
    UntrustedBase {
        /// Base reference.
        reference: String,
        /// Base digest.
        digest: String,
        /// What failed: no signature, a signature no required key verifies, a payload
        /// naming another digest.
        reason: String,
    },
    /// The base's signature could not be read from its registry.
    #[error("failed to read the signature of base {reference}@{digest}")]
    BaseSignatureCheck {
        /// Base reference.
        reference: String,
        /// Base digest.
        digest: String,
        /// The registry failure; transient when the registry is unavailable or answers 5xx.
        #[source]
        source: Box<rebake_oci::OciError>,
    },
    /// A Git source could not be fetched or read.
    #[error("git source {url} at {commit}: {reason}")]
    Git {
        /// Repository.
        url: String,
        /// Commit.
        commit: String,
        /// Why.
        reason: String,
        /// Whether retrying may help (network) or not (commit missing).
        transient: bool,
    },
    /// A package could not be fetched, verified or unpacked.
    #[error("package {package}: {reason}")]
    Package {
        /// Package (`name version`), or the step (`(assembly)`).
        package: String,
        /// Why.
        reason: String,
        /// Whether retrying may help (download failed) or not (bad package, conflict).
        transient: bool,
    },
    /// Registry I/O failed.
    #[error("registry operation failed")]
    Registry(#[from] rebake_oci::OciError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] rebake_bus::BusError),
}

impl BuilderError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            BuilderError::InvalidRequest { .. } | BuilderError::Base { .. } | BuilderError::UntrustedBase { .. } => {
                false
            }
            BuilderError::BaseSignatureCheck { source, .. } => source.is_transient(),
            BuilderError::Git { transient, .. } | BuilderError::Package { transient, .. } => *transient,
            BuilderError::Registry(error) => error.is_transient(),
            BuilderError::Bus(error) => error.is_transient(),
        }
    }

    /// The message with its causes, for records and events.
    pub fn chain(&self) -> String {
        rebake_bus::error_chain(self)
    }
}

/// Result with [`BuilderError`].
pub type Result<T, E = BuilderError> = std::result::Result<T, E>;
