//! Rebake's builder workers: deterministic, daemonless OCI image assembly.
//!
//! A worker takes a `BuildRequest` from the `BUILD` queue and assembles the image from
//! exactly the inputs named in it: the base manifest at the resolved digest (its layers are
//! mounted across repositories, never re-uploaded), one layer of files from each Git source
//! at the exact commit (fixed timestamps from the commit time, sorted entries, normalised
//! owners and modes), the packages of the resolved set (fetched, checksum-verified, cached
//! on disk by checksum, unpacked into one layer with the package database; see
//! [`packages`]), and the spec's config; one manifest per platform, under an OCI index when
//! the spec lists platforms. The result goes to a staging repository
//! (`<registry>/<staging_prefix>/<image>`, by digest, no tag), its lineage to KV, and a
//! `BuildDone` to the `SCAN` queue. Same request → same digest.
//!
//! Before anything is built on a base, the base must carry the cosign signature its spec
//! (`base_verify`) or the config (`registries.verify`) requires ([`trust`]). A base that
//! fails is not built on: the build fails at stage `build` with a reason naming the base,
//! its digest and what failed, and is not retried (the resolver retries failed inputs after
//! its retry interval, level-triggered); only an unavailable registry makes it a retry.
//!
//! It never publishes: promotion and tags belong to the signer. A request whose inputs are
//! already published (unless an operator asked for it: a `manual` cause), or that a newer
//! request superseded, is a no-op.
#![forbid(unsafe_code)]

pub mod assemble;
mod error;
pub mod git;
pub mod packages;
pub mod trust;

use std::{path::PathBuf, sync::Arc, time::Duration};

use rebake_bus::{Bus, ConsumerSpec, Delivery, Kv, Need, Outcome, run_consumer};
use rebake_events::{
    Bucket, Envelope, EventKind, ImageName, Queue, deterministic_id, now_ms, pb,
    state::{BuildRecord, ImageState, Lineage, PackageRecord, SourceRevision, StageRecord},
};
use rebake_feeds::fetch::FeedClient;
use rebake_oci::Registry;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use error::{BuilderError, Result};

/// Builder settings.
#[derive(Debug, Clone)]
pub struct BuilderSettings {
    /// Concurrent builds.
    pub workers: usize,
    /// Git mirrors and scratch space.
    pub work_dir: PathBuf,
    /// Repository prefix of staged images.
    pub staging_prefix: String,
    /// `registries.verify`: signatures required of base images besides each spec's
    /// `base_verify`.
    pub base_trust: trust::BaseTrust,
}

struct Worker {
    bus: Bus,
    registry: Registry,
    feeds: FeedClient,
    settings: BuilderSettings,
    images_kv: Kv,
    builds_kv: Kv,
    lineage_kv: Kv,
}

