//! GitHub Packages container webhooks (ghcr.io): the `package` and `registry_package` events.
//!
//! - **Verification**: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body bytes
//!   under the hook's secret, compared in constant time. The legacy SHA-1 `X-Hub-Signature` is
//!   never accepted.
//! - **Headers**: `X-GitHub-Event` names the event, `X-GitHub-Delivery` the delivery (the same
//!   GUID on a redelivery, so it is the delivery id). Only `Content-Type: application/json` is
//!   accepted: a hook set to `application/x-www-form-urlencoded` is refused (415), the hook must
//!   be switched to JSON.
//! - **Events**: `ping` (sent when the hook is created) is ignored (200). `package` and
//!   `registry_package` with `action` `published` or `updated` are read; other actions are
//!   ignored. Every other event is unknown (202, logged): a ghcr source reads only packages.
//! - **Payload**: the package is under `package` (or `registry_package`). Only container
//!   packages count: `package_type` `container`/`docker` or `ecosystem` `docker`/`container`, in
//!   any case. The tag is `package_version.container_metadata.tag.name`; the digest is
//!   `…tag.digest` when it is a valid `sha256:<64 hex>`, else `package_version.version` when that
//!   is one, else none (the shared layer resolves the tag). The repository is
//!   `<namespace, lowercased>/<name>` (`namespace` is the owner's login; the owner object's
//!   `login` stands in when it is missing). The registry is `ghcr.io`, or the host of
//!   `package_version.package_url` (GitHub Enterprise Server): only ever a name, never fetched.
//!   The manifest media type is `…container_metadata.manifest.media_type` when given.
//!
//! A version published without a tag name is a push by digest (a platform manifest of a
//! multi-platform image, an untagged push): ignored. So is a push of one of Rebake's own
//! signature, attestation or SBOM tags.
//!
//! GitHub's own published example (`github-registry_package-published-container.json`) is
//! contradictory: `package_type: npm` with `ecosystem: docker`, an empty tag name and a 40-hex
//! "sha256" digest. It is *tolerated* as `Ignored`, not refused: each oddity already has an
//! answer that is not an error here (`ecosystem: docker` makes it a container package, an
//! invalid digest is only dropped, and an empty tag name is a push by digest), and answering it
//! with a 400 would mark deliveries of that shape as failed on GitHub's side for a payload that
//! simply moves no tag.

use serde::Deserialize;

use super::common::{registry_host, require_content_type, shown};
use super::{
    Change, Credentials, Inbound, Parsed, Refusal, RegistryChange, hmac_sha256_matches, is_own_artifact_tag, json,
    valid_digest, valid_repository, valid_tag,
};

/// The content types accepted (GitHub's JSON delivery format).
const ACCEPTED_CONTENT_TYPES: [&str; 1] = ["application/json"];

/// Ends a 415 reason: what to change in the hook.
const JSON_HINT: &str = " (set the hook's content type to application/json)";

/// Where a payload names no registry: GitHub's container registry.
const DEFAULT_REGISTRY: &str = "ghcr.io";

/// A package event's payload, with only the fields read.
#[derive(Debug, Deserialize)]
struct Package {
    name: Option<String>,
    namespace: Option<String>,
    ecosystem: Option<String>,
    package_type: Option<String>,
    owner: Option<Owner>,
    package_version: Option<PackageVersion>,
}

