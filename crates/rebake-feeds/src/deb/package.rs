//! `.deb` reading: the `ar` container, the control tarball and the data tarball.
//!
//! A `.deb` is an `ar` archive (`!<arch>\n`, then members with 60-byte headers, data
//! padded to an even offset) holding `debian-binary` (`2.0`), `control.tar[.gz|.xz|.zst]`
//! and `data.tar[.gz|.xz|.zst]`. Debian bookworm compresses `data.tar` with xz, Ubuntu with
//! zstd; see [`super::compress`] for the decoders.

use std::io::Read;

use super::compress::decompress;
use super::control::{Paragraph, parse_paragraphs};
use super::error::{DebError, Result};

const AR_MAGIC: &[u8] = b"!<arch>\n";
const AR_HEADER: usize = 60;

/// One member of an `ar` archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArMember<'a> {
    /// Member name, without the GNU `/` terminator and padding.
    pub name: String,
    /// Member content.
    pub data: &'a [u8],
}

/// Splits an `ar` archive into its members (common format; GNU `/` name terminators are
/// removed; GNU/BSD long-name tables are not needed for `.deb` and not supported).
pub fn read_ar(bytes: &[u8]) -> Result<Vec<ArMember<'_>>> {
    let bad = |m: &str| DebError::Archive(m.to_owned());
    let mut rest = bytes.strip_prefix(AR_MAGIC).ok_or_else(|| bad("not an ar archive"))?;
    let mut members = Vec::new();
    while !rest.is_empty() {
        if rest.len() < AR_HEADER {
            return Err(bad("truncated ar header"));
        }
        let (header, body) = rest.split_at(AR_HEADER);
        if &header[58..60] != b"`\n" {
            return Err(bad("bad ar header magic"));
        }
        let text = |range: std::ops::Range<usize>| {
            std::str::from_utf8(&header[range])
                .map(str::trim_end)
                .map_err(|_| bad("ar header is not ascii"))
        };
        let name = text(0..16)?;
        let name = name.strip_suffix('/').unwrap_or(name).to_owned();
        let size: usize = text(48..58)?.parse().map_err(|_| bad("bad ar member size"))?;
        let data = body.get(..size).ok_or_else(|| bad("truncated ar member"))?;
        let padded = size + size % 2;
        rest = body.get(padded..).unwrap_or_default();
        members.push(ArMember { name, data });
    }
    Ok(members)
}

/// Writes an `ar` archive in the common format `.deb` uses (no long names; members padded
/// to an even offset; mtime, owner 0, mode 0644).
pub fn write_ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = AR_MAGIC.to_vec();
    for (name, data) in members {
        out.extend_from_slice(
            format!(
                "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                0,
                0,
                0,
                "100644",
                data.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// The same `.deb` with its control and data members decompressed (`control.tar`,
/// `data.tar`): what the builder's cache keeps so that a warm build reads packages without
/// decompressing them again (xz decoding dominates reading a `.deb`). [`read_deb`] reads
/// it like any other `.deb`.
pub fn decompressed_deb(bytes: &[u8]) -> Result<Vec<u8>> {
    let members = read_ar(bytes)?;
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(members.len());
    for member in &members {
        let plain = ["control.tar", "data.tar"]
            .into_iter()
            .find(|prefix| member.name == *prefix || member.name.starts_with(&format!("{prefix}.")));
        match plain {
            Some(name) => out.push((name.to_owned(), decompress(&member.name, member.data)?)),
            None => out.push((member.name.clone(), member.data.to_vec())),
        }
    }
    let borrowed: Vec<(&str, &[u8])> = out
        .iter()
        .map(|(name, data)| (name.as_str(), data.as_slice()))
        .collect();
    Ok(write_ar(&borrowed))
}

/// What a data tarball entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file and its content.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link and its target, as stored.
    Symlink(String),
    /// A hard link to an earlier entry (normalised path, like [`DataEntry::path`]).
    Hardlink(String),
}

/// One entry of `data.tar`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEntry {
    /// Path without leading `./` or `/` and without trailing `/`, e.g. `etc/debian_version`.
    pub path: String,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask), as shipped.
    pub mode: u32,
    /// Numeric owner uid of the tar header (the owner name is not kept).
    pub uid: u64,
    /// Numeric owner gid of the tar header (the group name is not kept).
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// File content, directory, or link target.
    pub kind: EntryKind,
}

