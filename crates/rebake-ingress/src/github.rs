//! GitHub webhooks: `push` becomes a [`pb::GitRefChanged`], `ping` is answered, every other
//! event is acknowledged and ignored.
//!
//! Every delivery is authenticated first: `X-Hub-Signature-256` is an HMAC-SHA256 of the raw
//! body bytes (for form-encoded hooks, of the `payload=…` form body, not of the JSON inside),
//! checked in constant time before the body is parsed at all.

use std::borrow::Cow;

use axum::{
    Json,
    extract::{Request, State},
    http::StatusCode,
};
use hmac::{Hmac, Mac};
use rebake_events::{Envelope, EventKind, deterministic_id, now_ms, pb};
use serde::Deserialize;
use sha2::Sha256;

use crate::{
    UpstreamSink,
    rejection::Rejection,
    router::{AppState, CE_SOURCE, header_text, media_type, read_body, traceparent},
};

/// `source` of the events this endpoint produces.
const EVENT_SOURCE: &str = "webhook/github";

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// The fields of a push we read; all optional so odd shapes elsewhere never break parsing.
#[derive(Debug, Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    before: Option<String>,
    after: Option<String>,
    deleted: Option<bool>,
    forced: Option<bool>,
    repository: Option<RawRepository>,
}

#[derive(Debug, Deserialize)]
struct RawRepository {
    html_url: Option<String>,
    url: Option<String>,
}

/// What a push amounts to.
#[derive(Debug, PartialEq)]
enum PushOutcome {
    /// A branch or tag moved.
    RefChanged {
        /// The normalised change.
        change: pb::GitRefChanged,
        /// The full ref as sent (`refs/heads/main`), part of the event id.
        full_ref: String,
    },
    /// Nothing Rebake acts on (deletion, a ref that is neither branch nor tag).
    Ignored(String),
}

type Answer = (StatusCode, Json<serde_json::Value>);

/// `POST /v1/hooks/git/github`.
pub(crate) async fn receive<S: UpstreamSink>(
    State(state): State<AppState<S>>,
    request: Request,
) -> Result<Answer, Rejection> {
    let Some(secret) = state.settings.github_secret() else {
        return Err(Rejection::NotConfigured("github webhooks are not configured"));
    };
    state.gate()?;
    let headers = request.headers();
    let content_type = match media_type(headers) {
        Some(media_type) if media_type == JSON || media_type == FORM => media_type,
        Some(media_type) => {
            return Err(Rejection::UnsupportedMediaType(format!(
                "unsupported content type {media_type}: expected {JSON} or {FORM}"
            )));
        }
        None => {
            return Err(Rejection::UnsupportedMediaType("missing content type".to_string()));
        }
    };
    let signature = header_text(headers, "x-hub-signature-256");
    let event_name = header_text(headers, "x-github-event");
    let delivery_id = header_text(headers, "x-github-delivery");
    let parent_traceparent = traceparent(headers);
    let body = read_body(request).await?;
    verify_signature(secret, signature.as_deref(), &body)?;

    let Some(event_name) = event_name else {
        return Err(Rejection::BadRequest("missing x-github-event header".to_string()));
    };
    match event_name.as_str() {
        "ping" => return Ok((StatusCode::OK, Json(serde_json::json!({ "pong": true })))),
        "push" => {}
        other => {
            tracing::debug!(
                event = other,
                delivery_id = delivery_id.as_deref().unwrap_or(""),
                "github event ignored"
            );
            return Ok(ignored(StatusCode::ACCEPTED, format!("event {other} is not handled")));
        }
    }
    let Some(delivery_id) = delivery_id else {
        return Err(Rejection::BadRequest("missing x-github-delivery header".to_string()));
    };
    let json = payload_json(&content_type, &body)?;
    let push: RawPush = serde_json::from_slice(&json)
        .map_err(|error| Rejection::BadRequest(format!("invalid push payload: {error}")))?;
    let (change, full_ref) = match normalise_push(push, &delivery_id).map_err(Rejection::BadRequest)? {
        PushOutcome::RefChanged { change, full_ref } => (change, full_ref),
        PushOutcome::Ignored(reason) => {
            tracing::debug!(%delivery_id, reason = %reason, "github push ignored");
            return Ok(ignored(StatusCode::OK, reason));
        }
    };

    let subject = state.sink.names().upstream_git_subject();
    let id = deterministic_id(&["github", &delivery_id, &full_ref]);
    let envelope = Envelope::new(
        EventKind::UpstreamChanged,
        id,
        CE_SOURCE,
        None,
        parent_traceparent.as_deref(),
    );
    let event_id = envelope.id.clone();
    let event = pb::UpstreamChanged {
        change: Some(pb::upstream_changed::Change::GitRef(change.clone())),
        source: EVENT_SOURCE.to_string(),
        received_at_ms: now_ms(),
    };
    if let Err(error) = state.sink.publish(subject.clone(), envelope, event).await {
        tracing::warn!(
            %subject,
            %event_id,
            %delivery_id,
            repository = %change.repository,
            git_ref = %full_ref,
            %error,
            "failed to publish git ref change, answering 503 so github can redeliver"
        );
        return Err(Rejection::Unavailable("failed to publish event".to_string()));
    }
    tracing::debug!(
        %event_id,
        %delivery_id,
        repository = %change.repository,
        git_ref = %full_ref,
        commit = %change.new_commit,
        "git ref change published"
    );
    Ok((StatusCode::OK, Json(serde_json::json!({ "accepted": 1 }))))
}

