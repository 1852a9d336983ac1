//! OCI helpers for daemonless image assembly and registry I/O.
//!
//! Rebake never runs a container engine: the builder assembles images from layers it
//! writes itself and pushes them straight to a registry; the resolver asks registries what
//! tags point at; the scanner reads layers back. This crate is the part of each of those
//! that speaks OCI:
//!
//! - [`ImageRef`] parses fully qualified references (`registry/repo[:tag][@digest]`);
//!   media type constants and [`sha256_digest`] live beside it.
//! - [`types`]: serde structs for descriptors, manifests, indexes and image configs that
//!   round-trip unknown fields and serialise deterministically ([`to_json_bytes`]).
//! - [`build_layer`] writes reproducible gzip tar layers; [`inventory()`] merges layers
//!   (with OCI whiteouts) into a file list.
//! - [`Registry`]: resolve tags, probe them cheaply for pollers ([`Registry::probe`]:
//!   one `HEAD`, its own anonymous token flow, `429` reported as [`Probe::RateLimited`]),
//!   get/put manifests, get/push/mount blobs. Blob transfer and token negotiation use
//!   `oci-client`; manifests and mounts use raw requests on `reqwest` 0.13 (the release
//!   oci-client is built on), because oci-client hides the manifest `Content-Type`, can
//!   panic on a digest push without `Location`, and treats a refused mount (202) as an
//!   error — see the [`registry`] module docs.
//!
//! It deliberately does not: authenticate with credentials (access is anonymous), sign
//! anything, decide what to build, or stream blobs (they are held in memory — Rebake's
//! layers are small, and upstream base layers are mounted, not copied, whenever the
//! registry allows it).

#![forbid(unsafe_code)]

mod error;
pub mod inventory;
pub mod layer;
pub mod reference;
pub mod registry;
pub mod types;

pub use error::{OciError, Result};
pub use inventory::{FileInfo, FileKind, inventory, inventory_with_contents};
pub use layer::{BuiltLayer, LayerEntry, LayerEntryKind, build_layer};
pub use reference::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2, ImageRef, MANIFEST_MEDIA_TYPES,
    OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST, is_index_media_type, sha256_digest,
    validate_digest,
};
pub use registry::{Probe, RawManifest, Registry, Resolved, parse_retry_after};
pub use types::{
    Descriptor, EmptyObject, History, ImageConfig, ImageIndex, ImageManifest, Platform, RootFs, RuntimeConfig,
    from_json_bytes, select_platform, to_json_bytes,
};
