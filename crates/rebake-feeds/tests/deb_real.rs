//! The Debian module against real `.deb`s and real apt lists from this machine. Each test
//! skips (with a printed reason) when apt, the network or the lists are not there.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::download;

use rebake_feeds::deb::{self, EntryKind, Version};

#[test]
fn deb_reads_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let Some(files) = download(dir.path(), &["base-files", "netbase"]) else {
        return;
    };
    let mut seen = Vec::new();
    for file in &files {
        let deb = deb::read_deb(&std::fs::read(file).unwrap()).unwrap();
        let name = deb.control.get("Package").unwrap().to_owned();
        let version = Version::parse(deb.control.get("Version").unwrap()).unwrap();
        let arch = deb.control.get("Architecture").unwrap();
        let has = |path: &str| {
            deb.data
                .iter()
                .any(|e| e.path == path && matches!(e.kind, EntryKind::File(_)))
        };
        match name.as_str() {
            "base-files" => {
                assert_eq!(arch, "amd64");
                assert!(has("etc/debian_version"));
                assert!(deb.conffiles.iter().any(|c| c == "/etc/debian_version"));
            }
            "netbase" => {
                assert_eq!(arch, "all");
                assert!(has("etc/protocols") || has("etc/services"));
            }
            other => panic!("unexpected package {other}"),
        }
        assert!(deb.md5sums.is_some());
        let status = deb::dpkg_status_entry(&deb.control);
        assert!(
            status
                .to_text()
                .starts_with(&format!("Package: {name}\nStatus: install ok installed\n"))
        );
        // The file name carries the version (epoch `:` escaped as `%3a`).
        let file_name = file.file_name().unwrap().to_string_lossy().replace("%3a", ":");
        assert!(file_name.contains(version.as_str()), "{file_name} vs {version}");
        seen.push(name);
    }
    assert_eq!(seen, ["base-files", "netbase"]);
}

/// Reads a (possibly lz4-compressed) apt list through apt's own helper.
fn cat_list(path: &Path) -> Option<String> {
    let out = Command::new("/usr/lib/apt/apt-helper")
        .arg("cat-file")
        .arg(path)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).ok())
        .flatten()
}

fn real_index() -> Option<Vec<deb::Package>> {
    let Ok(dir) = std::fs::read_dir("/var/lib/apt/lists") else {
        eprintln!("skipping: no /var/lib/apt/lists");
        return None;
    };
    let mut lists: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.contains("binary-amd64_Packages")
        })
        .collect();
    lists.sort();
    let mut index = Vec::new();
    for list in &lists {
        let Some(text) = cat_list(list) else {
            eprintln!("skipping: cannot read {}", list.display());
            return None;
        };
        index.extend(deb::parse_packages(&text).unwrap());
    }
    if index.is_empty() {
        eprintln!("skipping: no amd64 Packages lists (run apt-get update)");
        return None;
    }
    Some(index)
}

/// Each amd64 `Packages` list matches the uncompressed `SHA256` entry of its `InRelease`.
#[test]
fn deb_verifies_real_lists_against_inrelease() {
    let Ok(dir) = std::fs::read_dir("/var/lib/apt/lists") else {
        eprintln!("skipping: no /var/lib/apt/lists");
        return;
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut checked = 0;
    for name in names.iter().filter(|n| n.ends_with("_InRelease")) {
        let prefix = name.trim_end_matches("InRelease");
        let Some(list) = names
            .iter()
            .find(|n| n.starts_with(&format!("{prefix}main_binary-amd64_Packages")))
        else {
            continue;
        };
        let dir = Path::new("/var/lib/apt/lists");
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let release = deb::Release::parse(&text).unwrap();
        assert!(release.architectures.iter().any(|a| a == "amd64"));
        assert!(release.components.iter().any(|c| c.ends_with("main")));
        assert!(release.date.is_some());
        let Some(packages) = cat_list(&dir.join(list)) else {
            eprintln!("skipping {list}: cannot read it");
            continue;
        };
        deb::verify_index(&release, "main/binary-amd64/Packages", packages.as_bytes()).unwrap();
        let tampered = packages.replacen("Package:", "Package: ", 1);
        assert!(deb::verify_index(&release, "main/binary-amd64/Packages", tampered.as_bytes()).is_err());
        checked += 1;
    }
    if checked == 0 {
        eprintln!("skipping: no InRelease with an amd64 main Packages list (run apt-get update)");
    }
}

#[test]
fn deb_resolves_libc6_from_real_lists() {
    let Some(index) = real_index() else {
        return;
    };
    let set = deb::resolve(&index, "amd64", &["libc6".to_owned()]).unwrap();
    let names: Vec<&str> = set.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"libc6"), "{names:?}");
    assert!(names.contains(&"libgcc-s1"), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // Closed: every dependency group of every member is met inside the set.
    for pkg in &set {
        for group in pkg.pre_depends.iter().chain(&pkg.depends) {
            assert!(
                group.iter().any(|r| set.iter().any(|p| {
                    (p.name == r.name && r.accepts(&p.version))
                        || p.provides.iter().any(|pr| {
                            pr.name == r.name
                                && (r.constraint.is_none() || pr.version.as_ref().is_some_and(|v| r.accepts(v)))
                        })
                })),
                "{} dependency {group:?} not met",
                pkg.name
            );
        }
    }
}

/// Our ordering agrees with `dpkg --compare-versions` on real versions from the lists.
#[test]
fn deb_version_order_matches_dpkg() {
    let Some(index) = real_index() else {
        return;
    };
    if Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!("skipping: no dpkg");
        return;
    }
    let mut versions: Vec<&Version> = index.iter().map(|p| &p.version).collect();
    versions.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    versions.dedup_by(|a, b| a.as_str() == b.as_str());
    let step = (versions.len() / 60).max(1);
    let sample: Vec<&Version> = versions.iter().step_by(step).copied().collect();
    let extra: Vec<Version> = [
        "1.0~rc1",
        "1.0",
        "1:0.9",
        "2.36-9+deb12u4",
        "2.36-9+deb12u10",
        "1.0~~",
        "1.0~",
    ]
    .iter()
    .map(|s| Version::parse(s).unwrap())
    .collect();
    let all: Vec<&Version> = sample.into_iter().chain(&extra).collect();
    let mut checked = 0;
    for (i, a) in all.iter().enumerate() {
        for b in all.iter().skip(i + 1).step_by(7) {
            let dpkg_lt = Command::new("dpkg")
                .args(["--compare-versions", a.as_str(), "lt", b.as_str()])
                .status()
                .unwrap()
                .success();
            let dpkg_eq = Command::new("dpkg")
                .args(["--compare-versions", a.as_str(), "eq", b.as_str()])
                .status()
                .unwrap()
                .success();
            let want = if dpkg_lt {
                Ordering::Less
            } else if dpkg_eq {
                Ordering::Equal
            } else {
                Ordering::Greater
            };
            assert_eq!(a.cmp(b), want, "{a} vs {b}");
            checked += 1;
        }
    }
    assert!(checked > 100);
    // `apt-cache policy`-style: the candidate of libc6 is the highest version on offer.
    let best = index
        .iter()
        .filter(|p| p.name == "libc6")
        .map(|p| &p.version)
        .max()
        .unwrap();
    let policy = Command::new("apt-cache").args(["policy", "libc6"]).output().unwrap();
    let text = String::from_utf8_lossy(&policy.stdout);
    if let Some(line) = text.lines().find(|l| l.trim_start().starts_with("Candidate:")) {
        assert_eq!(line.split_whitespace().nth(1), Some(best.as_str()));
    }
}
