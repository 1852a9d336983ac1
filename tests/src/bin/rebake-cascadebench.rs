//! Cascade bench: one base push with N dependent images in a 3-level tree.
//!
//! `cargo run --release -p rebake-e2e --bin rebake-cascadebench -- [--images N] [--workers W] [--settle SECONDS] [--json PATH]`
//!
//! The catalog (generated): level 1 has N/10 images (`c1-…`) on `base:v1`; level 2 has
//! 4N/10 images (`c2-…`), image `i` on level-1 parent `i mod L1`; level 3 has the rest
//! (`c3-…`, N/2), image `i` on level-2 parent `i mod L2`. Every image is `base: <parent>` plus
//! a config tweak (user, env naming the image), no sources, no packages — so each build is a
//! rebase: the cost measured is Rebake's own (bus, resolver, builder, scanner, signer,
//! registry round trips), not compression.
//!
//! Two cascades are measured: the first push of `base:v1` (every image built for the first
//! time) and a second push of a new `base:v1` (every image rebuilt). Each is timed from the
//! start of the push to the last image's publication (its `published_at_ms`), observed by
//! watching the images KV bucket. Peak RSS: Rebake runs in this process, so the figure is
//! this process' `VmHWM` (raw) and `VmHWM` minus `VmRSS` before any Rebake service started;
//! the peak is reset (`/proc/self/clear_refs` = 5) before the second cascade.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use rebake_e2e::bench::{CpuTimes, stats};
use rebake_e2e::{Options, Sandbox};
use rebake_events::{
    Bucket,
    state::{BuildRecord, ImageState, ImageStatus},
};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `VmHWM` and `VmRSS` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The level sizes for `n` images.
fn levels(n: usize) -> [usize; 3] {
    let l1 = (n / 10).max(1);
    let l2 = (n * 4 / 10).max(1);
    [l1, l2, n.saturating_sub(l1 + l2).max(1)]
}

fn catalog(n: usize) -> Vec<(String, String)> {
    let [l1, l2, l3] = levels(n);
    let mut files = Vec::new();
    let mut add = |name: String, base: String, level: usize| {
        let yaml = format!(
            "name: {name}\nbase: {base}\nconfig:\n  user: \"1000\"\n  env: {{ LEVEL: \"{level}\", IMAGE: {name} }}\npublish:\n  repository: {{host}}/cascade/{name}\n"
        );
        files.push((format!("{name}.yaml"), yaml));
    };
    for i in 0..l1 {
        add(format!("c1-{i:04}"), "{host}/base:v1".to_string(), 1);
    }
    for i in 0..l2 {
        add(
            format!("c2-{i:04}"),
            format!("{{host}}/cascade/c1-{:04}:latest", i % l1),
            2,
        );
    }
    for i in 0..l3 {
        add(
            format!("c3-{i:04}"),
            format!("{{host}}/cascade/c2-{:04}:latest", i % l2),
            3,
        );
    }
    files
}

struct Cascade {
    name: &'static str,
    seconds: f64,
    images_per_second: f64,
    hwm_kib: u64,
    builds: Vec<BuildRecord>,
    first_done_ms: i64,
    /// CPU used during the cascade by each process.
    cpu: CpuTimes,
}

