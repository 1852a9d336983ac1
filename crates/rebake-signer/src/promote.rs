//! Promotion: make a staged image live in its published repository.
//!
//! Order is what makes it safe to crash anywhere: first every blob (cross-repository
//! mounts on the same registry, so nothing is uploaded twice), then every child manifest of
//! an index, and only then the top manifest under its tags (each tag put stores the
//! manifest too). A crash before the tags leaves the previous image live and unreferenced
//! content behind; a redelivery finds the content in place and finishes.

use std::future::Future;
use std::pin::Pin;

use rebake_oci::{Descriptor, RawManifest, Registry};
use tracing::debug;

use crate::error::{Result, SignerError};

/// How deep indexes may nest (an index of indexes is legal OCI, and rare).
const MAX_INDEX_DEPTH: usize = 3;

/// A registry and a repository path in it, e.g. `("127.0.0.1:5000", "apps/app")`.
pub type Repo<'a> = (&'a str, &'a str);

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
    copy_image(registry, staging, published, &top).await?;
    move_tags(registry, published, &top, tags).await
}

/// Copies what the staged image `top` references (blobs; for an index, each child's
/// content and the child manifest) from `staging` to `published`. `top` itself is not put:
/// [`move_tags`] does that, so the image is complete but unreferenced until then.
/// Independent copies (the blobs of a manifest, the children of an index) run at once.
pub async fn copy_image(registry: &Registry, staging: Repo<'_>, published: Repo<'_>, top: &RawManifest) -> Result<()> {
    copy_content(registry, staging, published, top, 0).await
}

/// Puts `top` (whose content [`copy_image`] copied) into `published` under every tag of
/// `tags` — the moment the image goes live — or, with no tags, by digest. Each tag put
/// stores the manifest and points the tag at it in one request, so a separate put by
/// digest first would only cost a round trip (and a registry notification). The tags are
/// independent and are put at once.
pub async fn move_tags(registry: &Registry, published: Repo<'_>, top: &RawManifest, tags: &[String]) -> Result<()> {
    for tag in tags {
        rebake_oci::reference::validate_tag(tag).map_err(|error| SignerError::invalid("tag", error.to_string()))?;
    }
    let target = format!("{}/{}", published.0, published.1);
    let references: Vec<&str> = if tags.is_empty() {
        vec![top.digest.as_str()]
    } else {
        tags.iter().map(String::as_str).collect()
    };
    let puts = references.into_iter().map(|reference| {
        let target = &target;
        async move {
            registry
                .put_manifest(published.0, published.1, reference, &top.bytes, &top.media_type)
                .await
                .map_err(SignerError::registry(format!(
                    "put manifest {target}:{reference} ({})",
                    top.digest
                )))
        }
    });
    futures::future::try_join_all(puts).await?;
    debug!(to = %target, digest = %top.digest, ?tags, "moved tags");
    Ok(())
}

pub(crate) async fn get_manifest(registry: &Registry, repo: Repo<'_>, digest: &str) -> Result<RawManifest> {
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
            let copies = std::iter::once(&image.config)
                .chain(&image.layers)
                .map(|blob| copy_blob(registry, staging, published, blob));
            futures::future::try_join_all(copies).await?;
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
        let children = index.manifests.iter().map(|child| async move {
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
                )))
        });
        futures::future::try_join_all(children).await?;
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
