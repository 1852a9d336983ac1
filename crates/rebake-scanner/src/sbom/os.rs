//! OS packages: the dpkg database (`var/lib/dpkg/status`, distroless `status.d/`) and the
//! apk installed database, with the distribution from `os-release`.

use std::collections::{BTreeMap, BTreeSet};

use rebake_feeds::apk::parse_apkindex;
use rebake_feeds::deb::control::{Paragraph, parse_paragraphs};

use super::layer_of;
use super::purl::purl;
use crate::component::{Component, Distro, Ecosystem};
use crate::view::ImageView;

const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d/";
const APK_INSTALLED: [&str; 2] = ["lib/apk/db/installed", "usr/lib/apk/db/installed"];
const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// The distribution from `etc/os-release` (or `usr/lib/os-release`): `ID` and `VERSION_ID`.
pub(crate) fn distro(view: &ImageView) -> Option<Distro> {
    OS_RELEASE.iter().find_map(|path| {
        let text = view.text(path)?;
        let fields = parse_os_release(&text);
        let id = fields.get("ID")?.to_ascii_lowercase();
        (!id.is_empty()).then(|| Distro {
            id,
            version_id: fields.get("VERSION_ID").cloned().unwrap_or_default(),
        })
    })
}

/// `KEY=value` lines of an os-release file, quotes removed.
fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_string(), value.replace("\\\"", "\"")))
        })
        .collect()
}

/// `pkg:…?arch=…&distro=<id>-<version_id>` qualifiers' distro value.
fn distro_qualifier(distro: Option<&Distro>) -> String {
    match distro {
        Some(d) if d.version_id.is_empty() => d.id.clone(),
        Some(d) => format!("{}-{}", d.id, d.version_id),
        None => String::new(),
    }
}

/// Debian packages: every paragraph of each `status.d/*` file (distroless), then the
/// installed paragraphs of `status`; one component per name and architecture (the
/// `status.d` entry wins, its layer being the layer of its own file).
pub(crate) fn dpkg_components(view: &ImageView, distro: Option<&Distro>) -> Vec<Component> {
    let mut sources: Vec<(&str, bool)> = view
        .contents
        .keys()
        .filter(|path| {
            path.strip_prefix(DPKG_STATUS_D)
                .is_some_and(|name| !name.is_empty() && !name.contains('/') && !name.ends_with(".md5sums"))
        })
        .map(|path| (path.as_str(), true))
        .collect();
    sources.push((DPKG_STATUS, false));
    let ecosystem = match distro.map(|d| d.id.as_str()) {
        Some("ubuntu") => Ecosystem::Ubuntu,
        _ => Ecosystem::Debian,
    };
    let namespace = distro.map_or("debian", |d| d.id.as_str());
    let distro_value = distro_qualifier(distro);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (path, from_status_d) in sources {
        let Some(text) = view.text(path) else { continue };
        let Ok(paragraphs) = parse_paragraphs(&text) else {
            tracing::debug!(path, "unparsable dpkg database, skipped");
            continue;
        };
        let layer = layer_of(view, path);
        for paragraph in paragraphs {
            if !is_installed(&paragraph, from_status_d) {
                continue;
            }
            let (Some(name), Some(version)) = (paragraph.get("Package"), paragraph.get("Version")) else {
                continue;
            };
            let arch = paragraph.get("Architecture").unwrap_or_default();
            if !seen.insert((name.to_string(), arch.to_string())) {
                continue;
            }
            let source_name = paragraph
                .get("Source")
                .and_then(|source| source.split_whitespace().next())
                .filter(|source| !source.is_empty())
                .map(str::to_string);
            out.push(Component {
                ecosystem,
                name: name.to_string(),
                version: version.to_string(),
                source_name,
                arch: (!arch.is_empty()).then(|| arch.to_string()),
                purl: purl(
                    "deb",
                    Some(namespace),
                    name,
                    version,
                    &[("arch", arch), ("distro", &distro_value)],
                ),
                licenses: dpkg_licenses(view, name),
                layer: layer.clone(),
                location: path.to_string(),
                distro: distro.cloned(),
            });
        }
    }
    out
}

