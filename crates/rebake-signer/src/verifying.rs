//! Public keys that signatures are checked against: what `rebake verify`, the builder's
//! upstream check and key rotation use. Holds no secret; any number of keys (during a
//! rotation the old and the new one are both accepted).

use std::fmt;

use sigstore::crypto::verification_key::CosignVerificationKey;
use sigstore::crypto::{Signature, SigningScheme};

use crate::error::{Result, SignerError};

/// One ECDSA P-256 public key with its id (`sha256:<hex>` of the DER, as
/// [`crate::SignerKey::key_id`] gives for the private half).
pub struct VerifyingKey {
    key: CosignVerificationKey,
    key_id: String,
    pem: String,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey").field("key_id", &self.key_id).finish()
    }
}

impl VerifyingKey {
    /// Parses a PEM `PUBLIC KEY` (what `cosign public-key` and `rebake key public` print).
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(pem).map_err(|_| SignerError::Key {
            reason: "the public key is not pem text",
        })?;
        let der = pem_body(text).ok_or(SignerError::Key {
            reason: "not a pem `PUBLIC KEY` document",
        })?;
        let key = CosignVerificationKey::from_pem(pem, &SigningScheme::ECDSA_P256_SHA256_ASN1).map_err(|_| {
            SignerError::Key {
                reason: "the public key is not an ecdsa p-256 key",
            }
        })?;
        Ok(Self {
            key,
            key_id: rebake_oci::sha256_digest(&der),
            pem: text.trim().to_string() + "\n",
        })
    }

    /// `sha256:<hex>` of the DER public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key as PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// True when `signature` (ASN.1 DER) is this key's signature of `payload`.
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.key.verify_signature(Signature::Raw(signature), payload).is_ok()
    }
}

/// Several accepted public keys.
#[derive(Debug, Default)]
pub struct VerifyingKeys {
    keys: Vec<VerifyingKey>,
}

impl VerifyingKeys {
    /// The keys in `pems` (each one PEM `PUBLIC KEY`); duplicates are kept once.
    pub fn from_pems<'a>(pems: impl IntoIterator<Item = &'a [u8]>) -> Result<Self> {
        let mut keys: Vec<VerifyingKey> = Vec::new();
        for pem in pems {
            let key = VerifyingKey::from_pem(pem)?;
            if !keys.iter().any(|known| known.key_id == key.key_id) {
                keys.push(key);
            }
        }
        Ok(Self { keys })
    }

    /// Adds `key` unless a key with its id is there already.
    pub fn push(&mut self, key: VerifyingKey) {
        if !self.keys.iter().any(|known| known.key_id == key.key_id) {
            self.keys.push(key);
        }
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The id of the first key whose signature of `payload` `signature` is.
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> Option<&str> {
        self.keys
            .iter()
            .find(|key| key.verify(payload, signature))
            .map(VerifyingKey::key_id)
    }
}

/// The DER bytes of the first `PUBLIC KEY` block.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = text.find("-----BEGIN PUBLIC KEY-----")? + "-----BEGIN PUBLIC KEY-----".len();
    let end = text[start..].find("-----END PUBLIC KEY-----")? + start;
    let body: String = text[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SignerKey;

    #[test]
    fn verifies_what_the_signer_signs_and_ids_match() {
        let signer = SignerKey::generate().unwrap();
        let public = signer.public_key_pem().unwrap();
        let key = VerifyingKey::from_pem(public.as_bytes()).unwrap();
        assert_eq!(key.key_id(), signer.key_id());
        let signature = signer.sign(b"payload").unwrap();
        assert!(key.verify(b"payload", &signature));
        assert!(!key.verify(b"other", &signature));
        let keys = VerifyingKeys::from_pems([public.as_bytes(), public.as_bytes()]).unwrap();
        assert_eq!(keys.keys().len(), 1);
        assert_eq!(keys.verify(b"payload", &signature), Some(signer.key_id()));
    }

    #[test]
    fn rejects_what_is_not_a_p256_public_key() {
        assert!(VerifyingKey::from_pem(b"hello").is_err());
        let private = std::process::Command::new("sh")
            .arg("-c")
            .arg("openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt")
            .output()
            .expect("openssl runs");
        assert!(VerifyingKey::from_pem(&private.stdout).is_err());
    }
}
