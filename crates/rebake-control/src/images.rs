//! The image view: catalog entry + image state + last build record, joined into one
//! `control::v1::Image`, and the `ListImages` filter.

use futures::{StreamExt as _, TryStreamExt as _};
use rebake_bus::{Bus, BusError, Kv};
use rebake_events::{
    Bucket, ImageName,
    state::{BuildRecord, ImageState, PackageRecord, PublishedImage, ScanReport, scan_key},
};
use rebake_proto::control::v1 as api;
use serde::Deserialize;

use crate::{ControlError, Result};

/// How many KV reads run at once while listing.
const READ_CONCURRENCY: usize = 16;

/// Every status an image can have, as the API spells it.
pub(crate) const STATUSES: [&str; 5] = ["new", "waiting", "building", "published", "failed"];

/// The `ListImages` status filter for paused images (not a status of its own: a paused image
/// keeps the status it had).
const PAUSED: &str = "paused";

/// Default and largest `ListImages` page.
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

/// Status shown when an image's state document cannot be read.
const UNKNOWN_STATUS: &str = "unknown";

// === catalog documents ===

/// A catalog entry as the resolver stores it (bucket `catalog`, key = image kv key).
///
/// Same shape as the resolver's `CatalogEntry`, read leniently: only the fields the control
/// API shows, unknown fields ignored, missing ones defaulted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct CatalogDoc {
    pub(crate) spec: SpecDoc,
    pub(crate) parent: Option<String>,
    pub(crate) children: Vec<String>,
}

/// The part of an image spec the control API shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct SpecDoc {
    pub(crate) name: String,
    pub(crate) base: String,
    pub(crate) publish: PublishDoc,
}

/// `publish:` of an image spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct PublishDoc {
    pub(crate) repository: String,
    pub(crate) tags: Vec<String>,
}

// === the joined view ===

