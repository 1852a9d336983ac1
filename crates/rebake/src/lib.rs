//! The `rebake` binary's library half: wiring every service from one validated config.
//!
//! `rebake serve <service>` and `rebake up` both call [`start`]; the end-to-end tests call
//! it too, so there is one code path from config to running services. Each service gets its
//! own NATS connection, its slice of the config, and the shared shutdown token and task
//! tracker; listeners are bound here before anything starts, so a port clash fails start-up.
#![forbid(unsafe_code)]

pub mod cli;
pub mod keys;
pub mod rebuild_check;
pub mod verify;

use std::{collections::HashMap, net::SocketAddr, str::FromStr};

use anyhow::{Context, Result};
use rebake_bus::{Bus, Need};
use rebake_config::{Catalog, Config};
use rebake_events::Names;
use rebake_oci::Registry;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// One service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Webhooks in.
    Ingress,
    /// Planner.
    Resolver,
    /// Build workers.
    Builder,
    /// Scanner stage.
    Scanner,
    /// Signer/publisher.
    Signer,
    /// Control API.
    Control,
}

impl Service {
    /// Every service, in start order.
    pub const ALL: [Service; 6] = [
        Service::Control,
        Service::Signer,
        Service::Scanner,
        Service::Builder,
        Service::Resolver,
        Service::Ingress,
    ];

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Ingress => "ingress",
            Service::Resolver => "resolver",
            Service::Builder => "builder",
            Service::Scanner => "scanner",
            Service::Signer => "signer",
            Service::Control => "control",
        }
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Service::ALL
            .into_iter()
            .find(|service| service.name() == text)
            .ok_or_else(|| {
                format!(
                    "unknown service {text:?}, expected one of ingress, resolver, builder, scanner, signer, control"
                )
            })
    }
}

/// Addresses the started services listen on.
#[derive(Debug, Clone, Default)]
pub struct Started {
    /// Ingress HTTP address.
    pub ingress: Option<SocketAddr>,
    /// Control gRPC address.
    pub control: Option<SocketAddr>,
    /// Prometheus `GET /metrics` address (`metrics.listen`; `None` when off).
    pub metrics: Option<SocketAddr>,
}

async fn connect(config: &Config, service: Service) -> Result<Bus> {
    let names = Names::new(config.nats.prefix.clone()).context("invalid nats.prefix")?;
    Bus::connect(
        &config.nats.url,
        names,
        service.name(),
        config.queues.ack_wait,
        config.queues.max_deliver,
    )
    .await
    .with_context(|| format!("failed to connect {} to nats at {}", service.name(), config.nats.url))
}

/// The HTTP client for package feeds, caching packages under `cache_dir`.
fn feed_client(cache_dir: std::path::PathBuf) -> Result<rebake_feeds::fetch::FeedClient> {
    rebake_feeds::fetch::FeedClient::new(cache_dir.clone())
        .with_context(|| format!("failed to set up the feed client (cache {})", cache_dir.display()))
}

/// Reads every secret and file the chosen services need, before anything starts, so a
/// missing key fails start-up with a clear message.
struct Prepared {
    catalog: Option<Catalog>,
    ingress: Option<rebake_ingress::IngressSettings>,
    /// What the ingress polls (`None`: polling is off or the catalog is unreadable).
    poll_targets: Option<rebake_ingress::poll::PollTargets>,
    signer_key: Option<rebake_signer::SignerKey>,
    /// `registries.verify` with its keys loaded, for the builder.
    base_trust: Option<rebake_builder::trust::BaseTrust>,
    ingress_listener: Option<tokio::net::TcpListener>,
    control_listener: Option<tokio::net::TcpListener>,
    /// Control tokens (secrets read) and TLS identity.
    control: Option<rebake_control::ControlSettings>,
}

