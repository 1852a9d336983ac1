//! Assembling resolved `.apk`s into the entries of one image layer.
//!
//! [`assemble`] merges the data trees of already-read packages (see
//! [`super::package::read_apk`]) and adds the apk database that `apk` itself, vulnerability
//! scanners and SBOM tools read to recognise what is installed:
//!
//! - `lib/apk/db/installed`: every package's [`installed_db_entry`] block (index fields
//!   `C: P: V: A: S: I: T: U: L: o: m: t: c: k: D: p: i: r:` as known, then `F:`/`M:`
//!   directory lines and `R:`/`a:`/`Z:` file lines), in the given package order, each block
//!   followed by a blank line, exactly as apk-tools writes it;
//! - `lib/apk/db/triggers`: empty (no trigger is pending, because none is ever run);
//! - `etc/apk/world`: the *requested* dependency atoms (not the resolved closure), sorted,
//!   deduplicated, one per line, newline-terminated.
//!
//! `lib/apk/db/scripts.tar` is not written (the scripts are not run, see below), nor are
//! `etc/apk/repositories`, `etc/apk/keys` or `etc/apk/arch`: an image built this way is not
//! meant to run `apk add` against its feeds unless the caller adds those.
//!
//! # Install scripts are not run
//!
//! `.pre-install`, `.post-install`, `.pre-upgrade`/`.post-upgrade` and `.trigger` scripts
//! never execute; the result is the packages' files as shipped plus the apk database,
//! nothing else. In particular:
//!
//! - no users or groups are created by scripts (`addgroup`/`adduser` in `.pre-install`),
//!   so `etc/passwd`/`etc/group` only contain what a package ships literally (Alpine's
//!   `alpine-baselayout-data` and Wolfi's `wolfi-baselayout` ship them; see
//!   [`crate::rootfs::account_entries`] to add accounts);
//! - no busybox applet symlinks: `busybox --install -s` runs in busybox's
//!   `.post-install`/trigger, so only `bin/busybox` (and whatever symlinks the package
//!   ships, such as `bin/sh`) exist;
//! - no generated caches or state: no `etc/ssl/certs/ca-certificates.crt` bundle
//!   generation (`update-ca-certificates` in `ca-certificates`' trigger; Wolfi's
//!   `ca-certificates-bundle` ships the bundle as a file and is fine), no
//!   `etc/ld.so.cache` (glibc's `ldconfig` trigger), no GIO/gdk-pixbuf/font caches;
//! - `lib/apk/db/triggers` is empty, so a later `apk` run does not replay them either.
//!
//! Images built this way must therefore not rely on anything an install script would have
//! produced.
//!
//! # Ownership and modes
//!
//! Every entry keeps the numeric owner (`uid`/`gid` of the data tarball's header) and the
//! exact permission bits it was shipped with, setuid, setgid and sticky bits included
//! ([`LayerEntry::with_exact_mode`]), as `apk add` would extract it: `var/spool/cron`
//! `1730` owned by `0:42` stays so, setuid binaries keep `4755`. Owner *names* are ignored
//! (the layer writes numeric ids only). When several packages ship the same directory (or
//! an identical file), the first package's mode and owner win in the layer. The installed
//! database records the owners and modes *as shipped* by each package (the `a:`/`M:`
//! lines), which is what apk-tools records; the database files themselves are
//! `root:root` `0644`.
//!
//! # Hardlinks
//!
//! A hardlink inside an `.apk` is turned into a regular file with a copy of its target's
//! content (the layer format has no hardlinks). The target must be a regular file shipped
//! earlier in the same package. The database gets the copy's `Z:` checksum, like apk
//! records for the link it extracts.
//!
//! # Directory symlinks (`usrmerge`)
//!
//! Packages may ship directory symlinks such as Wolfi's `lib -> usr/lib` while other
//! packages (and the apk database itself) still use paths below `lib/`. Like extraction
//! onto a real file system, which follows such links, every path is resolved through the
//! symlinks shipped by *any* of the packages before merging: `lib/libz.so.1` lands at
//! `usr/lib/libz.so.1`, and the database is written to `usr/lib/apk/db/installed` when
//! `lib` is such a link. A directory entry at the link's own path (`lib`) merges into the
//! link's destination when some package ships that destination as a directory; otherwise
//! it conflicts with the link like any directory/symlink clash. The installed database
//! keeps the paths as shipped, as apk does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use rebake_oci::{LayerEntry, LayerEntryKind};

