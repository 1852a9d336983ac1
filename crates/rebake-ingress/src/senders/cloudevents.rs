//! Generic [CloudEvents 1.0] endpoint: the contract for "anything else" that can tell Rebake a
//! registry tag or a Git ref moved (CI pipelines, in-house registries, scripts, bridges).
//!
//! # Verification
//!
//! `Authorization: Bearer <secret>`: the token is compared with the source's secret in constant
//! time. No signature: use TLS.
//!
//! # Content modes (HTTP protocol binding)
//!
//! - **structured**: `Content-Type: application/cloudevents+json`, the body is one event:
//!   `{"specversion": "1.0", "id": …, "source": …, "type": …, "data": {…}}` (`data_base64`
//!   holding base64 of the JSON data is accepted too);
//! - **batch**: `Content-Type: application/cloudevents-batch+json`, the body is a JSON array of
//!   structured events;
//! - **binary**: the attributes are headers (`ce-specversion`, `ce-id`, `ce-source`,
//!   `ce-type`; percent-encoded values are decoded), the body is the data and `Content-Type`
//!   its type: `application/json` (or any `…+json`; absent means JSON).
//!
//! `specversion` must be `1.0`; `id`, `source` and `type` are required and non-empty, else the
//! request is refused as malformed (400). Any other content type is refused (415).
//!
//! # Event types Rebake reads
//!
//! **`dev.rebake.registry.tag.changed`**: a tag of an image repository now points at a
//! (possibly new) manifest. `data`:
//!
//! | field | | meaning |
//! | --- | --- | --- |
//! | `registry` | optional | registry host (`registry.example:5000`); a name only, matched against the source's configured registry and never contacted because an event said so |
//! | `repository` | required | repository path (`team/app`, lowercase OCI grammar) |
//! | `tag` | required | the tag that moved (OCI tag grammar) |
//! | `digest` | optional | `sha256:<64 hex>` it points at now; when absent the tag is resolved through the configured registry |
//! | `mediaType` | optional | manifest media type |
//!
//! Rebake's own artifact tags (`sha256-<hex>.sig`, `.att`, `.sbom`) are acknowledged and
//! ignored.
//!
//! **`dev.rebake.git.ref.changed`**: a branch or tag of a Git repository moved. `data`:
//!
//! | field | | meaning |
//! | --- | --- | --- |
//! | `repository` | required | clone URL or `host/path` (`https://git.example/team/app.git`, `git@git.example:team/app`, `git.example/team/app`), normalised to `host/path` |
//! | `ref` | required | full ref: `refs/heads/<branch>` or `refs/tags/<tag>` |
//! | `after` | required unless deleted | commit (40 hex) the ref points at now; 40 zeros means deleted |
//! | `before` | optional | commit it pointed at before (40 hex; zeros or absent when created) |
//! | `deleted` | optional | `true` when the ref was deleted (default `false`) |
//! | `forced` | optional | `true` for a force push (default `false`) |
//!
//! Any other `type` is answered 202 and logged, so senders keep the hook enabled.
//!
//! # Delivery id
//!
//! `source + " " + id` (CloudEvents ids are unique only per source); a batch of several events
//! gets `batch-<sha256 of their delivery ids>`, so a resent batch is recognised too.
//!
//! Shared with the Azure Container Registry sender (Event Grid delivers CloudEvents): the
//! structured-event reader and the per-event outcome bookkeeping, in `common.rs`.
//!
//! [CloudEvents 1.0]: https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md

use rebake_events::pb;
use serde_json::{Map, Value};

use super::common::{Outcome, SPEC_VERSION, StructuredEvent, combine, string_field, structured_event, tag_change};
use super::{Change, Credentials, Inbound, Parsed, Refusal, json, secret_eq, split_ref, valid_commit, valid_digest};

/// `type` of a registry tag change.
pub(crate) const REGISTRY_TAG_CHANGED: &str = "dev.rebake.registry.tag.changed";
/// `type` of a Git ref change.
pub(crate) const GIT_REF_CHANGED: &str = "dev.rebake.git.ref.changed";

