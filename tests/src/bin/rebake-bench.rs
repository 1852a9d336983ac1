//! Benchmarks of the spine, against real servers.
//!
//! `cargo run --release -p rebake-e2e --bin rebake-bench -- [--runs N] [--json PATH]`
//!
//! notify-to-published: for each run, a new image is pushed under the tracked base tag; the
//! registry notifies the ingress; the app image is rebased, scanned, signed and published.
//! Measured from the ingress receiving the notification (the `received_at` Rebake records as
//! the build's first cause) to the publication time the signer records, and, from outside,
//! from the end of the push to the moment the published state is observed. The child image
//! is also rebuilt each time (the run waits for it before the next push).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use rebake_e2e::{Sandbox, bench::stats};

#[tokio::main]
async fn main() -> Result<()> {
    rebake_e2e::bench::init_logging();
    let mut runs = 50usize;
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
            "--json" => json_path = Some(args.next().context("--json needs a path")?),
            "-h" | "--help" => {
                println!("usage: rebake-bench [--runs N] [--json PATH]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let sandbox = Sandbox::start("bench").await?;
    eprintln!("warming up: first cascade…");
    sandbox.push_base("v1", "warmup").await?;
    let mut app = sandbox.wait_published("app", None).await?;
    let mut child = sandbox.wait_published("child", None).await?;

    let mut notify_to_published = Vec::new();
    let mut push_to_observed = Vec::new();
    // Where the time goes, per segment of the app's build record.
    let segment_names = [
        "  notify -> build requested",
        "  requested -> build started",
        "  build (assemble + stage)",
        "  built -> scan started",
        "  scan",
        "  scanned -> sign started",
        "  sign + promote",
        "  promoted -> published event",
    ];
    let mut segments: Vec<Vec<f64>> = vec![Vec::new(); segment_names.len()];
    for run in 0..runs {
        let pushed = Instant::now();
        sandbox.push_base("v1", &format!("run-{run}")).await?;
        let push_done = pushed.elapsed();
        let new_app = sandbox.wait_published("app", Some(&app)).await?;
        let observed = pushed.elapsed() - push_done;
        let state = sandbox.image_state("app").await?.context("app state")?;
        let published = state.published.context("app published")?;
        let first_cause = published.causes.first().context("build cause")?;
        notify_to_published.push((published.published_at_ms - first_cause.at_ms) as f64);
        let record = sandbox
            .builds_of("app")
            .await?
            .into_iter()
            .find(|record| record.build_id == published.build_id)
            .context("build record of the published build")?;
        let stage = |name: &str| rebake_e2e::bench::stage_of(&record, name);
        let (build, scan, sign, publish) = (stage("build"), stage("scan"), stage("sign"), stage("publish"));
        let points = [
            first_cause.at_ms,
            record.requested_at_ms,
            build.started_at_ms,
            build.finished_at_ms,
            scan.started_at_ms,
            scan.finished_at_ms,
            sign.started_at_ms,
            publish.finished_at_ms.max(sign.finished_at_ms),
            published.published_at_ms,
        ];
        for (index, pair) in points.windows(2).enumerate() {
            segments[index].push((pair[1] - pair[0]) as f64);
        }
        push_to_observed.push(observed.as_secs_f64() * 1000.0);
        app = new_app;
        child = sandbox.wait_published("child", Some(&child)).await?;
        eprint!(".");
    }
    eprintln!();
    rebake_e2e::bench::header();
    let mut rows = vec![stats("notify-to-published (app)", notify_to_published)];
    for (name, values) in segment_names.iter().zip(segments) {
        rows.push(stats(name, values));
    }
    rows.push(stats("push-done-to-observed (app)", push_to_observed));
    let document = serde_json::json!({
        "bench": "notify-to-published",
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "results": rows,
    });
    if let Some(path) = json_path {
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        eprintln!("wrote {path}");
    }
    sandbox.stop().await;
    Ok(())
}
