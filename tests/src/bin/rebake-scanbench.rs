//! Scan benchmark: a ~500-package image read back from a registry and checked (SBOM,
//! vulnerability matching against the full test advisory set, structure tests, policy),
//! cold (empty per-layer cache) and warm (cache filled by an earlier scan), plus a rebased
//! image that shares the package layer but has a new layer on top.
//!
//! `cargo run --release -p rebake-e2e --bin rebake-scanbench -- [--runs N] [--packages N]
//! [--synthetic-advisories N] [--synthetic-format zip|dir] [--seed N] [--json PATH]`
//!
//! The image is real data: the first N installed packages of this machine's
//! `/var/lib/dpkg/status` with its `etc/os-release` in one layer, and this repository's own
//! `Cargo.lock` in a second. The advisories are every record under
//! `crates/rebake-scanner/tests/data/advisories/` (OSV and secdb; sources in its README),
//! plus, with `--synthetic-advisories N`, N generated OSV records (fixed seed) written as
//! an OSV `all.zip` export (or a directory) in a temporary directory: about 20% name a
//! package of the image (Debian source package or crate) with ranges that do or do not
//! cover the installed version, the rest made-up packages.
//!
//! Each run builds the checks afresh (so its per-layer cache starts empty) and uses that
//! one cache for the cold, warm and rebased scans; the bench fails if the cache's
//! hit/miss counts are not the ones that sequence must give.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use rebake_e2e::{
    bench::{header, stats},
    push_image,
};
use rebake_events::pb;
use rebake_oci::{LayerEntry, RuntimeConfig};
use rebake_scanner::{
    ScannerSettings, build_checks,
    checks::finding_record,
    component::{Component, Ecosystem},
    load_advisories,
    read::read_image,
    sbom,
    vuln::{AdvisoryIndex, LayerCache, lookup_name, match_components},
};

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

/// SplitMix64: a fixed seed gives the same advisory set on every machine and run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`%.
    fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A package of the bench image advisories can name: its ecosystem, the name advisories
/// are written against (Debian source package, crate name) and its installed version.
#[derive(Debug, Clone)]
struct Target {
    ecosystem: Ecosystem,
    name: String,
    version: String,
}

/// The image's Debian packages (by source package) and crates that have exactly one
/// installed version, so that whether a generated range covers it is known in advance.
fn targets(components: &[Component]) -> Vec<Target> {
    let mut versions: BTreeMap<(Ecosystem, String), BTreeSet<String>> = BTreeMap::new();
    for component in components {
        if matches!(component.ecosystem, Ecosystem::Debian | Ecosystem::CratesIo) {
            versions
                .entry((component.ecosystem, lookup_name(component).to_string()))
                .or_default()
                .insert(component.version.trim().to_string());
        }
    }
    versions
        .into_iter()
        .filter(|(_, versions)| versions.len() == 1)
        .filter_map(|((ecosystem, name), versions)| {
            let version = versions.into_iter().next()?;
            // Crate ranges below are built by bumping the patch number.
            (ecosystem != Ecosystem::CratesIo || semver_core(&version).is_some()).then_some(Target {
                ecosystem,
                name,
                version,
            })
        })
        .collect()
}

/// `major.minor.patch` of a SemVer version (pre-release and build metadata dropped).
fn semver_core(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut numbers = core.split('.').map(|part| part.parse::<u64>().ok());
    let parsed = (numbers.next()??, numbers.next()??, numbers.next()??);
    numbers.next().is_none().then_some(parsed)
}

/// A version `step` (1 or 2) places above `version`, in the target's ordering: a dpkg
/// `+synthN` suffix sorts after the version itself, a crate gets its patch number bumped.
fn above(target: &Target, step: u64) -> String {
    match semver_core(&target.version) {
        Some((major, minor, patch)) if target.ecosystem == Ecosystem::CratesIo => {
            format!("{major}.{minor}.{}", patch + step)
        }
        _ => format!("{}+synth{step}", target.version),
    }
}

const CVSS_VECTORS: [&str; 4] = [
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H",
    "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:L",
];
const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// What is kept of one generated OSV record once written: its id, and whether it names a
/// package of the bench image and must match it.
struct Synthetic {
    id: String,
    expect_match: bool,
    names_image_package: bool,
}

/// A range object (`type` + `events`) in OSV JSON.
fn range(kind: &str, events: &[(&str, &str)]) -> serde_json::Value {
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|(event, version)| serde_json::json!({ *event: version }))
        .collect();
    serde_json::json!({"type": kind, "events": events})
}

