use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use rebake_feeds::fetch::FeedSource;

use crate::{
    ConfigError, Result, Secret, parse_duration,
    trust::{BaseVerifyRule, RawBaseVerifyRule, validate_rules},
    webhooks::{PollConfig, RawPoll, WebhookSource, validate_sources},
};

/// Environment variables that override single keys of the file, with the key each sets.
/// Values are parsed as YAML scalars (so `REBAKE_BUILDER_WORKERS=4` is a number).
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("REBAKE_NATS_URL", "nats.url"),
    ("REBAKE_NATS_PREFIX", "nats.prefix"),
    ("REBAKE_CATALOG_DIR", "catalog.dir"),
    ("REBAKE_INGRESS_LISTEN", "ingress.listen"),
    ("REBAKE_INGRESS_MAX_BODY_BYTES", "ingress.max_body_bytes"),
    ("REBAKE_RESOLVER_RESYNC_INTERVAL", "resolver.resync_interval"),
    ("REBAKE_BUILDER_WORKERS", "builder.workers"),
    ("REBAKE_SIGNER_CONCURRENCY", "signer.concurrency"),
    ("REBAKE_BUILDER_WORK_DIR", "builder.work_dir"),
    ("REBAKE_BUILDER_STAGING_PREFIX", "builder.staging_prefix"),
    ("REBAKE_BUILDER_PACKAGE_CACHE", "builder.package_cache"),
    ("REBAKE_INGRESS_FEED_POLL_INTERVAL", "ingress.feed_poll_interval"),
    ("REBAKE_SCANNER_MAX_IMAGE_SIZE_BYTES", "scanner.max_image_size_bytes"),
    ("REBAKE_CONTROL_LISTEN", "control.listen"),
    ("REBAKE_SHUTDOWN_GRACE", "shutdown_grace"),
];

