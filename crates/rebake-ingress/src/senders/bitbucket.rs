//! Bitbucket webhooks, Cloud (`repo:push`) and Data Center (`repo:refs_changed`): every
//! branch or tag a push moved becomes a [`pb::GitRefChanged`] (one request may carry several);
//! `diagnostics:ping` is answered; every other event is acknowledged as unknown.
//!
//! What is read, and from where:
//!
//! - Authentication (both products): `X-Hub-Signature: sha256=<hex>`, the HMAC-SHA256 of the
//!   raw body with the hook's secret (SHA-256 despite GitHub's SHA-1 meaning of this header
//!   name). Any other scheme is refused.
//! - Event type: `X-Event-Key` (Data Center also names it in the body's `eventKey`, used when
//!   the header is absent).
//! - Delivery id: Cloud `X-Request-UUID`; Data Center `X-Request-Id`. Cloud's `X-Hook-UUID`
//!   names the hook, not the delivery, so it is never used as one.
//! - Body: `application/json` only.
//!   - Cloud: `push.changes[]`, each with `old` and `new` (either may be null), `created`,
//!     `closed`, `forced`; `new.type` is `branch`, `tag` or `annotated_tag`; commits are
//!     `new.target.hash` and `old.target.hash`. A closed change (`new` null) is a deletion,
//!     named by `old`. The repository is `repository.links.html.href` (else
//!     `bitbucket.org/<full_name>`).
//!   - Data Center: `changes[]`, each with `ref.id` (`refs/heads/…`, `refs/tags/…`; else
//!     `refId`), `fromHash`, `toHash` and `type` (`ADD`, `UPDATE`, `DELETE`). It does not say
//!     whether an update was forced. The repository is named by its HTTP clone link
//!     (`repository.links.clone[name=http]`, `https://host/scm/proj/repo.git`), which is the URL
//!     people configure; failing that, by `repository.links.self[0].href` with its
//!     `/projects/<key>/repos/<slug>/browse` rewritten to the same `/scm/<key>/<slug>` form
//!     (`/users/<name>/repos/<slug>` to `/scm/~<name>/<slug>`), so both give one identity.
//!     A repository without links cannot be named (the payload has no host) and is refused.
//!
//! Refs that are neither branches nor tags (Mercurial `named_branch`, `bookmark`, other
//! `refs/…`) are skipped.

use rebake_events::pb;
use serde::Deserialize;

use super::common::{branch_or_tag, media_type_in};
use super::{Change, Credentials, Inbound, Parsed, Refusal, hmac_sha256_matches, json, valid_commit};

const JSON: &str = "application/json";
const SIGNATURE_HEADER: &str = "x-hub-signature";
const EVENT_HEADER: &str = "x-event-key";
const CLOUD_DELIVERY_HEADER: &str = "x-request-uuid";
const DC_DELIVERY_HEADER: &str = "x-request-id";
const PING: &str = "diagnostics:ping";
const CLOUD_PUSH: &str = "repo:push";
const DC_REFS_CHANGED: &str = "repo:refs_changed";

// === Cloud payload ===

#[derive(Debug, Deserialize)]
struct CloudEvent {
    push: Option<CloudPush>,
    repository: Option<CloudRepository>,
}

#[derive(Debug, Deserialize)]
struct CloudPush {
    changes: Option<Vec<CloudChange>>,
}

