//! Azure Container Registry: classic registry webhooks and Event Grid deliveries.
//!
//! # Verification
//!
//! ACR does not sign anything. A webhook (`az acr webhook create --headers …`) or an Event Grid
//! subscription (delivery properties) is configured to send a header holding the secret: the
//! configured header (`header:`, default `Authorization`) must equal the secret, the whole value
//! compared in constant time (no `Bearer ` prefix is stripped: configure the header value to be
//! exactly the secret).
//!
//! # Formats
//!
//! - **classic webhook** (`Content-Type: application/json`): the body is *one* event object, not
//!   a distribution `events` envelope: `{"id", "timestamp", "action", "target": {"mediaType",
//!   "digest", "repository", "tag", …}, "request": {"host", …}}`. `action` is `push`,
//!   `delete`, `quarantine`, `chart_push`, `chart_delete`, or `ping` (`az acr webhook ping`).
//! - **Event Grid, CloudEvents 1.0 schema**: structured mode, `application/cloudevents+json`
//!   (one event) or `application/cloudevents-batch+json` (an array); `type` is
//!   `Microsoft.ContainerRegistry.ImagePushed` (or `…ImageDeleted`, `…ChartPushed`,
//!   `…ChartDeleted`) and `data` has the classic webhook's shape (`data.target.*`,
//!   `data.request.host`).
//! - **Event Grid, Event Grid schema** (`application/json`, an array of `{"id", "eventType",
//!   "data", …}`): read the same way. Its subscription-validation handshake
//!   (`Microsoft.EventGrid.SubscriptionValidationEvent`) is acknowledged as ignored: answering
//!   it needs the HTTP layer to echo `validationCode`, so prefer the CloudEvents schema (whose
//!   `OPTIONS` abuse-protection handshake is HTTP-level too and not answered here).
//!
//! Only a push of a manifest *under a tag* moves anything: a push by digest (`tag` empty or
//! absent, as for each per-platform manifest of a multi-platform push), deletes, chart events,
//! quarantine and pings are ignored, and so are Rebake's own artifact tags. An invalid digest is
//! dropped (the tag is then resolved through the configured registry); an invalid tag,
//! repository or registry host is malformed.
//!
//! Delivery id: the event's `id` (for a CloudEvent, its `id` attribute, not `data.id`); a
//! batch of several events gets `batch-<sha256 of the ids>`.

use serde_json::{Map, Value};

use super::cloudevents;
use super::common::{
    Outcome, StructuredEvent, combine, event_id, media_type_in, string_field, structured_event, tag_change,
    verify_header_secret,
};
use super::{Credentials, Inbound, Parsed, Refusal, json, valid_digest};

/// Header carrying the secret unless the source configures another.
const DEFAULT_HEADER: &str = "Authorization";

/// Content types ACR and Event Grid send.
const ACCEPTED_CONTENT_TYPES: [&str; 3] = ["application/json", cloudevents::STRUCTURED, cloudevents::BATCH];

/// Event Grid's subscription validation event (Event Grid schema).
const SUBSCRIPTION_VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

/// Prefix of Container Registry event types on Event Grid.
const EVENT_TYPE_PREFIX: &str = "Microsoft.ContainerRegistry.";

pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    verify_header_secret(inbound, credentials, DEFAULT_HEADER)
}

pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    media_type_in(
        inbound,
        &ACCEPTED_CONTENT_TYPES,
        &format!("one of {}", ACCEPTED_CONTENT_TYPES.join(", ")),
    )?;
    let document: Value = json(inbound.body, "acr event")?;
    match &document {
        Value::Object(_) => combine(vec![event_outcome(&document)]),
        Value::Array(events) => combine(events.iter().map(event_outcome).collect()),
        _ => Err(Refusal::Malformed(
            "acr delivery must be an event object or an array of events".to_string(),
        )),
    }
}

/// One event in any of the three shapes, with its delivery id.
fn event_outcome(event: &Value) -> (Option<String>, Outcome) {
    let Some(object) = event.as_object() else {
        return (None, Outcome::Malformed("acr event is not a JSON object".to_string()));
    };
    if object.contains_key("specversion") {
        return match structured_event(event) {
            Ok(StructuredEvent {
                id, event_type, data, ..
            }) => (Some(id), grid_event(&event_type, data.as_ref())),
            Err(reason) => (None, Outcome::Malformed(reason)),
        };
    }
    let id = event_id(object);
    if let Some(event_type) = object.get("eventType") {
        let Some(event_type) = event_type.as_str() else {
            return (id, Outcome::Malformed("eventType must be a string".to_string()));
        };
        return (id, grid_event(event_type, object.get("data")));
    }
    (id, webhook_event(object))
}