/// Starts the build workers; they run until `shutdown` is cancelled.
pub async fn serve(
    bus: Bus,
    registry: Registry,
    feeds: FeedClient,
    settings: BuilderSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<()> {
    bus.ensure(&[
        Need::Queue(Queue::Build),
        Need::Queue(Queue::Scan),
        Need::Events,
        Need::DeadLetter,
        Need::Bucket(Bucket::Images),
        Need::Bucket(Bucket::Builds),
        Need::Bucket(Bucket::Lineage),
    ])
    .await?;
    std::fs::create_dir_all(&settings.work_dir).map_err(|error| BuilderError::InvalidRequest {
        reason: format!("cannot create work dir {}: {error}", settings.work_dir.display()),
    })?;
    let worker = Arc::new(Worker {
        images_kv: bus.kv(Bucket::Images).await?,
        builds_kv: bus.kv(Bucket::Builds).await?,
        lineage_kv: bus.kv(Bucket::Lineage).await?,
        bus: bus.clone(),
        registry,
        feeds,
        settings: settings.clone(),
    });
    let names = bus.names();
    run_consumer(
        bus.clone(),
        ConsumerSpec {
            stream: names.queue_stream(Queue::Build),
            durable: names.queue_consumer(Queue::Build),
            filter_subject: String::new(),
            concurrency: settings.workers,
            deliver_all: true,
        },
        shutdown,
        tracker,
        move |delivery| {
            let worker = worker.clone();
            async move { worker.handle(delivery).await }
        },
    )
    .await?;
    tracing::info!(workers = settings.workers, "builder started");
    Ok(())
}

impl Worker {
    async fn handle(&self, delivery: Delivery) -> Outcome {
        let request: pb::BuildRequest = match delivery.decode() {
            Ok(request) => request,
            Err(error) => {
                return Outcome::Reject {
                    reason: error.to_string(),
                };
            }
        };
        let Ok(image) = ImageName::new(request.image.clone()) else {
            return Outcome::Reject {
                reason: format!("invalid image name {:?}", request.image),
            };
        };
        delivery.record_build(image.as_str(), &request.build_id, "");
        let traceparent = delivery.envelope().traceparent.clone();
        let last_attempt = delivery.is_last_attempt();
        // No-op and superseded checks (the resolver is the only writer of image state).
        match self.images_kv.get::<ImageState>(&image.kv_key()).await {
            Ok(Some(state)) => {
                // An operator's rebuild (a `manual` cause) runs even on published inputs.
                let forced = request.causes.iter().any(|cause| cause.kind == "manual");
                if !forced
                    && state
                        .published
                        .as_ref()
                        .is_some_and(|p| p.inputs_hash == request.inputs_hash)
                {
                    tracing::info!(image = %image, build_id = %request.build_id, "inputs already published, nothing to build");
                    self.mark(&request.build_id, "skipped", "inputs already published")
                        .await;
                    return Outcome::Done;
                }
                if state
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.build_id != request.build_id && p.inputs_hash != request.inputs_hash)
                {
                    tracing::info!(image = %image, build_id = %request.build_id, "superseded by a newer request");
                    self.mark(&request.build_id, "skipped", "superseded by a newer request")
                        .await;
                    return Outcome::Done;
                }
            }
            Ok(None) => {}
            Err(error) => return retry(error),
        }
        let started_at_ms = now_ms();
        tracing::info!(image = %image, build_id = %request.build_id, base_digest = %request.base_digest, "build started");
        let built = async {
            let verified = self.verify_base(&request).await?;
            let staged = assemble::build_and_stage(
                &self.registry,
                &self.feeds,
                &self.settings.work_dir,
                &self.settings.staging_prefix,
                &request,
            )
            .await?;
            Ok::<_, BuilderError>((staged, verified))
        }
        .await;
        let (staged, verified) = match built {
            Ok(built) => built,
            Err(error) if error.is_transient() && !last_attempt => {
                tracing::warn!(image = %image, build_id = %request.build_id, error = %error.chain(), "build failed, will retry");
                return retry(error.chain());
            }
            Err(error) => {
                return self
                    .fail(&image, &request, started_at_ms, error.chain(), &traceparent)
                    .await;
            }
        };
        let finished_at_ms = now_ms();
        let lineage = Lineage {
            image: image.to_string(),
            build_id: request.build_id.clone(),
            base_ref: request.base_ref.clone(),
            base_digest: request.base_digest.clone(),
            sources: staged.sources.iter().map(revision).collect(),
            packages: request.packages.iter().map(PackageRecord::from).collect(),
            inputs_hash: request.inputs_hash.clone(),
            digest: staged.digest.clone(),
        };
        if let Err(error) = self.lineage_kv.put(&image.kv_key(), &lineage).await {
            return retry(error);
        }
        let stage = StageRecord {
            name: "build".to_string(),
            started_at_ms,
            finished_at_ms,
            ok: true,
            summary: if verified.is_empty() {
                format!("staged {}@{}", staged.repository, staged.digest)
            } else {
                let vouched: Vec<String> = verified
                    .iter()
                    .map(|v| format!("{} by key {}", v.origin, v.key_id))
                    .collect();
                format!(
                    "staged {}@{}; base signature verified ({})",
                    staged.repository,
                    staged.digest,
                    vouched.join(", ")
                )
            },
        };
        let digest = staged.digest.clone();
        let size = staged.size_bytes;
        let update = self
            .builds_kv
            .update::<BuildRecord, _>(&request.build_id, |record| {
                let mut record = record.unwrap_or_else(|| BuildRecord {
                    build_id: request.build_id.clone(),
                    image: request.image.clone(),
                    inputs_hash: request.inputs_hash.clone(),
                    requested_at_ms: request.requested_at_ms,
                    ..Default::default()
                });
                record.status = "built".to_string();
                record.digest = digest.clone();
                record.size_bytes = size;
                record.sources = lineage.sources.clone();
                record.packages = lineage.packages.clone();
                record.base_digest = request.base_digest.clone();
                record.stages.retain(|s| s.name != "build");
                record.stages.push(stage.clone());
                Some(record)
            })
            .await;
        if let Err(error) = update {
            return retry(error);
        }
        let done = pb::BuildDone {
            build_id: request.build_id.clone(),
            image: request.image.clone(),
            inputs_hash: request.inputs_hash.clone(),
            staging_repository: staged.repository.clone(),
            digest: staged.digest.clone(),
            media_type: staged.media_type.clone(),
            base_ref: request.base_ref.clone(),
            base_digest: request.base_digest.clone(),
            sources: staged.sources.clone(),
            spec_json: request.spec_json.clone(),
            causes: request.causes.clone(),
            started_at_ms,
            finished_at_ms,
            size_bytes: staged.size_bytes,
            packages: request.packages.clone(),
        };
        let names = self.bus.names();
        let queue_envelope = Envelope::new(
            EventKind::BuildDone,
            deterministic_id(&["build-done", &request.build_id]),
            self.bus.source(),
            Some(image.as_str()),
            Some(&traceparent),
        );
        if let Err(error) = self
            .bus
            .publish(names.queue_subject(Queue::Scan, &image), &queue_envelope, &done)
            .await
        {
            return retry(error);
        }
        let mut event_envelope = queue_envelope.clone();
        event_envelope.id = deterministic_id(&["build-done-event", &request.build_id]);
        if let Err(error) = self
            .bus
            .publish(
                names.event_subject(EventKind::BuildDone.token(), Some(&image)),
                &event_envelope,
                &done,
            )
            .await
        {
            return retry(error);
        }
        rebake_runtime::telemetry::record_build("", "", &staged.digest);
        tracing::info!(image = %image, build_id = %request.build_id, digest = %staged.digest, ms = finished_at_ms - started_at_ms, "build staged");
        Outcome::Done
    }

    /// Checks the base's signature against the spec's `base_verify` and the matching
    /// `registries.verify` rules; what vouched for it, empty when nothing is required.
    async fn verify_base(&self, request: &pb::BuildRequest) -> Result<Vec<trust::Verified>> {
        let spec: rebake_config::ImageSpec =
            serde_json::from_str(&request.spec_json).map_err(|error| BuilderError::InvalidRequest {
                reason: format!("spec: {error}"),
            })?;
        let verified = trust::verify_base(
            &self.registry,
            &self.settings.base_trust,
            &spec,
            &request.base_ref,
            &request.base_digest,
        )
        .await?;
        for vouched in &verified {
            tracing::info!(
                image = %request.image,
                build_id = %request.build_id,
                base = %request.base_ref,
                base_digest = %request.base_digest,
                required_by = %vouched.origin,
                key_id = %vouched.key_id,
                "base signature verified"
            );
        }
        Ok(verified)
    }

    async fn mark(&self, build_id: &str, status: &str, reason: &str) {
        let result = self
            .builds_kv
            .update::<BuildRecord, _>(build_id, |record| {
                let mut record = record?;
                record.status = status.to_string();
                record.reason = reason.to_string();
                record.finished_at_ms = now_ms();
                Some(record)
            })
            .await;
        if let Err(error) = result {
            tracing::warn!(build_id, error = %error, "failed to update build record");
        }
    }

    async fn fail(
        &self,
        image: &ImageName,
        request: &pb::BuildRequest,
        started_at_ms: i64,
        reason: String,
        traceparent: &str,
    ) -> Outcome {
        tracing::warn!(image = %image, build_id = %request.build_id, reason, "build failed");
        let failed_at_ms = now_ms();
        let stage = StageRecord {
            name: "build".to_string(),
            started_at_ms,
            finished_at_ms: failed_at_ms,
            ok: false,
            summary: reason.clone(),
        };
        let update = self
            .builds_kv
            .update::<BuildRecord, _>(&request.build_id, |record| {
                let mut record = record.unwrap_or_default();
                record.build_id = request.build_id.clone();
                record.image = request.image.clone();
                record.inputs_hash = request.inputs_hash.clone();
                record.status = "failed".to_string();
                record.reason = reason.clone();
                record.finished_at_ms = failed_at_ms;
                record.stages.retain(|s| s.name != "build");
                record.stages.push(stage.clone());
                Some(record)
            })
            .await;
        if let Err(error) = update {
            return retry(error);
        }
        let failed = pb::BuildFailed {
            build_id: request.build_id.clone(),
            image: request.image.clone(),
            inputs_hash: request.inputs_hash.clone(),
            stage: "build".to_string(),
            reason,
            failed_at_ms,
            causes: request.causes.clone(),
        };
        let envelope = Envelope::new(
            EventKind::BuildFailed,
            deterministic_id(&["build-failed", &request.build_id]),
            self.bus.source(),
            Some(image.as_str()),
            Some(traceparent),
        );
        match self
            .bus
            .publish(
                self.bus
                    .names()
                    .event_subject(EventKind::BuildFailed.token(), Some(image)),
                &envelope,
                &failed,
            )
            .await
        {
            Ok(_) => Outcome::Done,
            Err(error) => retry(error),
        }
    }
}

fn revision(source: &pb::SourceCommit) -> SourceRevision {
    SourceRevision {
        url: source.url.clone(),
        ref_name: source.ref_name.clone(),
        commit: source.commit.clone(),
    }
}

fn retry(error: impl std::fmt::Display) -> Outcome {
    Outcome::retry(error, Duration::from_secs(2))
}
