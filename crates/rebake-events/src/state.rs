//! The JSON documents kept in the KV buckets (see [`crate::Bucket`]). Every service reads
//! them; each document has one writer, named on its type. Fields are only ever added, with
//! `#[serde(default)]`, so older documents keep reading.

use serde::{Deserialize, Serialize};

/// Where an image stands. Written by the resolver only (bucket `images`, key = image).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageState {
    /// Catalog name.
    pub name: String,
    /// Status for people and dashboards.
    pub status: ImageStatus,
    /// Why the status is what it is (waiting for what, failed why).
    pub status_reason: String,
    /// Inputs hash the current upstream state asks for (empty while an input is unknown).
    pub desired_inputs_hash: String,
    /// The build requested and not yet finished.
    pub pending: Option<PendingBuild>,
    /// What is live.
    pub published: Option<PublishedImage>,
    /// The most recent failure.
    pub last_failure: Option<BuildFailure>,
    /// The most recent build of any outcome.
    pub last_build_id: String,
    /// Whether an operator paused the image (the resolver skips it until resumed).
    pub paused: bool,
    /// Why it was paused, and by whom, as the operator gave it.
    pub paused_reason: String,
}

/// Status of an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Never looked at.
    #[default]
    New,
    /// An input is not available yet (base tag missing, parent rebuilding…).
    Waiting,
    /// A build is requested or running.
    Building,
    /// Published and up to date with upstream.
    Published,
    /// The last build of the current inputs failed.
    Failed,
}

impl ImageStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::New => "new",
            ImageStatus::Waiting => "waiting",
            ImageStatus::Building => "building",
            ImageStatus::Published => "published",
            ImageStatus::Failed => "failed",
        }
    }
}

/// A requested build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PendingBuild {
    /// Build id.
    pub build_id: String,
    /// Inputs it builds.
    pub inputs_hash: String,
    /// When requested (Unix ms).
    pub requested_at_ms: i64,
}

/// A live image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishedImage {
    /// Manifest digest.
    pub digest: String,
    /// Inputs it was built from.
    pub inputs_hash: String,
    /// Build that made it.
    pub build_id: String,
    /// Published repository (no tag).
    pub repository: String,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Base digest it is built on.
    pub base_digest: String,
    /// Source commits.
    pub sources: Vec<SourceRevision>,
    /// Packages installed, per platform.
    pub packages: Vec<PackageRecord>,
    /// When published (Unix ms).
    pub published_at_ms: i64,
    /// Why it was built, oldest first.
    pub causes: Vec<CauseRecord>,
}

/// A source at a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceRevision {
    /// Repository URL.
    pub url: String,
    /// Branch.
    pub ref_name: String,
    /// Commit.
    pub commit: String,
}

/// A failed build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildFailure {
    /// Build id.
    pub build_id: String,
    /// Inputs that failed.
    pub inputs_hash: String,
    /// Stage that failed.
    pub stage: String,
    /// Why.
    pub reason: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// One link of a causal chain (mirror of `pb::Cause`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CauseRecord {
    /// Kind of happening.
    pub kind: String,
    /// What happened.
    pub description: String,
    /// Event id, when there is one.
    pub event_id: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

impl From<&crate::pb::Cause> for CauseRecord {
    fn from(cause: &crate::pb::Cause) -> Self {
        Self {
            kind: cause.kind.clone(),
            description: cause.description.clone(),
            event_id: cause.event_id.clone(),
            at_ms: cause.at_ms,
        }
    }
}

impl From<&CauseRecord> for crate::pb::Cause {
    fn from(cause: &CauseRecord) -> Self {
        Self {
            kind: cause.kind.clone(),
            description: cause.description.clone(),
            event_id: cause.event_id.clone(),
            at_ms: cause.at_ms,
        }
    }
}

