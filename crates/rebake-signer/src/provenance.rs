//! SLSA Provenance v1 (`https://slsa.dev/provenance/v1`) for a Rebake build, and the
//! cosign vulnerability-scan predicate for its scan report.
//!
//! The provenance follows the build type [`BUILD_TYPE`], documented in
//! `docs/build-type-v1.md`:
//!
//! - `buildDefinition.externalParameters` is the image spec exactly as the builder got it
//!   (`BuildDone.spec_json`, canonical JSON): the only thing a user controls;
//! - `buildDefinition.internalParameters` holds what Rebake decided: the inputs hash, the
//!   staging repository, the base reference, and why the build ran — the triggering event
//!   (`trigger`, the last cause) and the whole causal chain (`causes`, oldest first);
//! - `buildDefinition.resolvedDependencies` pins every input: the base image by digest,
//!   every installed package (purl, download URL, checksum), every Git source commit;
//! - `runDetails.metadata.invocationId` is the build id; `startedOn`/`finishedOn` span the
//!   stages recorded before signing (build, scan).

use std::fmt::Write as _;

use base64::Engine as _;
use rebake_events::pb;
use rebake_events::state::{BuildRecord, CauseRecord, PackageRecord, ScanReport, StageRecord};
use serde_json::{Map, Value, json};

use crate::error::{Result, SignerError};

/// The build type of every provenance Rebake writes (see `docs/build-type-v1.md`).
pub const BUILD_TYPE: &str = "https://rebake.dev/build-types/image/v1";
/// `runDetails.builder.id`: Rebake's build platform (builder workers, scanner and signer
/// trusted together to build and record faithfully).
pub const BUILDER_ID: &str = "https://rebake.dev/builder/v1";
/// The scanner named in vulnerability attestations.
pub const SCANNER_URI: &str = "https://rebake.dev/scanner/v1";
/// Digest-set algorithm of an APK index checksum (`C:Q1<base64 sha1>`): the SHA-1 it
/// encodes, in lowercase hex. It is the hash of the package's control segment, which holds
/// the SHA-256 of the data, so it pins the package (see `docs/build-type-v1.md`).
pub const APK_Q1_DIGEST: &str = "apkQ1";

/// Stages the signer records itself, after the attestations are written.
const SIGNER_STAGES: [&str; 2] = ["sign", "publish"];

/// The SLSA v1 provenance predicate of `build`. `record` is its build record (stages with
/// timings), when the bucket has it.
pub fn slsa_provenance(build: &pb::BuildDone, record: Option<&BuildRecord>) -> Result<Value> {
    let spec: Value = serde_json::from_str(&build.spec_json)
        .map_err(|error| SignerError::invalid("image spec json", error.to_string()))?;
    let causes: Vec<Value> = build.causes.iter().map(CauseRecord::from).map(cause_json).collect();
    let mut internal = Map::new();
    internal.insert("inputsHash".into(), Value::from(build.inputs_hash.as_str()));
    internal.insert("baseRef".into(), Value::from(build.base_ref.as_str()));
    internal.insert(
        "stagingRepository".into(),
        Value::from(build.staging_repository.as_str()),
    );
    if let Some(trigger) = causes.last() {
        internal.insert("trigger".into(), trigger.clone());
    }
    internal.insert("causes".into(), Value::Array(causes));
    // The Git sources exactly as the builder got them (URL, ref, commit), in spec order:
    // `rebake rebuild-check` rebuilds from these.
    internal.insert(
        "sources".into(),
        Value::Array(
            build
                .sources
                .iter()
                .map(|source| json!({"url": source.url, "ref": source.ref_name, "commit": source.commit}))
                .collect(),
        ),
    );

    let mut dependencies = Vec::new();
    if let Some(hex) = build.base_digest.strip_prefix("sha256:") {
        dependencies.push(json!({
            "name": "base",
            "uri": format!("oci://{}", build.base_ref),
            "digest": {"sha256": hex},
        }));
    }
    for package in &build.packages {
        dependencies.push(package_dependency(&PackageRecord::from(package)));
    }
    for source in &build.sources {
        dependencies.push(json!({
            "uri": git_uri(&source.url, &source.ref_name),
            "digest": {"gitCommit": source.commit},
        }));
    }

    let mut metadata = Map::new();
    metadata.insert("invocationId".into(), Value::from(build.build_id.as_str()));
    let (started, finished) = build_span(build, record);
    if let Some(started) = started.and_then(rfc3339) {
        metadata.insert("startedOn".into(), Value::from(started));
    }
    if let Some(finished) = finished.and_then(rfc3339) {
        metadata.insert("finishedOn".into(), Value::from(finished));
    }

    Ok(json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": spec,
            "internalParameters": internal,
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {
                "id": BUILDER_ID,
                "version": {"rebake": env!("CARGO_PKG_VERSION")},
            },
            "metadata": metadata,
        },
    }))
}

