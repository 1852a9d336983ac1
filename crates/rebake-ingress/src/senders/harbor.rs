//! Harbor project webhooks, in both of Harbor's payload formats.
//!
//! - **Verification**: Harbor does not sign. A webhook policy may set an "Auth Header" value,
//!   which Harbor sends verbatim as the `Authorization` header (`Bearer xyz`, `Basic …` or a bare
//!   token: whatever was typed). The whole header value is compared, in constant time, with the
//!   source's secret, so the secret is configured as exactly what was typed into Harbor.
//! - **Headers**: `Content-Type: application/json` (Default format) or
//!   `application/cloudevents+json` (CloudEvents format); anything else is refused (415).
//! - **Default format**: `{"type": "PUSH_ARTIFACT", "occur_at": <unix seconds>, "operator": …,
//!   "event_data": {"resources": [{"digest", "tag", "resource_url"}], "repository":
//!   {"namespace", "name", "repo_full_name", …}}}`. No delivery id.
//! - **CloudEvents format** (Harbor 2.8 and later), structured mode: `{"specversion": "1.0", "id",
//!   "source", "type": "harbor.artifact.pushed", "time", "data": <what Default calls
//!   event_data>, "operator", "requestid"}`. The CloudEvent `id` is the delivery id.
//!
//! Each resource of a push names one artifact: its `tag` (equal to the digest, or empty, when the
//! artifact was pushed by digest: nothing moved), its `digest` and its `resource_url`
//! (`host/project/repo:tag`), whose text before the first `/` is the registry host, kept only as
//! a name to match against the configured registry. The repository is `repo_full_name`.
//!
//! Pulls, deletions, scans, quota, replication and retention events are known and ignored (200);
//! any other type is unknown (202, logged), so Harbor never disables the policy.

use serde::Deserialize;

use super::common::{registry_host, require_content_type, shown};
use super::{
    Change, Credentials, Inbound, Parsed, Refusal, RegistryChange, is_own_artifact_tag, json, secret_eq, valid_digest,
    valid_repository, valid_tag,
};

/// The content types Harbor sends: Default, then CloudEvents (structured mode).
const ACCEPTED_CONTENT_TYPES: [&str; 2] = ["application/json", "application/cloudevents+json"];

/// An artifact push, in the Default and in the CloudEvents format.
const PUSH_TYPES: [&str; 2] = ["PUSH_ARTIFACT", "harbor.artifact.pushed"];

/// Events Harbor sends that move no tag, in both formats.
const IGNORED_TYPES: [&str; 21] = [
    "PULL_ARTIFACT",
    "DELETE_ARTIFACT",
    "SCANNING_COMPLETED",
    "SCANNING_FAILED",
    "SCANNING_STOPPED",
    "QUOTA_EXCEED",
    "QUOTA_WARNING",
    "REPLICATION",
    "TAG_RETENTION",
    "UPLOAD_CHART",
    "DOWNLOAD_CHART",
    "DELETE_CHART",
    "harbor.artifact.pulled",
    "harbor.artifact.deleted",
    "harbor.scan.completed",
    "harbor.scan.failed",
    "harbor.scan.stopped",
    "harbor.quota.exceeded",
    "harbor.quota.warned",
    "harbor.replication.status.changed",
    "harbor.tag_retention.finished",
];

/// What a push says, in `event_data` (Default) or `data` (CloudEvents).
#[derive(Debug, Deserialize)]
struct PushData {
    resources: Option<Vec<Resource>>,
    repository: Option<Repository>,
}

#[derive(Debug, Deserialize)]
struct Resource {
    digest: Option<String>,
    tag: Option<String>,
    resource_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    namespace: Option<String>,
    name: Option<String>,
    repo_full_name: Option<String>,
}

/// Checks `Authorization` against the secret: the whole value, as Harbor sends it verbatim.
pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    let Some(presented) = inbound.header("authorization") else {
        return Err(Refusal::Unauthorized("missing authorization header"));
    };
    if secret_eq(presented.as_bytes(), credentials.secret) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized("invalid authorization header"))
    }
}

