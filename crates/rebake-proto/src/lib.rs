//! Rebake's wire contracts, generated from `proto/` at build time.
//!
//! `proto/rebake/events/v1/` is the schema of every event on the bus; `proto/rebake/control/v1/`
//! is the gRPC control API. This crate only compiles and re-exports them: no logic lives here.
#![forbid(unsafe_code)]

/// Bus events (`rebake.events.v1`).
pub mod events {
    /// Version 1 of the event schemas.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/rebake.events.v1.rs"));
    }
}

/// Control API (`rebake.control.v1`).
pub mod control {
    /// Version 1 of the control API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/rebake.control.v1.rs"));
    }
}

/// Encoded `FileDescriptorSet` of every schema, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rebake_descriptor.bin"));
