//! Build, stage, exposure and publication metrics, derived from the events of the EVENTS
//! stream (see the crate docs for the definitions). Pure: [`EventMetrics::observe`] takes a
//! decoded event and, where stage timings live in the build record, that record.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use rebake_events::{pb, state::BuildRecord};

/// Values of `rebake_builds_total{result}`.
pub const BUILD_RESULTS: [&str; 3] = ["published", "failed", "denied"];

/// Values of `rebake_stage_duration_seconds{stage}`.
pub const STAGES: [&str; 4] = ["build", "scan", "sign", "publish"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

/// One decoded event of the EVENTS stream that metrics are derived from.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `build.done`.
    BuildDone(pb::BuildDone),
    /// `build.failed`.
    BuildFailed(pb::BuildFailed),
    /// `scan.done`.
    ScanDone(pb::ScanDone),
    /// `image.published`.
    ImagePublished(pb::ImagePublished),
}

impl Event {
    /// Whether deriving from this event uses the build record (stage timings).
    pub fn wants_record(&self) -> bool {
        matches!(self, Event::ScanDone(_) | Event::ImagePublished(_))
    }

    /// The build the event is about.
    pub fn build_id(&self) -> &str {
        match self {
            Event::BuildDone(done) => &done.build_id,
            Event::BuildFailed(failed) => &failed.build_id,
            Event::ScanDone(scan) => scan.build.as_ref().map_or("", |build| build.build_id.as_str()),
            Event::ImagePublished(published) => &published.build_id,
        }
    }
}

fn stage_buckets() -> Histogram {
    // 0.1 s … ~1.8 h.
    Histogram::new(exponential_buckets(0.1, 2.0, 17))
}

/// Rules the scanner names when it could not judge the image at all (`<rule>: <reason>`):
/// those builds failed, nobody denied them.
const SCANNER_ERROR_RULES: [&str; 2] = ["readable-image", "scan"];

/// `denied` for a build the policy stopped at `scan`, `failed` for anything else.
fn build_result(failed: &pb::BuildFailed) -> &'static str {
    let rule = failed.reason.split_once(':').map_or("", |(rule, _)| rule.trim());
    if failed.stage == "scan" && !SCANNER_ERROR_RULES.contains(&rule) {
        "denied"
    } else {
        "failed"
    }
}

/// The event-derived families.
#[derive(Clone)]
pub struct EventMetrics {
    builds: Family<ResultLabels, Counter>,
    published: Counter,
    stage_duration: Family<StageLabels, Histogram, fn() -> Histogram>,
    exposure: Histogram,
}

impl std::fmt::Debug for EventMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventMetrics")
    }
}

impl Default for EventMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl EventMetrics {
    /// Empty metrics, every `result` and `stage` already at zero so dashboards show rates
    /// of 0 rather than no data.
    pub fn new() -> Self {
        let metrics = Self {
            builds: Family::default(),
            published: Counter::default(),
            stage_duration: Family::new_with_constructor(stage_buckets as fn() -> Histogram),
            // 1 s … ~12 days.
            exposure: Histogram::new(exponential_buckets(1.0, 2.0, 21)),
        };
        for result in BUILD_RESULTS {
            let _ = metrics.builds.get_or_create(&ResultLabels {
                result: result.to_string(),
            });
        }
        for stage in STAGES {
            let _ = metrics.stage_duration.get_or_create(&StageLabels {
                stage: stage.to_string(),
            });
        }
        metrics
    }

