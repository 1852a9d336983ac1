//! `rebake rebuild-check`: builds an image again from the inputs its provenance records, in a
//! clean temporary place, and says whether the result is bit-for-bit the published image.
//!
//! The rebuild runs the builder's own assembly (`rebake_builder::assemble`) with a fresh work
//! directory (so no Git mirror or checkout is reused) and stages the result under
//! `rebake-rebuild-check/<image>` in the publish registry; nothing is tagged or published.
//! When the digests differ, the two images are compared down to the file: manifests are
//! paired by platform, configs compared key by key (JSON pointer), and every layer whose
//! digest differs is read entry by entry: paths only in one image, and for a path in both,
//! which attribute differs (kind, mode, owner, size, mtime, link target, content).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read as _,
};

use anyhow::{Context as _, Result};
use rebake_events::pb;
use rebake_oci::{ImageManifest, ImageRef, Registry};
use sha2::Digest as _;

/// Staging prefix of rebuilt images.
pub const STAGING_PREFIX: &str = "rebake-rebuild-check";

/// What a published image was built from, as its provenance records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedInputs {
    /// Catalog name.
    pub image: String,
    /// The published digest the rebuild must reproduce.
    pub digest: String,
    /// The build request the recorded inputs amount to (spec, base digest, Git commits,
    /// packages exactly as resolved).
    pub request: pb::BuildRequest,
}

impl RecordedInputs {
    /// The inputs a SLSA v1 provenance predicate of build type
    /// `rebake_signer::provenance::BUILD_TYPE` records for `image` published at `digest`:
    /// the spec (`externalParameters`), the base reference and inputs hash
    /// (`internalParameters`), and the resolved dependencies (base by digest, packages with
    /// their download location, checksum and size, Git commits).
    pub fn from_provenance(image: &str, digest: &str, predicate: &serde_json::Value) -> Result<Self> {
        let definition = &predicate["buildDefinition"];
        let build_type = definition["buildType"].as_str().unwrap_or_default();
        anyhow::ensure!(
            build_type == rebake_signer::provenance::BUILD_TYPE,
            "the provenance's build type is {build_type:?}, not Rebake's {}",
            rebake_signer::provenance::BUILD_TYPE
        );
        let spec = &definition["externalParameters"];
        anyhow::ensure!(spec.is_object(), "the provenance records no image spec");
        let internal = &definition["internalParameters"];
        let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
        let mut request = pb::BuildRequest {
            build_id: format!(
                "rebuild-check-{}",
                text(&predicate["runDetails"]["metadata"]["invocationId"])
            ),
            image: image.to_string(),
            inputs_hash: text(&internal["inputsHash"]),
            base_ref: text(&internal["baseRef"]),
            spec_json: serde_json::to_string(spec)?,
            ..Default::default()
        };
        if let Some(sources) = internal["sources"].as_array() {
            for source in sources {
                request.sources.push(pb::SourceCommit {
                    url: text(&source["url"]),
                    ref_name: text(&source["ref"]),
                    commit: text(&source["commit"]),
                    commit_time: 0,
                });
            }
        }
        let dependencies = definition["resolvedDependencies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for dependency in &dependencies {
            let digest = &dependency["digest"];
            if dependency["name"] == "base" {
                request.base_digest = format!("sha256:{}", text(&digest["sha256"]));
            } else if let Some(commit) = digest["gitCommit"].as_str() {
                if internal["sources"].is_array() {
                    continue;
                }
                let uri = text(&dependency["uri"]);
                let location = uri.strip_prefix("git+").unwrap_or(&uri);
                let (url, ref_name) = location.rsplit_once('@').unwrap_or((location, ""));
                request.sources.push(pb::SourceCommit {
                    url: url.strip_prefix("file://").unwrap_or(url).to_string(),
                    ref_name: ref_name.to_string(),
                    commit: commit.to_string(),
                    commit_time: 0,
                });
            } else if dependency["uri"].as_str().is_some_and(|uri| uri.starts_with("pkg:")) {
                let annotations = &dependency["annotations"];
                let checksum = match (digest["sha256"].as_str(), digest["apkQ1"].as_str()) {
                    (Some(sha256), _) => sha256.to_string(),
                    (None, Some(q1)) => {
                        use base64::Engine as _;
                        let bytes = hex::decode(q1).context("an apkQ1 digest is not hex")?;
                        format!("q1:{}", base64::engine::general_purpose::STANDARD.encode(bytes))
                    }
                    (None, None) => anyhow::bail!("package {} has no digest in the provenance", dependency["name"]),
                };
                request.packages.push(pb::ResolvedPackage {
                    platform: text(&annotations["platform"]),
                    name: text(&dependency["name"]),
                    version: text(&annotations["version"]),
                    architecture: text(&annotations["architecture"]),
                    checksum,
                    size: annotations["size"].as_i64().unwrap_or(0),
                    url: text(&dependency["downloadLocation"]),
                    feed: text(&annotations["feed"]),
                });
            }
        }
        Ok(Self {
            image: image.to_string(),
            digest: digest.to_string(),
            request,
        })
    }
}