/// Structured mode, one event.
pub(super) const STRUCTURED: &str = "application/cloudevents+json";
/// Structured mode, a JSON array of events.
pub(super) const BATCH: &str = "application/cloudevents-batch+json";

/// A Git commit of all zeros: "no commit" (created or deleted ref).
const ZERO_COMMIT: &str = "0000000000000000000000000000000000000000";

pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    let Some(authorization) = inbound.headers.get("authorization") else {
        return Err(Refusal::Unauthorized("missing bearer token"));
    };
    let authorization = authorization.as_bytes().trim_ascii();
    let Some(space) = authorization.iter().position(|b| *b == b' ') else {
        return Err(Refusal::Unauthorized("authorization is not a bearer token"));
    };
    let (scheme, token) = authorization.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Refusal::Unauthorized("authorization is not a bearer token"));
    }
    if secret_eq(token.trim_ascii(), credentials.secret) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized("invalid bearer token"))
    }
}

pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    let media_type = inbound.media_type();
    match media_type.as_deref() {
        Some(STRUCTURED) => {
            let document: Value = json(inbound.body, "cloudevent")?;
            if !document.is_object() {
                return Err(Refusal::Malformed(format!(
                    "a {STRUCTURED} body must be one JSON object (send arrays as {BATCH})"
                )));
            }
            combine(vec![event_outcome(structured_event(&document))])
        }
        Some(BATCH) => {
            let document: Value = json(inbound.body, "cloudevents batch")?;
            let Some(events) = document.as_array() else {
                return Err(Refusal::Malformed(format!("a {BATCH} body must be a JSON array")));
            };
            combine(
                events
                    .iter()
                    .map(|event| event_outcome(structured_event(event)))
                    .collect(),
            )
        }
        _ if inbound.header("ce-specversion").is_some() => parse_binary(inbound, media_type.as_deref()),
        Some(other) if is_json_media_type(other) => Err(Refusal::Malformed(
            "binary-mode cloudevent without the required ce-specversion, ce-id, ce-source and ce-type headers"
                .to_string(),
        )),
        Some(other) => Err(Refusal::UnsupportedMediaType(format!(
            "unsupported content type {other}: expected {STRUCTURED}, {BATCH} or a binary-mode event with JSON data"
        ))),
        None => Err(Refusal::UnsupportedMediaType("missing content type".to_string())),
    }
}

/// Binary mode: attributes in `ce-*` headers, the body is the data.
fn parse_binary(inbound: &Inbound<'_>, media_type: Option<&str>) -> Result<Parsed, Refusal> {
    let attribute = |name: &str| -> Result<String, Refusal> {
        inbound
            .header(&format!("ce-{name}"))
            .map(percent_decode)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| Refusal::Malformed(format!("missing required attribute header ce-{name}")))
    };
    let spec_version = attribute("specversion")?;
    if spec_version != SPEC_VERSION {
        return Err(Refusal::Malformed(format!(
            "unsupported cloudevents specversion {spec_version:?} (expected {SPEC_VERSION})"
        )));
    }
    let id = attribute("id")?;
    let source = attribute("source")?;
    let event_type = attribute("type")?;
    if event_type != REGISTRY_TAG_CHANGED && event_type != GIT_REF_CHANGED {
        return combine(vec![event_outcome(Ok(StructuredEvent {
            id,
            source,
            event_type,
            data: None,
        }))]);
    }
    if let Some(media_type) = media_type
        && !is_json_media_type(media_type)
    {
        return Err(Refusal::UnsupportedMediaType(format!(
            "unsupported data content type {media_type} for {event_type}: expected application/json"
        )));
    }
    let data: Value = json(inbound.body, "cloudevent data")?;
    combine(vec![event_outcome(Ok(StructuredEvent {
        id,
        source,
        event_type,
        data: Some(data),
    }))])
}

/// `application/json`, `text/json` or any `…/…+json`.
fn is_json_media_type(media_type: &str) -> bool {
    media_type == "application/json" || media_type == "text/json" || media_type.ends_with("+json")
}

/// Decodes `%XX` escapes (the HTTP binding's encoding of header values); text that does not
/// decode to UTF-8 is kept as received.
fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match escaped {
            Some(value) => {
                decoded.push(value);
                index += 3;
            }
            None => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).unwrap_or_else(|_| text.to_string())
}

