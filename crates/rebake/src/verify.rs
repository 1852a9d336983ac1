//! `rebake verify IMAGE --key PUBLIC.pem`: checks a published image's signature and
//! attestations with nothing but the registry and public keys, and renders the report of
//! [`rebake_signer::verify_image`] (where every check is made).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rebake_control::render::Style;
use rebake_oci::{ImageRef, Registry};
use rebake_signer::{Report, VerifyingKey, VerifyingKeys};

use crate::cli::Output;

/// Verifies `image` against the public keys in `key_files` and prints the report (`table`:
/// one line per check, ✓ or ✗ with the reason; `json`: [`Report::to_json`]). Fails (exit
/// code 1) when any check fails; with `plain_http`, the image's registry is spoken to over
/// plain HTTP (a local registry without TLS).
pub async fn verify(image: &str, key_files: &[PathBuf], plain_http: bool, output: Output, style: Style) -> Result<()> {
    if key_files.is_empty() {
        bail!("no public key: pass --key PUBLIC.pem (repeatable)");
    }
    let image = ImageRef::parse(image).with_context(|| format!("invalid image reference {image:?}"))?;
    let mut keys = VerifyingKeys::default();
    for path in key_files {
        let pem = std::fs::read(path).with_context(|| format!("failed to read public key {}", path.display()))?;
        let key =
            VerifyingKey::from_pem(&pem).with_context(|| format!("failed to load public key {}", path.display()))?;
        keys.push(key);
    }
    let plain_http_hosts = if plain_http {
        vec![image.registry.clone()]
    } else {
        Vec::new()
    };
    let registry = Registry::try_new(plain_http_hosts).context("failed to set up the registry client")?;
    let report = match rebake_signer::verify_image(&registry, &image, &keys).await {
        Ok(report) => report,
        Err(error) => {
            let hint = if !plain_http && error.is_transient() {
                " (for a registry without TLS, pass --plain-http)"
            } else {
                ""
            };
            return Err(anyhow::Error::new(error).context(format!("failed to verify {image}{hint}")));
        }
    };
    match output {
        Output::Table => print!("{}", render(&report, style)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
    }
    let failed = report.failures().count();
    if failed > 0 {
        bail!(
            "verification of {} failed: {failed} of {} checks failed",
            report.reference,
            report.checks.len()
        );
    }
    Ok(())
}

/// The report for people: a header, one `✓`/`✗` line per check (`name: reason`), a verdict.
pub fn render(report: &Report, style: Style) -> String {
    let mut text = format!("{} {}\n", style.bold("Verifying"), report.reference);
    if let Some(digest) = &report.digest {
        text.push_str(&format!(
            "  {}\n",
            style.dim(&format!("{}@{digest}", report.repository))
        ));
    }
    for check in &report.checks {
        let mark = if check.passed { "✓" } else { "✗" };
        text.push_str(&format!("  {mark} {}: {}\n", style.bold(&check.name), check.detail));
    }
    let failed = report.failures().count();
    let verdict = if report.passed() {
        format!("{} ({} checks)", style.status("passed"), report.checks.len())
    } else {
        format!(
            "{} ({failed} of {} checks failed)",
            style.status("failed"),
            report.checks.len()
        )
    };
    text.push_str(&format!("{verdict}\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rebake_signer::Check;

    #[test]
    fn renders_each_check_with_a_mark_and_a_verdict() {
        let mut report = Report {
            reference: "127.0.0.1:5000/apps/app:latest".into(),
            repository: "127.0.0.1:5000/apps/app".into(),
            digest: Some("sha256:ab".into()),
            checks: vec![
                Check {
                    name: "image".into(),
                    passed: true,
                    detail: "tag latest points at sha256:ab".into(),
                },
                Check {
                    name: "signature".into(),
                    passed: false,
                    detail: "no sha256-ab.sig".into(),
                },
            ],
            attestations: Vec::new(),
        };
        let text = render(&report, Style::PLAIN);
        assert_eq!(
            text,
            "Verifying 127.0.0.1:5000/apps/app:latest\n  127.0.0.1:5000/apps/app@sha256:ab\n  ✓ image: tag latest points at sha256:ab\n  ✗ signature: no sha256-ab.sig\nfailed (1 of 2 checks failed)\n"
        );
        report.checks.pop();
        assert!(render(&report, Style::PLAIN).ends_with("passed (1 checks)\n"));
    }
}