// === raw, as written ===

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    #[serde(default)]
    nats: RawNats,
    #[serde(default)]
    registries: RawRegistries,
    #[serde(default)]
    catalog: RawCatalog,
    #[serde(default)]
    queues: RawQueues,
    #[serde(default)]
    ingress: RawIngress,
    #[serde(default)]
    resolver: RawResolver,
    #[serde(default)]
    builder: RawBuilder,
    #[serde(default)]
    scanner: RawScanner,
    #[serde(default)]
    signer: RawSigner,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    feeds: BTreeMap<String, FeedSource>,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    metrics: RawMetrics,
    shutdown_grace: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    url: Option<String>,
    prefix: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistries {
    #[serde(default)]
    plain_http: Vec<String>,
    #[serde(default)]
    verify: Vec<RawBaseVerifyRule>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    dir: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueues {
    ack_wait: Option<String>,
    max_deliver: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngress {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    feed_poll_interval: Option<String>,
    #[serde(default)]
    distribution: RawDistribution,
    #[serde(default)]
    github: RawGithub,
    #[serde(default)]
    sources: Vec<WebhookSource>,
    #[serde(default)]
    poll: RawPoll,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistribution {
    token: Option<Secret>,
    registry_host: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    secret: Option<Secret>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolver {
    resync_interval: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuilder {
    workers: Option<usize>,
    work_dir: Option<PathBuf>,
    staging_prefix: Option<String>,
    package_cache: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScanner {
    max_image_size_bytes: Option<u64>,
    #[serde(default)]
    advisories: Vec<AdvisorySource>,
    advisory_poll_interval: Option<String>,
    policy_dir: Option<PathBuf>,
    #[serde(default)]
    disabled_policies: Vec<String>,
    #[serde(default)]
    required_labels: Vec<String>,
    #[serde(default)]
    allow_root: bool,
}

/// One advisory source under `scanner.advisories`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorySource {
    /// `osv` (a directory of OSV JSON files, or an OSV `all.zip` export) or `secdb`
    /// (an Alpine/Wolfi secdb JSON file).
    pub kind: AdvisoryKind,
    /// File or directory.
    pub path: PathBuf,
    /// For `secdb`: the distribution it describes (`alpine` or `wolfi`), default `alpine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
}

/// Advisory formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvisoryKind {
    /// OSV JSON: a directory (recursively) or a `.zip` export.
    Osv,
    /// Alpine/Wolfi secdb JSON.
    Secdb,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigner {
    key: Option<Secret>,
    password: Option<Secret>,
    concurrency: Option<usize>,
    #[serde(default)]
    verify_keys: Vec<PathBuf>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    listen: Option<String>,
    #[serde(default)]
    tokens: Vec<ControlToken>,
    tls: Option<ControlTls>,
}

/// One bearer token of the control API (`control.tokens[]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlToken {
    /// Who holds it (logs and `requested_by` of triggers; never the token itself).
    pub name: String,
    /// The token.
    pub secret: Secret,
    /// `read` (the read-only RPCs) or `admin` (all).
    pub role: ControlRole,
}

/// What a control token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlRole {
    /// Read-only RPCs.
    Read,
    /// Every RPC, triggers and pause/resume included.
    Admin,
}

/// TLS for the control API (`control.tls`): PEM certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTls {
    /// Certificate chain (PEM file).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: Secret,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

// === validated ===

/// The whole validated configuration. Secrets are read when the service that needs them
/// starts, not here, so `rebake serve resolver` never needs the signing key.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS connection and naming.
    pub nats: NatsConfig,
    /// How registries are reached.
    pub registries: RegistriesConfig,
    /// Directory of image specs.
    pub catalog_dir: PathBuf,
    /// Work queue behaviour.
    pub queues: QueueConfig,
    /// Webhook receiver.
    pub ingress: IngressConfig,
    /// Planner.
    pub resolver: ResolverConfig,
    /// Build workers.
    pub builder: BuilderConfig,
    /// Scanner stage.
    pub scanner: ScannerConfig,
    /// Signer/publisher.
    pub signer: SignerConfig,
    /// Control API.
    pub control: ControlConfig,
    /// Package feeds by name (`feeds:`), referenced by image specs' `packages.feed`.
    pub feeds: BTreeMap<String, FeedSource>,
    /// Traces.
    pub telemetry: TelemetryConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// How long in-flight work may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// `nats:`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL, default `nats://127.0.0.1:4222`.
    pub url: String,
    /// Prefix of every subject, stream and bucket, default `rebake`.
    pub prefix: String,
}

/// `registries:`.
#[derive(Debug, Clone, Default)]
pub struct RegistriesConfig {
    /// Registry hosts (`host:port`) reached over plain HTTP; all others use HTTPS.
    pub plain_http: Vec<String>,
    /// `registries.verify`: base repositories that must carry a cosign signature by one of
    /// the given public keys; every rule that matches a base applies (see [`crate::trust`]).
    pub verify: Vec<BaseVerifyRule>,
}

/// `queues:`.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long a worker holds a message before JetStream redelivers it (workers send
    /// in-progress heartbeats while working), default 30s.
    pub ack_wait: Duration,
    /// Deliveries before a message goes to the dead-letter stream, default 5.
    pub max_deliver: i64,
}

/// `ingress:`.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// HTTP listen address, default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest accepted body, default 5 MiB.
    pub max_body_bytes: usize,
    /// Token the registry sends as `Authorization: Bearer <token>` (required to accept
    /// distribution notifications).
    pub distribution_token: Option<Secret>,
    /// Registry host to record for distribution notifications instead of the `request.host`
    /// the registry reports.
    pub distribution_registry_host: Option<String>,
    /// GitHub webhook secret (required to accept GitHub pushes).
    pub github_secret: Option<Secret>,
    /// How often each feed's index is polled (one conditional request when unchanged),
    /// default 5m.
    pub feed_poll_interval: Duration,
    /// Webhook sources (`POST /v1/hooks/<name>`), one per sender.
    pub sources: Vec<WebhookSource>,
    /// Polling of tracked tags and branches.
    pub poll: PollConfig,
}

