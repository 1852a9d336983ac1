//! Prometheus metrics for every Rebake process.
//!
//! One [`ProcessMetrics`] registry per process, served as OpenMetrics text at
//! `GET /metrics` on `metrics.listen` (default `127.0.0.1:9464`, `off` disables) by
//! [`serve`]. Every process (`rebake up` or `rebake serve <service>`) serves it; what it
//! holds depends on the services the process runs.
//!
//! # The metrics (names are a contract: dashboards and alerts use them)
//!
//! Every process:
//!
//! - `rebake_service_running{service}` (gauge): 1 for each service this process runs.
//!
//! The process running the **ingress** (the ingress' own counters, registered into this
//! registry by `rebake_ingress::metrics::IngressMetrics::register`; also served at the
//! ingress' `GET /metrics`):
//!
//! - `rebake_webhooks_received_total{source,kind}` (counter): webhook requests that reached a
//!   source;
//! - `rebake_webhooks_accepted_total{source,kind}` (counter): answered 200;
//! - `rebake_webhooks_unhandled_total{source,kind}` (counter): event types Rebake does not read;
//! - `rebake_webhooks_rejected_total{source,kind,reason}` (counter): refused, by reason.
//!
//! The process running the **control** service (the "central" metrics: derived once per
//! installation from the bus, so several processes never count the same build twice):
//!
//! - `rebake_queue_depth{stream}` (gauge): messages held by a work-queue stream (`<P>_BUILD`,
//!   `<P>_SCAN`, `<P>_SIGN`: waiting or in flight) and by the dead-letter stream
//!   (`<P>_DEADLETTER`), sampled every 10 s from stream info;
//! - `rebake_consumer_lag{stream,consumer}` (gauge): `num_pending + num_ack_pending` of every
//!   durable consumer of the upstream, queue and events streams, sampled every 10 s from
//!   consumer info;
//! - `rebake_builds_total{result}` (counter): finished builds; `result` is `published` (an
//!   `image.published` event), `denied` (a `build.failed` at stage `scan` naming a policy rule:
//!   policy said no) or
//!   `failed` (any other `build.failed`);
//! - `rebake_images_published_total` (counter): `image.published` events;
//! - `rebake_stage_duration_seconds{stage}` (histogram): how long a stage took, for stages that
//!   completed: `build` (from `build.done`: started → finished), `scan` (from `scan.done`, the
//!   scan stage of the build record; passed or denied), `sign` and `publish` (from
//!   `image.published`, the build record's stages);
//! - `rebake_exposure_window_seconds` (histogram): `image.published` time minus the earliest
//!   cause time (`Cause.at_ms`) of that build: the window from an upstream change to the
//!   signed, scanned image containing it;
//! - `rebake_findings{severity}` (gauge): vulnerability findings of the published builds of
//!   every image (from their scan reports), by severity (`critical`, `high`, `medium`, `low`,
//!   `none`, `unknown`), sampled every 30 s;
//! - `rebake_images{status}` (gauge): catalog images by status (`new`, `waiting`, `building`,
//!   `published`, `failed`), sampled every 30 s.
//!
//! Build, stage, exposure and published metrics come from an ephemeral ordered consumer on the
//! EVENTS stream that starts at "new" events: counters start at zero with the process (as
//! Prometheus counters do) and nothing is counted twice after a restart. The gauges are
//! level-triggered samples of stream, consumer and KV state, right after a restart too.
#![forbid(unsafe_code)]

pub mod central;
pub mod derive;
pub mod sample;

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
pub use prometheus_client;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

/// The process' registry. Cheap to clone; every clone is the same registry.
#[derive(Clone)]
pub struct ProcessMetrics {
    registry: Arc<RwLock<Registry>>,
    running: Family<ServiceLabels, Gauge>,
}

impl std::fmt::Debug for ProcessMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessMetrics")
    }
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessMetrics {
    /// A registry holding only `rebake_service_running`.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let running = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "rebake_service_running",
            "Services this process runs (1 each)",
            running.clone(),
        );
        Self {
            registry: Arc::new(RwLock::new(registry)),
            running,
        }
    }

    /// Marks `service` as running in this process.
    pub fn service_running(&self, service: &str) {
        self.running
            .get_or_create(&ServiceLabels {
                service: service.to_string(),
            })
            .set(1);
    }

    /// Registers more metrics (e.g. the ingress' counters) into the process registry.
    pub fn register_with(&self, register: impl FnOnce(&mut Registry)) {
        let mut registry = self.registry.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        register(&mut registry);
    }

    /// The OpenMetrics text exposition of everything registered (ends with `# EOF`).
    pub fn render(&self) -> String {
        let registry = self.registry.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

/// The routes: `GET /metrics` (OpenMetrics text).
pub fn router(metrics: ProcessMetrics) -> Router {
    Router::new().route("/metrics", get(render)).with_state(metrics)
}

async fn render(State(metrics): State<ProcessMetrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, metrics: ProcessMetrics, shutdown: CancellationToken) -> std::io::Result<()> {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(address = ?address, "metrics listening");
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The metric (series) names a rendered exposition defines: for every `# TYPE` line, the
/// names samples of that type carry (`_total` for counters; `_bucket`, `_sum`, `_count` for
/// histograms; the name itself otherwise). prometheus-client leaves families without any
/// series out of the exposition, so a family shows once it has one (the central metrics
/// create theirs at start; sampled gauges with the first sample; webhook counters with the
/// first request).
pub fn series_names(rendered: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in rendered.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_eof() {
        let metrics = ProcessMetrics::new();
        metrics.service_running("builder");
        let text = metrics.render();
        assert!(text.contains("# TYPE rebake_service_running gauge"), "{text}");
        assert!(
            text.contains(r#"rebake_service_running{service="builder"} 1"#),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn registered_families_render_and_name_series() {
        let metrics = ProcessMetrics::new();
        let central = derive::EventMetrics::new();
        let samples = sample::SampledMetrics::new();
        metrics.register_with(|registry| {
            central.register(registry);
            samples.register(registry);
        });
        // Families without series are not rendered: give the sampled ones their first sample.
        metrics.service_running("control");
        samples.set_queue_depths(&mut std::collections::HashSet::new(), &[("R_BUILD".to_string(), 0)]);
        samples.set_consumer_lags(
            &mut std::collections::HashSet::new(),
            &[("R_BUILD".to_string(), "builder".to_string(), 0)],
        );
        samples.set_images(&[], &std::collections::BTreeMap::new());
        let names = series_names(&metrics.render());
        for name in [
            "rebake_service_running",
            "rebake_builds_total",
            "rebake_images_published_total",
            "rebake_stage_duration_seconds_bucket",
            "rebake_stage_duration_seconds_count",
            "rebake_exposure_window_seconds_sum",
            "rebake_queue_depth",
            "rebake_consumer_lag",
            "rebake_findings",
            "rebake_images",
        ] {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let metrics = ProcessMetrics::new();
        metrics.service_running("control");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, metrics, shutdown.clone()));
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("application/openmetrics-text"), "{response}");
        assert!(
            response.contains(r#"rebake_service_running{service="control"} 1"#),
            "{response}"
        );
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
