//! Errors of advisory loading.

use std::path::PathBuf;

/// A failure to load advisories; every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum VulnError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid JSON of the expected shape.
    #[error("cannot parse {}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A zip archive could not be opened or one of its entries read.
    #[error("cannot read zip archive {}: {reason}", path.display())]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What went wrong (including the entry name where there is one).
        reason: String,
    },
    /// An entry of a zip archive is not valid OSV JSON.
    #[error("cannot parse {entry} in {}: {source}", path.display())]
    ZipEntry {
        /// The archive.
        path: PathBuf,
        /// The entry name inside the archive.
        entry: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A file is well-formed JSON but not a usable advisory source.
    #[error("invalid advisory data in {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
}

/// Result with [`VulnError`].
pub type Result<T, E = VulnError> = std::result::Result<T, E>;
