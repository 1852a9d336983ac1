//! Deterministic image assembly: base manifest, a package layer, one layer of source files
//! and the config, per platform, under an index when the spec lists platforms.
//! Same request → same bytes → same digest.

use std::{collections::BTreeMap, path::Path};

use rebake_config::ImageSpec;
use rebake_events::{pb, rfc3339_ms};
use rebake_feeds::fetch::FeedClient;
use rebake_oci::{
    BuiltLayer, Descriptor, History, ImageConfig, ImageIndex, ImageManifest, ImageRef, LayerEntry, OCI_CONFIG,
    OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Platform, Registry, RuntimeConfig, build_layer, select_platform,
    to_json_bytes,
};

use crate::{BuilderError, Result, git, packages};

/// A staged image.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Staging repository with registry, no tag.
    pub repository: String,
    /// Manifest (or index) digest.
    pub digest: String,
    /// Its media type (OCI manifest or OCI index).
    pub media_type: String,
    /// Config + compressed layers, bytes.
    pub size_bytes: i64,
    /// Sources with their commit times.
    pub sources: Vec<pb::SourceCommit>,
}

/// Builds `request` and pushes it to `staging_prefix/<image>` on the publish registry: one
/// manifest, or, when the spec lists `platforms`, one manifest per platform under an OCI
/// image index (the index is what is staged, signed and published, so tags move once).
pub async fn build_and_stage(
    registry: &Registry,
    feeds: &FeedClient,
    work_dir: &Path,
    staging_prefix: &str,
    request: &pb::BuildRequest,
) -> Result<Staged> {
    let invalid = |reason: String| BuilderError::InvalidRequest { reason };
    let spec: ImageSpec =
        serde_json::from_str(&request.spec_json).map_err(|error| invalid(format!("spec: {error}")))?;
    let publish =
        ImageRef::parse(&spec.publish.repository).map_err(|error| invalid(format!("publish.repository: {error}")))?;
    let staging_repository = format!("{}/{}", staging_prefix.trim_matches('/'), spec.name.as_str());
    let target = Target {
        registry: &publish.registry,
        repository: &staging_repository,
    };

    // Sources → one layer, shared by every platform.
    let mut files: BTreeMap<String, LayerEntry> = BTreeMap::new();
    let mut sources = Vec::new();
    let mut epoch: i64 = 0;
    for (source_spec, source) in spec.sources.iter().zip(&request.sources) {
        let tree = git::checkout(
            work_dir,
            &source.url,
            &source.ref_name,
            &source.commit,
            source_spec.path.as_deref(),
            source_spec.dest.as_deref(),
        )
        .await?;
        epoch = epoch.max(tree.commit_time);
        for entry in tree.entries {
            files.insert(entry.path.clone(), entry);
        }
        sources.push(pb::SourceCommit {
            commit_time: tree.commit_time,
            ..source.clone()
        });
    }
    if spec.sources.len() != request.sources.len() {
        return Err(invalid(format!(
            "spec has {} sources but the request resolved {}",
            spec.sources.len(),
            request.sources.len()
        )));
    }
    let created = rfc3339_seconds(epoch);
    let source_layer = if files.is_empty() {
        None
    } else {
        let layer = build_layer(files.into_values().collect(), epoch.max(0) as u64)?;
        registry
            .push_blob(target.registry, target.repository, layer.compressed.clone())
            .await?;
        let created_by = format!(
            "rebake: sources {}",
            sources
                .iter()
                .map(|s| format!("{}@{}", s.url, s.commit))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some((layer, created_by))
    };

    let mut manifests = Vec::new();
    let mut size_bytes = 0;
    for platform_text in spec.build_platforms() {
        let platform = parse_platform(&platform_text).map_err(invalid)?;
        let packages: Vec<pb::ResolvedPackage> = request
            .packages
            .iter()
            .filter(|package| package.platform == platform_text)
            .cloned()
            .collect();
        if spec.packages.is_some() && packages.is_empty() {
            return Err(invalid(format!("no resolved packages for {platform_text}")));
        }

        // 1. Base.
        let (mut config, mut layers, base_name) = if spec.is_scratch() {
            let config = ImageConfig {
                architecture: platform.architecture.clone(),
                os: platform.os.clone(),
                variant: platform.variant.clone(),
                ..Default::default()
            };
            (config, Vec::new(), None)
        } else {
            let base = load_base(registry, &request.base_ref, &request.base_digest, &platform).await?;
            // Base layers reach the staging repository by cross-repository mount, all at
            // once: each is a round trip or two of its own.
            let mounts = base.manifest.layers.iter().map(|layer| {
                registry.copy_blob(
                    &base.reference.registry,
                    &base.reference.repository,
                    target.registry,
                    target.repository,
                    &layer.digest,
                )
            });
            futures::future::try_join_all(mounts).await?;
            (base.config, base.manifest.layers, Some(base.name))
        };

        // 2. Packages → one layer.
        if spec.packages.is_some() || spec.accounts.is_some() || !spec.os_release.is_empty() {
            let entries = packages::layer_entries(feeds, &spec, &packages).await?;
            let layer = tokio::task::spawn_blocking(move || build_layer(entries, epoch.max(0) as u64))
                .await
                .map_err(|error| invalid(format!("layer build panicked: {error}")))??;
            registry
                .push_blob(target.registry, target.repository, layer.compressed.clone())
                .await?;
            let description = if packages.is_empty() {
                "rebake: accounts and os-release".to_string()
            } else {
                format!(
                    "rebake: {} packages from feed {}",
                    packages.len(),
                    packages
                        .first()
                        .map(|package| package.feed.as_str())
                        .unwrap_or_default()
                )
            };
            push_layer_record(&mut config, &mut layers, &layer, &created, description);
        }

        // 3. Sources.
        if let Some((layer, created_by)) = &source_layer {
            push_layer_record(&mut config, &mut layers, layer, &created, created_by.clone());
        }

        // 4. Config and manifest.
        apply_config(&mut config, &spec);
        config.created = Some(created.clone());
        let config_bytes = to_json_bytes(&config)?;
        // A new config nearly always (it names this build's inputs): no existence check.
        let config_digest = registry
            .push_new_blob(target.registry, target.repository, config_bytes.clone().into())
            .await?;
        let mut manifest = ImageManifest::new(
            Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as i64),
            layers,
        );
        manifest.media_type = Some(OCI_MANIFEST.to_string());
        let annotations = &mut manifest.annotations;
        annotations.insert("org.opencontainers.image.created".into(), created.clone());
        annotations.insert("dev.rebake.image".into(), spec.name.to_string());
        annotations.insert("dev.rebake.inputs-hash".into(), request.inputs_hash.clone());
        if let Some(base_name) = base_name {
            annotations.insert("org.opencontainers.image.base.name".into(), base_name);
            annotations.insert(
                "org.opencontainers.image.base.digest".into(),
                request.base_digest.clone(),
            );
        }
        if let Some(first) = sources.first() {
            annotations.insert("org.opencontainers.image.revision".into(), first.commit.clone());
            annotations.insert("org.opencontainers.image.source".into(), first.url.clone());
        }
        size_bytes += manifest.config.size + manifest.layers.iter().map(|layer| layer.size).sum::<i64>();
        let manifest_bytes = to_json_bytes(&manifest)?;
        let digest = rebake_oci::sha256_digest(&manifest_bytes);
        registry
            .put_manifest(
                target.registry,
                target.repository,
                &digest,
                &manifest_bytes,
                OCI_MANIFEST,
            )
            .await?;
        let mut descriptor = Descriptor::new(OCI_MANIFEST, digest, manifest_bytes.len() as i64);
        descriptor.platform = Some(platform);
        manifests.push(descriptor);
    }

    // 5. One manifest, or an index over every platform's.
    let digest = if spec.is_multi_platform() {
        let mut index = ImageIndex::new(manifests);
        index
            .annotations
            .insert("org.opencontainers.image.created".into(), created);
        index
            .annotations
            .insert("dev.rebake.image".into(), spec.name.to_string());
        index
            .annotations
            .insert("dev.rebake.inputs-hash".into(), request.inputs_hash.clone());
        let index_bytes = to_json_bytes(&index)?;
        let digest = rebake_oci::sha256_digest(&index_bytes);
        registry
            .put_manifest(target.registry, target.repository, &digest, &index_bytes, OCI_INDEX)
            .await?;
        digest
    } else {
        manifests
            .pop()
            .map(|descriptor| descriptor.digest)
            .ok_or_else(|| invalid("no platform to build".to_string()))?
    };
    Ok(Staged {
        repository: format!("{}/{staging_repository}", publish.registry),
        digest,
        media_type: if spec.is_multi_platform() {
            OCI_INDEX
        } else {
            OCI_MANIFEST
        }
        .to_string(),
        size_bytes,
        sources,
    })
}

