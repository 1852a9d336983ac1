//! Package feeds as the resolver sees them: the latest verified index of every feed the
//! catalog uses, and each package image's install set resolved against it.
//!
//! Indexes are fetched here (not shipped through NATS: a Debian `Packages` index is tens of
//! megabytes) with the same [`FeedClient`] the ingress poller uses. A fetch happens when
//! the resolver starts, when an `upstream.feed` event names a digest other than the one
//! loaded, and at every resync as one conditional request per index file (so a lost event
//! only delays a rebuild). Resolution is memoised per (feed digest, platform, install list).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use rebake_config::{Catalog, FeedSource, ImageSpec};
use rebake_events::state::PackageRecord;
use rebake_feeds::fetch::{FeedClient, FeedSnapshot, PollOutcome};

use crate::planner::PackageResolution;

/// Every configured feed and what is loaded of it.
#[derive(Clone)]
pub struct Feeds {
    client: FeedClient,
    sources: BTreeMap<String, FeedSource>,
    snapshots: BTreeMap<String, Arc<FeedSnapshot>>,
    /// Why a feed could not be loaded (cleared on success).
    errors: BTreeMap<String, String>,
    memo: HashMap<MemoKey, Result<Vec<PackageRecord>, String>>,
}

/// (feed, platform, install list).
type MemoKey = (String, String, Vec<String>);

impl Feeds {
    /// Feeds from the config; nothing is fetched yet.
    pub fn new(client: FeedClient, sources: BTreeMap<String, FeedSource>) -> Self {
        Self {
            client,
            sources,
            snapshots: BTreeMap::new(),
            errors: BTreeMap::new(),
            memo: HashMap::new(),
        }
    }

    /// Names of the feeds some image of `catalog` installs from (configured or not).
    pub fn used_by(catalog: &Catalog) -> Vec<String> {
        let mut names: Vec<String> = catalog
            .images()
            .filter_map(|spec| spec.packages.as_ref().map(|packages| packages.feed.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The digest of the loaded index of `feed`.
    pub fn digest(&self, feed: &str) -> Option<&str> {
        self.snapshots.get(feed).map(|snapshot| snapshot.digest.as_str())
    }

    /// A fetcher for `feed` that runs without holding the resolver (fetches are slow).
    pub fn fetcher(&self, feed: &str) -> Option<FeedFetch> {
        Some(FeedFetch {
            client: self.client.clone(),
            name: feed.to_string(),
            source: self.sources.get(feed)?.clone(),
            previous: self.snapshots.get(feed).cloned(),
        })
    }

    /// Applies a fetch result. Returns the new digest when the index changed.
    pub fn apply(&mut self, feed: &str, result: Result<PollOutcome, String>) -> Option<String> {
        match result {
            Ok(PollOutcome::Unchanged) => {
                self.errors.remove(feed);
                None
            }
            Ok(PollOutcome::Changed(snapshot)) => {
                self.errors.remove(feed);
                let digest = snapshot.digest.clone();
                if self.digest(feed) == Some(digest.as_str()) {
                    return None;
                }
                tracing::info!(feed, digest = %digest, "feed index loaded");
                self.snapshots.insert(feed.to_string(), Arc::new(snapshot));
                self.memo.retain(|(name, _, _), _| name != feed);
                Some(digest)
            }
            Err(reason) => {
                tracing::warn!(feed, reason = %reason, "feed index could not be loaded");
                self.errors.insert(feed.to_string(), reason);
                None
            }
        }
    }

    /// Resolves the install set of `spec` for every platform it builds.
    pub fn resolve(&mut self, spec: &ImageSpec) -> Option<PackageResolution> {
        let packages = spec.packages.as_ref()?;
        let feed = &packages.feed;
        let Some(source) = self.sources.get(feed) else {
            return Some(PackageResolution::Failed(format!(
                "feed {feed:?} is not configured (configured: {})",
                if self.sources.is_empty() {
                    "none".to_string()
                } else {
                    self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )));
        };
        let Some(snapshot) = self.snapshots.get(feed).cloned() else {
            let reason = match self.errors.get(feed) {
                Some(error) => format!("feed {feed} not loaded: {error}"),
                None => format!("feed {feed} not loaded yet"),
            };
            return Some(PackageResolution::Unavailable(reason));
        };
        let mut all = Vec::new();
        for platform in spec.build_platforms() {
            let Some(arch) = source.feed_arch(&platform) else {
                return Some(PackageResolution::Failed(format!(
                    "platform {platform} has no architecture in feed {feed}"
                )));
            };
            let key = (feed.clone(), platform.clone(), packages.install.clone());
            let resolved = self.memo.entry(key).or_insert_with(|| {
                snapshot
                    .resolve(&arch, &packages.install)
                    .map(|list| {
                        list.into_iter()
                            .map(|package| PackageRecord {
                                platform: platform.clone(),
                                name: package.name,
                                version: package.version,
                                architecture: package.architecture,
                                checksum: package.sha256,
                                size: package.size as i64,
                                url: package.url,
                                feed: feed.clone(),
                            })
                            .collect()
                    })
                    .map_err(|error| format!("{platform}: {error}"))
            });
            match resolved {
                Ok(list) => all.extend(list.iter().cloned()),
                Err(reason) => return Some(PackageResolution::Failed(reason.clone())),
            }
        }
        Some(PackageResolution::Resolved(all))
    }
}

/// One feed fetch, detached from the resolver's state.
pub struct FeedFetch {
    client: FeedClient,
    name: String,
    source: FeedSource,
    previous: Option<Arc<FeedSnapshot>>,
}

impl FeedFetch {
    /// The feed's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Polls the feed (conditional requests when an index is loaded).
    pub async fn run(self) -> Result<PollOutcome, String> {
        let result = match &self.previous {
            Some(previous) => self.client.poll(&self.name, &self.source, Some(previous)).await,
            None => self
                .client
                .snapshot(&self.name, &self.source)
                .await
                .map(PollOutcome::Changed),
        };
        result.map_err(|error| rebake_bus::error_chain(&error))
    }
}
