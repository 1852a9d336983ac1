//! `Packages` indexes and relation fields (`Depends`, `Pre-Depends`, `Provides`).

use std::cmp::Ordering;
use std::fmt;

use super::control::{Paragraph, parse_paragraphs};
use super::error::{DebError, Result};
use super::version::Version;

/// A version relation operator. The obsolete `<` and `>` parse as `<=` and `>=`, as dpkg
/// reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<<`: strictly earlier.
    Lt,
    /// `<=`: earlier or equal.
    Le,
    /// `=`: exactly equal.
    Eq,
    /// `>=`: later or equal.
    Ge,
    /// `>>`: strictly later.
    Gt,
}

impl Op {
    /// Whether `candidate.cmp(wanted) == ord` satisfies this operator.
    pub fn accepts(self, ord: Ordering) -> bool {
        match self {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Eq => ord == Ordering::Equal,
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
        }
    }

    /// The canonical spelling (`<<`, `<=`, `=`, `>=`, `>>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// One alternative of a relation field: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Package (or virtual package) name.
    pub name: String,
    /// The `:any` / `:native` / `:amd64` qualifier, without the colon.
    pub arch_qualifier: Option<String>,
    /// The version constraint, if any.
    pub constraint: Option<(Op, Version)>,
}

impl Relation {
    /// Whether `version` satisfies the constraint (always true without one).
    pub fn accepts(&self, version: &Version) -> bool {
        self.constraint
            .as_ref()
            .is_none_or(|(op, want)| op.accepts(version.cmp(want)))
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch_qualifier {
            write!(f, ":{arch}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// One `Provides` entry: a name, with a version only for `name (= version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provide {
    /// The provided (usually virtual) name.
    pub name: String,
    /// The provided version; `None` never satisfies a versioned dependency.
    pub version: Option<Version>,
}

/// The `Multi-Arch` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiArch {
    /// Absent or `no`.
    #[default]
    No,
    /// `same`: co-installable across architectures.
    Same,
    /// `foreign`: satisfies dependencies of any architecture.
    Foreign,
    /// `allowed`: dependents may ask for `:any`.
    Allowed,
}

/// One binary package of a `Packages` index.
#[derive(Debug, Clone)]
pub struct Package {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Architecture` (`amd64`, `all`, ...).
    pub architecture: String,
    /// `Depends`, as AND of OR-groups.
    pub depends: Vec<Vec<Relation>>,
    /// `Pre-Depends`, as AND of OR-groups.
    pub pre_depends: Vec<Vec<Relation>>,
    /// `Provides`.
    pub provides: Vec<Provide>,
    /// `Filename`, relative to the archive root (`pool/main/...`).
    pub filename: String,
    /// `Size` of the `.deb` in bytes.
    pub size: u64,
    /// `SHA256` of the `.deb`, lower-case hex.
    pub sha256: String,
    /// `Multi-Arch`.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (`required`, `important`, ...), if given.
    pub priority: Option<String>,
    /// The whole paragraph, for writing the dpkg status later.
    pub paragraph: Paragraph,
}

impl Package {
    /// Reads one index paragraph; `Package`, `Version`, `Architecture`, `Filename`, `Size`
    /// and `SHA256` are required.
    pub fn from_paragraph(paragraph: Paragraph) -> Result<Self> {
        let name = paragraph
            .get("Package")
            .ok_or_else(|| DebError::MissingField {
                context: "packages index".into(),
                field: "Package",
            })?
            .to_owned();
        let required = |field: &'static str| {
            paragraph.get(field).ok_or_else(|| DebError::MissingField {
                context: format!("package {name}"),
                field,
            })
        };
        let invalid = |field: &'static str, value: &str| DebError::InvalidField {
            context: format!("package {name}"),
            field,
            value: value.to_owned(),
        };
        let version = Version::parse(required("Version")?)?;
        let architecture = required("Architecture")?.to_owned();
        let filename = required("Filename")?.to_owned();
        let size_text = required("Size")?;
        let size = size_text.parse().map_err(|_| invalid("Size", size_text))?;
        let sha256 = required("SHA256")?.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("SHA256", &sha256));
        }
        let multi_arch = match paragraph.get("Multi-Arch") {
            None | Some("no") => MultiArch::No,
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            Some(other) => return Err(invalid("Multi-Arch", other)),
        };
        let relations = |field| paragraph.get(field).map_or(Ok(Vec::new()), parse_relations);
        Ok(Self {
            depends: relations("Depends")?,
            pre_depends: relations("Pre-Depends")?,
            provides: paragraph.get("Provides").map_or(Ok(Vec::new()), parse_provides)?,
            essential: paragraph
                .get("Essential")
                .is_some_and(|e| e.eq_ignore_ascii_case("yes")),
            priority: paragraph.get("Priority").map(str::to_owned),
            name,
            version,
            architecture,
            filename,
            size,
            sha256,
            multi_arch,
            paragraph,
        })
    }
}

/// Parses the text of a `Packages` index (already decompressed).
pub fn parse_packages(text: &str) -> Result<Vec<Package>> {
    parse_paragraphs(text)?
        .into_iter()
        .map(Package::from_paragraph)
        .collect()
}

/// Parses a relation field (`a (>= 1.0) | b, c:any, d [amd64]`) into AND-of-OR groups.
/// `[arch]` restrictions and `<profile>` lists (source-package syntax) are skipped.
pub fn parse_relations(text: &str) -> Result<Vec<Vec<Relation>>> {
    text.split(',')
        .map(str::trim)
        .filter(|group| !group.is_empty())
        .map(|group| group.split('|').map(parse_relation).collect())
        .collect()
}

/// Parses a `Provides` field: `a, b (= 1.0)`. Only `=` is allowed, as dpkg requires.
pub fn parse_provides(text: &str) -> Result<Vec<Provide>> {
    let mut out = Vec::new();
    for group in text.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let relation = parse_relation(group)?;
        let version = match relation.constraint {
            None => None,
            Some((Op::Eq, v)) => Some(v),
            Some(_) => {
                return Err(DebError::Relation {
                    text: group.to_owned(),
                    reason: "provides may only use `=`".into(),
                });
            }
        };
        out.push(Provide {
            name: relation.name,
            version,
        });
    }
    Ok(out)
}

fn parse_relation(text: &str) -> Result<Relation> {
    let err = |reason: &str| DebError::Relation {
        text: text.trim().to_owned(),
        reason: reason.to_owned(),
    };
    let s = text.trim();
    let end = s
        .find(|c: char| c.is_whitespace() || "([<".contains(c))
        .unwrap_or(s.len());
    let (full_name, mut rest) = s.split_at(end);
    let (name, arch_qualifier) = match full_name.split_once(':') {
        Some((n, a)) if !a.is_empty() => (n, Some(a.to_owned())),
        Some(_) => return Err(err("empty architecture qualifier")),
        None => (full_name, None),
    };
    if name.is_empty() {
        return Err(err("empty package name"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b)) {
        return Err(err("invalid package name"));
    }
    let mut constraint = None;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            break;
        };
        let close = match first {
            '(' => ')',
            '[' => ']',
            '<' => '>',
            _ => return Err(err("unexpected text after package name")),
        };
        let Some(end) = rest.find(close) else {
            return Err(err("unclosed bracket"));
        };
        let inner = rest[1..end].trim();
        rest = &rest[end + 1..];
        if first != '(' {
            continue;
        }
        if constraint.is_some() {
            return Err(err("two version constraints"));
        }
        let (op, version) = if let Some(v) = inner.strip_prefix("<<") {
            (Op::Lt, v)
        } else if let Some(v) = inner.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = inner.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = inner.strip_prefix(">>") {
            (Op::Gt, v)
        } else if let Some(v) = inner.strip_prefix('=') {
            (Op::Eq, v)
        } else if let Some(v) = inner.strip_prefix('<') {
            (Op::Le, v)
        } else if let Some(v) = inner.strip_prefix('>') {
            (Op::Ge, v)
        } else {
            return Err(err("missing relation operator"));
        };
        constraint = Some((op, Version::parse(version)?));
    }
    Ok(Relation {
        name: name.to_owned(),
        arch_qualifier,
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str, arch: Option<&str>, c: Option<(Op, &str)>) -> Relation {
        Relation {
            name: name.into(),
            arch_qualifier: arch.map(Into::into),
            constraint: c.map(|(op, v)| (op, Version::parse(v).unwrap())),
        }
    }

    #[test]
    fn relations() {
        let got = parse_relations("a (>= 1.0) | b, c:any, d [amd64], e (<< 2) <!nocheck>, f(>3),").unwrap();
        assert_eq!(
            got,
            vec![
                vec![rel("a", None, Some((Op::Ge, "1.0"))), rel("b", None, None)],
                vec![rel("c", Some("any"), None)],
                vec![rel("d", None, None)],
                vec![rel("e", None, Some((Op::Lt, "2")))],
                vec![rel("f", None, Some((Op::Ge, "3")))],
            ]
        );
        assert_eq!(got[0][0].to_string(), "a (>= 1.0)");
        assert_eq!(
            parse_relations("x (< 1)").unwrap()[0][0].constraint.as_ref().unwrap().0,
            Op::Le
        );
        assert_eq!(
            parse_relations("x (=1)").unwrap()[0][0].constraint.as_ref().unwrap().0,
            Op::Eq
        );
        for bad in [
            "a (>= 1",
            "a (1.0)",
            "a b",
            "| b",
            "a:",
            "a (>= )",
            "a (>= 1) (<< 2)",
            "a [amd64",
        ] {
            assert!(parse_relations(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ops() {
        let one = Version::parse("1").unwrap();
        let two = Version::parse("2").unwrap();
        let r = |op| Relation {
            name: "x".into(),
            arch_qualifier: None,
            constraint: Some((op, one.clone())),
        };
        assert!(r(Op::Gt).accepts(&two) && r(Op::Ge).accepts(&one) && !r(Op::Gt).accepts(&one));
        assert!(!r(Op::Lt).accepts(&one) && r(Op::Le).accepts(&one) && r(Op::Eq).accepts(&one));
        assert!(!r(Op::Eq).accepts(&two));
    }

    #[test]
    fn provides() {
        let got = parse_provides("awk, libc-dev (= 2.36-9), mail-transport-agent").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].version.as_ref().unwrap().as_str(), "2.36-9");
        assert!(got[0].version.is_none());
        assert!(parse_provides("x (>= 1)").is_err());
    }

    const INDEX: &str = "\
Package: libc6
Source: glibc
Version: 2.36-9+deb12u4
Architecture: amd64
Multi-Arch: same
Priority: optional
Depends: libgcc-s1
Pre-Depends: dpkg (>= 1.15.6)
Provides: libc6-dev-bin (= 2.36-9+deb12u4)
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u4_amd64.deb
Size: 2757936
SHA256: 4ac7c4d8d4a3ea4d8ad6d4f4a4b4e0e05c9bde3bf9c08b2c1a8d59a7f3c90e1b

Package: base-files
Version: 12.4+deb12u5
Architecture: amd64
Essential: yes
Priority: required
Filename: pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb
Size: 70000
SHA256: 0000000000000000000000000000000000000000000000000000000000000000
";

    #[test]
    fn index() {
        let pkgs = parse_packages(INDEX).unwrap();
        assert_eq!(pkgs.len(), 2);
        let libc = &pkgs[0];
        assert_eq!(libc.name, "libc6");
        assert_eq!(libc.version.as_str(), "2.36-9+deb12u4");
        assert_eq!(libc.multi_arch, MultiArch::Same);
        assert_eq!(libc.pre_depends[0][0].name, "dpkg");
        assert_eq!(libc.depends[0][0].name, "libgcc-s1");
        assert_eq!(libc.size, 2757936);
        assert_eq!(libc.paragraph.get("Source"), Some("glibc"));
        assert!(!libc.essential);
        assert!(pkgs[1].essential);
        assert_eq!(pkgs[1].priority.as_deref(), Some("required"));
        assert!(parse_packages("Package: x\nVersion: 1\n").is_err());
        assert!(parse_packages(&INDEX.replace("Size: 70000", "Size: many")).is_err());
        assert!(parse_packages(&INDEX.replace("Multi-Arch: same", "Multi-Arch: odd")).is_err());
    }
}
