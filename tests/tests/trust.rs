//! What Rebake publishes can be trusted with nothing but the registry, the public key and
//! standard tools: after a cascade, every image has a cosign signature and cosign-style
//! attestations (`sha256-<hex>.att`) whose DSSE signatures `openssl` verifies over a PAE
//! built here independently, whose statements and SLSA provenance validate against the
//! published schemas (`tests/data/schemas/`), and which `verify_image` accepts — while a
//! tampered envelope, a wrong key and an attestation about another digest are each caught.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use rebake_e2e::{Sandbox, tool};
use rebake_events::Bucket;
use rebake_events::state::sbom_key;
use rebake_oci::{ImageManifest, ImageRef, OCI_MANIFEST};
use rebake_signer::{Report, VerifyingKeys, verify_image};
use serde_json::Value;

const IN_TOTO: &str = "application/vnd.in-toto+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const SPDX: &str = "https://spdx.dev/Document";
const CYCLONEDX: &str = "https://cyclonedx.org/bom";
const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
const SLSA: &str = "https://slsa.dev/provenance/v1";

/// The statement and provenance schemas, compiled.
struct Schemas {
    statement: jsonschema::Validator,
    provenance: jsonschema::Validator,
}

impl Schemas {
    fn load() -> Result<Schemas> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/schemas");
        let read = |name: &str| -> Result<Value> {
            let text = std::fs::read_to_string(dir.join(name)).with_context(|| format!("read schema {name}"))?;
            Ok(serde_json::from_str(&text)?)
        };
        let statement_schema = read("in-toto-statement-v1.schema.json")?;
        let registry = jsonschema::Registry::new()
            .add(
                "https://rebake.dev/schemas/in-toto-statement-v1.schema.json",
                statement_schema.clone(),
            )?
            .prepare()?;
        let statement = jsonschema::options()
            .should_validate_formats(true)
            .build(&statement_schema)?;
        let provenance = jsonschema::options()
            .with_registry(&registry)
            .should_validate_formats(true)
            .build(&read("slsa-provenance-v1.schema.json")?)?;
        Ok(Schemas { statement, provenance })
    }
}

fn assert_valid(validator: &jsonschema::Validator, document: &Value, what: &str) -> Result<()> {
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect();
    ensure!(errors.is_empty(), "{what} is not schema-valid:\n{}", errors.join("\n"));
    Ok(())
}

/// DSSE v1 pre-authentication encoding, written from the protocol text rather than taken
/// from the signer.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"DSSEv1 ");
    bytes.extend_from_slice(payload_type.len().to_string().as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(payload_type.as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(payload.len().to_string().as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(payload);
    bytes
}

/// `openssl dgst -sha256 -verify` of `signature` over `data` with the PEM public key `key`.
fn openssl_verifies(key: &Path, data: &[u8], signature: &[u8]) -> Result<bool> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("data"), data)?;
    std::fs::write(dir.path().join("sig"), signature)?;
    let output = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(key)
        .args(["-signature", "sig", "data"])
        .current_dir(dir.path())
        .output()?;
    Ok(output.status.success())
}

