//! Entry points for the fuzz targets under `fuzz/` (and the property tests): every parser
//! of untrusted input, callable without a server. Not a stable API.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::senders::{self, Credentials, Inbound, WebhookKind};

/// The secret the harness signs with, so inputs get past verification into the parser.
const SECRET: &[u8] = b"fuzz-secret";

/// Event-type values the senders read, one of which is chosen by the input.
const EVENTS: &[&str] = &[
    "push",
    "create",
    "delete",
    "Push Hook",
    "Tag Push Hook",
    "repo:push",
    "repo:refs_changed",
    "diagnostics:ping",
    "package",
    "registry_package",
    "ping",
    "unknown",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/x-www-form-urlencoded",
    "text/plain",
];

fn header(map: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
        map.insert(name, value);
    }
}

/// Feeds `data` to the sender `kind`: the first two bytes choose the event type and the
/// content type, the rest is the body, signed or authenticated correctly; then verifies and
/// parses it, and verifies it once more with a wrong secret. Must never panic.
pub fn sender(kind: WebhookKind, data: &[u8]) {
    let (choice, body) = match data {
        [a, b, rest @ ..] => ((*a as usize, *b as usize), rest),
        _ => ((0, 0), data),
    };
    let event = EVENTS[choice.0 % EVENTS.len()];
    let mut headers = HeaderMap::new();
    header(
        &mut headers,
        "content-type",
        CONTENT_TYPES[choice.1 % CONTENT_TYPES.len()],
    );
    for name in [
        "x-gitlab-event",
        "x-gitea-event",
        "x-forgejo-event",
        "x-event-key",
        "x-github-event",
        "ce-type",
    ] {
        header(&mut headers, name, event);
    }
    for name in [
        "x-gitea-delivery",
        "x-github-delivery",
        "x-request-uuid",
        "x-request-id",
        "x-gitlab-event-uuid",
        "ce-id",
    ] {
        header(&mut headers, name, "fuzz-delivery");
    }
    header(&mut headers, "ce-specversion", "1.0");
    header(&mut headers, "ce-source", "/fuzz");
    let signature = senders::hmac_sha256_hex(SECRET, body);
    let secret = std::str::from_utf8(SECRET).unwrap_or_default();
    header(&mut headers, "x-hub-signature-256", &signature);
    header(&mut headers, "x-hub-signature", &signature);
    header(
        &mut headers,
        "x-gitea-signature",
        signature.trim_start_matches("sha256="),
    );
    header(
        &mut headers,
        "x-forgejo-signature",
        signature.trim_start_matches("sha256="),
    );
    header(&mut headers, "x-gitlab-token", secret);
    header(&mut headers, "x-jfrog-event-auth", secret);
    header(&mut headers, "x-api-key", secret);
    let authorization = if kind == WebhookKind::Cloudevents {
        format!("Bearer {secret}")
    } else {
        secret.to_string()
    };
    header(&mut headers, "authorization", &authorization);
    let inbound = Inbound {
        headers: &headers,
        body,
        path_token: Some(secret),
        query_token: None,
    };
    let credentials = Credentials {
        secret: SECRET,
        header: None,
    };
    let _ = senders::verify(kind, &inbound, &credentials);
    let _ = senders::parse(kind, &inbound);
    let wrong = Credentials {
        secret: b"another-secret",
        header: None,
    };
    let _ = senders::verify(kind, &inbound, &wrong);
}

/// The distribution (Docker registry) notification envelope parser.
pub fn distribution(data: &[u8]) {
    let _ = crate::distribution::parse_envelope(data, None);
    let _ = crate::distribution::parse_envelope(data, Some("registry.example:5000"));
}

/// The GitHub push parser (JSON and form bodies).
pub fn github(data: &[u8]) {
    crate::github::parse_for_fuzzing(data);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The fuzz harnesses themselves hold on arbitrary input (a smoke run of every
        /// target, in the normal suite).
        #[test]
        fn harnesses_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for kind in WebhookKind::ALL {
                sender(kind, &data);
            }
            distribution(&data);
            github(&data);
        }
    }
}
