//! GitLab project webhooks: a `Push Hook` or `Tag Push Hook` becomes one
//! [`pb::GitRefChanged`]; every other GitLab event is acknowledged as unknown.
//!
//! What is read, and from where:
//!
//! - Authentication: `X-Gitlab-Token`, the hook's secret token sent verbatim (GitLab does not
//!   sign bodies), compared with the configured secret in constant time.
//! - Event type: `X-Gitlab-Event` (`Push Hook`, `Tag Push Hook`). Only when that header is
//!   absent is the body's `object_kind` (`push`, `tag_push`) used instead. `System Hook`
//!   deliveries (same body shapes, instance-wide) and every other event are
//!   [`Parsed::Unknown`].
//! - Delivery id: `Idempotency-Key` (kept across GitLab's retries, newer releases), else
//!   `X-Gitlab-Event-UUID`. `X-Gitlab-Webhook-UUID` names the hook, not the delivery, so it is
//!   never used as one: every delivery of a hook would look like a replay of the first.
//! - Body: `application/json` only. `ref` (`refs/heads/…` or `refs/tags/…`), `before`,
//!   `after`, `checkout_sha`; the repository is named by `project.web_url` (else the legacy
//!   `repository.homepage`, else `project.git_http_url`).
//!
//! A deletion is visible only as an all-zero `after`: it becomes a change with `deleted` set
//! and no new commit. For tags, `after` is the tag object of an annotated tag while
//! `checkout_sha` is the commit it points at, so the new commit is `checkout_sha` when it is a
//! valid commit id and `after` otherwise. GitLab does not say whether a push was forced.

use rebake_events::pb;
use serde::Deserialize;

use super::common::{branch_or_tag, first_header, is_zero_commit, media_type_in};
use super::{Change, Credentials, Inbound, Parsed, Refusal, json, secret_eq, valid_commit};

const JSON: &str = "application/json";
const TOKEN_HEADER: &str = "x-gitlab-token";
const EVENT_HEADER: &str = "x-gitlab-event";
/// Delivery id headers, most specific first.
const DELIVERY_HEADERS: [&str; 2] = ["idempotency-key", "x-gitlab-event-uuid"];
const PUSH_HOOK: &str = "Push Hook";
const TAG_PUSH_HOOK: &str = "Tag Push Hook";

/// The fields of a push (or tag push) we read; all optional so unexpected shapes elsewhere in
/// the document never break parsing.
#[derive(Debug, Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    before: Option<String>,
    after: Option<String>,
    checkout_sha: Option<String>,
    project: Option<RawProject>,
    repository: Option<RawRepository>,
}

#[derive(Debug, Deserialize)]
struct RawProject {
    web_url: Option<String>,
    git_http_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRepository {
    homepage: Option<String>,
}

/// Checks `X-Gitlab-Token` against the configured secret.
pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    match inbound.header(TOKEN_HEADER) {
        Some(token) if secret_eq(token.as_bytes(), credentials.secret) => Ok(()),
        Some(_) => Err(Refusal::Unauthorized("invalid x-gitlab-token")),
        None => Err(Refusal::Unauthorized("missing x-gitlab-token header")),
    }
}

/// Reads a verified GitLab delivery.
pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    media_type_in(inbound, &[JSON], JSON)?;
    match inbound.header(EVENT_HEADER) {
        Some(PUSH_HOOK | TAG_PUSH_HOOK) => {}
        Some(other) => return Ok(Parsed::Unknown(format!("gitlab event {other} is not handled"))),
        None => {
            let document: serde_json::Value = json(inbound.body, "gitlab payload")?;
            match document.get("object_kind").and_then(serde_json::Value::as_str) {
                Some("push" | "tag_push") => {}
                Some(other) => {
                    return Ok(Parsed::Unknown(format!("gitlab object_kind {other:?} is not handled")));
                }
                None => {
                    return Err(Refusal::Malformed(
                        "missing x-gitlab-event header and no object_kind in the body".to_string(),
                    ));
                }
            }
        }
    }
    let delivery_id = first_header(inbound, &DELIVERY_HEADERS).map(str::to_string);
    let push: RawPush = json(inbound.body, "gitlab push payload")?;
    normalise_push(push, delivery_id)
}

