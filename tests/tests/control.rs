//! The control plane against a real cascade: every RPC of `rebake.control.v1.Control`, the
//! bearer tokens, `grpc.health.v1` and server reflection, and the Prometheus metrics that
//! cascade leaves behind. The CLI's renderings of the graph, a `why` chain and the exposure
//! are printed (run with `--nocapture` to read them).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::StreamExt as _;
use rebake_control::{
    api::{
        self, GetBuildRequest, GetExposureRequest, GetGraphRequest, GetImageRequest, ListBuildsRequest,
        ListImagesRequest, PauseRequest, ResumeRequest, TriggerRebuildRequest, WatchEventsRequest, WhyRequest,
        control_client::ControlClient,
    },
    render::{self, Style},
};
use rebake_e2e::{Options, Sandbox};
use tonic::{Code, transport::Channel};

const READ_TOKEN: &str = "read-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// `request` with `authorization: Bearer <token>`.
fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ASCII token"));
    request
}

async fn channel(sandbox: &Sandbox) -> Result<Channel> {
    Ok(Channel::from_shared(sandbox.control_url.clone())?.connect().await?)
}

/// Every image, page by page (`page_size` 1 so paging is exercised).
async fn all_images(client: &mut ControlClient<Channel>, status: &str) -> Result<Vec<api::Image>> {
    let mut images = Vec::new();
    let mut page_token = String::new();
    for _ in 0..20 {
        let page = client
            .list_images(authed(
                READ_TOKEN,
                ListImagesRequest {
                    name_prefix: String::new(),
                    status: status.to_string(),
                    page_size: 1,
                    page_token: page_token.clone(),
                },
            ))
            .await?
            .into_inner();
        images.extend(page.images);
        if page.next_page_token.is_empty() {
            return Ok(images);
        }
        page_token = page.next_page_token;
    }
    anyhow::bail!("ListImages never reached its last page")
}

