//! Images assembled from an APK feed, through the builder: `.apk` files built in the test
//! (gzip streams of tar sections, as abuild writes them), an `APKINDEX.tar.gz` per
//! architecture signed with a test RSA key made by `openssl`, served on loopback; a
//! two-platform image from it; GNU `tar` reads the `.apk`s and `skopeo`/`umoci` read the
//! image, independently of Rebake's own readers.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use rebake_e2e::debfeed::{build_request, load_spec};
use rebake_feeds::{
    apk::{
        ApkDependency, ApkProvide, ApkVersion, DataEntry, PkgInfo, SignatureAlgorithm, read_apk,
        testing::{build_apk, build_index_tar_gz, sign},
    },
    fetch::{FeedClient, FeedSource},
};
use rebake_testkit::FeedServer;

use rebake_e2e::tool as run;

/// Writes one architecture of the repository: a C library providing `so:libc.musl.so.1`,
/// a shell providing `cmd:sh` that needs it, and `hello` that needs `cmd:sh`.
fn write_arch(repo: &Path, arch: &str, key_pem: &str) -> Result<()> {
    let dir = repo.join(arch);
    std::fs::create_dir_all(&dir)?;
    type Spec<'a> = (&'a str, &'a str, &'a [&'a str], &'a [&'a str], Vec<DataEntry>);
    let packages: [Spec; 3] = [
        (
            "libc-test",
            "1.2.4-r0",
            &[],
            &["so:libc.musl.so.1=1"],
            vec![
                DataEntry::dir("lib", 0o755),
                DataEntry::file("lib/libc.musl.so.1", 0o755, arch.as_bytes()),
            ],
        ),
        (
            "shell-test",
            "1.36.1-r2",
            &["so:libc.musl.so.1"],
            &["cmd:sh=1.36.1-r2"],
            vec![
                DataEntry::dir("bin", 0o755),
                DataEntry::file("bin/sh", 0o755, b"#!shell\n"),
            ],
        ),
        (
            "hello",
            "2.12-r0",
            &["cmd:sh"],
            &[],
            vec![
                DataEntry::dir("usr", 0o755),
                DataEntry::dir("usr/bin", 0o755),
                DataEntry::file("usr/bin/hello", 0o755, b"#!/bin/sh\necho hello\n"),
            ],
        ),
    ];
    let mut index = String::new();
    for (name, version, depends, provides, files) in packages {
        let mut info = PkgInfo::new(name, ApkVersion::parse(version)?, arch);
        info.depends = depends
            .iter()
            .map(|atom| ApkDependency::parse(atom))
            .collect::<Result<_, _>>()?;
        info.provides = provides
            .iter()
            .map(|atom| ApkProvide::parse(atom))
            .collect::<Result<_, _>>()?;
        let apk = build_apk(&info, &files)?;
        let read = read_apk(&apk)?;
        std::fs::write(dir.join(format!("{name}-{version}.apk")), &apk)?;
        index.push_str(&format!(
            "C:{}\nP:{name}\nV:{version}\nA:{arch}\nS:{}\nT:test package\n",
            read.checksum,
            apk.len()
        ));
        if !depends.is_empty() {
            index.push_str(&format!("D:{}\n", depends.join(" ")));
        }
        if !provides.is_empty() {
            index.push_str(&format!("p:{}\n", provides.join(" ")));
        }
        index.push('\n');
    }
    let signed = sign(
        &build_index_tar_gz(&index, "test")?,
        "test@rebake.invalid.rsa.pub",
        key_pem,
        SignatureAlgorithm::RsaSha1,
    )?;
    std::fs::write(dir.join("APKINDEX.tar.gz"), signed)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apk_feed_builds_a_two_platform_image() -> Result<()> {
    let dir = tempfile::tempdir()?;
    run(dir.path(), "openssl", &["genrsa", "-out", "test.key", "2048"])?;
    run(
        dir.path(),
        "openssl",
        &[
            "rsa",
            "-in",
            "test.key",
            "-pubout",
            "-out",
            "test@rebake.invalid.rsa.pub",
        ],
    )?;
    let key_pem = std::fs::read_to_string(dir.path().join("test.key"))?;
    let repo = dir.path().join("repo/main");
    for arch in ["x86_64", "aarch64"] {
        write_arch(&repo, arch, &key_pem)?;
    }
    // GNU tar, an independent reader, lists both sections of a test .apk.
    let listing = run(
        dir.path(),
        "tar",
        &[
            "--ignore-zeros",
            "-tzf",
            &repo.join("x86_64/hello-2.12-r0.apk").to_string_lossy(),
        ],
    )?;
    ensure!(
        listing.contains(".PKGINFO") && listing.contains("usr/bin/hello"),
        "tar lists: {listing}"
    );

    let server = FeedServer::start(dir.path().join("repo"))?;
    let registry_server = rebake_testkit::RegistryServer::start(None).await?;
    let host = registry_server.host();
    let registry = rebake_oci::Registry::try_new(vec![host.clone()])?;
    let source: FeedSource = serde_json::from_value(serde_json::json!({
        "kind": "apk",
        "url": format!("{}/main", server.url()),
        "architectures": ["x86_64", "aarch64"],
        "keys": [dir.path().join("test@rebake.invalid.rsa.pub")],
    }))?;
    let client = FeedClient::new(dir.path().join("cache"))?;
    let snapshot = client.snapshot("wolfi", &source).await?;
    let spec = load_spec(&format!(
        "name: hello\nbase: scratch\npackages:\n  feed: wolfi\n  install: [hello]\nplatforms: [linux/amd64, linux/arm64]\nconfig:\n  entrypoint: [/usr/bin/hello]\npublish:\n  repository: {host}/apps/hello\n"
    ))?;
    let request = build_request(&snapshot, "wolfi", &source, &spec, "b1")?;
    let names: Vec<String> = request
        .packages
        .iter()
        .filter(|p| p.platform == "linux/arm64")
        .map(|p| format!("{} {}", p.name, p.architecture))
        .collect();
    ensure!(
        names == ["hello aarch64", "libc-test aarch64", "shell-test aarch64"],
        "arm64 set: {names:?}"
    );
    let staged =
        rebake_builder::assemble::build_and_stage(&registry, &client, &dir.path().join("work"), "staging", &request)
            .await?;
    let index = registry
        .get_manifest(&host, "staging/hello", &staged.digest)
        .await?
        .to_index()
        .context("a two-platform image is an index")?;
    ensure!(index.manifests.len() == 2);

    // skopeo picks the arm64 manifest, umoci unpacks it.
    let layout = dir.path().join("layout");
    run(
        dir.path(),
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--override-arch=arm64",
            &format!("docker://{host}/staging/hello@{}", staged.digest),
            &format!("oci:{}:hello", layout.display()),
        ],
    )?;
    let bundle = dir.path().join("bundle");
    run(
        dir.path(),
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:hello", layout.display()),
            &bundle.to_string_lossy(),
        ],
    )?;
    let rootfs = bundle.join("rootfs");
    ensure!(
        std::fs::read(rootfs.join("lib/libc.musl.so.1"))? == b"aarch64",
        "not the arm64 libc"
    );
    ensure!(rootfs.join("usr/bin/hello").is_file());
    let installed = std::fs::read_to_string(rootfs.join("lib/apk/db/installed"))?;
    for name in ["hello", "libc-test", "shell-test"] {
        ensure!(
            installed.contains(&format!("P:{name}\n")),
            "installed db lacks {name}: {installed}"
        );
    }
    ensure!(installed.contains("A:aarch64\n"));
    let world = std::fs::read_to_string(rootfs.join("etc/apk/world"))?;
    ensure!(world == "hello\n", "world: {world:?}");
    Ok(())
}
