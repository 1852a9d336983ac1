//! The client side of the control API, for `rebake images` and `rebake watch`: connecting,
//! and rendering images and events as text (tables, one line per event) or JSON.
//!
//! Times are shown in UTC.

use std::time::Duration;

use rebake_proto::control::v1::{Event, Image, control_client::ControlClient};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};

use crate::{ControlError, Result, timefmt};

/// How long [`connect`] waits for the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest reason shown in a table cell (longer ones end with `…`).
const MAX_REASON_CHARS: usize = 100;

/// Connects to the control API at `endpoint` (`http://127.0.0.1:9090`; without a scheme,
/// `http://` is assumed; `https://` uses TLS with the system's web PKI roots, plus the CA in
/// the PEM file named by `REBAKE_CA_CERT` when set). Sends `authorization: Bearer
/// $REBAKE_TOKEN` on every call when `REBAKE_TOKEN` is set. Fails at once when nothing
/// answers there.
pub async fn connect(endpoint: &str) -> Result<Client> {
    let endpoint = endpoint.trim();
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let channel = Endpoint::from_shared(uri.clone())
        .map_err(|source| ControlError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            source,
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = if uri.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
        if let Ok(path) = std::env::var("REBAKE_CA_CERT") {
            let pem = std::fs::read(&path).map_err(|error| ControlError::InvalidArgument {
                field: "REBAKE_CA_CERT",
                reason: format!("cannot read {path}: {error}"),
            })?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        channel
            .tls_config(tls)
            .map_err(|source| ControlError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                source,
            })?
    } else {
        channel
    };
    let channel = channel
        .connect()
        .await
        .map_err(|source| ControlError::Connect { endpoint: uri, source })?;
    let token = bearer_token(std::env::var("REBAKE_TOKEN").ok().as_deref())?;
    Ok(ControlClient::with_interceptor(channel, token))
}

/// The control API client [`connect`] returns.
pub type Client = ControlClient<tonic::service::interceptor::InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every call (nothing when there is no token).
#[derive(Clone)]
pub struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(<redacted>)"
        } else {
            "BearerToken(None)"
        })
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The interceptor for `token` (`REBAKE_TOKEN`); empty or unset = none.
pub fn bearer_token(token: Option<&str>) -> Result<BearerToken> {
    match token.map(str::trim).filter(|token| !token.is_empty()) {
        None => Ok(BearerToken(None)),
        Some(token) => {
            let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| ControlError::InvalidArgument {
                        field: "REBAKE_TOKEN",
                        reason: "not a valid header value".to_string(),
                    })?;
            value.set_sensitive(true);
            Ok(BearerToken(Some(value)))
        }
    }
}

// === text ===

/// An aligned table of `images`, one per line after a header:
/// `NAME STATUS DIGEST BASE PUBLISHED REASON`. DIGEST is the published digest shortened to
/// `sha256:` + 12 hex; PUBLISHED is its age (`5m ago`). Missing values show as `-`.
pub fn render_images_table(images: &[Image]) -> String {
    render_images_table_at(images, rebake_events::now_ms())
}

fn render_images_table_at(images: &[Image], now_ms: i64) -> String {
    let header = ["NAME", "STATUS", "DIGEST", "BASE", "PUBLISHED", "REASON"].map(str::to_string);
    let mut rows = vec![header.to_vec()];
    for image in images {
        let published = if image.published_at_ms > 0 {
            timefmt::age(now_ms, image.published_at_ms)
        } else {
            "-".to_string()
        };
        rows.push(vec![
            image.name.clone(),
            image.status.clone(),
            short_digest(&image.published_digest),
            or_dash(&image.base_ref),
            published,
            truncate(&one_line(&reason_of(image)), MAX_REASON_CHARS),
        ]);
    }
    render_table(&rows)
}

/// Why an image is in its status: its status reason, else the reason of a failed last build.
fn reason_of(image: &Image) -> String {
    if !image.status_reason.is_empty() {
        return image.status_reason.clone();
    }
    match &image.last_build {
        Some(build) if image.status == "failed" => build.reason.clone(),
        _ => String::new(),
    }
}

