//! `ingress.sources` (one entry per webhook sender) and `ingress.poll` (what is polled for
//! senders that cannot call).

use std::{collections::BTreeMap, time::Duration};

use crate::{ConfigError, Result, Secret, duration::parse_duration};

/// The kinds of webhook sender a source can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookKind {
    /// GitLab Push Hook / Tag Push Hook, `X-Gitlab-Token`.
    Gitlab,
    /// Gitea push/create/delete, `X-Gitea-Signature` (HMAC-SHA256 hex).
    Gitea,
    /// Forgejo push/create/delete, `X-Forgejo-Signature` (or Gitea's header).
    Forgejo,
    /// Bitbucket Cloud `repo:push`, `X-Hub-Signature: sha256=<hex>`.
    BitbucketCloud,
    /// Bitbucket Data Center `repo:refs_changed`, `X-Hub-Signature: sha256=<hex>`.
    BitbucketDc,
    /// Docker Hub: no signature; the secret is the unguessable last path segment.
    Dockerhub,
    /// Harbor (Default and CloudEvents formats), `Authorization` header equal to the secret.
    Harbor,
    /// Quay `repo_push`; the secret is the last path segment (Quay cannot sign).
    Quay,
    /// GitHub `package` / `registry_package` events (GHCR), `X-Hub-Signature-256`.
    Ghcr,
    /// Azure Container Registry webhook and Event Grid CloudEvents; the secret is the value
    /// of a custom header (`header`, default `Authorization`).
    Acr,
    /// AWS ECR "ECR Image Action" through an EventBridge API destination; the secret is the
    /// value of the API-key header (`header`, default `X-Api-Key`).
    Ecr,
    /// Google Artifact Registry through a Pub/Sub push subscription; the secret is the last
    /// path segment (or a `token` query parameter).
    Gar,
    /// JFrog Artifactory `docker` `pushed` events; `X-JFrog-Event-Auth` equal to the secret.
    Artifactory,
    /// Any CloudEvents 1.0 producer (structured or binary mode); `Authorization: Bearer`.
    Cloudevents,
}

impl WebhookKind {
    /// Every kind.
    pub const ALL: [WebhookKind; 14] = [
        WebhookKind::Gitlab,
        WebhookKind::Gitea,
        WebhookKind::Forgejo,
        WebhookKind::BitbucketCloud,
        WebhookKind::BitbucketDc,
        WebhookKind::Dockerhub,
        WebhookKind::Harbor,
        WebhookKind::Quay,
        WebhookKind::Ghcr,
        WebhookKind::Acr,
        WebhookKind::Ecr,
        WebhookKind::Gar,
        WebhookKind::Artifactory,
        WebhookKind::Cloudevents,
    ];

    /// The name used in config, metrics and event sources (`gitlab`, `bitbucket-cloud`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Gitlab => "gitlab",
            WebhookKind::Gitea => "gitea",
            WebhookKind::Forgejo => "forgejo",
            WebhookKind::BitbucketCloud => "bitbucket-cloud",
            WebhookKind::BitbucketDc => "bitbucket-dc",
            WebhookKind::Dockerhub => "dockerhub",
            WebhookKind::Harbor => "harbor",
            WebhookKind::Quay => "quay",
            WebhookKind::Ghcr => "ghcr",
            WebhookKind::Acr => "acr",
            WebhookKind::Ecr => "ecr",
            WebhookKind::Gar => "gar",
            WebhookKind::Artifactory => "artifactory",
            WebhookKind::Cloudevents => "cloudevents",
        }
    }

    /// Whether it reports registry tags (as opposed to Git refs).
    pub fn is_registry(self) -> bool {
        !matches!(
            self,
            WebhookKind::Gitlab
                | WebhookKind::Gitea
                | WebhookKind::Forgejo
                | WebhookKind::BitbucketCloud
                | WebhookKind::BitbucketDc
        )
    }

    /// Whether the secret travels in the hook URL (`/v1/hooks/<source>/<secret>`): senders
    /// that can neither sign nor send a custom header.
    pub fn secret_in_path(self) -> bool {
        matches!(self, WebhookKind::Dockerhub | WebhookKind::Quay | WebhookKind::Gar)
    }
}

