//! Pollers for upstreams that cannot call: registries and Git remotes nobody configured a
//! webhook for (or that have none) are asked instead.
//!
//! Registries: one task per registry host. Every interval (`ingress.poll.interval`, or the
//! registry's own `ingress.poll.registries.<host>.interval`) each tracked tag of that
//! registry gets one `HEAD` on its manifest ([`Registry::probe`]: the manifest and index
//! `Accept` list, the digest from `Docker-Content-Digest`, anonymous bearer tokens when
//! the registry challenges). Never a tag listing: an unchanged tag costs one request per
//! interval (plus a token request when the registry's anonymous token expired).
//!
//! - Budget: every request to a registry, token requests included, is taken from a token
//!   bucket of `requests_per_minute` (it holds a minute's worth and refills at
//!   `requests_per_minute / 60` per second). When it is empty the poller waits; a round that
//!   cannot finish within its interval simply starts the next one late.
//! - Rate limits: a `429` (from the registry or its token service) pauses that registry for
//!   its `Retry-After` (seconds or HTTP date, at most an hour, at least a second), or without
//!   one for 2^n s (n = consecutive 429s, at most 10 min), plus a random jitter of up to a
//!   tenth of the pause (at least up to 0.5 s) so that replicas do not come back in step.
//!   Then the same tag is tried again. Each back-off is logged and counted.
//! - Changes: when a tag's digest differs from the last one this process saw (the first
//!   observation after start included) a `RegistryTagChanged` event is published on
//!   `upstream.registry` with source `poll`. Its id derives from (registry, repository, tag,
//!   digest), so replicas polling the same registry, and webhooks reporting the same push
//!   with the same id, publish one event. A failed publish is tried again next interval.
//!
//! Git: every `ingress.poll.git_interval`, `git ls-remote -- <url> refs/heads/<branch>` for
//! each tracked branch (60 s timeout, never prompting for credentials); a moved branch
//! publishes a `GitRefChanged` (`ref_kind: branch`) on `upstream.git` with source `poll`.
//!
//! What is tracked comes from the catalog ([`PollTargets::from_catalog`]): the tags images
//! are built from, except those another catalog image publishes (Rebake's own publication
//! events already announce those), and every branch a source follows.
//!
//! Counters per registry (probes, requests, changes, back-offs, errors) and for Git are kept
//! in [`PollStats`] for the caller to read.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use rebake_config::{Catalog, PollConfig};
use rebake_events::{Envelope, EventKind, deterministic_id, now_ms, pb};
use rebake_oci::{ImageRef, Probe, Registry};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::UpstreamSink;

const CE_SOURCE: &str = "/rebake/ingress/poller";
const EVENT_SOURCE: &str = "poll";
/// Longest pause a `Retry-After` can ask for (a longer one is cut to this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Shortest pause after a `429` that came with a `Retry-After`.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest exponential back-off after `429`s without `Retry-After`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How long one `git ls-remote` may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// What to poll.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollTargets {
    /// Tags, as full references `registry/repository:tag`.
    pub tags: Vec<String>,
    /// Git branches.
    pub branches: Vec<TrackedBranch>,
}

/// One Git branch to poll.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrackedBranch {
    /// What `git ls-remote` is given (URL or path).
    pub url: String,
    /// The repository identity events carry (`github.com/octo/app`).
    pub identity: String,
    /// Branch name (without `refs/heads/`).
    pub branch: String,
}

impl PollTargets {
    /// The tags the catalog's images are built from, except those a catalog image
    /// publishes itself, and every branch a source tracks; sorted, without duplicates.
    pub fn from_catalog(catalog: &Catalog) -> Self {
        let mut tags: Vec<String> = catalog
            .images()
            .filter(|spec| catalog.parent(&spec.name).is_none())
            .filter_map(|spec| spec.base_tag_ref())
            .collect();
        tags.sort();
        tags.dedup();
        let mut branches: Vec<TrackedBranch> = catalog
            .images()
            .flat_map(|spec| {
                spec.sources.iter().map(|source| TrackedBranch {
                    url: source.url.clone(),
                    identity: source.identity(),
                    branch: source.ref_name.clone(),
                })
            })
            .collect();
        branches.sort();
        branches.dedup();
        Self { tags, branches }
    }

