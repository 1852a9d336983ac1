//! Verifying a published image with nothing but the registry and public keys: what
//! `rebake verify` runs, and what anyone can reproduce with `cosign` or `openssl`.
//!
//! [`verify_image`] checks, in order:
//!
//! 1. **image** — the reference resolves (a tag to its digest; a digest must exist);
//! 2. **signature** — the `sha256-<hex>.sig` manifest holds a simple-signing payload naming
//!    the digest, signed by one of the keys (the payload's repository may differ — an image
//!    copied to another registry keeps its signature — and the detail says so);
//! 3. **attestations** — the `sha256-<hex>.att` manifest exists, and for each of its DSSE
//!    layers (one check each): the signature over the DSSE PAE verifies with one of the
//!    keys, the statement is in-toto v1, its predicate type matches the layer's annotation,
//!    and its subject names the image digest;
//! 4. **sbom** — at least one verified SPDX or CycloneDX attestation;
//! 5. **provenance** — a verified SLSA v1 provenance attestation.
//!
//! Every check is reported with a reason, pass or fail; [`Report::passed`] is true only
//! when all pass. Registry failures (unreachable, 5xx) are errors, not failed checks: they
//! say nothing about the image.

use std::collections::BTreeMap;

use rebake_events::Digest;
use rebake_oci::{ImageRef, Registry};
use serde_json::{Value, json};

use crate::attest::{
    CYCLONEDX_PREDICATE_TYPE, SLSA_PROVENANCE_PREDICATE_TYPE, SPDX_PREDICATE_TYPE, attestation_tag, read_attestations,
};
use crate::cosign::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, payload_names, repository_only};
use crate::error::{Result, SignerError};
use crate::verifying::VerifyingKeys;

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked: `image`, `signature`, `attestations`, `attestation <type>`, `sbom`,
    /// `provenance`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why: what was found, or what is wrong.
    pub detail: String,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            passed: true,
            detail: detail.into(),
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            passed: false,
            detail: detail.into(),
        }
    }
}

/// A verified attestation, as the report lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAttestation {
    /// Its predicate type.
    pub predicate_type: String,
    /// The key that signed it.
    pub key_id: String,
    /// The in-toto statement (subject, predicate type, predicate).
    pub statement: Value,
}

/// What [`verify_image`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The reference as given.
    pub reference: String,
    /// `registry/repository`.
    pub repository: String,
    /// The image digest, once resolved.
    pub digest: Option<String>,
    /// Every check, in the order made.
    pub checks: Vec<Check>,
    /// The attestations that verified.
    pub attestations: Vec<VerifiedAttestation>,
}

impl Report {
    /// True when every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|check| check.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.passed)
    }

    /// The report as JSON: reference, repository, digest, `passed`, every check, and the
    /// verified attestations' predicate types, keys and subjects (predicates left out: they
    /// can be large; fetch them with cosign or the registry).
    pub fn to_json(&self) -> Value {
        json!({
            "reference": self.reference,
            "repository": self.repository,
            "digest": self.digest,
            "passed": self.passed(),
            "checks": self.checks.iter().map(|check| json!({
                "name": check.name,
                "passed": check.passed,
                "detail": check.detail,
            })).collect::<Vec<_>>(),
            "attestations": self.attestations.iter().map(|attestation| json!({
                "predicateType": attestation.predicate_type,
                "keyId": attestation.key_id,
                "subject": attestation.statement["subject"],
            })).collect::<Vec<_>>(),
        })
    }
}

/// Verifies `image` (`registry/repository:tag` or `@sha256:…`) against `keys`: see the
/// module docs for the checks. An error only when `keys` is empty or the registry cannot
/// be asked.
pub async fn verify_image(registry: &Registry, image: &ImageRef, keys: &VerifyingKeys) -> Result<Report> {
    if keys.is_empty() {
        return Err(SignerError::invalid("keys", "no public key to verify with"));
    }
    let repository = repository_only(image);
    let mut report = Report {
        reference: image.to_string(),
        repository: repository.repo_string(),
        digest: None,
        checks: Vec::new(),
        attestations: Vec::new(),
    };

    let Some(digest) = resolve(registry, image, &mut report).await? else {
        return Ok(report);
    };
    report.digest = Some(digest.to_string());
    let signature = check_signature(registry, keys, &repository, &digest).await?;
    report.checks.push(signature);
    check_attestations(registry, keys, &repository, &digest, &mut report).await?;
    Ok(report)
}

