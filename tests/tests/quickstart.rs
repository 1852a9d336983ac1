//! The README's quickstart (`./quickstart.sh` runs this binary), run as a newcomer runs it,
//! so that its promise stays true: it reaches its summary with no manual step, every build
//! is published and its signature and attestations verify, the example advisory's finding
//! is in the first builds of the package-based images and gone once the feed ships the fix,
//! and each upstream change rebuilds what it should.
#![forbid(unsafe_code)]

use std::{
    io::Read,
    process::{Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Longer than a debug-build run on a busy 2-core machine; a hang fails instead of blocking.
const TIMEOUT: Duration = Duration::from_secs(600);

/// Reads `pipe` to its end on a thread; the text, lossily decoded.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[test]
fn quickstart_reaches_its_summary() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rebake-quickstart"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the quickstart starts");
    // Read both pipes while it runs: a child that fills a pipe nobody reads would block.
    let stdout_reader = read_all(child.stdout.take().expect("piped stdout"));
    let stderr_reader = read_all(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the quickstart") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            // Ctrl-C first, as a person would: the quickstart then stops the servers it
            // started; SIGKILL only if it does not exit.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let interrupted = Instant::now();
            while child.try_wait().ok().flatten().is_none() && interrupted.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            // A grandchild still holding the pipe would keep the reader waiting: give up on
            // the output rather than hang.
            let drained = Instant::now();
            while !stdout_reader.is_finished() && drained.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let stdout = if stdout_reader.is_finished() {
                stdout_reader.join().unwrap_or_default()
            } else {
                "(not available: the pipe is still open)".to_string()
            };
            panic!("the quickstart did not finish within {TIMEOUT:?}; its output:\n{stdout}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = stdout_reader.join().expect("stdout reader");
    let stderr = stderr_reader.join().expect("stderr reader");
    if !status.success() && stderr.contains("cannot build the Debian feed") {
        // The same condition the package tests skip on: no usable apt sources here.
        eprintln!("skipping: {}", stderr.trim());
        return;
    }
    assert!(
        status.success(),
        "quickstart failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        status
    );
    let summary = stdout
        .split_once("summary: every build, in the order requested")
        .map(|(_, summary)| summary)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    // One row per build: number, then the upstream change label, then the image.
    let rows: Vec<Vec<&str>> = summary
        .lines()
        .filter(|line| {
            line.trim_start()
                .split(' ')
                .next()
                .is_some_and(|n| n.parse::<usize>().is_ok())
        })
        .map(|line| line.split_whitespace().collect())
        .collect();
    let built = |change: &str| -> Vec<String> {
        let label_words = change.split_whitespace().count();
        rows.iter()
            .filter(|row| {
                row.get(1..1 + label_words)
                    .is_some_and(|label| label.join(" ") == change)
            })
            .map(|row| row[1 + label_words].to_string())
            .collect()
    };
    let mut first = built("first publication");
    first.sort();
    assert_eq!(
        first,
        ["api", "debian-base", "tools", "tools-ci", "web", "web-debug"],
        "{summary}"
    );
    let feed = built("feed: new tzdata");
    assert_eq!(feed.first().map(String::as_str), Some("debian-base"), "{summary}");
    assert_eq!(feed.last().map(String::as_str), Some("web-debug"), "{summary}");
    assert_eq!(feed.len(), 4, "{summary}");
    let mut git = built("git push (webhook)");
    assert_eq!(git.pop().as_deref(), Some("web-debug"), "{summary}");
    git.sort();
    assert_eq!(git, ["api", "web"], "{summary}");
    assert_eq!(built("new base:v1 (registry)"), ["tools", "tools-ci"], "{summary}");
    assert_eq!(rows.len(), 15, "{summary}");
    for row in &rows {
        let line = row.join(" ");
        assert!(line.contains(" published sha256:"), "not published: {line}");
        assert!(line.contains(" ok (+4 attest.)"), "signature or attestations: {line}");
    }
    // The advisory's finding: in the four first builds made from the feed, in no later one.
    let finding = summary
        .lines()
        .find(|line| line.starts_with("finding REBAKE-QUICKSTART-0001"))
        .unwrap_or_else(|| panic!("no finding line in:\n{summary}"));
    let carriers: Vec<usize> = finding
        .rsplit_once("in builds ")
        .map(|(_, numbers)| {
            numbers
                .split_whitespace()
                .filter_map(|n| n.trim_start_matches('#').parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(carriers.len(), 4, "{finding}");
    assert!(
        carriers.iter().all(|n| *n <= 6),
        "a build after the fix still has it: {finding}"
    );
    assert!(stdout.contains("done in"), "{stdout}");
}
