//! Helpers shared by the sender modules: content-type checks, registry names, ref and commit
//! reading, header secrets, and the per-event outcome bookkeeping and CloudEvents reading that
//! the CloudEvents, ACR, ECR and GAR senders have in common.

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::{
    Change, Credentials, Inbound, Parsed, Refusal, RegistryChange, is_own_artifact_tag, secret_eq, split_ref,
    valid_repository, valid_tag,
};

/// The only CloudEvents version there is so far.
pub(crate) const SPEC_VERSION: &str = "1.0";

// === Requests ===

/// A value from the request, quoted and cut short for a reason or a log line.
pub(crate) fn shown(text: &str) -> String {
    const LIMIT: usize = 80;
    if text.chars().count() <= LIMIT {
        format!("{text:?}")
    } else {
        format!("{:?}…", text.chars().take(LIMIT).collect::<String>())
    }
}

/// The request's media type when it is one of `accepted`; else 415, the reason naming what was
/// `expected`.
pub(crate) fn media_type_in(inbound: &Inbound<'_>, accepted: &[&str], expected: &str) -> Result<String, Refusal> {
    match inbound.media_type() {
        Some(media_type) if accepted.contains(&media_type.as_str()) => Ok(media_type),
        Some(media_type) => Err(Refusal::UnsupportedMediaType(format!(
            "unsupported content type {media_type}: expected {expected}"
        ))),
        None => Err(Refusal::UnsupportedMediaType("missing content type".to_string())),
    }
}

/// Refuses (415) a body whose media type is not one of `accepted`, the value quoted and the
/// reason ending in `hint`.
pub(crate) fn require_content_type(inbound: &Inbound<'_>, accepted: &[&str], hint: &str) -> Result<(), Refusal> {
    match inbound.media_type() {
        Some(media_type) if accepted.contains(&media_type.as_str()) => Ok(()),
        Some(media_type) => Err(Refusal::UnsupportedMediaType(format!(
            "unsupported content type {}: expected {}{hint}",
            shown(&media_type),
            accepted.join(" or ")
        ))),
        None => Err(Refusal::UnsupportedMediaType(format!(
            "missing content type: expected {}",
            accepted.join(" or ")
        ))),
    }
}

/// The first of `names` present as a header (see [`Inbound::header`]).
pub(crate) fn first_header<'i>(inbound: &'i Inbound<'_>, names: &[&str]) -> Option<&'i str> {
    names.iter().find_map(|name| inbound.header(name))
}

/// Checks that header `credentials.header` (default `default_header`) equals the secret, the
/// whole (trimmed) value compared in constant time (ACR and ECR).
pub(crate) fn verify_header_secret(
    inbound: &Inbound<'_>,
    credentials: &Credentials<'_>,
    default_header: &str,
) -> Result<(), Refusal> {
    let name = credentials.header.unwrap_or(default_header);
    let presented = inbound
        .headers
        .get(name)
        .map(|value| value.as_bytes().trim_ascii())
        .filter(|value| !value.is_empty());
    match presented {
        None => Err(Refusal::Unauthorized("missing secret header")),
        Some(value) if secret_eq(value, credentials.secret) => Ok(()),
        Some(_) => Err(Refusal::Unauthorized("invalid secret header")),
    }
}

// === Git ===

/// A "no commit" (`0000…`, 40 zeros): the ref was deleted (as `after`) or created (as `before`).
pub(crate) fn is_zero_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b == b'0')
}

/// A full ref as (`branch`|`tag`, name); `None` for refs that are neither (to be skipped), an
/// error for `refs/heads/` or `refs/tags/` without a name.
pub(crate) fn branch_or_tag(full_ref: &str) -> Result<Option<(&'static str, &str)>, Refusal> {
    match split_ref(full_ref) {
        Some(split) => Ok(Some(split)),
        None if full_ref.starts_with("refs/heads/") || full_ref.starts_with("refs/tags/") => {
            Err(Refusal::Malformed(format!("invalid ref {full_ref:?}")))
        }
        None => Ok(None),
    }
}

// === Registries ===

