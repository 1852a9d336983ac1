//! The "system" feed: the Debian/Ubuntu sources this machine's apt is configured with.
//!
//! Reads both apt source formats: one-line `sources.list` entries
//! (`deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://host/debian bookworm main`)
//! and deb822 `.sources` paragraphs (`Types:`, `URIs:`, `Suites:`, ...). Only binary (`deb`)
//! sources are kept; `deb-src` entries and disabled (`Enabled: no`) paragraphs are skipped.
//!
//! Unlike the rest of this module, [`system_sources`] reads files and
//! [`default_architecture`] runs `dpkg`: both are about this machine, not about a feed.

use std::path::Path;
use std::process::Command;

use super::control::parse_paragraphs;
use super::error::{DebError, Result};

/// One apt source: every URI × suite pair is a repository with the given components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// Repository base URIs, as written (e.g. `http://mirror.invalid/debian`).
    pub uris: Vec<String>,
    /// Suites (`bookworm`, `bookworm-updates`); one ending in `/` is a flat repository.
    pub suites: Vec<String>,
    /// Components (`main`, `contrib`); empty for a flat repository.
    pub components: Vec<String>,
    /// Architectures to fetch; empty means apt's default (see [`default_architecture`]).
    pub architectures: Vec<String>,
    /// `Signed-By`: keyring path(s) or fingerprint(s) as written, or an inline
    /// ASCII-armored key block (continuation lines unindented, ` .` turned into blank lines).
    pub signed_by: Option<String>,
    /// Whether apt uses the source. Disabled sources are skipped by the parsers, so
    /// everything they return is enabled.
    pub enabled: bool,
    /// Where the source came from (file path, or `path:line` for one-line entries).
    pub origin: String,
}

impl AptSource {
    /// The `InRelease` URL of every URI × suite pair, URIs outermost:
    /// `<uri>/dists/<suite>/InRelease`, or `<uri>/<suite>InRelease` for a flat repository
    /// (suite ending in `/`; `./` gives `<uri>/InRelease`). A trailing `/` on the URI is
    /// ignored.
    pub fn release_urls(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.uris.len() * self.suites.len());
        for uri in &self.uris {
            let base = uri.trim_end_matches('/');
            for suite in &self.suites {
                if suite.ends_with('/') {
                    let dir = suite.trim_start_matches("./").trim_start_matches('/');
                    out.push(format!("{base}/{dir}InRelease"));
                } else {
                    out.push(format!("{base}/dists/{suite}/InRelease"));
                }
            }
        }
        out
    }
}

fn malformed(origin: &str, line: usize, value: &str) -> DebError {
    DebError::InvalidField {
        context: format!("{origin}:{line}"),
        field: "apt source",
        value: value.to_owned(),
    }
}

/// Parses one-line `sources.list` text. Blank lines, `#` comments (also after an entry)
/// and `deb-src` lines are skipped. Options in `[...]` are accepted: `arch=` (and `arch+=`)
/// fills [`AptSource::architectures`], `signed-by=` fills [`AptSource::signed_by`],
/// `enabled=no` drops the entry, others (`trusted=`, `lang=`, ...) are ignored.
///
/// Each entry becomes one [`AptSource`] with one URI and one suite, its origin
/// `origin:line`. A malformed line is an error naming `origin:line`.
pub fn parse_one_line(text: &str, origin: &str) -> Result<Vec<AptSource>> {
    let mut out = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let err = |what: &str| malformed(origin, line_no, &format!("{what}: {}", raw.trim()));
        let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match kind {
            "deb" => {}
            "deb-src" => continue,
            _ => return Err(err("unknown type")),
        }
        let mut rest = rest.trim_start();
        let mut source = AptSource {
            uris: Vec::new(),
            suites: Vec::new(),
            components: Vec::new(),
            architectures: Vec::new(),
            signed_by: None,
            enabled: true,
            origin: format!("{origin}:{line_no}"),
        };
        if let Some(after) = rest.strip_prefix('[') {
            let Some((options, tail)) = after.split_once(']') else {
                return Err(err("unterminated [options]"));
            };
            for option in options.split_whitespace() {
                let Some((key, value)) = option.split_once('=') else {
                    return Err(err("option without `=`"));
                };
                let (key, op) = match key.strip_suffix(['+', '-']) {
                    Some(k) => (k, &key[k.len()..]),
                    None => (key, ""),
                };
                if key.is_empty() || value.is_empty() {
                    return Err(err("empty option"));
                }
                match (key, op) {
                    ("arch", "" | "+") => source
                        .architectures
                        .extend(value.split(',').filter(|a| !a.is_empty()).map(str::to_owned)),
                    ("signed-by", "") => source.signed_by = Some(value.to_owned()),
                    ("enabled", "") => source.enabled = parse_bool(value).ok_or_else(|| err("bad enabled="))?,
                    _ => {}
                }
            }
            rest = tail;
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            return Err(err("expected `deb [options] uri suite [component...]`"));
        };
        source.uris.push(uri.to_owned());
        source.suites.push(suite.to_owned());
        source.components.extend(words.map(str::to_owned));
        check_components(&source).map_err(err)?;
        if source.enabled {
            out.push(source);
        }
    }
    Ok(out)
}

