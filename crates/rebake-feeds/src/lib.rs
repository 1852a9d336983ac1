//! Package feeds: the pure parts of building images from Debian and APK repositories.
//!
//! - [`deb`]: Debian control paragraphs (`Release`, `Packages`, `status`), dpkg version
//!   ordering, dependency resolution to a closed set, `.deb` unpacking.
//! - [`apk`]: Alpine/Wolfi `APKINDEX`, apk version ordering, dependency resolution with
//!   `so:`/`cmd:` provides, `.apk` unpacking.
//!
//! No I/O beyond what callers hand in: fetching, caching and signature checks of feeds are
//! the builder's and ingress's business.
#![forbid(unsafe_code)]

pub mod apk;
pub mod deb;
