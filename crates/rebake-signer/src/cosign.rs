//! Cosign-compatible signatures stored in the registry, next to the image.
//!
//! The layout is exactly what `cosign sign --key` writes (without a transparency log), so
//! `cosign verify --key cosign.pub --insecure-ignore-tlog <image>` accepts it:
//!
//! - payload: the "simple signing" JSON naming the repository and the manifest digest
//!   ([`simple_signing_payload`]);
//! - an OCI image manifest tagged `sha256-<hex>.sig` in the published repository, whose one
//!   layer is the payload (`application/vnd.dev.cosign.simplesigning.v1+json`) with the
//!   base64 DER signature in the `dev.cosignproject.cosign/signature` annotation, and whose
//!   config is a minimal image config listing the payload as its only diff id.
//!
//! One signature per digest: a new signature replaces the tag instead of accumulating.

use base64::Engine as _;
use bytes::Bytes;
use rebake_events::Digest;
use rebake_oci::{Descriptor, ImageManifest, ImageRef, OCI_CONFIG, OCI_MANIFEST, Registry};
use tracing::debug;

use crate::error::{Result, SignerError};
use crate::key::SignerKey;

/// Media type of the simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 (standard alphabet) DER signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The simple-signing payload cosign signs, byte for byte: compact JSON, keys in cosign's
/// order, `optional` null.
///
/// `docker_reference` is the repository without tag (`registry/path`), `digest` the
/// manifest digest (`sha256:…`).
pub fn simple_signing_payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":"cosign container image signature"}},"optional":null}}"#,
        json_string(docker_reference),
        json_string(digest),
    )
    .into_bytes()
}

fn json_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// The config blob of a signature manifest: an empty image whose one diff id is the payload.
fn signature_config(payload_digest: &str) -> Vec<u8> {
    empty_image_config(&[payload_digest])
}

/// The config blob cosign writes for its signature and attestation manifests: an empty
/// image whose diff ids are the layers' digests, with one history entry per layer.
pub(crate) fn empty_image_config(layer_digests: &[&str]) -> Vec<u8> {
    let history = vec![r#"{"created":"0001-01-01T00:00:00Z"}"#; layer_digests.len()].join(",");
    let diff_ids = layer_digests
        .iter()
        .map(|digest| json_string(digest))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        r#"{{"architecture":"","config":{{}},"created":"0001-01-01T00:00:00Z","history":[{history}],"os":"","rootfs":{{"type":"layers","diff_ids":[{diff_ids}]}}}}"#,
    )
    .into_bytes()
}

/// The repository without tag or digest, as `docker-reference` names it.
pub(crate) fn repository_only(repository: &ImageRef) -> ImageRef {
    ImageRef {
        registry: repository.registry.clone(),
        repository: repository.repository.clone(),
        tag: None,
        digest: None,
    }
}

pub(crate) fn parse_digest(digest: &str) -> Result<Digest> {
    Digest::new(digest).map_err(|error| SignerError::invalid("digest", error.to_string()))
}

/// Signs `digest` in `repository` (registry and repository; a tag or digest in it is
/// ignored) with `key` and stores the signature as cosign does: payload blob, config blob,
/// then the manifest under `sha256-<hex>.sig`. Returns that tag.
///
/// The image itself does not need to be in `repository` yet: the signature names the
/// digest, and promotion may follow.
pub async fn sign_and_store(
    registry: &Registry,
    key: &SignerKey,
    repository: &ImageRef,
    digest: &str,
) -> Result<String> {
    let digest = parse_digest(digest)?;
    let target = repository_only(repository);
    let docker_reference = target.repo_string();
    let (host, path) = (target.registry.as_str(), target.repository.as_str());
    let signature_tag = digest.signature_tag();

    let payload = simple_signing_payload(&docker_reference, digest.as_str());
    let signature = key.sign(&payload).map_err(|error| match error {
        SignerError::Sign { reason, .. } => SignerError::Sign {
            what: format!("{docker_reference}@{digest}"),
            reason,
        },
        other => other,
    })?;
    let payload_digest = rebake_oci::sha256_digest(&payload);
    let config = signature_config(&payload_digest);

    let mut layer = Descriptor::new(SIMPLE_SIGNING_MEDIA_TYPE, payload_digest.clone(), payload.len() as i64);
    layer.annotations.insert(
        SIGNATURE_ANNOTATION.to_string(),
        base64::engine::general_purpose::STANDARD.encode(&signature),
    );
    let config_descriptor = Descriptor::new(OCI_CONFIG, rebake_oci::sha256_digest(&config), config.len() as i64);
    let manifest = ImageManifest::new(config_descriptor, vec![layer]);
    let manifest_bytes =
        rebake_oci::to_json_bytes(&manifest).map_err(SignerError::registry("encode the signature manifest"))?;

    // Both blobs are new (the payload names this digest, the config names the payload),
    // so they go up at once without existence checks; the manifest follows them.
    let (payload, config) = (Bytes::from(payload), Bytes::from(config));
    futures::try_join!(
        async {
            registry
                .push_new_blob(host, path, payload)
                .await
                .map_err(SignerError::registry(format!(
                    "push the signature payload to {docker_reference}"
                )))
        },
        async {
            registry
                .push_new_blob(host, path, config)
                .await
                .map_err(SignerError::registry(format!(
                    "push the signature config to {docker_reference}"
                )))
        },
    )?;
    registry
        .put_manifest(host, path, &signature_tag, &manifest_bytes, OCI_MANIFEST)
        .await
        .map_err(SignerError::registry(format!(
            "put the signature manifest {docker_reference}:{signature_tag}"
        )))?;
    debug!(repository = %docker_reference, %digest, %signature_tag, key_id = key.key_id(), "stored signature");
    Ok(signature_tag)
}

