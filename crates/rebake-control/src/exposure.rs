//! `GetExposure`: per image and finding, how long a fixable vulnerability stayed published.
//!
//! Computed from what the buckets hold: the build records of each image (bucket `builds`)
//! and the scan report of each published build (`<build id>.scan`). The published builds
//! of an image, in publication order, are its history; a finding is an advisory id in one
//! package (`id`, `package`).
//!
//! - **Closed** entry: a finding in published build *n* that published build *n + 1* no
//!   longer has. The fix became available when the earliest upstream change behind build
//!   *n + 1* happened (the `Why` chain: its own causes and, through `parent-published`
//!   causes, its parents' — a base push, a feed change, an advisory naming the fix); it was
//!   shipped when build *n + 1* was published. Exposure = published − available.
//! - **Open** entry: a finding of the current published build that has a fixed version.
//!   Available = when Rebake first saw it with a fixed version: the scan of the oldest
//!   published build of the unbroken run up to now that lists it with one. Exposure = now −
//!   available.
//!
//! Findings without a fixed version are not exposure (there is nothing to ship yet), so
//! they are not listed. Entries are sorted open first, then by image and finding.

use std::collections::{BTreeMap, HashMap};

use rebake_bus::Kv;
use rebake_events::{
    ImageName,
    state::{BuildRecord, FindingRecord, ScanReport, scan_key},
};
use rebake_proto::control::v1 as api;

use crate::{
    ControlError, Result, builds,
    service::ControlService,
    why::{BuildIndex, chain},
};

