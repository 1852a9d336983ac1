//! apk-tools version ordering (Gentoo-style `{digit}{.digit}...{letter}{_suf{#}}...{-r#}`).
//!
//! This is a port of apk-tools 2.x `version.c`: numeric components compare numerically,
//! except that a component after a `.` with leading zeros is compared as "fraction-like"
//! (`1.01 < 1.1`, `1.0 > 1.00`); an optional single lowercase letter follows; suffixes
//! order `_alpha < _beta < _pre < _rc < (none) < _cvs < _svn < _git < _hg < _p`, each with
//! an optional number; a `-rN` revision comes last.
//!
//! One deliberate difference from the old `version.c` tokenizer: after a run of leading
//! zeros that is not followed by more digits, no empty numeric token is produced, so
//! `1.0_alpha < 1.0` (as current apk-tools orders it) rather than `>`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::error::{ApkError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tok {
    Invalid,
    DigitOrZero,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

const PRE_SUFFIXES: [&[u8]; 4] = [b"alpha", b"beta", b"pre", b"rc"];
const POST_SUFFIXES: [&[u8]; 5] = [b"cvs", b"svn", b"git", b"hg", b"p"];

fn next_token(t: &mut Tok, b: &mut &[u8]) {
    let mut n = Tok::Invalid;
    if b.is_empty() || b[0] == 0 {
        n = Tok::End;
    } else if matches!(*t, Tok::Digit | Tok::DigitOrZero) && b[0].is_ascii_lowercase() {
        n = Tok::Letter;
    } else if *t == Tok::Letter && b[0].is_ascii_digit() {
        n = Tok::Digit;
    } else if *t == Tok::Suffix && b[0].is_ascii_digit() {
        n = Tok::SuffixNo;
    } else {
        match b[0] {
            b'.' => n = Tok::DigitOrZero,
            b'_' => n = Tok::Suffix,
            b'-' if b.get(1) == Some(&b'r') => {
                n = Tok::RevisionNo;
                *b = &b[1..];
            }
            _ => {}
        }
        *b = &b[1..];
    }
    if n < *t
        && !((n == Tok::DigitOrZero && *t == Tok::Digit)
            || (n == Tok::Suffix && *t == Tok::SuffixNo)
            || (n == Tok::Digit && *t == Tok::Letter))
    {
        n = Tok::Invalid;
    }
    *t = n;
}

fn digits(b: &[u8]) -> (i64, usize) {
    let mut v: i64 = 0;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add(i64::from(b[i] - b'0'));
        i += 1;
    }
    (v, i)
}

fn match_suffix(b: &[u8], table: &[&[u8]]) -> Option<(usize, usize)> {
    table
        .iter()
        .position(|s| b.starts_with(s))
        .map(|idx| (idx, table[idx].len()))
}

fn get_token(t: &mut Tok, b: &mut &[u8]) -> i64 {
    if b.is_empty() {
        *t = Tok::End;
        return 0;
    }
    let mut nt = Tok::Invalid;
    let (v, i) = match *t {
        Tok::DigitOrZero if b[0] == b'0' => {
            let zeros = b.iter().take_while(|&&c| c == b'0').count();
            // More digits after the zeros form their own numeric token; anything else
            // (suffix, letter, revision) is tokenized normally.
            if b.get(zeros).is_some_and(u8::is_ascii_digit) {
                nt = Tok::Digit;
            }
            (-(zeros as i64), zeros)
        }
        Tok::DigitOrZero | Tok::Digit | Tok::SuffixNo | Tok::RevisionNo => digits(b),
        Tok::Letter => (i64::from(b[0]), 1),
        Tok::Suffix => {
            if let Some((idx, len)) = match_suffix(b, &PRE_SUFFIXES) {
                (idx as i64 - PRE_SUFFIXES.len() as i64, len)
            } else if let Some((idx, len)) = match_suffix(b, &POST_SUFFIXES) {
                (idx as i64, len)
            } else {
                *t = Tok::Invalid;
                return -1;
            }
        }
        Tok::Invalid | Tok::End => {
            *t = Tok::Invalid;
            return -1;
        }
    };
    *b = &b[i..];
    if b.is_empty() {
        *t = Tok::End;
    } else if nt != Tok::Invalid {
        *t = nt;
    } else {
        next_token(t, b);
    }
    v
}