/// One way the rebuilt image differs from the published one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// Platform (`linux/amd64`), empty for a single-manifest image.
    pub platform: String,
    /// `index`, `manifest`, `config`, or `layer <n>`.
    pub location: String,
    /// The file (layers), JSON pointer (config, manifest) or empty.
    pub path: String,
    /// What differs: `only in published`, `only in rebuilt`, `mode`, `content`, `value`, ...
    pub what: String,
    /// The published image's value.
    pub published: String,
    /// The rebuilt image's value.
    pub rebuilt: String,
}

/// The outcome of a rebuild check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// Catalog name.
    pub image: String,
    /// Digest the provenance names (the published image).
    pub published_digest: String,
    /// Digest of the rebuild.
    pub rebuilt_digest: String,
    /// Whether the two are the same bytes.
    pub identical: bool,
    /// Why not, file by file (empty when identical).
    pub differences: Vec<Difference>,
}

/// Verifies `image`'s signature and attestations with `keys`, reads the inputs its SLSA
/// provenance records, and rebuilds from them (see [`rebuild_check`]). A provenance that
/// does not verify is not rebuilt from. `plain_http`: every registry involved is spoken to
/// over plain HTTP.
pub async fn check_published(
    image: &ImageRef,
    keys: &rebake_signer::VerifyingKeys,
    plain_http: bool,
) -> Result<RebuildReport> {
    let hosts = |extra: &[&str]| -> Vec<String> {
        if plain_http {
            std::iter::once(image.registry.as_str())
                .chain(extra.iter().copied())
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        }
    };
    let registry = Registry::try_new(hosts(&[])).context("failed to set up the registry client")?;
    let report = rebake_signer::verify_image(&registry, image, keys)
        .await
        .map_err(|error| anyhow::anyhow!("cannot verify {image}: {error}"))?;
    if !report.passed() {
        let failures: Vec<String> = report
            .failures()
            .map(|check| format!("{}: {}", check.name, check.detail))
            .collect();
        anyhow::bail!(
            "{image} does not verify, so its provenance is not trusted: {}",
            failures.join("; ")
        );
    }
    let digest = report.digest.clone().context("the verified image has no digest")?;
    let provenance = report
        .attestations
        .iter()
        .find(|attestation| attestation.predicate_type == rebake_signer::SLSA_PROVENANCE_PREDICATE_TYPE)
        .context("the image has no SLSA provenance attestation")?;
    let predicate = &provenance.statement["predicate"];
    let name = predicate["buildDefinition"]["externalParameters"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let inputs = RecordedInputs::from_provenance(&name, &digest, predicate)?;
    // The base's and the publish repository's registries, too.
    let spec: rebake_config::ImageSpec =
        serde_json::from_str(&inputs.request.spec_json).context("the recorded image spec is not valid")?;
    let mut extra = Vec::new();
    if let Ok(base) = ImageRef::parse(&inputs.request.base_ref) {
        extra.push(base.registry);
    }
    if let Ok(publish) = ImageRef::parse(&spec.publish.repository) {
        extra.push(publish.registry);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let registry = Registry::try_new(hosts(&extra)).context("failed to set up the registry client")?;
    let cache = tempfile::tempdir().context("failed to create a temporary package cache")?;
    let feeds = rebake_feeds::fetch::FeedClient::new(cache.path().to_path_buf())
        .context("failed to set up the package client")?;
    rebuild_check(&registry, &feeds, &inputs).await
}

/// `rebake rebuild-check IMAGE --key PUB`: prints the report; fails when not identical.
pub async fn run(
    image: &str,
    key_files: &[std::path::PathBuf],
    plain_http: bool,
    output: crate::cli::Output,
) -> Result<()> {
    let image = ImageRef::parse(image).with_context(|| format!("invalid image reference {image:?}"))?;
    let mut keys = rebake_signer::VerifyingKeys::default();
    for path in key_files {
        let pem = std::fs::read(path).with_context(|| format!("failed to read public key {}", path.display()))?;
        keys.push(
            rebake_signer::VerifyingKey::from_pem(&pem)
                .with_context(|| format!("failed to load public key {}", path.display()))?,
        );
    }
    let report = check_published(&image, &keys, plain_http).await?;
    match output {
        crate::cli::Output::Table => print!("{}", render_report(&report)),
        crate::cli::Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    anyhow::ensure!(report.identical, "the rebuild of {} is not identical", report.image);
    Ok(())
}

/// Rebuilds `inputs` with `registry` and `feeds` in a fresh temporary work directory and
/// compares the result with the published image.
pub async fn rebuild_check(
    registry: &Registry,
    feeds: &rebake_feeds::fetch::FeedClient,
    inputs: &RecordedInputs,
) -> Result<RebuildReport> {
    let work = tempfile::tempdir().context("failed to create a temporary work directory")?;
    let staged =
        rebake_builder::assemble::build_and_stage(registry, feeds, work.path(), STAGING_PREFIX, &inputs.request)
            .await
            .map_err(|error| anyhow::anyhow!("the rebuild failed: {}", error.chain()))?;
    let spec: rebake_config::ImageSpec =
        serde_json::from_str(&inputs.request.spec_json).context("the recorded image spec is not valid")?;
    let published = ImageRef::parse(&spec.publish.repository).context("the recorded publish repository")?;
    let rebuilt = ImageRef::parse(&staged.repository).context("the rebuild's staging repository")?;
    let identical = staged.digest == inputs.digest;
    let differences = if identical {
        Vec::new()
    } else {
        diff_images(
            registry,
            (&published.registry, &published.repository, &inputs.digest),
            (&rebuilt.registry, &rebuilt.repository, &staged.digest),
        )
        .await?
    };
    Ok(RebuildReport {
        image: inputs.image.clone(),
        published_digest: inputs.digest.clone(),
        rebuilt_digest: staged.digest,
        identical,
        differences,
    })
}

type Location<'a> = (&'a str, &'a str, &'a str);

/// Every difference between two images (manifests or indexes).
pub async fn diff_images(
    registry: &Registry,
    published: Location<'_>,
    rebuilt: Location<'_>,
) -> Result<Vec<Difference>> {
    let a = registry.get_manifest(published.0, published.1, published.2).await?;
    let b = registry.get_manifest(rebuilt.0, rebuilt.1, rebuilt.2).await?;
    let mut out = Vec::new();
    match (a.is_index(), b.is_index()) {
        (true, true) => {
            let (ia, ib) = (a.to_index()?, b.to_index()?);
            let platforms = |index: &rebake_oci::ImageIndex| -> BTreeMap<String, String> {
                index
                    .manifests
                    .iter()
                    .map(|m| {
                        let platform = m
                            .platform
                            .as_ref()
                            .map(|p| format!("{}/{}", p.os, p.architecture))
                            .unwrap_or_default();
                        (platform, m.digest.clone())
                    })
                    .collect()
            };
            let (pa, pb) = (platforms(&ia), platforms(&ib));
            for platform in pa.keys().chain(pb.keys()).collect::<BTreeSet<_>>() {
                match (pa.get(platform), pb.get(platform)) {
                    (Some(da), Some(db)) if da == db => {}
                    (Some(da), Some(db)) => {
                        let ma = registry
                            .get_manifest(published.0, published.1, da)
                            .await?
                            .to_manifest()?;
                        let mb = registry.get_manifest(rebuilt.0, rebuilt.1, db).await?.to_manifest()?;
                        out.extend(diff_manifests(registry, platform, (published, &ma), (rebuilt, &mb)).await?);
                    }
                    (da, db) => out.push(Difference {
                        platform: platform.clone(),
                        location: "index".into(),
                        path: String::new(),
                        what: if da.is_some() {
                            "only in published"
                        } else {
                            "only in rebuilt"
                        }
                        .into(),
                        published: da.cloned().unwrap_or_default(),
                        rebuilt: db.cloned().unwrap_or_default(),
                    }),
                }
            }
            let (ja, jb) = (json(&a.bytes)?, json(&b.bytes)?);
            out.extend(json_differences(
                "",
                "index",
                &strip(&ja, "manifests"),
                &strip(&jb, "manifests"),
            ));
        }
        (false, false) => {
            let (ma, mb) = (a.to_manifest()?, b.to_manifest()?);
            out.extend(diff_manifests(registry, "", (published, &ma), (rebuilt, &mb)).await?);
        }
        _ => out.push(Difference {
            platform: String::new(),
            location: "manifest".into(),
            path: String::new(),
            what: "media type".into(),
            published: a.media_type.clone(),
            rebuilt: b.media_type.clone(),
        }),
    }
    if out.is_empty() {
        // Same content, different bytes: say where the manifest JSON differs.
        let (ja, jb) = (json(&a.bytes)?, json(&b.bytes)?);
        out.extend(json_differences("", "manifest", &ja, &jb));
    }
    Ok(out)
}

async fn diff_manifests(
    registry: &Registry,
    platform: &str,
    published: (Location<'_>, &ImageManifest),
    rebuilt: (Location<'_>, &ImageManifest),
) -> Result<Vec<Difference>> {
    let ((la, ma), (lb, mb)) = (published, rebuilt);
    let mut out = Vec::new();
    if ma.config.digest != mb.config.digest {
        let ca = json(&registry.get_blob(la.0, la.1, &ma.config.digest).await?)?;
        let cb = json(&registry.get_blob(lb.0, lb.1, &mb.config.digest).await?)?;
        out.extend(json_differences(platform, "config", &ca, &cb));
    }
    if ma.layers.len() != mb.layers.len() {
        out.push(Difference {
            platform: platform.to_string(),
            location: "manifest".into(),
            path: "/layers".into(),
            what: "layer count".into(),
            published: ma.layers.len().to_string(),
            rebuilt: mb.layers.len().to_string(),
        });
    }
    for (n, (a, b)) in ma.layers.iter().zip(&mb.layers).enumerate() {
        if a.digest == b.digest {
            continue;
        }
        let ea = layer_entries(&registry.get_blob(la.0, la.1, &a.digest).await?)?;
        let eb = layer_entries(&registry.get_blob(lb.0, lb.1, &b.digest).await?)?;
        let found = entry_differences(platform, &format!("layer {n}"), &ea, &eb);
        if found.is_empty() {
            // Same files, different bytes: the archive itself (order, padding, compression).
            out.push(Difference {
                platform: platform.to_string(),
                location: format!("layer {n}"),
                path: String::new(),
                what: "archive bytes (same entries)".into(),
                published: a.digest.clone(),
                rebuilt: b.digest.clone(),
            });
        }
        out.extend(found);
    }
    Ok(out)
}

fn json(bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes).context("not JSON")
}

fn strip(value: &serde_json::Value, key: &str) -> serde_json::Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove(key);
    }
    value
}

/// Leaf-by-leaf differences of two JSON documents, by JSON pointer.
pub fn json_differences(
    platform: &str,
    location: &str,
    published: &serde_json::Value,
    rebuilt: &serde_json::Value,
) -> Vec<Difference> {
    fn leaves(value: &serde_json::Value, pointer: String, out: &mut BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    leaves(value, format!("{pointer}/{escaped}"), out);
                }
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                for (index, value) in items.iter().enumerate() {
                    leaves(value, format!("{pointer}/{index}"), out);
                }
            }
            other => {
                out.insert(pointer, other.to_string());
            }
        }
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves(published, String::new(), &mut a);
    leaves(rebuilt, String::new(), &mut b);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|key| a.get(*key) != b.get(*key))
        .map(|key| Difference {
            platform: platform.to_string(),
            location: location.to_string(),
            path: key.clone(),
            what: "value".into(),
            published: a.get(key).cloned().unwrap_or_else(|| "(absent)".into()),
            rebuilt: b.get(key).cloned().unwrap_or_else(|| "(absent)".into()),
        })
        .collect()
}