/// `openssl dgst -sha256 -sign` of `data` with the PEM private key `key`: DER signature.
fn openssl_sign(key: &Path, data: &[u8]) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("data"), data)?;
    let output = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg("data")
        .current_dir(dir.path())
        .output()?;
    ensure!(
        output.status.success(),
        "openssl sign: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output.stdout)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// One stored attestation: its layer, the envelope JSON and the statement it signs.
struct Stored {
    envelope: Value,
    statement: Value,
}

/// Reads the `.att` of `repository@digest` and checks every envelope with openssl and the
/// schemas; returns the statements by predicate type.
async fn check_attestations(
    sandbox: &Sandbox,
    schemas: &Schemas,
    repository: &str,
    digest: &str,
) -> Result<BTreeMap<String, Stored>> {
    let hex = digest.trim_start_matches("sha256:");
    for suffix in ["sig", "att"] {
        let inspected = tool(
            sandbox.dir.path(),
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{}/{repository}:sha256-{hex}.{suffix}", sandbox.host),
            ],
        )
        .with_context(|| format!("skopeo inspect {repository} .{suffix}"))?;
        let inspected: Value = serde_json::from_str(&inspected)?;
        ensure!(inspected["Digest"].is_string(), "skopeo saw {inspected}");
    }
    let manifest = sandbox.manifest(repository, &format!("sha256-{hex}.att")).await?;
    let mut stored = BTreeMap::new();
    for layer in &manifest.layers {
        ensure!(layer.media_type == DSSE, "layer media type {}", layer.media_type);
        let annotated = layer
            .annotations
            .get("predicateType")
            .context("predicateType annotation")?;
        let blob = sandbox
            .registry
            .get_blob(&sandbox.host, repository, &layer.digest)
            .await?;
        let envelope: Value = serde_json::from_slice(&blob)?;
        ensure!(
            envelope["payloadType"] == IN_TOTO,
            "payloadType {}",
            envelope["payloadType"]
        );
        let payload = b64().decode(envelope["payload"].as_str().context("payload")?)?;
        let signature = b64().decode(envelope["signatures"][0]["sig"].as_str().context("sig")?)?;
        ensure!(
            openssl_verifies(&sandbox.public_key, &pae(IN_TOTO, &payload), &signature)?,
            "openssl rejects the {annotated} envelope of {repository}@{digest}"
        );
        ensure!(
            !openssl_verifies(&sandbox.public_key, &payload, &signature)?,
            "the signature must be over the PAE, not the bare payload"
        );
        let statement: Value = serde_json::from_slice(&payload)?;
        assert_valid(&schemas.statement, &statement, &format!("{annotated} statement"))?;
        ensure!(statement["predicateType"] == annotated.as_str());
        ensure!(
            statement["subject"]
                == serde_json::json!([{"name": format!("{}/{repository}", sandbox.host), "digest": {"sha256": hex}}]),
            "subject {}",
            statement["subject"]
        );
        stored.insert(annotated.clone(), Stored { envelope, statement });
    }
    let types: Vec<&str> = stored.keys().map(String::as_str).collect();
    let mut expected = vec![SPDX, CYCLONEDX, VULN, SLSA];
    expected.sort_unstable();
    ensure!(types == expected, "{repository} attests {types:?}");
    let provenance = &stored[SLSA].statement["predicate"];
    assert_valid(&schemas.provenance, provenance, "SLSA provenance predicate")?;
    Ok(stored)
}

/// Pushes `manifest` with its layer `index` replaced by `envelope` under `repository`'s
/// `.att` tag for `digest`.
async fn replace_envelope(
    sandbox: &Sandbox,
    repository: &str,
    digest: &str,
    mut manifest: ImageManifest,
    index: usize,
    envelope: &Value,
) -> Result<()> {
    let bytes = serde_json::to_vec(envelope)?;
    let blob_digest = sandbox
        .registry
        .push_blob(&sandbox.host, repository, bytes.clone().into())
        .await?;
    manifest.layers[index].digest = blob_digest;
    manifest.layers[index].size = bytes.len() as i64;
    let tag = format!("sha256-{}.att", digest.trim_start_matches("sha256:"));
    sandbox
        .registry
        .put_manifest(
            &sandbox.host,
            repository,
            &tag,
            &rebake_oci::to_json_bytes(&manifest)?,
            OCI_MANIFEST,
        )
        .await?;
    Ok(())
}

fn layer_of(manifest: &ImageManifest, predicate_type: &str) -> Result<usize> {
    manifest
        .layers
        .iter()
        .position(|layer| layer.annotations.get("predicateType").map(String::as_str) == Some(predicate_type))
        .with_context(|| format!("no {predicate_type} layer"))
}

fn failed_check<'a>(report: &'a Report, name: &str) -> Result<&'a str> {
    match report.checks.iter().find(|check| check.name == name) {
        Some(check) if !check.passed => Ok(&check.detail),
        Some(check) => bail!("check {name} passed: {}", check.detail),
        None => bail!("no check {name} in {:?}", report.checks),
    }
}

