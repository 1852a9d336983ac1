//! Debian control files: RFC 822-style paragraphs, `Release`/`InRelease`, index checks.
//!
//! A [`Paragraph`] keeps its fields in file order (dpkg's `status` is written back in the
//! same order) and looks fields up case-insensitively. A multi-line value keeps its
//! continuation lines verbatim (leading space included), so writing a paragraph back
//! reproduces the input.

use sha2::{Digest, Sha256};

use super::error::{DebError, Result};

/// One control paragraph: ordered `Field: value` pairs with case-insensitive lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// An empty paragraph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name` (case-insensitive). A multi-line value holds its continuation
    /// lines after `\n`, each with its leading whitespace.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).map(|i| self.fields[i].1.as_str())
    }

    /// Whether the paragraph has a field `name` (case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Sets `name` to `value`: in place if the field exists, else appended at the end.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.position(name) {
            Some(i) => self.fields[i].1 = value,
            None => self.fields.push((name.to_owned(), value)),
        }
    }

    /// Sets `name` to `value` right after the field `after` (or at the end if `after` is
    /// absent); an existing `name` field is moved there.
    pub fn insert_after(&mut self, after: &str, name: &str, value: impl Into<String>) {
        self.remove(name);
        let at = self.position(after).map_or(self.fields.len(), |i| i + 1);
        self.fields.insert(at, (name.to_owned(), value.into()));
    }

    /// Removes `name` (case-insensitive) and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.position(name).map(|i| self.fields.remove(i).1)
    }

    /// The fields in order, names as spelled in the input.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the paragraph has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The paragraph as control text, each line ending in `\n`, no trailing blank line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.fields {
            out.push_str(name);
            out.push(':');
            let mut lines = value.split('\n');
            let first = lines.next().unwrap_or_default();
            if !first.is_empty() {
                out.push(' ');
                out.push_str(first);
            }
            out.push('\n');
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|(k, _)| k.eq_ignore_ascii_case(name))
    }
}

/// Parses control text into paragraphs. Paragraphs are separated by blank (or
/// whitespace-only) lines; lines starting with `#` are comments; a line starting with a
/// space or tab continues the previous field. `\r\n` line ends are accepted.
pub fn parse_paragraphs(text: &str) -> Result<Vec<Paragraph>> {
    let mut out = Vec::new();
    let mut current = Paragraph::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let err = |reason: &str| DebError::Control {
            line: n + 1,
            reason: reason.to_owned(),
        };
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            let Some(last) = current.fields.last_mut() else {
                return Err(err("continuation line without a field"));
            };
            last.1.push('\n');
            last.1.push_str(line.trim_end());
        } else {
            let Some((name, value)) = line.split_once(':') else {
                return Err(err("expected `field: value`"));
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(err("invalid field name"));
            }
            if current.contains(name) {
                return Err(err(&format!("duplicate field {name}")));
            }
            current.fields.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// Writes paragraphs as control text, separated by one blank line (the layout of
/// `/var/lib/dpkg/status`).
pub fn write_paragraphs(paragraphs: &[Paragraph]) -> String {
    paragraphs.iter().map(Paragraph::to_text).collect::<Vec<_>>().join("\n")
}

/// Returns the signed text of a PGP clear-signed message (an `InRelease` file): the lines
/// between the armor header block and `-----BEGIN PGP SIGNATURE-----`, with `- `
/// dash-escaping undone. The signature itself is not checked here.
pub fn strip_clearsign(text: &str) -> Result<String> {
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    if !lines.by_ref().any(|l| l == "-----BEGIN PGP SIGNED MESSAGE-----") {
        return Err(DebError::Armor("no pgp signed message header"));
    }
    // Armor headers (`Hash: SHA512`) up to the first blank line.
    if !lines.by_ref().any(|l| l.trim().is_empty()) {
        return Err(DebError::Armor("no blank line after the armor headers"));
    }
    let mut body = Vec::new();
    for line in lines {
        if line == "-----BEGIN PGP SIGNATURE-----" {
            let mut text = body.join("\n");
            text.push('\n');
            return Ok(text);
        }
        body.push(line.strip_prefix("- ").unwrap_or(line));
    }
    Err(DebError::Armor("no pgp signature block"))
}

/// One `SHA256:` entry of a `Release` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Path relative to the suite directory, e.g. `main/binary-amd64/Packages.gz`.
    pub path: String,
}

