//! DSSE envelopes (Dead Simple Signing Envelope, v1), the wrapping every in-toto
//! attestation is signed in.
//!
//! The signature is not over the payload but over its *pre-authentication encoding*
//! ([`pae`]), which binds the payload type too, so a payload cannot be re-interpreted as
//! another type:
//!
//! ```text
//! "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//! ```
//!
//! where `LEN` is the byte length in ASCII decimal. The JSON form (what cosign writes and
//! reads) carries the payload and each signature in standard base64:
//!
//! ```json
//! {"payloadType":"application/vnd.in-toto+json","payload":"<base64>",
//!  "signatures":[{"keyid":"sha256:…","sig":"<base64 DER>"}]}
//! ```

use base64::Engine as _;
use serde_json::{Value, json};

use crate::error::{Result, SignerError};
use crate::key::SignerKey;
use crate::verifying::VerifyingKeys;

/// Payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Media type of a DSSE envelope stored as a blob (an `.att` layer, a referrer's layer).
pub const DSSE_ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// The DSSE v1 pre-authentication encoding of `body` with type `payload_type`: the bytes
/// that are signed.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut encoded = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), body.len()).into_bytes();
    encoded.extend_from_slice(body);
    encoded
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// Which key signed (Rebake writes the key id, `sha256:<hex>` of the DER public key;
    /// verification never trusts it, it tries every accepted key).
    pub keyid: String,
    /// The ASN.1 DER ECDSA signature over [`pae`].
    pub sig: Vec<u8>,
}

/// A DSSE envelope, with its payload and signatures decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// What the payload is (`application/vnd.in-toto+json` for attestations).
    pub payload_type: String,
    /// The signed bytes (for attestations, the in-toto statement JSON).
    pub payload: Vec<u8>,
    /// Signatures over `pae(payload_type, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    /// Signs `payload` of type `payload_type` with `key`: one signature, `keyid` = the key id.
    pub fn sign(payload_type: &str, payload: Vec<u8>, key: &SignerKey) -> Result<Envelope> {
        let sig = key.sign(&pae(payload_type, &payload)).map_err(|error| match error {
            SignerError::Sign { reason, .. } => SignerError::Sign {
                what: format!("dsse envelope of type {payload_type}"),
                reason,
            },
            other => other,
        })?;
        Ok(Envelope {
            payload_type: payload_type.to_string(),
            payload,
            signatures: vec![EnvelopeSignature {
                keyid: key.key_id().to_string(),
                sig,
            }],
        })
    }

    /// The envelope as compact JSON (fields in DSSE's order).
    pub fn to_json(&self) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let signatures: Vec<Value> = self
            .signatures
            .iter()
            .map(|signature| json!({"keyid": signature.keyid, "sig": b64.encode(&signature.sig)}))
            .collect();
        // serde_json keeps insertion order only with `preserve_order`; build the text
        // directly so the field order is the documented one whatever features are on.
        format!(
            r#"{{"payloadType":{},"payload":{},"signatures":{}}}"#,
            Value::from(self.payload_type.as_str()),
            Value::from(b64.encode(&self.payload)),
            Value::Array(signatures),
        )
        .into_bytes()
    }

    /// Parses the JSON form. The error says what is malformed, in a few words.
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Envelope, String> {
        let document: Value =
            serde_json::from_slice(bytes).map_err(|error| format!("envelope is not json: {error}"))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload_type = document["payloadType"]
            .as_str()
            .ok_or("envelope has no payloadType string")?
            .to_string();
        let payload = document["payload"]
            .as_str()
            .ok_or("envelope has no payload string")
            .and_then(|text| b64.decode(text).map_err(|_| "envelope payload is not base64"))?;
        let signatures = document["signatures"]
            .as_array()
            .ok_or("envelope has no signatures array")?
            .iter()
            .map(|signature| {
                let sig = signature["sig"]
                    .as_str()
                    .ok_or("envelope signature has no sig string")
                    .and_then(|text| b64.decode(text).map_err(|_| "envelope signature is not base64"))?;
                Ok(EnvelopeSignature {
                    keyid: signature["keyid"].as_str().unwrap_or_default().to_string(),
                    sig,
                })
            })
            .collect::<std::result::Result<Vec<_>, &str>>()?;
        Ok(Envelope {
            payload_type,
            payload,
            signatures,
        })
    }

    /// The id of the first accepted key that made one of the signatures over the PAE, if
    /// any. The envelope's `keyid` hints are ignored: every signature is tried with every key.
    pub fn verify(&self, keys: &VerifyingKeys) -> Option<String> {
        let encoded = pae(&self.payload_type, &self.payload);
        self.signatures
            .iter()
            .find_map(|signature| keys.verify(&encoded, &signature.sig).map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifying::VerifyingKeys;

    fn key() -> SignerKey {
        SignerKey::generate().unwrap()
    }

    #[test]
    fn pae_matches_the_spec_example() {
        // The example of the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
        // Lengths are bytes, not characters.
        assert_eq!(pae("t", "é".as_bytes()), "DSSEv1 1 t 2 é".as_bytes().to_vec());
    }

    #[test]
    fn sign_round_trip_and_verify() {
        let signer = key();
        let other = key();
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, br#"{"a":1}"#.to_vec(), &signer).unwrap();
        let json = envelope.to_json();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(
            text.starts_with(
                r#"{"payloadType":"application/vnd.in-toto+json","payload":"eyJhIjoxfQ==","signatures":[{"#
            ),
            "{text}"
        );
        let back = Envelope::from_json(&json).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.signatures[0].keyid, signer.key_id());

        let ours = VerifyingKeys::from_pems([signer.public_key_pem().unwrap().as_bytes()]).unwrap();
        let theirs = VerifyingKeys::from_pems([other.public_key_pem().unwrap().as_bytes()]).unwrap();
        assert_eq!(back.verify(&ours).as_deref(), Some(signer.key_id()));
        assert_eq!(back.verify(&theirs), None);

        // The signature covers the type and the payload.
        let mut retyped = back.clone();
        retyped.payload_type = "text/plain".into();
        assert_eq!(retyped.verify(&ours), None);
        let mut tampered = back;
        tampered.payload[0] ^= 1;
        assert_eq!(tampered.verify(&ours), None);
    }

    #[test]
    fn malformed_envelopes_are_named() {
        assert!(Envelope::from_json(b"nope").unwrap_err().contains("not json"));
        assert!(Envelope::from_json(b"{}").unwrap_err().contains("payloadType"));
        assert!(
            Envelope::from_json(br#"{"payloadType":"t","payload":"!!","signatures":[]}"#)
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            Envelope::from_json(br#"{"payloadType":"t","payload":"","signatures":[{"keyid":"k"}]}"#)
                .unwrap_err()
                .contains("sig")
        );
    }
}
