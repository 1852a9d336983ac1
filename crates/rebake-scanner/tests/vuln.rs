//! Vulnerability matching against real advisories (see `tests/data/advisories/README.md`).

use std::cmp::Ordering;
use std::io::Write;
use std::path::PathBuf;

use rebake_scanner::component::{Component, Distro, Ecosystem};
use rebake_scanner::vuln::cvss::cvss3_base_score;
use rebake_scanner::vuln::pep440::pep440_compare;
use rebake_scanner::vuln::version::go_compare;
use rebake_scanner::vuln::{
    AdvisoryIndex, Finding, LayerCache, Severity, VulnError, load_osv_dir, load_osv_zip, load_secdb, load_secdb_as,
    match_components, parse_osv,
};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/advisories")
        .join(path)
}

fn component(ecosystem: Ecosystem, name: &str, version: &str) -> Component {
    Component {
        ecosystem,
        name: name.into(),
        version: version.into(),
        source_name: None,
        arch: None,
        purl: format!("pkg:generic/{name}@{version}"),
        licenses: Vec::new(),
        layer: "sha256:app".into(),
        location: "app/lockfile".into(),
        distro: None,
    }
}

fn os_component(ecosystem: Ecosystem, name: &str, source: &str, version: &str, distro: (&str, &str)) -> Component {
    Component {
        source_name: Some(source.into()),
        distro: Some(Distro {
            id: distro.0.into(),
            version_id: distro.1.into(),
        }),
        layer: "sha256:base".into(),
        location: "var/lib/dpkg/status".into(),
        ..component(ecosystem, name, version)
    }
}

fn osv_index() -> AdvisoryIndex {
    AdvisoryIndex::new(load_osv_dir(data("osv")).expect("load osv dir"))
}

fn ids(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn loads_real_osv_records() {
    let advisories = load_osv_dir(data("osv")).expect("load");
    let mut loaded: Vec<&str> = advisories.iter().map(|a| a.id.as_str()).collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "DSA-3029-1",
            "GHSA-5h46-h7hh-c6x9",
            "GHSA-p6mc-m468-83gw",
            "GHSA-wcg3-cvx6-7396"
        ]
    );
    let lodash = advisories
        .iter()
        .find(|a| a.id == "GHSA-p6mc-m468-83gw")
        .expect("lodash advisory");
    assert_eq!(lodash.aliases, ["CVE-2020-8203"]);
    assert_eq!(lodash.summary, "Prototype Pollution in lodash");
    assert_eq!(lodash.modified, "2022-02-08T22:04:28Z");
    assert_eq!(lodash.cvss_score, Some(7.4));
    assert_eq!(lodash.severity, Severity::High);
    assert_eq!(lodash.affected.len(), 2);
}

#[test]
fn npm_true_positive_and_fixed_version() {
    let index = osv_index();
    let findings = match_components(
        &index,
        &[
            component(Ecosystem::Npm, "lodash", "4.17.15"),
            component(Ecosystem::Npm, "lodash-es", "4.17.20"),
        ],
    );
    assert_eq!(ids(&findings), ["GHSA-p6mc-m468-83gw"]);
    let finding = &findings[0];
    assert_eq!(finding.package, "lodash");
    assert_eq!(finding.installed_version, "4.17.15");
    assert_eq!(finding.fixed_version.as_deref(), Some("4.17.20"));
    assert_eq!(finding.severity, Severity::High);
    assert_eq!(finding.cvss_score, Some(7.4));
    assert_eq!(
        finding.cvss_vector.as_deref(),
        Some("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H")
    );
    assert_eq!(finding.aliases, ["CVE-2020-8203"]);
    assert_eq!(finding.layer, "sha256:app");
    assert_eq!(finding.location, "app/lockfile");
    assert_eq!(finding.purl, "pkg:generic/lodash@4.17.15");
}