/// The widest cell of each column, in characters.
pub(crate) fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Pads every column but the last to its widest cell, two spaces apart.
pub(crate) fn render_table(rows: &[Vec<String>]) -> String {
    let widths = column_widths(rows);
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[column] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line per event: `HH:MM:SS.mmm kind image summary` (UTC; kind padded so summaries
/// line up; `-` for events about no image).
pub fn render_event_line(event: &Event) -> String {
    format!(
        "{} {:<16} {} {}",
        timefmt::clock(event.time_ms),
        event.kind,
        or_dash(&event.image),
        event.summary
    )
    .trim_end()
    .to_string()
}

/// `sha256:` + the first 12 hex digits; `-` when empty.
pub(crate) fn short_digest(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", hex.get(..12).unwrap_or(hex)),
        None if digest.is_empty() => "-".to_string(),
        None => truncate(digest, 19),
    }
}

pub(crate) fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` cut to `max_chars` characters, ending with `…` when cut.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

// === json ===

/// `image` as a JSON object with the proto's field names (`-o json`); `last_build` is `null`
/// when the image was never built.
pub fn image_to_json(image: &Image) -> Value {
    let last_build = image.last_build.as_ref().map_or(Value::Null, |build| {
        json!({
            "build_id": build.build_id,
            "status": build.status,
            "inputs_hash": build.inputs_hash,
            "digest": build.digest,
            "reason": build.reason,
            "requested_at_ms": build.requested_at_ms,
            "finished_at_ms": build.finished_at_ms,
            "causes": build.causes,
        })
    });
    let sources: Vec<Value> = image
        .sources
        .iter()
        .map(|source| json!({"url": source.url, "ref_name": source.ref_name, "commit": source.commit}))
        .collect();
    json!({
        "name": image.name,
        "status": image.status,
        "status_reason": image.status_reason,
        "base_ref": image.base_ref,
        "repository": image.repository,
        "tags": image.tags,
        "published_digest": image.published_digest,
        "base_digest": image.base_digest,
        "sources": sources,
        "published_inputs_hash": image.published_inputs_hash,
        "desired_inputs_hash": image.desired_inputs_hash,
        "published_at_ms": image.published_at_ms,
        "last_build": last_build,
        "parent": image.parent,
        "children": image.children,
    })
}

/// `event` as a JSON object with the proto's field names, plus `time` (RFC 3339, UTC).
pub fn event_to_json(event: &Event) -> Value {
    json!({
        "sequence": event.sequence,
        "kind": event.kind,
        "image": event.image,
        "build_id": event.build_id,
        "summary": event.summary,
        "time_ms": event.time_ms,
        "time": rebake_events::rfc3339_ms(event.time_ms),
        "digest": event.digest,
        "id": event.id,
    })
}

#[cfg(test)]
mod tests {
    use rebake_proto::control::v1::Build;

    use super::*;

    const NOW: i64 = 1_796_303_190_123;

    fn digest() -> String {
        format!("sha256:{}", "0123456789abcdef".repeat(4))
    }

    #[test]
    fn images_table() {
        let images = vec![
            Image {
                name: "apps/web".into(),
                status: "published".into(),
                base_ref: "127.0.0.1:5000/base:v1".into(),
                published_digest: digest(),
                published_at_ms: NOW - 5 * 60_000,
                ..Default::default()
            },
            Image {
                name: "base".into(),
                status: "failed".into(),
                base_ref: "scratch".into(),
                last_build: Some(Build {
                    reason: "policy denied\nroot user".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        let table = render_images_table_at(&images, NOW);
        let expected = "\
NAME      STATUS     DIGEST               BASE                    PUBLISHED  REASON
apps/web  published  sha256:0123456789ab  127.0.0.1:5000/base:v1  5m ago
base      failed     -                    scratch                 -          policy denied root user
";
        assert_eq!(table, expected);
        assert_eq!(
            render_images_table_at(&[], NOW),
            "NAME  STATUS  DIGEST  BASE  PUBLISHED  REASON\n"
        );
    }

    #[test]
    fn digests_and_truncation() {
        assert_eq!(short_digest(&digest()), "sha256:0123456789ab");
        assert_eq!(short_digest(""), "-");
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn event_line() {
        let event = Event {
            sequence: 3,
            kind: "image.published".into(),
            image: "apps/web".into(),
            summary: "published r/apps/web@sha256:x (tags latest)".into(),
            time_ms: NOW,
            ..Default::default()
        };
        assert_eq!(
            render_event_line(&event),
            "13:06:30.123 image.published  apps/web published r/apps/web@sha256:x (tags latest)"
        );
        let upstream = Event {
            kind: "upstream.changed".into(),
            summary: "registry tag r/base:v1 -> sha256:y".into(),
            time_ms: NOW,
            ..Default::default()
        };
        assert_eq!(
            render_event_line(&upstream),
            "13:06:30.123 upstream.changed - registry tag r/base:v1 -> sha256:y"
        );
    }

    #[test]
    fn json() {
        let image = Image {
            name: "app".into(),
            status: "new".into(),
            tags: vec!["latest".into()],
            ..Default::default()
        };
        let value = image_to_json(&image);
        assert_eq!(value["name"], "app");
        assert_eq!(value["tags"], json!(["latest"]));
        assert!(value["last_build"].is_null());
        let with_build = Image {
            last_build: Some(Build {
                build_id: "b1".into(),
                causes: vec!["manual: by hand".into()],
                ..Default::default()
            }),
            ..image
        };
        assert_eq!(image_to_json(&with_build)["last_build"]["causes"][0], "manual: by hand");

        let event = Event {
            sequence: 9,
            kind: "build.done".into(),
            time_ms: 0,
            ..Default::default()
        };
        let value = event_to_json(&event);
        assert_eq!(value["sequence"], 9);
        assert_eq!(value["time"], "1970-01-01T00:00:00.000Z");
    }

    #[tokio::test]
    async fn connect_refuses_bad_endpoints() {
        assert!(matches!(
            connect("http://exa mple").await,
            Err(ControlError::InvalidEndpoint { .. })
        ));
        // Port 1 on loopback: nothing listens there.
        assert!(matches!(
            connect("127.0.0.1:1").await,
            Err(ControlError::Connect { .. })
        ));
    }
}
