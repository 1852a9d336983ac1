//! Logging and OpenTelemetry traces.
//!
//! One global `tracing` subscriber: a `fmt` layer (filtered by `RUST_LOG`) and, when an OTLP
//! endpoint is configured, a `tracing-opentelemetry` layer feeding a batch OTLP/gRPC
//! exporter. The W3C TraceContext propagator is installed either way, so `traceparent`s
//! carried on the bus and on webhooks continue traces across services; without an exporter
//! the helpers here are no-ops (spans have no OpenTelemetry context).

use std::collections::HashMap;

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use rebake_config::TelemetryConfig;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, layer::SubscriberExt, util::SubscriberInitExt};

use crate::LogFormat;

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Flushes and shuts the trace exporter down when dropped. Keep it alive for the whole
/// process (drop it after the services stopped, while the async runtime still runs: the
/// gRPC exporter sends on it).
#[must_use = "dropping the guard shuts the trace exporter down"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("failed to flush traces: {error}");
        }
    }
}

/// Installs the global `tracing` subscriber. `rust_log` is a `RUST_LOG`-style directive
/// (`None` or invalid → `warn,rebake=info`). With `telemetry.otlp_endpoint` set, Rebake's
/// spans (targets `rebake*`, level INFO and above) are also exported over OTLP/gRPC in
/// batches, as service `telemetry.service_name`.
///
/// Call it inside a Tokio runtime context (`Runtime::enter`) when an endpoint is configured:
/// the gRPC channel lives on that runtime.
pub fn init_telemetry(format: LogFormat, rust_log: Option<&str>, telemetry: &TelemetryConfig) -> TelemetryGuard {
    install_propagator();
    let mut layers: Vec<BoxedLayer> = vec![fmt_layer(format, rust_log)];
    let mut guard = TelemetryGuard::default();
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        match otlp_provider(endpoint, &telemetry.service_name) {
            Ok(provider) => {
                layers.push(otel_layer(&provider));
                opentelemetry::global::set_tracer_provider(provider.clone());
                guard.provider = Some(provider);
            }
            Err(error) => eprintln!("traces will not be exported: OTLP exporter for {endpoint}: {error}"),
        }
    }
    if let Err(error) = tracing_subscriber::registry().with(layers).try_init() {
        eprintln!("tracing subscriber already installed: {error}");
    }
    guard
}

fn fmt_layer(format: LogFormat, rust_log: Option<&str>) -> BoxedLayer {
    let filter = rust_log
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| EnvFilter::new("warn,rebake=info"));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => layer
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed(),
    }
}

/// The OpenTelemetry layer for `provider`: Rebake's own spans at INFO and above, whatever
/// the log filter says.
fn otel_layer(provider: &SdkTracerProvider) -> BoxedLayer {
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("rebake"))
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.target().starts_with("rebake") && *metadata.level() <= tracing::Level::INFO
        }))
        .boxed()
}

fn otlp_provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|error| error.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service_name))
        .build())
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

/// Makes the trace in `traceparent` (W3C) the parent of `span`. Call it before the span is
/// first entered. Does nothing when the value is invalid or OpenTelemetry is not installed.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The W3C `traceparent` of `span`'s OpenTelemetry context, when it has a valid one (it
/// has none when OpenTelemetry is not installed or the span is disabled).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Records what the current span (a consumer's `handle` span, see `rebake-bus`) is about:
/// the attributes `rebake.image`, `rebake.build_id` and `rebake.digest`; empty values are
/// left unset. Call it as soon as a handler has decoded its message (and again when it
/// learns the digest).
pub fn record_build(image: &str, build_id: &str, digest: &str) {
    let span = tracing::Span::current();
    for (field, value) in [
        ("rebake.image", image),
        ("rebake.build_id", build_id),
        ("rebake.digest", digest),
    ] {
        if !value.is_empty() {
            span.record(field, value);
        }
    }
}

/// The W3C `traceparent` of the current span (see [`traceparent_of`]).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

#[cfg(feature = "testing")]
pub use testing::{TestSpans, install_test_telemetry};

#[cfg(feature = "testing")]
mod testing {
    use std::sync::OnceLock;

    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

    use super::{BoxedLayer, install_propagator, otel_layer, resource};

    /// Finished spans recorded by [`install_test_telemetry`].
    #[derive(Clone, Debug)]
    pub struct TestSpans {
        exporter: InMemorySpanExporter,
    }

    impl TestSpans {
        /// Every span finished so far (spans are exported as they end).
        pub fn finished(&self) -> Vec<SpanData> {
            self.exporter.get_finished_spans().unwrap_or_default()
        }

        /// Forgets the spans finished so far.
        pub fn clear(&self) {
            self.exporter.reset();
        }
    }

    /// Installs, once per process, a global subscriber whose OpenTelemetry layer exports to
    /// memory (synchronously, as spans end), plus a test-writer `fmt` layer (`RUST_LOG`,
    /// default `warn,rebake=info`). Later calls return the same handle. Install it before
    /// anything else sets a global subscriber (`rebake_testkit::init_test_tracing` then
    /// leaves it in place).
    pub fn install_test_telemetry() -> TestSpans {
        static SPANS: OnceLock<TestSpans> = OnceLock::new();
        SPANS
            .get_or_init(|| {
                install_propagator();
                let exporter = InMemorySpanExporter::default();
                let provider = SdkTracerProvider::builder()
                    .with_simple_exporter(exporter.clone())
                    .with_resource(resource("rebake-test"))
                    .build();
                let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,rebake=info"));
                let fmt: BoxedLayer = tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    // The test writer prints to stdout: colours only when that is a terminal.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_filter(filter)
                    .boxed();
                let layers = vec![fmt, otel_layer(&provider)];
                if let Err(error) = tracing_subscriber::registry().with(layers).try_init() {
                    eprintln!("tracing subscriber already installed, spans will not be recorded: {error}");
                }
                opentelemetry::global::set_tracer_provider(provider);
                TestSpans { exporter }
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_are_no_ops_without_opentelemetry() {
        let span = tracing::info_span!("x");
        set_parent_from_traceparent(&span, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(traceparent_of(&span), None);
        assert_eq!(current_traceparent(), None);
    }
}
