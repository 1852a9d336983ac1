//! Rebake's resolver: the catalog, the dependency graph and level-triggered rebuild planning.
//!
//! It consumes upstream hints (`UPSTREAM`) and what the other stages report (`EVENTS`:
//! publications and failures), keeps what it knows of upstream state (tag → digest,
//! branch → commit), and after every change runs the [`planner`] over every image in
//! dependency order. Builds it decides on go to the `BUILD` queue, one subject per image (a
//! newer request replaces one not yet started). Every `resync_interval` it re-reads every
//! tracked tag and branch itself, so a lost webhook only delays a rebuild.
//!
//! Package images are resolved against the feeds' verified indexes ([`feeds`]); the
//! resolved set is part of the inputs hash, so a feed change rebuilds exactly the images
//! whose set changed (and, through their publication, their children).
//!
//! It is the only writer of the `images` and `upstream` buckets and of the catalog bucket.
//! It builds nothing and talks to registries only to read tag digests.
#![forbid(unsafe_code)]

mod error;
pub mod feeds;
pub mod planner;
mod upstream;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use rebake_bus::{Bus, ConsumerSpec, Delivery, Kv, Need, Outcome, run_consumer};
use rebake_config::Catalog;
use rebake_events::{
    Bucket, BuildId, Envelope, EventKind, ImageName, Queue, deterministic_id, now_ms, pb,
    state::{
        BuildFailure, BuildRecord, CauseRecord, ImageState, PackageRecord, PublishedImage, SourceRevision,
        UpstreamRecord, upstream_key,
    },
};
use rebake_oci::Registry;
use tokio::sync::Mutex;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use error::{ResolverError, Result};
pub use feeds::Feeds;
pub use planner::{PackageResolution, PlannedBuild, Planner};
pub use upstream::{resolve_branch, resolve_tag};

/// Resolver settings.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// How often every tracked tag and branch is re-read and every image looked at.
    pub resync_interval: Duration,
}

/// Catalog entry as stored in the catalog bucket (for the control API).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CatalogEntry {
    /// The spec.
    pub spec: rebake_config::ImageSpec,
    /// Catalog parent.
    pub parent: Option<String>,
    /// Catalog children.
    pub children: Vec<String>,
}

struct Resolver {
    bus: Bus,
    planner: Planner,
    images_kv: Kv,
    builds_kv: Kv,
    upstream_kv: Kv,
    written: BTreeMap<ImageName, ImageState>,
    feeds: Feeds,
}