/// Waits until the newest build of `image` has `status`, returning it.
async fn wait_build(
    client: &mut ControlClient<Channel>,
    image: &str,
    newer_than: &str,
    status: &str,
) -> Result<api::Build> {
    let deadline = tokio::time::Instant::now() + rebake_testkit::patience();
    loop {
        let builds = client
            .list_builds(authed(
                READ_TOKEN,
                ListBuildsRequest {
                    image: image.to_string(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .builds;
        if let Some(build) = builds.first()
            && build.build_id.as_str() > newer_than
            && build.status == status
        {
            return Ok(build.clone());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no {status} build of {image} after {newer_than}: {builds:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_answers_from_a_real_cascade() -> Result<()> {
    let sandbox = Sandbox::start_with(
        "e2econtrol",
        Options {
            control: format!(
                "  tokens:\n    - {{ name: dashboard, secret: {{ value: {READ_TOKEN} }}, role: read }}\n    - {{ name: oncall, secret: {{ value: {ADMIN_TOKEN} }}, role: admin }}\n"
            ),
            ..Options::default()
        },
    )
    .await?;
    let base = sandbox.push_base("v1", "one").await?;
    let (app_digest, child_digest) = sandbox.wait_first_cascade(&base).await?;
    let mut client = ControlClient::new(channel(&sandbox).await?);

    // --- auth: no token, a wrong token, a read token on an admin call ---
    let status = client
        .list_images(ListImagesRequest::default())
        .await
        .expect_err("a call without a token is refused");
    ensure!(status.code() == Code::Unauthenticated, "{status:?}");
    let status = client
        .list_images(authed("not-a-token", ListImagesRequest::default()))
        .await
        .expect_err("a wrong token is refused");
    ensure!(status.code() == Code::Unauthenticated, "{status:?}");
    let status = client
        .trigger_rebuild(authed(
            READ_TOKEN,
            TriggerRebuildRequest {
                image: "app".into(),
                reason: "read tokens may not".into(),
            },
        ))
        .await
        .expect_err("a read token may not trigger");
    ensure!(status.code() == Code::PermissionDenied, "{status:?}");

    // --- health and reflection need no token ---
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&sandbox).await?);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rebake.control.v1.Control".into(),
        })
        .await?
        .into_inner();
    ensure!(serving.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let services = reflection_services(&sandbox).await?;
    ensure!(
        services.iter().any(|service| service == "rebake.control.v1.Control")
            && services.iter().any(|service| service == "grpc.health.v1.Health"),
        "reflection lists {services:?}"
    );

    // --- ListImages (paged, filtered) and GetImage ---
    let images = all_images(&mut client, "").await?;
    let names: Vec<&str> = images.iter().map(|image| image.name.as_str()).collect();
    ensure!(names == ["app", "child"], "images: {names:?}");
    ensure!(all_images(&mut client, "published").await?.len() == 2);
    ensure!(all_images(&mut client, "failed").await?.is_empty());
    let prefixed = client
        .list_images(authed(
            READ_TOKEN,
            ListImagesRequest {
                name_prefix: "chi".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    ensure!(prefixed.images.len() == 1 && prefixed.images[0].name == "child");
    let app = client
        .get_image(authed(READ_TOKEN, GetImageRequest { name: "app".into() }))
        .await?
        .into_inner();
    ensure!(app.published_digest == app_digest && app.base_digest == base, "{app:?}");
    ensure!(
        app.history.len() == 1 && app.history[0].digest == app_digest,
        "{:?}",
        app.history
    );
    ensure!(app.signature_status == "signed", "{}", app.signature_status);
    ensure!(
        app.sources.len() == 1 && app.sources[0].commit == sandbox.head()?,
        "{:?}",
        app.sources
    );
    let missing = client
        .get_image(authed(READ_TOKEN, GetImageRequest { name: "nope".into() }))
        .await
        .expect_err("an unknown image");
    ensure!(missing.code() == Code::NotFound, "{missing:?}");

    // --- GetGraph: whole, and under one image ---
    let graph = client
        .get_graph(authed(READ_TOKEN, GetGraphRequest::default()))
        .await?
        .into_inner();
    let edges: Vec<(&str, &str)> = graph
        .edges
        .iter()
        .map(|edge| (edge.parent.as_str(), edge.child.as_str()))
        .collect();
    ensure!(edges.contains(&("app", "child")), "edges: {edges:?}");
    ensure!(
        edges
            .iter()
            .any(|(parent, child)| parent.ends_with("/base:v1") && *child == "app"),
        "edges: {edges:?}"
    );
    let under_child = client
        .get_graph(authed(READ_TOKEN, GetGraphRequest { image: "child".into() }))
        .await?
        .into_inner();
    ensure!(
        under_child.nodes.iter().all(|node| node.name != "app"),
        "the subgraph under child: {under_child:?}"
    );
    println!("$ rebake graph\n{}", render::render_graph_tree(&graph, Style::PLAIN));

    // --- ListBuilds, GetBuild, Why ---
    let builds = client
        .list_builds(authed(READ_TOKEN, ListBuildsRequest::default()))
        .await?
        .into_inner()
        .builds;
    ensure!(builds.len() >= 2, "builds: {builds:?}");
    let child_build = builds
        .iter()
        .find(|build| build.image == "child" && build.status == "published")
        .context("child's build")?;
    ensure!(child_build.digest == child_digest);
    let detail = client
        .get_build(authed(
            READ_TOKEN,
            GetBuildRequest {
                build_id: child_build.build_id.clone(),
            },
        ))
        .await?
        .into_inner();
    let stages: Vec<&str> = detail.stages.iter().map(|stage| stage.name.as_str()).collect();
    ensure!(stages == ["build", "scan", "sign", "publish"], "stages: {stages:?}");
    ensure!(
        detail
            .stages
            .iter()
            .all(|stage| stage.ok && stage.finished_at_ms >= stage.started_at_ms)
    );
    let why = client
        .why(authed(
            READ_TOKEN,
            WhyRequest {
                image: "child".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    ensure!(why.build_id == child_build.build_id, "{why:?}");
    ensure!(
        why.chain.iter().any(|step| step.kind == "build" && step.image == "app"),
        "the child's chain goes through app: {:?}",
        why.chain
    );
    let root = why
        .chain
        .iter()
        .find(|step| step.kind == "upstream")
        .context("an upstream step")?;
    ensure!(root.description.contains("base"), "root: {root:?}");
    ensure!(root.at_ms > 0 && root.at_ms <= why.chain[0].at_ms.max(root.at_ms));
    println!("$ rebake why child\n{}", render::render_why(&why, Style::PLAIN));

    // --- WatchEvents: replay from the first sequence, filtered by image and kind ---
    let mut events = client
        .watch_events(authed(
            READ_TOKEN,
            WatchEventsRequest {
                image: "child".into(),
                kinds: vec!["image.published".into()],
                from_sequence: 1,
            },
        ))
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .context("no replayed event")?
        .context("stream ended")??;
    ensure!(first.kind == "image.published" && first.image == "child", "{first:?}");
    drop(events);

    // --- Pause child, change the base: app is rebuilt, child is skipped and says so ---
    let paused = client
        .pause(authed(
            ADMIN_TOKEN,
            PauseRequest {
                image: "child".into(),
                reason: "freeze for the release".into(),
            },
        ))
        .await?
        .into_inner();
    ensure!(paused.paused && !paused.event_id.is_empty(), "{paused:?}");
    rebake_testkit::eventually("child shows as paused", || async {
        all_images_named(&sandbox, "child")
            .await
            .is_some_and(|image| image.paused && image.paused_reason.contains("freeze for the release"))
    })
    .await?;
    let base_v2 = sandbox.push_base("v1", "two").await?;
    ensure!(base_v2 != base);
    let app_v2 = sandbox.wait_published("app", Some(&app_digest)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let child_now = client
        .get_image(authed(READ_TOKEN, GetImageRequest { name: "child".into() }))
        .await?
        .into_inner();
    ensure!(
        child_now.published_digest == child_digest && child_now.paused,
        "a paused child was rebuilt: {child_now:?}"
    );
    ensure!(
        child_now.status_reason.starts_with("paused"),
        "{}",
        child_now.status_reason
    );

    // --- Resume: the child catches up on app's new digest ---
    let resumed = client
        .resume(authed(ADMIN_TOKEN, ResumeRequest { image: "child".into() }))
        .await?
        .into_inner();
    ensure!(!resumed.paused);
    let child_v2 = sandbox.wait_published("child", Some(&child_digest)).await?;
    let child_base =
        sandbox.manifest("apps/child", &child_v2).await?.annotations["org.opencontainers.image.base.digest"].clone();
    ensure!(
        child_base == app_v2,
        "resumed child built on {child_base}, not {app_v2}"
    );

    // --- TriggerRebuild: a build with the operator's reason, through the resolver, on
    // what upstream has now (a commit nobody sent a webhook for) ---
    let before = wait_build(&mut client, "app", "", "published").await?;
    let unannounced = sandbox.commit_source("<h1>v2, no webhook</h1>\n")?;
    let triggered = client
        .trigger_rebuild(authed(
            ADMIN_TOKEN,
            TriggerRebuildRequest {
                image: "app".into(),
                reason: "rotate the layer cache".into(),
            },
        ))
        .await?
        .into_inner();
    ensure!(!triggered.event_id.is_empty());
    let forced = wait_build(&mut client, "app", &before.build_id, "published").await?;
    ensure!(
        forced
            .causes
            .iter()
            .any(|cause| cause.contains("rotate the layer cache") && cause.contains("oncall")),
        "causes of the triggered build: {:?}",
        forced.causes
    );
    // The signer records the build as published; the image state follows when the resolver
    // has handled the `image.published` event, so wait for it to show the forced build.
    rebake_testkit::eventually("the image state shows the triggered build", || {
        let mut client = client.clone();
        let forced_digest = forced.digest.clone();
        async move {
            let image = client
                .get_image(authed(READ_TOKEN, GetImageRequest { name: "app".into() }))
                .await?
                .into_inner();
            anyhow::Ok(image.published_digest == forced_digest)
        }
    })
    .await?;
    let app_now = client
        .get_image(authed(READ_TOKEN, GetImageRequest { name: "app".into() }))
        .await?
        .into_inner();
    ensure!(
        app_now
            .sources
            .first()
            .is_some_and(|source| source.commit == unannounced),
        "the triggered build did not pick up the new commit {unannounced}: {:?}",
        app_now.sources
    );
    let refused = client
        .trigger_rebuild(authed(
            ADMIN_TOKEN,
            TriggerRebuildRequest {
                image: "app".into(),
                reason: String::new(),
            },
        ))
        .await
        .expect_err("a trigger without a reason");
    ensure!(refused.code() == Code::InvalidArgument, "{refused:?}");

    // --- GetExposure: no finding here has a fix, so nothing is exposed; unknown images are 404 ---
    let exposure = client
        .get_exposure(authed(READ_TOKEN, GetExposureRequest::default()))
        .await?
        .into_inner();
    println!(
        "$ rebake exposure\n{}",
        render::render_exposure_table(&exposure, Style::PLAIN)
    );
    let unknown = client
        .get_exposure(authed(READ_TOKEN, GetExposureRequest { image: "nope".into() }))
        .await
        .expect_err("an unknown image");
    ensure!(unknown.code() == Code::NotFound, "{unknown:?}");

    // --- the central metrics counted the cascade ---
    let url = sandbox.metrics_url.clone().context("metrics are served")?;
    let text = reqwest::get(&url).await?.text().await?;
    for wanted in [
        "rebake_builds_total{result=\"published\"}",
        "rebake_images_published_total",
        "rebake_stage_duration_seconds_bucket{",
        "rebake_exposure_window_seconds_count",
        "rebake_webhooks_received_total{",
        "rebake_queue_depth{",
        "rebake_service_running{service=\"control\"} 1",
    ] {
        ensure!(text.contains(wanted), "{wanted} missing from /metrics:\n{text}");
    }
    let published = metric_value(&text, "rebake_images_published_total").context("published count")?;
    ensure!(published >= 4.0, "published {published}: {text}");

    sandbox.stop().await;
    Ok(())
}

/// The value of the sample named exactly `name` (no labels).
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `child` as `ListImages` shows it (admin token: either role may read).
async fn all_images_named(sandbox: &Sandbox, name: &str) -> Option<api::Image> {
    let mut client = ControlClient::new(channel(sandbox).await.ok()?);
    client
        .list_images(authed(
            ADMIN_TOKEN,
            ListImagesRequest {
                name_prefix: name.to_string(),
                ..Default::default()
            },
        ))
        .await
        .ok()?
        .into_inner()
        .images
        .into_iter()
        .find(|image| image.name == name)
}

/// The services server reflection lists (`grpc.reflection.v1`).
async fn reflection_services(sandbox: &Sandbox) -> Result<Vec<String>> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(channel(sandbox).await?);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses.next().await.context("no reflection answer")??;
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|service| service.name).collect())
        }
        other => anyhow::bail!("unexpected reflection answer {other:?}"),
    }
}
