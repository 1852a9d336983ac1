//! Rebake's scanner stage: the gate between a staged image and its publication.
//!
//! It takes `BuildDone` from the `SCAN` queue, reads the staged image back from the
//! registry (every platform of an index), and decides ([`checks`]):
//!
//! - the file inventory (path, size, SHA-256 per file, merged across layers with whiteouts);
//! - the SBOM ([`sbom`]): OS packages from the dpkg and apk databases, language packages
//!   from lock files, written as SPDX 2.3 and CycloneDX 1.6 JSON;
//! - vulnerability findings ([`vuln`]): the SBOM matched against the configured OSV and
//!   secdb advisories with each ecosystem's version rules, cached per layer digest;
//! - structure tests ([`structure`]) from the spec's `structure_tests`;
//! - the Rego policy ([`rego`]) over all of it.
//!
//! Everything is stored next to the build record in the `builds` bucket (`<build>.files`,
//! `.scan`, `.spdx`, `.cyclonedx`, `.components`) and served by the control API. A passing
//! image goes to the `SIGN` queue; a denied one is recorded as a failed build (stage
//! `scan`, with every rule that denied and why) and never published. Advisory sources are
//! re-read every `advisory_poll_interval`; when they changed, the findings of every
//! published image are matched again and its report rewritten.
#![forbid(unsafe_code)]

pub mod checks;
pub mod component;
mod error;
pub mod policy;
pub mod read;
pub mod rego;
pub mod sbom;
pub mod structure;
pub mod view;
pub mod vuln;

use std::{sync::Arc, time::Duration};

use rebake_bus::{Bus, ConsumerSpec, Delivery, Kv, Need, Outcome, run_consumer};
use rebake_events::{
    Bucket, Envelope, EventKind, ImageName, Queue, deterministic_id, now_ms, pb,
    state::{BuildRecord, FileRecord, ScanReport, StageRecord, files_key, sbom_key, scan_key},
};
use rebake_oci::Registry;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use error::{Result, ScannerError};
pub use policy::Verdict;

/// The inventory document stored per build (bucket `builds`, key `<build id>.files`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Inventory {
    /// Files, sorted by path (may be cut short, see `truncated`).
    pub files: Vec<FileRecord>,
    /// Number of files in the image.
    pub total_files: usize,
    /// Whether `files` was cut to fit a KV value.
    pub truncated: bool,
}

/// Largest inventory document kept in KV (NATS' default max payload is 1 MiB).
const MAX_INVENTORY_BYTES: usize = 900 * 1024;

struct Scanner {
    bus: Bus,
    registry: Registry,
    checks: Arc<checks::Checks>,
    builds_kv: Kv,
}

/// Scanner settings (from the config's `scanner:` section).
#[derive(Debug, Clone, Default)]
pub struct ScannerSettings {
    /// Largest image allowed (policy `image_size`).
    pub max_image_size_bytes: u64,
    /// Advisory sources.
    pub advisories: Vec<rebake_config::AdvisorySource>,
    /// How often advisory sources are re-read.
    pub advisory_poll_interval: Duration,
    /// Policy overrides and additions.
    pub policy_dir: Option<std::path::PathBuf>,
    /// Built-in policies turned off.
    pub disabled_policies: Vec<String>,
    /// Labels every image must carry.
    pub required_labels: Vec<String>,
    /// Whether images may run as root.
    pub allow_root: bool,
}

/// Loads every advisory source into one index. A source that cannot be read is an error:
/// the scanner does not pass images against advisories it could not load.
pub fn load_advisories(sources: &[rebake_config::AdvisorySource]) -> std::result::Result<vuln::AdvisoryIndex, String> {
    let mut all = Vec::new();
    for source in sources {
        let loaded = match source.kind {
            rebake_config::AdvisoryKind::Osv if source.path.is_dir() => vuln::load_osv_dir(&source.path),
            rebake_config::AdvisoryKind::Osv => vuln::load_osv_zip(&source.path),
            rebake_config::AdvisoryKind::Secdb => match source.distro.as_deref() {
                Some("wolfi") => vuln::load_secdb_as(&source.path, component::Ecosystem::Wolfi),
                Some("alpine") | None => vuln::load_secdb_as(&source.path, component::Ecosystem::Alpine),
                Some(other) => {
                    return Err(format!(
                        "advisory source {}: distro {other:?} is not alpine or wolfi",
                        source.path.display()
                    ));
                }
            },
        };
        all.extend(loaded.map_err(|error| format!("advisory source {}: {error}", source.path.display()))?);
    }
    Ok(vuln::AdvisoryIndex::new(all))
}

