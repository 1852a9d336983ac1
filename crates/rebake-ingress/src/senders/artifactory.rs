//! JFrog Artifactory webhooks (predefined webhooks, Docker domain).
//!
//! - **Verification**: `X-JFrog-Event-Auth`. By default Artifactory sends the webhook's secret
//!   token there verbatim, which is compared with the source's secret in constant time. With
//!   "Use secret for payload signing" the header instead carries the hex HMAC-SHA256 of the raw
//!   body under that secret; that form is accepted too (also compared in constant time). Either
//!   way the sender must know the secret.
//! - **Headers**: `Content-Type: application/json`; anything else is refused (415). Artifactory
//!   sends no delivery id.
//! - **Payload**: `{"domain": "docker", "event_type": "pushed", "data": {"repo_key", "path",
//!   "name", "sha256", "size", "image_name", "tag", "platforms"}, "subscription_key",
//!   "jpd_origin", "source"}`. `data.path` is `<image_name>/<tag>/<manifest file>` inside the
//!   Docker repository `repo_key`; `data.sha256` is the hex SHA-256 of that manifest file, that
//!   is the manifest digest (`sha256:<hex>`).
//! - **Repository**: `<repo_key>/<image_name>`. Artifactory serves a Docker repository either
//!   under its own host name (subdomain or port method) or, with the repository-path method,
//!   as `<host>/<repo_key>/<image>`; Rebake addresses Artifactory with the repository-path
//!   method, so that is the image's path on the configured registry. The `registry` is left
//!   empty (the configured one is used); `jpd_origin` is not read.
//! - When `data.image_name` is missing, the image is the folder of `data.path` above
//!   `<tag>/<manifest file>`.
//!
//! Docker `deleted` and `promoted` events, and every event of the other known domains
//! (artifact, artifact property, build, release bundle, distribution, destination), are ignored
//! (200); any other domain or Docker event is unknown (202, logged). A `pushed` tag that is
//! Artifactory's folder for a manifest pushed by digest (`sha256__<hex>`) or one of Rebake's own
//! signature, attestation or SBOM tags moves nothing.

use serde::Deserialize;

use super::common::{require_content_type, shown};
use super::{
    Change, Credentials, Inbound, Parsed, Refusal, RegistryChange, hmac_sha256_matches, is_own_artifact_tag, json,
    secret_eq, valid_digest, valid_repository, valid_tag,
};

/// The content types Artifactory sends.
const ACCEPTED_CONTENT_TYPES: [&str; 1] = ["application/json"];

/// Domains Artifactory sends events for that say nothing about image tags.
const IGNORED_DOMAINS: [&str; 7] = [
    "artifact",
    "artifact_property",
    "build",
    "release_bundle",
    "release_bundle_v2",
    "distribution",
    "destination",
];

/// The `data` of a Docker `pushed` event, with only the fields read.
#[derive(Debug, Deserialize)]
struct DockerData {
    repo_key: Option<String>,
    image_name: Option<String>,
    tag: Option<String>,
    sha256: Option<String>,
    path: Option<String>,
}

/// Checks `X-JFrog-Event-Auth`: the secret token itself, or the hex HMAC-SHA256 of the body
/// under it (payload signing).
pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    let Some(presented) = inbound.header("x-jfrog-event-auth") else {
        return Err(Refusal::Unauthorized("missing X-JFrog-Event-Auth header"));
    };
    let token = secret_eq(presented.as_bytes(), credentials.secret);
    let signature = hmac_sha256_matches(credentials.secret, inbound.body, presented);
    if token || signature {
        Ok(())
    } else {
        Err(Refusal::Unauthorized("invalid X-JFrog-Event-Auth header"))
    }
}

