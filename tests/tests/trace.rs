//! One OpenTelemetry trace from the registry's webhook to the last published image of the
//! cascade: the W3C trace context rides in NATS headers from service to service, and each
//! stage is a span carrying the image, build id and digest. Spans are recorded by the SDK's
//! in-memory exporter (installed before anything else sets a subscriber).

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use rebake_e2e::Sandbox;

/// The attribute `key` of `span` as text (`None` when unset or empty).
fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
        .filter(|value| !value.is_empty())
}

/// The spans of one trace, by id.
struct Trace {
    spans: HashMap<SpanId, SpanData>,
}

impl Trace {
    fn new(all: &[SpanData], trace: TraceId) -> Self {
        Self {
            spans: all
                .iter()
                .filter(|span| span.span_context.trace_id() == trace)
                .map(|span| (span.span_context.span_id(), span.clone()))
                .collect(),
        }
    }

    /// The span named `name` about `image` (attribute `rebake.image`).
    fn find(&self, name: &str, image: &str) -> Option<&SpanData> {
        self.spans
            .values()
            .filter(|span| span.name == name && attribute(span, "rebake.image").as_deref() == Some(image))
            .min_by_key(|span| span.start_time)
    }

    /// `span` and its ancestors, innermost first (stops where a parent was not recorded).
    fn ancestry<'a>(&'a self, span: &'a SpanData) -> Vec<&'a SpanData> {
        let mut chain = vec![span];
        let mut current = span;
        while current.parent_span_id != SpanId::INVALID {
            let Some(parent) = self.spans.get(&current.parent_span_id) else {
                break;
            };
            chain.push(parent);
            current = parent;
            if chain.len() > 64 {
                break;
            }
        }
        chain
    }

    /// The trace as an indented tree, for the test output.
    fn render(&self) -> String {
        let mut children: HashMap<SpanId, Vec<&SpanData>> = HashMap::new();
        let mut roots = Vec::new();
        for span in self.spans.values() {
            if self.spans.contains_key(&span.parent_span_id) {
                children.entry(span.parent_span_id).or_default().push(span);
            } else {
                roots.push(span);
            }
        }
        let mut out = String::new();
        let mut stack: Vec<(usize, &SpanData)> = roots.into_iter().map(|span| (0, span)).collect();
        while let Some((depth, span)) = stack.pop() {
            out.push_str(&format!(
                "{}{} image={} build={} digest={}\n",
                "  ".repeat(depth),
                span.name,
                attribute(span, "rebake.image").unwrap_or_default(),
                attribute(span, "rebake.build_id").unwrap_or_default(),
                attribute(span, "rebake.digest")
                    .map(|digest| digest.chars().take(19).collect::<String>())
                    .unwrap_or_default(),
            ));
            let mut next = children.get(&span.span_context.span_id()).cloned().unwrap_or_default();
            next.sort_by_key(|span| std::cmp::Reverse(span.start_time));
            stack.extend(next.into_iter().map(|child| (depth + 1, child)));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_from_webhook_to_the_last_published_image() -> Result<()> {
    let recorded = rebake_runtime::telemetry::install_test_telemetry();
    let sandbox = Sandbox::start("e2etrace").await?;
    let base = sandbox.push_base("v1", "one").await?;
    let (app, child) = sandbox.wait_first_cascade(&base).await?;

    // The publish span ends just before the image state is written: it is there by now,
    // but give the exporter a moment all the same.
    let mut child_publish = None;
    rebake_testkit::eventually("the child's publish span is recorded", || {
        let spans = recorded.finished();
        let found = spans
            .iter()
            .find(|span| span.name == "publish" && attribute(span, "rebake.image").as_deref() == Some("child"))
            .cloned();
        let ready = found.is_some();
        child_publish = found;
        async move { ready }
    })
    .await?;
    let child_publish = child_publish.context("child publish span")?;
    let trace = Trace::new(&recorded.finished(), child_publish.span_context.trace_id());
    println!("{}", trace.render());

    // The trace starts at the registry's webhook.
    let chain = trace.ancestry(&child_publish);
    let root = chain.last().context("a root")?;
    ensure!(
        root.span_kind == SpanKind::Server && root.name.starts_with("POST /v1/hooks/"),
        "the trace's root is {:?} ({:?}), not the webhook; chain: {:?}",
        root.name,
        root.span_kind,
        chain.iter().map(|span| span.name.as_ref()).collect::<Vec<_>>()
    );

    // Every stage of both images is in it, with the image, build id and digest.
    let prefix = "E2ETRACE";
    for (image, digest) in [("app", &app), ("child", &child)] {
        for name in [
            format!("{prefix}_BUILD handle"),
            format!("{prefix}_SCAN handle"),
            format!("{prefix}_SIGN handle"),
            "sign".to_string(),
            "publish".to_string(),
        ] {
            let span = trace
                .find(&name, image)
                .with_context(|| format!("no {name:?} span for {image} in the trace:\n{}", trace.render()))?;
            ensure!(
                attribute(span, "rebake.build_id").is_some(),
                "{name} of {image} has no build id"
            );
            ensure!(
                attribute(span, "rebake.digest").as_deref() == Some(digest.as_str()),
                "{name} of {image} carries digest {:?}, not {digest}",
                attribute(span, "rebake.digest")
            );
        }
    }

    // The child's build descends from the app's publication (through the resolver).
    let child_build = trace
        .find(&format!("{prefix}_BUILD handle"), "child")
        .context("child build")?;
    let app_sign = trace
        .find(&format!("{prefix}_SIGN handle"), "app")
        .context("app sign")?;
    ensure!(
        trace
            .ancestry(child_build)
            .iter()
            .any(|span| span.span_context.span_id() == app_sign.span_context.span_id()),
        "the child's build is not under the app's publication:\n{}",
        trace.render()
    );

    // `rebake trigger app --wait -o json`: the CLI follows the operator's rebuild through
    // the cascade until it settles (and fails if a build failed or it never settled).
    let before = sandbox.builds_of("app").await?.len();
    rebake::cli::trigger(
        &sandbox.control_url,
        "app",
        "trace test: the CLI follows a cascade",
        Some(rebake::cli::WaitOptions {
            settle: std::time::Duration::from_secs(2),
            timeout: rebake_testkit::patience(),
        }),
        rebake::cli::Output::Json,
    )
    .await?;
    let builds = sandbox.builds_of("app").await?;
    ensure!(
        builds.len() == before + 1 && builds.last().is_some_and(|build| build.status == "published"),
        "the triggered build: {builds:?}"
    );
    sandbox.stop().await;
    Ok(())
}
