//! The process runtime every Rebake service shares: one shutdown model and one telemetry
//! setup.
//!
//! Shutdown: a root [`CancellationToken`] is cancelled by the first SIGINT or SIGTERM;
//! services watch child tokens, stop taking work, finish or hand back (nak) what they hold,
//! and return. A second SIGINT forces exit. [`TaskTracker`] tracks what services spawn.
//!
//! Telemetry: `tracing` with a `RUST_LOG`-style filter (default `warn,rebake=info`) in text
//! or JSON, and OpenTelemetry traces exported over OTLP when configured ([`telemetry`]).
#![forbid(unsafe_code)]

use std::time::Duration;

pub mod telemetry;

pub use telemetry::{TelemetryGuard, init_telemetry};

pub use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}, expected text or json")),
        }
    }
}

/// Cancels `token` on the first SIGINT or SIGTERM; exits the process (code 130) on a second
/// SIGINT. Runs until the process ends.
pub async fn cancel_on_signals(token: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutdown requested, finishing in-flight work (interrupt again to force)");
    token.cancel();
    wait_for_signal().await;
    tracing::warn!("second interrupt, exiting now");
    std::process::exit(130);
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits for tracked tasks to finish, at most `grace`. Returns whether they all did.
pub async fn drain(tracker: &TaskTracker, grace: Duration) -> bool {
    tracker.close();
    tokio::time::timeout(grace, tracker.wait()).await.is_ok()
}

/// Version and build information for the startup line and `rebake version`.
pub fn version_line() -> String {
    format!(
        "rebake {} ({} {})",
        env!("CARGO_PKG_VERSION"),
        option_env!("REBAKE_GIT_SHA").unwrap_or("unknown-sha"),
        std::env::consts::ARCH
    )
}