fn ignored(status: StatusCode, reason: String) -> Answer {
    (
        status,
        Json(serde_json::json!({ "accepted": 0, "ignored": 1, "reason": reason })),
    )
}

/// Checks `sha256=<hex>` against HMAC-SHA256(secret, body) in constant time.
fn verify_signature(secret: &[u8], signature: Option<&str>, body: &[u8]) -> Result<(), Rejection> {
    let Some(signature) = signature else {
        tracing::warn!("github delivery without x-hub-signature-256 refused");
        return Err(Rejection::Unauthorized("missing x-hub-signature-256 header"));
    };
    let expected = signature
        .strip_prefix("sha256=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok());
    let Some(expected) = expected else {
        tracing::warn!("github delivery with a malformed signature refused");
        return Err(Rejection::Unauthorized("invalid signature"));
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this cannot happen, but never panic on it.
        return Err(Rejection::NotConfigured("github webhooks are not configured"));
    };
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| {
        tracing::warn!("github delivery with a wrong signature refused");
        Rejection::Unauthorized("invalid signature")
    })
}

/// The JSON document of a delivery: the body itself, or the `payload` field of a form body.
fn payload_json<'a>(content_type: &str, body: &'a [u8]) -> Result<Cow<'a, [u8]>, Rejection> {
    if content_type != FORM {
        return Ok(Cow::Borrowed(body));
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|error| Rejection::BadRequest(format!("invalid form body: {error}")))?;
    fields
        .into_iter()
        .find(|(name, _)| name == "payload")
        .map(|(_, payload)| Cow::Owned(payload.into_bytes()))
        .ok_or_else(|| Rejection::BadRequest("form body has no payload field".to_string()))
}

/// Runs the body parsers on untrusted bytes (for `crate::fuzzing`).
pub(crate) fn parse_for_fuzzing(body: &[u8]) {
    for content_type in [JSON, FORM] {
        if let Ok(json) = payload_json(content_type, body)
            && let Ok(push) = serde_json::from_slice::<RawPush>(&json)
        {
            let _ = normalise_push(push, "fuzz-delivery");
        }
    }
}

