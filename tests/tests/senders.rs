//! Every webhook sender, end to end: the sender's real payload (from
//! `crates/rebake-ingress/tests/fixtures/`), signed or authenticated the way that sender
//! does it, sent over HTTP to a running ingress, lands in JetStream as the normalised event
//! — with the tag resolved through the (local) registry, never through a URL from the
//! payload — and where the change matters, the image is rebuilt.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use anyhow::{Context, Result, bail, ensure};
use prost::Message as _;
use rebake_config::WebhookKind;
use rebake_e2e::{Options, Sandbox, push_image};
use rebake_events::pb;
use rebake_ingress::senders::{self, Change, Inbound, Parsed};
use rebake_oci::{LayerEntry, RuntimeConfig};

const SECRET: &str = "e2e-webhook-secret-4f1c";

fn fixture(path: &str) -> Vec<u8> {
    let full = format!(
        "{}/../crates/rebake-ingress/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&full).unwrap_or_else(|error| panic!("cannot read {full}: {error}"))
}

/// One sender's case: source name and kind, the fixture, and how it authenticates.
struct Case {
    source: &'static str,
    kind: WebhookKind,
    fixture: &'static str,
    /// Headers besides Content-Type; `{sig}` is replaced by the sender's signature.
    headers: Vec<(&'static str, String)>,
    content_type: &'static str,
}

fn hmac_hex(body: &[u8]) -> String {
    senders::hmac_sha256_hex(SECRET.as_bytes(), body)
}

/// The `ingress.sources` YAML for every case (registry sources name the registry their
/// fixture names, and resolve through the sandbox's registry).
fn sources_yaml() -> String {
    let registry = |name: &str, kind: &str, registry: &str| {
        format!(
            "    - {{ name: {name}, kind: {kind}, secret: {{ value: {SECRET} }}, registry: \"{registry}\", resolve_via: \"{{host}}\" }}\n"
        )
    };
    let git =
        |name: &str, kind: &str| format!("    - {{ name: {name}, kind: {kind}, secret: {{ value: {SECRET} }} }}\n");
    let mut yaml = String::from("  sources:\n");
    yaml += &registry("hub", "dockerhub", "{host}");
    yaml += &registry("harbor", "harbor", "hub.harbor.com");
    yaml += &registry("quay", "quay", "quay.io");
    yaml += &registry("ghcr", "ghcr", "ghcr.io");
    yaml += &registry("acr", "acr", "myregistry.azurecr.io");
    yaml += &registry("ecr", "ecr", "123456789012.dkr.ecr.us-west-2.amazonaws.com");
    yaml += &registry("gar", "gar", "us-east1-docker.pkg.dev");
    yaml += &registry("jfrog", "artifactory", "{host}");
    yaml += &registry("events", "cloudevents", "registry.example:5000");
    yaml += &registry("local", "cloudevents", "{host}");
    yaml += &git("gitlab", "gitlab");
    yaml += &git("gitea", "gitea");
    yaml += &git("forgejo", "forgejo");
    yaml += &git("bbcloud", "bitbucket-cloud");
    yaml += &git("bbdc", "bitbucket-dc");
    yaml += "  poll:\n    interval: off\n    git_interval: off\n";
    yaml
}

/// Artifact Registry delivers through a Pub/Sub push: the notification is base64 `data`.
fn pubsub_envelope(data: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    serde_json::json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "messageId": "2070443601311540",
            "publishTime": "2026-12-03T12:00:00Z"
        },
        "subscription": "projects/example/subscriptions/rebake"
    })
    .to_string()
    .into_bytes()
}

fn body_of(case: &Case) -> Vec<u8> {
    let raw = fixture(case.fixture);
    if case.kind == WebhookKind::Gar {
        pubsub_envelope(&raw)
    } else {
        raw
    }
}

