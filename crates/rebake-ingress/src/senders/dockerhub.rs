//! Docker Hub repository webhooks.
//!
//! Docker Hub sends one kind of notification, a push of a tag, as a `POST` with
//! `Content-Type: application/json`:
//!
//! - **Verification**: none in the request. Docker Hub neither signs nor sends a token header, so
//!   the hook URL carries the source's secret (`/v1/hooks/<source>/<token>` or `?token=`), checked
//!   in constant time by [`super::verify`] before this module sees the body. This module has no
//!   `verify` of its own.
//! - **Headers**: only `Content-Type`; anything but `application/json` is refused (415).
//! - **Payload**: `push_data.tag` and `repository.repo_name` (`namespace/name`). An official image
//!   may be named by its bare name (`debian`): a single-component name is normalised to
//!   `library/<name>`, which is where such an image lives in the registry.
//! - **Digest**: Docker Hub never says one, so `digest` is `None` and the shared layer resolves
//!   the tag through the configured registry; `registry` is empty for the same reason (the source's
//!   configured registry is the one that moved).
//! - `callback_url` (a legacy validation callback, documented as no longer supported) and
//!   `repo_url` are links chosen by whoever wrote the body: they are not even deserialised, so
//!   nothing here can be made to call or trust them.
//!
//! A push with an empty tag is a push by digest and a push of one of Rebake's own signature,
//! attestation or SBOM tags (`sha256-<hex>.sig` …) is Rebake's own doing: both are ignored (200).

use serde::Deserialize;

use super::common::{require_content_type, shown};
use super::{Change, Inbound, Parsed, Refusal, RegistryChange, is_own_artifact_tag, json, valid_repository, valid_tag};

/// The content types Docker Hub sends.
const ACCEPTED_CONTENT_TYPES: [&str; 1] = ["application/json"];

/// The fields read from a notification; everything else (including `callback_url` and
/// `repo_url`) is skipped unread.
#[derive(Debug, Deserialize)]
struct Notification {
    push_data: Option<PushData>,
    repository: Option<Repository>,
}

#[derive(Debug, Deserialize)]
struct PushData {
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    repo_name: Option<String>,
}

/// Reads a Docker Hub push notification (already verified by its path token).
pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    require_content_type(inbound, &ACCEPTED_CONTENT_TYPES, "")?;
    let document: serde_json::Value = json(inbound.body, "Docker Hub push notification")?;
    if !document.is_object() {
        return Err(Refusal::Malformed(
            "Docker Hub push notification is not a JSON object".to_string(),
        ));
    }
    let notification = Notification::deserialize(&document)
        .map_err(|error| Refusal::Malformed(format!("invalid Docker Hub push notification: {error}")))?;
    let Some(push_data) = notification.push_data else {
        return Err(Refusal::Malformed(
            "not a Docker Hub push notification: no push_data".to_string(),
        ));
    };
    let Some(repo_name) = notification.repository.and_then(|repository| repository.repo_name) else {
        return Err(Refusal::Malformed(
            "push notification has no repository.repo_name".to_string(),
        ));
    };
    let Some(tag) = push_data.tag else {
        return Err(Refusal::Malformed("push notification has no push_data.tag".to_string()));
    };
    if tag.is_empty() {
        return Ok(Parsed::Ignored("push without a tag (by digest)".to_string()));
    }
    if is_own_artifact_tag(&tag) {
        return Ok(Parsed::Ignored("signature, attestation or sbom tag".to_string()));
    }
    if !valid_tag(&tag) {
        return Err(Refusal::Malformed(format!("invalid tag {}", shown(&tag))));
    }
    let repository = normalise_repository(&repo_name)?;
    Ok(Parsed::Changes {
        delivery_id: None,
        changes: vec![Change::Registry(RegistryChange {
            registry: String::new(),
            repository,
            tag,
            digest: None,
            media_type: None,
        })],
    })
}

