//! Attestations: in-toto v1 statements about a published image, each signed in a DSSE
//! envelope and stored in the registry next to the image.
//!
//! Four predicates are written for every image (see the crate docs for where each comes
//! from): the SPDX 2.3 SBOM ([`SPDX_PREDICATE_TYPE`]), the CycloneDX 1.6 SBOM
//! ([`CYCLONEDX_PREDICATE_TYPE`]), the vulnerability report ([`VULN_PREDICATE_TYPE`]) and
//! SLSA v1 provenance ([`SLSA_PROVENANCE_PREDICATE_TYPE`]). Each statement's subject is
//! `[{name: <published repository>, digest: {sha256: <hex>}}]`.
//!
//! # Layout in the registry
//!
//! Exactly what `cosign attest --key` writes (without a transparency log), so
//! `cosign verify-attestation --key cosign.pub --insecure-ignore-tlog --type slsaprovenance1`
//! accepts it:
//!
//! - an OCI image manifest tagged `sha256-<hex>.att` in the published repository, one layer
//!   per attestation: the envelope JSON (`application/vnd.dsse.envelope.v1+json`), with
//!   annotations `predicateType` = the predicate type and an empty
//!   `dev.cosignproject.cosign/signature` (the signature is inside the envelope); its config
//!   is the same minimal image config as the `.sig` manifest's.
//! - where the registry implements the OCI 1.1 referrers API
//!   (`GET /v2/<repo>/referrers/<digest>` answers 200), additionally one manifest per
//!   attestation with `subject` = the image, `artifactType` =
//!   `application/vnd.dsse.envelope.v1+json`, an empty config, the envelope as its one
//!   layer and the predicate type in the `in-toto.io/predicate-type` annotation. A registry
//!   that answers 404 (distribution 2.8) gets the tag scheme alone.
//!
//! Order makes a crash harmless: envelope blobs, then referrers, then the `.att` tag last.
//! The signer treats a valid `.att` (every expected predicate type present, signed by its
//! key, naming the digest) as "done" and does not write again; anything less is rewritten
//! whole — one `.att` per digest, replaced rather than accumulated.

use std::collections::BTreeSet;

use bytes::Bytes;
use rebake_events::Digest;
use rebake_oci::{Descriptor, ImageManifest, ImageRef, OCI_CONFIG, OCI_MANIFEST, Registry};
use serde_json::{Value, json};
use tracing::debug;

use crate::cosign::{SIGNATURE_ANNOTATION, empty_image_config, parse_digest, repository_only};
use crate::dsse::{DSSE_ENVELOPE_MEDIA_TYPE, Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::error::{Result, SignerError};
use crate::key::SignerKey;
use crate::verifying::VerifyingKeys;

/// `_type` of an in-toto v1 statement.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Predicate type of an SPDX SBOM (the SPDX 2.3 JSON document is the predicate).
pub const SPDX_PREDICATE_TYPE: &str = "https://spdx.dev/Document";
/// Predicate type of a CycloneDX SBOM (the CycloneDX 1.6 JSON BOM is the predicate).
pub const CYCLONEDX_PREDICATE_TYPE: &str = "https://cyclonedx.org/bom";
/// Predicate type of cosign's vulnerability-scan record.
pub const VULN_PREDICATE_TYPE: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
/// Predicate type of SLSA Provenance v1.
pub const SLSA_PROVENANCE_PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// Layer annotation naming an attestation's predicate type (cosign's).
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// Manifest annotation naming a referrer's predicate type.
pub const REFERRER_PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// Media type of the OCI empty descriptor (`{}`), the config of a referrer.
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// One statement to sign: a predicate type and its predicate. The subject is the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Attestation {
    /// The predicate type URI (one of the `*_PREDICATE_TYPE` constants).
    pub predicate_type: String,
    /// The predicate (SBOM document, scan record, provenance).
    pub predicate: Value,
}

