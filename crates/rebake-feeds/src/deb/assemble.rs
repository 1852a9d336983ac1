//! Assembling resolved `.deb`s into the entries of one image layer.
//!
//! [`assemble`] merges the data trees of already-read packages (see
//! [`super::package::read_deb`]) and adds the dpkg database that vulnerability scanners and
//! SBOM tools read to recognise what is installed:
//!
//! - `var/lib/dpkg/status`: every package's [`dpkg_status_entry`] paragraph, sorted by
//!   `Package`, separated by blank lines;
//! - `var/lib/dpkg/status.d/<package>`: the same paragraph once per package, as distroless
//!   images carry it;
//! - `var/lib/dpkg/info/<package>.list`: the package's paths with a leading `/`, `/.` first,
//!   directories included, in archive order (as dpkg writes it);
//! - `var/lib/dpkg/info/<package>.md5sums` when the `.deb` had `md5sums`, and
//!   `var/lib/dpkg/info/<package>.conffiles` when it had `conffiles`.
//!
//! For `Multi-Arch: same` packages the info files are named `<package>:<arch>.*`, like
//! dpkg does.
//!
//! # Maintainer scripts are not run
//!
//! `preinst`/`postinst` and triggers never execute; the result is the packages' files as
//! shipped plus the dpkg database, nothing else. In particular:
//!
//! - no system users or groups are created (`adduser`/`useradd` calls in `postinst`), so
//!   `etc/passwd`/`etc/group` only contain what a package ships literally (base-files and
//!   `base-passwd` ship templates in `usr/share`, not the live files);
//! - no `update-alternatives` symlinks (`/etc/alternatives/*`, `/usr/bin/editor`, …);
//! - no generated caches or state: no `etc/ld.so.cache` (`ldconfig`), no
//!   `gdk-pixbuf`/`gio` module caches, no `ca-certificates` bundle
//!   (`update-ca-certificates`), no compiled `.pyc`, no `etc/localtime` from `tzdata`'s
//!   debconf;
//! - no dpkg triggers (`interest`/`activate`) are processed;
//! - conffiles are installed as shipped; the status paragraphs carry no `Conffiles:` field.
//!
//! Images built this way must therefore not rely on anything a maintainer script would
//! have produced.
//!
//! # Ownership and modes
//!
//! Every entry keeps the numeric owner (`uid`/`gid` of the `data.tar` header) and the exact
//! permission bits it was shipped with, setuid, setgid and sticky bits included
//! ([`LayerEntry::with_exact_mode`]): `/tmp` stays `1777`, `/root` `0700`, `su` `4755`.
//! Owner *names* in the tarball are ignored (the layer writes numeric ids only), and
//! `dpkg-statoverride` entries, which a maintainer script would register, are not applied.
//! When several packages ship the same directory (or an identical file), the first
//! package's mode and owner win. The dpkg database files are `root:root` `0644`.
//!
//! # Hardlinks
//!
//! A hardlink inside a `.deb` is turned into a regular file with a copy of its target's
//! content (the layer format of [`rebake_oci::build_layer`] has no hardlinks). The target
//! must be a regular file shipped earlier in the same package; the copy keeps the mode and
//! owner of the hardlink's own tar header.

use std::collections::{BTreeMap, HashMap};

use rebake_oci::{LayerEntry, LayerEntryKind};

use super::control::{Paragraph, write_paragraphs};
use super::error::{DebError, Result};
use super::package::{DebPackage, EntryKind, dpkg_status_entry};

const DPKG_DIR: &str = "var/lib/dpkg";

