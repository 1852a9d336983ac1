//! Upstreams that cannot call are polled: a tag moved in a real registry nobody configured
//! a webhook for is found by the ingress (through `rebake::start`, the production wiring)
//! and lands in JetStream, at one `HEAD` per interval while nothing moves; a registry that
//! answers 429 is left alone for its `Retry-After`; the request budget holds; a branch
//! moved in a bare Git repository is found.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use rebake_bus::{Bus, ConsumerSpec, Delivery, Outcome, run_consumer};
use rebake_config::{PollConfig, RegistryPoll};
use rebake_e2e::push_image;
use rebake_events::{Envelope, Names, deterministic_id, pb};
use rebake_ingress::{
    UpstreamSink,
    poll::{PollStats, PollTargets, TrackedBranch, poll_upstreams},
};
use rebake_oci::{LayerEntry, OCI_MANIFEST, Registry, RuntimeConfig, sha256_digest};
use rebake_testkit::{NatsServer, RegistryServer, eventually, free_port};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

// === helpers ===

/// One request seen by a loopback server: request line and when it arrived.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Reads one request head (the poller's requests have no body); `None` at end of stream.
async fn read_head(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    Some(head)
}

fn request_line(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Serves loopback HTTP, one request per connection: `answer(n, request line)` gives the
/// raw response to the n-th request (from 0). Returns the address and the request log.
async fn fake_registry(answer: impl Fn(usize, &str) -> String + Send + Sync + 'static) -> Result<(String, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let host = listener.local_addr()?.to_string();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (answer, seen) = (answer.clone(), seen.clone());
            tokio::spawn(async move {
                let Some(head) = read_head(&mut socket).await else {
                    return;
                };
                let line = request_line(&head);
                let response = {
                    let mut seen = seen.lock().unwrap();
                    let n = seen.len();
                    seen.push(Seen {
                        line: line.clone(),
                        at: Instant::now(),
                    });
                    answer(n, &line)
                };
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok((host, log))
}

/// A loopback HTTP proxy in front of `upstream` that logs every request it forwards (one
/// per connection, `Connection: close` on both sides).
async fn counting_proxy(upstream: SocketAddr) -> Result<(String, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let host = listener.local_addr()?.to_string();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut socket).await else {
                    return;
                };
                seen.lock().unwrap().push(Seen {
                    line: request_line(&head),
                    at: Instant::now(),
                });
                let text = String::from_utf8_lossy(&head).to_string();
                let mut forwarded: String = text
                    .trim_end_matches("\r\n")
                    .split("\r\n")
                    .filter(|line| {
                        let lower = line.to_ascii_lowercase();
                        !lower.starts_with("connection:") && !lower.starts_with("keep-alive:")
                    })
                    .map(|line| format!("{line}\r\n"))
                    .collect();
                forwarded.push_str("Connection: close\r\n\r\n");
                let Ok(mut upstream) = TcpStream::connect(upstream).await else {
                    return;
                };
                if upstream.write_all(forwarded.as_bytes()).await.is_err() {
                    return;
                }
                let mut response = Vec::new();
                let _ = upstream.read_to_end(&mut response).await;
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok((host, log))
}

fn http(status: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text
}

fn manifest_found(digest: &str) -> String {
    http(
        "200 OK",
        &[("Docker-Content-Digest", digest), ("Content-Type", OCI_MANIFEST)],
    )
}

/// Records what the pollers publish.
struct Recorder {
    names: Names,
    events: Mutex<Vec<(String, Envelope, pb::UpstreamChanged)>>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            names: Names::new("polltest").expect("valid prefix"),
            events: Mutex::new(Vec::new()),
        })
    }

    fn events(&self) -> Vec<(String, Envelope, pb::UpstreamChanged)> {
        self.events.lock().unwrap().clone()
    }
}