/// `namespace/name` as it is, a bare official-image `name` as `library/name`; refused when the
/// result is not a valid repository path.
fn normalise_repository(repo_name: &str) -> Result<String, Refusal> {
    let repository = if repo_name.contains('/') {
        repo_name.to_string()
    } else {
        format!("library/{repo_name}")
    };
    if valid_repository(&repository) {
        Ok(repository)
    } else {
        Err(Refusal::Malformed(format!("invalid repository {}", shown(repo_name))))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use proptest::prelude::*;

    use super::super::test_support::{
        NOT_JSON, any_body, assert_parses_identically, assert_refuses_content_types, fixture, headers, inbound,
        json_value, parse_never_panics,
    };
    use super::*;

    const FIXTURE: &str = "dockerhub/dockerhub-push-current-docs.json";

    fn json_headers() -> HeaderMap {
        headers(&[("content-type", "application/json")])
    }

    fn parse_body(body: &[u8]) -> Result<Parsed, Refusal> {
        let headers = json_headers();
        parse(&Inbound {
            headers: &headers,
            body,
            path_token: Some("token"),
            query_token: None,
        })
    }

    fn change(repository: &str, tag: &str) -> Parsed {
        Parsed::Changes {
            delivery_id: None,
            changes: vec![Change::Registry(RegistryChange {
                registry: String::new(),
                repository: repository.to_string(),
                tag: tag.to_string(),
                digest: None,
                media_type: None,
            })],
        }
    }

    fn push(repo_name: &str, tag: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "push_data": { "pushed_at": 1_417_566_161, "pusher": "someone", "tag": tag },
            "repository": { "repo_name": repo_name, "name": "x", "namespace": "y" },
        }))
        .unwrap()
    }

    #[test]
    fn documented_push_gives_one_tag_change() {
        assert_eq!(
            parse_body(&fixture(FIXTURE)),
            Ok(change("example-user/testhook", "latest"))
        );
    }

    #[test]
    fn official_image_bare_name_is_library() {
        assert_eq!(
            parse_body(&push("debian", "bookworm")),
            Ok(change("library/debian", "bookworm"))
        );
        assert_eq!(
            parse_body(&push("library/debian", "12")),
            Ok(change("library/debian", "12"))
        );
    }

    #[test]
    fn callback_and_repo_urls_change_nothing() {
        let mut document: serde_json::Value = serde_json::from_slice(&fixture(FIXTURE)).unwrap();
        document["callback_url"] = serde_json::json!("http://169.254.169.254/latest/meta-data/");
        document["repository"]["repo_url"] = serde_json::json!("file:///etc/passwd");
        let tampered = parse_body(&serde_json::to_vec(&document).unwrap());
        assert_eq!(tampered, parse_body(&fixture(FIXTURE)));

        document["callback_url"] = serde_json::json!({ "not": "a string" });
        document["repository"]["repo_url"] = serde_json::json!(42);
        assert_eq!(
            parse_body(&serde_json::to_vec(&document).unwrap()),
            Ok(change("example-user/testhook", "latest"))
        );
    }

    #[test]
    fn push_by_digest_and_own_artifacts_are_ignored() {
        assert!(matches!(parse_body(&push("a/b", "")), Ok(Parsed::Ignored(_))));
        let signature = format!("sha256-{}.sig", "a".repeat(64));
        assert!(matches!(parse_body(&push("a/b", &signature)), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn bad_names_are_malformed() {
        for (repo_name, tag) in [
            ("Example/App", "latest"),
            ("a//b", "latest"),
            ("", "latest"),
            ("a/b", ".hidden"),
            ("a/b", "v1:2"),
        ] {
            assert!(
                matches!(parse_body(&push(repo_name, tag)), Err(Refusal::Malformed(_))),
                "{repo_name:?} {tag:?}"
            );
        }
    }

    #[test]
    fn missing_fields_are_malformed() {
        for body in [
            r#"{}"#,
            r#"{"push_data": {"tag": "latest"}}"#,
            r#"{"repository": {"repo_name": "a/b"}}"#,
            r#"{"push_data": {}, "repository": {"repo_name": "a/b"}}"#,
            r#"{"push_data": {"tag": 5}, "repository": {"repo_name": "a/b"}}"#,
            r#"[]"#,
            r#"null"#,
        ] {
            assert!(
                matches!(parse_body(body.as_bytes()), Err(Refusal::Malformed(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn invalid_json_is_malformed() {
        let Err(Refusal::Malformed(reason)) = parse_body(b"{\"push_data\": ") else {
            panic!("expected a malformed refusal");
        };
        assert!(reason.contains("Docker Hub"), "{reason}");
    }

    #[test]
    fn only_json_is_accepted() {
        let body = fixture(FIXTURE);
        assert_refuses_content_types(parse, &NOT_JSON, &body);
        let parameters = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
        assert!(matches!(
            parse(&inbound(&parameters, &body)),
            Ok(Parsed::Changes { .. })
        ));
    }

    #[test]
    fn path_token_verifies_docker_hub() {
        let headers = json_headers();
        let body = fixture(FIXTURE);
        let credentials = super::super::Credentials {
            secret: b"hook-token",
            header: None,
        };
        let with = |path_token, query_token| Inbound {
            headers: &headers,
            body: &body,
            path_token,
            query_token,
        };
        let verify =
            |inbound: Inbound<'_>| super::super::verify(super::super::WebhookKind::Dockerhub, &inbound, &credentials);
        assert_eq!(verify(with(Some("hook-token"), None)), Ok(()));
        assert_eq!(verify(with(None, Some("hook-token"))), Ok(()));
        assert!(matches!(
            verify(with(Some("hook-tokem"), None)),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(verify(with(None, None)), Err(Refusal::Unauthorized(_))));
    }

    #[test]
    fn fixture_parses_identically_twice() {
        assert_parses_identically(parse_body, &fixture(FIXTURE));
    }

    /// Keys and values this parser looks for.
    const KEYS: &[&str] = &[
        "latest",
        "",
        "debian",
        "a/b",
        "Library/X",
        "sha256-x.sig",
        "v1.2",
        "push_data",
        "repository",
        "tag",
        "repo_name",
        "callback_url",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body(), content_type in "[ -~]{0,40}") {
            parse_never_panics(parse, &content_type, &body);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[]), tag in json_value(KEYS, &[])) {
            let _ = parse_body(&serde_json::to_vec(&value).unwrap());
            let shaped = serde_json::json!({ "push_data": { "tag": tag }, "repository": value });
            let _ = parse_body(&serde_json::to_vec(&shaped).unwrap());
        }

        #[test]
        fn any_valid_push_round_trips(namespace in "[a-z0-9]{1,10}", name in "[a-z0-9]{1,10}([._-][a-z0-9]{1,5})?", tag in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}") {
            let repo_name = format!("{namespace}/{name}");
            prop_assert_eq!(parse_body(&push(&repo_name, &tag)), Ok(change(&repo_name, &tag)));
        }
    }
}