/// Where a build is staged.
struct Target<'a> {
    registry: &'a str,
    repository: &'a str,
}

/// Appends a pushed layer to a manifest's layers and its config's diff ids and history.
fn push_layer_record(
    config: &mut ImageConfig,
    layers: &mut Vec<Descriptor>,
    layer: &BuiltLayer,
    created: &str,
    created_by: String,
) {
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    config.history.push(History {
        created: Some(created.to_string()),
        created_by: Some(created_by),
        ..Default::default()
    });
    layers.push(Descriptor::new(OCI_LAYER_GZIP, layer.digest.clone(), layer.size));
}

/// `os/arch[/variant]` → an OCI platform.
fn parse_platform(text: &str) -> std::result::Result<Platform, String> {
    let mut parts = text.split('/');
    let (Some(os), Some(arch)) = (parts.next(), parts.next()) else {
        return Err(format!("platform {text:?} is not os/arch[/variant]"));
    };
    let mut platform = Platform::new(os, arch);
    platform.variant = parts.next().map(str::to_string);
    Ok(platform)
}

struct Base {
    reference: ImageRef,
    name: String,
    manifest: ImageManifest,
    config: ImageConfig,
}

async fn load_base(registry: &Registry, base_ref: &str, base_digest: &str, platform: &Platform) -> Result<Base> {
    let base_error = |reason: String| BuilderError::Base {
        reference: base_ref.to_string(),
        reason,
    };
    let reference = ImageRef::parse(base_ref).map_err(|error| base_error(error.to_string()))?;
    if base_digest.is_empty() {
        return Err(base_error("the base was not resolved to a digest".to_string()));
    }
    let name = match &reference.tag {
        Some(tag) => format!("{}:{tag}", reference.repo_string()),
        None => reference.repo_string(),
    };
    let fetched = match registry
        .get_manifest(&reference.registry, &reference.repository, base_digest)
        .await
    {
        Ok(raw) => raw,
        Err(error) if error.is_not_found() => return Err(base_error(format!("{base_digest} not found"))),
        Err(error) => return Err(error.into()),
    };
    let raw = if fetched.is_index() {
        let index = fetched.to_index()?;
        let descriptor = select_platform(&index, &platform.os, &platform.architecture).ok_or_else(|| {
            base_error(format!(
                "index has no {}/{} manifest",
                platform.os, platform.architecture
            ))
        })?;
        registry
            .get_manifest(&reference.registry, &reference.repository, &descriptor.digest)
            .await?
    } else {
        fetched
    };
    let manifest = raw.to_manifest()?;
    let config_bytes = registry
        .get_blob(&reference.registry, &reference.repository, &manifest.config.digest)
        .await?;
    let config: ImageConfig = rebake_oci::from_json_bytes(&config_bytes, "base image config")?;
    // A single-manifest base serves only its own platform.
    if !config.architecture.is_empty() && (config.os != platform.os || config.architecture != platform.architecture) {
        return Err(base_error(format!(
            "the base is {}/{} only, not {}/{}",
            config.os, config.architecture, platform.os, platform.architecture
        )));
    }
    Ok(Base {
        reference,
        name,
        manifest,
        config,
    })
}