/// Generates `count` OSV records (ids `SYNTH-000001`…). About 20% name a package of the
/// image: 35% of those affect the installed version with a fix above it, 10% affect it
/// with no fix, 30% are fixed at exactly the installed version, 25% are introduced above
/// it; a Debian one is written for `Debian:12` (70%), `Debian` (20%) or `Debian:11`
/// (10%, which never matches this Debian 12 image). The rest name made-up packages
/// (about four records per name, 70% Debian, 30% crates.io). Each record is handed to
/// `write` (as OSV JSON) as it is made.
fn synthesize(
    count: usize,
    seed: u64,
    targets: &[Target],
    mut write: impl FnMut(&str, &serde_json::Value) -> Result<()>,
) -> Result<Vec<Synthetic>> {
    let mut rng = Rng(seed);
    let made_up_names = (count / 4).max(1);
    (1..=count)
        .map(|number| {
            let id = format!("SYNTH-{number:06}");
            let names_image_package = !targets.is_empty() && rng.percent(20);
            let mut affected = Vec::new();
            let mut expect_match = false;
            if names_image_package {
                let target = &targets[rng.below(targets.len())];
                let (ecosystem, release_matches) = match target.ecosystem {
                    Ecosystem::CratesIo => ("crates.io", true),
                    _ => match rng.below(10) {
                        0..=6 => ("Debian:12", true),
                        7 | 8 => ("Debian", true),
                        _ => ("Debian:11", false),
                    },
                };
                let kind = match target.ecosystem {
                    Ecosystem::CratesIo if rng.percent(80) => "SEMVER",
                    _ => "ECOSYSTEM",
                };
                let installed = target.version.as_str();
                let (up1, up2) = (above(target, 1), above(target, 2));
                let outcome = rng.below(100);
                let (ranges, covers) = match outcome {
                    0..35 => (range(kind, &[("introduced", "0"), ("fixed", &up1)]), true),
                    35..45 if target.ecosystem == Ecosystem::CratesIo => {
                        (range(kind, &[("introduced", "0"), ("last_affected", installed)]), true)
                    }
                    35..45 => (range(kind, &[("introduced", "0")]), true),
                    45..75 => (range(kind, &[("introduced", "0"), ("fixed", installed)]), false),
                    _ => (range(kind, &[("introduced", &up1), ("fixed", &up2)]), false),
                };
                expect_match = covers && release_matches;
                affected.push(serde_json::json!({
                    "package": {"ecosystem": ecosystem, "name": target.name},
                    "ranges": [ranges],
                }));
                // DSA-style: the same package in the previous release too (never matches).
                if target.ecosystem != Ecosystem::CratesIo && ecosystem != "Debian:11" && rng.percent(15) {
                    affected.push(serde_json::json!({
                        "package": {"ecosystem": "Debian:11", "name": target.name},
                        "ranges": [range("ECOSYSTEM", &[("introduced", "0"), ("fixed", &up1)])],
                    }));
                }
            } else {
                let name_number = rng.below(made_up_names);
                let (major, minor, patch) = (rng.below(5), rng.below(30), rng.below(20));
                let package = if rng.percent(70) {
                    let ecosystem = if rng.percent(80) { "Debian:12" } else { "Debian" };
                    serde_json::json!({
                        "package": {"ecosystem": ecosystem, "name": format!("synth-lib{name_number}")},
                        "ranges": [range("ECOSYSTEM", &[
                            ("introduced", "0"),
                            ("fixed", &format!("{major}.{minor}.{patch}-{}", 1 + rng.below(4))),
                        ])],
                    })
                } else {
                    serde_json::json!({
                        "package": {"ecosystem": "crates.io", "name": format!("synth_crate_{name_number}")},
                        "ranges": [range("SEMVER", &[
                            ("introduced", &format!("{major}.{minor}.0")),
                            ("fixed", &format!("{major}.{minor}.{}", patch + 1)),
                        ])],
                    })
                };
                affected.push(package);
            }
            let mut record = serde_json::json!({
                "schema_version": "1.6.0",
                "id": id,
                "modified": "2026-11-01T00:00:00Z",
                "published": "2026-10-01T00:00:00Z",
                "aliases": [format!("CVE-2026-{}", 100_000 + number)],
                "summary": format!("Synthetic advisory {number} for the scan bench"),
                "details": "Generated by rebake-scanbench; describes no real vulnerability.",
                "affected": affected,
                "references": [{"type": "ADVISORY", "url": format!("https://example.invalid/{id}")}],
            });
            if rng.percent(50) {
                record["severity"] =
                    serde_json::json!([{"type": "CVSS_V3", "score": CVSS_VECTORS[rng.below(CVSS_VECTORS.len())]}]);
            } else {
                record["database_specific"] = serde_json::json!({"severity": SEVERITIES[rng.below(SEVERITIES.len())]});
            }
            write(&id, &record)?;
            Ok(Synthetic {
                id,
                expect_match,
                names_image_package,
            })
        })
        .collect()
}

