//! Signing and promotion against a real `docker-registry`, checked with standard tools
//! (skopeo, openssl) rather than with Rebake's own code.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use bytes::Bytes;
use rebake_oci::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, ImageRef, LayerEntry, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP,
    OCI_MANIFEST, Platform, Registry, RootFs, build_layer, to_json_bytes,
};
use rebake_signer::{
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SignerKey, promote, sign_and_store, stored_signature_is_valid,
};
use rebake_testkit::RegistryServer;

/// A P-256 key exactly as an operator would make one with openssl.
fn openssl_key(dir: &Path) -> anyhow::Result<SignerKey> {
    let output = Command::new("sh")
        .arg("-c")
        .arg("openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt")
        .current_dir(dir)
        .output()
        .context("failed to run openssl")?;
    ensure!(output.status.success(), "openssl failed");
    Ok(SignerKey::from_pem(&output.stdout, None)?)
}

/// Pushes a one-layer image to `repository` by digest only; returns its manifest digest.
async fn push_image(
    registry: &Registry,
    host: &str,
    repository: &str,
    content: &str,
    arch: &str,
) -> anyhow::Result<(String, i64)> {
    let layer = build_layer(
        vec![LayerEntry::file("hello.txt", 0o644, content.as_bytes().to_vec())],
        0,
    )?;
    let config = ImageConfig {
        architecture: arch.to_string(),
        os: "linux".to_string(),
        rootfs: RootFs {
            type_: "layers".to_string(),
            diff_ids: vec![layer.diff_id.clone()],
        },
        ..ImageConfig::default()
    };
    let config_bytes = to_json_bytes(&config)?;
    let config_digest = registry
        .push_blob(host, repository, Bytes::from(config_bytes.clone()))
        .await?;
    registry.push_blob(host, repository, layer.compressed.clone()).await?;
    let manifest = ImageManifest::new(
        Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as i64),
        vec![Descriptor::new(OCI_LAYER_GZIP, layer.digest.clone(), layer.size)],
    );
    let manifest_bytes = to_json_bytes(&manifest)?;
    let digest = rebake_oci::sha256_digest(&manifest_bytes);
    registry
        .put_manifest(host, repository, &digest, &manifest_bytes, OCI_MANIFEST)
        .await?;
    Ok((digest, manifest_bytes.len() as i64))
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_and_promotes_an_image_verifiably() -> anyhow::Result<()> {
    rebake_testkit::init_test_tracing();
    let server = RegistryServer::start(None).await?;
    let host = server.host();
    let registry = Registry::new(vec![host.clone()]);
    let dir = tempfile::tempdir()?;
    let key = openssl_key(dir.path())?;

    let (digest, _) = push_image(&registry, &host, "staging/app", "hello", "amd64").await?;
    let published = ImageRef::parse(&format!("{host}/apps/app"))?;

    let signature_tag = sign_and_store(&registry, &key, &published, &digest).await?;
    assert_eq!(signature_tag, format!("sha256-{}.sig", hex_of(&digest)));
    promote(
        &registry,
        (&host, "staging/app"),
        (&host, "apps/app"),
        &digest,
        &["latest".to_string()],
    )
    .await?;

    // The tag resolves to the staged digest.
    let latest = registry
        .resolve(&ImageRef::parse(&format!("{host}/apps/app:latest"))?)
        .await?
        .context("apps/app:latest is missing")?;
    assert_eq!(latest.digest, digest);

    // skopeo sees a cosign signature manifest.
    let output = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/apps/app:{signature_tag}"),
        ])
        .output()
        .context("failed to run skopeo")?;
    ensure!(
        output.status.success(),
        "skopeo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], SIMPLE_SIGNING_MEDIA_TYPE);
    let signature_b64 = layer["annotations"][SIGNATURE_ANNOTATION]
        .as_str()
        .context("no signature annotation")?;
    let signature = base64::engine::general_purpose::STANDARD.decode(signature_b64)?;
    let payload_digest = layer["digest"].as_str().context("no layer digest")?;

    // The payload names the image and verifies with openssl.
    let payload = registry.get_blob(&host, "apps/app", payload_digest).await?;
    let document: serde_json::Value = serde_json::from_slice(&payload)?;
    assert_eq!(
        document["critical"]["identity"]["docker-reference"],
        format!("{host}/apps/app")
    );
    assert_eq!(document["critical"]["image"]["docker-manifest-digest"], digest);
    assert_eq!(document["critical"]["type"], "cosign container image signature");
    std::fs::write(dir.path().join("pub.pem"), key.public_key_pem()?)?;
    std::fs::write(dir.path().join("sig.der"), &signature)?;
    std::fs::write(dir.path().join("payload"), &payload)?;
    let verify = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.der",
            "payload",
        ])
        .current_dir(dir.path())
        .output()?;
    ensure!(
        verify.status.success(),
        "openssl refused the signature: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // The config blob lists the payload as its diff id.
    let config_digest = manifest["config"]["digest"].as_str().context("no config")?;
    let config: serde_json::Value =
        serde_json::from_slice(&registry.get_blob(&host, "apps/app", config_digest).await?)?;
    assert_eq!(config["rootfs"]["diff_ids"][0], payload_digest);

    // Our key recognises its signature; another key does not.
    assert!(stored_signature_is_valid(&registry, &key, &published, &digest).await?);
    let other_key = openssl_key(dir.path())?;
    assert!(!stored_signature_is_valid(&registry, &other_key, &published, &digest).await?);
    let unsigned = rebake_oci::sha256_digest(b"never signed");
    assert!(!stored_signature_is_valid(&registry, &key, &published, &unsigned).await?);

    // Promotion is idempotent.
    promote(
        &registry,
        (&host, "staging/app"),
        (&host, "apps/app"),
        &digest,
        &["latest".to_string(), "v1".to_string()],
    )
    .await?;
    let v1 = registry
        .resolve(&ImageRef::parse(&format!("{host}/apps/app:v1"))?)
        .await?
        .context("apps/app:v1 is missing")?;
    assert_eq!(v1.digest, digest);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_an_index_with_its_children() -> anyhow::Result<()> {
    rebake_testkit::init_test_tracing();
    let server = RegistryServer::start(None).await?;
    let host = server.host();
    let registry = Registry::new(vec![host.clone()]);

    let (amd, amd_size) = push_image(&registry, &host, "staging/multi", "amd", "amd64").await?;
    let (arm, arm_size) = push_image(&registry, &host, "staging/multi", "arm", "arm64").await?;
    let mut amd_descriptor = Descriptor::new(OCI_MANIFEST, amd.clone(), amd_size);
    amd_descriptor.platform = Some(Platform::new("linux", "amd64"));
    let mut arm_descriptor = Descriptor::new(OCI_MANIFEST, arm.clone(), arm_size);
    arm_descriptor.platform = Some(Platform::new("linux", "arm64"));
    let index_bytes = to_json_bytes(&ImageIndex::new(vec![amd_descriptor, arm_descriptor]))?;
    let index_digest = rebake_oci::sha256_digest(&index_bytes);
    registry
        .put_manifest(&host, "staging/multi", &index_digest, &index_bytes, OCI_INDEX)
        .await?;

    promote(
        &registry,
        (&host, "staging/multi"),
        (&host, "apps/multi"),
        &index_digest,
        &["latest".to_string()],
    )
    .await?;

    let latest = registry
        .resolve(&ImageRef::parse(&format!("{host}/apps/multi:latest"))?)
        .await?
        .context("apps/multi:latest is missing")?;
    assert_eq!(latest.digest, index_digest);
    assert_eq!(latest.media_type, OCI_INDEX);
    for child in [&amd, &arm] {
        let manifest = registry.get_manifest(&host, "apps/multi", child).await?.to_manifest()?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            assert!(
                registry.blob_exists(&host, "apps/multi", &blob.digest).await?,
                "blob {} of {child} was not copied",
                blob.digest
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_a_missing_image_fails_permanently_and_moves_nothing() -> anyhow::Result<()> {
    let server = RegistryServer::start(None).await?;
    let host = server.host();
    let registry = Registry::new(vec![host.clone()]);
    let missing = rebake_oci::sha256_digest(b"missing");
    let error = promote(
        &registry,
        (&host, "staging/app"),
        (&host, "apps/app"),
        &missing,
        &["latest".to_string()],
    )
    .await
    .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(
        registry
            .resolve(&ImageRef::parse(&format!("{host}/apps/app:latest"))?)
            .await?
            .is_none()
    );
    Ok(())
}
