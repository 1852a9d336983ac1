//! Splitting concatenated gzip members (the container format of `.apk` v2 files and
//! `APKINDEX.tar.gz`), and reading the tar streams inside them.

use std::io::Read;

use flate2::bufread::GzDecoder;

use super::error::{ApkError, Result};

/// Upper bound on the decompressed size of one member, against decompression bombs.
pub const MAX_MEMBER_SIZE: u64 = 4 << 30;

/// One gzip member of a concatenated stream.
#[derive(Clone, Debug)]
pub struct GzipMember<'a> {
    /// The compressed bytes exactly as stored (what apk signatures and hashes cover).
    pub raw: &'a [u8],
    /// The decompressed content.
    pub data: Vec<u8>,
}

/// Splits `bytes` into its gzip members, decompressing each one.
///
/// Trailing zero padding after the last member is ignored.
pub fn split_gzip_members(bytes: &[u8]) -> Result<Vec<GzipMember<'_>>> {
    let mut rest = bytes;
    let mut members = Vec::new();
    while !rest.is_empty() && !rest.iter().all(|&b| b == 0) {
        let before = rest;
        let mut data = Vec::new();
        {
            let mut dec = GzDecoder::new(&mut rest).take(MAX_MEMBER_SIZE + 1);
            dec.read_to_end(&mut data)
                .map_err(|e| ApkError::Archive(format!("gzip member {}: {e}", members.len())))?;
        }
        if data.len() as u64 > MAX_MEMBER_SIZE {
            return Err(ApkError::Archive(format!(
                "gzip member {} exceeds {MAX_MEMBER_SIZE} bytes",
                members.len()
            )));
        }
        let used = before.len() - rest.len();
        if used == 0 {
            return Err(ApkError::Archive("gzip member consumed no input".into()));
        }
        members.push(GzipMember {
            raw: &before[..used],
            data,
        });
    }
    if members.is_empty() {
        return Err(ApkError::Archive("no gzip data".into()));
    }
    Ok(members)
}

/// A tar entry read into memory.
#[derive(Clone, Debug)]
pub(crate) struct TarItem {
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub kind: tar::EntryType,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// Reads all entries of an (optionally end-marker-less) tar stream.
pub(crate) fn read_tar(data: &[u8]) -> Result<Vec<TarItem>> {
    let mut archive = tar::Archive::new(data);
    let mut items = Vec::new();
    let entries = archive.entries().map_err(|e| ApkError::Archive(format!("tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ApkError::Archive(format!("tar entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| ApkError::Archive(format!("tar path: {e}")))?
            .to_string_lossy()
            .into_owned();
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| ApkError::Archive(format!("tar mode of {path}: {e}")))?;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let kind = header.entry_type();
        let link = entry
            .link_name()
            .map_err(|e| ApkError::Archive(format!("tar link of {path}: {e}")))?
            .map(|l| l.to_string_lossy().into_owned());
        let mut body = Vec::new();
        entry
            .read_to_end(&mut body)
            .map_err(|e| ApkError::Archive(format!("tar data of {path}: {e}")))?;
        items.push(TarItem {
            path,
            mode,
            uid,
            gid,
            kind,
            link,
            data: body,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn splits_members() {
        let (a, b) = (gz(b"first"), gz(b"second"));
        let mut all = a.clone();
        all.extend_from_slice(&b);
        all.extend_from_slice(&[0; 16]);
        let m = split_gzip_members(&all).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].raw, &a[..]);
        assert_eq!(m[0].data, b"first");
        assert_eq!(m[1].raw, &b[..]);
        assert_eq!(m[1].data, b"second");
    }

    #[test]
    fn rejects_garbage() {
        assert!(split_gzip_members(b"").is_err());
        assert!(split_gzip_members(b"not gzip").is_err());
        let mut t = gz(b"x");
        t.truncate(t.len() - 3);
        assert!(split_gzip_members(&t).is_err());
    }
}