/// Whether a dpkg paragraph is an installed package: its `Status` ends in `installed`
/// (`install ok installed`, also `hold ok installed`), not `config-files`, `half-installed`
/// and the like. Distroless `status.d` entries may have no `Status`; they count as installed.
fn is_installed(paragraph: &Paragraph, from_status_d: bool) -> bool {
    match paragraph.get("Status") {
        Some(status) => {
            let words: Vec<&str> = status.split_whitespace().collect();
            matches!(words.as_slice(), [_, "ok", "installed"])
        }
        None => from_status_d,
    }
}

/// License short names from `usr/share/doc/<pkg>/copyright` when it is machine-readable
/// (DEP-5: starts with a `Format:` field), sorted and deduplicated.
fn dpkg_licenses(view: &ImageView, package: &str) -> Vec<String> {
    let Some(text) = view.text(&format!("usr/share/doc/{package}/copyright")) else {
        return Vec::new();
    };
    let first = text.lines().find(|line| !line.trim().is_empty()).unwrap_or_default();
    if !first.starts_with("Format:") {
        return Vec::new();
    }
    let names: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("License:"))
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect();
    names.into_iter().collect()
}

/// apk packages from `lib/apk/db/installed` (or `usr/lib/apk/db/installed`).
pub(crate) fn apk_components(view: &ImageView, distro: Option<&Distro>) -> Vec<Component> {
    let Some(path) = APK_INSTALLED.iter().find(|path| view.content(path).is_some()) else {
        return Vec::new();
    };
    let Some(text) = view.text(path) else {
        return Vec::new();
    };
    let ecosystem = match distro.map(|d| d.id.as_str()) {
        Some("wolfi" | "chainguard") => Ecosystem::Wolfi,
        _ => Ecosystem::Alpine,
    };
    let namespace = distro.map_or("alpine", |d| d.id.as_str());
    let distro_value = distro_qualifier(distro);
    let layer = layer_of(view, path);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    // One block at a time, so that one block apk's index parser rejects does not lose the rest.
    for block in apk_blocks(&text) {
        let Ok(packages) = parse_apkindex(&block) else {
            tracing::debug!(path, "unparsable apk database entry, skipped");
            continue;
        };
        for package in packages {
            let version = package.version.to_string();
            if !seen.insert((package.name.clone(), package.arch.clone())) {
                continue;
            }
            out.push(Component {
                ecosystem,
                purl: purl(
                    "apk",
                    Some(namespace),
                    &package.name,
                    &version,
                    &[("arch", &package.arch), ("distro", &distro_value)],
                ),
                source_name: package.origin.filter(|origin| !origin.is_empty()),
                arch: (!package.arch.is_empty()).then(|| package.arch.clone()),
                licenses: package.license.into_iter().filter(|l| !l.trim().is_empty()).collect(),
                name: package.name,
                version,
                layer: layer.clone(),
                location: path.to_string(),
                distro: distro.cloned(),
            });
        }
    }
    out
}

/// The blank-line separated blocks of an apk database.
fn apk_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quotes() {
        let fields = parse_os_release("ID=debian\nVERSION_ID=\"12\"\nNAME='Debian'\n# c\n");
        assert_eq!(fields["ID"], "debian");
        assert_eq!(fields["VERSION_ID"], "12");
        assert_eq!(fields["NAME"], "Debian");
    }

    #[test]
    fn installed_statuses() {
        let paragraph = |status: &str| {
            let mut p = Paragraph::new();
            p.set("Status", status);
            p
        };
        assert!(is_installed(&paragraph("install ok installed"), false));
        assert!(is_installed(&paragraph("hold ok installed"), false));
        assert!(!is_installed(&paragraph("deinstall ok config-files"), false));
        assert!(!is_installed(&paragraph("install ok half-installed"), false));
        assert!(!is_installed(&Paragraph::new(), false));
        assert!(is_installed(&Paragraph::new(), true));
    }

    #[test]
    fn apk_blocks_split() {
        assert_eq!(apk_blocks("P:a\nV:1\n\n\nP:b\nV:2").len(), 2);
    }
}