/// Turns a push payload into a change, or says why there is nothing to act on.
fn normalise_push(push: RawPush, delivery_id: Option<String>) -> Result<Parsed, Refusal> {
    let Some(full_ref) = push.git_ref.as_deref() else {
        return Err(Refusal::Malformed("gitlab push payload has no ref".to_string()));
    };
    let Some((ref_kind, ref_name)) = branch_or_tag(full_ref)? else {
        return Ok(Parsed::Ignored(format!(
            "ref {full_ref:?} is neither a branch nor a tag"
        )));
    };
    let after = push.after.as_deref().unwrap_or_default();
    let deleted = is_zero_commit(after);
    if !deleted && valid_commit(after).is_none() {
        return Err(Refusal::Malformed(format!(
            "invalid after commit {after:?}: expected 40 hex digits"
        )));
    }
    let repository = repository_identity(&push);
    if repository.is_empty() {
        return Err(Refusal::Malformed("gitlab push payload has no project url".to_string()));
    }
    let new_commit = if deleted {
        String::new()
    } else {
        push.checkout_sha
            .as_deref()
            .and_then(valid_commit)
            .or_else(|| valid_commit(after))
            .unwrap_or_default()
    };
    let change = pb::GitRefChanged {
        repository,
        ref_kind: ref_kind.to_string(),
        ref_name: ref_name.to_string(),
        new_commit,
        old_commit: push.before.as_deref().and_then(valid_commit).unwrap_or_default(),
        deleted,
        forced: false,
        delivery_id: delivery_id.clone().unwrap_or_default(),
    };
    Ok(Parsed::Changes {
        delivery_id,
        changes: vec![Change::Git(change)],
    })
}