/// One build, from request to publication or failure (bucket `builds`, key = build id).
/// Created by the resolver; each stage (builder, scanner, signer) fills in its part with
/// compare-and-set updates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildRecord {
    /// Build id.
    pub build_id: String,
    /// Image.
    pub image: String,
    /// Inputs hash.
    pub inputs_hash: String,
    /// `requested`, `building`, `built`, `scanned`, `published`, `failed`, `skipped`.
    pub status: String,
    /// Failure or denial reason.
    pub reason: String,
    /// Why it exists, oldest first.
    pub causes: Vec<CauseRecord>,
    /// Base digest used.
    pub base_digest: String,
    /// Sources used.
    pub sources: Vec<SourceRevision>,
    /// Packages installed, per platform.
    pub packages: Vec<PackageRecord>,
    /// Manifest digest (staged, then published).
    pub digest: String,
    /// Image size (config + compressed layers).
    pub size_bytes: i64,
    /// Files in the image.
    pub file_count: i64,
    /// Stages in order, with timings.
    pub stages: Vec<StageRecord>,
    /// When requested (Unix ms).
    pub requested_at_ms: i64,
    /// When it reached a final status (Unix ms).
    pub finished_at_ms: i64,
}

/// One stage of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageRecord {
    /// `build`, `scan`, `sign`, `publish`.
    pub name: String,
    /// Start (Unix ms).
    pub started_at_ms: i64,
    /// End (Unix ms).
    pub finished_at_ms: i64,
    /// Whether it succeeded.
    pub ok: bool,
    /// One line about it.
    pub summary: String,
}

/// What an image was built from (bucket `lineage`, key = image). Written by the builder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lineage {
    /// Image.
    pub image: String,
    /// Build id.
    pub build_id: String,
    /// Base reference (`scratch` for none).
    pub base_ref: String,
    /// Base digest.
    pub base_digest: String,
    /// Sources at their commits.
    pub sources: Vec<SourceRevision>,
    /// Packages installed, per platform (name, version, architecture, checksum).
    pub packages: Vec<PackageRecord>,
    /// Inputs hash.
    pub inputs_hash: String,
    /// Staged manifest digest.
    pub digest: String,
}

/// One file of an image (the scanner's inventory, bucket `builds`, key `<build id>.files`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileRecord {
    /// Path without leading `/`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 hex of the content (regular files only).
    pub sha256: String,
    /// Digest of the layer it comes from.
    pub layer: String,
}

/// What Rebake knows about one upstream tag or branch (bucket `upstream`). Written by the
/// resolver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamRecord {
    /// `tag` or `git`.
    pub kind: String,
    /// `registry/repository:tag`, or `identity#branch`.
    pub reference: String,
    /// Digest or commit.
    pub value: String,
    /// When it last changed (Unix ms).
    pub changed_at_ms: i64,
    /// Who told us.
    pub source: String,
}

/// The KV key of an upstream reference (keys allow only a small alphabet, so hash it).
pub fn upstream_key(kind: &str, reference: &str) -> String {
    use sha2::Digest as _;
    format!(
        "{kind}.{}",
        &hex::encode(sha2::Sha256::digest(reference.as_bytes()))[..40]
    )
}

/// The scan report of a build (bucket `builds`, key `<build id>.scan`). Written by the
/// scanner; rewritten when advisories change and a published image is matched again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanReport {
    /// Build id.
    pub build_id: String,
    /// Image.
    pub image: String,
    /// Manifest (or index) digest scanned.
    pub digest: String,
    /// Whether publication may go on.
    pub passed: bool,
    /// Packages in the SBOM.
    pub components: i64,
    /// Vulnerability findings.
    pub findings: Vec<FindingRecord>,
    /// Structure tests.
    pub structure: Vec<StructureRecord>,
    /// Policy denials (empty when passed).
    pub denials: Vec<DenialRecord>,
    /// Digest of the advisory set matched.
    pub advisories_digest: String,
    /// When (Unix ms).
    pub scanned_at_ms: i64,
}

