//! PEP 440 version parsing and ordering (Python packages).
//!
//! Accepts the normalisable forms of the specification: optional `v` prefix, epochs
//! (`1!2.0`), any number of release segments, pre-releases (`a`/`alpha`, `b`/`beta`,
//! `rc`/`c`/`pre`/`preview`, with optional separators and implicit number), post-releases
//! (`.post1`, `-1`, `rev`, `r`), dev-releases (`.dev0`) and local versions (`+ubuntu.1`).
//! Ordering follows the specification (as `packaging.version` implements it): release
//! segments compare with trailing zeros ignored; a dev-only release sorts before its
//! pre-releases, which sort before the final release, which sorts before post-releases;
//! local versions sort after the same public version.

use std::cmp::Ordering;
use std::fmt;

/// A parsed PEP 440 version.
#[derive(Debug, Clone)]
pub struct Pep440Version {
    epoch: u64,
    release: Vec<u64>,
    pre: Option<(PreKind, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalSegment>,
}

/// Pre-release kinds, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PreKind {
    Alpha,
    Beta,
    Rc,
}

/// A local version segment: strings sort before numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalSegment {
    Text(String),
    Number(u64),
}

/// The pre-release part of the sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PreKey {
    /// A dev release of a final version (`1.0.dev0`) sorts before `1.0a1`.
    DevOnly,
    Pre(PreKind, u64),
    Final,
}

/// The dev-release part of the sort key: a dev release sorts before the same version
/// without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DevKey {
    Dev(u64),
    NotDev,
}

/// An invalid PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep440Error(pub String);

impl fmt::Display for Pep440Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid PEP 440 version {:?}", self.0)
    }
}

impl std::error::Error for Pep440Error {}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat_sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        // Longest match first so `preview` wins over `pre` and `rev` over `r`.
        let mut best: Option<(usize, usize)> = None;
        for (index, word) in words.iter().enumerate() {
            if rest.starts_with(word.as_bytes()) && best.is_none_or(|(_, len)| word.len() > len) {
                best = Some((index, word.len()));
            }
        }
        let (index, len) = best?;
        self.i += len;
        Some(index)
    }
}

impl Pep440Version {
    /// Parses a version (case-insensitive, surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, Pep440Error> {
        let err = || Pep440Error(text.to_owned());
        let lower = text.trim().to_ascii_lowercase();
        let (public, local) = match lower.split_once('+') {
            Some((public, local)) => (public, Some(local)),
            None => (lower.as_str(), None),
        };
        let mut c = Cursor {
            s: public.as_bytes(),
            i: 0,
        };
        if c.peek() == Some(b'v') {
            c.i += 1;
        }
        let first = c.number().ok_or_else(err)?;
        let (epoch, mut release) = if c.peek() == Some(b'!') {
            c.i += 1;
            (first, vec![c.number().ok_or_else(err)?])
        } else {
            (0, vec![first])
        };
        while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
            c.i += 1;
            release.push(c.number().ok_or_else(err)?);
        }
        let mut version = Pep440Version {
            epoch,
            release,
            pre: None,
            post: None,
            dev: None,
            local: Vec::new(),
        };
        // Pre-release.
        let save = c.i;
        c.eat_sep();
        const PRE: [&str; 7] = ["a", "alpha", "b", "beta", "c", "rc", "pre"];
        const PREVIEW: [&str; 1] = ["preview"];
        let kind = if c.word(&PREVIEW).is_some() {
            Some(PreKind::Rc)
        } else {
            c.word(&PRE).map(|index| match index {
                0 | 1 => PreKind::Alpha,
                2 | 3 => PreKind::Beta,
                _ => PreKind::Rc,
            })
        };
        match kind {
            Some(kind) => {
                let before = c.i;
                c.eat_sep();
                let number = match c.number() {
                    Some(n) => n,
                    None => {
                        c.i = before;
                        0
                    }
                };
                version.pre = Some((kind, number));
            }
            None => c.i = save,
        }
        // Post-release: `-N` or `[sep](post|rev|r)[sep][N]`.
        let save = c.i;
        if c.peek() == Some(b'-') && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
            c.i += 1;
            version.post = c.number();
        } else {
            c.eat_sep();
            if c.word(&["post", "rev", "r"]).is_some() {
                let before = c.i;
                c.eat_sep();
                version.post = Some(match c.number() {
                    Some(n) => n,
                    None => {
                        c.i = before;
                        0
                    }
                });
            } else {
                c.i = save;
            }
        }
        // Dev-release.
        let save = c.i;
        c.eat_sep();
        if c.word(&["dev"]).is_some() {
            let before = c.i;
            c.eat_sep();
            version.dev = Some(match c.number() {
                Some(n) => n,
                None => {
                    c.i = before;
                    0
                }
            });
        } else {
            c.i = save;
        }
        if c.i != c.s.len() {
            return Err(err());
        }
        if let Some(local) = local {
            for segment in local.split(['.', '-', '_']) {
                if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(err());
                }
                version.local.push(match segment.parse::<u64>() {
                    Ok(n) if segment.bytes().all(|b| b.is_ascii_digit()) => LocalSegment::Number(n),
                    _ => LocalSegment::Text(segment.to_owned()),
                });
            }
        }
        Ok(version)
    }

    /// The epoch (`0` when absent).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The release segments as written (`[1, 2, 0]` for `1.2.0`).
    pub fn release(&self) -> &[u64] {
        &self.release
    }

    /// Whether this is a pre- or dev-release.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    fn trimmed_release(&self) -> &[u64] {
        let mut end = self.release.len();
        while end > 0 && self.release[end - 1] == 0 {
            end -= 1;
        }
        &self.release[..end]
    }

    fn pre_key(&self) -> PreKey {
        match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => PreKey::DevOnly,
            (Some((kind, n)), _, _) => PreKey::Pre(kind, n),
            _ => PreKey::Final,
        }
    }

    fn dev_key(&self) -> DevKey {
        self.dev.map_or(DevKey::NotDev, DevKey::Dev)
    }

    fn local_key(&self) -> Option<&[LocalSegment]> {
        if self.local.is_empty() { None } else { Some(&self.local) }
    }
}

