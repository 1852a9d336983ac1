//! Shared by the bench binaries: logging, and summary statistics printed as a table row and
//! returned as JSON.

/// Logs of the bench binaries: warnings and errors only unless `RUST_LOG` says otherwise, on
/// stderr, coloured only on a terminal, so that the table on stdout stays readable. Call it
/// first: the sandbox's own test logging then leaves it in place.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Milliseconds rounded to 0.1 for the JSON output (the clock's noise is far above that).
fn round_ms(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// The `p`th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Prints one table row (name, runs, median, p90, p99, min, max in ms) and returns it as
/// JSON.
pub fn stats(name: &str, mut values: Vec<f64>) -> serde_json::Value {
    values.sort_by(|a, b| a.total_cmp(b));
    // The table indents stage rows under their total; the JSON names are the bare names.
    let row = serde_json::json!({
        "metric": name.trim(),
        "runs": values.len(),
        "median_ms": round_ms(percentile(&values, 50.0)),
        "p90_ms": round_ms(percentile(&values, 90.0)),
        "p99_ms": round_ms(percentile(&values, 99.0)),
        "min_ms": round_ms(values.first().copied().unwrap_or(f64::NAN)),
        "max_ms": round_ms(values.last().copied().unwrap_or(f64::NAN)),
    });
    println!(
        "{:<34} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
        name,
        values.len(),
        row["median_ms"].as_f64().unwrap_or(0.0),
        row["p90_ms"].as_f64().unwrap_or(0.0),
        row["p99_ms"].as_f64().unwrap_or(0.0),
        row["min_ms"].as_f64().unwrap_or(0.0),
        row["max_ms"].as_f64().unwrap_or(0.0)
    );
    row
}

/// Prints the table header matching [`stats`] rows.
pub fn header() {
    println!(
        "{:<34} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "metric", "runs", "median ms", "p90 ms", "p99 ms", "min ms", "max ms"
    );
}

/// The stage `name` of a build record (all zero when it has none).
pub fn stage_of(record: &rebake_events::state::BuildRecord, name: &str) -> rebake_events::state::StageRecord {
    record
        .stages
        .iter()
        .find(|stage| stage.name == name)
        .cloned()
        .unwrap_or_default()
}

/// User + system CPU seconds of this process so far.
pub fn cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

/// User + system CPU seconds, so far, of the child processes of this one whose command
/// is `name` (`nats-server`, `docker-registry`).
pub fn children_cpu_seconds(name: &str) -> f64 {
    let own = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return f64::NAN;
    };
    entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .filter(|pid| pid.bytes().all(|byte| byte.is_ascii_digit()))
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let comm = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')'));
            // After the command: state, then the parent's pid.
            matches!(comm, Some((comm, rest)) if comm == name && rest.split_whitespace().nth(1) == Some(own.as_str()))
        })
        .map(|pid| process_cpu_seconds(&pid))
        .sum()
}

/// User + system CPU seconds of process `pid` (or `self`) so far.
fn process_cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The fields after the command name (which may hold spaces) follow the last ')';
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Clock ticks are 100 per second on Linux (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds so far of this process, its `nats-server` children and its
/// `docker-registry` children.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    /// This process (Rebake's services when they run in-process).
    pub own: f64,
    /// `nats-server` children.
    pub nats: f64,
    /// `docker-registry` children.
    pub registry: f64,
}

impl CpuTimes {
    /// Now.
    pub fn now() -> CpuTimes {
        CpuTimes {
            own: cpu_seconds(),
            nats: children_cpu_seconds("nats-server"),
            registry: children_cpu_seconds("docker-registry"),
        }
    }

    /// What was used since `earlier`.
    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            own: self.own - earlier.own,
            nats: self.nats - earlier.nats,
            registry: self.registry - earlier.registry,
        }
    }
}
