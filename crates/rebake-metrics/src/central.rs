//! The central metrics: started in the process running the control service, so one process
//! per installation derives them. An ordered consumer on the EVENTS stream (from new events)
//! feeds [`crate::derive::EventMetrics`]; two loops sample [`crate::sample::SampledMetrics`]
//! (streams and consumers every [`QUEUE_INTERVAL`], images and findings every
//! [`IMAGES_INTERVAL`]).

use std::{collections::HashSet, time::Duration};

use futures::StreamExt as _;
use rebake_bus::{
    Bus,
    async_nats::jetstream::{
        self,
        consumer::{DeliverPolicy, push},
    },
};
use rebake_events::{Bucket, Envelope, EventKind, pb, state::BuildRecord};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    ProcessMetrics,
    derive::{Event, EventMetrics},
    sample::{SampledMetrics, sample_images, sample_queues},
};

/// How often stream depth and consumer lag are sampled.
pub const QUEUE_INTERVAL: Duration = Duration::from_secs(10);
/// How often images by status and findings are sampled.
pub const IMAGES_INTERVAL: Duration = Duration::from_secs(30);

/// Why the central metrics could not start.
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "central metrics: {}", self.0)
    }
}

impl std::error::Error for StartError {}

/// Registers the central families into `metrics` and starts deriving them from `bus`. Returns
/// once the events consumer exists (events from then on are counted); stops on `shutdown`.
pub async fn start(
    bus: Bus,
    metrics: &ProcessMetrics,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), StartError> {
    let events = EventMetrics::new();
    let sampled = SampledMetrics::new();
    metrics.register_with(|registry| {
        events.register(registry);
        sampled.register(registry);
    });
    let builds = bus
        .kv(Bucket::Builds)
        .await
        .map_err(|error| StartError(format!("builds bucket: {error}")))?;
    let messages = open_events(&bus).await.map_err(StartError)?;
    {
        let bus = bus.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move { follow_events(bus, messages, builds, events, shutdown).await });
    }
    {
        let bus = bus.clone();
        let sampled = sampled.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let mut streams = HashSet::new();
            let mut consumers = HashSet::new();
            loop {
                sample_queues(&bus, &sampled, &mut streams, &mut consumers).await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(QUEUE_INTERVAL) => {}
                }
            }
        });
    }
    tracker.spawn(async move {
        loop {
            if let Err(error) = sample_images(&bus, &sampled).await {
                tracing::warn!(error = %rebake_bus::error_chain(&error), "sampling images for metrics failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(IMAGES_INTERVAL) => {}
            }
        }
    });
    Ok(())
}

async fn open_events(bus: &Bus) -> Result<push::Ordered, String> {
    let stream = bus.names().events_stream();
    let consumer = bus
        .jetstream()
        .create_consumer_on_stream(
            push::OrderedConfig {
                deliver_subject: bus.client().new_inbox(),
                description: Some("rebake metrics".to_string()),
                filter_subject: bus.names().events_subjects(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            },
            stream.clone(),
        )
        .await
        .map_err(|error| format!("consumer on {stream}: {error}"))?;
    consumer
        .messages()
        .await
        .map_err(|error| format!("messages of {stream}: {error}"))
}

/// Decodes one message of the EVENTS stream into an [`Event`] (`None`: not one metrics
/// are derived from, or undecodable).
pub fn decode(headers: Option<&rebake_bus::async_nats::HeaderMap>, payload: &[u8]) -> Option<Event> {
    let headers = headers?;
    let envelope = Envelope::from_headers(|name| headers.get(name).map(|value| value.as_str().to_string())).ok()?;
    fn body<M: prost::Message + Default>(payload: &[u8]) -> Option<M> {
        M::decode(payload).ok()
    }
    match envelope.kind {
        EventKind::BuildDone => body::<pb::BuildDone>(payload).map(Event::BuildDone),
        EventKind::BuildFailed => body::<pb::BuildFailed>(payload).map(Event::BuildFailed),
        EventKind::ScanDone => body::<pb::ScanDone>(payload).map(Event::ScanDone),
        EventKind::ImagePublished => body::<pb::ImagePublished>(payload).map(Event::ImagePublished),
        EventKind::UpstreamChanged | EventKind::BuildRequested => None,
    }
}

async fn follow_events(
    bus: Bus,
    mut messages: push::Ordered,
    builds: rebake_bus::Kv,
    metrics: EventMetrics,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = messages.next() => next,
        };
        match next {
            Some(Ok(message)) => handle(&message, &builds, &metrics).await,
            Some(Err(error)) => {
                tracing::debug!(%error, "metrics events consumer error");
            }
            None => {
                // The consumer is gone: open a new one (events in between are not counted).
                tracing::warn!("metrics events consumer ended; reopening");
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    match open_events(&bus).await {
                        Ok(reopened) => {
                            messages = reopened;
                            break;
                        }
                        Err(error) => tracing::warn!(error, "reopening the metrics events consumer failed"),
                    }
                }
            }
        }
    }
}

async fn handle(message: &jetstream::Message, builds: &rebake_bus::Kv, metrics: &EventMetrics) {
    let Some(event) = decode(message.headers.as_ref(), &message.payload) else {
        return;
    };
    let record = if event.wants_record() && !event.build_id().is_empty() {
        match builds.get::<BuildRecord>(event.build_id()).await {
            Ok(record) => record,
            Err(error) => {
                tracing::debug!(build_id = event.build_id(), %error, "build record unreadable for metrics");
                None
            }
        }
    } else {
        None
    };
    metrics.observe(&event, record.as_ref());
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use rebake_bus::async_nats::HeaderMap;

    use super::*;

    fn headers(kind: EventKind) -> HeaderMap {
        let envelope = Envelope::new(kind, "id".into(), "/test", Some("app"), None);
        let mut headers = HeaderMap::new();
        for (name, value) in envelope.headers() {
            headers.insert(name, value.as_str());
        }
        headers
    }

    #[test]
    fn decodes_the_events_metrics_come_from() {
        let published = pb::ImagePublished {
            build_id: "b1".into(),
            published_at_ms: 7,
            ..Default::default()
        };
        let event = decode(Some(&headers(EventKind::ImagePublished)), &published.encode_to_vec());
        assert_eq!(event, Some(Event::ImagePublished(published)));
        let failed = pb::BuildFailed {
            stage: "scan".into(),
            ..Default::default()
        };
        assert_eq!(
            decode(Some(&headers(EventKind::BuildFailed)), &failed.encode_to_vec()),
            Some(Event::BuildFailed(failed))
        );
        assert_eq!(
            decode(
                Some(&headers(EventKind::BuildRequested)),
                &pb::BuildRequest::default().encode_to_vec()
            ),
            None
        );
        assert_eq!(decode(None, b""), None);
    }
}
