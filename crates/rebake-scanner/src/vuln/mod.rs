//! Vulnerabilities: OSV and secdb advisories, matched with each ecosystem's version rules.
//!
//! Load advisories with [`load_osv_dir`], [`load_osv_zip`] or [`load_secdb`], index them
//! with [`AdvisoryIndex::new`], and match an image's [`Component`]s with
//! [`match_components`] — or through a [`LayerCache`], which re-matches only layers it
//! has not seen with the same advisory set.
//!
//! Matching: a component is looked up by its ecosystem and name (the source package for
//! Debian, Ubuntu, Alpine and Wolfi); an advisory's release suffix (`Debian:12`) must fit
//! the component's distribution; then its `versions[]` and ranges decide, `ECOSYSTEM`
//! ranges with the ecosystem's ordering (dpkg, apk, SemVer, PEP 440, Go) and `SEMVER`
//! ranges with SemVer. `GIT` ranges are not evaluated.

mod advisory;
mod cache;
pub mod cvss;
mod error;
mod index;
mod osv;
pub mod pep440;
mod secdb;
pub mod version;

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub use advisory::{Advisory, Affected, Event, Range, RangeKind, parse_ecosystem, release_matches};
pub use cache::LayerCache;
pub use error::{Result, VulnError};
pub use index::{AdvisoryIndex, lookup_name, normalize_name};
pub use osv::{load_osv_dir, load_osv_file, load_osv_zip, parse_osv};
pub use secdb::{SecdbError, load_secdb, load_secdb_as, parse_secdb};

use crate::component::{Component, Ecosystem};
use version::{ecosystem_compare, go_compare, semver_compare, versions_equal};

/// Qualitative severity (CVSS v3 rating scale), or `Unknown` when the advisory gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Severity not given.
    Unknown,
    /// CVSS 0.0.
    None,
    /// CVSS 0.1–3.9.
    Low,
    /// CVSS 4.0–6.9.
    Medium,
    /// CVSS 7.0–8.9.
    High,
    /// CVSS 9.0–10.0.
    Critical,
}

impl Severity {
    /// Lowercase name (`critical`, `unknown`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// An advisory that applies to an installed component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Advisory identifier.
    pub id: String,
    /// Other identifiers (merged from duplicates found through aliases).
    pub aliases: Vec<String>,
    /// Advisory summary.
    pub summary: String,
    /// Severity.
    pub severity: Severity,
    /// CVSS v3 base score, when the advisory has a v3 vector.
    pub cvss_score: Option<f64>,
    /// CVSS vector, as written.
    pub cvss_vector: Option<String>,
    /// The component's ecosystem.
    pub ecosystem: Ecosystem,
    /// The component's (installed) package name.
    pub package: String,
    /// The installed version.
    pub installed_version: String,
    /// The lowest fixed version above the installed one, if any.
    pub fixed_version: Option<String>,
    /// Digest of the layer the component came from.
    pub layer: String,
    /// The file the component was read from.
    pub location: String,
    /// The component's package URL.
    pub purl: String,
}

/// Matches components against the index; findings are sorted and deduplicated (one
/// finding per component and vulnerability, advisories linked by aliases counting once).
pub fn match_components(index: &AdvisoryIndex, components: &[Component]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for component in components {
        findings.extend(match_component(index, component));
    }
    finalize(findings)
}

