//! Alpine / Wolfi security databases (`secdb`): per package, the fixed version of each
//! CVE. Versions below the fixed one are affected; the `"0"` key lists CVEs that never
//! affected the package (nothing to match).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::Severity;
use super::advisory::{Advisory, Affected, Event, Range, RangeKind};
use super::error::{Result, VulnError};
use crate::component::Ecosystem;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSecdb {
    distroversion: String,
    urlprefix: String,
    apkurl: String,
    packages: Vec<RawEntry>,
    // The per-package layout of some mirrors: the package fields at the top level.
    name: String,
    secfixes: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawEntry {
    pkg: RawPackage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPackage {
    name: String,
    secfixes: BTreeMap<String, Value>,
}

/// Reads a secdb file (`{"distroversion": "v3.19", "reponame": "main", "packages": [...]}`,
/// or the one-package-per-file layout with `name`/`secfixes` at the top level). The
/// ecosystem is Wolfi when the file's URLs point at Wolfi or it has no `distroversion`,
/// else Alpine; see [`load_secdb_as`] to say it explicitly.
pub fn load_secdb(path: impl AsRef<Path>) -> Result<Vec<Advisory>> {
    load(path.as_ref(), None)
}

/// Reads a secdb file as advisories for `ecosystem` (Alpine or Wolfi).
pub fn load_secdb_as(path: impl AsRef<Path>, ecosystem: Ecosystem) -> Result<Vec<Advisory>> {
    load(path.as_ref(), Some(ecosystem))
}

fn load(path: &Path, ecosystem: Option<Ecosystem>) -> Result<Vec<Advisory>> {
    let bytes = std::fs::read(path).map_err(|source| VulnError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_secdb(&bytes, &path.display().to_string(), ecosystem).map_err(|error| match error {
        SecdbError::Json(source) => VulnError::Json {
            path: path.to_owned(),
            source,
        },
        SecdbError::Invalid(reason) => VulnError::Invalid {
            path: path.to_owned(),
            reason,
        },
    })
}

/// Why secdb bytes were rejected.
#[derive(Debug)]
pub enum SecdbError {
    /// Not JSON of the secdb shape.
    Json(serde_json::Error),
    /// JSON, but not usable (e.g. an ecosystem other than Alpine/Wolfi was asked for).
    Invalid(String),
}

/// Parses secdb JSON; `ecosystem` forces Alpine or Wolfi (else it is detected).
pub fn parse_secdb(
    bytes: &[u8],
    source: &str,
    ecosystem: Option<Ecosystem>,
) -> std::result::Result<Vec<Advisory>, SecdbError> {
    let raw: RawSecdb = serde_json::from_slice(bytes).map_err(SecdbError::Json)?;
    let ecosystem = match ecosystem {
        Some(e @ (Ecosystem::Alpine | Ecosystem::Wolfi)) => e,
        Some(other) => {
            return Err(SecdbError::Invalid(format!(
                "secdb advisories are for Alpine or Wolfi, not {}",
                other.osv_name()
            )));
        }
        None => {
            let wolfi = raw.urlprefix.contains("wolfi") || raw.apkurl.contains("wolfi");
            if wolfi || raw.distroversion.trim().is_empty() {
                Ecosystem::Wolfi
            } else {
                Ecosystem::Alpine
            }
        }
    };
    let release = match ecosystem {
        Ecosystem::Alpine => Some(raw.distroversion.trim().to_owned()).filter(|r| !r.is_empty()),
        _ => None,
    };
    let mut packages: Vec<RawPackage> = raw.packages.into_iter().map(|entry| entry.pkg).collect();
    if !raw.name.is_empty() {
        packages.push(RawPackage {
            name: raw.name,
            secfixes: raw.secfixes,
        });
    }
    let mut advisories = Vec::new();
    for package in packages {
        let name = package.name.trim();
        if name.is_empty() {
            continue;
        }
        // CVE → fixed versions (a CVE may be listed under several).
        let mut fixes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (fixed, ids) in &package.secfixes {
            if fixed.trim() == "0" {
                continue;
            }
            let ids = ids.as_array().map(Vec::as_slice).unwrap_or_default();
            for id in ids.iter().filter_map(Value::as_str) {
                // Entries may carry trailing words (`CVE-2019-1551 foo`); the id is first.
                if let Some(id) = id.split_whitespace().next() {
                    fixes.entry(id.to_owned()).or_default().push(fixed.trim().to_owned());
                }
            }
        }
        for (id, fixed_versions) in fixes {
            let mut events = vec![Event::Introduced("0".to_owned())];
            events.extend(fixed_versions.into_iter().map(Event::Fixed));
            advisories.push(Advisory {
                id,
                aliases: Vec::new(),
                upstream: Vec::new(),
                summary: String::new(),
                modified: String::new(),
                severity: Severity::Unknown,
                cvss_score: None,
                cvss_vector: None,
                affected: vec![Affected {
                    ecosystem,
                    release: release.clone(),
                    name: name.to_owned(),
                    purl: None,
                    ranges: vec![Range {
                        kind: RangeKind::Ecosystem,
                        events,
                    }],
                    versions: Vec::new(),
                    severity: None,
                }],
                source: source.to_owned(),
            });
        }
    }
    Ok(advisories)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_key_is_not_affected() {
        let json = br#"{"distroversion": "v3.19", "reponame": "main", "packages": [
            {"pkg": {"name": "openssl", "secfixes": {"3.1.4-r1": ["CVE-2023-5678"], "0": ["CVE-2022-1292"]}}}]}"#;
        let advisories = parse_secdb(json, "t", None).unwrap();
        assert_eq!(advisories.len(), 1);
        assert_eq!(advisories[0].id, "CVE-2023-5678");
        assert_eq!(advisories[0].affected[0].ecosystem, Ecosystem::Alpine);
        assert_eq!(advisories[0].affected[0].release.as_deref(), Some("v3.19"));
    }

    #[test]
    fn wolfi_detected_and_forced() {
        let json = br#"{"apkurl": "{{urlprefix}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
            "urlprefix": "https://packages.wolfi.dev", "reponame": "os",
            "packages": [{"pkg": {"name": "curl", "secfixes": {"8.4.0-r0": ["CVE-2023-38545"]}}}]}"#;
        let advisories = parse_secdb(json, "t", None).unwrap();
        assert_eq!(advisories[0].affected[0].ecosystem, Ecosystem::Wolfi);
        assert_eq!(advisories[0].affected[0].release, None);
        assert!(parse_secdb(json, "t", Some(Ecosystem::Npm)).is_err());
    }
}
