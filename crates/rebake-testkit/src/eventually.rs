//! Polling assertions with patience tunable through `REBAKE_TEST_PATIENCE`.
//!
//! Distributed tests wait for things that happen "soon" (a message is consumed, a build lands
//! in the registry). Instead of sleeping a fixed time, poll every [`POLL_INTERVAL`] until the
//! condition holds or [`patience`] runs out. Slow CI machines raise the patience with
//! `REBAKE_TEST_PATIENCE=<factor>` instead of editing tests.

use std::future::Future;
use std::time::{Duration, Instant};

/// The environment variable holding the patience factor (e.g. `2.0` doubles every timeout).
pub const PATIENCE_ENV: &str = "REBAKE_TEST_PATIENCE";

/// How long [`eventually`] and [`assert_eventually!`](crate::assert_eventually) wait with a
/// factor of 1.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// Pause between two checks of the condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The factor read from [`PATIENCE_ENV`]; 1.0 when unset or not a positive number.
pub fn patience_factor() -> f64 {
    let Ok(raw) = std::env::var(PATIENCE_ENV) else {
        return 1.0;
    };
    match raw.trim().parse::<f64>() {
        Ok(factor) if factor.is_finite() && factor > 0.0 => factor,
        _ => {
            tracing::warn!(
                env = PATIENCE_ENV,
                value = %raw,
                "ignoring patience factor, expected a positive number"
            );
            1.0
        }
    }
}

/// `duration` multiplied by the patience factor; use it for any test timeout.
pub fn scaled(duration: Duration) -> Duration {
    duration.mul_f64(patience_factor())
}

/// How long to wait for an eventual condition: [`DEFAULT_PATIENCE`] times the factor.
pub fn patience() -> Duration {
    scaled(DEFAULT_PATIENCE)
}

/// What a polled condition may return: `bool`, or `Result<bool, E>` where an error counts as
/// "not yet" and is reported if patience runs out.
pub trait Condition {
    /// `Ok(met)`, or the error rendered with its cause chain.
    fn into_outcome(self) -> Result<bool, String>;
}

impl Condition for bool {
    fn into_outcome(self) -> Result<bool, String> {
        Ok(self)
    }
}

impl<E> Condition for Result<bool, E>
where
    E: Into<anyhow::Error>,
{
    fn into_outcome(self) -> Result<bool, String> {
        self.map_err(|error| format!("{:#}", error.into()))
    }
}

/// Polls `condition` every [`POLL_INTERVAL`] until it returns `true` (or `Ok(true)`).
///
/// Fails after [`patience`] with a message naming `what` and the last error seen.
///
/// ```no_run
/// # async fn demo(counter: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> anyhow::Result<()> {
/// use std::sync::atomic::Ordering;
/// rebake_testkit::eventually("three messages consumed", || {
///     let counter = counter.clone();
///     async move { counter.load(Ordering::SeqCst) == 3 }
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn eventually<F, Fut, C>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
    C: Condition,
{
    let mut poller = Poller::new();
    loop {
        match condition().await.into_outcome() {
            Ok(true) => return Ok(()),
            Ok(false) => poller.not_yet(None),
            Err(error) => poller.not_yet(Some(error)),
        }
        if poller.expired() {
            return Err(anyhow::anyhow!(poller.timeout_message(what)));
        }
        poller.pause().await;
    }
}

/// Asserts that a condition becomes true within [`patience`], polling every [`POLL_INTERVAL`].
///
/// The condition is an expression evaluated on every poll; it may `.await` and may evaluate to
/// `bool` or `Result<bool, E>` (an error means "not yet"). Use it in an async test. An optional
/// message with format arguments follows, as for `assert!`. Panics on timeout.
///
/// ```no_run
/// # async fn demo(queue: std::sync::Mutex<Vec<u32>>) {
/// rebake_testkit::assert_eventually!(queue.lock().unwrap().len() == 3);
/// rebake_testkit::assert_eventually!(
///     async { Ok::<bool, std::io::Error>(true) }.await,
///     "queue never held {} items",
///     3
/// );
/// # }
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($condition:expr $(,)?) => {
        $crate::assert_eventually!($condition, "{}", ::core::stringify!($condition))
    };
    ($condition:expr, $($message:tt)+) => {{
        let mut poller = $crate::__private::Poller::new();
        loop {
            match $crate::Condition::into_outcome($condition) {
                ::core::result::Result::Ok(true) => break,
                ::core::result::Result::Ok(false) => poller.not_yet(::core::option::Option::None),
                ::core::result::Result::Err(error) => {
                    poller.not_yet(::core::option::Option::Some(error))
                }
            }
            if poller.expired() {
                poller.fail(&::std::format!($($message)+));
            }
            poller.pause().await;
        }
    }};
}

/// The polling state shared by [`eventually`] and [`assert_eventually!`](crate::assert_eventually).
///
/// Public only for the macro; not part of the API.
#[doc(hidden)]
#[derive(Debug)]
pub struct Poller {
    started: Instant,
    patience: Duration,
    attempts: u64,
    last_error_opt: Option<String>,
}

impl Poller {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            // Real time on purpose: a test on a paused Tokio clock still gets real patience.
            started: Instant::now(),
            patience: patience(),
            attempts: 0,
            last_error_opt: None,
        }
    }

    pub fn not_yet(&mut self, error_opt: Option<String>) {
        self.attempts += 1;
        if error_opt.is_some() {
            self.last_error_opt = error_opt;
        }
    }

    pub fn expired(&self) -> bool {
        self.started.elapsed() >= self.patience
    }

    pub async fn pause(&self) {
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    pub fn timeout_message(&self, what: &str) -> String {
        let mut message = format!(
            "condition not met within {:?} ({} checks, {PATIENCE_ENV}={}): {what}",
            self.patience,
            self.attempts,
            patience_factor()
        );
        if let Some(error) = &self.last_error_opt {
            message.push_str("; last error: ");
            message.push_str(error);
        }
        message
    }

    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!("{}", self.timeout_message(what))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn eventually_returns_once_condition_holds() {
        let calls = AtomicUsize::new(0);
        eventually("third call", || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call < 2 {
                    anyhow::bail!("call {call} is too early");
                }
                Ok(true)
            }
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn macro_accepts_bool_and_result() {
        let calls = AtomicUsize::new(0);
        assert_eventually!(calls.fetch_add(1, Ordering::SeqCst) >= 2);
        assert_eventually!(
            async { Ok::<bool, std::io::Error>(true) }.await,
            "never ok after {} calls",
            calls.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn timeout_message_names_condition_and_last_error() {
        let mut poller = Poller::new();
        poller.not_yet(Some("connection refused".to_owned()));
        poller.not_yet(None);
        let message = poller.timeout_message("stream exists");
        assert!(message.contains("stream exists"), "{message}");
        assert!(message.contains("2 checks"), "{message}");
        assert!(message.contains("last error: connection refused"), "{message}");
    }
}
