//! Test kit for Rebake: real servers for integration tests, and polling assertions.
//!
//! Role: tests of `rebake-bus`, the services and the end-to-end scenarios in `tests/` need a
//! real NATS JetStream and a real OCI registry. This crate starts them as child processes:
//!
//! - [`NatsServer`]: `nats-server -js` (Debian package `nats-server`);
//! - [`RegistryServer`]: `docker-registry serve` (Debian package `docker-registry`,
//!   distribution 2.8), optionally posting webhook [`Notifications`].
//!
//! Package feed tests need an HTTP server for a directory of repository files:
//! [`FeedServer`] serves one in-process (with `ETag`/`Last-Modified`, 304s and a request log).
//!
//! Invariants:
//!
//! - every server listens on a fresh loopback port ([`free_port`]), so tests run in parallel;
//! - every server keeps its state and a log of its stdout/stderr in its own temporary
//!   directory; a startup error quotes the last lines of that log;
//! - `stop`/`restart` keep port and state, so a test can check what survives a restart;
//! - dropping a guard kills the process (`kill_on_drop`) and removes the directory. A test
//!   process killed with SIGKILL cannot clean up; its servers are orphaned.
//!
//! Waiting is done with [`assert_eventually!`] or [`eventually`], whose patience
//! ([`DEFAULT_PATIENCE`], 60 s) is scaled by `REBAKE_TEST_PATIENCE` on slow machines.
//!
//! Not here: Rebake services and their wiring (the `tests/` crate's sandbox does that), and any
//! dependency on other Rebake crates.

#![forbid(unsafe_code)]

mod eventually;
mod feed;
mod nats;
mod net;
mod process;
mod registry;

use std::sync::Once;
use std::time::Duration;

pub use crate::eventually::{
    Condition, DEFAULT_PATIENCE, PATIENCE_ENV, POLL_INTERVAL, eventually, patience, patience_factor, scaled,
};
pub use crate::feed::{FeedRequest, FeedServer};
pub use crate::nats::NatsServer;
pub use crate::net::free_port;
pub use crate::registry::{Notifications, RegistryServer};

/// Items used by the exported macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::eventually::Poller;
}

/// How many fresh ports a server tries when another process takes its port first.
const PORT_ATTEMPTS: u32 = 3;

/// How long a server may take to become ready, before the patience factor.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// [`STARTUP_TIMEOUT`] scaled by the patience factor.
fn startup_timeout() -> Duration {
    scaled(STARTUP_TIMEOUT)
}

/// The filter used when `RUST_LOG` is unset or invalid.
const DEFAULT_TEST_LOG_FILTER: &str = "warn,rebake=info";

/// Runs `program` in `dir` and returns its trimmed stdout; a failure carries its stderr. Git
/// gets a fixed author and committer, for tests that build throwaway repositories.
pub fn run_in(dir: &std::path::Path, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .map_err(|error| anyhow::anyhow!("failed to run {program}: {error}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// [`run_in`] for `git`, panicking on failure: for unit tests.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    run_in(dir, "git", args).unwrap_or_else(|error| panic!("{error:#}"))
}

/// Installs a `tracing` subscriber for tests: `RUST_LOG` filter (default
/// `warn,rebake=info`), output through the test harness's capture. Safe to call from every
/// test; only the first call in a process installs anything, and an already installed global
/// subscriber is left alone.
pub fn init_test_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_TEST_LOG_FILTER));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init();
    });
}
