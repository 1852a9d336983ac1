//! `APKINDEX` text and `APKINDEX.tar.gz` archives.

use std::fmt;

use super::error::{ApkError, Result};
use super::gzip::{read_tar, split_gzip_members};
use super::signature::{SignatureSection, parse_signature_member};
use super::version::ApkVersion;

/// A version constraint operator in a dependency atom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionOp {
    /// `=`
    Eq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `~` (also `=~`): fuzzy prefix match.
    Fuzzy,
}

impl VersionOp {
    fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "=" => Self::Eq,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            "~" | "=~" | "~=" => Self::Fuzzy,
            _ => return None,
        })
    }

    /// The operator text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Fuzzy => "~",
        }
    }

    /// Whether `version` satisfies `self constraint`.
    pub fn matches(self, version: &ApkVersion, constraint: &ApkVersion) -> bool {
        use std::cmp::Ordering::*;
        let ord = version.cmp(constraint);
        match self {
            Self::Eq => ord == Equal,
            Self::Lt => ord == Less,
            Self::Le => ord != Greater,
            Self::Gt => ord == Greater,
            Self::Ge => ord != Less,
            Self::Fuzzy => version.fuzzy_matches(constraint),
        }
    }
}

/// One dependency atom: `name`, `name>=1.2`, `so:libc.musl-x86_64.so.1`, `cmd:sh`, `!name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApkDependency {
    /// Package, virtual, `so:` or `cmd:` name.
    pub name: String,
    /// Optional version constraint.
    pub constraint: Option<(VersionOp, ApkVersion)>,
    /// `!name`: the named thing must not be installed.
    pub conflict: bool,
}

impl ApkDependency {
    /// Parses one atom.
    pub fn parse(atom: &str) -> Result<Self> {
        let bad = || ApkError::InvalidDependency(atom.to_owned());
        let (conflict, rest) = match atom.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, atom),
        };
        let is_op = |c: char| matches!(c, '<' | '>' | '=' | '~');
        let (name, constraint) = match rest.find(is_op) {
            None => (rest, None),
            Some(i) => {
                let (name, tail) = rest.split_at(i);
                let op_len = tail.find(|c: char| !is_op(c)).ok_or_else(bad)?;
                let op = VersionOp::parse(&tail[..op_len]).ok_or_else(bad)?;
                let ver = ApkVersion::parse(&tail[op_len..]).map_err(|_| bad())?;
                (name, Some((op, ver)))
            }
        };
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            constraint,
            conflict,
        })
    }

    /// Whether a provider offering `version` (`None`: unversioned provide) satisfies the
    /// constraint part (the name is not checked; `conflict` is ignored).
    pub fn version_matches(&self, version: Option<&ApkVersion>) -> bool {
        match (&self.constraint, version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, c)), Some(v)) => op.matches(v, c),
        }
    }
}

impl fmt::Display for ApkDependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conflict {
            f.write_str("!")?;
        }
        f.write_str(&self.name)?;
        if let Some((op, v)) = &self.constraint {
            write!(f, "{}{v}", op.as_str())?;
        }
        Ok(())
    }
}

/// One `p:` atom: `name`, `name=ver`, `so:libfoo.so.1=1.2`, `cmd:foo=1.0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApkProvide {
    /// Provided name.
    pub name: String,
    /// Provided version; `None` for an unversioned (virtual) provide.
    pub version: Option<ApkVersion>,
}

impl ApkProvide {
    /// Parses one provides atom.
    pub fn parse(atom: &str) -> Result<Self> {
        let bad = || ApkError::InvalidDependency(atom.to_owned());
        let (name, version) = match atom.split_once('=') {
            Some((n, v)) => (n, Some(ApkVersion::parse(v).map_err(|_| bad())?)),
            None => (atom, None),
        };
        if name.is_empty() || name.contains(['<', '>', '~', '!']) {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            version,
        })
    }
}

impl fmt::Display for ApkProvide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(v) = &self.version {
            write!(f, "={v}")?;
        }
        Ok(())
    }
}

/// One package block of an `APKINDEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApkPackage {
    /// `P:` name.
    pub name: String,
    /// `V:` version.
    pub version: ApkVersion,
    /// `A:` architecture (empty when absent).
    pub arch: String,
    /// `S:` size of the `.apk` file.
    pub size: Option<u64>,
    /// `I:` installed size.
    pub installed_size: Option<u64>,
    /// `T:` description.
    pub description: Option<String>,
    /// `C:` checksum as given (`Q1<base64 sha1 of the control section>`).
    pub checksum: Option<String>,
    /// `D:` dependencies.
    pub depends: Vec<ApkDependency>,
    /// `p:` provides.
    pub provides: Vec<ApkProvide>,
    /// `i:` install-if atoms.
    pub install_if: Vec<ApkDependency>,
    /// `o:` origin (source package).
    pub origin: Option<String>,
    /// `L:` license.
    pub license: Option<String>,
    /// `U:` upstream URL.
    pub url: Option<String>,
    /// `m:` maintainer.
    pub maintainer: Option<String>,
    /// `c:` commit of the build recipe.
    pub commit: Option<String>,
    /// `t:` build time (unix seconds).
    pub build_time: Option<u64>,
    /// `k:` provider priority.
    pub provider_priority: Option<u64>,
}

