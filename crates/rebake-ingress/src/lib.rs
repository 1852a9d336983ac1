//! Rebake's front door for webhooks: registries and Git forges tell us that something
//! upstream moved, we check that it really was them, normalise what they said into a
//! `pb::UpstreamChanged` event and publish it to the `UPSTREAM` stream.
//!
//! Endpoints (see [`router`]):
//!
//! - `POST /v1/hooks/registry/distribution`: CNCF distribution (Docker registry)
//!   notifications, authenticated by a bearer token. Only tagged pushes of manifests and
//!   indexes become events; blobs, pulls, deletes, pushes by digest and Rebake's own
//!   `sha256-<hex>.sig|.att|.sbom` tags are counted as ignored.
//! - `POST /v1/hooks/git/github`: GitHub webhooks, authenticated by `X-Hub-Signature-256`.
//!   Branch and tag pushes become events; `ping` is answered; other events get 202.
//! - `GET /healthz`, `GET /readyz`.
//!
//! Guarantees:
//!
//! - A 2xx is sent only after JetStream acknowledged every event of the request; when NATS
//!   is unreachable, a publish fails, or the service is shutting down, the answer is 503
//!   (with `Retry-After`) so the sender retries. Nothing accepted is lost.
//! - Event ids are derived from the cause (registry/repository/tag/digest, or GitHub delivery
//!   id and ref), so a redelivered webhook is dropped by JetStream's de-duplication.
//! - A sender without configured credentials is refused (503), never accepted unauthenticated.
//!
//! It also polls package feeds ([`feeds`]): conditional requests on each index, and a
//! `FeedChanged` event when one changed.
//!
//! What it deliberately does not do: decide what to rebuild (the resolver does, and re-checks
//! upstream state itself: events are hints).
#![forbid(unsafe_code)]

mod config;
mod distribution;
mod error;
pub mod feeds;
mod github;
mod rejection;
mod router;
mod sink;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{DEFAULT_MAX_BODY_BYTES, IngressSettings};
pub use error::{IngressError, Result};
pub use router::{DISTRIBUTION_PATH, GITHUB_PATH, router};
pub use sink::UpstreamSink;

/// Serves the ingress routes on `listener`, publishing to `bus`, until `shutdown` is
/// cancelled. From then on new webhooks get 503 while requests in flight finish (each is
/// bounded by a 30 s timeout).
pub async fn serve(
    bus: rebake_bus::Bus,
    settings: IngressSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    let address = listener.local_addr().map_err(|source| IngressError::Serve { source })?;
    tracing::info!(
        %address,
        distribution = settings.distribution_token().is_some(),
        github = settings.github_secret().is_some(),
        "ingress listening"
    );
    let app = router(Arc::new(bus), settings, shutdown.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| IngressError::Serve { source })?;
    tracing::info!(%address, "ingress stopped");
    Ok(())
}