/// Matches one component (unsorted, not deduplicated).
fn match_component(index: &AdvisoryIndex, component: &Component) -> Vec<Finding> {
    let ecosystem = component.ecosystem;
    let installed = component.version.trim();
    // Advisory index → lowest fixed version seen for it.
    let mut hits: Vec<(usize, Option<String>, Option<Severity>)> = Vec::new();
    for &(a, f) in index.lookup(ecosystem, lookup_name(component)) {
        let advisory = &index.advisories()[a];
        let affected = &advisory.affected[f];
        if affected.ecosystem != ecosystem || !release_matches(affected.release.as_deref(), component.distro.as_ref()) {
            continue;
        }
        let Some(fixed) = affects(ecosystem, affected, installed) else {
            continue;
        };
        match hits.iter_mut().find(|(seen, _, _)| *seen == a) {
            Some((_, best, _)) => *best = lowest(ecosystem, best.take(), fixed),
            None => hits.push((a, fixed, affected.severity)),
        }
    }
    hits.into_iter()
        .map(|(a, fixed_version, package_severity)| {
            let advisory = &index.advisories()[a];
            let severity = match (advisory.severity, package_severity) {
                (Severity::Unknown, Some(severity)) => severity,
                (severity, _) => severity,
            };
            Finding {
                id: advisory.id.clone(),
                aliases: advisory.aliases.clone(),
                summary: advisory.summary.clone(),
                severity,
                cvss_score: advisory.cvss_score,
                cvss_vector: advisory.cvss_vector.clone(),
                ecosystem,
                package: component.name.clone(),
                installed_version: installed.to_owned(),
                fixed_version,
                layer: component.layer.clone(),
                location: component.location.clone(),
                purl: component.purl.clone(),
            }
        })
        .collect()
}

/// Whether `installed` is affected; `Some(fixed)` with the lowest fixed version above it.
fn affects(ecosystem: Ecosystem, affected: &Affected, installed: &str) -> Option<Option<String>> {
    let listed = affected
        .versions
        .iter()
        .any(|v| versions_equal(ecosystem, v, installed));
    let mut in_range = false;
    let mut fixed: Option<String> = None;
    for range in &affected.ranges {
        let Some((hit, next_fix)) = evaluate_range(ecosystem, range, installed) else {
            continue;
        };
        if hit || listed {
            in_range |= hit;
            if let Some(next_fix) = next_fix {
                fixed = lowest(ecosystem, fixed, Some(next_fix));
            }
        }
    }
    (listed || in_range).then_some(fixed)
}

/// The comparison a range uses.
fn range_compare(ecosystem: Ecosystem, kind: RangeKind, a: &str, b: &str) -> Option<Ordering> {
    match kind {
        RangeKind::Ecosystem => ecosystem_compare(ecosystem, a, b),
        RangeKind::Semver if ecosystem == Ecosystem::Go => go_compare(a, b),
        RangeKind::Semver => semver_compare(a, b),
        RangeKind::Git => None,
    }
}

/// Evaluates one range per the OSV algorithm (events sorted by version, `introduced: 0`
/// first). Returns whether `installed` is inside, and the lowest `fixed` event above it;
/// `None` when the range cannot be evaluated (GIT, or an unparsable installed version).
fn evaluate_range(ecosystem: Ecosystem, range: &Range, installed: &str) -> Option<(bool, Option<String>)> {
    let cmp = |a: &str, b: &str| range_compare(ecosystem, range.kind, a, b);
    cmp(installed, installed)?;
    let is_zero = |event: &Event| matches!(event, Event::Introduced(v) if v == "0");
    let mut events: Vec<&Event> = range
        .events
        .iter()
        .filter(|event| is_zero(event) || cmp(event.version(), event.version()).is_some())
        .collect();
    events.sort_by(|a, b| match (is_zero(a), is_zero(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => cmp(a.version(), b.version()).unwrap_or(Ordering::Equal),
    });
    let mut affected = false;
    let mut next_fix: Option<&str> = None;
    for event in events {
        let at_or_above = |v: &str| cmp(installed, v).is_some_and(Ordering::is_ge);
        match event {
            Event::Introduced(v) => {
                if v == "0" || at_or_above(v) {
                    affected = true;
                }
            }
            Event::Fixed(v) => {
                if at_or_above(v) {
                    affected = false;
                } else if next_fix.is_none() {
                    next_fix = Some(v);
                }
            }
            Event::LastAffected(v) => {
                if cmp(installed, v).is_some_and(Ordering::is_gt) {
                    affected = false;
                }
            }
            Event::Limit(v) => {
                if at_or_above(v) {
                    affected = false;
                }
            }
        }
    }
    Some((affected, next_fix.map(str::to_owned)))
}

/// The lower of two optional versions in `ecosystem`'s ordering.
fn lowest(ecosystem: Ecosystem, a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let a_first = ecosystem_compare(ecosystem, &a, &b)
                .or_else(|| semver_compare(&a, &b))
                .is_none_or(|ordering| ordering.is_le());
            Some(if a_first { a } else { b })
        }
        (a, b) => a.or(b),
    }
}

