//! `WatchEvents`: the EVENTS stream, read with an ordered push consumer, decoded into one
//! readable `control::v1::Event` per message.

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use rebake_bus::{
    Bus,
    async_nats::jetstream::{
        self,
        consumer::{DeliverPolicy, push},
    },
};
use rebake_events::{Envelope, EventKind, EventsError, ImageName, Names, pb};
use rebake_proto::control::v1 as api;
use tokio_util::sync::CancellationToken;

use crate::{ControlError, Result, timefmt};

/// After this many consumer errors in a row (no message in between), the watch ends with
/// UNAVAILABLE and the client may reconnect with `from_sequence`.
const MAX_CONSECUTIVE_ERRORS: u32 = 10;

/// The stream of events a watch answers with.
pub(crate) type EventStream = Pin<Box<dyn Stream<Item = Result<api::Event, tonic::Status>> + Send + 'static>>;

// === filter ===

/// What a watch keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EventFilter {
    image: Option<ImageName>,
    kinds: Vec<EventKind>,
}

impl EventFilter {
    /// Validates a request's filter: the image must be a valid name, kinds known names.
    pub(crate) fn from_request(request: &api::WatchEventsRequest) -> Result<Self> {
        let image = match request.image.trim() {
            "" => None,
            name => Some(ImageName::new(name).map_err(|error| ControlError::invalid_image("image", error))?),
        };
        let mut kinds = Vec::new();
        for name in &request.kinds {
            let kind = EventKind::from_name(name.trim()).ok_or_else(|| ControlError::InvalidArgument {
                field: "kinds",
                reason: format!(
                    "unknown event kind {name:?}, expected one of {}",
                    EventKind::ALL.map(EventKind::name).join(", ")
                ),
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(Self { image, kinds })
    }

    /// Whether `event` passes.
    pub(crate) fn matches(&self, event: &api::Event) -> bool {
        let image_ok = self.image.as_ref().is_none_or(|image| image.as_str() == event.image);
        let kind_ok = self.kinds.is_empty() || self.kinds.iter().any(|kind| kind.name() == event.kind);
        image_ok && kind_ok
    }

    /// The narrowest single subject filter the server can apply (NATS 2.9 takes one); the
    /// rest is filtered here by [`Self::matches`].
    pub(crate) fn subject(&self, names: &Names) -> String {
        match (&self.image, self.kinds.as_slice()) {
            (Some(image), [kind]) => names.event_subject(kind.token(), Some(image)),
            (Some(image), _) => names.event_subject("*", Some(image)),
            (None, [kind]) => {
                // `<prefix>.events.>` → `<prefix>.events.<kind>.>`: every image of one kind.
                let all = names.events_subjects();
                format!("{}{}.>", all.trim_end_matches('>'), kind.token())
            }
            (None, _) => names.events_subjects(),
        }
    }
}

// === decoding ===

/// Decodes one message of the EVENTS stream. `fallback_time_ms` (the time JetStream stored it)
/// is used when `ce-time` does not parse.
pub(crate) fn decode_event(
    sequence: u64,
    envelope: &Envelope,
    payload: &[u8],
    fallback_time_ms: i64,
) -> Result<api::Event, EventsError> {
    fn decode<M: prost::Message + Default>(kind: EventKind, payload: &[u8]) -> Result<M, EventsError> {
        M::decode(payload).map_err(|source| EventsError::Decode {
            kind: kind.name(),
            source,
        })
    }
    let kind = envelope.kind;
    let mut event = api::Event {
        sequence,
        kind: kind.name().to_string(),
        time_ms: timefmt::parse_rfc3339_ms(&envelope.time).unwrap_or(fallback_time_ms),
        id: envelope.id.clone(),
        ..Default::default()
    };
    let image;
    match kind {
        EventKind::UpstreamChanged => {
            let body: pb::UpstreamChanged = decode(kind, payload)?;
            image = String::new();
            if let Some(pb::upstream_changed::Change::RegistryTag(tag)) = &body.change {
                event.digest = tag.digest.clone();
            }
            event.summary = upstream_summary(&body);
        }
        EventKind::BuildRequested => {
            let body: pb::BuildRequest = decode(kind, payload)?;
            image = body.image.clone();
            event.build_id = body.build_id.clone();
            event.summary = match causes_summary(&body.causes) {
                causes if causes.is_empty() => "build requested".to_string(),
                causes => format!("build requested: causes {causes}"),
            };
        }
        EventKind::BuildDone => {
            let body: pb::BuildDone = decode(kind, payload)?;
            image = body.image.clone();
            event.build_id = body.build_id.clone();
            event.digest = body.digest.clone();
            event.summary = built_summary(&body);
        }
        EventKind::BuildFailed => {
            let body: pb::BuildFailed = decode(kind, payload)?;
            image = body.image.clone();
            event.build_id = body.build_id.clone();
            let stage = if body.stage.is_empty() {
                "build"
            } else {
                body.stage.as_str()
            };
            event.summary = format!("build failed at {stage}: {}", one_line(&body.reason));
        }
        EventKind::ScanDone => {
            let body: pb::ScanDone = decode(kind, payload)?;
            let build = body.build.clone().unwrap_or_default();
            image = build.image.clone();
            event.build_id = build.build_id.clone();
            event.digest = build.digest.clone();
            event.summary = match (body.passed, body.summary.is_empty(), body.denial.is_empty()) {
                (true, true, _) => "scan passed".to_string(),
                (true, false, _) => format!("scan passed: {}", one_line(&body.summary)),
                (false, _, true) => "scan denied".to_string(),
                (false, _, false) => format!("scan denied: {}", one_line(&body.denial)),
            };
        }
        EventKind::ImagePublished => {
            let body: pb::ImagePublished = decode(kind, payload)?;
            image = body.image.clone();
            event.build_id = body.build_id.clone();
            event.digest = body.digest.clone();
            event.summary = if body.tags.is_empty() {
                format!("published {}@{}", body.repository, body.digest)
            } else {
                format!(
                    "published {}@{} (tags {})",
                    body.repository,
                    body.digest,
                    body.tags.join(", ")
                )
            };
        }
    }
    event.image = if image.is_empty() {
        envelope.subject.clone().unwrap_or_default()
    } else {
        image
    };
    Ok(event)
}

fn upstream_summary(body: &pb::UpstreamChanged) -> String {
    let via = if body.source.is_empty() {
        String::new()
    } else {
        format!(" (via {})", body.source)
    };
    match &body.change {
        Some(pb::upstream_changed::Change::RegistryTag(tag)) if tag.tag.is_empty() => {
            format!("registry push {}/{}@{}{via}", tag.registry, tag.repository, tag.digest)
        }
        Some(pb::upstream_changed::Change::RegistryTag(tag)) => format!(
            "registry tag {}/{}:{} -> {}{via}",
            tag.registry, tag.repository, tag.tag, tag.digest
        ),
        Some(pb::upstream_changed::Change::GitRef(git)) if git.deleted => {
            format!("git {} {} {} deleted{via}", git.repository, git.ref_kind, git.ref_name)
        }
        Some(pb::upstream_changed::Change::GitRef(git)) => {
            let forced = if git.forced { " (forced)" } else { "" };
            format!(
                "git {} {} {} -> {}{forced}{via}",
                git.repository,
                git.ref_kind,
                git.ref_name,
                short_commit(&git.new_commit)
            )
        }
        Some(pb::upstream_changed::Change::Feed(feed)) => {
            let changes: Vec<String> = feed
                .changes
                .iter()
                .take(5)
                .map(|change| format!("{} {}", change.name, change.new_version))
                .collect();
            let more = feed.changes.len().saturating_sub(changes.len());
            format!(
                "feed {} -> {}{}{}{via}",
                feed.feed,
                feed.index_digest,
                if changes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", changes.join(", "))
                },
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        }
        Some(pb::upstream_changed::Change::AdvisoryFix(fix)) => format!(
            "advisory {} for {}: {} {} fixed in {}{via}",
            fix.advisory_id, fix.image, fix.package, fix.installed_version, fix.fixed_version
        ),
        Some(pb::upstream_changed::Change::ManualTrigger(trigger)) => format!(
            "rebuild of {} requested{}: {}{via}",
            trigger.image,
            if trigger.requested_by.is_empty() {
                String::new()
            } else {
                format!(" by {}", trigger.requested_by)
            },
            trigger.reason
        ),
        Some(pb::upstream_changed::Change::Pause(pause)) => format!(
            "{} {}{}{via}",
            pause.image,
            if pause.paused { "paused" } else { "resumed" },
            if pause.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", pause.reason)
            }
        ),
        None => format!("upstream changed{via}"),
    }
}

fn built_summary(body: &pb::BuildDone) -> String {
    let mut summary = format!("built {}@{}", body.staging_repository, body.digest);
    if body.started_at_ms > 0 && body.finished_at_ms >= body.started_at_ms {
        let millis = body.finished_at_ms - body.started_at_ms;
        summary.push_str(&format!(" in {}.{}s", millis / 1000, millis % 1000 / 100));
    }
    if body.size_bytes > 0 {
        summary.push_str(&format!(" ({})", human_size(body.size_bytes)));
    }
    summary
}

/// `kind: description; kind: description`, oldest first.
fn causes_summary(causes: &[pb::Cause]) -> String {
    causes
        .iter()
        .map(|cause| match (cause.kind.is_empty(), cause.description.is_empty()) {
            (_, true) => cause.kind.clone(),
            (true, false) => one_line(&cause.description),
            (false, false) => format!("{}: {}", cause.kind, one_line(&cause.description)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn short_commit(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Keeps a summary on one line (reasons may be multi-line tool output).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Reads the envelope and decodes a JetStream message into an event.
fn event_of_message(message: &jetstream::Message) -> Result<api::Event, String> {
    let info = message
        .info()
        .map_err(|error| format!("no jetstream metadata: {error}"))?;
    let sequence = info.stream_sequence;
    let stored_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
    let headers = message
        .headers
        .as_ref()
        .ok_or_else(|| "message has no headers".to_string())?;
    let envelope = Envelope::from_headers(|name| headers.get(name).map(|value| value.as_str().to_string()))
        .map_err(|error| error.to_string())?;
    decode_event(sequence, &envelope, &message.payload, stored_ms).map_err(|error| {
        let mut reason = error.to_string();
        if let Some(source) = std::error::Error::source(&error) {
            reason.push_str(&format!(": {source}"));
        }
        reason
    })
}

// === the watch ===

/// Opens an ordered consumer on the EVENTS stream and returns the events passing `filter`,
/// from `from_sequence` (0: only new ones). The stream ends when `shutdown` is cancelled or the
/// client goes away (tonic drops it; the ephemeral consumer then expires on the server).
pub(crate) async fn watch(
    bus: &Bus,
    filter: EventFilter,
    from_sequence: u64,
    shutdown: CancellationToken,
) -> Result<EventStream> {
    let stream_name = bus.names().events_stream();
    let watch_error = |reason: String| ControlError::Watch {
        stream: stream_name.clone(),
        reason,
    };
    let deliver_policy = if from_sequence == 0 {
        DeliverPolicy::New
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: from_sequence,
        }
    };
    let consumer = bus
        .jetstream()
        .create_consumer_on_stream(
            push::OrderedConfig {
                deliver_subject: bus.client().new_inbox(),
                description: Some("rebake control watch".to_string()),
                filter_subject: filter.subject(bus.names()),
                deliver_policy,
                ..Default::default()
            },
            stream_name.clone(),
        )
        .await
        .map_err(|error| watch_error(error.to_string()))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|error| watch_error(error.to_string()))?;
    tracing::debug!(stream = %stream_name, from_sequence, ?filter, "watch started");

    struct Watching {
        messages: push::Ordered,
        filter: EventFilter,
        stream_name: String,
    }
    let events = futures::stream::unfold(
        Some(Watching {
            messages,
            filter,
            stream_name,
        }),
        |watching| async move {
            let mut watching = watching?;
            let mut errors = 0;
            loop {
                match watching.messages.next().await {
                    None => return None,
                    Some(Err(error)) => {
                        errors += 1;
                        tracing::warn!(stream = %watching.stream_name, error = %error, errors, "watch consumer error");
                        if errors >= MAX_CONSECUTIVE_ERRORS {
                            let status: tonic::Status = ControlError::Watch {
                                stream: watching.stream_name.clone(),
                                reason: error.to_string(),
                            }
                            .into();
                            return Some((Err(status), None));
                        }
                    }
                    Some(Ok(message)) => {
                        errors = 0;
                        match event_of_message(&message) {
                            Ok(event) if watching.filter.matches(&event) => {
                                return Some((Ok(event), Some(watching)));
                            }
                            Ok(_) => {}
                            Err(reason) => {
                                tracing::debug!(subject = %message.subject, reason, "skipping undecodable event");
                            }
                        }
                    }
                }
            }
        },
    );
    Ok(Box::pin(events.take_until(shutdown.cancelled_owned())))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn envelope(kind: EventKind, subject: Option<&str>) -> Envelope {
        let mut envelope = Envelope::new(kind, "id-1".into(), "/test", subject, None);
        envelope.time = "2026-12-03T13:06:30.123Z".into();
        envelope
    }

    #[test]
    fn published_event() {
        let body = pb::ImagePublished {
            build_id: "b1".into(),
            image: "apps/app".into(),
            repository: "127.0.0.1:5000/apps/app".into(),
            digest: "sha256:abc".into(),
            tags: vec!["latest".into()],
            ..Default::default()
        };
        let event = decode_event(7, &envelope(EventKind::ImagePublished, None), &body.encode_to_vec(), 0).unwrap();
        assert_eq!(event.sequence, 7);
        assert_eq!(event.kind, "image.published");
        assert_eq!(event.image, "apps/app");
        assert_eq!(event.build_id, "b1");
        assert_eq!(event.digest, "sha256:abc");
        assert_eq!(event.id, "id-1");
        assert_eq!(event.time_ms, 1_796_303_190_123);
        assert_eq!(
            event.summary,
            "published 127.0.0.1:5000/apps/app@sha256:abc (tags latest)"
        );
    }

    #[test]
    fn summaries() {
        let failed = pb::BuildFailed {
            image: "app".into(),
            stage: "scan".into(),
            reason: "policy denied:\n  root user".into(),
            ..Default::default()
        };
        let event = decode_event(1, &envelope(EventKind::BuildFailed, None), &failed.encode_to_vec(), 0).unwrap();
        assert_eq!(event.summary, "build failed at scan: policy denied: root user");

        let requested = pb::BuildRequest {
            image: "app".into(),
            causes: vec![
                pb::Cause {
                    kind: "registry-tag".into(),
                    description: "127.0.0.1:5000/base:v2 -> sha256:x".into(),
                    ..Default::default()
                },
                pb::Cause {
                    kind: "manual".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let event = decode_event(
            2,
            &envelope(EventKind::BuildRequested, None),
            &requested.encode_to_vec(),
            0,
        )
        .unwrap();
        assert_eq!(
            event.summary,
            "build requested: causes registry-tag: 127.0.0.1:5000/base:v2 -> sha256:x; manual"
        );

        let done = pb::BuildDone {
            image: "app".into(),
            staging_repository: "r/staging/app".into(),
            digest: "sha256:d".into(),
            started_at_ms: 1000,
            finished_at_ms: 2500,
            size_bytes: 2_500_000,
            ..Default::default()
        };
        let event = decode_event(3, &envelope(EventKind::BuildDone, None), &done.encode_to_vec(), 0).unwrap();
        assert_eq!(event.summary, "built r/staging/app@sha256:d in 1.5s (2.5 MB)");
        assert_eq!(event.digest, "sha256:d");

        let scan = pb::ScanDone {
            build: Some(done),
            passed: false,
            denial: "no-root".into(),
            ..Default::default()
        };
        let event = decode_event(4, &envelope(EventKind::ScanDone, None), &scan.encode_to_vec(), 0).unwrap();
        assert_eq!(
            (event.image.as_str(), event.summary.as_str()),
            ("app", "scan denied: no-root")
        );

        let upstream = pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::RegistryTag(pb::RegistryTagChanged {
                registry: "127.0.0.1:5000".into(),
                repository: "base".into(),
                tag: "v2".into(),
                digest: "sha256:e".into(),
                ..Default::default()
            })),
            source: "webhook/distribution".into(),
            ..Default::default()
        };
        let event = decode_event(
            5,
            &envelope(EventKind::UpstreamChanged, None),
            &upstream.encode_to_vec(),
            9,
        )
        .unwrap();
        assert_eq!(
            event.summary,
            "registry tag 127.0.0.1:5000/base:v2 -> sha256:e (via webhook/distribution)"
        );
        assert_eq!(event.image, "");

        let git = pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::GitRef(pb::GitRefChanged {
                repository: "github.com/octo/app".into(),
                ref_kind: "branch".into(),
                ref_name: "main".into(),
                new_commit: "0123456789abcdef0123456789abcdef01234567".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let event = decode_event(6, &envelope(EventKind::UpstreamChanged, None), &git.encode_to_vec(), 0).unwrap();
        assert_eq!(event.summary, "git github.com/octo/app branch main -> 0123456789ab");
    }

    #[test]
    fn image_falls_back_to_the_envelope_subject() {
        let body = pb::BuildFailed::default();
        let event = decode_event(
            1,
            &envelope(EventKind::BuildFailed, Some("apps/x")),
            &body.encode_to_vec(),
            0,
        )
        .unwrap();
        assert_eq!(event.image, "apps/x");
        assert_eq!(event.summary, "build failed at build: ");
    }

    #[test]
    fn bad_bodies_and_times() {
        assert!(decode_event(1, &envelope(EventKind::ImagePublished, None), b"\xff\xff\xff", 0).is_err());
        let mut bad_time = envelope(EventKind::BuildFailed, None);
        bad_time.time = "later".into();
        let event = decode_event(1, &bad_time, &[], 77).unwrap();
        assert_eq!(event.time_ms, 77);
    }

    #[test]
    fn filter() {
        let request = |image: &str, kinds: &[&str]| api::WatchEventsRequest {
            image: image.into(),
            kinds: kinds.iter().map(|kind| kind.to_string()).collect(),
            from_sequence: 0,
        };
        let event = |image: &str, kind: &str| api::Event {
            image: image.into(),
            kind: kind.into(),
            ..Default::default()
        };
        let all = EventFilter::from_request(&request("", &[])).unwrap();
        assert!(all.matches(&event("app", "build.done")));
        assert!(all.matches(&event("", "upstream.changed")));

        let app = EventFilter::from_request(&request("app", &[])).unwrap();
        assert!(app.matches(&event("app", "build.done")));
        assert!(!app.matches(&event("apps/app", "build.done")));
        assert!(!app.matches(&event("", "upstream.changed")));

        let kinds = EventFilter::from_request(&request("", &["build.failed", "image.published"])).unwrap();
        assert!(kinds.matches(&event("x", "image.published")));
        assert!(!kinds.matches(&event("x", "build.done")));

        assert!(matches!(
            EventFilter::from_request(&request("", &["build.exploded"])),
            Err(ControlError::InvalidArgument { field: "kinds", .. })
        ));
        assert!(matches!(
            EventFilter::from_request(&request("Not Valid", &[])),
            Err(ControlError::InvalidArgument { field: "image", .. })
        ));
    }

    #[test]
    fn server_side_subjects() {
        let names = Names::new("rb").unwrap();
        let request = |image: &str, kinds: &[&str]| {
            EventFilter::from_request(&api::WatchEventsRequest {
                image: image.into(),
                kinds: kinds.iter().map(|kind| kind.to_string()).collect(),
                from_sequence: 0,
            })
            .unwrap()
        };
        assert_eq!(request("", &[]).subject(&names), "rb.events.>");
        assert_eq!(request("apps/web", &[]).subject(&names), "rb.events.*.apps.web");
        assert_eq!(
            request("apps/web", &["build.done"]).subject(&names),
            "rb.events.build-done.apps.web"
        );
        assert_eq!(request("", &["build.done"]).subject(&names), "rb.events.build-done.>");
        assert_eq!(request("", &["build.done", "scan.done"]).subject(&names), "rb.events.>");
        assert_eq!(
            request("app", &["build.done", "scan.done"]).subject(&names),
            "rb.events.*.app"
        );
        // The subjects an event is published on pass the filter.
        let image = ImageName::new("apps/web").unwrap();
        let published = names.event_subject(EventKind::BuildDone.token(), Some(&image));
        assert!(published.starts_with(request("", &["build.done"]).subject(&names).trim_end_matches('>')));
    }
}
