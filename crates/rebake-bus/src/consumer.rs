use std::{future::Future, time::Duration};

use async_nats::jetstream::{
    AckKind, Message,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt;
use rebake_events::{Envelope, EventKind};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument as _;

use crate::{Bus, BusError, Result};

/// Which durable consumer to run, on which stream.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Stream name.
    pub stream: String,
    /// Durable consumer name (shared by every worker of the group).
    pub durable: String,
    /// Only these subjects (empty = the whole stream).
    pub filter_subject: String,
    /// Concurrent handlers in this process.
    pub concurrency: usize,
    /// Where a brand-new consumer starts (existing ones keep their position).
    pub deliver_all: bool,
}

/// What a handler made of a message.
#[derive(Debug)]
pub enum Outcome {
    /// Done (or nothing to do): ack.
    Done,
    /// Could not finish now, may work later: `nak` with a delay (redelivered until
    /// max-deliver, then dead-lettered).
    Retry {
        /// Why, for the log and the dead letter.
        reason: String,
        /// Redelivery delay.
        delay: Duration,
    },
    /// Will never work (bad input): dead-letter now and `term`.
    Reject {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// [`Outcome::Retry`] after `delay`, with `reason` as text.
    pub fn retry(reason: impl std::fmt::Display, delay: Duration) -> Self {
        Outcome::Retry {
            reason: reason.to_string(),
            delay,
        }
    }
}

/// One received message, with its CloudEvents envelope already read.
pub struct Delivery {
    message: Message,
    envelope: Envelope,
    max_deliver: i64,
}

impl Delivery {
    /// Records what this delivery is about on the current (`handle`) span, as
    /// [`rebake_runtime::telemetry::record_build`] does, but leaves `rebake.image` alone when
    /// the envelope named that image: the span has it already, and a field recorded twice is
    /// printed twice in the logs.
    pub fn record_build(&self, image: &str, build_id: &str, digest: &str) {
        let image = if self.envelope.subject.as_deref() == Some(image) {
            ""
        } else {
            image
        };
        rebake_runtime::telemetry::record_build(image, build_id, digest);
    }

    /// The CloudEvents attributes.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The subject it arrived on.
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    /// Decodes the body as `M` (which must be the type the envelope names).
    pub fn decode<M: prost::Message + Default>(&self) -> rebake_events::Result<M> {
        M::decode(self.message.payload.clone()).map_err(|source| rebake_events::EventsError::Decode {
            kind: self.envelope.kind.name(),
            source,
        })
    }

    /// The stream sequence of this message.
    pub fn stream_sequence(&self) -> u64 {
        self.message.info().map(|info| info.stream_sequence).unwrap_or(0)
    }

    /// How many times it has been delivered (1 on first delivery).
    pub fn delivered(&self) -> i64 {
        self.message.info().map(|info| info.delivered).unwrap_or(1)
    }

    /// Whether this is the last delivery JetStream will make. A handler that would retry a
    /// transient failure should instead record it as a failure on the last attempt (and
    /// return [`Outcome::Done`]), so the rest of the system learns of it rather than only the
    /// dead-letter stream.
    pub fn is_last_attempt(&self) -> bool {
        self.delivered() >= self.max_deliver
    }

    /// The raw payload.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }
}

/// Runs `handler` over a durable pull consumer until `shutdown` is cancelled.
///
/// Each message is acked only after the handler returns [`Outcome::Done`]; while the handler
/// works, an in-progress ack every third of ack-wait keeps JetStream from redelivering it.
/// On shutdown the loops stop pulling; handlers already running finish (the caller bounds
/// that with its grace period — anything cut short is redelivered after ack-wait).
/// Messages without a valid envelope, rejected ones and ones past max-deliver are copied to
/// the dead-letter stream and terminated.
pub async fn run_consumer<H, Fut>(
    bus: Bus,
    spec: ConsumerSpec,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handler: H,
) -> Result<()>
where
    H: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let stream = bus
        .jetstream()
        .get_stream(&spec.stream)
        .await
        .map_err(|error| BusError::Setup {
            what: format!("stream {}", spec.stream),
            reason: error.to_string(),
        })?;
    stream
        .get_or_create_consumer::<pull::Config>(
            &spec.durable,
            pull::Config {
                durable_name: Some(spec.durable.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: bus.ack_wait,
                max_deliver: bus.max_deliver,
                filter_subject: spec.filter_subject.clone(),
                deliver_policy: if spec.deliver_all {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::New
                },
                max_ack_pending: 1000,
                ..Default::default()
            },
        )
        .await
        .map_err(|error| BusError::Setup {
            what: format!("consumer {} on {}", spec.durable, spec.stream),
            reason: error.to_string(),
        })?;
    for worker in 0..spec.concurrency.max(1) {
        let bus = bus.clone();
        let spec = spec.clone();
        let shutdown = shutdown.clone();
        let handler = handler.clone();
        tracker.spawn(async move {
            worker_loop(bus, spec, worker, shutdown, handler).await;
        });
    }
    Ok(())
}

async fn open_messages(bus: &Bus, spec: &ConsumerSpec) -> Result<pull::Stream> {
    let consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = bus
        .jetstream()
        .get_consumer_from_stream(&spec.durable, &spec.stream)
        .await
        .map_err(|error| BusError::Consume {
            stream: spec.stream.clone(),
            reason: error.to_string(),
        })?;
    consumer
        .stream()
        .max_messages_per_batch(1)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|error| BusError::Consume {
            stream: spec.stream.clone(),
            reason: error.to_string(),
        })
}

