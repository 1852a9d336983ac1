//! Quay (quay.io and self-hosted Quay / Red Hat Quay) repository notifications, webhook method.
//!
//! - **Verification**: none in the request. Quay neither signs nor sends a token header (an
//!   optional client TLS certificate aside), so the hook URL carries the source's secret
//!   (`/v1/hooks/<source>/<token>` or `?token=`), checked in constant time by [`super::verify`]
//!   before this module sees the body. This module has no `verify` of its own.
//! - **Headers**: only `Content-Type: application/json`; anything else is refused (415).
//! - **Payload**: Quay sends no event name. Every notification carries `repository`
//!   (`namespace/name`), `namespace`, `name`, `docker_url` (`quay.io/namespace/name`) and
//!   `homepage`, plus the event's own fields. A `repo_push` is recognised by its `updated_tags`
//!   array: one push may move several tags, so it gives one change per tag. No digest is ever
//!   sent (`digest: None`: the shared layer resolves each tag through the configured registry).
//!   The registry host is the text of `docker_url` before the first `/`, kept only as a name.
//! - Build (`build_id`), vulnerability (`vulnerability`, `vulnerabilities`) and mirror sync
//!   (`message`) notifications are known and ignored (200); any other body (for instance one
//!   reshaped by a notification's JSON template) is unknown (202, logged).
//!
//! A push of Rebake's own signature, attestation or SBOM tags (`sha256-<hex>.sig` …) is Rebake's
//! own doing and moves nothing.

use serde::Deserialize;

use super::common::{registry_host, require_content_type, shown};
use super::{Change, Inbound, Parsed, Refusal, RegistryChange, is_own_artifact_tag, json, valid_repository, valid_tag};

/// The content types Quay sends.
const ACCEPTED_CONTENT_TYPES: [&str; 1] = ["application/json"];

/// Fields that mark the other notifications Quay sends, with what they are.
const OTHER_NOTIFICATIONS: [(&str, &str); 5] = [
    ("build_id", "build"),
    ("vulnerability", "vulnerability found"),
    ("vulnerabilities", "vulnerability found"),
    ("vulnerable_index_report_created", "vulnerability found"),
    ("message", "repository mirror sync"),
];

/// The fields read from a `repo_push` notification.
#[derive(Debug, Deserialize)]
struct RepoPush {
    repository: Option<String>,
    docker_url: Option<String>,
    updated_tags: Vec<String>,
}

