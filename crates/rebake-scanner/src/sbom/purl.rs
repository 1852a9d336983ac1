//! Package URLs (<https://github.com/package-url/purl-spec>).

use std::fmt::Write as _;

/// Percent-encodes one purl component (namespace segment, name, version or qualifier
/// value): every byte outside `A-Z a-z 0-9 . - _ ~` becomes `%XX` (so `:` → `%3A`,
/// `+` → `%2B`, `@` → `%40`, while `~` stays).
pub fn purl_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Normalises a Python distribution name as PEP 503 does: lowercase, every run of `-`,
/// `_` and `.` replaced by one `-`.
pub fn pypi_normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator = false;
    for ch in name.trim().chars() {
        if matches!(ch, '-' | '_' | '.') {
            if !in_separator {
                out.push('-');
            }
            in_separator = true;
        } else {
            out.extend(ch.to_lowercase());
            in_separator = false;
        }
    }
    out
}

/// `pkg:<type>/<namespace>/<name>@<version>?<qualifiers>`: `namespace` is split on `/` and
/// each segment encoded; qualifiers are written in the given order (callers pass them
/// sorted by key, as the spec's canonical form wants) and empty values are left out.
pub(crate) fn purl(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{kind}/");
    if let Some(namespace) = namespace.filter(|namespace| !namespace.is_empty()) {
        for segment in namespace.split('/').filter(|segment| !segment.is_empty()) {
            out.push_str(&purl_encode(segment));
            out.push('/');
        }
    }
    out.push_str(&purl_encode(name));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&purl_encode(version));
    }
    let mut separator = '?';
    for (key, value) in qualifiers.iter().filter(|(_, value)| !value.is_empty()) {
        out.push(separator);
        out.push_str(key);
        out.push('=');
        out.push_str(&purl_encode(value));
        separator = '&';
    }
    out
}

/// A purl for a name that may hold a namespace (`@scope/name` for npm, `github.com/a/b`
/// for Go): everything up to the last `/` is the namespace.
pub(crate) fn purl_with_path(kind: &str, path: &str, version: &str) -> String {
    match path.rsplit_once('/') {
        Some((namespace, name)) => purl(kind, Some(namespace), name, version, &[]),
        None => purl(kind, None, path, version, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_spec() {
        assert_eq!(purl_encode("1:1.2.13.dfsg-1"), "1%3A1.2.13.dfsg-1");
        assert_eq!(purl_encode("2.36-9+deb12u4"), "2.36-9%2Bdeb12u4");
        assert_eq!(purl_encode("3.0.11-1~deb12u2"), "3.0.11-1~deb12u2");
        assert_eq!(purl_encode("@types"), "%40types");
    }

    #[test]
    fn builds_purls() {
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "zlib1g",
                "1:1.2.13.dfsg-1",
                &[("arch", "amd64"), ("distro", "debian-12")]
            ),
            "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl_with_path("npm", "@babel/core", "7.24.0"),
            "pkg:npm/%40babel/core@7.24.0"
        );
        assert_eq!(
            purl_with_path("golang", "github.com/pkg/errors", "v0.9.1"),
            "pkg:golang/github.com/pkg/errors@v0.9.1"
        );
        assert_eq!(
            purl(
                "apk",
                Some("alpine"),
                "musl",
                "1.2.4-r2",
                &[("arch", ""), ("distro", "")]
            ),
            "pkg:apk/alpine/musl@1.2.4-r2"
        );
    }

    #[test]
    fn normalizes_pypi_names() {
        assert_eq!(pypi_normalize("Django"), "django");
        assert_eq!(pypi_normalize("zope.interface"), "zope-interface");
        assert_eq!(pypi_normalize("Foo__Bar-._baz"), "foo-bar-baz");
    }
}
