//! The error type of the APK module.

/// Everything that can go wrong while reading, resolving or verifying APK data.
#[derive(Debug, thiserror::Error)]
pub enum ApkError {
    /// A version string that apk-tools would reject.
    #[error("invalid apk version {0:?}")]
    InvalidVersion(String),
    /// A dependency or provides atom that could not be parsed.
    #[error("invalid dependency {0:?}")]
    InvalidDependency(String),
    /// A malformed `APKINDEX` (or `installed`-style) text.
    #[error("apkindex line {line}: {message}")]
    Index {
        /// 1-based line number of the offending line.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A malformed `.PKGINFO`.
    #[error("pkginfo: {0}")]
    PkgInfo(String),
    /// A malformed gzip/tar container (`.apk` or `APKINDEX.tar.gz`).
    #[error("archive: {0}")]
    Archive(String),
    /// No set of packages satisfies the requested world.
    #[error("unresolvable: {chain}")]
    Unresolvable {
        /// The dependency path that failed, e.g. `app -> so:libfoo.so.1 -> no provider`.
        chain: String,
    },
    /// Two selected packages conflict (`!name` dependency).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A signature is missing, malformed, made with an unknown key or does not verify.
    #[error("signature: {0}")]
    Signature(String),
    /// An I/O error while decoding in-memory archives.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for the APK module.
pub type Result<T, E = ApkError> = std::result::Result<T, E>;
