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
//! - `TriggerRebuild`, `Pause` and `Resume` write nothing themselves: they publish an
//!   `UpstreamChanged` (`ManualTrigger` / `PauseChanged`) on `<prefix>.upstream.manual`, and
//!   the resolver acts on it like on any upstream hint (see `operator`).
//! - Bearer tokens ([`ControlSettings::tokens`], see `auth`): when any is configured, every
//!   call but health and reflection needs one; read-only tokens may not trigger, pause or
//!   resume.
//! - gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) over every Rebake schema, so
//!   `grpcurl` and other generic clients work without the `.proto` files; TLS (rustls) when
//!   [`ControlSettings::tls`] is set.
#![forbid(unsafe_code)]

mod auth;
mod builds;
pub mod client;
mod error;
mod events;
mod exposure;
mod graph;
mod images;
mod kvread;
mod operator;
pub mod render;
mod reports;
mod service;
mod timefmt;
mod why;

use rebake_bus::{Bus, Need};
use rebake_events::Bucket;
use rebake_proto::control::v1::control_server::ControlServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use auth::{Role, Token};
pub use error::{ControlError, Result};
/// The control API's generated types (`Image`, `Event`, `ControlClient` …).
pub use rebake_proto::control::v1 as api;

use crate::service::ControlService;

/// How [`serve`] serves: who may call, and over what.
#[derive(Debug, Clone, Default)]
pub struct ControlSettings {
    /// Accepted bearer tokens (secrets already read); empty = no authentication.
    pub tokens: Vec<Token>,
    /// TLS certificate chain and private key (PEM); `None` = plaintext.
    pub tls: Option<TlsIdentity>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone)]
pub struct TlsIdentity {
    /// Certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// Private key (PEM).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Serves the control API, gRPC health and reflection on `listener` until `shutdown` is
/// cancelled, with the tokens and TLS of `settings`.
///
/// Creates the EVENTS stream and every KV bucket first if they are missing, so the API works
/// before the other services have started. On shutdown, open `WatchEvents` streams end and
/// requests in flight finish before this returns.
pub async fn serve(
    bus: Bus,
    listener: TcpListener,
    settings: ControlSettings,
    shutdown: CancellationToken,
) -> Result<()> {
    let address = listener
        .local_addr()
        .map_err(|source| ControlError::Listener { source })?;
    let mut needs = vec![Need::Events];
    needs.extend(Bucket::ALL.map(Need::Bucket));
    bus.ensure(&needs).await?;
    let service = ControlService::new(bus, shutdown.clone()).await?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<ControlServer<ControlService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rebake_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| ControlError::Reflection {
            reason: error.to_string(),
        })?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rebake_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|error| ControlError::Reflection {
            reason: error.to_string(),
        })?;

    let mut server = tonic::transport::Server::builder();
    let tls = settings.tls.is_some();
    if let Some(identity) = &settings.tls {
        let identity = tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem);
        server = server
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|source| ControlError::Serve { source })?;
    }
    let auth = !settings.tokens.is_empty();
    tracing::info!(%address, tls, auth, tokens = settings.tokens.len(), "control listening");
    server
        .layer(auth::AuthLayer::new(settings.tokens))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(ControlServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .map_err(|source| ControlError::Serve { source })?;
    tracing::info!(%address, "control stopped");
    Ok(())
}