/// Joins what is known about one image into the API's `Image`.
///
/// A missing state means the resolver never looked at the image: status `new`.
pub(crate) fn image_view(
    name: &str,
    entry: &CatalogDoc,
    state: Option<&ImageState>,
    last_build: Option<&BuildRecord>,
) -> api::Image {
    let default_state = ImageState::default();
    let state = state.unwrap_or(&default_state);
    let published = state.published.as_ref();
    let repository = if entry.spec.publish.repository.is_empty() {
        published
            .map(|published| published.repository.clone())
            .unwrap_or_default()
    } else {
        entry.spec.publish.repository.clone()
    };
    let tags = if entry.spec.publish.tags.is_empty() {
        published.map(|published| published.tags.clone()).unwrap_or_default()
    } else {
        entry.spec.publish.tags.clone()
    };
    let base_ref = if entry.spec.base.is_empty() {
        "scratch".to_string()
    } else {
        entry.spec.base.clone()
    };
    let last_build = if state.last_build_id.is_empty() {
        None
    } else {
        Some(build_view(&state.last_build_id, last_build))
    };
    api::Image {
        name: name.to_string(),
        status: state.status.as_str().to_string(),
        base_ref,
        repository,
        tags,
        published_digest: published.map(|p| p.digest.clone()).unwrap_or_default(),
        base_digest: published.map(|p| p.base_digest.clone()).unwrap_or_default(),
        sources: published
            .map(|p| {
                p.sources
                    .iter()
                    .map(|source| api::SourceCommit {
                        url: source.url.clone(),
                        ref_name: source.ref_name.clone(),
                        commit: source.commit.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        published_inputs_hash: published.map(|p| p.inputs_hash.clone()).unwrap_or_default(),
        desired_inputs_hash: state.desired_inputs_hash.clone(),
        last_build,
        status_reason: state.status_reason.clone(),
        parent: entry.parent.clone().unwrap_or_default(),
        children: entry.children.clone(),
        published_at_ms: published.map(|p| p.published_at_ms).unwrap_or_default(),
        paused: state.paused,
        paused_reason: state.paused_reason.clone(),
        ..Default::default()
    }
}

/// The API's `Build` for build `build_id`; only the id when its record is missing.
pub(crate) fn build_view(build_id: &str, record: Option<&BuildRecord>) -> api::Build {
    let Some(record) = record else {
        return api::Build {
            build_id: build_id.to_string(),
            ..Default::default()
        };
    };
    api::Build {
        build_id: build_id.to_string(),
        status: record.status.clone(),
        inputs_hash: record.inputs_hash.clone(),
        digest: record.digest.clone(),
        reason: record.reason.clone(),
        requested_at_ms: record.requested_at_ms,
        finished_at_ms: record.finished_at_ms,
        causes: record
            .causes
            .iter()
            .map(|cause| format!("{}: {}", cause.kind, cause.description))
            .collect(),
        image: record.image.clone(),
    }
}

/// The image name of a catalog entry: the spec's name when valid, else the key read back
/// (kv keys are names with `/` written as `.`, and names never contain dots).
pub(crate) fn entry_name(key: &str, entry: &CatalogDoc) -> String {
    match ImageName::new(entry.spec.name.clone()) {
        Ok(name) => name.to_string(),
        Err(_) => key.replace('.', "/"),
    }
}

// === GetImage extras ===

/// Every publication of an image, newest first: its published builds, the live one dated by
/// the image state's `published_at_ms`, the others by the build's `finished_at_ms`.
pub(crate) fn history(builds: &[BuildRecord], published: &PublishedImage) -> Vec<api::PublishedDigest> {
    let mut history: Vec<api::PublishedDigest> = builds
        .iter()
        .filter(|build| build.status == "published")
        .map(|build| {
            let live = build.build_id == published.build_id;
            api::PublishedDigest {
                digest: if build.digest.is_empty() && live {
                    published.digest.clone()
                } else {
                    build.digest.clone()
                },
                build_id: build.build_id.clone(),
                published_at_ms: if live && published.published_at_ms > 0 {
                    published.published_at_ms
                } else {
                    build.finished_at_ms
                },
                base_digest: build.base_digest.clone(),
            }
        })
        .collect();
    history.sort_by(|a, b| {
        b.published_at_ms
            .cmp(&a.published_at_ms)
            .then_with(|| b.build_id.cmp(&a.build_id))
    });
    history
}

/// What the published image installs from package feeds.
pub(crate) fn packages_summary(packages: &[PackageRecord]) -> api::PackagesSummary {
    let mut feeds: Vec<String> = packages
        .iter()
        .map(|package| package.feed.clone())
        .filter(|feed| !feed.is_empty())
        .collect();
    feeds.sort();
    feeds.dedup();
    let mut sorted: Vec<&PackageRecord> = packages.iter().collect();
    sorted.sort();
    api::PackagesSummary {
        count: packages.len() as i64,
        feeds,
        packages: sorted.into_iter().map(crate::builds::package_view).collect(),
    }
}

/// A scan report, counted.
pub(crate) fn findings_summary(build_id: &str, report: &ScanReport) -> api::FindingsSummary {
    let mut summary = api::FindingsSummary {
        build_id: build_id.to_string(),
        passed: report.passed,
        total: report.findings.len() as i64,
        ..Default::default()
    };
    for finding in &report.findings {
        match finding.severity.to_ascii_lowercase().as_str() {
            "critical" => summary.critical += 1,
            "high" => summary.high += 1,
            "medium" => summary.medium += 1,
            "low" => summary.low += 1,
            _ => summary.other += 1,
        }
        if finding.fixed_version.as_ref().is_some_and(|fixed| !fixed.is_empty()) {
            summary.fixable += 1;
        }
    }
    summary
}

/// `signed` when the published build's record has a successful `sign` stage, else `unsigned`.
pub(crate) fn signature_status(published: Option<&BuildRecord>) -> &'static str {
    let signed = published.is_some_and(|build| build.stages.iter().any(|stage| stage.name == "sign" && stage.ok));
    if signed { "signed" } else { "unsigned" }
}

/// The first `size` images and the token naming the last of them, when more follow.
fn paginate(mut images: Vec<api::Image>, size: usize) -> (Vec<api::Image>, String) {
    if images.len() <= size {
        return (images, String::new());
    }
    images.truncate(size);
    let token = images
        .last()
        .map(|last| crate::builds::encode_token("after", &last.name))
        .unwrap_or_default();
    (images, token)
}

// === filter ===

/// What `ListImages` keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageFilter {
    name_prefix: String,
    status: Option<String>,
}

impl ImageFilter {
    /// Validates a request's filter.
    pub(crate) fn from_request(request: &api::ListImagesRequest) -> Result<Self> {
        let status = request.status.trim();
        if !status.is_empty() && !STATUSES.contains(&status) && status != PAUSED {
            return Err(ControlError::InvalidArgument {
                field: "status",
                reason: format!(
                    "unknown status {status:?}, expected one of {}, {PAUSED}",
                    STATUSES.join(", ")
                ),
            });
        }
        Ok(Self {
            name_prefix: request.name_prefix.clone(),
            status: (!status.is_empty()).then(|| status.to_string()),
        })
    }

    /// Whether the name passes (checked before any state is read).
    pub(crate) fn matches_name(&self, name: &str) -> bool {
        name.starts_with(&self.name_prefix)
    }

    /// Whether the whole image passes.
    pub(crate) fn matches(&self, image: &api::Image) -> bool {
        self.matches_name(&image.name)
            && self.status.as_ref().is_none_or(|status| {
                if status == PAUSED {
                    image.paused
                } else {
                    *status == image.status
                }
            })
    }
}

// === reading from KV ===

/// Reads images from the catalog, images and builds buckets.
#[derive(Clone, Debug)]
pub(crate) struct ImageStore {
    pub(crate) catalog: Kv,
    pub(crate) images: Kv,
    pub(crate) builds: Kv,
}

/// How strictly an image is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// Any corrupt document fails the read (`GetImage`).
    Strict,
    /// A corrupt state or build record is logged and shown as unknown (`ListImages`: one bad
    /// document must not hide every other image).
    Lenient,
}

impl ImageStore {
    /// Opens the buckets.
    pub(crate) async fn open(bus: &Bus) -> Result<Self> {
        Ok(Self {
            catalog: bus.kv(Bucket::Catalog).await?,
            images: bus.kv(Bucket::Images).await?,
            builds: bus.kv(Bucket::Builds).await?,
        })
    }

    /// One page of the catalog images passing `filter`, sorted by name, and the token of the
    /// next page (empty on the last one). The token holds the last name returned, so pages
    /// stay consistent while images come and go. Candidates are read in name order, a chunk
    /// at a time, only until the page is full. Corrupt catalog entries are skipped and
    /// corrupt states shown as status `unknown`, each with a warning.
    pub(crate) async fn list(
        &self,
        filter: &ImageFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<api::Image>, String)> {
        let size = crate::builds::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = crate::builds::decode_token("after", page_token)?;
        let mut keys: Vec<(String, String)> = self
            .catalog
            .keys()
            .await?
            .into_iter()
            .map(|key| (key.replace('.', "/"), key))
            .filter(|(name, _)| filter.matches_name(name))
            .filter(|(name, _)| after.as_ref().is_none_or(|after| name.as_str() > after.as_str()))
            .collect();
        keys.sort();
        let mut images: Vec<api::Image> = Vec::new();
        let chunk = (size + 1).clamp(READ_CONCURRENCY, MAX_PAGE_SIZE + 1);
        for candidates in keys.chunks(chunk) {
            let candidates: Vec<String> = candidates.iter().map(|(_, key)| key.clone()).collect();
            let loaded: Vec<Option<api::Image>> = futures::stream::iter(candidates)
                .map(|key| {
                    let store = self.clone();
                    let filter = filter.clone();
                    async move {
                        let entry = match store.catalog.get::<CatalogDoc>(&key).await {
                            Ok(Some(entry)) => entry,
                            Ok(None) => return Ok(None),
                            Err(error @ BusError::Corrupt { .. }) => {
                                tracing::warn!(key, error = %error, "skipping unreadable catalog entry");
                                return Ok(None);
                            }
                            Err(error) => return Err(ControlError::from(error)),
                        };
                        let name = entry_name(&key, &entry);
                        if !filter.matches_name(&name) {
                            return Ok(None);
                        }
                        let image = store.load(&name, &key, &entry, Strictness::Lenient).await?;
                        Ok(filter.matches(&image).then_some(image))
                    }
                })
                .buffered(READ_CONCURRENCY)
                .try_collect()
                .await?;
            images.extend(loaded.into_iter().flatten());
            if images.len() > size {
                break;
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(paginate(images, size))
    }

    /// Every readable catalog entry with its image name (corrupt ones skipped, logged).
    pub(crate) async fn entries(&self) -> Result<Vec<(String, CatalogDoc)>> {
        let keys = self.catalog.keys().await?;
        let loaded = crate::kvread::read_lenient::<CatalogDoc>(&self.catalog, keys, "catalog entry").await?;
        Ok(loaded
            .into_iter()
            .map(|(key, entry)| (entry_name(&key, &entry), entry))
            .collect())
    }

    /// The state of image `name` (`None` when never planned; unreadable ones logged, `None`).
    pub(crate) async fn state_lenient(&self, name: &str) -> Result<Option<ImageState>> {
        let key = name.replace('/', ".");
        match self.images.get::<ImageState>(&key).await {
            Ok(state) => Ok(state),
            Err(error @ BusError::Corrupt { .. }) => {
                tracing::warn!(image = name, error = %error, "image state is unreadable");
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// `GetImage`: the image with its publication history, packages, findings summary and
    /// signature status (which `ListImages` leaves out to stay cheap).
    pub(crate) async fn get_detailed(&self, name: &str) -> Result<api::Image> {
        let mut image = self.get(name).await?;
        let state = self.images.get::<ImageState>(&name.trim().replace('/', ".")).await?;
        let Some(published) = state.and_then(|state| state.published) else {
            return Ok(image);
        };
        let mut builds: Vec<BuildRecord> = crate::builds::all_builds(&self.builds)
            .await?
            .into_iter()
            .filter(|build| build.image == image.name && build.status == "published")
            .collect();
        if !published.build_id.is_empty() && !builds.iter().any(|build| build.build_id == published.build_id) {
            // The published build's record is gone: still show what is live.
            builds.push(BuildRecord {
                build_id: published.build_id.clone(),
                image: image.name.clone(),
                status: "published".to_string(),
                digest: published.digest.clone(),
                base_digest: published.base_digest.clone(),
                finished_at_ms: published.published_at_ms,
                ..Default::default()
            });
        }
        image.history = history(&builds, &published);
        image.packages = Some(packages_summary(&published.packages));
        let published_record = builds.iter().find(|build| build.build_id == published.build_id);
        image.signature_status = signature_status(published_record).to_string();
        if !published.build_id.is_empty()
            && let Some(report) = self.builds.get::<ScanReport>(&scan_key(&published.build_id)).await?
        {
            image.findings = Some(findings_summary(&published.build_id, &report));
        }
        Ok(image)
    }

    /// One image; [`ControlError::NotFound`] when it is not in the catalog.
    pub(crate) async fn get(&self, name: &str) -> Result<api::Image> {
        let image_name = ImageName::new(name).map_err(|error| ControlError::invalid_image("name", error))?;
        let key = image_name.kv_key();
        let entry = self
            .catalog
            .get::<CatalogDoc>(&key)
            .await?
            .ok_or_else(|| ControlError::NotFound { name: name.to_string() })?;
        self.load(image_name.as_str(), &key, &entry, Strictness::Strict).await
    }

    async fn load(&self, name: &str, key: &str, entry: &CatalogDoc, strictness: Strictness) -> Result<api::Image> {
        let state = match self.images.get::<ImageState>(key).await {
            Ok(state) => state,
            Err(error @ BusError::Corrupt { .. }) if strictness == Strictness::Lenient => {
                tracing::warn!(image = name, error = %error, "image state is unreadable");
                let mut image = image_view(name, entry, None, None);
                image.status = UNKNOWN_STATUS.to_string();
                image.status_reason = format!("image state is unreadable: {error}");
                return Ok(image);
            }
            Err(error) => return Err(error.into()),
        };
        let last_build_id = state
            .as_ref()
            .map(|state| state.last_build_id.as_str())
            .unwrap_or_default();
        let record = if last_build_id.is_empty() {
            None
        } else {
            match self.builds.get::<BuildRecord>(last_build_id).await {
                Ok(record) => record,
                Err(error @ BusError::Corrupt { .. }) if strictness == Strictness::Lenient => {
                    tracing::warn!(image = name, build_id = last_build_id, error = %error, "build record is unreadable");
                    None
                }
                Err(error) => return Err(error.into()),
            }
        };
        Ok(image_view(name, entry, state.as_ref(), record.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use rebake_events::state::{CauseRecord, ImageStatus, PublishedImage, SourceRevision};

    use super::*;

    fn entry() -> CatalogDoc {
        serde_json::from_value(serde_json::json!({
            "spec": {
                "name": "apps/web",
                "base": "127.0.0.1:5000/base:v1",
                "sources": [{"url": "file:///src", "ref": "main"}],
                "config": {"entrypoint": ["/app"]},
                "publish": {"repository": "127.0.0.1:5000/apps/web", "tags": ["latest", "v1"]},
                "something_new": 1
            },
            "parent": "base",
            "children": ["apps/web-debug"]
        }))
        .unwrap()
    }

    #[test]
    fn statuses_match_the_state_enum() {
        let all = [
            ImageStatus::New,
            ImageStatus::Waiting,
            ImageStatus::Building,
            ImageStatus::Published,
            ImageStatus::Failed,
        ];
        assert_eq!(all.map(ImageStatus::as_str), STATUSES);
    }

    #[test]
    fn catalog_entries_read_leniently() {
        let entry = entry();
        assert_eq!(entry.spec.base, "127.0.0.1:5000/base:v1");
        assert_eq!(entry.spec.publish.tags, ["latest", "v1"]);
        assert_eq!(entry.parent.as_deref(), Some("base"));
        assert_eq!(entry_name("apps.web", &entry), "apps/web");
        let bare: CatalogDoc = serde_json::from_str("{}").unwrap();
        assert_eq!(entry_name("apps.web", &bare), "apps/web");
    }

    #[test]
    fn missing_state_is_new() {
        let image = image_view("apps/web", &entry(), None, None);
        assert_eq!(image.status, "new");
        assert_eq!(image.base_ref, "127.0.0.1:5000/base:v1");
        assert_eq!(image.repository, "127.0.0.1:5000/apps/web");
        assert_eq!(image.parent, "base");
        assert_eq!(image.children, ["apps/web-debug"]);
        assert!(image.last_build.is_none());
        assert!(image.published_digest.is_empty());
    }

    #[test]
    fn state_and_build_are_joined() {
        let state = ImageState {
            name: "apps/web".into(),
            status: ImageStatus::Failed,
            status_reason: "scan denied".into(),
            desired_inputs_hash: "sha256:desired".into(),
            published: Some(PublishedImage {
                digest: "sha256:pub".into(),
                inputs_hash: "sha256:old".into(),
                base_digest: "sha256:base".into(),
                sources: vec![SourceRevision {
                    url: "file:///src".into(),
                    ref_name: "main".into(),
                    commit: "abc".into(),
                }],
                published_at_ms: 42,
                ..Default::default()
            }),
            last_build_id: "b2".into(),
            ..Default::default()
        };
        let record = BuildRecord {
            build_id: "b2".into(),
            status: "failed".into(),
            reason: "policy".into(),
            inputs_hash: "sha256:desired".into(),
            causes: vec![CauseRecord {
                kind: "registry-tag".into(),
                description: "base:v1 -> sha256:x".into(),
                ..Default::default()
            }],
            requested_at_ms: 1,
            finished_at_ms: 2,
            ..Default::default()
        };
        let image = image_view("apps/web", &entry(), Some(&state), Some(&record));
        assert_eq!(image.status, "failed");
        assert_eq!(image.published_digest, "sha256:pub");
        assert_eq!(image.published_inputs_hash, "sha256:old");
        assert_eq!(image.desired_inputs_hash, "sha256:desired");
        assert_eq!(image.sources[0].commit, "abc");
        assert_eq!(image.published_at_ms, 42);
        let build = image.last_build.unwrap();
        assert_eq!(build.build_id, "b2");
        assert_eq!(build.status, "failed");
        assert_eq!(build.causes, ["registry-tag: base:v1 -> sha256:x"]);
        assert_eq!((build.requested_at_ms, build.finished_at_ms), (1, 2));

        let without_record = image_view("apps/web", &entry(), Some(&state), None);
        assert_eq!(without_record.last_build.unwrap().build_id, "b2");
    }

    #[test]
    fn scratch_when_base_is_empty() {
        let image = image_view("a", &CatalogDoc::default(), None, None);
        assert_eq!(image.base_ref, "scratch");
    }

    #[test]
    fn filter() {
        let request = |prefix: &str, status: &str| api::ListImagesRequest {
            name_prefix: prefix.into(),
            status: status.into(),
            ..Default::default()
        };
        let image = |name: &str, status: &str| api::Image {
            name: name.into(),
            status: status.into(),
            ..Default::default()
        };
        let all = ImageFilter::from_request(&request("", "")).unwrap();
        assert!(all.matches(&image("apps/web", "new")));
        let apps = ImageFilter::from_request(&request("apps/", "")).unwrap();
        assert!(apps.matches(&image("apps/web", "new")));
        assert!(!apps.matches(&image("base", "new")));
        let failed = ImageFilter::from_request(&request("", "failed")).unwrap();
        assert!(failed.matches(&image("base", "failed")));
        assert!(!failed.matches(&image("base", "published")));
        let both = ImageFilter::from_request(&request("apps", " published ")).unwrap();
        assert!(both.matches(&image("apps/web", "published")));
        assert!(!both.matches(&image("apps/web", "failed")));
        assert!(!both.matches(&image("base", "published")));
        assert!(matches!(
            ImageFilter::from_request(&request("", "broken")),
            Err(ControlError::InvalidArgument { field: "status", .. })
        ));
    }
}