/// The `image` check: the digest the reference names, if the registry has it.
async fn resolve(registry: &Registry, image: &ImageRef, report: &mut Report) -> Result<Option<Digest>> {
    let resolved = registry
        .resolve(image)
        .await
        .map_err(SignerError::registry(format!("resolve {image}")))?;
    let Some(resolved) = resolved else {
        report
            .checks
            .push(Check::fail("image", format!("{image} is not in the registry")));
        return Ok(None);
    };
    let digest = match Digest::new(resolved.digest.as_str()) {
        Ok(digest) => digest,
        Err(error) => {
            report.checks.push(Check::fail(
                "image",
                format!("the registry answered an unusable digest for {image}: {error}"),
            ));
            return Ok(None);
        }
    };
    let detail = if image.digest.is_some() {
        format!("{digest} exists ({})", resolved.media_type)
    } else {
        format!("tag {} points at {digest} ({})", image.reference(), resolved.media_type)
    };
    report.checks.push(Check::pass("image", detail));
    Ok(Some(digest))
}

/// The `signature` check: a cosign simple-signing signature of the digest by one of `keys`.
async fn check_signature(
    registry: &Registry,
    keys: &VerifyingKeys,
    repository: &ImageRef,
    digest: &Digest,
) -> Result<Check> {
    const NAME: &str = "signature";
    let (host, path) = (repository.registry.as_str(), repository.repository.as_str());
    let docker_reference = repository.repo_string();
    let tag = digest.signature_tag();
    let raw = match registry.get_manifest(host, path, &tag).await {
        Ok(raw) => raw,
        Err(error) if error.is_not_found() => {
            return Ok(Check::fail(
                NAME,
                format!("no {tag} in {docker_reference}: the image is not signed"),
            ));
        }
        Err(error) => {
            return Err(SignerError::registry(format!(
                "get the signature manifest {docker_reference}:{tag}"
            ))(error));
        }
    };
    let Ok(manifest) = raw.to_manifest() else {
        return Ok(Check::fail(NAME, format!("{tag} is not an image manifest")));
    };
    let mut problems = Vec::new();
    for layer in manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
    {
        let signature = layer.annotations.get(SIGNATURE_ANNOTATION).and_then(|text| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        });
        let Some(signature) = signature else {
            problems.push(format!("layer {} has no base64 signature annotation", layer.digest));
            continue;
        };
        let payload = match registry.get_blob(host, path, &layer.digest).await {
            Ok(payload) => payload,
            Err(error) if error.is_transient() => {
                return Err(SignerError::registry(format!(
                    "get the signature payload {docker_reference}@{}",
                    layer.digest
                ))(error));
            }
            Err(error) => {
                problems.push(format!("payload {} cannot be read: {error}", layer.digest));
                continue;
            }
        };
        let Some(key_id) = keys.verify(&payload, &signature) else {
            problems.push("the signature does not verify with the given keys".to_string());
            continue;
        };
        // The digest is what is signed for; the repository may differ when the image was
        // copied to another registry, which the detail says.
        let (named_reference, named_digest) = signed_for(&payload);
        if named_digest != digest.as_str() {
            problems.push(format!(
                "the signed payload names {named_reference}@{named_digest}, not {digest}"
            ));
            continue;
        }
        let detail = if payload_names(&payload, &docker_reference, digest.as_str()) {
            format!("{tag} signed by key {key_id}")
        } else {
            format!("{tag} signed by key {key_id} (for {named_reference}, a copy of this repository)")
        };
        return Ok(Check::pass(NAME, detail));
    }
    if problems.is_empty() {
        problems.push("no simple-signing layer".to_string());
    }
    Ok(Check::fail(NAME, format!("{tag}: {}", problems.join("; "))))
}

/// The repository and digest a simple-signing payload claims (`?` for what it lacks).
fn signed_for(payload: &[u8]) -> (String, String) {
    let document: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let critical = &document["critical"];
    if critical["type"] != "cosign container image signature" {
        return ("?".to_string(), "?".to_string());
    }
    let text = |value: &Value| value.as_str().unwrap_or("?").to_string();
    (
        text(&critical["identity"]["docker-reference"]),
        text(&critical["image"]["docker-manifest-digest"]),
    )
}

