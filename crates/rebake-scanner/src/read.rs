//! Reading a staged image back from the registry into the [`ImageView`]s the checks use:
//! one per platform manifest (an index is read platform by platform).

use std::collections::BTreeMap;

use bytes::Bytes;
use rebake_oci::{ImageConfig, ImageRef, Platform, RawManifest, Registry};

use crate::{Result, ScannerError, view::ImageView};

/// One platform of a staged image.
#[derive(Debug, Clone)]
pub struct PlatformView {
    /// `os/arch[/variant]`, or empty for a single-manifest image.
    pub platform: String,
    /// Its filesystem, config and kept file contents.
    pub view: ImageView,
    /// Config + compressed layers, bytes.
    pub size: i64,
}

/// Reads every platform of `repository@digest`, keeping the contents of the files
/// [`crate::view::wanted`] selects (with `extra` paths, e.g. what structure tests read).
pub async fn read_image(
    registry: &Registry,
    repository: &str,
    digest: &str,
    extra: &[String],
) -> Result<Vec<PlatformView>> {
    let reference = ImageRef::parse(repository).map_err(ScannerError::Registry)?;
    let raw = registry
        .get_manifest(&reference.registry, &reference.repository, digest)
        .await
        .map_err(ScannerError::Registry)?;
    // (platform, manifest digest, the manifest when already read: a single-platform image's
    // is the one just fetched, and is not fetched twice).
    let manifests: Vec<(String, String, Option<RawManifest>)> = if raw.is_index() {
        raw.to_index()
            .map_err(ScannerError::Registry)?
            .manifests
            .into_iter()
            .map(|descriptor| {
                (
                    descriptor.platform.as_ref().map(platform_text).unwrap_or_default(),
                    descriptor.digest,
                    None,
                )
            })
            .collect()
    } else {
        vec![(String::new(), digest.to_string(), Some(raw))]
    };
    let mut views = Vec::with_capacity(manifests.len());
    for (platform, manifest_digest, read) in manifests {
        let raw = match read {
            Some(raw) => raw,
            None => registry
                .get_manifest(&reference.registry, &reference.repository, &manifest_digest)
                .await
                .map_err(ScannerError::Registry)?,
        };
        let manifest = raw.to_manifest().map_err(ScannerError::Registry)?;
        let config_bytes = registry
            .get_blob(&reference.registry, &reference.repository, &manifest.config.digest)
            .await
            .map_err(ScannerError::Registry)?;
        let config: ImageConfig =
            rebake_oci::from_json_bytes(&config_bytes, "image config").map_err(ScannerError::Registry)?;
        let mut layers: Vec<(String, Bytes)> = Vec::new();
        for layer in &manifest.layers {
            let blob = registry
                .get_blob(&reference.registry, &reference.repository, &layer.digest)
                .await
                .map_err(ScannerError::Registry)?;
            layers.push((layer.digest.clone(), blob));
        }
        let size = manifest.config.size + manifest.layers.iter().map(|layer| layer.size).sum::<i64>();
        let layer_digests: Vec<String> = layers.iter().map(|(digest, _)| digest.clone()).collect();
        let extra = extra.to_vec();
        // Decompressing and hashing every layer is CPU work: off the async workers.
        let (files, contents) = tokio::task::spawn_blocking(move || {
            rebake_oci::inventory_with_contents(&layers, &|path| crate::view::wanted(path, &extra))
        })
        .await
        .map_err(|error| ScannerError::Internal(format!("inventory task failed: {error}")))?
        .map_err(ScannerError::Registry)?;
        let files: BTreeMap<String, rebake_oci::FileInfo> =
            files.into_iter().map(|file| (file.path.clone(), file)).collect();
        views.push(PlatformView {
            platform,
            view: ImageView {
                files,
                contents,
                config,
                layers: layer_digests,
                digest: manifest_digest,
            },
            size,
        });
    }
    Ok(views)
}

fn platform_text(platform: &Platform) -> String {
    match &platform.variant {
        Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    }
}