    /// Whether there is nothing to poll.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.branches.is_empty()
    }
}

/// Counters of one registry's poller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryCounters {
    /// Tags probed (a probe retried after a back-off counts again).
    pub probes: u64,
    /// HTTP requests made, token requests included.
    pub requests: u64,
    /// Changes published (JetStream acked).
    pub changes: u64,
    /// Back-offs after a `429`.
    pub backoffs: u64,
    /// Probes or publishes that failed (tried again next interval).
    pub errors: u64,
}

/// Counters of the Git poller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitCounters {
    /// `git ls-remote` runs.
    pub checks: u64,
    /// Changes published (JetStream acked).
    pub changes: u64,
    /// Failed checks or publishes.
    pub errors: u64,
}

/// What the pollers did so far; shared with the caller, which reads snapshots.
#[derive(Debug, Default)]
pub struct PollStats {
    registries: Mutex<BTreeMap<String, RegistryCounters>>,
    git: Mutex<GitCounters>,
}

impl PollStats {
    /// A snapshot of one registry's counters (zero when it is not polled).
    pub fn registry(&self, host: &str) -> RegistryCounters {
        lock(&self.registries).get(host).cloned().unwrap_or_default()
    }

    /// A snapshot of every polled registry's counters.
    pub fn registries(&self) -> BTreeMap<String, RegistryCounters> {
        lock(&self.registries).clone()
    }

    /// A snapshot of the Git poller's counters.
    pub fn git(&self) -> GitCounters {
        lock(&self.git).clone()
    }

    fn update_registry(&self, host: &str, change: impl FnOnce(&mut RegistryCounters)) {
        change(lock(&self.registries).entry(host.to_string()).or_default());
    }

