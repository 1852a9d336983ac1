//! Keeps `deploy/grafana/rebake.json` honest: every metric name its queries use is one a
//! Rebake process exposes, and every metric family a Rebake process exposes has a panel.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::Arc,
};

use rebake_events::{Envelope, Names, pb};
use rebake_ingress::{IngressSettings, SourceSettings, UpstreamSink};
use rebake_metrics::{ProcessMetrics, derive::EventMetrics, sample::SampledMetrics, series_names};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// Every identifier in a PromQL expression that starts with `rebake_`: maximal runs of
/// `[a-zA-Z0-9_:]` whose first characters are `rebake_`.
fn rebake_names(expr: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut run = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if is_name(c) {
            run.push(c);
            continue;
        }
        if run.starts_with("rebake_") {
            names.push(std::mem::take(&mut run));
        } else {
            run.clear();
        }
    }
    names
}

/// Every metric family the processes expose, with the series names each family defines (what
/// `series_names` gives for that family alone).
fn families(rendered: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families = BTreeMap::new();
    for line in rendered.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split_whitespace().next().expect("a family name").to_string();
            families.insert(family, series_names(line));
        }
    }
    families
}

/// The exposition of a process running every service: its own gauge, the central metrics and
/// the ingress' counters. prometheus-client leaves families without any series out of the
/// exposition, so every family gets at least one: the sampled gauges are set, and the ingress
/// counters are driven by real requests to a router sharing them.
async fn exposed() -> String {
    let metrics = ProcessMetrics::new();
    metrics.service_running("control");
    let events = EventMetrics::new();
    let sampled = SampledMetrics::new();
    let ingress = Arc::new(rebake_ingress::metrics::IngressMetrics::new());
    metrics.register_with(|registry| {
        events.register(registry);
        sampled.register(registry);
        ingress.register(registry);
    });
    sampled.set_queue_depths(&mut HashSet::new(), &[("REBAKE_BUILD".to_string(), 0)]);
    sampled.set_consumer_lags(
        &mut HashSet::new(),
        &[("REBAKE_BUILD".to_string(), "builders".to_string(), 0)],
    );
    sampled.set_images(&[], &BTreeMap::new());
    drive_ingress(ingress).await;
    metrics.render()
}

/// Accepts every event.
struct Sink(Names);

impl UpstreamSink for Sink {
    async fn publish(&self, _subject: String, _envelope: Envelope, _event: pb::UpstreamChanged) -> Result<(), String> {
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn names(&self) -> &Names {
        &self.0
    }
}

/// One request to a CloudEvents source, one of each outcome: rejected, unhandled, accepted.
async fn drive_ingress(metrics: Arc<rebake_ingress::metrics::IngressMetrics>) {
    let source = SourceSettings {
        name: "ci".to_string(),
        kind: serde_json::from_value(serde_json::json!("cloudevents")).expect("the cloudevents kind"),
        secret: b"s3cret".to_vec(),
        registry: None,
        resolve_via: None,
        header: None,
    };
    let settings = IngressSettings {
        sources: vec![source],
        metrics: Some(metrics),
        ..IngressSettings::default()
    };
    let sink = Arc::new(Sink(Names::new("rebake").expect("a valid prefix")));
    let shutdown = CancellationToken::new();
    let app = rebake_ingress::router(sink, settings, shutdown.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    let stop = shutdown.clone().cancelled_owned();
    let server = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await });

    let event = |kind: &str| {
        serde_json::json!({
            "specversion": "1.0",
            "id": kind,
            "source": "/dashboard-test",
            "type": kind,
            // Rebake's own signature tag: acknowledged and ignored (nothing to resolve).
            "data": { "repository": "team/app", "tag": format!("sha256-{}.sig", "a".repeat(64)) },
        })
        .to_string()
    };
    let unknown = event("com.example.unknown");
    let known = event("dev.rebake.registry.tag.changed");
    for (authorization, body, expected) in [
        ("Bearer wrong", known.as_str(), "401"),
        ("Bearer s3cret", unknown.as_str(), "202"),
        ("Bearer s3cret", known.as_str(), "200"),
    ] {
        let mut stream = TcpStream::connect(address).await.expect("connect to the router");
        let request = format!(
            "POST /v1/hooks/ci HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {authorization}\r\n\
             Content-Type: application/cloudevents+json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("receive");
        assert!(
            response.starts_with(&format!("HTTP/1.1 {expected}")),
            "expected {expected} for {body} with {authorization}: {response}"
        );
    }
    shutdown.cancel();
    server.await.expect("the server task").expect("the server");
}

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/rebake.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Every panel, rows and the panels nested in (collapsed) rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or("")
}

/// `(where, expr)` of every PromQL expression: panel targets, and query variables.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                found.push((format!("panel {:?}", title(panel)), expr.to_string()));
            }
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] != "query" {
            continue;
        }
        let query = &variable["query"];
        if let Some(expr) = query.as_str().or_else(|| query["query"].as_str()) {
            found.push((format!("variable {:?}", variable["name"]), expr.to_string()));
        }
    }
    found
}

#[test]
fn extraction_finds_rebake_names_only() {
    assert_eq!(
        rebake_names(r#"sum(rate(rebake_builds_total{result="failed"}[5m]))"#),
        vec!["rebake_builds_total"]
    );
    assert!(rebake_names("rate(foo[5m])").is_empty());
    assert_eq!(
        rebake_names("histogram_quantile(0.9, sum by (le) (rate(rebake_x_bucket[$window]))) / xrebake_y"),
        vec!["rebake_x_bucket"]
    );
    assert_eq!(rebake_names("rebake_a+rebake_b:c"), vec!["rebake_a", "rebake_b:c"]);
}

#[tokio::test]
async fn dashboard_uses_only_exposed_series() {
    let known = series_names(&exposed().await);
    let dashboard = dashboard();
    let expressions = expressions(&dashboard);
    assert!(!expressions.is_empty(), "the dashboard has no queries");
    for (place, expr) in &expressions {
        for name in rebake_names(expr) {
            assert!(
                known.contains(&name),
                "{place} uses {name}, which no Rebake process exposes (known: {known:?}); expr: {expr}"
            );
        }
    }
}

#[tokio::test]
async fn dashboard_uses_every_family() {
    let dashboard = dashboard();
    let used: BTreeSet<String> = expressions(&dashboard)
        .iter()
        .flat_map(|(_, expr)| rebake_names(expr))
        .collect();
    let families = families(&exposed().await);
    assert!(families.len() >= 13, "fewer families than documented: {families:?}");
    for (family, series) in &families {
        assert!(
            !series.is_disjoint(&used),
            "metric family {family} ({series:?}) has no panel in deploy/grafana/rebake.json"
        );
    }
}

#[test]
fn dashboard_is_well_formed() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "rebake");
    assert_eq!(dashboard["title"], "Rebake");
    let datasource = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|variable| variable["name"] == "DS_PROMETHEUS")
        .expect("a DS_PROMETHEUS variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");

    let panels = panels(&dashboard);
    assert!(!panels.is_empty(), "no panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = title(panel);
        assert!(!title.trim().is_empty(), "a panel has no title: {panel}");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no numeric id"));
        assert!(ids.insert(id), "panel {title:?} reuses id {id}");
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().map_or(0, Vec::len);
        assert!(targets > 0, "panel {title:?} has no targets");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(!expr.trim().is_empty(), "panel {title:?} has a target without expr");
        }
    }
}
