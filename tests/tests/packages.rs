//! Images assembled from package feeds, end to end: a local Debian repository made of real
//! `.deb`s (`apt-get download`), signed with `gpg`, served on loopback; images built from
//! it through every service; an index bump rebuilds exactly the affected images and their
//! children; an unrelated change rebuilds nothing; the same inputs give the same digest in
//! two places; `skopeo` and `umoci` read the result independently.
//!
//! Skips (with the reason printed) when `apt-get download` or `gpg` cannot run here.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, ensure};
use rebake_e2e::{
    Options, Sandbox,
    debfeed::{DebFeed, build_request, feed_source, load_spec},
};
use rebake_events::{Bucket, state::UpstreamRecord};
use rebake_feeds::fetch::{FeedClient, FeedSource};
use rebake_testkit::FeedServer;

const PACKAGES: &[&str] = &["base-files", "netbase", "tzdata", "hostname"];

fn feed_yaml(url: &str, keyring: &Path) -> String {
    format!(
        "  test:\n    kind: debian\n    url: {url}\n    suite: stable\n    components: [main]\n    architectures: [amd64, arm64]\n    keyring: [{}]\n",
        keyring.display()
    )
}

/// The test feed, published for amd64 and arm64.
fn test_feed(dir: &Path) -> Result<Option<DebFeed>> {
    let Some(feed) = DebFeed::create(dir, PACKAGES)? else {
        return Ok(None);
    };
    feed.publish()?;
    Ok(Some(feed))
}

const OS_IMAGE: &str = "name: os\nbase: scratch\npackages:\n  feed: test\n  install: [base-files, tzdata]\nplatforms: [linux/amd64, linux/arm64]\naccounts:\n  groups: [{ name: nonroot, gid: 65532 }]\n  users: [{ name: nonroot, uid: 65532, gid: 65532 }]\nos_release: { ID: rebake-test, NAME: \"Rebake Test OS\", VERSION_ID: \"1\" }\nstructure_tests:\n  schemaVersion: 2.0.0\n  fileExistenceTests:\n    - { name: tmp, path: /tmp, shouldExist: true, permissions: drwxrwxrwt }\n  fileContentTests:\n    - { name: os-release, path: /etc/os-release, expectedContents: [\"ID=rebake-test\"] }\n    - { name: utc, path: /usr/share/zoneinfo/UTC, expectedContents: [\"TZif\"] }\n  metadataTest:\n    user: \"65532\"\nconfig:\n  user: \"65532\"\npublish:\n  repository: {host}/os/base\n";
const APP_IMAGE: &str =
    "name: app\nbase: {host}/os/base:latest\nconfig:\n  cmd: [/bin/true]\npublish:\n  repository: {host}/apps/app\n";
