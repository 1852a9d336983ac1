//! Network side of feeds: fetching, signature checking, polling and package downloads.
//!
//! - [`FeedSource`]: one feed as configured (`debian`, `apk`, `system`), with
//!   [`FeedSource::validate`] and the OCI platform mapping [`FeedSource::feed_arch`].
//! - [`FeedClient::snapshot`]: fetches a feed and verifies it end to end. Debian: the
//!   `InRelease` clear-signature (or `Release` + `Release.gpg`) against the configured
//!   OpenPGP keyring, then each `Packages` index against the size and sha256 the signed
//!   `Release` lists. apk: each `APKINDEX.tar.gz` against the RSA keys. The result is a
//!   [`FeedSnapshot`] that resolves package sets ([`FeedSnapshot::resolve`]) and lists
//!   versions ([`FeedSnapshot::versions`], [`FeedSnapshot::diff`]).
//! - [`FeedClient::poll`]: one conditional request per signed index file; an unchanged feed
//!   costs exactly that.
//! - [`FeedClient::fetch_package`]: downloads a [`ResolvedPackage`], checks its size and
//!   checksum, and keeps it in a content-addressed disk cache.
//!
//! Invariants: nothing unverified reaches a caller (no unsigned feed unless
//! `insecure_skip_signature: true` is configured, and then a warning is logged on every
//! fetch); crypto is pure Rust (rpgp, RustCrypto `rsa`); TLS is rustls.
//!
//! Not checked (apt does): `Valid-Until` in `Release`, key expiry and revocation.

mod client;
mod error;
mod openpgp;
mod repo;
mod snapshot;
mod source;

pub use client::{FeedClient, PollOutcome};
pub use error::{FetchError, Result};
pub use snapshot::{FeedSnapshot, IndexValidator, PackageChange, ResolvedPackage, diff_versions};
pub use source::{ApkFeed, DebianFeed, FeedSource, SystemFeed, apk_arch, debian_arch};
