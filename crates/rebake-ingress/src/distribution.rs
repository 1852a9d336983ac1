//! CNCF distribution (Docker registry) notifications: `{"events": [...]}` envelopes, each
//! event a push, pull, mount or delete of a manifest or blob.
//!
//! Only a push of a manifest or index *under a tag* says "this tag moved"; everything else is
//! counted as ignored. An event that is malformed is skipped with a warning rather than
//! failing its batch: the registry resends whole envelopes until it gets a 2xx, so refusing a
//! batch for one bad event would block every good event behind it forever.

use axum::{
    Json,
    extract::{Request, State},
};
use rebake_events::{Digest, Envelope, EventKind, deterministic_id, now_ms, pb};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    UpstreamSink,
    rejection::Rejection,
    router::{AppState, CE_SOURCE, header_text, media_type, read_body, traceparent},
};

/// `source` of the events this endpoint produces.
const EVENT_SOURCE: &str = "webhook/distribution";

/// Envelope media types distribution 2.x (`v1`) and 3.x (`v2`) send, and plain JSON.
const ACCEPTED_CONTENT_TYPES: [&str; 3] = [
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
];

/// Manifest media types whose tagged push moves an image tag.
const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Rebake's own artifacts, stored as tags beside the image (`sha256-<hex>.sig` …).
const OWN_ARTIFACT_SUFFIXES: [&str; 3] = [".sig", ".att", ".sbom"];

/// One event of an envelope, with only the fields we read; everything optional so any
/// shape the registry sends deserialises and is judged afterwards.
#[derive(Debug, Deserialize)]
struct RawEvent {
    action: Option<String>,
    target: Option<RawTarget>,
    request: Option<RawRequest>,
}

#[derive(Debug, Deserialize)]
struct RawTarget {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRequest {
    host: Option<String>,
}

/// What one event amounts to.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A tag moved.
    TagChanged(pb::RegistryTagChanged),
    /// Nothing Rebake acts on (pull, blob, delete, untagged push, own artifact).
    Ignored(&'static str),
    /// Not something a registry should send; skipped.
    Malformed(String),
}

/// The relevant changes of one envelope and how many events were left out.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Batch {
    changes: Vec<pb::RegistryTagChanged>,
    ignored: usize,
}

/// `POST /v1/hooks/registry/distribution`.
pub(crate) async fn receive<S: UpstreamSink>(
    State(state): State<AppState<S>>,
    request: Request,
) -> Result<Json<serde_json::Value>, Rejection> {
    let Some(expected_token) = state.settings.distribution_token() else {
        return Err(Rejection::NotConfigured(
            "distribution notifications are not configured",
        ));
    };
    check_bearer(
        header_text(request.headers(), "authorization").as_deref(),
        expected_token,
    )?;
    state.gate()?;
    match media_type(request.headers()) {
        Some(media_type) if ACCEPTED_CONTENT_TYPES.contains(&media_type.as_str()) => {}
        Some(media_type) => {
            return Err(Rejection::UnsupportedMediaType(format!(
                "unsupported content type {media_type}: expected one of {}",
                ACCEPTED_CONTENT_TYPES.join(", ")
            )));
        }
        None => {
            return Err(Rejection::UnsupportedMediaType("missing content type".to_string()));
        }
    }
    let parent_traceparent = traceparent(request.headers());
    let body = read_body(request).await?;
    let batch =
        parse_envelope(&body, state.settings.distribution_registry_host.as_deref()).map_err(Rejection::BadRequest)?;

    let subject = state.sink.names().upstream_registry_subject();
    let accepted = batch.changes.len();
    for change in &batch.changes {
        let id = deterministic_id(&[
            "distribution",
            &change.registry,
            &change.repository,
            &change.tag,
            &change.digest,
        ]);
        let envelope = Envelope::new(
            EventKind::UpstreamChanged,
            id,
            CE_SOURCE,
            None,
            parent_traceparent.as_deref(),
        );
        let event_id = envelope.id.clone();
        let event = pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::RegistryTag(change.clone())),
            source: EVENT_SOURCE.to_string(),
            received_at_ms: now_ms(),
        };
        if let Err(error) = state.sink.publish(subject.clone(), envelope, event).await {
            tracing::warn!(
                %subject,
                %event_id,
                registry = %change.registry,
                repository = %change.repository,
                tag = %change.tag,
                digest = %change.digest,
                %error,
                "failed to publish registry tag change, answering 503 so the registry resends"
            );
            return Err(Rejection::Unavailable("failed to publish event".to_string()));
        }
        tracing::debug!(
            %event_id,
            registry = %change.registry,
            repository = %change.repository,
            tag = %change.tag,
            digest = %change.digest,
            "registry tag change published"
        );
    }
    Ok(Json(
        serde_json::json!({ "accepted": accepted, "ignored": batch.ignored }),
    ))
}

