//! Gauges sampled from the bus: stream depth and consumer lag (JetStream stream and consumer
//! info), images by status and findings of published images (KV buckets `images` and
//! `builds`). The setters are pure (tested with hand-built values); [`sample_queues`] and
//! [`sample_images`] read the bus.

use std::{
    collections::{BTreeMap, HashSet},
    hash::Hash,
};

use futures::TryStreamExt as _;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use rebake_bus::Bus;
use rebake_events::{
    Bucket, Queue,
    state::{ImageState, ImageStatus, ScanReport, scan_key},
};

/// Values of `rebake_findings{severity}`.
pub const SEVERITIES: [&str; 6] = ["critical", "high", "medium", "low", "none", "unknown"];

/// Values of `rebake_images{status}`.
pub const STATUSES: [ImageStatus; 5] = [
    ImageStatus::New,
    ImageStatus::Waiting,
    ImageStatus::Building,
    ImageStatus::Published,
    ImageStatus::Failed,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    stream: String,
    consumer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// The sampled gauges.
#[derive(Clone, Default)]
pub struct SampledMetrics {
    queue_depth: Family<StreamLabels, Gauge>,
    consumer_lag: Family<ConsumerLabels, Gauge>,
    findings: Family<SeverityLabels, Gauge>,
    images: Family<StatusLabels, Gauge>,
}

impl std::fmt::Debug for SampledMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampledMetrics")
    }
}

/// Sets `family` to exactly `values`: series no longer sampled are removed.
fn replace<L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug>(
    family: &Family<L, Gauge>,
    previous: &mut HashSet<L>,
    values: Vec<(L, i64)>,
) {
    let current: HashSet<L> = values.iter().map(|(labels, _)| labels.clone()).collect();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    for gone in previous.difference(&current) {
        family.remove(gone);
    }
    *previous = current;
}

fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl SampledMetrics {
    /// Empty gauges.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the families into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rebake_queue_depth",
            "Messages held by a work-queue stream (waiting or in flight) or the dead-letter stream",
            self.queue_depth.clone(),
        );
        registry.register(
            "rebake_consumer_lag",
            "Messages a durable consumer has not acknowledged yet (num_pending + num_ack_pending)",
            self.consumer_lag.clone(),
        );
        registry.register(
            "rebake_findings",
            "Vulnerability findings of the published images, by severity",
            self.findings.clone(),
        );
        registry.register("rebake_images", "Catalog images by status", self.images.clone());
    }

    /// Sets `rebake_queue_depth` to `(stream, messages)`; streams not listed are dropped.
    pub fn set_queue_depths(&self, previous: &mut HashSet<String>, depths: &[(String, u64)]) {
        let mut labels: HashSet<StreamLabels> = previous
            .iter()
            .map(|stream| StreamLabels { stream: stream.clone() })
            .collect();
        replace(
            &self.queue_depth,
            &mut labels,
            depths
                .iter()
                .map(|(stream, depth)| (StreamLabels { stream: stream.clone() }, saturating(*depth)))
                .collect(),
        );
        *previous = labels.into_iter().map(|labels| labels.stream).collect();
    }

    /// Sets `rebake_consumer_lag` to `(stream, consumer, lag)`; consumers not listed are dropped.
    pub fn set_consumer_lags(&self, previous: &mut HashSet<(String, String)>, lags: &[(String, String, u64)]) {
        let mut labels: HashSet<ConsumerLabels> = previous
            .iter()
            .map(|(stream, consumer)| ConsumerLabels {
                stream: stream.clone(),
                consumer: consumer.clone(),
            })
            .collect();
        replace(
            &self.consumer_lag,
            &mut labels,
            lags.iter()
                .map(|(stream, consumer, lag)| {
                    (
                        ConsumerLabels {
                            stream: stream.clone(),
                            consumer: consumer.clone(),
                        },
                        saturating(*lag),
                    )
                })
                .collect(),
        );
        *previous = labels
            .into_iter()
            .map(|labels| (labels.stream, labels.consumer))
            .collect();
    }

    /// Sets `rebake_images{status}` from the image states and `rebake_findings{severity}` from
    /// the scan reports of their published builds (`reports` by build id). Every known status
    /// and severity gets a value, zero included.
    pub fn set_images(&self, states: &[ImageState], reports: &BTreeMap<String, ScanReport>) {
        let mut by_status: BTreeMap<&str, i64> = STATUSES.iter().map(|status| (status.as_str(), 0)).collect();
        let mut by_severity: BTreeMap<String, i64> = SEVERITIES.iter().map(|s| (s.to_string(), 0)).collect();
        for state in states {
            *by_status.entry(state.status.as_str()).or_default() += 1;
            let Some(report) = state
                .published
                .as_ref()
                .and_then(|published| reports.get(&published.build_id))
            else {
                continue;
            };
            for finding in &report.findings {
                let severity = finding.severity.to_ascii_lowercase();
                let severity = if SEVERITIES.contains(&severity.as_str()) {
                    severity
                } else {
                    "unknown".to_string()
                };
                *by_severity.entry(severity).or_default() += 1;
            }
        }
        for (status, count) in by_status {
            self.images
                .get_or_create(&StatusLabels {
                    status: status.to_string(),
                })
                .set(count);
        }
        for (severity, count) in by_severity {
            self.findings.get_or_create(&SeverityLabels { severity }).set(count);
        }
    }
}