fn cases() -> Vec<Case> {
    let json = "application/json";
    vec![
        Case {
            source: "hub",
            kind: WebhookKind::Dockerhub,
            fixture: "dockerhub/dockerhub-push-current-docs.json",
            headers: vec![],
            content_type: json,
        },
        Case {
            source: "harbor",
            kind: WebhookKind::Harbor,
            fixture: "harbor/harbor-push-artifact-default-tagged.json",
            headers: vec![("authorization", SECRET.to_string())],
            content_type: json,
        },
        Case {
            source: "quay",
            kind: WebhookKind::Quay,
            fixture: "quay/quay-repo_push.json",
            headers: vec![],
            content_type: json,
        },
        Case {
            source: "ghcr",
            kind: WebhookKind::Ghcr,
            fixture: "github/github-package-published-container.json",
            headers: vec![
                ("x-github-event", "package".to_string()),
                ("x-github-delivery", "b7e1c5a0-e2e0-11ee-8f00-000000000001".to_string()),
                ("x-hub-signature-256", "{sig}".to_string()),
            ],
            content_type: json,
        },
        Case {
            source: "acr",
            kind: WebhookKind::Acr,
            fixture: "acr/acr-webhook-push.json",
            headers: vec![("authorization", SECRET.to_string())],
            content_type: json,
        },
        Case {
            source: "ecr",
            kind: WebhookKind::Ecr,
            fixture: "ecr/ecr-eventbridge-image-action-push.json",
            headers: vec![("x-api-key", SECRET.to_string())],
            content_type: json,
        },
        Case {
            source: "gar",
            kind: WebhookKind::Gar,
            fixture: "gar/gar-pubsub-message-data-INSERT.json",
            headers: vec![],
            content_type: json,
        },
        Case {
            source: "jfrog",
            kind: WebhookKind::Artifactory,
            fixture: "artifactory/artifactory-docker-pushed.json",
            headers: vec![("x-jfrog-event-auth", SECRET.to_string())],
            content_type: json,
        },
        Case {
            source: "events",
            kind: WebhookKind::Cloudevents,
            fixture: "cloudevents/rebake-registry-tag-changed.json",
            headers: vec![("authorization", format!("Bearer {SECRET}"))],
            content_type: "application/cloudevents+json",
        },
        Case {
            source: "gitlab",
            kind: WebhookKind::Gitlab,
            fixture: "gitlab/gitlab-push-hook.json",
            headers: vec![
                ("x-gitlab-event", "Push Hook".to_string()),
                ("x-gitlab-token", SECRET.to_string()),
                (
                    "x-gitlab-event-uuid",
                    "9cdb6e3a-0b8b-4a36-a3a4-000000000001".to_string(),
                ),
            ],
            content_type: json,
        },
        Case {
            source: "gitea",
            kind: WebhookKind::Gitea,
            fixture: "gitea/gitea-push-branch-created.json",
            headers: vec![
                ("x-gitea-event", "push".to_string()),
                ("x-gitea-delivery", "4e8cd2a5-0000-4000-8000-000000000001".to_string()),
                ("x-gitea-signature", "{hex}".to_string()),
            ],
            content_type: json,
        },
        Case {
            source: "forgejo",
            kind: WebhookKind::Forgejo,
            fixture: "gitea/gitea-push-tag-created.json",
            headers: vec![
                ("x-forgejo-event", "push".to_string()),
                ("x-forgejo-delivery", "4e8cd2a5-0000-4000-8000-000000000002".to_string()),
                ("x-forgejo-signature", "{hex}".to_string()),
            ],
            content_type: json,
        },
        Case {
            source: "bbcloud",
            kind: WebhookKind::BitbucketCloud,
            fixture: "bitbucket/bitbucket-cloud-repo-push.json",
            headers: vec![
                ("x-event-key", "repo:push".to_string()),
                ("x-request-uuid", "5b5bd5b9-0000-4000-8000-000000000001".to_string()),
                ("x-hub-signature", "{sig}".to_string()),
            ],
            content_type: json,
        },
        Case {
            source: "bbdc",
            kind: WebhookKind::BitbucketDc,
            fixture: "bitbucket/bitbucket-dc-repo-refs-changed.json",
            headers: vec![
                ("x-event-key", "repo:refs_changed".to_string()),
                ("x-request-id", "7d5f0e7a-0000-4000-8000-000000000001".to_string()),
                ("x-hub-signature", "{sig}".to_string()),
            ],
            content_type: json,
        },
    ]
}

fn header_map(case: &Case, body: &[u8]) -> Vec<(String, String)> {
    let signature = hmac_hex(body);
    let mut headers = vec![("content-type".to_string(), case.content_type.to_string())];
    for (name, value) in &case.headers {
        let value = value
            .replace("{sig}", &signature)
            .replace("{hex}", signature.trim_start_matches("sha256="));
        headers.push((name.to_string(), value));
    }
    headers
}

/// What the sender's own parser makes of the request (the expectation for JetStream).
fn expected_changes(case: &Case, body: &[u8], headers: &[(String, String)]) -> Result<Vec<Change>> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
            reqwest::header::HeaderValue::from_str(value)?,
        );
    }
    let inbound = Inbound {
        headers: &map,
        body,
        path_token: None,
        query_token: None,
    };
    match senders::parse(case.kind, &inbound) {
        Ok(Parsed::Changes { changes, .. }) if !changes.is_empty() => Ok(changes),
        other => bail!("{}: fixture {} gives {other:?}", case.source, case.fixture),
    }
}

