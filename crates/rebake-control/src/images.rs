//! The image view: catalog entry + image state + last build record, joined into one
//! `control::v1::Image`, and the `ListImages` filter.

use futures::{StreamExt as _, TryStreamExt as _};
use rebake_bus::{Bus, BusError, Kv};
use rebake_events::{
    Bucket, ImageName,
    state::{BuildRecord, ImageState},
};
use rebake_proto::control::v1 as api;
use serde::Deserialize;

use crate::{ControlError, Result};

/// How many KV reads run at once while listing.
const READ_CONCURRENCY: usize = 16;

/// Every status an image can have, as the API spells it.
pub(crate) const STATUSES: [&str; 5] = ["new", "waiting", "building", "published", "failed"];

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
    }
}

/// The API's `Build` for build `build_id`; only the id when its record is missing.
fn build_view(build_id: &str, record: Option<&BuildRecord>) -> api::Build {
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
    }
}

/// The image name of a catalog entry: the spec's name when valid, else the key read back
/// (kv keys are names with `/` written as `.`, and names never contain dots).
fn entry_name(key: &str, entry: &CatalogDoc) -> String {
    match ImageName::new(entry.spec.name.clone()) {
        Ok(name) => name.to_string(),
        Err(_) => key.replace('.', "/"),
    }
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
        if !status.is_empty() && !STATUSES.contains(&status) {
            return Err(ControlError::InvalidArgument {
                field: "status",
                reason: format!("unknown status {status:?}, expected one of {}", STATUSES.join(", ")),
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
        self.matches_name(&image.name) && self.status.as_ref().is_none_or(|status| *status == image.status)
    }
}

// === reading from KV ===

/// Reads images from the catalog, images and builds buckets.
#[derive(Clone, Debug)]
pub(crate) struct ImageStore {
    catalog: Kv,
    images: Kv,
    builds: Kv,
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

    /// Every catalog image passing `filter`, sorted by name. Corrupt catalog entries are
    /// skipped and corrupt states shown as status `unknown`, each with a warning.
    pub(crate) async fn list(&self, filter: &ImageFilter) -> Result<Vec<api::Image>> {
        let keys = self.catalog.keys().await?;
        let loaded: Vec<Option<api::Image>> = futures::stream::iter(keys)
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
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut images: Vec<api::Image> = loaded.into_iter().flatten().collect();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
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
