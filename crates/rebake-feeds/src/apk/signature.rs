//! apk v2 signatures: a first gzip member holding a tar with one file
//! `.SIGN.RSA.<key name>` (PKCS#1 v1.5 over SHA-1), `.SIGN.RSA256.<key name>` (SHA-256)
//! or `.SIGN.RSA512.<key name>` (SHA-512), signing the compressed bytes of the next
//! gzip member exactly as stored.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::error::{ApkError, Result};
use super::gzip::{read_tar, split_gzip_members};

/// The digest an apk RSA signature is made over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// `.SIGN.RSA.`: PKCS#1 v1.5 with SHA-1.
    RsaSha1,
    /// `.SIGN.RSA256.`: PKCS#1 v1.5 with SHA-256.
    RsaSha256,
    /// `.SIGN.RSA512.`: PKCS#1 v1.5 with SHA-512.
    RsaSha512,
}

impl SignatureAlgorithm {
    /// The tar file name prefix, e.g. `.SIGN.RSA256.`.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Self::RsaSha1 => ".SIGN.RSA.",
            Self::RsaSha256 => ".SIGN.RSA256.",
            Self::RsaSha512 => ".SIGN.RSA512.",
        }
    }

    fn from_file_name(name: &str) -> Option<(Self, &str)> {
        [Self::RsaSha1, Self::RsaSha256, Self::RsaSha512]
            .into_iter()
            .find_map(|a| name.strip_prefix(a.file_prefix()).map(|k| (a, k)))
    }

    pub(crate) fn scheme_and_digest(self, data: &[u8]) -> (Pkcs1v15Sign, Vec<u8>) {
        match self {
            Self::RsaSha1 => (Pkcs1v15Sign::new::<Sha1>(), Sha1::digest(data).to_vec()),
            Self::RsaSha256 => (Pkcs1v15Sign::new::<Sha256>(), Sha256::digest(data).to_vec()),
            Self::RsaSha512 => (Pkcs1v15Sign::new::<Sha512>(), Sha512::digest(data).to_vec()),
        }
    }
}

/// The signature section of a signed apk container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureSection {
    /// Digest algorithm, from the file name prefix.
    pub algorithm: SignatureAlgorithm,
    /// Key name: the file name after the prefix, e.g. `alpine-devel@lists.alpinelinux.org-4a6a0840.rsa.pub`.
    pub key_name: String,
    /// The raw RSA signature bytes.
    pub signature: Vec<u8>,
}

/// Interprets a decompressed gzip member as a signature section; `None` when the tar
/// holds anything but `.SIGN.*` files (i.e. the member is not a signature section).
pub(crate) fn parse_signature_member(data: &[u8]) -> Option<SignatureSection> {
    let items = read_tar(data).ok()?;
    if items.is_empty() || !items.iter().all(|i| i.path.starts_with(".SIGN.")) {
        return None;
    }
    // apk-tools uses the first signature it can verify; we keep the first one we know.
    items.into_iter().find_map(|i| {
        let (algorithm, key) = SignatureAlgorithm::from_file_name(&i.path)?;
        Some(SignatureSection {
            algorithm,
            key_name: key.to_owned(),
            signature: i.data,
        })
    })
}

fn parse_public_key(pem: &str) -> Result<RsaPublicKey> {
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|e| ApkError::Signature(format!("invalid public key pem: {e}")))
}

fn key_matches(given: &str, signed: &str) -> bool {
    given == signed || format!("{given}.rsa.pub") == signed
}

/// Verifies a signed `APKINDEX.tar.gz` (or `.apk`): the first gzip member must be a
/// signature section naming one of `keys` (`(key name, PEM public key)`; the name is the
/// key's file name, with or without the `.rsa.pub` suffix), and its RSA signature must
/// verify over the compressed bytes of the second member exactly as stored.
///
/// PEM keys may be SPKI (`BEGIN PUBLIC KEY`, what apk's `/etc/apk/keys` hold) or PKCS#1.
pub fn verify_index_signature(index_tar_gz: &[u8], keys: &[(String, String)]) -> Result<()> {
    let members = split_gzip_members(index_tar_gz)?;
    let sig =
        parse_signature_member(&members[0].data).ok_or_else(|| ApkError::Signature("archive is not signed".into()))?;
    let signed = members
        .get(1)
        .ok_or_else(|| ApkError::Signature("no section after the signature".into()))?;
    let (_, pem) = keys
        .iter()
        .find(|(name, _)| key_matches(name, &sig.key_name))
        .ok_or_else(|| ApkError::Signature(format!("no trusted key {:?}", sig.key_name)))?;
    let key = parse_public_key(pem)?;
    let (scheme, digest) = sig.algorithm.scheme_and_digest(signed.raw);
    key.verify(scheme, &digest, &sig.signature)
        .map_err(|_| ApkError::Signature(format!("bad signature by key {:?}", sig.key_name)))
}