#[test]
fn crates_io_true_positives_and_fixed() {
    let index = osv_index();
    let findings = match_components(
        &index,
        &[
            component(Ecosystem::CratesIo, "hyper", "0.14.9"),
            component(Ecosystem::CratesIo, "hyper", "0.14.10"),
            component(Ecosystem::CratesIo, "time", "0.1.44"),
            component(Ecosystem::CratesIo, "time", "0.2.22"),
        ],
    );
    let summary: Vec<(&str, &str, Option<&str>)> = findings
        .iter()
        .map(|f| {
            (
                f.package.as_str(),
                f.installed_version.as_str(),
                f.fixed_version.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("hyper", "0.14.9", Some("0.14.10")),
            // The 0.1 series has no fix ("introduced": "0.1" only).
            ("time", "0.1.44", None),
            ("time", "0.2.22", Some("0.2.23")),
        ]
    );
    assert_eq!(findings[0].cvss_score, Some(5.9));
    assert_eq!(findings[0].severity, Severity::Medium);
    assert_eq!(findings[1].cvss_score, Some(6.2));
}

#[test]
fn same_name_in_another_ecosystem_does_not_match() {
    let index = osv_index();
    let findings = match_components(
        &index,
        &[
            component(Ecosystem::PyPi, "lodash", "4.17.15"),
            component(Ecosystem::CratesIo, "lodash", "4.17.15"),
            component(Ecosystem::Npm, "hyper", "0.14.9"),
            component(Ecosystem::Go, "time", "0.2.22"),
            os_component(
                Ecosystem::Ubuntu,
                "nginx",
                "nginx",
                "1.2.1-2.2+wheezy2",
                ("ubuntu", "7"),
            ),
        ],
    );
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn debian_source_package_and_release() {
    let index = osv_index();
    let findings = match_components(
        &index,
        &[
            os_component(
                Ecosystem::Debian,
                "nginx-full",
                "nginx",
                "1.2.1-2.2+wheezy2",
                ("debian", "7"),
            ),
            // Fixed version installed: nothing.
            os_component(
                Ecosystem::Debian,
                "nginx-light",
                "nginx",
                "1.2.1-2.2+wheezy3",
                ("debian", "7"),
            ),
        ],
    );
    assert_eq!(ids(&findings), ["DSA-3029-1"]);
    assert_eq!(findings[0].package, "nginx-full");
    assert_eq!(findings[0].fixed_version.as_deref(), Some("1.2.1-2.2+wheezy3"));
    assert_eq!(findings[0].aliases, ["CVE-2014-3616"]);
    assert_eq!(findings[0].severity, Severity::Unknown);

    // The advisory is for Debian:7; the same package version on Debian 12 is another
    // release's package and must not match.
    let bookworm = os_component(
        Ecosystem::Debian,
        "nginx-full",
        "nginx",
        "1.2.1-2.2+wheezy2",
        ("debian", "12"),
    );
    assert!(match_components(&index, &[bookworm]).is_empty());

    // Without a source name the binary name is used.
    let mut plain = os_component(
        Ecosystem::Debian,
        "nginx",
        "nginx",
        "1.2.1-2.2+wheezy1",
        ("debian", "7"),
    );
    plain.source_name = None;
    assert_eq!(ids(&match_components(&index, &[plain])), ["DSA-3029-1"]);
}

#[test]
fn alpine_secdb_matches() {
    let advisories = load_secdb(data("secdb/alpine-v3.19-main.json")).expect("secdb");
    let mut loaded: Vec<&str> = advisories.iter().map(|a| a.id.as_str()).collect();
    loaded.sort();
    // The "0" key (not affected) yields nothing.
    assert_eq!(
        loaded,
        [
            "CVE-2023-3817",
            "CVE-2023-5363",
            "CVE-2023-5678",
            "CVE-2023-6129",
            "CVE-2023-6237"
        ]
    );
    let index = AdvisoryIndex::new(advisories);
    let libssl = os_component(
        Ecosystem::Alpine,
        "libssl3",
        "openssl",
        "3.1.4-r1",
        ("alpine", "3.19.1"),
    );
    let findings = match_components(&index, std::slice::from_ref(&libssl));
    let got: Vec<(&str, Option<&str>)> = findings
        .iter()
        .map(|f| (f.id.as_str(), f.fixed_version.as_deref()))
        .collect();
    // 3.1.4-r1 is the fix for CVE-2023-5678: not reported.
    assert_eq!(
        got,
        [("CVE-2023-6129", Some("3.1.4-r3")), ("CVE-2023-6237", Some("3.1.4-r4"))]
    );

    // Another Alpine release: no match.
    let other = Component {
        distro: Some(Distro {
            id: "alpine".into(),
            version_id: "3.18.4".into(),
        }),
        ..libssl.clone()
    };
    assert!(match_components(&index, &[other]).is_empty());

    // The same data read as Wolfi advisories does not match an Alpine package.
    let wolfi =
        AdvisoryIndex::new(load_secdb_as(data("secdb/alpine-v3.19-main.json"), Ecosystem::Wolfi).expect("secdb"));
    assert!(match_components(&wolfi, std::slice::from_ref(&libssl)).is_empty());
    let wolfi_pkg = Component {
        ecosystem: Ecosystem::Wolfi,
        distro: Some(Distro {
            id: "wolfi".into(),
            version_id: "20230201".into(),
        }),
        ..libssl.clone()
    };
    assert_eq!(match_components(&wolfi, &[wolfi_pkg]).len(), 2);

    // vuln-list's one-package-per-file layout of the same secdb gives the same answer.
    let full = AdvisoryIndex::new(load_secdb(data("secdb/vuln-list-alpine-3.19-main-openssl.json")).expect("secdb"));
    assert!(full.len() > 40);
    assert_eq!(
        ids(&match_components(&full, &[libssl])),
        ["CVE-2023-6129", "CVE-2023-6237"]
    );
}

#[test]
fn pep440_and_go_ordering() {
    let less = Some(Ordering::Less);
    for (a, b) in [
        ("1.0.dev0", "1.0a1"),
        ("1.0a1", "1.0b1"),
        ("1.0rc1", "1.0"),
        ("1.0", "1.0.post1"),
        ("1.0", "1.0+local.1"),
        ("1.9", "1.10"),
        ("2.0", "1!0.1"),
    ] {
        assert_eq!(pep440_compare(a, b), less, "{a} < {b}");
    }
    assert_eq!(pep440_compare("1.0", "1.0.0"), Some(Ordering::Equal));
    for (a, b) in [
        ("v0.0.0-20210101000000-abcdefabcdef", "v0.1.0"),
        ("v1.2.3-rc.1", "v1.2.3"),
        ("v1.2.3", "v1.10.0"),
        ("v2.0.0+incompatible", "v2.0.1+incompatible"),
    ] {
        assert_eq!(go_compare(a, b), less, "{a} < {b}");
    }
}

/// A SYNTHETIC record (not a real advisory): exercises PyPI name normalisation, PEP 440
/// ranges, `versions[]` and Go SEMVER ranges with pseudo-versions.
const SYNTHETIC: &str = r#"{
  "id": "SYNTHETIC-0001",
  "summary": "synthetic record for matching mechanics",
  "database_specific": {"severity": "LOW"},
  "affected": [
    {"package": {"ecosystem": "PyPI", "name": "Some_Package.Name"},
     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.2.post1"}]}],
     "versions": ["0.9.1"]},
    {"package": {"ecosystem": "Go", "name": "example.com/mod"},
     "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.3.0"}]}]}
  ]
}"#;

