//! Google Artifact Registry (and Container Registry), through a Pub/Sub push subscription on
//! the project's `gcr` topic.
//!
//! # Verification
//!
//! In the hook URL (path segment or `?token=`), checked by `path_token` in the parent module: a push
//! subscription can neither sign nor send a custom header. (The Google-signed OIDC token a push
//! subscription may add in `Authorization` is not checked.)
//!
//! # Formats
//!
//! - **wrapped** (the default), `Content-Type: application/json`: a Pub/Sub push envelope
//!   `{"message": {"data": "<base64>", "messageId": "…", "attributes": {…}, "publishTime": "…"},
//!   "subscription": "projects/…/subscriptions/…"}` (`message_id`/`publish_time` are also
//!   sent and accepted);
//! - **unwrapped** ("payload unwrapping" enabled on the subscription): the body is the message
//!   data itself, the message id in `x-goog-pubsub-message-id` when "write metadata" is on.
//!   The data carries no content type of its own, so `application/json`, `text/plain` and
//!   `application/octet-stream` are accepted.
//!
//! The message data is Artifact Registry's notification: `{"action": "INSERT"|"DELETE",
//! "digest": "<host>/<path>@sha256:…", "tag": "<host>/<path>:<tag>"}`: fully qualified
//! references, split here into registry host (before the first `/`), repository (the rest up
//! to the tag's `:` or the digest's `@`), tag and digest. The digest is kept only when it names
//! the same repository as the tag and is a valid `sha256:<64 hex>`.
//!
//! An `INSERT` with a tag is a change; an `INSERT` without one (a push by digest), a `DELETE`
//! and Rebake's own artifact tags are ignored; any other action is unknown.
//!
//! Delivery id: the Pub/Sub `messageId` (kept across Pub/Sub's redeliveries).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::common::{Outcome, media_type_in, string_field, tag_change};
use super::{Inbound, Parsed, Refusal, json, valid_digest};

/// Content types a push subscription sends: JSON when wrapped; unwrapped data has none of
/// its own.
const ACCEPTED_CONTENT_TYPES: [&str; 3] = ["application/json", "text/plain", "application/octet-stream"];

/// Message id header of an unwrapped push with metadata.
const MESSAGE_ID_HEADER: &str = "x-goog-pubsub-message-id";

pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    media_type_in(inbound, &ACCEPTED_CONTENT_TYPES, "application/json")?;
    let document: Value = json(inbound.body, "pub/sub push")?;
    let Some(object) = document.as_object() else {
        return Err(Refusal::Malformed(
            "pub/sub push body must be a JSON object".to_string(),
        ));
    };
    let (delivery_id, notification) = match object.get("message") {
        Some(message) => unwrap_envelope(message)?,
        None if object.contains_key("action") => {
            let delivery_id = inbound.header(MESSAGE_ID_HEADER).map(str::to_string);
            (delivery_id, object.clone())
        }
        None => {
            return Err(Refusal::Malformed(
                "body is neither a pub/sub push envelope nor an artifact registry notification".to_string(),
            ));
        }
    };
    classify(&notification).into_parsed(delivery_id)
}

/// The message id and decoded data of a push envelope's `message`.
fn unwrap_envelope(message: &Value) -> Result<(Option<String>, Map<String, Value>), Refusal> {
    let Some(message) = message.as_object() else {
        return Err(Refusal::Malformed("pub/sub message must be a JSON object".to_string()));
    };
    let message_id = ["messageId", "message_id"]
        .iter()
        .find_map(|key| message.get(*key).and_then(Value::as_str))
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let Some(encoded) = message.get("data").and_then(Value::as_str) else {
        return Err(Refusal::Malformed("pub/sub message has no data".to_string()));
    };
    let decoded =
        decode_base64(encoded).ok_or_else(|| Refusal::Malformed("pub/sub message data is not base64".to_string()))?;
    let notification: Value = json(&decoded, "artifact registry notification")?;
    match notification {
        Value::Object(notification) => Ok((message_id, notification)),
        _ => Err(Refusal::Malformed(
            "artifact registry notification must be a JSON object".to_string(),
        )),
    }
}

/// Pub/Sub sends standard padded base64; unpadded and URL-safe forms are accepted too.
fn decode_base64(encoded: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let encoded = encoded.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok())
}