const NET_IMAGE: &str = "name: net\nbase: scratch\npackages:\n  feed: test\n  install: [netbase]\nconfig:\n  user: \"65532\"\npublish:\n  repository: {host}/os/net\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_bump_rebuilds_exactly_the_affected_images() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut feed) = test_feed(dir.path())? else {
        return Ok(());
    };
    let server = FeedServer::start(feed.root.clone())?;
    let sandbox = Sandbox::start_with(
        "pkgcascade",
        Options {
            default_images: false,
            images: vec![
                ("os.yaml".into(), OS_IMAGE.into()),
                ("app.yaml".into(), APP_IMAGE.into()),
                ("net.yaml".into(), NET_IMAGE.into()),
            ],
            feeds: feed_yaml(&server.url(), &feed.keyring),
            feed_poll_interval: "1s".into(),
            ..Options::default()
        },
    )
    .await?;

    // First publication of all three, the child on its parent's index.
    let os = sandbox.wait_published("os", None).await?;
    let net = sandbox.wait_published("net", None).await?;
    let app = sandbox.wait_published("app", None).await?;
    let index = sandbox
        .registry
        .get_manifest(&sandbox.host, "os/base", &os)
        .await?
        .to_index()
        .context("os is an image index")?;
    let platforms: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref().map(|p| format!("{}/{}", p.os, p.architecture)))
        .collect();
    ensure!(
        platforms == ["linux/amd64", "linux/arm64"],
        "index platforms: {platforms:?}"
    );
    let app_manifest = sandbox.manifest("apps/app", &app).await?;
    ensure!(
        app_manifest.annotations["org.opencontainers.image.base.digest"] == os,
        "app is built on {}",
        app_manifest.annotations["org.opencontainers.image.base.digest"]
    );
    let state = sandbox.image_state("os").await?.context("os state")?;
    let published = state.published.context("os published")?;
    // The spec's structure tests ran on both platforms, through the os-release symlink.
    let report: rebake_events::state::ScanReport = sandbox
        .bus
        .kv(Bucket::Builds)
        .await?
        .get(&rebake_events::state::scan_key(&published.build_id))
        .await?
        .context("os scan report")?;
    ensure!(
        report.structure.len() == 8 && report.structure.iter().all(|result| result.status == "passed"),
        "structure tests: {:?}",
        report.structure
    );
    ensure!(report.components > 0, "the os SBOM is empty");
    let tzdata_before = feed.version("tzdata").context("tzdata version")?;
    ensure!(
        published
            .packages
            .iter()
            .any(|p| p.name == "tzdata" && p.version == tzdata_before && p.platform == "linux/arm64"),
        "published packages: {:?}",
        published.packages
    );
    let builds = |image: &'static str| {
        let sandbox = &sandbox;
        async move { sandbox.builds_of(image).await.map(|b| b.len()) }
    };
    let (os_builds, net_builds, app_builds) = (builds("os").await?, builds("net").await?, builds("app").await?);

    // Upstream publishes a new tzdata: os and its child app rebuild; net does not.
    let tzdata_after = format!("{tzdata_before}+rebake1");
    feed.bump("tzdata", &tzdata_after)?;
    feed.publish()?;
    let os2 = sandbox.wait_published("os", Some(&os)).await?;
    let app2 = sandbox.wait_published("app", Some(&app)).await?;
    let published = sandbox
        .image_state("os")
        .await?
        .context("os state")?
        .published
        .context("published")?;
    ensure!(
        published
            .packages
            .iter()
            .any(|p| p.name == "tzdata" && p.version == tzdata_after),
        "os was rebuilt without the new tzdata: {:?}",
        published.packages
    );
    ensure!(
        published
            .causes
            .iter()
            .any(|c| c.kind == "package-feed" && c.description.contains(&tzdata_after)),
        "causes: {:?}",
        published.causes
    );
    let app_manifest = sandbox.manifest("apps/app", &app2).await?;
    ensure!(app_manifest.annotations["org.opencontainers.image.base.digest"] == os2);
    ensure!(
        builds("os").await? == os_builds + 1,
        "os built more than once for one change"
    );
    ensure!(
        builds("app").await? == app_builds + 1,
        "app built more than once for one change"
    );
    ensure!(sandbox.published_digest("net").await?.as_deref() == Some(net.as_str()));
    ensure!(
        builds("net").await? == net_builds,
        "net was rebuilt for a package it does not have"
    );

    // A package no image installs changes: the feed digest moves, nothing is built.
    let digest_before = feed_digest(&sandbox).await?.context("feed digest recorded")?;
    feed.bump("hostname", "99.0")?;
    feed.publish()?;
    rebake_testkit::eventually("the resolver loads the new feed index", || async {
        feed_digest(&sandbox)
            .await
            .map(|d| d.is_some_and(|d| d != digest_before))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        builds("os").await? == os_builds + 1,
        "os rebuilt for an unrelated package"
    );
    ensure!(
        builds("net").await? == net_builds,
        "net rebuilt for an unrelated package"
    );
    ensure!(
        builds("app").await? == app_builds + 1,
        "app rebuilt for an unrelated package"
    );

    // An unchanged feed costs one conditional request per poll.
    server.reset_requests();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let requests = server.requests();
    ensure!(!requests.is_empty(), "the feed was not polled");
    ensure!(
        requests
            .iter()
            .all(|r| r.path.ends_with("/InRelease") && r.status == 304),
        "an unchanged feed cost more than conditional InRelease requests: {requests:?}"
    );

    // Every published package image rebuilds bit for bit from its signed provenance
    // (packages fetched again by URL and checksum into an empty cache).
    let keys = rebake_signer::VerifyingKeys::from_pems([std::fs::read(&sandbox.public_key)?.as_slice()])?;
    for image in ["os", "net", "app"] {
        let state = sandbox.image_state(image).await?.context("state")?;
        let published = state.published.context("published")?;
        let reference = rebake_oci::ImageRef::parse(&format!("{}@{}", published.repository, published.digest))?;
        let report = rebake::rebuild_check::check_published(&reference, &keys, true).await?;
        ensure!(report.identical, "{}", rebake::rebuild_check::render_report(&report));
    }
    sandbox.stop().await;
    Ok(())
}

/// The index digest of feed `test` the resolver has loaded.
async fn feed_digest(sandbox: &Sandbox) -> Result<Option<String>> {
    let kv = sandbox.bus.kv(Bucket::Upstream).await?;
    Ok(kv
        .get::<UpstreamRecord>(&rebake_events::state::upstream_key("feed", "test"))
        .await?
        .map(|record| record.value))
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    rebake_e2e::tool(Path::new("."), program, args)
}

