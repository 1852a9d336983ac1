//! Debian feeds: control paragraphs (`Release`/`InRelease`, `Packages`, `status`), dpkg
//! version ordering, dependency resolution to a closed set, and `.deb` unpacking.
//!
//! Everything here is a pure function of the bytes handed in: fetching and signature
//! checking of `InRelease` are the caller's business.

pub mod assemble;
pub mod compress;
pub mod control;
pub mod error;
pub mod index;
pub mod package;
pub mod resolve;
pub mod sources;
pub mod version;

pub use assemble::assemble;
pub use control::{
    Paragraph, Release, ReleaseFile, parse_paragraphs, read_verified_index, strip_clearsign, verify_index,
    write_paragraphs,
};
pub use error::{DebError, Result};
pub use index::{MultiArch, Op, Package, Provide, Relation, parse_packages, parse_provides, parse_relations};
pub use package::{ArMember, DataEntry, DebPackage, EntryKind, dpkg_status_entry, read_ar, read_deb};
pub use resolve::resolve;
pub use sources::{AptSource, default_architecture, parse_deb822, parse_one_line, system_sources};
pub use version::Version;
