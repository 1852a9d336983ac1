//! Rebake's scanner stage: the gate between a staged image and its publication.
//!
//! It takes `BuildDone` from the `SCAN` queue, reads the staged image back from the
//! registry, writes its file inventory (path, size, SHA-256 per file, merged across layers
//! with whiteouts) into the build's record, and applies the configured policy — for now one
//! rule, a maximum image size. A passing image goes to the `SIGN` queue; a denied one is
//! recorded as a failed build (stage `scan`, with the rule and the reason) and never
//! published.
//!
//! SBOMs, vulnerability matching, structure tests and Rego policy are later work; this
//! crate is where they plug in.
#![forbid(unsafe_code)]

mod error;
pub mod policy;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use rebake_bus::{Bus, ConsumerSpec, Delivery, Kv, Need, Outcome, run_consumer};
use rebake_events::{
    Bucket, Envelope, EventKind, ImageName, Queue, deterministic_id, now_ms, pb,
    state::{BuildRecord, FileRecord, StageRecord, files_key},
};
use rebake_oci::{ImageRef, Registry};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use error::{Result, ScannerError};
pub use policy::{Policy, Verdict};

/// The inventory document stored per build (bucket `builds`, key `<build id>.files`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Inventory {
    /// Files, sorted by path (may be cut short, see `truncated`).
    pub files: Vec<FileRecord>,
    /// Number of files in the image.
    pub total_files: usize,
    /// Whether `files` was cut to fit a KV value.
    pub truncated: bool,
}

/// Largest inventory document kept in KV (NATS' default max payload is 1 MiB).
const MAX_INVENTORY_BYTES: usize = 900 * 1024;

struct Scanner {
    bus: Bus,
    registry: Registry,
    policy: Policy,
    builds_kv: Kv,
}