/// Compares two version strings exactly like apk-tools' `apk_version_compare`.
///
/// Works on any strings (invalid versions get apk-tools' best-effort ordering); use
/// [`ApkVersion`] to reject invalid ones up front.
pub fn apk_version_compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let (mut at, mut bt) = (Tok::Digit, Tok::Digit);
    let (mut av, mut bv) = (0i64, 0i64);
    while at == bt && at != Tok::End && at != Tok::Invalid && av == bv {
        av = get_token(&mut at, &mut a);
        bv = get_token(&mut bt, &mut b);
    }
    match av.cmp(&bv) {
        Ordering::Equal => {}
        other => return other,
    }
    if at == bt {
        return Ordering::Equal;
    }
    // Leading components are equal: the longer version is greater unless what follows
    // is a pre-release suffix.
    let mut tt = at;
    if at == Tok::Suffix && get_token(&mut tt, &mut a) < 0 {
        return Ordering::Less;
    }
    let mut tt = bt;
    if bt == Tok::Suffix && get_token(&mut tt, &mut b) < 0 {
        return Ordering::Greater;
    }
    // A later token kind (e.g. end of string) sorts before an earlier one.
    bt.cmp(&at)
}

/// Fuzzy (`~`) match: true when every token of `prefix` equals the corresponding token
/// of `version`, e.g. `1.2.3-r0` matches `1.2` and `1.2.3`, but not `1.20` or `1.3`.
///
/// Stricter than apk-tools (which also treats a longer `prefix` as matching); the
/// constraint's tokens must all be consumed.
pub fn apk_version_fuzzy_match(version: &str, prefix: &str) -> bool {
    let (mut a, mut b) = (version.as_bytes(), prefix.as_bytes());
    let (mut at, mut bt) = (Tok::Digit, Tok::Digit);
    loop {
        if bt == Tok::End {
            return true;
        }
        if bt == Tok::Invalid || at != bt {
            return false;
        }
        let av = get_token(&mut at, &mut a);
        let bv = get_token(&mut bt, &mut b);
        if av != bv {
            return false;
        }
    }
}

/// True when `v` is a valid apk version: apk-tools' grammar, additionally requiring a
/// leading digit and a number after every `.` and `-r`.
pub fn apk_version_validate(v: &str) -> bool {
    if !v.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    // Every `.` and `-r` must be followed by a number (apk-tools lets `1..2` through).
    let bytes = v.as_bytes();
    let empty_number = bytes.iter().enumerate().any(|(i, &c)| {
        let next = match c {
            b'.' => bytes.get(i + 1),
            b'-' => bytes.get(i + 2),
            _ => return false,
        };
        !next.is_some_and(u8::is_ascii_digit)
    });
    if empty_number {
        return false;
    }
    let mut b = bytes;
    let mut t = Tok::Digit;
    while t != Tok::End && t != Tok::Invalid {
        get_token(&mut t, &mut b);
    }
    t == Tok::End
}

/// A validated apk version string, ordered by [`apk_version_compare`].
///
/// Equality is the ordering's equality (apk-tools semantics), which for valid versions
/// coincides with string equality in practice.
#[derive(Clone, Debug)]
pub struct ApkVersion(String);

impl ApkVersion {
    /// Validates and wraps `v`.
    pub fn parse(v: &str) -> Result<Self> {
        if apk_version_validate(v) {
            Ok(Self(v.to_owned()))
        } else {
            Err(ApkError::InvalidVersion(v.to_owned()))
        }
    }

