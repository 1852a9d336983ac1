//! Scan benchmark: a ~500-package image read back from a registry and checked (SBOM,
//! vulnerability matching against the full test advisory set, structure tests, policy),
//! cold (empty per-layer cache) and warm (cache filled by an earlier scan), plus a rebased
//! image that shares the package layer but has a new layer on top.
//!
//! `cargo run --release -p rebake-e2e --bin rebake-scanbench -- [--runs N] [--packages N] [--json PATH]`
//!
//! The image is real data: the first N installed packages of this machine's
//! `/var/lib/dpkg/status` with its `etc/os-release` in one layer, and this repository's own
//! `Cargo.lock` in a second. The advisories are every record under
//! `crates/rebake-scanner/tests/data/advisories/` (OSV and secdb; sources in its README).

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result, bail, ensure};
use rebake_e2e::{
    bench::{header, stats},
    push_image,
};
use rebake_events::pb;
use rebake_oci::{LayerEntry, RuntimeConfig};
use rebake_scanner::{ScannerSettings, build_checks, read::read_image};

fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The first `count` paragraphs of this machine's dpkg status.
fn dpkg_status(count: usize) -> Result<(String, usize)> {
    let text = std::fs::read_to_string("/var/lib/dpkg/status").context("this bench reads /var/lib/dpkg/status")?;
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .filter(|paragraph| paragraph.contains("Status: install ok installed"))
        .take(count)
        .collect();
    Ok((paragraphs.join("\n\n") + "\n", paragraphs.len()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut runs = 5usize;
    let mut packages = 500usize;
    let mut json_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().context("--runs needs a number")?.parse()?,
            "--packages" => packages = args.next().context("--packages needs a number")?.parse()?,
            "--json" => json_path = Some(args.next().context("--json needs a path")?),
            "-h" | "--help" => {
                println!("usage: rebake-scanbench [--runs N] [--packages N] [--json PATH]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(runs > 0, "--runs must be at least 1");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (status, dpkg_count) = dpkg_status(packages)?;
    let os_release = std::fs::read("/etc/os-release").unwrap_or_default();
    let cargo_lock = std::fs::read(root.join("Cargo.lock"))?;
    let package_layer = vec![
        LayerEntry::file("var/lib/dpkg/status", 0o644, status.into_bytes()),
        LayerEntry::file("etc/os-release", 0o644, os_release),
    ];
    let app_layer = |marker: &str| {
        vec![
            LayerEntry::file("srv/app/Cargo.lock", 0o644, cargo_lock.clone()),
            LayerEntry::file("srv/app/VERSION", 0o644, marker.as_bytes().to_vec()),
        ]
    };
    let registry_server = rebake_testkit::RegistryServer::start(None).await?;
    let host = registry_server.host();
    let registry = rebake_oci::Registry::try_new(vec![host.clone()])?;
    let runtime = RuntimeConfig {
        user: Some("65532".into()),
        ..Default::default()
    };
    let image = push_image(
        &registry,
        &host,
        "bench/scan",
        "v1",
        vec![package_layer.clone(), app_layer("1")],
        runtime.clone(),
    )
    .await?;
    let rebased = push_image(
        &registry,
        &host,
        "bench/scan",
        "v2",
        vec![package_layer, app_layer("2")],
        runtime,
    )
    .await?;

    let advisories = root.join("crates/rebake-scanner/tests/data/advisories");
    let settings = ScannerSettings {
        max_image_size_bytes: 1 << 31,
        advisories: vec![
            serde_json::from_value(serde_json::json!({"kind": "osv", "path": advisories.join("osv")}))?,
            serde_json::from_value(
                serde_json::json!({"kind": "secdb", "path": advisories.join("secdb/alpine-v3.19-main.json")}),
            )?,
        ],
        ..Default::default()
    };
    let done = |digest: &str| pb::BuildDone {
        build_id: "bench".into(),
        image: "bench".into(),
        staging_repository: format!("{host}/bench/scan"),
        digest: digest.to_string(),
        base_ref: "scratch".into(),
        ..Default::default()
    };

    let mut read = Vec::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut rebased_ms = Vec::new();
    let mut components = 0;
    let mut findings = 0;
    let mut advisory_count = 0;
    let mut hits_misses = (0, 0);
    for _ in 0..runs {
        let checks = build_checks(&settings).map_err(anyhow::Error::msg)?;
        advisory_count = checks.advisories().len();
        let started = Instant::now();
        let platforms = read_image(&registry, &format!("{host}/bench/scan"), &image, &[]).await?;
        read.push(millis(started));
        let started = Instant::now();
        let outcome = checks
            .check(&done(&image), None, None, &platforms)
            .map_err(anyhow::Error::msg)?;
        cold.push(millis(started));
        components = outcome.components.len();
        findings = outcome.report.findings.len();
        let started = Instant::now();
        checks
            .check(&done(&image), None, None, &platforms)
            .map_err(anyhow::Error::msg)?;
        warm.push(millis(started));
        let platforms = read_image(&registry, &format!("{host}/bench/scan"), &rebased, &[]).await?;
        let started = Instant::now();
        checks
            .check(&done(&rebased), None, None, &platforms)
            .map_err(anyhow::Error::msg)?;
        rebased_ms.push(millis(started));
        hits_misses = checks.cache_stats();
        eprint!(".");
    }
    eprintln!();
    println!(
        "image: {components} packages ({dpkg_count} dpkg + Cargo.lock), {advisory_count} advisories, {findings} findings"
    );
    header();
    let rows = vec![
        stats("read image (registry + inventory)", read),
        stats("checks, cold layer cache", cold),
        stats("checks, same image, warm cache", warm),
        stats("checks, rebased image (1 new layer)", rebased_ms),
    ];
    println!(
        "layer cache after the last run: {} hits, {} misses",
        hits_misses.0, hits_misses.1
    );
    let document = serde_json::json!({
        "bench": "scan",
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "components": components,
        "advisories": advisory_count,
        "findings": findings,
        "results": rows,
    });
    if let Some(path) = json_path {
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        eprintln!("wrote {path}");
    }
    Ok(())
}