/// `resolver:`.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// How often every image is looked at again, re-reading upstream state, default 5m.
    pub resync_interval: Duration,
}

/// `builder:`.
#[derive(Debug, Clone)]
pub struct BuilderConfig {
    /// Concurrent builds in this process, default 2.
    pub workers: usize,
    /// Git mirrors and scratch space, default `$TMPDIR/rebake-builder`.
    pub work_dir: PathBuf,
    /// Repository prefix of staged images, default `rebake-staging` (so `app` is staged at
    /// `<publish registry>/rebake-staging/app`).
    pub staging_prefix: String,
    /// Downloaded packages, kept by checksum, default `<work_dir>/packages`.
    pub package_cache: PathBuf,
}

/// `scanner:`.
#[derive(Debug, Clone)]
pub struct ScannerConfig {
    /// Largest image (config + compressed layers) allowed to publish, default 2 GiB.
    pub max_image_size_bytes: u64,
    /// Advisory sources matched against every image's packages.
    pub advisories: Vec<AdvisorySource>,
    /// How often advisory sources are re-read; published images are re-matched when they
    /// changed. Default 5m.
    pub advisory_poll_interval: Duration,
    /// Directory of `.rego` files overriding (same file name) or adding to the built-in
    /// policies.
    pub policy_dir: Option<PathBuf>,
    /// Built-in policies turned off, by rule name (`non_root_user`, ...).
    pub disabled_policies: Vec<String>,
    /// Labels every image must carry (policy `required_labels`).
    pub required_labels: Vec<String>,
    /// Whether images may run as root (policy `non_root_user`).
    pub allow_root: bool,
}

/// `signer:`.
#[derive(Debug, Clone)]
pub struct SignerConfig {
    /// ECDSA P-256 private key (PKCS#8 PEM, or cosign's encrypted PEM with `password`).
    pub key: Option<Secret>,
    /// Password of an encrypted key.
    pub password: Option<Secret>,
    /// Public keys (PEM files) whose signatures count as ours besides the signing key's own
    /// (`signer.verify_keys`): during a key rotation the old public key goes here, so images
    /// it signed are not signed again. Signing always uses `key`. Relative paths are resolved
    /// against the config file's directory.
    pub verify_keys: Vec<PathBuf>,
    /// Images signed and published at once (default 4). Each is mostly registry round trips
    /// (signature, blob mounts, manifests, tags), so this may exceed the core count.
    pub concurrency: usize,
}

/// `control:`.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// gRPC listen address, default `127.0.0.1:9090`.
    pub listen: SocketAddr,
    /// Bearer tokens; none configured = no authentication (only sensible on loopback).
    pub tokens: Vec<ControlToken>,
    /// TLS; `None` = plaintext.
    pub tls: Option<ControlTls>,
}

/// `telemetry:` (OpenTelemetry traces).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// OTLP endpoint (`http://collector:4317` gRPC or `http://collector:4318` HTTP); `None`
    /// = traces are not exported (the default).
    pub otlp_endpoint: Option<String>,
    /// `service.name` resource attribute, default `rebake`.
    pub service_name: String,
}

/// `metrics:` (Prometheus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served, default `127.0.0.1:9464`; `None` (`listen: off`) = not served.
    pub listen: Option<SocketAddr>,
}

/// Checks token names (unique, printable).
fn control_tokens(tokens: Vec<ControlToken>) -> Result<Vec<ControlToken>> {
    let mut seen = std::collections::BTreeSet::new();
    for token in &tokens {
        if token.name.is_empty() || !token.name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                "control.tokens",
                "token names are non-empty printable ASCII",
            ));
        }
        if !seen.insert(token.name.clone()) {
            return Err(ConfigError::invalid(
                &format!("control.tokens.{}", token.name),
                "two tokens have this name",
            ));
        }
    }
    Ok(tokens)
}

