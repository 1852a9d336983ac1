//! The parsed advisory model shared by the OSV and secdb loaders.

use serde::{Deserialize, Serialize};

use super::Severity;
use crate::component::{Distro, Ecosystem};

/// One advisory: an OSV record, or one CVE of a secdb package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// Identifier (`GHSA-…`, `RUSTSEC-…`, `DSA-…`, `CVE-…`).
    pub id: String,
    /// Other identifiers of the same vulnerability.
    pub aliases: Vec<String>,
    /// Related upstream identifiers (OSV `upstream`, e.g. the CVEs a `DSA` fixes).
    pub upstream: Vec<String>,
    /// One-line summary (OSV `summary`, else the first line of `details`).
    pub summary: String,
    /// OSV `modified` timestamp, as written.
    pub modified: String,
    /// Severity: from the CVSS v3 vector when there is one, else from a textual severity.
    pub severity: Severity,
    /// CVSS v3 base score computed from [`Advisory::cvss_vector`].
    pub cvss_score: Option<f64>,
    /// The CVSS vector (v3 preferred, else v4), as written.
    pub cvss_vector: Option<String>,
    /// Affected packages in ecosystems Rebake knows (others are dropped at load).
    pub affected: Vec<Affected>,
    /// Where it was read from (file path, or `archive.zip!entry.json`).
    pub source: String,
}

/// One affected package of an advisory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The package ecosystem.
    pub ecosystem: Ecosystem,
    /// The release suffix of the OSV ecosystem string (`12` of `Debian:12`, `v3.19` of
    /// `Alpine:v3.19`, `22.04` of `Ubuntu:22.04:LTS`); `None` matches any release.
    pub release: Option<String>,
    /// Package name as the advisory writes it.
    pub name: String,
    /// Package URL, when the advisory gives one.
    pub purl: Option<String>,
    /// Version ranges.
    pub ranges: Vec<Range>,
    /// Explicitly listed affected versions.
    pub versions: Vec<String>,
    /// Severity given for this package only (`ecosystem_specific`/`database_specific`).
    pub severity: Option<Severity>,
}

/// How a range's event versions are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeKind {
    /// The ecosystem's own ordering.
    Ecosystem,
    /// SemVer 2.0 ordering.
    Semver,
    /// Git commits: not evaluable against package versions, kept for completeness.
    Git,
}

/// An OSV range: events in the order written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// The ordering of the event versions.
    pub kind: RangeKind,
    /// Events.
    pub events: Vec<Event>,
}

/// An OSV range event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Versions from here on are affected (`"0"`: from the beginning).
    Introduced(String),
    /// Versions from here on are not affected.
    Fixed(String),
    /// The last affected version (versions after it are not affected).
    LastAffected(String),
    /// Versions from here on are outside the range.
    Limit(String),
}

impl Event {
    /// The version the event names.
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

/// Parses an OSV ecosystem string into an ecosystem Rebake matches and its release
/// suffix: `Debian:12` → (Debian, `12`), `Alpine:v3.19` → (Alpine, `v3.19`),
/// `Ubuntu:22.04:LTS` → (Ubuntu, `22.04`). Ubuntu Pro records (`Ubuntu:Pro:…`) and
/// unknown ecosystems give `None`.
pub fn parse_ecosystem(text: &str) -> Option<(Ecosystem, Option<String>)> {
    let text = text.trim();
    let (base, suffix) = match text.split_once(':') {
        Some((base, suffix)) => (base, Some(suffix)),
        None => (text, None),
    };
    let ecosystem = match base {
        "Debian" => Ecosystem::Debian,
        "Ubuntu" => Ecosystem::Ubuntu,
        "Alpine" => Ecosystem::Alpine,
        "Wolfi" => Ecosystem::Wolfi,
        "crates.io" => Ecosystem::CratesIo,
        "npm" => Ecosystem::Npm,
        "PyPI" => Ecosystem::PyPi,
        "Go" => Ecosystem::Go,
        _ => return None,
    };
    let release = match suffix {
        None => None,
        Some(suffix) if ecosystem == Ecosystem::Ubuntu => {
            let mut parts = suffix.split(':');
            let first = parts.next().unwrap_or_default();
            if first.eq_ignore_ascii_case("pro") {
                return None;
            }
            Some(first.to_owned())
        }
        Some(suffix) => Some(suffix.to_owned()),
    };
    Some((ecosystem, release.filter(|release| !release.is_empty())))
}

/// Whether an advisory release suffix applies to a component's distribution. No suffix,
/// or no known distribution, matches. Otherwise the suffix (without a leading `v`) must
/// equal the distribution's `VERSION_ID` or be a dotted prefix of it (`v3.19` matches
/// `3.19.1`, `12` matches `12`, but `3.1` does not match `3.19.1`).
pub fn release_matches(release: Option<&str>, distro: Option<&Distro>) -> bool {
    let (Some(release), Some(distro)) = (release, distro) else {
        return true;
    };
    let release = release.trim().trim_start_matches('v');
    let version_id = distro.version_id.trim().trim_start_matches('v');
    if version_id.is_empty() {
        // Rolling releases (edge, sid) carry no version: only codename-like suffixes
        // could match, and those are not comparable; accept.
        return true;
    }
    version_id == release
        || version_id
            .strip_prefix(release)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystem_strings() {
        assert_eq!(
            parse_ecosystem("Debian:12"),
            Some((Ecosystem::Debian, Some("12".into())))
        );
        assert_eq!(
            parse_ecosystem("Alpine:v3.19"),
            Some((Ecosystem::Alpine, Some("v3.19".into())))
        );
        assert_eq!(
            parse_ecosystem("Ubuntu:22.04:LTS"),
            Some((Ecosystem::Ubuntu, Some("22.04".into())))
        );
        assert_eq!(parse_ecosystem("Ubuntu:Pro:18.04:LTS"), None);
        assert_eq!(parse_ecosystem("npm"), Some((Ecosystem::Npm, None)));
        assert_eq!(parse_ecosystem("Maven"), None);
    }

    #[test]
    fn releases() {
        let distro = |id: &str, v: &str| Distro {
            id: id.into(),
            version_id: v.into(),
        };
        assert!(release_matches(Some("12"), Some(&distro("debian", "12"))));
        assert!(!release_matches(Some("11"), Some(&distro("debian", "12"))));
        assert!(release_matches(Some("v3.19"), Some(&distro("alpine", "3.19.1"))));
        assert!(!release_matches(Some("v3.1"), Some(&distro("alpine", "3.19.1"))));
        assert!(release_matches(None, Some(&distro("debian", "12"))));
        assert!(release_matches(Some("12"), None));
    }
}
