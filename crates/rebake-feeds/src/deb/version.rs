//! dpkg version ordering: `[epoch:]upstream[-revision]` compared as `dpkg --compare-versions`.
//!
//! Upstream and revision are compared with dpkg's `verrevcmp`: alternating non-digit and
//! digit runs; in non-digit runs `~` sorts before everything (even the end of the string),
//! letters before non-letters; digit runs compare numerically.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::error::{DebError, Result};

/// A validated dpkg version. Equality is dpkg's (`0:1.0 == 1.0`, `1.0 == 1.0-0`), so the
/// original text is kept apart in [`Version::as_str`].
#[derive(Debug, Clone)]
pub struct Version {
    raw: String,
    epoch: u32,
    upstream_start: usize,
    revision_start: Option<usize>,
}

impl Version {
    /// Parses and validates a version string (dpkg's `parseversion` rules: numeric epoch,
    /// non-empty upstream of `[A-Za-z0-9.+~:-]`, revision of `[A-Za-z0-9.+~]`).
    pub fn parse(text: &str) -> Result<Self> {
        let err = |reason| DebError::Version {
            version: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(err("empty version"));
        }
        if trimmed.contains(char::is_whitespace) {
            return Err(err("embedded whitespace"));
        }
        let (epoch, upstream_start) = match trimmed.split_once(':') {
            Some((e, _)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch is not a number"));
                }
                let epoch = e.parse().map_err(|_| err("epoch is too big"))?;
                (epoch, e.len() + 1)
            }
            None => (0, 0),
        };
        let rest = &trimmed[upstream_start..];
        let (upstream, revision_start) = match rest.rfind('-') {
            Some(i) => (&rest[..i], Some(upstream_start + i + 1)),
            None => (rest, None),
        };
        if upstream.is_empty() {
            return Err(err("empty upstream version"));
        }
        if !upstream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
        {
            return Err(err("invalid character in upstream version"));
        }
        if let Some(start) = revision_start {
            let revision = &trimmed[start..];
            if revision.is_empty() {
                return Err(err("empty revision"));
            }
            if !revision
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b))
            {
                return Err(err("invalid character in revision"));
            }
        }
        Ok(Self {
            raw: trimmed.to_owned(),
            epoch,
            upstream_start,
            revision_start,
        })
    }

    /// The version as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The epoch, `0` when absent.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream part.
    pub fn upstream(&self) -> &str {
        let end = self.revision_start.map_or(self.raw.len(), |r| r - 1);
        &self.raw[self.upstream_start..end]
    }

    /// The Debian revision, `""` when absent.
    pub fn revision(&self) -> &str {
        self.revision_start.map_or("", |r| &self.raw[r..])
    }
}

impl FromStr for Version {
    type Err = DebError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream(), other.upstream()))
            .then_with(|| verrevcmp(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// Sort weight of one character in a non-digit run (`None` is the end of the string).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` on one version part (upstream or revision).
pub fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn known_pairs() {
        use Ordering::*;
        let table = [
            ("1.0~rc1", "1.0", Less),
            ("1:0.9", "2.0", Greater),
            ("1.0-1", "1.0-1+b1", Less),
            ("2.30-2", "2.36-9+deb12u4", Less),
            ("0:1.0", "1.0", Equal),
            ("1.0a", "1.0b", Less),
            ("1.0", "1.0a", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~~a", "1.0~~", Greater),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0-0", Equal),
            ("1.00", "1.0", Equal),
            ("1.0+", "1.0a", Greater),
            ("1.0.1", "1.0a", Greater),
            ("10", "9", Greater),
            ("1.2.3", "1.2.3", Equal),
            ("1:1.0", "1.0", Greater),
            ("2:0", "1:99", Greater),
            ("12.4+deb12u5", "12.4+deb12u10", Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("1.0-1~bpo12+1", "1.0-1", Less),
            ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", Less),
            ("1:2.38.1-5+deb12u3", "1:2.38.1-5+b1", Greater),
            ("a", "b", Less),
            ("1-2-3", "1-2-4", Less),
            ("1:2:3-4", "1:2:3-4", Equal),
        ];
        for (a, b, want) in table {
            assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
            assert_eq!(v(b).cmp(&v(a)), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn parts() {
        let x = v("1:2.36-9+deb12u4");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (1, "2.36", "9+deb12u4"));
        let y = v("1.0-2-3");
        assert_eq!((y.epoch(), y.upstream(), y.revision()), (0, "1.0-2", "3"));
        let z = v("2.0");
        assert_eq!((z.upstream(), z.revision(), z.as_str()), ("2.0", "", "2.0"));
        assert_eq!(z.to_string(), "2.0");
        assert_eq!("3".parse::<Version>().unwrap(), v("0:3"));
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            " ",
            "1 0",
            ":1.0",
            "a:1.0",
            "1:",
            "1.0-",
            "-1",
            "1.0_1",
            "1.0-1_2",
            "99999999999:1",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