/// Builds the os image (amd64 only) from the feed through the builder alone, in `work`,
/// with its own package cache.
async fn build_os(
    registry: &rebake_oci::Registry,
    host: &str,
    source: &FeedSource,
    work: &Path,
) -> Result<rebake_builder::assemble::Staged> {
    let client = FeedClient::new(work.join("cache"))?;
    let snapshot = client.snapshot("test", source).await?;
    let spec = load_spec(
        &OS_IMAGE
            .replace("{host}", host)
            .replace("linux/amd64, linux/arm64", "linux/amd64"),
    )?;
    let request = build_request(&snapshot, "test", source, &spec, "b1")?;
    Ok(rebake_builder::assemble::build_and_stage(registry, &client, work, "rebake-staging", &request).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_image_is_reproducible_and_readable_by_umoci() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(feed) = test_feed(dir.path())? else {
        return Ok(());
    };
    let server = FeedServer::start(feed.root.clone())?;
    let registry_server = rebake_testkit::RegistryServer::start(None).await?;
    let host = registry_server.host();
    let registry = rebake_oci::Registry::try_new(vec![host.clone()])?;
    let source = feed_source(&server.url(), &feed.keyring)?;

    // Two places, two times, cold caches: one digest.
    let first = build_os(&registry, &host, &source, &dir.path().join("a")).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = build_os(&registry, &host, &source, &dir.path().join("b")).await?;
    ensure!(first.digest == second.digest, "{} != {}", first.digest, second.digest);

    // Independent readers: skopeo copies it to an OCI layout, umoci unpacks it.
    let layout = dir.path().join("layout");
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{host}/rebake-staging/os@{}", first.digest),
            &format!("oci:{}:os", layout.display()),
        ],
    )?;
    let bundle = dir.path().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:os", layout.display()),
            &bundle.to_string_lossy(),
        ],
    )?;
    let rootfs = bundle.join("rootfs");
    ensure!(rootfs.join("etc/debian_version").is_file(), "no etc/debian_version");
    ensure!(rootfs.join("usr/share/zoneinfo").is_dir(), "no zoneinfo");
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status"))?;
    for name in ["base-files", "tzdata"] {
        ensure!(
            status.contains(&format!("Package: {name}\n")),
            "dpkg status lacks {name}"
        );
        ensure!(
            rootfs.join("var/lib/dpkg/status.d").join(name).is_file(),
            "no status.d/{name}"
        );
    }
    ensure!(!status.contains("Package: netbase\n"), "netbase was not asked for");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd"))?;
    ensure!(
        passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "passwd: {passwd}"
    );
    ensure!(passwd.lines().any(|l| l.starts_with("root:x:0:0:")), "passwd: {passwd}");
    let os_release = std::fs::read_to_string(rootfs.join("etc/os-release"))?;
    ensure!(os_release.contains("ID=rebake-test"), "os-release: {os_release}");

    // Owners and modes, read independently with the tar CLI from the layer blob that holds
    // `tmp/` (`umoci --rootless` remaps owners, so its rootfs cannot tell).
    let mut listing = None;
    for blob in std::fs::read_dir(layout.join("blobs/sha256"))? {
        let blob = blob?.path();
        // Config and manifests are not gzip: tar fails on them.
        let Ok(out) = run("tar", &["--numeric-owner", "-tvzf", &blob.to_string_lossy()]) else {
            continue;
        };
        if out.lines().any(|line| line.ends_with(" tmp/")) {
            listing = Some(out);
            break;
        }
    }
    let listing = listing.context("no layer blob lists tmp/")?;
    // `drwxrwxrwt 0/0 0 1970-01-01 00:00 tmp/` -> ("drwxrwxrwt", "0/0")
    let entry = |path: &str| -> Result<(String, String)> {
        let line = listing
            .lines()
            .find(|line| line.split_whitespace().last() == Some(path))
            .with_context(|| format!("{path} not in the package layer"))?;
        let mut fields = line.split_whitespace();
        Ok((
            fields.next().unwrap_or_default().to_owned(),
            fields.next().unwrap_or_default().to_owned(),
        ))
    };
    for (path, mode, owner) in [
        ("tmp/", "drwxrwxrwt", "0/0"),
        ("var/tmp/", "drwxrwxrwt", "0/0"),
        ("root/", "drwx------", "0/0"),
        ("home/nonroot/", "drwxr-xr-x", "65532/65532"),
        ("etc/passwd", "-rw-r--r--", "0/0"),
        ("etc/shadow", "-rw-------", "0/0"),
    ] {
        let (got_mode, got_owner) = entry(path)?;
        ensure!(
            (got_mode.as_str(), got_owner.as_str()) == (mode, owner),
            "{path}: {got_mode} {got_owner}, want {mode} {owner}"
        );
    }
    Ok(())
}
