//! Shared by the tests that read real packages.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Downloads `names` with `apt-get download` into `dir` and returns the `.deb` files, sorted.
/// `None` (with a printed reason) when apt cannot run or the download fails: callers skip.
pub fn download(dir: &Path, names: &[&str]) -> Option<Vec<PathBuf>> {
    let out = Command::new("apt-get")
        .arg("download")
        .args(names)
        .current_dir(dir)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipping: apt-get download failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!("skipping: cannot run apt-get: {e}");
            return None;
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    files.sort();
    Some(files)
}
