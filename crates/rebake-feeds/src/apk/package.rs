//! `.apk` (v2) packages: concatenated gzip members `[signature tar] control tar data tar`,
//! `.PKGINFO` parsing/writing and `/lib/apk/db/installed` entries.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::error::{ApkError, Result};
use super::gzip::{read_tar, split_gzip_members};
use super::index::{ApkDependency, ApkProvide};
use super::signature::{SignatureSection, parse_signature_member};
use super::version::ApkVersion;

/// The fields of a `.PKGINFO` (`key = value` lines; `#` comments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkgInfo {
    /// `pkgname`
    pub name: String,
    /// `pkgver`
    pub version: ApkVersion,
    /// `arch`
    pub arch: String,
    /// `pkgdesc`
    pub description: Option<String>,
    /// `url`
    pub url: Option<String>,
    /// `license`
    pub license: Option<String>,
    /// `origin`
    pub origin: Option<String>,
    /// `maintainer`
    pub maintainer: Option<String>,
    /// `packager`
    pub packager: Option<String>,
    /// `commit`
    pub commit: Option<String>,
    /// `builddate` (unix seconds)
    pub build_date: Option<u64>,
    /// `size`: installed size in bytes.
    pub installed_size: Option<u64>,
    /// `provider_priority`
    pub provider_priority: Option<u64>,
    /// `depend` lines.
    pub depends: Vec<ApkDependency>,
    /// `provides` lines.
    pub provides: Vec<ApkProvide>,
    /// `install_if` lines.
    pub install_if: Vec<ApkDependency>,
    /// `replaces` lines.
    pub replaces: Vec<String>,
    /// `triggers` lines.
    pub triggers: Vec<String>,
    /// `datahash`: hex SHA-256 of the data member's compressed bytes.
    pub datahash: Option<String>,
}

impl PkgInfo {
    /// A minimal `PkgInfo` with only name, version and arch set.
    pub fn new(name: &str, version: ApkVersion, arch: &str) -> Self {
        Self {
            name: name.to_owned(),
            version,
            arch: arch.to_owned(),
            description: None,
            url: None,
            license: None,
            origin: None,
            maintainer: None,
            packager: None,
            commit: None,
            build_date: None,
            installed_size: None,
            provider_priority: None,
            depends: Vec::new(),
            provides: Vec::new(),
            install_if: Vec::new(),
            replaces: Vec::new(),
            triggers: Vec::new(),
            datahash: None,
        }
    }

    /// Writes `.PKGINFO` text in abuild's key order.
    pub fn to_pkginfo_text(&self) -> String {
        let mut s = String::new();
        let mut kv = |k: &str, v: &str| {
            let _ = writeln!(s, "{k} = {v}");
        };
        kv("pkgname", &self.name);
        kv("pkgver", self.version.as_str());
        let opt = |o: &Option<String>| o.clone();
        for (k, v) in [
            ("pkgdesc", opt(&self.description)),
            ("url", opt(&self.url)),
            ("builddate", self.build_date.map(|n| n.to_string())),
            ("packager", opt(&self.packager)),
            ("size", self.installed_size.map(|n| n.to_string())),
        ] {
            if let Some(v) = v {
                kv(k, &v);
            }
        }
        kv("arch", &self.arch);
        for (k, v) in [
            ("origin", opt(&self.origin)),
            ("commit", opt(&self.commit)),
            ("maintainer", opt(&self.maintainer)),
            ("provider_priority", self.provider_priority.map(|n| n.to_string())),
            ("license", opt(&self.license)),
        ] {
            if let Some(v) = v {
                kv(k, &v);
            }
        }
        for r in &self.replaces {
            kv("replaces", r);
        }
        for p in &self.provides {
            kv("provides", &p.to_string());
        }
        for d in &self.depends {
            kv("depend", &d.to_string());
        }
        for d in &self.install_if {
            kv("install_if", &d.to_string());
        }
        for t in &self.triggers {
            kv("triggers", t);
        }
        if let Some(h) = &self.datahash {
            kv("datahash", h);
        }
        s
    }
}

