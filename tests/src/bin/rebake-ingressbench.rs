//! Ingress bench: verified webhooks per second accepted with a durable ack, next to the raw
//! JetStream acknowledged-publish rate on the same nats-server.
//!
//! `cargo run --release -p rebake-e2e --bin rebake-ingressbench -- [--seconds S] [--clients C] [--json PATH]`
//!
//! Webhooks: the bench process runs the ingress alone (`rebake::start` with only the ingress
//! service: the resolver, which would consume the events, may run on another machine and is
//! not what is measured). The load comes from a second process (this binary again, with
//! `--load`), so that building and sending requests does not count as the ingress' CPU: C
//! keep-alive HTTP/1.1 connections, each sending GitHub-format `push` deliveries one after
//! another, each signed (`X-Hub-Signature-256`, HMAC-SHA256 of the body) and with its own
//! `X-GitHub-Delivery` id and `after` commit, so every one is a distinct event (no JetStream
//! dedup short-circuit). The ingress verifies the signature, parses the push, publishes to
//! the upstream stream and answers 202 only after JetStream's ack. Only 2xx answers count.
//!
//! Raw: then, against the same nats-server, C concurrent tasks on one `async-nats` connection
//! publish copies of the last message the ingress stored (same headers and payload, so the
//! same size; a fresh `Nats-Msg-Id` each) to a stream with the upstream stream's settings,
//! each awaiting its ack. The ratio is webhooks/s over raw publishes/s. CPU time of the bench
//! process (the ingress, then the raw publisher) is reported per message.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use rebake_e2e::bench::{children_cpu_seconds, cpu_seconds, percentile};
use rebake_e2e::{GITHUB_SECRET, Options, Sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn push_body(n: u64) -> (Vec<u8>, String) {
    rebake_e2e::github_push_event(
        "octo/bench",
        &format!("{:040x}", n),
        &format!("{:040x}", n + 1),
        GITHUB_SECRET,
    )
}

/// Builds distinct signed push deliveries cheaply: one body made once, whose two commit
/// fields are overwritten per request, then signed.
struct Requests {
    host: String,
    body: Vec<u8>,
    before_at: usize,
    after_at: usize,
    key: Hmac<sha2::Sha256>,
}

impl Requests {
    fn new(host: &str) -> Result<Requests> {
        let (body, _) = rebake_e2e::github_push_event("octo/bench", &"a".repeat(40), &"b".repeat(40), GITHUB_SECRET);
        let find = |needle: &[u8]| {
            body.windows(needle.len())
                .position(|window| window == needle)
                .context("commit field in the push body")
        };
        let before_at = find("a".repeat(40).as_bytes())?;
        let after_at = find("b".repeat(40).as_bytes())?;
        Ok(Requests {
            host: host.to_string(),
            before_at,
            after_at,
            body,
            key: Hmac::new_from_slice(GITHUB_SECRET.as_bytes())?,
        })
    }

    /// The whole HTTP/1.1 request of delivery `n`.
    fn request(&self, n: u64) -> Vec<u8> {
        let mut body = self.body.clone();
        body[self.before_at..self.before_at + 40].copy_from_slice(format!("{n:040x}").as_bytes());
        body[self.after_at..self.after_at + 40].copy_from_slice(format!("{:040x}", n + 1).as_bytes());
        let mut mac = self.key.clone();
        mac.update(&body);
        let signature = hex::encode(mac.finalize().into_bytes());
        let mut request = format!(
            "POST /v1/hooks/git/github HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             x-github-event: push\r\nx-github-delivery: bench-{n:012}\r\n\
             x-hub-signature-256: sha256={signature}\r\ncontent-length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    }
}

/// Reads one HTTP/1.1 response from `stream` (status line, headers, `content-length`
/// body); returns its status. `buffer` keeps bytes read past the response.
async fn read_response(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Result<u16> {
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).context("response head is not utf-8")?;
            let status: u16 = head
                .split(' ')
                .nth(1)
                .context("no status code")?
                .parse()
                .context("bad status code")?;
            let length: usize = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .map(|(_, value)| value.trim().parse())
                .transpose()?
                .unwrap_or(0);
            let total = end + 4 + length;
            while buffer.len() < total {
                let mut chunk = [0u8; 4096];
                let read = stream.read(&mut chunk).await?;
                if read == 0 {
                    bail!("connection closed mid-response");
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            buffer.drain(..total);
            return Ok(status);
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("connection closed");
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The load generator (`--load ADDRESS`): `clients` keep-alive connections for `warmup`
/// then `seconds`; prints the measured run as one JSON line.
async fn load(address: String, clients: usize, seconds: f64, warmup: f64) -> Result<()> {
    let requests = Arc::new(Requests::new(&address)?);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let deadline = measure_from + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (requests, counter, address) = (requests.clone(), counter.clone(), address.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&address).await?;
            stream.set_nodelay(true)?;
            let mut buffer = Vec::with_capacity(8192);
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let request = requests.request(n);
                let sent = Instant::now();
                stream.write_all(&request).await?;
                let status = read_response(&mut stream, &mut buffer).await?;
                if sent < measure_from {
                    continue;
                }
                if (200..300).contains(&status) {
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (task_latencies, task_errors) = task.await??;
        latencies.extend(task_latencies);
        errors += task_errors;
    }
    let elapsed = Instant::now().duration_since(measure_from).as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{}",
        serde_json::json!({ "seconds": elapsed, "errors": errors, "latencies_ms": latencies, "cpu_seconds": cpu_seconds() })
    );
    Ok(())
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

#[tokio::main]
async fn main() -> Result<()> {
    rebake_e2e::bench::init_logging();
    let mut seconds = 10.0f64;
    let mut clients = 64usize;
    let mut json_path = None;
    let mut load_address = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--load" => load_address = Some(args.next().context("--load needs host:port")?),
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
    if let Some(address) = load_address {
        return load(address, clients, seconds, 1.0).await;
    }
    let sandbox = Sandbox::start_with(
        "ingress",
        Options {
            default_images: false,
            services: vec![rebake::Service::Ingress],
            ..Options::default()
        },
    )
    .await?;
    let address = sandbox
        .ingress_url
        .strip_prefix("http://")
        .context("ingress url")?
        .to_string();

    eprintln!("webhooks for {seconds} s (after 1 s of warm-up) from {clients} connections in a second process…");
    let cpu_before = cpu_seconds();
    let nats_before = children_cpu_seconds("nats-server");
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--load",
            &address,
            "--clients",
            &clients.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("run the load generator")?;
    let ingress_cpu = cpu_seconds() - cpu_before;
    let hooks_nats_cpu = children_cpu_seconds("nats-server") - nats_before;
    if !output.status.success() {
        bail!("the load generator failed: {}", output.status);
    }
    let measured: serde_json::Value = serde_json::from_slice(&output.stdout).context("the load generator's report")?;
    let mut latencies_ms: Vec<f64> = serde_json::from_value(measured["latencies_ms"].clone())?;
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let hooks = Run {
        count: latencies_ms.len(),
        errors: measured["errors"].as_u64().unwrap_or(0) as usize,
        seconds: measured["seconds"].as_f64().unwrap_or(f64::NAN),
        latencies_ms,
    };
    if hooks.count == 0 {
        bail!("no webhook accepted ({} errors)", hooks.errors);
    }
    // The load generator's run includes 1 s of warm-up: the CPU per webhook is over every
    // request the ingress answered (measured ones are the bulk).
    let hooks_total = hooks.count as f64 * (1.0 + 1.0 / seconds);
    let load_cpu = measured["cpu_seconds"].as_f64().unwrap_or(f64::NAN);

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
    let cpu_before = cpu_seconds();
    let nats_before = children_cpu_seconds("nats-server");
    let raw = drive(clients, seconds, make).await;
    let raw_cpu = cpu_seconds() - cpu_before;
    let raw_nats_cpu = children_cpu_seconds("nats-server") - nats_before;
    println!();
    println!(
        "{:<34} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>12}",
        "path", "accepted", "errors", "per s", "p50 ms", "p99 ms", "max ms", "cpu µs/msg"
    );
    let mut rows = Vec::new();
    for (name, run, cpu_us) in [
        (
            "signed GitHub webhooks (ingress)",
            &hooks,
            ingress_cpu * 1e6 / hooks_total,
        ),
        ("raw JetStream publish + ack", &raw, raw_cpu * 1e6 / raw.count as f64),
    ] {
        let (p50, p99) = (percentile(&run.latencies_ms, 50.0), percentile(&run.latencies_ms, 99.0));
        let max = run.latencies_ms.last().copied().unwrap_or(f64::NAN);
        println!(
            "{:<34} {:>9} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>12.1}",
            name,
            run.count,
            run.errors,
            run.rate(),
            p50,
            p99,
            max,
            cpu_us
        );
        rows.push(serde_json::json!({
            "path": name, "accepted": run.count, "errors": run.errors, "seconds": run.seconds,
            "per_second": run.rate(), "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "bench_process_cpu_us_per_message": cpu_us,
        }));
    }
    let ratio = hooks.rate() / raw.rate();
    let per = |cpu: f64, count: f64| cpu * 1e6 / count;
    let cpu = serde_json::json!({
        "webhooks": {
            "ingress_us": per(ingress_cpu, hooks_total),
            "load_generator_us": per(load_cpu, hooks_total),
            "nats_server_us": per(hooks_nats_cpu, hooks_total),
        },
        "raw": {
            "publisher_us": per(raw_cpu, raw.count as f64),
            "nats_server_us": per(raw_nats_cpu, raw.count as f64),
        },
    });
    println!(
        "cpu per message (µs): webhooks: ingress {:.1}, load generator {:.1}, nats-server {:.1}; raw: publisher {:.1}, nats-server {:.1}",
        per(ingress_cpu, hooks_total),
        per(load_cpu, hooks_total),
        per(hooks_nats_cpu, hooks_total),
        per(raw_cpu, raw.count as f64),
        per(raw_nats_cpu, raw.count as f64),
    );
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
        "cpu_per_message": cpu,
    });
    if let Some(path) = json_path {
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        eprintln!("wrote {path}");
    }
    sandbox.stop().await;
    Ok(())
}