/// The `attestations`, per-envelope, `sbom` and `provenance` checks.
async fn check_attestations(
    registry: &Registry,
    keys: &VerifyingKeys,
    repository: &ImageRef,
    digest: &Digest,
    report: &mut Report,
) -> Result<()> {
    let tag = attestation_tag(digest);
    let stored = read_attestations(registry, keys, repository, digest).await?;
    let Some(stored) = stored else {
        report.checks.push(Check::fail(
            "attestations",
            format!("no {tag} in {}: nothing is attested", repository.repo_string()),
        ));
        report.checks.push(Check::fail("sbom", "no attestations, so no SBOM"));
        report
            .checks
            .push(Check::fail("provenance", "no attestations, so no provenance"));
        return Ok(());
    };
    if stored.is_empty() {
        report
            .checks
            .push(Check::fail("attestations", format!("{tag} holds no DSSE envelope")));
    } else {
        report.checks.push(Check::pass(
            "attestations",
            format!("{tag} holds {} DSSE envelope(s)", stored.len()),
        ));
    }
    let mut verified_types: BTreeMap<String, String> = BTreeMap::new();
    for envelope in stored {
        let shown_type = if envelope.annotated_type.is_empty() {
            "(unannotated)".to_string()
        } else {
            envelope.annotated_type.clone()
        };
        match envelope.outcome {
            Ok(statement) => {
                report.checks.push(Check::pass(
                    format!("attestation {}", statement.predicate_type),
                    format!(
                        "signed by key {}, subject {} (this digest)",
                        statement.key_id, statement.subject_name
                    ),
                ));
                verified_types.insert(statement.predicate_type.clone(), statement.key_id.clone());
                report.attestations.push(VerifiedAttestation {
                    predicate_type: statement.predicate_type,
                    key_id: statement.key_id,
                    statement: statement.statement,
                });
            }
            Err(reason) => report.checks.push(Check::fail(
                format!("attestation {shown_type}"),
                format!("envelope {}: {reason}", envelope.blob),
            )),
        }
    }
    let sboms: Vec<&str> = [(SPDX_PREDICATE_TYPE, "SPDX"), (CYCLONEDX_PREDICATE_TYPE, "CycloneDX")]
        .into_iter()
        .filter(|(predicate_type, _)| verified_types.contains_key(*predicate_type))
        .map(|(_, name)| name)
        .collect();
    report.checks.push(if sboms.is_empty() {
        Check::fail(
            "sbom",
            format!("no verified SBOM attestation ({SPDX_PREDICATE_TYPE} or {CYCLONEDX_PREDICATE_TYPE})"),
        )
    } else {
        Check::pass("sbom", sboms.join(" and "))
    });
    let provenance = report
        .attestations
        .iter()
        .find(|attestation| attestation.predicate_type == SLSA_PROVENANCE_PREDICATE_TYPE);
    report.checks.push(match provenance {
        Some(provenance) => {
            let predicate = &provenance.statement["predicate"];
            Check::pass(
                "provenance",
                format!(
                    "SLSA v1 by {}, build {}",
                    predicate["runDetails"]["builder"]["id"].as_str().unwrap_or("?"),
                    predicate["runDetails"]["metadata"]["invocationId"]
                        .as_str()
                        .unwrap_or("?")
                ),
            )
        }
        None => Check::fail(
            "provenance",
            format!("no verified SLSA provenance attestation ({SLSA_PROVENANCE_PREDICATE_TYPE})"),
        ),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_passes_only_when_every_check_does() {
        let mut report = Report {
            reference: "r/a:latest".into(),
            repository: "r/a".into(),
            digest: Some("sha256:00".into()),
            checks: Vec::new(),
            attestations: Vec::new(),
        };
        assert!(!report.passed(), "no checks is not a pass");
        report.checks.push(Check::pass("image", "ok"));
        assert!(report.passed());
        report.checks.push(Check::fail("signature", "missing"));
        assert!(!report.passed());
        assert_eq!(report.failures().count(), 1);
        let json = report.to_json();
        assert_eq!(json["passed"], false);
        assert_eq!(json["checks"][1]["detail"], "missing");
    }

    #[test]
    fn signed_for_reads_what_it_can() {
        let payload = crate::cosign::simple_signing_payload("r/a", "sha256:11");
        assert_eq!(signed_for(&payload), ("r/a".to_string(), "sha256:11".to_string()));
        assert_eq!(signed_for(b"junk"), ("?".to_string(), "?".to_string()));
        assert_eq!(
            signed_for(br#"{"critical":{"type":"other","image":{"docker-manifest-digest":"sha256:11"}}}"#).1,
            "?"
        );
    }

    #[tokio::test]
    async fn no_keys_is_an_error() {
        let registry = Registry::new(vec!["127.0.0.1:1".into()]);
        let image = ImageRef::parse("127.0.0.1:1/a:latest").unwrap();
        let error = verify_image(&registry, &image, &VerifyingKeys::default())
            .await
            .unwrap_err();
        assert!(matches!(error, SignerError::Invalid { .. }), "{error}");
    }
}