/// Applies the spec's `config:` over the base's.
fn apply_config(config: &mut ImageConfig, spec: &ImageSpec) {
    let runtime = config.config.get_or_insert_with(RuntimeConfig::default);
    let wanted = &spec.config;
    if !wanted.env.is_empty() {
        let mut env: Vec<String> = runtime
            .env
            .iter()
            .filter(|line| {
                let key = line.split_once('=').map(|(key, _)| key).unwrap_or(line);
                !wanted.env.contains_key(key)
            })
            .cloned()
            .collect();
        env.extend(wanted.env.iter().map(|(key, value)| format!("{key}={value}")));
        runtime.env = env;
    }
    if let Some(entrypoint) = &wanted.entrypoint {
        runtime.entrypoint = Some(entrypoint.clone());
    }
    if let Some(cmd) = &wanted.cmd {
        runtime.cmd = Some(cmd.clone());
    }
    if let Some(user) = &wanted.user {
        runtime.user = Some(user.clone());
    }
    if let Some(workdir) = &wanted.workdir {
        runtime.working_dir = Some(workdir.clone());
    }
    for (key, value) in &wanted.labels {
        runtime.labels.insert(key.clone(), value.clone());
    }
    for port in &wanted.ports {
        let port = if port.contains('/') {
            port.clone()
        } else {
            format!("{port}/tcp")
        };
        runtime.exposed_ports.insert(port, Default::default());
    }
}

fn rfc3339_seconds(epoch: i64) -> String {
    let text = rfc3339_ms(epoch * 1000);
    // `…:SS.000Z` → `…:SSZ`
    text.replace(".000Z", "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_merge_env_and_labels() {
        let spec: ImageSpec = serde_yaml::from_str(
            "name: app\nbase: scratch\nconfig:\n  env: {A: new, C: c}\n  labels: {x: y}\n  ports: ['8080']\n  user: '1000'\npublish: {repository: reg/app}\n",
        )
        .unwrap();
        let mut config = ImageConfig {
            config: Some(RuntimeConfig {
                env: vec!["A=old".into(), "B=b".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        apply_config(&mut config, &spec);
        let runtime = config.config.unwrap();
        assert_eq!(runtime.env, vec!["B=b", "A=new", "C=c"]);
        assert_eq!(runtime.labels["x"], "y");
        assert!(runtime.exposed_ports.contains_key("8080/tcp"));
        assert_eq!(runtime.user.as_deref(), Some("1000"));
    }

    #[test]
    fn timestamps_are_seconds() {
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
    }
}