/// Checks `Authorization: Bearer <token>` against `expected` in constant time (both sides
/// hashed first, so not even the length leaks).
fn check_bearer(authorization: Option<&str>, expected: &[u8]) -> Result<(), Rejection> {
    let Some(authorization) = authorization else {
        tracing::warn!("distribution notification without authorization header refused");
        return Err(Rejection::Unauthorized("missing bearer token"));
    };
    let token = authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        tracing::warn!("distribution notification with a non-bearer authorization refused");
        return Err(Rejection::Unauthorized("missing bearer token"));
    };
    let presented = Sha256::digest(token.as_bytes());
    let wanted = Sha256::digest(expected);
    if bool::from(presented.as_slice().ct_eq(wanted.as_slice())) {
        Ok(())
    } else {
        tracing::warn!("distribution notification with a wrong bearer token refused");
        Err(Rejection::Unauthorized("invalid bearer token"))
    }
}

/// Parses an envelope. Fails (400) only when the body as a whole is not an envelope.
pub(crate) fn parse_envelope(body: &[u8], registry_host: Option<&str>) -> Result<Batch, String> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("body is not valid json: {error}"))?;
    let Some(events) = document.get("events").and_then(serde_json::Value::as_array) else {
        return Err("body has no events array".to_string());
    };
    let mut batch = Batch::default();
    for (index, event) in events.iter().enumerate() {
        match classify(event, registry_host) {
            Outcome::TagChanged(change) => batch.changes.push(change),
            Outcome::Ignored(why) => {
                tracing::debug!(index, why, "distribution event ignored");
                batch.ignored += 1;
            }
            Outcome::Malformed(reason) => {
                let event_id = event.get("id").and_then(serde_json::Value::as_str).unwrap_or("");
                tracing::warn!(index, event_id, reason = %reason, "malformed distribution event skipped");
                batch.ignored += 1;
            }
        }
    }
    Ok(batch)
}

/// Judges one event of an envelope.
fn classify(event: &serde_json::Value, registry_host: Option<&str>) -> Outcome {
    let event = match RawEvent::deserialize(event) {
        Ok(event) => event,
        Err(error) => return Outcome::Malformed(format!("unexpected event shape: {error}")),
    };
    let Some(action) = event.action.as_deref() else {
        return Outcome::Malformed("event has no action".to_string());
    };
    if action != "push" {
        return Outcome::Ignored("not a push");
    }
    let Some(target) = event.target else {
        return Outcome::Malformed("push event has no target".to_string());
    };
    let media_type = target.media_type.unwrap_or_default();
    if !MANIFEST_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Outcome::Ignored("not a manifest push");
    }
    let tag = target.tag.unwrap_or_default();
    if tag.is_empty() {
        return Outcome::Ignored("push by digest");
    }
    if is_own_artifact_tag(&tag) {
        return Outcome::Ignored("signature, attestation or sbom tag");
    }
    if !is_valid_tag(&tag) {
        return Outcome::Malformed(format!("invalid tag {tag:?}"));
    }
    let repository = target.repository.unwrap_or_default();
    if !is_valid_repository(&repository) {
        return Outcome::Malformed(format!("invalid repository {repository:?}"));
    }
    let Some(digest) = target.digest else {
        return Outcome::Malformed("manifest push has no digest".to_string());
    };
    let digest = match Digest::new(digest) {
        Ok(digest) => digest,
        Err(error) => return Outcome::Malformed(error.to_string()),
    };
    let registry = match registry_host {
        Some(host) => host.to_string(),
        None => event.request.and_then(|request| request.host).unwrap_or_default(),
    };
    if !is_valid_host(&registry) {
        return Outcome::Malformed(format!("invalid registry host {registry:?}"));
    }
    Outcome::TagChanged(pb::RegistryTagChanged {
        registry,
        repository,
        tag,
        digest: digest.to_string(),
        media_type,
    })
}

