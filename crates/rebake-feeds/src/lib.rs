//! Package feeds: building images from Debian and APK repositories.
//!
//! - [`deb`]: Debian control paragraphs (`Release`, `Packages`, `status`), dpkg version
//!   ordering, dependency resolution to a closed set, `.deb` unpacking, assembly of unpacked
//!   packages into one layer's entries with the dpkg database, and the machine's own apt
//!   sources (the `system` feed).
//! - [`apk`]: Alpine/Wolfi `APKINDEX`, apk version ordering, dependency resolution with
//!   `so:`/`cmd:` provides, `.apk` unpacking.
//! - [`fetch`]: the network side: feed configuration ([`fetch::FeedSource`]), verified
//!   snapshots (OpenPGP-signed `InRelease`, RSA-signed `APKINDEX`), cheap conditional polls,
//!   and checksum-verified package downloads with a disk cache ([`fetch::FeedClient`]).
//!
//! [`deb`] and [`apk`] are pure: bytes in, parsed values out (the only files they read are
//! apt's source lists, `deb::sources`). All network I/O, signature checking and caching
//! lives in [`fetch`].
#![forbid(unsafe_code)]

pub mod apk;
pub mod deb;
pub mod fetch;
pub mod rootfs;