    /// Registers the families into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rebake_builds",
            "Finished builds by result: published, failed, denied (by policy)",
            self.builds.clone(),
        );
        registry.register(
            "rebake_images_published",
            "Images signed and published (image.published events)",
            self.published.clone(),
        );
        registry.register(
            "rebake_stage_duration_seconds",
            "Duration of completed build stages (build, scan, sign, publish)",
            self.stage_duration.clone(),
        );
        registry.register(
            "rebake_exposure_window_seconds",
            "Time from the earliest cause of a build (the upstream change) to its publication",
            self.exposure.clone(),
        );
    }

    fn count(&self, result: &str) {
        self.builds
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    fn stage(&self, stage: &str, started_ms: i64, finished_ms: i64) {
        if started_ms <= 0 || finished_ms < started_ms {
            return;
        }
        self.stage_duration
            .get_or_create(&StageLabels {
                stage: stage.to_string(),
            })
            .observe((finished_ms - started_ms) as f64 / 1000.0);
    }

    fn record_stage(&self, record: Option<&BuildRecord>, stage: &str) -> bool {
        let Some(found) = record.and_then(|record| record.stages.iter().find(|recorded| recorded.name == stage)) else {
            return false;
        };
        self.stage(stage, found.started_at_ms, found.finished_at_ms);
        true
    }

    /// Updates the metrics for one event. `record` is the build's record (bucket `builds`)
    /// when [`Event::wants_record`] and it could be read.
    pub fn observe(&self, event: &Event, record: Option<&BuildRecord>) {
        match event {
            Event::BuildDone(done) => self.stage("build", done.started_at_ms, done.finished_at_ms),
            Event::BuildFailed(failed) => {
                self.count(build_result(failed));
            }
            Event::ScanDone(scan) => {
                if !self.record_stage(record, "scan")
                    && let Some(build) = &scan.build
                {
                    // No record: from staged to scanned (includes the wait in the queue).
                    self.stage("scan", build.finished_at_ms, scan.scanned_at_ms);
                }
            }
            Event::ImagePublished(published) => {
                self.count("published");
                self.published.inc();
                self.record_stage(record, "sign");
                self.record_stage(record, "publish");
                if let Some(seconds) = exposure_seconds(published) {
                    self.exposure.observe(seconds);
                }
            }
        }
    }
}

