//! A verified point-in-time view of a feed: its packages per architecture, a digest, and the
//! HTTP validators a poll needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{FetchError, Result};
use crate::apk::ApkPackage;
use crate::deb::{Package, Version};

/// The HTTP validators of one signed index file (`InRelease`, `Release` or
/// `APKINDEX.tar.gz`), as last fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexValidator {
    /// The file's URL.
    pub url: String,
    /// The `ETag` response header, verbatim (quotes included).
    pub etag: Option<String>,
    /// The `Last-Modified` response header, verbatim.
    pub last_modified: Option<String>,
    /// Lower-case hex sha256 of the bytes.
    pub sha256: String,
}

/// One package chosen by [`FeedSnapshot::resolve`], with where to download it and how to
/// check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPackage {
    /// Package name.
    pub name: String,
    /// Version, as in the index.
    pub version: String,
    /// The package's own architecture (`amd64`, `all`, `x86_64`, `noarch`, ...).
    pub architecture: String,
    /// The expected checksum of the downloaded file: lower-case hex sha256 for Debian;
    /// `q1:<base64 sha1>` for apk, where the index only has apk's `C:` checksum (the sha1
    /// of the package's control section, which in turn holds the data section's sha256).
    pub sha256: String,
    /// The size of the file in bytes (0 when an apk index omits `S:`).
    pub size: u64,
    /// Absolute download URL.
    pub url: String,
}

/// One package whose highest version differs between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageChange {
    /// Package name.
    pub name: String,
    /// The feed architecture it was compared under.
    pub architecture: String,
    /// The highest version before; `None` when the package is new.
    pub old_version: Option<String>,
    /// The highest version now; `None` when the package is gone.
    pub new_version: Option<String>,
}

/// Packages of one architecture: the union over all of the feed's repositories, in a fixed
/// order (repository order, then component order), each with the base URL its download
/// paths are relative to.
#[derive(Debug, Clone)]
pub(crate) enum ArchIndex {
    /// Debian: `Filename` is relative to `bases[origin]`.
    Debian {
        /// The packages (`all` ones included).
        packages: Vec<Package>,
        /// Per package, an index into `bases`.
        origins: Vec<usize>,
        /// Repository roots (archive URIs), no trailing `/`.
        bases: Vec<String>,
    },
    /// apk: the file is `<bases[origin]>/<name>-<version>.apk`.
    Apk {
        /// The packages.
        packages: Vec<ApkPackage>,
        /// Per package, an index into `bases`.
        origins: Vec<usize>,
        /// Per repository, `<url>/<arch>`, no trailing `/`.
        bases: Vec<String>,
    },
}

impl ArchIndex {
    fn len(&self) -> usize {
        match self {
            Self::Debian { packages, .. } => packages.len(),
            Self::Apk { packages, .. } => packages.len(),
        }
    }

    /// Highest version per name.
    fn versions(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self {
            Self::Debian { packages, .. } => {
                let mut best: BTreeMap<&str, &Version> = BTreeMap::new();
                for p in packages {
                    let entry = best.entry(p.name.as_str()).or_insert(&p.version);
                    if p.version > **entry {
                        *entry = &p.version;
                    }
                }
                out.extend(best.into_iter().map(|(n, v)| (n.to_owned(), v.to_string())));
            }
            Self::Apk { packages, .. } => {
                let mut best: BTreeMap<&str, &crate::apk::ApkVersion> = BTreeMap::new();
                for p in packages {
                    let entry = best.entry(p.name.as_str()).or_insert(&p.version);
                    if p.version > **entry {
                        *entry = &p.version;
                    }
                }
                out.extend(best.into_iter().map(|(n, v)| (n.to_owned(), v.to_string())));
            }
        }
        out
    }
}

