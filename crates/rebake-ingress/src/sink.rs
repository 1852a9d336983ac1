use std::future::Future;

use rebake_bus::Bus;
use rebake_events::{Envelope, Names, pb};

/// Where normalised upstream events go: JetStream in production ([`Bus`]), an in-memory
/// recorder in tests.
pub trait UpstreamSink: Send + Sync + 'static {
    /// Publishes one event and resolves only once it is durably stored (JetStream acked).
    /// The error is a human-readable reason; every error is treated as "try again later".
    fn publish(
        &self,
        subject: String,
        envelope: Envelope,
        event: pb::UpstreamChanged,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Whether publishing can work right now (connected to NATS). When not, webhooks are
    /// answered 503 at once, without trying.
    fn is_ready(&self) -> bool;

    /// The names of this installation's bus (subjects for upstream events).
    fn names(&self) -> &Names;
}

impl UpstreamSink for Bus {
    async fn publish(&self, subject: String, envelope: Envelope, event: pb::UpstreamChanged) -> Result<(), String> {
        // The inherent `Bus::publish` waits for the JetStream ack.
        Bus::publish(self, subject, &envelope, &event)
            .await
            .map(|_sequence| ())
            .map_err(|error| error.to_string())
    }

    fn is_ready(&self) -> bool {
        self.is_connected()
    }

    fn names(&self) -> &Names {
        Bus::names(self)
    }
}