#[derive(Debug, Deserialize)]
struct Owner {
    login: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PackageVersion {
    version: Option<String>,
    container_metadata: Option<ContainerMetadata>,
    package_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContainerMetadata {
    tag: Option<ContainerTag>,
    /// Only `media_type` is read, and only when it is a string: the rest of the manifest is
    /// left untyped so an unexpected shape there never refuses a delivery.
    manifest: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ContainerTag {
    name: Option<String>,
    digest: Option<String>,
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` against HMAC-SHA256(secret, raw body).
pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    let Some(signature) = inbound.header("x-hub-signature-256") else {
        return Err(Refusal::Unauthorized("missing X-Hub-Signature-256 signature"));
    };
    if !signature.starts_with("sha256=") {
        return Err(Refusal::Unauthorized("malformed X-Hub-Signature-256 signature"));
    }
    if hmac_sha256_matches(credentials.secret, inbound.body, signature) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized("invalid X-Hub-Signature-256 signature"))
    }
}

/// Reads a (verified) GitHub delivery for a ghcr source.
pub(crate) fn parse(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    require_content_type(inbound, &ACCEPTED_CONTENT_TYPES, JSON_HINT)?;
    let Some(event) = inbound.header("x-github-event") else {
        return Err(Refusal::Malformed("missing X-GitHub-Event header".to_string()));
    };
    let root = match event {
        "ping" => return Ok(Parsed::Ignored("GitHub ping".to_string())),
        "package" => "package",
        "registry_package" => "registry_package",
        other => {
            return Ok(Parsed::Unknown(format!(
                "GitHub event {} is not read by a ghcr source",
                shown(other)
            )));
        }
    };
    let delivery_id = inbound.header("x-github-delivery").and_then(delivery_id);
    let document: serde_json::Value = json(inbound.body, "GitHub package event")?;
    let action = match document.get("action") {
        Some(serde_json::Value::String(action)) => action.as_str(),
        Some(_) => return Err(Refusal::Malformed(format!("{root} event action is not a string"))),
        None => return Err(Refusal::Malformed(format!("{root} event has no action"))),
    };
    if !matches!(action, "published" | "updated") {
        return Ok(Parsed::Ignored(format!("{root} {} moves no tag", shown(action))));
    }
    let Some(package) = document.get(root) else {
        return Err(Refusal::Malformed(format!("{root} event has no {root} object")));
    };
    let package =
        Package::deserialize(package).map_err(|error| Refusal::Malformed(format!("invalid {root} object: {error}")))?;
    if !is_container(&package) {
        let kind = package
            .package_type
            .as_deref()
            .or(package.ecosystem.as_deref())
            .unwrap_or("unnamed");
        return Ok(Parsed::Ignored(format!("not a container package ({})", shown(kind))));
    }
    let Some(version) = package.package_version else {
        return Err(Refusal::Malformed(format!(
            "container {root} event has no package_version"
        )));
    };
    let (tag, tag_digest, manifest) = match version.container_metadata {
        Some(metadata) => {
            let (name, digest) = metadata.tag.map(|tag| (tag.name, tag.digest)).unwrap_or_default();
            (name.unwrap_or_default(), digest, metadata.manifest)
        }
        None => (String::new(), None, None),
    };
    if tag.is_empty() {
        return Ok(Parsed::Ignored(
            "container version published without a tag (push by digest)".to_string(),
        ));
    }
    if is_own_artifact_tag(&tag) {
        return Ok(Parsed::Ignored("signature, attestation or sbom tag".to_string()));
    }
    if !valid_tag(&tag) {
        return Err(Refusal::Malformed(format!("invalid tag {}", shown(&tag))));
    }
    let repository = repository_of(package.namespace, package.owner, package.name)?;
    let registry = match version.package_url.as_deref() {
        Some(package_url) => registry_host(package_url, "package_url", DEFAULT_REGISTRY)?,
        None => DEFAULT_REGISTRY.to_string(),
    };
    let digest = tag_digest
        .as_deref()
        .and_then(valid_digest)
        .or_else(|| version.version.as_deref().and_then(valid_digest));
    let media_type = manifest
        .as_ref()
        .and_then(|manifest| manifest.get("media_type"))
        .and_then(serde_json::Value::as_str)
        .filter(|media_type| valid_media_type(media_type))
        .map(str::to_string);
    Ok(Parsed::Changes {
        delivery_id,
        changes: vec![Change::Registry(RegistryChange {
            registry,
            repository,
            tag,
            digest,
            media_type,
        })],
    })
}

/// Whether the package is a container image, by `package_type` or by `ecosystem`.
fn is_container(package: &Package) -> bool {
    let is = |field: &Option<String>, names: &[&str]| {
        field
            .as_deref()
            .is_some_and(|value| names.iter().any(|name| value.eq_ignore_ascii_case(name)))
    };
    is(&package.package_type, &["container", "docker"]) || is(&package.ecosystem, &["docker", "container"])
}

/// `<owner lowercased>/<name>`, the image's path on ghcr.io.
fn repository_of(namespace: Option<String>, owner: Option<Owner>, name: Option<String>) -> Result<String, Refusal> {
    let owner = namespace
        .filter(|namespace| !namespace.is_empty())
        .or_else(|| owner.and_then(|owner| owner.login))
        .unwrap_or_default();
    let name = name.unwrap_or_default();
    if owner.is_empty() || name.is_empty() {
        return Err(Refusal::Malformed(
            "container package names no owner or no name".to_string(),
        ));
    }
    let repository = format!("{}/{name}", owner.to_ascii_lowercase());
    if valid_repository(&repository) {
        Ok(repository)
    } else {
        Err(Refusal::Malformed(format!("invalid repository {}", shown(&repository))))
    }
}

/// `type/subtype` of visible ASCII, short: what a manifest media type looks like.
fn valid_media_type(media_type: &str) -> bool {
    media_type.len() <= 255
        && media_type.bytes().all(|b| b.is_ascii_graphic())
        && media_type
            .split_once('/')
            .is_some_and(|(kind, subtype)| !kind.is_empty() && !subtype.is_empty())
}

/// `X-GitHub-Delivery` usable as a delivery id: a short GUID-like token.
fn delivery_id(id: &str) -> Option<String> {
    (!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::hmac_sha256_hex;
    use super::super::test_support::{any_body, fixture, headers, inbound, json_value};
    use super::*;

    const CONTAINER: &str = "github/github-package-published-container.json";
    const ODD_EXAMPLE: &str = "github/github-registry_package-published-container.json";
    const PING: &str = "github/github-ping-repo-hook.json";
    const PUSH: &str = "github/github-push-branch-normal.json";
    const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    const SECRET: &[u8] = b"ghcr-hook-secret";
    const DIGEST: &str = "sha256:b213cb2f74e29082f51a37a44eb1899e7c98bcc72ae937740a09f72be963ecbb";

    fn parse_event(event: &str, body: &[u8]) -> Result<Parsed, Refusal> {
        let headers = headers(&[
            ("content-type", "application/json"),
            ("x-github-event", event),
            ("x-github-delivery", DELIVERY),
        ]);
        parse(&inbound(&headers, body))
    }

    fn parse_package(value: &serde_json::Value) -> Result<Parsed, Refusal> {
        parse_event("package", &serde_json::to_vec(value).unwrap())
    }

    fn container_fixture() -> serde_json::Value {
        serde_json::from_slice(&fixture(CONTAINER)).unwrap()
    }

    fn verify_with(signature: Option<&str>, body: &[u8], secret: &[u8]) -> Result<(), Refusal> {
        let mut pairs = vec![("content-type", "application/json"), ("x-github-event", "package")];
        if let Some(signature) = signature {
            pairs.push(("x-hub-signature-256", signature));
        }
        let headers = headers(&pairs);
        verify(&inbound(&headers, body), &Credentials { secret, header: None })
    }

    #[test]
    fn documented_container_publish_gives_one_change() {
        assert_eq!(
            parse_event("package", &fixture(CONTAINER)),
            Ok(Parsed::Changes {
                delivery_id: Some(DELIVERY.to_string()),
                changes: vec![Change::Registry(RegistryChange {
                    registry: "ghcr.io".to_string(),
                    repository: "example-org/hello-world".to_string(),
                    tag: "v1.2.3".to_string(),
                    digest: Some(DIGEST.to_string()),
                    media_type: Some("application/vnd.oci.image.index.v1+json".to_string()),
                })],
            })
        );
    }

    #[test]
    fn registry_package_event_reads_the_same_object() {
        let mut document = container_fixture();
        let package = document.as_object_mut().unwrap().remove("package").unwrap();
        document["registry_package"] = package;
        document["action"] = serde_json::json!("updated");
        let body = serde_json::to_vec(&document).unwrap();
        let Ok(Parsed::Changes { changes, .. }) = parse_event("registry_package", &body) else {
            panic!("expected changes");
        };
        assert_eq!(changes.len(), 1);
        // Under the wrong event name the object is missing.
        assert!(matches!(parse_event("package", &body), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn githubs_odd_example_is_tolerated_as_ignored() {
        let Ok(Parsed::Ignored(reason)) = parse_event("registry_package", &fixture(ODD_EXAMPLE)) else {
            panic!("GitHub's published example must be ignored cleanly");
        };
        assert!(reason.contains("without a tag"), "{reason}");
    }

    #[test]
    fn digest_falls_back_to_version_then_none() {
        let mut document = container_fixture();
        document["package"]["package_version"]["container_metadata"]["tag"]["digest"] =
            serde_json::json!("sha256:6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b");
        let Ok(Parsed::Changes { changes, .. }) = parse_package(&document) else {
            panic!("expected changes")
        };
        let Change::Registry(change) = &changes[0] else {
            panic!("expected a registry change")
        };
        assert_eq!(change.digest.as_deref(), Some(DIGEST));

        document["package"]["package_version"]["version"] = serde_json::json!("1.0.0");
        let Ok(Parsed::Changes { changes, .. }) = parse_package(&document) else {
            panic!("expected changes")
        };
        let Change::Registry(change) = &changes[0] else {
            panic!("expected a registry change")
        };
        assert_eq!(change.digest, None);
    }

    #[test]
    fn registry_comes_from_package_url_or_defaults() {
        let mut document = container_fixture();
        document["package"]["package_version"]["package_url"] =
            serde_json::json!("Containers.GHE.example:8443/example-org/hello-world:v1.2.3");
        let Ok(Parsed::Changes { changes, .. }) = parse_package(&document) else {
            panic!("expected changes")
        };
        let Change::Registry(change) = &changes[0] else {
            panic!("expected a registry change")
        };
        assert_eq!(change.registry, "containers.ghe.example:8443");

        document["package"]["package_version"]
            .as_object_mut()
            .unwrap()
            .remove("package_url");
        let Ok(Parsed::Changes { changes, .. }) = parse_package(&document) else {
            panic!("expected changes")
        };
        let Change::Registry(change) = &changes[0] else {
            panic!("expected a registry change")
        };
        assert_eq!(change.registry, "ghcr.io");

        document["package"]["package_version"]["package_url"] = serde_json::json!("https://evil.example/x:y");
        assert!(matches!(parse_package(&document), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn owner_falls_back_to_login_and_is_lowercased() {
        let mut document = container_fixture();
        document["package"].as_object_mut().unwrap().remove("namespace");
        document["package"]["owner"]["login"] = serde_json::json!("Someone-Else");
        let Ok(Parsed::Changes { changes, .. }) = parse_package(&document) else {
            panic!("expected changes")
        };
        let Change::Registry(change) = &changes[0] else {
            panic!("expected a registry change")
        };
        assert_eq!(change.repository, "someone-else/hello-world");
    }

    #[test]
    fn container_types_are_recognised() {
        for (package_type, ecosystem) in [
            ("container", "x"),
            ("CONTAINER", "x"),
            ("docker", "x"),
            ("npm", "docker"),
            ("npm", "CONTAINER"),
        ] {
            let mut document = container_fixture();
            document["package"]["package_type"] = serde_json::json!(package_type);
            document["package"]["ecosystem"] = serde_json::json!(ecosystem);
            assert!(
                matches!(parse_package(&document), Ok(Parsed::Changes { .. })),
                "{package_type} {ecosystem}"
            );
        }
        let mut document = container_fixture();
        document["package"]["package_type"] = serde_json::json!("npm");
        document["package"]["ecosystem"] = serde_json::json!("npm");
        assert!(matches!(parse_package(&document), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn ignored_and_unknown_events() {
        assert!(matches!(parse_event("ping", &fixture(PING)), Ok(Parsed::Ignored(_))));
        assert!(matches!(parse_event("push", &fixture(PUSH)), Ok(Parsed::Unknown(_))));
        assert!(matches!(parse_event("release", b"{}"), Ok(Parsed::Unknown(_))));
        let mut document = container_fixture();
        document["action"] = serde_json::json!("deleted");
        assert!(matches!(parse_package(&document), Ok(Parsed::Ignored(_))));
        let untagged = {
            let mut document = container_fixture();
            document["package"]["package_version"]["container_metadata"]["tag"]["name"] = serde_json::json!("");
            document
        };
        assert!(matches!(parse_package(&untagged), Ok(Parsed::Ignored(_))));
        let own = {
            let mut document = container_fixture();
            document["package"]["package_version"]["container_metadata"]["tag"]["name"] =
                serde_json::json!(format!("sha256-{}.sig", "e".repeat(64)));
            document
        };
        assert!(matches!(parse_package(&own), Ok(Parsed::Ignored(_))));
        let no_metadata = {
            let mut document = container_fixture();
            document["package"]["package_version"]
                .as_object_mut()
                .unwrap()
                .remove("container_metadata");
            document
        };
        assert!(matches!(parse_package(&no_metadata), Ok(Parsed::Ignored(_))));
    }

    #[test]
    fn malformed_events_are_refused() {
        let headers = headers(&[("content-type", "application/json")]);
        let body = fixture(CONTAINER);
        let no_event = inbound(&headers, &body);
        assert!(matches!(parse(&no_event), Err(Refusal::Malformed(_))));
        assert!(matches!(
            parse_event("package", b"{\"action\": "),
            Err(Refusal::Malformed(_))
        ));

        let edits: [fn(&mut serde_json::Value); 7] = [
            |d| {
                d.as_object_mut().unwrap().remove("action");
            },
            |d| d["action"] = serde_json::json!(1),
            |d| {
                d.as_object_mut().unwrap().remove("package");
            },
            |d| {
                d["package"].as_object_mut().unwrap().remove("package_version");
            },
            |d| d["package"]["package_version"]["container_metadata"]["tag"]["name"] = serde_json::json!("bad tag"),
            |d| d["package"]["name"] = serde_json::json!("Hello World"),
            |d| d["package"]["package_version"]["container_metadata"]["tag"] = serde_json::json!("v1"),
        ];
        for edit in edits {
            let mut document = container_fixture();
            edit(&mut document);
            assert!(
                matches!(parse_package(&document), Err(Refusal::Malformed(_))),
                "{document}"
            );
        }
    }

    #[test]
    fn odd_media_types_are_dropped() {
        let mut document = container_fixture();
        document["package"]["package_version"]["container_metadata"]["manifest"] = serde_json::json!("not an object");
        let Ok(Parsed::Changes { changes, .. }) = parse_package(&document) else {
            panic!("expected changes")
        };
        let Change::Registry(change) = &changes[0] else {
            panic!("expected a registry change")
        };
        assert_eq!(change.media_type, None);
        document["package"]["package_version"]["container_metadata"]["manifest"] =
            serde_json::json!({ "media_type": "" });
        let Ok(Parsed::Changes { changes, .. }) = parse_package(&document) else {
            panic!("expected changes")
        };
        let Change::Registry(change) = &changes[0] else {
            panic!("expected a registry change")
        };
        assert_eq!(change.media_type, None);
    }

    #[test]
    fn odd_delivery_ids_are_dropped() {
        let headers = headers(&[
            ("content-type", "application/json"),
            ("x-github-event", "package"),
            ("x-github-delivery", "not a guid!"),
        ]);
        let body = fixture(CONTAINER);
        let request = inbound(&headers, &body);
        assert!(matches!(parse(&request), Ok(Parsed::Changes { delivery_id: None, .. })));
    }

    #[test]
    fn only_json_is_accepted() {
        let body = format!("payload={}", "%7B%7D");
        for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
            let headers = headers(&[("content-type", content_type), ("x-github-event", "package")]);
            let request = inbound(&headers, body.as_bytes());
            assert!(
                matches!(parse(&request), Err(Refusal::UnsupportedMediaType(_))),
                "{content_type}"
            );
        }
    }

    #[test]
    fn signature_verification() {
        let body = fixture(CONTAINER);
        let signature = hmac_sha256_hex(SECRET, &body);
        assert_eq!(verify_with(Some(&signature), &body, SECRET), Ok(()));
        assert_eq!(
            verify_with(
                Some(&signature.to_ascii_uppercase().replacen("SHA256=", "sha256=", 1)),
                &body,
                SECRET
            ),
            Ok(())
        );
        let mut tampered = body.clone();
        tampered.push(b'\n');
        assert!(matches!(
            verify_with(Some(&signature), &tampered, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(Some(&signature), &body, b"other"),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(Some(signature.trim_start_matches("sha256=")), &body, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(Some("sha256=zz"), &body, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            verify_with(None, &body, SECRET),
            Err(Refusal::Unauthorized(_))
        ));
        let sha1 = headers(&[("x-hub-signature", "sha1=0000")]);
        let request = inbound(&sha1, &body);
        assert!(matches!(
            verify(
                &request,
                &Credentials {
                    secret: SECRET,
                    header: None
                }
            ),
            Err(Refusal::Unauthorized(_))
        ));
    }

    #[test]
    fn fixtures_parse_identically_twice() {
        for (event, name) in [
            ("package", CONTAINER),
            ("registry_package", ODD_EXAMPLE),
            ("ping", PING),
        ] {
            assert_eq!(
                parse_event(event, &fixture(name)),
                parse_event(event, &fixture(name)),
                "{name}"
            );
        }
    }

    /// Keys and values this parser looks for.
    const KEYS: &[&str] = &[
        "published",
        "updated",
        "container",
        "docker",
        "v1",
        "",
        "Org",
        DIGEST,
        "ghcr.io/a/b:c",
        "action",
        "package",
        "name",
        "namespace",
        "package_type",
        "ecosystem",
        "owner",
        "login",
        "package_version",
        "version",
        "container_metadata",
        "tag",
        "digest",
        "manifest",
        "media_type",
        "package_url",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in any_body(), header in "[ -~]{0,40}") {
            let pairs = [
                ("content-type", header.as_str()),
                ("x-github-event", header.as_str()),
                ("x-github-delivery", header.as_str()),
                ("x-hub-signature-256", header.as_str()),
            ];
            let headers = headers(&pairs);
            let request = inbound(&headers, &body);
            let _ = verify(&request, &Credentials { secret: SECRET, header: None });
            let _ = parse(&request);
            let _ = parse_event("package", &body);
            let _ = parse_event("registry_package", &body);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(KEYS, &[]), version in json_value(KEYS, &[])) {
            let _ = parse_package(&value);
            let _ = parse_package(&serde_json::json!({ "action": "published", "package": value }));
            let _ = parse_package(&serde_json::json!({
                "action": "published",
                "package": { "name": "app", "namespace": "Org", "package_type": "CONTAINER", "package_version": version },
            }));
        }

        #[test]
        fn signatures_of_other_bodies_never_verify(body in prop::collection::vec(any::<u8>(), 0..256), other in prop::collection::vec(any::<u8>(), 0..256)) {
            prop_assume!(body != other);
            let signature = hmac_sha256_hex(SECRET, &other);
            prop_assert!(verify_with(Some(&signature), &body, SECRET).is_err());
            prop_assert_eq!(verify_with(Some(&hmac_sha256_hex(SECRET, &body)), &body, SECRET), Ok(()));
        }
    }
}
