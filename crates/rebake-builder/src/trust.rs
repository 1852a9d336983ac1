//! Upstream verification: a base image must carry the cosign signature its spec
//! (`base_verify.keys`) or the config (`registries.verify`) asks for before anything is
//! built on it.
//!
//! What is checked is exactly what `cosign verify --key K --insecure-ignore-tlog` checks for
//! a keyed signature, and what Rebake's own signer writes: the base's repository holds a
//! manifest tagged `sha256-<hex>.sig` (the base digest's hex); one of its
//! `application/vnd.dev.cosign.simplesigning.v1+json` layers carries, in the
//! `dev.cosignproject.cosign/signature` annotation, a base64 ASN.1 DER ECDSA P-256
//! signature of the layer's blob by one of the keys; and that blob is a simple-signing
//! payload (`critical.type` = `cosign container image signature`) whose
//! `critical.image.docker-manifest-digest` is the base digest. The payload's
//! `docker-reference` is not compared with the base's repository, as cosign does not by
//! default either: signatures travel with mirrored images (`cosign copy`).
//!
//! Every requirement that applies is checked on its own (a key of one rule does not satisfy
//! another). A failed check is permanent for those inputs: the build fails with a reason
//! naming the base, its digest and what failed. Only a registry that is unavailable (or
//! answers 5xx/429) makes the check transient, so the build is retried.

use std::sync::Arc;

use rebake_config::{BaseVerifyRule, ImageSpec, RepositoryPattern};
use rebake_events::Digest;
use rebake_oci::{ImageRef, Registry};
use rebake_signer::{StoredSignature, VerifyingKey, VerifyingKeys};

use crate::{BuilderError, Result};

/// The `critical.type` of a cosign simple-signing payload.
const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

/// The configured `registries.verify` rules, keys loaded. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BaseTrust {
    rules: Vec<Arc<TrustRule>>,
}

/// One `registries.verify` rule with its keys.
#[derive(Debug)]
struct TrustRule {
    pattern: RepositoryPattern,
    keys: VerifyingKeys,
}

impl BaseTrust {
    /// No rule: only specs' `base_verify` is checked.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a `registries.verify` rule: bases matching `pattern` must be signed by one of
    /// `keys`. `keys` must not be empty (a rule nobody can satisfy is a configuration error).
    pub fn with_rule(mut self, pattern: RepositoryPattern, keys: VerifyingKeys) -> Result<Self> {
        if keys.is_empty() {
            return Err(BuilderError::InvalidRequest {
                reason: format!("registries.verify rule {pattern} has no key"),
            });
        }
        self.rules.push(Arc::new(TrustRule { pattern, keys }));
        Ok(self)
    }

    /// Builds the rules of `registries.verify` from the configured rules and each rule's
    /// loaded keys (same order).
    pub fn from_rules(rules: impl IntoIterator<Item = (BaseVerifyRule, VerifyingKeys)>) -> Result<Self> {
        rules
            .into_iter()
            .try_fold(Self::none(), |trust, (rule, keys)| trust.with_rule(rule.pattern, keys))
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// One requirement a base must meet: a signature by one of `keys`.
struct Requirement<'a> {
    /// Where it comes from, for the failure reason.
    origin: String,
    keys: KeysRef<'a>,
}

enum KeysRef<'a> {
    Owned(VerifyingKeys),
    Rule(&'a VerifyingKeys),
}

impl KeysRef<'_> {
    fn get(&self) -> &VerifyingKeys {
        match self {
            KeysRef::Owned(keys) => keys,
            KeysRef::Rule(keys) => keys,
        }
    }
}

/// How a verified base was vouched for: the key id that verified, per requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `base_verify` or `registries.verify <pattern>`.
    pub origin: String,
    /// `sha256:<hex>` id of the key whose signature verified.
    pub key_id: String,
}