/// Turns resolved, unpacked Debian packages into the entries of one image layer, with the
/// dpkg database written so scanners recognise the image.
///
/// Packages are merged in the given order (callers pass them sorted by name). Entries keep
/// their shipped numeric owner and exact mode (setuid/setgid/sticky included). Directories
/// shipped by several packages are kept once (the first package's mode and owner win). A regular
/// file or symlink shipped at the same path by two packages is accepted only when both are
/// identical (same kind and content/target); anything else is a
/// [`DebError::Archive`] `"{path} is shipped by both {a} and {b}"`. A path that is a
/// directory in one package and a file or symlink in another is the same error. The same
/// package name twice is an error too.
///
/// Maintainer scripts are **not** run: no users/groups from `postinst`, no
/// `update-alternatives` symlinks, no generated caches such as `ld.so.cache`, no triggers
/// (see the [module documentation](self)). Hardlinks become copies of their target's
/// content.
///
/// Paths are relative (no leading `/`); the result is sorted by path and depends only on
/// the input, and is accepted by [`rebake_oci::build_layer`].
pub fn assemble(packages: &[DebPackage]) -> Result<Vec<LayerEntry>> {
    // path -> (package that shipped it first, entry)
    let mut merged: BTreeMap<String, (String, LayerEntry)> = BTreeMap::new();
    let mut status: Vec<(String, Paragraph)> = Vec::new();
    let mut db_files: Vec<LayerEntry> = Vec::new();

    for package in packages {
        let name = package
            .control
            .get("Package")
            .ok_or_else(|| DebError::MissingField {
                context: "deb control".to_owned(),
                field: "Package",
            })?
            .to_owned();
        if status.iter().any(|(n, _)| *n == name) {
            return Err(DebError::Archive(format!("package {name} is given twice")));
        }
        let info_name = info_name(&name, &package.control);

        let contents: HashMap<&str, &[u8]> = package
            .data
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::File(content) => Some((e.path.as_str(), content.as_slice())),
                _ => None,
            })
            .collect();

        let mut list = String::from("/.\n");
        for entry in &package.data {
            list.push('/');
            list.push_str(&entry.path);
            list.push('\n');
            let kind = match &entry.kind {
                EntryKind::Dir => LayerEntryKind::Dir,
                EntryKind::File(content) => LayerEntryKind::File {
                    content: content.clone(),
                },
                EntryKind::Symlink(target) => LayerEntryKind::Symlink { target: target.clone() },
                EntryKind::Hardlink(target) => {
                    let content = contents.get(target.as_str()).ok_or_else(|| {
                        DebError::Archive(format!(
                            "{name}: hardlink {} points to {target}, which is not a regular file of the package",
                            entry.path
                        ))
                    })?;
                    LayerEntryKind::File {
                        content: content.to_vec(),
                    }
                }
            };
            let owner = |id: u64, what: &str| {
                u32::try_from(id).map_err(|_| {
                    DebError::Archive(format!("{name}: {} has a {what} of {id}, beyond 32 bits", entry.path))
                })
            };
            let layer_entry = LayerEntry::new(entry.path.clone(), entry.mode, kind)
                .with_exact_mode(entry.mode)
                .owned_by(owner(entry.uid, "uid")?, owner(entry.gid, "gid")?);
            insert(&mut merged, &name, layer_entry)?;
        }

        let paragraph = dpkg_status_entry(&package.control);
        let info = format!("{DPKG_DIR}/info/{info_name}");
        db_files.push(LayerEntry::file(
            format!("{DPKG_DIR}/status.d/{name}"),
            0o644,
            paragraph.to_text(),
        ));
        db_files.push(LayerEntry::file(format!("{info}.list"), 0o644, list));
        if let Some(md5sums) = &package.md5sums {
            db_files.push(LayerEntry::file(format!("{info}.md5sums"), 0o644, md5sums.as_bytes()));
        }
        if !package.conffiles.is_empty() {
            let mut conffiles = package.conffiles.join("\n");
            conffiles.push('\n');
            db_files.push(LayerEntry::file(format!("{info}.conffiles"), 0o644, conffiles));
        }
        status.push((name, paragraph));
    }

    status.sort_by(|a, b| a.0.cmp(&b.0));
    let paragraphs: Vec<Paragraph> = status.into_iter().map(|(_, p)| p).collect();
    db_files.push(LayerEntry::file(
        format!("{DPKG_DIR}/status"),
        0o644,
        write_paragraphs(&paragraphs),
    ));
    for dir in ["var", "var/lib", DPKG_DIR, "var/lib/dpkg/info", "var/lib/dpkg/status.d"] {
        db_files.push(LayerEntry::dir(dir));
    }
    for entry in db_files {
        insert(&mut merged, "the dpkg database", entry)?;
    }

    Ok(merged.into_values().map(|(_, entry)| entry).collect())
}