/// Reads a (verified) Harbor notification in either format.
pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    require_content_type(inbound, &ACCEPTED_CONTENT_TYPES, "")?;
    let document: serde_json::Value = json(inbound.body, "Harbor notification")?;
    let Some(object) = document.as_object() else {
        return Err(Refusal::Malformed(
            "Harbor notification is not a JSON object".to_string(),
        ));
    };
    let kind = match object.get("type") {
        Some(serde_json::Value::String(kind)) => kind.as_str(),
        Some(_) => {
            return Err(Refusal::Malformed(
                "Harbor notification type is not a string".to_string(),
            ));
        }
        None => return Err(Refusal::Malformed("Harbor notification has no type".to_string())),
    };
    if IGNORED_TYPES.contains(&kind) {
        return Ok(Parsed::Ignored(format!("Harbor {kind} event")));
    }
    if !PUSH_TYPES.contains(&kind) {
        return Ok(Parsed::Unknown(format!(
            "Harbor event type {} is not read",
            shown(kind)
        )));
    }
    // CloudEvents carry the push under `data`, the Default format under `event_data`.
    let cloud_event = object.contains_key("specversion");
    let (data_key, delivery_id) = if cloud_event {
        (
            "data",
            object
                .get("id")
                .and_then(serde_json::Value::as_str)
                .and_then(delivery_id),
        )
    } else {
        ("event_data", None)
    };
    let Some(data) = object.get(data_key) else {
        return Err(Refusal::Malformed(format!("Harbor push event has no {data_key}")));
    };
    let data = PushData::deserialize(data)
        .map_err(|error| Refusal::Malformed(format!("invalid Harbor push {data_key}: {error}")))?;
    let changes = push_changes(data)?;
    if changes.is_empty() {
        return Ok(Parsed::Ignored(
            "Harbor push of no tag (by digest, or signature, attestation or sbom tags only)".to_string(),
        ));
    }
    Ok(Parsed::Changes { delivery_id, changes })
}

/// The tag changes of a push: one per tagged resource, none for pushes by digest or of Rebake's
/// own artifacts.
fn push_changes(data: PushData) -> Result<Vec<Change>, Refusal> {
    let repository = repository_of(data.repository)?;
    let Some(resources) = data.resources else {
        return Err(Refusal::Malformed("Harbor push event has no resources".to_string()));
    };
    let mut changes = Vec::new();
    for resource in resources {
        let tag = resource.tag.unwrap_or_default();
        let by_digest =
            tag.is_empty() || tag.starts_with("sha256:") || resource.digest.as_deref() == Some(tag.as_str());
        if by_digest || is_own_artifact_tag(&tag) {
            continue;
        }
        if !valid_tag(&tag) {
            return Err(Refusal::Malformed(format!("invalid tag {}", shown(&tag))));
        }
        let registry = match resource.resource_url.as_deref() {
            Some(resource_url) => registry_host(resource_url, "resource_url", "")?,
            None => String::new(),
        };
        let change = Change::Registry(RegistryChange {
            registry,
            repository: repository.clone(),
            tag,
            digest: resource.digest.as_deref().and_then(valid_digest),
            media_type: None,
        });
        if !changes.contains(&change) {
            changes.push(change);
        }
    }
    Ok(changes)
}

/// `repo_full_name`, or `namespace/name` when Harbor left it out.
fn repository_of(repository: Option<Repository>) -> Result<String, Refusal> {
    let Some(repository) = repository else {
        return Err(Refusal::Malformed("Harbor push event has no repository".to_string()));
    };
    let full_name = match (repository.repo_full_name, repository.namespace, repository.name) {
        (Some(full_name), _, _) => full_name,
        (None, Some(namespace), Some(name)) => format!("{namespace}/{name}"),
        _ => return Err(Refusal::Malformed("Harbor push event names no repository".to_string())),
    };
    if valid_repository(&full_name) {
        Ok(full_name)
    } else {
        Err(Refusal::Malformed(format!("invalid repository {}", shown(&full_name))))
    }
}

