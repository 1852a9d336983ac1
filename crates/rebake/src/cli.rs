//! Command line: parsing, and the commands that are not services.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rebake_config::Config;
use rebake_control::{
    api,
    render::{self, Cascade, Style},
};
use rebake_runtime::{CancellationToken, LogFormat, TaskTracker};

use crate::Service;

/// Rebake keeps container images fresh: when a base image or a Git source changes upstream,
/// it rebuilds every affected image in dependency order, checks, signs and publishes it.
#[derive(Debug, Parser)]
#[command(name = "rebake", version, about, long_about = None)]
pub struct Cli {
    /// Config file (YAML). Required by `serve` and `up`.
    #[arg(long, short = 'c', env = "REBAKE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "REBAKE_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of client commands.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Aligned table for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// Text format of `rebake graph`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    /// Indented tree, parents above children.
    Tree,
    /// Graphviz `dot`.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one service (ingress, resolver, builder, scanner, signer, control).
    Serve {
        /// The service.
        service: Service,
    },
    /// Run every service in this process.
    Up,
    /// Print the version.
    Version,
    /// Signing keys: print the public key (`rebake key public`).
    Key {
        /// What to do with keys.
        #[command(subcommand)]
        command: crate::keys::KeyCommand,
    },
    /// List images and their state (control API client).
    Images {
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Only images whose name starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only images in this status (new, waiting, building, published, failed).
        #[arg(long, default_value = "")]
        status: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Follow what happens, live (control API client).
    Watch {
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Only events about this image.
        #[arg(long, default_value = "")]
        image: String,
        /// Only these kinds (build.requested, build.done, build.failed, scan.done, image.published, upstream.changed).
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Replay from this event sequence (0 = only new events).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one image: published digest and history, base, packages, sources, findings,
    /// signature, pause state (control API client).
    Image {
        /// Catalog image name.
        name: String,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Show the dependency graph (or the subgraph under one image) as a tree, Graphviz dot or
    /// Mermaid (control API client).
    Graph {
        /// Only this image and everything built on it.
        name: Option<String>,
        /// Text format: `tree` (for people), `dot` (Graphviz) or `mermaid`.
        #[arg(long, value_enum, default_value = "tree")]
        format: GraphFormat,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format (`json` ignores `--format`).
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// List builds, newest first (control API client).
    Builds {
        /// Only builds of this image.
        #[arg(long, default_value = "")]
        image: String,
        /// Only builds in this status (requested, built, scanned, published, failed).
        #[arg(long, default_value = "")]
        status: String,
        /// Most builds shown.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one build: stages with durations, causes, failure, log excerpt (control API client).
    Build {
        /// Build id.
        id: String,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Explain a build (or an image's last build): the chain back to the upstream event that
    /// caused it (control API client).
    Why {
        /// A build id, or an image name (its last build).
        target: String,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Ask for a rebuild of an image (admin; control API client). With `--wait`, follow the
    /// cascade until it settles and exit 1 if a build failed or the wait timed out.
    Trigger {
        /// Catalog image name.
        image: String,
        /// Why (recorded as the build's cause).
        #[arg(long)]
        reason: String,
        /// Follow the cascade until it settles.
        #[arg(long)]
        wait: bool,
        /// With --wait: settled once no build has been in flight for this long.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        settle: Duration,
        /// With --wait: give up after this long.
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        timeout: Duration,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Pause an image: it is not rebuilt until resumed (admin; control API client).
    Pause {
        /// Catalog image name.
        image: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Resume a paused image; it is planned again at once (admin; control API client).
    Resume {
        /// Catalog image name.
        image: String,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Exposure per image and finding: when a fix was available, when the fixed image was
    /// published, how long it took (control API client).
    Exposure {
        /// Only this image.
        image: Option<String>,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// The scan report of an image's published build, or of one build: vulnerability
    /// findings, structure tests and policy denials (control API client).
    Findings {
        /// Catalog image name.
        image: String,
        /// A specific build instead of the published one.
        #[arg(long, default_value = "")]
        build: String,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Verify a published image with only its registry and public keys: the cosign
    /// signature and every attestation (SBOMs, vulnerability report, SLSA provenance) —
    /// signatures, subject digests, presence. Exits 1 when a check fails.
    Verify {
        /// `registry/repository:tag` or `registry/repository@sha256:…`.
        image: String,
        /// Public key PEM that may have signed (repeatable, e.g. old and new during a
        /// rotation).
        #[arg(long = "key", value_name = "PUBLIC.pem", required = true)]
        keys: Vec<PathBuf>,
        /// Speak plain HTTP to the image's registry (a local registry without TLS).
        #[arg(long)]
        plain_http: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Rebuild a published image from the inputs its (verified) provenance records, in a
    /// clean temporary place, and report whether the digest is bit-for-bit identical;
    /// differences are explained down to the file. Exits 1 when they differ.
    RebuildCheck {
        /// `registry/repository:tag` or `registry/repository@sha256:…`.
        image: String,
        /// Public key PEM the provenance must be signed with (repeatable).
        #[arg(long = "key", value_name = "PUBLIC.pem", required = true)]
        keys: Vec<PathBuf>,
        /// Speak plain HTTP to the image's registry and to the registries the provenance
        /// names (local registries without TLS).
        #[arg(long)]
        plain_http: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Print the SBOM of an image's published build, or of one build (control API client).
    Sbom {
        /// Catalog image name.
        image: String,
        /// A specific build instead of the published one.
        #[arg(long, default_value = "")]
        build: String,
        /// `spdx` (SPDX 2.3 JSON) or `cyclonedx` (CycloneDX 1.6 JSON).
        #[arg(long, default_value = "spdx")]
        format: String,
        /// Control API address.
        #[arg(long, env = "REBAKE_CONTROL_ENDPOINT", default_value = "http://127.0.0.1:9090")]
        endpoint: String,
    },
}

/// Exit code for usage and configuration errors (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// Loads the config named by `--config`/`REBAKE_CONFIG`, with env overrides.
pub fn load_config(path: Option<&PathBuf>, env: &HashMap<String, String>) -> Result<Config> {
    let path = path.context("no config file: pass --config or set REBAKE_CONFIG")?;
    Ok(Config::load(path, env)?)
}

/// Runs `services` until SIGINT/SIGTERM, then drains within the grace period.
pub async fn run_services(services: &[Service], config: Config, env: HashMap<String, String>) -> Result<()> {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::spawn(rebake_runtime::cancel_on_signals(shutdown.clone()));
    let started = crate::start(services, &config, &env, shutdown.clone(), tracker.clone()).await?;
    tracing::info!(
        version = %rebake_runtime::version_line(),
        services = ?services.iter().map(|s| s.name()).collect::<Vec<_>>(),
        nats = %config.nats.url,
        prefix = %config.nats.prefix,
        ingress = ?started.ingress,
        control = ?started.control,
        "rebake started"
    );
    shutdown.cancelled().await;
    if rebake_runtime::drain(&tracker, config.shutdown_grace).await {
        tracing::info!("stopped cleanly");
    } else {
        tracing::warn!(grace = ?config.shutdown_grace, "grace period over; unfinished work will be redelivered");
    }
    Ok(())
}

/// Parses a `--settle`/`--timeout` value (`250ms`, `30s`, `5m`, `2h`).
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    rebake_config::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration like 30s, 5m or 1h"))
}

/// Colours for text on stdout: only on a terminal, never with `NO_COLOR` or for JSON.
fn style(output: Output) -> Style {
    match output {
        Output::Json => Style::PLAIN,
        Output::Table => Style::decide(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref()),
    }
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs a control API client command; `None` when `command` is not one.
pub async fn run_client(command: Command) -> Option<Result<()>> {
    Some(match command {
        Command::Images {
            endpoint,
            prefix,
            status,
            output,
        } => images(&endpoint, &prefix, &status, output).await,
        Command::Image { name, endpoint, output } => image(&endpoint, &name, output).await,
        Command::Graph {
            name,
            format,
            endpoint,
            output,
        } => graph(&endpoint, name.as_deref().unwrap_or(""), format, output).await,
        Command::Builds {
            image,
            status,
            limit,
            endpoint,
            output,
        } => builds(&endpoint, &image, &status, limit, output).await,
        Command::Build { id, endpoint, output } => build(&endpoint, &id, output).await,
        Command::Why {
            target,
            endpoint,
            output,
        } => why(&endpoint, &target, output).await,
        Command::Watch {
            endpoint,
            image,
            kinds,
            from,
            output,
        } => watch(&endpoint, &image, kinds, from, output).await,
        Command::Trigger {
            image,
            reason,
            wait,
            settle,
            timeout,
            endpoint,
            output,
        } => {
            let wait = wait.then_some(WaitOptions { settle, timeout });
            trigger(&endpoint, &image, &reason, wait, output).await
        }
        Command::Pause {
            image,
            reason,
            endpoint,
            output,
        } => pause(&endpoint, &image, &reason, output).await,
        Command::Resume {
            image,
            endpoint,
            output,
        } => resume(&endpoint, &image, output).await,
        Command::Exposure {
            image,
            endpoint,
            output,
        } => exposure(&endpoint, image.as_deref().unwrap_or(""), output).await,
        Command::Findings {
            image,
            build,
            endpoint,
            output,
        } => findings(&endpoint, &image, &build, output).await,
        Command::Sbom {
            image,
            build,
            format,
            endpoint,
        } => sbom(&endpoint, &image, &build, &format).await,
        Command::Verify {
            image,
            keys,
            plain_http,
            output,
        } => crate::verify::verify(&image, &keys, plain_http, output, style(output)).await,
        Command::RebuildCheck {
            image,
            keys,
            plain_http,
            output,
        } => crate::rebuild_check::run(&image, &keys, plain_http, output).await,
        Command::Serve { .. } | Command::Up | Command::Version | Command::Key { .. } => return None,
    })
}

/// `rebake images`: every page of `ListImages`.
pub async fn images(endpoint: &str, prefix: &str, status: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let mut images = Vec::new();
    let mut page_token = String::new();
    loop {
        let response = client
            .list_images(api::ListImagesRequest {
                name_prefix: prefix.to_string(),
                status: status.to_string(),
                page_size: 1000,
                page_token: page_token.clone(),
            })
            .await
            .context("ListImages failed")?
            .into_inner();
        images.extend(response.images);
        // Stop on the last page, and on a server that hands the same token back.
        if response.next_page_token.is_empty() || response.next_page_token == page_token {
            break;
        }
        page_token = response.next_page_token;
    }
    match output {
        Output::Table => print!("{}", rebake_control::client::render_images_table(&images)),
        Output::Json => {
            let images: Vec<_> = images.iter().map(rebake_control::client::image_to_json).collect();
            print_json(&serde_json::Value::Array(images))?;
        }
    }
    Ok(())
}

/// `rebake image NAME`.
pub async fn image(endpoint: &str, name: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let image = client
        .get_image(api::GetImageRequest { name: name.to_string() })
        .await
        .context("GetImage failed")?
        .into_inner();
    match output {
        Output::Table => print!(
            "{}",
            render::render_image_detail(&image, rebake_events::now_ms(), style(output))
        ),
        Output::Json => print_json(&render::image_detail_to_json(&image))?,
    }
    Ok(())
}

/// `rebake graph [NAME]`.
pub async fn graph(endpoint: &str, name: &str, format: GraphFormat, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let graph = client
        .get_graph(api::GetGraphRequest {
            image: name.to_string(),
        })
        .await
        .context("GetGraph failed")?
        .into_inner();
    match (output, format) {
        (Output::Json, _) => print_json(&render::graph_to_json(&graph))?,
        (Output::Table, GraphFormat::Tree) => print!("{}", render::render_graph_tree(&graph, style(output))),
        (Output::Table, GraphFormat::Dot) => print!("{}", render::render_graph_dot(&graph)),
        (Output::Table, GraphFormat::Mermaid) => print!("{}", render::render_graph_mermaid(&graph)),
    }
    Ok(())
}

/// `rebake builds`: pages of `ListBuilds` until `limit` builds.
pub async fn builds(endpoint: &str, image: &str, status: &str, limit: usize, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let mut builds = Vec::new();
    let mut page_token = String::new();
    while builds.len() < limit {
        let page_size = i32::try_from((limit - builds.len()).min(500)).unwrap_or(500);
        let response = client
            .list_builds(api::ListBuildsRequest {
                image: image.to_string(),
                status: status.to_string(),
                page_size,
                page_token: page_token.clone(),
            })
            .await
            .context("ListBuilds failed")?
            .into_inner();
        builds.extend(response.builds);
        if response.next_page_token.is_empty() || response.next_page_token == page_token {
            break;
        }
        page_token = response.next_page_token;
    }
    builds.truncate(limit);
    match output {
        Output::Table => print!("{}", render::render_builds_table(&builds, style(output))),
        Output::Json => print_json(&builds.iter().map(render::build_to_json).collect())?,
    }
    Ok(())
}

/// `rebake build ID`.
pub async fn build(endpoint: &str, id: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let detail = client
        .get_build(api::GetBuildRequest {
            build_id: id.to_string(),
        })
        .await
        .context("GetBuild failed")?
        .into_inner();
    match output {
        Output::Table => print!("{}", render::render_build_detail(&detail, style(output))),
        Output::Json => print_json(&render::build_detail_to_json(&detail))?,
    }
    Ok(())
}

/// `rebake why BUILD|IMAGE`: a build id (UUID-shaped) is asked about as a build, and — should
/// no such build exist — as an image; anything else as an image (its last build).
pub async fn why(endpoint: &str, target: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let as_image = api::WhyRequest {
        build_id: String::new(),
        image: target.to_string(),
    };
    // A short build id (as tables print it): the build whose id ends with it.
    let full_id = if render::looks_like_short_build_id(target) {
        let builds = client
            .list_builds(api::ListBuildsRequest {
                page_size: 500,
                ..Default::default()
            })
            .await
            .context("ListBuilds failed")?
            .into_inner()
            .builds;
        let matching: Vec<String> = builds
            .into_iter()
            .map(|build| build.build_id)
            .filter(|id| id.replace('-', "").ends_with(target))
            .collect();
        match matching.as_slice() {
            [one] => Some(one.clone()),
            [] => None,
            _ => anyhow::bail!("{target} matches {} builds; give the whole build id", matching.len()),
        }
    } else {
        None
    };
    let target = full_id.as_deref().unwrap_or(target);
    let answer = if render::looks_like_build_id(target) {
        let as_build = api::WhyRequest {
            build_id: target.to_string(),
            image: String::new(),
        };
        match client.why(as_build).await {
            Err(status) if status.code() == tonic::Code::NotFound => client.why(as_image).await,
            other => other,
        }
    } else {
        client.why(as_image).await
    };
    let answer = answer.context("Why failed")?.into_inner();
    match output {
        Output::Table => print!("{}", render::render_why(&answer, style(output))),
        Output::Json => print_json(&render::why_to_json(&answer))?,
    }
    Ok(())
}

/// How `rebake trigger --wait` decides the cascade is over.
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// Settled once no build has been in flight for this long.
    pub settle: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

/// `rebake trigger IMAGE --reason TEXT [--wait]`.
pub async fn trigger(
    endpoint: &str,
    image: &str,
    reason: &str,
    wait: Option<WaitOptions>,
    output: Output,
) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    // The cascade's scope: the image and everything built on it (all events when the graph
    // is not available).
    let scope = match wait {
        Some(_) => match client
            .get_graph(api::GetGraphRequest {
                image: image.to_string(),
            })
            .await
        {
            Ok(graph) => render::subgraph_images(&graph.into_inner(), image),
            Err(_) => Vec::new(),
        },
        None => Vec::new(),
    };
    let response = client
        .trigger_rebuild(api::TriggerRebuildRequest {
            image: image.to_string(),
            reason: reason.to_string(),
        })
        .await
        .context("TriggerRebuild failed")?
        .into_inner();
    match output {
        Output::Table => eprintln!(
            "requested a rebuild of {image}: event {} (events sequence {})",
            response.event_id, response.events_sequence
        ),
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "image": image,
                "event_id": response.event_id,
                "events_sequence": response.events_sequence,
            })
        ),
    }
    let Some(wait) = wait else {
        return Ok(());
    };
    let mut stream = client
        .watch_events(api::WatchEventsRequest {
            image: String::new(),
            kinds: Vec::new(),
            from_sequence: response.events_sequence + 1,
        })
        .await
        .context("WatchEvents failed")?
        .into_inner();
    let style = style(output);
    let live = output == Output::Table && std::io::stdout().is_terminal();
    let mut cascade = Cascade::new(scope);
    let started = tokio::time::Instant::now();
    let deadline = started + wait.timeout;
    let mut quiet_since = started;
    let mut drawn_lines = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let outcome = loop {
        tokio::select! {
            next = stream.message() => match next.context("event stream failed")? {
                Some(event) => {
                    if cascade.apply(&event) {
                        quiet_since = tokio::time::Instant::now();
                        match output {
                            Output::Json => println!("{}", rebake_control::client::event_to_json(&event)),
                            Output::Table if !live => println!("{}", rebake_control::client::render_event_line(&event)),
                            Output::Table => {}
                        }
                    }
                }
                None => break "the event stream ended",
            },
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break "interrupted",
        }
        if live {
            drawn_lines = redraw(&cascade.render(rebake_events::now_ms(), style), drawn_lines);
        }
        let now = tokio::time::Instant::now();
        if cascade.in_flight() == 0 && now.duration_since(quiet_since) >= wait.settle {
            break if cascade.builds().is_empty() {
                "no build happened"
            } else {
                "settled"
            };
        }
        if now >= deadline {
            break "timed out";
        }
    };
    let outcome = format!(
        "{outcome} after {}",
        render::duration(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX))
    );
    match output {
        Output::Json => println!("{}", cascade.to_json(&outcome)),
        Output::Table => {
            if live {
                redraw("", drawn_lines);
            }
            print!("{}", cascade.summary(&outcome, rebake_events::now_ms(), style));
        }
    }
    if cascade.failed() > 0 {
        anyhow::bail!("{} build(s) failed", cascade.failed());
    }
    if outcome.starts_with("timed out") {
        anyhow::bail!("the cascade did not settle within {:?}", wait.timeout);
    }
    Ok(())
}

/// Replaces the `previous_lines` last drawn on the terminal by `text`; returns its line count.
fn redraw(text: &str, previous_lines: usize) -> usize {
    let mut out = std::io::stdout().lock();
    if previous_lines > 0 {
        // Up to the first line drawn, then clear to the end of the screen.
        let _ = write!(out, "\x1b[{previous_lines}A\r\x1b[J");
    }
    let _ = write!(out, "{text}");
    let _ = out.flush();
    text.lines().count()
}

/// `rebake pause IMAGE --reason TEXT`.
pub async fn pause(endpoint: &str, image: &str, reason: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let response = client
        .pause(api::PauseRequest {
            image: image.to_string(),
            reason: reason.to_string(),
        })
        .await
        .context("Pause failed")?
        .into_inner();
    print_pause(&response, output)
}

/// `rebake resume IMAGE`.
pub async fn resume(endpoint: &str, image: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let response = client
        .resume(api::ResumeRequest {
            image: image.to_string(),
        })
        .await
        .context("Resume failed")?
        .into_inner();
    print_pause(&response, output)
}

fn print_pause(response: &api::PauseResponse, output: Output) -> Result<()> {
    match output {
        Output::Table => println!(
            "{} {}{}",
            response.image,
            if response.paused { "paused" } else { "resumed" },
            if response.event_id.is_empty() {
                String::new()
            } else {
                format!(" (event {})", response.event_id)
            }
        ),
        Output::Json => print_json(&serde_json::json!({
            "image": response.image,
            "paused": response.paused,
            "event_id": response.event_id,
        }))?,
    }
    Ok(())
}

/// `rebake exposure [IMAGE]`.
pub async fn exposure(endpoint: &str, image: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let exposure = client
        .get_exposure(api::GetExposureRequest {
            image: image.to_string(),
        })
        .await
        .context("GetExposure failed")?
        .into_inner();
    match output {
        Output::Table => print!("{}", render::render_exposure_table(&exposure, style(output))),
        Output::Json => print_json(&render::exposure_to_json(&exposure))?,
    }
    Ok(())
}

/// `rebake watch`.
pub async fn watch(endpoint: &str, image: &str, kinds: Vec<String>, from: u64, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let mut stream = client
        .watch_events(rebake_proto::control::v1::WatchEventsRequest {
            image: image.to_string(),
            kinds,
            from_sequence: from,
        })
        .await
        .context("WatchEvents failed")?
        .into_inner();
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(3600 * 24 * 365)) => return Ok(()),
        };
        match next.context("event stream failed")? {
            Some(event) => match output {
                Output::Table => println!("{}", rebake_control::client::render_event_line(&event)),
                Output::Json => println!("{}", rebake_control::client::event_to_json(&event)),
            },
            None => return Ok(()),
        }
    }
}

/// `rebake findings`.
pub async fn findings(endpoint: &str, image: &str, build: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let report = client
        .get_findings(rebake_proto::control::v1::GetFindingsRequest {
            image: image.to_string(),
            build_id: build.to_string(),
        })
        .await
        .context("GetFindings failed")?
        .into_inner();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&findings_json(&report))?),
        Output::Table => print!("{}", render_findings(&report)),
    }
    Ok(())
}

fn findings_json(report: &rebake_proto::control::v1::Findings) -> serde_json::Value {
    serde_json::json!({
        "image": report.image,
        "build_id": report.build_id,
        "digest": report.digest,
        "passed": report.passed,
        "components": report.components,
        "advisories_digest": report.advisories_digest,
        "scanned_at_ms": report.scanned_at_ms,
        "findings": report.findings.iter().map(|finding| serde_json::json!({
            "id": finding.id,
            "aliases": finding.aliases,
            "severity": finding.severity,
            "cvss_score": finding.cvss_score,
            "ecosystem": finding.ecosystem,
            "package": finding.package,
            "installed_version": finding.installed_version,
            "fixed_version": finding.fixed_version,
            "layer": finding.layer,
            "purl": finding.purl,
            "summary": finding.summary,
        })).collect::<Vec<_>>(),
        "structure": report.structure.iter().map(|result| serde_json::json!({
            "kind": result.kind, "name": result.name, "status": result.status, "message": result.message,
        })).collect::<Vec<_>>(),
        "denials": report.denials.iter().map(|denial| serde_json::json!({
            "rule": denial.rule, "message": denial.message,
        })).collect::<Vec<_>>(),
    })
}

/// The scan report as text for people.
pub fn render_findings(report: &rebake_proto::control::v1::Findings) -> String {
    let distinct = report
        .findings
        .iter()
        .map(|f| (&f.severity, &f.id, &f.package, &f.installed_version, &f.fixed_version))
        .collect::<std::collections::HashSet<_>>()
        .len();
    let mut out = format!(
        "{} build {} ({}): {}, {} packages, {distinct} findings\n",
        report.image,
        report.build_id,
        report.digest,
        if report.passed { "passed" } else { "DENIED" },
        report.components,
    );
    for denial in &report.denials {
        out.push_str(&format!("  denied by {}: {}\n", denial.rule, denial.message));
    }
    if !report.findings.is_empty() {
        // A multi-platform image is scanned per platform, so the same finding comes once per
        // platform's layer; people want it once (`-o json` keeps every one with its layer).
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<[String; 5]> = report
            .findings
            .iter()
            .map(|finding| {
                [
                    finding.severity.clone(),
                    finding.id.clone(),
                    finding.package.clone(),
                    finding.installed_version.clone(),
                    if finding.fixed_version.is_empty() {
                        "(no fix)".to_string()
                    } else {
                        finding.fixed_version.clone()
                    },
                ]
            })
            .filter(|row| seen.insert(row.clone()))
            .collect();
        let header = ["SEVERITY", "ID", "PACKAGE", "INSTALLED", "FIXED"];
        let widths: Vec<usize> = (0..5)
            .map(|column| {
                rows.iter()
                    .map(|row| row[column].len())
                    .chain([header[column].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(header.map(str::to_string)).chain(rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            out.push_str(&format!("  {}\n", cells.join("  ").trim_end()));
        }
    }
    let failed: Vec<_> = report
        .structure
        .iter()
        .filter(|result| result.status != "passed")
        .collect();
    if !report.structure.is_empty() {
        out.push_str(&format!(
            "  structure tests: {}/{} passed\n",
            report.structure.len() - failed.len(),
            report.structure.len()
        ));
        for result in failed {
            out.push_str(&format!("    {} {}: {}\n", result.status, result.name, result.message));
        }
    }
    out
}

/// `rebake sbom`.
pub async fn sbom(endpoint: &str, image: &str, build: &str, format: &str) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let sbom = client
        .get_sbom(rebake_proto::control::v1::GetSbomRequest {
            image: image.to_string(),
            build_id: build.to_string(),
            format: format.to_string(),
        })
        .await
        .context("GetSbom failed")?
        .into_inner();
    let document: serde_json::Value = serde_json::from_str(&sbom.json).context("the SBOM is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use rebake_proto::control::v1::{Finding, Findings};

    use super::render_findings;

    fn finding(layer: &str) -> Finding {
        Finding {
            id: "DSA-1".into(),
            severity: "high".into(),
            ecosystem: "Debian".into(),
            package: "openssl".into(),
            installed_version: "3.0.1-1".into(),
            fixed_version: "3.0.2-1".into(),
            layer: layer.into(),
            ..Default::default()
        }
    }

    /// The same finding from each platform's layer of a two-platform image is one row.
    #[test]
    fn findings_of_each_platform_are_shown_once() {
        let report = Findings {
            image: "app".into(),
            build_id: "b1".into(),
            digest: "sha256:aa".into(),
            passed: true,
            components: 3,
            findings: vec![finding("sha256:amd64layer"), finding("sha256:arm64layer")],
            ..Default::default()
        };
        let text = render_findings(&report);
        assert!(
            text.starts_with("app build b1 (sha256:aa): passed, 3 packages, 1 findings\n"),
            "{text}"
        );
        assert_eq!(text.matches("DSA-1").count(), 1, "{text}");
        let mut other = finding("sha256:amd64layer");
        other.package = "libssl3".into();
        let report = Findings {
            findings: vec![finding("sha256:amd64layer"), other],
            ..report
        };
        let text = render_findings(&report);
        assert!(text.contains(", 2 findings\n"), "{text}");
        assert_eq!(text.matches("DSA-1").count(), 2, "{text}");
    }
}
