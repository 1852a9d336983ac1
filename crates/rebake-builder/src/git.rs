//! Git sources: a bare mirror per repository under the work directory, fetched on demand,
//! read with `git archive` at the exact commit requested. Uses the `git` CLI (present on
//! every build host; a pure-Rust Git would add a large dependency for three commands).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Duration,
};

use rebake_oci::LayerEntry;
use sha2::Digest as _;

use crate::{BuilderError, Result};

/// The files of one source at one commit, and the commit's time.
pub struct SourceTree {
    /// Entries, paths relative to the image root.
    pub entries: Vec<LayerEntry>,
    /// Committer time (Unix seconds).
    pub commit_time: i64,
}

async fn git(dir: &Path, args: &[&str]) -> std::result::Result<Vec<u8>, String> {
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("git {} timed out", args.first().unwrap_or(&"")))?
    .map_err(|error| format!("cannot run git: {error}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Fetches `commit` of `url` (branch `ref_name`) into a mirror under `work_dir` and reads
/// its tree (or the `path` subdirectory) as layer entries under `dest`.
pub async fn checkout(
    work_dir: &Path,
    url: &str,
    ref_name: &str,
    commit: &str,
    path: Option<&str>,
    dest: Option<&str>,
) -> Result<SourceTree> {
    let git_error = |reason: String, transient: bool| BuilderError::Git {
        url: url.to_string(),
        commit: commit.to_string(),
        reason,
        transient,
    };
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(git_error("not a full commit id".to_string(), false));
    }
    let mirror: PathBuf = work_dir
        .join("git")
        .join(&hex::encode(sha2::Sha256::digest(url.as_bytes()))[..24]);
    let has_commit = |mirror: &Path| {
        let mirror = mirror.to_path_buf();
        async move {
            git(&mirror, &["cat-file", "-e", &format!("{commit}^{{commit}}")])
                .await
                .is_ok()
        }
    };
    if !has_commit(&mirror).await {
        let lock = mirror_lock(&mirror);
        let _fetching = lock.lock().await;
        // Another build may have fetched it while this one waited.
        if !has_commit(&mirror).await {
            fetch(&mirror, url, ref_name, commit)
                .await
                .map_err(|(reason, transient)| git_error(reason, transient))?;
        }
    }
    let time_text = git(&mirror, &["show", "-s", "--format=%ct", commit])
        .await
        .map_err(|e| git_error(e, false))?;
    let commit_time: i64 = String::from_utf8_lossy(&time_text).trim().parse().unwrap_or(0);
    let treeish = match path {
        Some(path) if !path.trim_matches('/').is_empty() && path != "." => {
            format!("{commit}:{}", path.trim_matches('/'))
        }
        _ => commit.to_string(),
    };
    let archive = git(&mirror, &["archive", "--format=tar", &treeish])
        .await
        .map_err(|e| git_error(format!("cannot read tree: {e}"), false))?;
    let entries = entries_from_tar(&archive, dest.unwrap_or("/")).map_err(|e| git_error(e, false))?;
    Ok(SourceTree { entries, commit_time })
}

/// One fetch at a time per mirror in this process. Two builds of the same repository
/// started by one push (sibling images) would otherwise fetch at once and race on the
/// remote-tracking ref's lock (`cannot lock ref`), and the loser would wait for a retry.
/// Builders in other processes sharing a work directory still race; git's failure there is
/// transient and retried.
fn mirror_lock(mirror: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    locks.entry(mirror.to_path_buf()).or_default().clone()
}

/// Creates the mirror if needed and fetches `ref_name` (or, when the commit is no longer on
/// it, the commit itself). Errors are `(reason, transient)`.
async fn fetch(mirror: &Path, url: &str, ref_name: &str, commit: &str) -> std::result::Result<(), (String, bool)> {
    if !mirror.join("HEAD").exists() {
        tokio::fs::create_dir_all(mirror)
            .await
            .map_err(|error| (format!("cannot create {}: {error}", mirror.display()), true))?;
        git(mirror, &["init", "--bare", "--quiet"])
            .await
            .map_err(|e| (e, true))?;
    }
    let refspec = format!("+refs/heads/{ref_name}:refs/remotes/source/{ref_name}");
    git(mirror, &["fetch", "--quiet", "--force", "--no-tags", url, &refspec])
        .await
        .map_err(|e| (format!("fetch failed: {e}"), true))?;
    if git(mirror, &["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .await
        .is_err()
    {
        // Not on the branch (force-pushed away?): try fetching the commit itself.
        git(mirror, &["fetch", "--quiet", "--no-tags", url, commit])
            .await
            .map_err(|e| (format!("commit not found on {ref_name}: {e}"), false))?;
    }
    Ok(())
}

/// Turns a `git archive` tar into layer entries under `dest`: `root:root`, modes normalised
/// by the layer writer (Git tracks only the executable bit).
fn entries_from_tar(archive: &[u8], dest: &str) -> std::result::Result<Vec<LayerEntry>, String> {
    let dest = dest.trim_matches('/');
    let join = |path: &str| {
        let path = path.trim_start_matches("./").trim_end_matches('/');
        if dest.is_empty() {
            path.to_string()
        } else if path.is_empty() {
            dest.to_string()
        } else {
            format!("{dest}/{path}")
        }
    };
    let mut entries = Vec::new();
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries().map_err(|e| format!("bad archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("bad archive entry: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad path: {e}"))?
            .to_string_lossy()
            .to_string();
        let mode = entry.header().mode().unwrap_or(0o644);
        let kind = entry.header().entry_type();
        let target = join(&path);
        if target.is_empty() {
            continue;
        }
        if kind.is_dir() {
            entries.push(LayerEntry::dir(target));
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(|e| format!("bad link: {e}"))?
                .map(|link| link.to_string_lossy().to_string())
                .unwrap_or_default();
            entries.push(LayerEntry::symlink(target, link));
        } else if kind.is_file() {
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).map_err(|e| format!("cannot read {path}: {e}"))?;
            entries.push(LayerEntry::file(target, mode, content));
        }
        // pax global headers (git archive writes the commit id in one) and anything else are skipped.
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rebake_testkit::git as run;

    fn commit(repo: &Path, file: &str, content: &str) -> String {
        std::fs::write(repo.join(file), content).unwrap();
        run(repo, &["add", "."]);
        run(repo, &["commit", "--quiet", "-m", file]);
        run(repo, &["rev-parse", "HEAD"])
    }

    /// Sibling images built from one push check out the same commit at once: each
    /// checkout must succeed the first time (no `cannot lock ref` and a retry).
    #[tokio::test]
    async fn concurrent_checkouts_of_one_repository_all_succeed() {
        let source = tempfile::tempdir().unwrap();
        run(source.path(), &["init", "--quiet", "-b", "main"]);
        let url = source.path().to_string_lossy().to_string();
        let work = tempfile::tempdir().unwrap();
        for round in 0..3 {
            // A fresh mirror on round 0, the same mirror and a new commit after that.
            let head = commit(source.path(), "index.html", &format!("round {round}"));
            let checkouts = (0..4).map(|_| checkout(work.path(), &url, "main", &head, None, Some("/site")));
            for result in futures::future::join_all(checkouts).await {
                let tree = result.expect("every concurrent checkout succeeds");
                assert!(
                    tree.entries.iter().any(|entry| entry.path == "site/index.html"),
                    "site/index.html missing from {} entries",
                    tree.entries.len()
                );
            }
        }
    }
}
