//! OSV JSON (<https://ossf.github.io/osv-schema/>): single records, directories of them,
//! and the per-ecosystem `all.zip` exports.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::Severity;
use super::advisory::{Advisory, Affected, Event, Range, RangeKind, parse_ecosystem};
use super::cvss::{cvss3_base_score, severity_from_score, severity_from_text};
use super::error::{Result, VulnError};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRecord {
    id: String,
    aliases: Vec<String>,
    upstream: Vec<String>,
    summary: String,
    details: String,
    modified: String,
    withdrawn: Option<String>,
    severity: Vec<RawSeverity>,
    affected: Vec<RawAffected>,
    database_specific: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawAffected {
    package: Option<RawPackage>,
    ranges: Vec<RawRange>,
    versions: Vec<String>,
    severity: Vec<RawSeverity>,
    ecosystem_specific: Option<Value>,
    database_specific: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawPackage {
    ecosystem: String,
    name: String,
    purl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    events: Vec<BTreeMap<String, Value>>,
}

/// Parses one OSV record. `source` names where it came from (kept in
/// [`Advisory::source`]). Returns `Ok(None)` for a withdrawn record or one with no
/// affected package in an ecosystem Rebake matches.
pub fn parse_osv(bytes: &[u8], source: &str) -> serde_json::Result<Option<Advisory>> {
    let raw: RawRecord = serde_json::from_slice(bytes)?;
    Ok(convert(raw, source))
}

fn convert(raw: RawRecord, source: &str) -> Option<Advisory> {
    if raw.withdrawn.as_deref().is_some_and(|w| !w.is_empty()) || raw.id.is_empty() {
        return None;
    }
    let affected: Vec<Affected> = raw.affected.into_iter().filter_map(convert_affected).collect();
    if affected.is_empty() {
        return None;
    }
    let (cvss_vector, cvss_score, vector_severity) = pick_severity(&raw.severity);
    let severity = vector_severity
        .or_else(|| raw.database_specific.as_ref().and_then(text_severity))
        .or_else(|| affected.iter().find_map(|a| a.severity))
        .unwrap_or(Severity::Unknown);
    let summary = if raw.summary.trim().is_empty() {
        first_line(&raw.details)
    } else {
        raw.summary.trim().to_owned()
    };
    let mut aliases = raw.aliases;
    aliases.retain(|alias| alias != &raw.id);
    aliases.sort();
    aliases.dedup();
    Some(Advisory {
        id: raw.id,
        aliases,
        upstream: raw.upstream,
        summary,
        modified: raw.modified,
        severity,
        cvss_score,
        cvss_vector,
        affected,
        source: source.to_owned(),
    })
}

fn first_line(details: &str) -> String {
    let line = details.trim().lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Chooses the vector to report and the severity it implies: a CVSS v3 vector (scored)
/// first, then a v4 vector (kept, not scored), then a textual score (`Ubuntu` type).
fn pick_severity(entries: &[RawSeverity]) -> (Option<String>, Option<f64>, Option<Severity>) {
    let mut best_v3: Option<(String, f64)> = None;
    for entry in entries.iter().filter(|e| e.kind == "CVSS_V3") {
        if let Some(score) = cvss3_base_score(&entry.score)
            && best_v3.as_ref().is_none_or(|(_, best)| score > *best)
        {
            best_v3 = Some((entry.score.trim().to_owned(), score));
        }
    }
    if let Some((vector, score)) = best_v3 {
        return (Some(vector), Some(score), Some(severity_from_score(score)));
    }
    let v4 = entries
        .iter()
        .find(|e| e.kind == "CVSS_V4")
        .map(|e| e.score.trim().to_owned());
    let text = entries.iter().find_map(|e| {
        if e.kind.starts_with("CVSS") {
            // A bare numeric score instead of a vector.
            e.score.trim().parse::<f64>().ok().map(severity_from_score)
        } else {
            severity_from_text(&e.score)
        }
    });
    (v4, None, text)
}

fn text_severity(value: &Value) -> Option<Severity> {
    value
        .get("severity")
        .and_then(Value::as_str)
        .and_then(severity_from_text)
}

fn convert_affected(raw: RawAffected) -> Option<Affected> {
    let package = raw.package?;
    let (ecosystem, release) = parse_ecosystem(&package.ecosystem)?;
    let name = package.name.trim().to_owned();
    if name.is_empty() {
        return None;
    }
    let ranges = raw
        .ranges
        .into_iter()
        .filter_map(|range| {
            let kind = match range.kind.as_str() {
                "ECOSYSTEM" => RangeKind::Ecosystem,
                "SEMVER" => RangeKind::Semver,
                "GIT" => RangeKind::Git,
                _ => return None,
            };
            let events = range
                .events
                .into_iter()
                .flat_map(|event| event.into_iter())
                .filter_map(|(key, value)| {
                    let version = value.as_str()?.trim().to_owned();
                    Some(match key.as_str() {
                        "introduced" => Event::Introduced(version),
                        "fixed" => Event::Fixed(version),
                        "last_affected" => Event::LastAffected(version),
                        "limit" => Event::Limit(version),
                        _ => return None,
                    })
                })
                .collect();
            Some(Range { kind, events })
        })
        .collect();
    let severity = raw
        .ecosystem_specific
        .as_ref()
        .and_then(text_severity)
        .or_else(|| raw.database_specific.as_ref().and_then(text_severity))
        .or_else(|| pick_severity(&raw.severity).2);
    Some(Affected {
        ecosystem,
        release,
        name,
        purl: package.purl.filter(|p| !p.is_empty()),
        ranges,
        versions: raw.versions,
        severity,
    })
}

/// Reads one OSV JSON file.
pub fn load_osv_file(path: &Path) -> Result<Option<Advisory>> {
    let bytes = std::fs::read(path).map_err(|source| VulnError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_osv(&bytes, &path.display().to_string()).map_err(|source| VulnError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Reads every `*.json` file under `dir` (recursively, in path order) as an OSV record.
/// Withdrawn records and records for ecosystems Rebake does not match are skipped.
pub fn load_osv_dir(dir: impl AsRef<Path>) -> Result<Vec<Advisory>> {
    let mut files = Vec::new();
    collect_json(dir.as_ref(), &mut files)?;
    files.sort();
    let mut advisories = Vec::new();
    for file in files {
        advisories.extend(load_osv_file(&file)?);
    }
    Ok(advisories)
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |source| VulnError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|source| VulnError::Io {
            path: path.clone(),
            source,
        })?;
        if kind.is_dir() {
            collect_json(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads an OSV `all.zip` export (one JSON record per entry, as published per ecosystem).
/// Entries not ending in `.json` are ignored.
pub fn load_osv_zip(path: impl AsRef<Path>) -> Result<Vec<Advisory>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|source| VulnError::Io {
        path: path.to_owned(),
        source,
    })?;
    let zip_err = |reason: String| VulnError::Zip {
        path: path.to_owned(),
        reason,
    };
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| zip_err(e.to_string()))?;
    let mut advisories = Vec::new();
    let mut buffer = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| zip_err(format!("entry #{index}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| zip_err(format!("entry #{index}: {e}")))?
            .into_owned();
        if entry.is_dir() || !name.ends_with(".json") {
            continue;
        }
        buffer.clear();
        entry
            .read_to_end(&mut buffer)
            .map_err(|e| zip_err(format!("entry {name}: {e}")))?;
        let source = format!("{}!{name}", path.display());
        let advisory = parse_osv(&buffer, &source).map_err(|source| VulnError::ZipEntry {
            path: path.to_owned(),
            entry: name.clone(),
            source,
        })?;
        advisories.extend(advisory);
    }
    Ok(advisories)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_severity_fallbacks() {
        let record = br#"{
            "id": "X-1", "aliases": ["CVE-1", "X-1"], "details": "first line\nsecond",
            "database_specific": {"severity": "HIGH"},
            "affected": [
              {"package": {"ecosystem": "Debian:12", "name": "openssl"},
               "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1"}]}]},
              {"package": {"ecosystem": "Maven", "name": "org.x:y"}}
            ]
        }"#;
        let advisory = parse_osv(record, "t").unwrap().unwrap();
        assert_eq!(advisory.aliases, vec!["CVE-1".to_string()]);
        assert_eq!(advisory.summary, "first line");
        assert_eq!(advisory.severity, Severity::High);
        assert_eq!(advisory.cvss_score, None);
        assert_eq!(advisory.affected.len(), 1);
        assert_eq!(advisory.affected[0].release.as_deref(), Some("12"));
        assert_eq!(
            advisory.affected[0].ranges[0].events,
            vec![Event::Introduced("0".into()), Event::Fixed("3.0.11-1".into())]
        );
    }

    #[test]
    fn skips_withdrawn_and_unknown() {
        let withdrawn = br#"{"id": "X", "withdrawn": "2024-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "npm", "name": "a"}}]}"#;
        assert!(parse_osv(withdrawn, "t").unwrap().is_none());
        let maven = br#"{"id": "X", "affected": [{"package": {"ecosystem": "Maven", "name": "a"}}]}"#;
        assert!(parse_osv(maven, "t").unwrap().is_none());
        assert!(parse_osv(b"[1,2]", "t").is_err());
    }

    #[test]
    fn v4_vector_kept_unscored() {
        let record = br#"{"id": "X", "severity": [{"type": "CVSS_V4",
            "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],
            "affected": [{"package": {"ecosystem": "PyPI", "name": "a"},
              "ecosystem_specific": {"severity": "CRITICAL"}}]}"#;
        let advisory = parse_osv(record, "t").unwrap().unwrap();
        assert!(
            advisory
                .cvss_vector
                .as_deref()
                .is_some_and(|v| v.starts_with("CVSS:4.0"))
        );
        assert_eq!(advisory.cvss_score, None);
        assert_eq!(advisory.severity, Severity::Critical);
    }
}