#[derive(Debug, Deserialize)]
struct CloudChange {
    new: Option<CloudRef>,
    old: Option<CloudRef>,
    closed: Option<bool>,
    forced: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct CloudRef {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    target: Option<CloudTarget>,
}

#[derive(Debug, Deserialize)]
struct CloudTarget {
    hash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CloudRepository {
    links: Option<CloudLinks>,
    full_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CloudLinks {
    html: Option<Link>,
}

#[derive(Debug, Deserialize)]
struct Link {
    href: Option<String>,
    name: Option<String>,
}

// === Data Center payload ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DcEvent {
    changes: Option<Vec<DcChange>>,
    repository: Option<DcRepository>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DcChange {
    #[serde(rename = "ref")]
    git_ref: Option<DcRef>,
    ref_id: Option<String>,
    from_hash: Option<String>,
    to_hash: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DcRef {
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DcRepository {
    links: Option<DcLinks>,
}

#[derive(Debug, Deserialize)]
struct DcLinks {
    clone: Option<Vec<Link>>,
    #[serde(rename = "self")]
    self_links: Option<Vec<Link>>,
}

/// Checks `X-Hub-Signature: sha256=<hex>` over the raw body (Cloud and Data Center alike).
pub(crate) fn verify(inbound: &Inbound<'_>, credentials: &Credentials<'_>) -> Result<(), Refusal> {
    let Some(signature) = inbound.header(SIGNATURE_HEADER) else {
        return Err(Refusal::Unauthorized("missing x-hub-signature header"));
    };
    if !signature.starts_with("sha256=") {
        return Err(Refusal::Unauthorized("unsupported signature: expected sha256=<hex>"));
    }
    if hmac_sha256_matches(credentials.secret, inbound.body, signature) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized("invalid signature"))
    }
}

/// Reads a verified Bitbucket Cloud delivery.
pub(crate) fn parse_cloud(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    media_type_in(inbound, &[JSON], JSON)?;
    let Some(event) = inbound.header(EVENT_HEADER) else {
        return Err(Refusal::Malformed("missing x-event-key header".to_string()));
    };
    match event {
        CLOUD_PUSH => {}
        PING => return Ok(Parsed::Ignored("ping".to_string())),
        other => return Ok(Parsed::Unknown(format!("bitbucket event {other} is not handled"))),
    }
    let delivery_id = inbound.header(CLOUD_DELIVERY_HEADER).map(str::to_string);
    let payload: CloudEvent = json(inbound.body, "bitbucket push payload")?;
    let Some(changes) = payload.push.and_then(|push| push.changes) else {
        return Err(Refusal::Malformed(
            "bitbucket push payload has no push.changes".to_string(),
        ));
    };
    let repository = cloud_identity(payload.repository.as_ref())?;
    let delivery = delivery_id.clone().unwrap_or_default();
    let mut normalised = Vec::new();
    for change in changes {
        if let Some(change) = cloud_change(change, &repository, &delivery)? {
            normalised.push(Change::Git(change));
        }
    }
    Ok(Parsed::Changes {
        delivery_id,
        changes: normalised,
    })
}

/// Reads a verified Bitbucket Data Center delivery.
pub(crate) fn parse_dc(inbound: &Inbound<'_>) -> Result<Parsed, Refusal> {
    media_type_in(inbound, &[JSON], JSON)?;
    let event = match inbound.header(EVENT_HEADER) {
        Some(event) => event.to_string(),
        None => {
            let document: serde_json::Value = json(inbound.body, "bitbucket payload")?;
            let Some(event) = document.get("eventKey").and_then(serde_json::Value::as_str) else {
                return Err(Refusal::Malformed(
                    "missing x-event-key header and no eventKey in the body".to_string(),
                ));
            };
            event.to_string()
        }
    };
    match event.as_str() {
        DC_REFS_CHANGED => {}
        PING => return Ok(Parsed::Ignored("ping".to_string())),
        other => return Ok(Parsed::Unknown(format!("bitbucket event {other} is not handled"))),
    }
    let delivery_id = inbound.header(DC_DELIVERY_HEADER).map(str::to_string);
    let payload: DcEvent = json(inbound.body, "bitbucket refs_changed payload")?;
    let Some(changes) = payload.changes else {
        return Err(Refusal::Malformed(
            "bitbucket refs_changed payload has no changes".to_string(),
        ));
    };
    let repository = dc_identity(payload.repository.as_ref())?;
    let delivery = delivery_id.clone().unwrap_or_default();
    let mut normalised = Vec::new();
    for change in changes {
        if let Some(change) = dc_change(change, &repository, &delivery)? {
            normalised.push(Change::Git(change));
        }
    }
    Ok(Parsed::Changes {
        delivery_id,
        changes: normalised,
    })
}

/// One Cloud change; `None` for refs that are neither branches nor tags.
fn cloud_change(
    change: CloudChange,
    repository: &str,
    delivery_id: &str,
) -> Result<Option<pb::GitRefChanged>, Refusal> {
    let deleted = change.new.is_none() || change.closed == Some(true);
    let subject = if deleted {
        change.old.as_ref().or(change.new.as_ref())
    } else {
        change.new.as_ref()
    };
    let Some(subject) = subject else {
        return Err(Refusal::Malformed(
            "bitbucket change has neither new nor old".to_string(),
        ));
    };
    let ref_kind = match subject.kind.as_deref() {
        Some("branch") => "branch",
        Some("tag" | "annotated_tag") => "tag",
        Some(_) => return Ok(None),
        None => return Err(Refusal::Malformed("bitbucket change has no ref type".to_string())),
    };
    let Some(ref_name) = subject.name.as_deref().filter(|name| !name.is_empty()) else {
        return Err(Refusal::Malformed("bitbucket change has no ref name".to_string()));
    };
    let new_commit = if deleted {
        String::new()
    } else {
        let hash = target_hash(Some(subject));
        valid_commit(hash)
            .ok_or_else(|| Refusal::Malformed(format!("invalid new.target.hash {hash:?}: expected 40 hex digits")))?
    };
    Ok(Some(pb::GitRefChanged {
        repository: repository.to_string(),
        ref_kind: ref_kind.to_string(),
        ref_name: ref_name.to_string(),
        new_commit,
        old_commit: valid_commit(target_hash(change.old.as_ref())).unwrap_or_default(),
        deleted,
        forced: change.forced.unwrap_or(false),
        delivery_id: delivery_id.to_string(),
    }))
}

fn target_hash(reference: Option<&CloudRef>) -> &str {
    reference
        .and_then(|reference| reference.target.as_ref())
        .and_then(|target| target.hash.as_deref())
        .unwrap_or_default()
}

/// `repository.links.html.href`, else `bitbucket.org/<full_name>`, normalised.
fn cloud_identity(repository: Option<&CloudRepository>) -> Result<String, Refusal> {
    let html = repository
        .and_then(|repository| repository.links.as_ref())
        .and_then(|links| links.html.as_ref())
        .and_then(|html| html.href.as_deref())
        .map(rebake_config::normalise_git_identity)
        .filter(|identity| !identity.is_empty());
    let from_full_name = || {
        repository
            .and_then(|repository| repository.full_name.as_deref())
            .filter(|full_name| !full_name.trim().is_empty())
            .map(|full_name| rebake_config::normalise_git_identity(&format!("bitbucket.org/{}", full_name.trim())))
    };
    html.or_else(from_full_name)
        .ok_or_else(|| Refusal::Malformed("bitbucket push payload has no repository link".to_string()))
}

/// One Data Center change; `None` for refs that are neither branches nor tags.
fn dc_change(change: DcChange, repository: &str, delivery_id: &str) -> Result<Option<pb::GitRefChanged>, Refusal> {
    let full_ref = change
        .git_ref
        .as_ref()
        .and_then(|reference| reference.id.as_deref())
        .or(change.ref_id.as_deref());
    let Some(full_ref) = full_ref else {
        return Err(Refusal::Malformed("bitbucket change has no ref id".to_string()));
    };
    let Some((ref_kind, ref_name)) = branch_or_tag(full_ref)? else {
        return Ok(None);
    };
    let deleted = match change.kind.as_deref() {
        Some("ADD" | "UPDATE") => false,
        Some("DELETE") => true,
        Some(other) => return Err(Refusal::Malformed(format!("unknown change type {other:?}"))),
        None => return Err(Refusal::Malformed("bitbucket change has no type".to_string())),
    };
    let new_commit = if deleted {
        String::new()
    } else {
        let to_hash = change.to_hash.as_deref().unwrap_or_default();
        valid_commit(to_hash)
            .ok_or_else(|| Refusal::Malformed(format!("invalid toHash {to_hash:?}: expected 40 hex digits")))?
    };
    Ok(Some(pb::GitRefChanged {
        repository: repository.to_string(),
        ref_kind: ref_kind.to_string(),
        ref_name: ref_name.to_string(),
        new_commit,
        old_commit: change.from_hash.as_deref().and_then(valid_commit).unwrap_or_default(),
        deleted,
        forced: false,
        delivery_id: delivery_id.to_string(),
    }))
}

/// The HTTP clone link, else the browse link in clone form, normalised.
fn dc_identity(repository: Option<&DcRepository>) -> Result<String, Refusal> {
    let links = repository.and_then(|repository| repository.links.as_ref());
    let clone_http = links
        .and_then(|links| links.clone.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|link| {
            link.name
                .as_deref()
                .is_some_and(|name| name.eq_ignore_ascii_case("http") || name.eq_ignore_ascii_case("https"))
        })
        .find_map(|link| link.href.as_deref())
        .map(rebake_config::normalise_git_identity)
        .filter(|identity| !identity.is_empty());
    if let Some(identity) = clone_http {
        return Ok(identity);
    }
    links
        .and_then(|links| links.self_links.as_deref())
        .and_then(|self_links| self_links.first())
        .and_then(|link| link.href.as_deref())
        .map(browse_to_clone_identity)
        .filter(|identity| !identity.is_empty())
        .ok_or_else(|| {
            Refusal::Malformed("bitbucket repository has neither an http clone link nor a self link".to_string())
        })
}

/// `https://host[/ctx]/projects/KEY/repos/slug/browse` → `host[/ctx]/scm/key/slug` (and
/// `…/users/name/repos/slug/browse` → `…/scm/~name/slug`): the identity of the repository's
/// HTTP clone URL. Other shapes are only stripped of `/browse` and normalised.
fn browse_to_clone_identity(href: &str) -> String {
    let trimmed = href.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/browse").unwrap_or(trimmed);
    let parts: Vec<&str> = trimmed.rsplitn(5, '/').collect();
    let clone_form = match parts.as_slice() {
        [slug, "repos", key, "projects", prefix] if !slug.is_empty() && !key.is_empty() => {
            format!("{prefix}/scm/{key}/{slug}")
        }
        [slug, "repos", user, "users", prefix] if !slug.is_empty() && !user.is_empty() => {
            format!("{prefix}/scm/~{user}/{slug}")
        }
        _ => trimmed.to_string(),
    };
    rebake_config::normalise_git_identity(&clone_form)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::super::hmac_sha256_hex;
    use super::super::test_support::{
        self, any_body, assert_git_well_formed, fixture, fixture_with, git_changes, headers, inbound, json_value,
    };
    use super::*;

    const SECRET: &[u8] = b"bitbucket-secret-for-tests";
    const CLOUD_FIXTURE: &str = "bitbucket/bitbucket-cloud-repo-push.json";
    const DC_FIXTURE: &str = "bitbucket/bitbucket-dc-repo-refs-changed.json";
    const REQUEST_UUID: &str = "7f3e9a52-1b2c-4d5e-8f90-a1b2c3d4e5f6";
    const HOOK_UUID: &str = "{0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0}";
    const REQUEST_ID: &str = "a4d9c1f0-6e2b-4c8a-9d3f-5b7e0a1c2d4e";

    fn credentials() -> Credentials<'static> {
        test_support::credentials(SECRET)
    }

    fn cloud_headers(event: &str, body: &[u8]) -> HeaderMap {
        headers(&[
            ("content-type", "application/json"),
            ("user-agent", "Bitbucket-Webhooks/2.0"),
            ("x-event-key", event),
            ("x-hook-uuid", HOOK_UUID),
            ("x-request-uuid", REQUEST_UUID),
            ("x-attempt-number", "1"),
            ("x-hub-signature", &hmac_sha256_hex(SECRET, body)),
        ])
    }

    fn dc_headers(event: &str, body: &[u8]) -> HeaderMap {
        headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("x-event-key", event),
            ("x-request-id", REQUEST_ID),
            ("x-hub-signature", &hmac_sha256_hex(SECRET, body)),
        ])
    }