/// The cosign vulnerability-scan predicate (`https://cosign.sigstore.dev/attestation/vuln/v1`)
/// of a scan report: `scanner.result` is the report as the scanner stored it, `scanner.db`
/// names the advisory set matched; `scan` is the scanner's stage record, when there is one.
pub fn vulnerability_predicate(build_id: &str, report: &ScanReport, scan: Option<&StageRecord>) -> Result<Value> {
    let result =
        serde_json::to_value(report).map_err(|error| SignerError::invalid("scan report", error.to_string()))?;
    let finished_ms = scan
        .map(|stage| stage.finished_at_ms)
        .filter(|ms| *ms > 0)
        .unwrap_or(report.scanned_at_ms);
    let started_ms = scan
        .map(|stage| stage.started_at_ms)
        .filter(|ms| *ms > 0)
        .unwrap_or(finished_ms);
    Ok(json!({
        "invocation": {
            "parameters": null,
            "uri": "",
            "event_id": build_id,
            "builder.id": BUILDER_ID,
        },
        "scanner": {
            "uri": SCANNER_URI,
            "version": env!("CARGO_PKG_VERSION"),
            "db": {"uri": "", "version": report.advisories_digest},
            "result": result,
        },
        "metadata": {
            "scanStartedOn": rfc3339(started_ms).unwrap_or_default(),
            "scanFinishedOn": rfc3339(finished_ms).unwrap_or_default(),
        },
    }))
}

/// One cause as provenance shows it.
fn cause_json(cause: CauseRecord) -> Value {
    let mut value = json!({
        "kind": cause.kind,
        "description": cause.description,
    });
    if !cause.event_id.is_empty() {
        value["eventId"] = Value::from(cause.event_id);
    }
    if let Some(time) = rfc3339(cause.at_ms) {
        value["time"] = Value::from(time);
    }
    value
}

/// The earliest start and latest end of the stages before signing, else the builder's own
/// times from `build.done`.
fn build_span(build: &pb::BuildDone, record: Option<&BuildRecord>) -> (Option<i64>, Option<i64>) {
    let stages = record
        .map(|record| record.stages.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|stage| !SIGNER_STAGES.contains(&stage.name.as_str()));
    let (mut started, mut finished): (Option<i64>, Option<i64>) = (None, None);
    for stage in stages {
        if stage.started_at_ms > 0 {
            started = Some(started.map_or(stage.started_at_ms, |known| known.min(stage.started_at_ms)));
        }
        if stage.finished_at_ms > 0 {
            finished = Some(finished.map_or(stage.finished_at_ms, |known| known.max(stage.finished_at_ms)));
        }
    }
    let positive = |ms: i64| (ms > 0).then_some(ms);
    (
        started.or(positive(build.started_at_ms)),
        finished.or(positive(build.finished_at_ms)),
    )
}

/// A package as a resolved dependency: purl, download URL, checksum, and what else the
/// builder recorded as annotations.
fn package_dependency(package: &PackageRecord) -> Value {
    let apk =
        package.checksum.starts_with("q1:") || package.checksum.starts_with("Q1") || package.url.ends_with(".apk");
    let kind = if apk { "apk" } else { "deb" };
    let mut purl = format!("pkg:{kind}/");
    if !package.feed.is_empty() {
        purl.push_str(&purl_encode(&package.feed));
        purl.push('/');
    }
    let _ = write!(purl, "{}@{}", purl_encode(&package.name), purl_encode(&package.version));
    if !package.architecture.is_empty() {
        let _ = write!(purl, "?arch={}", purl_encode(&package.architecture));
    }
    let mut dependency = json!({
        "name": package.name,
        "uri": purl,
        "annotations": {
            "version": package.version,
            "architecture": package.architecture,
            "platform": package.platform,
            "feed": package.feed,
            "size": package.size,
        },
    });
    if !package.url.is_empty() {
        dependency["downloadLocation"] = Value::from(package.url.as_str());
    }
    if let Some(digest) = package_digest(&package.checksum) {
        dependency["digest"] = digest;
    }
    dependency
}