/// Runs the resolver until `shutdown` is cancelled.
pub async fn serve(
    bus: Bus,
    registry: Registry,
    catalog: Catalog,
    feeds: Feeds,
    settings: ResolverSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<()> {
    bus.ensure(&[
        Need::Upstream,
        Need::Events,
        Need::DeadLetter,
        Need::Queue(Queue::Build),
        Need::Bucket(Bucket::Catalog),
        Need::Bucket(Bucket::Images),
        Need::Bucket(Bucket::Builds),
        Need::Bucket(Bucket::Upstream),
    ])
    .await?;
    let catalog_kv = bus.kv(Bucket::Catalog).await?;
    let images_kv = bus.kv(Bucket::Images).await?;
    let builds_kv = bus.kv(Bucket::Builds).await?;
    let upstream_kv = bus.kv(Bucket::Upstream).await?;

    for spec in catalog.images() {
        let entry = CatalogEntry {
            spec: spec.clone(),
            parent: catalog.parent(&spec.name).map(ToString::to_string),
            children: catalog.children(&spec.name).iter().map(ToString::to_string).collect(),
        };
        catalog_kv.put(&spec.name.kv_key(), &entry).await?;
    }
    let mut states = BTreeMap::new();
    for (_, state) in images_kv.values::<ImageState>().await? {
        if let Ok(name) = ImageName::new(state.name.clone()) {
            states.insert(name, state);
        }
    }
    let written = states.clone();
    let mut planner = Planner::new(catalog, states);
    planner.failure_retry_ms = settings.resync_interval.as_millis() as i64;
    planner.pending_timeout_ms = (settings.resync_interval * 3).max(Duration::from_secs(600)).as_millis() as i64;
    for (_, record) in upstream_kv.values::<UpstreamRecord>().await? {
        match record.kind.as_str() {
            "tag" => {
                planner.set_tag(&record.reference, &record.value);
            }
            "git" => {
                if let Some((identity, branch)) = record.reference.rsplit_once('#') {
                    planner.set_branch(identity, branch, &record.value);
                }
            }
            _ => {}
        }
    }
    let used_feeds = Feeds::used_by(planner.catalog());
    tracing::info!(images = planner.catalog().len(), "resolver loaded catalog and state");
    let resolver = Arc::new(Mutex::new(Resolver {
        bus: bus.clone(),
        planner,
        images_kv,
        builds_kv,
        upstream_kv,
        written,
        feeds,
    }));
    resolver.lock().await.refresh_packages();
    // Load every used feed in the background: a slow or unreachable feed must not hold up
    // tags and branches. Until a feed is loaded its images wait (and say so).
    {
        let resolver = resolver.clone();
        let used_feeds = used_feeds.clone();
        tracker.spawn(async move { refresh_feeds(&resolver, &used_feeds, "startup").await });
    }

    let names = bus.names().clone();
    let upstream_resolver = resolver.clone();
    let upstream = Upstream {
        registry: registry.clone(),
        feeds: used_feeds.clone(),
    };
    run_consumer(
        bus.clone(),
        ConsumerSpec {
            stream: names.upstream_stream(),
            durable: names.resolver_upstream_consumer(),
            filter_subject: String::new(),
            concurrency: 1,
            deliver_all: true,
        },
        shutdown.clone(),
        tracker.clone(),
        move |delivery| {
            let resolver = upstream_resolver.clone();
            let upstream = upstream.clone();
            async move { handle_upstream(&resolver, &upstream, delivery).await }
        },
    )
    .await?;
    let events_resolver = resolver.clone();
    run_consumer(
        bus.clone(),
        ConsumerSpec {
            stream: names.events_stream(),
            durable: names.resolver_events_consumer(),
            filter_subject: String::new(),
            concurrency: 1,
            deliver_all: true,
        },
        shutdown.clone(),
        tracker.clone(),
        move |delivery| {
            let resolver = events_resolver.clone();
            async move { resolver.lock().await.on_event(delivery).await }
        },
    )
    .await?;

    let resync_token = shutdown.clone();
    tracker.spawn(async move {
        let mut interval = tokio::time::interval(settings.resync_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            tokio::select! {
                _ = resync_token.cancelled() => break,
                _ = interval.tick() => {}
            }
            // The start-up task loads the feeds; later passes re-check them conditionally.
            if !first {
                refresh_feeds(&resolver, &used_feeds, "resync").await;
            }
            first = false;
            resync(&resolver, &registry).await;
        }
    });
    Ok(())
}

/// Polls `feeds` (without holding the resolver while fetching) and plans when one changed.
async fn refresh_feeds(resolver: &Arc<Mutex<Resolver>>, feeds: &[String], why: &str) {
    let mut changes = Vec::new();
    for feed in feeds {
        let Some(fetch) = resolver.lock().await.feeds.fetcher(feed) else {
            continue;
        };
        let result = fetch.run().await;
        let mut guard = resolver.lock().await;
        if let Some(digest) = guard.feeds.apply(feed, result) {
            guard.record_upstream("feed", feed, &digest, why).await;
            changes.push(format!("feed {feed} -> {digest}"));
        }
    }
    let mut guard = resolver.lock().await;
    guard.refresh_packages();
    if changes.is_empty() && why == "resync" {
        return; // the tag/branch resync that follows plans anyway
    }
    let cause = CauseRecord {
        kind: "package-feed".to_string(),
        description: if changes.is_empty() {
            format!("{why}: feeds loaded")
        } else {
            format!("{why}: {}", changes.join(", "))
        },
        event_id: String::new(),
        at_ms: now_ms(),
    };
    if let Err(error) = guard.plan_and_dispatch(&[cause], None).await {
        tracing::warn!(error = %error, "planning after a feed refresh failed, will retry next resync");
    }
}

/// Routes one upstream event: a feed change fetches the new index first (outside the lock).
/// What the resolver reads upstream itself (resync, and before an operator's rebuild).
#[derive(Clone)]
struct Upstream {
    registry: Registry,
    /// Feeds the catalog uses.
    feeds: Vec<String>,
}

async fn handle_upstream(resolver: &Arc<Mutex<Resolver>>, upstream: &Upstream, delivery: Delivery) -> Outcome {
    let event: pb::UpstreamChanged = match delivery.decode() {
        Ok(event) => event,
        Err(error) => {
            return Outcome::Reject {
                reason: error.to_string(),
            };
        }
    };
    if let Some(pb::upstream_changed::Change::ManualTrigger(trigger)) = &event.change {
        // "Rebuild now" means with what upstream has now, even if no webhook said so:
        // re-read tracked tags, branches and feeds first (a HEAD, an ls-remote and a
        // conditional request each).
        refresh_feeds(resolver, &upstream.feeds, "operator trigger").await;
        let changes = refresh_upstream(resolver, &upstream.registry).await;
        if !changes.is_empty() {
            tracing::info!(image = %trigger.image, changes = %changes.join(", "), "upstream moved without telling us; the triggered build uses it");
        }
    }
    if let Some(pb::upstream_changed::Change::AdvisoryFix(fix)) = &event.change {
        let fix = fix.clone();
        return on_advisory_fix(resolver, &delivery, &event, &fix).await;
    }
    let Some(pb::upstream_changed::Change::Feed(feed)) = &event.change else {
        return resolver.lock().await.on_upstream(&delivery, event).await;
    };
    let fetch = {
        let guard = resolver.lock().await;
        if guard.feeds.digest(&feed.feed) == Some(feed.index_digest.as_str()) {
            tracing::debug!(feed = %feed.feed, "feed already at this index");
            return Outcome::Done;
        }
        guard.feeds.fetcher(&feed.feed)
    };
    let Some(fetch) = fetch else {
        tracing::debug!(feed = %feed.feed, "event about an unconfigured feed, ignored");
        return Outcome::Done;
    };
    let result = fetch.run().await;
    resolver.lock().await.on_feed(&delivery, &event, feed, result).await
}

/// The scanner found a fix for a finding of a published image: re-read that image's feed
/// now (one conditional request when it has not changed) instead of at the next poll, and
/// plan with the advisory as the cause. The image is rebuilt when the feed offers a
/// version that resolves differently; otherwise nothing happens until it does. Images not
/// assembled from a feed get their fixes through their base image.
async fn on_advisory_fix(
    resolver: &Arc<Mutex<Resolver>>,
    delivery: &Delivery,
    event: &pb::UpstreamChanged,
    fix: &pb::AdvisoryFixAvailable,
) -> Outcome {
    let fetch = {
        let guard = resolver.lock().await;
        let spec = ImageName::new(fix.image.clone())
            .ok()
            .and_then(|name| guard.planner.catalog().get(&name).cloned());
        let Some(spec) = spec else {
            tracing::debug!(image = %fix.image, "advisory fix for an image not in the catalog, ignored");
            return Outcome::Done;
        };
        let Some(packages) = &spec.packages else {
            tracing::info!(
                image = %fix.image,
                advisory = %fix.advisory_id,
                package = %fix.package,
                "fix available, but the image is not assembled from a feed: it arrives with its base"
            );
            return Outcome::Done;
        };
        guard.feeds.fetcher(&packages.feed)
    };
    let Some(fetch) = fetch else {
        return Outcome::Done;
    };
    let feed = fetch.name().to_string();
    let result = fetch.run().await;
    let mut guard = resolver.lock().await;
    if let Err(reason) = &result {
        return Outcome::retry(format!("feed {feed}: {reason}"), Duration::from_secs(5));
    }
    if let Some(digest) = guard.feeds.apply(&feed, result) {
        guard.record_upstream("feed", &feed, &digest, &event.source).await;
    }
    guard.refresh_packages();
    let envelope = delivery.envelope().clone();
    let cause = CauseRecord {
        kind: "advisory".to_string(),
        description: format!(
            "{} ({}): {} {} is fixed in {}",
            fix.advisory_id,
            if fix.severity.is_empty() {
                "unknown"
            } else {
                &fix.severity
            },
            fix.package,
            fix.installed_version,
            fix.fixed_version
        ),
        event_id: envelope.id.clone(),
        at_ms: if event.received_at_ms > 0 {
            event.received_at_ms
        } else {
            now_ms()
        },
    };
    tracing::info!(image = %fix.image, feed = %feed, cause = %cause.description, "advisory fix: feed re-read, planning");
    guard.seen_then_plan(&envelope, event, cause).await
}

/// Re-reads every tracked tag and branch, then plans.
async fn resync(resolver: &Arc<Mutex<Resolver>>, registry: &Registry) {
    let changes = refresh_upstream(resolver, registry).await;
    let mut guard = resolver.lock().await;
    let cause = CauseRecord {
        kind: "resync".to_string(),
        description: if changes.is_empty() {
            "periodic resync".to_string()
        } else {
            format!("resync found {}", changes.join(", "))
        },
        event_id: String::new(),
        at_ms: now_ms(),
    };
    if let Err(error) = guard.plan_and_dispatch(&[cause], None).await {
        tracing::warn!(error = %error, "resync planning failed, will retry next resync");
    }
}

/// Reads every tracked tag and branch upstream and records what moved (without planning).
/// Returns the changes, as `<ref> -> <value>`.
///
/// The reads happen without the lock, so an event may record a newer value meanwhile (a
/// parent published while its tag was being read as "not found"): a value read here is
/// applied only when the known value is still the one seen before reading.
async fn refresh_upstream(resolver: &Arc<Mutex<Resolver>>, registry: &Registry) -> Vec<String> {
    let (tags, branches, tags_before, branches_before) = {
        let guard = resolver.lock().await;
        let tags = guard.planner.tracked_tags();
        let branches = guard.planner.tracked_branches();
        let tags_before: HashMap<String, Option<String>> = tags
            .iter()
            .map(|tag| (tag.clone(), guard.planner.tag(tag).map(str::to_string)))
            .collect();
        let branches_before: HashMap<(String, String), Option<String>> = branches
            .iter()
            .map(|(_, identity, branch)| {
                (
                    (identity.clone(), branch.clone()),
                    guard.planner.branch(identity, branch).map(str::to_string),
                )
            })
            .collect();
        (tags, branches, tags_before, branches_before)
    };
    let mut tag_values = Vec::new();
    for tag_ref in tags {
        match resolve_tag(registry, &tag_ref).await {
            Ok(digest) => tag_values.push((tag_ref, digest)),
            Err(error) => tracing::warn!(reference = %tag_ref, error = %error, "resync could not read tag"),
        }
    }
    let mut branch_values = Vec::new();
    for (url, identity, branch) in branches {
        match resolve_branch(&url, &branch).await {
            Ok(Some(commit)) => branch_values.push((identity, branch, commit)),
            Ok(None) => tracing::warn!(url, branch, "resync found no such branch"),
            Err(error) => tracing::warn!(error = %error, "resync could not read branch"),
        }
    }
    let mut guard = resolver.lock().await;
    let mut changes = Vec::new();
    for (tag_ref, digest) in tag_values {
        let before = tags_before.get(&tag_ref).cloned().flatten();
        if guard.planner.tag(&tag_ref).map(str::to_string) != before {
            tracing::debug!(reference = %tag_ref, "tag changed by an event during the read; keeping the event's value");
            continue;
        }
        let changed = match &digest {
            Some(digest) => guard.planner.set_tag(&tag_ref, digest),
            None => guard.planner.remove_tag(&tag_ref),
        };
        if changed {
            let value = digest.unwrap_or_default();
            changes.push(format!(
                "{tag_ref} -> {}",
                if value.is_empty() { "(gone)" } else { &value }
            ));
            guard.record_upstream("tag", &tag_ref, &value, "resync").await;
        }
    }
    for (identity, branch, commit) in branch_values {
        let before = branches_before
            .get(&(identity.clone(), branch.clone()))
            .cloned()
            .flatten();
        if guard.planner.branch(&identity, &branch).map(str::to_string) != before {
            tracing::debug!(
                identity,
                branch,
                "branch changed by an event during the read; keeping the event's value"
            );
            continue;
        }
        if guard.planner.set_branch(&identity, &branch, &commit) {
            changes.push(format!("{identity}#{branch} -> {commit}"));
            guard
                .record_upstream("git", &format!("{identity}#{branch}"), &commit, "resync")
                .await;
        }
    }
    changes
}

impl Resolver {
    /// A tag or branch change (feed changes go to `on_feed`, see `handle_upstream`).
    async fn on_upstream(&mut self, delivery: &Delivery, event: pb::UpstreamChanged) -> Outcome {
        let envelope = delivery.envelope().clone();
        let received = if event.received_at_ms > 0 {
            event.received_at_ms
        } else {
            now_ms()
        };
        let (kind, description) = match &event.change {
            Some(pb::upstream_changed::Change::RegistryTag(tag)) => {
                let tag_ref = format!("{}/{}:{}", tag.registry, tag.repository, tag.tag);
                if !self.planner.tracks_tag(&tag_ref) {
                    tracing::debug!(reference = %tag_ref, "untracked tag, ignored");
                    return Outcome::Done;
                }
                if !self.planner.set_tag(&tag_ref, &tag.digest) {
                    tracing::debug!(reference = %tag_ref, "tag already at this digest");
                    return Outcome::Done;
                }
                self.record_upstream("tag", &tag_ref, &tag.digest, &event.source).await;
                ("registry-tag", format!("{tag_ref} -> {}", tag.digest))
            }
            Some(pb::upstream_changed::Change::GitRef(git)) => {
                if git.ref_kind != "branch" || git.deleted || git.new_commit.is_empty() {
                    return Outcome::Done;
                }
                if !self.planner.tracks_branch(&git.repository, &git.ref_name) {
                    tracing::debug!(repository = %git.repository, branch = %git.ref_name, "untracked branch, ignored");
                    return Outcome::Done;
                }
                if !self.planner.set_branch(&git.repository, &git.ref_name, &git.new_commit) {
                    return Outcome::Done;
                }
                let reference = format!("{}#{}", git.repository, git.ref_name);
                self.record_upstream("git", &reference, &git.new_commit, &event.source)
                    .await;
                ("git-ref", format!("{reference} -> {}", git.new_commit))
            }
            Some(pb::upstream_changed::Change::Feed(_) | pb::upstream_changed::Change::AdvisoryFix(_)) => {
                // Routed to `on_feed` by `handle_upstream`.
                return Outcome::Done;
            }
            Some(pb::upstream_changed::Change::ManualTrigger(trigger)) => {
                return self.on_manual_trigger(&envelope, &event, trigger, received).await;
            }
            Some(pb::upstream_changed::Change::Pause(pause)) => {
                return self.on_pause(&envelope, &event, pause, received).await;
            }
            None => {
                return Outcome::Reject {
                    reason: "upstream event without a change".to_string(),
                };
            }
        };
        tracing::info!(kind, change = %description, source = %event.source, "upstream changed");
        let cause = CauseRecord {
            kind: kind.to_string(),
            description,
            event_id: envelope.id.clone(),
            at_ms: received,
        };
        self.seen_then_plan(&envelope, &event, cause).await
    }

    /// Records an upstream change in `EVENTS` for watchers (same id: a replay
    /// de-duplicates), then plans with it as the cause.
    async fn seen_then_plan(
        &mut self,
        envelope: &Envelope,
        event: &pb::UpstreamChanged,
        cause: CauseRecord,
    ) -> Outcome {
        self.seen_then_plan_with(envelope, event, &[cause], None).await
    }

    /// [`Self::seen_then_plan`] with the causes of the pass given (none for a forced build,
    /// whose cause goes on its own build only); `image` is the `EVENTS` subject's image.
    async fn seen_then_plan_with(
        &mut self,
        envelope: &Envelope,
        event: &pb::UpstreamChanged,
        causes: &[CauseRecord],
        image: Option<&ImageName>,
    ) -> Outcome {
        let record = Envelope::new(
            EventKind::UpstreamChanged,
            format!("seen-{}", envelope.id),
            self.bus.source(),
            image.map(ImageName::as_str),
            Some(&envelope.traceparent),
        );
        if let Err(error) = self
            .bus
            .publish(
                self.bus
                    .names()
                    .event_subject(EventKind::UpstreamChanged.token(), image),
                &record,
                event,
            )
            .await
        {
            return retry(error);
        }
        match self.plan_and_dispatch(causes, Some(&envelope.traceparent)).await {
            Ok(()) => Outcome::Done,
            Err(error) => retry(error),
        }
    }

    /// An operator asked for a rebuild: the image is built on this pass (or, while it waits
    /// for an input or its parent, or is paused, as soon as it can be) even when its inputs
    /// are unchanged; children follow through the normal path when its digest changes.
    async fn on_manual_trigger(
        &mut self,
        envelope: &Envelope,
        event: &pb::UpstreamChanged,
        trigger: &pb::ManualTrigger,
        received: i64,
    ) -> Outcome {
        let Some(image) = self.catalog_image(&trigger.image) else {
            return Outcome::Done;
        };
        let cause = CauseRecord {
            kind: "manual".to_string(),
            description: operator_description(&trigger.reason, &trigger.requested_by),
            event_id: envelope.id.clone(),
            at_ms: received,
        };
        tracing::info!(image = %image, requested_by = %trigger.requested_by, reason = %trigger.reason, "rebuild requested by operator");
        self.planner.force(&image, cause);
        self.seen_then_plan_with(envelope, event, &[], Some(&image)).await
    }

    /// An operator paused or resumed an image; resuming plans it at once.
    async fn on_pause(
        &mut self,
        envelope: &Envelope,
        event: &pb::UpstreamChanged,
        pause: &pb::PauseChanged,
        received: i64,
    ) -> Outcome {
        let Some(image) = self.catalog_image(&pause.image) else {
            return Outcome::Done;
        };
        let reason = operator_description(&pause.reason, &pause.requested_by);
        if !self.planner.set_paused(&image, pause.paused, &reason) {
            tracing::debug!(image = %image, paused = pause.paused, "pause state unchanged");
            return Outcome::Done;
        }
        tracing::info!(image = %image, paused = pause.paused, requested_by = %pause.requested_by, reason = %pause.reason, "pause changed by operator");
        let causes = if pause.paused {
            Vec::new()
        } else {
            vec![CauseRecord {
                kind: "manual".to_string(),
                description: if pause.requested_by.is_empty() {
                    format!("{image} resumed")
                } else {
                    format!("{image} resumed (requested by {})", pause.requested_by)
                },
                event_id: envelope.id.clone(),
                at_ms: received,
            }]
        };
        self.seen_then_plan_with(envelope, event, &causes, Some(&image)).await
    }

    /// `name` when it is a catalog image (logged and `None` otherwise: the request is dropped).
    fn catalog_image(&self, name: &str) -> Option<ImageName> {
        let image = ImageName::new(name.to_string())
            .ok()
            .filter(|image| self.planner.catalog().get(image).is_some());
        if image.is_none() {
            tracing::warn!(image = %name, "operator request about an image not in the catalog, ignored");
        }
        image
    }

    async fn on_event(&mut self, delivery: Delivery) -> Outcome {
        let envelope = delivery.envelope().clone();
        match envelope.kind {
            EventKind::ImagePublished => {
                let event: pb::ImagePublished = match delivery.decode() {
                    Ok(event) => event,
                    Err(error) => {
                        return Outcome::Reject {
                            reason: error.to_string(),
                        };
                    }
                };
                let Ok(image) = ImageName::new(event.image.clone()) else {
                    return Outcome::Reject {
                        reason: format!("invalid image {:?}", event.image),
                    };
                };
                let newer = self
                    .planner
                    .images()
                    .get(&image)
                    .and_then(|state| state.published.as_ref())
                    .is_none_or(|published| published.published_at_ms <= event.published_at_ms);
                if !newer {
                    return Outcome::Done;
                }
                self.planner.published(
                    &image,
                    PublishedImage {
                        digest: event.digest.clone(),
                        inputs_hash: event.inputs_hash.clone(),
                        build_id: event.build_id.clone(),
                        repository: event.repository.clone(),
                        tags: event.tags.clone(),
                        base_digest: event.base_digest.clone(),
                        sources: event.sources.iter().map(source_revision).collect(),
                        packages: event.packages.iter().map(PackageRecord::from).collect(),
                        published_at_ms: event.published_at_ms,
                        causes: event.causes.iter().map(CauseRecord::from).collect(),
                    },
                );
                for tag in &event.tags {
                    let tag_ref = format!("{}:{tag}", event.repository);
                    self.record_upstream("tag", &tag_ref, &event.digest, "image.published")
                        .await;
                }
            }
            EventKind::BuildFailed => {
                let event: pb::BuildFailed = match delivery.decode() {
                    Ok(event) => event,
                    Err(error) => {
                        return Outcome::Reject {
                            reason: error.to_string(),
                        };
                    }
                };
                let Ok(image) = ImageName::new(event.image.clone()) else {
                    return Outcome::Reject {
                        reason: format!("invalid image {:?}", event.image),
                    };
                };
                self.planner.failed(
                    &image,
                    BuildFailure {
                        build_id: event.build_id,
                        inputs_hash: event.inputs_hash,
                        stage: event.stage,
                        reason: event.reason,
                        at_ms: event.failed_at_ms,
                    },
                );
            }
            _ => return Outcome::Done,
        }
        match self.plan_and_dispatch(&[], Some(&envelope.traceparent)).await {
            Ok(()) => Outcome::Done,
            Err(error) => retry(error),
        }
    }

    /// Applies a fetched feed index and plans.
    async fn on_feed(
        &mut self,
        delivery: &Delivery,
        event: &pb::UpstreamChanged,
        feed: &pb::FeedChanged,
        result: std::result::Result<rebake_feeds::fetch::PollOutcome, String>,
    ) -> Outcome {
        if let Err(reason) = &result {
            // The feed may be mid-update or unreachable; redeliver (the resync also retries).
            return Outcome::retry(format!("feed {}: {reason}", feed.feed), Duration::from_secs(5));
        }
        let Some(digest) = self.feeds.apply(&feed.feed, result) else {
            return Outcome::Done;
        };
        self.record_upstream("feed", &feed.feed, &digest, &event.source).await;
        self.refresh_packages();
        let envelope = delivery.envelope().clone();
        // One line per distinct change: a feed lists a package once per architecture.
        let mut distinct: Vec<String> = Vec::new();
        for line in feed.changes.iter().map(|change| {
            format!(
                "{} {} -> {}",
                change.name,
                if change.old_version.is_empty() {
                    "(new)"
                } else {
                    &change.old_version
                },
                if change.new_version.is_empty() {
                    "(removed)"
                } else {
                    &change.new_version
                }
            )
        }) {
            if !distinct.contains(&line) {
                distinct.push(line);
            }
        }
        let more = distinct.len().saturating_sub(10);
        let shown: Vec<String> = distinct.into_iter().take(10).collect();
        let description = format!(
            "feed {} -> {digest}{}{}",
            feed.feed,
            if shown.is_empty() {
                String::new()
            } else {
                format!(": {}", shown.join(", "))
            },
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        tracing::info!(feed = %feed.feed, change = %description, "package feed changed");
        let cause = CauseRecord {
            kind: "package-feed".to_string(),
            description,
            event_id: envelope.id.clone(),
            at_ms: if event.received_at_ms > 0 {
                event.received_at_ms
            } else {
                now_ms()
            },
        };
        self.seen_then_plan(&envelope, event, cause).await
    }

    /// Re-resolves every package image against the loaded feed indexes.
    fn refresh_packages(&mut self) {
        let specs: Vec<rebake_config::ImageSpec> = self
            .planner
            .catalog()
            .images()
            .filter(|spec| spec.packages.is_some())
            .cloned()
            .collect();
        for spec in specs {
            if let Some(resolution) = self.feeds.resolve(&spec) {
                self.planner.set_packages(&spec.name, resolution);
            }
        }
    }

    async fn record_upstream(&self, kind: &str, reference: &str, value: &str, source: &str) {
        let record = UpstreamRecord {
            kind: kind.to_string(),
            reference: reference.to_string(),
            value: value.to_string(),
            changed_at_ms: now_ms(),
            source: source.to_string(),
        };
        if let Err(error) = self.upstream_kv.put(&upstream_key(kind, reference), &record).await {
            // Not fatal: the next resync re-reads it.
            tracing::warn!(reference, error = %error, "failed to store upstream state");
        }
    }

    /// Plans, sends the requested builds, and stores image states that changed.
    async fn plan_and_dispatch(&mut self, causes: &[CauseRecord], traceparent: Option<&str>) -> Result<()> {
        let planned = self.planner.plan(now_ms(), causes, || BuildId::generate().to_string());
        let mut first_error = None;
        for build in planned {
            if let Err(error) = self.dispatch(&build, traceparent).await {
                tracing::warn!(image = %build.image, error = %error, "failed to request build");
                self.planner.clear_pending(&build.image, &build.build_id);
                first_error.get_or_insert(error);
            }
        }
        self.persist_states().await?;
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn dispatch(&self, build: &PlannedBuild, traceparent: Option<&str>) -> Result<()> {
        let requested_at_ms = now_ms();
        let record = BuildRecord {
            build_id: build.build_id.clone(),
            image: build.image.to_string(),
            inputs_hash: build.inputs_hash.clone(),
            status: "requested".to_string(),
            causes: build.causes.clone(),
            base_digest: build.base_digest.clone(),
            sources: build.sources.clone(),
            packages: build.packages.clone(),
            requested_at_ms,
            ..Default::default()
        };
        self.builds_kv.put(&build.build_id, &record).await?;
        let request = pb::BuildRequest {
            build_id: build.build_id.clone(),
            image: build.image.to_string(),
            inputs_hash: build.inputs_hash.clone(),
            base_ref: build.base_ref.clone(),
            base_digest: build.base_digest.clone(),
            sources: build
                .sources
                .iter()
                .map(|source| pb::SourceCommit {
                    url: source.url.clone(),
                    ref_name: source.ref_name.clone(),
                    commit: source.commit.clone(),
                    commit_time: 0,
                })
                .collect(),
            spec_json: build.spec_json.clone(),
            causes: build.causes.iter().map(pb::Cause::from).collect(),
            requested_at_ms,
            priority: 0,
            packages: build.packages.iter().map(pb::ResolvedPackage::from).collect(),
        };
        let names = self.bus.names();
        let envelope = Envelope::new(
            EventKind::BuildRequested,
            deterministic_id(&["build-request", &build.build_id]),
            self.bus.source(),
            Some(build.image.as_str()),
            traceparent,
        );
        self.bus
            .publish(names.queue_subject(Queue::Build, &build.image), &envelope, &request)
            .await?;
        let mut event_envelope = envelope.clone();
        event_envelope.id = deterministic_id(&["build-requested", &build.build_id]);
        self.bus
            .publish(
                names.event_subject(EventKind::BuildRequested.token(), Some(&build.image)),
                &event_envelope,
                &request,
            )
            .await?;
        tracing::info!(image = %build.image, build_id = %build.build_id, inputs_hash = %build.inputs_hash, "build requested");
        Ok(())
    }

    async fn persist_states(&mut self) -> Result<()> {
        let changed: Vec<(ImageName, ImageState)> = self
            .planner
            .images()
            .iter()
            .filter(|(name, state)| self.written.get(*name) != Some(*state))
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect();
        for (name, state) in changed {
            self.images_kv.put(&name.kv_key(), &state).await?;
            self.written.insert(name, state);
        }
        Ok(())
    }
}

fn source_revision(source: &pb::SourceCommit) -> SourceRevision {
    SourceRevision {
        url: source.url.clone(),
        ref_name: source.ref_name.clone(),
        commit: source.commit.clone(),
    }
}

/// `<reason> (requested by <who>)`, or the reason alone when nobody is known.
fn operator_description(reason: &str, requested_by: &str) -> String {
    match (reason.trim(), requested_by.trim()) {
        (reason, "") => reason.to_string(),
        ("", who) => format!("requested by {who}"),
        (reason, who) => format!("{reason} (requested by {who})"),
    }
}

fn retry(error: impl std::fmt::Display) -> Outcome {
    Outcome::retry(error, Duration::from_secs(1))
}