/// Checks the base of `spec` (`base_ref` at `base_digest`) against the spec's
/// `base_verify` and every matching `registries.verify` rule. Returns what vouched for it
/// (empty when nothing is required: no registry request is made then).
///
/// Errors: [`BuilderError::UntrustedBase`] (permanent) when a requirement is not met or a
/// spec key cannot be parsed; [`BuilderError::BaseSignatureCheck`] when the registry failed
/// (transient when the registry is unavailable).
pub async fn verify_base(
    registry: &Registry,
    trust: &BaseTrust,
    spec: &ImageSpec,
    base_ref: &str,
    base_digest: &str,
) -> Result<Vec<Verified>> {
    if spec.is_scratch() {
        return Ok(Vec::new());
    }
    let untrusted = |reason: String| BuilderError::UntrustedBase {
        reference: base_ref.to_string(),
        digest: base_digest.to_string(),
        reason,
    };
    let reference = ImageRef::parse(base_ref).map_err(|error| untrusted(error.to_string()))?;
    let repository = reference.repo_string();
    let requirements = requirements(trust, spec, &repository).map_err(untrusted)?;
    if requirements.is_empty() {
        return Ok(Vec::new());
    }
    let digest = Digest::new(base_digest).map_err(|error| untrusted(format!("invalid base digest: {error}")))?;
    let signature_tag = digest.signature_tag();
    let signatures = rebake_signer::stored_signatures(registry, &reference, &signature_tag)
        .await
        .map_err(|source| BuilderError::BaseSignatureCheck {
            reference: base_ref.to_string(),
            digest: base_digest.to_string(),
            source: Box::new(source),
        })?;
    let Some(signatures) = signatures else {
        let origins: Vec<&str> = requirements.iter().map(|r| r.origin.as_str()).collect();
        return Err(untrusted(format!(
            "no signature: {repository}:{signature_tag} does not exist (required by {})",
            origins.join(", ")
        )));
    };
    let mut verified = Vec::new();
    for requirement in &requirements {
        let key_id = check(&signatures, requirement.keys.get(), digest.as_str())
            .map_err(|failure| untrusted(format!("{failure} (required by {})", requirement.origin)))?;
        verified.push(Verified {
            origin: requirement.origin.clone(),
            key_id,
        });
    }
    Ok(verified)
}

/// The requirements that apply to a base in `repository`.
fn requirements<'a>(
    trust: &'a BaseTrust,
    spec: &ImageSpec,
    repository: &str,
) -> std::result::Result<Vec<Requirement<'a>>, String> {
    let mut requirements = Vec::new();
    if let Some(verify) = &spec.base_verify {
        if let Some(file) = verify.key_files().next() {
            return Err(format!(
                "base_verify key {file:?} was not loaded (the catalog loader reads key files into the spec)"
            ));
        }
        let keys = VerifyingKeys::from_pems(verify.key_pems().map(str::as_bytes))
            .map_err(|error| format!("base_verify.keys: {error}"))?;
        if keys.is_empty() {
            return Err("base_verify.keys is empty".to_string());
        }
        requirements.push(Requirement {
            origin: "base_verify".to_string(),
            keys: KeysRef::Owned(keys),
        });
    }
    for rule in trust.rules.iter().filter(|rule| rule.pattern.matches(repository)) {
        requirements.push(Requirement {
            origin: format!("registries.verify {}", rule.pattern),
            keys: KeysRef::Rule(&rule.keys),
        });
    }
    Ok(requirements)
}

/// The id of a key in `keys` that signed a payload naming `digest`, or why there is none.
fn check(signatures: &[StoredSignature], keys: &VerifyingKeys, digest: &str) -> std::result::Result<String, String> {
    let mut named_other = None;
    for stored in signatures {
        let Some(key_id) = keys.verify(&stored.payload, &stored.signature) else {
            continue;
        };
        match payload_digest(&stored.payload) {
            Some(named) if named == digest => return Ok(key_id.to_string()),
            Some(named) => named_other = Some(named),
            None => named_other = Some("no digest (not a cosign simple-signing payload)".to_string()),
        }
    }
    if let Some(named) = named_other {
        return Err(format!(
            "the signature verifies but its payload names {named}, not {digest}"
        ));
    }
    let key_ids: Vec<&str> = keys.keys().iter().map(VerifyingKey::key_id).collect();
    if signatures.is_empty() {
        return Err(format!(
            "no signature: the signature manifest holds no cosign signature (expected a key among {})",
            key_ids.join(", ")
        ));
    }
    Err(format!(
        "signature does not verify with key ids {} ({} signature{} checked)",
        key_ids.join(", "),
        signatures.len(),
        if signatures.len() == 1 { "" } else { "s" }
    ))
}