/// What a layer says about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFacts {
    /// `file`, `dir`, `symlink`, `hardlink`, `other`.
    pub kind: String,
    /// Permission bits, octal.
    pub mode: String,
    /// `uid:gid`.
    pub owner: String,
    /// Bytes.
    pub size: u64,
    /// Modification time (seconds).
    pub mtime: u64,
    /// Link target (links only).
    pub link: String,
    /// `sha256:<hex>` of the content (files only).
    pub content: String,
}

/// The entries of a (gzip or plain) tar layer, by path (without a leading `./` or `/`).
pub fn layer_entries(blob: &[u8]) -> Result<BTreeMap<String, EntryFacts>> {
    let mut decompressed = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut decompressed)
            .context("the layer is not valid gzip")?;
    } else {
        decompressed.extend_from_slice(blob);
    }
    let mut archive = tar::Archive::new(decompressed.as_slice());
    let mut out = BTreeMap::new();
    for entry in archive.entries().context("the layer is not a tar archive")? {
        let mut entry = entry.context("unreadable tar entry")?;
        let header = entry.header().clone();
        let path = entry
            .path()
            .context("tar entry without a path")?
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        let kind = match header.entry_type() {
            tar::EntryType::Regular => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            _ => "other",
        };
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .context("unreadable tar entry content")?;
        let link = entry
            .link_name()
            .ok()
            .flatten()
            .map(|link| link.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.insert(
            path,
            EntryFacts {
                kind: kind.to_string(),
                mode: format!("{:o}", header.mode().unwrap_or(0) & 0o7777),
                owner: format!("{}:{}", header.uid().unwrap_or(0), header.gid().unwrap_or(0)),
                size: header.size().unwrap_or(0),
                mtime: header.mtime().unwrap_or(0),
                link,
                content: if kind == "file" {
                    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&content)))
                } else {
                    String::new()
                },
            },
        );
    }
    Ok(out)
}

