//! Image references, digests and media types.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::{OciError, Result};

/// OCI image manifest (`application/vnd.oci.image.manifest.v1+json`).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (`application/vnd.oci.image.index.v1+json`).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config (`application/vnd.oci.image.config.v1+json`).
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip-compressed tar layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI uncompressed tar layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (the Docker flavour of an index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip-compressed tar layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type this crate asks registries for, in `Accept` order.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2];

/// True for the index media types (OCI index, Docker manifest list).
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// `sha256:<lowercase hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `digest` is `sha256:` followed by 64 lowercase hex digits (the only
/// algorithm this crate produces or verifies).
pub fn validate_digest(digest: &str) -> Result<()> {
    let Some(hex_part) = digest.strip_prefix("sha256:") else {
        return Err(OciError::invalid_reference(digest, "digest must start with sha256:"));
    };
    let well_formed = hex_part.len() == 64
        && hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(OciError::invalid_reference(
            digest,
            "digest must be sha256: followed by 64 lowercase hex digits",
        ));
    }
    Ok(())
}

/// Checks a registry host: `host` or `host:port`, host made of `[A-Za-z0-9.-]`
/// (or a bracketed IPv6 literal).
pub fn validate_registry(registry: &str) -> Result<()> {
    let invalid = |reason: &str| Err(OciError::invalid_reference(registry, reason));
    if registry.is_empty() {
        return invalid("registry is empty");
    }
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ipv6, tail)) => {
                if ipv6.is_empty() || !ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return invalid("invalid ipv6 registry host");
                }
                match tail {
                    "" => (ipv6, None),
                    _ => match tail.strip_prefix(':') {
                        Some(port) => (ipv6, Some(port)),
                        None => return invalid("invalid registry port"),
                    },
                }
            }
            None => return invalid("unterminated ipv6 registry host"),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if !registry.starts_with('[') {
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && !host.starts_with(['.', '-'])
            && !host.ends_with(['.', '-']);
        if !host_ok {
            return invalid("registry host must be made of [A-Za-z0-9.-]");
        }
    }
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return invalid("registry port must be a number");
    }
    Ok(())
}

