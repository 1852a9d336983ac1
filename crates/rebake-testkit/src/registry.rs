//! A real `docker-registry` (CNCF distribution 2.8) on a free loopback port with filesystem
//! storage in a temporary directory, optionally sending webhook notifications.

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tempfile::TempDir;

use crate::net::{free_port, http_get_status};
use crate::process::{ServerProcess, find_binary};

/// The binary, and the Debian package that installs it (into `/usr/bin`).
const REGISTRY_BINARY: &str = "docker-registry";
const REGISTRY_DEBIAN_PACKAGE: &str = "docker-registry";

/// Where the registry posts its event envelopes
/// (`application/vnd.docker.distribution.events.v1+json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifications {
    /// The endpoint URL, e.g. `http://127.0.0.1:8080/v1/hooks/registry/distribution`.
    pub url: String,
    /// Sent on every notification as `Authorization: Bearer <token>`.
    pub token: String,
}

/// A `docker-registry serve` process for one test.
///
/// Plain HTTP on `127.0.0.1:<free port>`, deletes enabled, storage in a temporary directory.
/// [`stop`](Self::stop) and [`restart`](Self::restart) keep port, storage and HTTP secret.
/// Dropping the guard kills the process and deletes the directory.
///
/// With [`Notifications`], the registry posts manifest `push` and `delete` events to the
/// endpoint; blob events (target media type `application/octet-stream`) and `pull` events are
/// filtered out by the registry itself.
#[derive(Debug)]
pub struct RegistryServer {
    // Field order matters: the process is killed before its directory is removed.
    process: ServerProcess,
    port: u16,
    config_path: PathBuf,
    data_dir: PathBuf,
    http_secret: String,
    notifications_opt: Option<Notifications>,
    _dir: TempDir,
}