/// Parses deb822 `.sources` text: one source per paragraph. Paragraphs whose `Types` lack
/// `deb` (only `deb-src`) or that have `Enabled: no` are skipped. `URIs` and `Suites` are
/// required, `Components` too unless every suite is flat; `Architectures` and `Signed-By`
/// (a path list or a multi-line inline key) are optional. Errors name `origin:line` of the
/// offending line or paragraph.
pub fn parse_deb822(text: &str, origin: &str) -> Result<Vec<AptSource>> {
    let paragraphs = parse_paragraphs(text).map_err(|e| match e {
        DebError::Control { line, reason } => malformed(origin, line, &reason),
        other => other,
    })?;
    let starts = paragraph_starts(text);
    let mut out = Vec::new();
    for (i, p) in paragraphs.iter().enumerate() {
        let line = starts.get(i).copied().unwrap_or(0);
        let context = format!("{origin}:{line}");
        let list = |name: &str| -> Vec<String> {
            p.get(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let types = list("Types");
        if types.is_empty() {
            return Err(DebError::MissingField {
                context,
                field: "Types",
            });
        }
        if let Some(t) = types.iter().find(|t| *t != "deb" && *t != "deb-src") {
            return Err(DebError::InvalidField {
                context,
                field: "Types",
                value: t.clone(),
            });
        }
        if !types.iter().any(|t| t == "deb") {
            continue;
        }
        let enabled = match p.get("Enabled") {
            None => true,
            Some(v) => parse_bool(v.trim()).ok_or_else(|| DebError::InvalidField {
                context: context.clone(),
                field: "Enabled",
                value: v.to_owned(),
            })?,
        };
        if !enabled {
            continue;
        }
        let source = AptSource {
            uris: list("URIs"),
            suites: list("Suites"),
            components: list("Components"),
            architectures: list("Architectures"),
            signed_by: p.get("Signed-By").map(unfold).filter(|s| !s.is_empty()),
            enabled,
            origin: context.clone(),
        };
        if source.uris.is_empty() {
            return Err(DebError::MissingField { context, field: "URIs" });
        }
        if source.suites.is_empty() {
            return Err(DebError::MissingField {
                context,
                field: "Suites",
            });
        }
        if let Err(what) = check_components(&source) {
            return Err(DebError::InvalidField {
                context,
                field: "Components",
                value: what.to_owned(),
            });
        }
        out.push(source);
    }
    Ok(out)
}

/// Every source apt on the machine rooted at `root` is configured with: first
/// `root/etc/apt/sources.list`, then `root/etc/apt/sources.list.d/*.list` and `*.sources`
/// in file-name order (as apt reads them). Missing files and directories are skipped;
/// other files in `sources.list.d` (`*.disabled`, `*.save`, ...) are ignored.
pub fn system_sources(root: &Path) -> Result<Vec<AptSource>> {
    let etc = root.join("etc/apt");
    let mut out = Vec::new();
    let main = etc.join("sources.list");
    if let Some(text) = read_optional(&main)? {
        out.extend(parse_one_line(&text, &main.display().to_string())?);
    }
    let dir = etc.join("sources.list.d");
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("list" | "sources")))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(&dir, &e)),
    };
    files.sort();
    for path in files {
        let Some(text) = read_optional(&path)? else { continue };
        let origin = path.display().to_string();
        if path.extension().is_some_and(|e| e == "sources") {
            out.extend(parse_deb822(&text, &origin)?);
        } else {
            out.extend(parse_one_line(&text, &origin)?);
        }
    }
    Ok(out)
}