/// The registry host of `host/…` (lowercased), or `default` when the reference has no host
/// part; a host that is not one is malformed, the reason naming the payload's `field`. Only
/// ever a name: nothing is contacted because a payload named it.
pub(crate) fn registry_host(reference: &str, field: &str, default: &str) -> Result<String, Refusal> {
    match reference.split_once('/') {
        Some((host, _)) if valid_host(host) => Ok(host.to_ascii_lowercase()),
        Some((host, _)) => Err(Refusal::Malformed(format!(
            "invalid registry host {} in {field}",
            shown(host)
        ))),
        None => Ok(default.to_string()),
    }
}

/// A registry host: DNS name or IPv4 (`[A-Za-z0-9.-]`) or a bracketed IPv6 address, with an
/// optional numeric port. No scheme, user info, path or spaces.
pub(crate) fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let port = if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.is_empty()
            || !address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        if after.is_empty() {
            return true;
        }
        let Some(port) = after.strip_prefix(':') else {
            return false;
        };
        Some(port)
    } else {
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
            && !name.starts_with(['.', '-'])
            && !name.ends_with(['.', '-']);
        if !name_ok {
            return false;
        }
        port
    };
    port.is_none_or(|port| (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit()))
}

// === Events (CloudEvents, ACR, ECR, GAR) ===

/// An event's `id` member when it is a non-empty string.
pub(crate) fn event_id(event: &Map<String, Value>) -> Option<String> {
    event
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

/// A string member: `None` when absent or null, an error when of another type.
pub(crate) fn string_field<'a>(object: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// The attributes of one structured-mode CloudEvent that Rebake reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StructuredEvent {
    /// `id`: unique per `source`.
    pub(crate) id: String,
    /// `source`: a URI reference naming the producer.
    pub(crate) source: String,
    /// `type`.
    pub(crate) event_type: String,
    /// `data`, or `data_base64` decoded and read as JSON; `None` when the event has neither.
    pub(crate) data: Option<Value>,
}

/// Reads one structured-mode event (an element of a batch, or the whole body). The error is
/// the reason it is malformed.
pub(crate) fn structured_event(value: &Value) -> Result<StructuredEvent, String> {
    let Some(object) = value.as_object() else {
        return Err("a cloudevent must be a JSON object".to_string());
    };
    let required = |name: &str| -> Result<String, String> {
        match object.get(name) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                Err(format!("cloudevent is missing the required attribute {name}"))
            }
            Some(_) => Err(format!("cloudevent attribute {name} must be a string")),
        }
    };
    let spec_version = required("specversion")?;
    if spec_version != SPEC_VERSION {
        return Err(format!(
            "unsupported cloudevents specversion {spec_version:?} (expected {SPEC_VERSION})"
        ));
    }
    let id = required("id")?;
    let source = required("source")?;
    let event_type = required("type")?;
    let data = match (object.get("data"), object.get("data_base64")) {
        (Some(data), _) if !data.is_null() => Some(data.clone()),
        (_, Some(Value::String(encoded))) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|error| format!("cloudevent data_base64 is not base64: {error}"))?;
            let data = serde_json::from_slice(&bytes)
                .map_err(|error| format!("cloudevent data_base64 does not hold JSON: {error}"))?;
            Some(data)
        }
        (_, Some(Value::Null) | None) => None,
        (_, Some(_)) => return Err("cloudevent data_base64 must be a string".to_string()),
    };
    Ok(StructuredEvent {
        id,
        source,
        event_type,
        data,
    })
}

/// What one event of a delivery amounts to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Something moved.
    Change(Change),
    /// A known event that needs no action, with the reason.
    Ignored(String),
    /// An event this sender can send but Rebake does not read.
    Unknown(String),
    /// A known event whose payload is malformed, with the reason.
    Malformed(String),
}

impl Outcome {
    /// The answer to a delivery of this one event.
    pub(crate) fn into_parsed(self, delivery_id: Option<String>) -> Result<Parsed, Refusal> {
        match self {
            Outcome::Change(change) => Ok(Parsed::Changes {
                delivery_id,
                changes: vec![change],
            }),
            Outcome::Ignored(reason) => Ok(Parsed::Ignored(reason)),
            Outcome::Unknown(reason) => Ok(Parsed::Unknown(reason)),
            Outcome::Malformed(reason) => Err(Refusal::Malformed(reason)),
        }
    }
}