    fn update_git(&self, change: impl FnOnce(&mut GitCounters)) {
        change(&mut lock(&self.git));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters stay meaningful after a panic elsewhere.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls `targets` as `config` says until `shutdown` is cancelled. `registry` should be a
/// client of its own: its per-registry request counts are what the budget charges.
pub async fn poll_upstreams<S: UpstreamSink>(
    sink: Arc<S>,
    registry: Registry,
    targets: PollTargets,
    config: PollConfig,
    stats: Arc<PollStats>,
    shutdown: CancellationToken,
) {
    let mut by_registry: BTreeMap<String, Vec<(String, ImageRef)>> = BTreeMap::new();
    for tag_ref in targets.tags {
        match ImageRef::parse(&tag_ref) {
            Ok(image) if image.digest.is_none() => by_registry
                .entry(image.registry.clone())
                .or_default()
                .push((tag_ref, image)),
            Ok(_) => tracing::debug!(reference = %tag_ref, "pinned by digest, not polled"),
            Err(error) => tracing::warn!(reference = %tag_ref, %error, "cannot poll an invalid reference"),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (host, tags) in by_registry {
        let (interval, requests_per_minute) = config.for_registry(&host);
        let Some(interval) = interval else {
            tracing::info!(registry = %host, tags = tags.len(), "registry polling is off for this registry");
            continue;
        };
        tracing::info!(
            registry = %host,
            tags = tags.len(),
            interval = ?interval,
            requests_per_minute,
            "polling registry tags"
        );
        stats.update_registry(&host, |_| {});
        let poller = RegistryPoller {
            sink: sink.clone(),
            registry: registry.clone(),
            budget: Budget::new(requests_per_minute, Instant::now()),
            backoff: Backoff::default(),
            jitter: Jitter::new(&host),
            host,
            tags,
            interval,
            seen: HashMap::new(),
            stats: stats.clone(),
        };
        tasks.spawn(poller.run(shutdown.clone()));
    }
    match config.git_interval {
        Some(interval) if !targets.branches.is_empty() => {
            tracing::info!(branches = targets.branches.len(), interval = ?interval, "polling git branches");
            let poller = GitPoller {
                sink: sink.clone(),
                branches: targets.branches,
                seen: HashMap::new(),
                stats: stats.clone(),
            };
            tasks.spawn(poller.run(interval, shutdown.clone()));
        }
        None if !targets.branches.is_empty() => tracing::info!("git polling is off"),
        _ => {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Sleeps until `deadline`; false when `shutdown` came first.
async fn sleep_until(deadline: Instant, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep_until(deadline) => true,
    }
}

struct RegistryPoller<S> {
    sink: Arc<S>,
    registry: Registry,
    host: String,
    /// (reference as given, parsed).
    tags: Vec<(String, ImageRef)>,
    interval: Duration,
    budget: Budget,
    backoff: Backoff,
    jitter: Jitter,
    /// Reference → the digest last published for it.
    seen: HashMap<String, String>,
    stats: Arc<PollStats>,
}

impl<S: UpstreamSink> RegistryPoller<S> {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut next_round = Instant::now();
        loop {
            if !sleep_until(next_round, &shutdown).await {
                return;
            }
            let started = Instant::now();
            let mut index = 0;
            while index < self.tags.len() {
                let wait = self.budget.wait(Instant::now());
                if !wait.is_zero() {
                    tracing::debug!(registry = %self.host, wait = ?wait, "request budget spent, waiting");
                    if !sleep_until(Instant::now() + wait, &shutdown).await {
                        return;
                    }
                }
                let (tag_ref, image) = self.tags[index].clone();
                let before = self.registry.probe_requests(&self.host);
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    result = self.registry.probe(&image) => result,
                };
                let requests = self.registry.probe_requests(&self.host).saturating_sub(before);
                self.budget.spend(Instant::now(), requests);
                self.stats.update_registry(&self.host, |counters| {
                    counters.probes += 1;
                    counters.requests += requests;
                });
                match result {
                    Ok(Probe::RateLimited { retry_after }) => {
                        let pause = self.backoff.rate_limited(retry_after);
                        let pause = pause + self.jitter.below(jitter_bound(pause));
                        tracing::warn!(
                            registry = %self.host,
                            reference = %tag_ref,
                            retry_after = ?retry_after,
                            consecutive = self.backoff.consecutive,
                            pause = ?pause,
                            "registry rate-limited polling (429), backing off"
                        );
                        self.stats
                            .update_registry(&self.host, |counters| counters.backoffs += 1);
                        if !sleep_until(Instant::now() + pause, &shutdown).await {
                            return;
                        }
                        // The same tag again.
                        continue;
                    }
                    Ok(Probe::Found { digest, media_type }) => {
                        self.backoff.reset();
                        if self.seen.get(&tag_ref) != Some(&digest) {
                            self.publish(&tag_ref, &image, digest, media_type).await;
                        }
                    }
                    Ok(Probe::NotFound) => {
                        self.backoff.reset();
                        if self.seen.remove(&tag_ref).is_some() {
                            tracing::info!(reference = %tag_ref, "polled tag is gone");
                        } else {
                            tracing::debug!(reference = %tag_ref, "polled tag does not exist");
                        }
                    }
                    Err(error) => {
                        self.stats.update_registry(&self.host, |counters| counters.errors += 1);
                        tracing::warn!(
                            reference = %tag_ref,
                            error = %rebake_bus::error_chain(&error),
                            "tag poll failed, will retry next interval"
                        );
                    }
                }
                index += 1;
            }
            next_round = started + self.interval;
        }
    }

    async fn publish(&mut self, tag_ref: &str, image: &ImageRef, digest: String, media_type: String) {
        let tag = image.tag.clone().unwrap_or_else(|| "latest".to_string());
        let change = pb::RegistryTagChanged {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            tag: tag.clone(),
            digest: digest.clone(),
            media_type,
        };
        let envelope = Envelope::new(
            EventKind::UpstreamChanged,
            deterministic_id(&["registry", &image.registry, &image.repository, &tag, &digest]),
            CE_SOURCE,
            None,
            None,
        );
        let event = pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::RegistryTag(change)),
            source: EVENT_SOURCE.to_string(),
            received_at_ms: now_ms(),
        };
        let subject = self.sink.names().upstream_registry_subject();
        match self.sink.publish(subject, envelope, event).await {
            Ok(()) => {
                let previous = self.seen.insert(tag_ref.to_string(), digest.clone());
                self.stats.update_registry(&self.host, |counters| counters.changes += 1);
                tracing::info!(
                    reference = %tag_ref,
                    %digest,
                    previous = previous.as_deref().unwrap_or("(first seen)"),
                    "polled tag changed"
                );
            }
            Err(error) => {
                self.stats.update_registry(&self.host, |counters| counters.errors += 1);
                tracing::warn!(reference = %tag_ref, %error, "failed to publish a polled tag change, will retry");
            }
        }
    }
}

struct GitPoller<S> {
    sink: Arc<S>,
    branches: Vec<TrackedBranch>,
    /// (url, branch) → the commit last published.
    seen: HashMap<(String, String), String>,
    stats: Arc<PollStats>,
}

impl<S: UpstreamSink> GitPoller<S> {
    async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            for index in 0..self.branches.len() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    () = self.check(index) => {}
                }
            }
        }
    }

    /// Runs `git ls-remote` for one branch and publishes it when it moved.
    async fn check(&mut self, index: usize) {
        let branch = self.branches[index].clone();
        let result = ls_remote_branch(&branch.url, &branch.branch).await;
        self.stats.update_git(|counters| counters.checks += 1);
        let key = (branch.url.clone(), branch.branch.clone());
        match result {
            Ok(Some(commit)) => {
                if self.seen.get(&key) != Some(&commit) {
                    self.publish(&branch, key, commit).await;
                }
            }
            Ok(None) => {
                if self.seen.remove(&key).is_some() {
                    tracing::info!(url = %branch.url, branch = %branch.branch, "polled branch is gone");
                } else {
                    tracing::debug!(url = %branch.url, branch = %branch.branch, "polled branch does not exist");
                }
            }
            Err(reason) => {
                self.stats.update_git(|counters| counters.errors += 1);
                tracing::warn!(
                    url = %branch.url,
                    branch = %branch.branch,
                    error = %reason,
                    "branch poll failed, will retry next interval"
                );
            }
        }
    }

    async fn publish(&mut self, branch: &TrackedBranch, key: (String, String), commit: String) {
        let old_commit = self.seen.get(&key).cloned().unwrap_or_default();
        let full_ref = format!("refs/heads/{}", branch.branch);
        let change = pb::GitRefChanged {
            repository: branch.identity.clone(),
            ref_kind: "branch".to_string(),
            ref_name: branch.branch.clone(),
            new_commit: commit.clone(),
            old_commit: old_commit.clone(),
            deleted: false,
            forced: false,
            delivery_id: String::new(),
        };
        let envelope = Envelope::new(
            EventKind::UpstreamChanged,
            deterministic_id(&["git", &branch.identity, &full_ref, &commit]),
            CE_SOURCE,
            None,
            None,
        );
        let event = pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::GitRef(change)),
            source: EVENT_SOURCE.to_string(),
            received_at_ms: now_ms(),
        };
        let subject = self.sink.names().upstream_git_subject();
        match self.sink.publish(subject, envelope, event).await {
            Ok(()) => {
                self.seen.insert(key, commit.clone());
                self.stats.update_git(|counters| counters.changes += 1);
                tracing::info!(
                    repository = %branch.identity,
                    branch = %branch.branch,
                    %commit,
                    previous = if old_commit.is_empty() { "(first seen)" } else { old_commit.as_str() },
                    "polled branch moved"
                );
            }
            Err(error) => {
                self.stats.update_git(|counters| counters.errors += 1);
                tracing::warn!(repository = %branch.identity, branch = %branch.branch, %error, "failed to publish a polled branch change, will retry");
            }
        }
    }
}

