//! The signing key: ECDSA P-256 from a PKCS#8 PEM or cosign's encrypted PEM, with the
//! public keys it also accepts during a key rotation.
//!
//! # Rotation
//!
//! One key signs; several are accepted. [`SignerKey::with_verify_keys`] adds the public
//! keys of `signer.verify_keys` (the old key during a rotation): [`SignerKey::verify`], and
//! so the signer's idempotency check ([`crate::stored_signature_is_valid`]), then accepts a
//! stored signature by any of them, so a rotation does not re-sign every published image;
//! new signatures are made with the signing key only. Once every image that matters has
//! been re-signed (rebuilt) with the new key, drop the old one from `verify_keys`.

use std::fmt;

use sigstore::crypto::signing_key::ecdsa::ECDSAKeys;
use sigstore::crypto::signing_key::{
    COSIGN_PRIVATE_KEY_PEM_LABEL, PRIVATE_KEY_PEM_LABEL, SIGSTORE_PRIVATE_KEY_PEM_LABEL, SigStoreKeyPair,
    SigStoreSigner,
};
use sigstore::crypto::verification_key::CosignVerificationKey;
use sigstore::crypto::{Signature, SigningScheme};

use crate::error::{Result, SignerError};
use crate::verifying::{VerifyingKey, VerifyingKeys};

/// The only scheme Rebake signs with (cosign's default for keyed signing).
const SCHEME: SigningScheme = SigningScheme::ECDSA_P256_SHA256_ASN1;

/// An ECDSA P-256 private key ready to sign, with its public half, and the other public
/// keys whose signatures it accepts as its own (key rotation, see the module docs).
///
/// `Debug` shows only the SHA-256 of the public keys (the key ids), never private material.
pub struct SignerKey {
    signer: SigStoreSigner,
    verification_key: CosignVerificationKey,
    public_key_pem: String,
    key_id: String,
    /// Accepted besides the signing key (`signer.verify_keys`); never used to sign.
    also_accepted: VerifyingKeys,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let also_accepted: Vec<&str> = self.also_accepted.keys().iter().map(VerifyingKey::key_id).collect();
        f.debug_struct("SignerKey")
            .field("scheme", &"ecdsa-p256-sha256")
            .field("key_id", &self.key_id)
            .field("also_accepted", &also_accepted)
            .finish_non_exhaustive()
    }
}

impl SignerKey {
    /// Loads a private key.
    ///
    /// Without `password`, `pem` must be an unencrypted PKCS#8 PEM (`PRIVATE KEY`, as
    /// `openssl pkcs8 -topk8 -nocrypt` writes). With `password`, it must be cosign's
    /// encrypted PEM (`ENCRYPTED COSIGN PRIVATE KEY`, from `cosign generate-key-pair`, or
    /// sigstore-rs's `ENCRYPTED SIGSTORE PRIVATE KEY`); an empty password is also accepted
    /// for an unencrypted key. The key must be ECDSA P-256.
    ///
    /// Errors say what kind of problem it is in fixed words; they never contain the key,
    /// any part of the input, or the password.
    pub fn from_pem(pem: &[u8], password: Option<&[u8]>) -> Result<Self> {
        let label = pem_label(pem).ok_or(SignerError::Key {
            reason: "not a pem document",
        })?;
        let encrypted = label == COSIGN_PRIVATE_KEY_PEM_LABEL || label == SIGSTORE_PRIVATE_KEY_PEM_LABEL;
        let key_pair = match (label, encrypted, password) {
            (_, true, Some(password)) => {
                SigStoreKeyPair::from_encrypted_pem(pem, password).map_err(|_| SignerError::Key {
                    reason: "cannot decrypt the key: wrong password, or the key is corrupt",
                })?
            }
            (_, true, None) => {
                return Err(SignerError::Key {
                    reason: "the key is encrypted and no password is configured",
                });
            }
            (PRIVATE_KEY_PEM_LABEL, false, Some(password)) if !password.is_empty() => {
                return Err(SignerError::Key {
                    reason: "a password is configured but the key is not encrypted",
                });
            }
            (PRIVATE_KEY_PEM_LABEL, false, _) => SigStoreKeyPair::from_pem(pem).map_err(|_| SignerError::Key {
                reason: "the pkcs#8 private key cannot be parsed",
            })?,
            ("EC PRIVATE KEY", false, _) => {
                return Err(SignerError::Key {
                    reason: "sec1 `EC PRIVATE KEY` pem is not supported; convert it with `openssl pkcs8 -topk8 -nocrypt`",
                });
            }
            _ => {
                return Err(SignerError::Key {
                    reason: "unsupported pem type; expected `PRIVATE KEY` (pkcs#8) or `ENCRYPTED COSIGN PRIVATE KEY` with a password",
                });
            }
        };
        if !matches!(key_pair, SigStoreKeyPair::ECDSA(ECDSAKeys::P256(_))) {
            return Err(SignerError::Key {
                reason: "the key is not an ecdsa p-256 key",
            });
        }
        let signer = key_pair.to_sigstore_signer(&SCHEME).map_err(|_| SignerError::Key {
            reason: "the key cannot be used for ecdsa p-256 signing",
        })?;
        let verification_key = signer.to_verification_key().map_err(|_| SignerError::Key {
            reason: "the public key cannot be derived",
        })?;
        let public_key_pem = key_pair.public_key_to_pem().map_err(|_| SignerError::Key {
            reason: "the public key cannot be encoded",
        })?;
        let public_key_der = key_pair.public_key_to_der().map_err(|_| SignerError::Key {
            reason: "the public key cannot be encoded",
        })?;
        Ok(SignerKey {
            signer,
            verification_key,
            public_key_pem,
            key_id: rebake_oci::sha256_digest(&public_key_der),
            also_accepted: VerifyingKeys::default(),
        })
    }

