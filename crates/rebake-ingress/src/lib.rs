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
//! And it polls upstreams that cannot call ([`poll`]): every tracked base tag with one
//! manifest `HEAD` per interval (anonymous bearer tokens, a per-registry request budget,
//! `429`/`Retry-After` honoured with back-off and jitter, never a tag listing), and every
//! tracked Git branch with `git ls-remote`; a moved tag or branch publishes the same
//! `RegistryTagChanged` / `GitRefChanged` events a webhook would, with source `poll`.
//!
//! What it deliberately does not do: decide what to rebuild (the resolver does, and re-checks
//! upstream state itself: events are hints).
#![forbid(unsafe_code)]

mod config;
mod distribution;
mod error;
pub mod feeds;
#[doc(hidden)]
pub mod fuzzing;
mod github;
pub mod metrics;
pub mod poll;
mod rejection;
mod router;
pub mod senders;
mod sink;
pub mod sources;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{DEFAULT_MAX_BODY_BYTES, IngressSettings};
pub use error::{IngressError, Result};
pub use router::{DISTRIBUTION_PATH, GITHUB_PATH, SOURCES_PATH, SOURCES_TOKEN_PATH, router};
pub use sink::UpstreamSink;
pub use sources::{DeliveryLog, KvDeliveries, MemoryDeliveries, SourceSettings, TagLookup};

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
    let mut settings = settings;
    if settings.deliveries.is_none() {
        let kv = bus
            .kv(rebake_events::Bucket::Deliveries)
            .await
            .map_err(|source| IngressError::Setup {
                what: "the deliveries bucket".to_string(),
                reason: source.to_string(),
            })?;
        settings.deliveries = Some(Arc::new(KvDeliveries(kv)));
    }
    if settings.tags.is_none() {
        let registry = rebake_oci::Registry::try_new(settings.plain_http_registries.clone()).map_err(|source| {
            IngressError::Setup {
                what: "the registry client".to_string(),
                reason: source.to_string(),
            }
        })?;
        settings.tags = Some(Arc::new(registry));
    }
    tracing::info!(sources = settings.sources.len(), "webhook sources configured");
    let app = router(Arc::new(bus), settings, shutdown.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| IngressError::Serve { source })?;
    tracing::info!(%address, "ingress stopped");
    Ok(())
}
