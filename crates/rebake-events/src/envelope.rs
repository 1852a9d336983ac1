use sha2::Digest as _;

use crate::{EventsError, Result};

/// Every kind of event on the bus, with its CloudEvents `type` and subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `pb::UpstreamChanged`: an upstream source moved (a hint).
    UpstreamChanged,
    /// `pb::BuildRequest`: the resolver asked for a build.
    BuildRequested,
    /// `pb::BuildDone`: an image was assembled and staged.
    BuildDone,
    /// `pb::BuildFailed`: a build, scan or publication failed; nothing was published.
    BuildFailed,
    /// `pb::ScanDone`: the scanner's verdict on a staged image.
    ScanDone,
    /// `pb::ImagePublished`: an image was signed and its tags moved.
    ImagePublished,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 6] = [
        EventKind::UpstreamChanged,
        EventKind::BuildRequested,
        EventKind::BuildDone,
        EventKind::BuildFailed,
        EventKind::ScanDone,
        EventKind::ImagePublished,
    ];

    /// The CloudEvents `type` attribute.
    pub fn ce_type(self) -> &'static str {
        match self {
            EventKind::UpstreamChanged => "dev.rebake.upstream.changed.v1",
            EventKind::BuildRequested => "dev.rebake.build.requested.v1",
            EventKind::BuildDone => "dev.rebake.build.done.v1",
            EventKind::BuildFailed => "dev.rebake.build.failed.v1",
            EventKind::ScanDone => "dev.rebake.scan.done.v1",
            EventKind::ImagePublished => "dev.rebake.image.published.v1",
        }
    }

    /// The short name used in subjects, the API and the CLI (`build.done` …).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::UpstreamChanged => "upstream.changed",
            EventKind::BuildRequested => "build.requested",
            EventKind::BuildDone => "build.done",
            EventKind::BuildFailed => "build.failed",
            EventKind::ScanDone => "scan.done",
            EventKind::ImagePublished => "image.published",
        }
    }

    /// The subject token (no dots).
    pub fn token(self) -> &'static str {
        match self {
            EventKind::UpstreamChanged => "upstream-changed",
            EventKind::BuildRequested => "build-requested",
            EventKind::BuildDone => "build-done",
            EventKind::BuildFailed => "build-failed",
            EventKind::ScanDone => "scan-done",
            EventKind::ImagePublished => "image-published",
        }
    }

    /// The kind with this CloudEvents `type`.
    pub fn from_ce_type(ce_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.ce_type() == ce_type)
    }

    /// The kind with this short name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// The CloudEvents attributes of one message (binary mode: they travel as `ce-*` headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ce-id`, also `Nats-Msg-Id`: derived from the cause, so a replay de-duplicates.
    pub id: String,
    /// `ce-type`.
    pub kind: EventKind,
    /// `ce-source`, e.g. `/rebake/ingress`.
    pub source: String,
    /// `ce-time`, RFC 3339.
    pub time: String,
    /// `ce-subject`: the image the event is about, when there is one.
    pub subject: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: String,
}

/// Header names.
mod header {
    pub const SPECVERSION: &str = "ce-specversion";
    pub const ID: &str = "ce-id";
    pub const TYPE: &str = "ce-type";
    pub const SOURCE: &str = "ce-source";
    pub const TIME: &str = "ce-time";
    pub const SUBJECT: &str = "ce-subject";
    pub const DATACONTENTTYPE: &str = "ce-datacontenttype";
    pub const DATASCHEMA: &str = "ce-dataschema";
    pub const TRACEPARENT: &str = "traceparent";
    pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
}

impl Envelope {
    /// A new envelope stamped now. `parent_traceparent` continues a trace (new span id, same
    /// trace id); without it a new trace starts.
    pub fn new(
        kind: EventKind,
        id: String,
        source: &str,
        subject: Option<&str>,
        parent_traceparent: Option<&str>,
    ) -> Self {
        Self {
            id,
            kind,
            source: source.to_string(),
            time: rfc3339_ms(now_ms()),
            subject: subject.map(str::to_string),
            traceparent: child_traceparent(parent_traceparent),
        }
    }

