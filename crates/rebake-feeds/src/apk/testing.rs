//! Builders for test fixtures: `.apk` files, `APKINDEX.tar.gz` archives and apk-style
//! RSA signatures. Not part of the stable API.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};

use super::error::{ApkError, Result};
use super::gzip::split_gzip_members;
use super::package::{DataEntry, DataKind, PkgInfo};
use super::signature::SignatureAlgorithm;

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data)?;
    Ok(e.finish()?)
}

fn tar_err(e: std::io::Error) -> ApkError {
    ApkError::Archive(format!("tar: {e}"))
}

/// A tar stream of regular files *without* the end-of-archive blocks, as abuild writes
/// the signature and control sections.
pub fn cut_tar(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).map_err(tar_err)?;
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    Ok(out)
}

/// A complete (end-marked) tar of data entries, gzip-compressed.
pub fn data_tar_gz(files: &[DataEntry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for f in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(f.mode);
        h.set_uid(f.uid);
        h.set_gid(f.gid);
        h.set_mtime(0);
        match &f.kind {
            DataKind::File(c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, &f.path, &c[..]).map_err(tar_err)?;
            }
            DataKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", f.path), std::io::empty())
                    .map_err(tar_err)?;
            }
            DataKind::Symlink(t) | DataKind::Hardlink(t) => {
                h.set_entry_type(if matches!(f.kind, DataKind::Symlink(_)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_size(0);
                b.append_link(&mut h, &f.path, t).map_err(tar_err)?;
            }
        }
    }
    gzip(&b.into_inner().map_err(tar_err)?)
}

/// Builds an unsigned v2 `.apk`: control member (`.PKGINFO` with `datahash` filled in)
/// followed by the data member.
pub fn build_apk(info: &PkgInfo, files: &[DataEntry]) -> Result<Vec<u8>> {
    let data = data_tar_gz(files)?;
    let mut info = info.clone();
    info.datahash = Some(hex::encode(Sha256::digest(&data)));
    let pkginfo = info.to_pkginfo_text();
    let mut out = gzip(&cut_tar(&[(".PKGINFO", pkginfo.as_bytes())])?)?;
    out.extend_from_slice(&data);
    Ok(out)
}

/// Builds an unsigned `APKINDEX.tar.gz` (one member with `DESCRIPTION` and `APKINDEX`).
pub fn build_index_tar_gz(index_text: &str, description: &str) -> Result<Vec<u8>> {
    gzip(&cut_tar(&[
        ("DESCRIPTION", description.as_bytes()),
        ("APKINDEX", index_text.as_bytes()),
    ])?)
}

/// Signs an unsigned apk container (`.apk` or `APKINDEX.tar.gz`): computes the RSA
/// PKCS#1 v1.5 signature over the first gzip member's compressed bytes with the PEM
/// private key (PKCS#8 or PKCS#1) and prepends a signature member holding
/// `<prefix><key_name>`.
pub fn sign(unsigned: &[u8], key_name: &str, private_pem: &str, algorithm: SignatureAlgorithm) -> Result<Vec<u8>> {
    let members = split_gzip_members(unsigned)?;
    let key = RsaPrivateKey::from_pkcs8_pem(private_pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(private_pem))
        .map_err(|e| ApkError::Signature(format!("invalid private key pem: {e}")))?;
    let (scheme, digest) = algorithm.scheme_and_digest(members[0].raw);
    let sig = key
        .sign(scheme, &digest)
        .map_err(|e| ApkError::Signature(format!("signing failed: {e}")))?;
    let name = format!("{}{key_name}", algorithm.file_prefix());
    let mut out = gzip(&cut_tar(&[(&name, &sig)])?)?;
    out.extend_from_slice(unsigned);
    Ok(out)
}