/// Turns a push payload into a ref change, or says why it is ignored. `Err` is a 400 reason.
fn normalise_push(push: RawPush, delivery_id: &str) -> Result<PushOutcome, String> {
    let Some(git_ref) = push.git_ref else {
        return Err("push payload has no ref".to_string());
    };
    let (ref_kind, ref_name) = if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        ("branch", branch)
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        ("tag", tag)
    } else {
        return Ok(PushOutcome::Ignored(format!(
            "ref {git_ref} is neither a branch nor a tag"
        )));
    };
    if ref_name.is_empty() {
        return Err(format!("invalid ref {git_ref:?}"));
    }
    if push.deleted == Some(true) {
        return Ok(PushOutcome::Ignored("deletion ignored".to_string()));
    }
    let after = push.after.unwrap_or_default().to_ascii_lowercase();
    if !is_commit_id(&after) {
        return Err(format!("invalid after commit {after:?}: expected 40 hex digits"));
    }
    if is_zero_commit(&after) {
        // GitHub marks deletions with `deleted: true` and an all-zero `after`; accept either.
        return Ok(PushOutcome::Ignored("deletion ignored".to_string()));
    }
    // An all-zero `before` means the ref was just created: there is no old commit.
    let before = push.before.unwrap_or_default().to_ascii_lowercase();
    let old_commit = if is_commit_id(&before) && !is_zero_commit(&before) {
        before
    } else {
        String::new()
    };
    let repository_url = push
        .repository
        .and_then(|repository| repository.html_url.or(repository.url))
        .unwrap_or_default();
    let repository = rebake_config::normalise_git_identity(&repository_url);
    if repository.is_empty() {
        return Err("push payload has no repository url".to_string());
    }
    let change = pb::GitRefChanged {
        repository,
        ref_kind: ref_kind.to_string(),
        ref_name: ref_name.to_string(),
        new_commit: after,
        old_commit,
        deleted: false,
        forced: push.forced.unwrap_or(false),
        delivery_id: delivery_id.to_string(),
    };
    Ok(PushOutcome::RefChanged {
        change,
        full_ref: git_ref,
    })
}

