//! A package found in an image: what the SBOM lists and what advisories are matched
//! against. Shared by [`crate::sbom`] (which finds them) and [`crate::vuln`] (which
//! matches them).

use serde::{Deserialize, Serialize};

/// Package ecosystems, named as OSV names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ecosystem {
    /// Debian packages (dpkg database).
    Debian,
    /// Ubuntu packages (dpkg database on an Ubuntu image).
    Ubuntu,
    /// Alpine packages (apk installed database).
    Alpine,
    /// Wolfi / Chainguard packages (apk installed database on Wolfi).
    Wolfi,
    /// Rust crates (`Cargo.lock`).
    #[serde(rename = "crates.io")]
    CratesIo,
    /// npm packages (`package-lock.json`).
    #[serde(rename = "npm")]
    Npm,
    /// Python packages (`requirements.txt`, `poetry.lock`).
    #[serde(rename = "PyPI")]
    PyPi,
    /// Go modules (`go.mod`).
    Go,
}

impl Ecosystem {
    /// The OSV ecosystem name (`Debian`, `crates.io`, `PyPI`, ...).
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Ubuntu => "Ubuntu",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Wolfi => "Wolfi",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Npm => "npm",
            Ecosystem::PyPi => "PyPI",
            Ecosystem::Go => "Go",
        }
    }

    /// Whether this is an operating-system package ecosystem.
    pub fn is_os(self) -> bool {
        matches!(
            self,
            Ecosystem::Debian | Ecosystem::Ubuntu | Ecosystem::Alpine | Ecosystem::Wolfi
        )
    }
}

/// The distribution an OS package belongs to (from `etc/os-release`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Distro {
    /// `ID` (`debian`, `alpine`, `wolfi`, `ubuntu`).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`), empty when the release has none (rolling).
    pub version_id: String,
}

/// One package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Component {
    /// Ecosystem.
    pub ecosystem: Ecosystem,
    /// Package name as installed (binary package name for Debian).
    pub name: String,
    /// Installed version, as the ecosystem writes it (`1:2.3-4`, `1.2.3-r0`, `0.4.1`).
    pub version: String,
    /// Source package name, where the ecosystem has one (Debian `Source:`, apk `o:`);
    /// Debian and Alpine advisories are written against it.
    pub source_name: Option<String>,
    /// Package architecture, where known.
    pub arch: Option<String>,
    /// Package URL (`pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12`).
    pub purl: String,
    /// SPDX license expressions or names, where known.
    pub licenses: Vec<String>,
    /// Digest of the layer it came from.
    pub layer: String,
    /// The file it was read from (`var/lib/dpkg/status`, `srv/app/Cargo.lock`).
    pub location: String,
    /// The OS distribution, for OS packages.
    pub distro: Option<Distro>,
}
