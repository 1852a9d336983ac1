//! Amazon ECR, through an EventBridge rule whose target is an API destination.
//!
//! ECR has no webhooks of its own: it emits events to EventBridge, and a rule matching
//! `{"source": ["aws.ecr"], "detail-type": ["ECR Image Action"]}` forwards them to an API
//! destination pointing here. (SNS HTTPS subscriptions, which wrap the event in a signed SNS
//! envelope, are not supported.)
//!
//! # Verification
//!
//! The API destination's connection uses API-key authorisation: it sends the configured header
//! (`header:`, default `X-Api-Key`) with the key as its value, which must equal the secret (the
//! whole value, compared in constant time). EventBridge does not sign the body.
//!
//! # Format
//!
//! `Content-Type: application/json` (EventBridge sends `; charset=utf-8`); the body is the
//! EventBridge event itself: `{"version", "id", "detail-type": "ECR Image Action",
//! "source": "aws.ecr", "account", "region", "time", "resources", "detail": {"result":
//! "SUCCESS"|"FAILURE", "action-type": "PUSH"|"DELETE", "repository-name", "image-tag",
//! "image-digest", "manifest-media-type"?}}`.
//!
//! A successful push of a tag is a change: the registry is named
//! `<account>.dkr.ecr.<region>.amazonaws.com` (`.amazonaws.com.cn` for China regions) when
//! `account` is 12 digits and `region` is `[a-z0-9-]+`, else left empty; it is only a name,
//! never contacted because an event said so. ECR's documented sample carries a 60-hex
//! "digest": an invalid digest is dropped (the tag is then resolved through the configured
//! registry), not refused. Deletes, failed actions, pushes without a tag and Rebake's own
//! artifact tags are ignored; other ECR event types (`ECR Image Scan`, `ECR Replication
//! Action`, …) are unknown.
//!
//! Delivery id: the EventBridge event `id`.

use serde_json::{Map, Value};

use super::common::{Outcome, event_id, media_type_in, string_field, tag_change, verify_header_secret};
use super::{Credentials, Inbound, Parsed, Refusal, json, valid_digest};

const JSON: &str = "application/json";

/// Header carrying the API key unless the source configures another.
const DEFAULT_HEADER: &str = "X-Api-Key";

/// The EventBridge `detail-type` of image pushes and deletes.
const IMAGE_ACTION: &str = "ECR Image Action";

/// The EventBridge `source` of ECR's events.
const ECR_SOURCE: &str = "aws.ecr";

pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    verify_header_secret(inbound, credentials, DEFAULT_HEADER)
}

pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    media_type_in(inbound, &[JSON], JSON)?;
    let document: Value = json(inbound.body, "eventbridge event")?;
    let Some(event) = document.as_object() else {
        return Err(Refusal::Malformed(
            "eventbridge event must be a JSON object".to_string(),
        ));
    };
    let delivery_id = event_id(event);
    classify(event).into_parsed(delivery_id)
}

fn classify(event: &Map<String, Value>) -> Outcome {
    let detail_type = match string_field(event, "detail-type") {
        Ok(Some(detail_type)) => detail_type,
        Ok(None) => return Outcome::Malformed("eventbridge event has no detail-type".to_string()),
        Err(reason) => return Outcome::Malformed(reason),
    };
    let source = match string_field(event, "source") {
        Ok(source) => source.unwrap_or_default(),
        Err(reason) => return Outcome::Malformed(reason),
    };
    if source != ECR_SOURCE {
        return Outcome::Unknown(format!("eventbridge event from source {source:?} is not from ecr"));
    }
    if detail_type != IMAGE_ACTION {
        return Outcome::Unknown(format!("ecr event {detail_type:?} is not one Rebake reads"));
    }
    let Some(detail) = event.get("detail").and_then(Value::as_object) else {
        return Outcome::Malformed("ECR Image Action has no detail object".to_string());
    };
    match image_action(event, detail) {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::Malformed(format!("ECR Image Action: {reason}")),
    }
}