/// Generates the records (see [`synthesize`]) into `dir` as an OSV `all.zip` export
/// (deflated, one `<id>.json` per entry, as osv.dev publishes them) or as a directory of
/// `<id>.json` files; returns the path to load and what each record must do.
fn write_synthetic(
    count: usize,
    seed: u64,
    targets: &[Target],
    dir: &Path,
    as_zip: bool,
) -> Result<(PathBuf, Vec<Synthetic>)> {
    if as_zip {
        let path = dir.join("all.zip");
        let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut writer = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let records = synthesize(count, seed, targets, |id, record| {
            writer.start_file(format!("{id}.json"), options)?;
            writer.write_all(&serde_json::to_vec(record)?)?;
            Ok(())
        })?;
        writer.finish()?.flush()?;
        Ok((path, records))
    } else {
        let path = dir.join("osv");
        std::fs::create_dir(&path)?;
        let records = synthesize(count, seed, targets, |id, record| {
            std::fs::write(path.join(format!("{id}.json")), serde_json::to_vec(record)?)?;
            Ok(())
        })?;
        Ok((path, records))
    }
}

const USAGE: &str = "usage: rebake-scanbench [--runs N] [--packages N] [--synthetic-advisories N] \
                     [--synthetic-format zip|dir] [--seed N] [--json PATH]";