/// Judges a registry push naming `repository:tag` (on `registry`, empty when unsaid): ignores
/// pushes by digest and Rebake's own artifact tags, refuses invalid names.
pub(crate) fn tag_change(
    registry: &str,
    repository: &str,
    tag: &str,
    digest: Option<String>,
    media_type: Option<&str>,
) -> Outcome {
    if tag.is_empty() {
        return Outcome::Ignored("push by digest (no tag moved)".to_string());
    }
    if is_own_artifact_tag(tag) {
        return Outcome::Ignored("signature, attestation or sbom tag".to_string());
    }
    if !valid_tag(tag) {
        return Outcome::Malformed(format!("invalid tag {tag:?}"));
    }
    if !valid_repository(repository) {
        return Outcome::Malformed(format!("invalid repository {repository:?}"));
    }
    if !registry.is_empty() && !plausible_host(registry) {
        return Outcome::Malformed(format!("invalid registry host {registry:?}"));
    }
    let media_type = media_type
        .map(str::trim)
        .filter(|media_type| valid_media_type(media_type))
        .map(str::to_string);
    Outcome::Change(Change::Registry(RegistryChange {
        registry: registry.to_ascii_lowercase(),
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest,
        media_type,
    }))
}

/// A registry host, optionally with port: no scheme, path, spaces or control characters (looser
/// than [`valid_host`]: any order of name, port and bracket characters).
pub(crate) fn plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// `type/subtype[+suffix]` in the characters media types use.
fn valid_media_type(media_type: &str) -> bool {
    media_type.len() <= 255
        && media_type.split_once('/').is_some_and(|(kind, subtype)| {
            !kind.is_empty()
                && !subtype.is_empty()
                && media_type
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'+' | b'-' | b'_'))
        })
}

/// Turns the outcomes of one delivery's events into the answer. One event: its outcome. Several
/// (a batch): the changes of the good ones, a malformed event being skipped with a warning so
/// it cannot block the others (a batch answered 400 is never resent by Event Grid); a batch with
/// no change is malformed, unknown or ignored, in that order of precedence.
pub(crate) fn combine(mut events: Vec<(Option<String>, Outcome)>) -> Result<Parsed, Refusal> {
    if events.len() == 1
        && let Some((delivery_id, outcome)) = events.pop()
    {
        return outcome.into_parsed(delivery_id);
    }
    if events.is_empty() {
        return Ok(Parsed::Ignored("empty batch".to_string()));
    }
    let delivery_id = combined_delivery_id(events.iter().map(|(id, _)| id.as_deref()));
    let mut changes = Vec::new();
    let mut malformed = Vec::new();
    let mut unknown = Vec::new();
    let mut ignored = Vec::new();
    for (index, (_, outcome)) in events.into_iter().enumerate() {
        match outcome {
            Outcome::Change(change) => changes.push(change),
            Outcome::Malformed(reason) => malformed.push(format!("event {index}: {reason}")),
            Outcome::Unknown(reason) => unknown.push(reason),
            Outcome::Ignored(reason) => ignored.push(reason),
        }
    }
    if !changes.is_empty() {
        for reason in &malformed {
            tracing::warn!(reason = %reason, "malformed event of a batch skipped");
        }
        return Ok(Parsed::Changes { delivery_id, changes });
    }
    if !malformed.is_empty() {
        return Err(Refusal::Malformed(malformed.join("; ")));
    }
    if !unknown.is_empty() {
        return Ok(Parsed::Unknown(distinct(unknown).join("; ")));
    }
    Ok(Parsed::Ignored(distinct(ignored).join("; ")))
}

/// The delivery id of a batch: the one id when there is one event, else
/// `batch-<sha256 over the ids>`; `None` when an event has no id.
fn combined_delivery_id<'a>(ids: impl ExactSizeIterator<Item = Option<&'a str>>) -> Option<String> {
    let count = ids.len();
    let ids: Option<Vec<&str>> = ids.collect();
    let ids = ids?;
    if count == 1 {
        return ids.first().map(|id| id.to_string());
    }
    let mut hasher = Sha256::new();
    for id in &ids {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    Some(format!("batch-{}", hex::encode(hasher.finalize())))
}

fn distinct(mut reasons: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    reasons.retain(|reason| seen.insert(reason.clone()));
    reasons
}