/// A CloudEvent `id` usable as a delivery id: short visible ASCII.
fn delivery_id(id: &str) -> Option<String> {
    (!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use proptest::prelude::*;

    use super::super::common::valid_host;
    use super::super::test_support::{any_body, fixture, headers, inbound, json_value};
    use super::*;

    const DEFAULT_BY_DIGEST: &str = "harbor/harbor-push-artifact-default-by-digest.json";
    const DEFAULT_TAGGED: &str = "harbor/harbor-push-artifact-default-tagged.json";
    const CLOUDEVENTS_BY_DIGEST: &str = "harbor/harbor-push-artifact-cloudevents-by-digest.json";
    const CLOUDEVENTS_TAGGED: &str = "harbor/harbor-push-artifact-cloudevents-tagged.json";
    const JSON: &str = "application/json";
    const CLOUDEVENTS: &str = "application/cloudevents+json";

    fn parse_as(content_type: &str, body: &[u8]) -> Result<Parsed, Refusal> {
        let headers = headers(&[("content-type", content_type)]);
        parse(&inbound(&headers, body))
    }

    fn parse_json(value: serde_json::Value) -> Result<Parsed, Refusal> {
        parse_as(JSON, &serde_json::to_vec(&value).unwrap())
    }

    fn verify_with(pairs: &[(&str, &str)], secret: &[u8]) -> Result<(), Refusal> {
        let headers = headers(pairs);
        let body = fixture(DEFAULT_TAGGED);
        let request = inbound(&headers, &body);
        verify(&request, &Credentials { secret, header: None })
    }

    fn push(resources: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "type": "PUSH_ARTIFACT",
            "occur_at": 1_680_501_893,
            "operator": "admin",
            "event_data": {
                "resources": resources,
                "repository": { "name": "app", "namespace": "team", "repo_full_name": "team/app", "repo_type": "private" },
            },
        })
    }

    fn registry_change(registry: &str, repository: &str, tag: &str, digest: Option<&str>) -> Change {
        Change::Registry(RegistryChange {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: digest.map(str::to_string),
            media_type: None,
        })
    }

    #[test]
    fn documented_default_tagged_push() {
        assert_eq!(
            parse_as(JSON, &fixture(DEFAULT_TAGGED)),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![registry_change(
                    "hub.harbor.com",
                    "test-webhook/debian",
                    "latest",
                    Some("sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"),
                )],
            })
        );
    }

    #[test]
    fn cloudevents_tagged_push_carries_its_id() {
        assert_eq!(
            parse_as(CLOUDEVENTS, &fixture(CLOUDEVENTS_TAGGED)),
            Ok(Parsed::Changes {
                delivery_id: Some("66e18103-09c1-41f6-982f-37df223f3eeb".to_string()),
                changes: vec![registry_change(
                    "localhost",
                    "harbor/alpine",
                    "3.17",
                    Some("sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"),
                )],
            })
        );
    }

    #[test]
    fn documented_pushes_by_digest_are_ignored() {
        assert!(matches!(
            parse_as(JSON, &fixture(DEFAULT_BY_DIGEST)),
            Ok(Parsed::Ignored(_))
        ));
        assert!(matches!(
            parse_as(CLOUDEVENTS, &fixture(CLOUDEVENTS_BY_DIGEST)),
            Ok(Parsed::Ignored(_))
        ));
        let empty_tag = push(
            serde_json::json!([{ "digest": format!("sha256:{}", "a".repeat(64)), "tag": "", "resource_url": "h/team/app@sha256:x" }]),
        );
        assert!(matches!(parse_json(empty_tag), Ok(Parsed::Ignored(_))));
        let no_tag = push(serde_json::json!([{ "digest": format!("sha256:{}", "a".repeat(64)) }]));
        assert!(matches!(parse_json(no_tag), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn mixed_resources_keep_only_tags() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let signature = format!("sha256-{}.sig", "b".repeat(64));
        let body = push(serde_json::json!([
            { "digest": digest, "tag": digest, "resource_url": format!("registry.example:8443/team/app@{digest}") },
            { "digest": digest, "tag": "v2", "resource_url": "registry.example:8443/team/app:v2" },
            { "digest": digest, "tag": signature, "resource_url": format!("registry.example:8443/team/app:{signature}") },
            { "digest": "sha256:short", "tag": "v2.1" },
            { "digest": digest, "tag": "v2", "resource_url": "registry.example:8443/team/app:v2" },
        ]));
        assert_eq!(
            parse_json(body),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![
                    registry_change("registry.example:8443", "team/app", "v2", Some(&digest)),
                    registry_change("", "team/app", "v2.1", None),
                ],
            })
        );
    }

    #[test]
    fn only_own_artifact_tags_are_ignored() {
        let signature = format!("sha256-{}.att", "c".repeat(64));
        let body = push(serde_json::json!([{ "digest": format!("sha256:{}", "c".repeat(64)), "tag": signature }]));
        assert!(matches!(parse_json(body), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn repository_falls_back_to_namespace_and_name() {
        let body = serde_json::json!({
            "type": "PUSH_ARTIFACT",
            "event_data": {
                "resources": [{ "tag": "1.0", "resource_url": "harbor.example/team/app:1.0" }],
                "repository": { "name": "app", "namespace": "team" },
            },
        });
        assert_eq!(
            parse_json(body),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![registry_change("harbor.example", "team/app", "1.0", None)]
            })
        );
    }

    #[test]
    fn known_events_are_ignored_and_others_unknown() {
        for kind in [
            "PULL_ARTIFACT",
            "DELETE_ARTIFACT",
            "SCANNING_COMPLETED",
            "QUOTA_EXCEED",
            "REPLICATION",
            "TAG_RETENTION",
        ] {
            let body = serde_json::json!({ "type": kind, "occur_at": 1, "event_data": { "weird": [1, 2] } });
            assert!(matches!(parse_json(body), Ok(Parsed::Ignored(_))), "{kind}");
        }
        for kind in [
            "harbor.artifact.pulled",
            "harbor.artifact.deleted",
            "harbor.scan.completed",
            "harbor.replication.status.changed",
        ] {
            let body = serde_json::json!({ "specversion": "1.0", "id": "x", "type": kind, "data": null });
            assert!(
                matches!(
                    parse_as(CLOUDEVENTS, &serde_json::to_vec(&body).unwrap()),
                    Ok(Parsed::Ignored(_))
                ),
                "{kind}"
            );
        }
        for kind in ["CREATE_TAG", "harbor.tag.created", "push_artifact", "SOMETHING_NEW"] {
            let body = serde_json::json!({ "type": kind, "event_data": {} });
            assert!(matches!(parse_json(body), Ok(Parsed::Unknown(_))), "{kind}");
        }
    }

    #[test]
    fn malformed_pushes_are_refused() {
        let cases = [
            serde_json::json!({ "event_data": {} }),
            serde_json::json!({ "type": 7, "event_data": {} }),
            serde_json::json!({ "type": "PUSH_ARTIFACT" }),
            serde_json::json!({ "type": "PUSH_ARTIFACT", "event_data": { "repository": { "repo_full_name": "team/app" } } }),
            serde_json::json!({ "type": "PUSH_ARTIFACT", "event_data": { "resources": [{ "tag": "v1" }] } }),
            serde_json::json!({ "type": "PUSH_ARTIFACT", "event_data": { "resources": "nope", "repository": { "repo_full_name": "team/app" } } }),
            serde_json::json!({ "specversion": "1.0", "type": "harbor.artifact.pushed", "event_data": {} }),
            push(serde_json::json!([{ "tag": "bad tag" }])),
            push(serde_json::json!([{ "tag": "v1", "resource_url": "https://evil.example/x/y:v1" }])),
            push(serde_json::json!([{ "tag": "v1", "resource_url": "user@host/x/y:v1" }])),
            serde_json::json!({ "type": "PUSH_ARTIFACT", "event_data": { "resources": [], "repository": { "repo_full_name": "Team/App" } } }),
            serde_json::json!([]),
        ];
        for body in cases {
            assert!(matches!(parse_json(body.clone()), Err(Refusal::Malformed(_))), "{body}");
        }
        assert!(matches!(
            parse_as(JSON, b"{\"type\": \"PUSH_ARTIFACT\","),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn empty_resources_are_ignored() {
        assert!(matches!(
            parse_json(push(serde_json::json!([]))),
            Ok(Parsed::Ignored(_))
        ));
    }

    #[test]
    fn cloudevents_id_is_only_a_delivery_id_when_sane() {
        let mut body: serde_json::Value = serde_json::from_slice(&fixture(CLOUDEVENTS_TAGGED)).unwrap();
        body["id"] = serde_json::json!("has spaces in it");
        assert!(matches!(
            parse_json(body.clone()),
            Ok(Parsed::Changes { delivery_id: None, .. })
        ));
        body["id"] = serde_json::json!(42);
        assert!(matches!(
            parse_json(body),
            Ok(Parsed::Changes { delivery_id: None, .. })
        ));
    }

    #[test]
    fn content_types() {
        assert!(matches!(
            parse_as(CLOUDEVENTS, &fixture(DEFAULT_TAGGED)),
            Ok(Parsed::Changes { .. })
        ));
        assert!(matches!(
            parse_as("application/json; charset=utf-8", &fixture(DEFAULT_TAGGED)),
            Ok(Parsed::Changes { .. })
        ));
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/cloudevents-batch+json",
        ] {
            assert!(matches!(
                parse_as(content_type, &fixture(DEFAULT_TAGGED)),
                Err(Refusal::UnsupportedMediaType(_))
            ));
        }
        let headers = HeaderMap::new();
        let body = fixture(DEFAULT_TAGGED);
        let request = inbound(&headers, &body);
        assert!(matches!(parse(&request), Err(Refusal::UnsupportedMediaType(_))));
    }

    #[test]
    fn verification_compares_the_whole_header() {
        assert_eq!(verify_with(&[("authorization", "Bearer xyz")], b"Bearer xyz"), Ok(()));
        assert_eq!(
            verify_with(&[("authorization", "s3cret-token")], b"s3cret-token"),
            Ok(())
        );
        assert!(matches!(
            verify_with(&[("authorization", "Bearer xyz")], b"xyz"),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(&[("authorization", "Bearer xyw")], b"Bearer xyz"),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(verify_with(&[], b"Bearer xyz"), Err(Refusal::Unauthorized(_))));
        assert!(matches!(
            verify_with(&[("authorization", "")], b"Bearer xyz"),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(&[("x-auth", "Bearer xyz")], b"Bearer xyz"),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(&[("authorization", "anything")], b""),
            Err(Refusal::Unauthorized(_))
        ));
    }

    #[test]
    fn hosts() {
        for host in [
            "localhost",
            "hub.harbor.com",
            "10.0.0.1:5000",
            "[::1]",
            "[fe80::1]:443",
            "a-b.example",
        ] {
            assert!(valid_host(host), "{host}");
        }
        for host in [
            "",
            "https:",
            "a b",
            "user@host",
            "-x",
            "x.",
            "host:",
            "host:123456",
            "[::1",
            "[]",
            "[::1]x",
            "h:p",
        ] {
            assert!(!valid_host(host), "{host}");
        }
    }

    #[test]
    fn fixtures_parse_identically_twice() {
        for (content_type, name) in [
            (JSON, DEFAULT_BY_DIGEST),
            (JSON, DEFAULT_TAGGED),
            (CLOUDEVENTS, CLOUDEVENTS_BY_DIGEST),
            (CLOUDEVENTS, CLOUDEVENTS_TAGGED),
        ] {
            assert_eq!(
                parse_as(content_type, &fixture(name)),
                parse_as(content_type, &fixture(name)),
                "{name}"
            );
        }
    }

    /// Keys and values this parser looks for.
    const KEYS: &[&str] = &[
        "PUSH_ARTIFACT",
        "harbor.artifact.pushed",
        "PULL_ARTIFACT",
        "latest",
        "",
        "team/app",
        "h:1/team/app:v1",
        "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4",
        "type",
        "specversion",
        "id",
        "data",
        "event_data",
        "resources",
        "repository",
        "tag",
        "digest",
        "resource_url",
        "repo_full_name",
        "namespace",
        "name",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body(), header in "[ -~]{0,40}") {
            let pairs = [("content-type", header.as_str()), ("authorization", header.as_str())];
            let headers = headers(&pairs);
            let request = inbound(&headers, &body);
            let _ = verify(&request, &Credentials { secret: b"secret", header: None });
            let _ = parse(&request);
            let _ = parse_as(JSON, &body);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[]), resources in json_value(KEYS, &[])) {
            let _ = parse_json(value.clone());
            let _ = parse_json(serde_json::json!({ "type": "PUSH_ARTIFACT", "event_data": value }));
            let _ = parse_json(push(resources.clone()));
            let _ = parse_json(push(serde_json::json!([resources])));
            let _ = parse_json(serde_json::json!({ "specversion": "1.0", "type": "harbor.artifact.pushed", "id": value, "data": { "resources": [resources], "repository": { "repo_full_name": "a/b" } } }));
        }
    }
}
