//! The error type of the fetch module.

use std::path::PathBuf;

use crate::apk::ApkError;
use crate::deb::DebError;

/// Everything that can go wrong configuring, fetching, verifying or resolving a feed.
///
/// Every variant names what it is about (feed, URL, file) and why.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The feed configuration is unusable (see [`super::FeedSource::validate`]).
    #[error("feed configuration: {0}")]
    Config(String),
    /// The request could not be sent or the response not read (DNS, connect, TLS, reset).
    #[error("GET {url}: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// The transport error, with its causes.
        reason: String,
    },
    /// The server answered with an unexpected status.
    #[error("GET {url}: HTTP status {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A URL scheme this client does not speak (only `http` and `https`).
    #[error("unsupported URL {url:?}: only http:// and https:// are supported")]
    UnsupportedUrl {
        /// The URL as configured.
        url: String,
    },
    /// A keyring or key file cannot be read or holds no usable key.
    #[error("keyring {path}: {reason}")]
    Keyring {
        /// The file (or `inline Signed-By key`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A signed file's signature is missing, malformed, or made by no trusted key.
    #[error("signature of {url}: {reason}")]
    Signature {
        /// The signed file's URL (`InRelease`, `Release`, `APKINDEX.tar.gz`).
        url: String,
        /// What failed, naming the keyring files tried.
        reason: String,
    },
    /// A Debian `Release`/`Packages` file is malformed or fails its `Release` checksum.
    #[error("{url}: {source}")]
    Debian {
        /// The file's URL.
        url: String,
        /// The parse or verification error.
        #[source]
        source: DebError,
    },
    /// An `APKINDEX.tar.gz` (or `.apk`) is malformed.
    #[error("{url}: {source}")]
    Apk {
        /// The file's URL.
        url: String,
        /// The parse error.
        #[source]
        source: ApkError,
    },
    /// The `Release` file lists no index for a configured component and architecture.
    #[error("{url}: no Packages index for {component}/binary-{architecture} (tried .xz, .gz, plain)")]
    MissingIndex {
        /// The `InRelease`/`Release` URL.
        url: String,
        /// The component (empty for a flat repository).
        component: String,
        /// The Debian architecture.
        architecture: String,
    },
    /// A downloaded file's size or checksum differs from what the verified index states.
    #[error("{url}: {what} mismatch: expected {expected}, got {actual}")]
    Integrity {
        /// The file's URL.
        url: String,
        /// `size`, `sha256` or `q1 checksum`.
        what: &'static str,
        /// The value from the verified index.
        expected: String,
        /// The value of the downloaded bytes.
        actual: String,
    },
    /// The snapshot has no index for the requested architecture.
    #[error("feed {feed}: no packages for architecture {architecture} (feed has: {available})")]
    Architecture {
        /// The feed name.
        feed: String,
        /// The requested architecture.
        architecture: String,
        /// The architectures the snapshot has, comma-separated.
        available: String,
    },
    /// Dependency resolution failed; the message carries the failing chain.
    #[error("feed {feed} ({architecture}): {reason}")]
    Resolve {
        /// The feed name.
        feed: String,
        /// The architecture resolved for.
        architecture: String,
        /// The resolver's error, e.g. `unresolvable: app -> libfoo (>= 2) -> no candidate (have 1.0)`.
        reason: String,
    },
    /// Reading or writing the disk cache failed.
    #[error("cache {path}: {reason}")]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// Reading the machine's apt configuration failed (the `system` feed).
    #[error("apt sources under {root}: {source}")]
    Sources {
        /// The root directory the sources were read from.
        root: PathBuf,
        /// The parse error, naming the file and line.
        #[source]
        source: DebError,
    },
}

/// Result alias for the fetch module.
pub type Result<T, E = FetchError> = std::result::Result<T, E>;

impl FetchError {
    /// Whether trying again later may succeed: transport failures, server errors (5xx,
    /// 429, 408), a missing file (a mirror mid-sync), and cache I/O. A bad signature, a
    /// checksum mismatch or a malformed file stays wrong until upstream changes.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Http { .. } | FetchError::Cache { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || matches!(status, 404 | 408 | 429),
            _ => false,
        }
    }
}