/// Reads a Quay notification (already verified by its path token).
pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    require_content_type(inbound, &ACCEPTED_CONTENT_TYPES, "")?;
    let document: serde_json::Value = json(inbound.body, "Quay notification")?;
    let Some(object) = document.as_object() else {
        return Err(Refusal::Malformed("Quay notification is not a JSON object".to_string()));
    };
    if !object.contains_key("updated_tags") {
        return Ok(
            match OTHER_NOTIFICATIONS
                .iter()
                .find(|(field, _)| object.contains_key(*field))
            {
                Some((_, kind)) => Parsed::Ignored(format!("Quay {kind} notification")),
                None => Parsed::Unknown("Quay notification is not a repo_push (no updated_tags)".to_string()),
            },
        );
    }
    let push = RepoPush::deserialize(&document)
        .map_err(|error| Refusal::Malformed(format!("invalid Quay repo_push notification: {error}")))?;
    let Some(repository) = push.repository else {
        return Err(Refusal::Malformed(
            "Quay repo_push notification has no repository".to_string(),
        ));
    };
    if !valid_repository(&repository) {
        return Err(Refusal::Malformed(format!("invalid repository {}", shown(&repository))));
    }
    let registry = match push.docker_url.as_deref() {
        Some(docker_url) => registry_host(docker_url, "docker_url", "")?,
        None => String::new(),
    };
    let mut changes = Vec::new();
    for tag in push.updated_tags {
        if is_own_artifact_tag(&tag) {
            continue;
        }
        if !valid_tag(&tag) {
            return Err(Refusal::Malformed(format!("invalid tag {}", shown(&tag))));
        }
        let change = Change::Registry(RegistryChange {
            registry: registry.clone(),
            repository: repository.clone(),
            tag,
            digest: None,
            media_type: None,
        });
        if !changes.contains(&change) {
            changes.push(change);
        }
    }
    if changes.is_empty() {
        return Ok(Parsed::Ignored(
            "Quay push updated no tag (or only signature, attestation or sbom tags)".to_string(),
        ));
    }
    Ok(Parsed::Changes {
        delivery_id: None,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::test_support::{
        NOT_JSON, any_body, assert_parses_identically, assert_refuses_content_types, fixture, headers, json_value,
        parse_never_panics,
    };
    use super::*;

    const FIXTURE: &str = "quay/quay-repo_push.json";

    fn parse_body(body: &[u8]) -> Result<Parsed, Refusal> {
        let headers = headers(&[("content-type", "application/json")]);
        parse(&Inbound {
            headers: &headers,
            body,
            path_token: Some("token"),
            query_token: None,
        })
    }

    fn parse_json(value: serde_json::Value) -> Result<Parsed, Refusal> {
        parse_body(&serde_json::to_vec(&value).unwrap())
    }

    fn tag_change(registry: &str, repository: &str, tag: &str) -> Change {
        Change::Registry(RegistryChange {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: None,
            media_type: None,
        })
    }

    fn repo_push(docker_url: serde_json::Value, tags: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "repository": "org/app",
            "namespace": "org",
            "name": "app",
            "docker_url": docker_url,
            "homepage": "https://quay.example/repository/org/app",
            "updated_tags": tags,
        })
    }

    #[test]
    fn sample_push_gives_one_change_per_tag() {
        assert_eq!(
            parse_body(&fixture(FIXTURE)),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![
                    tag_change("quay.io", "example-org/example-repo", "latest"),
                    tag_change("quay.io", "example-org/example-repo", "foo"),
                ],
            })
        );
    }

    #[test]
    fn self_hosted_registry_host_and_missing_docker_url() {
        assert_eq!(
            parse_json(repo_push(
                serde_json::json!("Quay.Example:8443/org/app"),
                serde_json::json!(["v1", "v1"])
            )),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![tag_change("quay.example:8443", "org/app", "v1")]
            })
        );
        let mut body = repo_push(serde_json::json!(null), serde_json::json!(["v1"]));
        assert_eq!(
            parse_json(body.clone()),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![tag_change("", "org/app", "v1")]
            })
        );
        body.as_object_mut().unwrap().remove("docker_url");
        assert_eq!(
            parse_json(body),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![tag_change("", "org/app", "v1")]
            })
        );
    }

    #[test]
    fn no_tags_or_own_tags_are_ignored() {
        assert!(matches!(
            parse_json(repo_push(serde_json::json!("quay.io/org/app"), serde_json::json!([]))),
            Ok(Parsed::Ignored(_))
        ));
        let own = format!("sha256-{}.sbom", "d".repeat(64));
        assert!(matches!(
            parse_json(repo_push(
                serde_json::json!("quay.io/org/app"),
                serde_json::json!([own])
            )),
            Ok(Parsed::Ignored(_))
        ));
        assert_eq!(
            parse_json(repo_push(
                serde_json::json!("quay.io/org/app"),
                serde_json::json!([own, "stable"])
            )),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![tag_change("quay.io", "org/app", "stable")]
            })
        );
    }

    #[test]
    fn other_notifications_are_ignored_or_unknown() {
        let build =
            serde_json::json!({ "repository": "org/app", "build_id": "fake-build-id", "docker_tags": ["latest"] });
        let vulnerability =
            serde_json::json!({ "repository": "org/app", "tags": ["latest"], "vulnerability": { "id": "CVE-X" } });
        let mirror = serde_json::json!({ "repository": "org/app", "message": "TEST NOTIFICATION" });
        for body in [build, vulnerability, mirror] {
            assert!(matches!(parse_json(body.clone()), Ok(Parsed::Ignored(_))), "{body}");
        }
        let templated = serde_json::json!({ "text": "org/app was pushed" });
        assert!(matches!(parse_json(templated), Ok(Parsed::Unknown(_))));
    }

    #[test]
    fn malformed_pushes_are_refused() {
        let cases = [
            repo_push(serde_json::json!("quay.io/org/app"), serde_json::json!("latest")),
            repo_push(serde_json::json!("quay.io/org/app"), serde_json::json!([1])),
            repo_push(serde_json::json!("quay.io/org/app"), serde_json::json!(null)),
            repo_push(serde_json::json!("quay.io/org/app"), serde_json::json!(["bad:tag"])),
            repo_push(serde_json::json!("https://quay.io/org/app"), serde_json::json!(["v1"])),
            repo_push(serde_json::json!(7), serde_json::json!(["v1"])),
            serde_json::json!({ "updated_tags": ["v1"] }),
            serde_json::json!({ "repository": "Org/App", "updated_tags": ["v1"] }),
            serde_json::json!("updated_tags"),
        ];
        for body in cases {
            assert!(matches!(parse_json(body.clone()), Err(Refusal::Malformed(_))), "{body}");
        }
        assert!(matches!(parse_body(b"{\"repository\": "), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn only_json_is_accepted() {
        assert_refuses_content_types(parse, &NOT_JSON, &fixture(FIXTURE));
    }

    #[test]
    fn path_token_verifies_quay() {
        let headers = headers(&[("content-type", "application/json")]);
        let body = fixture(FIXTURE);
        let credentials = super::super::Credentials {
            secret: b"quay-token",
            header: None,
        };
        let with = |path_token| Inbound {
            headers: &headers,
            body: &body,
            path_token,
            query_token: None,
        };
        let verify =
            |inbound: Inbound<'_>| super::super::verify(super::super::WebhookKind::Quay, &inbound, &credentials);
        assert_eq!(verify(with(Some("quay-token"))), Ok(()));
        assert!(matches!(
            verify(with(Some("quay-tokeN"))),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(verify(with(None)), Err(Refusal::Unauthorized(_))));
    }

    #[test]
    fn fixture_parses_identically_twice() {
        assert_parses_identically(parse_body, &fixture(FIXTURE));
    }

    /// Keys and values this parser looks for.
    const KEYS: &[&str] = &[
        "latest",
        "",
        "org/app",
        "quay.io/org/app",
        "q:1/o/a",
        "Org/App",
        "repository",
        "docker_url",
        "updated_tags",
        "build_id",
        "message",
        "name",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body(), content_type in "[ -~]{0,40}") {
            parse_never_panics(parse, &content_type, &body);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[]), docker_url in json_value(KEYS, &[]), tags in prop::collection::vec(json_value(KEYS, &[]), 0..4)) {
            let _ = parse_json(value);
            let _ = parse_json(repo_push(docker_url, serde_json::Value::Array(tags)));
        }

        #[test]
        fn valid_pushes_give_every_tag(tags in prop::collection::btree_set("[A-Za-z0-9_][A-Za-z0-9._-]{0,12}", 1..6)) {
            let tags: Vec<String> = tags.into_iter().collect();
            let expected: Vec<Change> = tags.iter().map(|tag| tag_change("quay.io", "org/app", tag)).collect();
            prop_assert_eq!(
                parse_json(repo_push(serde_json::json!("quay.io/org/app"), serde_json::json!(tags))),
                Ok(Parsed::Changes { delivery_id: None, changes: expected })
            );
        }
    }
}