pub(crate) async fn get_exposure(service: &ControlService, request: &api::GetExposureRequest) -> Result<api::Exposure> {
    let only = request.image.trim();
    if !only.is_empty() {
        let name = ImageName::new(only).map_err(|error| ControlError::invalid_image("image", error))?;
        // Unknown images are NOT_FOUND, not an empty answer.
        service.images.get(name.as_str()).await?;
    }
    let all = builds::all_builds(&service.images.builds).await?;
    let published: Vec<BuildRecord> = all
        .iter()
        .filter(|build| build.status == "published" && (only.is_empty() || build.image == only))
        .cloned()
        .collect();
    let reports = scan_reports(&service.images.builds, &published).await?;
    let index = BuildIndex::new(all);
    Ok(api::Exposure {
        entries: entries(&published, &reports, &index, now_ms()),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// The scan reports of `builds`, by build id (builds without one are left out: published
/// before the scanner existed, or the report expired).
async fn scan_reports(bucket: &Kv, builds: &[BuildRecord]) -> Result<HashMap<String, ScanReport>> {
    let keys: Vec<String> = builds.iter().map(|build| scan_key(&build.build_id)).collect();
    let loaded = crate::kvread::read_lenient::<ScanReport>(bucket, keys, "scan report").await?;
    Ok(loaded
        .into_iter()
        .filter_map(|(key, report)| Some((key.strip_suffix(".scan")?.to_string(), report)))
        .collect())
}

/// When the change a build shipped became available upstream: the earliest timestamp of
/// the upstream (or operator) steps of its `Why` chain; its request time when none has one.
fn available_at(build: &BuildRecord, index: &BuildIndex) -> i64 {
    chain(build, index)
        .iter()
        .filter(|step| step.kind != "build" && step.at_ms > 0)
        .map(|step| step.at_ms)
        .min()
        .unwrap_or(build.requested_at_ms)
}

fn has_fix(finding: &FindingRecord) -> bool {
    finding.fixed_version.as_deref().is_some_and(|fixed| !fixed.is_empty())
}

/// A finding's identity within an image.
type FindingKey = (String, String);

fn finding_keys(report: &ScanReport) -> BTreeMap<FindingKey, &FindingRecord> {
    report
        .findings
        .iter()
        .map(|finding| ((finding.id.clone(), finding.package.clone()), finding))
        .collect()
}

/// The entries for `published` builds (any images), given their reports, at `now`.
fn entries(
    published: &[BuildRecord],
    reports: &HashMap<String, ScanReport>,
    index: &BuildIndex,
    now: i64,
) -> Vec<api::ExposureEntry> {
    let mut by_image: BTreeMap<&str, Vec<&BuildRecord>> = BTreeMap::new();
    for build in published {
        by_image.entry(build.image.as_str()).or_default().push(build);
    }
    let mut entries = Vec::new();
    for (image, mut history) in by_image {
        history.sort_by_key(|build| (build.finished_at_ms, build.requested_at_ms));
        // Only builds with a report can say what they contained.
        let scanned: Vec<(&BuildRecord, &ScanReport)> = history
            .iter()
            .filter_map(|build| reports.get(&build.build_id).map(|report| (*build, report)))
            .collect();
        for pair in scanned.windows(2) {
            let ((_, before), (fixed_build, after)) = (pair[0], pair[1]);
            let remaining = finding_keys(after);
            for (key, finding) in finding_keys(before) {
                if remaining.contains_key(&key) {
                    continue;
                }
                let available = available_at(fixed_build, index);
                let published_at = fixed_build.finished_at_ms;
                entries.push(api::ExposureEntry {
                    image: image.to_string(),
                    finding_id: finding.id.clone(),
                    package: finding.package.clone(),
                    severity: finding.severity.clone(),
                    fixed_version: finding.fixed_version.clone().unwrap_or_default(),
                    fix_available_at_ms: available,
                    fixed_published_at_ms: published_at,
                    fixed_digest: fixed_build.digest.clone(),
                    exposure_ms: (published_at - available).max(0),
                    open: false,
                });
            }
        }
        let Some((_, current)) = scanned.last() else {
            continue;
        };
        for (key, finding) in finding_keys(current) {
            if !has_fix(finding) {
                continue;
            }
            // The oldest report of the unbroken run (ending now) listing it with a fix.
            let first_seen = scanned
                .iter()
                .rev()
                .map_while(|(_, report)| {
                    report
                        .findings
                        .iter()
                        .find(|other| other.id == key.0 && other.package == key.1 && has_fix(other))
                        .map(|_| report.scanned_at_ms)
                })
                .last()
                .unwrap_or(current.scanned_at_ms);
            entries.push(api::ExposureEntry {
                image: image.to_string(),
                finding_id: finding.id.clone(),
                package: finding.package.clone(),
                severity: finding.severity.clone(),
                fixed_version: finding.fixed_version.clone().unwrap_or_default(),
                fix_available_at_ms: first_seen,
                fixed_published_at_ms: 0,
                fixed_digest: String::new(),
                exposure_ms: (now - first_seen).max(0),
                open: true,
            });
        }
    }
    entries.sort_by(|a, b| {
        b.open
            .cmp(&a.open)
            .then_with(|| a.image.cmp(&b.image))
            .then_with(|| a.finding_id.cmp(&b.finding_id))
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.fixed_published_at_ms.cmp(&b.fixed_published_at_ms))
    });
    entries
}

#[cfg(test)]
mod tests {
    use rebake_events::state::CauseRecord;

    use super::*;

    fn finding(id: &str, package: &str, fixed: &str) -> FindingRecord {
        FindingRecord {
            id: id.to_string(),
            package: package.to_string(),
            severity: "high".to_string(),
            fixed_version: (!fixed.is_empty()).then(|| fixed.to_string()),
            ..FindingRecord::default()
        }
    }

    fn build(id: &str, image: &str, requested: i64, finished: i64, causes: Vec<CauseRecord>) -> BuildRecord {
        BuildRecord {
            build_id: id.to_string(),
            image: image.to_string(),
            status: "published".to_string(),
            digest: format!("sha256:{id}"),
            requested_at_ms: requested,
            finished_at_ms: finished,
            causes,
            ..BuildRecord::default()
        }
    }

    fn report(build: &str, scanned: i64, findings: Vec<FindingRecord>) -> (String, ScanReport) {
        (
            build.to_string(),
            ScanReport {
                build_id: build.to_string(),
                scanned_at_ms: scanned,
                findings,
                ..ScanReport::default()
            },
        )
    }

    fn cause(kind: &str, description: &str, event_id: &str, at: i64) -> CauseRecord {
        CauseRecord {
            kind: kind.to_string(),
            description: description.to_string(),
            event_id: event_id.to_string(),
            at_ms: at,
        }
    }

    #[test]
    fn closed_when_the_next_publication_drops_the_finding() {
        let published = vec![
            build(
                "b1",
                "app",
                100,
                200,
                vec![cause("registry-tag", "base pushed", "e1", 90)],
            ),
            build(
                "b2",
                "app",
                1_000,
                1_600,
                vec![cause("package-feed", "openssl 3.0.2", "e2", 900)],
            ),
        ];
        let reports = HashMap::from([
            report(
                "b1",
                150,
                vec![finding("CVE-1", "openssl", "3.0.2"), finding("CVE-2", "zlib", "")],
            ),
            report("b2", 1_500, vec![finding("CVE-2", "zlib", "")]),
        ]);
        let index = BuildIndex::new(published.clone());
        let entries = entries(&published, &reports, &index, 5_000);
        assert_eq!(entries.len(), 1, "{entries:?}");
        let entry = &entries[0];
        assert_eq!((entry.image.as_str(), entry.finding_id.as_str()), ("app", "CVE-1"));
        assert!(!entry.open);
        assert_eq!(entry.fix_available_at_ms, 900);
        assert_eq!(entry.fixed_published_at_ms, 1_600);
        assert_eq!(entry.exposure_ms, 700);
        assert_eq!(entry.fixed_digest, "sha256:b2");
    }

    #[test]
    fn a_child_counts_from_its_parents_upstream_change() {
        let base_build = build(
            "p2",
            "base",
            1_000,
            1_200,
            vec![cause("package-feed", "fix", "e9", 800)],
        );
        let child_old = build("c1", "app", 10, 20, vec![]);
        let child_new = build(
            "c2",
            "app",
            1_300,
            1_900,
            vec![cause(
                "parent-published",
                "parent base published sha256:p2",
                "p2",
                1_200,
            )],
        );
        let published = vec![base_build.clone(), child_old.clone(), child_new.clone()];
        let reports = HashMap::from([
            report("c1", 15, vec![finding("CVE-9", "libc", "2.0")]),
            report("c2", 1_800, vec![]),
        ]);
        let index = BuildIndex::new(published.clone());
        let entries = entries(&published, &reports, &index, 5_000);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].fix_available_at_ms, 800);
        assert_eq!(entries[0].exposure_ms, 1_100);
    }

    #[test]
    fn open_entries_count_from_first_sight_of_the_fix_and_come_first() {
        let published = vec![
            build("b1", "web", 100, 200, vec![]),
            build("b2", "web", 300, 400, vec![]),
            build("b3", "web", 500, 600, vec![]),
            build("a1", "api", 100, 200, vec![]),
            build("a2", "api", 300, 400, vec![]),
        ];
        let reports = HashMap::from([
            // No fix known yet at b1; fixed version appears at b2 and stays.
            report("b1", 150, vec![finding("CVE-5", "curl", "")]),
            report("b2", 350, vec![finding("CVE-5", "curl", "8.5")]),
            report(
                "b3",
                550,
                vec![finding("CVE-5", "curl", "8.5"), finding("CVE-6", "tar", "")],
            ),
            report("a1", 150, vec![finding("CVE-7", "bash", "5.2")]),
            report("a2", 350, vec![]),
        ]);
        let index = BuildIndex::new(published.clone());
        let entries = entries(&published, &reports, &index, 1_000);
        let summary: Vec<(&str, &str, bool, i64)> = entries
            .iter()
            .map(|entry| {
                (
                    entry.image.as_str(),
                    entry.finding_id.as_str(),
                    entry.open,
                    entry.exposure_ms,
                )
            })
            .collect();
        // CVE-6 has no fix: not exposure. The closed CVE-7 falls back to the request time.
        assert_eq!(summary, vec![("web", "CVE-5", true, 650), ("api", "CVE-7", false, 100)]);
        assert_eq!(entries[0].fix_available_at_ms, 350);
        assert_eq!(entries[0].fixed_published_at_ms, 0);
    }

    #[test]
    fn builds_without_reports_do_not_invent_fixes() {
        let published = vec![build("b1", "app", 1, 2, vec![]), build("b2", "app", 3, 4, vec![])];
        let reports = HashMap::from([report("b1", 1, vec![finding("CVE-1", "x", "1")])]);
        let index = BuildIndex::new(published.clone());
        let entries = entries(&published, &reports, &index, 10);
        // b2 has no report: the finding is still the latest known, so it is open.
        assert_eq!(entries.len(), 1);
        assert!(entries[0].open);
    }
}
