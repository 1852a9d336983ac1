//! The HTTP side: snapshots, polls and package downloads with a disk cache.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest013 as reqwest;
use sha2::{Digest as _, Sha256};

use super::error::{FetchError, Result};
use super::repo::{ApkRepo, DebRepo, Repo, plan};
use super::snapshot::{ArchIndex, FeedSnapshot, IndexValidator, ResolvedPackage};
use super::source::FeedSource;
use crate::apk::ApkPackage;
use crate::deb::{Package, Release};

const USER_AGENT: &str = concat!("rebake-feeds/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// What a [`FeedClient::poll`] found.
#[derive(Debug, Clone)]
pub enum PollOutcome {
    /// Every signed index file is the one the previous snapshot was made from.
    Unchanged,
    /// Something changed (or there was no previous snapshot): a fresh, verified snapshot.
    Changed(FeedSnapshot),
}

/// Fetches and verifies feeds over HTTP(S) (rustls) and caches downloaded packages on
/// disk. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct FeedClient {
    http: reqwest::Client,
    cache_dir: Arc<PathBuf>,
}

/// A successful GET.
struct Body {
    bytes: Vec<u8>,
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Body {
    fn validator(&self, url: &str) -> IndexValidator {
        IndexValidator {
            url: url.to_owned(),
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
            sha256: hex::encode(Sha256::digest(&self.bytes)),
        }
    }
}

enum Get {
    Body(Body),
    NotModified,
    NotFound,
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

fn cache_error(path: &Path, e: &std::io::Error) -> FetchError {
    FetchError::Cache {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Runs CPU-heavy decoding off the async threads.
async fn blocking<T: Send + 'static>(url: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| FetchError::Http {
        url: url.to_owned(),
        reason: format!("decoding task failed: {e}"),
    })?
}

/// Where a package lives in the cache, from its checksum: `sha256/<hex>` or `q1/<hex sha1>`.
fn cache_key(package: &ResolvedPackage) -> Result<(&'static str, String)> {
    let bad = || {
        FetchError::Config(format!(
            "package {}: invalid checksum {:?}",
            package.name, package.sha256
        ))
    };
    if let Some(q1) = package.sha256.strip_prefix("q1:") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(q1)
            .map_err(|_| bad())?;
        if raw.len() != 20 {
            return Err(bad());
        }
        Ok(("q1", hex::encode(raw)))
    } else if package.sha256.len() == 64 && package.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(("sha256", package.sha256.to_ascii_lowercase()))
    } else {
        Err(bad())
    }
}

/// Checks downloaded (or cached) bytes against the size and checksum the verified index
/// states.
fn verify_package(package: &ResolvedPackage, bytes: &[u8]) -> Result<()> {
    let mismatch = |what: &'static str, expected: String, actual: String| FetchError::Integrity {
        url: package.url.clone(),
        what,
        expected,
        actual,
    };
    if package.size != 0 && bytes.len() as u64 != package.size {
        return Err(mismatch("size", package.size.to_string(), bytes.len().to_string()));
    }
    if let Some(q1) = package.sha256.strip_prefix("q1:") {
        let apk = crate::apk::read_apk(bytes).map_err(|source| FetchError::Apk {
            url: package.url.clone(),
            source,
        })?;
        let actual = apk.checksum.strip_prefix("Q1").unwrap_or(&apk.checksum);
        if actual != q1 {
            return Err(mismatch("q1 checksum", q1.to_owned(), actual.to_owned()));
        }
        if apk.pkginfo.datahash.is_none() {
            return Err(mismatch(
                "datahash",
                "a .PKGINFO datahash covering the data section".to_owned(),
                "none".to_owned(),
            ));
        }
    } else {
        let actual = hex::encode(Sha256::digest(bytes));
        if !actual.eq_ignore_ascii_case(&package.sha256) {
            return Err(mismatch("sha256", package.sha256.to_ascii_lowercase(), actual));
        }
    }
    Ok(())
}

/// Accumulates per-architecture package unions in repository order.
#[derive(Default)]
struct Collector {
    arches: BTreeMap<String, ArchIndex>,
}

