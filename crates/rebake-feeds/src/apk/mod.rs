//! Alpine/Wolfi APK feeds: `APKINDEX` parsing, apk-tools version ordering, dependency
//! resolution with `so:`/`cmd:` provides, `.apk` unpacking, `/lib/apk/db/installed`
//! entries and RSA signature checks of signed gzip sections.
//!
//! Everything here is pure: callers hand in bytes and get parsed values back.

pub mod assemble;
pub mod error;
pub mod gzip;
pub mod index;
pub mod package;
pub mod resolve;
pub mod signature;
#[doc(hidden)]
pub mod testing;
pub mod version;

pub use error::{ApkError, Result};
pub use gzip::{GzipMember, split_gzip_members};
pub use index::{
    ApkDependency, ApkIndexArchive, ApkPackage, ApkProvide, VersionOp, parse_apkindex, read_index_archive,
};
pub use package::{ApkFile, DataEntry, DataKind, PkgInfo, installed_db_entry, parse_pkginfo, read_apk};
pub use resolve::resolve;
pub use signature::{SignatureAlgorithm, SignatureSection, verify_index_signature};
pub use version::{ApkVersion, apk_version_compare, apk_version_fuzzy_match, apk_version_validate};
