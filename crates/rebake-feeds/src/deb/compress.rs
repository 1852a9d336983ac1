//! Decompression by file-name suffix, shared by index reading and `.deb` unpacking.
//!
//! All decoders are pure Rust so the crate builds without a C toolchain: `flate2`'s
//! `rust_backend` for gzip, `lzma-rs` for xz (Debian bookworm compresses `data.tar` with
//! xz) and `ruzstd` for zstd (Ubuntu's `.deb`s).

use std::io::Read;

use super::error::{DebError, Result};

/// Decompresses `bytes` according to the suffix of `name`: `.gz`, `.xz`, `.zst`; any other
/// name is returned as is.
pub fn decompress(name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let fail = |reason: String| DebError::Decompress {
        what: name.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| fail(e.to_string()))?;
    } else if name.ends_with(".xz") {
        lzma_rust2::XzReader::new(bytes, true)
            .read_to_end(&mut out)
            .map_err(|e| fail(e.to_string()))?;
    } else if name.ends_with(".zst") {
        ruzstd::decoding::StreamingDecoder::new(bytes)
            .map_err(|e| fail(e.to_string()))?
            .read_to_end(&mut out)
            .map_err(|e| fail(e.to_string()))?;
    } else {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gzip_and_plain() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"hello").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(decompress("Packages.gz", &gz).unwrap(), b"hello");
        assert_eq!(decompress("Packages", b"plain").unwrap(), b"plain");
        assert!(decompress("Packages.gz", b"not gzip").is_err());
        assert!(decompress("Packages.xz", b"not xz").is_err());
        assert!(decompress("x.zst", b"not zstd").is_err());
    }

    #[test]
    fn xz_round_trip() {
        use std::io::Write as _;
        let mut writer = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6)).unwrap();
        writer.write_all(b"xz data").unwrap();
        let xz = writer.finish().unwrap();
        assert_eq!(decompress("data.tar.xz", &xz).unwrap(), b"xz data");
    }

    #[test]
    fn zstd_round_trip() {
        let zst = ruzstd::encoding::compress_to_vec(&b"zstd data"[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(decompress("data.tar.zst", &zst).unwrap(), b"zstd data");
    }
}