/// This machine's dpkg architecture (`dpkg --print-architecture`), or `None` when dpkg
/// cannot be run or prints nothing.
pub fn default_architecture() -> Option<String> {
    let out = Command::new("dpkg").arg("--print-architecture").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let arch = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!arch.is_empty()).then_some(arch)
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| io_error(path, &"not UTF-8")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, &e)),
    }
}

fn io_error(path: &Path, e: &dyn std::fmt::Display) -> DebError {
    DebError::InvalidField {
        context: path.display().to_string(),
        field: "apt sources file",
        value: e.to_string(),
    }
}

/// apt's boolean spellings (`StringToBool`).
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "with" | "on" | "enable" | "1" => Some(true),
        "no" | "false" | "without" | "off" | "disable" | "0" => Some(false),
        _ => None,
    }
}

/// Flat suites (ending in `/`) take no components; other suites need at least one.
fn check_components(source: &AptSource) -> std::result::Result<(), &'static str> {
    let flat = source.suites.iter().filter(|s| s.ends_with('/')).count();
    if flat == 0 && source.components.is_empty() {
        Err("no components")
    } else if flat == source.suites.len() && !source.components.is_empty() {
        Err("components given for a flat repository")
    } else if flat != 0 && flat != source.suites.len() {
        Err("flat and non-flat suites mixed")
    } else {
        Ok(())
    }
}

/// A multi-line deb822 value as text: continuation lines lose their leading whitespace
/// and a lone `.` stands for an empty line (how inline `Signed-By` keys are written).
fn unfold(value: &str) -> String {
    let mut lines = value.split('\n');
    let mut out: Vec<&str> = Vec::new();
    if let Some(first) = lines.next().map(str::trim).filter(|f| !f.is_empty()) {
        out.push(first);
    }
    for line in lines {
        let line = line.trim();
        out.push(if line == "." { "" } else { line });
    }
    out.join("\n")
}