/// `published_at_ms` minus the earliest known cause time, in seconds (`None` when no cause
/// has a time, or the clock went backwards).
pub fn exposure_seconds(published: &pb::ImagePublished) -> Option<f64> {
    let earliest = published
        .causes
        .iter()
        .map(|cause| cause.at_ms)
        .filter(|at| *at > 0)
        .min()?;
    (published.published_at_ms >= earliest).then(|| (published.published_at_ms - earliest) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use rebake_events::state::StageRecord;

    use super::*;

    fn render(metrics: &EventMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    fn cause(at_ms: i64) -> pb::Cause {
        pb::Cause {
            kind: "registry-tag".into(),
            at_ms,
            ..Default::default()
        }
    }

    fn stage(name: &str, started: i64, finished: i64) -> StageRecord {
        StageRecord {
            name: name.into(),
            started_at_ms: started,
            finished_at_ms: finished,
            ok: true,
            summary: String::new(),
        }
    }

    #[test]
    fn starts_at_zero_for_every_result_and_stage() {
        let text = render(&EventMetrics::new());
        for result in BUILD_RESULTS {
            assert!(
                text.contains(&format!("rebake_builds_total{{result=\"{result}\"}} 0")),
                "{text}"
            );
        }
        assert!(text.contains("rebake_images_published_total 0"), "{text}");
        assert!(
            text.contains(r#"rebake_stage_duration_seconds_count{stage="sign"} 0"#),
            "{text}"
        );
        assert!(text.contains("rebake_exposure_window_seconds_count 0"), "{text}");
    }

    #[test]
    fn published_counts_and_measures_the_exposure_window() {
        let metrics = EventMetrics::new();
        let published = pb::ImagePublished {
            build_id: "b1".into(),
            image: "child".into(),
            // The base moved at t=1000 s, the parent was published at 1100 s.
            causes: vec![cause(1_100_000), cause(1_000_000), cause(0)],
            published_at_ms: 1_250_500,
            ..Default::default()
        };
        assert_eq!(exposure_seconds(&published), Some(250.5));
        let record = BuildRecord {
            build_id: "b1".into(),
            stages: vec![
                stage("build", 1_200_000, 1_210_000),
                stage("scan", 1_211_000, 1_213_000),
                stage("sign", 1_250_000, 1_250_200),
                stage("publish", 1_250_200, 1_250_400),
            ],
            ..Default::default()
        };
        metrics.observe(&Event::ImagePublished(published), Some(&record));
        let text = render(&metrics);
        assert!(text.contains(r#"rebake_builds_total{result="published"} 1"#), "{text}");
        assert!(text.contains("rebake_images_published_total 1"), "{text}");
        assert!(text.contains("rebake_exposure_window_seconds_count 1"), "{text}");
        assert!(text.contains("rebake_exposure_window_seconds_sum 250.5"), "{text}");
        assert!(
            text.contains(r#"rebake_stage_duration_seconds_sum{stage="sign"} 0.2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rebake_stage_duration_seconds_count{stage="publish"} 1"#),
            "{text}"
        );
        // Build and scan are observed on their own events, not again at publication.
        assert!(
            text.contains(r#"rebake_stage_duration_seconds_count{stage="build"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn published_without_causes_has_no_exposure_sample() {
        let metrics = EventMetrics::new();
        metrics.observe(
            &Event::ImagePublished(pb::ImagePublished {
                published_at_ms: 5_000,
                causes: vec![cause(0)],
                ..Default::default()
            }),
            None,
        );
        let text = render(&metrics);
        assert!(text.contains("rebake_images_published_total 1"), "{text}");
        assert!(text.contains("rebake_exposure_window_seconds_count 0"), "{text}");
    }

    #[test]
    fn failures_split_into_denied_and_failed() {
        let metrics = EventMetrics::new();
        for (stage, reason) in [
            ("scan", "non_root_user: runs as root"),
            ("scan", "readable-image: cannot read staged image: 503"),
            ("scan", "scan: SBOM failed"),
            ("build", "git fetch failed"),
            ("sign", ""),
            ("publish", ""),
        ] {
            metrics.observe(
                &Event::BuildFailed(pb::BuildFailed {
                    stage: stage.into(),
                    reason: reason.into(),
                    ..Default::default()
                }),
                None,
            );
        }
        let text = render(&metrics);
        assert!(text.contains(r#"rebake_builds_total{result="denied"} 1"#), "{text}");
        assert!(text.contains(r#"rebake_builds_total{result="failed"} 5"#), "{text}");
        assert!(text.contains(r#"rebake_builds_total{result="published"} 0"#), "{text}");
    }

    #[test]
    fn build_and_scan_stages() {
        let metrics = EventMetrics::new();
        let done = pb::BuildDone {
            build_id: "b2".into(),
            started_at_ms: 10_000,
            finished_at_ms: 13_000,
            ..Default::default()
        };
        metrics.observe(&Event::BuildDone(done.clone()), None);
        // Scan from the record when there is one …
        let record = BuildRecord {
            stages: vec![stage("scan", 14_000, 14_500)],
            ..Default::default()
        };
        let scan = Event::ScanDone(pb::ScanDone {
            build: Some(done),
            passed: true,
            scanned_at_ms: 14_500,
            ..Default::default()
        });
        assert!(scan.wants_record());
        assert_eq!(scan.build_id(), "b2");
        metrics.observe(&scan, Some(&record));
        // … else from staged to scanned.
        metrics.observe(&scan, None);
        // A clock going backwards is not a sample.
        metrics.observe(
            &Event::BuildDone(pb::BuildDone {
                started_at_ms: 20_000,
                finished_at_ms: 19_000,
                ..Default::default()
            }),
            None,
        );
        let text = render(&metrics);
        assert!(
            text.contains(r#"rebake_stage_duration_seconds_sum{stage="build"} 3.0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rebake_stage_duration_seconds_count{stage="build"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rebake_stage_duration_seconds_sum{stage="scan"} 2.0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rebake_stage_duration_seconds_count{stage="scan"} 2"#),
            "{text}"
        );
    }
}
