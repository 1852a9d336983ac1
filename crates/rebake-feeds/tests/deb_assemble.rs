//! [`rebake_feeds::deb::assemble`] against real `.deb`s from this machine's apt. Skips (with
//! a printed reason) when `apt-get download` cannot run or fails.

mod common;

use common::download;

use rebake_feeds::deb::{self, DebPackage};
use rebake_oci::{LayerEntry, LayerEntryKind, build_layer};

fn find<'a>(entries: &'a [LayerEntry], path: &str) -> Option<&'a LayerEntry> {
    entries.iter().find(|e| e.path == path)
}

fn text(entries: &[LayerEntry], path: &str) -> String {
    match &find(entries, path).unwrap_or_else(|| panic!("{path} missing")).kind {
        LayerEntryKind::File { content } => String::from_utf8(content.clone()).unwrap(),
        other => panic!("{path} is {other:?}"),
    }
}

#[test]
fn assembles_real_packages() {
    let dir = tempfile::tempdir().unwrap();
    let Some(files) = download(dir.path(), &["base-files", "netbase", "tzdata"]) else {
        return;
    };
    let mut packages: Vec<DebPackage> = files
        .iter()
        .map(|f| deb::read_deb(&std::fs::read(f).unwrap()).unwrap())
        .collect();
    packages.sort_by(|a, b| a.control.get("Package").cmp(&b.control.get("Package")));
    assert_eq!(packages.len(), 3);

    let entries = deb::assemble::assemble(&packages).unwrap();
    assert_eq!(entries, deb::assemble::assemble(&packages).unwrap());

    // Sorted, unique, relative.
    assert!(entries.windows(2).all(|w| w[0].path < w[1].path));
    assert!(entries.iter().all(|e| !e.path.starts_with('/')));

    assert!(find(&entries, "etc/debian_version").is_some());
    assert!(find(&entries, "etc/services").is_some());
    assert!(
        find(&entries, "usr/share/zoneinfo/UTC").is_some() || find(&entries, "usr/share/zoneinfo/Etc/UTC").is_some()
    );

    let status = text(&entries, "var/lib/dpkg/status");
    let paragraphs = deb::parse_paragraphs(&status).unwrap();
    let names: Vec<_> = paragraphs.iter().map(|p| p.get("Package").unwrap()).collect();
    assert_eq!(names, ["base-files", "netbase", "tzdata"]);
    for p in &paragraphs {
        assert_eq!(p.get("Status"), Some("install ok installed"));
        assert!(p.get("Version").is_some());
        let name = p.get("Package").unwrap();
        let single = text(&entries, &format!("var/lib/dpkg/status.d/{name}"));
        assert_eq!(deb::parse_paragraphs(&single).unwrap(), std::slice::from_ref(p));
        let list = text(&entries, &format!("var/lib/dpkg/info/{name}.list"));
        assert!(list.starts_with("/.\n"), "{name}.list: {list}");
        assert!(find(&entries, &format!("var/lib/dpkg/info/{name}.md5sums")).is_some());
    }
    let base_list = text(&entries, "var/lib/dpkg/info/base-files.list");
    assert!(base_list.lines().any(|l| l == "/etc/debian_version"));
    assert!(base_list.lines().any(|l| l == "/etc"));

    // Modes and owners as shipped by base-files, special bits included.
    let shipped = |path: &str| {
        let entry = find(&entries, path).unwrap_or_else(|| panic!("{path} missing"));
        assert!(entry.exact_mode, "{path}");
        (entry.mode, entry.uid, entry.gid)
    };
    assert_eq!(shipped("tmp"), (0o1777, 0, 0));
    assert_eq!(shipped("var/tmp"), (0o1777, 0, 0));
    assert_eq!(shipped("root"), (0o700, 0, 0));
    // `root:staff` (gid 50) with the setgid bit.
    assert_eq!(shipped("var/local"), (0o2775, 0, 50));

    let first = build_layer(entries.clone(), 0).unwrap();
    let second = build_layer(deb::assemble::assemble(&packages).unwrap(), 0).unwrap();
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.diff_id, second.diff_id);

    // The same in the layer's tar headers.
    let mut tar_bytes = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&first.compressed[..]), &mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut headers = std::collections::HashMap::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        headers.insert(
            entry.path().unwrap().to_string_lossy().into_owned(),
            (header.mode().unwrap(), header.uid().unwrap(), header.gid().unwrap()),
        );
    }
    assert_eq!(headers["tmp/"], (0o1777, 0, 0));
    assert_eq!(headers["root/"], (0o700, 0, 0));
    assert_eq!(headers["var/local/"], (0o2775, 0, 50));
    assert_eq!(headers["etc/debian_version"], (0o644, 0, 0));
}