    /// Also accepts signatures by `keys` in [`SignerKey::verify`] (the old public key
    /// during a rotation, from `signer.verify_keys`). Signing still uses only this key; a
    /// key equal to the signing key's public half is ignored.
    pub fn with_verify_keys(mut self, keys: &VerifyingKeys) -> Result<Self> {
        for key in keys.keys() {
            if key.key_id() != self.key_id {
                self.also_accepted.push(VerifyingKey::from_pem(key.pem().as_bytes())?);
            }
        }
        Ok(self)
    }

    /// The public keys accepted besides the signing key's own.
    pub fn also_accepted(&self) -> &VerifyingKeys {
        &self.also_accepted
    }

    /// Every accepted public key, the signing key's first: what a verifier of Rebake's
    /// signatures should be given during a rotation.
    pub fn verifying_keys(&self) -> Result<VerifyingKeys> {
        let mut keys = VerifyingKeys::from_pems([self.public_key_pem.as_bytes()])?;
        for key in self.also_accepted.keys() {
            keys.push(VerifyingKey::from_pem(key.pem().as_bytes())?);
        }
        Ok(keys)
    }

    /// A fresh random ECDSA P-256 key (tests, and anyone who needs a throwaway key).
    pub fn generate() -> Result<Self> {
        let keys = ECDSAKeys::new(sigstore::crypto::signing_key::ecdsa::EllipticCurve::P256).map_err(|_| {
            SignerError::Key {
                reason: "cannot generate an ecdsa p-256 key",
            }
        })?;
        let pem = SigStoreKeyPair::ECDSA(keys)
            .private_key_to_pem()
            .map_err(|_| SignerError::Key {
                reason: "the generated key cannot be encoded",
            })?;
        Self::from_pem(pem.as_bytes(), None)
    }

    /// The public key as a PEM `PUBLIC KEY` (what `cosign verify --key` takes).
    pub fn public_key_pem(&self) -> Result<String> {
        Ok(self.public_key_pem.clone())
    }

    /// `sha256:<hex>` of the DER public key: names the key in logs without revealing anything.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `payload` (SHA-256, ECDSA P-256) and returns the ASN.1 DER signature. ECDSA is
    /// randomised: signing twice gives two different, equally valid signatures.
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>> {
        self.signer.sign(payload).map_err(|error| SignerError::Sign {
            what: "payload".to_string(),
            reason: error.to_string(),
        })
    }

    /// True when `signature` (DER) is a valid signature of `payload` by this key or by one
    /// of the keys it also accepts ([`SignerKey::with_verify_keys`]).
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.accepting_key_id(payload, signature).is_some()
    }

    /// The id of the accepted key (this one first, then [`SignerKey::also_accepted`]) whose
    /// signature of `payload` `signature` is.
    pub fn accepting_key_id(&self, payload: &[u8], signature: &[u8]) -> Option<&str> {
        if self
            .verification_key
            .verify_signature(Signature::Raw(signature), payload)
            .is_ok()
        {
            return Some(&self.key_id);
        }
        self.also_accepted.verify(payload, signature)
    }
}

