//! The SIGN queue worker: one scanned build in, one published image (or one recorded
//! failure) out.

use std::sync::Arc;
use std::time::Duration;

use rebake_bus::{Bus, ConsumerSpec, Delivery, Kv, Need, Outcome, run_consumer};
use rebake_config::ImageSpec;
use rebake_events::state::{
    BuildRecord, CauseRecord, ImageState, ScanReport, SourceRevision, StageRecord, sbom_key, scan_key,
};
use rebake_events::{Bucket, Digest, Envelope, EventKind, ImageName, Queue, deterministic_id, now_ms, pb};
use rebake_oci::{Descriptor, ImageRef, Registry};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, error, info, warn};

use crate::attest::{
    Attestation, CYCLONEDX_PREDICATE_TYPE, SLSA_PROVENANCE_PREDICATE_TYPE, SPDX_PREDICATE_TYPE, VULN_PREDICATE_TYPE,
    attest_and_store, stored_attestations_are_valid,
};
use crate::cosign::{sign_and_store, stored_signature_is_valid};
use crate::error::{Result, SignerError, error_chain};
use crate::key::SignerKey;
use crate::promote::{copy_image, get_manifest, move_tags};
use crate::provenance::{slsa_provenance, vulnerability_predicate};
use crate::verifying::VerifyingKeys;

/// Messages handled at once by this process.
/// Default of `signer.concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// First redelivery delay after a transient failure; doubles per delivery.
const RETRY_BASE: Duration = Duration::from_secs(2);
/// Longest redelivery delay.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Stage names, as recorded in build records and `BuildFailed.stage`.
const STAGE_SIGN: &str = "sign";
const STAGE_PUBLISH: &str = "publish";
/// The span of the part of publishing that runs while signing: copying the content.
const SPAN_COPY: &str = "copy";

