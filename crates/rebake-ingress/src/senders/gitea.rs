//! Gitea and Forgejo (and Gogs-compatible) webhooks: `push`, `create` and `delete` become
//! [`pb::GitRefChanged`]s; every other event is acknowledged as unknown.
//!
//! What is read, and from where:
//!
//! - Authentication: `X-Forgejo-Signature`, else `X-Gitea-Signature`, else `X-Gogs-Signature`,
//!   else `X-Hub-Signature-256`: the hex HMAC-SHA256 of the JSON payload (without a
//!   `sha256=` prefix, except in the GitHub-style header). Gitea signs the JSON document
//!   itself, also when the hook is set to send a form (`payload=<url-encoded JSON>`), so for a
//!   form body the signature is checked against the raw body and against its `payload` field.
//! - Event type: `X-Forgejo-Event`, else `X-Gitea-Event`, else `X-Gogs-Event`.
//! - Delivery id: `X-Forgejo-Delivery`, else `X-Gitea-Delivery`, else `X-Gogs-Delivery`.
//! - Body: `application/json`, or `application/x-www-form-urlencoded` with the JSON in its
//!   `payload` field.
//!   - `push`: `ref` (`refs/heads/…`, `refs/tags/…`), `before`, `after`, and the repository
//!     as `repository.html_url` (else `repository.clone_url`);
//!   - `create`: `ref` as a *short* name, `ref_type` (`branch`, `tag`), `sha`, repository;
//!   - `delete`: `ref` (short), `ref_type`, repository.
//!
//! One push of a new tag or branch makes Gitea send both a `create` and a `push` delivery. Both
//! normalise to the same change (repository, ref kind and name, new commit, no old commit),
//! only the delivery id differs, so the shared layer's event id de-duplicates them into one
//! rebuild. Likewise a deletion reported by `push` (all-zero `after`) and by `delete` both
//! become `deleted` with neither old nor new commit. Gitea does not say whether a push was
//! forced.

use std::borrow::Cow;

use rebake_events::pb;
use serde::Deserialize;

use super::common::{branch_or_tag, first_header, is_zero_commit, media_type_in};
use super::{Change, Credentials, Inbound, Parsed, Refusal, hmac_sha256_matches, json, split_ref, valid_commit};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const JSON_OR_FORM: &str = "application/json or application/x-www-form-urlencoded";
/// Signature headers, most specific first.
const SIGNATURE_HEADERS: [&str; 4] = [
    "x-forgejo-signature",
    "x-gitea-signature",
    "x-gogs-signature",
    "x-hub-signature-256",
];
/// Event type headers, most specific first.
const EVENT_HEADERS: [&str; 3] = ["x-forgejo-event", "x-gitea-event", "x-gogs-event"];
/// Delivery id headers, most specific first.
const DELIVERY_HEADERS: [&str; 3] = ["x-forgejo-delivery", "x-gitea-delivery", "x-gogs-delivery"];

/// The fields of a `push` we read; all optional so odd shapes elsewhere never break parsing.
#[derive(Debug, Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    before: Option<String>,
    after: Option<String>,
    repository: Option<RawRepository>,
}

/// The fields of a `create` or `delete` we read (`sha` is absent from `delete`).
#[derive(Debug, Deserialize)]
struct RawRefEvent {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    ref_type: Option<String>,
    sha: Option<String>,
    repository: Option<RawRepository>,
}

#[derive(Debug, Deserialize)]
struct RawRepository {
    html_url: Option<String>,
    clone_url: Option<String>,
}

/// Checks the HMAC-SHA256 signature of the payload.
pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    let Some(signature) = first_header(inbound, &SIGNATURE_HEADERS) else {
        return Err(Refusal::Unauthorized("missing x-gitea-signature header"));
    };
    if hmac_sha256_matches(credentials.secret, inbound.body, signature) {
        return Ok(());
    }
    // A form-encoded hook: Gitea signs the JSON inside `payload`, not the form body.
    if inbound.media_type().as_deref() == Some(FORM)
        && let Ok(payload) = form_payload(inbound.body)
        && hmac_sha256_matches(credentials.secret, &payload, signature)
    {
        return Ok(());
    }
    Err(Refusal::Unauthorized("invalid signature"))
}

