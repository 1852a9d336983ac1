//! What the scanner's checks look at: the merged filesystem of one image (one platform),
//! its config, and the content of the files the checks need.

use std::collections::BTreeMap;

use bytes::Bytes;
use rebake_oci::{FileInfo, ImageConfig};

/// One image as the checks see it (no check reads the registry itself).
#[derive(Debug, Clone, Default)]
pub struct ImageView {
    /// Every path of the final filesystem (whiteouts applied), without leading `/`,
    /// with the digest of the layer that last wrote it.
    pub files: BTreeMap<String, FileInfo>,
    /// Content of the regular files [`wanted`] selected, by path.
    pub contents: BTreeMap<String, Bytes>,
    /// The image config (entrypoint, cmd, env, user, workdir, ports, labels).
    pub config: ImageConfig,
    /// Layer digests, base first.
    pub layers: Vec<String>,
    /// Manifest digest.
    pub digest: String,
}

impl ImageView {
    /// The content of `path` (no leading `/`), when it was kept.
    pub fn content(&self, path: &str) -> Option<&[u8]> {
        self.contents
            .get(path.trim_start_matches('/'))
            .map(|bytes| bytes.as_ref())
    }

    /// The content of `path` as UTF-8 text (lossy), when it was kept.
    pub fn text(&self, path: &str) -> Option<String> {
        self.content(path)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }

    /// The entry at `path` (no leading `/`).
    pub fn file(&self, path: &str) -> Option<&FileInfo> {
        self.files.get(path.trim_start_matches('/'))
    }
}

/// Whether the content of `path` is kept when an image is read: package databases and
/// language lock files (SBOM), and `extra` paths (what structure tests read).
pub fn wanted(path: &str, extra: &[String]) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path == "var/lib/dpkg/status"
        || path.starts_with("var/lib/dpkg/status.d/")
        || path == "lib/apk/db/installed"
        || path == "usr/lib/apk/db/installed"
        || path == "etc/os-release"
        || path == "usr/lib/os-release"
        || (path.starts_with("usr/share/doc/") && name == "copyright")
        || matches!(
            name,
            "Cargo.lock" | "package-lock.json" | "requirements.txt" | "poetry.lock" | "go.mod"
        )
        || extra.iter().any(|wanted| wanted.trim_start_matches('/') == path)
}
