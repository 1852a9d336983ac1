//! Upstream trust: which base images must carry a cosign signature by which public keys.
//!
//! Two places say it, and both apply:
//!
//! - an image spec's `base_verify: { keys: [...] }` (see [`crate::BaseVerifySpec`]): this
//!   image's base must be signed by one of these keys;
//! - the config's `registries.verify: [{ match: PATTERN, keys: [...] }]` ([`BaseVerifyRule`]):
//!   every base whose repository matches `PATTERN` must be signed by one of the rule's keys.
//!
//! Each requirement that applies must be met on its own (a key named by one rule does not
//! satisfy another rule), so adding a rule never weakens what is checked. The builder checks
//! them before it builds on a base; this module only holds the validated configuration.

use std::{fmt, path::PathBuf};

use crate::{ConfigError, Result};

/// A repository pattern of `registries.verify[].match`, matched against a base's
/// `registry/repository` (no tag, no digest; Docker Hub's official images as
/// `docker.io/library/<name>`).
///
/// `*` matches any run of characters within one path segment (not `/`); `**` matches any
/// run, `/` included. Without wildcards the pattern matches exactly that repository. So
/// `registry.example.com/base/*` matches `registry.example.com/base/debian` but not
/// `registry.example.com/base/team/debian`; `registry.example.com/**` matches every
/// repository of that registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RepositoryPattern {
    text: String,
}

impl fmt::Debug for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryPattern({})", self.text)
    }
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl RepositoryPattern {
    /// Parses a pattern; the reason says what is wrong with it.
    pub fn new(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the pattern is empty".to_string());
        }
        if text.contains('@') {
            return Err(format!("{text:?} has a digest; match repositories (registry/path)"));
        }
        let Some((registry, path)) = text.split_once('/') else {
            return Err(format!(
                "{text:?} is not registry/path (e.g. registry.example.com/base/*)"
            ));
        };
        if registry.is_empty() || path.is_empty() {
            return Err(format!(
                "{text:?} is not registry/path (e.g. registry.example.com/base/*)"
            ));
        }
        if path.contains(':') {
            return Err(format!("{text:?} has a tag; match repositories (registry/path)"));
        }
        if text.contains("***") {
            return Err(format!("{text:?}: use `*` (one path segment) or `**` (any depth)"));
        }
        if text.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(format!("{text:?} contains whitespace"));
        }
        Ok(Self { text: text.to_string() })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `repository` (`registry/path`, no tag or digest) matches.
    pub fn matches(&self, repository: &str) -> bool {
        glob_matches(self.text.as_bytes(), repository.as_bytes())
    }
}

/// Glob match: `**` any run, `*` any run without `/`, everything else literally.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|skip| glob_matches(rest, &text[skip..])),
        [b'*', rest @ ..] => {
            let segment_end = text.iter().position(|b| *b == b'/').unwrap_or(text.len());
            (0..=segment_end).any(|skip| glob_matches(rest, &text[skip..]))
        }
        [first, rest @ ..] => text.first() == Some(first) && glob_matches(rest, &text[1..]),
    }
}

/// One `registries.verify[]` entry: bases whose repository matches `pattern` must be signed
/// (cosign, keyed) by one of `keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseVerifyRule {
    /// Which base repositories the rule covers.
    pub pattern: RepositoryPattern,
    /// Public key files (PEM `PUBLIC KEY`, ECDSA P-256), relative paths resolved against the
    /// config file's directory. At least one.
    pub keys: Vec<PathBuf>,
}

/// The written form of a [`BaseVerifyRule`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBaseVerifyRule {
    #[serde(rename = "match")]
    pattern: String,
    keys: Vec<PathBuf>,
}

/// Validates `registries.verify`.
pub(crate) fn validate_rules(raw: Vec<RawBaseVerifyRule>) -> Result<Vec<BaseVerifyRule>> {
    raw.into_iter()
        .enumerate()
        .map(|(index, rule)| {
            let key = |field: &str| format!("registries.verify[{index}].{field}");
            let pattern =
                RepositoryPattern::new(&rule.pattern).map_err(|reason| ConfigError::invalid(&key("match"), reason))?;
            if rule.keys.is_empty() {
                return Err(ConfigError::invalid(&key("keys"), "list at least one public key file"));
            }
            if rule.keys.iter().any(|path| path.as_os_str().is_empty()) {
                return Err(ConfigError::invalid(&key("keys"), "an empty path"));
            }
            Ok(BaseVerifyRule {
                pattern,
                keys: rule.keys,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> RepositoryPattern {
        RepositoryPattern::new(text).unwrap()
    }

    #[test]
    fn single_star_stays_in_one_segment() {
        let base = pattern("registry.example.com/base/*");
        assert!(base.matches("registry.example.com/base/debian"));
        assert!(!base.matches("registry.example.com/base/team/debian"));
        assert!(!base.matches("registry.example.com/base"));
        assert!(!base.matches("registry.example.com/other/debian"));
        assert!(!base.matches("evil.example.com/base/debian"));
        let prefixed = pattern("registry.example.com/base/deb*");
        assert!(prefixed.matches("registry.example.com/base/debian"));
        assert!(!prefixed.matches("registry.example.com/base/alpine"));
    }

    #[test]
    fn double_star_crosses_segments_and_exact_is_exact() {
        let any = pattern("registry.example.com/**");
        assert!(any.matches("registry.example.com/a"));
        assert!(any.matches("registry.example.com/a/b/c"));
        assert!(!any.matches("registry.example.com.evil/a"));
        let exact = pattern("127.0.0.1:5000/base");
        assert!(exact.matches("127.0.0.1:5000/base"));
        assert!(!exact.matches("127.0.0.1:5000/base2"));
        assert!(pattern("*.example.com/base").matches("mirror.example.com/base"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for (text, expected) in [
            ("", "empty"),
            ("registry.example.com", "registry/path"),
            ("registry.example.com/base:v1", "tag"),
            ("registry.example.com/base@sha256:00", "digest"),
            ("registry.example.com/***", "`**`"),
        ] {
            let error = RepositoryPattern::new(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
