//! The shared HTTP side of every configured webhook source (`ingress.sources`): one route,
//! `POST /v1/hooks/<source>` (or `/v1/hooks/<source>/<secret>` for senders that can only
//! put a secret in the URL), in front of the per-sender [`crate::senders`] functions.
//!
//! For each request, in this order:
//!
//! 1. the source is looked up by name (404 when there is none) and counted as received;
//! 2. the body is read up to `max_body_bytes` (413 before parsing when larger);
//! 3. the sender's verification runs on the raw bytes (401), then its parser (400 with the
//!    reason for a malformed known event; 202 and a log line for an event type Rebake
//!    does not read, so senders do not disable the hook);
//! 4. a delivery id seen before is a replay: answered 200 and not published again;
//! 5. registry changes are matched against the source's configured registry (a payload
//!    naming another registry is refused), then the tag is resolved through that registry
//!    with one `HEAD` (so per-platform pushes collapse into one change of the tag's index
//!    digest, and senders that send no digest work at all). No URL from a payload is ever
//!    requested: only `<configured registry>/<repository>:<tag>`;
//! 6. every change is published and acknowledged by JetStream before the 2xx; event ids are
//!    derived from what changed (repository, ref, commit; or registry, repository, tag,
//!    digest), so the `create` and `push` Gitea sends for one tag push, or the same push
//!    from two senders, become one event.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use axum::{
    Json,
    extract::{Path, RawQuery, Request, State},
    http::StatusCode,
};
use rebake_config::WebhookKind;
use rebake_events::{Envelope, EventKind, deterministic_id, now_ms, pb};
use sha2::{Digest, Sha256};

use crate::{
    UpstreamSink,
    rejection::Rejection,
    router::{AppState, CE_SOURCE, read_body, traceparent},
    senders::{self, Change, Credentials, Inbound, Parsed, Refusal, RegistryChange},
};

/// A configured source with its secret read.
#[derive(Clone)]
pub struct SourceSettings {
    /// Path segment and metrics label.
    pub name: String,
    /// Sender kind.
    pub kind: WebhookKind,
    /// Secret, token or API key (a source with an empty one refuses everything).
    pub secret: Vec<u8>,
    /// Registry payloads are matched against and tags resolved through (registry kinds).
    pub registry: Option<String>,
    /// Where tags are resolved instead of `registry` (a mirror or proxy), if anywhere else.
    pub resolve_via: Option<String>,
    /// Header carrying the secret (ACR, ECR), when not the default.
    pub header: Option<String>,
}

impl std::fmt::Debug for SourceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("secret", &"<redacted>")
            .field("registry", &self.registry)
            .field("resolve_via", &self.resolve_via)
            .field("header", &self.header)
            .finish()
    }
}

/// A boxed future, so the lookups below can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Remembers delivery ids, so a replayed delivery is a no-op even after JetStream's
/// de-duplication window. Keys are per source.
pub trait DeliveryLog: Send + Sync + 'static {
    /// Whether `delivery_id` of `source` was accepted before.
    fn seen<'a>(&'a self, source: &'a str, delivery_id: &'a str) -> BoxFuture<'a, Result<bool, String>>;
    /// Records `delivery_id` of `source` as accepted.
    fn remember<'a>(&'a self, source: &'a str, delivery_id: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// Resolves a tag to the digest it points at now, through a configured registry.
pub trait TagLookup: Send + Sync + 'static {
    /// `Ok(Some((digest, media type)))`, `Ok(None)` when the tag does not exist.
    fn resolve<'a>(
        &'a self,
        registry: &'a str,
        repository: &'a str,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, String>>;
}