/// A parsed `Release` (or the signed body of an `InRelease`) file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `Suite`, e.g. `stable`.
    pub suite: Option<String>,
    /// `Codename`, e.g. `bookworm`.
    pub codename: Option<String>,
    /// `Architectures`, whitespace-separated in the file.
    pub architectures: Vec<String>,
    /// `Components`, whitespace-separated in the file.
    pub components: Vec<String>,
    /// `Date`, as written (RFC 2822).
    pub date: Option<String>,
    /// The `SHA256` file list.
    pub sha256: Vec<ReleaseFile>,
    /// The whole paragraph, for fields not lifted out above.
    pub paragraph: Paragraph,
}

impl Release {
    /// Parses a `Release` file, or an `InRelease` file (the clear-sign armor is stripped
    /// when present; the signature is not checked).
    pub fn parse(text: &str) -> Result<Self> {
        let body;
        let text = if text.trim_start().starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
            body = strip_clearsign(text)?;
            body.as_str()
        } else {
            text
        };
        let paragraph = parse_paragraphs(text)?
            .into_iter()
            .next()
            .ok_or(DebError::MissingField {
                context: "release".into(),
                field: "SHA256",
            })?;
        let words = |name: &str| -> Vec<String> {
            paragraph
                .get(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let field = |name: &str| paragraph.get(name).map(str::to_owned);
        let mut sha256 = Vec::new();
        for line in paragraph.get("SHA256").unwrap_or_default().lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                [] => {}
                [sum, size, path] => {
                    let bad = |value: &str| DebError::InvalidField {
                        context: "release".into(),
                        field: "SHA256",
                        value: value.to_owned(),
                    };
                    if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad(line));
                    }
                    sha256.push(ReleaseFile {
                        sha256: sum.to_ascii_lowercase(),
                        size: size.parse().map_err(|_| bad(line))?,
                        path: (*path).to_owned(),
                    });
                }
                _ => {
                    return Err(DebError::InvalidField {
                        context: "release".into(),
                        field: "SHA256",
                        value: line.to_owned(),
                    });
                }
            }
        }
        Ok(Self {
            suite: field("Suite"),
            codename: field("Codename"),
            architectures: words("Architectures"),
            components: words("Components"),
            date: field("Date"),
            sha256,
            paragraph,
        })
    }

    /// The `SHA256` entry for `path` (e.g. `main/binary-amd64/Packages.gz`).
    pub fn file(&self, path: &str) -> Option<&ReleaseFile> {
        self.sha256.iter().find(|f| f.path == path)
    }
}

/// Checks `bytes` against the size and sha256 the `Release` file lists for `path`, exactly
/// as fetched (so `Packages.gz` is checked compressed, `Packages` plain).
pub fn verify_index(release: &Release, path: &str, bytes: &[u8]) -> Result<()> {
    let entry = release
        .file(path)
        .ok_or_else(|| DebError::NotInRelease(path.to_owned()))?;
    let actual = bytes.len() as u64;
    if actual != entry.size {
        return Err(DebError::SizeMismatch {
            path: path.to_owned(),
            expected: entry.size,
            actual,
        });
    }
    let digest = hex::encode(Sha256::digest(bytes));
    if digest != entry.sha256 {
        return Err(DebError::DigestMismatch {
            path: path.to_owned(),
            expected: entry.sha256.clone(),
            actual: digest,
        });
    }
    Ok(())
}