/// What one Rebake-typed event amounts to, with its delivery id.
fn event_outcome(event: Result<StructuredEvent, String>) -> (Option<String>, Outcome) {
    let event = match event {
        Ok(event) => event,
        Err(reason) => return (None, Outcome::Malformed(reason)),
    };
    let delivery_id = format!("{} {}", event.source, event.id);
    let outcome = match event.event_type.as_str() {
        REGISTRY_TAG_CHANGED => registry_tag_changed(event.data.as_ref()),
        GIT_REF_CHANGED => git_ref_changed(event.data.as_ref(), &delivery_id),
        other => Outcome::Unknown(format!("cloudevent type {other:?} is not one Rebake reads")),
    };
    (Some(delivery_id), outcome)
}

/// `dev.rebake.registry.tag.changed` data.
fn registry_tag_changed(data: Option<&Value>) -> Outcome {
    let data = match data_object(data, REGISTRY_TAG_CHANGED) {
        Ok(data) => data,
        Err(reason) => return Outcome::Malformed(reason),
    };
    let fields = (|| {
        let repository = string_field(data, "repository")?.unwrap_or_default();
        let tag = string_field(data, "tag")?.unwrap_or_default();
        let registry = string_field(data, "registry")?.unwrap_or_default();
        let digest = string_field(data, "digest")?;
        let media_type = string_field(data, "mediaType")?;
        Ok::<_, String>((repository, tag, registry, digest, media_type))
    })();
    let (repository, tag, registry, digest, media_type) = match fields {
        Ok(fields) => fields,
        Err(reason) => return Outcome::Malformed(reason),
    };
    if repository.is_empty() {
        return Outcome::Malformed(format!("{REGISTRY_TAG_CHANGED} data has no repository"));
    }
    if tag.is_empty() {
        return Outcome::Malformed(format!("{REGISTRY_TAG_CHANGED} data has no tag"));
    }
    let digest = match digest.filter(|digest| !digest.is_empty()) {
        None => None,
        Some(digest) => match valid_digest(digest) {
            Some(digest) => Some(digest),
            None => return Outcome::Malformed(format!("data.digest {digest:?} is not sha256:<64 hex>")),
        },
    };
    tag_change(registry, repository, tag, digest, media_type)
}

/// `dev.rebake.git.ref.changed` data.
fn git_ref_changed(data: Option<&Value>, delivery_id: &str) -> Outcome {
    let data = match data_object(data, GIT_REF_CHANGED) {
        Ok(data) => data,
        Err(reason) => return Outcome::Malformed(reason),
    };
    match git_change(data, delivery_id) {
        Ok(change) => Outcome::Change(Change::Git(change)),
        Err(reason) => Outcome::Malformed(reason),
    }
}

fn git_change(data: &Map<String, Value>, delivery_id: &str) -> Result<pb::GitRefChanged, String> {
    let repository_text = string_field(data, "repository")?.unwrap_or_default();
    let repository = rebake_config::normalise_git_identity(repository_text);
    if repository.is_empty()
        || repository.len() > 512
        || repository
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "data.repository {repository_text:?} is not a Git URL or host/path"
        ));
    }
    let full_ref = string_field(data, "ref")?.unwrap_or_default();
    let Some((ref_kind, ref_name)) = split_ref(full_ref) else {
        return Err(format!(
            "data.ref {full_ref:?} is not refs/heads/<name> or refs/tags/<name>"
        ));
    };
    if ref_name.len() > 255
        || ref_name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!("data.ref {full_ref:?} is not a valid ref name"));
    }
    let deleted_flag = bool_field(data, "deleted")?;
    let forced = bool_field(data, "forced")?;
    let after = string_field(data, "after")?.unwrap_or_default();
    let deleted = deleted_flag || after == ZERO_COMMIT;
    let new_commit = if deleted {
        String::new()
    } else {
        valid_commit(after).ok_or_else(|| format!("data.after {after:?} is not a 40-hex commit"))?
    };
    let before = string_field(data, "before")?.unwrap_or_default();
    let old_commit = if before.is_empty() || before == ZERO_COMMIT {
        String::new()
    } else {
        valid_commit(before).ok_or_else(|| format!("data.before {before:?} is not a 40-hex commit"))?
    };
    Ok(pb::GitRefChanged {
        repository,
        ref_kind: ref_kind.to_string(),
        ref_name: ref_name.to_string(),
        new_commit,
        old_commit,
        deleted,
        forced,
        delivery_id: delivery_id.to_string(),
    })
}