/// The first of `project.web_url`, `repository.homepage`, `project.git_http_url` that names
/// something, normalised; empty when none does.
fn repository_identity(push: &RawPush) -> String {
    let project = push.project.as_ref();
    [
        project.and_then(|project| project.web_url.as_deref()),
        push.repository
            .as_ref()
            .and_then(|repository| repository.homepage.as_deref()),
        project.and_then(|project| project.git_http_url.as_deref()),
    ]
    .into_iter()
    .flatten()
    .map(rebake_config::normalise_git_identity)
    .find(|identity| !identity.is_empty())
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::test_support::{
        self, any_body, assert_git_well_formed, fixture, fixture_with, headers, inbound, json_value, only_git_change,
    };
    use super::*;

    const SECRET: &[u8] = b"gitlab-token-for-tests";
    const FIXTURE: &str = "gitlab/gitlab-push-hook.json";
    const EVENT_UUID: &str = "d4f1a7a2-8a77-4c40-9a1c-6d8e0c1b2f3a";
    const IDEMPOTENCY_KEY: &str = "5b0f0b8e-3c1e-4f0e-8a9e-2c7d1a0e9b44";

    fn credentials() -> Credentials<'static> {
        test_support::credentials(SECRET)
    }

    /// Headers as GitLab sends them for `event`, with the right token.
    fn gitlab_headers(event: &str) -> HeaderMap {
        headers(&[
            ("content-type", "application/json"),
            ("x-gitlab-event", event),
            ("x-gitlab-token", std::str::from_utf8(SECRET).unwrap()),
            ("x-gitlab-event-uuid", EVENT_UUID),
            ("x-gitlab-webhook-uuid", "9a1d3c55-0000-4000-8000-000000000001"),
        ])
    }

    fn expected_fixture_change() -> pb::GitRefChanged {
        pb::GitRefChanged {
            repository: "example.com/mike/diaspora".into(),
            ref_kind: "branch".into(),
            ref_name: "master".into(),
            new_commit: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into(),
            old_commit: "95790bf891e76fee5e1747ab589903a6a1f80f22".into(),
            deleted: false,
            forced: false,
            delivery_id: EVENT_UUID.into(),
        }
    }

    #[test]
    fn documented_push_hook_is_verified_and_read() {
        let body = fixture(FIXTURE);
        let headers = gitlab_headers(PUSH_HOOK);
        let request = inbound(&headers, &body);
        assert_eq!(verify(&request, &credentials()), Ok(()));
        let parsed = parse(&request).unwrap();
        assert_eq!(
            parsed,
            Parsed::Changes {
                delivery_id: Some(EVENT_UUID.into()),
                changes: vec![Change::Git(expected_fixture_change())],
            }
        );
    }

    #[test]
    fn idempotency_key_is_preferred_as_delivery_id() {
        let body = fixture(FIXTURE);
        let mut headers = gitlab_headers(PUSH_HOOK);
        headers.insert("idempotency-key", IDEMPOTENCY_KEY.parse().unwrap());
        let Parsed::Changes { delivery_id, changes } = parse(&inbound(&headers, &body)).unwrap() else {
            panic!("expected changes");
        };
        assert_eq!(delivery_id.as_deref(), Some(IDEMPOTENCY_KEY));
        assert_eq!(
            changes,
            vec![Change::Git(pb::GitRefChanged {
                delivery_id: IDEMPOTENCY_KEY.into(),
                ..expected_fixture_change()
            })]
        );
    }

    #[test]
    fn webhook_uuid_alone_is_not_a_delivery_id() {
        let body = fixture(FIXTURE);
        let headers = headers(&[
            ("content-type", "application/json"),
            ("x-gitlab-event", PUSH_HOOK),
            ("x-gitlab-webhook-uuid", "9a1d3c55-0000-4000-8000-000000000001"),
        ]);
        let Parsed::Changes { delivery_id, changes } = parse(&inbound(&headers, &body)).unwrap() else {
            panic!("expected changes");
        };
        assert_eq!(delivery_id, None);
        assert_eq!(
            changes,
            vec![Change::Git(pb::GitRefChanged {
                delivery_id: String::new(),
                ..expected_fixture_change()
            })]
        );
    }

    #[test]
    fn wrong_or_missing_token_is_unauthorized() {
        let body = fixture(FIXTURE);
        for token in [Some("not-the-token"), Some("gitlab-token-for-test"), None] {
            let mut headers = gitlab_headers(PUSH_HOOK);
            headers.remove("x-gitlab-token");
            if let Some(token) = token {
                headers.insert("x-gitlab-token", token.parse().unwrap());
            }
            let verdict = verify(&inbound(&headers, &body), &credentials());
            assert!(
                matches!(verdict, Err(Refusal::Unauthorized(_))),
                "{token:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn empty_secret_accepts_nothing() {
        let body = fixture(FIXTURE);
        let headers = gitlab_headers(PUSH_HOOK);
        let credentials = Credentials {
            secret: b"",
            header: None,
        };
        assert!(matches!(
            verify(&inbound(&headers, &body), &credentials),
            Err(Refusal::Unauthorized(_))
        ));
    }

    #[test]
    fn all_zero_after_is_a_deletion() {
        let body = fixture_with(FIXTURE, |document| {
            document["after"] = "0".repeat(40).into();
            document["checkout_sha"] = Value::Null;
        });
        let headers = gitlab_headers(PUSH_HOOK);
        let change = only_git_change(parse(&inbound(&headers, &body)).unwrap());
        assert_eq!(
            change,
            pb::GitRefChanged {
                new_commit: String::new(),
                deleted: true,
                ..expected_fixture_change()
            }
        );
    }

    #[test]
    fn tag_push_reads_the_peeled_commit() {
        let tag_object = "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7";
        let commit = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7";
        let body = fixture_with(FIXTURE, |document| {
            document["object_kind"] = "tag_push".into();
            document["ref"] = "refs/tags/v1.0.0".into();
            document["before"] = "0".repeat(40).into();
            document["after"] = tag_object.into();
            document["checkout_sha"] = commit.into();
        });
        let headers = gitlab_headers(TAG_PUSH_HOOK);
        let change = only_git_change(parse(&inbound(&headers, &body)).unwrap());
        assert_eq!(
            change,
            pb::GitRefChanged {
                repository: "example.com/mike/diaspora".into(),
                ref_kind: "tag".into(),
                ref_name: "v1.0.0".into(),
                new_commit: commit.into(),
                old_commit: String::new(),
                deleted: false,
                forced: false,
                delivery_id: EVENT_UUID.into(),
            }
        );
    }

    #[test]
    fn without_checkout_sha_the_after_commit_is_used() {
        let body = fixture_with(FIXTURE, |document| {
            document["checkout_sha"] = Value::Null;
            document["after"] = "DA1560886D4F094C3E6C9EF40349F7D38B5D27D7".into();
        });
        let headers = gitlab_headers(PUSH_HOOK);
        let change = only_git_change(parse(&inbound(&headers, &body)).unwrap());
        assert_eq!(change, expected_fixture_change());
    }

    #[test]
    fn object_kind_is_read_when_the_event_header_is_absent() {
        let body = fixture(FIXTURE);
        let mut headers = gitlab_headers(PUSH_HOOK);
        headers.remove("x-gitlab-event");
        let change = only_git_change(parse(&inbound(&headers, &body)).unwrap());
        assert_eq!(change, expected_fixture_change());

        let merge_request = fixture_with(FIXTURE, |document| document["object_kind"] = "merge_request".into());
        assert!(matches!(
            parse(&inbound(&headers, &merge_request)),
            Ok(Parsed::Unknown(_))
        ));

        let no_kind = fixture_with(FIXTURE, |document| document["object_kind"] = Value::Null);
        assert!(matches!(
            parse(&inbound(&headers, &no_kind)),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn repository_falls_back_to_legacy_fields() {
        let body = fixture_with(FIXTURE, |document| {
            document["project"]["web_url"] = Value::Null;
            document["repository"]["homepage"] = "https://GitLab.example.org/Group/Sub/App".into();
        });
        let headers = gitlab_headers(PUSH_HOOK);
        let change = only_git_change(parse(&inbound(&headers, &body)).unwrap());
        assert_eq!(change.repository, "gitlab.example.org/group/sub/app");

        let body = fixture_with(FIXTURE, |document| {
            document["project"]["web_url"] = Value::Null;
            document["repository"] = Value::Null;
        });
        let change = only_git_change(parse(&inbound(&headers, &body)).unwrap());
        assert_eq!(change.repository, "example.com/mike/diaspora");

        let body = fixture_with(FIXTURE, |document| {
            document["project"] = Value::Null;
            document["repository"] = Value::Null;
        });
        assert!(matches!(parse(&inbound(&headers, &body)), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn other_events_are_unknown() {
        let body = fixture(FIXTURE);
        for event in ["Merge Request Hook", "System Hook", "Pipeline Hook", "Note Hook"] {
            let headers = gitlab_headers(event);
            let parsed = parse(&inbound(&headers, &body)).unwrap();
            assert!(
                matches!(&parsed, Parsed::Unknown(reason) if reason.contains(event)),
                "{parsed:?}"
            );
        }
    }

    #[test]
    fn other_refs_are_ignored() {
        let body = fixture_with(FIXTURE, |document| {
            document["ref"] = "refs/merge-requests/12/head".into()
        });
        let headers = gitlab_headers(PUSH_HOOK);
        assert!(matches!(parse(&inbound(&headers, &body)), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn malformed_payloads_are_refused_with_a_reason() {
        let headers = gitlab_headers(PUSH_HOOK);
        let mut truncated = fixture(FIXTURE);
        truncated.truncate(truncated.len() / 2);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (truncated, "invalid gitlab push payload"),
            (b"[1, 2, 3]".to_vec(), "invalid gitlab push payload"),
            (
                fixture_with(FIXTURE, |document| document["ref"] = Value::Null),
                "no ref",
            ),
            (
                fixture_with(FIXTURE, |document| document["ref"] = "refs/tags/".into()),
                "invalid ref",
            ),
            (
                fixture_with(FIXTURE, |document| document["after"] = "not-a-commit".into()),
                "invalid after commit",
            ),
            (
                fixture_with(FIXTURE, |document| document["after"] = 7.into()),
                "invalid gitlab push payload",
            ),
        ];
        for (body, reason) in cases {
            match parse(&inbound(&headers, &body)) {
                Err(Refusal::Malformed(text)) => assert!(text.contains(reason), "{text:?} lacks {reason:?}"),
                other => panic!("expected malformed ({reason}), got {other:?}"),
            }
        }
    }

    #[test]
    fn non_json_content_is_unsupported() {
        let body = fixture(FIXTURE);
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
            let mut headers = gitlab_headers(PUSH_HOOK);
            headers.remove("content-type");
            if let Some(content_type) = content_type {
                headers.insert("content-type", content_type.parse().unwrap());
            }
            let parsed = parse(&inbound(&headers, &body));
            assert!(matches!(parsed, Err(Refusal::UnsupportedMediaType(_))), "{parsed:?}");
        }
        let headers = headers(&[
            ("content-type", "Application/JSON; charset=utf-8"),
            ("x-gitlab-event", PUSH_HOOK),
        ]);
        assert!(parse(&inbound(&headers, &body)).is_ok());
    }

    #[test]
    fn fixture_parses_the_same_twice() {
        let body = fixture(FIXTURE);
        let headers = gitlab_headers(PUSH_HOOK);
        let first = parse(&inbound(&headers, &body)).unwrap();
        let copy = body.clone();
        let second = parse(&inbound(&headers, &copy)).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            first,
            Parsed::Changes {
                delivery_id: Some(EVENT_UUID.into()),
                changes: vec![Change::Git(expected_fixture_change())],
            }
        );
    }

    /// Keys and values a push carries.
    const KEYS: &[&str] = &[
        "object_kind",
        "ref",
        "before",
        "after",
        "checkout_sha",
        "project",
        "repository",
        "web_url",
        "homepage",
        "git_http_url",
        "push",
        "tag_push",
    ];
    const PATTERNS: &[&str] = &[
        "[0-9a-fA-F]{40}",
        "refs/(heads|tags|pull)/.{0,8}",
        "(https?://|git@)[a-z.]{1,8}[:/][a-z/]{0,12}",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            body in any_body(),
            event in prop::sample::select(vec![PUSH_HOOK, TAG_PUSH_HOOK, "System Hook"]),
            token in ".{0,40}",
        ) {
            let mut headers = gitlab_headers(event);
            if let Ok(value) = token.parse() {
                headers.insert("x-gitlab-token", value);
            }
            let request = inbound(&headers, &body);
            let _ = verify(&request, &credentials());
            let parsed = parse(&request);
            if let Ok(parsed) = &parsed {
                assert_git_well_formed(parsed);
            }
            headers.remove("x-gitlab-event");
            let _ = parse(&inbound(&headers, &body));
        }

        #[test]
        fn arbitrary_json_never_panics(document in json_value(KEYS, PATTERNS)) {
            let body = serde_json::to_vec(&document).unwrap();
            let mut headers = gitlab_headers(PUSH_HOOK);
            let parsed = parse(&inbound(&headers, &body));
            prop_assert!(!matches!(
                parsed,
                Err(Refusal::UnsupportedMediaType(_)) | Err(Refusal::Unauthorized(_))
            ));
            prop_assert_eq!(&parsed, &parse(&inbound(&headers, &body)), "parsing is deterministic");
            if let Ok(parsed) = &parsed {
                assert_git_well_formed(parsed);
            }
            headers.remove("x-gitlab-event");
            if let Ok(parsed) = &parse(&inbound(&headers, &body)) {
                assert_git_well_formed(parsed);
            }
        }

        #[test]
        fn fixture_with_one_field_replaced_never_panics(
            field in prop::sample::select(vec![
                "ref", "before", "after", "checkout_sha", "project", "repository", "object_kind",
            ]),
            value in json_value(KEYS, PATTERNS),
        ) {
            let body = fixture_with(FIXTURE, |document| document[field] = value);
            let headers = gitlab_headers(TAG_PUSH_HOOK);
            if let Ok(parsed) = &parse(&inbound(&headers, &body)) {
                assert_git_well_formed(parsed);
            }
        }

    }
}