/// The position of `item` in `slice`, by address (the resolvers hand back references
/// into the slice they were given).
fn position_of<T>(slice: &[T], item: &T) -> Option<usize> {
    let size = std::mem::size_of::<T>().max(1);
    let start = slice.as_ptr() as usize;
    let at = (item as *const T as usize).checked_sub(start)?;
    let index = at / size;
    (at % size == 0 && index < slice.len() && std::ptr::eq(&slice[index], item)).then_some(index)
}

/// A verified view of a feed at one moment. Cheap to clone (the package lists are shared).
#[derive(Debug, Clone)]
pub struct FeedSnapshot {
    /// The feed's name (from the configuration).
    pub name: String,
    /// `sha256:<hex>` over the verified signed index files of all repositories in a fixed
    /// order: for each, its URL, a newline, its hex sha256 and a newline. Equal digests
    /// mean the feed served the very same `InRelease`/`Release`/`APKINDEX` files.
    pub digest: String,
    /// The validators of each signed index file, in the same fixed order.
    pub validators: Vec<IndexValidator>,
    pub(crate) arches: Arc<BTreeMap<String, ArchIndex>>,
}

impl FeedSnapshot {
    pub(crate) fn new(name: &str, validators: Vec<IndexValidator>, arches: BTreeMap<String, ArchIndex>) -> Self {
        use sha2::{Digest as _, Sha256};
        let mut hasher = Sha256::new();
        for v in &validators {
            hasher.update(v.url.as_bytes());
            hasher.update(b"\n");
            hasher.update(v.sha256.as_bytes());
            hasher.update(b"\n");
        }
        Self {
            name: name.to_owned(),
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            validators,
            arches: Arc::new(arches),
        }
    }

    /// The architectures the snapshot has packages for (feed naming: `amd64`, `x86_64`).
    pub fn architectures(&self) -> Vec<String> {
        self.arches.keys().cloned().collect()
    }

    /// How many index entries an architecture has (0 when absent).
    pub fn package_count(&self, arch: &str) -> usize {
        self.arches.get(arch).map_or(0, ArchIndex::len)
    }