/// Starts the signer/publisher: ensures the SIGN queue, the events and dead-letter
/// streams and the `builds` and `images` buckets exist, then runs two
/// consumers of the SIGN queue on `tracker` until `shutdown` is cancelled.
///
/// Returns once the consumers are running; a setup failure (NATS unreachable) is returned.
pub async fn serve(
    bus: Bus,
    registry: Registry,
    key: SignerKey,
    concurrency: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<()> {
    bus.ensure(&[
        Need::Queue(Queue::Sign),
        Need::Events,
        Need::DeadLetter,
        Need::Bucket(Bucket::Builds),
        Need::Bucket(Bucket::Images),
    ])
    .await
    .map_err(SignerError::bus("set up the sign queue, events and buckets"))?;
    let builds = bus
        .kv(Bucket::Builds)
        .await
        .map_err(SignerError::bus("open the builds bucket"))?;
    let images = bus
        .kv(Bucket::Images)
        .await
        .map_err(SignerError::bus("open the images bucket"))?;
    let names = bus.names().clone();
    let spec = ConsumerSpec {
        stream: names.queue_stream(Queue::Sign),
        durable: names.queue_consumer(Queue::Sign),
        filter_subject: names.queue_subjects(Queue::Sign),
        concurrency: concurrency.max(1),
        deliver_all: true,
    };
    let key_id = key.key_id().to_string();
    // The signer's public key and the other accepted ones (`signer.verify_keys`, during a
    // rotation): what stored signatures and attestations must verify with to count as done.
    let own_key = key.verifying_keys()?;
    let worker = Arc::new(Worker {
        bus: bus.clone(),
        registry,
        key,
        own_key,
        builds,
        images,
    });
    run_consumer(bus, spec, shutdown, tracker, move |delivery| {
        let worker = Arc::clone(&worker);
        async move { worker.handle(delivery).await }
    })
    .await
    .map_err(SignerError::bus("start the sign queue consumer"))?;
    info!(key_id, concurrency, "signer started");
    Ok(())
}

struct Worker {
    bus: Bus,
    registry: Registry,
    key: SignerKey,
    own_key: VerifyingKeys,
    builds: Kv,
    images: Kv,
}

/// What one scanned build asks for, checked.
struct Job {
    image: ImageName,
    digest: Digest,
    staging: ImageRef,
    published: ImageRef,
    tags: Vec<String>,
}

impl Job {
    fn from_build(build: &pb::BuildDone, image: ImageName) -> Result<Job> {
        let digest = Digest::new(build.digest.as_str())
            .map_err(|error| SignerError::invalid("staged digest", error.to_string()))?;
        let staging = repository_ref(&build.staging_repository, "staging repository")?;
        let spec: ImageSpec = serde_json::from_str(&build.spec_json)
            .map_err(|error| SignerError::invalid("image spec json", error.to_string()))?;
        let published = repository_ref(&spec.publish.repository, "publish.repository")?;
        if spec.publish.tags.is_empty() {
            return Err(SignerError::invalid("publish.tags", "no tags to publish under"));
        }
        for tag in &spec.publish.tags {
            rebake_oci::reference::validate_tag(tag)
                .map_err(|error| SignerError::invalid("publish.tags", error.to_string()))?;
        }
        Ok(Job {
            image,
            digest,
            staging,
            published,
            tags: spec.publish.tags,
        })
    }
}

/// Parses `registry/repository` (no tag, no digest).
fn repository_ref(text: &str, what: &str) -> Result<ImageRef> {
    let parsed = ImageRef::parse(text).map_err(|error| SignerError::invalid(what, error.to_string()))?;
    if parsed.tag.is_some() || parsed.digest.is_some() {
        return Err(SignerError::invalid(
            what,
            format!("{text:?} must be registry/repository without tag or digest"),
        ));
    }
    Ok(parsed)
}

/// A failure and the stage it belongs to.
struct StageError {
    stage: &'static str,
    error: SignerError,
}

fn at(stage: &'static str) -> impl FnOnce(SignerError) -> StageError {
    move |error| StageError { stage, error }
}

/// How the work went when it did not fail.
enum Published {
    /// Signed and promoted now.
    Now { sign: StageRecord, publish: StageRecord },
    /// Everything was already in place (a redelivery).
    Already,
}

impl Worker {
    async fn handle(&self, delivery: Delivery) -> Outcome {
        if delivery.envelope().kind != EventKind::ScanDone {
            return Outcome::Reject {
                reason: format!("unexpected {} event on the sign queue", delivery.envelope().kind.name()),
            };
        }
        let scan: pb::ScanDone = match delivery.decode() {
            Ok(scan) => scan,
            Err(error) => {
                return Outcome::Reject {
                    reason: error_chain(&error),
                };
            }
        };
        let Some(build) = scan.build else {
            return Outcome::Reject {
                reason: "scan.done without a build".to_string(),
            };
        };
        let image = match ImageName::new(build.image.as_str()) {
            Ok(image) => image,
            Err(error) => {
                return Outcome::Reject {
                    reason: error_chain(&error),
                };
            }
        };
        delivery.record_build(image.as_str(), &build.build_id, &build.digest);
        let span = tracing::debug_span!("sign", build_id = %build.build_id, image = %image, digest = %build.digest);
        let traceparent = delivery.envelope().traceparent.clone();
        let delivered = delivery.delivered();
        let last_attempt = delivery.is_last_attempt();
        async move {
            if !scan.passed {
                // The scanner only enqueues passed scans; a failed one is never published.
                warn!(build_id = %build.build_id, "ignoring a scan that did not pass");
                return Outcome::Done;
            }
            let job = match Job::from_build(&build, image.clone()) {
                Ok(job) => job,
                Err(error) => {
                    return self.fail(&build, &image, STAGE_SIGN, &error, &traceparent).await;
                }
            };
            match self.process(&build, &job, &traceparent).await {
                Ok(()) => Outcome::Done,
                Err(StageError { error, .. }) if error.is_transient() && !last_attempt => Outcome::Retry {
                    reason: error_chain(&error),
                    delay: retry_delay(delivered),
                },
                Err(StageError { stage, error }) => self.fail(&build, &image, stage, &error, &traceparent).await,
            }
        }
        .instrument(span)
        .await
    }

    /// Sign, attest, promote, record, announce — skipping whatever a previous delivery
    /// finished.
    async fn process(
        &self,
        build: &pb::BuildDone,
        job: &Job,
        traceparent: &str,
    ) -> std::result::Result<(), StageError> {
        let attestations = self.attestations(build).await.map_err(at(STAGE_SIGN))?;
        let predicate_types: Vec<&str> = attestations
            .iter()
            .map(|attestation| attestation.predicate_type.as_str())
            .collect();
        // What an earlier delivery may have left: both reads at once.
        let (signed, attested) = futures::try_join!(
            stored_signature_is_valid(&self.registry, &self.key, &job.published, job.digest.as_str()),
            stored_attestations_are_valid(
                &self.registry,
                &self.own_key,
                &job.published,
                job.digest.as_str(),
                &predicate_types,
            ),
        )
        .map_err(at(STAGE_SIGN))?;
        let published = if signed && attested && self.tags_in_place(job).await.map_err(at(STAGE_PUBLISH))? {
            debug!("already signed, attested and published; announcing again");
            Published::Already
        } else {
            if let Some(newer) = self.newer_live_build(build, job).await.map_err(at(STAGE_PUBLISH))? {
                self.record_superseded(build, &newer).await.map_err(at(STAGE_PUBLISH))?;
                info!(newer_build_id = %newer, "not publishing: a newer build of this image is live");
                return Ok(());
            }
            let staged = get_manifest(
                &self.registry,
                (&job.staging.registry, &job.staging.repository),
                job.digest.as_str(),
            )
            .await
            .map_err(at(STAGE_SIGN))?;
            // Signing, attesting and copying the content to the published repository do
            // not depend on each other and run at once; the tags move only when all three
            // are done, so nothing is live unsigned.
            let started = now_ms();
            let signing = async {
                let referrers = futures::try_join!(
                    async {
                        if signed {
                            debug!("valid signature already stored; not signing again");
                            return Ok(());
                        }
                        sign_and_store(&self.registry, &self.key, &job.published, job.digest.as_str())
                            .await
                            .map(drop)
                    },
                    async {
                        if attested {
                            debug!("valid attestations already stored; not attesting again");
                            return Ok("already stored");
                        }
                        let image = Descriptor::new(
                            staged.media_type.clone(),
                            staged.digest.clone(),
                            staged.bytes.len() as i64,
                        );
                        let stored =
                            attest_and_store(&self.registry, &self.key, &job.published, &image, &attestations).await?;
                        Ok(if stored.referrers.is_some() {
                            "also as referrers"
                        } else {
                            "tag only, no referrers api"
                        })
                    },
                )
                .map_err(at(STAGE_SIGN))?
                .1;
                Ok::<_, StageError>((referrers, now_ms()))
            }
            .instrument(stage_span(STAGE_SIGN, build, job));
            let copying = async {
                copy_image(
                    &self.registry,
                    (&job.staging.registry, &job.staging.repository),
                    (&job.published.registry, &job.published.repository),
                    &staged,
                )
                .await
                .map_err(at(STAGE_PUBLISH))
            }
            .instrument(stage_span(SPAN_COPY, build, job));
            let ((referrers, signed_at), ()) = futures::try_join!(signing, copying)?;
            move_tags(
                &self.registry,
                (&job.published.registry, &job.published.repository),
                &staged,
                &job.tags,
            )
            .instrument(stage_span(STAGE_PUBLISH, build, job))
            .await
            .map_err(at(STAGE_PUBLISH))?;
            let sign = StageRecord {
                name: STAGE_SIGN.to_string(),
                started_at_ms: started,
                finished_at_ms: signed_at,
                ok: true,
                summary: format!(
                    "signed with key {}; attested {} ({referrers})",
                    self.key.key_id(),
                    short_types(&predicate_types)
                ),
            };
            let publish = StageRecord {
                name: STAGE_PUBLISH.to_string(),
                started_at_ms: started,
                finished_at_ms: now_ms(),
                ok: true,
                summary: format!(
                    "{} tagged {} (content copied while signing)",
                    job.published.repo_string(),
                    job.tags.join(", ")
                ),
            };
            Published::Now { sign, publish }
        };
        self.record_published(build, job, published)
            .await
            .map_err(at(STAGE_PUBLISH))?;
        self.announce(build, job, traceparent)
            .await
            .map_err(at(STAGE_PUBLISH))?;
        info!(image = %job.image, build_id = %build.build_id, digest = %job.digest, repository = %job.published.repo_string(), tags = ?job.tags, "image published");
        Ok(())
    }

    /// The statements to attest for `build`: its SBOMs and scan report as the scanner
    /// stored them, and its provenance. A missing SBOM or report is logged and left out.
    async fn attestations(&self, build: &pb::BuildDone) -> Result<Vec<Attestation>> {
        let build_id = build.build_id.as_str();
        let read = |what: &str| SignerError::bus(format!("read the {what} of build {build_id}"));
        let record: Option<BuildRecord> = self.builds.get(build_id).await.map_err(read("record"))?;
        let mut attestations = Vec::with_capacity(4);
        for (format, predicate_type) in [("spdx", SPDX_PREDICATE_TYPE), ("cyclonedx", CYCLONEDX_PREDICATE_TYPE)] {
            let sbom: Option<serde_json::Value> = self
                .builds
                .get(&sbom_key(build_id, format))
                .await
                .map_err(read(&format!("{format} sbom")))?;
            match sbom {
                Some(predicate) => attestations.push(Attestation {
                    predicate_type: predicate_type.to_string(),
                    predicate,
                }),
                None => warn!(build_id, format, "no sbom stored for this build; not attesting it"),
            }
        }
        let report: Option<ScanReport> = self
            .builds
            .get(&scan_key(build_id))
            .await
            .map_err(read("scan report"))?;
        match report {
            Some(report) => {
                let scan_stage = record
                    .as_ref()
                    .and_then(|record| record.stages.iter().rev().find(|stage| stage.name == "scan"));
                attestations.push(Attestation {
                    predicate_type: VULN_PREDICATE_TYPE.to_string(),
                    predicate: vulnerability_predicate(build_id, &report, scan_stage)?,
                });
            }
            None => warn!(build_id, "no scan report stored for this build; not attesting it"),
        }
        attestations.push(Attestation {
            predicate_type: SLSA_PROVENANCE_PREDICATE_TYPE.to_string(),
            predicate: slsa_provenance(build, record.as_ref())?,
        });
        Ok(attestations)
    }

    /// True when every tag of the published repository already points at the digest.
    async fn tags_in_place(&self, job: &Job) -> Result<bool> {
        for tag in &job.tags {
            let reference = ImageRef {
                tag: Some(tag.clone()),
                ..job.published.clone()
            };
            let resolved = self
                .registry
                .resolve(&reference)
                .await
                .map_err(SignerError::registry(format!("resolve {reference}")))?;
            if resolved.is_none_or(|resolved| resolved.digest != job.digest.as_str()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The build id of a newer build of this image that is already live, if any: moving the
    /// tags to this (older) build would roll the image back. Build ids are UUIDv7, so their
    /// text sorts by request time.
    async fn newer_live_build(&self, build: &pb::BuildDone, job: &Job) -> Result<Option<String>> {
        let state: Option<ImageState> = self
            .images
            .get(&job.image.kv_key())
            .await
            .map_err(SignerError::bus(format!("read the state of {}", job.image)))?;
        let Some(live) = state.and_then(|state| state.published) else {
            return Ok(None);
        };
        let newer = !live.build_id.is_empty()
            && !build.build_id.is_empty()
            && live.build_id.as_str() > build.build_id.as_str()
            && live.digest != job.digest.as_str();
        Ok(newer.then_some(live.build_id))
    }

    async fn record_superseded(&self, build: &pb::BuildDone, newer: &str) -> Result<()> {
        let reason = format!("superseded: newer build {newer} is already published");
        let finished = now_ms();
        self.builds
            .update(&build.build_id, |current: Option<BuildRecord>| {
                let mut record = current.unwrap_or_else(|| new_record(build));
                if matches!(record.status.as_str(), "published" | "failed" | "skipped") {
                    return None;
                }
                record.status = "skipped".to_string();
                record.reason = reason.clone();
                record.finished_at_ms = finished;
                Some(record)
            })
            .await
            .map_err(SignerError::bus(format!("record build {}", build.build_id)))?;
        Ok(())
    }

    async fn record_published(&self, build: &pb::BuildDone, job: &Job, published: Published) -> Result<()> {
        let finished = now_ms();
        let (sign, publish) = match published {
            Published::Now { sign, publish } => (sign, publish),
            Published::Already => {
                let already = |name: &str| StageRecord {
                    name: name.to_string(),
                    started_at_ms: finished,
                    finished_at_ms: finished,
                    ok: true,
                    summary: "already done by an earlier delivery".to_string(),
                };
                (already(STAGE_SIGN), already(STAGE_PUBLISH))
            }
        };
        self.builds
            .update(&build.build_id, |current: Option<BuildRecord>| {
                let mut record = current.unwrap_or_else(|| new_record(build));
                if record.status == "published" && record.digest == job.digest.as_str() {
                    return None;
                }
                record.status = "published".to_string();
                record.reason.clear();
                record.digest = job.digest.to_string();
                if record.size_bytes == 0 {
                    record.size_bytes = build.size_bytes;
                }
                record.finished_at_ms = finished;
                record
                    .stages
                    .retain(|stage| stage.name != STAGE_SIGN && stage.name != STAGE_PUBLISH);
                record.stages.push(sign.clone());
                record.stages.push(publish.clone());
                Some(record)
            })
            .await
            .map_err(SignerError::bus(format!("record build {}", build.build_id)))?;
        Ok(())
    }

    async fn announce(&self, build: &pb::BuildDone, job: &Job, traceparent: &str) -> Result<()> {
        let event = pb::ImagePublished {
            build_id: build.build_id.clone(),
            image: build.image.clone(),
            inputs_hash: build.inputs_hash.clone(),
            repository: job.published.repo_string(),
            digest: job.digest.to_string(),
            tags: job.tags.clone(),
            base_ref: build.base_ref.clone(),
            base_digest: build.base_digest.clone(),
            sources: build.sources.clone(),
            signature_tag: job.digest.signature_tag(),
            causes: build.causes.clone(),
            published_at_ms: now_ms(),
            size_bytes: build.size_bytes,
            packages: build.packages.clone(),
        };
        let envelope = Envelope::new(
            EventKind::ImagePublished,
            deterministic_id(&["published", &build.build_id, job.digest.as_str()]),
            self.bus.source(),
            Some(job.image.as_str()),
            Some(traceparent),
        );
        let subject = self
            .bus
            .names()
            .event_subject(EventKind::ImagePublished.token(), Some(&job.image));
        self.bus
            .publish(subject, &envelope, &event)
            .await
            .map_err(SignerError::bus(format!("publish image.published for {}", job.image)))?;
        Ok(())
    }

    /// Records a permanent failure (build record + `build.failed` event) and acks. Nothing
    /// was published: tags only move after everything before them succeeded.
    async fn fail(
        &self,
        build: &pb::BuildDone,
        image: &ImageName,
        stage: &'static str,
        failure: &SignerError,
        traceparent: &str,
    ) -> Outcome {
        let reason = error_chain(failure);
        error!(build_id = %build.build_id, image = %image, stage, error = %reason, "failed to publish image");
        let failed_at = now_ms();
        let recorded = self
            .builds
            .update(&build.build_id, |current: Option<BuildRecord>| {
                let mut record = current.unwrap_or_else(|| new_record(build));
                if record.status == "published" {
                    return None;
                }
                record.status = "failed".to_string();
                record.reason = reason.clone();
                record.finished_at_ms = failed_at;
                record.stages.retain(|recorded| recorded.name != stage);
                record.stages.push(StageRecord {
                    name: stage.to_string(),
                    started_at_ms: failed_at,
                    finished_at_ms: failed_at,
                    ok: false,
                    summary: reason.clone(),
                });
                Some(record)
            })
            .await;
        if let Err(error) = recorded {
            return Outcome::Retry {
                reason: format!("failed to record failure of build {}: {error}", build.build_id),
                delay: RETRY_BASE,
            };
        }
        let event = pb::BuildFailed {
            build_id: build.build_id.clone(),
            image: build.image.clone(),
            inputs_hash: build.inputs_hash.clone(),
            stage: stage.to_string(),
            reason: reason.clone(),
            failed_at_ms: failed_at,
            causes: build.causes.clone(),
        };
        let envelope = Envelope::new(
            EventKind::BuildFailed,
            deterministic_id(&["failed", &build.build_id, stage, &build.digest]),
            self.bus.source(),
            Some(image.as_str()),
            Some(traceparent),
        );
        let subject = self
            .bus
            .names()
            .event_subject(EventKind::BuildFailed.token(), Some(image));
        match self.bus.publish(subject, &envelope, &event).await {
            Ok(_) => Outcome::Done,
            Err(error) => Outcome::Retry {
                reason: format!("failed to publish build.failed for {image}: {error}"),
                delay: RETRY_BASE,
            },
        }
    }
}

/// A build record for a build the resolver's record is missing for (bucket lost, or a
/// message replayed by hand).
fn new_record(build: &pb::BuildDone) -> BuildRecord {
    BuildRecord {
        build_id: build.build_id.clone(),
        image: build.image.clone(),
        inputs_hash: build.inputs_hash.clone(),
        status: "scanned".to_string(),
        causes: build.causes.iter().map(CauseRecord::from).collect(),
        base_digest: build.base_digest.clone(),
        sources: build
            .sources
            .iter()
            .map(|source| SourceRevision {
                url: source.url.clone(),
                ref_name: source.ref_name.clone(),
                commit: source.commit.clone(),
            })
            .collect(),
        digest: build.digest.clone(),
        size_bytes: build.size_bytes,
        ..BuildRecord::default()
    }
}

/// The predicate types in a build record summary: the last path segment of each URI
/// (`Document`, `bom`, `v1`...) is ambiguous, so name them.
fn short_types(predicate_types: &[&str]) -> String {
    predicate_types
        .iter()
        .map(|predicate_type| match *predicate_type {
            SPDX_PREDICATE_TYPE => "spdx",
            CYCLONEDX_PREDICATE_TYPE => "cyclonedx",
            VULN_PREDICATE_TYPE => "vuln",
            SLSA_PROVENANCE_PREDICATE_TYPE => "slsa-provenance",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Redelivery delay after a transient failure on delivery `delivered` (1-based).
fn retry_delay(delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.saturating_sub(1).clamp(0, 8)).unwrap_or(8);
    RETRY_BASE.saturating_mul(1 << exponent).min(RETRY_MAX)
}

/// The span of one of the signer's stages (`sign`, `publish`), exported with the build's
/// image, id and digest.
fn stage_span(stage: &'static str, build: &pb::BuildDone, job: &Job) -> tracing::Span {
    tracing::info_span!(
        "stage",
        otel.name = stage,
        rebake.stage = stage,
        rebake.image = %job.image,
        rebake.build_id = %build.build_id,
        rebake.digest = %job.digest,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(spec_json: &str) -> pb::BuildDone {
        pb::BuildDone {
            build_id: "b1".into(),
            image: "app".into(),
            digest: rebake_oci::sha256_digest(b"m"),
            staging_repository: "127.0.0.1:5000/rebake-staging/app".into(),
            spec_json: spec_json.into(),
            ..Default::default()
        }
    }

    fn image() -> ImageName {
        ImageName::new("app").unwrap()
    }

    #[test]
    fn job_from_build() {
        let spec = r#"{"name":"app","base":"scratch","publish":{"repository":"127.0.0.1:5000/apps/app","tags":["latest","v1"]}}"#;
        let job = Job::from_build(&build(spec), image()).unwrap();
        assert_eq!(job.staging.registry, "127.0.0.1:5000");
        assert_eq!(job.staging.repository, "rebake-staging/app");
        assert_eq!(job.published.repo_string(), "127.0.0.1:5000/apps/app");
        assert_eq!(job.tags, ["latest", "v1"]);
    }

    #[test]
    fn bad_jobs_are_permanent() {
        let cases = [
            "not json",
            r#"{"name":"app","base":"scratch","publish":{"repository":"127.0.0.1:5000/apps/app:v1"}}"#,
            r#"{"name":"app","base":"scratch","publish":{"repository":"apps/app"}}"#,
            r#"{"name":"app","base":"scratch","publish":{"repository":"127.0.0.1:5000/apps/app","tags":[]}}"#,
            r#"{"name":"app","base":"scratch","publish":{"repository":"127.0.0.1:5000/apps/app","tags":["a/b"]}}"#,
        ];
        for spec in cases {
            let error = Job::from_build(&build(spec), image()).err().unwrap();
            assert!(!error.is_transient(), "{spec}: {error}");
        }
        let mut bad_digest =
            build(r#"{"name":"app","base":"scratch","publish":{"repository":"127.0.0.1:5000/apps/app"}}"#);
        bad_digest.digest = "sha256:nope".into();
        assert!(Job::from_build(&bad_digest, image()).is_err());
    }

    #[test]
    fn retry_delays_grow_and_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(2), Duration::from_secs(4));
        assert_eq!(retry_delay(100), RETRY_MAX);
        assert_eq!(retry_delay(0), Duration::from_secs(2));
    }
}
