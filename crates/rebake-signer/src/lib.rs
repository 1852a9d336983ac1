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
//! 2. **promotes** the image from the staging repository to the published one
//!    ([`promote`]): blobs by cross-repository mount, manifests by digest, tags last, so a
//!    crash never leaves a tag pointing at half-copied content;
//! 3. **records** the outcome in the build record (bucket `builds`) and **announces**
//!    `image.published` (which the resolver uses to cascade rebuilds to child images), and
//!    only then acks.
//!
//! Every step is idempotent: a redelivered item whose tags already point at the digest and
//! whose stored signature verifies with our key is only announced again (same CloudEvents
//! id, so JetStream drops the duplicate). Transient registry or NATS failures are retried
//! with growing delays; permanent ones (bad spec, refused push, unusable key) are recorded
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
//! signature replaces the `.sig` tag); SBOM and provenance attestations (`.att`) are not
//! written yet.
#![forbid(unsafe_code)]

mod cosign;
mod error;
mod key;
mod promote;
mod service;
mod verifying;

pub use cosign::{
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, sign_and_store, simple_signing_payload, stored_signature_is_valid,
};
pub use error::{Result, SignerError};
pub use key::SignerKey;
pub use promote::promote;
pub use service::serve;
pub use verifying::{VerifyingKey, VerifyingKeys};