impl TagLookup for rebake_oci::Registry {
    fn resolve<'a>(
        &'a self,
        registry: &'a str,
        repository: &'a str,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, String>> {
        Box::pin(async move {
            let reference = rebake_oci::ImageRef::parse(&format!("{registry}/{repository}:{tag}"))
                .map_err(|error| error.to_string())?;
            rebake_oci::Registry::resolve(self, &reference)
                .await
                .map(|found| found.map(|resolved| (resolved.digest, resolved.media_type)))
                .map_err(|error| rebake_bus::error_chain(&error))
        })
    }
}

/// Delivery ids kept in the `deliveries` KV bucket (entries expire after its max age).
pub struct KvDeliveries(pub rebake_bus::Kv);

fn delivery_key(source: &str, delivery_id: &str) -> String {
    // Delivery ids are sender-chosen text; KV keys are restricted, so hash them.
    let digest = Sha256::digest(delivery_id.as_bytes());
    format!("{source}.{}", hex::encode(&digest[..16]))
}

impl DeliveryLog for KvDeliveries {
    fn seen<'a>(&'a self, source: &'a str, delivery_id: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            self.0
                .get::<i64>(&delivery_key(source, delivery_id))
                .await
                .map(|found| found.is_some())
                .map_err(|error| error.to_string())
        })
    }

    fn remember<'a>(&'a self, source: &'a str, delivery_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .put(&delivery_key(source, delivery_id), &now_ms())
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }
}

/// The last `capacity` delivery ids, in memory (used when no KV bucket is given).
pub struct MemoryDeliveries {
    capacity: usize,
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl MemoryDeliveries {
    /// Remembers up to `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }
}

impl DeliveryLog for MemoryDeliveries {
    fn seen<'a>(&'a self, source: &'a str, delivery_id: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        let key = delivery_key(source, delivery_id);
        let seen = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .contains(&key);
        Box::pin(async move { Ok(seen) })
    }

    fn remember<'a>(&'a self, source: &'a str, delivery_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        let key = delivery_key(source, delivery_id);
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if set.insert(key.clone()) {
            order.push_back(key);
            while order.len() > self.capacity {
                if let Some(oldest) = order.pop_front() {
                    set.remove(&oldest);
                }
            }
        }
        Box::pin(async { Ok(()) })
    }
}

/// Sources by name, with what they share.
#[derive(Clone)]
pub(crate) struct Sources {
    by_name: Arc<HashMap<String, SourceSettings>>,
    deliveries: Arc<dyn DeliveryLog>,
    tags: Option<Arc<dyn TagLookup>>,
}

impl Sources {
    pub(crate) fn new(
        sources: &[SourceSettings],
        deliveries: Arc<dyn DeliveryLog>,
        tags: Option<Arc<dyn TagLookup>>,
    ) -> Self {
        Self {
            by_name: Arc::new(
                sources
                    .iter()
                    .map(|source| (source.name.clone(), source.clone()))
                    .collect(),
            ),
            deliveries,
            tags,
        }
    }
}

type Answer = (StatusCode, Json<serde_json::Value>);