/// `critical.image.docker-manifest-digest` of a cosign simple-signing payload.
fn payload_digest(payload: &[u8]) -> Option<String> {
    let document: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let critical = document.get("critical")?;
    if critical.get("type")?.as_str()? != COSIGN_SIGNATURE_TYPE {
        return None;
    }
    Some(
        critical
            .get("image")?
            .get("docker-manifest-digest")?
            .as_str()?
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use rebake_signer::{SignerKey, simple_signing_payload};

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    fn key() -> SignerKey {
        SignerKey::generate().unwrap()
    }

    fn keys_of(key: &SignerKey) -> VerifyingKeys {
        VerifyingKeys::from_pems([key.public_key_pem().unwrap().as_bytes()]).unwrap()
    }

    fn signed(key: &SignerKey, digest: &str) -> StoredSignature {
        let payload = simple_signing_payload("mirror.example/base", digest);
        StoredSignature {
            signature: key.sign(&payload).unwrap(),
            payload: bytes::Bytes::from(payload),
        }
    }

    fn spec(yaml: &str) -> ImageSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_signature_by_a_required_key_on_the_digest_passes() {
        let trusted = key();
        let other = key();
        let keys = keys_of(&trusted);
        let signatures = [signed(&other, DIGEST), signed(&trusted, DIGEST)];
        assert_eq!(check(&signatures, &keys, DIGEST).unwrap(), trusted.key_id());
    }

    #[test]
    fn each_failure_says_what_failed() {
        let trusted = key();
        let other = key();
        let keys = keys_of(&trusted);

        let error = check(&[signed(&other, DIGEST)], &keys, DIGEST).unwrap_err();
        assert!(error.starts_with("signature does not verify with key ids"), "{error}");
        assert!(
            error.contains(trusted.key_id()) && error.contains("1 signature checked"),
            "{error}"
        );

        let error = check(&[signed(&trusted, OTHER)], &keys, DIGEST).unwrap_err();
        assert!(
            error.contains(&format!("payload names {OTHER}, not {DIGEST}")),
            "{error}"
        );

        let error = check(&[], &keys, DIGEST).unwrap_err();
        assert!(error.starts_with("no signature"), "{error}");

        // A valid signature over something that is not a simple-signing payload.
        let payload = br#"{"critical":{"type":"something else"}}"#.to_vec();
        let forged = StoredSignature {
            signature: trusted.sign(&payload).unwrap(),
            payload: bytes::Bytes::from(payload),
        };
        let error = check(&[forged], &keys, DIGEST).unwrap_err();
        assert!(error.contains("not a cosign simple-signing payload"), "{error}");
    }

    #[test]
    fn requirements_come_from_the_spec_and_matching_rules() {
        let trusted = key();
        let pem = trusted.public_key_pem().unwrap();
        let trust = BaseTrust::none()
            .with_rule(RepositoryPattern::new("reg.example/base/*").unwrap(), keys_of(&trusted))
            .unwrap()
            .with_rule(RepositoryPattern::new("other.example/**").unwrap(), keys_of(&trusted))
            .unwrap();
        assert!(
            BaseTrust::none()
                .with_rule(
                    RepositoryPattern::new("reg.example/x").unwrap(),
                    VerifyingKeys::default()
                )
                .is_err()
        );

        let plain = spec("name: a\nbase: reg.example/base/debian:12\npublish: {repository: reg.example/apps/a}\n");
        let found = requirements(&trust, &plain, "reg.example/base/debian").unwrap();
        let origins: Vec<&str> = found.iter().map(|r| r.origin.as_str()).collect();
        assert_eq!(origins, ["registries.verify reg.example/base/*"]);
        assert!(requirements(&trust, &plain, "reg.example/apps/x").unwrap().is_empty());

        let indented: String = pem.lines().map(|line| format!("      {line}\n")).collect();
        let with_keys = spec(&format!(
            "name: a\nbase: reg.example/base/debian:12\nbase_verify:\n  keys:\n    - |\n{indented}publish: {{repository: reg.example/apps/a}}\n"
        ));
        let found = requirements(&trust, &with_keys, "reg.example/base/debian").unwrap();
        let origins: Vec<&str> = found.iter().map(|r| r.origin.as_str()).collect();
        assert_eq!(origins, ["base_verify", "registries.verify reg.example/base/*"]);
        assert_eq!(found[0].keys.get().keys()[0].key_id(), trusted.key_id());

        let unloaded = spec(
            "name: a\nbase: reg.example/base/debian:12\nbase_verify: {keys: [keys/base.pub]}\npublish: {repository: reg.example/apps/a}\n",
        );
        let error = requirements(&trust, &unloaded, "reg.example/base/debian")
            .err()
            .unwrap();
        assert!(error.contains("keys/base.pub"), "{error}");
    }

    #[tokio::test]
    async fn nothing_required_means_no_registry_request() {
        // An unreachable registry: any request would fail.
        let registry = Registry::try_new(vec!["127.0.0.1:9".to_string()]).unwrap();
        let plain = spec("name: a\nbase: 127.0.0.1:9/base:v1\npublish: {repository: 127.0.0.1:9/apps/a}\n");
        let verified = verify_base(&registry, &BaseTrust::none(), &plain, "127.0.0.1:9/base:v1", DIGEST)
            .await
            .unwrap();
        assert!(verified.is_empty());
        // With a rule, the same unreachable registry is a transient failure.
        let trust = BaseTrust::none()
            .with_rule(RepositoryPattern::new("127.0.0.1:9/*").unwrap(), keys_of(&key()))
            .unwrap();
        let error = verify_base(&registry, &trust, &plain, "127.0.0.1:9/base:v1", DIGEST)
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{}", error.chain());
        assert!(error.chain().contains("127.0.0.1:9/base:v1"), "{}", error.chain());
    }
}