async fn prepare(services: &[Service], config: &Config, env: &HashMap<String, String>) -> Result<Prepared> {
    let mut prepared = Prepared {
        catalog: None,
        ingress: None,
        poll_targets: None,
        signer_key: None,
        base_trust: None,
        ingress_listener: None,
        control_listener: None,
        control: None,
    };
    if services.contains(&Service::Resolver) {
        let catalog = Catalog::load(&config.catalog_dir)
            .with_context(|| format!("failed to load the image catalog from {}", config.catalog_dir.display()))?;
        keys::check_catalog_keys(&catalog)?;
        prepared.catalog = Some(catalog);
    }
    if services.contains(&Service::Ingress) {
        let read = |secret: &Option<rebake_config::Secret>, key: &str| -> Result<Option<Vec<u8>>> {
            secret
                .as_ref()
                .map(|secret| secret.read(key, env))
                .transpose()
                .map_err(Into::into)
        };
        prepared.ingress = Some(rebake_ingress::IngressSettings {
            max_body_bytes: config.ingress.max_body_bytes,
            distribution_token: read(&config.ingress.distribution_token, "ingress.distribution.token")?,
            distribution_registry_host: config.ingress.distribution_registry_host.clone(),
            github_secret: read(&config.ingress.github_secret, "ingress.github.secret")?,
            sources: config
                .ingress
                .sources
                .iter()
                .map(|source| {
                    let secret = source
                        .secret
                        .read(&format!("ingress.sources.{}.secret", source.name), env)?;
                    anyhow::ensure!(
                        !secret.is_empty(),
                        "ingress.sources.{}.secret is empty: a source without a secret accepts nothing",
                        source.name
                    );
                    Ok(rebake_ingress::SourceSettings {
                        name: source.name.clone(),
                        kind: source.kind,
                        secret,
                        registry: source.registry.clone(),
                        resolve_via: source.resolve_via.clone(),
                        header: source.header.clone(),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            deliveries: None,
            tags: None,
            plain_http_registries: config.registries.plain_http.clone(),
            metrics: None,
        });
        prepared.poll_targets = poll_targets(config, prepared.catalog.as_ref());
        prepared.ingress_listener = Some(
            tokio::net::TcpListener::bind(config.ingress.listen)
                .await
                .with_context(|| format!("failed to listen on {} (ingress.listen)", config.ingress.listen))?,
        );
    }
    if services.contains(&Service::Signer) {
        let key = keys::signer_key(config, env)?;
        tracing::info!(key = ?key, "signing key loaded");
        prepared.signer_key = Some(key);
    }
    if services.contains(&Service::Builder) {
        let trust = keys::base_trust(config)?;
        if !trust.is_empty() {
            tracing::info!(rules = trust.len(), "base images are checked against registries.verify");
        }
        prepared.base_trust = Some(trust);
    }
    if services.contains(&Service::Control) {
        prepared.control_listener = Some(
            tokio::net::TcpListener::bind(config.control.listen)
                .await
                .with_context(|| format!("failed to listen on {} (control.listen)", config.control.listen))?,
        );
        prepared.control = Some(control_settings(config, env)?);
    }
    Ok(prepared)
}

/// The control API's tokens (secrets read, never logged) and TLS identity (`control.tls`).
fn control_settings(config: &Config, env: &HashMap<String, String>) -> Result<rebake_control::ControlSettings> {
    let mut tokens = Vec::new();
    for token in &config.control.tokens {
        let key = format!("control.tokens.{}.secret", token.name);
        let secret = String::from_utf8(token.secret.read(&key, env)?)
            .map_err(|_| anyhow::anyhow!("{key} is not UTF-8 text"))?
            .trim()
            .to_string();
        if secret.is_empty() {
            anyhow::bail!("{key} is empty");
        }
        tokens.push(rebake_control::Token {
            name: token.name.clone(),
            secret,
            role: match token.role {
                rebake_config::ControlRole::Read => rebake_control::Role::Read,
                rebake_config::ControlRole::Admin => rebake_control::Role::Admin,
            },
        });
    }
    let tls = match &config.control.tls {
        None => None,
        Some(tls) => Some(rebake_control::TlsIdentity {
            cert_pem: std::fs::read(&tls.cert)
                .with_context(|| format!("failed to read control.tls.cert {}", tls.cert.display()))?,
            key_pem: tls.key.read("control.tls.key", env)?,
        }),
    };
    if tokens.is_empty() && !config.control.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.control.listen, "control API without tokens on a non-loopback address: anyone who reaches it may trigger and pause builds");
    }
    Ok(rebake_control::ControlSettings { tokens, tls })
}

/// What the ingress polls: the catalog's upstream tags and branches, when `ingress.poll`
/// has an interval on. The ingress alone does not need the catalog for anything else, so
/// an unreadable catalog turns polling off (loudly) instead of failing start-up.
fn poll_targets(config: &Config, loaded: Option<&Catalog>) -> Option<rebake_ingress::poll::PollTargets> {
    let poll = &config.ingress.poll;
    if poll.interval.is_none() && poll.git_interval.is_none() {
        return None;
    }
    let targets = match loaded {
        Some(catalog) => rebake_ingress::poll::PollTargets::from_catalog(catalog),
        None => match Catalog::load(&config.catalog_dir) {
            Ok(catalog) => rebake_ingress::poll::PollTargets::from_catalog(&catalog),
            Err(error) => {
                tracing::error!(
                    catalog = %config.catalog_dir.display(),
                    error = %rebake_bus::error_chain(&error),
                    "upstream polling is off: the ingress cannot read the image catalog"
                );
                return None;
            }
        },
    };
    Some(targets)
}

/// The process' Prometheus registry (`rebake-metrics`), served on `metrics.listen`: every
/// process marks the services it runs; the ingress' webhook counters are registered into it;
/// the process running control derives the central metrics (builds, stages, exposure, queues,
/// images) from the bus. Binds before any service starts, so a port clash fails start-up.
async fn start_metrics(
    services: &[Service],
    config: &Config,
    prepared: &mut Prepared,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Option<SocketAddr>> {
    let Some(listen) = config.metrics.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen} (metrics.listen)"))?;
    let address = listener.local_addr()?;
    let metrics = rebake_metrics::ProcessMetrics::new();
    for service in services {
        metrics.service_running(service.name());
    }
    if let Some(settings) = prepared.ingress.as_mut() {
        let ingress = std::sync::Arc::new(rebake_ingress::metrics::IngressMetrics::new());
        metrics.register_with(|registry| ingress.register(registry));
        settings.metrics = Some(ingress);
    }
    if services.contains(&Service::Control) {
        let bus = connect(config, Service::Control).await?;
        rebake_metrics::central::start(bus, &metrics, shutdown.clone(), tracker)
            .await
            .context("failed to start the central metrics")?;
    }
    let token = shutdown.clone();
    tracker.spawn(async move {
        if let Err(error) = rebake_metrics::serve(listener, metrics, token).await {
            tracing::error!(error = %error, "metrics server stopped");
        }
    });
    Ok(Some(address))
}

/// Starts `services` against the configured NATS. Returns once every service is running;
/// they stop when `shutdown` is cancelled and `tracker` drains.
pub async fn start(
    services: &[Service],
    config: &Config,
    env: &HashMap<String, String>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<Started> {
    let mut prepared = prepare(services, config, env).await?;
    let registry =
        Registry::try_new(config.registries.plain_http.clone()).context("failed to set up the registry client")?;
    let mut started = Started::default();
    // Create everything once up front, so the order services start in does not matter.
    connect(config, Service::Control)
        .await?
        .ensure(&Need::all())
        .await
        .context("failed to create streams and buckets")?;
    started.metrics = start_metrics(services, config, &mut prepared, &shutdown, &tracker).await?;
    for service in Service::ALL.into_iter().filter(|service| services.contains(service)) {
        let bus = connect(config, service).await?;
        match service {
            Service::Control => {
                let listener = prepared
                    .control_listener
                    .take()
                    .expect("prepare binds the control listener");
                started.control = Some(listener.local_addr()?);
                let settings = prepared.control.take().expect("prepare reads the control settings");
                let token = shutdown.clone();
                tracker.spawn(async move {
                    if let Err(error) = rebake_control::serve(bus, listener, settings, token).await {
                        tracing::error!(error = %error, "control stopped");
                    }
                });
            }
            Service::Signer => {
                let key = prepared.signer_key.take().expect("prepare loads the signer key");
                rebake_signer::serve(
                    bus,
                    registry.clone(),
                    key,
                    config.signer.concurrency,
                    shutdown.clone(),
                    tracker.clone(),
                )
                .await
                .context("failed to start the signer")?;
            }
            Service::Scanner => {
                let settings = rebake_scanner::ScannerSettings {
                    max_image_size_bytes: config.scanner.max_image_size_bytes,
                    advisories: config.scanner.advisories.clone(),
                    advisory_poll_interval: config.scanner.advisory_poll_interval,
                    policy_dir: config.scanner.policy_dir.clone(),
                    disabled_policies: config.scanner.disabled_policies.clone(),
                    required_labels: config.scanner.required_labels.clone(),
                    allow_root: config.scanner.allow_root,
                };
                rebake_scanner::serve(bus, registry.clone(), settings, shutdown.clone(), tracker.clone())
                    .await
                    .context("failed to start the scanner")?;
            }
            Service::Builder => {
                let settings = rebake_builder::BuilderSettings {
                    workers: config.builder.workers,
                    work_dir: config.builder.work_dir.clone(),
                    staging_prefix: config.builder.staging_prefix.clone(),
                    base_trust: prepared.base_trust.take().expect("prepare loads the base trust rules"),
                };
                let feeds = feed_client(config.builder.package_cache.clone())?;
                rebake_builder::serve(
                    bus,
                    registry.clone(),
                    feeds,
                    settings,
                    shutdown.clone(),
                    tracker.clone(),
                )
                .await
                .context("failed to start the builder")?;
            }
            Service::Resolver => {
                let catalog = prepared.catalog.take().expect("prepare loads the catalog");
                let settings = rebake_resolver::ResolverSettings {
                    resync_interval: config.resolver.resync_interval,
                };
                // Indexes are held in memory; the disk cache is only for packages.
                let feeds = rebake_resolver::Feeds::new(
                    feed_client(config.builder.work_dir.join("feed-cache"))?,
                    config.feeds.clone(),
                );
                rebake_resolver::serve(
                    bus,
                    registry.clone(),
                    catalog,
                    feeds,
                    settings,
                    shutdown.clone(),
                    tracker.clone(),
                )
                .await
                .context("failed to start the resolver")?;
            }
            Service::Ingress => {
                let listener = prepared
                    .ingress_listener
                    .take()
                    .expect("prepare binds the ingress listener");
                started.ingress = Some(listener.local_addr()?);
                let settings = prepared.ingress.take().expect("prepare builds ingress settings");
                if !config.feeds.is_empty() {
                    let client = feed_client(config.builder.work_dir.join("feed-cache"))?;
                    let pollers = rebake_ingress::feeds::poll_feeds(
                        std::sync::Arc::new(bus.clone()),
                        client,
                        config.feeds.clone(),
                        config.ingress.feed_poll_interval,
                        shutdown.clone(),
                    );
                    tracker.spawn(pollers);
                }
                if let Some(targets) = prepared.poll_targets.take().filter(|targets| !targets.is_empty()) {
                    // A client of its own: the pollers' request budget counts its requests.
                    let poll_registry = Registry::try_new(config.registries.plain_http.clone())
                        .context("failed to set up the registry client for polling")?;
                    let pollers = rebake_ingress::poll::poll_upstreams(
                        std::sync::Arc::new(bus.clone()),
                        poll_registry,
                        targets,
                        config.ingress.poll.clone(),
                        std::sync::Arc::new(rebake_ingress::poll::PollStats::default()),
                        shutdown.clone(),
                    );
                    tracker.spawn(pollers);
                }
                let token = shutdown.clone();
                tracker.spawn(async move {
                    if let Err(error) = rebake_ingress::serve(bus, settings, listener, token).await {
                        tracing::error!(error = %error, "ingress stopped");
                    }
                });
            }
        }
    }
    Ok(started)
}