/// `sha256-<64 hex>.sig|.att|.sbom`: cosign-style artifacts Rebake (or cosign) writes.
fn is_own_artifact_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    OWN_ARTIFACT_SUFFIXES.iter().any(|suffix| {
        rest.strip_suffix(suffix)
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// OCI distribution tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(&bytes[0])
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-')
}

/// OCI repository names: lowercase `[a-z0-9._-]` components separated by `/` (the exact
/// separator rules are the registry's business; this keeps junk out of events).
fn is_valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(|component| {
            !component.is_empty()
                && component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// A registry host, optionally with port: no scheme, path, spaces or control characters.
fn is_valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::{Method, StatusCode};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{
        IngressSettings,
        router::{DISTRIBUTION_PATH, router},
        testing::{FakeSink, TOKEN, fixture, send, settings},
    };

    const V1: &str = "application/vnd.docker.distribution.events.v1+json";
    const MANIFEST_DIGEST: &str = "sha256:8a2193eacf1a18739d3e4fa3250f33f4807c9c96bbb7cf2d0d5f2652bef99d7e";

    fn bearer() -> String {
        format!("Bearer {}", std::str::from_utf8(TOKEN).unwrap())
    }

    async fn post_envelope(
        sink: &Arc<FakeSink>,
        settings: IngressSettings,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let app = router(Arc::clone(sink), settings, CancellationToken::new());
        let authorization = bearer();
        let headers = [("content-type", V1), ("authorization", authorization.as_str())];
        send(app, Method::POST, DISTRIBUTION_PATH, &headers, body).await
    }

    fn events_of(names: &[&str]) -> Vec<u8> {
        let mut events = Vec::new();
        for name in names {
            let document: serde_json::Value =
                serde_json::from_slice(&fixture(&format!("distribution/{name}.json"))).unwrap();
            events.extend(document["events"].as_array().unwrap().iter().cloned());
        }
        serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
    }

    fn registry_tag(event: &pb::UpstreamChanged) -> &pb::RegistryTagChanged {
        match &event.change {
            Some(pb::upstream_changed::Change::RegistryTag(change)) => change,
            other => panic!("expected a registry tag change, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn tagged_manifest_push_publishes_one_event() {
        let sink = FakeSink::new();
        let (status, _, body) =
            post_envelope(&sink, settings(), fixture("distribution/push-manifest-tagged.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, serde_json::json!({ "accepted": 1, "ignored": 0 }));

        let published = sink.published();
        assert_eq!(published.len(), 1);
        let (subject, envelope, event) = &published[0];
        assert_eq!(subject, "rebake.upstream.registry");
        assert_eq!(envelope.kind, EventKind::UpstreamChanged);
        assert_eq!(envelope.source, "/rebake/ingress");
        assert_eq!(
            envelope.id,
            deterministic_id(&["distribution", "127.0.0.1:5000", "test/img", "1", MANIFEST_DIGEST])
        );
        assert_eq!(event.source, "webhook/distribution");
        assert!(event.received_at_ms > 0);
        assert_eq!(
            registry_tag(event),
            &pb::RegistryTagChanged {
                registry: "127.0.0.1:5000".into(),
                repository: "test/img".into(),
                tag: "1".into(),
                digest: MANIFEST_DIGEST.into(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            }
        );
    }

    #[tokio::test]
    async fn oci_index_push_publishes_one_event() {
        let sink = FakeSink::new();
        let (status, _, body) = post_envelope(&sink, settings(), fixture("distribution/push-oci-index.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], 1);
        let published = sink.published();
        let change = registry_tag(&published[0].2);
        assert_eq!(change.tag, "multi");
        assert_eq!(change.media_type, "application/vnd.oci.image.index.v1+json");
        assert_eq!(
            change.digest,
            "sha256:cb3c33eeccbfd39d3dd8c391c5925332c511afb07916d3e8c5482196134bb5c4"
        );
    }

    #[tokio::test]
    async fn blobs_pulls_and_deletes_are_ignored() {
        for name in ["push-blob", "pull-manifest", "delete-manifest", "delete-tag"] {
            let sink = FakeSink::new();
            let (status, _, body) =
                post_envelope(&sink, settings(), fixture(&format!("distribution/{name}.json"))).await;
            assert_eq!(status, StatusCode::OK, "{name}: {body}");
            assert_eq!(body, serde_json::json!({ "accepted": 0, "ignored": 1 }), "{name}");
            assert!(sink.published().is_empty(), "{name}");
        }
    }

    #[tokio::test]
    async fn mixed_batch_publishes_only_the_tagged_push() {
        let sink = FakeSink::new();
        let body = events_of(&["push-blob", "push-manifest-tagged", "pull-manifest"]);
        let (status, _, body) = post_envelope(&sink, settings(), body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, serde_json::json!({ "accepted": 1, "ignored": 2 }));
        let published = sink.published();
        assert_eq!(published.len(), 1);
        assert_eq!(registry_tag(&published[0].2).tag, "1");
    }

    #[tokio::test]
    async fn own_signature_tags_are_ignored() {
        let mut document: serde_json::Value =
            serde_json::from_slice(&fixture("distribution/push-manifest-tagged.json")).unwrap();
        let signature_tag = Digest::new(MANIFEST_DIGEST).unwrap().signature_tag();
        document["events"][0]["target"]["tag"] = signature_tag.into();
        let sink = FakeSink::new();
        let (status, _, body) = post_envelope(&sink, settings(), serde_json::to_vec(&document).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({ "accepted": 0, "ignored": 1 }));
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn a_malformed_event_does_not_fail_its_batch() {
        let good: serde_json::Value =
            serde_json::from_slice(&fixture("distribution/push-manifest-tagged.json")).unwrap();
        let mut no_digest = good["events"][0].clone();
        no_digest["target"].as_object_mut().unwrap().remove("digest");
        let mut bad_digest = good["events"][0].clone();
        bad_digest["target"]["digest"] = "sha256:abc".into();
        let mut wrong_type = good["events"][0].clone();
        wrong_type["target"]["tag"] = 7.into();
        let body = serde_json::json!({
            "events": [no_digest, good["events"][0], bad_digest, wrong_type, "not an object"]
        });
        let sink = FakeSink::new();
        let (status, _, body) = post_envelope(&sink, settings(), serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, serde_json::json!({ "accepted": 1, "ignored": 4 }));
        assert_eq!(sink.published().len(), 1);
    }

    #[tokio::test]
    async fn configured_registry_host_wins_over_request_host() {
        let sink = FakeSink::new();
        let settings = IngressSettings {
            distribution_registry_host: Some("registry.example.com".into()),
            ..settings()
        };
        let (status, _, _) = post_envelope(&sink, settings, fixture("distribution/push-manifest-tagged.json")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(registry_tag(&sink.published()[0].2).registry, "registry.example.com");
    }

    #[tokio::test]
    async fn redelivered_envelope_keeps_its_event_id() {
        let sink = FakeSink::new();
        for _ in 0..2 {
            let (status, _, _) =
                post_envelope(&sink, settings(), fixture("distribution/push-manifest-tagged.json")).await;
            assert_eq!(status, StatusCode::OK);
        }
        let published = sink.published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].1.id, published[1].1.id);
    }

    #[tokio::test]
    async fn traceparent_is_continued() {
        let sink = FakeSink::new();
        let app = router(Arc::clone(&sink), settings(), CancellationToken::new());
        let authorization = bearer();
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let headers = [
            ("content-type", V1),
            ("authorization", authorization.as_str()),
            ("traceparent", parent),
        ];
        let (status, _, _) = send(
            app,
            Method::POST,
            DISTRIBUTION_PATH,
            &headers,
            fixture("distribution/push-manifest-tagged.json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sink.published()[0].1.trace_id(), "0af7651916cd43dd8448eb211c80319c");
    }

    #[tokio::test]
    async fn bad_or_missing_token_is_unauthorized() {
        let wrong = [("content-type", V1), ("authorization", "Bearer nope")];
        let missing = [("content-type", V1)];
        let basic = [("content-type", V1), ("authorization", "Basic dXNlcjpwYXNz")];
        for headers in [&wrong[..], &missing[..], &basic[..]] {
            let sink = FakeSink::new();
            let app = router(Arc::clone(&sink), settings(), CancellationToken::new());
            let (status, _, body) = send(
                app,
                Method::POST,
                DISTRIBUTION_PATH,
                headers,
                fixture("distribution/push-manifest-tagged.json"),
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
            assert!(body["error"].as_str().unwrap().contains("bearer token"), "{body}");
            assert!(sink.published().is_empty());
        }
    }

    #[tokio::test]
    async fn no_configured_token_refuses_everything() {
        let sink = FakeSink::new();
        let settings = IngressSettings {
            distribution_token: None,
            ..settings()
        };
        let (status, _, body) = post_envelope(&sink, settings, fixture("distribution/push-manifest-tagged.json")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "distribution notifications are not configured");
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn not_json_is_a_bad_request() {
        for body in [&b"{\"events\": [tru"[..], b"<html></html>", b"{\"events\": 3}", b"[]"] {
            let sink = FakeSink::new();
            let (status, _, answer) = post_envelope(&sink, settings(), body.to_vec()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
            assert!(answer["error"].is_string(), "{answer}");
        }
    }

    #[tokio::test]
    async fn oversized_body_is_refused() {
        let sink = FakeSink::new();
        let settings = IngressSettings {
            max_body_bytes: 256,
            ..settings()
        };
        let (status, _, body) = post_envelope(&sink, settings, fixture("distribution/push-manifest-tagged.json")).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"], "request body is too large");
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn other_content_types_are_unsupported() {
        let sink = FakeSink::new();
        let app = router(Arc::clone(&sink), settings(), CancellationToken::new());
        let authorization = bearer();
        let headers = [
            ("content-type", "text/plain"),
            ("authorization", authorization.as_str()),
        ];
        let (status, _, body) = send(
            app,
            Method::POST,
            DISTRIBUTION_PATH,
            &headers,
            fixture("distribution/push-manifest-tagged.json"),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(body["error"].as_str().unwrap().contains("text/plain"), "{body}");

        for content_type in [
            "application/json",
            "application/vnd.docker.distribution.events.v2+json; charset=utf-8",
        ] {
            let app = router(Arc::clone(&sink), settings(), CancellationToken::new());
            let headers = [
                ("content-type", content_type),
                ("authorization", authorization.as_str()),
            ];
            let (status, _, _) = send(
                app,
                Method::POST,
                DISTRIBUTION_PATH,
                &headers,
                fixture("distribution/push-manifest-tagged.json"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{content_type}");
        }
    }

    #[tokio::test]
    async fn sink_not_ready_is_unavailable_without_publishing() {
        let sink = FakeSink::new();
        sink.set_ready(false);
        let (status, headers, body) =
            post_envelope(&sink, settings(), fixture("distribution/push-manifest-tagged.json")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["retry-after"], "5");
        assert_eq!(body["error"], "event bus unavailable");
        assert_eq!(sink.attempts(), 0);
    }

    #[tokio::test]
    async fn publish_failure_is_unavailable() {
        let sink = FakeSink::new();
        sink.set_failing(true);
        let (status, headers, _) =
            post_envelope(&sink, settings(), fixture("distribution/push-manifest-tagged.json")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["retry-after"], "5");
        assert_eq!(sink.attempts(), 1);
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn shutting_down_stops_intake() {
        let sink = FakeSink::new();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let app = router(Arc::clone(&sink), settings(), shutdown);
        let authorization = bearer();
        let headers = [("content-type", V1), ("authorization", authorization.as_str())];
        let (status, _, body) = send(
            app,
            Method::POST,
            DISTRIBUTION_PATH,
            &headers,
            fixture("distribution/push-manifest-tagged.json"),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "shutting down");
        assert_eq!(sink.attempts(), 0);
    }

    #[test]
    fn classification_rules() {
        let push = |media_type: &str, tag: Option<&str>| {
            serde_json::json!({
                "action": "push",
                "target": {
                    "mediaType": media_type,
                    "digest": MANIFEST_DIGEST,
                    "repository": "library/debian",
                    "tag": tag,
                },
                "request": { "host": "registry.local:5000" },
            })
        };
        for media_type in MANIFEST_MEDIA_TYPES {
            assert!(matches!(
                classify(&push(media_type, Some("v1")), None),
                Outcome::TagChanged(_)
            ));
        }
        let layer = "application/vnd.oci.image.layer.v1.tar+gzip";
        assert_eq!(
            classify(&push(layer, Some("v1")), None),
            Outcome::Ignored("not a manifest push")
        );
        let oci = MANIFEST_MEDIA_TYPES[0];
        assert_eq!(classify(&push(oci, None), None), Outcome::Ignored("push by digest"));
        assert_eq!(classify(&push(oci, Some("")), None), Outcome::Ignored("push by digest"));
        let hex = "ab".repeat(32);
        for suffix in ["sig", "att", "sbom"] {
            let tag = format!("sha256-{hex}.{suffix}");
            assert_eq!(
                classify(&push(oci, Some(&tag)), None),
                Outcome::Ignored("signature, attestation or sbom tag")
            );
        }
        // Looks like an artifact but is not one: an ordinary tag.
        assert!(matches!(
            classify(&push(oci, Some("sha256-short.sig")), None),
            Outcome::TagChanged(_)
        ));
        assert!(matches!(
            classify(&push(oci, Some("-bad")), None),
            Outcome::Malformed(_)
        ));
        let mount = serde_json::json!({ "action": "mount", "target": {} });
        assert_eq!(classify(&mount, None), Outcome::Ignored("not a push"));
        let no_host = serde_json::json!({
            "action": "push",
            "target": { "mediaType": oci, "digest": MANIFEST_DIGEST, "repository": "a", "tag": "v1" },
        });
        assert!(matches!(classify(&no_host, None), Outcome::Malformed(_)));
        assert!(matches!(classify(&no_host, Some("r.example")), Outcome::TagChanged(_)));
    }

    #[test]
    fn bearer_comparison() {
        assert!(check_bearer(Some("Bearer secret"), b"secret").is_ok());
        assert!(check_bearer(Some("bearer secret"), b"secret").is_ok());
        assert!(check_bearer(Some("Bearer secret2"), b"secret").is_err());
        assert!(check_bearer(Some("Bearer "), b"secret").is_err());
        assert!(check_bearer(Some("Bearersecret"), b"secret").is_err());
        assert!(check_bearer(None, b"secret").is_err());
    }
}