fn classify(notification: &Map<String, Value>) -> Outcome {
    match notification_outcome(notification) {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::Malformed(format!("artifact registry notification: {reason}")),
    }
}

fn notification_outcome(notification: &Map<String, Value>) -> Result<Outcome, String> {
    let action = string_field(notification, "action")?.ok_or("no action")?;
    match action {
        "INSERT" => {}
        "DELETE" => return Ok(Outcome::Ignored("artifact registry delete".to_string())),
        other => {
            return Ok(Outcome::Unknown(format!(
                "artifact registry action {other:?} is not one Rebake reads"
            )));
        }
    }
    let tag_reference = string_field(notification, "tag")?.unwrap_or_default();
    if tag_reference.is_empty() {
        return Ok(Outcome::Ignored("push by digest (no tag moved)".to_string()));
    }
    let tagged =
        Reference::parse(tag_reference).ok_or_else(|| format!("tag {tag_reference:?} is not host/path:tag"))?;
    let Some(tag) = tagged.tag else {
        return Err(format!("tag {tag_reference:?} is not host/path:tag"));
    };
    let digest = string_field(notification, "digest")?
        .and_then(Reference::parse)
        .filter(|digested| digested.host == tagged.host && digested.repository == tagged.repository)
        .and_then(|digested| digested.digest)
        .and_then(valid_digest);
    Ok(tag_change(tagged.host, tagged.repository, tag, digest, None))
}