impl UpstreamSink for Recorder {
    async fn publish(&self, subject: String, envelope: Envelope, event: pb::UpstreamChanged) -> Result<(), String> {
        self.events.lock().unwrap().push((subject, envelope, event));
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn names(&self) -> &Names {
        &self.names
    }
}

fn registry_tag(event: &pb::UpstreamChanged) -> Option<&pb::RegistryTagChanged> {
    match &event.change {
        Some(pb::upstream_changed::Change::RegistryTag(change)) => Some(change),
        _ => None,
    }
}

fn git_ref(event: &pb::UpstreamChanged) -> Option<&pb::GitRefChanged> {
    match &event.change {
        Some(pb::upstream_changed::Change::GitRef(change)) => Some(change),
        _ => None,
    }
}

fn poll_config(interval: Option<Duration>, git_interval: Option<Duration>) -> PollConfig {
    PollConfig {
        interval,
        git_interval,
        registries: BTreeMap::new(),
    }
}

/// Pushes `base:v1` whose one layer says `release`; returns its digest.
async fn push_base(registry: &Registry, host: &str, release: &str) -> Result<String> {
    let layer = vec![LayerEntry::file("etc/base-release", 0o644, release.as_bytes().to_vec())];
    push_image(registry, host, "base", "v1", vec![layer], RuntimeConfig::default()).await
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    rebake_testkit::run_in(dir, "git", args)
}

// === scenarios ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_moved_without_a_webhook_is_polled_into_jetstream_at_one_head_per_interval() -> Result<()> {
    rebake_testkit::init_test_tracing();
    let nats = NatsServer::start().await?;
    // No notifications: the registry tells nobody.
    let registry_server = RegistryServer::start(None).await?;
    let upstream = registry_server.host();
    let (proxy, requests) = counting_proxy(registry_server.addr()).await?;
    let pusher = Registry::try_new(vec![upstream.clone()])?;
    let first = push_base(&pusher, &upstream, "one").await?;

    // The ingress sees the registry only through the counting proxy.
    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("images");
    std::fs::create_dir_all(&catalog)?;
    std::fs::write(
        catalog.join("app.yaml"),
        format!("name: app\nbase: {proxy}/base:v1\npublish:\n  repository: {proxy}/apps/app\n"),
    )?;
    // Built from Rebake's own image: its base is announced by Rebake, never polled.
    std::fs::write(
        catalog.join("child.yaml"),
        format!("name: child\nbase: {proxy}/apps/app:latest\npublish:\n  repository: {proxy}/apps/child\n"),
    )?;
    let prefix = "e2epoll";
    let config_text = format!(
        "version: 1\nnats:\n  url: {nats}\n  prefix: {prefix}\nregistries:\n  plain_http: [\"{proxy}\"]\ncatalog:\n  dir: {catalog}\ningress:\n  listen: 127.0.0.1:{port}\n  poll:\n    interval: 1s\n    git_interval: \"off\"\n    registries:\n      \"{proxy}\":\n        requests_per_minute: 120\nbuilder:\n  work_dir: {work}\n",
        nats = nats.url(),
        catalog = catalog.display(),
        port = free_port(),
        work = dir.path().join("work").display(),
    );
    let config_path = dir.path().join("rebake.yaml");
    std::fs::write(&config_path, &config_text)?;
    let config = rebake_config::Config::load(&config_path, &HashMap::new())?;
    assert_eq!(
        config.ingress.poll.for_registry(&proxy),
        (Some(Duration::from_secs(1)), 120)
    );
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    rebake::start(
        &[rebake::Service::Ingress],
        &config,
        &HashMap::new(),
        shutdown.clone(),
        tracker.clone(),
    )
    .await?;

    // Read what lands in the UPSTREAM stream.
    let bus = Bus::connect(&nats.url(), Names::new(prefix)?, "test", Duration::from_secs(10), 3).await?;
    let names = bus.names().clone();
    let landed: Arc<Mutex<Vec<(String, pb::UpstreamChanged)>>> = Arc::default();
    let record = landed.clone();
    run_consumer(
        bus.clone(),
        ConsumerSpec {
            stream: names.upstream_stream(),
            durable: "poll-test".to_string(),
            filter_subject: names.upstream_registry_subject(),
            concurrency: 1,
            deliver_all: true,
        },
        shutdown.clone(),
        tracker.clone(),
        move |delivery: Delivery| {
            let record = record.clone();
            async move {
                if let Ok(event) = delivery.decode::<pb::UpstreamChanged>() {
                    record.lock().unwrap().push((delivery.envelope().id.clone(), event));
                }
                Outcome::Done
            }
        },
    )
    .await?;
    let has_digest = |digest: &str| {
        landed
            .lock()
            .unwrap()
            .iter()
            .any(|(_, event)| registry_tag(event).is_some_and(|tag| tag.digest == digest))
    };

    // The first observation after start is published.
    eventually("the first digest of base:v1 lands in JetStream", || async {
        has_digest(&first)
    })
    .await?;
    // The tag moves; nobody calls; the poller finds it.
    let second = push_base(&pusher, &upstream, "two").await?;
    ensure!(second != first);
    eventually("the moved base:v1 lands in JetStream", || async { has_digest(&second) }).await?;

    // Nothing moves now: one HEAD per interval (1s), nothing else, nothing published.
    let before = requests.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seen = requests.lock().unwrap().clone();
    let during = seen.len() - before;
    ensure!(
        (3..=5).contains(&during),
        "{during} requests in 4 s at a 1 s interval: {:?}",
        &seen[before..]
    );
    ensure!(
        seen.iter()
            .all(|request| request.line == "HEAD /v2/base/manifests/v1 HTTP/1.1"),
        "only manifest HEADs of the tracked tag (no /v2/ ping, no GET, no tag listing, no \
         Rebake-built base): {seen:?}"
    );
    for pair in seen[before..].windows(2) {
        let gap = pair[1].at - pair[0].at;
        ensure!(gap >= Duration::from_millis(800), "requests {gap:?} apart: {seen:?}");
    }