/// Parses `.PKGINFO` text. `pkgname`, `pkgver` and `arch` are required; unknown keys are
/// ignored; list keys (`depend`, `provides`, ...) may repeat and hold space-separated atoms.
pub fn parse_pkginfo(text: &str) -> Result<PkgInfo> {
    let mut name = None;
    let mut version = None;
    let mut arch = None;
    let mut p = PkgInfo::new("", ApkVersion::zero(), "");
    let num = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| ApkError::PkgInfo(format!("{k} is not a number: {v:?}")))
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| ApkError::PkgInfo(format!("line {}: expected key = value", i + 1)))?;
        let deps = |v: &str| -> Result<Vec<ApkDependency>> { v.split_whitespace().map(ApkDependency::parse).collect() };
        match k {
            "pkgname" => name = Some(v.to_owned()),
            "pkgver" => version = Some(ApkVersion::parse(v)?),
            "arch" => arch = Some(v.to_owned()),
            "pkgdesc" => p.description = Some(v.to_owned()),
            "url" => p.url = Some(v.to_owned()),
            "license" => p.license = Some(v.to_owned()),
            "origin" => p.origin = Some(v.to_owned()),
            "maintainer" => p.maintainer = Some(v.to_owned()),
            "packager" => p.packager = Some(v.to_owned()),
            "commit" => p.commit = Some(v.to_owned()),
            "builddate" => p.build_date = Some(num(k, v)?),
            "size" => p.installed_size = Some(num(k, v)?),
            "provider_priority" => p.provider_priority = Some(num(k, v)?),
            "depend" => p.depends.extend(deps(v)?),
            "install_if" => p.install_if.extend(deps(v)?),
            "provides" => {
                for a in v.split_whitespace() {
                    p.provides.push(ApkProvide::parse(a)?);
                }
            }
            "replaces" => p.replaces.extend(v.split_whitespace().map(str::to_owned)),
            "triggers" => p.triggers.extend(v.split_whitespace().map(str::to_owned)),
            "datahash" => p.datahash = Some(v.to_owned()),
            _ => {}
        }
    }
    p.name = name.ok_or_else(|| ApkError::PkgInfo("missing pkgname".into()))?;
    p.version = version.ok_or_else(|| ApkError::PkgInfo("missing pkgver".into()))?;
    p.arch = arch.ok_or_else(|| ApkError::PkgInfo("missing arch".into()))?;
    Ok(p)
}

/// What a data entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// A regular file with its content.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link to the given target.
    Symlink(String),
    /// A hard link to the given (archive) path.
    Hardlink(String),
}

/// One entry of the data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataEntry {
    /// Path relative to `/`, without leading `./` or `/` and without trailing `/`.
    pub path: String,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Kind and payload.
    pub kind: DataKind,
}

impl DataEntry {
    /// A root-owned regular file.
    pub fn file(path: &str, mode: u32, content: &[u8]) -> Self {
        Self::new(path, mode, DataKind::File(content.to_vec()))
    }

    /// A root-owned directory.
    pub fn dir(path: &str, mode: u32) -> Self {
        Self::new(path, mode, DataKind::Dir)
    }

    /// A root-owned symlink.
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::new(path, 0o777, DataKind::Symlink(target.to_owned()))
    }

    fn new(path: &str, mode: u32, kind: DataKind) -> Self {
        Self {
            path: normalize_path(path),
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            kind,
        }
    }
}

fn normalize_path(p: &str) -> String {
    let p = p.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_owned()
}

/// A read `.apk`.
#[derive(Clone, Debug)]
pub struct ApkFile {
    /// The signature section, if signed (not verified here).
    pub signature: Option<SignatureSection>,
    /// The parsed `.PKGINFO`.
    pub pkginfo: PkgInfo,
    /// Other control files (install scripts such as `.post-install`) with their content.
    pub scripts: Vec<(String, Vec<u8>)>,
    /// Data section entries in archive order (device nodes and fifos are skipped).
    pub data: Vec<DataEntry>,
    /// `Q1` + base64 SHA-1 of the control member's compressed bytes: the `C:` checksum.
    pub checksum: String,
    /// Size of the whole `.apk` file in bytes (the `S:` field).
    pub file_size: u64,
}

impl ApkFile {
    /// The `/lib/apk/db/installed` block for this package (see [`installed_db_entry`]).
    pub fn installed_db_entry(&self) -> String {
        installed_db_entry(&self.pkginfo, Some(&self.checksum), Some(self.file_size), &self.data)
    }
}

/// `Q1` + base64(SHA-1(`data`)): apk's checksum notation.
pub fn q1_sha1(data: &[u8]) -> String {
    format!("Q1{}", BASE64.encode(Sha1::digest(data)))
}

