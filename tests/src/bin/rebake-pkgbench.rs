//! Package build benchmark: an image assembled from real Debian packages, built cold (empty
//! package cache) and warm (every package in the cache), next to `skopeo copy` of the same
//! finished image to the same registry, all in one run.
//!
//! `cargo run --release -p rebake-e2e --bin rebake-pkgbench -- [--runs N] [--packages a,b,c] [--json PATH]`
//!
//! The feed is a local Debian repository made from `apt-get download` of the packages and
//! everything they depend on, signed with `gpg`, served on loopback (see
//! `rebake_e2e::debfeed`). Resolution happens once, outside the timings (it is the
//! resolver's job); each timed build is `rebake_builder::assemble::build_and_stage`:
//! download (cold) or read from cache (warm) and verify every package, unpack, merge with
//! the dpkg database, accounts and os-release, build the layer, push layer, config and
//! manifest. Every run pushes to a fresh repository, so no run reuses another's blobs.
//!
//! `skopeo copy` is measured two ways in the same run: registry to registry (the registry
//! mounts blobs it already holds, so little is uploaded) and from a local OCI layout of the
//! same image to a fresh repository (every blob uploaded: the cost of pushing the finished
//! image). Ratios are reported against both.

use std::{process::Command, time::Instant};

use anyhow::{Context, Result, bail, ensure};
use rebake_e2e::{
    bench::{header, stats},
    debfeed::{DebFeed, build_request, feed_source, load_spec},
};
use rebake_feeds::fetch::FeedClient;

const DEFAULT_PACKAGES: &str = "base-files,netbase,tzdata,ca-certificates,openssl,bash,coreutils,grep,sed,gzip,tar,\
     findutils,diffutils,debianutils,dash,hostname,login,sensible-utils,mawk,ncurses-bin,bsdutils";

fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// `skopeo copy FROM TO` (transport-qualified references), registries over plain HTTP.
/// `home`, when given, is a fresh `$HOME` so that skopeo's blob-info cache knows no other
/// repository to mount blobs from: every blob is uploaded.
fn skopeo_copy(from: &str, to: &str, home: Option<&std::path::Path>) -> Result<()> {
    let mut command = Command::new("skopeo");
    if let Some(home) = home {
        std::fs::create_dir_all(home)?;
        command.env("HOME", home).env("XDG_DATA_HOME", home.join("share"));
    }
    let output = command
        .args(["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .args([from, to])
        .output()
        .context("failed to run skopeo (apt-get install skopeo)")?;
    ensure!(
        output.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    rebake_e2e::bench::init_logging();
    let mut runs = 5usize;
    let mut packages = DEFAULT_PACKAGES.to_string();
    let mut json_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs needs a number")?
            }
            "--packages" => packages = args.next().context("--packages needs a comma-separated list")?,
            "--json" => json_path = Some(args.next().context("--json needs a path")?),
            "-h" | "--help" => {
                println!("usage: rebake-pkgbench [--runs N] [--packages a,b,c] [--json PATH]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(runs > 0, "--runs must be at least 1");
    let install: Vec<&str> = packages
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    let dir = tempfile::tempdir()?;
    eprintln!("building a local feed from apt-get download of {install:?} and their dependencies…");
    let feed = DebFeed::create(dir.path(), &install)?.context("cannot build the local feed here (see above)")?;
    feed.publish()?;
    let server = rebake_testkit::FeedServer::start(feed.root.clone())?;
    let registry_server = rebake_testkit::RegistryServer::start(None).await?;
    let host = registry_server.host();
    let registry = rebake_oci::Registry::try_new(vec![host.clone()])?;
    let source = feed_source(&server.url(), &feed.keyring)?;
    let spec = load_spec(&format!(
        "name: bench\nbase: scratch\npackages:\n  feed: bench\n  install: [{}]\naccounts:\n  users: [{{ name: nonroot, uid: 65532 }}]\nos_release: {{ ID: bench }}\npublish:\n  repository: {host}/bench\n",
        install.join(", ")
    ))?;
    let snapshot = FeedClient::new(dir.path().join("index-cache"))?
        .snapshot("bench", &source)
        .await?;
    let request = build_request(&snapshot, "bench", &source, &spec, "bench")?;
    let download_bytes: i64 = request.packages.iter().map(|package| package.size).sum();
    eprintln!(
        "resolved {} packages ({:.1} MB of .debs)",
        request.packages.len(),
        download_bytes as f64 / 1e6
    );

    let work = |name: &str| dir.path().join(name);
    let build = |client: FeedClient, work_dir: std::path::PathBuf, prefix: String| {
        let registry = registry.clone();
        let request = request.clone();
        async move {
            let started = Instant::now();
            let staged =
                rebake_builder::assemble::build_and_stage(&registry, &client, &work_dir, &prefix, &request).await?;
            anyhow::Ok((millis(started), staged))
        }
    };

    let mut cold = Vec::new();
    let mut digest = None;
    let mut size = 0;
    for run in 0..runs {
        let client = FeedClient::new(work(&format!("cold-cache-{run}")))?;
        let (ms, staged) = build(client, work(&format!("cold-{run}")), format!("cold{run}")).await?;
        if let Some(previous) = &digest {
            ensure!(
                previous == &staged.digest,
                "cold builds differ: {previous} vs {}",
                staged.digest
            );
        }
        digest = Some(staged.digest);
        size = staged.size_bytes;
        cold.push(ms);
        eprint!(".");
    }
    let digest = digest.context("no build ran")?;
    let warm_cache = work("warm-cache");
    build(
        FeedClient::new(&warm_cache)?,
        work("warm-prime"),
        "warmprime".to_string(),
    )
    .await?;
    let mut warm = Vec::new();
    for run in 0..runs {
        let (ms, staged) = build(
            FeedClient::new(&warm_cache)?,
            work(&format!("warm-{run}")),
            format!("warm{run}"),
        )
        .await?;
        ensure!(staged.digest == digest, "a warm build differs from the cold one");
        warm.push(ms);
        eprint!(".");
    }
    // skopeo, twice: registry to registry (the registry mounts the blobs it already has,
    // so this is mostly manifest traffic), and from a local OCI layout (every blob uploaded:
    // the cost of pushing the finished image).
    let mut skopeo = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        skopeo_copy(
            &format!("docker://{host}/cold0/bench@{digest}"),
            &format!("docker://{host}/skopeo{run}/bench:latest"),
            None,
        )?;
        skopeo.push(millis(started));
        eprint!(".");
    }
    let layout = format!("oci:{}:bench", work("layout").display());
    skopeo_copy(&format!("docker://{host}/cold0/bench@{digest}"), &layout, None)?;
    let mut skopeo_push = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let home = work(&format!("skopeo-home-{run}"));
        skopeo_copy(&layout, &format!("docker://{host}/push{run}/bench:latest"), Some(&home))?;
        skopeo_push.push(millis(started));
        eprint!(".");
    }
    eprintln!();
    let median = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        rebake_e2e::bench::percentile(&sorted, 50.0)
    };
    let (cold_median, warm_median, skopeo_median, push_median) =
        (median(&cold), median(&warm), median(&skopeo), median(&skopeo_push));
    println!(
        "image: {} packages, {:.1} MB compressed, digest {digest}",
        request.packages.len(),
        size as f64 / 1e6
    );
    header();
    let rows = vec![
        stats("package build, cold cache", cold),
        stats("package build, warm cache", warm),
        stats("skopeo copy registry -> registry", skopeo),
        stats("skopeo copy oci layout -> registry", skopeo_push),
    ];
    println!("warm build / skopeo push from layout: {:.2}", warm_median / push_median);
    println!("cold build / skopeo push from layout: {:.2}", cold_median / push_median);
    println!(
        "warm build / skopeo copy registry -> registry: {:.2}",
        warm_median / skopeo_median
    );
    let document = serde_json::json!({
        "bench": "package-build",
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "packages": request.packages.len(),
        "download_bytes": download_bytes,
        "image_bytes": size,
        "digest": digest,
        "results": rows,
        "ratios": {
            "warm_over_skopeo_push": warm_median / push_median,
            "cold_over_skopeo_push": cold_median / push_median,
            "warm_over_skopeo_registry_copy": warm_median / skopeo_median,
            "cold_over_skopeo_registry_copy": cold_median / skopeo_median,
        },
    });
    if let Some(path) = json_path {
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        eprintln!("wrote {path}");
    }
    Ok(())
}
