//! Promotion: make a staged image live in its published repository.
//!
//! Order is what makes it safe to crash anywhere: first every blob (cross-repository
//! mounts on the same registry, so nothing is uploaded twice), then every child manifest of
//! an index, then the top manifest by digest, and only then the tags. A crash before the
//! tags leaves the previous image live and unreferenced content behind; a redelivery
//! finds the content in place and finishes.

use std::future::Future;
use std::pin::Pin;

use rebake_oci::{Descriptor, RawManifest, Registry};
use tracing::debug;

use crate::error::{Result, SignerError};

/// How deep indexes may nest (an index of indexes is legal OCI, and rare).
const MAX_INDEX_DEPTH: usize = 3;

/// A registry and a repository path in it, e.g. `("127.0.0.1:5000", "apps/app")`.
type Repo<'a> = (&'a str, &'a str);

/// Copies the image `digest` (manifest or index, with everything it references) from
/// `staging` to `published` — both `(registry, repository)` — then points every tag of
/// `tags` at it. Idempotent: content already in place is not copied again.
///
/// Tags are checked before anything is written, and moved last.
pub async fn promote(
    registry: &Registry,
    staging: (&str, &str),
    published: (&str, &str),
    digest: &str,
    tags: &[String],
) -> Result<()> {
    rebake_oci::validate_digest(digest).map_err(|error| SignerError::invalid("digest", error.to_string()))?;
    for tag in tags {
        rebake_oci::reference::validate_tag(tag).map_err(|error| SignerError::invalid("tag", error.to_string()))?;
    }
    let top = get_manifest(registry, staging, digest).await?;
    copy_content(registry, staging, published, &top, 0).await?;
    let target = format!("{}/{}", published.0, published.1);
    registry
        .put_manifest(published.0, published.1, digest, &top.bytes, &top.media_type)
        .await
        .map_err(SignerError::registry(format!("put manifest {target}@{digest}")))?;
    for tag in tags {
        registry
            .put_manifest(published.0, published.1, tag, &top.bytes, &top.media_type)
            .await
            .map_err(SignerError::registry(format!("move tag {target}:{tag} to {digest}")))?;
    }
    debug!(from = %format!("{}/{}", staging.0, staging.1), to = %target, digest, ?tags, "promoted image");
    Ok(())
}

async fn get_manifest(registry: &Registry, repo: Repo<'_>, digest: &str) -> Result<RawManifest> {
    registry
        .get_manifest(repo.0, repo.1, digest)
        .await
        .map_err(SignerError::registry(format!(
            "get staged manifest {}/{}@{digest}",
            repo.0, repo.1
        )))
}

/// Copies what `manifest` references (not `manifest` itself): blobs of an image manifest;
/// for an index, each child's content and then the child manifest.
fn copy_content<'a>(
    registry: &'a Registry,
    staging: Repo<'a>,
    published: Repo<'a>,
    manifest: &'a RawManifest,
    depth: usize,
) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
    Box::pin(async move {
        if !manifest.is_index() {
            let image = manifest.to_manifest().map_err(SignerError::registry(format!(
                "read staged manifest {}/{}@{}",
                staging.0, staging.1, manifest.digest
            )))?;
            for blob in std::iter::once(&image.config).chain(&image.layers) {
                copy_blob(registry, staging, published, blob).await?;
            }
            return Ok(());
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(SignerError::invalid(
                format!("staged index {}", manifest.digest),
                format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
            ));
        }
        let index = manifest.to_index().map_err(SignerError::registry(format!(
            "read staged index {}/{}@{}",
            staging.0, staging.1, manifest.digest
        )))?;
        for child in &index.manifests {
            let child_manifest = get_manifest(registry, staging, &child.digest).await?;
            copy_content(registry, staging, published, &child_manifest, depth + 1).await?;
            registry
                .put_manifest(
                    published.0,
                    published.1,
                    &child.digest,
                    &child_manifest.bytes,
                    &child_manifest.media_type,
                )
                .await
                .map_err(SignerError::registry(format!(
                    "put manifest {}/{}@{}",
                    published.0, published.1, child.digest
                )))?;
        }
        Ok(())
    })
}

async fn copy_blob(registry: &Registry, staging: Repo<'_>, published: Repo<'_>, blob: &Descriptor) -> Result<()> {
    if is_foreign(blob) {
        // Non-distributable layers are fetched from their URLs by clients; registries
        // usually do not hold them.
        debug!(digest = %blob.digest, media_type = %blob.media_type, "not copying foreign layer");
        return Ok(());
    }
    registry
        .copy_blob(staging.0, staging.1, published.0, published.1, &blob.digest)
        .await
        .map_err(SignerError::registry(format!(
            "copy blob {} from {}/{} to {}/{}",
            blob.digest, staging.0, staging.1, published.0, published.1
        )))
}

fn is_foreign(blob: &Descriptor) -> bool {
    (blob.media_type.contains(".foreign.") || blob.media_type.contains(".nondistributable."))
        && blob.extra.contains_key("urls")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_layers_are_recognised() {
        let mut layer = Descriptor::new(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            rebake_oci::sha256_digest(b"x"),
            1,
        );
        assert!(!is_foreign(&layer));
        layer
            .extra
            .insert("urls".into(), serde_json::json!(["https://example.com/l"]));
        assert!(is_foreign(&layer));
        let normal = Descriptor::new(rebake_oci::OCI_LAYER_GZIP, rebake_oci::sha256_digest(b"x"), 1);
        assert!(!is_foreign(&normal));
    }

    #[tokio::test]
    async fn bad_tags_fail_before_any_request() {
        let registry = Registry::new(vec!["127.0.0.1:1".to_string()]);
        let digest = rebake_oci::sha256_digest(b"x");
        let error = promote(
            &registry,
            ("127.0.0.1:1", "staging/app"),
            ("127.0.0.1:1", "apps/app"),
            &digest,
            &["ok".to_string(), "not/ok".to_string()],
        )
        .await
        .unwrap_err();
        assert!(matches!(error, SignerError::Invalid { .. }), "{error}");
        let error = promote(
            &registry,
            ("127.0.0.1:1", "staging/app"),
            ("127.0.0.1:1", "apps/app"),
            "sha256:short",
            &[],
        )
        .await
        .unwrap_err();
        assert!(matches!(error, SignerError::Invalid { .. }), "{error}");
        // A good request reaches the (absent) registry: transient.
        let error = promote(
            &registry,
            ("127.0.0.1:1", "staging/app"),
            ("127.0.0.1:1", "apps/app"),
            &digest,
            &["latest".to_string()],
        )
        .await
        .unwrap_err();
        assert!(error.is_transient(), "{error}");
    }
}
