//! The merged file list of an image, for scanners.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use crate::error::{OciError, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// What a [`FileInfo`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to another path of the image.
    Hardlink,
    /// Device, fifo or anything else.
    Other,
}

/// One path of the merged image filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Path relative to the root, no leading `/` or trailing `/` (`usr/bin/env`).
    pub path: String,
    /// Content size in bytes (0 for non-regular entries; a hard link reports its target's).
    pub size: u64,
    /// Lowercase hex sha256 of the content; empty for non-regular entries (a hard link
    /// reports its target's when the target is known).
    pub sha256: String,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Entry kind.
    pub kind: FileKind,
    /// Link target for symlinks and hard links.
    pub link_target: Option<String>,
    /// Digest of the layer that last wrote this path.
    pub layer_digest: String,
}

/// Merges `layers` (base first) into the final file list, sorted by path.
///
/// Each layer is `(digest, bytes)`; the bytes may be gzip-compressed (detected by the gzip
/// magic) or a plain tar. OCI whiteouts apply to the layers below: `dir/.wh.name` removes
/// `dir/name` and everything under it, `dir/.wh..wh..opq` removes everything under `dir`.
/// A non-directory replacing a directory also hides that directory's contents.
pub fn inventory(layers: &[(String, Bytes)]) -> Result<Vec<FileInfo>> {
    Ok(inventory_with_contents(layers, &|_| false)?.0)
}

/// [`inventory`], also returning the content of every regular file of the final filesystem
/// whose path `keep` selects (package databases, lock files, files tests look at), by path.
pub fn inventory_with_contents(
    layers: &[(String, Bytes)],
    keep: &dyn Fn(&str) -> bool,
) -> Result<(Vec<FileInfo>, BTreeMap<String, Bytes>)> {
    let mut files: BTreeMap<String, FileInfo> = BTreeMap::new();
    let mut contents: BTreeMap<String, Bytes> = BTreeMap::new();
    for (layer_digest, bytes) in layers {
        let read = read_layer(layer_digest, bytes, keep)?;
        for dir in &read.opaque_dirs {
            remove_descendants(&mut files, dir);
        }
        for path in &read.whiteouts {
            files.remove(path);
            remove_descendants(&mut files, path);
        }
        for (path, content) in read.contents {
            contents.insert(path, content);
        }
        for mut info in read.entries {
            if info.kind != FileKind::Dir {
                remove_descendants(&mut files, &info.path);
            }
            let hardlink_target = match info.kind {
                FileKind::Hardlink => info.link_target.as_deref().and_then(|t| files.get(t)),
                _ => None,
            };
            if let Some(target) = hardlink_target {
                info.size = target.size;
                info.sha256 = target.sha256.clone();
            }
            if info.kind == FileKind::Hardlink
                && let Some(target) = info.link_target.as_deref()
                && let Some(content) = contents.get(target).cloned()
                && keep(&info.path)
            {
                contents.insert(info.path.clone(), content);
            }
            files.insert(info.path.clone(), info);
        }
    }
    contents.retain(|path, _| {
        files
            .get(path)
            .is_some_and(|info| matches!(info.kind, FileKind::File | FileKind::Hardlink))
    });
    Ok((files.into_values().collect(), contents))
}

/// Removes every path strictly under `dir` (`""` means the root).
fn remove_descendants(files: &mut BTreeMap<String, FileInfo>, dir: &str) {
    if dir.is_empty() {
        files.clear();
        return;
    }
    let prefix = format!("{dir}/");
    let doomed: Vec<String> = files
        .range(prefix.clone()..)
        .take_while(|(path, _)| path.starts_with(&prefix))
        .map(|(path, _)| path.clone())
        .collect();
    for path in doomed {
        files.remove(&path);
    }
}

struct ReadLayer {
    entries: Vec<FileInfo>,
    contents: Vec<(String, Bytes)>,
    whiteouts: Vec<String>,
    opaque_dirs: Vec<String>,
}

/// Strips `./`, leading `/` and trailing `/`; `None` for the root itself. Paths with `..`
/// components are rejected as malformed layers.
fn normalise_tar_path(raw: &str) -> std::result::Result<Option<String>, &'static str> {
    let mut components = Vec::new();
    for component in raw.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("path has a '..' component"),
            other => components.push(other),
        }
    }
    if components.is_empty() {
        Ok(None)
    } else {
        Ok(Some(components.join("/")))
    }
}

