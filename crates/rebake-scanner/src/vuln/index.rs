//! Advisories indexed by (ecosystem, package name).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::advisory::Advisory;
use super::pep440::normalize_pypi_name;
use crate::component::{Component, Ecosystem};

/// Advisories indexed by (ecosystem, normalised package name), with a digest of the set.
#[derive(Debug, Clone, Default)]
pub struct AdvisoryIndex {
    advisories: Vec<Advisory>,
    by_package: HashMap<(Ecosystem, String), Vec<(usize, usize)>>,
    digest: String,
}

/// Normalises a package name for lookups: PEP 503 for PyPI, lowercase for crates.io
/// (whose names are case-insensitive), as written elsewhere (npm scoped names and Go
/// module paths are case-sensitive).
pub fn normalize_name(ecosystem: Ecosystem, name: &str) -> String {
    match ecosystem {
        Ecosystem::PyPi => normalize_pypi_name(name),
        Ecosystem::CratesIo => name.trim().to_ascii_lowercase(),
        _ => name.trim().to_owned(),
    }
}

/// The name a component's advisories are written against: the source package for
/// Debian, Ubuntu, Alpine and Wolfi (falling back to the binary name), else the name.
pub fn lookup_name(component: &Component) -> &str {
    if component.ecosystem.is_os() {
        component
            .source_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&component.name)
    } else {
        &component.name
    }
}

impl AdvisoryIndex {
    /// Builds an index. The digest does not depend on the order of `advisories`.
    pub fn new(advisories: impl IntoIterator<Item = Advisory>) -> Self {
        let mut keyed: Vec<([u8; 32], Advisory)> = advisories
            .into_iter()
            .map(|advisory| {
                // Content only: the same records read from a directory or a zip digest
                // alike. The model serialises infallibly (strings, numbers, enums).
                let body = serde_json::to_vec(&Advisory {
                    source: String::new(),
                    ..advisory.clone()
                })
                .unwrap_or_default();
                (Sha256::digest(&body).into(), advisory)
            })
            .collect();
        // Digest order makes the index itself independent of the load order.
        keyed.sort_by_key(|(digest, _)| *digest);
        let digests: Vec<[u8; 32]> = keyed.iter().map(|(digest, _)| *digest).collect();
        let advisories: Vec<Advisory> = keyed.into_iter().map(|(_, advisory)| advisory).collect();
        let mut hasher = Sha256::new();
        hasher.update(b"rebake-advisories-v1\n");
        for digest in &digests {
            hasher.update(digest);
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        let mut by_package: HashMap<(Ecosystem, String), Vec<(usize, usize)>> = HashMap::new();
        for (a, advisory) in advisories.iter().enumerate() {
            for (f, affected) in advisory.affected.iter().enumerate() {
                let key = (affected.ecosystem, normalize_name(affected.ecosystem, &affected.name));
                let slot = by_package.entry(key).or_default();
                if !slot.contains(&(a, f)) {
                    slot.push((a, f));
                }
            }
        }
        Self {
            advisories,
            by_package,
            digest,
        }
    }

    /// A stable digest (`sha256:…`) of the advisory set: equal sets give equal digests
    /// whatever their load order; any change to any advisory changes it.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The indexed advisories.
    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// Number of advisories.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    /// Whether the index holds no advisory.
    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// The (advisory, affected entry) pairs for a package, by index into
    /// [`AdvisoryIndex::advisories`] and its `affected` list.
    pub fn lookup(&self, ecosystem: Ecosystem, name: &str) -> &[(usize, usize)] {
        self.by_package
            .get(&(ecosystem, normalize_name(ecosystem, name)))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}