/// Path-by-path differences of two layers.
pub fn entry_differences(
    platform: &str,
    location: &str,
    published: &BTreeMap<String, EntryFacts>,
    rebuilt: &BTreeMap<String, EntryFacts>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let difference = |path: &str, what: &str, a: String, b: String| Difference {
        platform: platform.to_string(),
        location: location.to_string(),
        path: path.to_string(),
        what: what.to_string(),
        published: a,
        rebuilt: b,
    };
    let paths: BTreeSet<&String> = published.keys().chain(rebuilt.keys()).collect();
    for path in paths {
        match (published.get(path), rebuilt.get(path)) {
            (Some(a), Some(b)) => {
                let attributes: [(&str, String, String); 7] = [
                    ("kind", a.kind.clone(), b.kind.clone()),
                    ("mode", a.mode.clone(), b.mode.clone()),
                    ("owner", a.owner.clone(), b.owner.clone()),
                    ("size", a.size.to_string(), b.size.to_string()),
                    ("mtime", a.mtime.to_string(), b.mtime.to_string()),
                    ("link target", a.link.clone(), b.link.clone()),
                    ("content", a.content.clone(), b.content.clone()),
                ];
                for (what, va, vb) in attributes {
                    if va != vb {
                        out.push(difference(path, what, va, vb));
                    }
                }
            }
            (Some(a), None) => out.push(difference(path, "only in published", a.kind.clone(), String::new())),
            (None, Some(b)) => out.push(difference(path, "only in rebuilt", String::new(), b.kind.clone())),
            (None, None) => {}
        }
    }
    out
}