/// Identifies a component within findings: ecosystem, package, version, layer, location, purl.
type ComponentKey = (Ecosystem, String, String, String, String, String);

/// Sorts findings and merges duplicates: for one component (ecosystem, package, version,
/// layer, location, purl), findings whose identifier sets (id plus aliases) overlap are
/// one vulnerability. The kept finding is the one with a CVSS score, then the highest
/// severity, then the smallest id; the others' ids and aliases become its aliases.
pub(crate) fn finalize(findings: Vec<Finding>) -> Vec<Finding> {
    let mut groups: HashMap<ComponentKey, Vec<Finding>> = HashMap::new();
    for finding in findings {
        let key = (
            finding.ecosystem,
            finding.package.clone(),
            finding.installed_version.clone(),
            finding.layer.clone(),
            finding.location.clone(),
            finding.purl.clone(),
        );
        groups.entry(key).or_default().push(finding);
    }
    let mut out = Vec::new();
    for (_, group) in groups {
        out.extend(merge_group(group));
    }
    out.sort_by(compare_findings);
    out
}

fn merge_group(group: Vec<Finding>) -> Vec<Finding> {
    // Union-find over shared identifiers.
    let ids: Vec<BTreeSet<&str>> = group
        .iter()
        .map(|f| {
            std::iter::once(f.id.as_str())
                .chain(f.aliases.iter().map(String::as_str))
                .collect()
        })
        .collect();
    let mut parent: Vec<usize> = (0..group.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..group.len() {
        for j in (i + 1)..group.len() {
            if !ids[i].is_disjoint(&ids[j]) {
                let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                if ri != rj {
                    parent[rj] = ri;
                }
            }
        }
    }
    let mut clusters: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..group.len() {
        let r = root(&mut parent, i);
        clusters.entry(r).or_default().push(i);
    }
    let mut slots: Vec<Option<Finding>> = group.into_iter().map(Some).collect();
    let mut merged = Vec::new();
    for (_, members) in clusters {
        let mut items: Vec<Finding> = members.iter().filter_map(|&i| slots[i].take()).collect();
        items.sort_by(|a, b| {
            b.cvss_score
                .is_some()
                .cmp(&a.cvss_score.is_some())
                .then_with(|| b.severity.cmp(&a.severity))
                .then_with(|| a.id.cmp(&b.id))
        });
        let mut items = items.into_iter();
        let Some(mut keep) = items.next() else {
            continue;
        };
        let mut aliases: BTreeSet<String> = keep.aliases.drain(..).collect();
        for other in items {
            aliases.insert(other.id);
            aliases.extend(other.aliases);
            if keep.fixed_version.is_none() {
                keep.fixed_version = other.fixed_version;
            }
            if keep.summary.is_empty() {
                keep.summary = other.summary;
            }
        }
        aliases.remove(&keep.id);
        keep.aliases = aliases.into_iter().collect();
        merged.push(keep);
    }
    merged
}

fn compare_findings(a: &Finding, b: &Finding) -> Ordering {
    a.ecosystem
        .cmp(&b.ecosystem)
        .then_with(|| a.package.cmp(&b.package))
        .then_with(|| a.installed_version.cmp(&b.installed_version))
        .then_with(|| a.layer.cmp(&b.layer))
        .then_with(|| a.location.cmp(&b.location))
        .then_with(|| a.purl.cmp(&b.purl))
        .then_with(|| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(kind: RangeKind, events: &[(&str, &str)]) -> Range {
        Range {
            kind,
            events: events
                .iter()
                .map(|(k, v)| match *k {
                    "introduced" => Event::Introduced((*v).into()),
                    "fixed" => Event::Fixed((*v).into()),
                    "last_affected" => Event::LastAffected((*v).into()),
                    _ => Event::Limit((*v).into()),
                })
                .collect(),
        }
    }

    #[test]
    fn several_introduced_fixed_pairs() {
        let r = range(
            RangeKind::Semver,
            &[
                ("introduced", "0.6.3"),
                ("fixed", "0.6.14"),
                ("introduced", "1.0.0"),
                ("fixed", "1.6.1"),
            ],
        );
        let eval = |v: &str| evaluate_range(Ecosystem::CratesIo, &r, v);
        assert_eq!(eval("0.6.2"), Some((false, Some("0.6.14".into()))));
        assert_eq!(eval("0.6.5"), Some((true, Some("0.6.14".into()))));
        assert_eq!(eval("0.6.14"), Some((false, Some("1.6.1".into()))));
        assert_eq!(eval("1.6.0"), Some((true, Some("1.6.1".into()))));
        assert_eq!(eval("1.6.1"), Some((false, None)));
        assert_eq!(eval("not-a-version"), None);
    }

    fn finding(id: &str, aliases: &[&str], score: Option<f64>) -> Finding {
        Finding {
            id: id.into(),
            aliases: aliases.iter().map(|a| (*a).into()).collect(),
            summary: String::new(),
            severity: Severity::Unknown,
            cvss_score: score,
            cvss_vector: None,
            ecosystem: Ecosystem::CratesIo,
            package: "smallvec".into(),
            installed_version: "1.6.0".into(),
            fixed_version: Some("1.6.1".into()),
            layer: "sha256:l".into(),
            location: "Cargo.lock".into(),
            purl: "pkg:cargo/smallvec@1.6.0".into(),
        }
    }

    #[test]
    fn alias_pairs_deduplicate() {
        let findings = finalize(vec![
            finding("RUSTSEC-2021-0003", &["CVE-2021-25900", "GHSA-43w2-9j62-hq99"], None),
            finding("GHSA-43w2-9j62-hq99", &["CVE-2021-25900"], Some(9.8)),
            finding("UNRELATED-1", &[], None),
        ]);
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].id, "GHSA-43w2-9j62-hq99");
        assert_eq!(findings[0].aliases, vec!["CVE-2021-25900", "RUSTSEC-2021-0003"]);
        assert_eq!(findings[1].id, "UNRELATED-1");
    }

    #[test]
    fn last_affected_and_limit() {
        let r = range(RangeKind::Ecosystem, &[("introduced", "0"), ("last_affected", "2.0.0")]);
        assert_eq!(evaluate_range(Ecosystem::Npm, &r, "2.0.0").map(|x| x.0), Some(true));
        assert_eq!(evaluate_range(Ecosystem::Npm, &r, "2.0.1").map(|x| x.0), Some(false));
        let r = range(RangeKind::Ecosystem, &[("introduced", "1.0"), ("limit", "1.5")]);
        assert_eq!(evaluate_range(Ecosystem::PyPi, &r, "1.4").map(|x| x.0), Some(true));
        assert_eq!(evaluate_range(Ecosystem::PyPi, &r, "1.5").map(|x| x.0), Some(false));
        let r = range(RangeKind::Git, &[("introduced", "0"), ("fixed", "abc")]);
        assert_eq!(evaluate_range(Ecosystem::Debian, &r, "1.0-1"), None);
    }
}
