//! The scanner gate end to end, with real advisories (the OSV records under
//! `crates/rebake-scanner/tests/data/advisories/`, see its README for their sources) and a
//! real lock file in the app's Git source:
//!
//! 1. the app ships `lodash` 4.17.15 while the advisory set does not know GHSA-p6mc-m468-83gw:
//!    it is published, with both SBOMs and an empty findings report;
//! 2. the advisory arrives: the published image's findings are updated in place;
//! 3. the next rebuild carries the same vulnerable package: the policy
//!    `no_fixable_critical_high` stops it, the build says why, nothing is published;
//! 4. the lock file moves to the fixed version: published again, no findings.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use rebake_e2e::{GITHUB_SECRET, Options, Sandbox};
use rebake_proto::control::v1::{Findings, GetFindingsRequest, GetSbomRequest};

const ADVISORY: &str = "GHSA-p6mc-m468-83gw";

fn advisories() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/rebake-scanner/tests/data/advisories/osv")
}

fn package_lock(version: &str) -> String {
    serde_json::json!({
        "name": "site",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": true,
        "packages": {
            "": { "name": "site", "version": "1.0.0", "dependencies": { "lodash": "^4.17.0" } },
            "node_modules/lodash": {
                "version": version,
                "resolved": format!("https://registry.npmjs.org/lodash/-/lodash-{version}.tgz"),
                "license": "MIT"
            }
        }
    })
    .to_string()
}

/// The app's published scan report.
async fn app_findings(control: &mut rebake_control::client::Client) -> Result<Findings, tonic::Status> {
    let request = GetFindingsRequest {
        image: "app".into(),
        ..Default::default()
    };
    Ok(control.get_findings(request).await?.into_inner())
}

async fn push_source(sandbox: &Sandbox, before: &str, after: &str, delivery: &str) -> Result<()> {
    let (body, signature) = sandbox.github_push(before, after, GITHUB_SECRET);
    ensure!(sandbox.send_github(body, &signature, delivery).await? == 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vulnerable_packages_are_found_reported_and_blocked() -> Result<()> {
    let watched = tempfile::tempdir()?;
    // Everything but the lodash advisory, at first.
    for entry in std::fs::read_dir(advisories())? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with(ADVISORY))
        {
            std::fs::copy(&path, watched.path().join(path.file_name().context("file name")?))?;
        }
    }
    let sandbox = Sandbox::start_with(
        "e2escan",
        Options {
            scanner: format!(
                "  advisories:\n    - {{ kind: osv, path: {} }}\n  advisory_poll_interval: 1s\n",
                watched.path().display()
            ),
            ..Options::default()
        },
    )
    .await?;
    let first = sandbox.head()?;
    let vulnerable = sandbox.commit_file("site/package-lock.json", &package_lock("4.17.15"))?;
    push_source(&sandbox, &first, &vulnerable, "scan-0").await?;
    let base = sandbox.push_base("v1", "scan").await?;
    let (app, _child) = sandbox.wait_first_cascade(&base).await?;
    let mut control = rebake_control::client::connect(&sandbox.control_url).await?;

    // 1. Published with its reports; nothing known against lodash yet.
    let findings = app_findings(&mut control).await?;
    ensure!(findings.passed && findings.digest == app, "report: {findings:?}");
    ensure!(
        findings.components >= 1 && findings.findings.is_empty(),
        "report: {findings:?}"
    );
    for format in ["spdx", "cyclonedx"] {
        let sbom = control
            .get_sbom(GetSbomRequest {
                image: "app".into(),
                format: format.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        ensure!(
            sbom.json.contains("pkg:npm/lodash@4.17.15"),
            "{format} SBOM lacks lodash"
        );
    }

    // 2. The advisory is published: the live image's findings follow.
    std::fs::copy(
        advisories().join(format!("{ADVISORY}.json")),
        watched.path().join(format!("{ADVISORY}.json")),
    )?;
    rebake_testkit::eventually("the published image's findings are updated", || {
        let mut control = control.clone();
        async move {
            let findings = app_findings(&mut control).await?;
            Ok::<bool, tonic::Status>(findings.findings.iter().any(|finding| {
                finding.id == ADVISORY
                    && finding.package == "lodash"
                    && finding.installed_version == "4.17.15"
                    && finding.fixed_version == "4.17.20"
                    && finding.severity == "high"
            }))
        }
    })
    .await?;

    // What `rebake findings app` prints.
    let text = rebake::cli::render_findings(&app_findings(&mut control).await?);
    ensure!(
        text.contains(ADVISORY) && text.contains("lodash") && text.contains("4.17.20"),
        "rebake findings shows:\n{text}"
    );

    // 3. A rebuild with the vulnerable package is stopped, and says why.
    let touched = sandbox.commit_source("<h1>v2</h1>\n")?;
    push_source(&sandbox, &vulnerable, &touched, "scan-1").await?;
    rebake_testkit::eventually("the rebuild is denied", || async {
        let builds = sandbox.builds_of("app").await?;
        anyhow::Ok(builds.iter().any(|build| {
            build.status == "failed"
                && build.reason.contains("no_fixable_critical_high")
                && build.reason.contains("lodash")
        }))
    })
    .await?;
    ensure!(
        sandbox.published_digest("app").await?.as_deref() == Some(app.as_str()),
        "a denied build was published"
    );

    // 4. The fix: published again, clean.
    let fixed = sandbox.commit_file("site/package-lock.json", &package_lock("4.17.20"))?;
    push_source(&sandbox, &touched, &fixed, "scan-2").await?;
    let app2 = sandbox.wait_published("app", Some(&app)).await?;
    let findings = app_findings(&mut control).await?;
    ensure!(
        findings.digest == app2 && findings.passed && findings.findings.is_empty(),
        "report: {findings:?}"
    );
    sandbox.stop().await;
    Ok(())
}