fn read_layer(layer_digest: &str, bytes: &Bytes, keep: &dyn Fn(&str) -> bool) -> Result<ReadLayer> {
    let layer_error = |source: std::io::Error| OciError::Layer {
        context: format!("failed to read layer {layer_digest}"),
        source,
    };
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(&bytes[..]))
    } else {
        Box::new(&bytes[..])
    };
    let mut archive = tar::Archive::new(reader);
    let mut read = ReadLayer {
        entries: Vec::new(),
        contents: Vec::new(),
        whiteouts: Vec::new(),
        opaque_dirs: Vec::new(),
    };
    for entry in archive.entries().map_err(layer_error)? {
        let mut entry = entry.map_err(layer_error)?;
        let raw_path = entry.path().map_err(layer_error)?.to_string_lossy().into_owned();
        let path = normalise_tar_path(&raw_path).map_err(|reason| {
            layer_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{reason}: {raw_path}"),
            ))
        })?;
        let Some(path) = path else {
            continue;
        };
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (dir, name),
            None => ("", path.as_str()),
        };
        if name == OPAQUE_WHITEOUT {
            read.opaque_dirs.push(dir.to_string());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let hidden_path = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            read.whiteouts.push(hidden_path);
            continue;
        }

        let header = entry.header();
        let mode = header.mode().map_err(layer_error)? & 0o7777;
        let entry_type = header.entry_type();
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => FileKind::File,
            EntryType::Directory => FileKind::Dir,
            EntryType::Symlink => FileKind::Symlink,
            EntryType::Link => FileKind::Hardlink,
            _ => FileKind::Other,
        };
        let link_target = match kind {
            FileKind::Symlink | FileKind::Hardlink => entry
                .link_name()
                .map_err(layer_error)?
                .map(|target| target.to_string_lossy().into_owned()),
            _ => None,
        };
        let link_target = match (kind, link_target) {
            // Hard link targets are archive paths: normalise them like entry paths.
            (FileKind::Hardlink, Some(target)) => normalise_tar_path(&target).ok().flatten(),
            (_, target) => target,
        };
        // Some writers leave owner fields empty: read as 0 (root), as tar(1) does.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let (size, sha256) = if kind == FileKind::File && keep(&path) {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(layer_error)?;
            let sha256 = hex::encode(Sha256::digest(&content));
            let size = content.len() as u64;
            read.contents.push((path.clone(), Bytes::from(content)));
            (size, sha256)
        } else if kind == FileKind::File {
            let mut hasher = Sha256::new();
            let size = std::io::copy(&mut entry, &mut hasher).map_err(layer_error)?;
            (size, hex::encode(hasher.finalize()))
        } else {
            (0, String::new())
        };
        read.entries.push(FileInfo {
            path,
            size,
            sha256,
            mode,
            uid,
            gid,
            kind,
            link_target,
            layer_digest: layer_digest.to_string(),
        });
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{LayerEntry, build_layer};

    fn hex_sha(content: &[u8]) -> String {
        hex::encode(Sha256::digest(content))
    }

    #[test]
    fn applies_whiteouts_and_opaque_dirs() {
        let base = build_layer(
            vec![
                LayerEntry::file("etc/keep", 0o644, "keep"),
                LayerEntry::file("etc/gone", 0o644, "gone"),
                LayerEntry::file("opt/old/a", 0o644, "a"),
                LayerEntry::file("opt/old/b/c", 0o644, "c"),
                LayerEntry::file("srv/x", 0o644, "x"),
                LayerEntry::file("bin/tool", 0o755, "tool v1"),
                LayerEntry::symlink("bin/alias", "tool"),
            ],
            0,
        )
        .unwrap();
        let top = build_layer(
            vec![
                LayerEntry::file("etc/.wh.gone", 0o644, ""),
                LayerEntry::file("srv/.wh..wh..opq", 0o644, ""),
                LayerEntry::file("srv/y", 0o644, "y"),
                LayerEntry::file(".wh.opt", 0o644, ""),
                LayerEntry::file("bin/tool", 0o755, "tool v2"),
            ],
            0,
        )
        .unwrap();
        let layers = vec![
            (base.digest.clone(), base.compressed.clone()),
            (top.digest.clone(), top.compressed.clone()),
        ];
        let files = inventory(&layers).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["bin", "bin/alias", "bin/tool", "etc", "etc/keep", "srv", "srv/y"]
        );

        let tool = files.iter().find(|f| f.path == "bin/tool").unwrap();
        assert_eq!(tool.kind, FileKind::File);
        assert_eq!(tool.sha256, hex_sha(b"tool v2"));
        assert_eq!(tool.size, 7);
        assert_eq!(tool.mode, 0o755);
        assert_eq!(tool.layer_digest, top.digest);

        let keep = files.iter().find(|f| f.path == "etc/keep").unwrap();
        assert_eq!(keep.layer_digest, base.digest);
        assert_eq!(keep.mode, 0o644);

        let alias = files.iter().find(|f| f.path == "bin/alias").unwrap();
        assert_eq!(alias.kind, FileKind::Symlink);
        assert_eq!(alias.link_target.as_deref(), Some("tool"));
        assert!(alias.sha256.is_empty());

        let etc = files.iter().find(|f| f.path == "etc").unwrap();
        assert_eq!(etc.kind, FileKind::Dir);
        // The top layer re-declares etc/ (as a parent of the whiteout).
        assert_eq!(etc.layer_digest, top.digest);
    }

    #[test]
    fn reads_uncompressed_tar_and_hardlinks() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o4755);
        header.set_size(3);
        builder.append_data(&mut header, "./bin/su", &b"abc"[..]).unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(EntryType::Link);
        link.set_mode(0o644);
        link.set_size(0);
        builder.append_link(&mut link, "bin/su2", "./bin/su").unwrap();
        let tar_bytes = Bytes::from(builder.into_inner().unwrap());

        let files = inventory(&[("sha256:plain".to_string(), tar_bytes)]).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "bin/su");
        assert_eq!(files[0].mode, 0o4755);
        assert_eq!(files[1].kind, FileKind::Hardlink);
        assert_eq!(files[1].link_target.as_deref(), Some("bin/su"));
        assert_eq!(files[1].sha256, hex_sha(b"abc"));
        assert_eq!(files[1].size, 3);
    }

    #[test]
    fn garbage_is_a_layer_error() {
        let error = inventory(&[("sha256:bad".to_string(), Bytes::from_static(&[0x1f, 0x8b, 1, 2, 3]))]).unwrap_err();
        assert!(matches!(error, OciError::Layer { .. }), "{error}");
    }
}
