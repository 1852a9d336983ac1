//! Reading upstream state directly (the resync path): tag digests from registries, branch
//! commits from Git remotes. Events only hint; this is what keeps a lost webhook from losing
//! a rebuild.

use std::time::Duration;

use rebake_oci::{ImageRef, Registry};

use crate::{ResolverError, Result};

/// Asks the registry which digest `tag_ref` points at now (`None` if the tag does not exist).
pub async fn resolve_tag(registry: &Registry, tag_ref: &str) -> Result<Option<String>> {
    let reference = ImageRef::parse(tag_ref).map_err(|source| ResolverError::Registry {
        reference: tag_ref.to_string(),
        source,
    })?;
    let resolved = registry
        .resolve(&reference)
        .await
        .map_err(|source| ResolverError::Registry {
            reference: tag_ref.to_string(),
            source,
        })?;
    Ok(resolved.map(|resolved| resolved.digest))
}

/// Asks the Git remote which commit `branch` points at (`None` if it does not exist).
pub async fn resolve_branch(url: &str, branch: &str) -> Result<Option<String>> {
    let git_error = |reason: String| ResolverError::Git {
        url: url.to_string(),
        branch: branch.to_string(),
        reason,
    };
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("git")
            .args(["ls-remote", "--", url, &format!("refs/heads/{branch}")])
            .env("GIT_TERMINAL_PROMPT", "0")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| git_error("git ls-remote timed out after 60s".to_string()))?
    .map_err(|error| git_error(format!("cannot run git: {error}")))?;
    if !output.status.success() {
        return Err(git_error(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(_, name)| *name == format!("refs/heads/{branch}"))
        .map(|(commit, _)| commit.to_string()))
}