/// Verifies an index file with [`verify_index`], then decompresses it by suffix (`.gz`,
/// `.xz`, plain) and returns its text.
pub fn read_verified_index(release: &Release, path: &str, bytes: &[u8]) -> Result<String> {
    verify_index(release, path, bytes)?;
    let plain = super::compress::decompress(path, bytes)?;
    String::from_utf8(plain).map_err(|_| DebError::Decompress {
        what: path.to_owned(),
        reason: "index is not utf-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: base-files
Status: install ok installed
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.
 .
 It also contains the banner.
Conffiles:
 /etc/debian_version 0123

# a comment
package: netbase
Version: 6.4
";

    #[test]
    fn parses_paragraphs_and_continuations() {
        let paras = parse_paragraphs(STATUS).unwrap();
        assert_eq!(paras.len(), 2);
        assert_eq!(paras[0].get("package"), Some("base-files"));
        assert_eq!(paras[0].get("VERSION"), Some("12.4+deb12u5"));
        assert_eq!(
            paras[0].get("Description"),
            Some(
                "Debian base system miscellaneous files\n This package contains the basic filesystem hierarchy.\n .\n It also contains the banner."
            )
        );
        assert_eq!(paras[0].get("Conffiles"), Some("\n /etc/debian_version 0123"));
        assert_eq!(paras[1].get("Package"), Some("netbase"));
        let names: Vec<_> = paras[0].fields().map(|(k, _)| k).collect();
        assert_eq!(names, ["Package", "Status", "Version", "Description", "Conffiles"]);
    }

    #[test]
    fn round_trips() {
        let paras = parse_paragraphs(STATUS).unwrap();
        let text = write_paragraphs(&paras);
        assert_eq!(parse_paragraphs(&text).unwrap(), paras);
        assert!(text.starts_with("Package: base-files\nStatus: install ok installed\n"));
        assert!(text.contains("Conffiles:\n /etc/debian_version 0123\n\npackage: netbase\n"));
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse_paragraphs(" leading continuation").is_err());
        assert!(parse_paragraphs("no colon here").is_err());
        assert!(parse_paragraphs("A: 1\na: 2").is_err());
        assert!(parse_paragraphs("bad name: 1").is_err());
        assert_eq!(parse_paragraphs("\n\n  \n").unwrap(), vec![]);
    }

    #[test]
    fn edits() {
        let mut p = parse_paragraphs("Package: a\nVersion: 1\n").unwrap().remove(0);
        p.insert_after("package", "Status", "install ok installed");
        p.set("version", "2");
        p.set("Architecture", "all");
        assert_eq!(
            p.to_text(),
            "Package: a\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n"
        );
        assert_eq!(p.remove("STATUS").as_deref(), Some("install ok installed"));
        assert_eq!(p.len(), 3);
    }

    fn release_text() -> String {
        let packages = b"Package: a\n";
        format!(
            "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 Feb 2024 09:04:58 UTC\n\
             Architectures: all amd64 arm64\nComponents: main contrib\nSHA256:\n \
             {} {} main/binary-amd64/Packages\n \
             {} 99 main/binary-amd64/Packages.gz\n",
            hex::encode(Sha256::digest(packages)),
            packages.len(),
            "ab".repeat(32)
        )
    }

    #[test]
    fn parses_release_and_verifies() {
        let r = Release::parse(&release_text()).unwrap();
        assert_eq!(r.suite.as_deref(), Some("stable"));
        assert_eq!(r.codename.as_deref(), Some("bookworm"));
        assert_eq!(r.architectures, ["all", "amd64", "arm64"]);
        assert_eq!(r.components, ["main", "contrib"]);
        assert_eq!(r.date.as_deref(), Some("Sat, 10 Feb 2024 09:04:58 UTC"));
        assert_eq!(r.sha256.len(), 2);
        verify_index(&r, "main/binary-amd64/Packages", b"Package: a\n").unwrap();
        assert_eq!(
            read_verified_index(&r, "main/binary-amd64/Packages", b"Package: a\n").unwrap(),
            "Package: a\n"
        );
        assert!(matches!(
            verify_index(&r, "main/binary-amd64/Packages", b"Package: b\n"),
            Err(DebError::DigestMismatch { .. })
        ));
        assert!(matches!(
            verify_index(&r, "main/binary-amd64/Packages", b"x"),
            Err(DebError::SizeMismatch { .. })
        ));
        assert!(matches!(
            verify_index(&r, "main/binary-arm64/Packages", b"x"),
            Err(DebError::NotInRelease(_))
        ));
        assert!(Release::parse("SHA256:\n zz 1 p\n").is_err());
    }

    #[test]
    fn parses_inrelease() {
        let body = release_text().replace("Origin: Debian", "- Origin: Debian");
        let signed = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{body}-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
        );
        assert_eq!(strip_clearsign(&signed).unwrap(), release_text());
        let r = Release::parse(&signed).unwrap();
        assert_eq!(r.paragraph.get("Origin"), Some("Debian"));
        assert_eq!(r.sha256.len(), 2);
        assert!(strip_clearsign("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nA: b\n").is_err());
        assert!(strip_clearsign("A: b\n").is_err());
    }
}