/// Reads a verified Gitea or Forgejo delivery.
pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    let media_type = media_type_in(inbound, &[JSON, FORM], JSON_OR_FORM)?;
    let Some(event) = first_header(inbound, &EVENT_HEADERS) else {
        return Err(Refusal::Malformed(
            "missing x-gitea-event (or x-forgejo-event) header".to_string(),
        ));
    };
    if !matches!(event, "push" | "create" | "delete") {
        return Ok(Parsed::Unknown(format!("gitea event {event} is not handled")));
    }
    let delivery_id = first_header(inbound, &DELIVERY_HEADERS).map(str::to_string);
    let document: Cow<'_, [u8]> = if media_type == FORM {
        Cow::Owned(form_payload(inbound.body)?)
    } else {
        Cow::Borrowed(inbound.body)
    };
    let outcome = match event {
        "push" => normalise_push(json(&document, "gitea push payload")?),
        "create" => normalise_ref_event(json(&document, "gitea create payload")?, false),
        _ => normalise_ref_event(json(&document, "gitea delete payload")?, true),
    }?;
    Ok(match outcome {
        Outcome::Change(mut change) => {
            change.delivery_id = delivery_id.clone().unwrap_or_default();
            Parsed::Changes {
                delivery_id,
                changes: vec![Change::Git(change)],
            }
        }
        Outcome::Ignored(reason) => Parsed::Ignored(reason),
    })
}

/// What one delivery amounts to, before its delivery id is attached.
enum Outcome {
    Change(pb::GitRefChanged),
    Ignored(String),
}

/// The `payload` field of a form body (the first one, if several).
fn form_payload(body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|error| Refusal::Malformed(format!("invalid form body: {error}")))?;
    fields
        .into_iter()
        .find(|(name, _)| name == "payload")
        .map(|(_, payload)| payload.into_bytes())
        .ok_or_else(|| Refusal::Malformed("form body has no payload field".to_string()))
}

fn normalise_push(push: RawPush) -> Result<Outcome, Refusal> {
    let Some(full_ref) = push.git_ref.as_deref() else {
        return Err(Refusal::Malformed("gitea push payload has no ref".to_string()));
    };
    let Some((ref_kind, ref_name)) = branch_or_tag(full_ref)? else {
        return Ok(Outcome::Ignored(format!(
            "ref {full_ref:?} is neither a branch nor a tag"
        )));
    };
    let after = push.after.as_deref().unwrap_or_default();
    let deleted = is_zero_commit(after);
    let new_commit = if deleted {
        String::new()
    } else {
        valid_commit(after)
            .ok_or_else(|| Refusal::Malformed(format!("invalid after commit {after:?}: expected 40 hex digits")))?
    };
    let repository = repository_identity(push.repository.as_ref())?;
    // A deletion keeps no old commit, so that it reads exactly like the `delete` event Gitea
    // sends for the same ref.
    let old_commit = if deleted {
        String::new()
    } else {
        push.before.as_deref().and_then(valid_commit).unwrap_or_default()
    };
    Ok(Outcome::Change(pb::GitRefChanged {
        repository,
        ref_kind: ref_kind.to_string(),
        ref_name: ref_name.to_string(),
        new_commit,
        old_commit,
        deleted,
        forced: false,
        delivery_id: String::new(),
    }))
}