fn image_action(event: &Map<String, Value>, detail: &Map<String, Value>) -> Result<Outcome, String> {
    let result = string_field(detail, "result")?.ok_or("detail has no result")?;
    let action_type = string_field(detail, "action-type")?.ok_or("detail has no action-type")?;
    if result != "SUCCESS" {
        return Ok(Outcome::Ignored(format!("ecr {action_type} with result {result}")));
    }
    match action_type {
        "PUSH" => {}
        "DELETE" => return Ok(Outcome::Ignored("ecr image delete".to_string())),
        other => {
            return Ok(Outcome::Unknown(format!(
                "ecr action-type {other:?} is not one Rebake reads"
            )));
        }
    }
    let repository = string_field(detail, "repository-name")?.unwrap_or_default();
    let tag = string_field(detail, "image-tag")?.unwrap_or_default();
    let digest = string_field(detail, "image-digest")?.and_then(valid_digest);
    let media_type = string_field(detail, "manifest-media-type")?;
    let account = string_field(event, "account")?.unwrap_or_default();
    let region = string_field(event, "region")?.unwrap_or_default();
    let registry = registry_host(account, region);
    Ok(tag_change(&registry, repository, tag, digest, media_type))
}

/// `<account>.dkr.ecr.<region>.amazonaws.com[.cn]`, or empty when either part is not what AWS
/// uses (12-digit account, `[a-z0-9-]+` region).
fn registry_host(account: &str, region: &str) -> String {
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let region_ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !account_ok || !region_ok {
        return String::new();
    }
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{domain}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::test_support::{
        self, any_body, assert_refuses_content_types, fixture, headers, inbound, json_value,
    };
    use super::super::{Change, RegistryChange};
    use super::*;

    const SECRET_TEXT: &str = "ecr-api-key";
    const SECRET: &[u8] = SECRET_TEXT.as_bytes();
    const FIXTURE: &str = "ecr/ecr-eventbridge-image-action-push.json";
    const CONTENT_TYPE: &str = "application/json; charset=utf-8";

    fn credentials(header: Option<&'static str>) -> Credentials<'static> {
        Credentials {
            header,
            ..test_support::credentials(SECRET)
        }
    }

    fn parse_with(content_type: &str, body: &[u8]) -> Result<Parsed, Refusal> {
        test_support::parse_with(parse, content_type, body)
    }

    fn push_event() -> Value {
        serde_json::from_slice(&fixture(FIXTURE)).unwrap()
    }

    fn parse_value(event: &Value) -> Result<Parsed, Refusal> {
        parse_with(CONTENT_TYPE, event.to_string().as_bytes())
    }

    #[test]
    fn fixture_parses_to_exact_change_without_its_invalid_digest() {
        assert_eq!(
            parse_with(CONTENT_TYPE, &fixture(FIXTURE)).unwrap(),
            Parsed::Changes {
                delivery_id: Some("13cde686-328b-6117-af20-0e5566167482".into()),
                changes: vec![Change::Registry(RegistryChange {
                    registry: "123456789012.dkr.ecr.us-west-2.amazonaws.com".into(),
                    repository: "my-repository-name".into(),
                    tag: "latest".into(),
                    // the documented sample's digest has 60 hex characters
                    digest: None,
                    media_type: None,
                })],
            }
        );
    }

    #[test]
    fn valid_digest_and_media_type_are_kept() {
        let digest = format!("sha256:{}", "C".repeat(64));
        let mut event = push_event();
        event["detail"]["image-digest"] = Value::from(digest);
        event["detail"]["manifest-media-type"] = Value::from("application/vnd.oci.image.manifest.v1+json");
        let parsed = parse_value(&event).unwrap();
        let Parsed::Changes { changes, .. } = parsed else {
            panic!("expected changes");
        };
        assert_eq!(
            changes,
            vec![Change::Registry(RegistryChange {
                registry: "123456789012.dkr.ecr.us-west-2.amazonaws.com".into(),
                repository: "my-repository-name".into(),
                tag: "latest".into(),
                digest: Some(format!("sha256:{}", "c".repeat(64))),
                media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            })]
        );
    }

    #[test]
    fn registry_host_only_from_plausible_account_and_region() {
        assert_eq!(
            registry_host("123456789012", "eu-central-1"),
            "123456789012.dkr.ecr.eu-central-1.amazonaws.com"
        );
        assert_eq!(
            registry_host("123456789012", "cn-north-1"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
        for (account, region) in [
            ("{{123456789012}}", "us-west-2"),
            ("12345678901", "us-west-2"),
            ("1234567890123", "us-west-2"),
            ("123456789012", "US-WEST-2"),
            ("123456789012", "evil.example/x"),
            ("123456789012", ""),
        ] {
            assert_eq!(registry_host(account, region), "", "{account} {region}");
        }
        let mut event = push_event();
        event["account"] = Value::from("not-an-account");
        let parsed = parse_value(&event).unwrap();
        assert!(matches!(&parsed, Parsed::Changes { changes, .. }
            if matches!(changes.as_slice(), [Change::Registry(change)] if change.registry.is_empty())));
    }

    #[test]
    fn deletes_failures_and_untagged_pushes_are_ignored() {
        let mut delete = push_event();
        delete["detail"]["action-type"] = Value::from("DELETE");
        assert!(matches!(parse_value(&delete), Ok(Parsed::Ignored(_))));
        let mut failure = push_event();
        failure["detail"]["result"] = Value::from("FAILURE");
        assert!(matches!(parse_value(&failure), Ok(Parsed::Ignored(_))));
        let mut by_digest = push_event();
        by_digest["detail"].as_object_mut().unwrap().remove("image-tag");
        assert!(matches!(parse_value(&by_digest), Ok(Parsed::Ignored(_))));
        let mut own = push_event();
        own["detail"]["image-tag"] = Value::from(format!("sha256-{}.sig", "d".repeat(64)));
        assert!(matches!(parse_value(&own), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn other_detail_types_are_unknown() {
        let mut scan = push_event();
        scan["detail-type"] = Value::from("ECR Image Scan");
        assert!(matches!(parse_value(&scan), Ok(Parsed::Unknown(_))));
        let mut other_source = push_event();
        other_source["source"] = Value::from("com.example.fake");
        assert!(matches!(parse_value(&other_source), Ok(Parsed::Unknown(_))));
        let mut other_action = push_event();
        other_action["detail"]["action-type"] = Value::from("REPLICATE");
        assert!(matches!(parse_value(&other_action), Ok(Parsed::Unknown(_))));
    }

    #[test]
    fn malformed_events() {
        let mutations: [fn(&mut Value); 7] = [
            |event| drop(event.as_object_mut().unwrap().remove("detail-type")),
            |event| drop(event.as_object_mut().unwrap().remove("detail")),
            |event| drop(event["detail"].as_object_mut().unwrap().remove("result")),
            |event| drop(event["detail"].as_object_mut().unwrap().remove("action-type")),
            |event| event["detail"]["repository-name"] = Value::from("My/Repo"),
            |event| event["detail"]["image-tag"] = Value::from("bad tag"),
            |event| event["detail"]["image-tag"] = Value::from(true),
        ];
        for mutate in mutations {
            let mut event = push_event();
            mutate(&mut event);
            assert!(matches!(parse_value(&event), Err(Refusal::Malformed(_))), "{event}");
        }
        assert!(matches!(
            parse_with(CONTENT_TYPE, b"{\"id\":"),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(parse_with(CONTENT_TYPE, b"[]"), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn wrong_content_type() {
        assert_refuses_content_types(parse, &["text/plain; charset=utf-8"], &fixture(FIXTURE));
    }

    #[test]
    fn verify_api_key_header() {
        let good = headers(&[("x-api-key", SECRET_TEXT)]);
        assert_eq!(verify(&inbound(&good, b"{}"), &credentials(None)), Ok(()));
        let wrong = headers(&[("x-api-key", "ecr-api-kez")]);
        assert_eq!(
            verify(&inbound(&wrong, b"{}"), &credentials(None)),
            Err(Refusal::Unauthorized("invalid secret header"))
        );
        let missing = headers(&[("authorization", SECRET_TEXT)]);
        assert_eq!(
            verify(&inbound(&missing, b"{}"), &credentials(None)),
            Err(Refusal::Unauthorized("missing secret header"))
        );
        let custom = headers(&[("x-rebake-key", SECRET_TEXT)]);
        assert_eq!(
            verify(&inbound(&custom, b"{}"), &credentials(Some("X-Rebake-Key"))),
            Ok(())
        );
        assert!(verify(&inbound(&good, b"{}"), &credentials(Some("X-Rebake-Key"))).is_err());
    }

    const KEYS: &[&str] = &[
        "id",
        "detail-type",
        "source",
        "account",
        "region",
        "detail",
        "result",
        "action-type",
        "repository-name",
        "image-tag",
        "image-digest",
        "manifest-media-type",
        IMAGE_ACTION,
        ECR_SOURCE,
        "SUCCESS",
        "PUSH",
        "DELETE",
        "123456789012",
        "us-west-2",
        "latest",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body(), key in "[ -~]{0,40}") {
            let map = headers(&[("content-type", CONTENT_TYPE), ("x-api-key", key.as_str())]);
            let request = inbound(&map, &body);
            let _ = verify(&request, &credentials(None));
            let _ = parse(&request);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[])) {
            let _ = parse_value(&value);
        }

        #[test]
        fn fixture_parses_identically_twice(_run in 0..4u8) {
            let body = fixture(FIXTURE);
            prop_assert_eq!(parse_with(CONTENT_TYPE, &body), parse_with(CONTENT_TYPE, &body));
        }
    }
}
