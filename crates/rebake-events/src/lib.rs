//! The shape of Rebake's bus: names, identities and the CloudEvents envelope.
//!
//! Every subject, stream, consumer and KV bucket name is built here from the configured
//! prefix, so several installations (and parallel tests) share one NATS without seeing
//! each other; service code never writes a subject literal. Events are protobuf messages
//! from `rebake-proto` carried as CloudEvents in NATS binary mode: [`Envelope`] is the
//! `ce-*` header half, the body is the encoded message.
//!
//! This crate does no I/O: `rebake-bus` does the talking.
#![forbid(unsafe_code)]

mod envelope;
mod error;
mod ids;
mod names;
pub mod state;

pub use envelope::{Envelope, EventKind, deterministic_id, now_ms, rfc3339_ms};
pub use error::{EventsError, Result};
pub use ids::{BuildId, Digest, ImageName};
pub use names::{Bucket, Names, Queue};
pub use rebake_proto::events::v1 as pb;
