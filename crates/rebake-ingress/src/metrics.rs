//! Per-source webhook counters, served as Prometheus text at `GET /metrics`.
//!
//! Names (all counters, labels `source` = the configured source name or `distribution` /
//! `github` for the built-in endpoints, `kind` = the sender kind):
//!
//! - `rebake_webhooks_received_total`: requests that reached a source;
//! - `rebake_webhooks_accepted_total`: answered 200 (published, ignored by rule, or replay);
//! - `rebake_webhooks_unhandled_total`: event types Rebake does not read (answered 202);
//! - `rebake_webhooks_rejected_total{reason}`: refused; `reason` is one of `unauthorized`,
//!   `malformed`, `too_large`, `media_type`, `unavailable`, `not_configured`, `not_found`.
//!
//! [`IngressMetrics::register`] adds the same counters to another registry: `rebake::start`
//! puts them in the process registry (`rebake-metrics`, served on `metrics.listen`) and hands
//! them to the router through [`crate::IngressSettings::metrics`].

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use rebake_config::WebhookKind;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    source: String,
    kind: String,
    reason: String,
}

/// The ingress' counters and the registry they are exposed through.
pub struct IngressMetrics {
    registry: Registry,
    received: Family<SourceLabels, Counter>,
    accepted: Family<SourceLabels, Counter>,
    unhandled: Family<SourceLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
}

impl Default for IngressMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for IngressMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngressMetrics")
    }
}

fn labels(source: &str, kind: &str) -> SourceLabels {
    SourceLabels {
        source: source.to_string(),
        kind: kind.to_string(),
    }
}

impl IngressMetrics {
    /// Empty counters.
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            received: Family::default(),
            accepted: Family::default(),
            unhandled: Family::default(),
            rejected: Family::default(),
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.registry = registry;
        metrics
    }

    pub(crate) fn received(&self, source: &str, kind: impl KindLabel) {
        self.received.get_or_create(&labels(source, kind.label())).inc();
    }

    pub(crate) fn accepted(&self, source: &str, kind: impl KindLabel) {
        self.accepted.get_or_create(&labels(source, kind.label())).inc();
    }

    pub(crate) fn unknown(&self, source: &str, kind: impl KindLabel) {
        self.unhandled.get_or_create(&labels(source, kind.label())).inc();
    }

    pub(crate) fn rejected(&self, source: &str, kind: impl KindLabel, reason: &str) {
        self.rejected
            .get_or_create(&RejectedLabels {
                source: source.to_string(),
                kind: kind.label().to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Registers these same counters into `registry` as well (the process-wide registry
    /// served on `metrics.listen`): both expositions then show the same values.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rebake_webhooks_received",
            "Webhook requests that reached a configured source",
            self.received.clone(),
        );
        registry.register(
            "rebake_webhooks_accepted",
            "Webhook requests answered 200 (published, ignored by rule, or a replay)",
            self.accepted.clone(),
        );
        registry.register(
            "rebake_webhooks_unhandled",
            "Webhook requests of an event type Rebake does not read (answered 202)",
            self.unhandled.clone(),
        );
        registry.register(
            "rebake_webhooks_rejected",
            "Webhook requests refused, by reason",
            self.rejected.clone(),
        );
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The `kind` label: a sender kind, or the name of a built-in endpoint.
pub(crate) trait KindLabel {
    fn label(&self) -> &str;
}

impl KindLabel for WebhookKind {
    fn label(&self) -> &str {
        self.as_str()
    }
}

impl KindLabel for &str {
    fn label(&self) -> &str {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_labels() {
        let metrics = IngressMetrics::new();
        metrics.received("hub", WebhookKind::Dockerhub);
        metrics.rejected("hub", WebhookKind::Dockerhub, "unauthorized");
        let text = metrics.render();
        assert!(
            text.contains(r#"rebake_webhooks_received_total{source="hub",kind="dockerhub"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rebake_webhooks_rejected_total{source="hub",kind="dockerhub",reason="unauthorized"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn registered_elsewhere_the_counters_are_shared() {
        let metrics = IngressMetrics::new();
        let mut shared = Registry::default();
        metrics.register(&mut shared);
        metrics.accepted("hub", WebhookKind::Dockerhub);
        let mut text = String::new();
        encode(&mut text, &shared).unwrap();
        assert!(
            text.contains(r#"rebake_webhooks_accepted_total{source="hub",kind="dockerhub"} 1"#),
            "{text}"
        );
        assert_eq!(metrics.render(), text);
    }
}