/// One vulnerability finding (mirror of the control API's `Finding`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FindingRecord {
    /// Advisory id.
    pub id: String,
    /// Other ids.
    pub aliases: Vec<String>,
    /// One line.
    pub summary: String,
    /// `critical`, `high`, `medium`, `low`, `none`, `unknown`.
    pub severity: String,
    /// CVSS base score, when known.
    pub cvss_score: Option<f64>,
    /// OSV ecosystem.
    pub ecosystem: String,
    /// Package.
    pub package: String,
    /// Installed version.
    pub installed_version: String,
    /// Lowest fixed version above the installed one, when known.
    pub fixed_version: Option<String>,
    /// Layer the package came from.
    pub layer: String,
    /// Package URL.
    pub purl: String,
}

/// One structure test result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StructureRecord {
    /// Test kind.
    pub kind: String,
    /// Test name.
    pub name: String,
    /// `passed`, `failed`, `unsupported`.
    pub status: String,
    /// Why.
    pub message: String,
}

/// One policy denial.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DenialRecord {
    /// Rule name.
    pub rule: String,
    /// Why.
    pub message: String,
}

/// The KV key of a build's scan report.
pub fn scan_key(build_id: &str) -> String {
    format!("{build_id}.scan")
}

/// The KV key of a build's SBOM in `format` (`spdx` or `cyclonedx`).
pub fn sbom_key(build_id: &str, format: &str) -> String {
    format!("{build_id}.{format}")
}

/// The KV key of a build's file inventory.
pub fn files_key(build_id: &str) -> String {
    format!("{build_id}.files")
}

/// One package of a resolved install set (mirror of `pb::ResolvedPackage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageRecord {
    /// OCI platform it is installed for.
    pub platform: String,
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Feed architecture.
    pub architecture: String,
    /// Content checksum (`<sha256 hex>` or `q1:<base64>`).
    pub checksum: String,
    /// Size in bytes.
    pub size: i64,
    /// Download URL.
    pub url: String,
    /// Feed name.
    pub feed: String,
}

impl From<&crate::pb::ResolvedPackage> for PackageRecord {
    fn from(package: &crate::pb::ResolvedPackage) -> Self {
        Self {
            platform: package.platform.clone(),
            name: package.name.clone(),
            version: package.version.clone(),
            architecture: package.architecture.clone(),
            checksum: package.checksum.clone(),
            size: package.size,
            url: package.url.clone(),
            feed: package.feed.clone(),
        }
    }
}

impl From<&PackageRecord> for crate::pb::ResolvedPackage {
    fn from(package: &PackageRecord) -> Self {
        Self {
            platform: package.platform.clone(),
            name: package.name.clone(),
            version: package.version.clone(),
            architecture: package.architecture.clone(),
            checksum: package.checksum.clone(),
            size: package.size,
            url: package.url.clone(),
            feed: package.feed.clone(),
        }
    }
}

/// The inputs hash of a build: SHA-256 over the canonical spec, the base digest, every
/// source commit and every resolved package (platform, name, version, architecture,
/// checksum; not the URL, so a mirror move rebuilds nothing). Equal hashes mean equal
/// inputs, so a build whose hash is already published is a no-op.
pub fn inputs_hash(
    spec_json: &str,
    base_digest: &str,
    sources: &[SourceRevision],
    packages: &[PackageRecord],
) -> String {
    use sha2::Digest as _;
    let mut document = serde_json::json!({
        "v": 1,
        "spec": spec_json,
        "base_digest": base_digest,
        "sources": sources.iter().map(|source| [&source.url, &source.ref_name, &source.commit]).collect::<Vec<_>>(),
    });
    // Only present when there are packages, so images without any keep the hash they had
    // before packages existed (no rebuild storm on upgrade).
    if !packages.is_empty() {
        let mut sorted: Vec<[&str; 5]> = packages
            .iter()
            .map(|p| [p.platform.as_str(), &p.name, &p.version, &p.architecture, &p.checksum])
            .collect();
        sorted.sort();
        document["packages"] = serde_json::json!(sorted);
    }
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(document.to_string().as_bytes()))
    )
}
