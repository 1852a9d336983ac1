//! Test support: an in-memory sink and fixture loading.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode},
};
use rebake_events::{Envelope, Names, pb};
use tower::ServiceExt;

use crate::{IngressSettings, UpstreamSink};

/// Distribution bearer token in [`settings`].
pub(crate) const TOKEN: &[u8] = b"test-distribution-token";
/// GitHub secret in [`settings`].
pub(crate) const SECRET: &[u8] = b"test-github-secret";

/// Settings with both senders configured.
pub(crate) fn settings() -> IngressSettings {
    IngressSettings {
        distribution_token: Some(TOKEN.to_vec()),
        github_secret: Some(SECRET.to_vec()),
        ..IngressSettings::default()
    }
}

type Published = (String, Envelope, pb::UpstreamChanged);

/// Records what is published; can be switched to not ready or failing.
pub(crate) struct FakeSink {
    names: Names,
    ready: AtomicBool,
    failing: AtomicBool,
    attempts: AtomicUsize,
    published: Mutex<Vec<Published>>,
}

impl FakeSink {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            names: Names::new("rebake").expect("\"rebake\" is a valid prefix"),
            ready: AtomicBool::new(true),
            failing: AtomicBool::new(false),
            attempts: AtomicUsize::new(0),
            published: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Publish calls made, successful or not.
    pub(crate) fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Events acknowledged so far.
    pub(crate) fn published(&self) -> Vec<Published> {
        self.published.lock().expect("fake sink lock is never poisoned").clone()
    }
}

impl UpstreamSink for FakeSink {
    async fn publish(&self, subject: String, envelope: Envelope, event: pb::UpstreamChanged) -> Result<(), String> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err("nats: no responders".to_string());
        }
        self.published
            .lock()
            .expect("fake sink lock is never poisoned")
            .push((subject, envelope, event));
        Ok(())
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn names(&self) -> &Names {
        &self.names
    }
}

/// A fixture from `tests/fixtures/` (copies of `shared/fixtures/webhooks/`).
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read fixture {path}: {error}"))
}

/// Sends one request through `app`; returns status, headers and the JSON body (`null` when
/// the body is empty or not JSON).
pub(crate) async fn send(
    app: Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body)).expect("test request is valid");
    let response = app.oneshot(request).await.expect("router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("response body is readable");
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The copies under `tests/fixtures/` match `shared/fixtures/webhooks/` when that
    /// directory is beside the workspace (it is not in every checkout, so absent = skip).
    /// Fixtures written here from senders' documentation have no shared original.
    #[test]
    fn fixture_copies_match_shared() {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shared = manifest_dir.join("../../../shared/fixtures/webhooks");
        if !shared.is_dir() {
            return;
        }
        for family in [
            "acr",
            "bitbucket",
            "distribution",
            "dockerhub",
            "ecr",
            "gar",
            "gitea",
            "github",
            "gitlab",
            "harbor",
            "quay",
        ] {
            let local_dir = manifest_dir.join("tests/fixtures").join(family);
            for entry in std::fs::read_dir(&local_dir).unwrap() {
                let local = entry.unwrap().path();
                let name = local.file_name().unwrap();
                let original = shared.join(family).join(name);
                if !original.exists() {
                    continue;
                }
                assert_eq!(
                    std::fs::read(&local).unwrap(),
                    std::fs::read(&original).unwrap(),
                    "{} differs from {}",
                    local.display(),
                    original.display()
                );
            }
        }
    }
}