/// What [`attest_and_store`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttestations {
    /// The `sha256-<hex>.att` tag.
    pub tag: String,
    /// How many referrer manifests were pushed: one per attestation where the registry
    /// implements the referrers API, else `None`.
    pub referrers: Option<usize>,
}

/// The tag of the attestations of `digest`: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// The in-toto v1 statement of `predicate_type`/`predicate` about `subject_name@digest`,
/// as JSON bytes.
pub fn statement(subject_name: &str, digest: &Digest, predicate_type: &str, predicate: &Value) -> Vec<u8> {
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": digest.hex()}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    // A `Value` always serialises.
    serde_json::to_vec(&statement).expect("a json value serialises")
}

/// Signs each of `attestations` about `image` (the manifest descriptor of the image, by
/// digest) with `key` and stores them in `repository` (registry and repository; a tag or
/// digest in it is ignored): envelope blobs, OCI 1.1 referrers where supported, then the
/// `.att` manifest. Replaces an existing `.att`.
pub async fn attest_and_store(
    registry: &Registry,
    key: &SignerKey,
    repository: &ImageRef,
    image: &Descriptor,
    attestations: &[Attestation],
) -> Result<StoredAttestations> {
    let digest = parse_digest(&image.digest)?;
    if attestations.is_empty() {
        return Err(SignerError::invalid("attestations", "nothing to attest"));
    }
    let target = repository_only(repository);
    let subject_name = target.repo_string();
    let (host, path) = (target.registry.as_str(), target.repository.as_str());
    let tag = attestation_tag(&digest);

    let mut layers = Vec::with_capacity(attestations.len());
    let mut envelopes = Vec::with_capacity(attestations.len());
    for attestation in attestations {
        let payload = statement(
            &subject_name,
            &digest,
            &attestation.predicate_type,
            &attestation.predicate,
        );
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload, key)?.to_json();
        let mut layer = Descriptor::new(
            DSSE_ENVELOPE_MEDIA_TYPE,
            rebake_oci::sha256_digest(&envelope),
            envelope.len() as i64,
        );
        layer.annotations.insert(
            PREDICATE_TYPE_ANNOTATION.to_string(),
            attestation.predicate_type.clone(),
        );
        layer
            .annotations
            .insert(SIGNATURE_ANNOTATION.to_string(), String::new());
        layers.push(layer);
        envelopes.push((attestation.predicate_type.as_str(), Bytes::from(envelope)));
    }
    let layer_digests: Vec<&str> = layers.iter().map(|layer| layer.digest.as_str()).collect();
    let config = Bytes::from(empty_image_config(&layer_digests));
    let config_descriptor = Descriptor::new(OCI_CONFIG, rebake_oci::sha256_digest(&config), config.len() as i64);

    // Every envelope, the config and the referrers probe at once: the envelopes are signed
    // just now (new content, no existence checks), and none depends on another.
    let subject = subject_name.as_str();
    let uploads = envelopes.into_iter().map(|(predicate_type, envelope)| async move {
        registry
            .push_new_blob(host, path, envelope)
            .await
            .map(drop)
            .map_err(SignerError::registry(format!(
                "push the {predicate_type} attestation to {subject}"
            )))
    });
    let (_, _, supported) = futures::try_join!(
        futures::future::try_join_all(uploads),
        async {
            registry
                .push_new_blob(host, path, config)
                .await
                .map_err(SignerError::registry(format!(
                    "push the attestation config to {subject_name}"
                )))
        },
        async {
            registry
                .referrers(host, path, digest.as_str())
                .await
                .map(|answer| answer.is_some())
                .map_err(SignerError::registry(format!(
                    "check {subject_name} for the referrers api"
                )))
        },
    )?;
    let referrers = if supported {
        push_referrers(registry, (host, path), image, &layers).await?;
        Some(layers.len())
    } else {
        debug!(repository = %subject_name, "registry has no referrers api; attestations stored under the .att tag only");
        None
    };

    let manifest = ImageManifest::new(config_descriptor, layers);
    let manifest_bytes =
        rebake_oci::to_json_bytes(&manifest).map_err(SignerError::registry("encode the attestation manifest"))?;
    registry
        .put_manifest(host, path, &tag, &manifest_bytes, OCI_MANIFEST)
        .await
        .map_err(SignerError::registry(format!(
            "put the attestation manifest {subject_name}:{tag}"
        )))?;
    debug!(repository = %subject_name, %digest, %tag, count = attestations.len(), ?referrers, key_id = key.key_id(), "stored attestations");
    Ok(StoredAttestations { tag, referrers })
}