    /// The version `0` (a placeholder for builders).
    pub(crate) fn zero() -> Self {
        Self("0".to_owned())
    }

    /// The version text as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `~` constraint: whether this version starts with the tokens of `prefix`.
    pub fn fuzzy_matches(&self, prefix: &ApkVersion) -> bool {
        apk_version_fuzzy_match(&self.0, &prefix.0)
    }
}

impl FromStr for ApkVersion {
    type Err = ApkError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for ApkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        apk_version_compare(&self.0, &other.0)
    }
}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ApkVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ApkVersion {}

#[cfg(test)]
mod tests {
    use super::*;

    // A selection of pairs from apk-tools' test/version.data plus the brief's examples.
    const PAIRS: &[(&str, char, &str)] = &[
        ("1.0_alpha", '<', "1.0"),
        ("1.0", '<', "1.0_p1"),
        ("1.0-r1", '<', "1.0-r2"),
        ("1.0a", '<', "1.0b"),
        ("1.2", '<', "1.10"),
        ("1.0_rc1", '<', "1.0"),
        ("0.1", '<', "1"),
        ("2.34", '>', "0.1.0_alpha"),
        ("0.1.0_alpha", '=', "0.1.0_alpha"),
        ("0.1.0_alpha2", '>', "0.1.0_alpha"),
        ("1.1", '>', "1.1_alpha1"),
        ("1.2.1", '>', "1.2"),
        ("1.3_alpha", '<', "1.3_alpha2"),
        ("0.8_beta1", '<', "0.8_beta2"),
        ("2.3.0b-r1", '<', "2.3.0b-r2"),
        ("0.12.3", '>', "0.12"),
        ("1.2.11", '<', "1.2.12.1"),
        ("0.2.0-r1", '<', "3.1_p16"),
        ("3.1_p16", '<', "3.1_p17"),
        ("3.1_p17", '>', "1.06-r6"),
        ("1.06-r6", '<', "006"),
        ("006", '>', "1.0.0"),
        ("1.2.2-r1", '>', "1.2.2"),
        ("2.59", '<', "20050718-r1"),
        ("3.9.8-r5", '>', "2.01.01_alpha10"),
        ("1.39", '>', "1.00_beta2"),
        ("1.0.3-r2", '<', "1.3.4-r3"),
        ("7.15.1-r1", '>', "1.02"),
        ("4.2.52_p2-r1", '<', "4.2.52_p4-r2"),
        ("2.8", '<', "2.20.1"),
        ("20060720", '>', "3.0.20060720"),
        ("2.5.1-r8", '<', "2.5.1a-r1"),
        ("1.3.5-r10", '>', "1.3.5-r8"),
        ("20040401", '>', "2.0.0_rc3-r1"),
        ("3.0.0-r2", '<', "021109-r3"),
        ("0.9.16-r1", '<', "3.9_pre20060124"),
        ("0.10.0", '<', "0.10.1_rc1"),
        ("1.1a", '<', "1.3a"),
        ("0.15.1b-r2", '>', "0.15.1b"),
        ("22.7-r1", '<', "22.7.3-r1"),
        ("2.1_pre20", '<', "2.1_pre26"),
        ("2.10.1", '>', "02.08.01b"),
        ("3.81", '>', "1.6d"),
        ("1.2.07.8", '<', "1.2.12.04"),
        ("1.07-r1", '<', "1.07.5"),
        ("0.1_pre20060810", '<', "0.1_pre20060817"),
        ("3.3.17", '>', "0.59s-r11"),
        ("4.20", '>', "0.20070118"),
        ("0.20070118", '<', "0.20070207_rc1"),
        ("0.20070207_rc1", '<', "1.0"),
        ("2.3.30-r2", '<', "3.7_p1"),
        ("4.5_p1-r1", '>', "4.5_p1"),
        ("0.9.8c-r1", '<', "0.9.8d"),
        ("2.2.3-r2", '<', "013"),
        ("1.7", '<', "1.7b"),
        ("1.8.5", '<', "1.8.5_p2"),
        ("0.98", '<', "1.00"),
        ("1.4.9-r2", '<', "2.9.11_pre20051101-r2"),
        ("2.9.11_pre20051101-r3", '>', "2.9.11_pre20051101"),
        ("1.6.8_p12-r1", '>', "1.6.8_p9-r2"),
        ("0.9.28-r2", '<', "0.9.28.1"),
        ("0.9.28.1", '<', "087-r1"),
        ("104-r11", '>', "104-r9"),
        ("1.2.5_rc2", '>', "0.1"),
        ("20040406-r1", '>', "2.12r-r4"),
        ("7.0.17", '<', "7.0.174"),
        ("1.3-r0", '<', "1.3.1-r0"),
        ("1.3_pre1-r1", '<', "1.3.2"),
        ("1.0_p10-r0", '>', "1.0_p9-r0"),
        ("0.1.0_alpha_pre2", '<', "0.1.0_alpha"),
        ("1.0.0_pre20191002222144-r0", '<', "1.0.0_pre20210530193627-r0"),
        ("1.0_beta", '<', "1.0_pre"),
        ("1.0_pre", '<', "1.0_rc"),
        ("1.0", '<', "1.0_cvs"),
        ("1.0_cvs", '<', "1.0_svn"),
        ("1.0_svn", '<', "1.0_git"),
        ("1.0_git", '<', "1.0_hg"),
        ("1.0_hg", '<', "1.0_p"),
        ("1.0", '<', "1.0-r0"),
        ("1.01", '<', "1.1"),
    ];

