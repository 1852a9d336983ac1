//! Feed pollers: package feeds send nobody a webhook, so the ingress asks them.
//!
//! Every `interval`, each configured feed's index files (`InRelease`, or each
//! architecture's `APKINDEX.tar.gz`) are requested conditionally (`If-None-Match`,
//! `If-Modified-Since`): an unchanged feed costs one request per index file and publishes
//! nothing. When an index changed, the new one is fetched and verified (signature and
//! checksums), compared with the previous one, and one `FeedChanged` event names the new
//! index digest and every package whose highest version changed. The first successful poll
//! after start publishes the current digest too (with no change list): the resolver
//! ignores a digest it already has, and catches up on one it missed.
//!
//! Event ids derive from (feed, index digest), so two ingress replicas polling the same
//! feed publish one event per change (JetStream de-duplication).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use rebake_events::{Envelope, EventKind, deterministic_id, now_ms, pb};
use rebake_feeds::fetch::{FeedClient, FeedSnapshot, FeedSource, PollOutcome};
use tokio_util::sync::CancellationToken;

use crate::UpstreamSink;

const CE_SOURCE: &str = "/rebake/ingress/feed-poller";
const EVENT_SOURCE: &str = "poll/feed";

/// Polls every feed until `shutdown` is cancelled.
pub async fn poll_feeds<S: UpstreamSink>(
    sink: Arc<S>,
    client: FeedClient,
    feeds: BTreeMap<String, FeedSource>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, source) in feeds {
        let poller = FeedPoller {
            sink: sink.clone(),
            client: client.clone(),
            name,
            source,
            current: None,
            published: None,
        };
        tasks.spawn(poller.run(interval, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

struct FeedPoller<S> {
    sink: Arc<S>,
    client: FeedClient,
    name: String,
    source: FeedSource,
    /// The last verified index.
    current: Option<FeedSnapshot>,
    /// The digest last published (JetStream acked).
    published: Option<String>,
}

impl<S: UpstreamSink> FeedPoller<S> {
    async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            self.poll_once().await;
        }
    }

    async fn poll_once(&mut self) {
        let outcome = self.client.poll(&self.name, &self.source, self.current.as_ref()).await;
        let changes = match outcome {
            Ok(PollOutcome::Unchanged) => Vec::new(),
            Ok(PollOutcome::Changed(snapshot)) => {
                // The first index after start is the baseline: no change list.
                let changes = match &self.current {
                    Some(previous) => snapshot.diff(Some(previous)),
                    None => Vec::new(),
                };
                self.current = Some(snapshot);
                changes
            }
            Err(error) => {
                tracing::warn!(feed = %self.name, error = %rebake_bus::error_chain(&error), "feed poll failed, will retry next interval");
                return;
            }
        };
        let Some(current) = &self.current else { return };
        if self.published.as_deref() == Some(current.digest.as_str()) {
            return;
        }
        let event = pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::Feed(pb::FeedChanged {
                feed: self.name.clone(),
                index_digest: current.digest.clone(),
                changes: changes
                    .iter()
                    .map(|change| pb::PackageChange {
                        name: change.name.clone(),
                        architecture: change.architecture.clone(),
                        old_version: change.old_version.clone().unwrap_or_default(),
                        new_version: change.new_version.clone().unwrap_or_default(),
                    })
                    .collect(),
            })),
            source: EVENT_SOURCE.to_string(),
            received_at_ms: now_ms(),
        };
        let envelope = Envelope::new(
            EventKind::UpstreamChanged,
            deterministic_id(&["feed", &self.name, &current.digest]),
            CE_SOURCE,
            None,
            None,
        );
        let subject = self.sink.names().upstream_feed_subject();
        match self.sink.publish(subject, envelope, event).await {
            Ok(()) => {
                tracing::info!(feed = %self.name, digest = %current.digest, changed = changes.len(), "feed index changed");
                self.published = Some(current.digest.clone());
            }
            // Not marked published: the next poll (even an unchanged one) publishes again.
            Err(error) => {
                tracing::warn!(feed = %self.name, error = %error, "failed to publish a feed change, will retry")
            }
        }
    }
}