impl RegistryServer {
    /// Starts a registry and waits until `GET /v2/` answers 200.
    ///
    /// Fails with the last lines of the registry log if it does not come up (a config it
    /// rejects, for instance), or with the package to install if `docker-registry` is missing.
    pub async fn start(notify: Option<Notifications>) -> anyhow::Result<RegistryServer> {
        let binary = find_binary(REGISTRY_BINARY, REGISTRY_DEBIAN_PACKAGE)?;
        let dir = tempfile::Builder::new()
            .prefix("rebake-registry-")
            .tempdir()
            .context("failed to create temporary directory for docker-registry")?;
        let config_path = dir.path().join("config.yml");
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("docker-registry.log");
        let mut server = RegistryServer {
            process: ServerProcess::new(REGISTRY_BINARY, binary, log_path),
            port: 0,
            config_path,
            data_dir,
            http_secret: random_hex_secret(),
            notifications_opt: notify,
            _dir: dir,
        };
        let mut attempt = 1;
        loop {
            server.port = free_port();
            match server.launch().await {
                Ok(()) => break,
                Err(error) if attempt < crate::PORT_ATTEMPTS && server.process.port_was_taken() => {
                    tracing::debug!(port = server.port, error = %error, "port taken, retrying with another");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
        tracing::info!(url = %server.url(), data = %server.data_dir.display(), "docker-registry started");
        Ok(server)
    }

    /// The registry host as used in image references, `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr().to_string()
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The storage root directory (`storage.filesystem.rootdirectory`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The generated `config.yml`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The file collecting the registry's stdout and stderr across restarts.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Stops the registry (SIGTERM, then SIGKILL after a grace period) and waits for it to
    /// exit. Storage is kept for [`restart`](Self::restart). Does nothing if already stopped.
    pub async fn stop(&mut self) {
        self.process.stop().await;
        tracing::info!(url = %self.url(), "docker-registry stopped");
    }

    /// Starts the registry again on the same port with the same storage, stopping it first if
    /// it is running, and waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.stop().await;
        self.launch()
            .await
            .with_context(|| format!("failed to restart docker-registry on port {}", self.port))?;
        tracing::info!(url = %self.url(), "docker-registry restarted");
        Ok(())
    }

    /// Writes the config for `self.port`, spawns the process and waits until it is ready.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let config = registry_config(
            self.addr(),
            &self.data_dir,
            &self.http_secret,
            self.notifications_opt.as_ref(),
        );
        std::fs::write(&self.config_path, config)
            .with_context(|| format!("failed to write registry config {}", self.config_path.display()))?;
        let args: Vec<OsString> = vec!["serve".into(), self.config_path.clone().into_os_string()];
        self.process.spawn(&args)?;
        let addr = self.addr();
        self.process
            .wait_ready(crate::startup_timeout(), || async move {
                let status = http_get_status(addr, "/v2/").await?;
                anyhow::ensure!(status == 200, "GET /v2/ answered {status}");
                Ok(())
            })
            .await
    }
}

/// Renders the distribution 2.8 `config.yml`.
///
/// Notes on the `notifications` endpoint, checked against distribution 2.8.2:
/// - `headers` values must be lists;
/// - `timeout`, `threshold` and `backoff` are required;
/// - `ignoredmediatypes` drops blob events, whose target media type is
///   `application/octet-stream`, and `ignore.actions: [pull]` drops pulls, so only manifest
///   `push` and `delete` events are sent;
/// - unknown keys are silently ignored, so a typo is not caught by the registry starting.
fn registry_config(
    addr: SocketAddr,
    data_dir: &Path,
    http_secret: &str,
    notifications_opt: Option<&Notifications>,
) -> String {
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {data_dir}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: {secret}\n",
        data_dir = yaml_string(&data_dir.to_string_lossy()),
        addr = yaml_string(&addr.to_string()),
        secret = yaml_string(http_secret),
    );
    if let Some(notifications) = notifications_opt {
        let bearer = format!("Bearer {}", notifications.token);
        let _ = write!(
            config,
            "notifications:\n  endpoints:\n    - name: rebake\n      url: {url}\n      \
             headers:\n        Authorization: [{bearer}]\n      timeout: 2s\n      \
             threshold: 3\n      backoff: 200ms\n      \
             ignoredmediatypes: [application/octet-stream]\n      \
             ignore:\n        actions: [pull]\n",
            url = yaml_string(&notifications.url),
            bearer = yaml_string(&bearer),
        );
    }
    config
}

/// A YAML double-quoted scalar; the escapes used are a subset of YAML's.
fn yaml_string(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for character in value.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            control if control.is_control() => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(control));
            }
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// 32 hex characters from the standard library's randomly seeded hasher; the secret only has
/// to differ between test registries, not resist an attacker.
fn random_hex_secret() -> String {
    (0..2)
        .map(|_| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_nanos())
                    .unwrap_or_default(),
            );
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_without_notifications() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let config = registry_config(addr, Path::new("/tmp/x/data"), "s3cr3t", None);
        assert!(config.contains("addr: \"127.0.0.1:5000\""), "{config}");
        assert!(config.contains("rootdirectory: \"/tmp/x/data\""), "{config}");
        assert!(!config.contains("notifications"), "{config}");
    }

    #[test]
    fn config_with_notifications_quotes_values() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 5000));
        let notifications = Notifications {
            url: "http://127.0.0.1:8080/v1/hooks/registry/distribution".to_owned(),
            token: "to\"ken".to_owned(),
        };
        let config = registry_config(addr, Path::new("/d"), "s", Some(&notifications));
        assert!(
            config.contains("url: \"http://127.0.0.1:8080/v1/hooks/registry/distribution\""),
            "{config}"
        );
        assert!(config.contains("Authorization: [\"Bearer to\\\"ken\"]"), "{config}");
        assert!(config.contains("actions: [pull]"), "{config}");
    }

    #[test]
    fn secrets_differ() {
        let secret = random_hex_secret();
        assert_eq!(secret.len(), 32);
        assert_ne!(secret, random_hex_secret());
    }
}