#[test]
fn pypi_and_go_matching_mechanics() {
    let advisory = parse_osv(SYNTHETIC.as_bytes(), "synthetic")
        .expect("parse")
        .expect("kept");
    let index = AdvisoryIndex::new([advisory]);
    let check = |ecosystem, name: &str, version: &str| {
        match_components(&index, &[component(ecosystem, name, version)])
            .first()
            .map(|f| f.fixed_version.clone())
    };
    assert_eq!(
        check(Ecosystem::PyPi, "some-package-name", "1.2"),
        Some(Some("1.2.post1".into()))
    );
    assert_eq!(check(Ecosystem::PyPi, "SOME.package_name", "1.0rc1"), None);
    assert_eq!(check(Ecosystem::PyPi, "some-package-name", "1.2.post1"), None);
    assert_eq!(
        check(Ecosystem::PyPi, "some-package-name", "0.9.1"),
        Some(Some("1.2.post1".into()))
    );
    assert_eq!(
        check(Ecosystem::Go, "example.com/mod", "v0.2.1-0.20230101000000-abcdefabcdef"),
        Some(Some("0.3.0".into()))
    );
    assert_eq!(check(Ecosystem::Go, "example.com/mod", "v0.3.0"), None);
    assert_eq!(check(Ecosystem::Go, "example.com/Mod", "v0.1.0"), None);
}