    /// The headers to send, in order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (header::SPECVERSION, "1.0".to_string()),
            (header::ID, self.id.clone()),
            (header::TYPE, self.kind.ce_type().to_string()),
            (header::SOURCE, self.source.clone()),
            (header::TIME, self.time.clone()),
            (header::DATACONTENTTYPE, "application/protobuf".to_string()),
            (header::DATASCHEMA, schema_of(self.kind).to_string()),
            (header::TRACEPARENT, self.traceparent.clone()),
            (header::NATS_MSG_ID, self.id.clone()),
        ];
        if let Some(subject) = &self.subject {
            headers.push((header::SUBJECT, subject.clone()));
        }
        headers
    }

    /// Reads an envelope back from headers (`get` looks one up by name).
    pub fn from_headers(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |name: &str| {
            get(name).ok_or_else(|| EventsError::InvalidEnvelope {
                reason: format!("missing header {name}"),
            })
        };
        let specversion = required(header::SPECVERSION)?;
        if specversion != "1.0" {
            return Err(EventsError::InvalidEnvelope {
                reason: format!("unsupported ce-specversion {specversion:?}"),
            });
        }
        let ce_type = required(header::TYPE)?;
        let kind = EventKind::from_ce_type(&ce_type).ok_or_else(|| EventsError::InvalidEnvelope {
            reason: format!("unknown ce-type {ce_type:?}"),
        })?;
        Ok(Self {
            id: required(header::ID)?,
            kind,
            source: required(header::SOURCE)?,
            time: required(header::TIME)?,
            subject: get(header::SUBJECT),
            traceparent: get(header::TRACEPARENT).unwrap_or_else(|| child_traceparent(None)),
        })
    }

    /// The trace id carried in `traceparent`.
    pub fn trace_id(&self) -> &str {
        self.traceparent.split('-').nth(1).unwrap_or("")
    }
}

fn schema_of(kind: EventKind) -> &'static str {
    match kind {
        EventKind::UpstreamChanged => "proto:rebake.events.v1.UpstreamChanged",
        EventKind::BuildRequested => "proto:rebake.events.v1.BuildRequest",
        EventKind::BuildDone => "proto:rebake.events.v1.BuildDone",
        EventKind::BuildFailed => "proto:rebake.events.v1.BuildFailed",
        EventKind::ScanDone => "proto:rebake.events.v1.ScanDone",
        EventKind::ImagePublished => "proto:rebake.events.v1.ImagePublished",
    }
}

/// An id derived from what caused the event, so the same cause always gives the same id
/// (and JetStream drops the duplicate).
pub fn deterministic_id(parts: &[&str]) -> String {
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

fn child_traceparent(parent: Option<&str>) -> String {
    let trace_id = parent
        .and_then(|parent| {
            let parts: Vec<&str> = parent.split('-').collect();
            (parts.len() == 4 && parts[1].len() == 32 && parts[1].bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| parts[1].to_string())
        })
        .unwrap_or_else(|| random_hex(16));
    format!("00-{trace_id}-{}-01", random_hex(8))
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-12-03T13:06:30.123Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let day_of_year = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_through_headers() {
        let envelope = Envelope::new(
            EventKind::BuildDone,
            deterministic_id(&["a", "b"]),
            "/rebake/builder",
            Some("app"),
            None,
        );
        let headers = envelope.headers();
        let back =
            Envelope::from_headers(|name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())).unwrap();
        assert_eq!(back, envelope);
        assert!(headers.iter().any(|(n, v)| *n == "Nats-Msg-Id" && *v == envelope.id));
    }

    #[test]
    fn traceparent_continues_the_trace() {
        let first = Envelope::new(EventKind::UpstreamChanged, "1".into(), "/x", None, None);
        let second = Envelope::new(
            EventKind::BuildRequested,
            "2".into(),
            "/x",
            None,
            Some(&first.traceparent),
        );
        assert_eq!(first.trace_id(), second.trace_id());
        assert_ne!(first.traceparent, second.traceparent);
        assert_eq!(first.trace_id().len(), 32);
    }

    #[test]
    fn unknown_type_is_rejected() {
        let err = Envelope::from_headers(|name| match name {
            "ce-specversion" => Some("1.0".into()),
            "ce-type" => Some("com.example.other".into()),
            _ => Some("x".into()),
        });
        assert!(err.is_err());
    }

    #[test]
    fn ids_are_deterministic() {
        assert_eq!(deterministic_id(&["x", "y"]), deterministic_id(&["x", "y"]));
        assert_ne!(deterministic_id(&["x", "y"]), deterministic_id(&["xy"]));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_303_190_123), "2026-12-03T13:06:30.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