/// A read `.deb`.
#[derive(Debug, Clone)]
pub struct DebPackage {
    /// The `control` paragraph.
    pub control: Paragraph,
    /// The `md5sums` file, if present.
    pub md5sums: Option<String>,
    /// The `conffiles` list (absolute paths), empty if absent.
    pub conffiles: Vec<String>,
    /// Every data entry but the root directory, in archive order.
    pub data: Vec<DataEntry>,
}

/// Reads a `.deb`: checks `debian-binary`, parses the control tarball, lists the data
/// tarball.
pub fn read_deb(bytes: &[u8]) -> Result<DebPackage> {
    let members = read_ar(bytes)?;
    let bad = |m: &str| DebError::Archive(m.to_owned());
    let version = members
        .first()
        .filter(|m| m.name == "debian-binary")
        .ok_or_else(|| bad("first member is not debian-binary"))?;
    if !version.data.starts_with(b"2.") {
        return Err(bad("unsupported debian-binary version"));
    }
    let find = |prefix: &str| {
        members
            .iter()
            .find(|m| m.name == prefix || m.name.starts_with(&format!("{prefix}.")))
            .ok_or_else(|| DebError::Archive(format!("no {prefix} member")))
    };
    let control_member = find("control.tar")?;
    let data_member = find("data.tar")?;

    let control_tar = decompress(&control_member.name, control_member.data)?;
    let mut control = None;
    let mut md5sums = None;
    let mut conffiles = Vec::new();
    for entry in tar_entries(&control_tar)? {
        let EntryKind::File(content) = entry.kind else {
            continue;
        };
        let text = || {
            String::from_utf8(content.clone())
                .map_err(|_| DebError::Archive(format!("control member {} is not utf-8", entry.path)))
        };
        match entry.path.as_str() {
            "control" => {
                let paragraph = parse_paragraphs(&text()?)?.into_iter().next();
                control = Some(paragraph.ok_or_else(|| bad("empty control file"))?);
            }
            "md5sums" => md5sums = Some(text()?),
            "conffiles" => {
                conffiles = text()?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            _ => {}
        }
    }
    let data_tar = decompress(&data_member.name, data_member.data)?;
    Ok(DebPackage {
        control: control.ok_or_else(|| bad("no control file in control.tar"))?,
        md5sums,
        conffiles,
        data: tar_entries(&data_tar)?,
    })
}

fn normalise(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_owned()
}

fn tar_entries(tar_bytes: &[u8]) -> Result<Vec<DataEntry>> {
    let bad = |e: std::io::Error| DebError::Archive(format!("tar: {e}"));
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
        let header = entry.header();
        // Some writers put the file type bits (`0o100000`, …) into the mode field too.
        let mode = header.mode().map_err(bad)? & 0o7777;
        let uid = header.uid().map_err(bad)?;
        let gid = header.gid().map_err(bad)?;
        let mtime = header.mtime().map_err(bad)?;
        let entry_type = header.entry_type();
        let link = || -> Result<String> {
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .ok_or_else(|| DebError::Archive(format!("tar: link {path} has no target")))
        };
        let kind = if entry_type.is_dir() {
            EntryKind::Dir
        } else if entry_type.is_symlink() {
            EntryKind::Symlink(link()?)
        } else if entry_type.is_hard_link() {
            EntryKind::Hardlink(normalise(&link()?))
        } else if entry_type.is_file() {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(bad)?;
            EntryKind::File(content)
        } else {
            return Err(DebError::Archive(format!("tar: unsupported entry type for {path}")));
        };
        if path.is_empty() {
            continue;
        }
        out.push(DataEntry {
            path,
            mode,
            uid,
            gid,
            mtime,
            kind,
        });
    }
    Ok(out)
}

