//! Rebake's control plane: the operator's view of what Rebake knows, over gRPC.
//!
//! [`serve`] runs the `rebake.control.v1.Control` service (see
//! `proto/rebake/control/v1/control.proto`) beside the standard `grpc.health.v1` service:
//!
//! - `ListImages` / `GetImage` join, per catalog image, the catalog entry (bucket `catalog`),
//!   the image state (bucket `images`; none yet means status `new`) and the build record of its
//!   last build (bucket `builds`). `ListImages` never lets one unreadable document hide the
//!   others: a corrupt catalog entry is skipped, a corrupt state shows as status `unknown`
//!   (both logged at WARN); `GetImage` answers INTERNAL instead.
//! - `WatchEvents` streams the EVENTS stream live through an ordered push consumer (ephemeral,
//!   in memory, recreated by the client library after gaps or reconnects), from a given stream
//!   sequence or from now. The narrowest single subject filter is applied by the server (NATS
//!   2.9 takes one), the rest here; messages without a valid envelope or body are skipped at
//!   DEBUG, never ending the stream. The stream ends on shutdown or when the client leaves.
//! - Failures map to gRPC codes in one place (`impl From<ControlError> for tonic::Status`):
//!   NATS unreachable → UNAVAILABLE, corrupt document → INTERNAL, unknown image → NOT_FOUND,
//!   bad request field → INVALID_ARGUMENT.
//!
//! The [`client`] module holds what the `rebake images` / `rebake watch` commands need:
//! connecting, and rendering images and events as text or JSON.
//!
//! What it deliberately does not do (yet): write anything (triggers, pause/resume), check
//! bearer tokens, or serve gRPC reflection. It only reads what the other services wrote.
#![forbid(unsafe_code)]

pub mod client;
mod error;
mod events;
mod images;
mod reports;
mod service;
mod timefmt;

use rebake_bus::{Bus, Need};
use rebake_events::Bucket;
use rebake_proto::control::v1::control_server::ControlServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use error::{ControlError, Result};
/// The control API's generated types (`Image`, `Event`, `ControlClient` …).
pub use rebake_proto::control::v1 as api;

use crate::service::ControlService;

/// Serves the control API and gRPC health on `listener` until `shutdown` is cancelled.
///
/// Creates the EVENTS stream and every KV bucket first if they are missing, so the API works
/// before the other services have started. On shutdown, open `WatchEvents` streams end and
/// requests in flight finish before this returns.
pub async fn serve(bus: Bus, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let address = listener
        .local_addr()
        .map_err(|source| ControlError::Listener { source })?;
    let mut needs = vec![Need::Events];
    needs.extend(Bucket::ALL.map(Need::Bucket));
    bus.ensure(&needs).await?;
    let service = ControlService::new(bus, shutdown.clone()).await?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<ControlServer<ControlService>>().await;

    tracing::info!(%address, "control listening");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(ControlServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .map_err(|source| ControlError::Serve { source })?;
    tracing::info!(%address, "control stopped");
    Ok(())
}