impl Config {
    /// Loads the file at `path`, applying overrides from `env`.
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_yaml(&text, path, env)?;
        // Relative catalog and public key paths are relative to the config file.
        if let Some(parent) = path.parent() {
            let resolve = |file: &mut PathBuf| {
                if file.is_relative() {
                    *file = parent.join(&*file);
                }
            };
            resolve(&mut config.catalog_dir);
            config.signer.verify_keys.iter_mut().for_each(resolve);
            for rule in &mut config.registries.verify {
                rule.keys.iter_mut().for_each(resolve);
            }
        }
        Ok(config)
    }

    /// Parses YAML text (`path` is only used in error messages).
    pub fn from_yaml(text: &str, path: &Path, env: &HashMap<String, String>) -> Result<Self> {
        let mut value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|error| ConfigError::parse(path, error))?;
        if value.is_null() {
            value = serde_yaml::Value::Mapping(Default::default());
        }
        apply_env_overrides(&mut value, env)?;
        // Round-trip through text so errors keep line numbers for what came from the file.
        let raw: RawConfig = if env_overrides_present(env) {
            serde_yaml::from_value(value).map_err(|error| ConfigError::parse(path, error))?
        } else {
            serde_yaml::from_str(text).map_err(|error| ConfigError::parse(path, error))?
        };
        Self::validate(raw)
    }

    fn validate(mut raw: RawConfig) -> Result<Self> {
        if raw.version != 1 {
            return Err(ConfigError::invalid(
                "version",
                format!("unsupported version {}, expected 1", raw.version),
            ));
        }
        let duration = |key: &str, text: Option<String>, default: Duration| -> Result<Duration> {
            match text {
                None => Ok(default),
                Some(text) => parse_duration(&text)
                    .ok_or_else(|| ConfigError::invalid(key, format!("{text:?} is not a duration like 30s, 5m, 1h"))),
            }
        };
        let addr = |key: &str, text: Option<String>, default: &str| -> Result<SocketAddr> {
            let text = text.unwrap_or_else(|| default.to_string());
            text.parse()
                .map_err(|_| ConfigError::invalid(key, format!("{text:?} is not an address like 127.0.0.1:8080")))
        };
        let prefix = raw.nats.prefix.unwrap_or_else(|| "rebake".to_string());
        rebake_events::Names::new(prefix.clone())
            .map_err(|error| ConfigError::invalid("nats.prefix", error.to_string()))?;
        let max_deliver = raw.queues.max_deliver.unwrap_or(5);
        if max_deliver < 1 {
            return Err(ConfigError::invalid("queues.max_deliver", "must be at least 1"));
        }
        let workers = raw.builder.workers.unwrap_or(2);
        if workers == 0 {
            return Err(ConfigError::invalid("builder.workers", "must be at least 1"));
        }
        let signer_concurrency = raw.signer.concurrency.unwrap_or(4);
        if signer_concurrency == 0 {
            return Err(ConfigError::invalid("signer.concurrency", "must be at least 1"));
        }
        let ack_wait = duration("queues.ack_wait", raw.queues.ack_wait, Duration::from_secs(30))?;
        if ack_wait < Duration::from_secs(1) {
            return Err(ConfigError::invalid("queues.ack_wait", "must be at least 1s"));
        }
        let resync_interval = duration(
            "resolver.resync_interval",
            raw.resolver.resync_interval,
            Duration::from_secs(300),
        )?;
        if resync_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid("resolver.resync_interval", "must be at least 1s"));
        }
        let staging_prefix = raw
            .builder
            .staging_prefix
            .unwrap_or_else(|| "rebake-staging".to_string());
        if staging_prefix.is_empty()
            || !staging_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./".contains(&b))
        {
            return Err(ConfigError::invalid(
                "builder.staging_prefix",
                "use a lowercase repository path",
            ));
        }
        let advisory_poll_interval = duration(
            "scanner.advisory_poll_interval",
            raw.scanner.advisory_poll_interval,
            Duration::from_secs(300),
        )?;
        let feed_poll_interval = duration(
            "ingress.feed_poll_interval",
            raw.ingress.feed_poll_interval,
            Duration::from_secs(300),
        )?;
        if feed_poll_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "ingress.feed_poll_interval",
                "must be at least 1s",
            ));
        }
        validate_sources(&raw.ingress.sources)?;
        let poll = std::mem::take(&mut raw.ingress.poll).validate()?;
        for (name, feed) in &raw.feeds {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
                return Err(ConfigError::invalid(
                    &format!("feeds.{name}"),
                    "feed names use letters, digits, `-` and `_`",
                ));
            }
            feed.validate()
                .map_err(|reason| ConfigError::invalid(&format!("feeds.{name}"), reason))?;
        }
        let verify_rules = validate_rules(std::mem::take(&mut raw.registries.verify))?;
        if raw.signer.verify_keys.iter().any(|path| path.as_os_str().is_empty()) {
            return Err(ConfigError::invalid("signer.verify_keys", "an empty path"));
        }
        let work_dir = raw
            .builder
            .work_dir
            .unwrap_or_else(|| std::env::temp_dir().join("rebake-builder"));
        Ok(Config {
            nats: NatsConfig {
                url: raw.nats.url.unwrap_or_else(|| "nats://127.0.0.1:4222".to_string()),
                prefix,
            },
            registries: RegistriesConfig {
                plain_http: raw.registries.plain_http,
                verify: verify_rules,
            },
            catalog_dir: raw.catalog.dir.unwrap_or_else(|| PathBuf::from("images")),
            queues: QueueConfig { ack_wait, max_deliver },
            ingress: IngressConfig {
                listen: addr("ingress.listen", raw.ingress.listen, "127.0.0.1:8080")?,
                max_body_bytes: raw.ingress.max_body_bytes.unwrap_or(5 * 1024 * 1024),
                distribution_token: raw.ingress.distribution.token,
                distribution_registry_host: raw.ingress.distribution.registry_host,
                github_secret: raw.ingress.github.secret,
                feed_poll_interval,
                sources: raw.ingress.sources,
                poll,
            },
            resolver: ResolverConfig { resync_interval },
            builder: BuilderConfig {
                workers,
                package_cache: raw.builder.package_cache.unwrap_or_else(|| work_dir.join("packages")),
                work_dir,
                staging_prefix,
            },
            feeds: raw.feeds,
            scanner: ScannerConfig {
                max_image_size_bytes: raw.scanner.max_image_size_bytes.unwrap_or(2 * 1024 * 1024 * 1024),
                advisories: raw.scanner.advisories,
                advisory_poll_interval,
                policy_dir: raw.scanner.policy_dir,
                disabled_policies: raw.scanner.disabled_policies,
                required_labels: raw.scanner.required_labels,
                allow_root: raw.scanner.allow_root,
            },
            signer: SignerConfig {
                key: raw.signer.key,
                password: raw.signer.password,
                verify_keys: raw.signer.verify_keys,
                concurrency: signer_concurrency,
            },
            control: ControlConfig {
                listen: addr("control.listen", raw.control.listen, "127.0.0.1:9090")?,
                tokens: control_tokens(raw.control.tokens)?,
                tls: raw.control.tls,
            },
            telemetry: TelemetryConfig {
                otlp_endpoint: match raw.telemetry.otlp_endpoint {
                    Some(endpoint) if endpoint.starts_with("http://") || endpoint.starts_with("https://") => {
                        Some(endpoint)
                    }
                    Some(other) => {
                        return Err(ConfigError::invalid(
                            "telemetry.otlp_endpoint",
                            format!("{other:?} is not an http:// or https:// URL"),
                        ));
                    }
                    None => None,
                },
                service_name: raw.telemetry.service_name.unwrap_or_else(|| "rebake".to_string()),
            },
            metrics: MetricsConfig {
                listen: match raw.metrics.listen.as_deref() {
                    Some("off") => None,
                    other => Some(addr("metrics.listen", other.map(str::to_string), "127.0.0.1:9464")?),
                },
            },
            shutdown_grace: duration("shutdown_grace", raw.shutdown_grace, Duration::from_secs(30))?,
        })
    }
}