/// The `/var/lib/dpkg/status` paragraph for an installed package: its control paragraph
/// with `Status: install ok installed` right after `Package` (any existing `Status` is
/// replaced), as dpkg and distroless write it.
pub fn dpkg_status_entry(control: &Paragraph) -> Paragraph {
    let mut status = control.clone();
    status.insert_after("Package", "Status", "install ok installed");
    status
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        for (name, data) in members {
            let header = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                100644,
                data.len()
            );
            assert_eq!(header.len(), AR_HEADER);
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    /// `(path, file content, symlink target)`; neither content nor target is a directory.
    type TarSpec<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>);

    fn tar(entries: &[TarSpec<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match (content, link) {
                (Some(c), _) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    b.append_data(&mut h, path, *c).unwrap();
                }
                (None, Some(target)) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).unwrap();
                }
                (None, None) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut writer = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6)).unwrap();
        writer.write_all(bytes).unwrap();
        writer.finish().unwrap()
    }

    fn sample_deb() -> Vec<u8> {
        let control = tar(&[
            ("./", None, None),
            (
                "./control",
                Some(b"Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: x\n"),
                None,
            ),
            ("./md5sums", Some(b"abc  etc/hello\n"), None),
            ("./conffiles", Some(b"/etc/hello\n"), None),
        ]);
        let data = tar(&[
            ("./", None, None),
            ("./etc/", None, None),
            ("./etc/hello", Some(b"hi\n"), None),
            ("./usr/bin/hi", None, Some("../../etc/hello")),
        ]);
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &gz(&control)),
            ("data.tar.xz", &xz(&data)),
        ])
    }

    #[test]
    fn reads_a_deb() {
        let deb = read_deb(&sample_deb()).unwrap();
        assert_eq!(deb.control.get("Package"), Some("hello"));
        assert_eq!(deb.md5sums.as_deref(), Some("abc  etc/hello\n"));
        assert_eq!(deb.conffiles, ["/etc/hello"]);
        let paths: Vec<_> = deb.data.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["etc", "etc/hello", "usr/bin/hi"]);
        assert_eq!(deb.data[1].kind, EntryKind::File(b"hi\n".to_vec()));
        assert_eq!(deb.data[1].mode, 0o755);
        assert_eq!(deb.data[1].mtime, 1_700_000_000);
        assert_eq!(deb.data[2].kind, EntryKind::Symlink("../../etc/hello".into()));
        assert_eq!(deb.data[0].kind, EntryKind::Dir);
    }

    #[test]
    fn keeps_special_bits_and_owners() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, mode: u32, uid: u64, gid: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_username("root").unwrap();
            h.set_groupname("shadow").unwrap();
            let content: &[u8] = if kind == tar::EntryType::Regular { b"ELF" } else { b"" };
            h.set_size(content.len() as u64);
            b.append_data(&mut h, path, content).unwrap();
        };
        add("./tmp/", tar::EntryType::Directory, 0o1777, 0, 0);
        add("./root/", tar::EntryType::Directory, 0o40700, 0, 0);
        add("./usr/bin/su", tar::EntryType::Regular, 0o104755, 0, 0);
        add("./usr/bin/chage", tar::EntryType::Regular, 0o2755, 0, 42);
        add("./home/app/", tar::EntryType::Directory, 0o750, 1000, 1001);
        let data = b.into_inner().unwrap();
        let control = tar(&[("./control", Some(b"Package: x\nVersion: 1\n"), None)]);
        let deb = read_deb(&ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &gz(&control)),
            ("data.tar.gz", &gz(&data)),
        ]))
        .unwrap();
        let got: Vec<_> = deb
            .data
            .iter()
            .map(|e| (e.path.as_str(), e.mode, e.uid, e.gid))
            .collect();
        assert_eq!(
            got,
            [
                ("tmp", 0o1777, 0, 0),
                ("root", 0o700, 0, 0),
                ("usr/bin/su", 0o4755, 0, 0),
                ("usr/bin/chage", 0o2755, 0, 42),
                ("home/app", 0o750, 1000, 1001),
            ]
        );
    }

    #[test]
    fn rejects_broken_archives() {
        assert!(read_ar(b"not ar").is_err());
        let good = sample_deb();
        assert!(read_deb(&good[..good.len() - 10]).is_err());
        assert!(read_deb(&ar(&[("debian-binary", b"3.0\n")])).is_err());
        assert!(read_deb(&ar(&[("debian-binary", b"2.0\n")])).is_err());
        assert!(read_deb(&ar(&[("control.tar.gz", b"x")])).is_err());
        assert!(
            read_deb(&ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", b"x"),
                ("data.tar", b"")
            ]))
            .is_err()
        );
        let mut header_broken = good.clone();
        header_broken[8 + 58] = b'x';
        assert!(read_ar(&header_broken).is_err());
    }

    #[test]
    fn ar_members_and_padding() {
        let bytes = ar(&[("debian-binary", b"2.0\n"), ("odd/", b"abc"), ("b", b"xy")]);
        let members = read_ar(&bytes).unwrap();
        let names: Vec<_> = members.iter().map(|m| (m.name.as_str(), m.data)).collect();
        assert_eq!(names, [("debian-binary", &b"2.0\n"[..]), ("odd", b"abc"), ("b", b"xy")]);
    }

    #[test]
    fn status_entry() {
        let control = parse_paragraphs("Package: hello\nVersion: 1.0-1\nArchitecture: amd64\n")
            .unwrap()
            .remove(0);
        let status = dpkg_status_entry(&control);
        assert_eq!(
            status.to_text(),
            "Package: hello\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
        );
        assert_eq!(dpkg_status_entry(&status), status);
    }
}