/// The digest set of a package checksum: SHA-256 hex (Debian), or an APK `Q1` checksum.
fn package_digest(checksum: &str) -> Option<Value> {
    let q1 = checksum.strip_prefix("q1:").or_else(|| checksum.strip_prefix("Q1"));
    if let Some(encoded) = q1 {
        let sha1 = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        return (sha1.len() == 20).then(|| json!({ APK_Q1_DIGEST: hex::encode(&sha1) }));
    }
    let is_sha256 = checksum.len() == 64 && checksum.bytes().all(|byte| byte.is_ascii_hexdigit());
    is_sha256.then(|| json!({"sha256": checksum.to_ascii_lowercase()}))
}

/// `git+<url>@<ref>` as SLSA's examples write a Git dependency; a local path becomes a
/// `file://` URL.
fn git_uri(url: &str, ref_name: &str) -> String {
    let location = if url.contains("://") {
        url.to_string()
    } else if url.starts_with('/') {
        format!("file://{url}")
    } else {
        // scp-like `git@host:path`, kept as written.
        url.to_string()
    };
    if ref_name.is_empty() {
        format!("git+{location}")
    } else {
        format!("git+{location}@{ref_name}")
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (purl components).
fn purl_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// RFC 3339 UTC (`…Z`) of Unix milliseconds; `None` for 0 or out of range.
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    if ms <= 0 {
        return None;
    }
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    time.format(&time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> pb::BuildDone {
        pb::BuildDone {
            build_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            image: "app".into(),
            inputs_hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
            staging_repository: "127.0.0.1:5000/rebake-staging/app".into(),
            digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222".into(),
            base_ref: "127.0.0.1:5000/base:v1".into(),
            base_digest: "sha256:3333333333333333333333333333333333333333333333333333333333333333".into(),
            sources: vec![pb::SourceCommit {
                url: "https://github.com/octo/app.git".into(),
                ref_name: "main".into(),
                commit: "4444444444444444444444444444444444444444".into(),
                commit_time: 1_700_000_000,
            }],
            spec_json: r#"{"name":"app","base":"127.0.0.1:5000/base:v1"}"#.into(),
            causes: vec![
                pb::Cause {
                    kind: "registry-tag".into(),
                    description: "127.0.0.1:5000/base:v1 -> sha256:33".into(),
                    event_id: "e1".into(),
                    at_ms: 1_700_000_000_000,
                },
                pb::Cause {
                    kind: "parent-published".into(),
                    description: "parent base published".into(),
                    event_id: String::new(),
                    at_ms: 1_700_000_001_000,
                },
            ],
            started_at_ms: 1_700_000_002_000,
            finished_at_ms: 1_700_000_003_000,
            packages: vec![
                pb::ResolvedPackage {
                    platform: "linux/amd64".into(),
                    name: "libc6".into(),
                    version: "2.36-9+deb12u4".into(),
                    architecture: "amd64".into(),
                    checksum: "ab".repeat(32),
                    size: 10,
                    url: "http://deb.example/pool/libc6.deb".into(),
                    feed: "bookworm".into(),
                },
                pb::ResolvedPackage {
                    platform: "linux/amd64".into(),
                    name: "musl".into(),
                    version: "1.2.4-r2".into(),
                    architecture: "x86_64".into(),
                    checksum: "q1:AAECAwQFBgcICQoLDA0ODxAREhM=".into(),
                    size: 10,
                    url: "http://apk.example/musl-1.2.4-r2.apk".into(),
                    feed: "alpine".into(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn provenance_pins_every_input() {
        let record = BuildRecord {
            stages: vec![
                StageRecord {
                    name: "build".into(),
                    started_at_ms: 1_700_000_002_500,
                    finished_at_ms: 1_700_000_004_000,
                    ok: true,
                    summary: String::new(),
                },
                StageRecord {
                    name: "scan".into(),
                    started_at_ms: 1_700_000_004_000,
                    finished_at_ms: 1_700_000_005_250,
                    ok: true,
                    summary: String::new(),
                },
                StageRecord {
                    name: "sign".into(),
                    started_at_ms: 1_700_000_009_000,
                    finished_at_ms: 1_700_000_009_500,
                    ok: false,
                    summary: String::new(),
                },
            ],
            ..Default::default()
        };
        let provenance = slsa_provenance(&build(), Some(&record)).unwrap();
        let definition = &provenance["buildDefinition"];
        assert_eq!(definition["buildType"], BUILD_TYPE);
        assert_eq!(definition["externalParameters"]["name"], "app");
        let internal = &definition["internalParameters"];
        assert_eq!(internal["trigger"]["kind"], "parent-published");
        assert_eq!(internal["causes"][0]["eventId"], "e1");
        assert_eq!(internal["causes"][0]["time"], "2023-11-14T22:13:20Z");
        assert!(internal["causes"][1].get("eventId").is_none());
        let dependencies = definition["resolvedDependencies"].as_array().unwrap();
        assert_eq!(dependencies.len(), 4);
        assert_eq!(dependencies[0]["uri"], "oci://127.0.0.1:5000/base:v1");
        assert_eq!(dependencies[0]["digest"]["sha256"], "3".repeat(64));
        assert_eq!(
            dependencies[1]["uri"],
            "pkg:deb/bookworm/libc6@2.36-9%2Bdeb12u4?arch=amd64"
        );
        assert_eq!(dependencies[1]["digest"]["sha256"], "ab".repeat(32));
        assert_eq!(dependencies[1]["downloadLocation"], "http://deb.example/pool/libc6.deb");
        assert_eq!(dependencies[2]["uri"], "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64");
        assert_eq!(
            dependencies[2]["digest"][APK_Q1_DIGEST],
            "000102030405060708090a0b0c0d0e0f10111213"
        );
        assert_eq!(dependencies[3]["uri"], "git+https://github.com/octo/app.git@main");
        assert_eq!(dependencies[3]["digest"]["gitCommit"], "4".repeat(40));
        let metadata = &provenance["runDetails"]["metadata"];
        assert_eq!(metadata["invocationId"], "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        // The signer's own (failed) stage is not part of the build.
        assert_eq!(metadata["startedOn"], "2023-11-14T22:13:22.5Z");
        assert_eq!(metadata["finishedOn"], "2023-11-14T22:13:25.25Z");
        assert_eq!(provenance["runDetails"]["builder"]["id"], BUILDER_ID);
    }

    #[test]
    fn provenance_without_record_or_base() {
        let mut scratch = build();
        scratch.base_digest.clear();
        scratch.base_ref = "scratch".into();
        scratch.packages.clear();
        scratch.sources[0].url = "/srv/git/app".into();
        let provenance = slsa_provenance(&scratch, None).unwrap();
        let dependencies = provenance["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(dependencies.len(), 1);
        assert_eq!(dependencies[0]["uri"], "git+file:///srv/git/app@main");
        let metadata = &provenance["runDetails"]["metadata"];
        assert_eq!(metadata["startedOn"], "2023-11-14T22:13:22Z");
        assert_eq!(metadata["finishedOn"], "2023-11-14T22:13:23Z");

        let mut broken = build();
        broken.spec_json = "not json".into();
        assert!(!slsa_provenance(&broken, None).unwrap_err().is_transient());
    }

    #[test]
    fn unusable_checksums_give_no_digest() {
        assert_eq!(package_digest(""), None);
        assert_eq!(package_digest("q1:not base64!"), None);
        assert_eq!(package_digest("q1:AAEC"), None);
        assert_eq!(package_digest("abc"), None);
    }

    #[test]
    fn vulnerability_predicate_is_cosign_shaped() {
        let report = ScanReport {
            build_id: "b1".into(),
            digest: "sha256:22".into(),
            passed: true,
            advisories_digest: "sha256:55".into(),
            scanned_at_ms: 1_700_000_005_000,
            ..Default::default()
        };
        let predicate = vulnerability_predicate("b1", &report, None).unwrap();
        assert_eq!(predicate["invocation"]["event_id"], "b1");
        assert_eq!(predicate["invocation"]["builder.id"], BUILDER_ID);
        assert_eq!(predicate["scanner"]["db"]["version"], "sha256:55");
        assert_eq!(predicate["scanner"]["result"]["passed"], true);
        assert_eq!(predicate["metadata"]["scanStartedOn"], "2023-11-14T22:13:25Z");
        assert_eq!(predicate["metadata"]["scanFinishedOn"], "2023-11-14T22:13:25Z");
    }
}
