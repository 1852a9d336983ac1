//! `rebake_feeds::fetch` against real files served over HTTP: Debian repositories signed with
//! the `gpg` CLI (an independent OpenPGP implementation), apk indexes signed with keys made
//! by the `openssl` CLI, served by the test kit's `FeedServer`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rebake_feeds::apk::testing::{build_apk, build_index_tar_gz, sign};
use rebake_feeds::apk::{ApkVersion, DataEntry, PkgInfo, SignatureAlgorithm, read_apk};
use rebake_feeds::fetch::{
    ApkFeed, DebianFeed, FeedClient, FeedSource, FetchError, PollOutcome, ResolvedPackage, SystemFeed,
};
use rebake_testkit::FeedServer;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// gpg
// ---------------------------------------------------------------------------------------

/// A throw-away GnuPG home with one ed25519 signing key.
struct Gpg {
    home: TempDir,
}

fn gpg_available() -> bool {
    Command::new("gpg")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

macro_rules! require_gpg {
    () => {
        if !gpg_available() {
            eprintln!("skipping: the gpg CLI is not installed (Debian package gnupg)");
            return;
        }
    };
}

impl Gpg {
    fn new(name: &str) -> Gpg {
        let home = tempfile::Builder::new().prefix("gpg-").tempdir_in("/tmp").unwrap();
        let gpg = Gpg { home };
        gpg.run(&[
            "--quick-gen-key",
            &format!("{name} <{name}@example.invalid>"),
            "ed25519",
            "sign",
            "never",
        ]);
        gpg
    }

    /// An RSA certification-only primary key with an RSA signing subkey: signatures are
    /// made by the subkey, as with many real archive keys.
    fn new_rsa_with_signing_subkey(name: &str) -> Gpg {
        let home = tempfile::Builder::new().prefix("gpg-").tempdir_in("/tmp").unwrap();
        let gpg = Gpg { home };
        gpg.run(&[
            "--quick-gen-key",
            &format!("{name} <{name}@example.invalid>"),
            "rsa2048",
            "cert",
            "never",
        ]);
        let listing = String::from_utf8(gpg.run(&["--list-keys", "--with-colons"])).unwrap();
        let fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .unwrap();
        gpg.run(&["--quick-add-key", &fpr, "rsa2048", "sign", "never"]);
        gpg
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Writes the public key (binary keyring) to `path`.
    fn export(&self, path: &Path) {
        std::fs::write(path, self.run(&["--export"])).unwrap();
    }

    /// Writes the ASCII-armored public key to `path`.
    fn export_armored(&self, path: &Path) {
        std::fs::write(path, self.run(&["--export", "--armor"])).unwrap();
    }

    fn clearsign(&self, input: &Path, output: &Path) {
        self.run(&[
            "--clearsign",
            "--output",
            output.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
    }

    fn detach_sign(&self, input: &Path, output: &Path) {
        self.run(&[
            "--detach-sign",
            "--output",
            output.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------
// A Debian repository on disk
// ---------------------------------------------------------------------------------------

struct Pkg {
    name: &'static str,
    version: &'static str,
    arch: &'static str,
    depends: &'static str,
}

const fn pkg(name: &'static str, version: &'static str, arch: &'static str, depends: &'static str) -> Pkg {
    Pkg {
        name,
        version,
        arch,
        depends,
    }
}

fn base_packages() -> Vec<Pkg> {
    vec![
        pkg("hello", "1.0-1", "amd64", "libfoo (>= 1.0), base-files"),
        pkg("libfoo", "1.0-1", "amd64", ""),
        pkg("base-files", "12.4", "all", ""),
        pkg("broken", "1", "amd64", "libmissing"),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes the pool files, `Packages`(`.gz`), `Release` and a gpg-signed `InRelease` for
/// suite `stable`, component `main`, architecture `amd64` under `root`.
fn publish(root: &Path, packages: &[Pkg], gpg: &Gpg) {
    let mut index = String::new();
    for p in packages {
        let file = format!("pool/main/{}/{}_{}_{}.deb", p.name, p.name, p.version, p.arch);
        let content = format!("not really a deb: {} {} {}\n", p.name, p.version, p.arch);
        std::fs::create_dir_all(root.join(&file).parent().unwrap()).unwrap();
        std::fs::write(root.join(&file), &content).unwrap();
        index.push_str(&format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nPriority: optional\n",
            p.name, p.version, p.arch
        ));
        if !p.depends.is_empty() {
            index.push_str(&format!("Depends: {}\n", p.depends));
        }
        index.push_str(&format!(
            "Filename: {file}\nSize: {}\nSHA256: {}\nDescription: {}\n\n",
            content.len(),
            sha256(content.as_bytes()),
            p.name
        ));
    }
    let dist = root.join("dists/stable");
    let bin = dist.join("main/binary-amd64");
    std::fs::create_dir_all(&bin).unwrap();
    let plain = index.into_bytes();
    let gz = gzip(&plain);
    std::fs::write(bin.join("Packages"), &plain).unwrap();
    std::fs::write(bin.join("Packages.gz"), &gz).unwrap();
    let release = format!(
        "Origin: Test\nLabel: Test\nSuite: stable\nCodename: test\nDate: Sat, 10 Feb 2024 09:04:58 UTC\n\
         Architectures: amd64\nComponents: main\nDescription: test repository\nSHA256:\n \
         {} {} main/binary-amd64/Packages\n {} {} main/binary-amd64/Packages.gz\n",
        sha256(&plain),
        plain.len(),
        sha256(&gz),
        gz.len()
    );
    std::fs::write(dist.join("Release"), release).unwrap();
    gpg.clearsign(&dist.join("Release"), &dist.join("InRelease"));
}

/// A served, signed repository and a keyring file trusting its key.
struct Fixture {
    _dir: TempDir,
    repo: PathBuf,
    keyring: PathBuf,
    gpg: Gpg,
    server: FeedServer,
    cache: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let gpg = Gpg::new("archive");
        let keyring = dir.path().join("archive.gpg");
        gpg.export(&keyring);
        publish(&repo, &base_packages(), &gpg);
        let server = FeedServer::start(repo.clone()).unwrap();
        Fixture {
            _dir: dir,
            repo,
            keyring,
            gpg,
            server,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn source_with(&self, keyring: Vec<PathBuf>) -> FeedSource {
        FeedSource::Debian(DebianFeed {
            url: format!("{}/", self.server.url()),
            suite: "stable".into(),
            components: vec!["main".into()],
            architectures: vec!["amd64".into()],
            keyring,
            insecure_skip_signature: false,
        })
    }

    fn source(&self) -> FeedSource {
        self.source_with(vec![self.keyring.clone()])
    }

    fn client(&self) -> FeedClient {
        FeedClient::new(self.cache.path()).unwrap()
    }
}

fn names(packages: &[ResolvedPackage]) -> Vec<&str> {
    packages.iter().map(|p| p.name.as_str()).collect()
}

// ---------------------------------------------------------------------------------------
// Debian
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn debian_snapshot_verifies_and_resolves() {
    require_gpg!();
    let f = Fixture::new();
    let snap = f.client().snapshot("test", &f.source()).await.unwrap();
    assert_eq!(snap.name, "test");
    assert!(
        snap.digest.starts_with("sha256:") && snap.digest.len() == 71,
        "{}",
        snap.digest
    );
    assert_eq!(snap.validators.len(), 1);
    assert!(snap.validators[0].url.ends_with("/dists/stable/InRelease"));
    assert!(snap.validators[0].etag.is_some());
    assert_eq!(snap.architectures(), ["amd64"]);
    assert_eq!(snap.package_count("amd64"), 4);

    let resolved = snap.resolve("amd64", &["hello".to_owned()]).unwrap();
    assert_eq!(names(&resolved), ["base-files", "hello", "libfoo"]);
    let hello = &resolved[1];
    assert_eq!(hello.version, "1.0-1");
    assert_eq!(hello.architecture, "amd64");
    assert_eq!(
        hello.url,
        format!("{}/pool/main/hello/hello_1.0-1_amd64.deb", f.server.url())
    );
    assert_eq!(resolved[0].architecture, "all");

    let err = snap.resolve("amd64", &["broken".to_owned()]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FetchError::Resolve { .. }), "{text}");
    assert!(text.contains("broken -> libmissing -> no candidate"), "{text}");
    assert!(matches!(
        snap.resolve("arm64", &["hello".to_owned()]),
        Err(FetchError::Architecture { .. })
    ));

    let versions = snap.versions();
    assert_eq!(
        versions
            .get(&("amd64".to_owned(), "libfoo".to_owned()))
            .map(String::as_str),
        Some("1.0-1")
    );
    // Digest is a function of the signed index files only.
    let again = f.client().snapshot("test", &f.source()).await.unwrap();
    assert_eq!(again.digest, snap.digest);
}

#[tokio::test]
async fn debian_tampered_inrelease_is_rejected() {
    require_gpg!();
    let f = Fixture::new();
    let path = f.repo.join("dists/stable/InRelease");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("Label: Test\n"));
    std::fs::write(&path, text.replace("Label: Test\n", "Label: Tost\n")).unwrap();
    let err = f.client().snapshot("test", &f.source()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Signature { .. }), "{msg}");
    assert!(msg.contains("InRelease") && msg.contains("archive.gpg"), "{msg}");
}

#[tokio::test]
async fn debian_keyring_without_the_signing_key_is_rejected() {
    require_gpg!();
    let f = Fixture::new();
    let stranger = Gpg::new("stranger");
    let other = f.cache.path().join("stranger.gpg");
    stranger.export(&other);
    let err = f
        .client()
        .snapshot("test", &f.source_with(vec![other.clone()]))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Signature { .. }), "{msg}");
    assert!(msg.contains("stranger.gpg") && msg.contains("none of its"), "{msg}");

    // A keyring holding several keys, the signing one among them, is fine, and so is an
    // armored one.
    let both = f.cache.path().join("both.gpg");
    let mut bytes = std::fs::read(&other).unwrap();
    bytes.extend(std::fs::read(&f.keyring).unwrap());
    std::fs::write(&both, bytes).unwrap();
    f.client().snapshot("test", &f.source_with(vec![both])).await.unwrap();
    let armored = f.cache.path().join("archive.asc");
    f.gpg.export_armored(&armored);
    f.client()
        .snapshot("test", &f.source_with(vec![other, armored]))
        .await
        .unwrap();
}

#[tokio::test]
async fn debian_rsa_signing_subkey_verifies() {
    require_gpg!();
    let dir = tempfile::tempdir().unwrap();
    let gpg = Gpg::new_rsa_with_signing_subkey("rsa-archive");
    let keyring = dir.path().join("rsa.gpg");
    gpg.export(&keyring);
    let repo = dir.path().join("repo");
    publish(&repo, &base_packages(), &gpg);
    let server = FeedServer::start(repo.clone()).unwrap();
    let source = FeedSource::Debian(DebianFeed {
        url: server.url(),
        suite: "stable".into(),
        components: vec!["main".into()],
        architectures: vec!["amd64".into()],
        keyring: vec![keyring],
        insecure_skip_signature: false,
    });
    let client = FeedClient::new(dir.path().join("cache")).unwrap();
    let snap = client.snapshot("rsa", &source).await.unwrap();
    assert_eq!(snap.package_count("amd64"), 4);
}

#[tokio::test]
async fn debian_packages_checksum_mismatch_is_rejected() {
    require_gpg!();
    let f = Fixture::new();
    let gz = f.repo.join("dists/stable/main/binary-amd64/Packages.gz");
    std::fs::write(&gz, gzip(b"Package: evil\nVersion: 1\n")).unwrap();
    let err = f.client().snapshot("test", &f.source()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Debian { .. }), "{msg}");
    assert!(msg.contains("Packages.gz") && msg.contains("release says"), "{msg}");
}

#[tokio::test]
async fn debian_release_gpg_fallback_and_insecure() {
    require_gpg!();
    let f = Fixture::new();
    let dist = f.repo.join("dists/stable");
    std::fs::remove_file(dist.join("InRelease")).unwrap();
    // Unsigned and no InRelease: rejected.
    let err = f.client().snapshot("test", &f.source()).await.unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");

    f.gpg.detach_sign(&dist.join("Release"), &dist.join("Release.gpg"));
    let snap = f.client().snapshot("test", &f.source()).await.unwrap();
    assert!(snap.validators[0].url.ends_with("/dists/stable/Release"));
    assert_eq!(
        names(&snap.resolve("amd64", &["libfoo".to_owned()]).unwrap()),
        ["libfoo"]
    );

    // A changed Release no longer matches the detached signature.
    let release = std::fs::read_to_string(dist.join("Release")).unwrap();
    std::fs::write(dist.join("Release"), release.replace("Label: Test", "Label: Tost")).unwrap();
    let err = f.client().snapshot("test", &f.source()).await.unwrap_err();
    assert!(matches!(err, FetchError::Signature { .. }), "{err}");

    // Explicitly insecure: accepted without a keyring.
    let insecure = FeedSource::Debian(DebianFeed {
        keyring: vec![],
        insecure_skip_signature: true,
        ..match f.source() {
            FeedSource::Debian(d) => d,
            _ => unreachable!(),
        }
    });
    insecure.validate().unwrap();
    f.client().snapshot("test", &insecure).await.unwrap();
    // And an empty keyring without the flag is a configuration error.
    let err = f.client().snapshot("test", &f.source_with(vec![])).await.unwrap_err();
    assert!(matches!(err, FetchError::Config(_)), "{err}");
}

#[tokio::test]
async fn debian_poll_unchanged_costs_one_request_and_changes_are_named() {
    require_gpg!();
    let f = Fixture::new();
    let client = f.client();
    let first = client.snapshot("test", &f.source()).await.unwrap();

    f.server.reset_requests();
    let outcome = client.poll("test", &f.source(), Some(&first)).await.unwrap();
    assert!(matches!(outcome, PollOutcome::Unchanged), "{outcome:?}");
    let requests = f.server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/dists/stable/InRelease");
    assert_eq!(requests[0].status, 304);

    // Without a previous snapshot a poll is a full snapshot.
    assert!(matches!(
        client.poll("test", &f.source(), None).await.unwrap(),
        PollOutcome::Changed(_)
    ));

    // New libfoo version: rewrite Packages + Release, re-sign.
    let mut packages = base_packages();
    packages[1] = pkg("libfoo", "1.1-1", "amd64", "");
    publish(&f.repo, &packages, &f.gpg);
    f.server.reset_requests();
    let PollOutcome::Changed(second) = client.poll("test", &f.source(), Some(&first)).await.unwrap() else {
        panic!("expected a change");
    };
    assert_eq!(
        f.server.count("/dists/stable/InRelease"),
        1,
        "{:?}",
        f.server.requests()
    );
    assert_ne!(second.digest, first.digest);
    let diff = second.diff(Some(&first));
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert_eq!(diff[0].name, "libfoo");
    assert_eq!(diff[0].architecture, "amd64");
    assert_eq!(diff[0].old_version.as_deref(), Some("1.0-1"));
    assert_eq!(diff[0].new_version.as_deref(), Some("1.1-1"));

    // And the new snapshot is the baseline from now on.
    f.server.reset_requests();
    assert!(matches!(
        client.poll("test", &f.source(), Some(&second)).await.unwrap(),
        PollOutcome::Unchanged
    ));
    assert_eq!(f.server.requests().len(), 1);
}

#[tokio::test]
async fn debian_fetch_package_caches_and_checks() {
    require_gpg!();
    let f = Fixture::new();
    let client = f.client();
    let snap = client.snapshot("test", &f.source()).await.unwrap();
    let hello = snap
        .resolve("amd64", &["hello".to_owned()])
        .unwrap()
        .into_iter()
        .find(|p| p.name == "hello")
        .unwrap();
    let expected = std::fs::read(f.repo.join("pool/main/hello/hello_1.0-1_amd64.deb")).unwrap();

    f.server.reset_requests();
    assert_eq!(client.fetch_package(&hello).await.unwrap(), expected);
    assert_eq!(f.server.requests().len(), 1);
    let cached = f.cache.path().join("packages/sha256").join(&hello.sha256);
    assert_eq!(std::fs::read(&cached).unwrap(), expected);

    // Second call: from the cache, no request (also from a clone).
    f.server.reset_requests();
    assert_eq!(client.clone().fetch_package(&hello).await.unwrap(), expected);
    assert!(f.server.requests().is_empty(), "{:?}", f.server.requests());

    // A corrupt cache entry is replaced.
    std::fs::write(&cached, b"garbage").unwrap();
    assert_eq!(client.fetch_package(&hello).await.unwrap(), expected);
    assert_eq!(f.server.requests().len(), 1);
    assert_eq!(std::fs::read(&cached).unwrap(), expected);

    // A download not matching the index is rejected, naming URL, expected and actual.
    let wrong = ResolvedPackage {
        sha256: "0".repeat(64),
        ..hello.clone()
    };
    let err = client.fetch_package(&wrong).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Integrity { .. }), "{msg}");
    assert!(
        msg.contains(&hello.url) && msg.contains(&"0".repeat(64)) && msg.contains(&hello.sha256),
        "{msg}"
    );
    assert!(!f.cache.path().join("packages/sha256").join("0".repeat(64)).exists());
    let short = ResolvedPackage {
        size: hello.size + 1,
        ..hello.clone()
    };
    let err = client
        .fetch_package(&ResolvedPackage {
            sha256: "1".repeat(64),
            ..short
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("size mismatch"), "{err}");

    let missing = ResolvedPackage {
        url: format!("{}/pool/nope.deb", f.server.url()),
        sha256: "2".repeat(64),
        ..hello
    };
    let err = client.fetch_package(&missing).await.unwrap_err();
    assert!(matches!(err, FetchError::Status { status: 404, .. }), "{err}");
}

#[tokio::test]
async fn system_feed_reads_apt_sources_and_trusted_keys() {
    require_gpg!();
    let f = Fixture::new();
    let root = tempfile::tempdir().unwrap();
    let apt = root.path().join("etc/apt");
    std::fs::create_dir_all(apt.join("trusted.gpg.d")).unwrap();
    std::fs::create_dir_all(apt.join("sources.list.d")).unwrap();
    std::fs::write(
        apt.join("sources.list"),
        format!(
            "deb [arch=amd64] {} stable main\ndeb-src {} stable main\n",
            f.server.url(),
            f.server.url()
        ),
    )
    .unwrap();
    std::fs::copy(&f.keyring, apt.join("trusted.gpg.d/archive.gpg")).unwrap();
    let source = FeedSource::System(SystemFeed {
        root: root.path().to_owned(),
        architectures: vec!["amd64".into()],
    });
    assert_eq!(source.feed_arch("linux/amd64").as_deref(), Some("amd64"));
    let snap = f.client().snapshot("system", &source).await.unwrap();
    assert_eq!(
        names(&snap.resolve("amd64", &["hello".to_owned()]).unwrap()),
        ["base-files", "hello", "libfoo"]
    );

    // Signed-By naming another key wins over the trusted keys.
    let stranger = Gpg::new("stranger");
    stranger.export(&root.path().join("stranger.gpg"));
    std::fs::write(
        apt.join("sources.list"),
        format!("deb [signed-by=/stranger.gpg] {} stable main\n", f.server.url()),
    )
    .unwrap();
    let err = f.client().snapshot("system", &source).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Signature { .. }) && err.to_string().contains("stranger.gpg"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// apk
// ---------------------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn apk_snapshot_resolves_and_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    if !openssl(&keys, &["genrsa", "-out", "test.key", "2048"])
        || !openssl(
            &keys,
            &[
                "rsa",
                "-in",
                "test.key",
                "-pubout",
                "-out",
                "test@example.invalid.rsa.pub",
            ],
        )
    {
        eprintln!("skipping: the openssl CLI is not available");
        return;
    }
    let private = std::fs::read_to_string(keys.join("test.key")).unwrap();
    let public_path = keys.join("test@example.invalid.rsa.pub");

    let repo = dir.path().join("repo");
    let arch_dir = repo.join("main/x86_64");
    std::fs::create_dir_all(&arch_dir).unwrap();
    let mut info = PkgInfo::new("hello", ApkVersion::parse("2.12.1-r0").unwrap(), "x86_64");
    info.description = Some("say hello".into());
    let apk = build_apk(&info, &[DataEntry::file("usr/bin/hello", 0o755, b"hello")]).unwrap();
    let checksum = read_apk(&apk).unwrap().checksum;
    std::fs::write(arch_dir.join("hello-2.12.1-r0.apk"), &apk).unwrap();
    std::fs::write(arch_dir.join("tzdata-2024a-r0.apk"), b"x").unwrap();
    let index = format!(
        "C:{checksum}\nP:hello\nV:2.12.1-r0\nA:x86_64\nS:{}\nT:say hello\nD:tzdata\n\n\
         P:tzdata\nV:2024a-r0\nA:noarch\nS:1\nC:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",
        apk.len()
    );
    let unsigned = build_index_tar_gz(&index, "test").unwrap();
    let signed = sign(
        &unsigned,
        "test@example.invalid.rsa.pub",
        &private,
        SignatureAlgorithm::RsaSha1,
    )
    .unwrap();
    std::fs::write(arch_dir.join("APKINDEX.tar.gz"), &signed).unwrap();

    let server = FeedServer::start(repo.clone()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let client = FeedClient::new(cache.path()).unwrap();
    let source = FeedSource::Apk(ApkFeed {
        url: format!("{}/main", server.url()),
        architectures: vec!["x86_64".into()],
        keys: vec![public_path.clone()],
    });
    assert_eq!(source.feed_arch("linux/amd64").as_deref(), Some("x86_64"));
    let snap = client.snapshot("alpine", &source).await.unwrap();
    let resolved = snap.resolve("x86_64", &["hello".to_owned()]).unwrap();
    assert_eq!(names(&resolved), ["hello", "tzdata"]);
    let hello = &resolved[0];
    assert_eq!(hello.url, format!("{}/main/x86_64/hello-2.12.1-r0.apk", server.url()));
    assert_eq!(hello.sha256, format!("q1:{}", checksum.trim_start_matches("Q1")));
    assert_eq!(hello.size, apk.len() as u64);

    server.reset_requests();
    assert_eq!(client.fetch_package(hello).await.unwrap(), apk);
    assert_eq!(client.fetch_package(hello).await.unwrap(), apk);
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
    // tzdata's index checksum matches nothing real.
    let err = client.fetch_package(&resolved[1]).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Integrity { .. } | FetchError::Apk { .. }),
        "{err}"
    );

    server.reset_requests();
    assert!(matches!(
        client.poll("alpine", &source, Some(&snap)).await.unwrap(),
        PollOutcome::Unchanged
    ));
    assert_eq!(server.requests().len(), 1);

    // A key with another name (and other material) is not trusted.
    assert!(openssl(&keys, &["genrsa", "-out", "other.key", "2048"]));
    assert!(openssl(
        &keys,
        &["rsa", "-in", "other.key", "-pubout", "-out", "other.rsa.pub"]
    ));
    let untrusted = FeedSource::Apk(ApkFeed {
        url: format!("{}/main", server.url()),
        architectures: vec!["x86_64".into()],
        keys: vec![keys.join("other.rsa.pub")],
    });
    let err = client.snapshot("alpine", &untrusted).await.unwrap_err();
    assert!(matches!(err, FetchError::Signature { .. }), "{err}");
    // The right name with the wrong key material.
    std::fs::copy(keys.join("other.rsa.pub"), &public_path).unwrap();
    let err = client.snapshot("alpine", &source).await.unwrap_err();
    assert!(err.to_string().contains("bad signature"), "{err}");
}
