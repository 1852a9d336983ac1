//! Rendering of control API answers for the `rebake` CLI: text for people (tables, trees,
//! indented chains, a live cascade display) and JSON for scripts, as pure functions of
//! hand-built API messages so they can be tested without a server.
//!
//! Colours are ANSI SGR codes, added only when the caller's [`Style`] says so (the CLI turns
//! them on for a terminal without `NO_COLOR`); JSON never carries them. Times are UTC.

use std::collections::{BTreeMap, HashMap, HashSet};

use rebake_proto::control::v1::{
    Build, BuildDetail, Event, Exposure, ExposureEntry, FindingsSummary, Graph, GraphNode, Image, PackageVersion,
    PackagesSummary, PublishedDigest, SourceCommit, Stage, WhyResponse,
};
use serde_json::{Value, json};

use crate::client::{image_to_json, or_dash, render_table, short_digest, truncate};

// === style ===

/// Whether text output is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Emit ANSI colour codes.
    pub color: bool,
}

impl Style {
    /// No colours.
    pub const PLAIN: Style = Style { color: false };

    /// Colours when stdout is a terminal and `NO_COLOR` is unset or empty
    /// (<https://no-color.org>).
    pub fn decide(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> Style {
        Style {
            color: stdout_is_terminal && no_color.is_none_or(|value| value.is_empty()),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// `text` in bold.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// `text` dimmed.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    /// A status word coloured by what it means: green when done, red when failed, yellow
    /// while waiting or in flight, dim when nothing happened yet.
    pub fn status(self, status: &str) -> String {
        let code = match status {
            "published" | "signed" | "passed" | "ok" | "fixed" => "32",
            "failed" | "denied" | "DENIED" | "unsigned" | "open" | "critical" | "high" => "31",
            "building" | "requested" | "built" | "scanned" | "waiting" | "paused" | "medium" => "33",
            "new" | "skipped" | "upstream" | "low" => "2",
            _ => return status.to_string(),
        };
        self.paint(code, status)
    }
}

/// Paints one column's cells (given the padded cell text).
type Painter<'a> = Box<dyn Fn(&str) -> String + 'a>;

/// Cells of a table are padded by visible width: colour codes are added after padding.
fn colored_table(rows: &[Vec<String>], colors: &[Option<Painter<'_>>]) -> String {
    let plain = render_table(rows);
    if colors.iter().all(Option::is_none) {
        return plain;
    }
    // Re-render cell by cell with the same widths.
    let widths = crate::client::column_widths(rows);
    let mut out = String::new();
    for (index, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let shown = match colors.get(column) {
                Some(Some(paint)) if index > 0 => paint(cell),
                _ => cell.clone(),
            };
            line.push_str(&shown);
            if column + 1 < row.len() {
                line.push_str(&" ".repeat(widths[column] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

// === small formatting ===

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix milliseconds; `-` for 0.
pub fn datetime(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_string();
    }
    let text = rebake_events::rfc3339_ms(ms);
    text.get(..19).unwrap_or(&text).replacen('T', " ", 1)
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h10m`, `3d04h`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
        _ => format!("{}d{:02}h", ms / 86_400_000, ms / 3_600_000 % 24),
    }
}

/// The first 8 characters of a build id (UUIDv7: the time part), `-` when empty.
pub fn short_build_id(id: &str) -> String {
    if id.is_empty() {
        return "-".to_string();
    }
    // Build ids are UUIDv7: the first digits are a timestamp, shared by every build of a
    // cascade; the last ones are random. Show those (`rebake why` takes them too).
    let hex: Vec<char> = id.chars().filter(char::is_ascii_hexdigit).collect();
    if looks_like_build_id(id) {
        hex[hex.len() - SHORT_ID_CHARS..].iter().collect()
    } else {
        id.chars().take(SHORT_ID_CHARS).collect()
    }
}

/// Hex digits of a short build id.
pub const SHORT_ID_CHARS: usize = 8;

/// Whether `text` could be a short build id as [`short_build_id`] prints it.
pub fn looks_like_short_build_id(text: &str) -> bool {
    text.len() == SHORT_ID_CHARS && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Whether `text` has the shape of a build id (a UUID: 8-4-4-4-12 hex digits). Image names
/// are never this shape in practice, so `rebake why` uses it to tell builds from images.
pub fn looks_like_build_id(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// === images ===

/// `rebake image NAME`: everything the API knows about one image, as labelled sections.
pub fn render_image_detail(image: &Image, now_ms: i64, style: Style) -> String {
    let mut out = String::new();
    let mut field = |label: &str, value: String| out.push_str(&format!("{:<18}{}\n", format!("{label}:"), value));
    field("Image", style.bold(&image.name));
    let mut status = style.status(&image.status);
    if !image.status_reason.is_empty() {
        status.push_str(&format!(" ({})", one_line(&image.status_reason)));
    }
    field("Status", status);
    field(
        "Paused",
        if image.paused {
            format!("{} ({})", style.status("paused"), or_dash(&image.paused_reason))
        } else {
            "no".to_string()
        },
    );
    field("Repository", or_dash(&image.repository));
    field(
        "Tags",
        if image.tags.is_empty() {
            "-".into()
        } else {
            image.tags.join(", ")
        },
    );
    field("Published digest", or_dash(&image.published_digest));
    if image.published_at_ms > 0 {
        field(
            "Published at",
            format!(
                "{} ({})",
                datetime(image.published_at_ms),
                crate::timefmt::age(now_ms, image.published_at_ms)
            ),
        );
    }
    field(
        "Signature",
        if image.signature_status.is_empty() {
            "-".to_string()
        } else {
            style.status(&image.signature_status)
        },
    );
    field("Base", or_dash(&image.base_ref));
    field("Base digest", or_dash(&image.base_digest));
    field("Parent", or_dash(&image.parent));
    field(
        "Children",
        if image.children.is_empty() {
            "-".into()
        } else {
            image.children.join(", ")
        },
    );
    let stale = !image.desired_inputs_hash.is_empty() && image.desired_inputs_hash != image.published_inputs_hash;
    field(
        "Inputs hash",
        format!(
            "{}{}",
            or_dash(&image.published_inputs_hash),
            if stale {
                format!(" (wanted: {})", image.desired_inputs_hash)
            } else {
                String::new()
            }
        ),
    );
    match &image.last_build {
        Some(build) => field(
            "Last build",
            format!(
                "{} {}{}",
                build.build_id,
                style.status(&build.status),
                if build.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", truncate(&one_line(&build.reason), 120))
                }
            ),
        ),
        None => field("Last build", "-".into()),
    }
    out.push_str(&format!("\n{}\n", style.bold("Sources")));
    if image.sources.is_empty() {
        out.push_str("  -\n");
    }
    for source in &image.sources {
        out.push_str(&format!(
            "  {} {} @ {}\n",
            source.url,
            source.ref_name,
            or_dash(&source.commit)
        ));
    }
    out.push_str(&format!("\n{}\n", style.bold("Packages")));
    match &image.packages {
        Some(packages) if packages.count > 0 || !packages.packages.is_empty() => {
            out.push_str(&format!(
                "  {} packages from {}\n",
                packages.count,
                if packages.feeds.is_empty() {
                    "-".to_string()
                } else {
                    packages.feeds.join(", ")
                }
            ));
            for package in packages.packages.iter().take(10) {
                out.push_str(&format!(
                    "  {} {}{}\n",
                    package.name,
                    package.version,
                    if package.platform.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", package.platform)
                    }
                ));
            }
            if packages.packages.len() > 10 {
                out.push_str(&format!("  … and {} more\n", packages.packages.len() - 10));
            }
        }
        _ => out.push_str("  -\n"),
    }
    out.push_str(&format!("\n{}\n", style.bold("Findings")));
    match &image.findings {
        Some(findings) => out.push_str(&format!("  {}\n", findings_summary_line(findings, style))),
        None => out.push_str("  -\n"),
    }
    out.push_str(&format!("\n{}\n", style.bold("History")));
    if image.history.is_empty() {
        out.push_str("  -\n");
    } else {
        let mut rows = vec![
            ["PUBLISHED", "DIGEST", "BUILD", "BASE DIGEST"]
                .map(str::to_string)
                .to_vec(),
        ];
        for entry in &image.history {
            rows.push(vec![
                datetime(entry.published_at_ms),
                short_digest(&entry.digest),
                short_build_id(&entry.build_id),
                short_digest(&entry.base_digest),
            ]);
        }
        for line in render_table(&rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// `build 0190abcd: passed, 7 findings (1 critical, 2 high, 3 medium, 1 low, 0 other), 4 fixable`.
pub fn findings_summary_line(findings: &FindingsSummary, style: Style) -> String {
    format!(
        "build {}: {}, {} findings ({} critical, {} high, {} medium, {} low, {} other), {} fixable",
        short_build_id(&findings.build_id),
        style.status(if findings.passed { "passed" } else { "denied" }),
        findings.total,
        findings.critical,
        findings.high,
        findings.medium,
        findings.low,
        findings.other,
        findings.fixable
    )
}

fn sources_json(sources: &[SourceCommit]) -> Value {
    sources
        .iter()
        .map(|source| json!({"url": source.url, "ref_name": source.ref_name, "commit": source.commit}))
        .collect()
}

fn package_json(package: &PackageVersion) -> Value {
    json!({
        "name": package.name,
        "version": package.version,
        "architecture": package.architecture,
        "platform": package.platform,
        "feed": package.feed,
    })
}

fn packages_json(packages: &PackagesSummary) -> Value {
    json!({
        "count": packages.count,
        "feeds": packages.feeds,
        "packages": packages.packages.iter().map(package_json).collect::<Vec<_>>(),
    })
}

fn findings_summary_json(findings: &FindingsSummary) -> Value {
    json!({
        "build_id": findings.build_id,
        "passed": findings.passed,
        "total": findings.total,
        "critical": findings.critical,
        "high": findings.high,
        "medium": findings.medium,
        "low": findings.low,
        "other": findings.other,
        "fixable": findings.fixable,
    })
}

fn history_json(entry: &PublishedDigest) -> Value {
    json!({
        "digest": entry.digest,
        "build_id": entry.build_id,
        "published_at_ms": entry.published_at_ms,
        "base_digest": entry.base_digest,
    })
}

/// One image with every field of the proto (`rebake image NAME -o json`): what
/// [`image_to_json`] gives plus history, packages, findings (`null` when absent), signature
/// status and pause state.
pub fn image_detail_to_json(image: &Image) -> Value {
    let mut value = image_to_json(image);
    if let Value::Object(map) = &mut value {
        map.insert("history".into(), image.history.iter().map(history_json).collect());
        map.insert(
            "packages".into(),
            image.packages.as_ref().map_or(Value::Null, packages_json),
        );
        map.insert(
            "findings".into(),
            image.findings.as_ref().map_or(Value::Null, findings_summary_json),
        );
        map.insert("signature_status".into(), image.signature_status.clone().into());
        map.insert("paused".into(), image.paused.into());
        map.insert("paused_reason".into(), image.paused_reason.clone().into());
    }
    value
}

// === graph ===

fn node_label(node: &GraphNode, style: Style) -> String {
    if node.kind == "upstream" {
        return format!("{} {}", node.name, style.dim("(upstream)"));
    }
    let mut label = format!(
        "{} {}",
        style.bold(&node.name),
        style.status(or_dash(&node.status).as_str())
    );
    if !node.published_digest.is_empty() {
        label.push(' ');
        label.push_str(&style.dim(&short_digest(&node.published_digest)));
    }
    if node.paused {
        label.push(' ');
        label.push_str(&style.status("paused"));
    }
    label
}

/// Children of every node in node order, and the roots (nodes nobody builds on… that is,
/// nodes with no parent edge: upstream bases and images on `scratch`).
fn graph_structure(graph: &Graph) -> (Vec<usize>, HashMap<usize, Vec<usize>>) {
    let index: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(position, node)| (node.name.as_str(), position))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut has_parent = HashSet::new();
    for edge in &graph.edges {
        if let (Some(&parent), Some(&child)) = (index.get(edge.parent.as_str()), index.get(edge.child.as_str())) {
            let list = children.entry(parent).or_default();
            if !list.contains(&child) {
                list.push(child);
            }
            has_parent.insert(child);
        }
    }
    for list in children.values_mut() {
        list.sort_unstable();
    }
    let roots = (0..graph.nodes.len())
        .filter(|node| !has_parent.contains(node))
        .collect();
    (roots, children)
}

/// The graph as a tree, parents above children, drawn with `├──`/`└──`; upstream bases (and
/// images on `scratch`) are the roots. Each image shows its status and short digest.
pub fn render_graph_tree(graph: &Graph, style: Style) -> String {
    let (roots, children) = graph_structure(graph);
    let mut out = String::new();
    fn walk(
        graph: &Graph,
        children: &HashMap<usize, Vec<usize>>,
        node: usize,
        prefix: &str,
        path: &mut Vec<usize>,
        style: Style,
        out: &mut String,
    ) {
        let kids = children.get(&node).map(Vec::as_slice).unwrap_or_default();
        for (position, &child) in kids.iter().enumerate() {
            let last = position + 1 == kids.len();
            let label = node_label(&graph.nodes[child], style);
            if path.contains(&child) {
                out.push_str(&format!(
                    "{prefix}{} {label} (cycle)\n",
                    if last { "└──" } else { "├──" }
                ));
                continue;
            }
            out.push_str(&format!("{prefix}{} {label}\n", if last { "└──" } else { "├──" }));
            path.push(child);
            let next = format!("{prefix}{}", if last { "    " } else { "│   " });
            walk(graph, children, child, &next, path, style, out);
            path.pop();
        }
    }
    for root in roots {
        out.push_str(&node_label(&graph.nodes[root], style));
        out.push('\n');
        walk(graph, &children, root, "", &mut vec![root], style, &mut out);
    }
    if graph.nodes.is_empty() {
        out.push_str("(empty graph)\n");
    }
    out
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The graph as Graphviz `dot` text: upstream bases as grey boxes, images coloured by status,
/// edges from base to the image built on it.
pub fn render_graph_dot(graph: &Graph) -> String {
    let mut out = String::from(
        "digraph rebake {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n",
    );
    for node in &graph.nodes {
        let (label, fill) = if node.kind == "upstream" {
            (format!("{}\\n(upstream)", dot_escape(&node.name)), "lightgrey")
        } else {
            let mut label = format!("{}\\n{}", dot_escape(&node.name), dot_escape(&or_dash(&node.status)));
            if !node.published_digest.is_empty() {
                label.push_str(&format!("\\n{}", short_digest(&node.published_digest)));
            }
            if node.paused {
                label.push_str("\\npaused");
            }
            let fill = match node.status.as_str() {
                "published" => "palegreen",
                "failed" => "lightcoral",
                "building" => "lightyellow",
                "waiting" => "khaki",
                _ => "white",
            };
            (label, fill)
        };
        out.push_str(&format!(
            "  \"{}\" [label=\"{label}\", fillcolor={fill}];\n",
            dot_escape(&node.name)
        ));
    }
    for edge in &graph.edges {
        out.push_str(&format!(
            "  \"{}\" -> \"{}\";\n",
            dot_escape(&edge.parent),
            dot_escape(&edge.child)
        ));
    }
    out.push_str("}\n");
    out
}

fn mermaid_escape(text: &str) -> String {
    text.replace('"', "#quot;")
}

/// The graph as a Mermaid `flowchart TD`: nodes get ids `n0`, `n1`… (names carry `/`, `:`
/// and `@`, which Mermaid ids cannot), labels say name, status and short digest; a class per
/// status colours them.
pub fn render_graph_mermaid(graph: &Graph) -> String {
    let mut out = String::from("flowchart TD\n");
    let ids: HashMap<&str, String> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(position, node)| (node.name.as_str(), format!("n{position}")))
        .collect();
    for node in &graph.nodes {
        let id = &ids[node.name.as_str()];
        if node.kind == "upstream" {
            out.push_str(&format!("  {id}[(\"{}<br/>upstream\")]\n", mermaid_escape(&node.name)));
        } else {
            let mut label = format!(
                "{}<br/>{}",
                mermaid_escape(&node.name),
                mermaid_escape(&or_dash(&node.status))
            );
            if !node.published_digest.is_empty() {
                label.push_str(&format!("<br/>{}", short_digest(&node.published_digest)));
            }
            if node.paused {
                label.push_str("<br/>paused");
            }
            out.push_str(&format!("  {id}[\"{label}\"]\n"));
        }
    }
    for edge in &graph.edges {
        if let (Some(parent), Some(child)) = (ids.get(edge.parent.as_str()), ids.get(edge.child.as_str())) {
            out.push_str(&format!("  {parent} --> {child}\n"));
        }
    }
    let mut classes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in &graph.nodes {
        let class = match (node.kind.as_str(), node.status.as_str()) {
            ("upstream", _) => "upstream",
            (_, "published") => "published",
            (_, "failed") => "failed",
            (_, "building") => "building",
            (_, "waiting") => "waiting",
            _ => continue,
        };
        classes.entry(class).or_default().push(&ids[node.name.as_str()]);
    }
    for (class, fill) in [
        ("building", "#ffffcc"),
        ("failed", "#f4cccc"),
        ("published", "#d9ead3"),
        ("upstream", "#eeeeee"),
        ("waiting", "#fff2cc"),
    ] {
        if let Some(members) = classes.get(class) {
            out.push_str(&format!("  classDef {class} fill:{fill}\n"));
            out.push_str(&format!("  class {} {class}\n", members.join(",")));
        }
    }
    out
}

/// The graph as JSON with the proto's field names.
pub fn graph_to_json(graph: &Graph) -> Value {
    json!({
        "nodes": graph.nodes.iter().map(|node| json!({
            "name": node.name,
            "kind": node.kind,
            "status": node.status,
            "published_digest": node.published_digest,
            "paused": node.paused,
        })).collect::<Vec<_>>(),
        "edges": graph.edges.iter().map(|edge| json!({"parent": edge.parent, "child": edge.child})).collect::<Vec<_>>(),
    })
}

// === builds ===

/// `BUILD IMAGE STATUS REQUESTED DURATION DIGEST REASON`, one build a line.
pub fn render_builds_table(builds: &[Build], style: Style) -> String {
    let mut rows = vec![
        ["BUILD", "IMAGE", "STATUS", "REQUESTED", "DURATION", "DIGEST", "REASON"]
            .map(str::to_string)
            .to_vec(),
    ];
    for build in builds {
        let took = if build.finished_at_ms > 0 && build.requested_at_ms > 0 {
            duration(build.finished_at_ms - build.requested_at_ms)
        } else {
            "-".to_string()
        };
        rows.push(vec![
            build.build_id.clone(),
            or_dash(&build.image),
            build.status.clone(),
            datetime(build.requested_at_ms),
            took,
            short_digest(&build.digest),
            truncate(&one_line(&build.reason), 80),
        ]);
    }
    let status: Box<dyn Fn(&str) -> String> = Box::new(move |cell| style.status(cell));
    colored_table(
        &rows,
        &[None, None, style.color.then_some(status), None, None, None, None],
    )
}

/// A build with the proto's field names.
pub fn build_to_json(build: &Build) -> Value {
    json!({
        "build_id": build.build_id,
        "image": build.image,
        "status": build.status,
        "inputs_hash": build.inputs_hash,
        "digest": build.digest,
        "reason": build.reason,
        "requested_at_ms": build.requested_at_ms,
        "finished_at_ms": build.finished_at_ms,
        "causes": build.causes,
    })
}

fn stage_json(stage: &Stage) -> Value {
    json!({
        "name": stage.name,
        "started_at_ms": stage.started_at_ms,
        "finished_at_ms": stage.finished_at_ms,
        "duration_ms": stage.duration_ms,
        "ok": stage.ok,
        "summary": stage.summary,
    })
}

/// `rebake build ID -o json`: every field of the proto.
pub fn build_detail_to_json(detail: &BuildDetail) -> Value {
    json!({
        "build": detail.build.as_ref().map_or(Value::Null, build_to_json),
        "image": detail.image,
        "stages": detail.stages.iter().map(stage_json).collect::<Vec<_>>(),
        "logs_excerpt": detail.logs_excerpt,
        "failure_stage": detail.failure_stage,
        "failure_reason": detail.failure_reason,
        "base_digest": detail.base_digest,
        "sources": sources_json(&detail.sources),
        "packages": detail.packages.iter().map(package_json).collect::<Vec<_>>(),
        "causes": detail.causes.iter().map(|cause| json!({
            "kind": cause.kind,
            "description": cause.description,
            "event_id": cause.event_id,
            "at_ms": cause.at_ms,
        })).collect::<Vec<_>>(),
        "size_bytes": detail.size_bytes,
        "file_count": detail.file_count,
    })
}

fn bytes(size: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = size.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `rebake build ID`: header, causes, stages with durations, failure and log excerpt.
pub fn render_build_detail(detail: &BuildDetail, style: Style) -> String {
    let build = detail.build.clone().unwrap_or_default();
    let image = if detail.image.is_empty() {
        build.image.clone()
    } else {
        detail.image.clone()
    };
    let mut out = String::new();
    let mut field = |label: &str, value: String| out.push_str(&format!("{:<14}{}\n", format!("{label}:"), value));
    field("Build", style.bold(&build.build_id));
    field("Image", or_dash(&image));
    field("Status", style.status(&build.status));
    field("Requested", datetime(build.requested_at_ms));
    field(
        "Finished",
        if build.finished_at_ms > 0 {
            format!(
                "{} (took {})",
                datetime(build.finished_at_ms),
                duration(build.finished_at_ms - build.requested_at_ms)
            )
        } else {
            "-".into()
        },
    );
    field("Digest", or_dash(&build.digest));
    field("Base digest", or_dash(&detail.base_digest));
    field("Inputs hash", or_dash(&build.inputs_hash));
    if detail.size_bytes > 0 || detail.file_count > 0 {
        field(
            "Size",
            format!("{} in {} files", bytes(detail.size_bytes), detail.file_count),
        );
    }
    if !detail.packages.is_empty() {
        field("Packages", detail.packages.len().to_string());
    }
    if !detail.causes.is_empty() {
        out.push_str(&format!("\n{}\n", style.bold("Causes")));
        for cause in &detail.causes {
            out.push_str(&format!(
                "  {}  {}: {}\n",
                datetime(cause.at_ms),
                cause.kind,
                one_line(&cause.description)
            ));
        }
    } else if !build.causes.is_empty() {
        out.push_str(&format!("\n{}\n", style.bold("Causes")));
        for cause in &build.causes {
            out.push_str(&format!("  {}\n", one_line(cause)));
        }
    }
    if !detail.sources.is_empty() {
        out.push_str(&format!("\n{}\n", style.bold("Sources")));
        for source in &detail.sources {
            out.push_str(&format!(
                "  {} {} @ {}\n",
                source.url,
                source.ref_name,
                or_dash(&source.commit)
            ));
        }
    }
    out.push_str(&format!("\n{}\n", style.bold("Stages")));
    if detail.stages.is_empty() {
        out.push_str("  -\n");
    } else {
        let mut rows = vec![
            ["STAGE", "RESULT", "STARTED", "DURATION", "SUMMARY"]
                .map(str::to_string)
                .to_vec(),
        ];
        for stage in &detail.stages {
            let took = if stage.duration_ms > 0 || stage.finished_at_ms > 0 {
                duration(if stage.duration_ms > 0 {
                    stage.duration_ms
                } else {
                    stage.finished_at_ms - stage.started_at_ms
                })
            } else {
                "-".into()
            };
            rows.push(vec![
                stage.name.clone(),
                if stage.ok { "ok".into() } else { "failed".into() },
                datetime(stage.started_at_ms),
                took,
                truncate(&one_line(&stage.summary), 100),
            ]);
        }
        let result: Box<dyn Fn(&str) -> String> = Box::new(move |cell| style.status(cell));
        for line in colored_table(&rows, &[None, style.color.then_some(result)]).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if !detail.failure_stage.is_empty() || !detail.failure_reason.is_empty() {
        out.push_str(&format!(
            "\n{} in stage {}: {}\n",
            style.status("failed"),
            or_dash(&detail.failure_stage),
            detail.failure_reason.trim()
        ));
    } else if build.status == "failed" && !build.reason.is_empty() {
        out.push_str(&format!("\n{}: {}\n", style.status("failed"), build.reason.trim()));
    }
    if !detail.logs_excerpt.trim().is_empty() {
        out.push_str(&format!("\n{}\n", style.bold("Log excerpt")));
        for line in detail.logs_excerpt.trim_end().lines() {
            out.push_str(&format!("  {}\n", style.dim(line)));
        }
    }
    out
}

// === why ===

/// `rebake why`: the chain from the build back to the upstream event, one step a line,
/// indented by depth, with timestamps in a left column.
///
/// ```text
/// 2026-12-03 13:06:30  build app 0190abcd published sha256:0123456789ab: …
/// 2026-12-03 13:06:10    └─ build base 0190aaaa published …: …
/// 2026-12-03 13:06:00      └─ upstream: registry tag r/debian:12 -> sha256:…
/// ```
pub fn render_why(why: &WhyResponse, style: Style) -> String {
    let mut out = String::new();
    if why.chain.is_empty() {
        out.push_str(&format!(
            "build {} of {}: no recorded cause\n",
            or_dash(&why.build_id),
            or_dash(&why.image)
        ));
        return out;
    }
    for step in &why.chain {
        let depth = usize::try_from(step.depth.max(0)).unwrap_or(0);
        let indent = if depth == 0 {
            String::new()
        } else {
            format!("{}└─ ", "  ".repeat(depth))
        };
        let what = match step.kind.as_str() {
            "build" => {
                let mut what = format!("build {} {}", style.bold(&step.image), short_build_id(&step.build_id));
                if !step.digest.is_empty() {
                    what.push_str(&format!(" → {}", short_digest(&step.digest)));
                }
                what
            }
            "upstream" => style.status("upstream").replace("upstream", "upstream change"),
            "operator" => "operator".to_string(),
            other => other.to_string(),
        };
        let description = one_line(&step.description);
        let line = if description.is_empty() {
            what
        } else {
            format!("{what}: {description}")
        };
        out.push_str(&format!("{:<19}  {indent}{line}\n", datetime(step.at_ms)));
    }
    out
}

/// The Why answer with the proto's field names.
pub fn why_to_json(why: &WhyResponse) -> Value {
    json!({
        "build_id": why.build_id,
        "image": why.image,
        "chain": why.chain.iter().map(|step| json!({
            "depth": step.depth,
            "kind": step.kind,
            "image": step.image,
            "build_id": step.build_id,
            "description": step.description,
            "at_ms": step.at_ms,
            "event_id": step.event_id,
            "digest": step.digest,
        })).collect::<Vec<_>>(),
    })
}

// === exposure ===

/// `IMAGE FINDING SEVERITY PACKAGE FIX AVAILABLE FIXED PUBLISHED EXPOSURE OPEN`.
pub fn render_exposure_table(exposure: &Exposure, style: Style) -> String {
    if exposure.entries.is_empty() {
        return "no exposure: no published image has, or had, a finding with a fixed version \
                (findings come from the advisory sources in scanner.advisories)\n"
            .to_string();
    }
    let mut rows = vec![
        [
            "IMAGE",
            "FINDING",
            "SEVERITY",
            "PACKAGE",
            "FIX AVAILABLE",
            "FIXED PUBLISHED",
            "EXPOSURE",
            "OPEN",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for entry in &exposure.entries {
        rows.push(vec![
            entry.image.clone(),
            entry.finding_id.clone(),
            or_dash(&entry.severity),
            or_dash(&entry.package),
            datetime(entry.fix_available_at_ms),
            datetime(entry.fixed_published_at_ms),
            duration(entry.exposure_ms),
            if entry.open { "open".into() } else { "fixed".into() },
        ]);
    }
    let severity: Box<dyn Fn(&str) -> String> = Box::new(move |cell| style.status(cell));
    let open: Box<dyn Fn(&str) -> String> = Box::new(move |cell| style.status(cell));
    colored_table(
        &rows,
        &[
            None,
            None,
            style.color.then_some(severity),
            None,
            None,
            None,
            None,
            style.color.then_some(open),
        ],
    )
}

fn exposure_entry_json(entry: &ExposureEntry) -> Value {
    json!({
        "image": entry.image,
        "finding_id": entry.finding_id,
        "package": entry.package,
        "severity": entry.severity,
        "fixed_version": entry.fixed_version,
        "fix_available_at_ms": entry.fix_available_at_ms,
        "fixed_published_at_ms": entry.fixed_published_at_ms,
        "fixed_digest": entry.fixed_digest,
        "exposure_ms": entry.exposure_ms,
        "open": entry.open,
    })
}

/// The exposure entries as a JSON array.
pub fn exposure_to_json(exposure: &Exposure) -> Value {
    exposure.entries.iter().map(exposure_entry_json).collect()
}

// === trigger --wait ===

/// Where one build of a cascade is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeBuild {
    /// Build id (empty until known).
    pub build_id: String,
    /// Image it builds.
    pub image: String,
    /// `requested`, `built`, `scanned`, `published`, `failed`.
    pub status: String,
    /// When it was requested (Unix ms, from the event).
    pub requested_at_ms: i64,
    /// When it last moved.
    pub updated_at_ms: i64,
    /// Summary of the last event about it.
    pub summary: String,
}

impl CascadeBuild {
    /// Whether the build is done (published, failed or skipped).
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "published" | "failed" | "skipped")
    }
}

/// What `rebake trigger --wait` knows of the cascade it follows: the builds seen, in the
/// order they were requested, updated from `WatchEvents`.
#[derive(Debug, Clone, Default)]
pub struct Cascade {
    builds: Vec<CascadeBuild>,
    upstream: Vec<String>,
    /// Only events about these images count (empty = all).
    scope: HashSet<String>,
}

impl Cascade {
    /// A cascade over `scope` (the triggered image and everything built on it; empty = every
    /// image).
    pub fn new(scope: impl IntoIterator<Item = String>) -> Self {
        Self {
            scope: scope.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Takes one event; returns whether it was about the cascade.
    pub fn apply(&mut self, event: &Event) -> bool {
        if event.kind == "upstream.changed" {
            self.upstream.push(one_line(&event.summary));
            return true;
        }
        if event.image.is_empty() || (!self.scope.is_empty() && !self.scope.contains(&event.image)) {
            return false;
        }
        let status = match event.kind.as_str() {
            "build.requested" => "requested",
            "build.done" => "built",
            "scan.done" => "scanned",
            "image.published" => "published",
            "build.failed" => "failed",
            _ => return false,
        };
        let position = self.builds.iter().position(|build| {
            if event.build_id.is_empty() {
                build.image == event.image && !build.finished()
            } else {
                build.build_id == event.build_id
                    || (build.build_id.is_empty() && build.image == event.image && !build.finished())
            }
        });
        let build = match position {
            Some(position) => &mut self.builds[position],
            None => {
                self.builds.push(CascadeBuild {
                    build_id: event.build_id.clone(),
                    image: event.image.clone(),
                    status: String::new(),
                    requested_at_ms: event.time_ms,
                    updated_at_ms: event.time_ms,
                    summary: String::new(),
                });
                self.builds.last_mut().expect("just pushed")
            }
        };
        if build.build_id.is_empty() {
            build.build_id = event.build_id.clone();
        }
        // Never move back (events of one build may interleave with redeliveries).
        let rank = |status: &str| match status {
            "requested" => 1,
            "built" => 2,
            "scanned" => 3,
            "published" | "failed" | "skipped" => 4,
            _ => 0,
        };
        if rank(status) >= rank(&build.status) {
            build.status = status.to_string();
            build.updated_at_ms = event.time_ms;
            build.summary = one_line(&event.summary);
        }
        true
    }

    /// The builds seen, in request order.
    pub fn builds(&self) -> &[CascadeBuild] {
        &self.builds
    }

    /// Builds not finished yet.
    pub fn in_flight(&self) -> usize {
        self.builds.iter().filter(|build| !build.finished()).count()
    }

    /// Builds that failed.
    pub fn failed(&self) -> usize {
        self.builds.iter().filter(|build| build.status == "failed").count()
    }

    /// Whether at least one build was seen and all of them finished.
    pub fn all_finished(&self) -> bool {
        !self.builds.is_empty() && self.in_flight() == 0
    }

    /// The live display: one line per build (`IMAGE STATUS BUILD ELAPSED LAST`) under a
    /// header counting them.
    pub fn render(&self, now_ms: i64, style: Style) -> String {
        let mut out = format!(
            "{} builds: {} in flight, {} published, {} failed\n",
            self.builds.len(),
            self.in_flight(),
            self.builds.iter().filter(|build| build.status == "published").count(),
            self.failed()
        );
        if self.builds.is_empty() {
            out.push_str("  waiting for the first build…\n");
            return out;
        }
        let mut rows = vec![
            ["IMAGE", "STATUS", "BUILD", "ELAPSED", "LAST"]
                .map(str::to_string)
                .to_vec(),
        ];
        for build in &self.builds {
            let end = if build.finished() { build.updated_at_ms } else { now_ms };
            rows.push(vec![
                build.image.clone(),
                build.status.clone(),
                short_build_id(&build.build_id),
                duration(end - build.requested_at_ms),
                truncate(&build.summary, 80),
            ]);
        }
        let status: Box<dyn Fn(&str) -> String> = Box::new(move |cell| style.status(cell));
        for line in colored_table(&rows, &[None, style.color.then_some(status)]).lines() {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }

    /// The final summary: the same table, plus how it ended.
    pub fn summary(&self, outcome: &str, now_ms: i64, style: Style) -> String {
        let mut out = self.render(now_ms, style);
        out.push_str(&format!("{outcome}\n"));
        out
    }

    /// The cascade as JSON (`rebake trigger --wait -o json`'s last line).
    pub fn to_json(&self, outcome: &str) -> Value {
        json!({
            "outcome": outcome,
            "in_flight": self.in_flight(),
            "failed": self.failed(),
            "upstream": self.upstream,
            "builds": self.builds.iter().map(|build| json!({
                "build_id": build.build_id,
                "image": build.image,
                "status": build.status,
                "requested_at_ms": build.requested_at_ms,
                "updated_at_ms": build.updated_at_ms,
                "summary": build.summary,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Everything built on `image` in `graph`, and `image` itself: the scope of a cascade.
pub fn subgraph_images(graph: &Graph, image: &str) -> Vec<String> {
    let mut out = vec![image.to_string()];
    let mut position = 0;
    while position < out.len() {
        let parent = out[position].clone();
        for edge in &graph.edges {
            if edge.parent == parent && !out.contains(&edge.child) {
                out.push(edge.child.clone());
            }
        }
        position += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use rebake_proto::control::v1::{Cause, GraphEdge, WhyStep};

    use super::*;

    const NOW: i64 = 1_796_303_190_123; // 2026-12-03 13:06:30.123

    fn digest(seed: &str) -> String {
        format!("sha256:{}", seed.repeat(64 / seed.len()))
    }

    fn node(name: &str, kind: &str, status: &str, digest: &str) -> GraphNode {
        GraphNode {
            name: name.into(),
            kind: kind.into(),
            status: status.into(),
            published_digest: digest.into(),
            paused: false,
        }
    }

    fn edge(parent: &str, child: &str) -> GraphEdge {
        GraphEdge {
            parent: parent.into(),
            child: child.into(),
        }
    }

    fn sample_graph() -> Graph {
        Graph {
            nodes: vec![
                node("docker.io/library/debian:12", "upstream", "", ""),
                node("base", "image", "published", &digest("ab")),
                node("apps/api", "image", "failed", ""),
                node("apps/web", "image", "published", &digest("cd")),
                node("apps/web-debug", "image", "waiting", ""),
                node("tools", "image", "new", ""),
            ],
            edges: vec![
                edge("docker.io/library/debian:12", "base"),
                edge("base", "apps/api"),
                edge("base", "apps/web"),
                edge("apps/web", "apps/web-debug"),
            ],
        }
    }

    fn assert_no_ansi(text: &str) {
        assert!(!text.contains('\x1b'), "ANSI codes in {text:?}");
    }

    #[test]
    fn style_decision() {
        assert!(Style::decide(true, None).color);
        assert!(Style::decide(true, Some(std::ffi::OsStr::new(""))).color);
        assert!(!Style::decide(true, Some(std::ffi::OsStr::new("1"))).color);
        assert!(!Style::decide(false, None).color);
        assert_eq!(Style::PLAIN.status("failed"), "failed");
        assert_eq!(Style { color: true }.status("failed"), "\x1b[31mfailed\x1b[0m");
        assert_eq!(Style { color: true }.status("whatever"), "whatever");
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(datetime(NOW), "2026-12-03 13:06:30");
        assert_eq!(datetime(0), "-");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(2 * 3_600_000 + 10 * 60_000), "2h10m");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
        assert_eq!(duration(-5), "0ms");
        assert!(looks_like_build_id("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        assert!(!looks_like_build_id("apps/web"));
        assert!(!looks_like_build_id("my-app"));
        assert!(!looks_like_build_id("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5"));
        // The random tail of a UUIDv7, not its shared timestamp head.
        assert_eq!(short_build_id("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), "2e3f4a5b");
        assert!(looks_like_short_build_id("2e3f4a5b"));
        assert!(!looks_like_short_build_id("apps/web"));
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn graph_tree() {
        let tree = render_graph_tree(&sample_graph(), Style::PLAIN);
        let expected = "\
docker.io/library/debian:12 (upstream)
└── base published sha256:abababababab
    ├── apps/api failed
    └── apps/web published sha256:cdcdcdcdcdcd
        └── apps/web-debug waiting
tools new
";
        assert_eq!(tree, expected);
        let colored = render_graph_tree(&sample_graph(), Style { color: true });
        assert!(colored.contains("\x1b[31mfailed\x1b[0m"));
        assert_eq!(render_graph_tree(&Graph::default(), Style::PLAIN), "(empty graph)\n");
    }

    #[test]
    fn graph_tree_survives_cycles_and_unknown_edges() {
        let graph = Graph {
            nodes: vec![
                node("a", "image", "new", ""),
                node("b", "image", "new", ""),
                node("c", "image", "new", ""),
            ],
            edges: vec![edge("c", "a"), edge("a", "b"), edge("b", "a"), edge("ghost", "c")],
        };
        // Every node has a parent edge: no roots, nothing printed but no hang either.
        let tree = render_graph_tree(&graph, Style::PLAIN);
        assert!(!tree.contains("(empty graph)"));
        let graph = Graph {
            nodes: vec![
                node("r", "image", "new", ""),
                node("a", "image", "new", ""),
                node("b", "image", "new", ""),
            ],
            edges: vec![edge("r", "a"), edge("a", "b"), edge("b", "a")],
        };
        let tree = render_graph_tree(&graph, Style::PLAIN);
        assert_eq!(tree, "r new\n└── a new\n    └── b new\n        └── a new (cycle)\n");
    }

    #[test]
    fn graph_dot() {
        let dot = render_graph_dot(&sample_graph());
        assert!(dot.starts_with("digraph rebake {\n"));
        assert!(dot.ends_with("}\n"));
        assert!(dot.contains(
            "  \"docker.io/library/debian:12\" [label=\"docker.io/library/debian:12\\n(upstream)\", fillcolor=lightgrey];\n"
        ));
        assert!(dot.contains("  \"base\" [label=\"base\\npublished\\nsha256:abababababab\", fillcolor=palegreen];\n"));
        assert!(dot.contains("  \"apps/api\" [label=\"apps/api\\nfailed\", fillcolor=lightcoral];\n"));
        assert!(dot.contains("  \"docker.io/library/debian:12\" -> \"base\";\n"));
        assert!(dot.contains("  \"apps/web\" -> \"apps/web-debug\";\n"));
        assert_eq!(dot.matches("->").count(), 4);
        assert_eq!(dot_escape("a\"b"), "a\\\"b");
        assert_no_ansi(&dot);
    }

    #[test]
    fn graph_mermaid() {
        let mermaid = render_graph_mermaid(&sample_graph());
        let expected = "\
flowchart TD
  n0[(\"docker.io/library/debian:12<br/>upstream\")]
  n1[\"base<br/>published<br/>sha256:abababababab\"]
  n2[\"apps/api<br/>failed\"]
  n3[\"apps/web<br/>published<br/>sha256:cdcdcdcdcdcd\"]
  n4[\"apps/web-debug<br/>waiting\"]
  n5[\"tools<br/>new\"]
  n0 --> n1
  n1 --> n2
  n1 --> n3
  n3 --> n4
  classDef failed fill:#f4cccc
  class n2 failed
  classDef published fill:#d9ead3
  class n1,n3 published
  classDef upstream fill:#eeeeee
  class n0 upstream
  classDef waiting fill:#fff2cc
  class n4 waiting
";
        assert_eq!(mermaid, expected);
    }

    #[test]
    fn graph_json_and_scope() {
        let value = graph_to_json(&sample_graph());
        assert_eq!(value["nodes"][0]["kind"], "upstream");
        assert_eq!(value["nodes"][1]["published_digest"], digest("ab"));
        assert_eq!(
            value["edges"][3],
            json!({"parent": "apps/web", "child": "apps/web-debug"})
        );
        assert_eq!(
            subgraph_images(&sample_graph(), "base"),
            ["base", "apps/api", "apps/web", "apps/web-debug"]
        );
        assert_eq!(subgraph_images(&sample_graph(), "tools"), ["tools"]);
    }

    fn sample_image() -> Image {
        Image {
            name: "apps/web".into(),
            status: "published".into(),
            base_ref: "base".into(),
            repository: "registry.local/apps/web".into(),
            tags: vec!["latest".into(), "1".into()],
            published_digest: digest("cd"),
            base_digest: digest("ab"),
            sources: vec![SourceCommit {
                url: "https://git.local/web.git".into(),
                ref_name: "main".into(),
                commit: "4f2a9c1".into(),
            }],
            published_inputs_hash: "h1".into(),
            desired_inputs_hash: "h1".into(),
            last_build: Some(Build {
                build_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                status: "published".into(),
                ..Default::default()
            }),
            parent: "base".into(),
            children: vec!["apps/web-debug".into()],
            published_at_ms: NOW - 3_600_000,
            history: vec![
                PublishedDigest {
                    digest: digest("cd"),
                    build_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                    published_at_ms: NOW - 3_600_000,
                    base_digest: digest("ab"),
                },
                PublishedDigest {
                    digest: digest("ef"),
                    build_id: "01939999-c3d4-7e5f-8a9b-0c1d99999999".into(),
                    published_at_ms: NOW - 86_400_000,
                    base_digest: digest("12"),
                },
            ],
            packages: Some(PackagesSummary {
                count: 2,
                feeds: vec!["debian-bookworm".into()],
                packages: vec![PackageVersion {
                    name: "openssl".into(),
                    version: "3.0.15-1".into(),
                    architecture: "amd64".into(),
                    platform: "linux/amd64".into(),
                    feed: "debian-bookworm".into(),
                }],
            }),
            findings: Some(FindingsSummary {
                build_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                passed: true,
                total: 3,
                critical: 0,
                high: 1,
                medium: 2,
                low: 0,
                other: 0,
                fixable: 1,
            }),
            signature_status: "signed".into(),
            paused: true,
            paused_reason: "freeze".into(),
            ..Default::default()
        }
    }

    #[test]
    fn image_detail_text() {
        let text = render_image_detail(&sample_image(), NOW, Style::PLAIN);
        assert_no_ansi(&text);
        for expected in [
            "Image:            apps/web\n",
            "Status:           published\n",
            "Paused:           paused (freeze)\n",
            &format!("Published digest: {}\n", digest("cd")),
            "Published at:     2026-12-03 12:06:30 (1h ago)\n",
            "Signature:        signed\n",
            &format!("Base digest:      {}\n", digest("ab")),
            "  https://git.local/web.git main @ 4f2a9c1\n",
            "  2 packages from debian-bookworm\n",
            "  openssl 3.0.15-1 (linux/amd64)\n",
            "  build 2e3f4a5b: passed, 3 findings (0 critical, 1 high, 2 medium, 0 low, 0 other), 1 fixable\n",
            "  PUBLISHED            DIGEST               BUILD     BASE DIGEST\n",
            "  2026-12-03 12:06:30  sha256:cdcdcdcdcdcd  2e3f4a5b  sha256:abababababab\n",
            "  2026-12-02 13:06:30  sha256:efefefefefef  99999999  sha256:121212121212\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let colored = render_image_detail(&sample_image(), NOW, Style { color: true });
        assert!(colored.contains("\x1b[32mpublished\x1b[0m"));
        // An empty image still renders.
        let empty = render_image_detail(&Image::default(), NOW, Style::PLAIN);
        assert!(empty.contains("Published digest: -\n"));
        assert!(empty.contains("Last build:       -\n"));
    }

    #[test]
    fn image_detail_json_shape() {
        let value = image_detail_to_json(&sample_image());
        assert_eq!(value["name"], "apps/web");
        assert_eq!(value["paused"], true);
        assert_eq!(value["paused_reason"], "freeze");
        assert_eq!(value["signature_status"], "signed");
        assert_eq!(value["history"][1]["digest"], digest("ef"));
        assert_eq!(value["packages"]["count"], 2);
        assert_eq!(value["packages"]["packages"][0]["platform"], "linux/amd64");
        assert_eq!(value["findings"]["high"], 1);
        assert_eq!(value["sources"][0]["commit"], "4f2a9c1");
        assert_eq!(value["last_build"]["status"], "published");
        let empty = image_detail_to_json(&Image::default());
        assert!(empty["packages"].is_null());
        assert!(empty["findings"].is_null());
        assert_no_ansi(&serde_json::to_string(&value).unwrap());
    }

    fn sample_build(id: &str, image: &str, status: &str) -> Build {
        Build {
            build_id: id.into(),
            status: status.into(),
            image: image.into(),
            requested_at_ms: NOW - 90_000,
            finished_at_ms: NOW,
            digest: digest("cd"),
            reason: if status == "failed" {
                "exit code 2\nin RUN make".into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn builds_table_and_json() {
        let builds = vec![
            sample_build("0193a1b2-0000-7000-8000-000000000001", "apps/web", "published"),
            sample_build("0193a1b2-0000-7000-8000-000000000002", "base", "failed"),
        ];
        let table = render_builds_table(&builds, Style::PLAIN);
        let expected = "\
BUILD                                 IMAGE     STATUS     REQUESTED            DURATION  DIGEST               REASON
0193a1b2-0000-7000-8000-000000000001  apps/web  published  2026-12-03 13:05:00  1m30s     sha256:cdcdcdcdcdcd
0193a1b2-0000-7000-8000-000000000002  base      failed     2026-12-03 13:05:00  1m30s     sha256:cdcdcdcdcdcd  exit code 2 in RUN make
";
        assert_eq!(table, expected);
        let colored = render_builds_table(&builds, Style { color: true });
        assert!(colored.contains("\x1b[32mpublished\x1b[0m  2026-12-03"));
        // Colours do not shift columns.
        let strip = colored
            .replace("\x1b[32m", "")
            .replace("\x1b[31m", "")
            .replace("\x1b[0m", "");
        assert_eq!(strip, expected);
        let value = build_to_json(&builds[1]);
        assert_eq!(value["status"], "failed");
        assert_eq!(value["image"], "base");
        assert_eq!(value["finished_at_ms"], NOW);
    }

    fn sample_detail() -> BuildDetail {
        BuildDetail {
            build: Some(sample_build("0193a1b2-0000-7000-8000-000000000002", "base", "failed")),
            image: "base".into(),
            stages: vec![
                Stage {
                    name: "build".into(),
                    started_at_ms: NOW - 90_000,
                    finished_at_ms: NOW - 30_000,
                    duration_ms: 60_000,
                    ok: true,
                    summary: "12 layers".into(),
                },
                Stage {
                    name: "scan".into(),
                    started_at_ms: NOW - 30_000,
                    finished_at_ms: NOW,
                    duration_ms: 30_000,
                    ok: false,
                    summary: "policy denied".into(),
                },
            ],
            logs_excerpt: "step 1\nstep 2\n".into(),
            failure_stage: "scan".into(),
            failure_reason: "critical finding CVE-2026-1".into(),
            base_digest: digest("ab"),
            causes: vec![Cause {
                kind: "registry-tag".into(),
                description: "r/debian:12 -> sha256:x".into(),
                event_id: "e1".into(),
                at_ms: NOW - 100_000,
            }],
            size_bytes: 3 * 1024 * 1024,
            file_count: 42,
            ..Default::default()
        }
    }

    #[test]
    fn build_detail_text_and_json() {
        let text = render_build_detail(&sample_detail(), Style::PLAIN);
        assert_no_ansi(&text);
        for expected in [
            "Build:        0193a1b2-0000-7000-8000-000000000002\n",
            "Status:       failed\n",
            "Finished:     2026-12-03 13:06:30 (took 1m30s)\n",
            "Size:         3.0 MiB in 42 files\n",
            "  2026-12-03 13:04:50  registry-tag: r/debian:12 -> sha256:x\n",
            "  STAGE  RESULT  STARTED              DURATION  SUMMARY\n",
            "  build  ok      2026-12-03 13:05:00  1m00s     12 layers\n",
            "  scan   failed  2026-12-03 13:06:00  30.0s     policy denied\n",
            "failed in stage scan: critical finding CVE-2026-1\n",
            "  step 2\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let value = build_detail_to_json(&sample_detail());
        assert_eq!(value["build"]["build_id"], "0193a1b2-0000-7000-8000-000000000002");
        assert_eq!(value["stages"][1]["ok"], false);
        assert_eq!(value["stages"][0]["duration_ms"], 60_000);
        assert_eq!(value["failure_stage"], "scan");
        assert_eq!(value["causes"][0]["kind"], "registry-tag");
        assert_eq!(value["size_bytes"], 3 * 1024 * 1024);
        assert!(build_detail_to_json(&BuildDetail::default())["build"].is_null());
    }

    #[test]
    fn why_chain() {
        let why = WhyResponse {
            build_id: "0193a1b2-0000-7000-8000-000000000003".into(),
            image: "apps/web".into(),
            chain: vec![
                WhyStep {
                    depth: 0,
                    kind: "build".into(),
                    image: "apps/web".into(),
                    build_id: "0193a1b2-0000-7000-8000-000000000003".into(),
                    description: "parent base published".into(),
                    at_ms: NOW,
                    event_id: String::new(),
                    digest: digest("cd"),
                },
                WhyStep {
                    depth: 1,
                    kind: "build".into(),
                    image: "base".into(),
                    build_id: "0193a0ff-0000-7000-8000-000000000001".into(),
                    description: "base image changed".into(),
                    at_ms: NOW - 60_000,
                    event_id: "e2".into(),
                    digest: digest("ab"),
                },
                WhyStep {
                    depth: 2,
                    kind: "upstream".into(),
                    description: "registry tag r/debian:12 -> sha256:y".into(),
                    at_ms: NOW - 70_000,
                    event_id: "e1".into(),
                    ..Default::default()
                },
            ],
        };
        let expected = "\
2026-12-03 13:06:30  build apps/web 00000003 → sha256:cdcdcdcdcdcd: parent base published
2026-12-03 13:05:30    └─ build base 00000001 → sha256:abababababab: base image changed
2026-12-03 13:05:20      └─ upstream change: registry tag r/debian:12 -> sha256:y
";
        assert_eq!(render_why(&why, Style::PLAIN), expected);
        let value = why_to_json(&why);
        assert_eq!(value["chain"][2]["kind"], "upstream");
        assert_eq!(value["chain"][1]["depth"], 1);
        assert_eq!(value["chain"][0]["digest"], digest("cd"));
        assert_eq!(
            render_why(&WhyResponse::default(), Style::PLAIN),
            "build - of -: no recorded cause\n"
        );
    }

    #[test]
    fn exposure_table_and_json() {
        let exposure = Exposure {
            entries: vec![
                ExposureEntry {
                    image: "apps/web".into(),
                    finding_id: "CVE-2026-0001".into(),
                    package: "openssl".into(),
                    severity: "high".into(),
                    fixed_version: "3.0.16".into(),
                    fix_available_at_ms: NOW - 2 * 3_600_000,
                    fixed_published_at_ms: 0,
                    fixed_digest: String::new(),
                    exposure_ms: 2 * 3_600_000,
                    open: true,
                },
                ExposureEntry {
                    image: "base".into(),
                    finding_id: "DSA-5000-1".into(),
                    package: "zlib".into(),
                    severity: "medium".into(),
                    fixed_version: "1.3".into(),
                    fix_available_at_ms: NOW - 600_000,
                    fixed_published_at_ms: NOW - 300_000,
                    fixed_digest: digest("ab"),
                    exposure_ms: 300_000,
                    open: false,
                },
            ],
        };
        let expected = "\
IMAGE     FINDING        SEVERITY  PACKAGE  FIX AVAILABLE        FIXED PUBLISHED      EXPOSURE  OPEN
apps/web  CVE-2026-0001  high      openssl  2026-12-03 11:06:30  -                    2h00m     open
base      DSA-5000-1     medium    zlib     2026-12-03 12:56:30  2026-12-03 13:01:30  5m00s     fixed
";
        assert_eq!(render_exposure_table(&exposure, Style::PLAIN), expected);
        let colored = render_exposure_table(&exposure, Style { color: true });
        assert!(colored.contains("\x1b[31mhigh\x1b[0m"));
        let value = exposure_to_json(&exposure);
        assert_eq!(value[0]["open"], true);
        assert_eq!(value[1]["fixed_digest"], digest("ab"));
        assert_eq!(value.as_array().unwrap().len(), 2);
    }

    fn event(kind: &str, image: &str, build: &str, at: i64) -> Event {
        Event {
            kind: kind.into(),
            image: image.into(),
            build_id: build.into(),
            summary: format!("{kind} {image}"),
            time_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn cascade_progress() {
        let mut cascade = Cascade::new(subgraph_images(&sample_graph(), "base"));
        assert!(cascade.apply(&event("upstream.changed", "", "", NOW)));
        assert!(!cascade.all_finished());
        assert!(cascade.apply(&event("build.requested", "base", "b1", NOW)));
        assert!(
            !cascade.apply(&event("build.requested", "tools", "t1", NOW)),
            "out of scope"
        );
        assert!(cascade.apply(&event("build.done", "base", "b1", NOW + 1000)));
        assert!(cascade.apply(&event("scan.done", "base", "b1", NOW + 2000)));
        assert_eq!(cascade.in_flight(), 1);
        assert!(cascade.apply(&event("image.published", "base", "b1", NOW + 3000)));
        assert!(cascade.all_finished());
        assert!(cascade.apply(&event("build.requested", "apps/web", "w1", NOW + 4000)));
        assert!(cascade.apply(&event("build.requested", "apps/api", "a1", NOW + 4000)));
        assert!(cascade.apply(&event("build.failed", "apps/api", "a1", NOW + 5000)));
        // A late redelivered `build.done` does not move a build back.
        assert!(cascade.apply(&event("build.done", "base", "b1", NOW + 5000)));
        assert_eq!(cascade.builds()[0].status, "published");
        assert_eq!(cascade.in_flight(), 1);
        assert_eq!(cascade.failed(), 1);
        let text = cascade.render(NOW + 10_000, Style::PLAIN);
        let expected = "\
3 builds: 1 in flight, 1 published, 1 failed
  IMAGE     STATUS     BUILD  ELAPSED  LAST
  base      published  b1     3.0s     image.published base
  apps/web  requested  w1     6.0s     build.requested apps/web
  apps/api  failed     a1     1.0s     build.failed apps/api
";
        assert_eq!(text, expected);
        assert_no_ansi(&text);
        let value = cascade.to_json("settled");
        assert_eq!(value["outcome"], "settled");
        assert_eq!(value["builds"][2]["status"], "failed");
        assert_eq!(value["upstream"][0], "upstream.changed");
        assert!(cascade.summary("timed out", NOW, Style::PLAIN).ends_with("timed out\n"));
        assert_eq!(
            Cascade::new(Vec::new()).render(NOW, Style::PLAIN),
            "0 builds: 0 in flight, 0 published, 0 failed\n  waiting for the first build…\n"
        );
    }
}
