use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::{
    IngressSettings, UpstreamSink, distribution, github,
    metrics::IngressMetrics,
    rejection::{RejectedReason, Rejection},
    sources::{self, MemoryDeliveries, Sources},
};

/// CloudEvents `source` of every event ingress publishes.
pub(crate) const CE_SOURCE: &str = "/rebake/ingress";

/// Longest a request may take, body upload and JetStream ack included. A request cut off
/// gets 503: the sender retries, and de-duplication makes the retry harmless.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the CNCF distribution (Docker registry) notification endpoint.
pub const DISTRIBUTION_PATH: &str = "/v1/hooks/registry/distribution";
/// Path of the GitHub webhook endpoint.
pub const GITHUB_PATH: &str = "/v1/hooks/git/github";
/// Path of the configured webhook sources (`ingress.sources`).
pub const SOURCES_PATH: &str = "/v1/hooks/{source}";
/// Path of sources whose secret is in the URL (Docker Hub, Quay, Pub/Sub).
pub const SOURCES_TOKEN_PATH: &str = "/v1/hooks/{source}/{token}";

/// Delivery ids remembered in memory when no log is configured.
const MEMORY_DELIVERIES: usize = 100_000;

/// What every handler shares. Axum clones the state for every request: one reference
/// count, not one per field.
pub(crate) struct AppState<S>(Arc<Shared<S>>);