    let landed = landed.lock().unwrap().clone();
    ensure!(landed.len() == 2, "one event per digest: {landed:?}");
    let (id, event) = &landed[1];
    ensure!(event.source == "poll", "{event:?}");
    let change = registry_tag(event).context("a registry tag change")?;
    ensure!(
        change
            == &pb::RegistryTagChanged {
                registry: proxy.clone(),
                repository: "base".into(),
                tag: "v1".into(),
                digest: second.clone(),
                media_type: OCI_MANIFEST.into(),
            },
        "{change:?}"
    );
    ensure!(*id == deterministic_id(&["registry", &proxy, "base", "v1", &second]));

    shutdown.cancel();
    rebake_runtime::drain(&tracker, Duration::from_secs(10)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limited_registry_is_left_alone_for_its_retry_after_then_polled_again() -> Result<()> {
    rebake_testkit::init_test_tracing();
    let digest = sha256_digest(b"the manifest");
    let answer_digest = digest.clone();
    // The first request is refused with Retry-After: 2; every later one answers.
    let (host, requests) = fake_registry(move |n, _line| {
        if n == 0 {
            http("429 Too Many Requests", &[("Retry-After", "2")])
        } else {
            manifest_found(&answer_digest)
        }
    })
    .await?;
    let sink = Recorder::new();
    let stats = Arc::new(PollStats::default());
    let shutdown = CancellationToken::new();
    let poller = tokio::spawn(poll_upstreams(
        sink.clone(),
        Registry::try_new(vec![host.clone()])?,
        PollTargets {
            tags: vec![format!("{host}/library/base:v1")],
            branches: Vec::new(),
        },
        poll_config(Some(Duration::from_secs(1)), None),
        stats.clone(),
        shutdown.clone(),
    ));

    eventually("the tag is published once the registry answers", || async {
        !sink.events().is_empty()
    })
    .await?;
    let seen = requests.lock().unwrap().clone();
    ensure!(seen.len() >= 2, "{seen:?}");
    let pause = seen[1].at - seen[0].at;
    ensure!(
        pause >= Duration::from_secs(2) && pause < Duration::from_secs(4),
        "the second request came {pause:?} after the 429 (Retry-After: 2, plus jitter)"
    );
    ensure!(stats.registry(&host).backoffs == 1, "{:?}", stats.registry(&host));

    // Polling resumed at its interval.
    let resumed = seen.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let now = requests.lock().unwrap().len();
    ensure!(
        (2..=4).contains(&(now - resumed)),
        "{} requests in 2.5 s after resuming",
        now - resumed
    );
    shutdown.cancel();
    poller.await?;

    let counters = stats.registry(&host);
    let served = requests.lock().unwrap().len() as u64;
    ensure!(
        counters.requests == served || counters.requests + 1 == served,
        "the poller counted {} requests, the registry saw {served}",
        counters.requests
    );
    let events = sink.events();
    ensure!(events.len() == 1, "an unchanged tag publishes once: {events:?}");
    let (subject, _, event) = &events[0];
    ensure!(subject == "polltest.upstream.registry", "{subject}");
    let change = registry_tag(event).context("a registry tag change")?;
    ensure!(change.digest == digest && change.repository == "library/base" && change.tag == "v1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn polling_keeps_to_the_registrys_request_budget() -> Result<()> {
    rebake_testkit::init_test_tracing();
    let digest = sha256_digest(b"the manifest");
    let (host, requests) = fake_registry(move |_, _| manifest_found(&digest)).await?;
    let sink = Recorder::new();
    let stats = Arc::new(PollStats::default());
    let shutdown = CancellationToken::new();
    let mut config = poll_config(Some(Duration::from_secs(1)), None);
    // 30 a minute: a burst of 30, then one every 2 s.
    config.registries.insert(
        host.clone(),
        RegistryPoll {
            interval: None,
            requests_per_minute: 30,
        },
    );
    let started = Instant::now();
    let poller = tokio::spawn(poll_upstreams(
        sink.clone(),
        Registry::try_new(vec![host.clone()])?,
        PollTargets {
            tags: (0..40).map(|n| format!("{host}/base:t{n}")).collect(),
            branches: Vec::new(),
        },
        config,
        stats.clone(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let served = requests.lock().unwrap().len();
    let elapsed = started.elapsed();
    // 30 at once, then 0.5 a second.
    let allowed = 30 + (elapsed.as_secs_f64() * 0.5).floor() as usize;
    ensure!(
        served >= 30 && served <= allowed,
        "{served} requests in {elapsed:?} with a budget of 30 a minute (at most {allowed})"
    );
    shutdown.cancel();
    poller.await?;
    let published = sink.events().len();
    ensure!(
        published <= served && published + 1 >= served,
        "every tag probed is published once ({published} events, {served} requests)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_branch_moved_in_a_bare_repository_is_polled() -> Result<()> {
    rebake_testkit::init_test_tracing();
    let dir = tempfile::tempdir()?;
    let origin = dir.path().join("origin.git");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&origin)?;
    std::fs::create_dir_all(&work)?;
    git(&origin, &["init", "--quiet", "--bare", "--initial-branch=main"])?;
    git(&work, &["init", "--quiet", "--initial-branch=main"])?;
    std::fs::write(work.join("index.html"), "v1\n")?;
    git(&work, &["add", "."])?;
    git(&work, &["commit", "--quiet", "-m", "v1"])?;
    let origin_path = origin.display().to_string();
    git(&work, &["push", "--quiet", &origin_path, "main"])?;
    let first = git(&work, &["rev-parse", "HEAD"])?;

    let sink = Recorder::new();
    let stats = Arc::new(PollStats::default());
    let shutdown = CancellationToken::new();
    let poller = tokio::spawn(poll_upstreams(
        sink.clone(),
        Registry::try_new(Vec::new())?,
        PollTargets {
            tags: Vec::new(),
            branches: vec![TrackedBranch {
                url: format!("file://{origin_path}"),
                identity: "git.example/octo/app".into(),
                branch: "main".into(),
            }],
        },
        poll_config(None, Some(Duration::from_secs(1))),
        stats.clone(),
        shutdown.clone(),
    ));
    let commits = || -> Vec<(String, String)> {
        sink.events()
            .iter()
            .filter_map(|(_, _, event)| git_ref(event))
            .map(|change| (change.old_commit.clone(), change.new_commit.clone()))
            .collect()
    };
    eventually("the branch is published", || async { !commits().is_empty() }).await?;
    ensure!(commits() == [(String::new(), first.clone())], "{:?}", commits());

    std::fs::write(work.join("index.html"), "v2\n")?;
    git(&work, &["commit", "--quiet", "-am", "v2"])?;
    git(&work, &["push", "--quiet", &origin_path, "main"])?;
    let second = git(&work, &["rev-parse", "HEAD"])?;
    eventually("the moved branch is published", || async { commits().len() == 2 }).await?;
    // And not again while it stays.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ensure!(
        commits() == [(String::new(), first.clone()), (first, second.clone())],
        "{:?}",
        commits()
    );
    shutdown.cancel();
    poller.await?;

    let events = sink.events();
    let (subject, envelope, event) = &events[1];
    ensure!(subject == "polltest.upstream.git", "{subject}");
    ensure!(event.source == "poll");
    let change = git_ref(event).context("a git ref change")?;
    ensure!(change.repository == "git.example/octo/app" && change.ref_kind == "branch" && change.ref_name == "main");
    ensure!(envelope.id == deterministic_id(&["git", "git.example/octo/app", "refs/heads/main", &second]));
    let counters = stats.git();
    ensure!(
        counters.changes == 2 && counters.errors == 0 && counters.checks >= 4,
        "{counters:?}"
    );
    Ok(())
}

/// The commented `ingress.poll` block of the reference config is valid once uncommented.
#[test]
fn the_documented_poll_block_loads() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/rebake.example.yaml");
    let text = std::fs::read_to_string(&path)?;
    let mut in_block = false;
    let uncommented: String = text
        .lines()
        .map(|line| {
            if line == "  # poll:" {
                in_block = true;
            } else if !line.starts_with("  #") {
                in_block = false;
            }
            match line.strip_prefix("  # ").filter(|_| in_block) {
                Some(rest) => format!("  {rest}\n"),
                None => format!("{line}\n"),
            }
        })
        .collect();
    ensure!(uncommented.contains("\n  poll:\n"), "the block is where it is expected");
    let config = rebake_config::Config::from_yaml(&uncommented, &path, &HashMap::new())?;
    let poll = &config.ingress.poll;
    ensure!(poll.interval == Some(Duration::from_secs(300)));
    ensure!(poll.git_interval == Some(Duration::from_secs(300)));
    ensure!(
        poll.for_registry("docker.io") == (Some(Duration::from_secs(900)), 30),
        "{poll:?}"
    );
    ensure!(poll.for_registry("ghcr.io") == (Some(Duration::from_secs(300)), 60));
    Ok(())
}