    #[test]
    fn apk_tools_pairs() {
        for &(a, op, b) in PAIRS {
            let want = match op {
                '<' => Ordering::Less,
                '>' => Ordering::Greater,
                _ => Ordering::Equal,
            };
            assert_eq!(apk_version_compare(a, b), want, "{a} {op} {b}");
            assert_eq!(apk_version_compare(b, a), want.reverse(), "{b} vs {a}");
            let (va, vb) = (ApkVersion::parse(a).unwrap(), ApkVersion::parse(b).unwrap());
            assert_eq!(va.cmp(&vb), want, "ApkVersion {a} {op} {b}");
        }
    }

    #[test]
    fn validation() {
        for ok in [
            "1",
            "1.2.3_rc1-r0",
            "2.0_alpha2",
            "1.0_p1",
            "3.4a-r2",
            "006",
            "1.0_alpha_pre2",
        ] {
            assert!(apk_version_validate(ok), "{ok}");
        }
        for bad in [
            "", "a1", "1.0bc", "23_foo", "1.0-", "1.0-x1", "1..2", "1.", "1.0-r", "1.0A", "-r1", "1.0 ",
        ] {
            assert!(ApkVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fuzzy() {
        assert!(apk_version_fuzzy_match("1.2.3-r0", "1.2"));
        assert!(apk_version_fuzzy_match("1.2.3-r0", "1.2.3"));
        assert!(apk_version_fuzzy_match("1.2", "1.2"));
        assert!(!apk_version_fuzzy_match("1.20", "1.2"));
        assert!(!apk_version_fuzzy_match("1.3", "1.2"));
        assert!(!apk_version_fuzzy_match("1.2", "1.2.3"));
    }

    #[test]
    fn sorting_is_total_on_sample() {
        let mut v: Vec<ApkVersion> = ["1.10", "1.2", "1.2_rc1", "1.2-r1", "1.2_p1", "0.9"]
            .iter()
            .map(|s| ApkVersion::parse(s).unwrap())
            .collect();
        v.sort();
        let got: Vec<&str> = v.iter().map(ApkVersion::as_str).collect();
        assert_eq!(got, ["0.9", "1.2_rc1", "1.2", "1.2-r1", "1.2_p1", "1.10"]);
    }
}
