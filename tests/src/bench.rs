//! Shared by the bench binaries: summary statistics printed as a table row and returned as
//! JSON.

/// The `p`th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Prints one table row (name, runs, median, p90, min, max in ms) and returns it as JSON
/// (with p99 too).
pub fn stats(name: &str, mut values: Vec<f64>) -> serde_json::Value {
    values.sort_by(|a, b| a.total_cmp(b));
    let row = serde_json::json!({
        "metric": name,
        "runs": values.len(),
        "median_ms": percentile(&values, 50.0),
        "p90_ms": percentile(&values, 90.0),
        "p99_ms": percentile(&values, 99.0),
        "min_ms": values.first().copied().unwrap_or(f64::NAN),
        "max_ms": values.last().copied().unwrap_or(f64::NAN),
    });
    println!(
        "{:<34} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
        name,
        values.len(),
        row["median_ms"].as_f64().unwrap_or(0.0),
        row["p90_ms"].as_f64().unwrap_or(0.0),
        row["min_ms"].as_f64().unwrap_or(0.0),
        row["max_ms"].as_f64().unwrap_or(0.0)
    );
    row
}

/// Prints the table header matching [`stats`] rows.
pub fn header() {
    println!(
        "{:<34} {:>5} {:>10} {:>10} {:>10} {:>10}",
        "metric", "runs", "median ms", "p90 ms", "min ms", "max ms"
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