/// Reads a (verified) Artifactory webhook.
pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    require_content_type(inbound, &ACCEPTED_CONTENT_TYPES, "")?;
    let document: serde_json::Value = json(inbound.body, "Artifactory webhook")?;
    let domain = string_field(&document, "domain")?;
    let event_type = string_field(&document, "event_type")?;
    match (domain, event_type) {
        ("docker", "pushed") => {}
        ("docker", "deleted" | "promoted") => {
            return Ok(Parsed::Ignored(format!("Artifactory docker {event_type} event")));
        }
        ("docker", other) => {
            return Ok(Parsed::Unknown(format!(
                "Artifactory docker event {} is not read",
                shown(other)
            )));
        }
        (domain, _) if IGNORED_DOMAINS.contains(&domain) => {
            return Ok(Parsed::Ignored(format!("Artifactory {domain} event")));
        }
        (other, _) => {
            return Ok(Parsed::Unknown(format!(
                "Artifactory domain {} is not read",
                shown(other)
            )));
        }
    }
    let Some(data) = document.get("data") else {
        return Err(Refusal::Malformed(
            "Artifactory docker pushed event has no data".to_string(),
        ));
    };
    let data = DockerData::deserialize(data)
        .map_err(|error| Refusal::Malformed(format!("invalid Artifactory docker pushed data: {error}")))?;
    let Some(tag) = data.tag.filter(|tag| !tag.is_empty()) else {
        return Err(Refusal::Malformed(
            "Artifactory docker pushed event has no tag".to_string(),
        ));
    };
    if tag.starts_with("sha256__") {
        return Ok(Parsed::Ignored("manifest pushed by digest".to_string()));
    }
    if is_own_artifact_tag(&tag) {
        return Ok(Parsed::Ignored("signature, attestation or sbom tag".to_string()));
    }
    if !valid_tag(&tag) {
        return Err(Refusal::Malformed(format!("invalid tag {}", shown(&tag))));
    }
    let Some(repo_key) = data.repo_key.filter(|repo_key| !repo_key.is_empty()) else {
        return Err(Refusal::Malformed(
            "Artifactory docker pushed event has no repo_key".to_string(),
        ));
    };
    let image_name = match data.image_name.filter(|image_name| !image_name.is_empty()) {
        Some(image_name) => image_name,
        None => image_of_path(data.path.as_deref(), &tag)
            .ok_or_else(|| Refusal::Malformed("Artifactory docker pushed event has no image_name".to_string()))?,
    };
    let repository = format!("{repo_key}/{image_name}");
    if !valid_repository(&repository) {
        return Err(Refusal::Malformed(format!("invalid repository {}", shown(&repository))));
    }
    let digest = data
        .sha256
        .as_deref()
        .and_then(|hex| valid_digest(&format!("sha256:{hex}")));
    Ok(Parsed::Changes {
        delivery_id: None,
        changes: vec![Change::Registry(RegistryChange {
            registry: String::new(),
            repository,
            tag,
            digest,
            media_type: None,
        })],
    })
}

/// A top-level string field of the webhook, required.
fn string_field<'a>(document: &'a serde_json::Value, name: &str) -> Result<&'a str, Refusal> {
    match document.get(name) {
        Some(serde_json::Value::String(value)) => Ok(value.as_str()),
        Some(_) => Err(Refusal::Malformed(format!(
            "Artifactory webhook {name} is not a string"
        ))),
        None => Err(Refusal::Malformed(format!("Artifactory webhook has no {name}"))),
    }
}