    fn expected_cloud_change() -> pb::GitRefChanged {
        pb::GitRefChanged {
            repository: "api.bitbucket.org/bitbucket/bitbucket".into(),
            ref_kind: "branch".into(),
            ref_name: "name-of-branch".into(),
            new_commit: "709d658dc5b6d6afcd46049c2f332ee3f515a67d".into(),
            old_commit: "1e65c05c1d5171631d92438a13901ca7dae9618c".into(),
            deleted: false,
            forced: false,
            delivery_id: REQUEST_UUID.into(),
        }
    }

    fn expected_dc_change() -> pb::GitRefChanged {
        pb::GitRefChanged {
            repository: "bitbucket.example.com/scm/proj/repository".into(),
            ref_kind: "branch".into(),
            ref_name: "master".into(),
            new_commit: "178864a7d521b6f5e720b386b2c2b0ef8563e0dc".into(),
            old_commit: "ecddabb624f6f5ba43816f5926e580a5f680a932".into(),
            deleted: false,
            forced: false,
            delivery_id: REQUEST_ID.into(),
        }
    }

    // === Cloud ===

    #[test]
    fn cloud_documented_push_is_verified_and_read() {
        let body = fixture(CLOUD_FIXTURE);
        let headers = cloud_headers(CLOUD_PUSH, &body);
        let request = inbound(&headers, &body);
        assert_eq!(verify(&request, &credentials()), Ok(()));
        assert_eq!(
            parse_cloud(&request),
            Ok(Parsed::Changes {
                delivery_id: Some(REQUEST_UUID.into()),
                changes: vec![Change::Git(expected_cloud_change())],
            })
        );
    }