/// An Event Grid event (either schema) by type.
fn grid_event(event_type: &str, data: Option<&Value>) -> Outcome {
    if event_type == SUBSCRIPTION_VALIDATION {
        return Outcome::Ignored(
            "event grid subscription validation handshake (not answered: use the cloudevents schema)".to_string(),
        );
    }
    let short_type = event_type.strip_prefix(EVENT_TYPE_PREFIX).unwrap_or(event_type);
    match short_type {
        "ImagePushed" => match data {
            Some(Value::Object(data)) => push_event(data),
            _ => Outcome::Malformed(format!("{event_type} event has no data object")),
        },
        "ImageDeleted" | "ChartPushed" | "ChartDeleted" => Outcome::Ignored(format!("{event_type} needs no rebuild")),
        _ => Outcome::Unknown(format!("event grid event type {event_type:?} is not one Rebake reads")),
    }
}

/// A classic webhook event by action.
fn webhook_event(event: &Map<String, Value>) -> Outcome {
    let action = match string_field(event, "action") {
        Ok(Some(action)) => action,
        Ok(None) => return Outcome::Malformed("acr event has no action".to_string()),
        Err(reason) => return Outcome::Malformed(reason),
    };
    match action {
        "push" => push_event(event),
        "ping" => Outcome::Ignored("ping".to_string()),
        "delete" | "chart_push" | "chart_delete" | "quarantine" => {
            Outcome::Ignored(format!("acr {action} event needs no rebuild"))
        }
        other => Outcome::Unknown(format!("acr action {other:?} is not one Rebake reads")),
    }
}