impl Ord for Pep440Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| self.trimmed_release().cmp(other.trimmed_release()))
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            .then_with(|| self.post.cmp(&other.post))
            .then_with(|| self.dev_key().cmp(&other.dev_key()))
            .then_with(|| self.local_key().cmp(&other.local_key()))
    }
}

impl PartialOrd for Pep440Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pep440Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pep440Version {}

/// Compares two PEP 440 version strings; `None` when either does not parse.
pub fn pep440_compare(a: &str, b: &str) -> Option<Ordering> {
    Some(Pep440Version::parse(a).ok()?.cmp(&Pep440Version::parse(b).ok()?))
}

/// Normalises a Python package name per PEP 503: lowercase, runs of `-`, `_`, `.` become
/// one `-`.
pub fn normalize_pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for ch in name.trim().chars() {
        if matches!(ch, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(ch.to_lowercase());
            in_sep = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Pep440Version {
        Pep440Version::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ordering_follows_the_specification() {
        // The canonical example ordering from PEP 440 and `packaging`'s tests.
        let ordered = [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0b2-346",
            "1.0c1.dev456",
            "1.0c1",
            "1.0rc2",
            "1.0c3",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
            "1!0.1",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn normalisation_equalities() {
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1.0"), v("v1.0"));
        assert_eq!(v("1.0alpha1"), v("1.0a1"));
        assert_eq!(v("1.0-beta.2"), v("1.0b2"));
        assert_eq!(v("1.0preview3"), v("1.0rc3"));
        assert_eq!(v("1.0.c3"), v("1.0rc3"));
        assert_eq!(v("1.0-1"), v("1.0.post1"));
        assert_eq!(v("1.0rev1"), v("1.0.post1"));
        assert_eq!(v("1.0.post"), v("1.0.post0"));
        assert_eq!(v("1.0-dev"), v("1.0.dev0"));
        assert_eq!(v("1.0a"), v("1.0a0"));
        assert_eq!(v("1.0+Ubuntu-1"), v("1.0+ubuntu.1"));
        assert_eq!(v("0!1.0"), v("1.0"));
    }

    #[test]
    fn epochs_and_release_lengths() {
        assert!(v("1!1.0") > v("2.0"));
        assert!(v("2.10") > v("2.9"));
        assert!(v("1.0.1") > v("1.0"));
        assert!(v("1.0.post1") < v("1.0.1"));
        assert!(v("2.0rc1") < v("2.0"));
    }

    #[test]
    fn rejects_invalid() {
        for bad in ["", "abc", "1.0+", "1.0+a..b", "1.0 2", "1.0foo", "1.0-"] {
            assert!(Pep440Version::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(pep440_compare("1.0", "x"), None);
    }

    #[test]
    fn pep503_names() {
        assert_eq!(normalize_pypi_name("Friendly-Bard"), "friendly-bard");
        assert_eq!(normalize_pypi_name("FRIENDLY__bard"), "friendly-bard");
        assert_eq!(normalize_pypi_name("friendly.-_bard"), "friendly-bard");
        assert_eq!(normalize_pypi_name("Jinja2"), "jinja2");
    }
}