/// 1-based line number of each paragraph's first field line, segmented like
/// [`parse_paragraphs`] (blank lines separate, `#` lines are comments).
fn paragraph_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_paragraph = false;
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            in_paragraph = false;
        } else if !line.starts_with('#') && !in_paragraph {
            in_paragraph = true;
            starts.push(n + 1);
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_basic_options_comments_and_deb_src() {
        let text = "# a comment\n\
            \n\
            deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/x.gpg trusted=yes] http://mirror.invalid/debian bookworm main contrib\n\
            deb-src http://mirror.invalid/debian bookworm main\n\
            deb http://mirror.invalid/debian-security/ bookworm-security main # trailing\n\
            \tdeb [ arch=i386 ] http://mirror.invalid/x ./\r\n";
        let got = parse_one_line(text, "test.list").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].uris, ["http://mirror.invalid/debian"]);
        assert_eq!(got[0].suites, ["bookworm"]);
        assert_eq!(got[0].components, ["main", "contrib"]);
        assert_eq!(got[0].architectures, ["amd64", "arm64"]);
        assert_eq!(got[0].signed_by.as_deref(), Some("/usr/share/keyrings/x.gpg"));
        assert!(got[0].enabled);
        assert_eq!(got[0].origin, "test.list:3");
        assert_eq!(got[1].components, ["main"]);
        assert!(got[1].architectures.is_empty());
        assert_eq!(got[1].signed_by, None);
        assert_eq!(got[1].origin, "test.list:5");
        assert_eq!(got[2].suites, ["./"]);
        assert!(got[2].components.is_empty());
        assert_eq!(got[2].architectures, ["i386"]);
        assert_eq!(
            got[1].release_urls(),
            ["http://mirror.invalid/debian-security/dists/bookworm-security/InRelease"]
        );
        assert_eq!(got[2].release_urls(), ["http://mirror.invalid/x/InRelease"]);
    }

    #[test]
    fn one_line_enabled_no_is_skipped() {
        let got = parse_one_line("deb [enabled=no] http://mirror.invalid/d s main\n", "f").unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn one_line_malformed_lines_name_origin_and_line() {
        for (text, line) in [
            ("deb http://mirror.invalid/debian\n", 1),
            ("# ok\ndeb http://mirror.invalid/debian bookworm\n", 2),
            ("\n\ndeb [arch=amd64 http://mirror.invalid/debian bookworm main\n", 3),
            ("deb [arch] http://mirror.invalid/debian bookworm main\n", 1),
            ("rpm http://mirror.invalid/debian bookworm main\n", 1),
            ("deb http://mirror.invalid/debian flat/ main\n", 1),
            ("deb\n", 1),
        ] {
            let err = parse_one_line(text, "/etc/apt/x.list").unwrap_err().to_string();
            assert!(err.starts_with(&format!("/etc/apt/x.list:{line}:")), "{text:?}: {err}");
        }
    }

    #[test]
    fn deb822_fields_multiple_uris_suites_and_skips() {
        let text = "\
Types: deb deb-src
# a comment inside
URIs: http://mirror.invalid/debian http://mirror2.invalid/debian/
Suites: bookworm bookworm-updates
Components: main
 contrib
Architectures: amd64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.invalid/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.invalid/disabled
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://mirror.invalid/flat
Suites: sub/
Enabled: yes
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGNotARealKey
 =abcd
 -----END PGP PUBLIC KEY BLOCK-----
";
        let got = parse_deb822(text, "x.sources").unwrap();
        assert_eq!(got.len(), 2);
        let a = &got[0];
        assert_eq!(
            a.uris,
            ["http://mirror.invalid/debian", "http://mirror2.invalid/debian/"]
        );
        assert_eq!(a.suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(a.components, ["main", "contrib"]);
        assert_eq!(a.architectures, ["amd64"]);
        assert_eq!(
            a.signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        assert_eq!(a.origin, "x.sources:1");
        assert_eq!(
            a.release_urls(),
            [
                "http://mirror.invalid/debian/dists/bookworm/InRelease",
                "http://mirror.invalid/debian/dists/bookworm-updates/InRelease",
                "http://mirror2.invalid/debian/dists/bookworm/InRelease",
                "http://mirror2.invalid/debian/dists/bookworm-updates/InRelease",
            ]
        );
        let b = &got[1];
        assert_eq!(b.origin, "x.sources:21");
        assert!(b.components.is_empty());
        assert_eq!(
            b.signed_by.as_deref(),
            Some(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGNotARealKey\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----"
            )
        );
        assert_eq!(b.release_urls(), ["http://mirror.invalid/flat/sub/InRelease"]);
    }

    #[test]
    fn deb822_errors_name_origin_and_line() {
        for (text, line) in [
            ("Types: deb\nSuites: bookworm\nComponents: main\n", 1),
            (
                "Types: deb\nURIs: http://mirror.invalid/d\nSuites: s\nComponents: main\n\n\nTypes: deb\nURIs: http://mirror.invalid/d\nComponents: main\n",
                7,
            ),
            ("URIs: http://mirror.invalid/d\nSuites: s\nComponents: main\n", 1),
            (
                "Types: rpm\nURIs: http://mirror.invalid/d\nSuites: s\nComponents: main\n",
                1,
            ),
            ("Types: deb\nURIs: http://mirror.invalid/d\nSuites: s\n", 1),
            (
                "Types: deb\nURIs: http://mirror.invalid/d\nSuites: s\nComponents: main\nEnabled: maybe\n",
                1,
            ),
            ("Types: deb\nURIs http://mirror.invalid/d\n", 2),
        ] {
            let err = parse_deb822(text, "/etc/apt/y.sources").unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("/etc/apt/y.sources:{line}:")),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn release_urls_trailing_slash_and_flat() {
        let s = AptSource {
            uris: vec!["http://mirror.invalid/debian/".into()],
            suites: vec!["bookworm".into(), "./".into(), "pool/".into()],
            components: vec![],
            architectures: vec![],
            signed_by: None,
            enabled: true,
            origin: "t".into(),
        };
        assert_eq!(
            s.release_urls(),
            [
                "http://mirror.invalid/debian/dists/bookworm/InRelease",
                "http://mirror.invalid/debian/InRelease",
                "http://mirror.invalid/debian/pool/InRelease",
            ]
        );
    }
}
