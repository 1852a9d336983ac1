//! A local Debian repository for tests, made of real `.deb`s from this machine's apt
//! (`apt-get download`), with a `Packages` index per architecture written in Debian's
//! format, a `Release` listing their checksums, and an `InRelease` clearsigned by `gpg` with
//! a throwaway key (an independent tool signs; Rebake verifies).
//!
//! [`DebFeed::repack`] re-packs a `.deb` with another version or architecture (the control
//! member is rewritten, the data member kept byte for byte), which is how a test makes
//! "upstream published a fix".

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use rebake_feeds::deb::{self, Paragraph};
use sha2::Digest as _;

/// Suite name of the test repository.
pub const SUITE: &str = "stable";
/// Architectures the test repository publishes.
pub const ARCHITECTURES: &[&str] = &["amd64", "arm64"];

/// A Debian repository on disk (serve `root` over HTTP).
pub struct DebFeed {
    /// Repository root (has `dists/` and `pool/`).
    pub root: PathBuf,
    /// Public keyring (binary OpenPGP) that verifies `InRelease`.
    pub keyring: PathBuf,
    gnupg_home: PathBuf,
    /// (package, architecture) → `.deb` in the pool.
    debs: BTreeMap<(String, String), PathBuf>,
}

impl DebFeed {
    /// Downloads `packages` and everything they depend on (with every alternative, as
    /// `apt-cache depends --recurse` lists them) with `apt-get download` into a new
    /// repository under `dir`, and re-packs each architecture-specific one for every other
    /// architecture of [`ARCHITECTURES`] (same files, other `Architecture`), so every
    /// platform resolves. `Ok(None)` (with the reason printed) when apt or gpg cannot run
    /// here: callers skip.
    pub fn create(dir: &Path, packages: &[&str]) -> Result<Option<DebFeed>> {
        let root = dir.join("debian");
        let pool = root.join("pool/main");
        std::fs::create_dir_all(&pool)?;
        let closure = match Command::new("apt-cache")
            .args([
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
            ])
            .args(["--no-breaks", "--no-replaces", "--no-enhances"])
            .args(packages)
            .output()
        {
            Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).to_string(),
            Ok(output) => {
                eprintln!(
                    "skipping: apt-cache depends failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                return Ok(None);
            }
            Err(error) => {
                eprintln!("skipping: cannot run apt-cache: {error}");
                return Ok(None);
            }
        };
        let mut names: Vec<&str> = closure
            .lines()
            .filter(|line| !line.starts_with(' ') && !line.starts_with('<') && !line.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        let output = match Command::new("apt-get")
            .arg("download")
            .args(&names)
            .current_dir(&pool)
            .output()
        {
            Ok(output) => output,
            Err(error) => {
                eprintln!("skipping: cannot run apt-get: {error}");
                return Ok(None);
            }
        };
        if !output.status.success() {
            eprintln!(
                "skipping: apt-get download failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return Ok(None);
        }
        let gnupg_home = dir.join("gnupg");
        std::fs::create_dir_all(&gnupg_home)?;
        set_private(&gnupg_home)?;
        let keyring = dir.join("test-archive-keyring.gpg");
        let mut feed = DebFeed {
            root,
            keyring,
            gnupg_home,
            debs: BTreeMap::new(),
        };
        if let Err(error) = feed.gpg(&[
            "--quick-generate-key",
            "Rebake Test Archive <archive@rebake.invalid>",
            "ed25519",
            "sign",
            "never",
        ]) {
            eprintln!("skipping: gpg cannot make a key: {error:#}");
            return Ok(None);
        }
        let public = feed.gpg(&["--export"])?;
        std::fs::write(&feed.keyring, public)?;
        for entry in std::fs::read_dir(&pool)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "deb") {
                feed.add(&path)?;
            }
        }
        let specific: Vec<(String, String)> = feed.debs.keys().filter(|(_, arch)| arch != "all").cloned().collect();
        for (name, arch) in specific {
            for other in ARCHITECTURES.iter().filter(|other| **other != arch) {
                feed.repack(&(name.clone(), arch.clone()), None, Some(other))?;
            }
        }
        Ok(Some(feed))
    }

