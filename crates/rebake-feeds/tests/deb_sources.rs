//! `system_sources` against a fake apt root and against this machine's `/etc/apt`.

use std::fs;
use std::path::Path;

use rebake_feeds::deb::sources::{default_architecture, system_sources};

#[test]
fn system_sources_fake_root_reads_both_formats_in_sorted_order() {
    let root = tempfile::tempdir().unwrap();
    let apt = root.path().join("etc/apt");
    let dir = apt.join("sources.list.d");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        apt.join("sources.list"),
        "# main list\ndeb [arch=amd64] http://mirror.invalid/debian bookworm main\ndeb-src http://mirror.invalid/debian bookworm main\n",
    )
    .unwrap();
    fs::write(
        dir.join("b-extra.sources"),
        "Types: deb\nURIs: http://mirror.invalid/b\nSuites: b1 b2\nComponents: main\n\n\
         Types: deb\nURIs: http://mirror.invalid/off\nSuites: x\nComponents: main\nEnabled: no\n",
    )
    .unwrap();
    fs::write(
        dir.join("a-first.list"),
        "deb [signed-by=/usr/share/keyrings/a.gpg] http://mirror.invalid/a stable main\n",
    )
    .unwrap();
    fs::write(dir.join("c-last.list"), "deb http://mirror.invalid/c ./\n").unwrap();
    // Not read by apt, so not by us either.
    fs::write(dir.join("z.list.disabled"), "this is not a sources line\n").unwrap();
    fs::write(dir.join("z.list.save"), "deb http://mirror.invalid/save s main\n").unwrap();

    let got = system_sources(root.path()).unwrap();
    let uris: Vec<&str> = got.iter().map(|s| s.uris[0].as_str()).collect();
    assert_eq!(
        uris,
        [
            "http://mirror.invalid/debian",
            "http://mirror.invalid/a",
            "http://mirror.invalid/b",
            "http://mirror.invalid/c",
        ]
    );
    assert_eq!(got[0].architectures, ["amd64"]);
    assert!(got[0].origin.ends_with("etc/apt/sources.list:2"), "{}", got[0].origin);
    assert_eq!(got[1].signed_by.as_deref(), Some("/usr/share/keyrings/a.gpg"));
    assert!(got[1].origin.ends_with("a-first.list:1"), "{}", got[1].origin);
    assert_eq!(got[2].suites, ["b1", "b2"]);
    assert!(got[2].origin.ends_with("b-extra.sources:1"), "{}", got[2].origin);
    assert_eq!(got[3].release_urls(), ["http://mirror.invalid/c/InRelease"]);
    assert!(got.iter().all(|s| s.enabled));
}

#[test]
fn system_sources_fake_root_empty_or_bad_file() {
    let root = tempfile::tempdir().unwrap();
    assert!(system_sources(root.path()).unwrap().is_empty());

    let dir = root.path().join("etc/apt/sources.list.d");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("bad.list"), "\ndeb http://mirror.invalid/debian\n").unwrap();
    let err = system_sources(root.path()).unwrap_err().to_string();
    assert!(err.contains("bad.list:2:"), "{err}");
}

#[test]
fn system_sources_this_machine_has_usable_sources() {
    let apt = Path::new("/etc/apt");
    let has_any = apt.join("sources.list").is_file()
        || fs::read_dir(apt.join("sources.list.d")).is_ok_and(|d| {
            d.filter_map(|e| e.ok()).any(|e| {
                let p = e.path();
                matches!(p.extension().and_then(|x| x.to_str()), Some("list" | "sources"))
            })
        });
    if !has_any {
        eprintln!("skipping: /etc/apt has no sources.list or sources.list.d/*.{{list,sources}}");
        return;
    }
    let sources = system_sources(Path::new("/")).unwrap();
    if sources.is_empty() {
        eprintln!("skipping: /etc/apt sources files hold no enabled `deb` entries");
        return;
    }
    for s in &sources {
        eprintln!("{}: {:?} {:?} {:?}", s.origin, s.uris, s.suites, s.components);
        assert!(!s.uris.is_empty() && !s.suites.is_empty(), "{s:?}");
        assert!(!s.release_urls().is_empty(), "{s:?}");
    }
    assert!(
        sources.iter().any(|s| !s.suites.is_empty() && !s.components.is_empty()),
        "{sources:?}"
    );
    match default_architecture() {
        Some(arch) => assert!(!arch.contains(char::is_whitespace), "{arch:?}"),
        None => eprintln!("note: dpkg --print-architecture unavailable"),
    }
}
