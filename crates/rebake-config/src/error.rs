use std::path::PathBuf;

/// Everything that can be wrong with configuration or the catalog. All of it is bad input:
/// the binary prints the message and exits 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML for its schema (unknown key, wrong type…).
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A key has a value that parses but cannot be used.
    #[error("invalid value for {key}: {reason}")]
    Invalid {
        /// Dotted path of the key, e.g. `ingress.listen`.
        key: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// An environment override could not be applied.
    #[error("invalid environment override {var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// Why.
        reason: String,
    },
    /// A secret could not be read from where the config says it is.
    #[error("failed to read secret {key}: {reason}")]
    Secret {
        /// The config key.
        key: String,
        /// Why (never the secret itself).
        reason: String,
    },
    /// The catalog has a dependency cycle.
    #[error("catalog has a cycle: {cycle}")]
    Cycle {
        /// The images in the cycle, `a -> b -> a`.
        cycle: String,
    },
}

impl ConfigError {
    pub(crate) fn parse(path: &std::path::Path, error: serde_yaml::Error) -> Self {
        let (line, column) = error
            .location()
            .map(|location| (location.line(), location.column()))
            .unwrap_or((0, 0));
        // serde_yaml appends " at line L column C"; the path:line:column prefix says it already.
        let mut message = error.to_string();
        if let Some(position) = message.rfind(" at line ") {
            message.truncate(position);
        }
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result with [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