async fn post(
    sandbox: &Sandbox,
    case: &Case,
    body: Vec<u8>,
    headers: &[(String, String)],
) -> Result<(u16, serde_json::Value)> {
    let path = if case.kind.secret_in_path() {
        format!("{}/v1/hooks/{}/{SECRET}", sandbox.ingress_url, case.source)
    } else {
        format!("{}/v1/hooks/{}", sandbox.ingress_url, case.source)
    };
    let mut request = reqwest::Client::new().post(path).body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let answer = response.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, answer))
}

/// Every event in the UPSTREAM stream: (source, change).
async fn upstream_events(sandbox: &Sandbox) -> Result<Vec<(String, pb::upstream_changed::Change)>> {
    let mut stream = sandbox
        .bus
        .jetstream()
        .get_stream(sandbox.bus.names().upstream_stream())
        .await?;
    let last = stream.info().await?.state.last_sequence;
    let mut events = Vec::new();
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let event = pb::UpstreamChanged::decode(message.payload.as_ref())?;
        if let Some(change) = event.change {
            events.push((event.source, change));
        }
    }
    Ok(events)
}

async fn push_tag(sandbox: &Sandbox, repository: &str, tag: &str, release: &str) -> Result<String> {
    let layer = vec![LayerEntry::file("etc/base-release", 0o644, release.as_bytes().to_vec())];
    push_image(
        &sandbox.registry,
        &sandbox.host,
        repository,
        tag,
        vec![layer],
        RuntimeConfig::default(),
    )
    .await
}