/// The commit `refs/heads/<branch>` of `url` points at (`None` when there is no such
/// branch), from `git ls-remote`.
async fn ls_remote_branch(url: &str, branch: &str) -> Result<Option<String>, String> {
    let full_ref = format!("refs/heads/{branch}");
    let output = tokio::time::timeout(
        GIT_TIMEOUT,
        tokio::process::Command::new("git")
            .args(["ls-remote", "--", url, &full_ref])
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("git ls-remote timed out after {}s", GIT_TIMEOUT.as_secs()))?
    .map_err(|error| format!("cannot run git: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "git ls-remote failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(parse_ls_remote(&String::from_utf8_lossy(&output.stdout), &full_ref))
}

/// The commit of `full_ref` in `git ls-remote` output.
fn parse_ls_remote(output: &str, full_ref: &str) -> Option<String> {
    output
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(_, name)| name.trim_end() == full_ref)
        .map(|(commit, _)| commit.trim().to_string())
        .filter(|commit| !commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A token bucket counting requests: it holds `requests_per_minute` and refills at
/// `requests_per_minute / 60` per second. Spending may overdraw it (a probe's token request
/// is only known afterwards); the overdraft is waited off before the next request.
#[derive(Debug, Clone)]
struct Budget {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl Budget {
    fn new(requests_per_minute: u32, now: Instant) -> Self {
        let capacity = f64::from(requests_per_minute.max(1));
        Self {
            capacity,
            per_second: capacity / 60.0,
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.updated {
            let elapsed = now.duration_since(self.updated).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
            self.updated = now;
        }
    }

    /// How long until one request may be made.
    fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_second)
        }
    }

    /// Takes `requests` from the bucket.
    fn spend(&mut self, now: Instant, requests: u64) {
        self.refill(now);
        self.tokens -= requests as f64;
    }
}

/// Back-off after `429`s.
#[derive(Debug, Default)]
struct Backoff {
    /// Consecutive `429`s (reset by any other answer).
    consecutive: u32,
}

impl Backoff {
    /// The pause after one more `429`: its `Retry-After` (within
    /// [`MIN_RETRY_AFTER`]..=[`MAX_RETRY_AFTER`]), else 2^n s (n = consecutive 429s) capped
    /// at [`MAX_BACKOFF`]. Jitter is added by the caller.
    fn rate_limited(&mut self, retry_after: Option<Duration>) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        match retry_after {
            Some(delay) => delay.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER),
            None => exponential_backoff(self.consecutive),
        }
    }

    fn reset(&mut self) {
        self.consecutive = 0;
    }
}

