//! `ListBuilds` and `GetBuild`, and the helpers every build-reading RPC shares: reading all
//! build records of the `builds` bucket (keys with a `.` are documents *about* a build —
//! `<id>.scan`, `<id>.spdx`, … — and are skipped) and the opaque page tokens.
//!
//! `ListBuilds` sorts newest first by `requested_at_ms` (ties by build id, descending), then
//! filters by image and status; its page token encodes the offset into that order.

use rebake_bus::Kv;
use rebake_events::{ImageName, state::BuildRecord};
use rebake_proto::control::v1 as api;

use crate::{ControlError, Result, images::build_view, service::ControlService};

/// Default and largest `ListBuilds` page.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 500;

/// Every build status, as the API spells it.
pub(crate) const BUILD_STATUSES: [&str; 7] = [
    "requested",
    "building",
    "built",
    "scanned",
    "published",
    "failed",
    "skipped",
];

/// Every build record (unordered). A corrupt record is logged and skipped.
pub(crate) async fn all_builds(builds: &Kv) -> Result<Vec<BuildRecord>> {
    let keys: Vec<String> = builds
        .keys()
        .await?
        .into_iter()
        .filter(|key| !key.contains('.'))
        .collect();
    let loaded = crate::kvread::read_lenient::<BuildRecord>(builds, keys, "build record").await?;
    Ok(loaded
        .into_iter()
        .map(|(key, mut record)| {
            if record.build_id.is_empty() {
                record.build_id = key;
            }
            record
        })
        .collect())
}

/// Validates a build id given in a request.
pub(crate) fn check_build_id(field: &'static str, build_id: &str) -> Result<String> {
    let build_id = build_id.trim();
    if build_id.is_empty() || build_id.contains('.') || build_id.contains('/') || build_id.contains(' ') {
        return Err(ControlError::InvalidArgument {
            field,
            reason: format!("{build_id:?} is not a build id"),
        });
    }
    Ok(build_id.to_string())
}

// === page tokens ===