/// A loopback port that counts every connection made to it (the "admin port" a hostile
/// payload points at).
async fn connection_counter() -> Result<(u16, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    Ok((port, count))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_sender_reaches_jetstream_and_rebuilds_what_matters() -> Result<()> {
    let hooked = "name: hooked\nbase: {host}/example-user/testhook:latest\nconfig:\n  user: \"1000\"\npublish:\n  repository: {host}/apps/hooked\n";
    let sandbox = Sandbox::start_with(
        "e2esenders",
        Options {
            notifications: false,
            images: vec![("hooked.yaml".to_string(), hooked.to_string())],
            ingress: sources_yaml(),
            ..Options::default()
        },
    )
    .await?;
    // No registry notifications in this sandbox: a CloudEvent tells Rebake about the base.
    let base = sandbox.push_base("v1", "1").await?;
    let announce = serde_json::json!({
        "specversion": "1.0",
        "id": "base-v1",
        "source": "/e2e",
        "type": "dev.rebake.registry.tag.changed",
        "data": { "repository": "base", "tag": "v1", "digest": base }
    });
    let response = reqwest::Client::new()
        .post(format!("{}/v1/hooks/local", sandbox.ingress_url))
        .header("content-type", "application/cloudevents+json")
        .header("authorization", format!("Bearer {SECRET}"))
        .body(announce.to_string())
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "announcing the base: {}",
        response.text().await?
    );
    sandbox.wait_first_cascade(&base).await?;

    // Docker Hub: the payload's callback_url points at a loopback "admin" port.
    let (admin_port, admin_hits) = connection_counter().await?;

    let mut expected: BTreeMap<String, Vec<pb::upstream_changed::Change>> = BTreeMap::new();
    for (index, case) in cases().iter().enumerate() {
        let mut body = body_of(case);
        if case.kind == WebhookKind::Dockerhub {
            let mut document: serde_json::Value = serde_json::from_slice(&body)?;
            document["callback_url"] = serde_json::json!(format!("http://127.0.0.1:{admin_port}/admin/shutdown"));
            document["repository"]["repo_url"] = serde_json::json!(format!("http://127.0.0.1:{admin_port}/admin"));
            body = serde_json::to_vec(&document)?;
        }
        let headers = header_map(case, &body);
        let mut wanted = Vec::new();
        for change in expected_changes(case, &body, &headers)? {
            match change {
                Change::Registry(change) => {
                    // The tag exists in the local registry (where the source resolves it).
                    let digest = push_tag(&sandbox, &change.repository, &change.tag, &format!("{index}")).await?;
                    let registry = if change.registry.is_empty() {
                        sandbox.host.clone()
                    } else {
                        change.registry.clone()
                    };
                    wanted.push(pb::upstream_changed::Change::RegistryTag(pb::RegistryTagChanged {
                        registry,
                        repository: change.repository,
                        tag: change.tag,
                        digest,
                        media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
                    }));
                }
                Change::Git(change) => wanted.push(pb::upstream_changed::Change::GitRef(change)),
            }
        }
        let (status, answer) = post(&sandbox, case, body.clone(), &headers).await?;
        ensure!(status == 200, "{}: answered {status} {answer}", case.source);
        ensure!(answer["accepted"].as_u64() >= Some(1), "{}: {answer}", case.source);
        expected.insert(format!("webhook/{}/{}", case.kind, case.source), wanted);

        // A replay of the same delivery is a no-op (by delivery id where the sender has
        // one, by event id in JetStream where it has not).
        let (status, answer) = post(&sandbox, case, body, &headers).await?;
        ensure!(status == 200, "{} replay: {status} {answer}", case.source);
    }

    let events = upstream_events(&sandbox).await?;
    for (source, wanted) in &expected {
        let got: Vec<&pb::upstream_changed::Change> = events
            .iter()
            .filter(|(event_source, _)| event_source == source)
            .map(|(_, change)| change)
            .collect();
        for change in wanted {
            let found = got.iter().any(|candidate| match (candidate, change) {
                (pb::upstream_changed::Change::GitRef(candidate), pb::upstream_changed::Change::GitRef(change)) => {
                    candidate.repository == change.repository
                        && candidate.ref_name == change.ref_name
                        && candidate.new_commit == change.new_commit
                        && candidate.deleted == change.deleted
                }
                (left, right) => *left == right,
            });
            ensure!(found, "{source}: {change:?} not in JetStream (got {got:?})");
        }
        ensure!(
            got.len() == wanted.len(),
            "{source}: {} events for {} changes (replays must not publish): {got:?}",
            got.len(),
            wanted.len()
        );
    }
    ensure!(
        admin_hits.load(Ordering::SeqCst) == 0,
        "a URL from a payload was requested"
    );

    // The Docker Hub push named a tag an image is built from: it is built.
    let hooked_digest = sandbox.wait_published("hooked", None).await?;

    // Per-platform pushes of one tag collapse into one change of the tag's digest.
    let ecr = cases()
        .into_iter()
        .find(|case| case.kind == WebhookKind::Ecr)
        .context("ecr case")?;
    let before = upstream_events(&sandbox).await?.len();
    for platform_digest in ["a", "b"] {
        let mut document: serde_json::Value = serde_json::from_slice(&fixture(ecr.fixture))?;
        document["id"] = serde_json::json!(format!("per-platform-{platform_digest}"));
        document["detail"]["image-digest"] = serde_json::json!(format!("sha256:{}", platform_digest.repeat(64)));
        let body = serde_json::to_vec(&document)?;
        let headers = header_map(&ecr, &body);
        let (status, answer) = post(&sandbox, &ecr, body, &headers).await?;
        ensure!(status == 200, "ecr per-platform push: {status} {answer}");
    }
    ensure!(
        upstream_events(&sandbox).await?.len() == before,
        "per-platform pushes of an unchanged tag added events"
    );

    // A GitLab push of the app's repository rebuilds the app (and its child).
    let before_app = sandbox.published_digest("app").await?;
    let old = sandbox.head()?;
    let new = sandbox.commit_source("<h1>from gitlab</h1>\n")?;
    let gitlab = cases()
        .into_iter()
        .find(|case| case.kind == WebhookKind::Gitlab)
        .context("gitlab case")?;
    let mut document: serde_json::Value = serde_json::from_slice(&fixture(gitlab.fixture))?;
    document["before"] = serde_json::json!(old);
    document["after"] = serde_json::json!(new);
    document["checkout_sha"] = serde_json::json!(new);
    document["ref"] = serde_json::json!("refs/heads/main");
    document["project"]["web_url"] = serde_json::json!("https://github.com/octo/app");
    let body = serde_json::to_vec(&document)?;
    let mut headers = header_map(&gitlab, &body);
    for (name, value) in &mut headers {
        if name == "x-gitlab-event-uuid" {
            *value = "9cdb6e3a-0b8b-4a36-a3a4-000000000002".to_string();
        }
    }
    let (status, answer) = post(&sandbox, &gitlab, body, &headers).await?;
    ensure!(status == 200, "gitlab push: {status} {answer}");
    sandbox.wait_published("app", before_app.as_deref()).await?;

    // Metrics per source.
    let metrics = reqwest::get(format!("{}/metrics", sandbox.ingress_url))
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains(r#"rebake_webhooks_received_total{source="gitlab",kind="gitlab"} 3"#),
        "{metrics}"
    );
    let (status, _) = post(
        &sandbox,
        &gitlab,
        b"{}".to_vec(),
        &[
            ("content-type".to_string(), "application/json".to_string()),
            ("x-gitlab-token".to_string(), "wrong".to_string()),
        ],
    )
    .await?;
    ensure!(status == 401, "wrong token answered {status}");
    let metrics = reqwest::get(format!("{}/metrics", sandbox.ingress_url))
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains(r#"rebake_webhooks_rejected_total{source="gitlab",kind="gitlab",reason="unauthorized"} 1"#),
        "{metrics}"
    );
    ensure!(!hooked_digest.is_empty());
    sandbox.stop().await;
    Ok(())
}
