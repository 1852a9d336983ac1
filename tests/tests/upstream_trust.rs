//! Upstream verification: a base image must carry the cosign signature its spec
//! (`base_verify`) or the config (`registries.verify`) requires before anything is built on
//! it, and a refusal says why in the build record and the image state.

use std::time::Duration;

use anyhow::{Result, ensure};
use rebake_e2e::{Options, Sandbox, generate_key_pair};
use rebake_events::state::BuildRecord;
use rebake_oci::LayerEntry;

/// Waits until `image` has a failed build; returns the newest failed record.
async fn wait_failed(sandbox: &Sandbox, image: &str) -> Result<BuildRecord> {
    let deadline = tokio::time::Instant::now() + rebake_testkit::patience();
    loop {
        let builds = sandbox.builds_of(image).await?;
        if let Some(failed) = builds.iter().rev().find(|record| record.status == "failed") {
            return Ok(failed.clone());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{image} never failed; builds: {builds:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pushes `host/repository:tag` whose one layer holds `release` and returns its digest,
/// signed first with `key` when given: the manifest goes up under a throwaway tag, is
/// signed, then tagged, so the builder never sees the tag before its signature.
async fn push_signed(
    sandbox: &Sandbox,
    repository: &str,
    tag: &str,
    release: &str,
    key: Option<&std::path::Path>,
) -> Result<String> {
    let push = |tag: String| async move {
        let layer = vec![LayerEntry::file("etc/base-release", 0o644, release.as_bytes().to_vec())];
        rebake_e2e::push_image(
            &sandbox.registry,
            &sandbox.host,
            repository,
            &tag,
            vec![layer],
            rebake_oci::RuntimeConfig::default(),
        )
        .await
    };
    let digest = push(format!("pre-{tag}")).await?;
    if let Some(key) = key {
        sandbox.sign_pushed(repository, &digest, key).await?;
    }
    let tagged = push(tag.to_string()).await?;
    ensure!(tagged == digest, "the same content pushed twice has two digests");
    Ok(digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bases_must_carry_the_required_signature() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let (trusted_key, trusted_pub) = generate_key_pair(keys.path(), "trusted")?;
    let (other_key, _) = generate_key_pair(keys.path(), "other")?;
    let trusted_id = rebake_signer::VerifyingKey::from_pem(&std::fs::read(&trusted_pub)?)?
        .key_id()
        .to_string();
    let spec = |name: &str, base: &str, verify: bool| {
        let verify = if verify {
            format!("base_verify:\n  keys: [{}]\n", trusted_pub.display())
        } else {
            String::new()
        };
        (
            format!("{name}.yaml"),
            format!(
                "name: {name}\nbase: {{host}}/{base}\n{verify}config:\n  user: \"1000\"\npublish:\n  repository: {{host}}/apps/{name}\n"
            ),
        )
    };
    let sandbox = Sandbox::start_with(
        "trust",
        Options {
            default_images: false,
            // Failed inputs are retried after the resync interval (level-triggered).
            resync_interval: "2s".to_string(),
            images: vec![
                spec("signed", "base:v1", true),
                spec("unsigned", "base:v2", true),
                spec("forged", "vendor/base:v1", false),
            ],
            registries: format!(
                "  verify:\n    - match: \"{{host}}/vendor/*\"\n      keys: [{}]\n",
                trusted_pub.display()
            ),
            ..Default::default()
        },
    )
    .await?;

    let signed_base = push_signed(&sandbox, "base", "v1", "r1", Some(&trusted_key)).await?;
    let unsigned_base = push_signed(&sandbox, "base", "v2", "r2", None).await?;
    let forged_base = push_signed(&sandbox, "vendor/base", "v1", "r3", Some(&other_key)).await?;

    // Signed by the required key: built on, and the build record says by which key.
    let signed = sandbox.wait_published("signed", None).await?;
    let manifest = sandbox.manifest("apps/signed", &signed).await?;
    ensure!(manifest.annotations["org.opencontainers.image.base.digest"] == signed_base);
    let record = sandbox.builds_of("signed").await?.pop().expect("a build record");
    let build_stage = record
        .stages
        .iter()
        .find(|stage| stage.name == "build")
        .expect("a build stage");
    ensure!(
        build_stage.summary.contains("base signature verified") && build_stage.summary.contains(&trusted_id),
        "{build_stage:?}"
    );

    // Unsigned: refused at stage `build`, with base, digest and reason in the record and state.
    let failed = wait_failed(&sandbox, "unsigned").await?;
    let host = &sandbox.host;
    for expected in [
        format!("base {host}/base:v2@{unsigned_base} is not trusted"),
        "no signature".to_string(),
        "required by base_verify".to_string(),
    ] {
        ensure!(
            failed.reason.contains(&expected),
            "{expected:?} not in {:?}",
            failed.reason
        );
    }
    ensure!(
        failed
            .stages
            .iter()
            .any(|stage| stage.name == "build" && !stage.ok && stage.summary == failed.reason),
        "{failed:?}"
    );
    let state = sandbox.image_state("unsigned").await?.expect("image state");
    ensure!(state.published.is_none(), "{state:?}");
    let last_failure = state.last_failure.expect("the failure is in the image state");
    ensure!(
        last_failure.stage == "build" && last_failure.reason == failed.reason,
        "{last_failure:?}"
    );

    // Signed by another key, required by `registries.verify`: refused, naming the key ids.
    let failed = wait_failed(&sandbox, "forged").await?;
    for expected in [
        format!("base {host}/vendor/base:v1@{forged_base} is not trusted"),
        format!("signature does not verify with key ids {trusted_id}"),
        format!("required by registries.verify {host}/vendor/*"),
    ] {
        ensure!(
            failed.reason.contains(&expected),
            "{expected:?} not in {:?}",
            failed.reason
        );
    }
    ensure!(sandbox.published_digest("forged").await?.is_none());

    // The publisher signs the base and pushes it again: the next attempt builds on it.
    sandbox.sign_pushed("base", &unsigned_base, &trusted_key).await?;
    ensure!(push_signed(&sandbox, "base", "v2", "r2", None).await? == unsigned_base);
    let unsigned = sandbox.wait_published("unsigned", None).await?;
    let manifest = sandbox.manifest("apps/unsigned", &unsigned).await?;
    ensure!(manifest.annotations["org.opencontainers.image.base.digest"] == unsigned_base);
    let state = sandbox.image_state("unsigned").await?.expect("image state");
    ensure!(
        state.status == rebake_events::state::ImageStatus::Published,
        "{state:?}"
    );

    sandbox.stop().await;
    Ok(())
}