/// The base name of a package's `var/lib/dpkg/info` files: `name`, or `name:arch` for
/// `Multi-Arch: same` packages.
fn info_name(name: &str, control: &Paragraph) -> String {
    match (control.get("Multi-Arch"), control.get("Architecture")) {
        (Some("same"), Some(arch)) => format!("{name}:{arch}"),
        _ => name.to_owned(),
    }
}

/// [`crate::rootfs::merge_entry`], with this format's error.
fn insert(merged: &mut BTreeMap<String, (String, LayerEntry)>, owner: &str, entry: LayerEntry) -> Result<()> {
    crate::rootfs::merge_entry(merged, owner, entry).map_err(DebError::Archive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deb::control::parse_paragraphs;
    use crate::deb::package::DataEntry;

    fn entry(path: &str, kind: EntryKind) -> DataEntry {
        DataEntry {
            path: path.to_owned(),
            mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            kind,
        }
    }

    fn package(name: &str, data: Vec<DataEntry>) -> DebPackage {
        let control = parse_paragraphs(&format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: x\nDescription: test\n"
        ))
        .unwrap()
        .remove(0);
        DebPackage {
            control,
            md5sums: Some(format!("d41d8cd98f00b204e9800998ecf8427e  etc/{name}\n")),
            conffiles: Vec::new(),
            data,
        }
    }

    fn file(path: &str, content: &str) -> DataEntry {
        entry(path, EntryKind::File(content.as_bytes().to_vec()))
    }

    fn paths(entries: &[LayerEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    fn content<'a>(entries: &'a [LayerEntry], path: &str) -> &'a [u8] {
        match &entries.iter().find(|e| e.path == path).unwrap().kind {
            LayerEntryKind::File { content } => content,
            other => panic!("{path} is {other:?}"),
        }
    }

    #[test]
    fn conflicting_file_names_both_packages() {
        let a = package("alpha", vec![entry("etc", EntryKind::Dir), file("etc/shared", "one\n")]);
        let b = package("beta", vec![entry("etc", EntryKind::Dir), file("etc/shared", "two\n")]);
        let err = assemble(&[a, b]).unwrap_err().to_string();
        assert!(err.contains("etc/shared is shipped by both alpha and beta"), "{err}");
    }

    #[test]
    fn shared_dirs_and_identical_files_merge() {
        let a = package(
            "alpha",
            vec![
                entry("etc", EntryKind::Dir),
                file("etc/alpha", "a\n"),
                file("etc/same", "same\n"),
                entry("usr/bin/link", EntryKind::Symlink("../../etc/alpha".into())),
                entry("etc/hard", EntryKind::Hardlink("etc/alpha".into())),
            ],
        );
        let b = package(
            "beta",
            vec![
                entry("etc", EntryKind::Dir),
                file("etc/beta", "b\n"),
                file("etc/same", "same\n"),
            ],
        );
        let out = assemble(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(out, assemble(&[a.clone(), b.clone()]).unwrap());
        assert_eq!(
            paths(&out),
            [
                "etc",
                "etc/alpha",
                "etc/beta",
                "etc/hard",
                "etc/same",
                "usr/bin/link",
                "var",
                "var/lib",
                "var/lib/dpkg",
                "var/lib/dpkg/info",
                "var/lib/dpkg/info/alpha.list",
                "var/lib/dpkg/info/alpha.md5sums",
                "var/lib/dpkg/info/beta.list",
                "var/lib/dpkg/info/beta.md5sums",
                "var/lib/dpkg/status",
                "var/lib/dpkg/status.d",
                "var/lib/dpkg/status.d/alpha",
                "var/lib/dpkg/status.d/beta",
            ]
        );
        assert_eq!(content(&out, "etc/hard"), b"a\n");
        assert_eq!(
            content(&out, "var/lib/dpkg/info/alpha.list"),
            b"/.\n/etc\n/etc/alpha\n/etc/same\n/usr/bin/link\n/etc/hard\n"
        );
        let status = String::from_utf8(content(&out, "var/lib/dpkg/status").to_vec()).unwrap();
        let parsed = parse_paragraphs(&status).unwrap();
        let names: Vec<_> = parsed.iter().map(|p| p.get("Package").unwrap()).collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert!(parsed.iter().all(|p| p.get("Status") == Some("install ok installed")));
        rebake_oci::build_layer(out, 0).unwrap();
    }

    #[test]
    fn owners_and_exact_modes_are_kept() {
        let with = |mut e: DataEntry, mode: u32, uid: u64, gid: u64| {
            e.mode = mode;
            e.uid = uid;
            e.gid = gid;
            e
        };
        let a = package(
            "alpha",
            vec![
                with(entry("tmp", EntryKind::Dir), 0o1777, 0, 0),
                with(entry("root", EntryKind::Dir), 0o700, 0, 0),
                with(file("usr/bin/su", "ELF"), 0o4755, 0, 0),
                with(file("etc/gshadow", ""), 0o640, 0, 42),
                with(
                    entry("usr/bin/su2", EntryKind::Hardlink("usr/bin/su".into())),
                    0o4755,
                    0,
                    0,
                ),
            ],
        );
        // Shared directory: the first package's mode and owner win.
        let b = package("beta", vec![with(entry("tmp", EntryKind::Dir), 0o755, 1, 1)]);
        let out = assemble(&[a, b]).unwrap();
        let find = |p: &str| out.iter().find(|e| e.path == p).unwrap();
        for (path, mode, uid, gid) in [
            ("tmp", 0o1777, 0, 0),
            ("root", 0o700, 0, 0),
            ("usr/bin/su", 0o4755, 0, 0),
            ("usr/bin/su2", 0o4755, 0, 0),
            ("etc/gshadow", 0o640, 0, 42),
        ] {
            let e = find(path);
            assert!(e.exact_mode, "{path}");
            assert_eq!((e.mode, e.uid, e.gid), (mode, uid, gid), "{path}");
        }
        let status = find("var/lib/dpkg/status");
        assert_eq!((status.uid, status.gid, status.exact_mode), (0, 0, false));

        let huge = package("huge", vec![with(file("x", ""), 0o644, 1 << 33, 0)]);
        assert!(assemble(&[huge]).unwrap_err().to_string().contains("beyond 32 bits"));
    }

    #[test]
    fn status_sorted_by_name_whatever_the_order() {
        let out = assemble(&[package("zeta", vec![]), package("alpha", vec![])]).unwrap();
        let status = String::from_utf8(content(&out, "var/lib/dpkg/status").to_vec()).unwrap();
        assert!(status.find("Package: alpha").unwrap() < status.find("Package: zeta").unwrap());
        assert!(status.contains("\n\nPackage: zeta"));
    }

    #[test]
    fn other_conflicts() {
        let dir = package("alpha", vec![entry("opt/x", EntryKind::Dir)]);
        let link = package("beta", vec![entry("opt/x", EntryKind::Symlink("y".into()))]);
        let err = assemble(&[dir, link]).unwrap_err().to_string();
        assert!(err.contains("opt/x is shipped by both alpha and beta"), "{err}");

        let hard = package("alpha", vec![entry("a", EntryKind::Hardlink("missing".into()))]);
        assert!(assemble(&[hard]).is_err());

        assert!(assemble(&[package("alpha", vec![]), package("alpha", vec![])]).is_err());

        let clash = package("evil", vec![file("var/lib/dpkg/status", "x")]);
        let err = assemble(&[clash]).unwrap_err().to_string();
        assert!(err.contains("shipped by both evil and the dpkg database"), "{err}");
    }

    #[test]
    fn multi_arch_same_info_names() {
        let mut p = package("libfoo", vec![]);
        p.control.set("Multi-Arch", "same");
        let out = assemble(&[p]).unwrap();
        assert!(paths(&out).contains(&"var/lib/dpkg/info/libfoo:amd64.list"));
        assert!(paths(&out).contains(&"var/lib/dpkg/status.d/libfoo"));
    }
}