/// An opaque page token: `kind:value`, hex-encoded (so clients do not build them).
pub(crate) fn encode_token(kind: &str, value: &str) -> String {
    format!("{kind}:{value}")
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The value of a token made by [`encode_token`] with the same `kind`; `None` for an empty
/// token. Anything else is INVALID_ARGUMENT.
pub(crate) fn decode_token(kind: &str, token: &str) -> Result<Option<String>> {
    let token = token.trim();
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || ControlError::InvalidArgument {
        field: "page_token",
        reason: "not a page token of this request".to_string(),
    };
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&token[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(|value| Some(value.to_string()))
        .ok_or_else(invalid)
}

/// The page size asked for: `default` when 0, at most `max`; negative is invalid.
pub(crate) fn page_size(requested: i32, default: usize, max: usize) -> Result<usize> {
    match requested {
        0 => Ok(default),
        size if size < 0 => Err(ControlError::InvalidArgument {
            field: "page_size",
            reason: format!("{size} is negative"),
        }),
        size => Ok((size as usize).min(max)),
    }
}

/// One page of `items` from the offset in `token`, and the next token.
fn offset_page<T>(items: Vec<T>, token: &str, size: usize) -> Result<(Vec<T>, String)> {
    let offset = match decode_token("offset", token)? {
        None => 0,
        Some(value) => value.parse::<usize>().map_err(|_| ControlError::InvalidArgument {
            field: "page_token",
            reason: "not a page token of this request".to_string(),
        })?,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
    let end = offset.saturating_add(page.len());
    let next = if end < total {
        encode_token("offset", &end.to_string())
    } else {
        String::new()
    };
    Ok((page, next))
}

/// Newest first by request time, ties by build id (descending).
pub(crate) fn newest_first(builds: &mut [BuildRecord]) {
    builds.sort_by(|a, b| {
        b.requested_at_ms
            .cmp(&a.requested_at_ms)
            .then_with(|| b.build_id.cmp(&a.build_id))
    });
}

/// The filtered, sorted page of `ListBuilds` over `builds`.
fn list_page(mut builds: Vec<BuildRecord>, request: &api::ListBuildsRequest) -> Result<api::ListBuildsResponse> {
    let image = request.image.trim();
    if !image.is_empty() {
        ImageName::new(image).map_err(|error| ControlError::invalid_image("image", error))?;
    }
    let status = request.status.trim();
    if !status.is_empty() && !BUILD_STATUSES.contains(&status) {
        return Err(ControlError::InvalidArgument {
            field: "status",
            reason: format!(
                "unknown status {status:?}, expected one of {}",
                BUILD_STATUSES.join(", ")
            ),
        });
    }
    let size = page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    builds.retain(|build| (image.is_empty() || build.image == image) && (status.is_empty() || build.status == status));
    newest_first(&mut builds);
    let (page, next_page_token) = offset_page(builds, &request.page_token, size)?;
    Ok(api::ListBuildsResponse {
        builds: page
            .iter()
            .map(|record| build_view(&record.build_id, Some(record)))
            .collect(),
        next_page_token,
    })
}

pub(crate) async fn list_builds(
    service: &ControlService,
    request: &api::ListBuildsRequest,
) -> Result<api::ListBuildsResponse> {
    // Validate before reading anything.
    list_page(Vec::new(), request)?;
    let builds = all_builds(&service.images.builds).await?;
    list_page(builds, request)
}

pub(crate) async fn get_build(service: &ControlService, request: &api::GetBuildRequest) -> Result<api::BuildDetail> {
    let build_id = check_build_id("build_id", &request.build_id)?;
    let record = service
        .images
        .builds
        .get::<BuildRecord>(&build_id)
        .await?
        .ok_or(ControlError::BuildNotFound {
            build_id: build_id.clone(),
        })?;
    Ok(build_detail(&build_id, &record))
}

/// Milliseconds as a short human duration (`850ms`, `12.3s`, `4m05s`).
fn duration_text(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The API's `BuildDetail` of a record.
pub(crate) fn build_detail(build_id: &str, record: &BuildRecord) -> api::BuildDetail {
    let failed = record.status == "failed";
    let stages: Vec<api::Stage> = record
        .stages
        .iter()
        .map(|stage| api::Stage {
            name: stage.name.clone(),
            started_at_ms: stage.started_at_ms,
            finished_at_ms: stage.finished_at_ms,
            duration_ms: if stage.finished_at_ms >= stage.started_at_ms && stage.started_at_ms > 0 {
                stage.finished_at_ms - stage.started_at_ms
            } else {
                0
            },
            ok: stage.ok,
            summary: stage.summary.clone(),
        })
        .collect();
    let failure_stage = if failed {
        stages
            .iter()
            .rev()
            .find(|stage| !stage.ok)
            .map(|stage| stage.name.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let failure_reason = if failed { record.reason.clone() } else { String::new() };
    let mut lines: Vec<String> = stages
        .iter()
        .map(|stage| {
            let outcome = if stage.ok { "ok" } else { "failed" };
            let mut line = format!("[{}] {outcome} in {}", stage.name, duration_text(stage.duration_ms));
            if !stage.summary.is_empty() {
                line.push_str(": ");
                line.push_str(&stage.summary);
            }
            line
        })
        .collect();
    if failed && !failure_reason.is_empty() {
        let stage = if failure_stage.is_empty() {
            String::new()
        } else {
            format!(" in {failure_stage}")
        };
        lines.push(format!("failed{stage}: {failure_reason}"));
    } else if !record.reason.is_empty() {
        lines.push(format!("{}: {}", record.status, record.reason));
    }
    api::BuildDetail {
        build: Some(build_view(build_id, Some(record))),
        image: record.image.clone(),
        stages,
        logs_excerpt: lines.join("\n"),
        failure_stage,
        failure_reason,
        base_digest: record.base_digest.clone(),
        sources: record
            .sources
            .iter()
            .map(|source| api::SourceCommit {
                url: source.url.clone(),
                ref_name: source.ref_name.clone(),
                commit: source.commit.clone(),
            })
            .collect(),
        packages: record.packages.iter().map(package_view).collect(),
        causes: record
            .causes
            .iter()
            .map(|cause| api::Cause {
                kind: cause.kind.clone(),
                description: cause.description.clone(),
                event_id: cause.event_id.clone(),
                at_ms: cause.at_ms,
            })
            .collect(),
        size_bytes: record.size_bytes,
        file_count: record.file_count,
    }
}

/// The API's `PackageVersion`.
pub(crate) fn package_view(package: &rebake_events::state::PackageRecord) -> api::PackageVersion {
    api::PackageVersion {
        name: package.name.clone(),
        version: package.version.clone(),
        architecture: package.architecture.clone(),
        platform: package.platform.clone(),
        feed: package.feed.clone(),
    }
}

#[cfg(test)]
mod tests {
    use rebake_events::state::{CauseRecord, StageRecord};

    use super::*;

    fn record(id: &str, image: &str, status: &str, requested: i64) -> BuildRecord {
        BuildRecord {
            build_id: id.into(),
            image: image.into(),
            status: status.into(),
            requested_at_ms: requested,
            ..Default::default()
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = encode_token("offset", "50");
        assert!(!token.contains("50") || token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(decode_token("offset", &token).unwrap().as_deref(), Some("50"));
        assert_eq!(decode_token("offset", "").unwrap(), None);
        assert!(decode_token("after", &token).is_err(), "kind is checked");
        assert!(decode_token("offset", "zz").is_err());
        assert!(decode_token("offset", "abc").is_err());
        assert_eq!(page_size(0, 50, 500).unwrap(), 50);
        assert_eq!(page_size(9999, 50, 500).unwrap(), 500);
        assert_eq!(page_size(3, 50, 500).unwrap(), 3);
        assert!(page_size(-1, 50, 500).is_err());
    }

    #[test]
    fn list_is_newest_first_filtered_and_paged() {
        let builds = vec![
            record("b1", "app", "published", 10),
            record("b2", "child", "published", 20),
            record("b3", "app", "failed", 30),
            record("b4", "app", "published", 40),
        ];
        let request = |image: &str, status: &str, size: i32, token: &str| api::ListBuildsRequest {
            image: image.into(),
            status: status.into(),
            page_size: size,
            page_token: token.into(),
        };
        let all = list_page(builds.clone(), &request("", "", 0, "")).unwrap();
        let ids = |response: &api::ListBuildsResponse| -> Vec<String> {
            response.builds.iter().map(|b| b.build_id.clone()).collect()
        };
        assert_eq!(ids(&all), ["b4", "b3", "b2", "b1"]);
        assert!(all.next_page_token.is_empty());

        let app = list_page(builds.clone(), &request("app", "published", 0, "")).unwrap();
        assert_eq!(ids(&app), ["b4", "b1"]);

        let first = list_page(builds.clone(), &request("", "", 3, "")).unwrap();
        assert_eq!(ids(&first), ["b4", "b3", "b2"]);
        let second = list_page(builds.clone(), &request("", "", 3, &first.next_page_token)).unwrap();
        assert_eq!(ids(&second), ["b1"]);
        assert!(second.next_page_token.is_empty());

        assert!(list_page(builds.clone(), &request("", "broken", 0, "")).is_err());
        assert!(list_page(builds, &request("", "", 0, "nothex")).is_err());
    }

    #[test]
    fn detail_has_durations_excerpt_and_failure() {
        let mut record = record("b9", "app", "failed", 1);
        record.reason = "denied by policy".into();
        record.causes = vec![CauseRecord {
            kind: "registry-tag".into(),
            description: "base:v1 -> sha256:x".into(),
            event_id: "e1".into(),
            at_ms: 1,
        }];
        record.stages = vec![
            StageRecord {
                name: "build".into(),
                started_at_ms: 1000,
                finished_at_ms: 3500,
                ok: true,
                summary: "2 layers".into(),
            },
            StageRecord {
                name: "scan".into(),
                started_at_ms: 3500,
                finished_at_ms: 3600,
                ok: false,
                summary: "1 critical".into(),
            },
        ];
        let detail = build_detail("b9", &record);
        assert_eq!(detail.stages[0].duration_ms, 2500);
        assert_eq!(detail.stages[1].duration_ms, 100);
        assert_eq!(detail.failure_stage, "scan");
        assert_eq!(detail.failure_reason, "denied by policy");
        assert_eq!(
            detail.logs_excerpt,
            "[build] ok in 2.5s: 2 layers\n[scan] failed in 100ms: 1 critical\nfailed in scan: denied by policy"
        );
        assert_eq!(detail.causes[0].event_id, "e1");
        assert_eq!(detail.build.unwrap().status, "failed");

        let mut ok = record.clone();
        ok.status = "published".into();
        ok.reason.clear();
        let detail = build_detail("b9", &ok);
        assert!(detail.failure_stage.is_empty() && detail.failure_reason.is_empty());
    }

    #[test]
    fn build_ids_are_checked() {
        assert_eq!(check_build_id("build_id", " b1 ").unwrap(), "b1");
        assert!(check_build_id("build_id", "").is_err());
        assert!(check_build_id("build_id", "b1.scan").is_err());
    }
}
