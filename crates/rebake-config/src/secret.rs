use std::{collections::HashMap, fmt, path::PathBuf};

use crate::{ConfigError, Result};

/// Where a secret comes from. Written in YAML as `{ file: path }`, `{ env: NAME }` or
/// `{ value: "…" }` (inline, for tests and demos only). Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RawSecret")]
pub enum Secret {
    /// Read from a file (trailing newline trimmed).
    File(PathBuf),
    /// Read from an environment variable.
    Env(String),
    /// Given inline.
    Value(String),
}

/// The written form: a map with exactly one of `file`, `env`, `value`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    file: Option<PathBuf>,
    env: Option<String>,
    value: Option<String>,
}

impl TryFrom<RawSecret> for Secret {
    type Error = String;
    fn try_from(raw: RawSecret) -> std::result::Result<Self, String> {
        match (raw.file, raw.env, raw.value) {
            (Some(path), None, None) => Ok(Secret::File(path)),
            (None, Some(name), None) => Ok(Secret::Env(name)),
            (None, None, Some(value)) => Ok(Secret::Value(value)),
            _ => Err("a secret is exactly one of { file: PATH }, { env: NAME }, { value: TEXT }".to_string()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::File(path) => write!(f, "Secret::File({})", path.display()),
            Secret::Env(name) => write!(f, "Secret::Env({name})"),
            Secret::Value(_) => f.write_str("Secret::Value(<redacted>)"),
        }
    }
}

impl Secret {
    /// Reads the secret's bytes. `key` names the config key in errors; `env` is the
    /// environment to look variables up in.
    pub fn read(&self, key: &str, env: &HashMap<String, String>) -> Result<Vec<u8>> {
        match self {
            Secret::File(path) => {
                let mut bytes = std::fs::read(path).map_err(|error| ConfigError::Secret {
                    key: key.to_string(),
                    reason: format!("cannot read {}: {error}", path.display()),
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Ok(bytes)
            }
            Secret::Env(name) => {
                env.get(name)
                    .map(|value| value.as_bytes().to_vec())
                    .ok_or_else(|| ConfigError::Secret {
                        key: key.to_string(),
                        reason: format!("environment variable {name} is not set"),
                    })
            }
            Secret::Value(value) => Ok(value.as_bytes().to_vec()),
        }
    }
}