/// 2^n seconds, at most [`MAX_BACKOFF`].
fn exponential_backoff(consecutive: u32) -> Duration {
    let seconds = 1u64.checked_shl(consecutive).unwrap_or(u64::MAX);
    Duration::from_secs(seconds).min(MAX_BACKOFF)
}

/// The most jitter added to `pause`: a tenth of it, and at least half a second.
fn jitter_bound(pause: Duration) -> Duration {
    (pause / 10).max(Duration::from_millis(500))
}

/// xorshift64* — jitter needs spread, not cryptographic quality.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new(salt: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0);
        // FNV-1a of the salt, so tasks started in the same nanosecond differ.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in salt.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        Self::seeded(nanos ^ hash ^ u64::from(std::process::id()))
    }

    fn seeded(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, bound)`.
    fn below(&mut self, bound: Duration) -> Duration {
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next() % nanos)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rebake_config::ImageSpec;

    use super::*;
    use crate::testing::FakeSink;

    #[test]
    fn budget_allows_a_minutes_worth_then_refills() {
        let start = Instant::now();
        let mut budget = Budget::new(60, start);
        for _ in 0..60 {
            assert_eq!(budget.wait(start), Duration::ZERO);
            budget.spend(start, 1);
        }
        assert_eq!(
            budget.wait(start),
            Duration::from_secs(1),
            "60/min refills one a second"
        );
        assert_eq!(
            budget.wait(start + Duration::from_millis(500)),
            Duration::from_millis(500)
        );
        assert_eq!(budget.wait(start + Duration::from_secs(1)), Duration::ZERO);
        // Never more than the capacity, however long it was idle.
        let later = start + Duration::from_secs(3600);
        budget.spend(later, 60);
        assert_eq!(budget.wait(later), Duration::from_secs(1));
    }

    #[test]
    fn budget_counts_token_requests_as_overdraft() {
        let start = Instant::now();
        let mut budget = Budget::new(6, start); // one every 10 s
        budget.spend(start, 6);
        assert_eq!(budget.wait(start), Duration::from_secs(10));
        // A probe that needed a token: three requests, two more than were available.
        let now = start + Duration::from_secs(10);
        budget.spend(now, 3);
        assert_eq!(budget.wait(now), Duration::from_secs(30));
    }

    #[test]
    fn budget_of_one_request_per_minute() {
        let start = Instant::now();
        let mut budget = Budget::new(1, start);
        budget.spend(start, 1);
        assert_eq!(budget.wait(start), Duration::from_secs(60));
        // Zero is treated as one (config refuses zero anyway).
        let mut zero = Budget::new(0, start);
        zero.spend(start, 1);
        assert_eq!(zero.wait(start), Duration::from_secs(60));
    }

    #[test]
    fn backoff_honours_retry_after_within_bounds() {
        let mut backoff = Backoff::default();
        assert_eq!(
            backoff.rate_limited(Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(backoff.rate_limited(Some(Duration::ZERO)), MIN_RETRY_AFTER);
        assert_eq!(backoff.rate_limited(Some(Duration::from_secs(86_400))), MAX_RETRY_AFTER);
        assert_eq!(backoff.consecutive, 3);
        backoff.reset();
        assert_eq!(backoff.consecutive, 0);
    }

    #[test]
    fn backoff_without_retry_after_doubles_up_to_ten_minutes() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u64> = (0..12).map(|_| backoff.rate_limited(None).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]);
        backoff.reset();
        assert_eq!(backoff.rate_limited(None), Duration::from_secs(2));
        assert_eq!(exponential_backoff(64), MAX_BACKOFF);
        assert_eq!(exponential_backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn jitter_stays_within_its_bound_and_spreads() {
        assert_eq!(jitter_bound(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(jitter_bound(Duration::from_secs(600)), Duration::from_secs(60));
        let mut jitter = Jitter::seeded(42);
        let bound = Duration::from_millis(500);
        let samples: Vec<Duration> = (0..1000).map(|_| jitter.below(bound)).collect();
        assert!(samples.iter().all(|sample| *sample < bound));
        let low = samples.iter().filter(|sample| **sample < bound / 2).count();
        assert!(
            (350..650).contains(&low),
            "roughly uniform: {low} of 1000 in the lower half"
        );
        assert_eq!(jitter.below(Duration::ZERO), Duration::ZERO);
        assert_ne!(Jitter::seeded(0).next(), 0);
    }

    #[test]
    fn ls_remote_output_is_parsed() {
        let output = "0123456789abcdef0123456789abcdef01234567\trefs/heads/main\n\
                      89abcdef0123456789abcdef0123456789abcdef\trefs/heads/main-old\n";
        assert_eq!(
            parse_ls_remote(output, "refs/heads/main").as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(parse_ls_remote(output, "refs/heads/dev"), None);
        assert_eq!(parse_ls_remote("", "refs/heads/main"), None);
        assert_eq!(parse_ls_remote("garbage\trefs/heads/main\n", "refs/heads/main"), None);
    }

    /// A spec written as JSON (the catalog's YAML is a superset).
    fn spec(json: &str) -> (PathBuf, ImageSpec) {
        (
            PathBuf::from("test.yaml"),
            serde_json::from_str(json).expect("valid spec"),
        )
    }

    #[test]
    fn targets_come_from_the_catalog_without_rebakes_own_images() {
        let catalog = Catalog::from_specs(vec![
            spec(
                r#"{"name":"app","base":"registry.example:5000/base:v1",
                    "sources":[{"url":"https://github.com/Octo/App.git","ref":"main"}],
                    "publish":{"repository":"registry.example:5000/apps/app","tags":["latest"]}}"#,
            ),
            spec(
                r#"{"name":"child","base":"registry.example:5000/apps/app:latest",
                    "sources":[{"url":"https://github.com/Octo/App.git","ref":"main"},
                               {"url":"/srv/git/tools","ref":"release","repo":"git.example/tools"}],
                    "publish":{"repository":"registry.example:5000/apps/child"}}"#,
            ),
            spec(
                r#"{"name":"other","base":"ghcr.io/acme/runtime",
                    "publish":{"repository":"registry.example:5000/apps/other"}}"#,
            ),
            spec(
                r#"{"name":"same-base","base":"registry.example:5000/base:v1",
                    "publish":{"repository":"registry.example:5000/apps/same"}}"#,
            ),
            spec(
                r#"{"name":"pinned","base":"registry.example:5000/base@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "publish":{"repository":"registry.example:5000/apps/pinned"}}"#,
            ),
            spec(r#"{"name":"scratchy","base":"scratch","publish":{"repository":"registry.example:5000/apps/s"}}"#),
        ])
        .unwrap();
        let targets = PollTargets::from_catalog(&catalog);
        assert_eq!(
            targets.tags,
            ["ghcr.io/acme/runtime:latest", "registry.example:5000/base:v1"],
            "apps/app:latest is Rebake's own; pinned and scratch bases are not polled"
        );
        assert_eq!(
            targets.branches,
            [
                TrackedBranch {
                    url: "/srv/git/tools".into(),
                    identity: "git.example/tools".into(),
                    branch: "release".into(),
                },
                TrackedBranch {
                    url: "https://github.com/Octo/App.git".into(),
                    identity: "github.com/octo/app".into(),
                    branch: "main".into(),
                },
            ]
        );
        assert!(!targets.is_empty());
        assert!(PollTargets::from_catalog(&Catalog::default()).is_empty());
    }

    use rebake_testkit::git;

    #[tokio::test]
    async fn moved_branches_are_published_once_per_commit() {
        let dir = tempfile_dir();
        let repo = dir.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(repo.join("a"), "1").unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "--quiet", "-m", "one"]);
        let first = git(&repo, &["rev-parse", "HEAD"]);

        let sink = FakeSink::new();
        let stats = Arc::new(PollStats::default());
        let mut poller = GitPoller {
            sink: sink.clone(),
            branches: vec![
                TrackedBranch {
                    url: repo.display().to_string(),
                    identity: "git.example/repo".into(),
                    branch: "main".into(),
                },
                TrackedBranch {
                    url: repo.display().to_string(),
                    identity: "git.example/repo".into(),
                    branch: "missing".into(),
                },
            ],
            seen: HashMap::new(),
            stats: stats.clone(),
        };
        poller.check(0).await;
        poller.check(0).await;
        poller.check(1).await;
        std::fs::write(repo.join("a"), "2").unwrap();
        git(&repo, &["commit", "--quiet", "-am", "two"]);
        let second = git(&repo, &["rev-parse", "HEAD"]);
        poller.check(0).await;
        poller.check(1).await;

        let published = sink.published();
        assert_eq!(published.len(), 2, "unchanged branch publishes nothing");
        let commits: Vec<(String, String)> = published
            .iter()
            .map(|(subject, _, event)| {
                assert_eq!(subject, "rebake.upstream.git");
                assert_eq!(event.source, "poll");
                let Some(pb::upstream_changed::Change::GitRef(change)) = &event.change else {
                    panic!("not a git change: {event:?}");
                };
                assert_eq!(change.repository, "git.example/repo");
                assert_eq!(change.ref_kind, "branch");
                assert_eq!(change.ref_name, "main");
                (change.old_commit.clone(), change.new_commit.clone())
            })
            .collect();
        assert_eq!(commits, [(String::new(), first.clone()), (first, second.clone())]);
        assert_eq!(
            published[1].1.id,
            deterministic_id(&["git", "git.example/repo", "refs/heads/main", &second])
        );
        assert_eq!(
            stats.git(),
            GitCounters {
                checks: 5,
                changes: 2,
                errors: 0
            },
            "a missing branch is not an error"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn ls_remote_of_a_missing_repository_is_an_error() {
        let dir = tempfile_dir();
        let error = ls_remote_branch(&dir.join("nope").display().to_string(), "main")
            .await
            .unwrap_err();
        assert!(error.contains("git ls-remote failed"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rebake-poll-{}-{}",
            std::process::id(),
            Jitter::new("dir").next()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
