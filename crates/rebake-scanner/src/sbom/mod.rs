//! SBOM: finding packages in an image and writing SPDX 2.3 and CycloneDX 1.6 JSON.
//!
//! [`components`] reads the package databases (dpkg `status` and distroless `status.d/`,
//! apk `installed`) and language lock files (`Cargo.lock`, `package-lock.json`,
//! `requirements.txt`, `poetry.lock`, `go.mod`) kept in an [`ImageView`]. Both writers are
//! deterministic: the same components and [`SbomSubject`] give byte-identical documents
//! (no clock, no random ids).

mod cyclonedx;
mod lang;
mod license;
mod os;
mod purl;
mod spdx;
mod spdx_ids;

use crate::component::Component;
use crate::view::ImageView;

pub use cyclonedx::to_cyclonedx_json;
pub use license::{SpdxLicense, spdx_license};
pub use purl::{purl_encode, pypi_normalize};
pub use spdx::to_spdx_json;

/// The image an SBOM describes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SbomSubject {
    /// Image name (`registry.example/team/app`, a tag may follow).
    pub name: String,
    /// Manifest digest (`sha256:…`); document ids are derived from it.
    pub digest: String,
    /// Creation time written into the document (RFC 3339, `2024-05-01T12:00:00Z`), chosen
    /// by the caller so that documents are reproducible.
    pub created: String,
}

/// The version written as the SBOM tool's version.
pub(crate) const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every package found in `view`: OS packages (dpkg, apk) and language packages from lock
/// files anywhere in the image, sorted and without duplicates.
///
/// Unreadable or malformed files are skipped (best effort: a broken lock file must not hide
/// the rest of the image's packages).
pub fn components(view: &ImageView) -> Vec<Component> {
    let distro = os::distro(view);
    let mut out = Vec::new();
    out.extend(os::dpkg_components(view, distro.as_ref()));
    out.extend(os::apk_components(view, distro.as_ref()));
    out.extend(lang::lock_file_components(view));
    out.sort();
    out.dedup();
    out
}

/// The digest of the layer that last wrote `path` (empty when the path is not listed).
pub(crate) fn layer_of(view: &ImageView, path: &str) -> String {
    view.file(path)
        .map(|file| file.layer_digest.clone())
        .unwrap_or_default()
}