    #[test]
    fn wrong_or_missing_signature_is_unauthorized() {
        let body = fixture(CLOUD_FIXTURE);
        let valid = hmac_sha256_hex(SECRET, &body);
        let mut tampered = body.clone();
        tampered.push(b' ');
        for signature in [
            Some(hmac_sha256_hex(b"other secret", &body)),
            Some(hmac_sha256_hex(SECRET, &tampered)),
            Some(valid.trim_start_matches("sha256=").to_string()),
            Some(valid.replacen("sha256=", "sha1=", 1)),
            Some("sha256=zz".to_string()),
            None,
        ] {
            let mut headers = cloud_headers(CLOUD_PUSH, &body);
            headers.remove(SIGNATURE_HEADER);
            if let Some(signature) = &signature {
                headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
            }
            let verdict = verify(&inbound(&headers, &body), &credentials());
            assert!(
                matches!(verdict, Err(Refusal::Unauthorized(_))),
                "{signature:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn cloud_closed_branch_is_a_deletion_named_by_old() {
        let body = fixture_with(CLOUD_FIXTURE, |document| {
            let change = &mut document["push"]["changes"][0];
            change["new"] = Value::Null;
            change["closed"] = true.into();
        });
        let headers = cloud_headers(CLOUD_PUSH, &body);
        assert_eq!(
            git_changes(parse_cloud(&inbound(&headers, &body)).unwrap()),
            vec![pb::GitRefChanged {
                new_commit: String::new(),
                deleted: true,
                ..expected_cloud_change()
            }]
        );
    }

    #[test]
    fn cloud_several_changes_give_several_events() {
        let tag_commit = "c4b2b7914156a878aa7c9da452a09fb50c2091f2";
        let body = fixture_with(CLOUD_FIXTURE, |document| {
            let first = document["push"]["changes"][0].clone();
            let mut created_tag = first.clone();
            created_tag["old"] = Value::Null;
            created_tag["created"] = true.into();
            created_tag["new"]["type"] = "annotated_tag".into();
            created_tag["new"]["name"] = "v2.0.0".into();
            created_tag["new"]["target"]["hash"] = tag_commit.into();
            let mut forced = first.clone();
            forced["forced"] = true.into();
            forced["new"]["name"] = "main".into();
            forced["old"]["name"] = "main".into();
            let mut mercurial = first.clone();
            mercurial["new"]["type"] = "named_branch".into();
            document["push"]["changes"] = json!([first, created_tag, mercurial, forced]);
        });
        let headers = cloud_headers(CLOUD_PUSH, &body);
        assert_eq!(
            git_changes(parse_cloud(&inbound(&headers, &body)).unwrap()),
            vec![
                expected_cloud_change(),
                pb::GitRefChanged {
                    ref_kind: "tag".into(),
                    ref_name: "v2.0.0".into(),
                    new_commit: tag_commit.into(),
                    old_commit: String::new(),
                    ..expected_cloud_change()
                },
                pb::GitRefChanged {
                    ref_name: "main".into(),
                    forced: true,
                    ..expected_cloud_change()
                },
            ]
        );
    }

    #[test]
    fn cloud_repository_falls_back_to_full_name() {
        let body = fixture_with(CLOUD_FIXTURE, |document| document["repository"]["links"] = Value::Null);
        let headers = cloud_headers(CLOUD_PUSH, &body);
        let changes = git_changes(parse_cloud(&inbound(&headers, &body)).unwrap());
        assert_eq!(changes[0].repository, "bitbucket.org/team_name/repo_name");
    }

    #[test]
    fn cloud_other_events_are_unknown_and_ping_is_ignored() {
        let body = fixture(CLOUD_FIXTURE);
        for event in ["pullrequest:created", "repo:commit_status_updated", "repo:refs_changed"] {
            let headers = cloud_headers(event, &body);
            let parsed = parse_cloud(&inbound(&headers, &body)).unwrap();
            assert!(
                matches!(&parsed, Parsed::Unknown(reason) if reason.contains(event)),
                "{parsed:?}"
            );
        }
        let headers = cloud_headers(PING, b"{}");
        assert_eq!(
            parse_cloud(&inbound(&headers, b"{}")),
            Ok(Parsed::Ignored("ping".into()))
        );
    }

    #[test]
    fn cloud_malformed_payloads_are_refused_with_a_reason() {
        let mut truncated = fixture(CLOUD_FIXTURE);
        truncated.truncate(truncated.len() / 2);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (truncated, "invalid bitbucket push payload"),
            (b"null".to_vec(), "invalid bitbucket push payload"),
            (
                fixture_with(CLOUD_FIXTURE, |document| document["push"] = Value::Null),
                "no push.changes",
            ),
            (
                fixture_with(CLOUD_FIXTURE, |document| document["repository"] = Value::Null),
                "no repository link",
            ),
            (
                fixture_with(CLOUD_FIXTURE, |document| {
                    document["push"]["changes"][0]["new"] = Value::Null;
                    document["push"]["changes"][0]["old"] = Value::Null;
                }),
                "neither new nor old",
            ),
            (
                fixture_with(CLOUD_FIXTURE, |document| {
                    document["push"]["changes"][0]["new"]["target"]["hash"] = "709d658".into();
                }),
                "invalid new.target.hash",
            ),
            (
                fixture_with(CLOUD_FIXTURE, |document| {
                    document["push"]["changes"][0]["new"]["name"] = "".into();
                }),
                "no ref name",
            ),
        ];
        for (body, reason) in cases {
            let headers = cloud_headers(CLOUD_PUSH, &body);
            match parse_cloud(&inbound(&headers, &body)) {
                Err(Refusal::Malformed(text)) => assert!(text.contains(reason), "{text:?} lacks {reason:?}"),
                other => panic!("expected malformed ({reason}), got {other:?}"),
            }
        }
        let body = fixture(CLOUD_FIXTURE);
        let mut headers = cloud_headers(CLOUD_PUSH, &body);
        headers.remove(EVENT_HEADER);
        assert!(matches!(
            parse_cloud(&inbound(&headers, &body)),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn hook_uuid_is_not_a_delivery_id() {
        let body = fixture(CLOUD_FIXTURE);
        let mut headers = cloud_headers(CLOUD_PUSH, &body);
        headers.remove(CLOUD_DELIVERY_HEADER);
        let parsed = parse_cloud(&inbound(&headers, &body)).unwrap();
        assert!(
            matches!(&parsed, Parsed::Changes { delivery_id: None, .. }),
            "{parsed:?}"
        );
        assert_eq!(git_changes(parsed)[0].delivery_id, "");
    }

    // === Data Center ===

    #[test]
    fn dc_documented_refs_changed_is_verified_and_read() {
        let body = fixture(DC_FIXTURE);
        let headers = dc_headers(DC_REFS_CHANGED, &body);
        let request = inbound(&headers, &body);
        assert_eq!(verify(&request, &credentials()), Ok(()));
        assert_eq!(
            parse_dc(&request),
            Ok(Parsed::Changes {
                delivery_id: Some(REQUEST_ID.into()),
                changes: vec![Change::Git(expected_dc_change())],
            })
        );
    }

    #[test]
    fn dc_add_update_and_delete() {
        let tag_commit = "22671f0349857934857983457983475ec39f196b";
        let body = fixture_with(DC_FIXTURE, |document| {
            let update = document["changes"][0].clone();
            let added_tag = json!({
                "ref": { "id": "refs/tags/v1.2.0", "displayId": "v1.2.0", "type": "TAG" },
                "refId": "refs/tags/v1.2.0",
                "fromHash": "0000000000000000000000000000000000000000",
                "toHash": tag_commit,
                "type": "ADD"
            });
            let deleted = json!({
                "ref": { "id": "refs/heads/feature/old", "displayId": "feature/old", "type": "BRANCH" },
                "refId": "refs/heads/feature/old",
                "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
                "toHash": "0000000000000000000000000000000000000000",
                "type": "DELETE"
            });
            let note = json!({
                "ref": { "id": "refs/notes/commits", "displayId": "commits", "type": "BRANCH" },
                "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
                "toHash": tag_commit,
                "type": "UPDATE"
            });
            document["changes"] = json!([update, added_tag, deleted, note]);
        });
        let headers = dc_headers(DC_REFS_CHANGED, &body);
        assert_eq!(
            git_changes(parse_dc(&inbound(&headers, &body)).unwrap()),
            vec![
                expected_dc_change(),
                pb::GitRefChanged {
                    ref_kind: "tag".into(),
                    ref_name: "v1.2.0".into(),
                    new_commit: tag_commit.into(),
                    old_commit: String::new(),
                    ..expected_dc_change()
                },
                pb::GitRefChanged {
                    ref_name: "feature/old".into(),
                    new_commit: String::new(),
                    deleted: true,
                    ..expected_dc_change()
                },
            ]
        );
    }

    #[test]
    fn dc_repository_identity_from_links() {
        let cases = [
            // No clone links: the browse link in clone form.
            (
                json!({ "self": [{ "href": "https://bitbucket.example.com/projects/PROJ/repos/repository/browse" }] }),
                "bitbucket.example.com/scm/proj/repository",
            ),
            // A context path and a personal repository.
            (
                json!({ "self": [{ "href": "https://example.com/stash/users/jdoe/repos/Tools/browse" }] }),
                "example.com/stash/scm/~jdoe/tools",
            ),
            // An unfamiliar self link is only stripped of /browse.
            (
                json!({ "self": [{ "href": "https://example.com/other/repository/browse" }] }),
                "example.com/other/repository",
            ),
            // The http clone link wins, whatever its position.
            (
                json!({
                    "clone": [
                        { "href": "ssh://git@example.com:7999/tf/app.git", "name": "ssh" },
                        { "href": "https://admin@example.com/stash/scm/tf/app.git", "name": "http" }
                    ],
                    "self": [{ "href": "https://example.com/stash/projects/TF/repos/app/browse" }]
                }),
                "example.com/stash/scm/tf/app",
            ),
        ];
        for (links, expected) in cases {
            let body = fixture_with(DC_FIXTURE, |document| document["repository"]["links"] = links.clone());
            let headers = dc_headers(DC_REFS_CHANGED, &body);
            let changes = git_changes(parse_dc(&inbound(&headers, &body)).unwrap());
            assert_eq!(changes[0].repository, expected, "{links}");
        }
    }

    #[test]
    fn dc_example_without_links_is_refused() {
        // Atlassian's documented example has no `links` at all, so it names no host.
        let body = fixture_with(DC_FIXTURE, |document| {
            document["repository"].as_object_mut().unwrap().remove("links");
        });
        let headers = dc_headers(DC_REFS_CHANGED, &body);
        assert!(matches!(
            parse_dc(&inbound(&headers, &body)),
            Err(Refusal::Malformed(reason)) if reason.contains("clone link")
        ));
    }

    #[test]
    fn dc_event_key_from_body_when_header_is_absent() {
        let body = fixture(DC_FIXTURE);
        let mut headers = dc_headers(DC_REFS_CHANGED, &body);
        headers.remove(EVENT_HEADER);
        assert_eq!(
            git_changes(parse_dc(&inbound(&headers, &body)).unwrap()),
            vec![expected_dc_change()]
        );
        let body = fixture_with(DC_FIXTURE, |document| document["eventKey"] = "pr:opened".into());
        assert!(matches!(parse_dc(&inbound(&headers, &body)), Ok(Parsed::Unknown(_))));
        let body = fixture_with(DC_FIXTURE, |document| document["eventKey"] = Value::Null);
        assert!(matches!(
            parse_dc(&inbound(&headers, &body)),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn dc_other_events_are_unknown_and_ping_is_ignored() {
        let body = fixture(DC_FIXTURE);
        for event in ["pr:opened", "mirror:repo_synchronized", "repo:push"] {
            let headers = dc_headers(event, &body);
            let parsed = parse_dc(&inbound(&headers, &body)).unwrap();
            assert!(
                matches!(&parsed, Parsed::Unknown(reason) if reason.contains(event)),
                "{parsed:?}"
            );
        }
        let ping = br#"{"test": true}"#;
        let headers = dc_headers(PING, ping);
        assert_eq!(verify(&inbound(&headers, ping), &credentials()), Ok(()));
        assert_eq!(parse_dc(&inbound(&headers, ping)), Ok(Parsed::Ignored("ping".into())));
    }

    #[test]
    fn dc_malformed_payloads_are_refused_with_a_reason() {
        let mut truncated = fixture(DC_FIXTURE);
        truncated.truncate(truncated.len() / 2);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (truncated, "invalid bitbucket refs_changed payload"),
            (
                fixture_with(DC_FIXTURE, |document| document["changes"] = Value::Null),
                "no changes",
            ),
            (
                fixture_with(DC_FIXTURE, |document| document["changes"][0]["type"] = "MOVE".into()),
                "unknown change type",
            ),
            (
                fixture_with(DC_FIXTURE, |document| {
                    document["changes"][0]["toHash"] = "178864a".into()
                }),
                "invalid toHash",
            ),
            (
                fixture_with(DC_FIXTURE, |document| {
                    document["changes"][0]["ref"] = Value::Null;
                    document["changes"][0]["refId"] = Value::Null;
                }),
                "no ref id",
            ),
            (
                fixture_with(DC_FIXTURE, |document| {
                    document["changes"][0]["ref"]["id"] = "refs/heads/".into()
                }),
                "invalid ref",
            ),
        ];
        for (body, reason) in cases {
            let headers = dc_headers(DC_REFS_CHANGED, &body);
            match parse_dc(&inbound(&headers, &body)) {
                Err(Refusal::Malformed(text)) => assert!(text.contains(reason), "{text:?} lacks {reason:?}"),
                other => panic!("expected malformed ({reason}), got {other:?}"),
            }
        }
    }

    #[test]
    fn non_json_content_is_unsupported() {
        let body = fixture(DC_FIXTURE);
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
            let mut dc = dc_headers(DC_REFS_CHANGED, &body);
            let mut cloud = cloud_headers(CLOUD_PUSH, &body);
            dc.remove("content-type");
            cloud.remove("content-type");
            if let Some(content_type) = content_type {
                dc.insert("content-type", content_type.parse().unwrap());
                cloud.insert("content-type", content_type.parse().unwrap());
            }
            assert!(matches!(
                parse_dc(&inbound(&dc, &body)),
                Err(Refusal::UnsupportedMediaType(_))
            ));
            assert!(matches!(
                parse_cloud(&inbound(&cloud, &body)),
                Err(Refusal::UnsupportedMediaType(_))
            ));
        }
    }

    #[test]
    fn fixtures_parse_the_same_twice() {
        let cloud_body = fixture(CLOUD_FIXTURE);
        let cloud = cloud_headers(CLOUD_PUSH, &cloud_body);
        let copy = cloud_body.clone();
        assert_eq!(
            parse_cloud(&inbound(&cloud, &cloud_body)),
            parse_cloud(&inbound(&cloud, &copy))
        );
        let dc_body = fixture(DC_FIXTURE);
        let dc = dc_headers(DC_REFS_CHANGED, &dc_body);
        let copy = dc_body.clone();
        assert_eq!(parse_dc(&inbound(&dc, &dc_body)), parse_dc(&inbound(&dc, &copy)));
    }

    // === Properties ===

    /// Keys and values both products send.
    const KEYS: &[&str] = &[
        "push",
        "changes",
        "new",
        "old",
        "type",
        "name",
        "target",
        "hash",
        "closed",
        "forced",
        "repository",
        "links",
        "html",
        "href",
        "full_name",
        "ref",
        "id",
        "refId",
        "fromHash",
        "toHash",
        "clone",
        "self",
        "eventKey",
        "branch",
        "tag",
        "annotated_tag",
        "named_branch",
        "ADD",
        "UPDATE",
        "DELETE",
        "http",
        "ssh",
    ];
    const PATTERNS: &[&str] = &[
        "[0-9a-fA-F]{40}",
        "(refs/(heads|tags|notes)/)?.{0,8}",
        "https?://[a-z.]{1,8}/(projects|users)/[A-Z]{1,4}/repos/[a-z]{1,6}(/browse)?",
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            body in any_body(),
            event in prop::sample::select(vec![CLOUD_PUSH, DC_REFS_CHANGED, PING, "pr:opened"]),
            signature in "(sha256=)?[0-9a-f]{0,64}",
        ) {
            let mut headers = dc_headers(event, &body);
            prop_assert_eq!(verify(&inbound(&headers, &body), &credentials()), Ok(()));
            for parsed in [parse_cloud(&inbound(&headers, &body)), parse_dc(&inbound(&headers, &body))] {
                if let Ok(parsed) = &parsed {
                    assert_git_well_formed(parsed);
                }
            }
            headers.remove(EVENT_HEADER);
            let _ = parse_dc(&inbound(&headers, &body));
            headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
            let _ = verify(&inbound(&headers, &body), &credentials());
        }

        #[test]
        fn arbitrary_json_never_panics(document in json_value(KEYS, PATTERNS)) {
            let body = serde_json::to_vec(&document).unwrap();
            let cloud = cloud_headers(CLOUD_PUSH, &body);
            let dc = dc_headers(DC_REFS_CHANGED, &body);
            for (first, second) in [
                (parse_cloud(&inbound(&cloud, &body)), parse_cloud(&inbound(&cloud, &body))),
                (parse_dc(&inbound(&dc, &body)), parse_dc(&inbound(&dc, &body))),
            ] {
                prop_assert!(!matches!(
                    first,
                    Err(Refusal::UnsupportedMediaType(_)) | Err(Refusal::Unauthorized(_))
                ));
                prop_assert_eq!(&first, &second, "parsing is deterministic");
                if let Ok(parsed) = &first {
                    assert_git_well_formed(parsed);
                }
            }
        }

        #[test]
        fn cloud_fixture_with_one_change_field_replaced_never_panics(
            field in prop::sample::select(vec!["new", "old", "closed", "forced", "created"]),
            value in json_value(KEYS, PATTERNS),
        ) {
            let body = fixture_with(CLOUD_FIXTURE, |document| {
                document["push"]["changes"][0][field] = value;
            });
            let headers = cloud_headers(CLOUD_PUSH, &body);
            if let Ok(parsed) = &parse_cloud(&inbound(&headers, &body)) {
                assert_git_well_formed(parsed);
            }
        }

        #[test]
        fn dc_fixture_with_one_field_replaced_never_panics(
            field in prop::sample::select(vec!["ref", "refId", "fromHash", "toHash", "type"]),
            value in json_value(KEYS, PATTERNS),
            links in json_value(KEYS, PATTERNS),
        ) {
            let body = fixture_with(DC_FIXTURE, |document| {
                document["changes"][0][field] = value;
                document["repository"]["links"] = links;
            });
            let headers = dc_headers(DC_REFS_CHANGED, &body);
            if let Ok(parsed) = &parse_dc(&inbound(&headers, &body)) {
                assert_git_well_formed(parsed);
            }
        }
    }
}