/// The report for people: one line per difference.
pub fn render_report(report: &RebuildReport) -> String {
    let mut out = String::new();
    if report.identical {
        out.push_str(&format!(
            "{}: identical — the rebuild from recorded inputs is {}\n",
            report.image, report.rebuilt_digest
        ));
        return out;
    }
    out.push_str(&format!(
        "{}: DIFFERENT — published {}, rebuilt {} ({} difference{})\n",
        report.image,
        report.published_digest,
        report.rebuilt_digest,
        report.differences.len(),
        if report.differences.len() == 1 { "" } else { "s" }
    ));
    for d in &report.differences {
        let platform = if d.platform.is_empty() {
            String::new()
        } else {
            format!("[{}] ", d.platform)
        };
        out.push_str(&format!(
            "  {platform}{} {}: {} (published {:?}, rebuilt {:?})\n",
            d.location,
            if d.path.is_empty() { "-" } else { &d.path },
            d.what,
            d.published,
            d.rebuilt
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, u32, &[u8], u64)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, mode, content, mtime) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(*mtime);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, *content).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn layers_are_compared_file_by_file() {
        let a = layer_entries(&tar_gz(&[
            ("etc/app.conf", 0o644, b"one", 10),
            ("bin/run", 0o755, b"#!/bin/sh", 10),
            ("gone", 0o644, b"x", 10),
        ]))
        .unwrap();
        let b = layer_entries(&tar_gz(&[
            ("etc/app.conf", 0o644, b"two", 10),
            ("bin/run", 0o700, b"#!/bin/sh", 11),
            ("new", 0o644, b"y", 10),
        ]))
        .unwrap();
        let found: Vec<(String, String)> = entry_differences("", "layer 1", &a, &b)
            .into_iter()
            .map(|d| (d.path, d.what))
            .collect();
        assert_eq!(
            found,
            [
                ("bin/run".to_string(), "mode".to_string()),
                ("bin/run".to_string(), "mtime".to_string()),
                ("etc/app.conf".to_string(), "content".to_string()),
                ("gone".to_string(), "only in published".to_string()),
                ("new".to_string(), "only in rebuilt".to_string()),
            ]
        );
        assert!(entry_differences("", "layer 0", &a, &a).is_empty());
    }

    #[test]
    fn configs_are_compared_by_json_pointer() {
        let a =
            serde_json::json!({"created": "2026-01-01T00:00:00Z", "config": {"Env": ["A=1", "B=2"], "User": "1000"}});
        let b =
            serde_json::json!({"created": "2026-01-02T00:00:00Z", "config": {"Env": ["A=1", "B=3"], "User": "1000"}});
        let found: Vec<(String, String, String)> = json_differences("linux/amd64", "config", &a, &b)
            .into_iter()
            .map(|d| (d.path, d.published, d.rebuilt))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "/config/Env/1".to_string(),
                    "\"B=2\"".to_string(),
                    "\"B=3\"".to_string()
                ),
                (
                    "/created".to_string(),
                    "\"2026-01-01T00:00:00Z\"".to_string(),
                    "\"2026-01-02T00:00:00Z\"".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_report_names_every_difference() {
        let report = RebuildReport {
            image: "app".into(),
            published_digest: "sha256:a".into(),
            rebuilt_digest: "sha256:b".into(),
            identical: false,
            differences: vec![Difference {
                platform: String::new(),
                location: "layer 1".into(),
                path: "etc/app.conf".into(),
                what: "content".into(),
                published: "sha256:1".into(),
                rebuilt: "sha256:2".into(),
            }],
        };
        let text = render_report(&report);
        assert!(
            text.starts_with("app: DIFFERENT — published sha256:a, rebuilt sha256:b (1 difference)"),
            "{text}"
        );
        assert!(text.contains("layer 1 etc/app.conf: content"), "{text}");
    }
}