/// Checks a repository path: `/`-separated components of lowercase `[a-z0-9]`, joined
/// inside a component by `.`, `_`, `__` or runs of `-` (the distribution grammar,
/// simplified to "starts and ends with an alphanumeric").
pub fn validate_repository(repository: &str) -> Result<()> {
    if repository.is_empty() {
        return Err(OciError::invalid_reference(repository, "repository is empty"));
    }
    if repository.len() > 255 {
        return Err(OciError::invalid_reference(
            repository,
            "repository is longer than 255 characters",
        ));
    }
    for component in repository.split('/') {
        let chars_ok = component
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-');
        let ends_ok = component
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && component
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !chars_ok || !ends_ok {
            return Err(OciError::invalid_reference(
                repository,
                "repository components must be lowercase [a-z0-9._-], starting and ending with a letter or digit",
            ));
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let first_ok = tag
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if !first_ok || !rest_ok || tag.len() > 128 {
        return Err(OciError::invalid_reference(
            tag,
            "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
        ));
    }
    Ok(())
}

/// Checks a manifest reference as used in `/v2/<name>/manifests/<reference>`: a digest
/// when it contains `:`, a tag otherwise.
pub fn validate_manifest_reference(reference: &str) -> Result<()> {
    if reference.contains(':') {
        validate_digest(reference)
    } else {
        validate_tag(reference)
    }
}

/// A fully qualified image reference: `registry/repository[:tag][@digest]`.
///
/// The registry part is mandatory — Rebake never guesses a default registry — with one
/// normalisation: on `docker.io`, a single-component repository gets the `library/`
/// prefix (`docker.io/alpine` → `docker.io/library/alpine`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host, optionally with `:port` (`127.0.0.1:5000`, `ghcr.io`).
    pub registry: String,
    /// Repository path inside the registry (`apps/app`).
    pub repository: String,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Digest (`sha256:…`), when given; it wins over the tag when talking to a registry.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `registry/repository[:tag][@sha256:…]`.
    ///
    /// The first `/`-separated component is the registry and must look like a host: it
    /// contains `.` or `:`, or is `localhost`. Repository, tag and digest are validated.
    pub fn parse(s: &str) -> Result<Self> {
        let (name_and_tag, digest) = match s.split_once('@') {
            Some((name, digest)) => {
                validate_digest(digest).map_err(|_| OciError::invalid_reference(s, "invalid digest"))?;
                (name, Some(digest.to_string()))
            }
            None => (s, None),
        };
        let Some((registry, rest)) = name_and_tag.split_once('/') else {
            return Err(OciError::invalid_reference(
                s,
                "missing registry (expected registry/repository)",
            ));
        };
        let looks_like_host = registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !looks_like_host {
            return Err(OciError::invalid_reference(
                s,
                "missing registry: the first component must contain '.' or ':' or be localhost",
            ));
        }
        validate_registry(registry).map_err(|e| reason_for(s, e))?;
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repository, tag)) => {
                validate_tag(tag).map_err(|e| reason_for(s, e))?;
                (repository, Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        validate_repository(&repository).map_err(|e| reason_for(s, e))?;
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn repo_string(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to put after `/manifests/`: the digest if set, else the tag, else `latest`.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The same repository pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: impl Into<String>) -> Self {
        ImageRef {
            digest: Some(digest.into()),
            ..self.clone()
        }
    }
}

fn reason_for(whole: &str, inner: OciError) -> OciError {
    match inner {
        OciError::InvalidReference { reason, .. } => OciError::invalid_reference(whole, reason),
        other => other,
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = OciError;

    fn from_str(s: &str) -> Result<Self> {
        ImageRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_registry_repo_tag() {
        let r = ImageRef::parse("127.0.0.1:5000/apps/app:v1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "apps/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest, None);
        assert_eq!(r.repo_string(), "127.0.0.1:5000/apps/app");
        assert_eq!(r.to_string(), "127.0.0.1:5000/apps/app:v1");
        assert_eq!(r.reference(), "v1");
    }

    #[test]
    fn parses_digest_forms() {
        let r = ImageRef::parse(&format!("ghcr.io/org/repo@{DIGEST}")).unwrap();
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "org/repo");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        assert_eq!(r.reference(), DIGEST);

        let s = format!("localhost:5000/repo:1.2.3@{DIGEST}");
        let r = ImageRef::parse(&s).unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.tag.as_deref(), Some("1.2.3"));
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        assert_eq!(r.to_string(), s);
        assert_eq!(r.reference(), DIGEST);
    }

    #[test]
    fn parses_localhost_and_defaults() {
        let r = ImageRef::parse("localhost/app").unwrap();
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.tag, None);
        assert_eq!(r.reference(), "latest");
        let r: ImageRef = "docker.io/alpine:3.20".parse().unwrap();
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.to_string(), "docker.io/library/alpine:3.20");
    }

    #[test]
    fn rejects_bad_references() {
        let bad = [
            "",
            "alpine",
            "alpine:3",
            "library/alpine:3",
            "registry.example.com",
            "registry.example.com/",
            "registry.example.com/Apps/app",
            "registry.example.com/apps//app",
            "registry.example.com/apps/app/",
            "registry.example.com/-app",
            "registry.example.com/app:",
            "registry.example.com/app:-bad",
            "registry.example.com/app:a/b",
            "registry.example.com/app@sha256:abc",
            "registry.example.com/app@md5:0123",
            "registry.example.com/app@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "reg istry.example.com/app",
            "registry.example.com:port/app",
            "registry.example.com/app with space",
        ];
        for s in bad {
            let error = ImageRef::parse(s).expect_err(s);
            assert!(matches!(error, OciError::InvalidReference { .. }), "{s}: {error}");
        }
    }

    #[test]
    fn digest_validation() {
        assert!(validate_digest(DIGEST).is_ok());
        assert!(validate_digest("sha256:").is_err());
        assert!(validate_digest(&DIGEST.replace("sha256", "sha512")).is_err());
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