async fn worker_loop<H, Fut>(bus: Bus, spec: ConsumerSpec, worker: usize, shutdown: CancellationToken, handler: H)
where
    H: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let mut backoff = Duration::from_millis(100);
    'outer: while !shutdown.is_cancelled() {
        let mut messages = match open_messages(&bus, &spec).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(stream = %spec.stream, worker, error = %error, "failed to open consumer, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break 'outer,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => handle_one(&bus, &spec, message, &handler).await,
                Some(Err(error)) => {
                    tracing::debug!(stream = %spec.stream, worker, error = %error, "pull error");
                    if matches!(
                        error.kind(),
                        pull::MessagesErrorKind::ConsumerDeleted | pull::MessagesErrorKind::MissingHeartbeat
                    ) {
                        continue 'outer;
                    }
                }
                None => continue 'outer,
            }
        }
    }
    tracing::debug!(stream = %spec.stream, worker, "consumer loop stopped");
}

async fn handle_one<H, Fut>(bus: &Bus, spec: &ConsumerSpec, message: Message, handler: &H)
where
    H: Fn(Delivery) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let envelope = {
        let headers = message.headers.as_ref();
        Envelope::from_headers(|name| {
            headers
                .and_then(|h| h.get(name))
                .map(|value| value.as_str().to_string())
        })
    };
    let envelope = match envelope {
        Ok(envelope) => envelope,
        Err(error) => {
            dead_letter(bus, spec, &message, &error.to_string()).await;
            return;
        }
    };
    let delivery = Delivery {
        message,
        envelope,
        max_deliver: bus.max_deliver,
    };
    let kind: EventKind = delivery.envelope.kind;
    let delivered = delivery.delivered();
    // Heartbeat while the handler works.
    let progress_interval = (bus.ack_wait / 3).max(Duration::from_millis(200));
    let heartbeat_message = delivery.message.clone();
    let heartbeat = tokio::spawn(async move {
        let mut interval = tokio::time::interval(progress_interval);
        interval.tick().await;
        loop {
            interval.tick().await;
            if let Err(error) = heartbeat_message.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %error, "failed to send in-progress ack");
            }
        }
    });
    let message = delivery.message.clone();
    let span = delivery_span(spec, &delivery);
    let outcome = handler(delivery).instrument(span).await;
    heartbeat.abort();
    match outcome {
        Outcome::Done => {
            if let Err(error) = message.double_ack().await {
                tracing::warn!(stream = %spec.stream, kind = kind.name(), error = %error, "failed to ack; message will be redelivered");
            }
        }
        Outcome::Retry { reason, delay } => {
            if delivered >= bus.max_deliver {
                tracing::error!(stream = %spec.stream, kind = kind.name(), delivered, reason, "giving up after max deliveries");
                dead_letter(
                    bus,
                    spec,
                    &message,
                    &format!("gave up after {delivered} deliveries: {reason}"),
                )
                .await;
            } else {
                tracing::warn!(stream = %spec.stream, kind = kind.name(), delivered, reason, "handler failed, will retry");
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            }
        }
        Outcome::Reject { reason } => {
            tracing::error!(stream = %spec.stream, kind = kind.name(), reason, "message rejected");
            dead_letter(bus, spec, &message, &reason).await;
        }
    }
}

/// The span a delivery is handled in: `<stream> handle`, a child of the span that published
/// the message (its envelope's `traceparent`). Handlers fill in `rebake.build_id` and
/// `rebake.digest` (and `rebake.image` when the envelope did not name it) with
/// `tracing::Span::current().record(..)`.
fn delivery_span(spec: &ConsumerSpec, delivery: &Delivery) -> tracing::Span {
    let envelope = &delivery.envelope;
    let span = tracing::info_span!(
        "handle",
        otel.name = %format!("{} handle", spec.stream),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination = %delivery.subject(),
        messaging.message.id = %envelope.id,
        rebake.event = envelope.kind.name(),
        rebake.image = tracing::field::Empty,
        rebake.build_id = tracing::field::Empty,
        rebake.digest = tracing::field::Empty,
    );
    if let Some(image) = &envelope.subject {
        span.record("rebake.image", image.as_str());
    }
    rebake_runtime::telemetry::set_parent_from_traceparent(&span, &envelope.traceparent);
    span
}

/// Copies `message` to the dead-letter stream with the reason, then terminates it. If the
/// copy cannot be stored the message is left to redeliver (never dropped silently).
async fn dead_letter(bus: &Bus, spec: &ConsumerSpec, message: &Message, reason: &str) {
    let mut headers = message.headers.clone().unwrap_or_default();
    headers.insert("Rebake-Dead-Letter-Reason", reason);
    headers.insert("Rebake-Original-Subject", message.subject.as_str());
    headers.insert("Rebake-Original-Stream", spec.stream.as_str());
    // A dead letter must not be de-duplicated against the original's id.
    let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
    headers.insert("Nats-Msg-Id", format!("dl-{}-{sequence}", spec.stream));
    let subject = bus.names().dead_letter_subject(&spec.stream);
    match bus.publish_raw(subject, headers, message.payload.clone()).await {
        Ok(_) => {
            let _ = message.ack_with(AckKind::Term).await;
        }
        Err(error) => {
            tracing::error!(error = %error, "failed to store dead letter; leaving message for redelivery");
            let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await;
        }
    }
}
