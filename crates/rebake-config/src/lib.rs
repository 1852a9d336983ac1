//! Rebake's configuration: one YAML file for what Rebake does, a directory of image specs
//! for what it builds.
//!
//! Loading goes raw → validated: the file parses into serde types that reject unknown keys
//! (the error names the key, the file and the line), documented `REBAKE_*` environment
//! variables override single keys (the environment is passed in as a map, so tests never
//! touch the process environment), then [`Config::from_yaml`] turns strings into typed values
//! (durations, socket addresses) and checks them. The catalog ([`Catalog::load`]) reads one
//! image spec per file and rejects cycles, naming them.
//!
//! This crate reads files; it opens no sockets.
#![forbid(unsafe_code)]

mod catalog;
mod config;
mod duration;
mod error;
mod secret;
pub mod trust;
mod webhooks;

pub use catalog::{
    BaseVerifySpec, Catalog, DEFAULT_PLATFORM, ImageConfigSpec, ImageSpec, PackagesSpec, PublishSpec, SourceSpec,
    normalise_git_identity,
};
pub use config::{
    AdvisoryKind, AdvisorySource, BuilderConfig, Config, ControlConfig, ControlRole, ControlTls, ControlToken,
    ENV_OVERRIDES, FeedSource, IngressConfig, MetricsConfig, NatsConfig, QueueConfig, RegistriesConfig, ResolverConfig,
    ScannerConfig, SignerConfig, TelemetryConfig,
};
pub use duration::parse_duration;
pub use error::{ConfigError, Result};
pub use secret::Secret;
pub use trust::{BaseVerifyRule, RepositoryPattern};
pub use webhooks::{DEFAULT_REQUESTS_PER_MINUTE, PollConfig, RegistryPoll, WebhookKind, WebhookSource};