/// The configured checks: policies (built-ins plus `policy_dir`), settings and advisories.
pub fn build_checks(settings: &ScannerSettings) -> std::result::Result<checks::Checks, String> {
    let mut policies = match &settings.policy_dir {
        Some(dir) => rego::PolicySet::with_overrides(dir).map_err(|error| format!("policies: {error}"))?,
        None => rego::PolicySet::builtin(),
    };
    policies.disabled = settings.disabled_policies.clone();
    for unknown in policies.unknown_disabled() {
        tracing::warn!(rule = %unknown, "scanner.disabled_policies names no policy");
    }
    let advisories = load_advisories(&settings.advisories)?;
    tracing::info!(advisories = advisories.len(), digest = %advisories.digest(), "advisories loaded");
    Ok(checks::Checks::new(
        policies,
        rego::Settings {
            max_image_size_bytes: settings.max_image_size_bytes,
            required_labels: settings.required_labels.clone(),
            allow_root: settings.allow_root,
        },
        advisories,
    ))
}

/// Starts the scanner; it runs until `shutdown` is cancelled.
pub async fn serve(
    bus: Bus,
    registry: Registry,
    settings: ScannerSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<()> {
    bus.ensure(&[
        Need::Queue(Queue::Scan),
        Need::Queue(Queue::Sign),
        Need::Events,
        Need::DeadLetter,
        Need::Bucket(Bucket::Builds),
        Need::Bucket(Bucket::Images),
        Need::Upstream,
    ])
    .await?;
    let checks = Arc::new(build_checks(&settings).map_err(ScannerError::Internal)?);
    let scanner = Arc::new(Scanner {
        builds_kv: bus.kv(Bucket::Builds).await?,
        bus: bus.clone(),
        registry,
        checks: checks.clone(),
    });
    if !settings.advisories.is_empty() {
        let images_kv = bus.kv(Bucket::Images).await?;
        let builds_kv = scanner.builds_kv.clone();
        let token = shutdown.clone();
        tracker.spawn(watch_advisories(
            bus.clone(),
            settings.clone(),
            checks,
            images_kv,
            builds_kv,
            token,
        ));
    }
    let names = bus.names();
    run_consumer(
        bus.clone(),
        ConsumerSpec {
            stream: names.queue_stream(Queue::Scan),
            durable: names.queue_consumer(Queue::Scan),
            filter_subject: String::new(),
            concurrency: 2,
            deliver_all: true,
        },
        shutdown,
        tracker,
        move |delivery| {
            let scanner = scanner.clone();
            async move { scanner.handle(delivery).await }
        },
    )
    .await?;
    Ok(())
}

impl Scanner {
    async fn handle(&self, delivery: Delivery) -> Outcome {
        let done: pb::BuildDone = match delivery.decode() {
            Ok(done) => done,
            Err(error) => {
                return Outcome::Reject {
                    reason: error.to_string(),
                };
            }
        };
        let Ok(image) = ImageName::new(done.image.clone()) else {
            return Outcome::Reject {
                reason: format!("invalid image name {:?}", done.image),
            };
        };
        delivery.record_build(image.as_str(), &done.build_id, &done.digest);
        let traceparent = delivery.envelope().traceparent.clone();
        let delivery_is_last = delivery.is_last_attempt();
        let started_at_ms = now_ms();
        let spec: Option<rebake_config::ImageSpec> = serde_json::from_str(&done.spec_json).ok();
        let tests = match spec.as_ref().and_then(|spec| spec.structure_tests.as_ref()) {
            None => None,
            Some(value) => match structure::parse(&value.to_string()) {
                Ok(tests) => Some(tests),
                Err(error) => {
                    let verdict = Verdict::deny(
                        "structure-tests",
                        format!("the spec's structure_tests are invalid: {error}"),
                    );
                    return self
                        .finish(&image, done, started_at_ms, 0, verdict, "", &traceparent)
                        .await;
                }
            },
        };
        let extra = tests.as_ref().map(structure::paths_read).unwrap_or_default();
        let mut read = read::read_image(&self.registry, &done.staging_repository, &done.digest, &extra).await;
        // Content tests may name a path through symlinks (`/bin/sh`): contents are kept by
        // path as layers are read, so read once more keeping where those paths lead.
        if let (Ok(platforms), Some(tests)) = (&read, &tests) {
            let missing: Vec<String> = platforms
                .iter()
                .flat_map(|platform| structure::paths_read_resolved(tests, &platform.view.files))
                .filter(|path| !extra.contains(path))
                .collect();
            if !missing.is_empty() {
                let mut wanted = extra.clone();
                wanted.extend(missing);
                read = read::read_image(&self.registry, &done.staging_repository, &done.digest, &wanted).await;
            }
        }
        let platforms = match read {
            Ok(platforms) => platforms,
            Err(error) if error.is_transient() && !delivery_is_last => return retry(error.chain()),
            Err(error) => {
                let verdict = Verdict::deny("readable-image", format!("cannot read staged image: {}", error.chain()));
                return self
                    .finish(&image, done, started_at_ms, 0, verdict, "", &traceparent)
                    .await;
            }
        };
        let Some(first) = platforms.first() else {
            let verdict = Verdict::deny("readable-image", "the staged image has no manifest".to_string());
            return self
                .finish(&image, done, started_at_ms, 0, verdict, "", &traceparent)
                .await;
        };
        let files: Vec<&rebake_oci::FileInfo> = first.view.files.values().collect();
        let file_count = files
            .iter()
            .filter(|file| file.kind == rebake_oci::FileKind::File)
            .count();
        let mut inventory = Inventory {
            total_files: files.len(),
            files: files
                .iter()
                .map(|file| FileRecord {
                    path: file.path.clone(),
                    size: file.size,
                    sha256: file.sha256.clone(),
                    layer: file.layer_digest.clone(),
                })
                .collect(),
            truncated: false,
        };
        while serde_json::to_vec(&inventory).map(|bytes| bytes.len()).unwrap_or(0) > MAX_INVENTORY_BYTES {
            let keep = inventory.files.len() * 3 / 4;
            inventory.files.truncate(keep);
            inventory.truncated = true;
        }
        if let Err(error) = self.builds_kv.put(&files_key(&done.build_id), &inventory).await {
            return retry(error);
        }
        let checks = self.checks.clone();
        let (done_for_checks, spec_for_checks) = (done.clone(), spec.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            checks.check(&done_for_checks, spec_for_checks.as_ref(), tests.as_ref(), &platforms)
        })
        .await
        .map_err(|error| format!("scan task failed: {error}"))
        .and_then(|result| result);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => {
                let verdict = Verdict::deny("scan", reason);
                return self
                    .finish(
                        &image,
                        done,
                        started_at_ms,
                        file_count as i64,
                        verdict,
                        "",
                        &traceparent,
                    )
                    .await;
            }
        };
        let build_id = done.build_id.clone();
        for (key, value) in [
            (sbom_key(&build_id, "spdx"), outcome.spdx.clone()),
            (sbom_key(&build_id, "cyclonedx"), outcome.cyclonedx.clone()),
            (
                format!("{build_id}.components"),
                serde_json::to_value(&outcome.components).unwrap_or_default(),
            ),
        ] {
            if let Err(error) = self.builds_kv.put(&key, &value).await {
                return retry(error);
            }
        }
        if let Err(error) = self.builds_kv.put(&scan_key(&build_id), &outcome.report).await {
            return retry(error);
        }
        let verdict = match outcome.report.denials.as_slice() {
            [] => Verdict::Allow,
            denials => Verdict::Deny {
                rule: denials
                    .iter()
                    .map(|denial| denial.rule.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: denials
                    .iter()
                    .map(|denial| format!("{}: {}", denial.rule, denial.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        };
        let summary = scan_summary(&outcome.report);
        tracing::info!(image = %image, build_id, summary = %summary, "scanned");
        self.finish(
            &image,
            done,
            started_at_ms,
            file_count as i64,
            verdict,
            &summary,
            &traceparent,
        )
        .await
    }

    /// Records the verdict and passes the image on (or fails the build). `detail` is the
    /// scan summary (packages, findings, structure tests), empty when the checks did not run.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        image: &ImageName,
        done: pb::BuildDone,
        started_at_ms: i64,
        file_count: i64,
        verdict: Verdict,
        detail: &str,
        traceparent: &str,
    ) -> Outcome {
        let scanned_at_ms = now_ms();
        let summary = if detail.is_empty() {
            format!("{file_count} files, {} bytes; {}", done.size_bytes, verdict.summary())
        } else {
            format!(
                "{file_count} files, {} bytes; {detail}; {}",
                done.size_bytes,
                verdict.summary()
            )
        };
        let passed = verdict.passed();
        let denial = verdict.denial();
        let stage = StageRecord {
            name: "scan".to_string(),
            started_at_ms,
            finished_at_ms: scanned_at_ms,
            ok: passed,
            summary: summary.clone(),
        };
        let update = self
            .builds_kv
            .update::<BuildRecord, _>(&done.build_id, |record| {
                let mut record = record.unwrap_or_default();
                record.build_id = done.build_id.clone();
                record.image = done.image.clone();
                record.status = if passed { "scanned" } else { "failed" }.to_string();
                if !passed {
                    record.reason = denial.clone();
                    record.finished_at_ms = scanned_at_ms;
                }
                record.file_count = file_count;
                record.stages.retain(|s| s.name != "scan");
                record.stages.push(stage.clone());
                Some(record)
            })
            .await;
        if let Err(error) = update {
            return retry(error);
        }
        let build_id = done.build_id.clone();
        let scan = pb::ScanDone {
            build: Some(done.clone()),
            passed,
            summary,
            denial: denial.clone(),
            file_count,
            scanned_at_ms,
        };
        let names = self.bus.names();
        let envelope = Envelope::new(
            EventKind::ScanDone,
            deterministic_id(&["scan-done", &build_id]),
            self.bus.source(),
            Some(image.as_str()),
            Some(traceparent),
        );
        if passed
            && let Err(error) = self
                .bus
                .publish(names.queue_subject(Queue::Sign, image), &envelope, &scan)
                .await
        {
            return retry(error);
        }
        let mut event_envelope = envelope.clone();
        event_envelope.id = deterministic_id(&["scan-done-event", &build_id]);
        if let Err(error) = self
            .bus
            .publish(
                names.event_subject(EventKind::ScanDone.token(), Some(image)),
                &event_envelope,
                &scan,
            )
            .await
        {
            return retry(error);
        }
        if !passed {
            tracing::warn!(image = %image, build_id, denial, "image denied by policy, not published");
            let failed = pb::BuildFailed {
                build_id: build_id.clone(),
                image: done.image.clone(),
                inputs_hash: done.inputs_hash.clone(),
                stage: "scan".to_string(),
                reason: denial,
                failed_at_ms: scanned_at_ms,
                causes: done.causes.clone(),
            };
            let envelope = Envelope::new(
                EventKind::BuildFailed,
                deterministic_id(&["build-failed", &build_id]),
                self.bus.source(),
                Some(image.as_str()),
                Some(traceparent),
            );
            if let Err(error) = self
                .bus
                .publish(
                    names.event_subject(EventKind::BuildFailed.token(), Some(image)),
                    &envelope,
                    &failed,
                )
                .await
            {
                return retry(error);
            }
        } else {
            tracing::info!(image = %image, build_id, file_count, "scan passed");
        }
        Outcome::Done
    }
}

fn retry(error: impl std::fmt::Display) -> Outcome {
    Outcome::retry(error, Duration::from_secs(2))
}

/// One line about a scan report.
pub fn scan_summary(report: &ScanReport) -> String {
    let mut by_severity = std::collections::BTreeMap::<&str, usize>::new();
    for finding in &report.findings {
        *by_severity.entry(finding.severity.as_str()).or_default() += 1;
    }
    let severities: Vec<String> = ["critical", "high", "medium", "low"]
        .iter()
        .filter_map(|severity| by_severity.get(severity).map(|count| format!("{count} {severity}")))
        .collect();
    let failed = report
        .structure
        .iter()
        .filter(|result| result.status == "failed")
        .count();
    format!(
        "{} packages; {} findings{}; structure tests {}/{} passed{}",
        report.components,
        report.findings.len(),
        if severities.is_empty() {
            String::new()
        } else {
            format!(" ({})", severities.join(", "))
        },
        report
            .structure
            .iter()
            .filter(|result| result.status == "passed")
            .count(),
        report.structure.len(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        },
    )
}

/// Re-reads the advisory sources every `advisory_poll_interval`; when the set changed,
/// matches every published image's packages again and rewrites its scan report.
async fn watch_advisories(
    bus: Bus,
    settings: ScannerSettings,
    checks: Arc<checks::Checks>,
    images_kv: Kv,
    builds_kv: Kv,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(settings.advisory_poll_interval.max(Duration::from_secs(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let sources = settings.advisories.clone();
        let loaded = tokio::task::spawn_blocking(move || load_advisories(&sources)).await;
        let index = match loaded {
            Ok(Ok(index)) => index,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "advisories could not be re-read, keeping the previous set");
                continue;
            }
            Err(error) => {
                tracing::warn!(error = %error, "advisory reload task failed");
                continue;
            }
        };
        if !checks.set_advisories(index) {
            continue;
        }
        tracing::info!(digest = %checks.advisories().digest(), "advisories changed, matching published images again");
        if let Err(error) = rematch_published(&bus, &checks, &images_kv, &builds_kv).await {
            tracing::warn!(error = %error, "re-matching published images failed, will retry on the next change");
        }
    }
}

/// Matches every published image's stored packages against the current advisories,
/// rewrites the findings of its scan report, and tells the resolver about every finding
/// that names a fixed version (`upstream.advisory`): the resolver re-reads the image's feed
/// at once and rebuilds it when the feed has the fix.
async fn rematch_published(
    bus: &Bus,
    checks: &checks::Checks,
    images_kv: &Kv,
    builds_kv: &Kv,
) -> std::result::Result<(), String> {
    let states = images_kv
        .values::<rebake_events::state::ImageState>()
        .await
        .map_err(|error| error.to_string())?;
    for (_, state) in states {
        let Some(published) = state.published else { continue };
        let key = format!("{}.components", published.build_id);
        let Some(stored) = builds_kv
            .get::<serde_json::Value>(&key)
            .await
            .map_err(|error| error.to_string())?
        else {
            continue;
        };
        let components: Vec<component::Component> =
            serde_json::from_value(stored).map_err(|error| error.to_string())?;
        let (findings, digest) = checks.match_findings(&components);
        let report_key = scan_key(&published.build_id);
        let Some(mut report) = builds_kv
            .get::<ScanReport>(&report_key)
            .await
            .map_err(|error| error.to_string())?
        else {
            continue;
        };
        let before = report.findings.len();
        report.findings = findings.iter().map(checks::finding_record).collect();
        report.advisories_digest = digest;
        report.scanned_at_ms = now_ms();
        builds_kv
            .put(&report_key, &report)
            .await
            .map_err(|error| error.to_string())?;
        tracing::info!(image = %state.name, build_id = %published.build_id, before, after = report.findings.len(), "findings updated");
        for finding in &report.findings {
            let Some(fixed_version) = finding.fixed_version.clone() else {
                continue;
            };
            request_fix(
                bus,
                &state.name,
                &published.build_id,
                &report.advisories_digest,
                finding,
                fixed_version,
            )
            .await?;
        }
    }
    Ok(())
}

/// Publishes one `AdvisoryFixAvailable` hint (id derived from image, build, advisory,
/// package and fixed version: asking twice is asking once).
async fn request_fix(
    bus: &Bus,
    image: &str,
    build_id: &str,
    advisories_digest: &str,
    finding: &rebake_events::state::FindingRecord,
    fixed_version: String,
) -> std::result::Result<(), String> {
    let event = pb::UpstreamChanged {
        change: Some(pb::upstream_changed::Change::AdvisoryFix(pb::AdvisoryFixAvailable {
            image: image.to_string(),
            advisory_id: finding.id.clone(),
            package: finding.package.clone(),
            ecosystem: finding.ecosystem.clone(),
            installed_version: finding.installed_version.clone(),
            fixed_version: fixed_version.clone(),
            severity: finding.severity.clone(),
            build_id: build_id.to_string(),
            advisories_digest: advisories_digest.to_string(),
        })),
        source: "scanner/advisories".to_string(),
        received_at_ms: now_ms(),
    };
    let envelope = Envelope::new(
        EventKind::UpstreamChanged,
        deterministic_id(&[
            "advisory-fix",
            image,
            build_id,
            &finding.id,
            &finding.package,
            &fixed_version,
        ]),
        bus.source(),
        Some(image),
        None,
    );
    bus.publish(bus.names().upstream_advisory_subject(), &envelope, &event)
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(image, advisory = %finding.id, package = %finding.package, fixed_version, "fix available: asked the resolver to look");
    Ok(())
}
