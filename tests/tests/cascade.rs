//! The spine's end-to-end scenario: a registry push cascades through every service over real
//! NATS JetStream and a real registry, in dependency order, signed, with no duplicates.

use std::{process::Command, time::Duration};

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use rebake_e2e::{GITHUB_SECRET, REGISTRY_TOKEN, Sandbox};

fn published_builds(builds: &[rebake_events::state::BuildRecord]) -> usize {
    builds.iter().filter(|build| build.status == "published").count()
}

/// Verifies the cosign-style signature of `repository@digest` with openssl.
async fn verify_signature(sandbox: &Sandbox, repository: &str, digest: &str) -> Result<()> {
    let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    let manifest = sandbox.manifest(repository, &tag).await.context("signature manifest")?;
    ensure!(manifest.layers.len() == 1, "one signature layer expected");
    let layer = &manifest.layers[0];
    ensure!(layer.media_type == "application/vnd.dev.cosign.simplesigning.v1+json");
    let payload = sandbox
        .registry
        .get_blob(&sandbox.host, repository, &layer.digest)
        .await?;
    let payload_json: serde_json::Value = serde_json::from_slice(&payload)?;
    ensure!(
        payload_json["critical"]["image"]["docker-manifest-digest"] == digest,
        "payload names {payload_json}"
    );
    ensure!(
        payload_json["critical"]["identity"]["docker-reference"] == format!("{}/{repository}", sandbox.host),
        "docker-reference is {}",
        payload_json["critical"]["identity"]["docker-reference"]
    );
    let signature = base64::engine::general_purpose::STANDARD.decode(
        layer
            .annotations
            .get("dev.cosignproject.cosign/signature")
            .context("signature annotation")?,
    )?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("payload"), &payload)?;
    std::fs::write(dir.path().join("sig"), &signature)?;
    let output = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&sandbox.public_key)
        .args(["-signature", "sig", "payload"])
        .current_dir(dir.path())
        .output()?;
    ensure!(
        output.status.success(),
        "openssl rejected the signature of {repository}@{digest}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_push_cascades_in_order_signed_and_deduplicated() -> Result<()> {
    let sandbox = Sandbox::start("e2ecascade").await?;

    // --- base v1: the registry's own notification starts the cascade ---
    let base_v1 = sandbox.push_base("v1", "one").await?;
    let app_v1 = sandbox.wait_published("app", None).await?;
    let child_v1 = sandbox.wait_published("child", None).await?;

    let app_manifest = sandbox.manifest("apps/app", "latest").await?;
    let base_manifest = sandbox.manifest("base", "v1").await?;
    ensure!(rebake_oci::sha256_digest(&rebake_oci::to_json_bytes(&app_manifest)?) == app_v1);
    ensure!(app_manifest.annotations["org.opencontainers.image.base.digest"] == base_v1);
    ensure!(
        app_manifest.layers.len() == base_manifest.layers.len() + 1,
        "base layers + one source layer"
    );
    ensure!(
        app_manifest.layers[0] == base_manifest.layers[0],
        "base layer reused by digest"
    );
    ensure!(
        sandbox.manifest("apps/app", "stable").await? == app_manifest,
        "every tag moved"
    );
    let config_blob = sandbox
        .registry
        .get_blob(&sandbox.host, "apps/app", &app_manifest.config.digest)
        .await?;
    let config: rebake_oci::ImageConfig = serde_json::from_slice(&config_blob)?;
    let runtime = config.config.context("runtime config")?;
    ensure!(
        runtime.env.contains(&"MODE=prod".to_string()) && runtime.env.contains(&"PATH=/usr/bin:/bin".to_string()),
        "env {:?}",
        runtime.env
    );
    ensure!(runtime.user.as_deref() == Some("1000"));
    ensure!(runtime.labels.get("team").map(String::as_str) == Some("web"));
    ensure!(runtime.entrypoint == Some(vec!["/srv/www/run.sh".to_string()]));
    // The source layer holds the repository's `site/` under /srv/www.
    let layer = sandbox
        .registry
        .get_blob(&sandbox.host, "apps/app", &app_manifest.layers[1].digest)
        .await?;
    let files = rebake_oci::inventory(&[(app_manifest.layers[1].digest.clone(), layer)])?;
    let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
    ensure!(
        paths.contains(&"srv/www/index.html") && paths.contains(&"srv/www/run.sh"),
        "paths {paths:?}"
    );

    let child_manifest = sandbox.manifest("apps/child", "latest").await?;
    ensure!(
        child_manifest.annotations["org.opencontainers.image.base.digest"] == app_v1,
        "child is built on the app"
    );
    let app_builds = sandbox.builds_of("app").await?;
    let child_builds = sandbox.builds_of("child").await?;
    let app_published_at = app_builds.last().context("app build")?.finished_at_ms;
    ensure!(
        child_builds.first().context("child build")?.requested_at_ms >= app_published_at,
        "child requested after app published"
    );
    verify_signature(&sandbox, "apps/app", &app_v1).await?;
    verify_signature(&sandbox, "apps/child", &child_v1).await?;

    // --- base v2: a new image pushed under the tracked tag ---
    let base_v2 = sandbox.push_base("v1", "two").await?;
    ensure!(base_v2 != base_v1);
    let app_v2 = sandbox.wait_published("app", Some(&app_v1)).await?;
    let child_v2 = sandbox.wait_published("child", Some(&child_v1)).await?;
    let app_manifest_v2 = sandbox.manifest("apps/app", &app_v2).await?;
    ensure!(app_manifest_v2.annotations["org.opencontainers.image.base.digest"] == base_v2);
    ensure!(
        !app_manifest_v2
            .layers
            .iter()
            .any(|layer| layer.digest == base_manifest.layers[0].digest),
        "old base layer gone"
    );
    ensure!(
        app_manifest_v2.layers.last() == app_manifest.layers.last(),
        "source layer unchanged and reused"
    );
    let child_manifest_v2 = sandbox.manifest("apps/child", &child_v2).await?;
    ensure!(child_manifest_v2.annotations["org.opencontainers.image.base.digest"] == app_v2);
    let app_builds = sandbox.builds_of("app").await?;
    let child_builds = sandbox.builds_of("child").await?;
    ensure!(
        published_builds(&app_builds) == 2 && published_builds(&child_builds) == 2,
        "one build each per change"
    );
    ensure!(
        child_builds.last().unwrap().requested_at_ms >= app_builds.last().unwrap().finished_at_ms,
        "child after parent"
    );
    verify_signature(&sandbox, "apps/app", &app_v2).await?;
    verify_signature(&sandbox, "apps/child", &child_v2).await?;

    // --- a signed GitHub push to the source: only the app and its child rebuild ---
    let old_commit = app_builds.last().unwrap().sources[0].commit.clone();
    let new_commit = sandbox.commit_source("<h1>v2</h1>\n")?;
    let (body, signature) = sandbox.github_push(&old_commit, &new_commit, GITHUB_SECRET);
    ensure!(sandbox.send_github(body.clone(), &signature, "delivery-1").await? == 200);
    let app_v3 = sandbox.wait_published("app", Some(&app_v2)).await?;
    let child_v3 = sandbox.wait_published("child", Some(&child_v2)).await?;
    let app_manifest_v3 = sandbox.manifest("apps/app", &app_v3).await?;
    ensure!(
        app_manifest_v3.annotations["org.opencontainers.image.base.digest"] == base_v2,
        "base unchanged"
    );
    ensure!(app_manifest_v3.annotations["org.opencontainers.image.revision"] == new_commit);
    verify_signature(&sandbox, "apps/child", &child_v3).await?;

    // --- the same deliveries again: nothing is built twice ---
    ensure!(sandbox.send_github(body.clone(), &signature, "delivery-1").await? == 200);
    let envelope = serde_json::json!({"events": [{
        "id": "e1", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": base_v2, "repository": "base", "tag": "v1", "size": 1},
        "request": {"host": sandbox.host}
    }]});
    for _ in 0..2 {
        let status = reqwest::Client::new()
            .post(format!("{}/v1/hooks/registry/distribution", sandbox.ingress_url))
            .header("content-type", "application/vnd.docker.distribution.events.v1+json")
            .header("authorization", format!("Bearer {REGISTRY_TOKEN}"))
            .body(envelope.to_string())
            .send()
            .await?
            .status();
        ensure!(status == 200, "distribution notification answered {status}");
    }

    // --- a bad signature: 401, nothing published ---
    let newer_commit = sandbox.commit_source("<h1>v3</h1>\n")?;
    let (body, _) = sandbox.github_push(&new_commit, &newer_commit, GITHUB_SECRET);
    let (_, wrong_signature) = sandbox.github_push(&new_commit, &newer_commit, "not-the-secret");
    ensure!(sandbox.send_github(body, &wrong_signature, "delivery-2").await? == 401);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let app_builds = sandbox.builds_of("app").await?;
    let child_builds = sandbox.builds_of("child").await?;
    ensure!(
        app_builds.len() == 3,
        "app builds: {:?}",
        app_builds.iter().map(|b| &b.status).collect::<Vec<_>>()
    );
    ensure!(
        child_builds.len() == 3,
        "child builds: {:?}",
        child_builds.iter().map(|b| &b.status).collect::<Vec<_>>()
    );
    ensure!(sandbox.published_digest("app").await?.as_deref() == Some(app_v3.as_str()));
    sandbox.stop().await;
    Ok(())
}