/// Samples stream depths and consumer lags once.
pub async fn sample_queues(
    bus: &Bus,
    metrics: &SampledMetrics,
    streams_seen: &mut HashSet<String>,
    consumers_seen: &mut HashSet<(String, String)>,
) {
    let names = bus.names();
    let mut depth_streams: Vec<String> = Queue::ALL.iter().map(|queue| names.queue_stream(*queue)).collect();
    depth_streams.push(names.dead_letter_stream());
    let mut lag_streams: Vec<String> = vec![names.upstream_stream()];
    lag_streams.extend(Queue::ALL.iter().map(|queue| names.queue_stream(*queue)));
    lag_streams.push(names.events_stream());

    let mut depths = Vec::new();
    for name in &depth_streams {
        match bus.jetstream().get_stream(name).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => depths.push((name.clone(), info.state.messages)),
                Err(error) => tracing::debug!(stream = %name, %error, "stream info failed"),
            },
            Err(error) => tracing::debug!(stream = %name, %error, "stream lookup failed"),
        }
    }
    let mut lags = Vec::new();
    for name in &lag_streams {
        let stream = match bus.jetstream().get_stream(name).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(stream = %name, %error, "stream lookup failed");
                continue;
            }
        };
        let infos: Result<Vec<_>, _> = stream.consumers().try_collect().await;
        match infos {
            Ok(infos) => {
                for info in infos {
                    // Only durable consumers: ephemeral ones (watches) come and go.
                    if info.config.durable_name.is_none() {
                        continue;
                    }
                    let lag = info.num_pending.saturating_add(info.num_ack_pending as u64);
                    lags.push((name.clone(), info.name.clone(), lag));
                }
            }
            Err(error) => tracing::debug!(stream = %name, %error, "consumer list failed"),
        }
    }
    metrics.set_queue_depths(streams_seen, &depths);
    metrics.set_consumer_lags(consumers_seen, &lags);
}

