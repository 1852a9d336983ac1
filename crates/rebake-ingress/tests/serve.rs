//! `serve` against a real NATS JetStream (started by `rebake-testkit`) on a real socket: the
//! 2xx-after-ack promise, JetStream de-duplication of a redelivered webhook, 503 while NATS
//! is down, and graceful shutdown.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use rebake_bus::{Bus, Need};
use rebake_events::Names;
use rebake_ingress::{DISTRIBUTION_PATH, IngressSettings, serve};
use rebake_testkit::{NatsServer, assert_eventually, init_test_tracing};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "serve-test-token";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read fixture {path}: {error}"))
}

/// One HTTP/1.1 request on a fresh connection; returns the status code.
async fn post(address: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(address)
        .await
        .context("failed to connect to ingress")?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {response:?}"))?;
    Ok(status)
}

async fn upstream_messages(bus: &Bus) -> anyhow::Result<u64> {
    let mut stream = bus.jetstream().get_stream(bus.names().upstream_stream()).await?;
    Ok(stream.info().await?.state.messages)
}

#[tokio::test]
async fn webhooks_reach_jetstream_once() -> anyhow::Result<()> {
    init_test_tracing();
    let mut nats = NatsServer::start().await?;
    let names = Names::new("ingress-serve")?;
    let bus = Bus::connect(&nats.url(), names, "ingress", Duration::from_secs(30), 5).await?;
    bus.ensure(&[Need::Upstream]).await?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let settings = IngressSettings {
        distribution_token: Some(TOKEN.as_bytes().to_vec()),
        ..IngressSettings::default()
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(bus.clone(), settings, listener, shutdown.clone()));

    let authorization = format!("Bearer {TOKEN}");
    let headers = [
        ("Content-Type", "application/vnd.docker.distribution.events.v1+json"),
        ("Authorization", authorization.as_str()),
    ];
    let body = fixture("distribution/push-manifest-tagged.json");

    // The registry resends a whole envelope until it gets a 2xx: both answers are 200, one
    // message is stored.
    assert_eq!(post(address, DISTRIBUTION_PATH, &headers, &body).await?, 200);
    assert_eq!(post(address, DISTRIBUTION_PATH, &headers, &body).await?, 200);
    assert_eq!(upstream_messages(&bus).await?, 1);

    // NATS down: refused at once, so the sender retries later.
    nats.stop().await;
    assert_eventually!(!bus.is_connected());
    assert_eq!(post(address, DISTRIBUTION_PATH, &headers, &body).await?, 503);

    // NATS back: accepted again.
    nats.restart().await?;
    assert_eventually!(bus.is_connected());
    let index = fixture("distribution/push-oci-index.json");
    assert_eq!(post(address, DISTRIBUTION_PATH, &headers, &index).await?, 200);
    assert_eq!(upstream_messages(&bus).await?, 2);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .context("ingress did not stop after shutdown")???;
    Ok(())
}