/// `create` (`deleted` false) or `delete` (`deleted` true).
fn normalise_ref_event(event: RawRefEvent, deleted: bool) -> Result<Outcome, Refusal> {
    let what = if deleted { "delete" } else { "create" };
    let Some(ref_type) = event.ref_type.as_deref() else {
        return Err(Refusal::Malformed(format!("gitea {what} payload has no ref_type")));
    };
    let ref_kind = match ref_type {
        "branch" => "branch",
        "tag" => "tag",
        other => {
            return Ok(Outcome::Ignored(format!(
                "ref type {other:?} is neither a branch nor a tag"
            )));
        }
    };
    let Some(git_ref) = event.git_ref.as_deref() else {
        return Err(Refusal::Malformed(format!("gitea {what} payload has no ref")));
    };
    // Gitea sends the short name; accept a full ref too, as long as it agrees with `ref_type`.
    let ref_name = match split_ref(git_ref) {
        Some((kind, name)) if kind == ref_kind => name,
        Some(_) => {
            return Err(Refusal::Malformed(format!(
                "ref {git_ref:?} contradicts ref_type {ref_type:?}"
            )));
        }
        None => git_ref,
    };
    if ref_name.is_empty() {
        return Err(Refusal::Malformed(format!("invalid ref {git_ref:?}")));
    }
    let new_commit = if deleted {
        String::new()
    } else {
        let sha = event.sha.as_deref().unwrap_or_default();
        valid_commit(sha).ok_or_else(|| Refusal::Malformed(format!("invalid sha {sha:?}: expected 40 hex digits")))?
    };
    let repository = repository_identity(event.repository.as_ref())?;
    Ok(Outcome::Change(pb::GitRefChanged {
        repository,
        ref_kind: ref_kind.to_string(),
        ref_name: ref_name.to_string(),
        new_commit,
        old_commit: String::new(),
        deleted,
        forced: false,
        delivery_id: String::new(),
    }))
}

