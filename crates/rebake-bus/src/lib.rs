//! Rebake's NATS JetStream wiring: the only crate that talks to NATS.
//!
//! - [`Bus::connect`] connects and [`Bus::ensure`] creates (idempotently) the streams,
//!   consumers and KV buckets a service needs, all named by `rebake_events::Names`.
//! - [`Bus::publish`] sends one protobuf event as a CloudEvent in binary mode and returns only
//!   once JetStream acknowledged it (so callers can promise "nothing accepted is lost").
//! - [`run_consumer`] is the one pull loop: durable consumer, explicit ack, in-progress
//!   heartbeats while a handler works, `nak` with delay for retries, and after the last
//!   allowed delivery a copy to the dead-letter stream and `term`.
//! - [`Kv`] wraps a KV bucket with JSON values and compare-and-set updates.
//!
//! KV buckets are created by creating their backing stream directly: `create_key_value` of
//! async-nats 0.51 cannot parse the account info NATS 2.9 returns, and the stream layout is
//! the documented KV contract, which every server version reads.
#![forbid(unsafe_code)]

mod bus;
mod consumer;
mod error;
mod kv;

pub use async_nats;
pub use bus::{Bus, Need};
pub use consumer::{ConsumerSpec, Delivery, Outcome, run_consumer};
pub use error::{BusError, Result, error_chain};
pub use kv::Kv;
