//! Webhook senders other than the two original endpoints: every forge and registry that can
//! call us, each verified its own way and normalised into the same two kinds of change.
//!
//! A sender module is a pair of pure functions over the raw request, so each can be fuzzed
//! and property-tested without a server:
//!
//! - `verify(&Inbound, &Credentials) -> Result<(), Refusal>`: the sender's authentication (HMAC
//!   signature, shared token, API key header, path token), compared in constant time, run
//!   on the raw body bytes before anything is parsed;
//! - `parse(&Inbound) -> Result<Parsed, Refusal>`: the event type and payload, read into
//!   [`Change`]s. Nothing in a payload is ever fetched: it only names things.
//!
//! The HTTP side (source lookup, body limit, replay protection, tag resolution through the
//! configured registry, publishing, metrics) is shared: see [`crate::sources`].

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use rebake_events::pb;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use rebake_config::WebhookKind;

/// Checks the request's authenticity for a sender of `kind`. Runs on the raw bytes before
/// the body is parsed.
pub fn verify(kind: WebhookKind, inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    match kind {
        WebhookKind::Gitlab => gitlab::verify(inbound, credentials),
        WebhookKind::Gitea | WebhookKind::Forgejo => gitea::verify(inbound, credentials),
        WebhookKind::BitbucketCloud | WebhookKind::BitbucketDc => bitbucket::verify(inbound, credentials),
        WebhookKind::Ghcr => ghcr::verify(inbound, credentials),
        WebhookKind::Harbor => harbor::verify(inbound, credentials),
        WebhookKind::Acr => acr::verify(inbound, credentials),
        WebhookKind::Ecr => ecr::verify(inbound, credentials),
        WebhookKind::Artifactory => artifactory::verify(inbound, credentials),
        WebhookKind::Cloudevents => cloudevents::verify(inbound, credentials),
        WebhookKind::Dockerhub | WebhookKind::Quay | WebhookKind::Gar => path_token(inbound, credentials.secret),
    }
}

/// Reads an (already verified) request from a sender of `kind`.
pub fn parse(kind: WebhookKind, inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    match kind {
        WebhookKind::Gitlab => gitlab::parse(inbound),
        WebhookKind::Gitea | WebhookKind::Forgejo => gitea::parse(inbound),
        WebhookKind::BitbucketCloud => bitbucket::parse_cloud(inbound),
        WebhookKind::BitbucketDc => bitbucket::parse_dc(inbound),
        WebhookKind::Dockerhub => dockerhub::parse(inbound),
        WebhookKind::Harbor => harbor::parse(inbound),
        WebhookKind::Quay => quay::parse(inbound),
        WebhookKind::Ghcr => ghcr::parse(inbound),
        WebhookKind::Acr => acr::parse(inbound),
        WebhookKind::Ecr => ecr::parse(inbound),
        WebhookKind::Gar => gar::parse(inbound),
        WebhookKind::Artifactory => artifactory::parse(inbound),
        WebhookKind::Cloudevents => cloudevents::parse(inbound),
    }
}

pub(crate) mod acr;
pub(crate) mod artifactory;
pub(crate) mod bitbucket;
pub(crate) mod cloudevents;
mod common;
pub(crate) mod dockerhub;
pub(crate) mod ecr;
pub(crate) mod gar;
pub(crate) mod ghcr;
pub(crate) mod gitea;
pub(crate) mod gitlab;
pub(crate) mod harbor;
pub(crate) mod quay;

/// What a source is configured to expect.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The signing secret, shared token or API key (never empty).
    pub secret: &'a [u8],
    /// For ACR and ECR: the header carrying the secret, when configured otherwise than the
    /// sender's default.
    pub header: Option<&'a str>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("secret", &"<redacted>")
            .field("header", &self.header)
            .finish()
    }
}

/// One webhook request as a sender module sees it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Request headers (names are case-insensitive).
    pub headers: &'a HeaderMap,
    /// The raw body bytes, exactly as received (signatures are over these).
    pub body: &'a [u8],
    /// The path segment after the source name (`/v1/hooks/<source>/<token>`), if any.
    pub path_token: Option<&'a str>,
    /// The `token` query parameter, if any (Pub/Sub push endpoints often carry it there).
    pub query_token: Option<&'a str>,
}

impl Inbound<'_> {
    /// A header's value as trimmed visible ASCII, when present and non-empty.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)?
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|value| !value.is_empty())
    }

    /// `Content-Type` without parameters, lowercased.
    pub fn media_type(&self) -> Option<String> {
        let value = self.header("content-type")?;
        Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
    }
}