impl Collector {
    fn add_debian(&mut self, arch: &str, base: &str, packages: Vec<Package>) {
        let entry = self.arches.entry(arch.to_owned()).or_insert_with(|| ArchIndex::Debian {
            packages: Vec::new(),
            origins: Vec::new(),
            bases: Vec::new(),
        });
        if let ArchIndex::Debian {
            packages: all,
            origins,
            bases,
        } = entry
        {
            let origin = bases.iter().position(|b| b == base).unwrap_or_else(|| {
                bases.push(base.to_owned());
                bases.len() - 1
            });
            origins.extend(std::iter::repeat_n(origin, packages.len()));
            all.extend(packages);
        }
    }

    fn add_apk(&mut self, arch: &str, dir: &str, packages: Vec<ApkPackage>) {
        let entry = self.arches.entry(arch.to_owned()).or_insert_with(|| ArchIndex::Apk {
            packages: Vec::new(),
            origins: Vec::new(),
            bases: Vec::new(),
        });
        if let ArchIndex::Apk {
            packages: all,
            origins,
            bases,
        } = entry
        {
            let origin = bases.iter().position(|b| b == dir).unwrap_or_else(|| {
                bases.push(dir.to_owned());
                bases.len() - 1
            });
            origins.extend(std::iter::repeat_n(origin, packages.len()));
            all.extend(packages);
        }
    }
}

/// The `Packages` file to read for `prefix` (`main/binary-amd64/` or empty for a flat
/// repository): xz, then gz, then plain, whichever the `Release` lists.
fn pick_index<'r>(release: &'r Release, prefix: &str) -> Option<&'r str> {
    ["Packages.xz", "Packages.gz", "Packages"].iter().find_map(|name| {
        let path = format!("{prefix}{name}");
        release.file(&path).map(|f| f.path.as_str())
    })
}