/// True when `repository` holds, under the signature tag of `digest`, a simple-signing
/// payload for exactly this repository and digest whose signature verifies with `key`.
///
/// Anything missing or malformed is `Ok(false)` (sign again); only registry failures other
/// than "not found" are errors.
pub async fn stored_signature_is_valid(
    registry: &Registry,
    key: &SignerKey,
    repository: &ImageRef,
    digest: &str,
) -> Result<bool> {
    let digest = parse_digest(digest)?;
    let target = repository_only(repository);
    let docker_reference = target.repo_string();
    let signature_tag = digest.signature_tag();
    let stored = stored_signatures(registry, &target, &signature_tag)
        .await
        .map_err(SignerError::registry(format!(
            "read the signature {docker_reference}:{signature_tag}"
        )))?;
    let expected_payload = simple_signing_payload(&docker_reference, digest.as_str());
    for signature in stored.unwrap_or_default() {
        if payload_names(&signature.payload, &docker_reference, digest.as_str())
            && key.verify(&signature.payload, &signature.signature)
        {
            return Ok(true);
        }
        if signature.payload.as_ref() != expected_payload.as_slice() {
            debug!(repository = %docker_reference, %signature_tag, "stored payload differs from ours");
        }
    }
    Ok(false)
}

/// One simple-signing layer of a signature manifest: the payload blob and its signature.
#[derive(Debug, Clone)]
pub struct StoredSignature {
    /// The simple-signing payload (JSON).
    pub payload: bytes::Bytes,
    /// The ASN.1 DER signature from the layer's annotation.
    pub signature: Vec<u8>,
}

/// Reads the signature manifest `signature_tag` of `reference`'s repository and every
/// simple-signing layer that carries a signature. `None` when the tag does not exist.
pub async fn stored_signatures(
    registry: &Registry,
    reference: &ImageRef,
    signature_tag: &str,
) -> std::result::Result<Option<Vec<StoredSignature>>, rebake_oci::OciError> {
    let (host, path) = (reference.registry.as_str(), reference.repository.as_str());
    let raw = match registry.get_manifest(host, path, signature_tag).await {
        Ok(raw) => raw,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error),
    };
    // Not an image manifest (e.g. an index under the tag): no usable signature in it.
    let Ok(manifest) = raw.to_manifest() else {
        return Ok(Some(Vec::new()));
    };
    let mut signatures = Vec::new();
    for layer in manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
    {
        let Some(signature) = layer
            .annotations
            .get(SIGNATURE_ANNOTATION)
            .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text.trim()).ok())
        else {
            continue;
        };
        let payload = match registry.get_blob(host, path, &layer.digest).await {
            Ok(payload) => payload,
            Err(error) if error.is_not_found() => continue,
            Err(error) => return Err(error),
        };
        signatures.push(StoredSignature { payload, signature });
    }
    Ok(Some(signatures))
}

/// True when `payload` is simple-signing JSON for `docker_reference` and `digest`.
pub(crate) fn payload_names(payload: &[u8], docker_reference: &str, digest: &str) -> bool {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return false;
    };
    let critical = &document["critical"];
    critical["identity"]["docker-reference"] == docker_reference
        && critical["image"]["docker-manifest-digest"] == digest
        && critical["type"] == "cosign container image signature"
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn payload_is_byte_exact() {
        let payload = simple_signing_payload("127.0.0.1:5000/apps/app", DIGEST);
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/apps/app"},"image":{"docker-manifest-digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"type":"cosign container image signature"},"optional":null}"#
        );
        assert!(payload_names(&payload, "127.0.0.1:5000/apps/app", DIGEST));
        assert!(!payload_names(&payload, "127.0.0.1:5000/apps/other", DIGEST));
        assert!(!payload_names(b"nope", "127.0.0.1:5000/apps/app", DIGEST));
    }

    #[test]
    fn payload_escapes_what_it_embeds() {
        let payload = simple_signing_payload("a\"b", DIGEST);
        let document: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(document["critical"]["identity"]["docker-reference"], "a\"b");
    }

    #[test]
    fn attestation_config_lists_every_layer() {
        let other = format!("sha256:{}", "f".repeat(64));
        let config = empty_image_config(&[DIGEST, &other]);
        let value: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(value["rootfs"]["diff_ids"], serde_json::json!([DIGEST, other]));
        assert_eq!(value["history"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn config_is_cosign_shaped() {
        let config = signature_config(DIGEST);
        assert_eq!(
            std::str::from_utf8(&config).unwrap(),
            format!(
                r#"{{"architecture":"","config":{{}},"created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{DIGEST}"]}}}}"#
            )
        );
    }
}