    fn gpg(&self, args: &[&str]) -> Result<Vec<u8>> {
        let output = Command::new("gpg")
            .args(["--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .env("GNUPGHOME", &self.gnupg_home)
            .output()
            .context("failed to run gpg")?;
        if !output.status.success() {
            bail!("gpg {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(output.stdout)
    }

    /// Registers a `.deb` already in the pool (replacing one of the same name and arch).
    fn add(&mut self, path: &Path) -> Result<()> {
        let package = deb::read_deb(&std::fs::read(path)?)?;
        let name = package.control.get("Package").context("no Package field")?.to_string();
        let arch = package
            .control
            .get("Architecture")
            .context("no Architecture field")?
            .to_string();
        if let Some(old) = self.debs.insert((name, arch), path.to_path_buf())
            && old != path
        {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }

    /// The version of `name` (any architecture) in the repository.
    pub fn version(&self, name: &str) -> Option<String> {
        let path = self.debs.iter().find(|((n, _), _)| n == name).map(|(_, path)| path)?;
        let package = deb::read_deb(&std::fs::read(path).ok()?).ok()?;
        package.control.get("Version").map(str::to_string)
    }

    /// Re-packs every architecture of `name` with `version`, replacing the old `.deb`s in
    /// the pool (upstream published a new version). Call [`DebFeed::publish`] afterwards.
    pub fn bump(&mut self, name: &str, version: &str) -> Result<()> {
        let keys: Vec<(String, String)> = self.debs.keys().filter(|(n, _)| n == name).cloned().collect();
        if keys.is_empty() {
            bail!("{name} is not in the test feed");
        }
        for key in keys {
            self.repack(&key, Some(version), None)?;
        }
        Ok(())
    }

    /// Re-packs the `.deb` of `key` with `version` and/or `architecture` changed. A new
    /// version replaces the old `.deb`; a new architecture adds a copy.
    fn repack(&mut self, key: &(String, String), version: Option<&str>, architecture: Option<&str>) -> Result<()> {
        let name = key.0.as_str();
        let path = self
            .debs
            .get(key)
            .cloned()
            .with_context(|| format!("{key:?} is not in the test feed"))?;
        let bytes = std::fs::read(&path)?;
        let members = deb::read_ar(&bytes)?;
        let mut rewritten = Vec::new();
        let mut control_out = None;
        for member in &members {
            if member.name.starts_with("control.tar") {
                let tar = deb::compress::decompress(&member.name, member.data)?;
                let (tar, control) = rewrite_control(&tar, version, architecture)?;
                control_out = Some(control);
                rewritten.push(("control.tar.gz".to_string(), gzip(&tar)?));
            } else {
                rewritten.push((member.name.clone(), member.data.to_vec()));
            }
        }
        let control = control_out.context("no control member")?;
        let file = format!(
            "{}_{}_{}.deb",
            name,
            control.get("Version").unwrap_or_default().replace(':', "%3a"),
            control.get("Architecture").unwrap_or_default()
        );
        let new_path = self.root.join("pool/main").join(file);
        let members: Vec<(&str, &[u8])> = rewritten
            .iter()
            .map(|(name, data)| (name.as_str(), data.as_slice()))
            .collect();
        std::fs::write(&new_path, deb::package::write_ar(&members))?;
        if architecture.is_none() {
            self.debs.remove(key);
            if new_path != path {
                std::fs::remove_file(&path)?;
            }
        }
        self.add(&new_path)
    }

    /// Writes `Packages` for each architecture, `Release` and the signed `InRelease`.
    pub fn publish(&self) -> Result<()> {
        let dists = self.root.join("dists").join(SUITE);
        let mut release_files = Vec::new();
        for arch in ARCHITECTURES {
            let mut paragraphs = Vec::new();
            for ((_, package_arch), path) in &self.debs {
                if package_arch != arch && package_arch != "all" {
                    continue;
                }
                let bytes = std::fs::read(path)?;
                let package = deb::read_deb(&bytes)?;
                let mut paragraph: Paragraph = package.control.clone();
                let relative = path.strip_prefix(&self.root)?.to_string_lossy().to_string();
                paragraph.set("Filename", relative);
                paragraph.set("Size", bytes.len().to_string());
                paragraph.set("SHA256", hex::encode(sha2::Sha256::digest(&bytes)));
                paragraphs.push(paragraph);
            }
            let text = deb::write_paragraphs(&paragraphs);
            let relative = format!("main/binary-{arch}/Packages");
            let path = dists.join(&relative);
            std::fs::create_dir_all(path.parent().context("no parent")?)?;
            std::fs::write(&path, &text)?;
            release_files.push((relative.clone(), text.as_bytes().to_vec()));
            let gz = gzip(text.as_bytes())?;
            std::fs::write(dists.join(format!("{relative}.gz")), &gz)?;
            release_files.push((format!("{relative}.gz"), gz));
        }
        let mut release = format!(
            "Origin: Rebake Test\nLabel: Rebake Test\nSuite: {SUITE}\nCodename: {SUITE}\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: {}\nComponents: main\nSHA256:\n",
            ARCHITECTURES.join(" ")
        );
        for (name, bytes) in &release_files {
            release.push_str(&format!(
                " {} {:>8} {name}\n",
                hex::encode(sha2::Sha256::digest(bytes)),
                bytes.len()
            ));
        }
        std::fs::write(dists.join("Release"), &release)?;
        let in_release = dists.join("InRelease");
        let _ = std::fs::remove_file(&in_release);
        self.gpg(&[
            "--clearsign",
            "--output",
            &in_release.to_string_lossy(),
            &dists.join("Release").to_string_lossy(),
        ])?;
        Ok(())
    }
}

impl Drop for DebFeed {
    fn drop(&mut self) {
        // gpg starts an agent per GNUPGHOME; stop it with the directory.
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.gnupg_home)
            .output();
    }
}

fn set_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Rewrites `./control` in a control tarball; returns the new tarball and paragraph.
fn rewrite_control(
    tar_bytes: &[u8],
    version: Option<&str>,
    architecture: Option<&str>,
) -> Result<(Vec<u8>, Paragraph)> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut builder = tar::Builder::new(Vec::new());
    let mut paragraph = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().to_string();
        let mut header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        if path.trim_start_matches("./") == "control" {
            let mut control = deb::parse_paragraphs(std::str::from_utf8(&content)?)?
                .into_iter()
                .next()
                .context("empty control file")?;
            if let Some(version) = version {
                control.set("Version", version);
            }
            if let Some(architecture) = architecture {
                control.set("Architecture", architecture);
            }
            content = deb::write_paragraphs(std::slice::from_ref(&control)).into_bytes();
            while content.ends_with(b"\n\n") {
                content.pop();
            }
            header.set_size(content.len() as u64);
            header.set_cksum();
            paragraph = Some(control);
        }
        builder.append(&header, content.as_slice())?;
    }
    Ok((
        builder.into_inner()?,
        paragraph.context("no ./control in the control tarball")?,
    ))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// A build request for `spec` (an image from feed `feed`, configured as `source`) with its
/// packages resolved against `snapshot` for every platform it builds, as the resolver
/// would send it.
pub fn build_request(
    snapshot: &rebake_feeds::fetch::FeedSnapshot,
    feed: &str,
    source: &rebake_feeds::fetch::FeedSource,
    spec: &rebake_config::ImageSpec,
    build_id: &str,
) -> Result<rebake_events::pb::BuildRequest> {
    let install = &spec.packages.as_ref().context("the spec installs no packages")?.install;
    let mut packages = Vec::new();
    for platform in spec.build_platforms() {
        let arch = source
            .feed_arch(&platform)
            .with_context(|| format!("feed {feed} has no architecture for {platform}"))?;
        for package in snapshot.resolve(&arch, install)? {
            packages.push(rebake_events::pb::ResolvedPackage {
                platform: platform.clone(),
                name: package.name,
                version: package.version,
                architecture: package.architecture,
                checksum: package.sha256,
                size: package.size as i64,
                url: package.url,
                feed: feed.to_string(),
            });
        }
    }
    Ok(rebake_events::pb::BuildRequest {
        build_id: build_id.to_string(),
        image: spec.name.to_string(),
        inputs_hash: format!("sha256:{}", hex::encode(sha2::Sha256::digest(spec.canonical_json()))),
        base_ref: "scratch".to_string(),
        spec_json: spec.canonical_json(),
        packages,
        ..Default::default()
    })
}

/// Parses one image spec from YAML (validated as the catalog loader does).
pub fn load_spec(yaml: &str) -> Result<rebake_config::ImageSpec> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("image.yaml"), yaml)?;
    let catalog = rebake_config::Catalog::load(dir.path())?;
    Ok(catalog.images().next().context("one image")?.clone())
}

/// The `FeedSource` of a test feed served at `url`.
pub fn feed_source(url: &str, keyring: &Path) -> Result<rebake_feeds::fetch::FeedSource> {
    Ok(serde_json::from_value(serde_json::json!({
        "kind": "debian",
        "url": url,
        "suite": SUITE,
        "components": ["main"],
        "architectures": ARCHITECTURES,
        "keyring": [keyring],
    }))?)
}
