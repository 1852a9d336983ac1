//! Everything the scanner decides about one staged image, given what was read of it:
//! the SBOM, vulnerability findings, structure tests and the Rego policy over all of them.
//! No I/O here (the advisory index is loaded elsewhere), so every rule is testable.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, RwLock},
};

use rebake_config::ImageSpec;
use rebake_events::{
    pb,
    state::{DenialRecord, FindingRecord, ScanReport, StructureRecord},
};

use crate::{
    component::Component,
    read::PlatformView,
    rego::{self, PolicyInput, PolicySet},
    sbom::{self, SbomSubject},
    structure::{self, StructureTests, TestStatus},
    vuln::{AdvisoryIndex, Finding, LayerCache, Severity},
};

/// The scanner's configured checks and the state they share between scans.
pub struct Checks {
    /// Policies (built-ins, overrides, disabled rules).
    pub policies: PolicySet,
    /// `input.settings` of every evaluation.
    pub settings: rego::Settings,
    advisories: RwLock<Arc<AdvisoryIndex>>,
    cache: Mutex<LayerCache>,
}

/// What one scan produced.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// The report stored with the build.
    pub report: ScanReport,
    /// SPDX 2.3 JSON.
    pub spdx: serde_json::Value,
    /// CycloneDX 1.6 JSON.
    pub cyclonedx: serde_json::Value,
    /// Every package found (kept for re-matching when advisories change).
    pub components: Vec<Component>,
}

impl Checks {
    /// Checks with `policies`, `settings` and an advisory index (possibly empty).
    pub fn new(policies: PolicySet, settings: rego::Settings, advisories: AdvisoryIndex) -> Self {
        Self {
            policies,
            settings,
            advisories: RwLock::new(Arc::new(advisories)),
            cache: Mutex::new(LayerCache::new()),
        }
    }

