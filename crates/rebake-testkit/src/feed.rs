//! A static HTTP file server for package feed tests: serves a directory on a free loopback
//! port, with validators (`ETag`, `Last-Modified`), conditional requests, and a log of every
//! request so tests can count what a client fetched.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::SystemTime;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

/// One request the [`FeedServer`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRequest {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request path, e.g. `/dists/stable/InRelease` (no query).
    pub path: String,
    /// The status code sent back.
    pub status: u16,
}

/// Serves the files under a directory over plain HTTP on `127.0.0.1:<free port>`.
///
/// - `GET` and `HEAD` only (others get 405); a path that is not a regular file under the root
///   (missing, a directory, or escaping with `..`) gets 404;
/// - files are read from disk on every request, so a test may rewrite them between requests;
/// - every 200 carries `ETag` (the quoted lower-case hex sha256 of the content) and
///   `Last-Modified` (the file's mtime); `If-None-Match` matching the ETag (or `*`) gets 304,
///   and without `If-None-Match`, `If-Modified-Since` not older than the mtime gets 304;
/// - every request is logged ([`requests`](Self::requests), [`count`](Self::count),
///   [`reset_requests`](Self::reset_requests)).
///
/// The server runs on its own thread and runtime, so it works from sync and async tests
/// alike. Dropping the guard stops it.
#[derive(Debug)]
pub struct FeedServer {
    addr: SocketAddr,
    root: PathBuf,
    log: Arc<Mutex<Vec<FeedRequest>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    root: PathBuf,
    log: Arc<Mutex<Vec<FeedRequest>>>,
}

impl FeedServer {
    /// Starts serving `root` on a fresh loopback port.
    pub fn start(root: PathBuf) -> anyhow::Result<FeedServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to bind 127.0.0.1:0")?;
        listener
            .set_nonblocking(true)
            .context("failed to make the listener non-blocking")?;
        let addr = listener.local_addr().context("bound listener has no address")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            root: root.clone(),
            log: log.clone(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to build the feed server runtime")?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("feed-server-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("feed server: cannot register listener: {e}");
                            return;
                        }
                    };
                    let app = Router::new().fallback(serve).with_state(shared);
                    tokio::select! {
                        result = axum::serve(listener, app).into_future() => {
                            if let Err(e) = result {
                                tracing::error!("feed server stopped: {e}");
                            }
                        }
                        _ = stop => {}
                    }
                });
                // Dropping the runtime here cancels open connections.
            })
            .context("failed to spawn the feed server thread")?;
        Ok(FeedServer {
            addr,
            root,
            log,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The base URL, `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory being served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every request answered since the start or the last [`reset_requests`](Self::reset_requests),
    /// in order.
    pub fn requests(&self) -> Vec<FeedRequest> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many requests for `path` (e.g. `/dists/stable/InRelease`) were answered.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    /// Forgets the logged requests.
    pub fn reset_requests(&self) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    let response = respond(&shared.root, &method, &path, &headers).await;
    shared
        .log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(FeedRequest {
            method: method.to_string(),
            path,
            status: response.status().as_u16(),
        });
    response
}

fn status(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

/// The file under `root` that `path` names, or `None` for paths leaving the root.
fn resolve_path(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    if relative.components().all(|c| matches!(c, Component::Normal(_))) {
        Some(root.join(relative))
    } else {
        None
    }
}

async fn respond(root: &Path, method: &Method, path: &str, headers: &HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(file) = resolve_path(root, path) else {
        return status(StatusCode::NOT_FOUND);
    };
    let meta = match tokio::fs::metadata(&file).await {
        Ok(m) if m.is_file() => m,
        _ => return status(StatusCode::NOT_FOUND),
    };
    let Ok(content) = tokio::fs::read(&file).await else {
        return status(StatusCode::NOT_FOUND);
    };
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&content)));
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let last_modified = httpdate::fmt_http_date(modified);

    let not_modified = match headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tags) => tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag),
        None => headers
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .zip(httpdate::parse_http_date(&last_modified).ok())
            .is_some_and(|(since, mtime)| mtime <= since),
    };
    let mut response = if not_modified {
        status(StatusCode::NOT_MODIFIED)
    } else if method == Method::HEAD {
        let mut r = status(StatusCode::OK);
        r.headers_mut().insert(CONTENT_LENGTH, content.len().into());
        r
    } else {
        Response::new(Body::from(content))
    };
    if let Ok(v) = etag.parse() {
        response.headers_mut().insert(ETAG, v);
    }
    if let Ok(v) = last_modified.parse() {
        response.headers_mut().insert(LAST_MODIFIED, v);
    }
    response
}
