/// Failures of the scanner.
#[derive(Debug, thiserror::Error)]
pub enum ScannerError {
    /// The staged image could not be read.
    #[error("failed to read staged image")]
    Registry(#[source] rebake_oci::OciError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] rebake_bus::BusError),
    /// A check could not run (a task failed, a broken policy).
    #[error("{0}")]
    Internal(String),
}

impl ScannerError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            ScannerError::Registry(error) => error.is_transient(),
            ScannerError::Bus(error) => error.is_transient(),
            ScannerError::Internal(_) => false,
        }
    }

    /// The message with its causes, for records and events.
    pub fn chain(&self) -> String {
        rebake_bus::error_chain(self)
    }
}

/// Result with [`ScannerError`].
pub type Result<T, E = ScannerError> = std::result::Result<T, E>;