#[test]
fn cvss_scores() {
    assert_eq!(
        cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
        Some(9.8)
    );
    assert_eq!(
        cvss3_base_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"),
        Some(7.4)
    );
    assert_eq!(
        cvss3_base_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
        Some(6.1)
    );
}

#[test]
fn osv_zip_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zip_path = dir.path().join("all.zip");
    let file = std::fs::File::create(&zip_path).expect("create");
    let mut writer = zip::ZipWriter::new(file);
    let mut names: Vec<PathBuf> = std::fs::read_dir(data("osv"))
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for (i, path) in names.iter().enumerate() {
        let method = if i % 2 == 0 {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        writer.start_file(name, options).expect("start");
        writer.write_all(&std::fs::read(path).expect("read")).expect("write");
    }
    writer
        .start_file("README.txt", zip::write::SimpleFileOptions::default())
        .expect("start");
    writer.write_all(b"not an advisory").expect("write");
    writer.finish().expect("finish");

    let from_zip = load_osv_zip(&zip_path).expect("load zip");
    assert_eq!(from_zip.len(), 4);
    assert!(from_zip.iter().all(|a| a.source.contains("all.zip!")));
    // Same content, same digest, whichever container it came from.
    assert_eq!(AdvisoryIndex::new(from_zip).digest(), osv_index().digest());

    // A broken entry is reported with the archive and entry names.
    let bad_path = dir.path().join("bad.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&bad_path).expect("create"));
    writer
        .start_file("BROKEN-1.json", zip::write::SimpleFileOptions::default())
        .expect("start");
    writer.write_all(b"{not json").expect("write");
    writer.finish().expect("finish");
    let error = load_osv_zip(&bad_path).expect_err("broken entry");
    assert!(matches!(error, VulnError::ZipEntry { .. }));
    let message = error.to_string();
    assert!(
        message.contains("BROKEN-1.json") && message.contains("bad.zip"),
        "{message}"
    );
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("nested")).expect("mkdir");
    std::fs::write(dir.path().join("nested/bad.json"), b"{\"id\": 5}").expect("write");
    let message = load_osv_dir(dir.path()).expect_err("bad").to_string();
    assert!(message.contains("nested/bad.json"), "{message}");
    let message = load_secdb(dir.path().join("missing.json"))
        .expect_err("missing")
        .to_string();
    assert!(message.contains("missing.json"), "{message}");
}

#[test]
fn index_digest_is_stable() {
    let mut advisories = load_osv_dir(data("osv")).expect("load");
    let forward = AdvisoryIndex::new(advisories.clone()).digest().to_owned();
    advisories.reverse();
    assert_eq!(AdvisoryIndex::new(advisories.clone()).digest(), forward);
    advisories.pop();
    assert_ne!(AdvisoryIndex::new(advisories).digest(), forward);
    assert!(forward.starts_with("sha256:"));
}