/// The referrer manifest of one stored envelope (`layer`) about `image`.
fn referrer_manifest(image: &Descriptor, layer: &Descriptor) -> ImageManifest {
    let mut config = Descriptor::new(OCI_EMPTY, rebake_oci::sha256_digest(b"{}"), 2);
    config.extra.insert("data".to_string(), Value::from("e30="));
    let mut envelope = layer.clone();
    envelope.annotations.remove(SIGNATURE_ANNOTATION);
    let mut manifest = ImageManifest::new(config, vec![envelope]);
    manifest
        .extra
        .insert("artifactType".to_string(), Value::from(DSSE_ENVELOPE_MEDIA_TYPE));
    let subject = Descriptor::new(image.media_type.clone(), image.digest.clone(), image.size);
    manifest.extra.insert(
        "subject".to_string(),
        serde_json::to_value(subject).expect("a descriptor serialises"),
    );
    if let Some(predicate_type) = layer.annotations.get(PREDICATE_TYPE_ANNOTATION) {
        manifest
            .annotations
            .insert(REFERRER_PREDICATE_TYPE_ANNOTATION.to_string(), predicate_type.clone());
    }
    manifest
}

async fn push_referrers(
    registry: &Registry,
    (host, path): (&str, &str),
    image: &Descriptor,
    layers: &[Descriptor],
) -> Result<()> {
    let shown = format!("{host}/{path}");
    registry
        .push_blob(host, path, Bytes::from_static(b"{}"))
        .await
        .map_err(SignerError::registry(format!("push the empty config to {shown}")))?;
    let puts = layers.iter().map(|layer| {
        let shown = &shown;
        async move {
            let manifest = referrer_manifest(image, layer);
            let bytes =
                rebake_oci::to_json_bytes(&manifest).map_err(SignerError::registry("encode a referrer manifest"))?;
            let digest = rebake_oci::sha256_digest(&bytes);
            registry
                .put_manifest(host, path, &digest, &bytes, OCI_MANIFEST)
                .await
                .map_err(SignerError::registry(format!(
                    "put the referrer manifest {shown}@{digest}"
                )))
        }
    });
    futures::future::try_join_all(puts).await?;
    Ok(())
}

/// A verified envelope: what it says and who signed it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VerifiedStatement {
    /// The statement's `predicateType`.
    pub predicate_type: String,
    /// The id of the key whose signature verified.
    pub key_id: String,
    /// The subject entry naming the image (its `name`, or empty).
    pub subject_name: String,
    /// The whole statement.
    pub statement: Value,
}