fn is_commit_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_zero_commit(text: &str) -> bool {
    text.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::Method;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{
        IngressSettings,
        router::{GITHUB_PATH, router},
        testing::{FakeSink, SECRET, fixture, send, settings},
    };

    const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Sends `body` as GitHub would: signed, with event and delivery headers.
    async fn deliver(
        sink: &Arc<FakeSink>,
        event: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let signature = sign(&body);
        deliver_signed(sink, settings(), event, content_type, &signature, body).await
    }

    async fn deliver_signed(
        sink: &Arc<FakeSink>,
        settings: IngressSettings,
        event: &str,
        content_type: &str,
        signature: &str,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let app = router(Arc::clone(sink), settings, CancellationToken::new());
        let headers = [
            ("content-type", content_type),
            ("x-github-event", event),
            ("x-github-delivery", DELIVERY),
            ("x-hub-signature-256", signature),
        ];
        send(app, Method::POST, GITHUB_PATH, &headers, body).await
    }

    fn git_ref(event: &pb::UpstreamChanged) -> &pb::GitRefChanged {
        match &event.change {
            Some(pb::upstream_changed::Change::GitRef(change)) => change,
            other => panic!("expected a git ref change, got {other:?}"),
        }
    }

    fn expected_branch_push() -> pb::GitRefChanged {
        pb::GitRefChanged {
            repository: "github.com/example-user/sample_app".into(),
            ref_kind: "branch".into(),
            ref_name: "master".into(),
            new_commit: "fd489864e7642b48eaad6e3f155c10e46810ec72".into(),
            old_commit: "737d38c599c1b2991664dfc6155d6bf516fcce36".into(),
            deleted: false,
            forced: false,
            delivery_id: DELIVERY.into(),
        }
    }

    #[tokio::test]
    async fn branch_push_publishes_one_event() {
        let sink = FakeSink::new();
        let (status, _, body) = deliver(&sink, "push", JSON, fixture("github/github-push-branch-normal.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, serde_json::json!({ "accepted": 1 }));
        let published = sink.published();
        assert_eq!(published.len(), 1);
        let (subject, envelope, event) = &published[0];
        assert_eq!(subject, "rebake.upstream.git");
        assert_eq!(envelope.kind, EventKind::UpstreamChanged);
        assert_eq!(envelope.source, "/rebake/ingress");
        assert_eq!(
            envelope.id,
            deterministic_id(&["github", DELIVERY, "refs/heads/master"])
        );
        assert_eq!(event.source, "webhook/github");
        assert!(event.received_at_ms > 0);
        assert_eq!(git_ref(event), &expected_branch_push());
    }

    #[tokio::test]
    async fn form_encoded_push_is_read_from_payload() {
        let json = String::from_utf8(fixture("github/github-push-branch-normal.json")).unwrap();
        let form = serde_urlencoded::to_string([("payload", json.as_str())]).unwrap();
        let sink = FakeSink::new();
        let (status, _, body) = deliver(&sink, "push", FORM, form.into_bytes()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(git_ref(&sink.published()[0].2), &expected_branch_push());
    }

    #[tokio::test]
    async fn form_signature_covers_the_form_body_not_the_json() {
        let json = fixture("github/github-push-branch-normal.json");
        let form = serde_urlencoded::to_string([("payload", std::str::from_utf8(&json).unwrap())]).unwrap();
        let sink = FakeSink::new();
        let (status, _, _) = deliver_signed(&sink, settings(), "push", FORM, &sign(&json), form.into_bytes()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn tag_push_is_a_tag() {
        let sink = FakeSink::new();
        let (status, _, body) = deliver(&sink, "push", JSON, fixture("github/github-push-tag-created.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let published = sink.published();
        let change = git_ref(&published[0].2);
        assert_eq!(change.ref_kind, "tag");
        assert_eq!(change.ref_name, "simple-tag");
        assert_eq!(change.repository, "github.com/example-user/hello-world");
        assert_eq!(change.new_commit, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        assert_eq!(change.old_commit, "", "a created ref has no old commit");
        assert_eq!(
            published[0].1.id,
            deterministic_id(&["github", DELIVERY, "refs/tags/simple-tag"])
        );
    }

    #[tokio::test]
    async fn ping_is_answered() {
        let sink = FakeSink::new();
        let (status, _, body) = deliver(&sink, "ping", JSON, fixture("github/github-ping-repo-hook.json")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({ "pong": true }));
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn bad_or_missing_signature_is_unauthorized() {
        let body = fixture("github/github-push-branch-normal.json");
        let wrong_secret = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"other secret").unwrap();
            mac.update(&body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        let valid_hex = sign(&body).trim_start_matches("sha256=").to_string();
        for signature in [wrong_secret, "sha256=zz".to_string(), valid_hex, String::new()] {
            let sink = FakeSink::new();
            let (status, _, answer) = deliver_signed(&sink, settings(), "push", JSON, &signature, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{signature:?}: {answer}");
            assert!(sink.published().is_empty());
            assert_eq!(sink.attempts(), 0);
        }
    }

    #[tokio::test]
    async fn tampered_body_is_unauthorized() {
        let body = fixture("github/github-push-branch-normal.json");
        let signature = sign(&body);
        let mut tampered = body.clone();
        tampered.push(b'\n');
        let sink = FakeSink::new();
        let (status, _, _) = deliver_signed(&sink, settings(), "push", JSON, &signature, tampered).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn no_configured_secret_refuses_everything() {
        let body = fixture("github/github-push-branch-normal.json");
        let signature = sign(&body);
        let sink = FakeSink::new();
        let settings = IngressSettings {
            github_secret: None,
            ..settings()
        };
        let (status, _, answer) = deliver_signed(&sink, settings, "push", JSON, &signature, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer["error"], "github webhooks are not configured");
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn deletion_is_ignored() {
        let mut document: serde_json::Value =
            serde_json::from_slice(&fixture("github/github-push-branch-normal.json")).unwrap();
        document["deleted"] = true.into();
        document["after"] = "0".repeat(40).into();
        let sink = FakeSink::new();
        let (status, _, body) = deliver(&sink, "push", JSON, serde_json::to_vec(&document).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["accepted"], 0);
        assert_eq!(body["reason"], "deletion ignored");
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn other_refs_are_ignored() {
        let mut document: serde_json::Value =
            serde_json::from_slice(&fixture("github/github-push-branch-normal.json")).unwrap();
        document["ref"] = "refs/pull/12/head".into();
        let sink = FakeSink::new();
        let (status, _, body) = deliver(&sink, "push", JSON, serde_json::to_vec(&document).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["accepted"], 0);
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn same_delivery_twice_has_the_same_event_id() {
        let sink = FakeSink::new();
        for _ in 0..2 {
            let (status, _, _) = deliver(&sink, "push", JSON, fixture("github/github-push-branch-normal.json")).await;
            assert_eq!(status, StatusCode::OK);
        }
        let published = sink.published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].1.id, published[1].1.id);
    }

    #[tokio::test]
    async fn truncated_json_is_a_bad_request() {
        let mut body = fixture("github/github-push-branch-normal.json");
        body.truncate(body.len() / 2);
        let sink = FakeSink::new();
        let (status, _, answer) = deliver(&sink, "push", JSON, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            answer["error"].as_str().unwrap().contains("invalid push payload"),
            "{answer}"
        );
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn invalid_after_is_a_bad_request() {
        let mut document: serde_json::Value =
            serde_json::from_slice(&fixture("github/github-push-branch-normal.json")).unwrap();
        document["after"] = "not-a-commit".into();
        let sink = FakeSink::new();
        let (status, _, _) = deliver(&sink, "push", JSON, serde_json::to_vec(&document).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn missing_delivery_id_is_a_bad_request() {
        let body = fixture("github/github-push-branch-normal.json");
        let signature = sign(&body);
        let sink = FakeSink::new();
        let app = router(Arc::clone(&sink), settings(), CancellationToken::new());
        let headers = [
            ("content-type", JSON),
            ("x-github-event", "push"),
            ("x-hub-signature-256", signature.as_str()),
        ];
        let (status, _, answer) = send(app, Method::POST, GITHUB_PATH, &headers, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["error"], "missing x-github-delivery header");
    }

    #[tokio::test]
    async fn registry_package_event_is_accepted_and_ignored() {
        let sink = FakeSink::new();
        let (status, _, body) = deliver(
            &sink,
            "registry_package",
            JSON,
            fixture("github/github-registry_package-published-container.json"),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["accepted"], 0);
        assert!(sink.published().is_empty());
    }

    #[tokio::test]
    async fn sink_not_ready_is_unavailable_without_publishing() {
        let sink = FakeSink::new();
        sink.set_ready(false);
        let (status, headers, _) = deliver(&sink, "push", JSON, fixture("github/github-push-branch-normal.json")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["retry-after"], "5");
        assert_eq!(sink.attempts(), 0);
    }

    #[tokio::test]
    async fn publish_failure_is_unavailable() {
        let sink = FakeSink::new();
        sink.set_failing(true);
        let (status, headers, _) = deliver(&sink, "push", JSON, fixture("github/github-push-branch-normal.json")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["retry-after"], "5");
        assert_eq!(sink.attempts(), 1);
    }

    #[tokio::test]
    async fn other_content_types_are_unsupported() {
        let sink = FakeSink::new();
        let (status, _, _) = deliver(
            &sink,
            "push",
            "text/plain",
            fixture("github/github-push-branch-normal.json"),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(sink.published().is_empty());
    }

    #[test]
    fn forced_push_keeps_the_flag() {
        let push = RawPush {
            git_ref: Some("refs/heads/main".into()),
            before: Some("a".repeat(40)),
            after: Some("B".repeat(40)),
            deleted: None,
            forced: Some(true),
            repository: Some(RawRepository {
                html_url: None,
                url: Some("https://github.com/Octo/App.git".into()),
            }),
        };
        let PushOutcome::RefChanged { change, full_ref } = normalise_push(push, "d").unwrap() else {
            panic!("expected a ref change");
        };
        assert_eq!(full_ref, "refs/heads/main");
        assert!(change.forced);
        assert_eq!(change.new_commit, "b".repeat(40));
        assert_eq!(change.repository, "github.com/octo/app");
    }
}
