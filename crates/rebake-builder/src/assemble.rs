//! Deterministic image assembly: base manifest + one layer of source files + config.
//! Same request → same bytes → same digest.

use std::{collections::BTreeMap, path::Path};

use rebake_config::ImageSpec;
use rebake_events::{pb, rfc3339_ms};
use rebake_oci::{
    Descriptor, History, ImageConfig, ImageManifest, ImageRef, LayerEntry, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST,
    Registry, RuntimeConfig, build_layer, select_platform, to_json_bytes,
};

use crate::{BuilderError, Result, git};

/// A staged image.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Staging repository with registry, no tag.
    pub repository: String,
    /// Manifest digest.
    pub digest: String,
    /// Config + compressed layers, bytes.
    pub size_bytes: i64,
    /// Sources with their commit times.
    pub sources: Vec<pb::SourceCommit>,
}

/// Builds `request` and pushes it to `staging_prefix/<image>` on the publish registry.
pub async fn build_and_stage(
    registry: &Registry,
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

    // 1. Base.
    let (mut config, mut layers, base_name) = if spec.is_scratch() {
        let config = ImageConfig {
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            ..Default::default()
        };
        (config, Vec::new(), None)
    } else {
        let base = load_base(registry, &request.base_ref, &request.base_digest).await?;
        // Base layers reach the staging repository by cross-repository mount.
        for layer in &base.manifest.layers {
            registry
                .copy_blob(
                    &base.reference.registry,
                    &base.reference.repository,
                    &publish.registry,
                    &staging_repository,
                    &layer.digest,
                )
                .await?;
        }
        (base.config, base.manifest.layers, Some(base.name))
    };

    // 2. Sources → one layer.
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
    if !files.is_empty() {
        let layer = build_layer(files.into_values().collect(), epoch.max(0) as u64)?;
        registry
            .push_blob(&publish.registry, &staging_repository, layer.compressed.clone())
            .await?;
        config.rootfs.diff_ids.push(layer.diff_id.clone());
        config.history.push(History {
            created: Some(created.clone()),
            created_by: Some(format!(
                "rebake: sources {}",
                sources
                    .iter()
                    .map(|s| format!("{}@{}", s.url, s.commit))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ..Default::default()
        });
        layers.push(Descriptor::new(OCI_LAYER_GZIP, layer.digest.clone(), layer.size));
    }

    // 3. Config.
    apply_config(&mut config, &spec);
    config.created = Some(created.clone());
    let config_bytes = to_json_bytes(&config)?;
    let config_digest = registry
        .push_blob(&publish.registry, &staging_repository, config_bytes.clone().into())
        .await?;

    // 4. Manifest.
    let mut manifest = ImageManifest::new(
        Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as i64),
        layers,
    );
    manifest.media_type = Some(OCI_MANIFEST.to_string());
    let annotations = &mut manifest.annotations;
    annotations.insert("org.opencontainers.image.created".into(), created);
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
    let size_bytes = manifest.config.size + manifest.layers.iter().map(|layer| layer.size).sum::<i64>();
    let manifest_bytes = to_json_bytes(&manifest)?;
    let digest = rebake_oci::sha256_digest(&manifest_bytes);
    registry
        .put_manifest(
            &publish.registry,
            &staging_repository,
            &digest,
            &manifest_bytes,
            OCI_MANIFEST,
        )
        .await?;
    Ok(Staged {
        repository: format!("{}/{staging_repository}", publish.registry),
        digest,
        size_bytes,
        sources,
    })
}

struct Base {
    reference: ImageRef,
    name: String,
    manifest: ImageManifest,
    config: ImageConfig,
}

async fn load_base(registry: &Registry, base_ref: &str, base_digest: &str) -> Result<Base> {
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
        let descriptor = select_platform(&index, "linux", "amd64")
            .ok_or_else(|| base_error("index has no linux/amd64 manifest".to_string()))?;
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
