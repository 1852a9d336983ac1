//! The control API end to end: real NATS JetStream, state written straight into KV, the
//! gRPC server on a loopback port, and the client helpers.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use rebake_bus::Bus;
use rebake_control::api::{self, GetImageRequest, ListImagesRequest, WatchEventsRequest};
use rebake_events::state::{BuildRecord, CauseRecord, ImageState, ImageStatus, PublishedImage};
use rebake_events::{Bucket, Envelope, EventKind, ImageName, Names, pb};
use rebake_testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const WAIT: Duration = Duration::from_secs(10);

fn digest(fill: char) -> String {
    format!("sha256:{}", fill.to_string().repeat(64))
}

async fn write_state(bus: &Bus) -> anyhow::Result<()> {
    let catalog = bus.kv(Bucket::Catalog).await?;
    let app = ImageName::new("app")?;
    catalog
        .put(
            &app.kv_key(),
            &serde_json::json!({
                "spec": {
                    "name": "app",
                    "base": "127.0.0.1:5000/base:v1",
                    "sources": [],
                    "config": {"entrypoint": ["/app"]},
                    "publish": {"repository": "127.0.0.1:5000/apps/app", "tags": ["latest"]}
                },
                "parent": null,
                "children": ["apps/debug"]
            }),
        )
        .await?;
    let debug = ImageName::new("apps/debug")?;
    catalog
        .put(
            &debug.kv_key(),
            &serde_json::json!({
                "spec": {"name": "apps/debug", "base": "scratch", "publish": {"repository": "r/apps/debug"}},
                "parent": "app",
                "children": []
            }),
        )
        .await?;
    bus.kv(Bucket::Images)
        .await?
        .put(
            &app.kv_key(),
            &ImageState {
                name: "app".into(),
                status: ImageStatus::Published,
                desired_inputs_hash: digest('1'),
                published: Some(PublishedImage {
                    digest: digest('d'),
                    inputs_hash: digest('1'),
                    build_id: "build-1".into(),
                    repository: "127.0.0.1:5000/apps/app".into(),
                    tags: vec!["latest".into()],
                    base_digest: digest('b'),
                    published_at_ms: 1_000,
                    ..Default::default()
                }),
                last_build_id: "build-1".into(),
                ..Default::default()
            },
        )
        .await?;
    bus.kv(Bucket::Builds)
        .await?
        .put(
            "build-1",
            &BuildRecord {
                build_id: "build-1".into(),
                image: "app".into(),
                inputs_hash: digest('1'),
                status: "published".into(),
                digest: digest('d'),
                causes: vec![CauseRecord {
                    kind: "catalog".into(),
                    description: "new image".into(),
                    ..Default::default()
                }],
                requested_at_ms: 500,
                finished_at_ms: 900,
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_end_to_end() -> anyhow::Result<()> {
    rebake_testkit::init_test_tracing();
    let nats = NatsServer::start().await?;
    let names = Names::new("ctltest")?;
    let bus = Bus::connect(&nats.url(), names.clone(), "control", Duration::from_secs(30), 5).await?;
    write_state(&bus).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(rebake_control::serve(
        bus.clone(),
        listener,
        rebake_control::ControlSettings::default(),
        shutdown.clone(),
    ));

    // The listener is bound already: connecting works at once, requests wait for `serve`.
    let mut client = rebake_control::client::connect(&address.to_string()).await?;

    // === ListImages / GetImage ===
    let images = client
        .list_images(ListImagesRequest::default())
        .await?
        .into_inner()
        .images;
    let listed: Vec<(&str, &str)> = images.iter().map(|i| (i.name.as_str(), i.status.as_str())).collect();
    assert_eq!(listed, [("app", "published"), ("apps/debug", "new")]);
    let app = &images[0];
    assert_eq!(app.published_digest, digest('d'));
    assert_eq!(app.base_digest, digest('b'));
    assert_eq!(app.repository, "127.0.0.1:5000/apps/app");
    assert_eq!(app.children, ["apps/debug"]);
    let last_build = app.last_build.as_ref().context("no last build")?;
    assert_eq!(last_build.build_id, "build-1");
    assert_eq!(last_build.status, "published");
    assert_eq!(last_build.causes, ["catalog: new image"]);
    assert_eq!(images[1].parent, "app");
    assert_eq!(images[1].base_ref, "scratch");

    let new_only = client
        .list_images(ListImagesRequest {
            status: "new".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .images;
    assert_eq!(new_only.len(), 1);
    assert_eq!(new_only[0].name, "apps/debug");
    let by_prefix = client
        .list_images(ListImagesRequest {
            name_prefix: "ap".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .images;
    assert_eq!(by_prefix.len(), 2);
    let bad_status = client
        .list_images(ListImagesRequest {
            status: "exploded".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_status.code(), tonic::Code::InvalidArgument);

    let table = rebake_control::client::render_images_table(&images);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("sha256:dddddddddddd"), "{table}");

    let one = client
        .get_image(GetImageRequest { name: "app".into() })
        .await?
        .into_inner();
    // GetImage is ListImages' entry plus the details the listing leaves out.
    let listed = api::Image {
        history: one.history.clone(),
        packages: one.packages.clone(),
        findings: one.findings.clone(),
        signature_status: one.signature_status.clone(),
        ..app.clone()
    };
    assert_eq!(one, listed);
    assert_eq!(one.history.len(), 1, "{:?}", one.history);
    assert_eq!(one.history[0].digest, digest('d'));
    let missing = client
        .get_image(GetImageRequest { name: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(missing.message().contains("nope"), "{}", missing.message());
    let invalid = client
        .get_image(GetImageRequest {
            name: "Not/Valid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    // === health ===
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel);
    let answer = health
        .check(HealthCheckRequest {
            service: "rebake.control.v1.Control".into(),
        })
        .await?
        .into_inner();
    assert_eq!(answer.status(), ServingStatus::Serving);

    // === WatchEvents ===
    let mut all = client.watch_events(WatchEventsRequest::default()).await?.into_inner();
    let mut other_only = client
        .watch_events(WatchEventsRequest {
            image: "other".into(),
            ..Default::default()
        })
        .await?
        .into_inner();

    let app_name = ImageName::new("app")?;
    // An undecodable message first: skipped, the stream goes on.
    bus.publish_raw(
        names.event_subject(EventKind::BuildDone.token(), Some(&app_name)),
        Default::default(),
        bytes::Bytes::from_static(b"not a cloudevent"),
    )
    .await?;
    let published_sequence = bus
        .publish(
            names.event_subject(EventKind::ImagePublished.token(), Some(&app_name)),
            &Envelope::new(EventKind::ImagePublished, "id1".into(), "/test", Some("app"), None),
            &pb::ImagePublished {
                build_id: "build-2".into(),
                image: "app".into(),
                repository: "127.0.0.1:5000/apps/app".into(),
                digest: digest('e'),
                tags: vec!["latest".into()],
                ..Default::default()
            },
        )
        .await?;
    let other_name = ImageName::new("other")?;
    bus.publish(
        names.event_subject(EventKind::BuildFailed.token(), Some(&other_name)),
        &Envelope::new(EventKind::BuildFailed, "id2".into(), "/test", Some("other"), None),
        &pb::BuildFailed {
            build_id: "build-3".into(),
            image: "other".into(),
            stage: "build".into(),
            reason: "no such base".into(),
            ..Default::default()
        },
    )
    .await?;

    let event = tokio::time::timeout(WAIT, all.next())
        .await
        .context("no event on the unfiltered watch")?
        .context("watch ended")??;
    assert_eq!(event.kind, "image.published");
    assert_eq!(event.image, "app");
    assert_eq!(event.digest, digest('e'));
    assert_eq!(event.id, "id1");
    assert_eq!(event.sequence, published_sequence);
    assert!(
        event.summary.starts_with("published 127.0.0.1:5000/apps/app@"),
        "{}",
        event.summary
    );
    assert!(rebake_control::client::render_event_line(&event).contains(" image.published "));

    let next = tokio::time::timeout(WAIT, all.next())
        .await
        .context("no second event on the unfiltered watch")?
        .context("watch ended")??;
    assert_eq!(next.image, "other");

    // The filtered watch skipped the app event: its first event is about `other`.
    let other = tokio::time::timeout(WAIT, other_only.next())
        .await
        .context("no event on the filtered watch")?
        .context("watch ended")??;
    assert_eq!((other.kind.as_str(), other.image.as_str()), ("build.failed", "other"));
    assert_eq!(other.summary, "build failed at build: no such base");

    // Replay from a past sequence, one kind only.
    let mut replay = client
        .watch_events(WatchEventsRequest {
            from_sequence: 1,
            kinds: vec!["image.published".into()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let replayed = tokio::time::timeout(WAIT, replay.next())
        .await
        .context("no replayed event")?
        .context("watch ended")??;
    assert_eq!(replayed.sequence, published_sequence);

    // === shutdown ends open watches and the server ===
    shutdown.cancel();
    let ended = tokio::time::timeout(WAIT, all.next())
        .await
        .context("watch did not end on shutdown")?;
    assert!(
        !matches!(ended, Some(Ok(_))),
        "unexpected event after shutdown: {ended:?}"
    );
    drop((all, other_only, replay, client, health));
    tokio::time::timeout(WAIT, server)
        .await
        .context("server did not stop")??
        .context("server failed")?;
    Ok(())
}