use super::error::{ApkError, Result};
use super::index::ApkDependency;
use super::package::{ApkFile, DataEntry, DataKind, installed_db_entry};

/// Where apk keeps its database (relative to `/`).
pub const APK_DB_DIR: &str = "lib/apk/db";

/// How many symlinks one path may pass through (Linux's `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: usize = 40;

/// Who adds the database files, as named in conflict errors.
const DATABASE_OWNER: &str = "the apk database";

/// Turns resolved, read `.apk`s into the entries of one image layer, with the apk database
/// written so `apk info`, scanners and SBOM tools recognise the image.
///
/// Packages are merged in the given order, which is also the order of the blocks in
/// `lib/apk/db/installed` (callers pass them in install order or sorted by name). `world`
/// holds the requested dependency atoms (`busybox`, `openssl>=3`, …) for `etc/apk/world`;
/// each must parse as an apk dependency atom.
///
/// Entries keep their shipped numeric owner and exact mode (setuid/setgid/sticky
/// included). Directories shipped by several packages are kept once (the first package's
/// mode and owner win).
/// A regular file or symlink shipped at the same path by two packages is accepted only when
/// both are identical (same kind and content/target); anything else is an
/// [`ApkError::Archive`] `"{path} is shipped by both {a} and {b}"`. A path that is a
/// directory in one package and a file or symlink in another is the same error, and so is a
/// package shipping one of the database files. The same package name twice, a path with a
/// `..` component and a symlink loop are errors too.
///
/// Install scripts are **not** run: no users/groups created by scripts, no busybox applet
/// symlinks, no generated `ca-certificates` bundle, no `ld.so.cache`, no triggers (see the
/// [module documentation](self)). Hardlinks become copies of their target's content; paths
/// are resolved through directory symlinks shipped by the packages.
///
/// Paths are relative (no leading `/`); the result is sorted by path, depends only on the
/// input, and is accepted by [`rebake_oci::build_layer`].
pub fn assemble(packages: &[ApkFile], world: &[String]) -> Result<Vec<LayerEntry>> {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for package in packages {
        if !names.insert(package.pkginfo.name.as_str()) {
            return Err(ApkError::Archive(format!(
                "package {} is given twice",
                package.pkginfo.name
            )));
        }
    }
    let world = world_text(world)?;
    let links = symlinks(packages)?;
    let dirs = directories(packages, &links)?;

    // path -> (package that shipped it first, entry)
    let mut merged: BTreeMap<String, (String, LayerEntry)> = BTreeMap::new();
    let mut installed = String::new();
    for package in packages {
        let name = &package.pkginfo.name;
        let data = resolve_hardlinks(package)?;
        for entry in &data {
            let path =
                place(&links, &dirs, entry).map_err(|message| ApkError::Archive(format!("{name}: {message}")))?;
            let kind = match &entry.kind {
                DataKind::Dir => LayerEntryKind::Dir,
                DataKind::File(content) => LayerEntryKind::File {
                    content: content.clone(),
                },
                DataKind::Symlink(target) => LayerEntryKind::Symlink { target: target.clone() },
                // `resolve_hardlinks` turned them into files.
                DataKind::Hardlink(target) => {
                    return Err(ApkError::Archive(format!(
                        "{name}: unresolved hardlink {} -> {target}",
                        entry.path
                    )));
                }
            };
            let owner = |id: u64, what: &str| {
                u32::try_from(id).map_err(|_| {
                    ApkError::Archive(format!("{name}: {} has a {what} of {id}, beyond 32 bits", entry.path))
                })
            };
            let layer_entry = LayerEntry::new(path, entry.mode, kind)
                .with_exact_mode(entry.mode)
                .owned_by(owner(entry.uid, "uid")?, owner(entry.gid, "gid")?);
            insert(&mut merged, name, layer_entry)?;
        }
        installed.push_str(&installed_db_entry(
            &package.pkginfo,
            Some(&package.checksum),
            Some(package.file_size),
            &data,
        ));
    }

    let db_files = [
        LayerEntry::file(format!("{APK_DB_DIR}/installed"), 0o644, installed),
        LayerEntry::file(format!("{APK_DB_DIR}/triggers"), 0o644, Vec::new()),
        LayerEntry::file("etc/apk/world", 0o644, world),
    ];
    for mut entry in db_files {
        entry.path = resolve(&links, &entry.path, false)
            .map_err(|message| ApkError::Archive(format!("{DATABASE_OWNER}: {message}")))?;
        // The resolved parents are meant to be directories: add them (a package's file or
        // symlink there is a conflict).
        let parents: Vec<String> = entry
            .path
            .match_indices('/')
            .map(|(i, _)| entry.path[..i].to_owned())
            .collect();
        for parent in parents {
            insert(&mut merged, DATABASE_OWNER, LayerEntry::dir(parent))?;
        }
        insert(&mut merged, DATABASE_OWNER, entry)?;
    }

    Ok(merged.into_values().map(|(_, entry)| entry).collect())
}