/// A registry's news: "repository R (on registry H) tag T now points at digest D".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryChange {
    /// Registry host as the payload names it (`ghcr.io`, `myacr.azurecr.io`), or empty when
    /// the payload does not say. Matched against the source's configured registry; never
    /// contacted because a payload said so.
    pub registry: String,
    /// Repository path inside the registry (`library/debian`, `octo/app`).
    pub repository: String,
    /// The tag that moved.
    pub tag: String,
    /// `sha256:<64 hex>` when the payload carries a valid one; `None` otherwise (the tag is
    /// then resolved through the configured registry).
    pub digest: Option<String>,
    /// Manifest media type when the payload says.
    pub media_type: Option<String>,
}

/// One normalised change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A branch or tag of a Git repository moved (or was deleted: `deleted`, empty
    /// `new_commit`). `repository` is `host/path` as [`rebake_config::normalise_git_identity`]
    /// gives it; `delivery_id` is the sender's delivery id when it has one.
    Git(pb::GitRefChanged),
    /// A registry tag moved.
    Registry(RegistryChange),
}

/// What a verified request amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Changes to publish. `delivery_id` is the sender's id of this delivery (replays of it
    /// are no-ops); `None` when the sender has no such id.
    Changes {
        /// The sender's delivery id.
        delivery_id: Option<String>,
        /// What moved (may be empty: e.g. a push of nothing Rebake reads).
        changes: Vec<Change>,
    },
    /// A known event that needs no action (a ping, a pull, a push by digest only): 200.
    Ignored(String),
    /// An event type this sender can send but Rebake does not read: 202 and a log line, so
    /// senders do not disable the hook.
    Unknown(String),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: missing or wrong credentials.
    Unauthorized(&'static str),
    /// 400: a known event type whose payload is malformed, with the reason.
    Malformed(String),
    /// 415: a content type this sender never sends.
    UnsupportedMediaType(String),
}

/// Constant-time equality of a presented credential and the configured secret. Both are
/// hashed first, so neither the comparison nor an early length mismatch tells anything
/// about the secret's length or prefix.
pub fn secret_eq(presented: &[u8], secret: &[u8]) -> bool {
    use sha2::Digest;
    !secret.is_empty() && Sha256::digest(presented).ct_eq(&Sha256::digest(secret)).into()
}

/// Checks `hex` (case-insensitive, optionally prefixed `sha256=`) against
/// HMAC-SHA256(secret, body), in constant time.
pub fn hmac_sha256_matches(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let hex_digest = signature.strip_prefix("sha256=").unwrap_or(signature);
    let Ok(expected) = hex::decode(hex_digest.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    !secret.is_empty() && mac.verify_slice(&expected).is_ok()
}

/// HMAC-SHA256(secret, body) as `sha256=<hex>` (for tests and for documentation).
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verification for senders whose secret is in the URL (path segment or `token` query).
fn path_token(inbound: &Inbound<'_>, secret: &[u8]) -> Result<(), Refusal> {
    let presented = inbound.path_token.or(inbound.query_token);
    match presented {
        Some(token) if secret_eq(token.as_bytes(), secret) => Ok(()),
        Some(_) => Err(Refusal::Unauthorized("invalid token")),
        None => Err(Refusal::Unauthorized("missing token in the hook URL")),
    }
}

/// Reads JSON, turning an error into a 400 reason naming `what`.
pub fn json<'a, T: serde::Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|error| Refusal::Malformed(format!("invalid {what}: {error}")))
}

/// `sha256:<64 lowercase hex>`, when `text` is exactly that (case-insensitive hex).
pub fn valid_digest(text: &str) -> Option<String> {
    let hex_part = text.strip_prefix("sha256:")?;
    (hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex_part.to_ascii_lowercase()))
}

/// A 40-hex Git commit id (lowercased), when `text` is one and not all zeros.
pub fn valid_commit(text: &str) -> Option<String> {
    (text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) && !text.bytes().all(|b| b == b'0'))
        .then(|| text.to_ascii_lowercase())
}

/// Splits `refs/heads/x` / `refs/tags/x` into (`branch`|`tag`, `x`).
pub fn split_ref(full_ref: &str) -> Option<(&'static str, &str)> {
    if let Some(name) = full_ref.strip_prefix("refs/heads/") {
        return (!name.is_empty()).then_some(("branch", name));
    }
    if let Some(name) = full_ref.strip_prefix("refs/tags/") {
        return (!name.is_empty()).then_some(("tag", name));
    }
    None
}

