//! The input document every policy sees as `input` (see the [module docs](super) for its
//! shape). Every struct serialises with its field names as written; every field has a
//! default, so a partial document deserialises.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::component::Component;

/// `input`: everything a policy may judge an image by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyInput {
    /// `input.image`: the staged image.
    pub image: ImageInfo,
    /// `input.config`: from the image config (`config` object of the OCI image config).
    pub config: ImageConfig,
    /// `input.base`: the base image the build started from.
    pub base: BaseInfo,
    /// `input.sbom`: the packages found in the image.
    pub sbom: SbomInfo,
    /// `input.findings`: vulnerabilities matched against those packages.
    pub findings: Vec<Finding>,
    /// `input.structure`: structure test results.
    pub structure: Vec<StructureResult>,
    /// `input.lineage`: what the build was made from.
    pub lineage: Lineage,
    /// `input.settings`: the scanner's configured thresholds.
    pub settings: Settings,
}

/// `input.image`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageInfo {
    /// Image name as Rebake knows it (`apps/api`).
    pub name: String,
    /// Digest of the staged manifest or index (`sha256:...`).
    pub digest: String,
    /// Repository it was staged in (`registry.example/staging/apps/api`).
    pub repository: String,
    /// Size in bytes: config plus compressed layers; for an index, the largest platform.
    pub size_bytes: u64,
    /// Platforms (`linux/amd64`, `linux/arm64/v8`); one entry for a single manifest.
    pub platforms: Vec<String>,
}

/// `input.config`: the runtime configuration from the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// `User` as written (`""`, `root`, `1000`, `app:app`, `0:0`); empty means root.
    pub user: String,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, split at the first `=` (a later duplicate wins).
    pub env: BTreeMap<String, String>,
    /// `WorkingDir`.
    pub workdir: String,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts` keys (`8080/tcp`), sorted.
    pub exposed_ports: Vec<String>,
}

/// `input.base`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaseInfo {
    /// The base as the spec wrote it (`debian:12-slim`, `cgr.dev/x/y@sha256:...`,
    /// `scratch`). Serialised as `ref`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The digest it resolved to at build time; empty for `scratch`.
    pub digest: String,
    /// Whether the spec wrote the base by digest, or the base is `scratch`. (Every build
    /// resolves the base to a digest; this says whether the spec itself fixes it.)
    pub pinned: bool,
}

/// `input.sbom`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SbomInfo {
    /// Packages found, in the SBOM's order.
    pub components: Vec<SbomComponent>,
}

/// One entry of `input.sbom.components`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SbomComponent {
    /// OSV ecosystem name (`Debian`, `Alpine`, `crates.io`, `npm`, `PyPI`, `Go`, ...).
    pub ecosystem: String,
    /// Package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Package URL.
    pub purl: String,
    /// SPDX license expressions or names; empty when unknown.
    pub licenses: Vec<String>,
    /// Digest of the layer it came from.
    pub layer: String,
}

impl From<&Component> for SbomComponent {
    fn from(component: &Component) -> Self {
        SbomComponent {
            ecosystem: component.ecosystem.osv_name().to_string(),
            name: component.name.clone(),
            version: component.version.clone(),
            purl: component.purl.clone(),
            licenses: component.licenses.clone(),
            layer: component.layer.clone(),
        }
    }
}

/// Severity of a finding, serialised in lower case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `critical`.
    Critical,
    /// `high`.
    High,
    /// `medium`.
    Medium,
    /// `low`.
    Low,
    /// `none`.
    None,
    /// `unknown`: the advisory gives no usable severity.
    #[default]
    Unknown,
}

/// One entry of `input.findings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Finding {
    /// Advisory id (`CVE-2024-1234`, `GHSA-...`, `DSA-...`).
    pub id: String,
    /// Other ids of the same advisory.
    pub aliases: Vec<String>,
    /// Severity.
    pub severity: Severity,
    /// CVSS base score, `null` when unknown.
    pub cvss_score: Option<f64>,
    /// Affected package name.
    pub package: String,
    /// Installed version of it.
    pub installed_version: String,
    /// First fixed version, `null` when no fix is known.
    pub fixed_version: Option<String>,
}

/// Outcome of one structure test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StructureStatus {
    /// `passed`.
    #[default]
    Passed,
    /// `failed`.
    Failed,
    /// `unsupported`: the test could not be run on this image.
    Unsupported,
}

/// One entry of `input.structure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StructureResult {
    /// Kind of test (`file_exists`, `command`, `metadata`, ...).
    pub kind: String,
    /// The test's name.
    pub name: String,
    /// Outcome.
    pub status: StructureStatus,
    /// Why it failed or was unsupported; may be empty when it passed.
    pub message: String,
}

/// `input.lineage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lineage {
    /// The build's id.
    pub build_id: String,
    /// Hash of the build's inputs.
    pub inputs_hash: String,
    /// Source repositories the build read.
    pub sources: Vec<LineageSource>,
    /// OS packages the build installed.
    pub packages: Vec<LineagePackage>,
}

/// One entry of `input.lineage.sources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LineageSource {
    /// Repository URL.
    pub url: String,
    /// The ref the spec named (branch, tag). Serialised as `ref`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The commit it resolved to.
    pub commit: String,
}

/// One entry of `input.lineage.packages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LineagePackage {
    /// Package name.
    pub name: String,
    /// Version installed.
    pub version: String,
    /// Architecture (`amd64`, `all`, `x86_64`).
    pub architecture: String,
}

/// `input.settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Largest image allowed, bytes (policy `image_size`).
    pub max_image_size_bytes: u64,
    /// Labels every image must carry with a non-empty value (policy `required_labels`).
    pub required_labels: Vec<String>,
    /// Whether the image may run as root (policy `non_root_user`).
    pub allow_root: bool,
}