/// `etc/apk/world`: the atoms sorted and deduplicated, one per line.
fn world_text(world: &[String]) -> Result<String> {
    let mut atoms = BTreeSet::new();
    for atom in world {
        ApkDependency::parse(atom)?;
        atoms.insert(atom.as_str());
    }
    Ok(atoms.into_iter().map(|a| format!("{a}\n")).collect())
}

/// The package's data with hardlinks replaced by copies of their targets.
fn resolve_hardlinks(package: &ApkFile) -> Result<Vec<DataEntry>> {
    let name = &package.pkginfo.name;
    let mut contents: HashMap<&str, &[u8]> = HashMap::new();
    let mut out = Vec::with_capacity(package.data.len());
    for entry in &package.data {
        let mut entry_out = entry.clone();
        match &entry.kind {
            DataKind::File(content) => {
                contents.insert(entry.path.as_str(), content.as_slice());
            }
            DataKind::Hardlink(target) => {
                let content = contents.get(target.as_str()).ok_or_else(|| {
                    ApkError::Archive(format!(
                        "{name}: hardlink {} points to {target}, which is not a regular file shipped earlier in the package",
                        entry.path
                    ))
                })?;
                entry_out.kind = DataKind::File(content.to_vec());
            }
            DataKind::Dir | DataKind::Symlink(_) => {}
        }
        out.push(entry_out);
    }
    Ok(out)
}

/// The symlinks shipped by all packages, keyed by their path with its parent directories
/// already resolved through the (unresolved) links, so a link shipped below another
/// directory link is found too.
fn symlinks(packages: &[ApkFile]) -> Result<HashMap<String, String>> {
    let raw: HashMap<String, String> = packages
        .iter()
        .flat_map(|p| &p.data)
        .filter_map(|e| match &e.kind {
            DataKind::Symlink(target) => Some((e.path.clone(), target.clone())),
            _ => None,
        })
        .collect();
    let mut keyed = HashMap::with_capacity(raw.len());
    for (path, target) in &raw {
        let path = resolve(&raw, path, false).map_err(ApkError::Archive)?;
        keyed.insert(path, target.clone());
    }
    Ok(keyed)
}

/// The directories the packages ship, with their parents resolved through `links`.
fn directories(packages: &[ApkFile], links: &HashMap<String, String>) -> Result<HashSet<String>> {
    let mut dirs = HashSet::new();
    for package in packages {
        for entry in package.data.iter().filter(|e| e.kind == DataKind::Dir) {
            let path = resolve(links, &entry.path, false)
                .map_err(|message| ApkError::Archive(format!("{}: {message}", package.pkginfo.name)))?;
            dirs.insert(path);
        }
    }
    Ok(dirs)
}