fn env_overrides_present(env: &HashMap<String, String>) -> bool {
    ENV_OVERRIDES.iter().any(|(var, _)| env.contains_key(*var))
}

fn apply_env_overrides(value: &mut serde_yaml::Value, env: &HashMap<String, String>) -> Result<()> {
    for (var, key) in ENV_OVERRIDES {
        let Some(text) = env.get(*var) else { continue };
        let scalar: serde_yaml::Value = serde_yaml::from_str(text).map_err(|error| ConfigError::Env {
            var: var.to_string(),
            reason: error.to_string(),
        })?;
        let mut node = &mut *value;
        let parts: Vec<&str> = key.split('.').collect();
        for (index, part) in parts.iter().enumerate() {
            let serde_yaml::Value::Mapping(map) = node else {
                return Err(ConfigError::Env {
                    var: var.to_string(),
                    reason: format!("{key} is not a mapping in the file"),
                });
            };
            let part_key = serde_yaml::Value::String(part.to_string());
            if index + 1 == parts.len() {
                map.insert(part_key, scalar.clone());
                break;
            }
            node = map
                .entry(part_key)
                .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
            if node.is_null() {
                *node = serde_yaml::Value::Mapping(Default::default());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_yaml(text, Path::new("rebake.yaml"), &env)
    }

    #[test]
    fn defaults() {
        let config = load("version: 1\n", &[]).unwrap();
        assert_eq!(config.nats.prefix, "rebake");
        assert_eq!(config.resolver.resync_interval, Duration::from_secs(300));
        assert_eq!(config.ingress.max_body_bytes, 5 * 1024 * 1024);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let error = load("version: 1\nnats:\n  url: nats://x\n  prefx: y\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("prefx"), "{error}");
        assert!(error.starts_with("rebake.yaml:4:"), "{error}");
    }

    #[test]
    fn env_overrides_win() {
        let config = load(
            "version: 1\nbuilder:\n  workers: 1\n",
            &[
                ("REBAKE_BUILDER_WORKERS", "4"),
                ("REBAKE_NATS_PREFIX", "t1"),
                ("REBAKE_RESOLVER_RESYNC_INTERVAL", "10s"),
            ],
        )
        .unwrap();
        assert_eq!(config.builder.workers, 4);
        assert_eq!(config.nats.prefix, "t1");
        assert_eq!(config.resolver.resync_interval, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_the_key() {
        let error = load("version: 1\nresolver:\n  resync_interval: soon\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("resolver.resync_interval"), "{error}");
        let error = load("version: 1\ningress:\n  listen: nowhere\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("ingress.listen"), "{error}");
        let error = load("version: 2\n", &[]).unwrap_err().to_string();
        assert!(error.contains("version"), "{error}");
        let error = load("version: 1\nnats:\n  prefix: Bad.Prefix\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("nats.prefix"), "{error}");
    }

    #[test]
    fn secrets_do_not_leak_in_debug() {
        let config = load("version: 1\ningress:\n  github:\n    secret: { value: hunter2 }\n", &[]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;

    #[test]
    fn verify_rules_and_rotation_keys_load_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rebake.yaml");
        std::fs::write(
            &path,
            "version: 1\nregistries:\n  verify:\n    - match: registry.example.com/base/*\n      keys: [keys/base.pub, /etc/rebake/vendor.pub]\nsigner:\n  key: { file: cosign.key }\n  verify_keys: [old.pub]\n",
        )
        .unwrap();
        let config = Config::load(&path, &HashMap::new()).unwrap();
        let rule = &config.registries.verify[0];
        assert_eq!(rule.pattern.as_str(), "registry.example.com/base/*");
        assert!(rule.pattern.matches("registry.example.com/base/debian"));
        assert_eq!(
            rule.keys,
            [
                dir.path().join("keys/base.pub"),
                PathBuf::from("/etc/rebake/vendor.pub")
            ]
        );
        assert_eq!(config.signer.verify_keys, [dir.path().join("old.pub")]);
    }

    #[test]
    fn bad_verify_rules_name_the_key() {
        let load = |text: &str| Config::from_yaml(text, Path::new("x.yaml"), &HashMap::new());
        let error = load("version: 1\nregistries:\n  verify:\n    - { match: reg.example/base:v1, keys: [a.pub] }\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("registries.verify[0].match") && error.contains("tag"),
            "{error}"
        );
        let error = load("version: 1\nregistries:\n  verify:\n    - { match: reg.example/base, keys: [] }\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("registries.verify[0].keys"), "{error}");
        let error = load("version: 1\nregistries:\n  verify:\n    - { pattern: reg.example/base, keys: [a.pub] }\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("pattern") && error.starts_with("x.yaml:4:"), "{error}");
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secrets_are_maps_with_one_source() {
        let env = HashMap::from([("TOKEN".to_string(), "t0k".to_string())]);
        let config = Config::from_yaml(
            "version: 1\ningress:\n  distribution:\n    token: { env: TOKEN }\n",
            Path::new("x.yaml"),
            &env,
        )
        .unwrap();
        let token = config.ingress.distribution_token.unwrap();
        assert_eq!(token.read("ingress.distribution.token", &env).unwrap(), b"t0k");
        let error = Config::from_yaml(
            "version: 1\ningress:\n  distribution:\n    token: { env: A, value: b }\n",
            Path::new("x.yaml"),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("exactly one"), "{error}");
        let missing = Secret::Env("NOPE".into())
            .read("signer.key", &env)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("NOPE") && missing.contains("signer.key"), "{missing}");
    }
}

#[cfg(test)]
mod shipped_examples {
    use super::*;

    /// `deploy/config/rebake.example.yaml` is the documented reference: it must load.
    #[test]
    fn reference_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/rebake.example.yaml");
        let config = Config::load(&path, &HashMap::new()).unwrap();
        assert_eq!(config.nats.prefix, "rebake");
        assert_eq!(config.builder.workers, 2);
        assert!(config.signer.key.is_some());
        let debian = &config.feeds["debian"];
        assert_eq!(debian.kind(), "debian");
        assert_eq!(debian.feed_arch("linux/arm64").as_deref(), Some("arm64"));
        assert_eq!(config.control.tokens.len(), 2);
        assert_eq!(config.control.tokens[0].role, ControlRole::Read);
        assert_eq!(
            config.telemetry.otlp_endpoint.as_deref(),
            Some("http://otel-collector:4317")
        );
        assert_eq!(config.metrics.listen, Some("0.0.0.0:9464".parse().unwrap()));
    }

    #[test]
    fn a_bad_feed_is_named() {
        let text = "version: 1\nfeeds:\n  deb:\n    kind: debian\n    url: http://m/debian\n    suite: s\n";
        let error = Config::from_yaml(text, Path::new("x.yaml"), &HashMap::new()).unwrap_err();
        assert!(error.to_string().contains("feeds.deb"), "{error}");
        let text = "version: 1\nfeeds:\n  deb:\n    kind: debain\n";
        let error = Config::from_yaml(text, Path::new("x.yaml"), &HashMap::new()).unwrap_err();
        assert!(error.to_string().contains("debain"), "{error}");
    }
}