/// Reads a v2 `.apk`. When `.PKGINFO` carries a `datahash`, the data member's SHA-256
/// must match it.
pub fn read_apk(bytes: &[u8]) -> Result<ApkFile> {
    let members = split_gzip_members(bytes)?;
    let (signature, rest) = match parse_signature_member(&members[0].data) {
        Some(s) => (Some(s), &members[1..]),
        None => (None, &members[..]),
    };
    let [control, data, ..] = rest else {
        return Err(ApkError::Archive("expected control and data sections".into()));
    };
    if rest.len() > 2 {
        return Err(ApkError::Archive(format!(
            "unexpected {} extra gzip members",
            rest.len() - 2
        )));
    }
    let mut pkginfo = None;
    let mut scripts = Vec::new();
    for item in read_tar(&control.data)? {
        let path = normalize_path(&item.path);
        if path == ".PKGINFO" {
            let text = String::from_utf8(item.data).map_err(|_| ApkError::PkgInfo("not utf-8".into()))?;
            pkginfo = Some(parse_pkginfo(&text)?);
        } else if item.kind.is_file() {
            scripts.push((path, item.data));
        }
    }
    let pkginfo = pkginfo.ok_or_else(|| ApkError::Archive("no .PKGINFO".into()))?;
    if let Some(want) = &pkginfo.datahash {
        let got = hex::encode(Sha256::digest(data.raw));
        if !want.eq_ignore_ascii_case(&got) {
            return Err(ApkError::Archive(format!(
                "datahash mismatch: .PKGINFO says {want}, data section is {got}"
            )));
        }
    }
    let mut entries = Vec::new();
    for item in read_tar(&data.data)? {
        let kind = match item.kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => DataKind::File(item.data),
            tar::EntryType::Directory => DataKind::Dir,
            tar::EntryType::Symlink => DataKind::Symlink(item.link.unwrap_or_default()),
            tar::EntryType::Link => DataKind::Hardlink(normalize_path(&item.link.unwrap_or_default())),
            _ => continue,
        };
        let path = normalize_path(&item.path);
        if path.is_empty() {
            continue;
        }
        entries.push(DataEntry {
            path,
            mode: item.mode & 0o7777,
            uid: item.uid,
            gid: item.gid,
            kind,
        });
    }
    Ok(ApkFile {
        signature,
        pkginfo,
        scripts,
        data: entries,
        checksum: q1_sha1(control.raw),
        file_size: bytes.len() as u64,
    })
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((d, b)) => (d, b),
        None => ("", path),
    }
}

