//! The operator's requests: `TriggerRebuild`, `Pause`, `Resume`.
//!
//! None of them changes state here: each one publishes an `UpstreamChanged` event on
//! `<prefix>.upstream.manual` (a `ManualTrigger` or a `PauseChanged`), so an operator's
//! request travels the same path as a webhook — the resolver is still the only writer of
//! image state, and a request accepted here is never lost (JetStream acknowledged it).
//! The image must be in the catalog bucket; reasons are required for triggers and pauses
//! (they are recorded as the build's cause, or shown as the image's status reason).

use rebake_events::{Bucket, BuildId, Envelope, EventKind, ImageName, now_ms, pb};
use rebake_proto::control::v1 as api;

use crate::{ControlError, Result, auth::Caller, service::ControlService};

/// The CloudEvents source of operator requests.
const CE_SOURCE: &str = "rebake/control";

/// Longest reason accepted (it ends up in build records and status lines).
const MAX_REASON_CHARS: usize = 1000;

/// Who is calling: the control token's name when authentication is on, else empty.
pub(crate) fn caller<T>(request: &tonic::Request<T>) -> String {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.name.clone())
        .unwrap_or_default()
}

pub(crate) async fn trigger_rebuild(
    service: &ControlService,
    request: &api::TriggerRebuildRequest,
    caller: &str,
) -> Result<api::TriggerRebuildResponse> {
    let image = catalog_image(service, &request.image).await?;
    let reason = required_reason(&request.reason)?;
    // Read before publishing: watching from here + 1 sees everything the trigger causes.
    let events_sequence = events_last_sequence(service).await?;
    let change = pb::upstream_changed::Change::ManualTrigger(pb::ManualTrigger {
        image: image.to_string(),
        reason,
        requested_by: caller.to_string(),
    });
    let event_id = publish(service, &image, change).await?;
    tracing::info!(image = %image, event_id, requested_by = caller, "rebuild triggered by operator");
    Ok(api::TriggerRebuildResponse {
        event_id,
        events_sequence,
    })
}

pub(crate) async fn pause(
    service: &ControlService,
    request: &api::PauseRequest,
    caller: &str,
) -> Result<api::PauseResponse> {
    let image = catalog_image(service, &request.image).await?;
    let reason = required_reason(&request.reason)?;
    let change = pb::upstream_changed::Change::Pause(pb::PauseChanged {
        image: image.to_string(),
        paused: true,
        reason,
        requested_by: caller.to_string(),
    });
    let event_id = publish(service, &image, change).await?;
    tracing::info!(image = %image, event_id, requested_by = caller, "image paused by operator");
    Ok(api::PauseResponse {
        image: image.to_string(),
        paused: true,
        event_id,
    })
}

pub(crate) async fn resume(
    service: &ControlService,
    request: &api::ResumeRequest,
    caller: &str,
) -> Result<api::PauseResponse> {
    let image = catalog_image(service, &request.image).await?;
    let change = pb::upstream_changed::Change::Pause(pb::PauseChanged {
        image: image.to_string(),
        paused: false,
        reason: String::new(),
        requested_by: caller.to_string(),
    });
    let event_id = publish(service, &image, change).await?;
    tracing::info!(image = %image, event_id, requested_by = caller, "image resumed by operator");
    Ok(api::PauseResponse {
        image: image.to_string(),
        paused: false,
        event_id,
    })
}

/// The image named in the request; INVALID_ARGUMENT unless it is a valid name in the catalog.
async fn catalog_image(service: &ControlService, name: &str) -> Result<ImageName> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ControlError::InvalidArgument {
            field: "image",
            reason: "required".to_string(),
        });
    }
    let image = ImageName::new(name.to_string()).map_err(|error| ControlError::invalid_image("image", error))?;
    let catalog = service.bus.kv(Bucket::Catalog).await?;
    if catalog.get::<serde_json::Value>(&image.kv_key()).await?.is_none() {
        return Err(ControlError::InvalidArgument {
            field: "image",
            reason: format!("{image} is not in the catalog"),
        });
    }
    Ok(image)
}

fn required_reason(reason: &str) -> Result<String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ControlError::InvalidArgument {
            field: "reason",
            reason: "required".to_string(),
        });
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ControlError::InvalidArgument {
            field: "reason",
            reason: format!("longer than {MAX_REASON_CHARS} characters"),
        });
    }
    Ok(reason.to_string())
}

/// The EVENTS stream's last sequence now.
async fn events_last_sequence(service: &ControlService) -> Result<u64> {
    let stream_name = service.bus.names().events_stream();
    let watch_error = |reason: String| ControlError::Watch {
        stream: stream_name.clone(),
        reason,
    };
    let mut stream = service
        .bus
        .jetstream()
        .get_stream(stream_name.clone())
        .await
        .map_err(|error| watch_error(error.to_string()))?;
    let info = stream.info().await.map_err(|error| watch_error(error.to_string()))?;
    Ok(info.state.last_sequence)
}

/// Publishes one operator request on the manual upstream subject; returns its event id.
async fn publish(service: &ControlService, image: &ImageName, change: pb::upstream_changed::Change) -> Result<String> {
    let id = format!("manual-{}", BuildId::generate());
    let envelope = Envelope::new(
        EventKind::UpstreamChanged,
        id.clone(),
        CE_SOURCE,
        Some(image.as_str()),
        None,
    );
    let event = pb::UpstreamChanged {
        change: Some(change),
        source: "control".to_string(),
        received_at_ms: now_ms(),
    };
    service
        .bus
        .publish(service.bus.names().upstream_manual_subject(), &envelope, &event)
        .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(matches!(
            required_reason("  "),
            Err(ControlError::InvalidArgument { field: "reason", .. })
        ));
        assert_eq!(required_reason(" CVE-2026-1 fix ").unwrap(), "CVE-2026-1 fix");
        assert!(required_reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
    }

    #[test]
    fn caller_comes_from_the_extensions() {
        let mut request = tonic::Request::new(());
        assert_eq!(caller(&request), "");
        request.extensions_mut().insert(Caller {
            name: "alice".into(),
            role: crate::auth::Role::Admin,
        });
        assert_eq!(caller(&request), "alice");
    }
}
