//! The one error type of the Debian module.

/// Everything that can go wrong reading Debian feeds, indexes and packages.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// A control file (paragraph text) is malformed.
    #[error("control text line {line}: {reason}")]
    Control {
        /// 1-based line number in the input.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A version string does not follow `[epoch:]upstream[-revision]`.
    #[error("invalid version {version:?}: {reason}")]
    Version {
        /// The offending text.
        version: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A relation field (`Depends`, `Provides`, ...) cannot be parsed.
    #[error("invalid relation {text:?}: {reason}")]
    Relation {
        /// The offending relation text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A required field is absent from a paragraph.
    #[error("{context}: missing field {field}")]
    MissingField {
        /// Which paragraph (package name or file kind).
        context: String,
        /// The field name.
        field: &'static str,
    },
    /// A field has a value that cannot be used.
    #[error("{context}: invalid {field} {value:?}")]
    InvalidField {
        /// Which paragraph (package name or file kind).
        context: String,
        /// The field name.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// The PGP clear-signed wrapper of an `InRelease` file is malformed.
    #[error("inrelease: {0}")]
    Armor(&'static str),
    /// The `Release` file has no `SHA256` entry for the requested index path.
    #[error("release lists no sha256 for {0}")]
    NotInRelease(String),
    /// An index file's size differs from the one the `Release` file states.
    #[error("{path}: size {actual}, release says {expected}")]
    SizeMismatch {
        /// Index path relative to the dists directory.
        path: String,
        /// Size from the `Release` file.
        expected: u64,
        /// Size of the bytes handed in.
        actual: u64,
    },
    /// An index file's sha256 differs from the one the `Release` file states.
    #[error("{path}: sha256 {actual}, release says {expected}")]
    DigestMismatch {
        /// Index path relative to the dists directory.
        path: String,
        /// Hex digest from the `Release` file.
        expected: String,
        /// Hex digest of the bytes handed in.
        actual: String,
    },
    /// Dependency resolution failed; `chain` leads from the requested package to the failure.
    #[error("unresolvable: {chain}")]
    Unresolvable {
        /// E.g. `app -> libfoo (>= 2) -> no candidate (have 1.0)`.
        chain: String,
    },
    /// A `.deb` (ar archive) or one of its tarballs is malformed.
    #[error("deb archive: {0}")]
    Archive(String),
    /// Decompressing a member or index failed.
    #[error("decompress {what}: {reason}")]
    Decompress {
        /// The member or file name.
        what: String,
        /// The decoder's message.
        reason: String,
    },
}

/// Result alias for the Debian module.
pub type Result<T, E = DebError> = std::result::Result<T, E>;
