//! Rebake's signer/publisher: the last stage of the pipeline, where a scanned image
//! becomes live.
//!
//! It consumes the SIGN work queue, whose items are `scan.done` events of scans that
//! passed, and for each one:
//!
//! 1. **signs** the staged manifest digest cosign-style with a keyed ECDSA P-256 signature
//!    (simple-signing payload, `sha256-<hex>.sig` tag in the *published* repository — see
//!    [`sign_and_store`]), so anyone can check it with `cosign verify --key` or plain
//!    `openssl`, without trusting Rebake;
//! 2. **attests** it ([`attest_and_store`]): in-toto v1 statements about the digest, each
//!    in a DSSE envelope signed with the same key, stored cosign-style under
//!    `sha256-<hex>.att` (and as OCI 1.1 referrers where the registry has that API):
//!    - the SBOMs the scanner stored in the `builds` bucket — SPDX 2.3
//!      (`https://spdx.dev/Document`, key `<build id>.spdx`) and CycloneDX 1.6
//!      (`https://cyclonedx.org/bom`, key `<build id>.cyclonedx`);
//!    - the vulnerability report (`https://cosign.sigstore.dev/attestation/vuln/v1`, from
//!      the scan report `<build id>.scan`, see [`provenance::vulnerability_predicate`]);
//!    - SLSA Provenance v1 (`https://slsa.dev/provenance/v1`, build type
//!      [`provenance::BUILD_TYPE`], documented in `docs/build-type-v1.md`): the image spec
//!      as external parameters, the base digest, every package and every Git commit as
//!      resolved dependencies, the build id and stage times, and the causal chain that
//!      triggered the build ([`provenance::slsa_provenance`]).
//!
//!    A missing SBOM or scan report (bucket lost, message replayed by hand) is logged and
//!    left out; `rebake verify` then reports the image as lacking it;
//! 3. **promotes** the image from the staging repository to the published one
//!    ([`promote`]): blobs by cross-repository mount, manifests by digest, tags last, so a
//!    crash never leaves a tag pointing at half-copied content;
//! 4. **records** the outcome in the build record (bucket `builds`) and **announces**
//!    `image.published` (which the resolver uses to cascade rebuilds to child images), and
//!    only then acks.
//!
//! [`verify_image`] is the other side: given only a registry and public keys, it checks the
//! signature and every attestation of an image (what `rebake verify` prints).
//!
//! Every step is idempotent: a redelivered item whose tags already point at the digest,
//! whose stored signature verifies with our key and whose stored attestations (every
//! predicate type this build has inputs for) verify with our key and name the digest is
//! only announced again (same CloudEvents id, so JetStream drops the duplicate); a crash
//! between writing the `.sig` or `.att` and moving the tags is finished by the redelivery,
//! which writes only what is missing or does not verify. Transient registry or NATS
//! failures are retried with growing delays; permanent ones (bad spec, refused push, unusable key) are recorded
//! as `build.failed` with the stage (`sign` or `publish`) and nothing is published. An
//! item older than the build that is already live is recorded as `skipped`, so tags never
//! move backwards.
//!
//! # Why sigstore without its `cosign` feature
//!
//! The `sigstore` crate is used only for keys and signatures ([`SignerKey`]: PKCS#8 and
//! cosign's encrypted PEM, ECDSA P-256 with SHA-256, DER output). Its `cosign` feature
//! would also compile Fulcio, Rekor and OIDC clients and its own registry client for
//! keyless signing and transparency logs, none of which keyed signing needs; the OCI side
//! (payload blob, config, manifest, tag) is a few requests that `rebake-oci` already does,
//! with the same client and error classification as the rest of Rebake.
//!
//! # Not here
//!
//! Deciding what to build or whether an image may ship (resolver, scanner); keyless
//! signing, transparency-log uploads and accumulating several signatures per digest (a new
//! signature replaces the `.sig` tag, new attestations replace the `.att` tag). The
//! vulnerability attestation is the report at publication time: a re-scan of a published
//! image after new advisories updates the `.scan` record, not the attestation.
#![forbid(unsafe_code)]

mod attest;
mod cosign;
pub mod dsse;
mod error;
mod key;
mod promote;
pub mod provenance;
mod service;
pub mod verify;
mod verifying;

pub use attest::{
    Attestation, CYCLONEDX_PREDICATE_TYPE, PREDICATE_TYPE_ANNOTATION, REFERRER_PREDICATE_TYPE_ANNOTATION,
    SLSA_PROVENANCE_PREDICATE_TYPE, SPDX_PREDICATE_TYPE, STATEMENT_TYPE, StoredAttestations, VULN_PREDICATE_TYPE,
    attest_and_store, attestation_tag, statement, stored_attestations_are_valid,
};
pub use cosign::{
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, StoredSignature, sign_and_store, simple_signing_payload,
    stored_signature_is_valid, stored_signatures,
};
pub use error::{Result, SignerError};
pub use key::SignerKey;
pub use promote::promote;
pub use service::{DEFAULT_CONCURRENCY, serve};
pub use verify::{Check, Report, verify_image};
pub use verifying::{VerifyingKey, VerifyingKeys};