pub(crate) struct Shared<S> {
    pub(crate) sink: Arc<S>,
    pub(crate) settings: Arc<IngressSettings>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sources: Sources,
    pub(crate) metrics: Arc<IngressMetrics>,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<S> std::ops::Deref for AppState<S> {
    type Target = Shared<S>;

    fn deref(&self) -> &Shared<S> {
        &self.0
    }
}

impl<S: UpstreamSink> AppState<S> {
    /// Refuses intake while shutting down or while the bus is unreachable, before any
    /// work is done: the sender will retry.
    pub(crate) fn gate(&self) -> Result<(), Rejection> {
        if self.shutdown.is_cancelled() {
            return Err(Rejection::Unavailable("shutting down".to_string()));
        }
        if !self.sink.is_ready() {
            return Err(Rejection::Unavailable("event bus unavailable".to_string()));
        }
        Ok(())
    }
}

/// The ingress HTTP routes:
///
/// - `POST /v1/hooks/registry/distribution`: CNCF distribution notifications (bearer token);
/// - `POST /v1/hooks/git/github`: GitHub webhooks (`X-Hub-Signature-256`);
/// - `GET /healthz`: 200 while the process runs;
/// - `GET /readyz`: 200 while `sink` is ready and `shutdown` is not cancelled, else 503.
///
/// A webhook gets a 2xx only after every event it carried was acknowledged by `sink`.
/// Once `shutdown` is cancelled, new webhooks get 503 while in-flight ones finish.
pub fn router<S: UpstreamSink>(sink: Arc<S>, settings: IngressSettings, shutdown: CancellationToken) -> Router {
    let max_body_bytes = settings.max_body_bytes;
    let deliveries = settings
        .deliveries
        .clone()
        .unwrap_or_else(|| Arc::new(MemoryDeliveries::new(MEMORY_DELIVERIES)));
    let sources = Sources::new(&settings.sources, deliveries, settings.tags.clone());
    let metrics = settings
        .metrics
        .clone()
        .unwrap_or_else(|| Arc::new(IngressMetrics::new()));
    let state = AppState(Arc::new(Shared {
        sink,
        settings: Arc::new(settings),
        shutdown,
        sources,
        metrics,
    }));
    let counted = |source: &'static str| {
        let metrics = Arc::clone(&state.metrics);
        axum::middleware::from_fn(move |request: Request, next: axum::middleware::Next| {
            let metrics = Arc::clone(&metrics);
            count_builtin(metrics, source, request, next)
        })
    };
    Router::new()
        .route(
            DISTRIBUTION_PATH,
            post(distribution::receive::<S>).layer(counted("distribution")),
        )
        .route(GITHUB_PATH, post(github::receive::<S>).layer(counted("github")))
        .route(SOURCES_PATH, post(sources::receive::<S>))
        .route(SOURCES_TOKEN_PATH, post(sources::receive_with_token::<S>))
        .route_layer(axum::middleware::from_fn(webhook_span))
        .route("/metrics", get(serve_metrics::<S>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<S>))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Counts a request to a built-in path (`/v1/hooks/registry/distribution`,
/// `/v1/hooks/git/github`) as configured sources are counted: source and kind are both the
/// path's sender (`distribution`, `github`); the rejection reason rides on the response.
async fn count_builtin(
    metrics: Arc<IngressMetrics>,
    source: &'static str,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    metrics.received(source, source);
    let response = next.run(request).await;
    if let Some(RejectedReason(reason)) = response.extensions().get::<RejectedReason>() {
        metrics.rejected(source, source, reason);
    } else if response.status() == StatusCode::ACCEPTED {
        metrics.unknown(source, source);
    } else if response.status().is_success() {
        metrics.accepted(source, source);
    } else {
        // Refused before a handler ran (body limit, timeout, extractor).
        let reason = match response.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "media_type",
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "malformed",
        };
        metrics.rejected(source, source, reason);
    }
    response
}

/// Handles a webhook inside a server span continuing the sender's `traceparent` (when it
/// sent one); what the handler publishes carries this span as its parent. Only the route
/// template is recorded: token paths carry a secret.
async fn webhook_span(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument as _;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "webhook",
        otel.name = %format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(parent) = traceparent(request.headers()) {
        rebake_runtime::telemetry::set_parent_from_traceparent(&span, &parent);
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn serve_metrics<S: UpstreamSink>(State(state): State<AppState<S>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz<S: UpstreamSink>(State(state): State<AppState<S>>) -> impl IntoResponse {
    match state.gate() {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

/// Reads the whole body, honouring the router's body limit.
pub(crate) async fn read_body(request: Request) -> Result<Bytes, Rejection> {
    match Bytes::from_request(request, &()).await {
        Ok(body) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Rejection::PayloadTooLarge),
        Err(rejection) => Err(Rejection::BadRequest(format!(
            "failed to read request body: {}",
            rejection.body_text()
        ))),
    }
}

/// The media type of the request (`Content-Type` without parameters, lowercased).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// A header's value as text, when present and visible ASCII.
pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

/// The caller's W3C `traceparent`, so the trace continues from the sender when it sent one.
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<String> {
    header_text(headers, "traceparent")
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use crate::testing::{FakeSink, send, settings};

    use super::*;

    #[tokio::test]
    async fn healthz_is_always_ok() {
        let sink = FakeSink::new();
        sink.set_ready(false);
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let app = router(sink, settings(), shutdown);
        let (status, _, _) = send(app, Method::GET, "/healthz", &[], Vec::new()).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_follows_the_sink_and_shutdown() {
        let sink = FakeSink::new();
        let shutdown = CancellationToken::new();
        let app = router(Arc::clone(&sink), settings(), shutdown.clone());

        let (status, _, _) = send(app.clone(), Method::GET, "/readyz", &[], Vec::new()).await;
        assert_eq!(status, StatusCode::OK);

        sink.set_ready(false);
        let (status, _, body) = send(app.clone(), Method::GET, "/readyz", &[], Vec::new()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "event bus unavailable");

        sink.set_ready(true);
        shutdown.cancel();
        let (status, _, body) = send(app, Method::GET, "/readyz", &[], Vec::new()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "shutting down");
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let app = router(FakeSink::new(), settings(), CancellationToken::new());
        let (status, _, _) = send(app, Method::POST, "/v1/hooks/nope", &[], Vec::new()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn media_type_drops_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "Application/JSON; charset=utf-8".parse().unwrap());
        assert_eq!(media_type(&headers).as_deref(), Some("application/json"));
        assert_eq!(media_type(&HeaderMap::new()), None);
    }
}
