//! The repositories a feed configuration stands for, with their keys loaded: one Debian
//! repository per URI × suite, one apk repository per architecture.

use std::path::{Path, PathBuf};

use super::error::{FetchError, Result};
use super::openpgp::Keyring;
use super::source::{ApkFeed, DebianFeed, FeedSource, SystemFeed};
use crate::deb::sources::{AptSource, system_sources};

/// One Debian repository (an archive URI and a suite).
#[derive(Debug, Clone)]
pub(crate) struct DebRepo {
    /// The archive root, no trailing `/`.
    pub base: String,
    /// The suite; one ending in `/` is a flat repository.
    pub suite: String,
    /// Components; empty for a flat repository.
    pub components: Vec<String>,
    /// Debian architectures to read.
    pub architectures: Vec<String>,
    /// The trusted keys; `None` when the signature is deliberately not checked.
    pub keyring: Option<Keyring>,
    /// Whether a component/architecture the `Release` does not list is skipped (the system
    /// feed, like apt) instead of being an error (a configured feed).
    pub lenient: bool,
}

impl DebRepo {
    /// `<base>/dists/<suite>` or, for a flat repository, `<base>/<suite without />`.
    pub fn dist_url(&self) -> String {
        if self.is_flat() {
            let dir = self
                .suite
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            if dir.is_empty() {
                self.base.clone()
            } else {
                format!("{}/{dir}", self.base)
            }
        } else {
            format!("{}/dists/{}", self.base, self.suite)
        }
    }

    /// Whether the suite names a flat repository.
    pub fn is_flat(&self) -> bool {
        self.suite.ends_with('/')
    }

    /// The `InRelease` URL.
    pub fn inrelease_url(&self) -> String {
        format!("{}/InRelease", self.dist_url())
    }

    /// The `Release` URL.
    pub fn release_url(&self) -> String {
        format!("{}/Release", self.dist_url())
    }
}

/// One apk repository directory (`<url>/<arch>`).
#[derive(Debug, Clone)]
pub(crate) struct ApkRepo {
    /// `<url>/<arch>`, no trailing `/`.
    pub dir: String,
    /// The apk architecture.
    pub arch: String,
    /// `(key name, PEM)` pairs for [`crate::apk::verify_index_signature`].
    pub keys: Vec<(String, String)>,
}

impl ApkRepo {
    /// The `APKINDEX.tar.gz` URL.
    pub fn index_url(&self) -> String {
        format!("{}/APKINDEX.tar.gz", self.dir)
    }
}

/// A repository of either kind.
#[derive(Debug, Clone)]
pub(crate) enum Repo {
    /// Debian.
    Debian(DebRepo),
    /// apk.
    Apk(ApkRepo),
}

impl Repo {
    /// The URLs a validator of this repository's signed index may have: `InRelease` then
    /// `Release` for Debian, the `APKINDEX.tar.gz` for apk.
    pub fn index_urls(&self) -> Vec<String> {
        match self {
            Self::Debian(d) => vec![d.inrelease_url(), d.release_url()],
            Self::Apk(a) => vec![a.index_url()],
        }
    }
}

/// The repositories of `source`, keys loaded. Validates the configuration first.
pub(crate) fn plan(source: &FeedSource) -> Result<Vec<Repo>> {
    source.validate().map_err(FetchError::Config)?;
    match source {
        FeedSource::Debian(d) => Ok(vec![Repo::Debian(debian_repo(d)?)]),
        FeedSource::Apk(a) => apk_repos(a),
        FeedSource::System(s) => system_repos(s),
    }
}

fn debian_repo(d: &DebianFeed) -> Result<DebRepo> {
    let keyring = if d.insecure_skip_signature {
        None
    } else {
        Some(Keyring::load(&d.keyring)?)
    };
    Ok(DebRepo {
        base: d.url.trim_end_matches('/').to_owned(),
        suite: d.suite.clone(),
        components: d.components.clone(),
        architectures: d.architectures.clone(),
        keyring,
        lenient: false,
    })
}

