//! OpenPGP keyrings and the two signature forms of Debian repositories: the clear-signed
//! `InRelease` and the detached `Release.gpg`. Pure Rust (rpgp).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, VerifyingKey};

use super::error::{FetchError, Result};

/// Public keys from one or more key files; a signature by any primary key, or by any
/// subkey whose binding to its primary key verifies, is accepted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keyring {
    /// Where the keys came from, for error messages.
    origins: Vec<String>,
    certs: Vec<SignedPublicKey>,
}

fn keyring_error(path: &Path, reason: impl Into<String>) -> FetchError {
    FetchError::Keyring {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Parses every public key in `bytes`: a binary keyring (several transferable public keys
/// back to back, what `gpg --export` writes) or one or more ASCII-armored key blocks.
fn parse_keys(bytes: &[u8], path: &Path) -> Result<Vec<SignedPublicKey>> {
    let mut certs = Vec::new();
    let mut errors = Vec::new();
    let text = std::str::from_utf8(bytes).ok();
    if let Some(text) = text.filter(|t| t.trim_start().starts_with("-----BEGIN PGP")) {
        const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
        let blocks: Vec<&str> = text.match_indices(BEGIN).map(|(i, _)| &text[i..]).collect();
        if blocks.is_empty() {
            return Err(keyring_error(path, "armored file holds no PUBLIC KEY BLOCK"));
        }
        for block in blocks {
            match SignedPublicKey::from_armor_many(block.as_bytes()) {
                Ok((keys, _headers)) => {
                    for key in keys {
                        match key {
                            Ok(k) => certs.push(k),
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
    } else if bytes.get(8..12) == Some(b"KBXf") {
        return Err(keyring_error(
            path,
            "GnuPG keybox format is not supported; export the keys with `gpg --export` into a .gpg file",
        ));
    } else {
        match SignedPublicKey::from_bytes_many(BufReader::new(bytes)) {
            Ok(keys) => {
                for key in keys {
                    match key {
                        Ok(k) => certs.push(k),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if certs.is_empty() {
        let reason = match errors.first() {
            Some(e) => format!("no usable OpenPGP public key: {e}"),
            None => "no OpenPGP public key in the file".to_owned(),
        };
        return Err(keyring_error(path, reason));
    }
    for e in &errors {
        tracing::warn!(keyring = %path.display(), "skipping unreadable key: {e}");
    }
    Ok(certs)
}

impl Keyring {
    /// Loads every key of every file; any unreadable file or file without a key is an error.
    pub(crate) fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut ring = Self::default();
        for path in paths {
            ring.add_file(path)?;
        }
        Ok(ring)
    }

    /// Adds the keys of one file.
    pub(crate) fn add_file(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| keyring_error(path, format!("cannot read: {e}")))?;
        self.certs.extend(parse_keys(&bytes, path)?);
        self.origins.push(path.display().to_string());
        Ok(())
    }

    /// Adds the keys of an ASCII-armored block given inline (apt's deb822 `Signed-By`).
    pub(crate) fn add_armored(&mut self, text: &str, origin: &str) -> Result<()> {
        let path = PathBuf::from(origin);
        self.certs.extend(parse_keys(text.as_bytes(), &path)?);
        self.origins.push(origin.to_owned());
        Ok(())
    }

    /// Keeps only the keys whose primary key or a subkey has one of `fingerprints`
    /// (hex, any case; a trailing `!` is ignored).
    pub(crate) fn retain_fingerprints(&mut self, fingerprints: &[String]) {
        let wanted: Vec<String> = fingerprints
            .iter()
            .map(|f| f.trim_end_matches('!').to_ascii_lowercase())
            .collect();
        let matches = |fp: String| wanted.contains(&fp);
        self.certs.retain(|c| {
            matches(format!("{:x}", c.primary_key.fingerprint()))
                || c.public_subkeys
                    .iter()
                    .any(|s| matches(format!("{:x}", s.key.fingerprint())))
        });
        self.origins = vec![format!(
            "{} (fingerprints {})",
            self.origins.join(", "),
            wanted.join(", ")
        )];
    }

    /// Merges another keyring in.
    pub(crate) fn extend(&mut self, other: Keyring) {
        self.certs.extend(other.certs);
        self.origins.extend(other.origins);
    }

    /// Number of transferable public keys.
    pub(crate) fn len(&self) -> usize {
        self.certs.len()
    }

    /// The key files, for messages.
    pub(crate) fn describe(&self) -> String {
        if self.origins.is_empty() {
            "an empty keyring".to_owned()
        } else {
            format!("keyring {}", self.origins.join(", "))
        }
    }

    /// Whether any signature in `signatures` verifies over `data` with any key.
    fn verifies(&self, signatures: &[Signature], data: &[u8]) -> bool {
        fn by<K: VerifyingKey>(key: &K, signatures: &[Signature], data: &[u8]) -> bool {
            signatures.iter().any(|s| s.verify(key, data).is_ok())
        }
        self.certs.iter().any(|cert| {
            by(&cert.primary_key, signatures, data)
                || cert.public_subkeys.iter().any(|sub| {
                    by(&sub.key, signatures, data) && {
                        let bound = sub.verify_bindings(&cert.primary_key);
                        if let Err(e) = &bound {
                            tracing::warn!(
                                subkey = %format!("{:x}", sub.key.fingerprint()),
                                "signature by a subkey whose binding does not verify: {e}"
                            );
                        }
                        bound.is_ok()
                    }
                })
        })
    }

    /// Verifies a clear-signed message (an `InRelease` file) and returns the signed text
    /// exactly as verified (dash-escaping undone, `\r\n` line ends). Nothing outside the
    /// signed part is returned; leading or trailing data around the armor is rejected.
    pub(crate) fn verify_cleartext(&self, url: &str, bytes: &[u8]) -> Result<String> {
        let sig_error = |reason: String| FetchError::Signature {
            url: url.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| sig_error("not UTF-8 text".to_owned()))?;
        let (message, _headers) = CleartextSignedMessage::from_string(text)
            .map_err(|e| sig_error(format!("not a valid OpenPGP clear-signed message: {e}")))?;
        if message.signatures().is_empty() {
            return Err(sig_error("no signature".to_owned()));
        }
        let signed = message.signed_text();
        if self.verifies(message.signatures(), signed.as_bytes()) {
            Ok(signed)
        } else {
            Err(sig_error(format!(
                "none of its {} signature(s) verifies with any key in {}",
                message.signatures().len(),
                self.describe()
            )))
        }
    }

    /// Verifies a detached signature file (`Release.gpg`, armored or binary) over `data`.
    pub(crate) fn verify_detached(&self, url: &str, data: &[u8], signature: &[u8]) -> Result<()> {
        let sig_error = |reason: String| FetchError::Signature {
            url: url.to_owned(),
            reason,
        };
        let armored = signature.trim_ascii_start().starts_with(b"-----BEGIN PGP");
        let parsed: Vec<_> = if armored {
            DetachedSignature::from_armor_many(signature)
                .map_err(|e| sig_error(format!("unreadable signature file: {e}")))?
                .0
                .collect()
        } else {
            DetachedSignature::from_bytes_many(BufReader::new(signature))
                .map_err(|e| sig_error(format!("unreadable signature file: {e}")))?
                .collect()
        };
        let signatures: Vec<Signature> = parsed.into_iter().filter_map(|s| s.ok()).map(|s| s.signature).collect();
        if signatures.is_empty() {
            return Err(sig_error("the signature file holds no readable signature".to_owned()));
        }
        if self.verifies(&signatures, data) {
            Ok(())
        } else {
            Err(sig_error(format!(
                "none of the {} detached signature(s) verifies with any key in {}",
                signatures.len(),
                self.describe()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's apt lists, when it is a Debian system that ran `apt-get update`.
    fn real_inreleases() -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir("/var/lib/apt/lists")
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().ends_with("debian_dists_bookworm_InRelease"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    #[test]
    fn verifies_real_debian_inrelease_with_the_archive_keyring() {
        let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        let files = real_inreleases();
        if !keyring.is_file() || files.is_empty() {
            eprintln!("skipping: no debian-archive-keyring.gpg or no bookworm InRelease in /var/lib/apt/lists");
            return;
        }
        let ring = Keyring::load(&[keyring.to_owned()]).unwrap();
        assert!(ring.len() > 1, "the archive keyring holds several keys");
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let text = ring.verify_cleartext("InRelease", &bytes).unwrap();
            let release = crate::deb::Release::parse(&text).unwrap();
            assert!(!release.sha256.is_empty());
            let tampered = String::from_utf8(bytes)
                .unwrap()
                .replacen("Origin: Debian", "Origin: Debiam", 1);
            let err = ring.verify_cleartext("InRelease", tampered.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("none of its"), "{err}");
        }
    }

    #[test]
    fn reads_armored_trusted_keys() {
        let dir = Path::new("/etc/apt/trusted.gpg.d");
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!("skipping: no /etc/apt/trusted.gpg.d");
            return;
        };
        let files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "asc"))
            .collect();
        let real = real_inreleases();
        if files.is_empty() || real.is_empty() {
            eprintln!("skipping: no armored keys or no InRelease on this machine");
            return;
        }
        let ring = Keyring::load(&files).unwrap();
        ring.verify_cleartext("InRelease", &std::fs::read(&real[0]).unwrap())
            .unwrap();
    }

    #[test]
    fn rejects_files_without_keys() {
        let dir = std::env::temp_dir().join(format!("rebake-keyring-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.gpg");
        std::fs::write(&garbage, b"\x99\x00\x01garbage").unwrap();
        let err = Keyring::load(&[garbage]).unwrap_err().to_string();
        assert!(err.contains("garbage.gpg"), "{err}");
        let keybox = dir.join("trusted.gpg");
        std::fs::write(&keybox, b"\0\0\0\x20\x01\x01\0\0KBXf\0\0\0\0").unwrap();
        let err = Keyring::load(&[keybox]).unwrap_err().to_string();
        assert!(err.contains("keybox"), "{err}");
        let err = Keyring::load(&[dir.join("missing.gpg")]).unwrap_err().to_string();
        assert!(err.contains("missing.gpg") && err.contains("cannot read"), "{err}");
        let armored = dir.join("empty.asc");
        std::fs::write(
            &armored,
            "-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n",
        )
        .unwrap();
        assert!(Keyring::load(&[armored]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
