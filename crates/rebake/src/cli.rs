//! Command line: parsing, and the commands that are not services.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rebake_config::Config;
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

/// `rebake images`.
pub async fn images(endpoint: &str, prefix: &str, status: &str, output: Output) -> Result<()> {
    let mut client = rebake_control::client::connect(endpoint).await?;
    let response = client
        .list_images(rebake_proto::control::v1::ListImagesRequest {
            name_prefix: prefix.to_string(),
            status: status.to_string(),
        })
        .await
        .context("ListImages failed")?
        .into_inner();
    match output {
        Output::Table => print!("{}", rebake_control::client::render_images_table(&response.images)),
        Output::Json => {
            let images: Vec<_> = response
                .images
                .iter()
                .map(rebake_control::client::image_to_json)
                .collect();
            println!("{}", serde_json::to_string_pretty(&images)?);
        }
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
    let mut out = format!(
        "{} build {} ({}): {}, {} packages, {} findings\n",
        report.image,
        report.build_id,
        report.digest,
        if report.passed { "passed" } else { "DENIED" },
        report.components,
        report.findings.len()
    );
    for denial in &report.denials {
        out.push_str(&format!("  denied by {}: {}\n", denial.rule, denial.message));
    }
    if !report.findings.is_empty() {
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