    /// The advisory index in use.
    pub fn advisories(&self) -> Arc<AdvisoryIndex> {
        self.advisories
            .read()
            .map(|index| index.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Replaces the advisory index. Returns whether its digest changed.
    pub fn set_advisories(&self, index: AdvisoryIndex) -> bool {
        let mut current = self.advisories.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = current.digest() != index.digest();
        *current = Arc::new(index);
        changed
    }

    /// Matches `components` against the current advisories (per-layer cache).
    pub fn match_findings(&self, components: &[Component]) -> (Vec<Finding>, String) {
        let index = self.advisories();
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (cache.match_with_cache(&index, components), index.digest().to_string())
    }

    /// (hits, misses) of the per-layer cache.
    pub fn cache_stats(&self) -> (u64, u64) {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (cache.hits(), cache.misses())
    }

    /// Runs every check on `platforms` of the build `done` (its spec carries the structure
    /// tests, already parsed into `tests`).
    pub fn check(
        &self,
        done: &pb::BuildDone,
        spec: Option<&ImageSpec>,
        tests: Option<&StructureTests>,
        platforms: &[PlatformView],
    ) -> Result<ScanOutcome, String> {
        let multi = platforms.len() > 1;
        let mut components = BTreeSet::new();
        let mut structure_results = Vec::new();
        for platform in platforms {
            components.extend(sbom::components(&platform.view));
            if let Some(tests) = tests {
                for mut result in structure::evaluate(tests, &platform.view) {
                    if multi {
                        result.name = format!("{} [{}]", result.name, platform.platform);
                    }
                    structure_results.push(result);
                }
            }
        }
        let components: Vec<Component> = components.into_iter().collect();
        let (findings, advisories_digest) = self.match_findings(&components);
        let first = platforms.first().ok_or("the image has no manifest")?;
        let created = first.view.config.created.clone().unwrap_or_default();
        let subject = SbomSubject {
            name: if done.staging_repository.is_empty() {
                done.image.clone()
            } else {
                done.staging_repository.clone()
            },
            digest: done.digest.clone(),
            created,
        };
        let spdx = sbom::to_spdx_json(&components, &subject);
        let cyclonedx = sbom::to_cyclonedx_json(&components, &subject);

        let input = self.policy_input(done, spec, platforms, &components, &findings, &structure_results);
        let denials = self
            .policies
            .evaluate(&input)
            .map_err(|error| format!("policy evaluation failed: {error}"))?;
        let report = ScanReport {
            build_id: done.build_id.clone(),
            image: done.image.clone(),
            digest: done.digest.clone(),
            passed: denials.is_empty(),
            components: components.len() as i64,
            findings: findings.iter().map(finding_record).collect(),
            structure: structure_results
                .iter()
                .map(|result| StructureRecord {
                    kind: kind_text(result),
                    name: result.name.clone(),
                    status: status_text(result.status).to_string(),
                    message: result.message.clone(),
                })
                .collect(),
            denials: denials
                .iter()
                .map(|denial| DenialRecord {
                    rule: denial.rule.clone(),
                    message: denial.message.clone(),
                })
                .collect(),
            advisories_digest,
            scanned_at_ms: rebake_events::now_ms(),
        };
        Ok(ScanOutcome {
            report,
            spdx,
            cyclonedx,
            components,
        })
    }

    fn policy_input(
        &self,
        done: &pb::BuildDone,
        spec: Option<&ImageSpec>,
        platforms: &[PlatformView],
        components: &[Component],
        findings: &[Finding],
        structure_results: &[structure::TestResult],
    ) -> PolicyInput {
        let config = platforms
            .first()
            .and_then(|platform| platform.view.config.config.clone())
            .unwrap_or_default();
        let base_ref = if done.base_ref.is_empty() {
            "scratch".to_string()
        } else {
            done.base_ref.clone()
        };
        PolicyInput {
            image: rego::ImageInfo {
                name: done.image.clone(),
                digest: done.digest.clone(),
                repository: spec
                    .map(|spec| spec.publish.repository.clone())
                    .unwrap_or_else(|| done.staging_repository.clone()),
                size_bytes: platforms
                    .iter()
                    .map(|platform| platform.size.max(0) as u64)
                    .max()
                    .unwrap_or(0),
                platforms: platforms
                    .iter()
                    .map(|platform| platform.platform.clone())
                    .filter(|platform| !platform.is_empty())
                    .collect(),
            },
            config: rego::ImageConfig {
                user: config.user.clone().unwrap_or_default(),
                entrypoint: config.entrypoint.clone().unwrap_or_default(),
                cmd: config.cmd.clone().unwrap_or_default(),
                env: config
                    .env
                    .iter()
                    .map(|line| match line.split_once('=') {
                        Some((key, value)) => (key.to_string(), value.to_string()),
                        None => (line.clone(), String::new()),
                    })
                    .collect(),
                workdir: config.working_dir.clone().unwrap_or_default(),
                labels: config.labels.clone().into_iter().collect(),
                exposed_ports: config.exposed_ports.keys().cloned().collect(),
            },
            base: rego::BaseInfo {
                // Rebake resolves a tracked tag to a digest before building and records it;
                // the image is built on exactly that digest.
                pinned: base_ref == "scratch" || base_ref.contains('@') || !done.base_digest.is_empty(),
                reference: base_ref,
                digest: done.base_digest.clone(),
            },
            sbom: rego::SbomInfo {
                components: components.iter().map(rego::SbomComponent::from).collect(),
            },
            findings: findings
                .iter()
                .map(|finding| rego::Finding {
                    id: finding.id.clone(),
                    aliases: finding.aliases.clone(),
                    severity: severity(finding.severity),
                    cvss_score: finding.cvss_score,
                    package: finding.package.clone(),
                    installed_version: finding.installed_version.clone(),
                    fixed_version: finding.fixed_version.clone(),
                })
                .collect(),
            structure: structure_results
                .iter()
                .map(|result| rego::StructureResult {
                    kind: kind_text(result),
                    name: result.name.clone(),
                    status: match result.status {
                        TestStatus::Passed => rego::StructureStatus::Passed,
                        TestStatus::Failed => rego::StructureStatus::Failed,
                        TestStatus::Unsupported => rego::StructureStatus::Unsupported,
                    },
                    message: result.message.clone(),
                })
                .collect(),
            lineage: rego::Lineage {
                build_id: done.build_id.clone(),
                inputs_hash: done.inputs_hash.clone(),
                sources: done
                    .sources
                    .iter()
                    .map(|source| rego::LineageSource {
                        url: source.url.clone(),
                        reference: source.ref_name.clone(),
                        commit: source.commit.clone(),
                    })
                    .collect(),
                packages: done
                    .packages
                    .iter()
                    .map(|package| rego::LineagePackage {
                        name: package.name.clone(),
                        version: package.version.clone(),
                        architecture: package.architecture.clone(),
                    })
                    .collect(),
            },
            settings: self.settings.clone(),
        }
    }
}

/// The test kind as the structure-test schema names it (`fileExistence`, ...).
fn kind_text(result: &structure::TestResult) -> String {
    serde_json::to_value(result.kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn status_text(status: TestStatus) -> &'static str {
    match status {
        TestStatus::Passed => "passed",
        TestStatus::Failed => "failed",
        TestStatus::Unsupported => "unsupported",
    }
}

fn severity(severity: Severity) -> rego::Severity {
    match severity {
        Severity::Critical => rego::Severity::Critical,
        Severity::High => rego::Severity::High,
        Severity::Medium => rego::Severity::Medium,
        Severity::Low => rego::Severity::Low,
        Severity::None => rego::Severity::None,
        Severity::Unknown => rego::Severity::Unknown,
    }
}

/// A finding as stored in the scan report.
pub fn finding_record(finding: &Finding) -> FindingRecord {
    FindingRecord {
        id: finding.id.clone(),
        aliases: finding.aliases.clone(),
        summary: finding.summary.clone(),
        severity: finding.severity.as_str().to_string(),
        cvss_score: finding.cvss_score,
        ecosystem: finding.ecosystem.osv_name().to_string(),
        package: finding.package.clone(),
        installed_version: finding.installed_version.clone(),
        fixed_version: finding.fixed_version.clone(),
        layer: finding.layer.clone(),
        purl: finding.purl.clone(),
    }
}