    /// Resolves `install` (names, `name=version` pins for Debian, apk atoms such as
    /// `busybox` or `musl>=1.2` for apk) for `arch` into a closed set sorted by name,
    /// using [`crate::deb::resolve()`] or [`crate::apk::resolve()`] over the union of the
    /// feed's repositories. Debian candidates are packages of `arch` or `all`; apk ones of
    /// `arch` or `noarch`. The error names the failing dependency chain.
    pub fn resolve(&self, arch: &str, install: &[String]) -> Result<Vec<ResolvedPackage>, FetchError> {
        let index = self.arches.get(arch).ok_or_else(|| FetchError::Architecture {
            feed: self.name.clone(),
            architecture: arch.to_owned(),
            available: self.architectures().join(", "),
        })?;
        let resolve_error = |reason: String| FetchError::Resolve {
            feed: self.name.clone(),
            architecture: arch.to_owned(),
            reason,
        };
        let mut out = match index {
            ArchIndex::Debian {
                packages,
                origins,
                bases,
            } => {
                let chosen = crate::deb::resolve(packages, arch, install).map_err(|e| resolve_error(e.to_string()))?;
                chosen
                    .into_iter()
                    .map(|p| {
                        let base = position_of(packages, p)
                            .and_then(|i| origins.get(i))
                            .and_then(|&o| bases.get(o))
                            .ok_or_else(|| resolve_error(format!("internal: {} has no repository", p.name)))?;
                        Ok(ResolvedPackage {
                            name: p.name.clone(),
                            version: p.version.to_string(),
                            architecture: p.architecture.clone(),
                            sha256: p.sha256.clone(),
                            size: p.size,
                            url: format!("{base}/{}", p.filename.trim_start_matches('/')),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            ArchIndex::Apk {
                packages,
                origins,
                bases,
            } => {
                let chosen = crate::apk::resolve(packages, arch, install).map_err(|e| resolve_error(e.to_string()))?;
                chosen
                    .into_iter()
                    .map(|p| {
                        let base = position_of(packages, p)
                            .and_then(|i| origins.get(i))
                            .and_then(|&o| bases.get(o))
                            .ok_or_else(|| resolve_error(format!("internal: {} has no repository", p.name)))?;
                        let checksum = p
                            .checksum
                            .as_deref()
                            .and_then(|c| c.strip_prefix("Q1"))
                            .ok_or_else(|| {
                                resolve_error(format!(
                                    "{} has no Q1 checksum (C:) in the index; it cannot be verified",
                                    p.id()
                                ))
                            })?;
                        Ok(ResolvedPackage {
                            name: p.name.clone(),
                            version: p.version.to_string(),
                            architecture: p.arch.clone(),
                            sha256: format!("q1:{checksum}"),
                            size: p.size.unwrap_or(0),
                            url: format!("{base}/{}-{}.apk", p.name, p.version),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The highest version of every package name, per architecture: `(arch, name) → version`.
    pub fn versions(&self) -> BTreeMap<(String, String), String> {
        let mut out = BTreeMap::new();
        for (arch, index) in self.arches.iter() {
            for (name, version) in index.versions() {
                out.insert((arch.clone(), name), version);
            }
        }
        out
    }

    /// What changed since `previous` (everything is new when there is none), by highest
    /// version per architecture and name; see [`diff_versions`].
    pub fn diff(&self, previous: Option<&FeedSnapshot>) -> Vec<PackageChange> {
        let old = previous.map(FeedSnapshot::versions).unwrap_or_default();
        diff_versions(&old, &self.versions())
    }
}

/// The packages whose highest version differs between two [`FeedSnapshot::versions`] maps
/// (added, removed or changed), sorted by architecture, then name.
pub fn diff_versions(
    old: &BTreeMap<(String, String), String>,
    new: &BTreeMap<(String, String), String>,
) -> Vec<PackageChange> {
    let mut out = Vec::new();
    for ((arch, name), version) in new {
        let before = old.get(&(arch.clone(), name.clone()));
        if before != Some(version) {
            out.push(PackageChange {
                name: name.clone(),
                architecture: arch.clone(),
                old_version: before.cloned(),
                new_version: Some(version.clone()),
            });
        }
    }
    for ((arch, name), version) in old {
        if !new.contains_key(&(arch.clone(), name.clone())) {
            out.push(PackageChange {
                name: name.clone(),
                architecture: arch.clone(),
                old_version: Some(version.clone()),
                new_version: None,
            });
        }
    }
    out.sort_by(|a, b| (&a.architecture, &a.name).cmp(&(&b.architecture, &b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_by_address() {
        let v = vec![String::from("a"), String::from("b"), String::from("c")];
        assert_eq!(position_of(&v, &v[2]), Some(2));
        let other = String::from("b");
        assert_eq!(position_of(&v, &other), None);
    }

    #[test]
    fn diff_names_added_removed_changed() {
        let key = |a: &str, n: &str| (a.to_owned(), n.to_owned());
        let old = BTreeMap::from([
            (key("amd64", "a"), "1".to_owned()),
            (key("amd64", "b"), "1".to_owned()),
            (key("amd64", "gone"), "1".to_owned()),
        ]);
        let new = BTreeMap::from([
            (key("amd64", "a"), "1".to_owned()),
            (key("amd64", "b"), "2".to_owned()),
            (key("amd64", "new"), "3".to_owned()),
        ]);
        let d = diff_versions(&old, &new);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].name, "b");
        assert_eq!(d[0].old_version.as_deref(), Some("1"));
        assert_eq!(d[0].new_version.as_deref(), Some("2"));
        assert_eq!(d[1].name, "gone");
        assert_eq!(d[1].new_version, None);
        assert_eq!(d[2].name, "new");
        assert_eq!(d[2].old_version, None);
    }
}