/// `repository.html_url`, else `repository.clone_url`, normalised.
fn repository_identity(repository: Option<&RawRepository>) -> Result<String, Refusal> {
    repository
        .into_iter()
        .flat_map(|repository| [repository.html_url.as_deref(), repository.clone_url.as_deref()])
        .flatten()
        .map(rebake_config::normalise_git_identity)
        .find(|identity| !identity.is_empty())
        .ok_or_else(|| Refusal::Malformed("gitea payload has no repository url".to_string()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::test_support::{
        self, any_body, assert_git_well_formed, fixture, fixture_with, headers, inbound, json_value, only_git_change,
    };
    use super::super::{hmac_sha256_hex, split_ref};
    use super::*;

    const SECRET: &[u8] = b"gitea-secret-for-tests";
    const PUSH_BRANCH_CREATED: &str = "gitea/gitea-push-branch-created.json";
    const PUSH_TAG_CREATED: &str = "gitea/gitea-push-tag-created.json";
    const CREATE_TAG: &str = "gitea/gitea-create-tag.json";
    const DELETE_BRANCH: &str = "gitea/gitea-delete-branch.json";
    const DELIVERY: &str = "3f1c2b9e-5d7a-4e21-9f0b-8a6c4d2e1b70";
    const OTHER_DELIVERY: &str = "8c0e6a41-2b3d-4f5e-a697-1c2d3e4f5a6b";

    fn credentials() -> Credentials<'static> {
        test_support::credentials(SECRET)
    }

    /// The bare hex signature Gitea sends in `X-Gitea-Signature`.
    fn sign(payload: &[u8]) -> String {
        hmac_sha256_hex(SECRET, payload)
            .trim_start_matches("sha256=")
            .to_string()
    }

    /// Headers as Gitea sends them for `event` over `payload`.
    fn gitea_headers(event: &str, delivery: &str, payload: &[u8]) -> HeaderMap {
        headers(&[
            ("content-type", "application/json"),
            ("x-gitea-event", event),
            ("x-gitea-event-type", event),
            ("x-gitea-delivery", delivery),
            ("x-gitea-signature", &sign(payload)),
            ("x-gogs-event", event),
            ("x-gogs-delivery", delivery),
            ("x-gogs-signature", &sign(payload)),
            ("x-hub-signature-256", &hmac_sha256_hex(SECRET, payload)),
            ("x-github-event", event),
            ("x-github-delivery", delivery),
        ])
    }

    /// Headers as Forgejo sends them (its own headers besides Gitea's).
    fn forgejo_headers(event: &str, delivery: &str, payload: &[u8]) -> HeaderMap {
        let mut map = gitea_headers(event, delivery, payload);
        map.insert("x-forgejo-event", event.parse().unwrap());
        map.insert("x-forgejo-delivery", delivery.parse().unwrap());
        map.insert("x-forgejo-signature", sign(payload).parse().unwrap());
        map
    }

    fn expected_branch_created() -> pb::GitRefChanged {
        pb::GitRefChanged {
            repository: "localhost:3000/example/example".into(),
            ref_kind: "branch".into(),
            ref_name: "master".into(),
            new_commit: "67b56589a45103f891bdee7c0546e5d40bc02001".into(),
            old_commit: String::new(),
            deleted: false,
            forced: false,
            delivery_id: DELIVERY.into(),
        }
    }

    #[test]
    fn captured_push_is_verified_and_read() {
        let body = fixture(PUSH_BRANCH_CREATED);
        let headers = gitea_headers("push", DELIVERY, &body);
        let request = inbound(&headers, &body);
        assert_eq!(verify(&request, &credentials()), Ok(()));
        assert_eq!(
            parse(&request),
            Ok(Parsed::Changes {
                delivery_id: Some(DELIVERY.into()),
                changes: vec![Change::Git(expected_branch_created())],
            })
        );
    }

    #[test]
    fn forgejo_headers_are_preferred() {
        let body = fixture(PUSH_BRANCH_CREATED);
        let mut headers = forgejo_headers("push", DELIVERY, &body);
        // Gitea's own header is not consulted when Forgejo's is present.
        headers.insert("x-gitea-signature", "00".parse().unwrap());
        headers.insert("x-gitea-delivery", OTHER_DELIVERY.parse().unwrap());
        headers.insert("x-gitea-event", "issues".parse().unwrap());
        let request = inbound(&headers, &body);
        assert_eq!(verify(&request, &credentials()), Ok(()));
        assert_eq!(only_git_change(parse(&request).unwrap()), expected_branch_created());

        headers.insert("x-forgejo-signature", sign(b"something else").parse().unwrap());
        assert_eq!(
            verify(&inbound(&headers, &body), &credentials()),
            Err(Refusal::Unauthorized("invalid signature"))
        );
    }

    #[test]
    fn wrong_or_missing_signature_is_unauthorized() {
        let body = fixture(PUSH_BRANCH_CREATED);
        let wrong_secret = hmac_sha256_hex(b"other secret", &body);
        let mut tampered = body.clone();
        tampered.push(b'\n');
        for signature in [
            Some(wrong_secret.trim_start_matches("sha256=").to_string()),
            Some("zz".to_string()),
            Some(sign(&tampered)),
            None,
        ] {
            let mut headers = gitea_headers("push", DELIVERY, &body);
            for name in SIGNATURE_HEADERS {
                headers.remove(name);
            }
            if let Some(signature) = &signature {
                headers.insert("x-gitea-signature", signature.parse().unwrap());
            }
            let verdict = verify(&inbound(&headers, &body), &credentials());
            assert!(
                matches!(verdict, Err(Refusal::Unauthorized(_))),
                "{signature:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn form_body_is_read_from_payload_and_signed_over_the_json() {
        let json_body = fixture(PUSH_BRANCH_CREATED);
        let form = serde_urlencoded::to_string([("payload", std::str::from_utf8(&json_body).unwrap())]).unwrap();
        // Gitea signs the JSON document, not the form body it sends.
        let mut headers = gitea_headers("push", DELIVERY, &json_body);
        headers.insert("content-type", FORM.parse().unwrap());
        let request = inbound(&headers, form.as_bytes());
        assert_eq!(verify(&request, &credentials()), Ok(()));
        assert_eq!(only_git_change(parse(&request).unwrap()), expected_branch_created());

        // A signature over something else is refused for a form too.
        headers.insert("x-gitea-signature", sign(b"{}").parse().unwrap());
        assert!(matches!(
            verify(&inbound(&headers, form.as_bytes()), &credentials()),
            Err(Refusal::Unauthorized(_))
        ));

        headers.insert("x-gitea-signature", sign(b"a=b").parse().unwrap());
        assert!(matches!(
            parse(&inbound(&headers, b"a=b")),
            Err(Refusal::Malformed(reason)) if reason.contains("no payload field")
        ));
    }

    #[test]
    fn tag_push_and_create_normalise_to_the_same_change() {
        let push_body = fixture(PUSH_TAG_CREATED);
        let create_body = fixture(CREATE_TAG);
        let push_headers = gitea_headers("push", DELIVERY, &push_body);
        let create_headers = gitea_headers("create", OTHER_DELIVERY, &create_body);
        assert_eq!(verify(&inbound(&create_headers, &create_body), &credentials()), Ok(()));
        let from_push = only_git_change(parse(&inbound(&push_headers, &push_body)).unwrap());
        let from_create = only_git_change(parse(&inbound(&create_headers, &create_body)).unwrap());
        let expected = pb::GitRefChanged {
            repository: "localhost:3000/example/example".into(),
            ref_kind: "tag".into(),
            ref_name: "v1.0.0".into(),
            new_commit: "67b56589a45103f891bdee7c0546e5d40bc02001".into(),
            old_commit: String::new(),
            deleted: false,
            forced: false,
            delivery_id: DELIVERY.into(),
        };
        assert_eq!(from_push, expected);
        assert_eq!(
            from_create,
            pb::GitRefChanged {
                delivery_id: OTHER_DELIVERY.into(),
                ..expected
            }
        );
    }

    #[test]
    fn branch_create_matches_the_branch_push() {
        let create_body = fixture_with(CREATE_TAG, |document| {
            document["ref"] = "master".into();
            document["ref_type"] = "branch".into();
        });
        let headers = gitea_headers("create", DELIVERY, &create_body);
        assert_eq!(
            only_git_change(parse(&inbound(&headers, &create_body)).unwrap()),
            expected_branch_created()
        );
    }

    #[test]
    fn delete_event_is_a_deletion() {
        let body = fixture(DELETE_BRANCH);
        let headers = forgejo_headers("delete", DELIVERY, &body);
        let request = inbound(&headers, &body);
        assert_eq!(verify(&request, &credentials()), Ok(()));
        let expected = pb::GitRefChanged {
            repository: "localhost:3000/example/example".into(),
            ref_kind: "branch".into(),
            ref_name: "feature/old".into(),
            new_commit: String::new(),
            old_commit: String::new(),
            deleted: true,
            forced: false,
            delivery_id: DELIVERY.into(),
        };
        assert_eq!(only_git_change(parse(&request).unwrap()), expected);

        // The same deletion reported by a push reads the same.
        let push_body = fixture_with(PUSH_BRANCH_CREATED, |document| {
            document["ref"] = "refs/heads/feature/old".into();
            document["before"] = "67b56589a45103f891bdee7c0546e5d40bc02001".into();
            document["after"] = "0".repeat(40).into();
        });
        let headers = gitea_headers("push", DELIVERY, &push_body);
        assert_eq!(
            only_git_change(parse(&inbound(&headers, &push_body)).unwrap()),
            expected
        );
    }

    #[test]
    fn full_refs_in_create_are_accepted_when_consistent() {
        let headers_for = |body: &[u8]| gitea_headers("create", DELIVERY, body);
        let body = fixture_with(CREATE_TAG, |document| document["ref"] = "refs/tags/v1.0.0".into());
        assert_eq!(
            only_git_change(parse(&inbound(&headers_for(&body), &body)).unwrap()).ref_name,
            "v1.0.0"
        );

        let body = fixture_with(CREATE_TAG, |document| document["ref"] = "refs/heads/v1.0.0".into());
        assert!(matches!(
            parse(&inbound(&headers_for(&body), &body)),
            Err(Refusal::Malformed(reason)) if reason.contains("contradicts")
        ));
    }

    #[test]
    fn other_events_are_unknown() {
        let body = fixture(PUSH_BRANCH_CREATED);
        for event in ["pull_request", "issues", "release", "repository", "package"] {
            let headers = gitea_headers(event, DELIVERY, &body);
            let parsed = parse(&inbound(&headers, &body)).unwrap();
            assert!(
                matches!(&parsed, Parsed::Unknown(reason) if reason.contains(event)),
                "{parsed:?}"
            );
        }
    }

    #[test]
    fn other_refs_and_ref_types_are_ignored() {
        let body = fixture_with(PUSH_BRANCH_CREATED, |document| {
            document["ref"] = "refs/pull/3/head".into()
        });
        let headers = gitea_headers("push", DELIVERY, &body);
        assert!(matches!(parse(&inbound(&headers, &body)), Ok(Parsed::Ignored(_))));

        let body = fixture_with(CREATE_TAG, |document| document["ref_type"] = "pull".into());
        let headers = gitea_headers("create", DELIVERY, &body);
        assert!(matches!(parse(&inbound(&headers, &body)), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn missing_event_header_is_malformed() {
        let body = fixture(PUSH_BRANCH_CREATED);
        let headers = headers(&[
            ("content-type", "application/json"),
            ("x-gitea-signature", &sign(&body)),
        ]);
        assert!(matches!(parse(&inbound(&headers, &body)), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn malformed_payloads_are_refused_with_a_reason() {
        let mut truncated = fixture(PUSH_BRANCH_CREATED);
        truncated.truncate(truncated.len() / 2);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("push", truncated, "invalid gitea push payload"),
            ("push", b"\"push\"".to_vec(), "invalid gitea push payload"),
            (
                "push",
                fixture_with(PUSH_BRANCH_CREATED, |document| document["ref"] = Value::Null),
                "no ref",
            ),
            (
                "push",
                fixture_with(PUSH_BRANCH_CREATED, |document| document["after"] = "67b5".into()),
                "invalid after commit",
            ),
            (
                "push",
                fixture_with(PUSH_BRANCH_CREATED, |document| document["repository"] = Value::Null),
                "no repository url",
            ),
            (
                "create",
                fixture_with(CREATE_TAG, |document| document["sha"] = "".into()),
                "invalid sha",
            ),
            (
                "create",
                fixture_with(CREATE_TAG, |document| document["ref"] = "".into()),
                "invalid ref",
            ),
            (
                "delete",
                fixture_with(DELETE_BRANCH, |document| document["ref_type"] = Value::Null),
                "no ref_type",
            ),
            ("delete", b"{\"ref\": 1}".to_vec(), "invalid gitea delete payload"),
        ];
        for (event, body, reason) in cases {
            let headers = gitea_headers(event, DELIVERY, &body);
            match parse(&inbound(&headers, &body)) {
                Err(Refusal::Malformed(text)) => assert!(text.contains(reason), "{text:?} lacks {reason:?}"),
                other => panic!("{event}: expected malformed ({reason}), got {other:?}"),
            }
        }
    }

    #[test]
    fn other_content_types_are_unsupported() {
        let body = fixture(PUSH_BRANCH_CREATED);
        for content_type in [Some("text/plain"), Some("application/xml"), None] {
            let mut headers = gitea_headers("push", DELIVERY, &body);
            headers.remove("content-type");
            if let Some(content_type) = content_type {
                headers.insert("content-type", content_type.parse().unwrap());
            }
            let parsed = parse(&inbound(&headers, &body));
            assert!(matches!(parsed, Err(Refusal::UnsupportedMediaType(_))), "{parsed:?}");
        }
    }

    #[test]
    fn fixtures_parse_the_same_twice() {
        for (event, name) in [
            ("push", PUSH_BRANCH_CREATED),
            ("push", PUSH_TAG_CREATED),
            ("create", CREATE_TAG),
            ("delete", DELETE_BRANCH),
        ] {
            let body = fixture(name);
            let headers = gitea_headers(event, DELIVERY, &body);
            let first = parse(&inbound(&headers, &body)).unwrap();
            let copy = body.clone();
            assert_eq!(first, parse(&inbound(&headers, &copy)).unwrap(), "{name}");
            assert!(
                matches!(&first, Parsed::Changes { changes, .. } if changes.len() == 1),
                "{name}"
            );
        }
    }

    /// What every change this module produces satisfies.
    fn assert_well_formed(parsed: &Parsed) {
        assert_git_well_formed(parsed);
        if let Parsed::Changes { changes, .. } = parsed {
            for change in changes {
                if let Change::Git(change) = change {
                    assert!(split_ref(&change.ref_name).is_none(), "short names only: {change:?}");
                }
            }
        }
    }

    /// Keys and values these events carry.
    const KEYS: &[&str] = &[
        "ref",
        "ref_type",
        "sha",
        "before",
        "after",
        "repository",
        "html_url",
        "clone_url",
        "branch",
        "tag",
        "pull",
    ];
    const PATTERNS: &[&str] = &[
        "[0-9a-fA-F]{40}",
        "(refs/(heads|tags|pull)/)?.{0,8}",
        "(https?://|git@)[a-z.]{1,8}[:/][a-z/]{0,12}",
    ];

    fn events() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["push", "create", "delete", "issues"])
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            body in any_body(),
            event in events(),
            form in any::<bool>(),
            signature in "[0-9a-f]{0,64}",
        ) {
            let mut headers = gitea_headers(event, DELIVERY, &body);
            if form {
                headers.insert("content-type", FORM.parse().unwrap());
            }
            let request = inbound(&headers, &body);
            prop_assert_eq!(verify(&request, &credentials()), Ok(()));
            if let Ok(parsed) = &parse(&request) {
                assert_well_formed(parsed);
            }
            headers.insert("x-gitea-signature", signature.parse().unwrap());
            let _ = verify(&inbound(&headers, &body), &credentials());
        }

        #[test]
        fn arbitrary_json_never_panics(document in json_value(KEYS, PATTERNS), event in events(), form in any::<bool>()) {
            let json_body = serde_json::to_vec(&document).unwrap();
            let mut headers = gitea_headers(event, DELIVERY, &json_body);
            let body = if form {
                headers.insert("content-type", FORM.parse().unwrap());
                serde_urlencoded::to_string([("payload", String::from_utf8(json_body.clone()).unwrap())])
                    .unwrap()
                    .into_bytes()
            } else {
                json_body
            };
            let request = inbound(&headers, &body);
            prop_assert_eq!(verify(&request, &credentials()), Ok(()));
            let parsed = parse(&request);
            prop_assert!(!matches!(
                parsed,
                Err(Refusal::UnsupportedMediaType(_)) | Err(Refusal::Unauthorized(_))
            ));
            prop_assert_eq!(&parsed, &parse(&request), "parsing is deterministic");
            if let Ok(parsed) = &parsed {
                assert_well_formed(parsed);
            }
        }

        #[test]
        fn fixtures_with_one_field_replaced_never_panic(
            case in prop::sample::select(vec![
                ("push", PUSH_TAG_CREATED),
                ("create", CREATE_TAG),
                ("delete", DELETE_BRANCH),
            ]),
            field in prop::sample::select(vec!["ref", "ref_type", "sha", "before", "after", "repository"]),
            value in json_value(KEYS, PATTERNS),
        ) {
            let (event, name) = case;
            let body = fixture_with(name, |document| document[field] = value);
            let headers = gitea_headers(event, DELIVERY, &body);
            if let Ok(parsed) = &parse(&inbound(&headers, &body)) {
                assert_well_formed(parsed);
            }
        }
    }
}