/// The label of the first `-----BEGIN <label>-----` line, if `pem` is text and has one.
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    text.lines().find_map(|line| {
        line.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// A PKCS#8 P-256 key generated by openssl, as the config would hold it.
    fn openssl_pkcs8_key(dir: &Path) -> Vec<u8> {
        let output = Command::new("sh")
            .arg("-c")
            .arg("openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt")
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    #[test]
    fn accepts_openssl_pkcs8_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let pem = openssl_pkcs8_key(dir.path());
        let key = SignerKey::from_pem(&pem, None).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("key_id"), "{debug}");
        assert!(!debug.contains("PRIVATE"), "{debug}");

        let payload = crate::simple_signing_payload("127.0.0.1:5000/apps/app", &format!("sha256:{}", "a".repeat(64)));
        let signature = key.sign(&payload).unwrap();
        assert!(key.verify(&payload, &signature));
        assert!(!key.verify(b"other", &signature));

        std::fs::write(dir.path().join("pub.pem"), key.public_key_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("sig.der"), &signature).unwrap();
        std::fs::write(dir.path().join("payload"), &payload).unwrap();
        let output = Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-verify",
                "pub.pem",
                "-signature",
                "sig.der",
                "payload",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl refused the signature: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn rejects_garbage_without_echoing_it() {
        let secret_looking = b"-----BEGIN PRIVATE KEY-----\nc3VwZXJzZWNyZXRodW50ZXIy\n-----END PRIVATE KEY-----\n";
        let inputs: [&[u8]; 4] = [
            b"hunter2-not-a-key",
            secret_looking,
            b"-----BEGIN hunter2-----\nAAAA\n-----END hunter2-----\n",
            &[0xff, 0xfe, 0x00],
        ];
        for input in inputs {
            let error = SignerKey::from_pem(input, None).unwrap_err();
            let text = crate::error::error_chain(&error);
            assert!(matches!(error, SignerError::Key { .. }), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("c3VwZXJzZWNyZXRodW50ZXIy"), "{text}");
        }
    }

    #[test]
    fn rejects_other_curves_and_sec1() {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("sh")
            .arg("-c")
            .arg("openssl ecparam -genkey -name secp384r1 -noout | openssl pkcs8 -topk8 -nocrypt")
            .output()
            .unwrap();
        assert!(output.status.success());
        let error = SignerKey::from_pem(&output.stdout, None).unwrap_err();
        assert!(error.to_string().contains("p-256"), "{error}");

        let output = Command::new("openssl")
            .args(["ecparam", "-genkey", "-name", "prime256v1", "-noout"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success());
        let error = SignerKey::from_pem(&output.stdout, None).unwrap_err();
        assert!(error.to_string().contains("openssl pkcs8"), "{error}");
    }

    #[test]
    fn rotation_accepts_the_old_key_and_signs_with_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = SignerKey::from_pem(&openssl_pkcs8_key(dir.path()), None).unwrap();
        let stranger = SignerKey::from_pem(&openssl_pkcs8_key(dir.path()), None).unwrap();
        let old_public = old.public_key_pem().unwrap();
        let new_pem = openssl_pkcs8_key(dir.path());
        let new = SignerKey::from_pem(&new_pem, None).unwrap();
        let new_public = new.public_key_pem().unwrap();
        let accepted = VerifyingKeys::from_pems([old_public.as_bytes(), new_public.as_bytes()]).unwrap();
        let new = new.with_verify_keys(&accepted).unwrap();
        // The signing key's own public half is not listed twice.
        assert_eq!(new.also_accepted().keys().len(), 1);
        assert!(format!("{new:?}").contains(old.key_id()));

        let by_old = old.sign(b"payload").unwrap();
        assert!(new.verify(b"payload", &by_old));
        assert_eq!(new.accepting_key_id(b"payload", &by_old), Some(old.key_id()));
        let by_new = new.sign(b"payload").unwrap();
        assert_eq!(new.accepting_key_id(b"payload", &by_new), Some(new.key_id()));
        // What it signs verifies with the new key alone, not the old one.
        assert!(!old.verify(b"payload", &by_new));
        assert!(!new.verify(b"payload", &stranger.sign(b"payload").unwrap()));
        assert!(!new.verify(b"other", &by_old));

        let all = new.verifying_keys().unwrap();
        let ids: Vec<&str> = all.keys().iter().map(VerifyingKey::key_id).collect();
        assert_eq!(ids, [new.key_id(), old.key_id()]);
    }

    #[test]
    fn encrypted_pem_round_trips() {
        let generated = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .unwrap()
            .to_sigstore_keypair()
            .unwrap();
        let password = b"correct horse";
        let encrypted = generated.private_key_to_encrypted_pem(password).unwrap();
        let key = SignerKey::from_pem(encrypted.as_bytes(), Some(password)).unwrap();
        assert_eq!(key.public_key_pem().unwrap(), generated.public_key_to_pem().unwrap());
        let signature = key.sign(b"payload").unwrap();
        assert!(key.verify(b"payload", &signature));

        let wrong = SignerKey::from_pem(encrypted.as_bytes(), Some(b"wrong")).unwrap_err();
        assert!(wrong.to_string().contains("wrong password"), "{wrong}");
        let missing = SignerKey::from_pem(encrypted.as_bytes(), None).unwrap_err();
        assert!(missing.to_string().contains("no password"), "{missing}");

        let plain = generated.private_key_to_pem().unwrap();
        assert!(SignerKey::from_pem(plain.as_bytes(), None).is_ok());
        assert!(SignerKey::from_pem(plain.as_bytes(), Some(b"")).is_ok());
        let error = SignerKey::from_pem(plain.as_bytes(), Some(password)).unwrap_err();
        assert!(error.to_string().contains("not encrypted"), "{error}");
    }
}