/// Samples images by status and findings of published images once.
pub async fn sample_images(bus: &Bus, metrics: &SampledMetrics) -> rebake_bus::Result<()> {
    let images = bus.kv(Bucket::Images).await?;
    let builds = bus.kv(Bucket::Builds).await?;
    let mut states = Vec::new();
    for key in images.keys().await? {
        match images.get::<ImageState>(&key).await {
            Ok(Some(state)) => states.push(state),
            Ok(None) => {}
            Err(error) => tracing::debug!(key, %error, "unreadable image state"),
        }
    }
    let mut reports = BTreeMap::new();
    for state in &states {
        let Some(published) = &state.published else {
            continue;
        };
        if published.build_id.is_empty() {
            continue;
        }
        match builds.get::<ScanReport>(&scan_key(&published.build_id)).await {
            Ok(Some(report)) => {
                reports.insert(published.build_id.clone(), report);
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(build_id = %published.build_id, %error, "unreadable scan report"),
        }
    }
    metrics.set_images(&states, &reports);
    Ok(())
}

#[cfg(test)]
mod tests {
    use rebake_events::state::{FindingRecord, PublishedImage};

    use super::*;

    fn render(metrics: &SampledMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn queue_depths_and_lags_replace_previous_samples() {
        let metrics = SampledMetrics::new();
        let mut streams = HashSet::new();
        let mut consumers = HashSet::new();
        metrics.set_queue_depths(&mut streams, &[("R_BUILD".into(), 3), ("R_SCAN".into(), 0)]);
        metrics.set_consumer_lags(
            &mut consumers,
            &[
                ("R_BUILD".into(), "build-workers".into(), 5),
                ("R_EVENTS".into(), "old".into(), 1),
            ],
        );
        let text = render(&metrics);
        assert!(text.contains(r#"rebake_queue_depth{stream="R_BUILD"} 3"#), "{text}");
        assert!(text.contains(r#"rebake_queue_depth{stream="R_SCAN"} 0"#), "{text}");
        assert!(
            text.contains(r#"rebake_consumer_lag{stream="R_BUILD",consumer="build-workers"} 5"#),
            "{text}"
        );
        metrics.set_queue_depths(&mut streams, &[("R_BUILD".into(), 1)]);
        metrics.set_consumer_lags(&mut consumers, &[("R_BUILD".into(), "build-workers".into(), 0)]);
        let text = render(&metrics);
        assert!(text.contains(r#"rebake_queue_depth{stream="R_BUILD"} 1"#), "{text}");
        assert!(!text.contains("R_SCAN"), "{text}");
        assert!(!text.contains(r#"consumer="old""#), "{text}");
    }

    #[test]
    fn images_by_status_and_findings_of_published_builds() {
        let metrics = SampledMetrics::new();
        let published = |name: &str, build_id: &str| ImageState {
            name: name.into(),
            status: ImageStatus::Published,
            published: Some(PublishedImage {
                build_id: build_id.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let states = vec![
            published("app", "b1"),
            published("child", "b2"),
            ImageState {
                name: "other".into(),
                status: ImageStatus::Failed,
                ..Default::default()
            },
        ];
        let finding = |severity: &str| FindingRecord {
            severity: severity.into(),
            ..Default::default()
        };
        let reports: BTreeMap<String, ScanReport> = [
            (
                "b1".to_string(),
                ScanReport {
                    findings: vec![finding("high"), finding("critical"), finding("HIGH")],
                    ..Default::default()
                },
            ),
            (
                "b2".to_string(),
                ScanReport {
                    findings: vec![finding("weird")],
                    ..Default::default()
                },
            ),
            // Not a published build of any image: not counted.
            (
                "b0".to_string(),
                ScanReport {
                    findings: vec![finding("critical")],
                    ..Default::default()
                },
            ),
        ]
        .into();
        metrics.set_images(&states, &reports);
        let text = render(&metrics);
        assert!(text.contains(r#"rebake_images{status="published"} 2"#), "{text}");
        assert!(text.contains(r#"rebake_images{status="failed"} 1"#), "{text}");
        assert!(text.contains(r#"rebake_images{status="waiting"} 0"#), "{text}");
        assert!(text.contains(r#"rebake_findings{severity="high"} 2"#), "{text}");
        assert!(text.contains(r#"rebake_findings{severity="critical"} 1"#), "{text}");
        assert!(text.contains(r#"rebake_findings{severity="unknown"} 1"#), "{text}");
        assert!(text.contains(r#"rebake_findings{severity="low"} 0"#), "{text}");
    }
}
