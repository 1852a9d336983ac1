//! The example cascade: a real registry, a real NATS, every Rebake service in this process.
//!
//! `cargo run -p rebake-e2e --bin rebake-example`
//!
//! 1. pushes `base:v1`; the registry's own notification starts the cascade: `app` (base +
//!    files from a local Git repository) then `child` (built on `app`);
//! 2. pushes a new image under `base:v1`: both rebuild, child after parent;
//! 3. commits to the app's repository and delivers a signed GitHub-style push webhook: the
//!    app and its child rebuild, the base does not change;
//!
//! and prints what was rebuilt, why, in which order, and how long each took from the upstream
//! change to the signed publication. Ctrl-C stops everything it started.
//!
//! `--keep` leaves everything running after the summary (until Ctrl-C), so you can query the
//! control API with `rebake images`/`rebake watch` and verify signatures yourself.

use std::time::Instant;

use anyhow::Result;
use rebake_e2e::{GITHUB_SECRET, Sandbox};

#[tokio::main]
async fn main() -> Result<()> {
    let keep = std::env::args().any(|arg| arg == "--keep");
    tokio::select! {
        result = run(keep) => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted: stopping nats-server, docker-registry and every service");
            Ok(())
        }
    }
}

async fn run(keep: bool) -> Result<()> {
    println!("starting nats-server, docker-registry and every Rebake service…");
    let sandbox = Sandbox::start("example").await?;
    println!("  nats      {}", sandbox.nats.url());
    println!("  registry  http://{}", sandbox.host);
    println!("  ingress   {}", sandbox.ingress_url);
    println!(
        "  control   {}   (try: cargo run -p rebake -- images --endpoint {})",
        sandbox.control_url, sandbox.control_url
    );
    println!();

    let started = Instant::now();
    println!("step 1: push {}/base:v1 (the registry notifies Rebake)", sandbox.host);
    let base_v1 = sandbox.push_base("v1", "one").await?;
    println!("  base:v1 = {base_v1}");
    let app = sandbox.wait_published("app", None).await?;
    println!("  app    published {app}");
    let child = sandbox.wait_published("child", None).await?;
    println!(
        "  child  published {child}   ({:.2?} since the push)",
        started.elapsed()
    );
    println!();

    let started = Instant::now();
    println!("step 2: push a new image under base:v1");
    let base_v2 = sandbox.push_base("v1", "two").await?;
    println!("  base:v1 = {base_v2}");
    let app2 = sandbox.wait_published("app", Some(&app)).await?;
    println!("  app    published {app2}");
    let child2 = sandbox.wait_published("child", Some(&child)).await?;
    println!(
        "  child  published {child2}   ({:.2?} since the push)",
        started.elapsed()
    );
    println!();

    let started = Instant::now();
    println!("step 3: commit to the app's Git repository and deliver a signed GitHub push webhook");
    let old_commit = sandbox
        .builds_of("app")
        .await?
        .last()
        .and_then(|build| build.sources.first().map(|s| s.commit.clone()))
        .unwrap_or_default();
    let commit = sandbox.commit_source("<h1>hello from a new commit</h1>\n")?;
    let (body, signature) = sandbox.github_push(&old_commit, &commit, GITHUB_SECRET);
    let status = sandbox.send_github(body, &signature, "example-delivery-1").await?;
    println!("  webhook answered {status}; commit {commit}");
    let app3 = sandbox.wait_published("app", Some(&app2)).await?;
    println!("  app    published {app3}");
    let child3 = sandbox.wait_published("child", Some(&child2)).await?;
    println!(
        "  child  published {child3}   ({:.2?} since the webhook)",
        started.elapsed()
    );
    println!();

    println!("summary: every build, in order");
    println!("{:<6} {:<10} {:<22} {:>10}  why", "image", "status", "digest", "window");
    let mut builds = sandbox.builds_of("app").await?;
    builds.extend(sandbox.builds_of("child").await?);
    builds.sort_by_key(|build| build.requested_at_ms);
    for build in builds {
        let first_cause = build.causes.first();
        let window = first_cause
            .filter(|cause| cause.at_ms > 0 && build.finished_at_ms > 0)
            .map(|cause| format!("{} ms", build.finished_at_ms - cause.at_ms))
            .unwrap_or_else(|| "-".to_string());
        let why = build
            .causes
            .iter()
            .map(|cause| format!("{}: {}", cause.kind, cause.description))
            .collect::<Vec<_>>()
            .join(" → ");
        println!(
            "{:<6} {:<10} {:<22} {:>10}  {}",
            build.image,
            build.status,
            build.digest.get(..19).unwrap_or(&build.digest),
            window,
            if why.is_empty() {
                "initial build (resync)".to_string()
            } else {
                why
            }
        );
    }
    println!();
    println!("window = time from the upstream change reaching Rebake to the signed image being published");
    // The key is removed on exit unless --keep: name it only when it will still be there.
    if keep {
        println!(
            "signatures: cosign-style, in {}/apps/<image>:sha256-<hex>.sig; public key {}",
            sandbox.host,
            sandbox.public_key.display()
        );
    } else {
        println!(
            "signatures: cosign-style, in {}/apps/<image>:sha256-<hex>.sig, made with a throwaway key \
             removed on exit (--keep keeps it)",
            sandbox.host
        );
    }
    if keep {
        println!();
        println!("everything keeps running until Ctrl-C. Try, in another terminal:");
        println!("  cargo run -p rebake -- images --endpoint {}", sandbox.control_url);
        println!(
            "  cargo run -p rebake -- watch --endpoint {} --from 1",
            sandbox.control_url
        );
        println!("  cargo run -p rebake -- graph --endpoint {}", sandbox.control_url);
        println!("  cargo run -p rebake -- why child --endpoint {}", sandbox.control_url);
        println!(
            "  cargo run -p rebake -- verify {}/apps/app:latest --key {} --plain-http",
            sandbox.host,
            sandbox.public_key.display()
        );
        println!(
            "  cargo run -p rebake -- rebuild-check {}/apps/app:latest --key {} --plain-http",
            sandbox.host,
            sandbox.public_key.display()
        );
        println!(
            "  skopeo inspect --tls-verify=false docker://{}/apps/app:latest",
            sandbox.host
        );
        println!(
            "  skopeo inspect --raw --tls-verify=false docker://{}/apps/app:sha256-{}.sig",
            sandbox.host,
            app3.trim_start_matches("sha256:")
        );
        std::future::pending::<()>().await;
    } else {
        println!("(run with --keep to leave it running and look around)");
    }
    sandbox.stop().await;
    Ok(())
}