#[test]
fn layer_cache_reuses_shared_layers() {
    let index = osv_index();
    let base = |name: &str, version: &str| Component {
        layer: "sha256:base".into(),
        ..os_component(Ecosystem::Debian, name, "nginx", version, ("debian", "7"))
    };
    let in_layer = |layer: &str, mut c: Component| {
        c.layer = layer.into();
        c
    };
    let image_a = vec![
        base("nginx-full", "1.2.1-2.2+wheezy2"),
        in_layer("sha256:app-a", component(Ecosystem::Npm, "lodash", "4.17.15")),
    ];
    let image_b = vec![
        base("nginx-full", "1.2.1-2.2+wheezy2"),
        in_layer("sha256:app-b", component(Ecosystem::CratesIo, "hyper", "0.14.9")),
    ];
    let mut cache = LayerCache::new();
    let first = cache.match_with_cache(&index, &image_a);
    assert_eq!((cache.hits(), cache.misses()), (0, 2));
    assert_eq!(first, match_components(&index, &image_a));
    assert_eq!(ids(&first), ["DSA-3029-1", "GHSA-p6mc-m468-83gw"]);

    let second = cache.match_with_cache(&index, &image_b);
    assert_eq!((cache.hits(), cache.misses()), (1, 3), "only the new layer is matched");
    assert_eq!(second, match_components(&index, &image_b));
    assert_eq!(ids(&second), ["DSA-3029-1", "GHSA-5h46-h7hh-c6x9"]);
    assert_eq!(cache.len(), 3);

    // New advisories: every layer is matched again.
    let mut more = load_osv_dir(data("osv")).expect("load");
    more.extend(load_secdb(data("secdb/alpine-v3.19-main.json")).expect("secdb"));
    let changed = AdvisoryIndex::new(more);
    assert_ne!(changed.digest(), index.digest());
    cache.match_with_cache(&changed, &image_b);
    assert_eq!((cache.hits(), cache.misses()), (1, 5));
    assert_eq!(cache.len(), 2, "entries for the old advisory set are dropped");
}

#[test]
fn layer_cache_rematches_a_layer_whose_components_differ() {
    // What a layer contributes depends on the layers above it: here the base layer's
    // distroless `status.d/nginx-full` (vulnerable) is rewritten by an upgrade layer in
    // image A, so in A the base layer contributes only `lodash`; image B has the same base
    // layer with nothing on top of it, so there it contributes both packages.
    let index = osv_index();
    let nginx = |layer: &str, version: &str| Component {
        layer: layer.into(),
        location: "var/lib/dpkg/status.d/nginx-full".into(),
        ..os_component(Ecosystem::Debian, "nginx-full", "nginx", version, ("debian", "7"))
    };
    let lodash = Component {
        layer: "sha256:base".into(),
        ..component(Ecosystem::Npm, "lodash", "4.17.15")
    };
    let image_a = vec![lodash.clone(), nginx("sha256:upgrade", "1.2.1-2.2+wheezy3")];
    let image_b = vec![lodash, nginx("sha256:base", "1.2.1-2.2+wheezy2")];
    let mut cache = LayerCache::new();
    let first = cache.match_with_cache(&index, &image_a);
    assert_eq!(first, match_components(&index, &image_a));
    assert_eq!(ids(&first), ["GHSA-p6mc-m468-83gw"]);

    let second = cache.match_with_cache(&index, &image_b);
    assert_eq!(
        second,
        match_components(&index, &image_b),
        "the base layer is matched again"
    );
    assert_eq!(ids(&second), ["DSA-3029-1", "GHSA-p6mc-m468-83gw"]);
    assert_eq!((cache.hits(), cache.misses()), (0, 3));

    // Back to image A: no stale nginx finding from image B's base layer.
    let third = cache.match_with_cache(&index, &image_a);
    assert_eq!(third, first);
    assert_eq!((cache.hits(), cache.misses()), (1, 4));
    // Image A once more: both layers answered from the cache.
    assert_eq!(cache.match_with_cache(&index, &image_a), first);
    assert_eq!((cache.hits(), cache.misses()), (3, 4));
}