/// Checks one stored envelope against `keys` and the image `digest`, in the order a
/// verifier must: envelope form and payload type, the signature over the PAE (before the
/// payload is trusted at all), the statement type, the subject digest, and the predicate
/// type against the layer's annotation (when there is one). The error is one sentence
/// naming what failed.
pub(crate) fn check_envelope(
    bytes: &[u8],
    keys: &VerifyingKeys,
    digest: &Digest,
    annotated_type: Option<&str>,
) -> std::result::Result<VerifiedStatement, String> {
    let envelope = Envelope::from_json(bytes)?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "payload type is {:?}, not {IN_TOTO_PAYLOAD_TYPE}",
            envelope.payload_type
        ));
    }
    let Some(key_id) = envelope.verify(keys) else {
        let claimed: Vec<&str> = envelope
            .signatures
            .iter()
            .map(|signature| signature.keyid.as_str())
            .filter(|keyid| !keyid.is_empty())
            .collect();
        let claimed = if claimed.is_empty() {
            String::new()
        } else {
            format!(" (envelope names key {})", claimed.join(", "))
        };
        return Err(format!(
            "no signature verifies over the DSSE PAE with the given keys{claimed}: the envelope was altered or signed by another key"
        ));
    };
    let statement: Value = serde_json::from_slice(&envelope.payload)
        .map_err(|error| format!("signed payload is not a json statement: {error}"))?;
    if statement["_type"] != STATEMENT_TYPE {
        return Err(format!(
            "statement _type is {}, not {STATEMENT_TYPE}",
            statement["_type"]
        ));
    }
    let predicate_type = statement["predicateType"]
        .as_str()
        .ok_or("statement has no predicateType")?
        .to_string();
    if let Some(annotated) = annotated_type.filter(|annotated| *annotated != predicate_type) {
        return Err(format!(
            "layer is annotated {annotated} but the signed statement is {predicate_type}"
        ));
    }
    let subjects = statement["subject"]
        .as_array()
        .ok_or("statement has no subject array")?;
    let matching = subjects
        .iter()
        .find(|subject| subject["digest"]["sha256"].as_str() == Some(digest.hex()));
    let Some(subject) = matching else {
        let named: Vec<String> = subjects
            .iter()
            .map(|subject| {
                let name = subject["name"].as_str().unwrap_or("");
                match subject["digest"]["sha256"].as_str() {
                    Some(hex) if name.is_empty() => format!("sha256:{hex}"),
                    Some(hex) => format!("{name}@sha256:{hex}"),
                    None => format!("{name} (no sha256 digest)"),
                }
            })
            .collect();
        return Err(format!(
            "subject names {}, not this image's {digest}",
            if named.is_empty() {
                "nothing".to_string()
            } else {
                named.join(", ")
            }
        ));
    };
    Ok(VerifiedStatement {
        predicate_type,
        key_id,
        subject_name: subject["name"].as_str().unwrap_or("").to_string(),
        statement,
    })
}

/// One layer of a stored `.att` and what checking it gave.
pub(crate) struct StoredEnvelope {
    /// The layer's predicate-type annotation ("" when missing).
    pub annotated_type: String,
    /// The layer's blob digest.
    pub blob: String,
    /// The verified statement, or why it is not trusted.
    pub outcome: std::result::Result<VerifiedStatement, String>,
}

/// Reads the `.att` of `digest` in `repository` and checks every DSSE layer with
/// [`check_envelope`]. `Ok(None)` when there is no `.att` tag; `Err` only for registry
/// failures other than "not found" (a missing blob is that layer's failure).
pub(crate) async fn read_attestations(
    registry: &Registry,
    keys: &VerifyingKeys,
    repository: &ImageRef,
    digest: &Digest,
) -> Result<Option<Vec<StoredEnvelope>>> {
    let target = repository_only(repository);
    let shown = target.repo_string();
    let (host, path) = (target.registry.as_str(), target.repository.as_str());
    let tag = attestation_tag(digest);
    let raw = match registry.get_manifest(host, path, &tag).await {
        Ok(raw) => raw,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => {
            return Err(SignerError::registry(format!(
                "get the attestation manifest {shown}:{tag}"
            ))(error));
        }
    };
    let manifest = match raw.to_manifest() {
        Ok(manifest) => manifest,
        Err(error) => {
            return Ok(Some(vec![StoredEnvelope {
                annotated_type: String::new(),
                blob: raw.digest.clone(),
                outcome: Err(format!("{tag} is not an image manifest: {error}")),
            }]));
        }
    };
    let mut stored = Vec::new();
    for layer in manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == DSSE_ENVELOPE_MEDIA_TYPE)
    {
        let annotated_type = layer
            .annotations
            .get(PREDICATE_TYPE_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let outcome = match registry.get_blob(host, path, &layer.digest).await {
            Ok(bytes) => check_envelope(
                &bytes,
                keys,
                digest,
                Some(annotated_type.as_str()).filter(|annotated| !annotated.is_empty()),
            ),
            Err(error) if error.is_not_found() => Err(format!("envelope blob {} is missing", layer.digest)),
            Err(error) if error.is_transient() => {
                return Err(SignerError::registry(format!(
                    "get the attestation {shown}@{}",
                    layer.digest
                ))(error));
            }
            Err(error) => Err(format!("envelope blob {} cannot be read: {error}", layer.digest)),
        };
        stored.push(StoredEnvelope {
            annotated_type,
            blob: layer.digest.clone(),
            outcome,
        });
    }
    Ok(Some(stored))
}

