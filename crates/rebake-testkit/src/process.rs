//! A child process whose output goes to a log file, with the plumbing shared by every server
//! guard: finding the binary, spawning, graceful and forced stop, and the log tail for errors.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// How many log lines a startup error carries.
const LOG_TAIL_LINES: usize = 20;

/// Pause between two readiness probes.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Starts the line written to the log before each run.
const RUN_MARKER: &str = "=== rebake-testkit: ";

/// How long a graceful stop (SIGTERM) may take before the process is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Directories searched after `PATH`: Debian installs `nats-server` in `/usr/sbin`, which is
/// not on a normal user's `PATH`.
const FALLBACK_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];

/// Finds `binary` on `PATH`, then in the usual system directories.
///
/// The error names the binary and the Debian package that provides it.
pub(crate) fn find_binary(binary: &str, debian_package: &str) -> anyhow::Result<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let fallback_dirs = FALLBACK_DIRS.iter().map(PathBuf::from);
    path_dirs
        .into_iter()
        .chain(fallback_dirs)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "`{binary}` not found on PATH nor in {}; install the Debian package \
                 `{debian_package}` (apt-get install {debian_package})",
                FALLBACK_DIRS.join(", ")
            )
        })
}

/// One server process at a time, appending its stdout and stderr to `log_path`.
///
/// The child is spawned with `kill_on_drop(true)`, so dropping this (or the test panicking)
/// kills it.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    /// Short name used in messages, e.g. `nats-server`.
    name: &'static str,
    program: PathBuf,
    log_path: PathBuf,
    child_opt: Option<Child>,
}

impl ServerProcess {
    pub(crate) fn new(name: &'static str, program: PathBuf, log_path: PathBuf) -> Self {
        Self {
            name,
            program,
            log_path,
            child_opt: None,
        }
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Spawns the program with `args`; any process still running is killed first.
    pub(crate) fn spawn(&mut self, args: &[OsString]) -> anyhow::Result<()> {
        self.kill_now();
        let mut log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("failed to open log file {}", self.log_path.display()))?;
        let command_line = std::iter::once(self.program.as_os_str())
            .chain(args.iter().map(OsString::as_os_str))
            .map(|part| part.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        // A marker line, so the log of a restarted server shows where each run begins.
        writeln!(log_file, "{RUN_MARKER}{command_line}")
            .with_context(|| format!("failed to write log file {}", self.log_path.display()))?;
        let stderr_file: File = log_file.try_clone().context("failed to duplicate log file handle")?;
        let child = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(stderr_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to spawn `{command_line}`"))?;
        tracing::debug!(server = self.name, pid = ?child.id(), command = %command_line, "spawned test server");
        self.child_opt = Some(child);
        Ok(())
    }

    /// The exit status if the process has exited (or was never started).
    pub(crate) fn exit_status(&mut self) -> Option<Result<ExitStatus, String>> {
        let Some(child) = self.child_opt.as_mut() else {
            return Some(Err("not running".to_owned()));
        };
        match child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(Ok(status)),
            Err(error) => Some(Err(error.to_string())),
        }
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Asks the process to exit with SIGTERM, waits up to [`STOP_GRACE`], then kills it.
    pub(crate) async fn stop(&mut self) {
        let Some(mut child) = self.child_opt.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            // `kill(1)` instead of libc: unsafe code is forbidden in this workspace.
            let terminated = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|status| status.success());
            if terminated && tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
                tracing::debug!(server = self.name, pid, "stopped test server");
                return;
            }
            tracing::warn!(
                server = self.name,
                pid,
                "test server did not stop on SIGTERM, killing it"
            );
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }

    /// Sends SIGKILL without waiting; the runtime reaps the process.
    pub(crate) fn kill_now(&mut self) {
        if let Some(mut child) = self.child_opt.take() {
            let _ = child.start_kill();
        }
    }

    /// Sends SIGKILL and waits until the process is gone.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child_opt.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// The last [`LOG_TAIL_LINES`] lines the latest run wrote, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => last_run_tail(&String::from_utf8_lossy(&bytes)),
            Err(error) => format!("<failed to read {}: {error}>", self.log_path.display()),
        }
    }

    /// Builds the error for a server that did not become ready, with the log tail.
    pub(crate) fn startup_error(&mut self, reason: impl std::fmt::Display) -> anyhow::Error {
        let status = match self.exit_status() {
            None => "still running".to_owned(),
            Some(Ok(status)) => format!("exited with {status}"),
            Some(Err(error)) => error,
        };
        anyhow::anyhow!(
            "{} failed to start ({reason}; process {status}); last lines of {}:\n{}",
            self.name,
            self.log_path.display(),
            self.log_tail()
        )
    }
}

impl ServerProcess {
    /// Polls `probe` until it succeeds, the process exits, or `timeout` passes.
    ///
    /// On failure the process is killed and the error carries the log tail.
    pub(crate) async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let started = Instant::now();
        loop {
            if !self.is_running() {
                return Err(self.startup_error("the process exited before it was ready"));
            }
            let probe_error = match probe().await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if started.elapsed() >= timeout {
                let error = self.startup_error(format!("not ready within {timeout:?}: {probe_error:#}"));
                self.kill().await;
                return Err(error);
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        }
    }

    /// Whether the last run failed because its port was taken (someone else bound it between
    /// [`free_port`](crate::free_port) and the server's own bind).
    pub(crate) fn port_was_taken(&mut self) -> bool {
        !self.is_running() && self.log_tail().contains("address already in use")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The last [`LOG_TAIL_LINES`] lines of `log` from the last run marker on.
fn last_run_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let run_start = lines.iter().rposition(|line| line.starts_with(RUN_MARKER)).unwrap_or(0);
    let first = run_start.max(lines.len().saturating_sub(LOG_TAIL_LINES));
    lines[first..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_starts_at_last_run() {
        let log = format!("{RUN_MARKER}first\nold error\n{RUN_MARKER}second\nnew error\n");
        assert_eq!(last_run_tail(&log), format!("{RUN_MARKER}second\nnew error"));
    }

    #[test]
    fn tail_is_bounded() {
        let log: String = (0..100).map(|n| format!("line {n}\n")).collect();
        let tail = last_run_tail(&log);
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.ends_with("line 99"));
    }

    #[tokio::test]
    async fn startup_error_quotes_log_of_failed_run() {
        let dir = tempfile::tempdir().unwrap();
        let shell = find_binary("sh", "dash").unwrap();
        let mut process = ServerProcess::new("fake-server", shell, dir.path().join("log"));
        let failing_script = "echo listening >&1; echo 'bind: address already in use' >&2; exit 3";
        process.spawn(&["-c".into(), failing_script.into()]).unwrap();
        let error = process
            .wait_ready(Duration::from_secs(10), || async {
                anyhow::bail!("connection refused")
            })
            .await
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("fake-server failed to start"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("address already in use"), "{message}");
        assert!(process.port_was_taken());
    }

    #[test]
    fn missing_binary_names_debian_package() {
        let error = find_binary("rebake-no-such-binary", "rebake-pkg").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("rebake-no-such-binary"), "{message}");
        assert!(message.contains("apt-get install rebake-pkg"), "{message}");
    }
}
