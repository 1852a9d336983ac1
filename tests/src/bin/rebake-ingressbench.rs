//! Ingress bench: verified webhooks per second accepted with a durable ack, next to the raw
//! JetStream acknowledged-publish rate on the same nats-server.
//!
//! `cargo run --release -p rebake-e2e --bin rebake-ingressbench -- [--seconds S] [--clients C] [--json PATH]`
//!
//! Webhooks: C concurrent clients (one keep-alive `reqwest` pool) send GitHub-format `push`
//! deliveries, each signed (`X-Hub-Signature-256`, HMAC-SHA256 of the body) and with its own
//! `X-GitHub-Delivery` id and `after` commit, so every one is a distinct event (no JetStream
//! dedup short-circuit). The ingress verifies the signature, parses the push, publishes to the
//! upstream stream and answers 202 only after JetStream's ack. The repository is not in the
//! catalog, so the resolver reads and drops the events (as it does in production for
//! unrelated pushes). Only 2xx answers count.
//!
//! Raw: then, against the same nats-server, C concurrent tasks on one `async-nats` connection
//! publish copies of the last message the ingress stored (same headers and payload, so the
//! same size; a fresh `Nats-Msg-Id` each) to a stream with the upstream stream's settings,
//! each awaiting its ack. The ratio is webhooks/s over raw publishes/s.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rebake_e2e::{GITHUB_SECRET, Options, Sandbox, bench::percentile};

fn push_body(n: u64) -> (Vec<u8>, String) {
    rebake_e2e::github_push_event(
        "octo/bench",
        &format!("{:040x}", n),
        &format!("{:040x}", n + 1),
        GITHUB_SECRET,
    )
}

struct Run {
    count: usize,
    errors: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.count as f64 / self.seconds
    }
}

/// Runs `clients` loops of `one` for `seconds`; `one(n)` returns whether it succeeded.
async fn drive<F, Fut>(clients: usize, seconds: f64, one: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let one = Arc::new(one);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let one = one.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sent = Instant::now();
                if one(n).await {
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut run = Run {
        count: 0,
        errors: 0,
        seconds: 0.0,
        latencies_ms: Vec::new(),
    };
    for task in tasks {
        if let Ok((latencies, errors)) = task.await {
            run.latencies_ms.extend(latencies);
            run.errors += errors;
        }
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.count = run.latencies_ms.len();
    run.latencies_ms.sort_by(|a, b| a.total_cmp(b));
    run
}

async fn webhooks(url: Arc<String>, client: reqwest::Client, clients: usize, seconds: f64, offset: u64) -> Run {
    drive(clients, seconds, move |n| {
        let (url, client) = (url.clone(), client.clone());
        async move {
            let n = n + offset;
            let (body, signature) = push_body(n);
            let response = client
                .post(url.as_str())
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-github-delivery", format!("bench-{n:012}"))
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await;
            matches!(response, Ok(response) if response.status().is_success())
        }
    })
    .await
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut seconds = 10.0f64;
    let mut clients = 64usize;
    let mut json_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().context("--seconds needs a number")?.parse()?,
            "--clients" => clients = args.next().context("--clients needs a number")?.parse()?,
            "--json" => json_path = Some(args.next().context("--json needs a path")?),
            "-h" | "--help" => {
                println!("usage: rebake-ingressbench [--seconds S] [--clients C] [--json PATH]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let sandbox = Sandbox::start_with(
        "ingress",
        Options {
            default_images: false,
            ..Options::default()
        },
    )
    .await?;
    let url = Arc::new(format!("{}/v1/hooks/git/github", sandbox.ingress_url));
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;

    // Warm-up (connections, stream files), not counted.
    let warm = webhooks(url.clone(), client.clone(), clients, 1.0, 1 << 40).await;
    if warm.count == 0 {
        bail!("no webhook accepted during warm-up ({} errors)", warm.errors);
    }
    eprintln!("webhooks for {seconds} s with {clients} clients…");
    let hooks = webhooks(url.clone(), client.clone(), clients, seconds, 0).await;

    // The message the ingress stored last: the raw publishes send copies of it.
    let names = sandbox.bus.names().clone();
    let js = sandbox.bus.jetstream();
    let mut upstream = js.get_stream(names.upstream_stream()).await?;
    let stored = upstream
        .get_last_raw_message_by_subject(&names.upstream_git_subject())
        .await
        .context("last stored upstream message")?;
    let payload = stored.payload.clone();
    let headers = stored.headers.clone();
    let mut config = upstream.info().await?.config.clone();
    config.name = "BENCHRAW".to_string();
    config.subjects = vec!["benchraw.>".to_string()];
    js.create_stream(config).await?;

    let raw_client = async_nats::connect(sandbox.nats.url()).await?;
    let raw_js = async_nats::jetstream::new(raw_client);
    let make = move |n: u64| {
        let (js, payload, mut headers) = (raw_js.clone(), payload.clone(), headers.clone());
        async move {
            headers.insert("Nats-Msg-Id", format!("raw-{n:012}").as_str());
            match js.publish_with_headers("benchraw.git", headers, payload).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
    };
    let _ = drive(clients, 1.0, {
        let make = make.clone();
        move |n| make(n + (1 << 40))
    })
    .await;
    eprintln!("raw JetStream publishes for {seconds} s with {clients} tasks…");
    let raw = drive(clients, seconds, make).await;
    println!();
    println!(
        "{:<34} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "path", "accepted", "errors", "per s", "p50 ms", "p99 ms", "max ms"
    );
    let mut rows = Vec::new();
    for (name, run) in [
        ("signed GitHub webhooks (ingress)", &hooks),
        ("raw JetStream publish + ack", &raw),
    ] {
        let (p50, p99) = (percentile(&run.latencies_ms, 50.0), percentile(&run.latencies_ms, 99.0));
        let max = run.latencies_ms.last().copied().unwrap_or(f64::NAN);
        println!(
            "{:<34} {:>9} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            name,
            run.count,
            run.errors,
            run.rate(),
            p50,
            p99,
            max
        );
        rows.push(serde_json::json!({
            "path": name, "accepted": run.count, "errors": run.errors, "seconds": run.seconds,
            "per_second": run.rate(), "p50_ms": p50, "p99_ms": p99, "max_ms": max,
        }));
    }
    let ratio = hooks.rate() / raw.rate();
    println!(
        "ratio webhooks/raw: {:.1} % (message: {} bytes payload + the same headers; HTTP body {} bytes; {} clients)",
        ratio * 100.0,
        stored.payload.len(),
        push_body(0).0.len(),
        clients
    );
    let document = serde_json::json!({
        "bench": "ingress",
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "clients": clients,
        "seconds": seconds,
        "message_payload_bytes": stored.payload.len(),
        "results": rows,
        "ratio": ratio,
    });
    if let Some(path) = json_path {
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        eprintln!("wrote {path}");
    }
    sandbox.stop().await;
    Ok(())
}
