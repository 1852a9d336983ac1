//! Package feeds: the pure parts of building images from Debian and APK repositories.
//!
//! - [`deb`]: Debian control paragraphs (`Release`, `Packages`, `status`), dpkg version
//!   ordering, dependency resolution to a closed set, `.deb` unpacking, assembly of unpacked
//!   packages into one layer's entries with the dpkg database, and the machine's own apt
//!   sources (the `system` feed).
//! - [`apk`]: Alpine/Wolfi `APKINDEX`, apk version ordering, dependency resolution with
//!   `so:`/`cmd:` provides, `.apk` unpacking.
//!
//! No network I/O: fetching, caching and signature checks of feeds are the builder's and
//! ingress's business. The only files read are apt's source lists (`deb::sources`).
#![forbid(unsafe_code)]

pub mod apk;
pub mod deb;