impl std::fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured webhook source (`ingress.sources[]`), served at `POST /v1/hooks/<name>`
/// (or `/v1/hooks/<name>/<secret>` for kinds that carry the secret in the URL).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSource {
    /// URL path segment and metrics label: letters, digits, `-`, `_`.
    pub name: String,
    /// What sends to it.
    pub kind: WebhookKind,
    /// Signing secret, shared token or API key, per kind. Required: a source without a
    /// secret accepts nothing.
    pub secret: Secret,
    /// For registry kinds: the registry host payloads are matched against and tags are
    /// resolved through, exactly as image references write it (`docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`). A payload naming another registry is refused. Required for
    /// registry kinds.
    #[serde(default)]
    pub registry: Option<String>,
    /// Where tags are resolved when that is not `registry` itself: a pull-through mirror or
    /// proxy (`host[:port]`). Events still name `registry`.
    #[serde(default)]
    pub resolve_via: Option<String>,
    /// For `acr` and `ecr`: the header carrying the secret (default `Authorization` for
    /// ACR, `X-Api-Key` for ECR).
    #[serde(default)]
    pub header: Option<String>,
}

impl WebhookSource {
    /// Checks what can be checked without reading the secret.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err("source names use 1-64 letters, digits, `-` and `_`".to_string());
        }
        match (&self.registry, self.kind.is_registry()) {
            (None, true) => Err(format!(
                "a {} source needs `registry:` (the registry its payloads are matched against)",
                self.kind
            )),
            (Some(_), false) => Err(format!("a {} source has no `registry:`", self.kind)),
            (Some(host), true) if host.is_empty() || host.contains('/') || host.contains("://") => {
                Err(format!("registry {host:?} is not a host[:port]"))
            }
            _ => Ok(()),
        }?;
        if let Some(via) = &self.resolve_via {
            if self.registry.is_none() {
                return Err("`resolve_via:` needs `registry:`".to_string());
            }
            if via.is_empty() || via.contains('/') || via.contains("://") {
                return Err(format!("resolve_via {via:?} is not a host[:port]"));
            }
        }
        if let Some(header) = &self.header {
            if !matches!(self.kind, WebhookKind::Acr | WebhookKind::Ecr) {
                return Err(format!("a {} source has no `header:`", self.kind));
            }
            if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("header {header:?} is not a header name"));
            }
        }
        Ok(())
    }
}

/// `ingress.poll`: what is polled for upstreams that cannot call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollConfig {
    /// How often each tracked upstream tag is checked (`HEAD` on its manifest); `None`
    /// turns registry polling off. Default 5m.
    pub interval: Option<Duration>,
    /// How often each tracked Git branch is checked (`git ls-remote`); `None` turns Git
    /// polling off. Default 5m.
    pub git_interval: Option<Duration>,
    /// Per-registry overrides, by host as image references write it.
    pub registries: BTreeMap<String, RegistryPoll>,
}

/// Polling of one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPoll {
    /// Interval for this registry's tags (overrides `ingress.poll.interval`).
    pub interval: Option<Duration>,
    /// Most requests per minute to this registry, token requests included (default 60).
    pub requests_per_minute: u32,
}

/// Default [`RegistryPoll::requests_per_minute`].
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(300)),
            git_interval: Some(Duration::from_secs(300)),
            registries: BTreeMap::new(),
        }
    }
}

impl PollConfig {
    /// The interval and budget for `registry`.
    pub fn for_registry(&self, registry: &str) -> (Option<Duration>, u32) {
        match self.registries.get(registry) {
            Some(poll) => (poll.interval.or(self.interval), poll.requests_per_minute),
            None => (self.interval, DEFAULT_REQUESTS_PER_MINUTE),
        }
    }
}

/// As written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPoll {
    interval: Option<String>,
    git_interval: Option<String>,
    #[serde(default)]
    registries: BTreeMap<String, RawRegistryPoll>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistryPoll {
    interval: Option<String>,
    requests_per_minute: Option<u32>,
}

/// `off` (or `0s`) means no polling; anything else is a duration of at least 1s.
fn optional_interval(key: &str, value: Option<String>) -> Result<Option<Duration>> {
    let Some(text) = value else {
        return Ok(Some(Duration::from_secs(300)));
    };
    if text.trim() == "off" {
        return Ok(None);
    }
    let parsed = parse_duration(&text)
        .ok_or_else(|| ConfigError::invalid(key, "not a duration like `30s`, `5m`, `1h` (or `off`)"))?;
    if parsed.is_zero() {
        return Ok(None);
    }
    if parsed < Duration::from_secs(1) {
        return Err(ConfigError::invalid(key, "must be at least 1s (or `off`)"));
    }
    Ok(Some(parsed))
}