/// Where `entry` lands: its parents resolved through `links`; for a directory whose own
/// path is a symlink, the symlink's destination when that is a directory some package
/// ships (`lib` with `lib -> usr/lib`), so the two merge instead of conflicting.
fn place(
    links: &HashMap<String, String>,
    dirs: &HashSet<String>,
    entry: &DataEntry,
) -> std::result::Result<String, String> {
    let path = resolve(links, &entry.path, false)?;
    if entry.kind == DataKind::Dir && links.contains_key(&path) {
        let followed = resolve(links, &entry.path, true)?;
        if dirs.contains(&followed) {
            return Ok(followed);
        }
    }
    Ok(path)
}

/// Resolves `path` through the symlinks in `links` the way the kernel would on an
/// extracted tree: every parent component, and the last one too when `follow_last` (for
/// directories). `..` in link targets is followed (clamped at the root); `..` in `path`
/// itself is rejected.
fn resolve(links: &HashMap<String, String>, path: &str, follow_last: bool) -> std::result::Result<String, String> {
    let components = |p: &str| -> VecDeque<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect()
    };
    let mut pending = components(path);
    if pending.iter().any(|c| c == "..") {
        return Err(format!("{path} has a '..' component"));
    }
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let last = pending.is_empty();
        resolved.push(component);
        if last && !follow_last {
            break;
        }
        let Some(target) = links.get(&resolved.join("/")) else {
            continue;
        };
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(format!("{path}: too many levels of symbolic links"));
        }
        resolved.pop();
        if target.starts_with('/') {
            resolved.clear();
        }
        let mut next = components(target);
        next.append(&mut pending);
        pending = next;
    }
    if resolved.is_empty() {
        return Err(format!("{path} resolves to the root directory"));
    }
    Ok(resolved.join("/"))
}