impl ApkPackage {
    /// `name-version`, apk's usual package identifier.
    pub fn id(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

fn atoms<T>(v: &str, parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    v.split_whitespace().map(parse).collect()
}

fn num(v: &str, line: usize, key: char) -> Result<u64> {
    v.trim().parse().map_err(|_| ApkError::Index {
        line,
        message: format!("{key}: field is not a number: {v:?}"),
    })
}

#[derive(Default)]
struct Block {
    start: usize,
    name: Option<String>,
    version: Option<ApkVersion>,
    arch: String,
}

/// Parses `APKINDEX` text: blocks of `K:value` lines separated by blank lines.
/// Unknown keys are ignored; every block needs `P:` and `V:`.
pub fn parse_apkindex(text: &str) -> Result<Vec<ApkPackage>> {
    let mut out = Vec::new();
    let mut cur: Option<(Block, ApkPackage)> = None;
    let finish = |cur: &mut Option<(Block, ApkPackage)>, out: &mut Vec<ApkPackage>| -> Result<()> {
        if let Some((b, mut p)) = cur.take() {
            let err = |m: &str| ApkError::Index {
                line: b.start,
                message: m.to_owned(),
            };
            p.name = b.name.ok_or_else(|| err("package block without P:"))?;
            p.version = b.version.ok_or_else(|| err("package block without V:"))?;
            p.arch = b.arch;
            out.push(p);
        }
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.trim().is_empty() {
            finish(&mut cur, &mut out)?;
            continue;
        }
        let bytes = l.as_bytes();
        if bytes.len() < 2 || bytes[1] != b':' || !bytes[0].is_ascii() {
            return Err(ApkError::Index {
                line,
                message: format!("expected K:value, got {l:?}"),
            });
        }
        let key = char::from(bytes[0]);
        let v = &l[2..];
        let (b, p) = cur.get_or_insert_with(|| {
            (
                Block {
                    start: line,
                    ..Block::default()
                },
                empty_package(),
            )
        });
        let ctx = |e: ApkError| ApkError::Index {
            line,
            message: e.to_string(),
        };
        match key {
            'P' => b.name = Some(v.to_owned()),
            'V' => b.version = Some(ApkVersion::parse(v).map_err(ctx)?),
            'A' => b.arch = v.to_owned(),
            'S' => p.size = Some(num(v, line, key)?),
            'I' => p.installed_size = Some(num(v, line, key)?),
            'T' => p.description = Some(v.to_owned()),
            'C' => p.checksum = Some(v.to_owned()),
            'D' => p.depends = atoms(v, ApkDependency::parse).map_err(ctx)?,
            'p' => p.provides = atoms(v, ApkProvide::parse).map_err(ctx)?,
            'i' => p.install_if = atoms(v, ApkDependency::parse).map_err(ctx)?,
            'o' => p.origin = Some(v.to_owned()),
            'L' => p.license = Some(v.to_owned()),
            'U' => p.url = Some(v.to_owned()),
            'm' => p.maintainer = Some(v.to_owned()),
            'c' => p.commit = Some(v.to_owned()),
            't' => p.build_time = Some(num(v, line, key)?),
            'k' => p.provider_priority = Some(num(v, line, key)?),
            _ => {}
        }
    }
    finish(&mut cur, &mut out)?;
    Ok(out)
}

fn empty_package() -> ApkPackage {
    ApkPackage {
        name: String::new(),
        version: ApkVersion::zero(),
        arch: String::new(),
        size: None,
        installed_size: None,
        description: None,
        checksum: None,
        depends: Vec::new(),
        provides: Vec::new(),
        install_if: Vec::new(),
        origin: None,
        license: None,
        url: None,
        maintainer: None,
        commit: None,
        build_time: None,
        provider_priority: None,
    }
}

/// The contents of an `APKINDEX.tar.gz`.
#[derive(Clone, Debug)]
pub struct ApkIndexArchive {
    /// The signature section, when the archive is signed (not verified here; see
    /// [`super::verify_index_signature`]).
    pub signature: Option<SignatureSection>,
    /// The `DESCRIPTION` file, when present.
    pub description: Option<String>,
    /// The `APKINDEX` text.
    pub index_text: String,
}

impl ApkIndexArchive {
    /// Parses [`Self::index_text`].
    pub fn packages(&self) -> Result<Vec<ApkPackage>> {
        parse_apkindex(&self.index_text)
    }
}

/// Reads an `APKINDEX.tar.gz`: an optional signature member, then a member with
/// `DESCRIPTION` and `APKINDEX`.
pub fn read_index_archive(bytes: &[u8]) -> Result<ApkIndexArchive> {
    let members = split_gzip_members(bytes)?;
    let mut rest = &members[..];
    let signature = match parse_signature_member(&members[0].data) {
        Some(s) => {
            rest = &members[1..];
            Some(s)
        }
        None => None,
    };
    let mut description = None;
    let mut index_text = None;
    for m in rest {
        for item in read_tar(&m.data)? {
            let text = || {
                String::from_utf8(item.data.clone())
                    .map_err(|_| ApkError::Archive(format!("{} is not utf-8", item.path)))
            };
            match item.path.trim_start_matches("./") {
                "APKINDEX" => index_text = Some(text()?),
                "DESCRIPTION" => description = Some(text()?),
                _ => {}
            }
        }
    }
    Ok(ApkIndexArchive {
        signature,
        description,
        index_text: index_text.ok_or_else(|| ApkError::Archive("no APKINDEX in archive".into()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "C:Q1abcdefghijklmnopqrstuvwxyz01234=\nP:musl\nV:1.2.5-r0\nA:x86_64\nS:400000\nI:600000\nT:the musl c library\nU:https://musl.libc.org/\nL:MIT\no:musl\nm:Someone <a@b>\nt:1700000000\nc:abc123\np:so:libc.musl-x86_64.so.1=1\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\nD:so:libc.musl-x86_64.so.1 !busybox-alt musl>=1.2 cmd:sh~1\np:cmd:sh=1.36.1-r15 /bin/sh\n";

    #[test]
    fn parses_index() {
        let p = parse_apkindex(INDEX).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "musl");
        assert_eq!(p[0].version.as_str(), "1.2.5-r0");
        assert_eq!(p[0].checksum.as_deref(), Some("Q1abcdefghijklmnopqrstuvwxyz01234="));
        assert_eq!(p[0].size, Some(400000));
        assert_eq!(p[0].installed_size, Some(600000));
        assert_eq!(p[0].build_time, Some(1700000000));
        assert_eq!(p[0].provides[0].name, "so:libc.musl-x86_64.so.1");
        assert_eq!(p[0].provides[0].version.as_ref().unwrap().as_str(), "1");
        let d = &p[1].depends;
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].name, "so:libc.musl-x86_64.so.1");
        assert!(d[1].conflict);
        assert_eq!(d[2].constraint.as_ref().unwrap().0, VersionOp::Ge);
        assert_eq!(d[3].constraint.as_ref().unwrap().0, VersionOp::Fuzzy);
        assert_eq!(
            d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" "),
            "so:libc.musl-x86_64.so.1 !busybox-alt musl>=1.2 cmd:sh~1"
        );
        assert_eq!(p[1].provides[1].version, None);
    }

    #[test]
    fn index_errors() {
        assert!(matches!(parse_apkindex("P:x\n"), Err(ApkError::Index { line: 1, .. })));
        assert!(matches!(
            parse_apkindex("P:x\nV:1\nbogus\n"),
            Err(ApkError::Index { line: 3, .. })
        ));
        assert!(parse_apkindex("P:x\nV:not-a-version\n").is_err());
        assert!(parse_apkindex("P:x\nV:1\nS:big\n").is_err());
        assert!(parse_apkindex("P:x\nV:1\nD:foo>>1\n").is_err());
        assert_eq!(parse_apkindex("\n\n").unwrap().len(), 0);
    }

    #[test]
    fn dependency_atoms() {
        let d = ApkDependency::parse("foo<=2.0-r1").unwrap();
        assert_eq!(d.name, "foo");
        assert!(d.version_matches(Some(&ApkVersion::parse("2.0").unwrap())));
        assert!(!d.version_matches(Some(&ApkVersion::parse("2.0-r2").unwrap())));
        assert!(!d.version_matches(None));
        for bad in ["", "!", ">=1", "foo>=", "foo=>1", "foo<>1"] {
            assert!(ApkDependency::parse(bad).is_err(), "{bad}");
        }
        let p = ApkProvide::parse("cmd:foo=1.0").unwrap();
        assert_eq!(p.to_string(), "cmd:foo=1.0");
    }
}