/// `POST /v1/hooks/{source}`.
pub(crate) async fn receive<S: UpstreamSink>(
    State(state): State<AppState<S>>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Answer, Rejection> {
    handle(state, source, None, query, request).await
}

/// `POST /v1/hooks/{source}/{token}`.
pub(crate) async fn receive_with_token<S: UpstreamSink>(
    State(state): State<AppState<S>>,
    Path((source, token)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Answer, Rejection> {
    handle(state, source, Some(token), query, request).await
}

async fn handle<S: UpstreamSink>(
    state: AppState<S>,
    name: String,
    path_token: Option<String>,
    query: Option<String>,
    request: Request,
) -> Result<Answer, Rejection> {
    let Some(source) = state.sources.by_name.get(&name).cloned() else {
        return Err(Rejection::NotFound(format!("no webhook source named {name:?}")));
    };
    let metrics = state.metrics.clone();
    metrics.received(&source.name, source.kind);
    let result = accept(&state, &source, path_token, query, request).await;
    match &result {
        Ok((status, _)) if *status == StatusCode::ACCEPTED => metrics.unknown(&source.name, source.kind),
        Ok(_) => metrics.accepted(&source.name, source.kind),
        Err(rejection) => {
            tracing::info!(source = %source.name, kind = %source.kind, reason = %rejection.reason(), "webhook refused");
            metrics.rejected(&source.name, source.kind, rejection.metric_reason());
        }
    }
    result
}

async fn accept<S: UpstreamSink>(
    state: &AppState<S>,
    source: &SourceSettings,
    path_token: Option<String>,
    query: Option<String>,
    request: Request,
) -> Result<Answer, Rejection> {
    if source.secret.is_empty() {
        return Err(Rejection::NotConfigured("this webhook source has no secret configured"));
    }
    state.gate()?;
    let headers = request.headers().clone();
    let parent_traceparent = traceparent(&headers);
    let body = read_body(request).await?;
    let query_token = query.as_deref().and_then(|query| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value)
    });
    let inbound = Inbound {
        headers: &headers,
        body: &body,
        path_token: path_token.as_deref(),
        query_token: query_token.as_deref(),
    };
    let credentials = Credentials {
        secret: &source.secret,
        header: source.header.as_deref(),
    };
    senders::verify(source.kind, &inbound, &credentials).map_err(refusal)?;
    let (delivery_id, changes) = match senders::parse(source.kind, &inbound).map_err(refusal)? {
        Parsed::Changes { delivery_id, changes } => (delivery_id, changes),
        Parsed::Ignored(reason) => {
            tracing::debug!(source = %source.name, reason = %reason, "webhook ignored");
            return Ok(ignored(StatusCode::OK, reason));
        }
        Parsed::Unknown(what) => {
            tracing::info!(source = %source.name, kind = %source.kind, event = %what, "webhook event type not handled, acknowledged");
            return Ok(ignored(StatusCode::ACCEPTED, format!("event {what} is not handled")));
        }
    };
    if let Some(id) = &delivery_id {
        match state.sources.deliveries.seen(&source.name, id).await {
            Ok(true) => {
                tracing::info!(source = %source.name, delivery_id = %id, "replayed delivery ignored");
                return Ok((
                    StatusCode::OK,
                    Json(serde_json::json!({ "accepted": 0, "replay": true })),
                ));
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(source = %source.name, %error, "cannot read the delivery log");
                return Err(Rejection::Unavailable("delivery log unavailable".to_string()));
            }
        }
    }
    let mut events = Vec::new();
    let mut notes = Vec::new();
    for change in changes {
        match change {
            Change::Git(change) => events.push(git_event(source, change, delivery_id.as_deref())),
            Change::Registry(change) => match registry_event(state, source, change).await? {
                Ok(event) => events.push(event),
                Err(note) => notes.push(note),
            },
        }
    }
    let accepted = events.len();
    for (subject_kind, id, event) in events {
        let names = state.sink.names();
        let subject = match subject_kind {
            SubjectKind::Git => names.upstream_git_subject(),
            SubjectKind::Registry => names.upstream_registry_subject(),
        };
        let envelope = Envelope::new(
            EventKind::UpstreamChanged,
            id,
            CE_SOURCE,
            None,
            parent_traceparent.as_deref(),
        );
        if let Err(error) = state.sink.publish(subject.clone(), envelope, event).await {
            tracing::warn!(source = %source.name, %subject, %error, "failed to publish, answering 503 so the sender retries");
            return Err(Rejection::Unavailable("failed to publish event".to_string()));
        }
    }
    if let Some(id) = &delivery_id
        && let Err(error) = state.sources.deliveries.remember(&source.name, id).await
    {
        // Published already: a replay would publish the same ids again, which JetStream
        // drops within its window and the resolver treats as no change after it.
        tracing::warn!(source = %source.name, %error, "could not record the delivery id");
    }
    tracing::debug!(source = %source.name, accepted, ignored = notes.len(), "webhook accepted");
    let mut answer = serde_json::json!({ "accepted": accepted });
    if !notes.is_empty() {
        answer["ignored"] = serde_json::json!(notes.len());
        answer["reasons"] = serde_json::json!(notes);
    }
    Ok((StatusCode::OK, Json(answer)))
}

enum SubjectKind {
    Git,
    Registry,
}

fn event_source(source: &SourceSettings) -> String {
    format!("webhook/{}/{}", source.kind, source.name)
}

fn git_event(
    source: &SourceSettings,
    mut change: pb::GitRefChanged,
    delivery_id: Option<&str>,
) -> (SubjectKind, String, pb::UpstreamChanged) {
    if change.delivery_id.is_empty() {
        change.delivery_id = delivery_id.unwrap_or_default().to_string();
    }
    let commit = if change.deleted {
        "deleted"
    } else {
        change.new_commit.as_str()
    };
    let id = deterministic_id(&["git", &change.repository, &change.ref_kind, &change.ref_name, commit]);
    let event = pb::UpstreamChanged {
        change: Some(pb::upstream_changed::Change::GitRef(change)),
        source: event_source(source),
        received_at_ms: now_ms(),
    };
    (SubjectKind::Git, id, event)
}

/// Matches a registry change against the source's registry and resolves its tag. The outer
/// error refuses the request; the inner one is a note on a change that is skipped.
async fn registry_event<S: UpstreamSink>(
    state: &AppState<S>,
    source: &SourceSettings,
    change: RegistryChange,
) -> Result<Result<(SubjectKind, String, pb::UpstreamChanged), String>, Rejection> {
    let Some(registry) = source.registry.clone() else {
        return Err(Rejection::NotConfigured(
            "this registry source has no registry configured",
        ));
    };
    if !change.registry.is_empty() && !change.registry.eq_ignore_ascii_case(&registry) {
        return Err(Rejection::BadRequest(format!(
            "payload names registry {:?}, but source {:?} is configured for {registry:?}",
            change.registry, source.name
        )));
    }
    if !senders::valid_repository(&change.repository) || !senders::valid_tag(&change.tag) {
        return Err(Rejection::BadRequest(format!(
            "invalid repository or tag {:?}:{:?}",
            change.repository, change.tag
        )));
    }
    if senders::is_own_artifact_tag(&change.tag) {
        return Ok(Err(format!(
            "{}:{} is Rebake's own artifact",
            change.repository, change.tag
        )));
    }
    let resolved = match &state.sources.tags {
        Some(tags) => {
            let via = source.resolve_via.as_deref().unwrap_or(&registry);
            tags.resolve(via, &change.repository, &change.tag).await
        }
        None => Err("no registry client".to_string()),
    };
    let (digest, media_type) = match (resolved, change.digest) {
        (Ok(Some((digest, media_type))), _) => (digest, media_type),
        (Ok(None), _) => {
            return Ok(Err(format!(
                "{registry}/{}:{} does not exist (any more)",
                change.repository, change.tag
            )));
        }
        (Err(error), Some(digest)) => {
            tracing::warn!(source = %source.name, %error, "tag resolution failed, using the digest the sender named");
            (digest, change.media_type.unwrap_or_default())
        }
        (Err(error), None) => {
            tracing::warn!(source = %source.name, %error, "tag resolution failed and the sender named no digest");
            return Err(Rejection::Unavailable(format!(
                "cannot resolve {registry}/{}:{} right now",
                change.repository, change.tag
            )));
        }
    };
    let id = deterministic_id(&["registry", &registry, &change.repository, &change.tag, &digest]);
    let event = pb::UpstreamChanged {
        change: Some(pb::upstream_changed::Change::RegistryTag(pb::RegistryTagChanged {
            registry,
            repository: change.repository,
            tag: change.tag,
            digest,
            media_type,
        })),
        source: event_source(source),
        received_at_ms: now_ms(),
    };
    Ok(Ok((SubjectKind::Registry, id, event)))
}

fn refusal(refusal: Refusal) -> Rejection {
    match refusal {
        Refusal::Unauthorized(reason) => Rejection::Unauthorized(reason),
        Refusal::Malformed(reason) => Rejection::BadRequest(reason),
        Refusal::UnsupportedMediaType(reason) => Rejection::UnsupportedMediaType(reason),
    }
}

fn ignored(status: StatusCode, reason: String) -> Answer {
    (
        status,
        Json(serde_json::json!({ "accepted": 0, "ignored": 1, "reason": reason })),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::Method;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{
        IngressSettings,
        router::router,
        testing::{FakeSink, send},
    };

    const SECRET: &str = "unit-secret";

    /// Answers every lookup with `answer`, counting calls.
    struct FakeTags {
        answer: Result<Option<(String, String)>, String>,
        calls: Mutex<Vec<String>>,
    }

    impl TagLookup for FakeTags {
        fn resolve<'a>(
            &'a self,
            registry: &'a str,
            repository: &'a str,
            tag: &'a str,
        ) -> BoxFuture<'a, Result<Option<(String, String)>, String>> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{registry}/{repository}:{tag}"));
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn settings(tags: Arc<FakeTags>) -> IngressSettings {
        IngressSettings {
            max_body_bytes: 4096,
            sources: vec![
                SourceSettings {
                    name: "hub".into(),
                    kind: WebhookKind::Dockerhub,
                    secret: SECRET.into(),
                    registry: Some("docker.io".into()),
                    resolve_via: Some("mirror.internal:5000".into()),
                    header: None,
                },
                SourceSettings {
                    name: "events".into(),
                    kind: WebhookKind::Cloudevents,
                    secret: SECRET.into(),
                    registry: Some("registry.internal".into()),
                    resolve_via: None,
                    header: None,
                },
                SourceSettings {
                    name: "empty".into(),
                    kind: WebhookKind::Gitlab,
                    secret: Vec::new(),
                    registry: None,
                    resolve_via: None,
                    header: None,
                },
            ],
            tags: Some(tags),
            ..IngressSettings::default()
        }
    }

    fn tags(answer: Result<Option<(String, String)>, String>) -> Arc<FakeTags> {
        Arc::new(FakeTags {
            answer,
            calls: Mutex::new(Vec::new()),
        })
    }

    fn hub_push(repository: &str, tag: &str) -> Vec<u8> {
        serde_json::json!({
            "callback_url": "http://127.0.0.1:1/admin",
            "push_data": { "tag": tag, "pusher": "someone" },
            "repository": { "repo_name": repository, "repo_url": "http://127.0.0.1:1/admin" }
        })
        .to_string()
        .into_bytes()
    }

    fn cloudevent(registry: &str, digest: &str) -> Vec<u8> {
        serde_json::json!({
            "specversion": "1.0", "id": "1", "source": "/unit", "type": "dev.rebake.registry.tag.changed",
            "data": { "registry": registry, "repository": "team/app", "tag": "1.0", "digest": digest }
        })
        .to_string()
        .into_bytes()
    }

    async fn post(
        sink: &Arc<FakeSink>,
        tags: Arc<FakeTags>,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let app = router(Arc::clone(sink), settings(tags), CancellationToken::new());
        let (status, _, answer) = send(app, Method::POST, path, headers, body).await;
        (status, answer)
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[tokio::test]
    async fn docker_hub_tags_are_resolved_through_the_configured_registry_only() {
        let sink = FakeSink::new();
        let lookup = tags(Ok(Some((
            digest('a'),
            "application/vnd.oci.image.index.v1+json".into(),
        ))));
        let (status, answer) = post(
            &sink,
            lookup.clone(),
            &format!("/v1/hooks/hub/{SECRET}"),
            &[JSON],
            hub_push("library/debian", "12"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            *lookup.calls.lock().unwrap(),
            ["mirror.internal:5000/library/debian:12"]
        );
        let published = sink.published();
        assert_eq!(published.len(), 1);
        let Some(pb::upstream_changed::Change::RegistryTag(tag)) = &published[0].2.change else {
            panic!("{:?}", published[0]);
        };
        assert_eq!(
            (
                tag.registry.as_str(),
                tag.repository.as_str(),
                tag.tag.as_str(),
                tag.digest.clone()
            ),
            ("docker.io", "library/debian", "12", digest('a'))
        );
        assert_eq!(published[0].2.source, "webhook/dockerhub/hub");
    }

    #[tokio::test]
    async fn wrong_path_token_unknown_source_and_unset_secret() {
        let sink = FakeSink::new();
        let (status, _) = post(
            &sink,
            tags(Ok(None)),
            "/v1/hooks/hub/guess",
            &[JSON],
            hub_push("a/b", "1"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, answer) = post(&sink, tags(Ok(None)), "/v1/hooks/nobody", &[JSON], b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(answer["error"].as_str().unwrap().contains("nobody"));
        let (status, _) = post(&sink, tags(Ok(None)), "/v1/hooks/empty", &[JSON], b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn a_payload_naming_another_registry_is_refused() {
        let sink = FakeSink::new();
        let lookup = tags(Ok(Some((digest('b'), String::new()))));
        let bearer = format!("Bearer {SECRET}");
        let headers = [
            ("content-type", "application/cloudevents+json"),
            ("authorization", bearer.as_str()),
        ];
        let (status, answer) = post(
            &sink,
            lookup.clone(),
            "/v1/hooks/events",
            &headers,
            cloudevent("127.0.0.1:2375", &digest('c')),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("127.0.0.1:2375"), "{answer}");
        assert!(lookup.calls.lock().unwrap().is_empty(), "nothing may be requested");
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn unresolvable_tags_fall_back_to_the_payload_digest_or_ask_for_a_retry() {
        let bearer = format!("Bearer {SECRET}");
        let headers = [
            ("content-type", "application/cloudevents+json"),
            ("authorization", bearer.as_str()),
        ];
        let sink = FakeSink::new();
        let (status, _) = post(
            &sink,
            tags(Err("registry down".into())),
            "/v1/hooks/events",
            &headers,
            cloudevent("registry.internal", &digest('d')),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let Some(pb::upstream_changed::Change::RegistryTag(tag)) = &sink.published()[0].2.change else {
            panic!("expected a tag change");
        };
        assert_eq!(tag.digest, digest('d'));

        // Docker Hub sends no digest: nothing to fall back to, so the sender retries.
        let sink = FakeSink::new();
        let (status, _) = post(
            &sink,
            tags(Err("registry down".into())),
            &format!("/v1/hooks/hub/{SECRET}"),
            &[JSON],
            hub_push("a/b", "1"),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(sink.published().is_empty());

        // A tag that no longer exists is acknowledged and skipped.
        let (status, answer) = post(
            &sink,
            tags(Ok(None)),
            &format!("/v1/hooks/hub/{SECRET}"),
            &[JSON],
            hub_push("a/b", "1"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["accepted"], 0, "{answer}");
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused_before_parsing() {
        let sink = FakeSink::new();
        let mut body = hub_push("a/b", "1");
        body.extend(std::iter::repeat_n(b' ', 8192));
        let (status, _) = post(&sink, tags(Ok(None)), &format!("/v1/hooks/hub/{SECRET}"), &[JSON], body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn memory_delivery_log_forgets_the_oldest() {
        let log = MemoryDeliveries::new(2);
        for id in ["a", "b", "c"] {
            log.remember("s", id).await.unwrap();
        }
        assert!(!log.seen("s", "a").await.unwrap());
        assert!(log.seen("s", "c").await.unwrap());
        assert!(!log.seen("other", "c").await.unwrap());
    }
}