fn keys(paths: &[&PathBuf]) -> Result<VerifyingKeys> {
    let pems = paths.iter().map(std::fs::read).collect::<std::io::Result<Vec<_>>>()?;
    Ok(VerifyingKeys::from_pems(pems.iter().map(Vec::as_slice))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_images_are_verifiable_and_tampering_is_caught() -> Result<()> {
    let sandbox = Sandbox::start("e2etrust").await?;
    let schemas = Schemas::load()?;
    let base = sandbox.push_base("v1", "one").await?;
    let (app, child) = sandbox.wait_first_cascade(&base).await?;

    // --- what is stored, checked with standard tools ---
    let app_attestations = check_attestations(&sandbox, &schemas, "apps/app", &app).await?;
    let child_attestations = check_attestations(&sandbox, &schemas, "apps/child", &child).await?;
    let builds = sandbox.bus.kv(Bucket::Builds).await?;
    for (image, digest, base_digest, attestations) in [
        ("app", &app, &base, &app_attestations),
        ("child", &child, &app, &child_attestations),
    ] {
        let state = sandbox.image_state(image).await?.context("image state")?;
        let build_id = state.published.context("published")?.build_id;
        let provenance = &attestations[SLSA].statement["predicate"];
        let definition = &provenance["buildDefinition"];
        ensure!(definition["buildType"] == "https://rebake.dev/build-types/image/v1");
        ensure!(definition["externalParameters"]["name"] == image, "{definition}");
        ensure!(
            definition["resolvedDependencies"][0]["digest"]["sha256"] == base_digest.trim_start_matches("sha256:"),
            "{image}'s base dependency: {}",
            definition["resolvedDependencies"][0]
        );
        let causes = definition["internalParameters"]["causes"]
            .as_array()
            .context("causes")?;
        ensure!(!causes.is_empty() && causes.iter().all(|cause| cause["kind"].is_string()));
        ensure!(definition["internalParameters"]["trigger"] == *causes.last().unwrap());
        let metadata = &provenance["runDetails"]["metadata"];
        ensure!(metadata["invocationId"] == build_id.as_str(), "{metadata}");
        ensure!(
            metadata["startedOn"].is_string() && metadata["finishedOn"].is_string(),
            "{metadata}"
        );
        // The SBOM attestations are the SBOMs the scanner stored, byte for byte in meaning.
        for (format, predicate_type) in [("spdx", SPDX), ("cyclonedx", CYCLONEDX)] {
            let stored: Value = builds.get(&sbom_key(&build_id, format)).await?.context("stored sbom")?;
            ensure!(
                attestations[predicate_type].statement["predicate"] == stored,
                "{image} {format} sbom"
            );
        }
        ensure!(attestations[VULN].statement["predicate"]["scanner"]["result"]["digest"] == digest.as_str());
    }
    let app_sources = &app_attestations[SLSA].statement["predicate"]["buildDefinition"]["resolvedDependencies"][1];
    ensure!(app_sources["digest"]["gitCommit"] == sandbox.head()?, "{app_sources}");
    ensure!(
        child_attestations[SLSA].statement["predicate"]["buildDefinition"]["internalParameters"]["trigger"]["kind"]
            == "parent-published"
    );
    ensure!(app_attestations[SPDX].envelope["signatures"][0]["keyid"].is_string());

    // --- verify_image: passes by tag and by digest ---
    let public = keys(&[&sandbox.public_key])?;
    let app_ref = ImageRef::parse(&format!("{}/apps/app:latest", sandbox.host))?;
    let child_ref = ImageRef::parse(&format!("{}/apps/child@{child}", sandbox.host))?;
    for image in [&app_ref, &child_ref] {
        let report = verify_image(&sandbox.registry, image, &public).await?;
        ensure!(report.passed(), "{image}: {:?}", report.checks);
        ensure!(report.attestations.len() == 4);
    }
    let report = verify_image(&sandbox.registry, &app_ref, &public).await?;
    let text = rebake::verify::render(&report, rebake_control::render::Style::PLAIN);
    println!("{text}");
    ensure!(
        text.contains("✓ signature: ") && text.ends_with("passed (9 checks)\n"),
        "{text}"
    );

    // --- rebuild-check: both images rebuild bit for bit from their provenance ---
    for image in [&app_ref, &child_ref] {
        let report = rebake::rebuild_check::check_published(image, &public, true).await?;
        println!("{}", rebake::rebuild_check::render_report(&report));
        ensure!(report.identical, "{image}: {report:?}");
    }

    // --- a wrong key: every signature check fails ---
    let other_key = sandbox.dir.path().join("other.pub");
    let other_private = sandbox.dir.path().join("other.key");
    tool(
        sandbox.dir.path(),
        "openssl",
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "other.key",
        ],
    )?;
    tool(
        sandbox.dir.path(),
        "openssl",
        &["ec", "-in", "other.key", "-pubout", "-out", "other.pub"],
    )?;
    ensure!(other_private.exists());
    let report = verify_image(&sandbox.registry, &app_ref, &keys(&[&other_key])?).await?;
    ensure!(!report.passed());
    ensure!(failed_check(&report, "signature")?.contains("does not verify with the given keys"));
    let detail = failed_check(&report, &format!("attestation {SLSA}"))?;
    ensure!(detail.contains("no signature verifies over the DSSE PAE"), "{detail}");
    ensure!(failed_check(&report, "provenance")?.contains("no verified SLSA provenance"));
    // With both keys (a rotation), it passes again.
    ensure!(
        verify_image(&sandbox.registry, &app_ref, &keys(&[&other_key, &sandbox.public_key])?)
            .await?
            .passed()
    );

    // --- one byte of a payload changed: caught, and only that envelope fails ---
    let att_tag = format!("sha256-{}.att", app.trim_start_matches("sha256:"));
    let original = sandbox
        .registry
        .get_manifest(&sandbox.host, "apps/app", &att_tag)
        .await?;
    let manifest = original.to_manifest()?;
    let index = layer_of(&manifest, SLSA)?;
    let mut envelope = app_attestations[SLSA].envelope.clone();
    let mut payload = b64().decode(envelope["payload"].as_str().context("payload")?)?;
    let position = payload
        .windows(b"\"invocationId\":\"".len())
        .position(|window| window == b"\"invocationId\":\"")
        .context("invocationId in the payload")?
        + b"\"invocationId\":\"".len();
    payload[position] = if payload[position] == b'0' { b'1' } else { b'0' };
    envelope["payload"] = Value::from(b64().encode(&payload));
    replace_envelope(&sandbox, "apps/app", &app, manifest.clone(), index, &envelope).await?;
    let report = verify_image(&sandbox.registry, &app_ref, &public).await?;
    ensure!(!report.passed());
    let detail = failed_check(&report, &format!("attestation {SLSA}"))?;
    ensure!(
        detail.contains("the envelope was altered or signed by another key"),
        "{detail}"
    );
    ensure!(failed_check(&report, "provenance").is_ok());
    ensure!(report.failures().count() == 2, "{:?}", report.checks);
    println!(
        "{}",
        rebake::verify::render(&report, rebake_control::render::Style::PLAIN)
    );
    // The original, put back, verifies again.
    sandbox
        .registry
        .put_manifest(
            &sandbox.host,
            "apps/app",
            &att_tag,
            &original.bytes,
            &original.media_type,
        )
        .await?;
    ensure!(verify_image(&sandbox.registry, &app_ref, &public).await?.passed());

    // --- validly signed with the right key, but about another digest ---
    let child_manifest = sandbox
        .manifest(
            "apps/child",
            &format!("sha256-{}.att", child.trim_start_matches("sha256:")),
        )
        .await?;
    let index = layer_of(&child_manifest, SLSA)?;
    let mut statement = child_attestations[SLSA].statement.clone();
    statement["subject"][0]["digest"]["sha256"] = Value::from(app.trim_start_matches("sha256:"));
    let payload = serde_json::to_vec(&statement)?;
    let signature = openssl_sign(&sandbox.dir.path().join("cosign.key"), &pae(IN_TOTO, &payload))?;
    let swapped = serde_json::json!({
        "payloadType": IN_TOTO,
        "payload": b64().encode(&payload),
        "signatures": [{"keyid": "", "sig": b64().encode(&signature)}],
    });
    replace_envelope(&sandbox, "apps/child", &child, child_manifest, index, &swapped).await?;
    let report = verify_image(&sandbox.registry, &child_ref, &public).await?;
    ensure!(!report.passed());
    let detail = failed_check(&report, &format!("attestation {SLSA}"))?;
    ensure!(
        detail.contains(&format!(
            "subject names {}/apps/child@{app}, not this image's {child}",
            sandbox.host
        )),
        "{detail}"
    );
    ensure!(failed_check(&report, "provenance").is_ok());
    // The other attestations and the signature are still fine.
    ensure!(report.failures().count() == 2, "{:?}", report.checks);

    sandbox.stop().await;
    Ok(())
}