/// True when `repository` holds, under the `.att` tag of `digest`, a verified attestation
/// of every type in `predicate_types` (signed by one of `keys`, naming `digest`). Anything
/// missing or not verifying is `Ok(false)` (attest again).
pub async fn stored_attestations_are_valid(
    registry: &Registry,
    keys: &VerifyingKeys,
    repository: &ImageRef,
    digest: &str,
    predicate_types: &[&str],
) -> Result<bool> {
    let digest = parse_digest(digest)?;
    let Some(stored) = read_attestations(registry, keys, repository, &digest).await? else {
        return Ok(false);
    };
    let verified: BTreeSet<&str> = stored
        .iter()
        .filter_map(|envelope| envelope.outcome.as_ref().ok())
        .map(|statement| statement.predicate_type.as_str())
        .collect();
    Ok(predicate_types
        .iter()
        .all(|predicate_type| verified.contains(predicate_type)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn key() -> SignerKey {
        SignerKey::generate().unwrap()
    }

    fn keys_of(key: &SignerKey) -> VerifyingKeys {
        VerifyingKeys::from_pems([key.public_key_pem().unwrap().as_bytes()]).unwrap()
    }

    fn digest() -> Digest {
        Digest::new(format!("sha256:{HEX}")).unwrap()
    }

    fn envelope(key: &SignerKey, payload: Vec<u8>) -> Vec<u8> {
        Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload, key).unwrap().to_json()
    }

    #[test]
    fn statement_shape() {
        let bytes = statement(
            "r/apps/app",
            &digest(),
            SPDX_PREDICATE_TYPE,
            &json!({"spdxVersion": "SPDX-2.3"}),
        );
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["_type"], STATEMENT_TYPE);
        assert_eq!(
            value["subject"],
            json!([{"name": "r/apps/app", "digest": {"sha256": HEX}}])
        );
        assert_eq!(value["predicateType"], SPDX_PREDICATE_TYPE);
        assert_eq!(value["predicate"]["spdxVersion"], "SPDX-2.3");
        assert_eq!(attestation_tag(&digest()), format!("sha256-{HEX}.att"));
    }

    #[test]
    fn envelopes_are_checked_in_order() {
        let signer = key();
        let keys = keys_of(&signer);
        let good = statement("r/a", &digest(), SLSA_PROVENANCE_PREDICATE_TYPE, &json!({}));
        let verified = check_envelope(
            &envelope(&signer, good.clone()),
            &keys,
            &digest(),
            Some(SLSA_PROVENANCE_PREDICATE_TYPE),
        )
        .unwrap();
        assert_eq!(verified.predicate_type, SLSA_PROVENANCE_PREDICATE_TYPE);
        assert_eq!(verified.key_id, signer.key_id());
        assert_eq!(verified.subject_name, "r/a");

        // Another key.
        let error = check_envelope(&envelope(&key(), good.clone()), &keys, &digest(), None).unwrap_err();
        assert!(error.contains("no signature verifies"), "{error}");

        // One byte of the payload changed after signing.
        let mut tampered = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, good.clone(), &signer).unwrap();
        tampered.payload[10] ^= 0x01;
        let error = check_envelope(&tampered.to_json(), &keys, &digest(), None).unwrap_err();
        assert!(error.contains("altered"), "{error}");

        // Validly signed, but about another image.
        let other = Digest::new(format!("sha256:{}", "f".repeat(64))).unwrap();
        let elsewhere = statement("r/b", &other, SLSA_PROVENANCE_PREDICATE_TYPE, &json!({}));
        let error = check_envelope(&envelope(&signer, elsewhere), &keys, &digest(), None).unwrap_err();
        assert!(
            error.contains(&format!("subject names r/b@{other}, not this image's")),
            "{error}"
        );

        // The annotation must not disagree with what was signed.
        let error = check_envelope(&envelope(&signer, good), &keys, &digest(), Some(SPDX_PREDICATE_TYPE)).unwrap_err();
        assert!(error.contains("annotated"), "{error}");

        // Not an in-toto statement.
        let error = check_envelope(&envelope(&signer, b"[]".to_vec()), &keys, &digest(), None).unwrap_err();
        assert!(error.contains("_type"), "{error}");
        let other_type = Envelope::sign("text/plain", b"hi".to_vec(), &signer).unwrap().to_json();
        assert!(
            check_envelope(&other_type, &keys, &digest(), None)
                .unwrap_err()
                .contains("payload type")
        );
    }

    #[test]
    fn referrer_manifest_points_at_the_image() {
        let image = Descriptor::new(OCI_MANIFEST, format!("sha256:{HEX}"), 1234);
        let mut layer = Descriptor::new(DSSE_ENVELOPE_MEDIA_TYPE, rebake_oci::sha256_digest(b"e"), 1);
        layer
            .annotations
            .insert(PREDICATE_TYPE_ANNOTATION.into(), SPDX_PREDICATE_TYPE.into());
        layer.annotations.insert(SIGNATURE_ANNOTATION.into(), String::new());
        let manifest = referrer_manifest(&image, &layer);
        let value = serde_json::to_value(&manifest).unwrap();
        assert_eq!(value["artifactType"], DSSE_ENVELOPE_MEDIA_TYPE);
        assert_eq!(
            value["subject"],
            json!({"mediaType": OCI_MANIFEST, "digest": format!("sha256:{HEX}"), "size": 1234})
        );
        assert_eq!(value["config"]["mediaType"], OCI_EMPTY);
        assert_eq!(
            value["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            value["layers"][0]["annotations"],
            json!({"predicateType": SPDX_PREDICATE_TYPE})
        );
        assert_eq!(
            value["annotations"][REFERRER_PREDICATE_TYPE_ANNOTATION],
            SPDX_PREDICATE_TYPE
        );
    }

    /// A minimal OCI registry on a loopback port, enough for [`attest_and_store`]: blob
    /// uploads (monolithic), blob and manifest reads, manifest pushes, and — when
    /// `referrers_api` — `GET /v2/<repo>/referrers/<digest>` (404 otherwise, as
    /// distribution 2.8 answers).
    mod fake_registry {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};

        use serde_json::{Value, json};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        use tokio::net::{TcpListener, TcpStream};

        #[derive(Default)]
        struct Store {
            blobs: HashMap<String, Vec<u8>>,
            /// By tag and by digest: (media type, bytes).
            manifests: HashMap<String, (String, Vec<u8>)>,
            uploads: usize,
        }

        type Shared = Arc<Mutex<Store>>;

        /// Starts the registry; returns its `host:port`.
        pub async fn start(referrers_api: bool) -> String {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let host = listener.local_addr().unwrap().to_string();
            let store = Shared::default();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, Arc::clone(&store), referrers_api));
                }
            });
            host
        }

        async fn serve(mut stream: TcpStream, store: Shared, referrers_api: bool) {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 8192];
            let header_end = loop {
                if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                    break end + 4;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
            let mut lines = head.lines();
            let mut request_line = lines.next().unwrap_or_default().split(' ');
            let method = request_line.next().unwrap_or_default().to_string();
            let target = request_line.next().unwrap_or_default().to_string();
            let mut content_type = String::new();
            let mut length = 0usize;
            for line in lines {
                if let Some((name, value)) = line.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "content-type" => content_type = value.trim().to_string(),
                        _ => {}
                    }
                }
            }
            let mut body = buffer[header_end..].to_vec();
            while body.len() < length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => body.extend_from_slice(&chunk[..read]),
                }
            }
            let (status, headers, answer) = route(&store, referrers_api, &method, &target, &content_type, body);
            let reason = match status {
                200 => "OK",
                201 => "Created",
                202 => "Accepted",
                _ => "Not Found",
            };
            let mut response = format!(
                "HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-length: {}\r\n",
                answer.len()
            );
            for (name, value) in headers {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
            response.push_str("\r\n");
            let mut bytes = response.into_bytes();
            if method != "HEAD" {
                bytes.extend_from_slice(&answer);
            }
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }

        type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

        fn route(
            store: &Shared,
            referrers_api: bool,
            method: &str,
            target: &str,
            content_type: &str,
            body: Vec<u8>,
        ) -> Answer {
            let mut store = store.lock().unwrap();
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let not_found: Answer = (404, vec![], br#"{"errors":[{"code":"NOT_FOUND"}]}"#.to_vec());
            let Some(path) = path.strip_prefix("/v2/") else {
                return not_found;
            };
            if path.is_empty() {
                return (200, vec![], b"{}".to_vec());
            }
            if let Some(at) = path.rfind("/blobs/uploads/") {
                let repository = &path[..at];
                return match method {
                    "POST" => {
                        store.uploads += 1;
                        let location = format!("/v2/{repository}/blobs/uploads/{}", store.uploads);
                        (202, vec![("location", location)], vec![])
                    }
                    "PUT" => {
                        let digest = query
                            .split('&')
                            .find_map(|pair| pair.strip_prefix("digest="))
                            .unwrap_or_default()
                            .replace("%3A", ":")
                            .replace("%3a", ":");
                        assert_eq!(digest, rebake_oci::sha256_digest(&body), "upload digest");
                        store.blobs.insert(digest.clone(), body);
                        let location = format!("/v2/{repository}/blobs/{digest}");
                        (
                            201,
                            vec![("location", location), ("docker-content-digest", digest)],
                            vec![],
                        )
                    }
                    _ => not_found,
                };
            }
            if let Some(at) = path.rfind("/blobs/") {
                let digest = &path[at + "/blobs/".len()..];
                return match store.blobs.get(digest) {
                    Some(blob) => (200, vec![("docker-content-digest", digest.to_string())], blob.clone()),
                    None => not_found,
                };
            }
            if let Some(at) = path.rfind("/manifests/") {
                let reference = &path[at + "/manifests/".len()..];
                if method == "PUT" {
                    let digest = rebake_oci::sha256_digest(&body);
                    let stored = (content_type.to_string(), body);
                    store.manifests.insert(reference.to_string(), stored.clone());
                    store.manifests.insert(digest.clone(), stored);
                    return (201, vec![("docker-content-digest", digest)], vec![]);
                }
                return match store.manifests.get(reference) {
                    Some((media_type, bytes)) => (
                        200,
                        vec![
                            ("content-type", media_type.clone()),
                            ("docker-content-digest", rebake_oci::sha256_digest(bytes)),
                        ],
                        bytes.clone(),
                    ),
                    None => not_found,
                };
            }
            if let Some(at) = path.rfind("/referrers/") {
                if !referrers_api {
                    return not_found;
                }
                let subject = &path[at + "/referrers/".len()..];
                let mut manifests: Vec<Value> = store
                    .manifests
                    .iter()
                    .filter(|(reference, _)| reference.starts_with("sha256:"))
                    .filter_map(|(digest, (media_type, bytes))| {
                        let manifest: Value = serde_json::from_slice(bytes).ok()?;
                        (manifest["subject"]["digest"] == subject).then(|| {
                            json!({
                                "mediaType": media_type,
                                "digest": digest,
                                "size": bytes.len(),
                                "artifactType": manifest["artifactType"],
                                "annotations": manifest["annotations"],
                            })
                        })
                    })
                    .collect();
                manifests.sort_by_key(|descriptor| descriptor["digest"].to_string());
                let index = json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": manifests,
                });
                return (
                    200,
                    vec![("content-type", "application/vnd.oci.image.index.v1+json".to_string())],
                    serde_json::to_vec(&index).unwrap(),
                );
            }
            not_found
        }
    }

    #[tokio::test]
    async fn referrers_are_pushed_only_where_the_registry_has_the_api() {
        let signer = key();
        let keys = keys_of(&signer);
        let attestations = vec![
            Attestation {
                predicate_type: SPDX_PREDICATE_TYPE.to_string(),
                predicate: json!({"spdxVersion": "SPDX-2.3"}),
            },
            Attestation {
                predicate_type: SLSA_PROVENANCE_PREDICATE_TYPE.to_string(),
                predicate: json!({"buildDefinition": {}, "runDetails": {}}),
            },
        ];
        let image = Descriptor::new(OCI_MANIFEST, format!("sha256:{HEX}"), 321);
        for referrers_api in [true, false] {
            let host = fake_registry::start(referrers_api).await;
            let registry = Registry::new(vec![host.clone()]);
            let repository = ImageRef::parse(&format!("{host}/apps/app:latest")).unwrap();
            let stored = attest_and_store(&registry, &signer, &repository, &image, &attestations)
                .await
                .unwrap();
            assert_eq!(stored.tag, format!("sha256-{HEX}.att"));
            let att = registry
                .get_manifest(&host, "apps/app", &stored.tag)
                .await
                .unwrap()
                .to_manifest()
                .unwrap();
            assert_eq!(att.layers.len(), 2);
            let referrers = registry.referrers(&host, "apps/app", &image.digest).await.unwrap();
            if referrers_api {
                assert_eq!(stored.referrers, Some(2));
                let index = referrers.expect("the api answers");
                assert_eq!(index.manifests.len(), 2);
                for descriptor in &index.manifests {
                    assert_eq!(descriptor.extra["artifactType"], DSSE_ENVELOPE_MEDIA_TYPE);
                    let referrer = registry
                        .get_manifest(&host, "apps/app", &descriptor.digest)
                        .await
                        .unwrap()
                        .to_manifest()
                        .unwrap();
                    assert_eq!(referrer.extra["subject"]["digest"], image.digest.as_str());
                    assert_eq!(referrer.extra["subject"]["size"], 321);
                    // The same envelope blob as the .att layer of that type.
                    let predicate_type = &referrer.annotations[REFERRER_PREDICATE_TYPE_ANNOTATION];
                    let layer = att
                        .layers
                        .iter()
                        .find(|layer| &layer.annotations[PREDICATE_TYPE_ANNOTATION] == predicate_type)
                        .unwrap();
                    assert_eq!(referrer.layers[0].digest, layer.digest);
                    assert!(
                        registry
                            .blob_exists(&host, "apps/app", &referrer.config.digest)
                            .await
                            .unwrap()
                    );
                }
            } else {
                assert_eq!(stored.referrers, None);
                assert!(referrers.is_none());
            }
            let digest = image.digest.as_str();
            let both = [SPDX_PREDICATE_TYPE, SLSA_PROVENANCE_PREDICATE_TYPE];
            assert!(
                stored_attestations_are_valid(&registry, &keys, &repository, digest, &both)
                    .await
                    .unwrap()
            );
            assert!(
                !stored_attestations_are_valid(&registry, &keys, &repository, digest, &[VULN_PREDICATE_TYPE])
                    .await
                    .unwrap(),
                "a type not attested is missing"
            );
            assert!(
                !stored_attestations_are_valid(&registry, &keys_of(&key()), &repository, digest, &both)
                    .await
                    .unwrap(),
                "another key's attestations do not count"
            );
            let other = format!("sha256:{}", "e".repeat(64));
            assert!(
                !stored_attestations_are_valid(&registry, &keys, &repository, &other, &[])
                    .await
                    .unwrap(),
                "no .att for another digest"
            );
        }
    }
}