/// A fully qualified image reference `host/path[:tag][@digest]`, split (not validated: the
/// parts are judged afterwards).
#[derive(Debug, PartialEq, Eq)]
struct Reference<'a> {
    host: &'a str,
    repository: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> Reference<'a> {
    fn parse(reference: &'a str) -> Option<Self> {
        let (host, rest) = reference.split_once('/')?;
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (rest, None),
        };
        // a `:` after the last `/` separates the tag (one before it would be in the path)
        let last_component_start = name.rfind('/').map_or(0, |slash| slash + 1);
        let (repository, tag) = match name.get(last_component_start..).and_then(|last| last.rfind(':')) {
            Some(colon) => {
                let split_at = last_component_start + colon;
                (name.get(..split_at)?, Some(name.get(split_at + 1..)?))
            }
            None => (name, None),
        };
        Some(Reference {
            host,
            repository,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::test_support::{
        self, any_body, assert_refuses_content_types, fixture, headers, inbound, json_value,
    };
    use super::super::{Change, RegistryChange};
    use super::*;

    const DATA_FIXTURE: &str = "gar/gar-pubsub-message-data-INSERT.json";
    const DIGEST: &str = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4";
    const MESSAGE_ID: &str = "2070443601311540";

    /// The Pub/Sub push envelope a wrapped push subscription sends for the documented data.
    /// (Fixture files for it cannot live under `tests/fixtures/gar/`: see the report on
    /// `fixture_copies_match_shared`.)
    fn envelope(data: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "message": {
                "attributes": {},
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "messageId": MESSAGE_ID,
                "message_id": MESSAGE_ID,
                "publishTime": "2021-02-26T19:13:55.749Z",
                "publish_time": "2021-02-26T19:13:55.749Z"
            },
            "subscription": "projects/my-project/subscriptions/rebake-gar"
        }))
        .unwrap()
    }

    fn parse_with(content_type: &str, body: &[u8]) -> Result<Parsed, Refusal> {
        test_support::parse_with(parse, content_type, body)
    }

    fn expected_change() -> Change {
        Change::Registry(RegistryChange {
            registry: "us-east1-docker.pkg.dev".into(),
            repository: "my-project/my-repo/hello-world".into(),
            tag: "1.1".into(),
            digest: Some(DIGEST.into()),
            media_type: None,
        })
    }

    fn data_with(action: &str, digest: Option<&str>, tag: Option<&str>) -> Vec<u8> {
        let mut data = serde_json::Map::new();
        data.insert("action".into(), Value::from(action));
        if let Some(digest) = digest {
            data.insert("digest".into(), Value::from(digest));
        }
        if let Some(tag) = tag {
            data.insert("tag".into(), Value::from(tag));
        }
        envelope(&serde_json::to_vec(&data).unwrap())
    }

    #[test]
    fn wrapped_fixture_parses_to_exact_change() {
        let body = envelope(&fixture(DATA_FIXTURE));
        assert_eq!(
            parse_with("application/json", &body).unwrap(),
            Parsed::Changes {
                delivery_id: Some(MESSAGE_ID.into()),
                changes: vec![expected_change()],
            }
        );
    }

    #[test]
    fn unwrapped_fixture_parses_with_header_message_id() {
        let map = headers(&[("content-type", "application/json"), (MESSAGE_ID_HEADER, MESSAGE_ID)]);
        let body = fixture(DATA_FIXTURE);
        assert_eq!(
            parse(&inbound(&map, &body)).unwrap(),
            Parsed::Changes {
                delivery_id: Some(MESSAGE_ID.into()),
                changes: vec![expected_change()],
            }
        );
        // without write-metadata there is no id
        assert!(matches!(
            parse_with("text/plain", &body),
            Ok(Parsed::Changes { delivery_id: None, .. })
        ));
    }

    #[test]
    fn snake_case_message_id_and_unpadded_data() {
        let data = base64::engine::general_purpose::STANDARD_NO_PAD.encode(fixture(DATA_FIXTURE));
        let body = serde_json::json!({"message": {"data": data, "message_id": "77"}, "subscription": "s"});
        assert_eq!(
            parse_with("application/json", body.to_string().as_bytes()).unwrap(),
            Parsed::Changes {
                delivery_id: Some("77".into()),
                changes: vec![expected_change()],
            }
        );
    }

    #[test]
    fn digest_of_another_image_or_invalid_is_dropped() {
        let tag = "us-east1-docker.pkg.dev/my-project/my-repo/hello-world:1.1";
        for digest in [
            format!("us-east1-docker.pkg.dev/my-project/my-repo/other@{DIGEST}"),
            format!("europe-docker.pkg.dev/my-project/my-repo/hello-world@{DIGEST}"),
            "us-east1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:abcd".to_string(),
            DIGEST.to_string(),
        ] {
            let parsed = parse_with("application/json", &data_with("INSERT", Some(&digest), Some(tag))).unwrap();
            assert!(
                matches!(&parsed, Parsed::Changes { changes, .. }
                    if matches!(changes.as_slice(), [Change::Registry(change)] if change.digest.is_none() && change.tag == "1.1")),
                "{digest}: {parsed:?}"
            );
        }
    }

    #[test]
    fn references_split() {
        assert_eq!(
            Reference::parse("localhost:5000/a/b:v1@sha256:x"),
            Some(Reference {
                host: "localhost:5000",
                repository: "a/b",
                tag: Some("v1"),
                digest: Some("sha256:x"),
            })
        );
        assert_eq!(
            Reference::parse("gcr.io/p/img"),
            Some(Reference {
                host: "gcr.io",
                repository: "p/img",
                tag: None,
                digest: None,
            })
        );
        assert_eq!(Reference::parse("no-slash:tag"), None);
    }

    #[test]
    fn deletes_and_pushes_by_digest_are_ignored() {
        let digest = format!("us-east1-docker.pkg.dev/my-project/my-repo/hello-world@{DIGEST}");
        let tag = "us-east1-docker.pkg.dev/my-project/my-repo/hello-world:1.1";
        assert!(matches!(
            parse_with("application/json", &data_with("DELETE", None, Some(tag))),
            Ok(Parsed::Ignored(_))
        ));
        assert!(matches!(
            parse_with("application/json", &data_with("DELETE", Some(&digest), None)),
            Ok(Parsed::Ignored(_))
        ));
        assert!(matches!(
            parse_with("application/json", &data_with("INSERT", Some(&digest), None)),
            Ok(Parsed::Ignored(_))
        ));
        let own = format!("us-east1-docker.pkg.dev/p/r/i:sha256-{}.sig", "e".repeat(64));
        assert!(matches!(
            parse_with("application/json", &data_with("INSERT", None, Some(&own))),
            Ok(Parsed::Ignored(_))
        ));
    }

    #[test]
    fn other_actions_are_unknown() {
        let tag = "us-east1-docker.pkg.dev/my-project/my-repo/hello-world:1.1";
        assert!(matches!(
            parse_with("application/json", &data_with("UPDATE", None, Some(tag))),
            Ok(Parsed::Unknown(_))
        ));
    }

    #[test]
    fn malformed_messages() {
        let bodies = [
            data_with("INSERT", None, Some("hello-world:1.1")),
            data_with(
                "INSERT",
                None,
                Some("us-east1-docker.pkg.dev/my-project/my-repo/hello-world"),
            ),
            data_with("INSERT", None, Some("us-east1-docker.pkg.dev/My-Project/repo/img:1")),
            data_with("INSERT", None, Some("us-east1-docker.pkg.dev/p/r/img:bad tag")),
            data_with("INSERT", None, Some("bad_host!/p/r/img:1")),
            envelope(br#"{"digest":"x"}"#),
            envelope(br#"{"action":5}"#),
            envelope(b"[1,2]"),
            envelope(b"not json"),
            br#"{"message":{"messageId":"1"}}"#.to_vec(),
            br#"{"message":{"data":"%%%","messageId":"1"}}"#.to_vec(),
            br#"{"message":"x"}"#.to_vec(),
            br#"{"subscription":"s"}"#.to_vec(),
            b"[]".to_vec(),
            b"{".to_vec(),
        ];
        for body in bodies {
            assert!(
                matches!(parse_with("application/json", &body), Err(Refusal::Malformed(_))),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn wrong_content_type() {
        let body = envelope(&fixture(DATA_FIXTURE));
        assert_refuses_content_types(parse, &["application/x-www-form-urlencoded"], &body);
    }

    #[test]
    fn verification_is_the_url_token() {
        let map = headers(&[("content-type", "application/json")]);
        let body = envelope(&fixture(DATA_FIXTURE));
        let credentials = super::super::Credentials {
            secret: b"gar-token",
            header: None,
        };
        let with = |path_token, query_token| Inbound {
            headers: &map,
            body: &body,
            path_token,
            query_token,
        };
        let verify =
            |inbound: &Inbound<'_>| super::super::verify(super::super::WebhookKind::Gar, inbound, &credentials);
        assert_eq!(verify(&with(Some("gar-token"), None)), Ok(()));
        assert_eq!(verify(&with(None, Some("gar-token"))), Ok(()));
        assert!(verify(&with(Some("nope"), None)).is_err());
        assert!(verify(&with(None, None)).is_err());
    }

    const KEYS: &[&str] = &[
        "message",
        "data",
        "messageId",
        "message_id",
        "attributes",
        "subscription",
        "action",
        "tag",
        "digest",
        "INSERT",
        "DELETE",
        "us-east1-docker.pkg.dev/p/r/i:1",
    ];

    fn notification() -> impl Strategy<Value = Value> {
        let reference = "[a-z0-9.:/@_-]{0,40}";
        (
            prop_oneof![Just("INSERT".to_string()), Just("DELETE".to_string()), "[A-Z]{0,8}"],
            prop::option::of(reference),
            prop::option::of(reference),
        )
            .prop_map(|(action, digest, tag)| serde_json::json!({"action": action, "digest": digest, "tag": tag}))
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body()) {
            let _ = parse_with("application/json", &body);
            let _ = parse_with("application/json", &envelope(&body));
            let map = headers(&[("content-type", "application/json")]);
            let _ = super::super::verify(
                super::super::WebhookKind::Gar,
                &Inbound { headers: &map, body: &body, path_token: std::str::from_utf8(&body).ok(), query_token: None },
                &super::super::Credentials { secret: b"gar-token", header: None },
            );
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[])) {
            let body = serde_json::to_vec(&value).unwrap();
            let _ = parse_with("application/json", &body);
            let _ = parse_with("application/json", &envelope(&body));
        }

        #[test]
        fn arbitrary_notifications_never_panic(value in notification()) {
            let _ = parse_with("application/json", &envelope(&serde_json::to_vec(&value).unwrap()));
        }

        #[test]
        fn fixture_parses_identically_twice(_run in 0..4u8) {
            let body = envelope(&fixture(DATA_FIXTURE));
            prop_assert_eq!(parse_with("application/json", &body), parse_with("application/json", &body));
        }
    }
}
