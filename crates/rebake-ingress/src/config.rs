use std::{fmt, sync::Arc};

use crate::sources::{DeliveryLog, SourceSettings, TagLookup};

/// Default for [`IngressSettings::max_body_bytes`]: 5 MiB (GitHub pushes with many commits
/// are the largest bodies we expect).
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// What the webhook receiver needs to know, with secrets already read.
///
/// A sender without configured credentials is refused (503), never accepted unauthenticated;
/// an empty token or secret counts as not configured.
#[derive(Clone)]
pub struct IngressSettings {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Bearer token the distribution registry sends (`Authorization: Bearer <token>`).
    pub distribution_token: Option<Vec<u8>>,
    /// Registry host to record for distribution events (e.g. `registry.example.com`); when
    /// unset, the `request.host` the registry reports in each event is used.
    pub distribution_registry_host: Option<String>,
    /// Secret GitHub signs deliveries with (`X-Hub-Signature-256`).
    pub github_secret: Option<Vec<u8>>,
    /// Configured webhook sources (`POST /v1/hooks/<name>`), secrets read.
    pub sources: Vec<SourceSettings>,
    /// Where delivery ids are remembered (replays are no-ops); [`crate::serve`] uses the
    /// `deliveries` KV bucket, tests an in-memory log. `None`: an in-memory log.
    pub deliveries: Option<Arc<dyn DeliveryLog>>,
    /// How registry sources resolve tags; [`crate::serve`] uses a registry client built
    /// from `plain_http_registries`.
    pub tags: Option<Arc<dyn TagLookup>>,
    /// Registries reached over plain HTTP (as `registries.plain_http` in the config).
    pub plain_http_registries: Vec<String>,
    /// The webhook counters, when the caller also exposes them elsewhere (`rebake::start`
    /// registers them in the process registry). `None`: the router makes its own.
    pub metrics: Option<Arc<crate::metrics::IngressMetrics>>,
}

impl Default for IngressSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            distribution_token: None,
            distribution_registry_host: None,
            github_secret: None,
            sources: Vec::new(),
            deliveries: None,
            tags: None,
            plain_http_registries: Vec::new(),
            metrics: None,
        }
    }
}

impl fmt::Debug for IngressSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<Vec<u8>>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("IngressSettings")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("distribution_token", &redacted(&self.distribution_token))
            .field("distribution_registry_host", &self.distribution_registry_host)
            .field("github_secret", &redacted(&self.github_secret))
            .field("sources", &self.sources)
            .field("plain_http_registries", &self.plain_http_registries)
            .finish_non_exhaustive()
    }
}

impl IngressSettings {
    /// The distribution token, when one is configured and non-empty.
    pub(crate) fn distribution_token(&self) -> Option<&[u8]> {
        self.distribution_token.as_deref().filter(|token| !token.is_empty())
    }

    /// The GitHub secret, when one is configured and non-empty.
    pub(crate) fn github_secret(&self) -> Option<&[u8]> {
        self.github_secret.as_deref().filter(|secret| !secret.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let settings = IngressSettings {
            distribution_token: Some(b"hunter2".to_vec()),
            github_secret: Some(b"swordfish".to_vec()),
            ..IngressSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("swordfish"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn empty_secrets_count_as_unset() {
        let settings = IngressSettings {
            distribution_token: Some(Vec::new()),
            github_secret: Some(Vec::new()),
            ..IngressSettings::default()
        };
        assert!(settings.distribution_token().is_none());
        assert!(settings.github_secret().is_none());
    }
}