fn apk_repos(a: &ApkFeed) -> Result<Vec<Repo>> {
    let mut keys = Vec::new();
    for path in &a.keys {
        let pem = std::fs::read_to_string(path).map_err(|e| FetchError::Keyring {
            path: path.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| FetchError::Config(format!("apk key path {} has no file name", path.display())))?;
        keys.push((name, pem));
    }
    let base = a.url.trim_end_matches('/');
    Ok(a.architectures
        .iter()
        .map(|arch| {
            Repo::Apk(ApkRepo {
                dir: format!("{base}/{arch}"),
                arch: arch.clone(),
                keys: keys.clone(),
            })
        })
        .collect())
}

/// `path` (absolute on the described machine) under `root`.
fn under_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// apt's default trusted keys under `root`: `etc/apt/trusted.gpg.d/*.{gpg,asc}` (in name
/// order) and `etc/apt/trusted.gpg`. Unreadable files are skipped with a warning.
fn default_keyring(root: &Path) -> Keyring {
    let mut files = Vec::new();
    let dir = root.join("etc/apt/trusted.gpg.d");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut listed: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("gpg" | "asc")))
            .collect();
        listed.sort();
        files.extend(listed);
    }
    let legacy = root.join("etc/apt/trusted.gpg");
    if legacy.is_file() {
        files.push(legacy);
    }
    let mut ring = Keyring::default();
    for file in files {
        if let Err(e) = ring.add_file(&file) {
            tracing::warn!("skipping trusted key file: {e}");
        }
    }
    ring
}

/// The keyring of one apt source: its `Signed-By` (key files, fingerprints selecting from
/// the default keys, or an inline armored key), else the default trusted keys.
fn source_keyring(root: &Path, source: &AptSource, default: &Keyring) -> Result<Keyring> {
    let Some(signed_by) = source.signed_by.as_deref() else {
        return Ok(default.clone());
    };
    let mut ring = Keyring::default();
    if signed_by.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        ring.add_armored(signed_by, &format!("{} (inline Signed-By key)", source.origin))?;
        return Ok(ring);
    }
    let mut fingerprints = Vec::new();
    for item in signed_by.split([',', ' ', '\t', '\n']).filter(|s| !s.is_empty()) {
        let hex = item.trim_end_matches('!');
        if !item.contains('/') && hex.len() >= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            fingerprints.push(item.to_owned());
        } else {
            ring.add_file(&under_root(root, item))?;
        }
    }
    if !fingerprints.is_empty() {
        let mut selected = default.clone();
        selected.retain_fingerprints(&fingerprints);
        ring.extend(selected);
    }
    Ok(ring)
}

fn system_repos(s: &SystemFeed) -> Result<Vec<Repo>> {
    let sources = system_sources(&s.root).map_err(|source| FetchError::Sources {
        root: s.root.clone(),
        source,
    })?;
    let wanted = s.effective_architectures();
    let default = default_keyring(&s.root);
    let mut repos = Vec::new();
    for source in &sources {
        let architectures: Vec<String> = if source.architectures.is_empty() {
            wanted.clone()
        } else {
            wanted
                .iter()
                .filter(|a| source.architectures.contains(a))
                .cloned()
                .collect()
        };
        if architectures.is_empty() {
            continue;
        }
        let keyring = source_keyring(&s.root, source, &default)?;
        if keyring.len() == 0 {
            return Err(FetchError::Keyring {
                path: s.root.join("etc/apt"),
                reason: format!(
                    "no trusted OpenPGP key for apt source {} ({})",
                    source.origin,
                    source.signed_by.as_deref().map_or_else(
                        || "no Signed-By; etc/apt/trusted.gpg.d and etc/apt/trusted.gpg hold no usable key".to_owned(),
                        |s| format!("Signed-By {s}")
                    )
                ),
            });
        }
        for uri in &source.uris {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                tracing::warn!(origin = %source.origin, "skipping apt source {uri}: only http and https are supported");
                continue;
            }
            for suite in &source.suites {
                repos.push(Repo::Debian(DebRepo {
                    base: uri.trim_end_matches('/').to_owned(),
                    suite: suite.clone(),
                    components: source.components.clone(),
                    architectures: architectures.clone(),
                    keyring: Some(keyring.clone()),
                    lenient: true,
                }));
            }
        }
    }
    if repos.is_empty() {
        return Err(FetchError::Config(format!(
            "system feed: no usable apt source under {} for {}",
            s.root.display(),
            wanted.join(", ")
        )));
    }
    Ok(repos)
}
