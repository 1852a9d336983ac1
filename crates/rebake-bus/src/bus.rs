use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
    },
};
use rebake_events::{Bucket, Envelope, Names, Queue};

use crate::{BusError, Kv, Result};

/// One thing a service needs to exist on the bus before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The upstream hints stream.
    Upstream,
    /// A work queue stream.
    Queue(Queue),
    /// The events stream.
    Events,
    /// The dead-letter stream.
    DeadLetter,
    /// A KV bucket.
    Bucket(Bucket),
}

impl Need {
    /// Everything: what `rebake up` and tests create.
    pub fn all() -> Vec<Need> {
        let mut needs = vec![Need::Upstream, Need::Events, Need::DeadLetter];
        needs.extend(Queue::ALL.map(Need::Queue));
        needs.extend(Bucket::ALL.map(Need::Bucket));
        needs
    }
}

/// A connection to NATS with Rebake's names.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    names: Names,
    source: String,
    /// Work queue limits applied when creating queue consumers.
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: i64,
}

impl Bus {
    /// Connects to `url`. `service` names the connection and becomes the CloudEvents
    /// `source` (`/rebake/<service>`). The client keeps reconnecting on its own after a loss.
    pub async fn connect(url: &str, names: Names, service: &str, ack_wait: Duration, max_deliver: i64) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("rebake-{service}"))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| BusError::Connect {
                url: url.to_string(),
                source,
            })?;
        // `retry_on_initial_connect` returns at once; wait (bounded) for the first connection
        // so a wrong URL fails start-up instead of hanging.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() > deadline {
                return Err(BusError::Setup {
                    what: format!("connection to {url}"),
                    reason: "not connected after 10s".to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .build(client.clone());
        Ok(Self {
            client,
            jetstream,
            names,
            source: format!("/rebake/{service}"),
            ack_wait,
            max_deliver,
        })
    }

    /// The names of everything on this installation's bus.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The CloudEvents source of this process's events.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The raw client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Creates what `needs` lists, if missing. Safe to call from every service at start.
    pub async fn ensure(&self, needs: &[Need]) -> Result<()> {
        for need in needs {
            match *need {
                Need::Upstream => {
                    self.ensure_stream(stream::Config {
                        name: self.names.upstream_stream(),
                        subjects: vec![self.names.upstream_subjects()],
                        retention: RetentionPolicy::Limits,
                        max_age: Duration::from_secs(7 * 24 * 3600),
                        duplicate_window: Duration::from_secs(15 * 60),
                        storage: StorageType::File,
                        ..Default::default()
                    })
                    .await?
                }
                Need::Queue(queue) => {
                    // Build requests are keyed per image: a newer request replaces one that
                    // has not been started (one message per subject, discard old).
                    let per_subject = if queue == Queue::Build { 1 } else { -1 };
                    self.ensure_stream(stream::Config {
                        name: self.names.queue_stream(queue),
                        subjects: vec![self.names.queue_subjects(queue)],
                        retention: RetentionPolicy::WorkQueue,
                        max_messages_per_subject: per_subject,
                        discard: DiscardPolicy::Old,
                        duplicate_window: Duration::from_secs(10 * 60),
                        storage: StorageType::File,
                        ..Default::default()
                    })
                    .await?
                }
                Need::Events => {
                    self.ensure_stream(stream::Config {
                        name: self.names.events_stream(),
                        subjects: vec![self.names.events_subjects()],
                        retention: RetentionPolicy::Limits,
                        max_age: Duration::from_secs(30 * 24 * 3600),
                        duplicate_window: Duration::from_secs(10 * 60),
                        storage: StorageType::File,
                        ..Default::default()
                    })
                    .await?
                }
                Need::DeadLetter => {
                    self.ensure_stream(stream::Config {
                        name: self.names.dead_letter_stream(),
                        subjects: vec![self.names.dead_letter_subjects()],
                        retention: RetentionPolicy::Limits,
                        max_age: Duration::from_secs(30 * 24 * 3600),
                        storage: StorageType::File,
                        ..Default::default()
                    })
                    .await?
                }
                Need::Bucket(bucket) => {
                    self.kv(bucket).await?;
                }
            }
        }
        Ok(())
    }

    async fn ensure_stream(&self, config: stream::Config) -> Result<()> {
        let name = config.name.clone();
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|error| BusError::Setup {
                what: format!("stream {name}"),
                reason: error.to_string(),
            })?;
        Ok(())
    }

    /// Opens (creating if needed) a KV bucket.
    pub async fn kv(&self, bucket: Bucket) -> Result<Kv> {
        let name = self.names.bucket(bucket);
        let setup_error = |error: &dyn std::fmt::Display| BusError::Setup {
            what: format!("kv bucket {name}"),
            reason: error.to_string(),
        };
        // The KV contract: stream KV_<bucket> on $KV.<bucket>.>, one message per key
        // (history 1), rollups allowed, deletes denied, direct get, discard new.
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                discard: DiscardPolicy::New,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                storage: StorageType::File,
                // Delivery ids only guard against replays; the others are state, kept.
                max_age: if bucket == Bucket::Deliveries {
                    Duration::from_secs(30 * 24 * 3600)
                } else {
                    Duration::ZERO
                },
                ..Default::default()
            })
            .await
            .map_err(|error| setup_error(&error))?;
        let store = self
            .jetstream
            .get_key_value(name.clone())
            .await
            .map_err(|error| setup_error(&error))?;
        Ok(Kv::new(store, name))
    }

    /// Publishes `message` under `envelope` to `subject` and waits for JetStream's ack.
    /// Returns the stream sequence (or the original one when JetStream dropped a duplicate).
    ///
    /// When the current span has an OpenTelemetry context, it becomes the envelope's
    /// `traceparent` (so whoever handles the message continues this span's trace as its
    /// child); otherwise the envelope's own is sent.
    pub async fn publish<M: prost::Message>(&self, subject: String, envelope: &Envelope, message: &M) -> Result<u64> {
        let mut headers = HeaderMap::new();
        for (name, value) in envelope.headers() {
            headers.insert(name, value);
        }
        if let Some(traceparent) = rebake_runtime::telemetry::current_traceparent() {
            headers.insert("traceparent", traceparent);
        }
        let payload = bytes::Bytes::from(message.encode_to_vec());
        let publish_error = |reason: String| BusError::Publish {
            subject: subject.clone(),
            reason,
        };
        let ack_future = self
            .jetstream
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(|error| publish_error(error.to_string()))?;
        let ack = ack_future.await.map_err(|error| publish_error(error.to_string()))?;
        Ok(ack.sequence)
    }

    /// Publishes raw bytes with headers and waits for the ack (dead letters, tests).
    pub async fn publish_raw(&self, subject: String, headers: HeaderMap, payload: bytes::Bytes) -> Result<u64> {
        let publish_error = |reason: String| BusError::Publish {
            subject: subject.clone(),
            reason,
        };
        let ack_future = self
            .jetstream
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(|error| publish_error(error.to_string()))?;
        let ack = ack_future.await.map_err(|error| publish_error(error.to_string()))?;
        Ok(ack.sequence)
    }
}