/// A push: `target.{repository, tag, digest, mediaType}`, `request.host`.
fn push_event(event: &Map<String, Value>) -> Outcome {
    let Some(target) = event.get("target").and_then(Value::as_object) else {
        return Outcome::Malformed("acr push event has no target".to_string());
    };
    let request = event.get("request").and_then(Value::as_object);
    let fields = (|| {
        let tag = string_field(target, "tag")?.unwrap_or_default();
        let repository = string_field(target, "repository")?.unwrap_or_default();
        let digest = string_field(target, "digest")?.and_then(valid_digest);
        let media_type = string_field(target, "mediaType")?;
        let registry = match request {
            Some(request) => string_field(request, "host")?.unwrap_or_default(),
            None => "",
        };
        Ok::<_, String>((tag, repository, digest, media_type, registry))
    })();
    match fields {
        Ok((tag, repository, digest, media_type, registry)) => {
            tag_change(registry, repository, tag, digest, media_type)
        }
        Err(reason) => Outcome::Malformed(format!("acr push event: {reason}")),
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

    const SECRET_TEXT: &str = "acr-s3cret";
    const SECRET: &[u8] = SECRET_TEXT.as_bytes();

    fn credentials(header: Option<&'static str>) -> Credentials<'static> {
        Credentials {
            header,
            ..test_support::credentials(SECRET)
        }
    }

    fn parse_with(content_type: &str, body: &[u8]) -> Result<Parsed, Refusal> {
        test_support::parse_with(parse, content_type, body)
    }

    fn webhook_push() -> Value {
        serde_json::from_slice(&fixture("acr/acr-webhook-push.json")).unwrap()
    }

    #[test]
    fn webhook_fixture_parses_to_exact_change() {
        let parsed = parse_with("application/json", &fixture("acr/acr-webhook-push.json")).unwrap();
        assert_eq!(
            parsed,
            Parsed::Changes {
                delivery_id: Some("cb8c3971-9adc-488b-bdd8-43cbb4974ff5".into()),
                changes: vec![Change::Registry(RegistryChange {
                    registry: "myregistry.azurecr.io".into(),
                    repository: "hello-world".into(),
                    tag: "v1".into(),
                    digest: Some("sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d".into()),
                    media_type: Some("application/vnd.docker.distribution.manifest.v2+json".into()),
                })],
            }
        );
    }

    fn eventgrid_change() -> Change {
        Change::Registry(RegistryChange {
            registry: "demo.azurecr.io".into(),
            repository: "aci-helloworld".into(),
            tag: "v1".into(),
            digest: Some("sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5".into()),
            media_type: Some("application/vnd.docker.distribution.manifest.v2+json".into()),
        })
    }

    #[test]
    fn eventgrid_cloudevents_fixture_parses_to_exact_change() {
        let body = fixture("cloudevents/acr-eventgrid-image-pushed.json");
        let expected = Parsed::Changes {
            delivery_id: Some("831e1650-001e-001b-66ab-eeb76e069631".into()),
            changes: vec![eventgrid_change()],
        };
        assert_eq!(
            parse_with("application/cloudevents-batch+json; charset=utf-8", &body).unwrap(),
            expected
        );
        // the same event delivered alone, as Event Grid does by default
        let batch: Value = serde_json::from_slice(&body).unwrap();
        let single = serde_json::to_vec(&batch[0]).unwrap();
        assert_eq!(parse_with("application/cloudevents+json", &single).unwrap(), expected);
    }

    #[test]
    fn eventgrid_schema_is_read_too() {
        let batch: Value = serde_json::from_slice(&fixture("cloudevents/acr-eventgrid-image-pushed.json")).unwrap();
        let event = &batch[0];
        let grid = serde_json::json!([{
            "id": event["id"],
            "topic": event["source"],
            "subject": event["subject"],
            "eventType": "Microsoft.ContainerRegistry.ImagePushed",
            "eventTime": event["time"],
            "data": event["data"],
            "dataVersion": "1.0",
            "metadataVersion": "1"
        }]);
        assert_eq!(
            parse_with("application/json", grid.to_string().as_bytes()).unwrap(),
            Parsed::Changes {
                delivery_id: Some("831e1650-001e-001b-66ab-eeb76e069631".into()),
                changes: vec![eventgrid_change()],
            }
        );
    }

    #[test]
    fn eventgrid_validation_handshake_is_ignored() {
        let body = serde_json::json!([{
            "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
            "topic": "/subscriptions/<subscription-id>",
            "subject": "",
            "data": {
                "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                "validationUrl": "https://rp-eastus2.eventgrid.azure.net/eventsubscriptions/sub/validate?id=x&t=y&token=z"
            },
            "eventType": SUBSCRIPTION_VALIDATION,
            "eventTime": "2018-01-25T22:12:19.4556811Z",
            "metadataVersion": "1",
            "dataVersion": "1"
        }]);
        assert!(matches!(
            parse_with("application/json", body.to_string().as_bytes()),
            Ok(Parsed::Ignored(reason)) if reason.contains("validation")
        ));
    }

    #[test]
    fn ignored_actions_and_types() {
        for action in ["ping", "chart_push", "delete", "chart_delete", "quarantine"] {
            let mut event = webhook_push();
            event["action"] = Value::from(action);
            assert!(
                matches!(
                    parse_with("application/json", event.to_string().as_bytes()),
                    Ok(Parsed::Ignored(_))
                ),
                "{action}"
            );
        }
        for event_type in [
            "Microsoft.ContainerRegistry.ImageDeleted",
            "Microsoft.ContainerRegistry.ChartPushed",
            "Microsoft.ContainerRegistry.ChartDeleted",
        ] {
            let body =
                serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": event_type, "data": {}});
            assert!(matches!(
                parse_with("application/cloudevents+json", body.to_string().as_bytes()),
                Ok(Parsed::Ignored(_))
            ));
        }
    }

    #[test]
    fn push_by_digest_and_own_tags_are_ignored() {
        let mut event = webhook_push();
        event["target"]["tag"] = Value::from("");
        assert!(matches!(
            parse_with("application/json", event.to_string().as_bytes()),
            Ok(Parsed::Ignored(_))
        ));
        event["target"].as_object_mut().unwrap().remove("tag");
        assert!(matches!(
            parse_with("application/json", event.to_string().as_bytes()),
            Ok(Parsed::Ignored(_))
        ));
        event["target"]["tag"] = Value::from(format!("sha256-{}.att", "b".repeat(64)));
        assert!(matches!(
            parse_with("application/json", event.to_string().as_bytes()),
            Ok(Parsed::Ignored(_))
        ));
    }

    #[test]
    fn unknown_actions_and_types() {
        let mut event = webhook_push();
        event["action"] = Value::from("import");
        assert!(matches!(
            parse_with("application/json", event.to_string().as_bytes()),
            Ok(Parsed::Unknown(_))
        ));
        let body = serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s",
            "type": "Microsoft.Storage.BlobCreated", "data": {}});
        assert!(matches!(
            parse_with("application/cloudevents+json", body.to_string().as_bytes()),
            Ok(Parsed::Unknown(_))
        ));
    }

    #[test]
    fn invalid_digest_is_dropped_not_refused() {
        let mut event = webhook_push();
        event["target"]["digest"] = Value::from("sha256:1234");
        let parsed = parse_with("application/json", event.to_string().as_bytes()).unwrap();
        assert!(matches!(&parsed, Parsed::Changes { changes, .. }
            if matches!(changes.as_slice(), [Change::Registry(change)] if change.digest.is_none() && change.tag == "v1")));
    }

    #[test]
    fn malformed_events() {
        let mutations: [fn(&mut Value); 8] = [
            |event| event["target"]["tag"] = Value::from("-bad"),
            |event| event["target"]["repository"] = Value::from("Hello-World"),
            |event| drop(event["target"].as_object_mut().unwrap().remove("repository")),
            |event| drop(event.as_object_mut().unwrap().remove("target")),
            |event| drop(event.as_object_mut().unwrap().remove("action")),
            |event| event["action"] = Value::from(3),
            |event| event["target"]["tag"] = Value::from(1),
            |event| event["request"]["host"] = Value::from("evil.example/path"),
        ];
        for mutate in mutations {
            let mut event = webhook_push();
            mutate(&mut event);
            assert!(
                matches!(
                    parse_with("application/json", event.to_string().as_bytes()),
                    Err(Refusal::Malformed(_))
                ),
                "{event}"
            );
        }
        assert!(matches!(
            parse_with("application/json", b"{"),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            parse_with("application/json", b"\"push\""),
            Err(Refusal::Malformed(_))
        ));
        let no_data = serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s",
            "type": "Microsoft.ContainerRegistry.ImagePushed"});
        assert!(matches!(
            parse_with("application/cloudevents+json", no_data.to_string().as_bytes()),
            Err(Refusal::Malformed(_))
        ));
        let no_id = serde_json::json!({"specversion": "1.0", "source": "/s",
            "type": "Microsoft.ContainerRegistry.ImagePushed", "data": {}});
        assert!(matches!(
            parse_with("application/cloudevents+json", no_id.to_string().as_bytes()),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn wrong_content_type() {
        assert_refuses_content_types(parse, &["text/plain"], &fixture("acr/acr-webhook-push.json"));
    }

    #[test]
    fn verify_default_header() {
        let good = headers(&[("authorization", SECRET_TEXT)]);
        assert_eq!(verify(&inbound(&good, b"{}"), &credentials(None)), Ok(()));
        let wrong = headers(&[("authorization", "acr-s3cre7")]);
        assert_eq!(
            verify(&inbound(&wrong, b"{}"), &credentials(None)),
            Err(Refusal::Unauthorized("invalid secret header"))
        );
        // the whole value is compared: a bearer prefix is part of it
        let bearer = format!("Bearer {}", SECRET_TEXT);
        let prefixed = headers(&[("authorization", bearer.as_str())]);
        assert!(verify(&inbound(&prefixed, b"{}"), &credentials(None)).is_err());
        let prefix_of_secret = headers(&[("authorization", "acr-s3c")]);
        assert!(verify(&inbound(&prefix_of_secret, b"{}"), &credentials(None)).is_err());
        let missing = headers(&[("x-other", SECRET_TEXT)]);
        assert_eq!(
            verify(&inbound(&missing, b"{}"), &credentials(None)),
            Err(Refusal::Unauthorized("missing secret header"))
        );
    }

    #[test]
    fn verify_custom_header() {
        let custom = headers(&[("x-acr-token", SECRET_TEXT)]);
        assert_eq!(
            verify(&inbound(&custom, b"{}"), &credentials(Some("X-Acr-Token"))),
            Ok(())
        );
        // the default header no longer counts once another one is configured
        let default = headers(&[("authorization", SECRET_TEXT)]);
        assert!(verify(&inbound(&default, b"{}"), &credentials(Some("X-Acr-Token"))).is_err());
        assert!(verify(&inbound(&custom, b"{}"), &credentials(None)).is_err());
        // a header name that cannot exist is simply missing
        assert!(verify(&inbound(&custom, b"{}"), &credentials(Some("bad header"))).is_err());
    }

    const KEYS: &[&str] = &[
        "id",
        "action",
        "target",
        "request",
        "tag",
        "repository",
        "digest",
        "mediaType",
        "host",
        "push",
        "ping",
        "specversion",
        "source",
        "type",
        "data",
        "eventType",
        "1.0",
        "Microsoft.ContainerRegistry.ImagePushed",
        SUBSCRIPTION_VALIDATION,
        "v1",
        "hello-world",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body(), value in "[ -~]{0,40}") {
            for content_type in ACCEPTED_CONTENT_TYPES {
                let map = headers(&[("content-type", content_type), ("authorization", value.as_str())]);
                let request = inbound(&map, &body);
                let _ = verify(&request, &credentials(None));
                let _ = parse(&request);
            }
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[])) {
            let body = serde_json::to_vec(&value).unwrap();
            for content_type in ACCEPTED_CONTENT_TYPES {
                let _ = parse_with(content_type, &body);
            }
        }

        #[test]
        fn fixtures_parse_identically_twice(case in prop_oneof![
            Just(("acr/acr-webhook-push.json", "application/json")),
            Just(("cloudevents/acr-eventgrid-image-pushed.json", cloudevents::BATCH)),
        ]) {
            let (name, content_type) = case;
            let body = fixture(name);
            prop_assert_eq!(parse_with(content_type, &body), parse_with(content_type, &body));
        }
    }
}
