//! The SIGN queue worker end to end: real NATS JetStream, real registry.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use prost::Message as _;
use rebake_bus::Bus;
use rebake_events::state::{BuildRecord, ImageState, PublishedImage, ScanReport, StageRecord, sbom_key, scan_key};
use rebake_events::{Bucket, Envelope, EventKind, ImageName, Names, Queue, deterministic_id, pb};
use rebake_oci::{
    Descriptor, ImageConfig, ImageManifest, ImageRef, LayerEntry, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Registry,
    RootFs, build_layer, to_json_bytes,
};
use rebake_signer::{SignerKey, VerifyingKeys};
use rebake_testkit::{NatsServer, RegistryServer, eventually};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Sandbox {
    _nats: NatsServer,
    _registry_server: RegistryServer,
    host: String,
    bus: Bus,
    registry: Registry,
    /// The signer's public key (PEM).
    public_key: String,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Sandbox {
    async fn start(prefix: &str) -> anyhow::Result<Sandbox> {
        rebake_testkit::init_test_tracing();
        let nats = NatsServer::start().await?;
        let registry_server = RegistryServer::start(None).await?;
        let host = registry_server.host();
        let bus = Bus::connect(&nats.url(), Names::new(prefix)?, "signer", Duration::from_secs(30), 5).await?;
        bus.ensure(&rebake_bus::Need::all()).await?;
        let registry = Registry::new(vec![host.clone()]);
        let key = SignerKey::from_pem(openssl_key()?.as_bytes(), None)?;
        let public_key = key.public_key_pem()?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        rebake_signer::serve(
            bus.clone(),
            registry.clone(),
            key,
            rebake_signer::DEFAULT_CONCURRENCY,
            shutdown.clone(),
            tracker.clone(),
        )
        .await?;
        Ok(Sandbox {
            _nats: nats,
            _registry_server: registry_server,
            host,
            bus,
            registry,
            public_key,
            shutdown,
            tracker,
        })
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tracker.wait()).await;
    }

    /// Pushes a one-layer image to `rebake-staging/app` by digest.
    async fn stage_image(&self) -> anyhow::Result<String> {
        let repository = "rebake-staging/app";
        let layer = build_layer(vec![LayerEntry::file("app.txt", 0o644, b"app".to_vec())], 0)?;
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs {
                type_: "layers".into(),
                diff_ids: vec![layer.diff_id.clone()],
            },
            ..ImageConfig::default()
        };
        let config_bytes = to_json_bytes(&config)?;
        let config_digest = self
            .registry
            .push_blob(&self.host, repository, Bytes::from(config_bytes.clone()))
            .await?;
        self.registry
            .push_blob(&self.host, repository, layer.compressed.clone())
            .await?;
        let manifest = ImageManifest::new(
            Descriptor::new(OCI_CONFIG, config_digest, config_bytes.len() as i64),
            vec![Descriptor::new(OCI_LAYER_GZIP, layer.digest.clone(), layer.size)],
        );
        let bytes = to_json_bytes(&manifest)?;
        let digest = rebake_oci::sha256_digest(&bytes);
        self.registry
            .put_manifest(&self.host, repository, &digest, &bytes, OCI_MANIFEST)
            .await?;
        Ok(digest)
    }

    fn scan(&self, build_id: &str, digest: &str, spec_json: String) -> pb::ScanDone {
        pb::ScanDone {
            build: Some(pb::BuildDone {
                build_id: build_id.to_string(),
                image: "app".into(),
                inputs_hash: "sha256:inputs".into(),
                staging_repository: format!("{}/rebake-staging/app", self.host),
                digest: digest.to_string(),
                media_type: OCI_MANIFEST.into(),
                base_ref: "scratch".into(),
                spec_json,
                causes: vec![pb::Cause {
                    kind: "manual".into(),
                    description: "test".into(),
                    ..Default::default()
                }],
                size_bytes: 123,
                ..Default::default()
            }),
            passed: true,
            summary: "ok".into(),
            ..Default::default()
        }
    }

    fn spec_json(&self) -> String {
        format!(
            r#"{{"name":"app","base":"scratch","publish":{{"repository":"{}/apps/app","tags":["latest","v1"]}}}}"#,
            self.host
        )
    }

    async fn enqueue(&self, scan: &pb::ScanDone, id: &str) -> anyhow::Result<()> {
        let image = ImageName::new("app")?;
        let envelope = Envelope::new(
            EventKind::ScanDone,
            id.to_string(),
            "/rebake/scanner",
            Some("app"),
            None,
        );
        self.bus
            .publish(self.bus.names().queue_subject(Queue::Sign, &image), &envelope, scan)
            .await?;
        Ok(())
    }

    async fn put_record(&self, build_id: &str) -> anyhow::Result<()> {
        let record = BuildRecord {
            build_id: build_id.to_string(),
            image: "app".into(),
            status: "scanned".into(),
            stages: vec![StageRecord {
                name: "build".into(),
                ok: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        self.bus.kv(Bucket::Builds).await?.put(build_id, &record).await?;
        Ok(())
    }

    /// Stores what the scanner stores for a build: both SBOMs and the scan report.
    async fn put_reports(&self, build_id: &str, digest: &str) -> anyhow::Result<()> {
        let builds = self.bus.kv(Bucket::Builds).await?;
        builds
            .put(
                &sbom_key(build_id, "spdx"),
                &serde_json::json!({"spdxVersion": "SPDX-2.3", "name": "app"}),
            )
            .await?;
        builds
            .put(
                &sbom_key(build_id, "cyclonedx"),
                &serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.6"}),
            )
            .await?;
        let report = ScanReport {
            build_id: build_id.to_string(),
            image: "app".into(),
            digest: digest.to_string(),
            passed: true,
            scanned_at_ms: 1_700_000_000_000,
            ..Default::default()
        };
        builds.put(&scan_key(build_id), &report).await?;
        Ok(())
    }

    async fn record(&self, build_id: &str) -> anyhow::Result<Option<BuildRecord>> {
        Ok(self.bus.kv(Bucket::Builds).await?.get(build_id).await?)
    }

    async fn wait_for_status(&self, build_id: &str, status: &str) -> anyhow::Result<BuildRecord> {
        eventually(&format!("build {build_id} {status}"), || async {
            anyhow::Ok(
                self.record(build_id)
                    .await?
                    .is_some_and(|record| record.status == status),
            )
        })
        .await?;
        self.record(build_id).await?.context("record vanished")
    }

    /// The last event on `kind`'s subject for `app`, with its sequence and ce-id.
    async fn last_event(&self, kind: EventKind) -> anyhow::Result<(u64, String, Bytes)> {
        let names = self.bus.names();
        let subject = names.event_subject(kind.token(), Some(&ImageName::new("app")?));
        let stream = self.bus.jetstream().get_stream(names.events_stream()).await?;
        let message = stream.get_last_raw_message_by_subject(&subject).await?;
        let id = message
            .headers
            .get("ce-id")
            .map(|value| value.as_str().to_string())
            .unwrap_or_default();
        Ok((message.sequence, id, message.payload))
    }

    async fn queue_is_empty(&self) -> anyhow::Result<bool> {
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(self.bus.names().queue_stream(Queue::Sign))
            .await?;
        Ok(stream.info().await?.state.messages == 0)
    }

    async fn resolve(&self, reference: &str) -> anyhow::Result<Option<String>> {
        let reference = ImageRef::parse(&format!("{}/{reference}", self.host))?;
        Ok(self.registry.resolve(&reference).await?.map(|resolved| resolved.digest))
    }
}

fn openssl_key() -> anyhow::Result<String> {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt")
        .output()?;
    anyhow::ensure!(output.status.success(), "openssl failed");
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_a_scanned_build_once() -> anyhow::Result<()> {
    let sandbox = Sandbox::start("sgn-ok").await?;
    let digest = sandbox.stage_image().await?;
    let build_id = "0190a000-0000-7000-8000-000000000001";
    sandbox.put_record(build_id).await?;
    sandbox.put_reports(build_id, &digest).await?;
    let scan = sandbox.scan(build_id, &digest, sandbox.spec_json());
    sandbox.enqueue(&scan, "scan-1").await?;

    let record = sandbox.wait_for_status(build_id, "published").await?;
    assert_eq!(record.digest, digest);
    assert!(record.finished_at_ms > 0);
    let stage_names: Vec<&str> = record.stages.iter().map(|stage| stage.name.as_str()).collect();
    assert_eq!(stage_names, ["build", "sign", "publish"]);
    assert!(record.stages.iter().all(|stage| stage.ok));

    let (sequence, id, payload) = sandbox.last_event(EventKind::ImagePublished).await?;
    assert_eq!(id, deterministic_id(&["published", build_id, &digest]));
    let event = pb::ImagePublished::decode(payload)?;
    assert_eq!(event.repository, format!("{}/apps/app", sandbox.host));
    assert_eq!(event.digest, digest);
    assert_eq!(event.tags, ["latest", "v1"]);
    assert_eq!(
        event.signature_tag,
        format!("sha256-{}.sig", &digest["sha256:".len()..])
    );
    assert_eq!(event.size_bytes, 123);
    assert_eq!(event.causes.len(), 1);
    assert_eq!(
        sandbox.resolve("apps/app:latest").await?.as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(sandbox.resolve("apps/app:v1").await?.as_deref(), Some(digest.as_str()));
    let signature_manifest = sandbox
        .resolve(&format!("apps/app:{}", event.signature_tag))
        .await?
        .context("no signature")?;
    // Four attestations (two SBOMs, the scan, provenance), verifiable with the public key.
    let attestation_tag = format!("sha256-{}.att", &digest["sha256:".len()..]);
    let attestations = sandbox
        .registry
        .get_manifest(&sandbox.host, "apps/app", &attestation_tag)
        .await?;
    let predicate_types: Vec<String> = attestations
        .to_manifest()?
        .layers
        .iter()
        .map(|layer| layer.annotations["predicateType"].clone())
        .collect();
    assert_eq!(
        predicate_types,
        [
            rebake_signer::SPDX_PREDICATE_TYPE,
            rebake_signer::CYCLONEDX_PREDICATE_TYPE,
            rebake_signer::VULN_PREDICATE_TYPE,
            rebake_signer::SLSA_PROVENANCE_PREDICATE_TYPE
        ]
    );
    let keys = VerifyingKeys::from_pems([sandbox.public_key.as_bytes()])?;
    let image = ImageRef::parse(&format!("{}/apps/app:latest", sandbox.host))?;
    let report = rebake_signer::verify_image(&sandbox.registry, &image, &keys).await?;
    assert!(report.passed(), "{:?}", report.checks);
    let sign_stage = &record.stages[1];
    assert!(
        sign_stage
            .summary
            .contains("attested spdx, cyclonedx, vuln, slsa-provenance (tag only, no referrers api)"),
        "{}",
        sign_stage.summary
    );

    // A redelivery (here: the same scan enqueued again) changes nothing: no new signature,
    // no new event.
    sandbox.enqueue(&scan, "scan-1-again").await?;
    eventually("the sign queue drained", || sandbox.queue_is_empty()).await?;
    let (sequence_after, _, _) = sandbox.last_event(EventKind::ImagePublished).await?;
    assert_eq!(sequence_after, sequence);
    assert_eq!(
        sandbox.resolve(&format!("apps/app:{}", event.signature_tag)).await?,
        Some(signature_manifest)
    );
    assert_eq!(
        sandbox.resolve(&format!("apps/app:{attestation_tag}")).await?,
        Some(attestations.digest.clone()),
        "attestations not written again"
    );
    assert_eq!(sandbox.record(build_id).await?.context("record")?, record);

    // Attestations that no longer verify (here: the signature manifest stored under the
    // .att tag) are written again by the next delivery; nothing else changes.
    let signature = sandbox
        .registry
        .get_manifest(&sandbox.host, "apps/app", &event.signature_tag)
        .await?;
    sandbox
        .registry
        .put_manifest(
            &sandbox.host,
            "apps/app",
            &attestation_tag,
            &signature.bytes,
            &signature.media_type,
        )
        .await?;
    assert!(
        !rebake_signer::verify_image(&sandbox.registry, &image, &keys)
            .await?
            .passed()
    );
    sandbox.enqueue(&scan, "scan-1-repair").await?;
    eventually("the attestations rewritten", || async {
        anyhow::Ok(
            rebake_signer::verify_image(&sandbox.registry, &image, &keys)
                .await?
                .passed(),
        )
    })
    .await?;
    assert_eq!(
        sandbox.resolve("apps/app:latest").await?.as_deref(),
        Some(digest.as_str())
    );
    let (sequence_after, _, _) = sandbox.last_event(EventKind::ImagePublished).await?;
    assert_eq!(sequence_after, sequence, "announced once");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_is_recorded_as_failed_and_nothing_is_published() -> anyhow::Result<()> {
    let sandbox = Sandbox::start("sgn-bad").await?;
    let digest = sandbox.stage_image().await?;
    let build_id = "0190a000-0000-7000-8000-000000000002";
    sandbox.put_record(build_id).await?;
    sandbox
        .enqueue(&sandbox.scan(build_id, &digest, "{not json".to_string()), "scan-2")
        .await?;

    let record = sandbox.wait_for_status(build_id, "failed").await?;
    assert!(record.reason.contains("image spec json"), "{}", record.reason);
    let failed_stage = record.stages.last().context("no stage")?;
    assert_eq!(failed_stage.name, "sign");
    assert!(!failed_stage.ok);

    eventually("build.failed announced", || async {
        sandbox.last_event(EventKind::BuildFailed).await.is_ok()
    })
    .await?;
    let (_, _, payload) = sandbox.last_event(EventKind::BuildFailed).await?;
    let failed = pb::BuildFailed::decode(payload)?;
    assert_eq!(failed.build_id, build_id);
    assert_eq!(failed.stage, "sign");
    assert!(sandbox.queue_is_empty().await?);
    assert_eq!(sandbox.resolve("apps/app:latest").await?, None);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_build_never_rolls_tags_back() -> anyhow::Result<()> {
    let sandbox = Sandbox::start("sgn-old").await?;
    let digest = sandbox.stage_image().await?;
    let old_build = "0190a000-0000-7000-8000-000000000003";
    let live_build = "0190b000-0000-7000-8000-000000000004";
    let live = ImageState {
        name: "app".into(),
        published: Some(PublishedImage {
            build_id: live_build.into(),
            digest: rebake_oci::sha256_digest(b"newer image"),
            ..Default::default()
        }),
        ..Default::default()
    };
    sandbox.bus.kv(Bucket::Images).await?.put("app", &live).await?;
    sandbox.put_record(old_build).await?;
    sandbox
        .enqueue(&sandbox.scan(old_build, &digest, sandbox.spec_json()), "scan-3")
        .await?;

    let record = sandbox.wait_for_status(old_build, "skipped").await?;
    assert!(record.reason.contains(live_build), "{}", record.reason);
    eventually("the sign queue drained", || sandbox.queue_is_empty()).await?;
    assert_eq!(sandbox.resolve("apps/app:latest").await?, None);
    sandbox.stop().await;
    Ok(())
}
