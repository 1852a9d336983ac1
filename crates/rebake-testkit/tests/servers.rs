//! The server guards against the real binaries, spoken to over raw TCP so this crate needs no
//! NATS or HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use rebake_testkit::{NatsServer, Notifications, RegistryServer, init_test_tracing};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Upper bound for any single exchange in these tests.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn nats_greets_with_info() {
    init_test_tracing();
    let server = NatsServer::start().await.unwrap();
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));

    let stream = TcpStream::connect(("127.0.0.1", server.port())).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO {"), "{line}");
    assert!(line.contains("\"jetstream\":true"), "{line}");
}

#[tokio::test]
async fn nats_restart_keeps_port_and_jetstream_state() {
    init_test_tracing();
    let mut server = NatsServer::start().await.unwrap();
    let port = server.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let created = nats_request(
        addr,
        "$JS.API.STREAM.CREATE.ORDERS",
        r#"{"name":"ORDERS","subjects":["orders.>"],"storage":"file"}"#,
    )
    .await;
    assert!(!created.contains("\"error\""), "{created}");
    let ack = nats_request(addr, "orders.new", "one").await;
    assert!(ack.contains("\"seq\":1"), "{ack}");

    server.stop().await;
    assert!(TcpStream::connect(addr).await.is_err(), "stopped server still accepts");
    server.restart().await.unwrap();
    assert_eq!(server.port(), port);

    let info = nats_request(addr, "$JS.API.STREAM.INFO.ORDERS", "").await;
    assert!(!info.contains("\"error\""), "{info}");
    assert!(info.contains("\"messages\":1"), "{info}");
}

#[tokio::test]
async fn nats_dropped_guard_frees_port() {
    init_test_tracing();
    let server = NatsServer::start().await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port()));
    let store_dir = server.store_dir().to_owned();
    drop(server);
    rebake_testkit::eventually("dropped nats-server stops listening", || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await
    .unwrap();
    assert!(!store_dir.exists(), "store {} not removed", store_dir.display());
}

#[tokio::test]
async fn registry_answers_v2() {
    init_test_tracing();
    let registry = RegistryServer::start(None).await.unwrap();
    assert_eq!(registry.host(), format!("127.0.0.1:{}", registry.port()));

    let response = http(registry.addr(), "GET", "/v2/", &[], b"").await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn registry_notifies_manifest_push_and_keeps_storage_across_restart() {
    init_test_tracing();
    let hook_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook_listener.local_addr().unwrap();
    let (hook_tx, mut hook_rx) = mpsc::unbounded_channel();
    tokio::spawn(serve_hooks(hook_listener, hook_tx));

    let mut registry = RegistryServer::start(Some(Notifications {
        url: format!("http://{hook_addr}/v1/hooks/registry/distribution"),
        token: "test-token".to_owned(),
    }))
    .await
    .unwrap();
    let port = registry.port();
    let manifest_digest = push_empty_image(registry.addr(), "demo/app", "v1").await;

    let hook = tokio::time::timeout(EXCHANGE_TIMEOUT, hook_rx.recv())
        .await
        .expect("no notification within the timeout")
        .unwrap();
    assert_eq!(hook.path, "/v1/hooks/registry/distribution");
    assert_eq!(hook.header("authorization").as_deref(), Some("Bearer test-token"));
    assert!(hook.body.contains("\"action\": \"push\""), "{}", hook.body);
    assert!(hook.body.contains("\"repository\": \"demo/app\""), "{}", hook.body);
    assert!(hook.body.contains("\"tag\": \"v1\""), "{}", hook.body);
    assert!(hook.body.contains(&manifest_digest), "{}", hook.body);
    // Blob pushes (application/octet-stream) are ignored by the config: only one event arrives.
    assert!(!hook.body.contains("application/octet-stream"), "{}", hook.body);

    registry.stop().await;
    registry.restart().await.unwrap();
    assert_eq!(registry.port(), port);
    let response = http(
        registry.addr(),
        "HEAD",
        "/v2/demo/app/manifests/v1",
        &[("Accept", OCI_MANIFEST)],
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert!(hook_rx.try_recv().is_err(), "unexpected second notification");
}

// === NATS over raw TCP ===

/// Publishes `payload` to `subject` with a reply inbox and returns the reply payload.
async fn nats_request(addr: SocketAddr, subject: &str, payload: &str) -> String {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut reader = BufReader::new(stream);
        let request = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\n\
             SUB _INBOX.test 1\r\n\
             PUB {subject} _INBOX.test {}\r\n{payload}\r\n",
            payload.len()
        );
        reader.get_mut().write_all(request.as_bytes()).await.unwrap();
        loop {
            let mut line = String::new();
            assert_ne!(reader.read_line(&mut line).await.unwrap(), 0, "eof");
            if line.starts_with("-ERR") {
                panic!("nats error: {line}");
            }
            let Some(header) = line.strip_prefix("MSG ") else {
                continue;
            };
            let length: usize = header.split_whitespace().last().unwrap().parse().unwrap();
            let mut body = vec![0; length + 2];
            reader.read_exact(&mut body).await.unwrap();
            body.truncate(length);
            return String::from_utf8(body).unwrap();
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .expect("nats request timed out")
}

// === HTTP over raw TCP ===

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `sha256` of the two bytes `{}`: the OCI empty config.
const EMPTY_CONFIG_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }
}

/// One HTTP/1.0 request; `target` is a path or an absolute `http://` URL.
async fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let path = target.strip_prefix(&format!("http://{addr}")).unwrap_or(target);
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response);
        let head = text.split("\r\n\r\n").next().unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
        HttpResponse {
            status: status.parse().unwrap(),
            headers: lines
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .collect(),
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .expect("http request timed out")
}

/// Pushes an image made of the empty config and no layers; returns the manifest digest.
async fn push_empty_image(registry: SocketAddr, repository: &str, tag: &str) -> String {
    let started = http(registry, "POST", &format!("/v2/{repository}/blobs/uploads/"), &[], b"").await;
    assert_eq!(started.status, 202);
    let location = started.header("location").unwrap();
    let separator = if location.contains('?') { '&' } else { '?' };
    let finished = http(
        registry,
        "PUT",
        &format!("{location}{separator}digest={EMPTY_CONFIG_DIGEST}"),
        &[("Content-Type", "application/octet-stream")],
        b"{}",
    )
    .await;
    assert_eq!(finished.status, 201);

    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{EMPTY_CONFIG_DIGEST}","size":2}},"layers":[]}}"#
    );
    let pushed = http(
        registry,
        "PUT",
        &format!("/v2/{repository}/manifests/{tag}"),
        &[("Content-Type", OCI_MANIFEST)],
        manifest.as_bytes(),
    )
    .await;
    assert_eq!(pushed.status, 201);
    pushed.header("docker-content-digest").unwrap()
}

// === Notification endpoint ===

struct Hook {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Hook {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }
}

/// Accepts notification POSTs (keep-alive connections included), answers 200 and forwards
/// each request.
async fn serve_hooks(listener: TcpListener, hook_tx: mpsc::UnboundedSender<Hook>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let hook_tx = hook_tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            while let Some(hook) = read_hook(&mut reader).await {
                let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                if reader.get_mut().write_all(response).await.is_err() {
                    return;
                }
                let _ = hook_tx.send(hook);
            }
        });
    }
}

async fn read_hook(reader: &mut BufReader<TcpStream>) -> Option<Hook> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.ok()? == 0 {
        return None;
    }
    let path = request_line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Hook {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