fn data_object<'a>(data: Option<&'a Value>, event_type: &str) -> Result<&'a Map<String, Value>, String> {
    match data {
        None | Some(Value::Null) => Err(format!("{event_type} event has no data")),
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(format!("{event_type} data must be a JSON object")),
    }
}

/// A boolean member, `false` when absent or null.
fn bool_field(object: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(format!("data.{key} must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::test_support::{
        self, any_body, assert_refuses_content_types, fixture, headers, inbound, json_value,
    };
    use super::super::{Credentials, RegistryChange};
    use super::*;
    use base64::Engine as _;

    const SECRET: &[u8] = b"ce-s3cret";
    const DIGEST: &str = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4";
    const AFTER: &str = "1481a2de7b2a7d02428ad93446ab166be7793fbb";
    const BEFORE: &str = "4d1f8a3c2b0e9f7d6c5b4a3928170f6e5d4c3b2a";

    fn credentials() -> Credentials<'static> {
        test_support::credentials(SECRET)
    }

    fn parse_with(content_type: &str, body: &[u8]) -> Result<Parsed, Refusal> {
        test_support::parse_with(parse, content_type, body)
    }

    fn registry_change(parsed: &Parsed) -> &RegistryChange {
        match parsed {
            Parsed::Changes { changes, .. } => match changes.as_slice() {
                [Change::Registry(change)] => change,
                other => panic!("expected one registry change, got {other:?}"),
            },
            other => panic!("expected changes, got {other:?}"),
        }
    }

    #[test]
    fn registry_fixture_parses_to_exact_change() {
        let parsed = parse_with(STRUCTURED, &fixture("cloudevents/rebake-registry-tag-changed.json")).unwrap();
        assert_eq!(
            parsed,
            Parsed::Changes {
                delivery_id: Some("https://ci.example/pipelines/42 7a8f6f0e-6a8b-4f5e-9a61-0c7d2d1b9e11".into()),
                changes: vec![Change::Registry(RegistryChange {
                    registry: "registry.example:5000".into(),
                    repository: "team/app".into(),
                    tag: "1.4".into(),
                    digest: Some(DIGEST.into()),
                    media_type: Some("application/vnd.oci.image.index.v1+json".into()),
                })],
            }
        );
    }

    #[test]
    fn git_fixture_parses_to_exact_change() {
        let parsed = parse_with(STRUCTURED, &fixture("cloudevents/rebake-git-ref-changed.json")).unwrap();
        let delivery = "https://ci.example/mirror 0f5b3c9e-2d41-4c61-8b0e-5b7f3c2a9d10";
        assert_eq!(
            parsed,
            Parsed::Changes {
                delivery_id: Some(delivery.into()),
                changes: vec![Change::Git(pb::GitRefChanged {
                    repository: "git.example/team/app".into(),
                    ref_kind: "branch".into(),
                    ref_name: "main".into(),
                    new_commit: AFTER.into(),
                    old_commit: BEFORE.into(),
                    deleted: false,
                    forced: true,
                    delivery_id: delivery.into(),
                })],
            }
        );
    }

    #[test]
    fn binary_mode_reads_headers_and_json_body() {
        let map = headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("ce-specversion", "1.0"),
            ("ce-id", "id%201"),
            ("ce-source", "/ci/x"),
            ("ce-type", REGISTRY_TAG_CHANGED),
        ]);
        let body = br#"{"repository":"team/app","tag":"v2"}"#;
        let parsed = parse(&inbound(&map, body)).unwrap();
        assert_eq!(
            parsed,
            Parsed::Changes {
                delivery_id: Some("/ci/x id 1".into()),
                changes: vec![Change::Registry(RegistryChange {
                    registry: String::new(),
                    repository: "team/app".into(),
                    tag: "v2".into(),
                    digest: None,
                    media_type: None,
                })],
            }
        );
    }

    #[test]
    fn binary_mode_requires_attributes() {
        let body = br#"{"repository":"team/app","tag":"v2"}"#;
        for missing in ["ce-id", "ce-source", "ce-type"] {
            let mut pairs = vec![
                ("content-type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/ci"),
                ("ce-type", REGISTRY_TAG_CHANGED),
            ];
            pairs.retain(|(name, _)| *name != missing);
            let map = headers(&pairs);
            assert!(
                matches!(parse(&inbound(&map, body)), Err(Refusal::Malformed(reason)) if reason.contains(missing)),
                "{missing}"
            );
        }
        let map = headers(&[("content-type", "application/json")]);
        assert!(matches!(parse(&inbound(&map, body)), Err(Refusal::Malformed(_))));
        let map = headers(&[
            ("content-type", "application/json"),
            ("ce-specversion", "0.3"),
            ("ce-id", "1"),
            ("ce-source", "/ci"),
            ("ce-type", REGISTRY_TAG_CHANGED),
        ]);
        assert!(matches!(parse(&inbound(&map, body)), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn binary_mode_known_type_needs_json_data() {
        let map = headers(&[
            ("content-type", "text/plain"),
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/ci"),
            ("ce-type", REGISTRY_TAG_CHANGED),
        ]);
        assert!(matches!(
            parse(&inbound(&map, b"team/app:v2")),
            Err(Refusal::UnsupportedMediaType(_))
        ));
        let map = headers(&[
            ("content-type", "text/plain"),
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/ci"),
            ("ce-type", "com.example.other"),
        ]);
        assert!(matches!(parse(&inbound(&map, b"hello")), Ok(Parsed::Unknown(_))));
    }

    #[test]
    fn batch_mode_collects_changes_and_combines_ids() {
        let registry = String::from_utf8(fixture("cloudevents/rebake-registry-tag-changed.json")).unwrap();
        let git = String::from_utf8(fixture("cloudevents/rebake-git-ref-changed.json")).unwrap();
        let body = format!("[{registry},{git}]");
        let Parsed::Changes { delivery_id, changes } = parse_with(BATCH, body.as_bytes()).unwrap() else {
            panic!("expected changes");
        };
        assert_eq!(changes.len(), 2);
        assert!(matches!(&changes[0], Change::Registry(change) if change.tag == "1.4"));
        assert!(matches!(&changes[1], Change::Git(change) if change.ref_name == "main"));
        let delivery_id = delivery_id.unwrap();
        assert!(delivery_id.starts_with("batch-") && delivery_id.len() == "batch-".len() + 64);
        // a resent batch has the same id, another batch another
        let again = parse_with(BATCH, body.as_bytes()).unwrap();
        assert!(matches!(again, Parsed::Changes { delivery_id: Some(id), .. } if id == delivery_id));
        let other = parse_with(BATCH, format!("[{git},{registry}]").as_bytes()).unwrap();
        assert!(matches!(other, Parsed::Changes { delivery_id: Some(id), .. } if id != delivery_id));
    }

    #[test]
    fn batch_skips_malformed_events_next_to_good_ones() {
        let registry = String::from_utf8(fixture("cloudevents/rebake-registry-tag-changed.json")).unwrap();
        let body = format!(r#"[{registry},{{"specversion":"1.0","id":"x"}}]"#);
        let Parsed::Changes { changes, .. } = parse_with(BATCH, body.as_bytes()).unwrap() else {
            panic!("expected changes");
        };
        assert_eq!(changes.len(), 1);
        let body = r#"[{"specversion":"1.0","id":"x"},{"specversion":"1.0","id":"y","source":"/s"}]"#;
        assert!(matches!(parse_with(BATCH, body.as_bytes()), Err(Refusal::Malformed(_))));
        assert_eq!(parse_with(BATCH, b"[]").unwrap(), Parsed::Ignored("empty batch".into()));
        assert!(matches!(parse_with(BATCH, b"{}"), Err(Refusal::Malformed(_))));
        assert!(matches!(parse_with(STRUCTURED, b"[]"), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn verify_bearer() {
        let good = format!("Bearer {}", std::str::from_utf8(SECRET).unwrap());
        let lower = format!("bearer {}", std::str::from_utf8(SECRET).unwrap());
        for value in [good.as_str(), lower.as_str()] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(verify(&inbound(&map, b"{}"), &credentials()), Ok(()));
        }
        let wrong = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(
            verify(&inbound(&wrong, b"{}"), &credentials()),
            Err(Refusal::Unauthorized("invalid bearer token"))
        );
        let basic = headers(&[("authorization", "Basic Y2UtczNjcmV0")]);
        assert!(matches!(
            verify(&inbound(&basic, b"{}"), &credentials()),
            Err(Refusal::Unauthorized(_))
        ));
        let bare = headers(&[("authorization", std::str::from_utf8(SECRET).unwrap())]);
        assert!(matches!(
            verify(&inbound(&bare, b"{}"), &credentials()),
            Err(Refusal::Unauthorized(_))
        ));
        let none = headers(&[]);
        assert_eq!(
            verify(&inbound(&none, b"{}"), &credentials()),
            Err(Refusal::Unauthorized("missing bearer token"))
        );
        // a custom header name is an ACR/ECR setting; the bearer token stays in Authorization
        let custom = headers(&[("x-api-key", std::str::from_utf8(SECRET).unwrap())]);
        let with_header = Credentials {
            secret: SECRET,
            header: Some("X-Api-Key"),
        };
        assert!(verify(&inbound(&custom, b"{}"), &with_header).is_err());
    }

    #[test]
    fn unknown_types_and_ignored_own_tags() {
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"com.example.object.created","data":{}}"#;
        assert!(matches!(parse_with(STRUCTURED, body), Ok(Parsed::Unknown(_))));
        let own = format!("sha256-{}.sig", "a".repeat(64));
        let body = serde_json::json!({
            "specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED,
            "data": {"repository": "team/app", "tag": own}
        });
        assert!(matches!(
            parse_with(STRUCTURED, body.to_string().as_bytes()),
            Ok(Parsed::Ignored(_))
        ));
    }

    #[test]
    fn malformed_known_events() {
        let cases = [
            serde_json::json!({"id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED, "data": {}}),
            serde_json::json!({"specversion": "1.0", "source": "/s", "type": REGISTRY_TAG_CHANGED}),
            serde_json::json!({"specversion": "1.0", "id": "", "source": "/s", "type": REGISTRY_TAG_CHANGED}),
            serde_json::json!({"specversion": "1.0", "id": 7, "source": "/s", "type": REGISTRY_TAG_CHANGED}),
            serde_json::json!({"specversion": "1.0", "id": "1", "type": REGISTRY_TAG_CHANGED}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s"}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED,
                "data": {"repository": "Team/App", "tag": "v1"}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED,
                "data": {"repository": "team/app", "tag": ".bad"}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED,
                "data": {"repository": "team/app", "tag": "v1", "digest": "sha256:abc"}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED,
                "data": {"repository": "team/app", "tag": "v1", "registry": "https://x/"}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED,
                "data": {"repository": "team/app"}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED,
                "data": "team/app:v1"}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": GIT_REF_CHANGED,
                "data": {"repository": "git.example/a", "ref": "main", "after": AFTER}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": GIT_REF_CHANGED,
                "data": {"repository": "git.example/a", "ref": "refs/heads/main", "after": "abc"}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": GIT_REF_CHANGED,
                "data": {"ref": "refs/heads/main", "after": AFTER}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": GIT_REF_CHANGED,
                "data": {"repository": "git.example/a", "ref": "refs/heads/main", "after": AFTER, "forced": "yes"}}),
            serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": GIT_REF_CHANGED,
                "data": {"repository": "git.example/a", "ref": "refs/heads/main", "after": AFTER, "before": "xyz"}}),
        ];
        for case in cases {
            assert!(
                matches!(
                    parse_with(STRUCTURED, case.to_string().as_bytes()),
                    Err(Refusal::Malformed(_))
                ),
                "{case}"
            );
        }
        assert!(matches!(
            parse_with(STRUCTURED, b"{not json"),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(parse_with(BATCH, b"[{"), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn git_deletion_and_url_forms() {
        let body = serde_json::json!({
            "specversion": "1.0", "id": "9", "source": "/s", "type": GIT_REF_CHANGED,
            "data": {"repository": "git@git.example:Team/App.git", "ref": "refs/tags/v1",
                     "after": ZERO_COMMIT, "before": BEFORE}
        });
        let parsed = parse_with(STRUCTURED, body.to_string().as_bytes()).unwrap();
        assert_eq!(
            parsed,
            Parsed::Changes {
                delivery_id: Some("/s 9".into()),
                changes: vec![Change::Git(pb::GitRefChanged {
                    repository: "git.example/team/app".into(),
                    ref_kind: "tag".into(),
                    ref_name: "v1".into(),
                    new_commit: String::new(),
                    old_commit: BEFORE.into(),
                    deleted: true,
                    forced: false,
                    delivery_id: "/s 9".into(),
                })],
            }
        );
        let body = serde_json::json!({
            "specversion": "1.0", "id": "9", "source": "/s", "type": GIT_REF_CHANGED,
            "data": {"repository": "https://git.example/team/app", "ref": "refs/heads/gone", "deleted": true}
        });
        let parsed = parse_with(STRUCTURED, body.to_string().as_bytes()).unwrap();
        assert!(matches!(&parsed, Parsed::Changes { changes, .. }
            if matches!(changes.as_slice(), [Change::Git(change)] if change.deleted && change.new_commit.is_empty())));
    }

    #[test]
    fn data_base64_is_read() {
        let data = base64::engine::general_purpose::STANDARD.encode(br#"{"repository":"team/app","tag":"v3"}"#);
        let body = serde_json::json!({
            "specversion": "1.0", "id": "1", "source": "/s", "type": REGISTRY_TAG_CHANGED,
            "datacontenttype": "application/json", "data_base64": data
        });
        let parsed = parse_with(STRUCTURED, body.to_string().as_bytes()).unwrap();
        assert_eq!(registry_change(&parsed).tag, "v3");
    }

    #[test]
    fn wrong_content_types() {
        let body = fixture("cloudevents/rebake-registry-tag-changed.json");
        assert_refuses_content_types(parse, &["application/x-www-form-urlencoded"], &body);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FF"), "%FF");
    }

    const KEYS: &[&str] = &[
        "specversion",
        "id",
        "source",
        "type",
        "data",
        "data_base64",
        "repository",
        "tag",
        "registry",
        "digest",
        "mediaType",
        "ref",
        "after",
        "before",
        "deleted",
        "forced",
        "1.0",
        REGISTRY_TAG_CHANGED,
        GIT_REF_CHANGED,
        "refs/heads/main",
        AFTER,
        "team/app",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body(), token in "[ -~]{0,40}") {
            let authorization = format!("Bearer {token}");
            for content_type in [STRUCTURED, BATCH, "application/json", "text/plain"] {
                let map = headers(&[
                    ("content-type", content_type),
                    ("authorization", authorization.as_str()),
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", GIT_REF_CHANGED),
                ]);
                let request = inbound(&map, &body);
                let _ = verify(&request, &credentials());
                let _ = parse(&request);
            }
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[])) {
            let body = serde_json::to_vec(&value).unwrap();
            let _ = parse_with(STRUCTURED, &body);
            let _ = parse_with(BATCH, &body);
            let _ = parse_with(BATCH, &serde_json::to_vec(&Value::Array(vec![value.clone()])).unwrap());
            let map = headers(&[
                ("content-type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", REGISTRY_TAG_CHANGED),
            ]);
            let _ = parse(&inbound(&map, &body));
        }

        #[test]
        fn fixtures_parse_identically_twice(name in prop_oneof![
            Just("cloudevents/rebake-registry-tag-changed.json"),
            Just("cloudevents/rebake-git-ref-changed.json"),
        ]) {
            let body = fixture(name);
            prop_assert_eq!(parse_with(STRUCTURED, &body), parse_with(STRUCTURED, &body));
        }
    }
}
