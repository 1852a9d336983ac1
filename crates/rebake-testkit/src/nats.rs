//! A real `nats-server` with JetStream on a free loopback port and a temporary store.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::net::{PROBE_TIMEOUT, free_port};
use crate::process::{ServerProcess, find_binary};

/// The binary, and the Debian package that installs it (into `/usr/sbin`).
const NATS_BINARY: &str = "nats-server";
const NATS_DEBIAN_PACKAGE: &str = "nats-server";

/// A `nats-server -js` process for one test.
///
/// Listens on `127.0.0.1:<free port>` with its JetStream store in a temporary directory.
/// [`stop`](Self::stop) and [`restart`](Self::restart) keep port and store, so streams,
/// consumers and KV buckets survive a restart. Dropping the guard kills the process and
/// deletes the directory.
#[derive(Debug)]
pub struct NatsServer {
    // Field order matters: the process is killed before its directory is removed.
    process: ServerProcess,
    port: u16,
    store_dir: PathBuf,
    _dir: TempDir,
}

impl NatsServer {
    /// Starts a server and waits until it answers `PING` with JetStream enabled.
    ///
    /// Fails with the last lines of the server log if it does not come up, or with the package
    /// to install if `nats-server` is missing.
    pub async fn start() -> anyhow::Result<NatsServer> {
        let binary = find_binary(NATS_BINARY, NATS_DEBIAN_PACKAGE)?;
        let dir = tempfile::Builder::new()
            .prefix("rebake-nats-")
            .tempdir()
            .context("failed to create temporary directory for nats-server")?;
        let store_dir = dir.path().join("store");
        let log_path = dir.path().join("nats-server.log");
        let mut server = NatsServer {
            process: ServerProcess::new(NATS_BINARY, binary, log_path),
            port: 0,
            store_dir,
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
        tracing::info!(url = %server.url(), store = %server.store_dir.display(), "nats-server started");
        Ok(server)
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The JetStream store directory (`-sd`).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The file collecting the server's stdout and stderr across restarts.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period) and waits for it to exit.
    /// The store is kept for [`restart`](Self::restart). Does nothing if already stopped.
    pub async fn stop(&mut self) {
        self.process.stop().await;
        tracing::info!(url = %self.url(), "nats-server stopped");
    }

    /// Kills the server with SIGKILL, like a crash, and waits for it to exit. The store is kept.
    pub async fn kill(&mut self) {
        self.process.kill().await;
        tracing::info!(url = %self.url(), "nats-server killed");
    }

    /// Starts the server again on the same port with the same store, stopping it first if it
    /// is running, and waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.stop().await;
        self.launch()
            .await
            .with_context(|| format!("failed to restart nats-server on port {}", self.port))?;
        tracing::info!(url = %self.url(), "nats-server restarted");
        Ok(())
    }

    /// Spawns the process on `self.port` and waits until it is ready.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let args: Vec<OsString> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string().into(),
            "-js".into(),
            "-sd".into(),
            self.store_dir.clone().into_os_string(),
        ];
        self.process.spawn(&args)?;
        let addr = self.addr();
        self.process
            .wait_ready(crate::startup_timeout(), || probe_nats(addr))
            .await
    }
}

/// Reads the `INFO` greeting (which must announce JetStream), then round-trips `PING`/`PONG`.
async fn probe_nats(addr: SocketAddr) -> anyhow::Result<()> {
    let probe = async {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("failed to connect to {addr}"))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.context("failed to read INFO")?;
        anyhow::ensure!(line.starts_with("INFO "), "expected INFO, got {line:?}");
        anyhow::ensure!(
            line.contains("\"jetstream\":true"),
            "server does not announce JetStream: {line:?}"
        );
        reader
            .get_mut()
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
            .await
            .context("failed to send PING")?;
        line.clear();
        reader.read_line(&mut line).await.context("failed to read PONG")?;
        anyhow::ensure!(line.starts_with("PONG"), "expected PONG, got {line:?}");
        Ok(())
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .with_context(|| format!("timed out probing nats at {addr}"))?
}