#[tokio::main]
async fn main() -> Result<()> {
    rebake_e2e::bench::init_logging();
    let mut runs = 5usize;
    let mut packages = 500usize;
    let mut synthetic_count = 0usize;
    let mut synthetic_zip = true;
    let mut seed = 20261203u64;
    let mut json_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().context("--runs needs a number")?.parse()?,
            "--packages" => packages = args.next().context("--packages needs a number")?.parse()?,
            "--synthetic-advisories" => {
                synthetic_count = args.next().context("--synthetic-advisories needs a number")?.parse()?;
            }
            "--synthetic-format" => {
                synthetic_zip = match args.next().as_deref() {
                    Some("zip") => true,
                    Some("dir") => false,
                    _ => bail!("--synthetic-format needs zip or dir"),
                }
            }
            "--seed" => seed = args.next().context("--seed needs a number")?.parse()?,
            "--json" => json_path = Some(args.next().context("--json needs a path")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(runs > 0, "--runs must be at least 1");
    ensure!(synthetic_count <= 999_999, "--synthetic-advisories is at most 999999");
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
    let repository = format!("{host}/bench/scan");
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

    // The packages the image holds (what the checks will find), read once untimed: the
    // synthetic advisories name some of them, and the matching-only rows use them.
    let image_views = read_image(&registry, &repository, &image, &[]).await?;
    let rebased_views = read_image(&registry, &repository, &rebased, &[]).await?;
    let (image_layers, rebased_layers) = (&image_views[0].view.layers, &rebased_views[0].view.layers);
    ensure!(
        image_layers.len() == 2
            && rebased_layers.len() == 2
            && image_layers[0] == rebased_layers[0]
            && image_layers[1] != rebased_layers[1],
        "the rebased image must share exactly the package layer: {image_layers:?} / {rebased_layers:?}"
    );
    let image_components = sbom::components(&image_views[0].view);
    let rebased_components = sbom::components(&rebased_views[0].view);
    let layers_with_components = image_components
        .iter()
        .map(|component| component.layer.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    ensure!(
        layers_with_components == 2,
        "both layers must hold packages (found them in {layers_with_components})"
    );

    let advisories = root.join("crates/rebake-scanner/tests/data/advisories");
    let mut sources = vec![
        serde_json::from_value(serde_json::json!({"kind": "osv", "path": advisories.join("osv")}))?,
        serde_json::from_value(
            serde_json::json!({"kind": "secdb", "path": advisories.join("secdb/alpine-v3.19-main.json")}),
        )?,
    ];
    let synthetic_dir = tempfile::tempdir()?;
    let image_targets = targets(&image_components);
    let mut synthetic = Vec::new();
    let mut synthetic_bytes = 0;
    if synthetic_count > 0 {
        let started = Instant::now();
        let path;
        (path, synthetic) = write_synthetic(
            synthetic_count,
            seed,
            &image_targets,
            synthetic_dir.path(),
            synthetic_zip,
        )?;
        synthetic_bytes = if synthetic_zip {
            std::fs::metadata(&path)?.len()
        } else {
            0
        };
        eprintln!(
            "generated {synthetic_count} synthetic advisories (seed {seed}) in {:.0} ms: {}",
            millis(started),
            path.display()
        );
        sources.push(serde_json::from_value(
            serde_json::json!({"kind": "osv", "path": path}),
        )?);
    }

    // Loading once: read + parse every source, then the index (digest + by-package map).
    let started = Instant::now();
    let index = load_advisories(&sources).map_err(anyhow::Error::msg)?;
    let load_ms = millis(started);
    let records = index.advisories().to_vec();
    let started = Instant::now();
    let rebuilt = AdvisoryIndex::new(records);
    let index_ms = millis(started);
    ensure!(rebuilt.digest() == index.digest(), "index digests differ");
    drop(rebuilt);
    let advisory_count = index.len();
    eprintln!("loaded {advisory_count} advisories in {load_ms:.0} ms (index build alone {index_ms:.0} ms)");

    // The checks as the service builds them, minus loading the advisories again each run.
    let settings = ScannerSettings {
        max_image_size_bytes: 1 << 31,
        ..Default::default()
    };
    let done = |digest: &str| pb::BuildDone {
        build_id: "bench".into(),
        image: "bench".into(),
        staging_repository: repository.clone(),
        digest: digest.to_string(),
        base_ref: "scratch".into(),
        ..Default::default()
    };

    // What the matching must give (also checks the generator's expectations).
    let expected = match_components(&index, &image_components);
    let expected_records: Vec<_> = expected.iter().map(finding_record).collect();
    let expected_rebased: Vec<_> = match_components(&index, &rebased_components)
        .iter()
        .map(finding_record)
        .collect();
    let matched_ids: BTreeSet<&str> = expected.iter().map(|finding| finding.id.as_str()).collect();
    let expected_ids: BTreeSet<&str> = synthetic
        .iter()
        .filter(|record| record.expect_match)
        .map(|record| record.id.as_str())
        .collect();
    let matched_synthetic: BTreeSet<&str> = matched_ids
        .iter()
        .copied()
        .filter(|id| id.starts_with("SYNTH-"))
        .collect();
    ensure!(
        matched_synthetic == expected_ids,
        "synthetic advisories matched ({}) differ from those generated to match ({})",
        matched_synthetic.len(),
        expected_ids.len()
    );
    let naming_image = synthetic.iter().filter(|record| record.names_image_package).count();

    let mut read = Vec::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut rebased_ms = Vec::new();
    let mut sbom_ms = Vec::new();
    let mut documents_ms = Vec::new();
    let mut match_uncached = Vec::new();
    let mut match_cold = Vec::new();
    let mut match_warm = Vec::new();
    let mut match_rebased = Vec::new();
    let mut components = 0;
    let mut findings = 0;
    for _ in 0..runs {
        // Fresh checks, hence a fresh layer cache, per run; one cache for the whole
        // cold → warm → rebased sequence within it.
        let checks = build_checks(&settings).map_err(anyhow::Error::msg)?;
        checks.set_advisories(index.clone());
        let started = Instant::now();
        let platforms = read_image(&registry, &repository, &image, &[]).await?;
        read.push(millis(started));
        let started = Instant::now();
        let outcome = checks
            .check(&done(&image), None, None, &platforms)
            .map_err(anyhow::Error::msg)?;
        cold.push(millis(started));
        ensure!(
            checks.cache_stats() == (0, 2),
            "cold scan: {:?} (hits, misses)",
            checks.cache_stats()
        );
        components = outcome.components.len();
        findings = outcome.report.findings.len();
        ensure!(
            outcome.report.findings == expected_records,
            "cold scan findings differ from an uncached match"
        );
        let started = Instant::now();
        let again = checks
            .check(&done(&image), None, None, &platforms)
            .map_err(anyhow::Error::msg)?;
        warm.push(millis(started));
        ensure!(
            checks.cache_stats() == (2, 2),
            "warm scan: {:?} (hits, misses)",
            checks.cache_stats()
        );
        ensure!(
            again.report.findings == outcome.report.findings,
            "warm scan findings differ"
        );
        let platforms = read_image(&registry, &repository, &rebased, &[]).await?;
        let started = Instant::now();
        let moved = checks
            .check(&done(&rebased), None, None, &platforms)
            .map_err(anyhow::Error::msg)?;
        rebased_ms.push(millis(started));
        ensure!(
            checks.cache_stats() == (3, 3),
            "rebased scan: {:?} (hits, misses)",
            checks.cache_stats()
        );
        ensure!(
            moved.report.findings == expected_rebased,
            "rebased scan findings differ from an uncached match"
        );

        // Where the time goes: the package list alone, the two SBOM documents, and the
        // matching alone (no cache, then a fresh layer cache cold → warm → rebased).
        let started = Instant::now();
        let listed = sbom::components(&platforms[0].view);
        sbom_ms.push(millis(started));
        ensure!(listed == rebased_components, "package list differs between reads");
        let subject = sbom::SbomSubject {
            name: repository.clone(),
            digest: rebased.clone(),
            created: String::new(),
        };
        let started = Instant::now();
        let spdx = sbom::to_spdx_json(&listed, &subject);
        let cyclonedx = sbom::to_cyclonedx_json(&listed, &subject);
        documents_ms.push(millis(started));
        ensure!(
            spdx.is_object() && cyclonedx.is_object(),
            "SBOM documents are not objects"
        );
        let started = Instant::now();
        let uncached = match_components(&index, &image_components);
        match_uncached.push(millis(started));
        ensure!(uncached.len() == expected.len(), "uncached match differs");
        let mut cache = LayerCache::new();
        let started = Instant::now();
        cache.match_with_cache(&index, &image_components);
        match_cold.push(millis(started));
        let started = Instant::now();
        cache.match_with_cache(&index, &image_components);
        match_warm.push(millis(started));
        let started = Instant::now();
        cache.match_with_cache(&index, &rebased_components);
        match_rebased.push(millis(started));
        ensure!(
            (cache.hits(), cache.misses()) == (3, 3),
            "matching-only cache did not hit"
        );
        eprint!(".");
    }
    eprintln!();
    let synthetic_matched_share = if synthetic_count > 0 {
        matched_synthetic.len() as f64 / synthetic_count as f64
    } else {
        0.0
    };
    println!(
        "image: {components} packages ({dpkg_count} dpkg + Cargo.lock), {advisory_count} advisories, {findings} findings"
    );
    if synthetic_count > 0 {
        println!(
            "synthetic: {synthetic_count} records (seed {seed}, {}), {naming_image} name a package of the image ({} \
             targets), {} match it ({:.1}%)",
            if synthetic_zip {
                format!("all.zip, {} KiB", synthetic_bytes / 1024)
            } else {
                "directory".to_string()
            },
            image_targets.len(),
            matched_synthetic.len(),
            synthetic_matched_share * 100.0
        );
    }
    println!("advisory load (read + parse + index): {load_ms:.0} ms; index build alone: {index_ms:.0} ms");
    header();
    let rows = vec![
        stats("read image (registry + inventory)", read),
        stats("checks, cold layer cache", cold),
        stats("checks, same image, warm cache", warm),
        stats("checks, rebased image (1 new layer)", rebased_ms),
        stats("  package list (sbom::components)", sbom_ms),
        stats("  SBOM documents (SPDX + CycloneDX)", documents_ms),
        stats("  match, no cache", match_uncached),
        stats("  match, cold layer cache", match_cold),
        stats("  match, warm cache", match_warm),
        stats("  match, rebased (1 new layer)", match_rebased),
    ];
    println!("layer cache per run: cold 0 hits / 2 misses, warm +2 hits, rebased +1 hit / +1 miss (checked)");
    let document = serde_json::json!({
        "bench": "scan",
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "components": components,
        "advisories": advisory_count,
        "findings": findings,
        "synthetic": {
            "count": synthetic_count,
            "seed": seed,
            "format": if synthetic_zip { "zip" } else { "dir" },
            "zip_bytes": synthetic_bytes,
            "naming_image_packages": naming_image,
            "matching_image": matched_synthetic.len(),
            "matching_share": synthetic_matched_share,
        },
        "advisory_load_ms": load_ms,
        "index_build_ms": index_ms,
        "results": rows,
    });
    if let Some(path) = json_path {
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        eprintln!("wrote {path}");
    }
    Ok(())
}
