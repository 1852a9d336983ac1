use std::fmt;

use crate::{EventsError, Result};

/// A catalog image name: lowercase `[a-z0-9_-]` segments separated by `/` (e.g. `apps/web`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageName(String);

impl ImageName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let segment_ok = |segment: &str| {
            !segment.is_empty()
                && segment.len() <= 64
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
                && segment.as_bytes()[0].is_ascii_alphanumeric()
        };
        if name.len() > 200 || !name.split('/').all(segment_ok) {
            return Err(EventsError::InvalidImageName { name });
        }
        Ok(Self(name))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as NATS subject tokens (`apps/web` → `apps.web`).
    pub fn subject_tokens(&self) -> String {
        self.0.replace('/', ".")
    }

    /// The name as one KV key (`apps/web` → `apps.web`; KV keys allow dots).
    pub fn kv_key(&self) -> String {
        self.subject_tokens()
    }
}

impl TryFrom<String> for ImageName {
    type Error = EventsError;
    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<ImageName> for String {
    fn from(value: ImageName) -> Self {
        value.0
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content digest, `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Validates `digest`.
    pub fn new(digest: impl Into<String>) -> Result<Self> {
        let digest = digest.into();
        let valid = digest.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !valid {
            return Err(EventsError::InvalidDigest { digest });
        }
        Ok(Self(digest))
    }

    /// The SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))))
    }

    /// The full form, `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The cosign signature tag for this digest, `sha256-<hex>.sig`.
    pub fn signature_tag(&self) -> String {
        format!("sha256-{}.sig", self.hex())
    }
}

impl TryFrom<String> for Digest {
    type Error = EventsError;
    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<Digest> for String {
    fn from(value: Digest) -> Self {
        value.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A build's identity: a UUIDv7 (sortable by time), as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct BuildId(String);

impl BuildId {
    /// A new, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Wraps an id received from elsewhere.
    pub fn from_string(id: String) -> Self {
        Self(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert!(ImageName::new("app").is_ok());
        assert_eq!(ImageName::new("apps/web-1").unwrap().subject_tokens(), "apps.web-1");
        for bad in ["", "App", "a//b", "a.b", "-a", "a/", "a b", "a>"] {
            assert!(ImageName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn digests() {
        let digest = Digest::of(b"hello");
        assert!(Digest::new(digest.as_str()).is_ok());
        assert_eq!(digest.signature_tag(), format!("sha256-{}.sig", digest.hex()));
        assert!(Digest::new("sha256:abc").is_err());
        assert!(Digest::new(format!("sha512:{}", "a".repeat(64))).is_err());
        assert!(Digest::new(format!("sha256:{}", "A".repeat(64))).is_err());
    }
}