/// [`crate::rootfs::merge_entry`], with this format's error.
fn insert(merged: &mut BTreeMap<String, (String, LayerEntry)>, owner: &str, entry: LayerEntry) -> Result<()> {
    crate::rootfs::merge_entry(merged, owner, entry).map_err(ApkError::Archive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apk::index::parse_apkindex;
    use crate::apk::package::{PkgInfo, q1_sha1, read_apk};
    use crate::apk::testing::build_apk;
    use crate::apk::version::ApkVersion;

    fn apk(info: PkgInfo, files: &[DataEntry]) -> ApkFile {
        read_apk(&build_apk(&info, files).unwrap()).unwrap()
    }

    fn simple(name: &str, files: &[DataEntry]) -> ApkFile {
        apk(
            PkgInfo::new(name, ApkVersion::parse("1.0-r0").unwrap(), "x86_64"),
            files,
        )
    }

    fn musl() -> ApkFile {
        let mut info = PkgInfo::new("musl", ApkVersion::parse("1.2.5-r0").unwrap(), "x86_64");
        info.description = Some("the musl c library".into());
        info.url = Some("https://musl.libc.org/".into());
        info.license = Some("MIT".into());
        info.origin = Some("musl".into());
        info.maintainer = Some("Someone <a@b>".into());
        info.build_date = Some(1_700_000_000);
        info.commit = Some("abc123".into());
        info.installed_size = Some(600_000);
        info.provides = vec![crate::apk::ApkProvide::parse("so:libc.musl-x86_64.so.1=1").unwrap()];
        apk(
            info,
            &[
                DataEntry::dir("lib", 0o755),
                DataEntry::file("lib/ld-musl-x86_64.so.1", 0o755, b"ELF musl"),
                DataEntry::symlink("lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1"),
            ],
        )
    }

    fn busybox() -> ApkFile {
        let mut info = PkgInfo::new("busybox", ApkVersion::parse("1.36.1-r15").unwrap(), "x86_64");
        info.description = Some("Size optimized toolbox".into());
        info.license = Some("GPL-2.0-only".into());
        info.depends = vec![ApkDependency::parse("so:libc.musl-x86_64.so.1").unwrap()];
        info.provides = vec![crate::apk::ApkProvide::parse("cmd:sh=1.36.1-r15").unwrap()];
        apk(
            info,
            &[
                DataEntry::dir("bin", 0o755),
                DataEntry::file("bin/busybox", 0o755, b"ELF busybox"),
                DataEntry::symlink("bin/sh", "/bin/busybox"),
                DataEntry::dir("etc", 0o755),
                DataEntry::file("etc/securetty", 0o644, b"console\n"),
                DataEntry {
                    uid: 0,
                    gid: 42,
                    ..DataEntry::dir("var/spool/cron", 0o1730)
                },
            ],
        )
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

    fn text(entries: &[LayerEntry], path: &str) -> String {
        String::from_utf8(content(entries, path).to_vec()).unwrap()
    }

    #[test]
    fn installed_db_and_world() {
        let (musl, busybox) = (musl(), busybox());
        let world = vec![
            "busybox".to_owned(),
            "ca-certificates-bundle>=2024".to_owned(),
            "busybox".to_owned(),
        ];
        let out = assemble(&[musl.clone(), busybox.clone()], &world).unwrap();
        assert_eq!(out, assemble(&[musl.clone(), busybox.clone()], &world).unwrap());
        assert_eq!(
            paths(&out),
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "etc",
                "etc/apk",
                "etc/apk/world",
                "etc/securetty",
                "lib",
                "lib/apk",
                "lib/apk/db",
                "lib/apk/db/installed",
                "lib/apk/db/triggers",
                "lib/ld-musl-x86_64.so.1",
                "lib/libc.musl-x86_64.so.1",
                "var/spool/cron",
            ]
        );
        assert_eq!(text(&out, "etc/apk/world"), "busybox\nca-certificates-bundle>=2024\n");
        assert_eq!(text(&out, "lib/apk/db/triggers"), "");

        let want = format!(
            "C:{}\nP:musl\nV:1.2.5-r0\nA:x86_64\nS:{}\nI:600000\nT:the musl c library\nU:https://musl.libc.org/\nL:MIT\no:musl\nm:Someone <a@b>\nt:1700000000\nc:abc123\np:so:libc.musl-x86_64.so.1=1\nF:lib\nR:ld-musl-x86_64.so.1\na:0:0:755\nZ:{}\nR:libc.musl-x86_64.so.1\na:0:0:777\nZ:{}\n\n\
             C:{}\nP:busybox\nV:1.36.1-r15\nA:x86_64\nS:{}\nT:Size optimized toolbox\nL:GPL-2.0-only\nD:so:libc.musl-x86_64.so.1\np:cmd:sh=1.36.1-r15\nF:bin\nR:busybox\na:0:0:755\nZ:{}\nR:sh\na:0:0:777\nZ:{}\nF:etc\nR:securetty\nZ:{}\nF:var\nF:var/spool\nF:var/spool/cron\nM:0:42:1730\n\n",
            musl.checksum,
            musl.file_size,
            q1_sha1(b"ELF musl"),
            q1_sha1(b"ld-musl-x86_64.so.1"),
            busybox.checksum,
            busybox.file_size,
            q1_sha1(b"ELF busybox"),
            q1_sha1(b"/bin/busybox"),
            q1_sha1(b"console\n"),
        );
        let installed = text(&out, "lib/apk/db/installed");
        assert_eq!(installed, want);

        // The blocks read back as an index: same names, versions, checksums, relations.
        let parsed = parse_apkindex(&installed).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].id(), "musl-1.2.5-r0");
        assert_eq!(parsed[0].checksum.as_deref(), Some(musl.checksum.as_str()));
        assert_eq!(parsed[0].size, Some(musl.file_size));
        assert_eq!(parsed[0].provides[0].name, "so:libc.musl-x86_64.so.1");
        assert_eq!(parsed[1].id(), "busybox-1.36.1-r15");
        assert_eq!(parsed[1].depends[0].name, "so:libc.musl-x86_64.so.1");
        assert_eq!(parsed[1].arch, "x86_64");

        rebake_oci::build_layer(out, 0).unwrap();
    }

    #[test]
    fn order_of_blocks_follows_input() {
        let out = assemble(&[busybox(), musl()], &[]).unwrap();
        let installed = text(&out, "lib/apk/db/installed");
        assert!(installed.find("P:busybox").unwrap() < installed.find("P:musl").unwrap());
        assert!(installed.contains("\n\nC:"));
        assert_eq!(text(&out, "etc/apk/world"), "");
    }

    #[test]
    fn conflicting_file_names_both_packages() {
        let a = simple("alpha", &[DataEntry::file("etc/shared", 0o644, b"one\n")]);
        let b = simple("beta", &[DataEntry::file("etc/shared", 0o644, b"two\n")]);
        let err = assemble(&[a, b], &[]).unwrap_err().to_string();
        assert!(err.contains("etc/shared is shipped by both alpha and beta"), "{err}");
    }

    #[test]
    fn identical_files_and_shared_dirs_merge() {
        let a = simple(
            "alpha",
            &[
                DataEntry::dir("etc", 0o755),
                DataEntry::file("etc/same", 0o644, b"same\n"),
                DataEntry::symlink("etc/link", "same"),
            ],
        );
        let b = simple(
            "beta",
            &[
                DataEntry::dir("etc", 0o700),
                DataEntry::file("etc/same", 0o644, b"same\n"),
                DataEntry::symlink("etc/link", "same"),
            ],
        );
        let out = assemble(&[a, b], &[]).unwrap();
        let etc = out.iter().find(|e| e.path == "etc").unwrap();
        assert_eq!(etc.mode, 0o755);
        assert_eq!(content(&out, "etc/same"), b"same\n");
    }

    #[test]
    fn owners_and_exact_modes_are_kept() {
        let shadow = simple(
            "shadow",
            &[
                DataEntry::dir("tmp", 0o1777),
                DataEntry::file("usr/bin/passwd", 0o4755, b"ELF"),
                DataEntry {
                    uid: 0,
                    gid: 42,
                    ..DataEntry::file("usr/bin/chage", 0o2755, b"ELF2")
                },
                DataEntry {
                    uid: 1000,
                    gid: 1001,
                    ..DataEntry::dir("home/app", 0o750)
                },
            ],
        );
        let installed_before = shadow.installed_db_entry();
        let out = assemble(&[shadow, busybox()], &[]).unwrap();
        let find = |p: &str| out.iter().find(|e| e.path == p).unwrap();
        for (path, mode, uid, gid) in [
            ("tmp", 0o1777, 0, 0),
            ("usr/bin/passwd", 0o4755, 0, 0),
            ("usr/bin/chage", 0o2755, 0, 42),
            ("home/app", 0o750, 1000, 1001),
            ("var/spool/cron", 0o1730, 0, 42),
            ("bin/sh", 0o777, 0, 0),
        ] {
            let e = find(path);
            assert!(e.exact_mode, "{path}");
            assert_eq!((e.mode, e.uid, e.gid), (mode, uid, gid), "{path}");
        }
        let installed = text(&out, "lib/apk/db/installed");
        assert!(installed.starts_with(&installed_before), "{installed}");
        assert!(installed.contains("F:tmp\nM:0:0:1777\n"), "{installed}");
        assert!(installed.contains("R:passwd\na:0:0:4755\n"), "{installed}");
        assert!(installed.contains("R:chage\na:0:42:2755\n"), "{installed}");
        assert!(installed.contains("F:home/app\nM:1000:1001:750\n"), "{installed}");
        let db = find("lib/apk/db/installed");
        assert_eq!((db.uid, db.gid, db.exact_mode), (0, 0, false));

        let layer = rebake_oci::build_layer(out, 0).unwrap();
        let mut tar_bytes = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer.compressed[..]), &mut tar_bytes).unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let headers: HashMap<String, (u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    (h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                )
            })
            .collect();
        assert_eq!(headers["tmp/"], (0o1777, 0, 0));
        assert_eq!(headers["usr/bin/passwd"], (0o4755, 0, 0));
        assert_eq!(headers["home/app/"], (0o750, 1000, 1001));
    }

    #[test]
    fn other_conflicts() {
        let dir = simple("alpha", &[DataEntry::dir("opt/x", 0o755)]);
        let link = simple("beta", &[DataEntry::symlink("opt/x", "y")]);
        let err = assemble(&[dir, link], &[]).unwrap_err().to_string();
        assert!(err.contains("opt/x is shipped by both alpha and beta"), "{err}");

        let blocker = simple("blocker", &[DataEntry::file("etc/apk", 0o644, b"x")]);
        let err = assemble(&[blocker], &[]).unwrap_err().to_string();
        assert!(
            err.contains("etc/apk is shipped by both blocker and the apk database"),
            "{err}"
        );

        let evil = simple("evil", &[DataEntry::file("lib/apk/db/installed", 0o644, b"x")]);
        let err = assemble(&[evil], &[]).unwrap_err().to_string();
        assert!(err.contains("shipped by both evil and the apk database"), "{err}");

        let err = assemble(&[simple("a", &[]), simple("a", &[])], &[]).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");

        assert!(assemble(&[], &["foo>>1".to_owned()]).is_err());
    }

    #[test]
    fn hardlinks_become_copies() {
        let mut p = simple("alpha", &[DataEntry::file("usr/bin/a", 0o755, b"ELF")]);
        p.data.push(DataEntry {
            kind: DataKind::Hardlink("usr/bin/a".into()),
            ..DataEntry::file("usr/bin/b", 0o755, b"")
        });
        let out = assemble(std::slice::from_ref(&p), &[]).unwrap();
        assert_eq!(content(&out, "usr/bin/b"), b"ELF");
        let installed = text(&out, "lib/apk/db/installed");
        assert!(
            installed.contains(&format!("R:b\na:0:0:755\nZ:{}\n", q1_sha1(b"ELF"))),
            "{installed}"
        );

        p.data.push(DataEntry {
            kind: DataKind::Hardlink("usr/bin/missing".into()),
            ..DataEntry::file("usr/bin/c", 0o755, b"")
        });
        assert!(assemble(&[p], &[]).is_err());
    }

    #[test]
    fn directory_symlinks_are_followed() {
        let layout = simple(
            "baselayout",
            &[
                DataEntry::dir("usr", 0o755),
                DataEntry::dir("usr/lib", 0o755),
                DataEntry::symlink("lib", "usr/lib"),
                DataEntry::dir("etc/ssl", 0o755),
                DataEntry::symlink("etc/ssl1.1", "/etc/ssl"),
            ],
        );
        let zlib = simple(
            "zlib",
            &[
                DataEntry::dir("lib", 0o755),
                DataEntry::file("lib/libz.so.1", 0o755, b"ELF z"),
                DataEntry::dir("etc/ssl1.1", 0o755),
                DataEntry::file("etc/ssl1.1/cert.pem", 0o644, b"pem"),
            ],
        );
        let out = assemble(&[layout, zlib], &[]).unwrap();
        assert_eq!(
            paths(&out),
            [
                "etc",
                "etc/apk",
                "etc/apk/world",
                "etc/ssl",
                "etc/ssl/cert.pem",
                "etc/ssl1.1",
                "lib",
                "usr",
                "usr/lib",
                "usr/lib/apk",
                "usr/lib/apk/db",
                "usr/lib/apk/db/installed",
                "usr/lib/apk/db/triggers",
                "usr/lib/libz.so.1",
            ]
        );
        // The database keeps the paths as shipped.
        let installed = text(&out, "usr/lib/apk/db/installed");
        assert!(installed.contains("F:lib\nR:libz.so.1\n"), "{installed}");
        rebake_oci::build_layer(out, 0).unwrap();
    }

    #[test]
    fn symlink_loops_and_dotdot_are_errors() {
        let looped = simple(
            "loop",
            &[
                DataEntry::symlink("a", "b"),
                DataEntry::symlink("b", "a"),
                DataEntry::file("a/x", 0o644, b""),
            ],
        );
        let err = assemble(&[looped], &[]).unwrap_err().to_string();
        assert!(err.contains("too many levels"), "{err}");

        let mut escape = simple("escape", &[]);
        escape.data.push(DataEntry {
            path: "usr/../../etc/x".into(),
            ..DataEntry::file("x", 0o644, b"")
        });
        let err = assemble(&[escape], &[]).unwrap_err().to_string();
        assert!(err.contains("'..'"), "{err}");
    }
}
