//! Version ordering per ecosystem: dpkg, apk, SemVer (crates.io, npm), PEP 440 (PyPI)
//! and Go module versions.

use std::cmp::Ordering;

use rebake_feeds::apk::{apk_version_compare, apk_version_validate};
use rebake_feeds::deb::Version as DebVersion;

use super::pep440::Pep440Version;
use crate::component::Ecosystem;

/// Parses a SemVer version leniently: surrounding whitespace, a leading `v` or `=`, and
/// missing minor/patch numbers (`0.1` → `0.1.0`) are accepted; build metadata is
/// dropped (it takes no part in precedence).
pub fn parse_semver_lenient(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V', '=']).unwrap_or(text);
    let text = text.split_once('+').map_or(text, |(public, _)| public);
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    let numbers = core.split('.').count();
    if core.is_empty() || numbers > 3 || !core.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let mut padded = core.to_owned();
    for _ in numbers..3 {
        padded.push_str(".0");
    }
    if let Some(pre) = pre {
        padded.push('-');
        padded.push_str(pre);
    }
    let mut version = semver::Version::parse(&padded).ok()?;
    version.build = semver::BuildMetadata::EMPTY;
    Some(version)
}

/// Compares two SemVer versions (leniently parsed); `None` when either does not parse.
pub fn semver_compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_semver_lenient(a)?.cmp(&parse_semver_lenient(b)?))
}

/// Parses a Go module version: `v1.2.3`, `v2.0.0+incompatible`, pseudo-versions
/// (`v0.0.0-20210101000000-abcdef123456`, which order as SemVer pre-releases), and
/// the unprefixed forms OSV uses.
pub fn parse_go_version(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    let text = text.strip_suffix("+incompatible").unwrap_or(text);
    parse_semver_lenient(text)
}

/// Compares two Go module versions; `None` when either does not parse.
pub fn go_compare(a: &str, b: &str) -> Option<Ordering> {
    Some(parse_go_version(a)?.cmp(&parse_go_version(b)?))
}

/// Compares two dpkg versions; `None` when either is not a valid dpkg version.
pub fn dpkg_compare(a: &str, b: &str) -> Option<Ordering> {
    Some(DebVersion::parse(a).ok()?.cmp(&DebVersion::parse(b).ok()?))
}

/// Compares two apk versions; `None` when either is not a valid apk version.
pub fn apk_compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (a.trim(), b.trim());
    (apk_version_validate(a) && apk_version_validate(b)).then(|| apk_version_compare(a, b))
}

/// Compares two versions with `ecosystem`'s own ordering (the one OSV `ECOSYSTEM` ranges
/// use); `None` when either version is not valid there.
pub fn ecosystem_compare(ecosystem: Ecosystem, a: &str, b: &str) -> Option<Ordering> {
    match ecosystem {
        Ecosystem::Debian | Ecosystem::Ubuntu => dpkg_compare(a, b),
        Ecosystem::Alpine | Ecosystem::Wolfi => apk_compare(a, b),
        Ecosystem::CratesIo | Ecosystem::Npm => semver_compare(a, b),
        Ecosystem::PyPi => Some(Pep440Version::parse(a).ok()?.cmp(&Pep440Version::parse(b).ok()?)),
        Ecosystem::Go => go_compare(a, b),
    }
}

/// Whether two version strings denote the same version in `ecosystem` (falling back to
/// string equality when they do not parse), for OSV `versions[]` lists.
pub fn versions_equal(ecosystem: Ecosystem, a: &str, b: &str) -> bool {
    a.trim() == b.trim() || ecosystem_compare(ecosystem, a, b) == Some(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_semver() {
        assert_eq!(parse_semver_lenient("0.1"), semver::Version::parse("0.1.0").ok());
        assert_eq!(parse_semver_lenient("v1.2.3"), semver::Version::parse("1.2.3").ok());
        assert_eq!(parse_semver_lenient("1"), semver::Version::parse("1.0.0").ok());
        assert_eq!(
            parse_semver_lenient("1.2-rc.1+build.5"),
            semver::Version::parse("1.2.0-rc.1").ok()
        );
        assert_eq!(parse_semver_lenient("1.2.3.4"), None);
        assert_eq!(parse_semver_lenient("abc"), None);
        assert_eq!(semver_compare("1.0.0-alpha", "1.0.0"), Some(Ordering::Less));
        assert_eq!(semver_compare("1.0.0+a", "1.0.0+b"), Some(Ordering::Equal));
    }

    #[test]
    fn go_ordering() {
        let ordered = [
            "v0.0.0-20190101000000-aaaaaaaaaaaa",
            "v0.0.0-20200101000000-bbbbbbbbbbbb",
            "v0.1.0",
            "v0.1.1-0.20200601000000-cccccccccccc",
            "v0.1.1",
            "v1.9.0-rc.1",
            "v1.9.0",
            "v2.0.0+incompatible",
            "v2.1.0+incompatible",
            "3.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(go_compare(pair[0], pair[1]), Some(Ordering::Less), "{pair:?}");
        }
        assert_eq!(go_compare("v1.2.3", "1.2.3"), Some(Ordering::Equal));
        assert_eq!(go_compare("v2.0.0+incompatible", "2.0.0"), Some(Ordering::Equal));
    }

    #[test]
    fn os_orderings() {
        assert_eq!(
            dpkg_compare("1.2.1-2.2+wheezy2", "1.2.1-2.2+wheezy3"),
            Some(Ordering::Less)
        );
        assert_eq!(dpkg_compare("1:1.0", "2.0"), Some(Ordering::Greater));
        assert_eq!(dpkg_compare("1.0~rc1", "1.0"), Some(Ordering::Less));
        assert_eq!(apk_compare("3.1.4-r0", "3.1.4-r1"), Some(Ordering::Less));
        assert_eq!(apk_compare("1.1.1a-r0", "1.1.1-r9"), Some(Ordering::Greater));
        assert_eq!(apk_compare("not a version", "1.0"), None);
    }
}