/// Writes the `/lib/apk/db/installed` block for a package, ending with a blank line.
///
/// Emitted lines, in order (optional ones only when known): `C:` checksum, `P:` name,
/// `V:` version, `A:` arch, `S:` `.apk` size, `I:` installed size, `T:` description,
/// `U:` url, `L:` license, `o:` origin, `m:` maintainer, `t:` build date, `c:` commit,
/// `k:` provider priority, `D:` depends, `p:` provides, `i:` install-if, `r:` replaces.
/// Then, per directory sorted by path (parents of files included; the root directory as
/// an empty `F:` when it holds files): `F:dir`, `M:uid:gid:mode` (octal) when not
/// `0:0:755`; then for each non-directory entry in it, sorted by name: `R:name`,
/// `a:uid:gid:mode` when not `0:0:644` (so symlinks get `a:0:0:777`, as apk writes),
/// and `Z:Q1<base64 sha1>`
/// of the file content or, for symlinks, of the link target (hard links get no `Z:`).
pub fn installed_db_entry(
    pkg: &PkgInfo,
    checksum: Option<&str>,
    package_size: Option<u64>,
    files: &[DataEntry],
) -> String {
    let mut s = String::new();
    let mut line = |k: char, v: &str| {
        let _ = writeln!(s, "{k}:{v}");
    };
    let join = |v: Vec<String>| v.join(" ");
    if let Some(c) = checksum {
        line('C', c);
    }
    line('P', &pkg.name);
    line('V', pkg.version.as_str());
    line('A', &pkg.arch);
    let fields: [(char, Option<String>); 14] = [
        ('S', package_size.map(|n| n.to_string())),
        ('I', pkg.installed_size.map(|n| n.to_string())),
        ('T', pkg.description.clone()),
        ('U', pkg.url.clone()),
        ('L', pkg.license.clone()),
        ('o', pkg.origin.clone()),
        ('m', pkg.maintainer.clone()),
        ('t', pkg.build_date.map(|n| n.to_string())),
        ('c', pkg.commit.clone()),
        ('k', pkg.provider_priority.map(|n| n.to_string())),
        (
            'D',
            non_empty(join(pkg.depends.iter().map(|d| d.to_string()).collect())),
        ),
        (
            'p',
            non_empty(join(pkg.provides.iter().map(|d| d.to_string()).collect())),
        ),
        (
            'i',
            non_empty(join(pkg.install_if.iter().map(|d| d.to_string()).collect())),
        ),
        ('r', non_empty(pkg.replaces.join(" "))),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            line(k, &v);
        }
    }

    // dir path -> (dir entry if present, files in it)
    let mut dirs: BTreeMap<&str, (Option<&DataEntry>, Vec<&DataEntry>)> = BTreeMap::new();
    for e in files {
        if e.kind == DataKind::Dir {
            dirs.entry(e.path.as_str()).or_default().0 = Some(e);
            // make sure parents are listed too
            let mut p = e.path.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                dirs.entry(parent).or_default();
                p = parent;
            }
        } else {
            let (d, _) = split_parent(&e.path);
            dirs.entry(d).or_default().1.push(e);
        }
    }
    for (dir, (entry, mut items)) in dirs {
        if dir.is_empty() && items.is_empty() {
            continue;
        }
        line('F', dir);
        if let Some(e) = entry
            && (e.uid, e.gid, e.mode) != (0, 0, 0o755)
        {
            line('M', &format!("{}:{}:{:o}", e.uid, e.gid, e.mode));
        }
        items.sort_by(|a, b| a.path.cmp(&b.path));
        for f in items {
            line('R', split_parent(&f.path).1);
            if (f.uid, f.gid, f.mode) != (0, 0, 0o644) {
                line('a', &format!("{}:{}:{:o}", f.uid, f.gid, f.mode));
            }
            match &f.kind {
                DataKind::File(c) => line('Z', &q1_sha1(c)),
                DataKind::Symlink(t) => line('Z', &q1_sha1(t.as_bytes())),
                DataKind::Hardlink(_) | DataKind::Dir => {}
            }
        }
    }
    s.push('\n');
    s
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKGINFO: &str = "# Generated by abuild 3.12\n# using fakeroot\npkgname = busybox\npkgver = 1.36.1-r15\npkgdesc = Size optimized toolbox\nurl = https://busybox.net/\nbuilddate = 1700000000\nsize = 950000\narch = x86_64\norigin = busybox\nlicense = GPL-2.0-only\nprovides = cmd:sh=1.36.1-r15\nprovides = /bin/sh\ndepend = so:libc.musl-x86_64.so.1\ndepend = !busybox-alt\ndatahash = 00ff\n";

    #[test]
    fn pkginfo_round_trip() {
        let p = parse_pkginfo(PKGINFO).unwrap();
        assert_eq!(p.name, "busybox");
        assert_eq!(p.version.as_str(), "1.36.1-r15");
        assert_eq!(p.installed_size, Some(950000));
        assert_eq!(p.provides.len(), 2);
        assert_eq!(p.depends.len(), 2);
        assert_eq!(p.datahash.as_deref(), Some("00ff"));
        let again = parse_pkginfo(&p.to_pkginfo_text()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn pkginfo_errors() {
        assert!(parse_pkginfo("pkgver = 1\narch = x86_64\n").is_err());
        assert!(parse_pkginfo("pkgname = a\npkgver = 1\n").is_err());
        assert!(parse_pkginfo("pkgname = a\npkgver = x\narch = noarch\n").is_err());
        assert!(parse_pkginfo("pkgname a\n").is_err());
        assert!(parse_pkginfo("pkgname = a\npkgver = 1\narch = a\nsize = -1\n").is_err());
    }

    #[test]
    fn installed_entry_format() {
        let p = parse_pkginfo(PKGINFO).unwrap();
        let files = [
            DataEntry::dir("bin", 0o755),
            DataEntry::file("bin/busybox", 0o755, b"ELF"),
            DataEntry::symlink("bin/sh", "/bin/busybox"),
            DataEntry::dir("etc/secret", 0o700),
            DataEntry::file("etc/secret/conf", 0o644, b"x=1\n"),
        ];
        let got = installed_db_entry(&p, Some("Q1abc="), Some(1234), &files);
        let want = format!(
            "C:Q1abc=\nP:busybox\nV:1.36.1-r15\nA:x86_64\nS:1234\nI:950000\nT:Size optimized toolbox\nU:https://busybox.net/\nL:GPL-2.0-only\no:busybox\nt:1700000000\nD:so:libc.musl-x86_64.so.1 !busybox-alt\np:cmd:sh=1.36.1-r15 /bin/sh\nF:bin\nR:busybox\na:0:0:755\nZ:{}\nR:sh\na:0:0:777\nZ:{}\nF:etc\nF:etc/secret\nM:0:0:700\nR:conf\nZ:{}\n\n",
            q1_sha1(b"ELF"),
            q1_sha1(b"/bin/busybox"),
            q1_sha1(b"x=1\n")
        );
        assert_eq!(got, want);
    }
}