/// Starts the scanner; it runs until `shutdown` is cancelled.
pub async fn serve(
    bus: Bus,
    registry: Registry,
    policy: Policy,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<()> {
    bus.ensure(&[
        Need::Queue(Queue::Scan),
        Need::Queue(Queue::Sign),
        Need::Events,
        Need::DeadLetter,
        Need::Bucket(Bucket::Builds),
    ])
    .await?;
    let scanner = Arc::new(Scanner {
        builds_kv: bus.kv(Bucket::Builds).await?,
        bus: bus.clone(),
        registry,
        policy,
    });
    let names = bus.names();
    run_consumer(
        bus.clone(),
        ConsumerSpec {
            stream: names.queue_stream(Queue::Scan),
            durable: names.queue_consumer(Queue::Scan),
            filter_subject: String::new(),
            concurrency: 2,
            deliver_all: true,
        },
        shutdown,
        tracker,
        move |delivery| {
            let scanner = scanner.clone();
            async move { scanner.handle(delivery).await }
        },
    )
    .await?;
    Ok(())
}

/// Reads a staged image's layers and lists its files. For an image index, every platform's
/// manifest is read (so a broken platform fails the scan); the files listed are the first
/// platform's and the size is the largest platform's (the size policy is per pulled image).
pub async fn read_inventory(
    registry: &Registry,
    repository: &str,
    digest: &str,
) -> Result<(Vec<rebake_oci::FileInfo>, i64)> {
    let reference = ImageRef::parse(repository).map_err(ScannerError::Registry)?;
    let raw = registry
        .get_manifest(&reference.registry, &reference.repository, digest)
        .await
        .map_err(ScannerError::Registry)?;
    let manifests = if raw.is_index() {
        raw.to_index()
            .map_err(ScannerError::Registry)?
            .manifests
            .into_iter()
            .map(|descriptor| descriptor.digest)
            .collect()
    } else {
        vec![digest.to_string()]
    };
    let mut result: Option<(Vec<rebake_oci::FileInfo>, i64)> = None;
    for manifest_digest in manifests {
        let (files, size) = manifest_inventory(registry, &reference, &manifest_digest).await?;
        result = Some(match result {
            None => (files, size),
            Some((first, largest)) => (first, largest.max(size)),
        });
    }
    Ok(result.unwrap_or_default())
}

async fn manifest_inventory(
    registry: &Registry,
    reference: &ImageRef,
    digest: &str,
) -> Result<(Vec<rebake_oci::FileInfo>, i64)> {
    let raw = registry
        .get_manifest(&reference.registry, &reference.repository, digest)
        .await
        .map_err(ScannerError::Registry)?;
    let manifest = raw.to_manifest().map_err(ScannerError::Registry)?;
    let mut layers: Vec<(String, Bytes)> = Vec::new();
    for layer in &manifest.layers {
        let blob = registry
            .get_blob(&reference.registry, &reference.repository, &layer.digest)
            .await
            .map_err(ScannerError::Registry)?;
        layers.push((layer.digest.clone(), blob));
    }
    let size = manifest.config.size + manifest.layers.iter().map(|layer| layer.size).sum::<i64>();
    let files = rebake_oci::inventory(&layers).map_err(ScannerError::Registry)?;
    Ok((files, size))
}

impl Scanner {
    async fn handle(&self, delivery: Delivery) -> Outcome {
        let done: pb::BuildDone = match delivery.decode() {
            Ok(done) => done,
            Err(error) => {
                return Outcome::Reject {
                    reason: error.to_string(),
                };
            }
        };
        let Ok(image) = ImageName::new(done.image.clone()) else {
            return Outcome::Reject {
                reason: format!("invalid image name {:?}", done.image),
            };
        };
        let traceparent = delivery.envelope().traceparent.clone();
        let delivery_is_last = delivery.is_last_attempt();
        let started_at_ms = now_ms();
        let (files, size) = match read_inventory(&self.registry, &done.staging_repository, &done.digest).await {
            Ok(result) => result,
            Err(error) if error.is_transient() && !delivery_is_last => return retry(error.chain()),
            Err(error) => {
                let verdict = Verdict::deny("readable-image", format!("cannot read staged image: {}", error.chain()));
                return self.finish(&image, done, started_at_ms, 0, verdict, &traceparent).await;
            }
        };
        let file_count = files
            .iter()
            .filter(|file| file.kind == rebake_oci::FileKind::File)
            .count();
        let mut inventory = Inventory {
            total_files: files.len(),
            files: files
                .iter()
                .map(|file| FileRecord {
                    path: file.path.clone(),
                    size: file.size,
                    sha256: file.sha256.clone(),
                    layer: file.layer_digest.clone(),
                })
                .collect(),
            truncated: false,
        };
        while serde_json::to_vec(&inventory).map(|bytes| bytes.len()).unwrap_or(0) > MAX_INVENTORY_BYTES {
            let keep = inventory.files.len() * 3 / 4;
            inventory.files.truncate(keep);
            inventory.truncated = true;
        }
        if let Err(error) = self.builds_kv.put(&files_key(&done.build_id), &inventory).await {
            return retry(error);
        }
        let verdict = self.policy.evaluate(size as u64);
        self.finish(&image, done, started_at_ms, file_count as i64, verdict, &traceparent)
            .await
    }

    async fn finish(
        &self,
        image: &ImageName,
        done: pb::BuildDone,
        started_at_ms: i64,
        file_count: i64,
        verdict: Verdict,
        traceparent: &str,
    ) -> Outcome {
        let scanned_at_ms = now_ms();
        let summary = format!("{file_count} files, {} bytes; {}", done.size_bytes, verdict.summary());
        let passed = verdict.passed();
        let denial = verdict.denial();
        let stage = StageRecord {
            name: "scan".to_string(),
            started_at_ms,
            finished_at_ms: scanned_at_ms,
            ok: passed,
            summary: summary.clone(),
        };
        let update = self
            .builds_kv
            .update::<BuildRecord, _>(&done.build_id, |record| {
                let mut record = record.unwrap_or_default();
                record.build_id = done.build_id.clone();
                record.image = done.image.clone();
                record.status = if passed { "scanned" } else { "failed" }.to_string();
                if !passed {
                    record.reason = denial.clone();
                    record.finished_at_ms = scanned_at_ms;
                }
                record.file_count = file_count;
                record.stages.retain(|s| s.name != "scan");
                record.stages.push(stage.clone());
                Some(record)
            })
            .await;
        if let Err(error) = update {
            return retry(error);
        }
        let build_id = done.build_id.clone();
        let scan = pb::ScanDone {
            build: Some(done.clone()),
            passed,
            summary,
            denial: denial.clone(),
            file_count,
            scanned_at_ms,
        };
        let names = self.bus.names();
        let envelope = Envelope::new(
            EventKind::ScanDone,
            deterministic_id(&["scan-done", &build_id]),
            self.bus.source(),
            Some(image.as_str()),
            Some(traceparent),
        );
        if passed
            && let Err(error) = self
                .bus
                .publish(names.queue_subject(Queue::Sign, image), &envelope, &scan)
                .await
        {
            return retry(error);
        }
        let mut event_envelope = envelope.clone();
        event_envelope.id = deterministic_id(&["scan-done-event", &build_id]);
        if let Err(error) = self
            .bus
            .publish(
                names.event_subject(EventKind::ScanDone.token(), Some(image)),
                &event_envelope,
                &scan,
            )
            .await
        {
            return retry(error);
        }
        if !passed {
            tracing::warn!(image = %image, build_id, denial, "image denied by policy, not published");
            let failed = pb::BuildFailed {
                build_id: build_id.clone(),
                image: done.image.clone(),
                inputs_hash: done.inputs_hash.clone(),
                stage: "scan".to_string(),
                reason: denial,
                failed_at_ms: scanned_at_ms,
                causes: done.causes.clone(),
            };
            let envelope = Envelope::new(
                EventKind::BuildFailed,
                deterministic_id(&["build-failed", &build_id]),
                self.bus.source(),
                Some(image.as_str()),
                Some(traceparent),
            );
            if let Err(error) = self
                .bus
                .publish(
                    names.event_subject(EventKind::BuildFailed.token(), Some(image)),
                    &envelope,
                    &failed,
                )
                .await
            {
                return retry(error);
            }
        } else {
            tracing::info!(image = %image, build_id, file_count, "scan passed");
        }
        Outcome::Done
    }
}

fn retry(error: impl std::fmt::Display) -> Outcome {
    Outcome::retry(error, Duration::from_secs(2))
}
