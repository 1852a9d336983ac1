//! `GetFindings` and `GetSbom`: the scanner's reports, kept in the `builds` bucket next to
//! each build record (`<build id>.scan`, `<build id>.spdx`, `<build id>.cyclonedx`).

use rebake_bus::{Bus, Kv};
use rebake_events::{
    Bucket, ImageName,
    state::{ScanReport, sbom_key, scan_key},
};
use rebake_proto::control::v1 as api;

use crate::{ControlError, Result};

/// Reads reports for a build, or for an image's published build.
#[derive(Clone, Debug)]
pub(crate) struct ReportStore {
    images: Kv,
    builds: Kv,
}

impl ReportStore {
    /// Opens the buckets.
    pub(crate) async fn open(bus: &Bus) -> Result<Self> {
        Ok(Self {
            images: bus.kv(Bucket::Images).await?,
            builds: bus.kv(Bucket::Builds).await?,
        })
    }

    /// The build a request is about: `build_id` when given, else the image's published build.
    async fn build_id(&self, image: &str, build_id: &str) -> Result<String> {
        let build_id = build_id.trim();
        if !build_id.is_empty() {
            if build_id.contains('.') || build_id.contains('/') {
                return Err(ControlError::InvalidArgument {
                    field: "build_id",
                    reason: format!("{build_id:?} is not a build id"),
                });
            }
            return Ok(build_id.to_string());
        }
        let name = ImageName::new(image.trim()).map_err(|error| ControlError::invalid_image("image", error))?;
        let state = self
            .images
            .get::<rebake_events::state::ImageState>(&name.kv_key())
            .await?
            .ok_or_else(|| ControlError::NotFound { name: name.to_string() })?;
        state
            .published
            .map(|published| published.build_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ControlError::NotFound {
                name: format!("published build of {name}"),
            })
    }

    /// The scan report.
    pub(crate) async fn findings(&self, request: &api::GetFindingsRequest) -> Result<api::Findings> {
        let build_id = self.build_id(&request.image, &request.build_id).await?;
        let report = self
            .builds
            .get::<ScanReport>(&scan_key(&build_id))
            .await?
            .ok_or_else(|| ControlError::NotFound {
                name: format!("scan report of build {build_id}"),
            })?;
        Ok(api::Findings {
            image: report.image,
            build_id: report.build_id,
            digest: report.digest,
            findings: report
                .findings
                .into_iter()
                .map(|finding| api::Finding {
                    id: finding.id,
                    aliases: finding.aliases,
                    summary: finding.summary,
                    severity: finding.severity,
                    cvss_score: finding.cvss_score.unwrap_or_default(),
                    ecosystem: finding.ecosystem,
                    package: finding.package,
                    installed_version: finding.installed_version,
                    fixed_version: finding.fixed_version.unwrap_or_default(),
                    layer: finding.layer,
                    purl: finding.purl,
                })
                .collect(),
            structure: report
                .structure
                .into_iter()
                .map(|result| api::StructureResult {
                    kind: result.kind,
                    name: result.name,
                    status: result.status,
                    message: result.message,
                })
                .collect(),
            denials: report
                .denials
                .into_iter()
                .map(|denial| api::PolicyDenial {
                    rule: denial.rule,
                    message: denial.message,
                })
                .collect(),
            passed: report.passed,
            components: report.components,
            advisories_digest: report.advisories_digest,
            scanned_at_ms: report.scanned_at_ms,
        })
    }

    /// An SBOM document.
    pub(crate) async fn sbom(&self, request: &api::GetSbomRequest) -> Result<api::Sbom> {
        let format = match request.format.trim() {
            "" | "spdx" => "spdx",
            "cyclonedx" => "cyclonedx",
            other => {
                return Err(ControlError::InvalidArgument {
                    field: "format",
                    reason: format!("{other:?}: use spdx or cyclonedx"),
                });
            }
        };
        let build_id = self.build_id(&request.image, &request.build_id).await?;
        let document = self
            .builds
            .get::<serde_json::Value>(&sbom_key(&build_id, format))
            .await?
            .ok_or_else(|| ControlError::NotFound {
                name: format!("{format} SBOM of build {build_id}"),
            })?;
        let report = self
            .builds
            .get::<ScanReport>(&scan_key(&build_id))
            .await?
            .unwrap_or_default();
        Ok(api::Sbom {
            image: report.image,
            build_id,
            digest: report.digest,
            format: format.to_string(),
            json: document.to_string(),
        })
    }
}