impl RawPoll {
    pub(crate) fn validate(self) -> Result<PollConfig> {
        let interval = optional_interval("ingress.poll.interval", self.interval)?;
        let git_interval = optional_interval("ingress.poll.git_interval", self.git_interval)?;
        let mut registries = BTreeMap::new();
        for (host, raw) in self.registries {
            let key = format!("ingress.poll.registries.{host}");
            let interval = match raw.interval {
                Some(text) => optional_interval(&format!("{key}.interval"), Some(text))?,
                None => None,
            };
            let requests_per_minute = raw.requests_per_minute.unwrap_or(DEFAULT_REQUESTS_PER_MINUTE);
            if requests_per_minute == 0 {
                return Err(ConfigError::invalid(
                    &format!("{key}.requests_per_minute"),
                    "must be at least 1 (set `interval: off` to stop polling)",
                ));
            }
            registries.insert(
                host,
                RegistryPoll {
                    interval,
                    requests_per_minute,
                },
            );
        }
        Ok(PollConfig {
            interval,
            git_interval,
            registries,
        })
    }
}

/// Checks every source and that names are unique.
pub(crate) fn validate_sources(sources: &[WebhookSource]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for source in sources {
        let key = format!("ingress.sources.{}", source.name);
        source.validate().map_err(|reason| ConfigError::invalid(&key, reason))?;
        if !seen.insert(source.name.as_str()) {
            return Err(ConfigError::invalid(&key, "two sources have this name"));
        }
        if matches!(source.name.as_str(), "registry" | "git") {
            return Err(ConfigError::invalid(
                &key,
                "`registry` and `git` are the built-in endpoints' paths",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::Config;

    fn load(yaml: &str) -> crate::Result<Config> {
        Config::from_yaml(yaml, std::path::Path::new("rebake.yaml"), &HashMap::new())
    }

    #[test]
    fn sources_are_read_and_checked() {
        let config = load(
            "version: 1\ningress:\n  sources:\n    - { name: gl, kind: gitlab, secret: { value: t } }\n    - { name: hub, kind: dockerhub, secret: { value: t }, registry: docker.io, resolve_via: \"127.0.0.1:5000\" }\n",
        )
        .unwrap();
        assert_eq!(config.ingress.sources.len(), 2);
        assert_eq!(config.ingress.sources[1].kind, super::WebhookKind::Dockerhub);
        assert_eq!(config.ingress.sources[1].resolve_via.as_deref(), Some("127.0.0.1:5000"));

        for (yaml, needle) in [
            (
                "- { name: hub, kind: dockerhub, secret: { value: t } }",
                "needs `registry:`",
            ),
            (
                "- { name: gl, kind: gitlab, secret: { value: t }, registry: x }",
                "has no `registry:`",
            ),
            (
                "- { name: a, kind: gitlab, secret: { value: t } }\n    - { name: a, kind: gitea, secret: { value: t } }",
                "two sources",
            ),
            (
                "- { name: \"bad name\", kind: gitlab, secret: { value: t } }",
                "letters, digits",
            ),
            ("- { name: git, kind: gitlab, secret: { value: t } }", "built-in"),
            (
                "- { name: q, kind: quay, secret: { value: t }, registry: \"https://quay.io\" }",
                "host[:port]",
            ),
            (
                "- { name: q, kind: gitlab, secret: { value: t }, header: X-Key }",
                "no `header:`",
            ),
        ] {
            let error = load(&format!("version: 1\ningress:\n  sources:\n    {yaml}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(needle), "{yaml}: {error}");
        }
        let error = load("version: 1\ningress:\n  sources:\n    - { name: x, kind: nope, secret: { value: t } }\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("nope"), "{error}");
    }

    #[test]
    fn poll_intervals_budgets_and_off() {
        let config = load(
            "version: 1\ningress:\n  poll:\n    interval: off\n    git_interval: 30s\n    registries:\n      docker.io: { interval: 15m, requests_per_minute: 30 }\n      ghcr.io: {}\n",
        )
        .unwrap();
        let poll = &config.ingress.poll;
        assert_eq!(poll.interval, None);
        assert_eq!(poll.git_interval, Some(std::time::Duration::from_secs(30)));
        assert_eq!(
            poll.for_registry("docker.io"),
            (Some(std::time::Duration::from_secs(900)), 30)
        );
        assert_eq!(poll.for_registry("ghcr.io"), (None, super::DEFAULT_REQUESTS_PER_MINUTE));
        assert_eq!(poll.for_registry("quay.io"), (None, super::DEFAULT_REQUESTS_PER_MINUTE));
        let default = load("version: 1\n").unwrap().ingress.poll;
        assert_eq!(default, super::PollConfig::default());
        for bad in [
            "interval: 10ms",
            "interval: soon",
            "registries: { x: { requests_per_minute: 0 } }",
        ] {
            assert!(
                load(&format!("version: 1\ningress:\n  poll:\n    {bad}\n")).is_err(),
                "{bad}"
            );
        }
    }
}