/// Whether `tag` is a valid OCI tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `repository` is a valid OCI repository path (lowercase components separated by
/// `/`, each `[a-z0-9]+([._-][a-z0-9]+)*`, loosely).
pub fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
                && part.as_bytes()[0].is_ascii_alphanumeric()
        })
}

/// Whether `tag` is one Rebake itself writes next to images (`sha256-<hex>.sig`, `.att`,
/// `.sbom`): those pushes are Rebake's own and never a change to act on.
pub fn is_own_artifact_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(hex_part, suffix)| hex_part.len() == 64 && matches!(suffix, "sig" | "att" | "sbom"))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Shared by the sender modules' tests: fixtures, request building, change extraction and
    //! the JSON strategy of the no-panic properties.
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;
    use rebake_events::pb;
    use serde_json::Value;

    use super::{Change, Credentials, Inbound, Parsed, Refusal, valid_commit};

    /// Reads `tests/fixtures/<path>` (copies of `../shared/fixtures/webhooks`).
    pub(crate) fn fixture(path: &str) -> Vec<u8> {
        crate::testing::fixture(path)
    }

    /// A fixture read as JSON, edited, and written back.
    pub(crate) fn fixture_with(path: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut document: Value = serde_json::from_slice(&fixture(path)).expect("fixture is JSON");
        edit(&mut document);
        serde_json::to_vec(&document).expect("JSON serialises")
    }

    /// A header map from pairs.
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
                HeaderValue::from_str(value).expect("valid header value"),
            );
        }
        map
    }

    /// A request with `headers` and `body` and no token in the URL.
    pub(crate) fn inbound<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Inbound<'a> {
        Inbound {
            headers,
            body,
            path_token: None,
            query_token: None,
        }
    }

    /// `secret`, in the sender's default header.
    pub(crate) fn credentials(secret: &[u8]) -> Credentials<'_> {
        Credentials { secret, header: None }
    }

    /// The parse of `body` with only a `Content-Type` header.
    pub(crate) fn parse_with(
        parse: impl Fn(&Inbound<'_>) -> Result<Parsed, Refusal>,
        content_type: &str,
        body: &[u8],
    ) -> Result<Parsed, Refusal> {
        let map = headers(&[("content-type", content_type)]);
        parse(&inbound(&map, body))
    }

    /// Content types a JSON-only sender refuses.
    pub(crate) const NOT_JSON: [&str; 3] = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/cloudevents+json",
    ];

    /// Asserts that `parse` refuses `body` (415) under each of `content_types` and without one.
    pub(crate) fn assert_refuses_content_types(
        parse: impl Fn(&Inbound<'_>) -> Result<Parsed, Refusal>,
        content_types: &[&str],
        body: &[u8],
    ) {
        for content_type in content_types {
            let parsed = parse_with(&parse, content_type, body);
            assert!(
                matches!(parsed, Err(Refusal::UnsupportedMediaType(_))),
                "{content_type}: {parsed:?}"
            );
        }
        let parsed = parse(&inbound(&HeaderMap::new(), body));
        assert!(
            matches!(parsed, Err(Refusal::UnsupportedMediaType(_))),
            "no content type: {parsed:?}"
        );
    }

    /// Asserts that `parse` reads `body` the same twice (from two copies).
    pub(crate) fn assert_parses_identically(parse: impl Fn(&[u8]) -> Result<Parsed, Refusal>, body: &[u8]) {
        let copy = body.to_vec();
        assert_eq!(parse(body), parse(&copy));
    }

    /// Runs `parse` over `body` under `content_type` and under JSON's: it must not panic.
    pub(crate) fn parse_never_panics(
        parse: impl Fn(&Inbound<'_>) -> Result<Parsed, Refusal>,
        content_type: &str,
        body: &[u8],
    ) {
        let _ = parse_with(&parse, content_type, body);
        let _ = parse_with(&parse, "application/json", body);
    }

    /// The Git changes of a successful parse (panics on anything else).
    pub(crate) fn git_changes(parsed: Parsed) -> Vec<pb::GitRefChanged> {
        let Parsed::Changes { changes, .. } = parsed else {
            panic!("expected changes, got {parsed:?}");
        };
        changes
            .into_iter()
            .map(|change| match change {
                Change::Git(change) => change,
                other => panic!("expected a git change, got {other:?}"),
            })
            .collect()
    }

    /// The single Git change of a successful parse (panics on anything else).
    pub(crate) fn only_git_change(parsed: Parsed) -> pb::GitRefChanged {
        let mut changes = git_changes(parsed);
        assert_eq!(changes.len(), 1, "expected one change, got {changes:?}");
        changes.remove(0)
    }

    /// What every change a Git sender produces satisfies.
    pub(crate) fn assert_git_well_formed(parsed: &Parsed) {
        if let Parsed::Changes { delivery_id, changes } = parsed {
            for change in changes {
                let Change::Git(change) = change else {
                    panic!("a git sender produced a registry change: {change:?}");
                };
                assert!(change.ref_kind == "branch" || change.ref_kind == "tag");
                assert!(!change.ref_name.is_empty() && !change.repository.is_empty());
                assert_eq!(change.deleted, change.new_commit.is_empty());
                assert!(change.new_commit.is_empty() || valid_commit(&change.new_commit).is_some());
                assert!(change.old_commit.is_empty() || valid_commit(&change.old_commit).is_some());
                assert_eq!(&change.delivery_id, delivery_id.as_ref().unwrap_or(&String::new()));
            }
        }
    }

    /// Arbitrary request bodies for the senders' no-panic properties.
    pub(crate) fn any_body() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..512)
    }

    /// Arbitrary small JSON documents whose object keys are mostly `words` and whose strings
    /// are often `words` or match one of `patterns` (so the strategy reaches deep into a
    /// sender's parser), for the senders' no-panic properties.
    pub(crate) fn json_value(
        words: &'static [&'static str],
        patterns: &'static [&'static str],
    ) -> impl Strategy<Value = Value> {
        let mut leaves: Vec<BoxedStrategy<Value>> = vec![
            Just(Value::Null).boxed(),
            any::<bool>().prop_map(Value::Bool).boxed(),
            any::<i64>().prop_map(Value::from).boxed(),
            any::<f64>().prop_map(Value::from).boxed(),
            "[a-zA-Z0-9:/@._ -]{0,24}".prop_map(Value::String).boxed(),
            "\\PC{0,12}".prop_map(Value::String).boxed(),
            prop::sample::select(words)
                .prop_map(|word| Value::String(word.to_string()))
                .boxed(),
            Just(Value::String(format!("sha256:{}", "a".repeat(64)))).boxed(),
            Just(Value::String("0".repeat(40))).boxed(),
        ];
        leaves.extend(patterns.iter().map(|pattern| pattern.prop_map(Value::String).boxed()));
        let key = prop_oneof![
            3 => prop::sample::select(words).prop_map(str::to_string),
            1 => "[a-z_-]{1,8}",
        ];
        prop::strategy::Union::new(leaves).prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..8)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_round_trips_and_rejects_tampering() {
        let signature = hmac_sha256_hex(b"s3cret", b"body");
        assert!(hmac_sha256_matches(b"s3cret", b"body", &signature));
        assert!(hmac_sha256_matches(
            b"s3cret",
            b"body",
            signature.trim_start_matches("sha256=")
        ));
        assert!(!hmac_sha256_matches(b"s3cret", b"body!", &signature));
        assert!(!hmac_sha256_matches(b"other", b"body", &signature));
        assert!(!hmac_sha256_matches(b"", b"body", &hmac_sha256_hex(b"", b"body")));
        assert!(!hmac_sha256_matches(b"s3cret", b"body", "sha256=zz"));
    }

    #[test]
    fn validators() {
        assert!(valid_digest(&format!("sha256:{}", "A".repeat(64))).is_some());
        assert!(valid_digest(&format!("sha256:{}", "a".repeat(60))).is_none());
        assert!(valid_commit(&"0".repeat(40)).is_none());
        assert_eq!(split_ref("refs/tags/v1"), Some(("tag", "v1")));
        assert_eq!(split_ref("refs/heads/"), None);
        assert!(valid_tag("v1.2.3-rc_1") && !valid_tag(".x") && !valid_tag(""));
        assert!(valid_repository("library/debian") && !valid_repository("Library/x") && !valid_repository("a//b"));
        assert!(is_own_artifact_tag(&format!("sha256-{}.sig", "a".repeat(64))));
        assert!(!is_own_artifact_tag("latest"));
        assert!(secret_eq(b"abc", b"abc") && !secret_eq(b"abd", b"abc") && !secret_eq(b"", b""));
    }
}