/// Pushes the base and waits until every image has a published digest other than the one in
/// `previous`; returns the timing and the new digests.
async fn cascade(
    sandbox: &Sandbox,
    name: &'static str,
    release: &str,
    previous: &HashMap<String, String>,
    n: usize,
) -> Result<(Cascade, HashMap<String, String>)> {
    let store = sandbox
        .bus
        .jetstream()
        .get_key_value(sandbox.bus.names().bucket(Bucket::Images))
        .await?;
    let mut watch = store.watch_with_history(">").await?;
    let started_ms = now_ms();
    let started = Instant::now();
    let cpu_before = CpuTimes::now();
    sandbox.push_base("v1", release).await?;
    let mut done: HashMap<String, (String, String, i64)> = HashMap::new();
    let deadline = Duration::from_secs(600);
    let mut last_report = Instant::now();
    while done.len() < n {
        let entry = match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
            Ok(Some(entry)) => entry?,
            Ok(None) => bail!("watch ended"),
            Err(_) if started.elapsed() < deadline => {
                eprintln!(
                    "  {name}: no image state change for 30 s ({} of {n} published after {:.1} s)",
                    done.len(),
                    started.elapsed().as_secs_f64()
                );
                continue;
            }
            Err(_) => bail!("cascade took over {deadline:?}; {} of {n} published", done.len()),
        };
        if started.elapsed() > deadline {
            bail!("cascade took over {deadline:?}; {} of {n} published", done.len());
        }
        let Ok(state) = serde_json::from_slice::<ImageState>(&entry.value) else {
            continue;
        };
        if state.status == ImageStatus::Failed {
            bail!("{} failed: {:?}", state.name, state.last_failure);
        }
        if let Some(published) = state.published
            && previous.get(&state.name) != Some(&published.digest)
        {
            done.insert(
                state.name.clone(),
                (published.digest, published.build_id, published.published_at_ms),
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {name}: {} of {n} published after {:.1} s",
                done.len(),
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let (hwm, _) = memory_kib();
    let cpu = CpuTimes::now().since(cpu_before);
    let last_ms = done.values().map(|(_, _, at)| *at).max().unwrap_or(started_ms);
    let first_ms = done.values().map(|(_, _, at)| *at).min().unwrap_or(started_ms);
    let seconds = (last_ms - started_ms) as f64 / 1000.0;
    // The build records of the builds that were published.
    let builds_kv = sandbox.bus.kv(Bucket::Builds).await?;
    let mut builds = Vec::new();
    for (_, build_id, _) in done.values() {
        if let Some(record) = builds_kv.get::<BuildRecord>(build_id).await? {
            builds.push(record);
        }
    }
    let digests = done
        .into_iter()
        .map(|(image, (digest, _, _))| (image, digest))
        .collect();
    Ok((
        Cascade {
            name,
            seconds,
            images_per_second: n as f64 / seconds,
            hwm_kib: hwm,
            builds,
            first_done_ms: first_ms - started_ms,
            cpu,
        },
        digests,
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    rebake_e2e::bench::init_logging();
    let mut n = 100usize;
    let mut workers = 2usize;
    let mut settle = 10u64;
    let mut json_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{flag} needs a number"))?
                .parse()
                .with_context(|| format!("{flag} needs a number"))
        };
        match arg.as_str() {
            "--images" => n = number("--images")?,
            "--workers" => workers = number("--workers")?,
            "--settle" => settle = number("--settle")? as u64,
            "--json" => json_path = Some(args.next().context("--json needs a path")?),
            "-h" | "--help" => {
                println!("usage: rebake-cascadebench [--images N] [--workers W] [--settle SECONDS] [--json PATH]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if n < 3 {
        bail!("--images must be at least 3");
    }
    let [l1, l2, l3] = levels(n);
    let n = l1 + l2 + l3;
    let (baseline_hwm, baseline_rss) = memory_kib();
    let sandbox = Sandbox::start_with(
        "cascade",
        Options {
            default_images: false,
            images: catalog(n),
            builder_workers: workers,
            // No periodic resync during the measurement (see `--settle`).
            resync_interval: "1h".to_string(),
            ..Options::default()
        },
    )
    .await?;
    // The resolver's start-up resync reads every tracked tag (N HEADs); a "not found" it
    // read before a parent published would be applied after the publish and make children
    // wait for the next resync. Let it finish before pushing.
    tokio::time::sleep(Duration::from_secs(settle)).await;
    eprintln!("catalog: {n} images ({l1} on the base, {l2} on level 1, {l3} on level 2); builder workers {workers}");
    let (first, digests) = cascade(&sandbox, "first build (push base:v1)", "one", &HashMap::new(), n).await?;
    // Reset the peak so the second cascade's is its own (Linux ≥ 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (second, _) = cascade(&sandbox, "rebuild (new base:v1)", "two", &digests, n).await?;
    let (_, rss_after) = memory_kib();

    println!();
    println!(
        "{:<30} {:>7} {:>9} {:>9} {:>10} {:>12} {:>14}",
        "cascade", "images", "total s", "images/s", "first s", "VmHWM MB", "HWM-base MB"
    );
    let mut rows = Vec::new();
    for (index, cascade) in [&first, &second].into_iter().enumerate() {
        let hwm_mb = cascade.hwm_kib as f64 / 1024.0;
        let delta_mb = cascade.hwm_kib.saturating_sub(baseline_rss) as f64 / 1024.0;
        let hwm_valid = index == 0 || reset;
        println!(
            "{:<30} {:>7} {:>9.1} {:>9.1} {:>10.2} {:>12.1} {:>14.1}",
            cascade.name,
            n,
            cascade.seconds,
            cascade.images_per_second,
            cascade.first_done_ms as f64 / 1000.0,
            hwm_mb,
            delta_mb
        );
        let per_image_ms = |seconds: f64| seconds * 1000.0 / n as f64;
        rows.push(serde_json::json!({
            "cpu_ms_per_image": {
                "rebake": per_image_ms(cascade.cpu.own),
                "docker_registry": per_image_ms(cascade.cpu.registry),
                "nats_server": per_image_ms(cascade.cpu.nats),
            },
            "cascade": cascade.name,
            "images": n,
            "seconds": cascade.seconds,
            "images_per_second": cascade.images_per_second,
            "first_published_s": cascade.first_done_ms as f64 / 1000.0,
            "vm_hwm_mb": hwm_mb,
            "vm_hwm_minus_baseline_mb": delta_mb,
            "peak_reset_before": hwm_valid,
        }));
    }
    println!("CPU per image (ms; user + system over the cascade):");
    for cascade in [&first, &second] {
        let per_image_ms = |seconds: f64| seconds * 1000.0 / n as f64;
        println!(
            "  {:<30} rebake {:.1}, docker-registry {:.1}, nats-server {:.1} (machine: {:.1} ms of 2 cores' {:.1} ms per image)",
            cascade.name,
            per_image_ms(cascade.cpu.own),
            per_image_ms(cascade.cpu.registry),
            per_image_ms(cascade.cpu.nats),
            per_image_ms(cascade.cpu.own + cascade.cpu.registry + cascade.cpu.nats),
            per_image_ms(cascade.seconds * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64),
        );
    }
    println!(
        "baseline before Rebake started: VmRSS {:.1} MB (VmHWM {:.1} MB); VmRSS at the end {:.1} MB",
        baseline_rss as f64 / 1024.0,
        baseline_hwm as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );

    // Where the time goes, per build (stage durations and queue waits), for each cascade.
    let mut stage_rows = Vec::new();
    for cascade in [&first, &second] {
        println!("\n{} — per build:", cascade.name);
        rebake_e2e::bench::header();
        let mut segments: Vec<(&str, Vec<f64>)> = vec![
            ("requested -> build started", Vec::new()),
            ("build (rebase + stage)", Vec::new()),
            ("built -> scan started", Vec::new()),
            ("scan", Vec::new()),
            ("scanned -> sign started", Vec::new()),
            ("sign + promote", Vec::new()),
            ("requested -> promoted", Vec::new()),
        ];
        for record in &cascade.builds {
            let stage = |name: &str| rebake_e2e::bench::stage_of(record, name);
            let (build, scan, sign, publish) = (stage("build"), stage("scan"), stage("sign"), stage("publish"));
            let promoted = publish.finished_at_ms.max(sign.finished_at_ms);
            let values = [
                build.started_at_ms - record.requested_at_ms,
                build.finished_at_ms - build.started_at_ms,
                scan.started_at_ms - build.finished_at_ms,
                scan.finished_at_ms - scan.started_at_ms,
                sign.started_at_ms - scan.finished_at_ms,
                promoted - sign.started_at_ms,
                promoted - record.requested_at_ms,
            ];
            for (segment, value) in segments.iter_mut().zip(values) {
                segment.1.push(value as f64);
            }
        }
        let mut rows = Vec::new();
        for (name, values) in segments {
            rows.push(stats(name, values));
        }
        stage_rows.push(serde_json::json!({ "cascade": cascade.name, "per_build": rows }));
    }

    let document = serde_json::json!({
        "bench": "cascade",
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "tree": { "level1": l1, "level2": l2, "level3": l3 },
        "builder_workers": workers,
        "baseline_rss_mb": baseline_rss as f64 / 1024.0,
        "results": rows,
        "stages": stage_rows,
    });
    if let Some(path) = json_path {
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        eprintln!("wrote {path}");
    }
    sandbox.stop().await;
    Ok(())
}
