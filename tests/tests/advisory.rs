//! An advisory update on an already published image, end to end: the scanner re-matches
//! the published image, updates its findings, and — because the image's feed already has
//! the fixed version (published there before anyone polled it) — the resolver re-reads the
//! feed at once and rebuilds the image with the fix, the advisory named as the cause.
//!
//! The advisory is a synthetic OSV record (id `REBAKE-TEST-…`) against the real `hostname`
//! package of the machine's Debian feed: no public advisory names a fixed version that only
//! exists in this test's feed. Real advisories are exercised in `scan.rs` and the scanner's
//! own tests. Skips (with the reason printed) when `apt-get download` or `gpg` cannot run.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use rebake_control::{
    api::{GetExposureRequest, control_client::ControlClient},
    render::{Style, render_exposure_table},
};
use rebake_e2e::{Options, Sandbox, debfeed::DebFeed};
use rebake_events::{
    Bucket,
    state::{ScanReport, scan_key},
};
use rebake_testkit::FeedServer;

const ADVISORY: &str = "REBAKE-TEST-2026-0001";

const TOOL_IMAGE: &str = "name: tool\nbase: scratch\npackages:\n  feed: test\n  install: [hostname]\nconfig:\n  user: \"65532\"\npublish:\n  repository: {host}/os/tool\n";

fn feed_yaml(url: &str, keyring: &Path) -> String {
    format!(
        "  test:\n    kind: debian\n    url: {url}\n    suite: stable\n    components: [main]\n    architectures: [amd64]\n    keyring: [{}]\n",
        keyring.display()
    )
}

fn advisory(fixed: &str) -> String {
    serde_json::json!({
        "schema_version": "1.6.0",
        "id": ADVISORY,
        "modified": "2026-12-03T00:00:00Z",
        "published": "2026-12-03T00:00:00Z",
        "summary": "Test advisory: hostname before the test feed's rebuilt version",
        "severity": [{ "type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" }],
        "affected": [{
            "package": { "ecosystem": "Debian", "name": "hostname" },
            "ranges": [{ "type": "ECOSYSTEM", "events": [{ "introduced": "0" }, { "fixed": fixed }] }]
        }]
    })
    .to_string()
}

async fn report(sandbox: &Sandbox, build_id: &str) -> Result<Option<ScanReport>> {
    Ok(sandbox.bus.kv(Bucket::Builds).await?.get(&scan_key(build_id)).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn advisory_with_a_fix_in_the_feed_rebuilds_the_image() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut feed) = DebFeed::create(dir.path(), &["hostname"])? else {
        return Ok(());
    };
    feed.publish()?;
    let server = FeedServer::start(feed.root.clone())?;
    let advisories = tempfile::tempdir()?;
    let sandbox = Sandbox::start_with(
        "e2eadvisory",
        Options {
            default_images: false,
            images: vec![("tool.yaml".into(), TOOL_IMAGE.into())],
            feeds: feed_yaml(&server.url(), &feed.keyring),
            // Nobody polls the feed during the test: only the advisory makes Rebake look.
            feed_poll_interval: "1h".into(),
            resync_interval: "1h".into(),
            scanner: format!(
                "  advisories:\n    - {{ kind: osv, path: {} }}\n  advisory_poll_interval: 1s\n",
                advisories.path().display()
            ),
            ..Options::default()
        },
    )
    .await?;

    let first = sandbox.wait_published("tool", None).await?;
    let state = sandbox.image_state("tool").await?.context("tool state")?;
    let published = state.published.context("tool published")?;
    let installed = feed.version("hostname").context("hostname version")?;
    let before = report(&sandbox, &published.build_id).await?.context("first report")?;
    ensure!(
        before.findings.is_empty(),
        "findings before the advisory: {:?}",
        before.findings
    );

    // Upstream publishes a fixed hostname; then the advisory naming it arrives.
    let fixed = format!("{installed}+rebake1");
    feed.bump("hostname", &fixed)?;
    feed.publish()?;
    std::fs::write(advisories.path().join(format!("{ADVISORY}.json")), advisory(&fixed))?;

    // The published image's findings are updated in place...
    rebake_testkit::eventually("the published image's findings name the advisory", || async {
        let report = report(&sandbox, &published.build_id).await.ok().flatten();
        report.is_some_and(|report| {
            report.findings.iter().any(|finding| {
                finding.id == ADVISORY
                    && finding.installed_version == installed
                    && finding.fixed_version.as_deref() == Some(fixed.as_str())
            })
        })
    })
    .await?;

    // ...and the image is rebuilt with the fix, the advisory as the cause.
    let second = sandbox.wait_published("tool", Some(&first)).await?;
    let state = sandbox.image_state("tool").await?.context("tool state")?;
    let republished = state.published.context("tool republished")?;
    ensure!(republished.digest == second);
    ensure!(
        republished
            .packages
            .iter()
            .any(|p| p.name == "hostname" && p.version == fixed),
        "republished packages: {:?}",
        republished.packages
    );
    let builds = sandbox.builds_of("tool").await?;
    let rebuild = builds
        .iter()
        .find(|build| build.build_id == republished.build_id)
        .context("the rebuild's record")?;
    ensure!(
        rebuild
            .causes
            .iter()
            .any(|cause| cause.kind == "advisory" && cause.description.contains(ADVISORY)),
        "causes: {:?}",
        rebuild.causes
    );
    let after = report(&sandbox, &republished.build_id)
        .await?
        .context("rebuild report")?;
    ensure!(
        after.findings.iter().all(|finding| finding.id != ADVISORY),
        "the fixed image still has {ADVISORY}: {:?}",
        after.findings
    );

    // The control API's exposure: from the advisory naming the fix to the fixed image.
    let mut client = ControlClient::connect(sandbox.control_url.clone()).await?;
    let exposure = client
        .get_exposure(GetExposureRequest { image: "tool".into() })
        .await?
        .into_inner();
    println!(
        "$ rebake exposure tool\n{}",
        render_exposure_table(&exposure, Style::PLAIN)
    );
    let entry = exposure
        .entries
        .iter()
        .find(|entry| entry.finding_id == ADVISORY)
        .with_context(|| format!("no exposure entry for {ADVISORY}: {exposure:?}"))?;
    let advisory_at = rebuild
        .causes
        .iter()
        .filter(|cause| cause.kind == "advisory")
        .map(|cause| cause.at_ms)
        .min()
        .context("advisory cause time")?;
    ensure!(
        !entry.open
            && entry.package == "hostname"
            && entry.fixed_version == fixed
            && entry.fixed_digest == second
            && entry.fix_available_at_ms == advisory_at
            && entry.fixed_published_at_ms == rebuild.finished_at_ms
            && entry.exposure_ms == rebuild.finished_at_ms - advisory_at
            && entry.exposure_ms > 0,
        "exposure entry {entry:?}; advisory at {advisory_at}, rebuild {rebuild:?}"
    );
    sandbox.stop().await;
    Ok(())
}