impl FeedClient {
    /// A client caching packages under `cache_dir` (created on first write).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| FetchError::Http {
                url: "*".to_owned(),
                reason: format!("cannot build the HTTP client: {}", error_chain(&e)),
            })?;
        Ok(Self {
            http,
            cache_dir: Arc::new(cache_dir.into()),
        })
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// One GET; with a validator, a conditional one (`If-None-Match`, `If-Modified-Since`).
    async fn get(&self, url: &str, validator: Option<&IndexValidator>) -> Result<Get> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(FetchError::UnsupportedUrl { url: url.to_owned() });
        }
        let mut request = self.http.get(url);
        if let Some(v) = validator {
            if let Some(etag) = &v.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &v.last_modified {
                request = request.header(IF_MODIFIED_SINCE, modified);
            }
        }
        let transport = |e: reqwest::Error| FetchError::Http {
            url: url.to_owned(),
            reason: error_chain(&e),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && validator.is_some() {
            return Ok(Get::NotModified);
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(Get::NotFound);
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let bytes = response.bytes().await.map_err(transport)?.to_vec();
        Ok(Get::Body(Body {
            bytes,
            etag,
            last_modified,
        }))
    }

    /// A GET that must succeed with a body.
    async fn get_body(&self, url: &str) -> Result<Body> {
        match self.get(url, None).await? {
            Get::Body(b) => Ok(b),
            Get::NotFound => Err(FetchError::Status {
                url: url.to_owned(),
                status: 404,
            }),
            Get::NotModified => Err(FetchError::Status {
                url: url.to_owned(),
                status: 304,
            }),
        }
    }

    /// Fetches and verifies every repository of the feed. Debian: the `InRelease`
    /// clear-signature (or `Release` with its detached `Release.gpg`) is checked against the
    /// keyring, then each configured component and architecture's `Packages` index against
    /// the sizes and sha256s of the signed `Release`. apk: each `APKINDEX.tar.gz` is checked
    /// against the RSA keys.
    pub async fn snapshot(&self, name: &str, source: &FeedSource) -> Result<FeedSnapshot> {
        let repos = plan(source)?;
        self.snapshot_repos(name, &repos, HashMap::new()).await
    }

    async fn snapshot_repos(
        &self,
        name: &str,
        repos: &[Repo],
        mut prefetched: HashMap<String, Body>,
    ) -> Result<FeedSnapshot> {
        let mut collector = Collector::default();
        let mut validators = Vec::with_capacity(repos.len());
        for repo in repos {
            let validator = match repo {
                Repo::Debian(d) => self.snapshot_debian(d, &mut prefetched, &mut collector).await?,
                Repo::Apk(a) => self.snapshot_apk(a, &mut prefetched, &mut collector).await?,
            };
            validators.push(validator);
        }
        Ok(FeedSnapshot::new(name, validators, collector.arches))
    }

    /// The verified `Release` text of a Debian repository and the validator of the file it
    /// came from.
    async fn debian_release(
        &self,
        repo: &DebRepo,
        prefetched: &mut HashMap<String, Body>,
    ) -> Result<(String, IndexValidator)> {
        let inrelease_url = repo.inrelease_url();
        let inrelease = match prefetched.remove(&inrelease_url) {
            Some(body) => Some(body),
            None => match self.get(&inrelease_url, None).await? {
                Get::Body(body) => Some(body),
                _ => None,
            },
        };
        if let Some(body) = inrelease {
            let text = match &repo.keyring {
                Some(keyring) => keyring.verify_cleartext(&inrelease_url, &body.bytes)?,
                None => {
                    tracing::warn!(url = %inrelease_url, "insecure_skip_signature: using InRelease without checking its signature");
                    let text = std::str::from_utf8(&body.bytes).map_err(|_| FetchError::Signature {
                        url: inrelease_url.clone(),
                        reason: "not UTF-8 text".to_owned(),
                    })?;
                    crate::deb::strip_clearsign(text).map_err(|source| FetchError::Debian {
                        url: inrelease_url.clone(),
                        source,
                    })?
                }
            };
            return Ok((text, body.validator(&inrelease_url)));
        }
        let release_url = repo.release_url();
        let release = match prefetched.remove(&release_url) {
            Some(body) => body,
            None => self.get_body(&release_url).await?,
        };
        match &repo.keyring {
            Some(keyring) => {
                let gpg_url = format!("{release_url}.gpg");
                let signature = match self.get(&gpg_url, None).await? {
                    Get::Body(b) => b,
                    _ => {
                        return Err(FetchError::Signature {
                            url: release_url,
                            reason: "no InRelease and no Release.gpg: the repository is not signed".to_owned(),
                        });
                    }
                };
                keyring.verify_detached(&gpg_url, &release.bytes, &signature.bytes)?;
            }
            None => {
                tracing::warn!(url = %release_url, "insecure_skip_signature: using Release without checking a signature");
            }
        }
        let text = String::from_utf8(release.bytes.clone()).map_err(|_| FetchError::Signature {
            url: release_url.clone(),
            reason: "not UTF-8 text".to_owned(),
        })?;
        Ok((text, release.validator(&release_url)))
    }

    async fn snapshot_debian(
        &self,
        repo: &DebRepo,
        prefetched: &mut HashMap<String, Body>,
        collector: &mut Collector,
    ) -> Result<IndexValidator> {
        let (text, validator) = self.debian_release(repo, prefetched).await?;
        let release_url = validator.url.clone();
        let release = Arc::new(Release::parse(&text).map_err(|source| FetchError::Debian {
            url: release_url.clone(),
            source,
        })?);
        let dist = repo.dist_url();
        let by_hash = release
            .paragraph
            .get("Acquire-By-Hash")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"));
        let all_separate = release
            .paragraph
            .get("No-Support-for-Architecture-all")
            .is_none_or(|v| v.trim() != "Packages");

        // (component, index arch, packages go to these feed arches)
        let mut wanted: Vec<(String, String, Vec<String>)> = Vec::new();
        if repo.is_flat() {
            wanted.push((String::new(), String::new(), repo.architectures.clone()));
        } else {
            for component in &repo.components {
                for arch in &repo.architectures {
                    wanted.push((component.clone(), arch.clone(), vec![arch.clone()]));
                }
                let all_prefix = format!("{component}/binary-all/");
                if all_separate && pick_index(&release, &all_prefix).is_some() {
                    wanted.push((component.clone(), "all".to_owned(), repo.architectures.clone()));
                }
            }
        }
        for (component, arch, targets) in wanted {
            let prefix = if repo.is_flat() {
                String::new()
            } else {
                format!("{component}/binary-{arch}/")
            };
            let Some(path) = pick_index(&release, &prefix).map(str::to_owned) else {
                if repo.lenient && arch != "all" {
                    tracing::warn!(
                        release = %release_url,
                        "skipping {component}/binary-{arch}: not listed in the Release file"
                    );
                    continue;
                }
                return Err(FetchError::MissingIndex {
                    url: release_url,
                    component,
                    architecture: arch,
                });
            };
            let packages = self.fetch_packages_index(&dist, &path, &release, by_hash).await?;
            match targets.as_slice() {
                [only] => collector.add_debian(only, &repo.base, packages),
                many => {
                    for target in many {
                        collector.add_debian(target, &repo.base, packages.clone());
                    }
                }
            }
        }
        Ok(validator)
    }

    /// Downloads one `Packages` index (by hash when the repository offers it), checks it
    /// against the `Release` and parses it.
    async fn fetch_packages_index(
        &self,
        dist: &str,
        path: &str,
        release: &Arc<Release>,
        by_hash: bool,
    ) -> Result<Vec<Package>> {
        let url = format!("{dist}/{path}");
        let mut body = None;
        if by_hash && let Some(entry) = release.file(path) {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            let hashed = if dir.is_empty() {
                format!("{dist}/by-hash/SHA256/{}", entry.sha256)
            } else {
                format!("{dist}/{dir}/by-hash/SHA256/{}", entry.sha256)
            };
            if let Get::Body(b) = self.get(&hashed, None).await? {
                body = Some(b);
            }
        }
        let body = match body {
            Some(b) => b,
            None => self.get_body(&url).await?,
        };
        let (release, path, task_url) = (release.clone(), path.to_owned(), url.clone());
        blocking(&url, move || {
            let text =
                crate::deb::read_verified_index(&release, &path, &body.bytes).map_err(|source| FetchError::Debian {
                    url: task_url.clone(),
                    source,
                })?;
            crate::deb::parse_packages(&text).map_err(|source| FetchError::Debian { url: task_url, source })
        })
        .await
    }

    async fn snapshot_apk(
        &self,
        repo: &ApkRepo,
        prefetched: &mut HashMap<String, Body>,
        collector: &mut Collector,
    ) -> Result<IndexValidator> {
        let url = repo.index_url();
        let body = match prefetched.remove(&url) {
            Some(b) => b,
            None => self.get_body(&url).await?,
        };
        let validator = body.validator(&url);
        let (keys, task_url) = (repo.keys.clone(), url.clone());
        let packages = blocking(&url, move || {
            let apk_error = |source| FetchError::Apk {
                url: task_url.clone(),
                source,
            };
            crate::apk::verify_index_signature(&body.bytes, &keys).map_err(|e| FetchError::Signature {
                url: task_url.clone(),
                reason: format!(
                    "{e} (trusted keys: {})",
                    keys.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                ),
            })?;
            // The signature covers the second gzip member only: refuse anything after it,
            // which would otherwise be read as part of the index.
            let members = crate::apk::split_gzip_members(&body.bytes).map_err(apk_error)?.len();
            if members != 2 {
                return Err(FetchError::Signature {
                    url: task_url.clone(),
                    reason: format!("expected a signature and one signed section, found {members} gzip members"),
                });
            }
            let archive = crate::apk::read_index_archive(&body.bytes).map_err(apk_error)?;
            archive.packages().map_err(apk_error)
        })
        .await?;
        collector.add_apk(&repo.arch, &repo.dir, packages);
        Ok(validator)
    }

    /// Checks whether the feed changed since `previous` with one conditional request per
    /// signed index file (`If-None-Match`/`If-Modified-Since` from the stored validators):
    /// when every one answers 304, or the very same bytes, the feed is
    /// [`PollOutcome::Unchanged`] and nothing else is fetched. Otherwise (or without a
    /// previous snapshot, or when the configuration now names other repositories) a full
    /// [`snapshot`](Self::snapshot) is taken, reusing the index files just downloaded.
    pub async fn poll(&self, name: &str, source: &FeedSource, previous: Option<&FeedSnapshot>) -> Result<PollOutcome> {
        let repos = plan(source)?;
        let Some(previous) = previous.filter(|p| {
            p.validators.len() == repos.len()
                && p.validators
                    .iter()
                    .zip(&repos)
                    .all(|(v, r)| r.index_urls().contains(&v.url))
        }) else {
            return Ok(PollOutcome::Changed(
                self.snapshot_repos(name, &repos, HashMap::new()).await?,
            ));
        };
        let mut prefetched = HashMap::new();
        let mut changed = false;
        for validator in &previous.validators {
            match self.get(&validator.url, Some(validator)).await? {
                Get::NotModified => {}
                Get::Body(body) => {
                    if hex::encode(Sha256::digest(&body.bytes)) != validator.sha256 {
                        changed = true;
                        prefetched.insert(validator.url.clone(), body);
                    }
                }
                Get::NotFound => changed = true,
            }
        }
        if !changed {
            return Ok(PollOutcome::Unchanged);
        }
        Ok(PollOutcome::Changed(
            self.snapshot_repos(name, &repos, prefetched).await?,
        ))
    }

    /// The bytes of a resolved package, verified against the size and checksum from the
    /// verified index. Cached under `<cache_dir>/packages/sha256/<hex>` (apk:
    /// `packages/q1/<hex sha1>`); a cached file is checked again on every hit and a corrupt
    /// one is deleted and downloaded anew. New files are written atomically (temporary
    /// file, then rename).
    pub async fn fetch_package(&self, package: &ResolvedPackage) -> Result<Vec<u8>> {
        let (kind, key) = cache_key(package)?;
        let dir = self.cache_dir.join("packages").join(kind);
        let path = dir.join(&key);
        match tokio::fs::read(&path).await {
            Ok(bytes) => match verify_package(package, &bytes) {
                Ok(()) => return Ok(bytes),
                Err(e) => {
                    tracing::warn!(cache = %path.display(), "corrupt cache entry, downloading again: {e}");
                    match tokio::fs::remove_file(&path).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(cache_error(&path, &e)),
                    }
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(cache_error(&path, &e)),
        }
        let body = self.get_body(&package.url).await?;
        let (check, bytes) = (package.clone(), body.bytes);
        let bytes = blocking(&package.url, move || verify_package(&check, &bytes).map(|()| bytes)).await?;
        write_atomically(&dir, &path, &bytes).await?;
        Ok(bytes)
    }
}

impl FeedClient {
    /// A Debian package ready to read fast: [`crate::deb::package::decompressed_deb`] of the
    /// verified download. Kept under `<cache_dir>/unpacked/sha256/<hex>.deb` with the
    /// SHA-256 of the decompressed form in `<hex>.deb.sha256`, checked on every hit (a
    /// mismatch is treated as a miss). A miss goes through [`FeedClient::fetch_package`],
    /// so the original is always verified against the index before it is decompressed.
    pub async fn fetch_decompressed_deb(&self, package: &ResolvedPackage) -> Result<Vec<u8>> {
        let (kind, key) = cache_key(package)?;
        let dir = self.cache_dir.join("unpacked").join(kind);
        let path = dir.join(format!("{key}.deb"));
        let sum_path = dir.join(format!("{key}.deb.sha256"));
        if let (Ok(bytes), Ok(expected)) = (tokio::fs::read(&path).await, tokio::fs::read_to_string(&sum_path).await) {
            let (check, url) = (expected.trim().to_owned(), package.url.clone());
            let verified = blocking(&url, move || {
                let actual = hex::encode(Sha256::digest(&bytes));
                Ok((actual == check).then_some(bytes))
            })
            .await?;
            match verified {
                Some(bytes) => return Ok(bytes),
                None => tracing::warn!(cache = %path.display(), "corrupt decompressed package, rebuilding it"),
            }
        }
        let original = self.fetch_package(package).await?;
        let url = package.url.clone();
        let (bytes, sum) = blocking(&url.clone(), move || {
            let bytes = crate::deb::package::decompressed_deb(&original)
                .map_err(|source| FetchError::Debian { url, source })?;
            let sum = hex::encode(Sha256::digest(&bytes));
            Ok((bytes, sum))
        })
        .await?;
        write_atomically(&dir, &path, &bytes).await?;
        write_atomically(&dir, &sum_path, sum.as_bytes()).await?;
        Ok(bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file in `dir` and a rename.
async fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    tokio::fs::create_dir_all(dir).await.map_err(|e| cache_error(dir, &e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = tokio::fs::write(&temp, bytes).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(cache_error(&temp, &e));
    }
    if let Err(e) = tokio::fs::rename(&temp, path).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(cache_error(path, &e));
    }
    Ok(())
}