/// The image folder of `<image>/<tag>/<manifest file>`, when the path has that shape.
fn image_of_path(path: Option<&str>, tag: &str) -> Option<String> {
    let (folder, _manifest) = path?.rsplit_once('/')?;
    let image = folder.strip_suffix(tag)?.strip_suffix('/')?;
    (!image.is_empty()).then(|| image.to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::hmac_sha256_hex;
    use super::super::test_support::{
        NOT_JSON, any_body, assert_parses_identically, assert_refuses_content_types, fixture, headers, inbound,
        json_value,
    };
    use super::*;

    const FIXTURE: &str = "artifactory/artifactory-docker-pushed.json";
    const SECRET: &[u8] = b"jfrog-secret-token";

    fn parse_body(body: &[u8]) -> Result<Parsed, Refusal> {
        let headers = headers(&[("content-type", "application/json")]);
        parse(&inbound(&headers, body))
    }

    fn parse_json(value: &serde_json::Value) -> Result<Parsed, Refusal> {
        parse_body(&serde_json::to_vec(value).unwrap())
    }

    fn verify_with(auth: Option<&str>, body: &[u8], secret: &[u8]) -> Result<(), Refusal> {
        let mut pairs = vec![("content-type", "application/json")];
        if let Some(auth) = auth {
            pairs.push(("x-jfrog-event-auth", auth));
        }
        let headers = headers(&pairs);
        verify(&inbound(&headers, body), &Credentials { secret, header: None })
    }

    fn documented() -> serde_json::Value {
        serde_json::from_slice(&fixture(FIXTURE)).unwrap()
    }

    fn only_change(parsed: Result<Parsed, Refusal>) -> RegistryChange {
        match parsed {
            Ok(Parsed::Changes { changes, .. }) if changes.len() == 1 => match changes.into_iter().next() {
                Some(Change::Registry(change)) => change,
                other => panic!("expected a registry change, got {other:?}"),
            },
            other => panic!("expected one change, got {other:?}"),
        }
    }

    #[test]
    fn documented_push_gives_one_change() {
        assert_eq!(
            parse_body(&fixture(FIXTURE)),
            Ok(Parsed::Changes {
                delivery_id: None,
                changes: vec![Change::Registry(RegistryChange {
                    registry: String::new(),
                    repository: "docker-remote-cache/library/ubuntu".to_string(),
                    tag: "latest".to_string(),
                    digest: Some("sha256:35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce".to_string()),
                    media_type: None,
                })],
            })
        );
    }

    #[test]
    fn digest_is_dropped_when_invalid() {
        for sha256 in [
            serde_json::json!("sample_checksum"),
            serde_json::json!(null),
            serde_json::json!("ABC"),
        ] {
            let mut document = documented();
            document["data"]["sha256"] = sha256;
            assert_eq!(only_change(parse_json(&document)).digest, None);
        }
        let mut document = documented();
        document["data"]["sha256"] =
            serde_json::json!("35C4A2C15539C6C1E4E5FA4E554DAC323AD0107D8EB5C582D6FF386B383B7DCE");
        assert_eq!(
            only_change(parse_json(&document)).digest.as_deref(),
            Some("sha256:35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce")
        );
    }

    #[test]
    fn image_name_falls_back_to_path() {
        let mut document = documented();
        document["data"].as_object_mut().unwrap().remove("image_name");
        assert_eq!(
            only_change(parse_json(&document)).repository,
            "docker-remote-cache/library/ubuntu"
        );
        document["data"]["path"] = serde_json::json!("latest/manifest.json");
        assert!(matches!(parse_json(&document), Err(Refusal::Malformed(_))));
        assert_eq!(
            image_of_path(Some("a/b/v1/manifest.json"), "v1").as_deref(),
            Some("a/b")
        );
        assert_eq!(image_of_path(Some("a/b/v2/manifest.json"), "v1"), None);
        assert_eq!(image_of_path(Some("xv1/manifest.json"), "v1"), None);
        assert_eq!(image_of_path(None, "v1"), None);
    }

    #[test]
    fn pushes_by_digest_and_own_tags_are_ignored() {
        for tag in [
            format!("sha256__{}", "f".repeat(64)),
            format!("sha256-{}.sig", "f".repeat(64)),
        ] {
            let mut document = documented();
            document["data"]["tag"] = serde_json::json!(tag);
            assert!(matches!(parse_json(&document), Ok(Parsed::Ignored(_))), "{tag}");
        }
    }

    #[test]
    fn other_events_are_ignored_or_unknown() {
        let event = |domain: &str, event_type: &str| serde_json::json!({ "domain": domain, "event_type": event_type, "data": { "repo_key": "sample_repo" } });
        for (domain, event_type) in [
            ("docker", "deleted"),
            ("docker", "promoted"),
            ("artifact", "deployed"),
            ("build", "uploaded"),
            ("artifact_property", "added"),
        ] {
            assert!(
                matches!(parse_json(&event(domain, event_type)), Ok(Parsed::Ignored(_))),
                "{domain} {event_type}"
            );
        }
        for (domain, event_type) in [("docker", "retagged"), ("xray", "violation"), ("Docker", "pushed")] {
            assert!(
                matches!(parse_json(&event(domain, event_type)), Ok(Parsed::Unknown(_))),
                "{domain} {event_type}"
            );
        }
    }

    #[test]
    fn malformed_pushes_are_refused() {
        let edits: [fn(&mut serde_json::Value); 10] = [
            |d| {
                d.as_object_mut().unwrap().remove("domain");
            },
            |d| d["event_type"] = serde_json::json!(3),
            |d| {
                d.as_object_mut().unwrap().remove("data");
            },
            |d| d["data"] = serde_json::json!("nope"),
            |d| {
                d["data"].as_object_mut().unwrap().remove("tag");
            },
            |d| d["data"]["tag"] = serde_json::json!(""),
            |d| d["data"]["tag"] = serde_json::json!("bad:tag"),
            |d| {
                d["data"].as_object_mut().unwrap().remove("repo_key");
            },
            |d| d["data"]["repo_key"] = serde_json::json!("Docker-Local"),
            |d| d["data"]["image_name"] = serde_json::json!("library//ubuntu"),
        ];
        for edit in edits {
            let mut document = documented();
            edit(&mut document);
            assert!(
                matches!(parse_json(&document), Err(Refusal::Malformed(_))),
                "{document}"
            );
        }
        assert!(matches!(
            parse_body(b"{\"domain\": \"docker\""),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(parse_body(b"[]"), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn only_json_is_accepted() {
        assert_refuses_content_types(parse, &NOT_JSON, &fixture(FIXTURE));
    }

    #[test]
    fn token_verification() {
        let body = fixture(FIXTURE);
        assert_eq!(verify_with(Some("jfrog-secret-token"), &body, SECRET), Ok(()));
        assert!(matches!(
            verify_with(Some("jfrog-secret-tokem"), &body, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(Some("jfrog-secret"), &body, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(None, &body, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(Some(""), &body, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(Some("anything"), &body, b""),
            Err(Refusal::Unauthorized(_))
        ));
    }

    #[test]
    fn signed_payload_verification() {
        let body = fixture(FIXTURE);
        let signature = hmac_sha256_hex(SECRET, &body);
        let bare = signature.trim_start_matches("sha256=");
        assert_eq!(verify_with(Some(bare), &body, SECRET), Ok(()));
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        assert!(matches!(
            verify_with(Some(bare), &tampered, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(Some(bare), &body, b"other-secret"),
            Err(Refusal::Unauthorized(_))
        ));
    }

    #[test]
    fn fixture_parses_identically_twice() {
        assert_parses_identically(parse_body, &fixture(FIXTURE));
    }

    /// Keys and values this parser looks for.
    const KEYS: &[&str] = &[
        "docker",
        "pushed",
        "deleted",
        "latest",
        "",
        "library/ubuntu",
        "a/latest/m.json",
        "sha256__x",
        "domain",
        "event_type",
        "data",
        "repo_key",
        "image_name",
        "tag",
        "sha256",
        "path",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body(), header in "[ -~]{0,70}") {
            let pairs = [("content-type", header.as_str()), ("x-jfrog-event-auth", header.as_str())];
            let headers = headers(&pairs);
            let request = inbound(&headers, &body);
            let _ = verify(&request, &Credentials { secret: SECRET, header: None });
            let _ = parse(&request);
            let _ = parse_body(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[]), data in json_value(KEYS, &[])) {
            let _ = parse_json(&value);
            let _ = parse_json(&serde_json::json!({ "domain": "docker", "event_type": "pushed", "data": data }));
        }

        #[test]
        fn valid_pushes_round_trip(repo_key in "[a-z0-9]{1,8}(-[a-z0-9]{1,5})?", image in "[a-z0-9]{1,8}(/[a-z0-9]{1,8})?", tag in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", hex in "[0-9a-f]{64}") {
            prop_assume!(!tag.starts_with("sha256__"));
            let document = serde_json::json!({
                "domain": "docker",
                "event_type": "pushed",
                "data": { "repo_key": repo_key, "image_name": image, "tag": tag, "sha256": hex, "path": format!("{image}/{tag}/manifest.json") },
            });
            let change = only_change(parse_json(&document));
            prop_assert_eq!(change, RegistryChange {
                registry: String::new(),
                repository: format!("{repo_key}/{image}"),
                tag,
                digest: Some(format!("sha256:{hex}")),
                media_type: None,
            });
        }
    }
}
