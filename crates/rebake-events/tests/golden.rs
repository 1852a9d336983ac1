//! Backward compatibility of the event schemas: one encoded message per event type, kept under
//! `tests/fixtures/events/v1/`, must keep decoding to the same value as the schema grows
//! (fields are only ever added). `REBAKE_BLESS=1 cargo test -p rebake-events --test golden`
//! writes missing fixtures; an existing fixture is never rewritten by a test.

use std::path::PathBuf;

use prost::Message;
use rebake_events::pb;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/events/v1")
}

fn check<M: Message + Default + PartialEq + std::fmt::Debug>(name: &str, expected: M) {
    let path = fixture_dir().join(format!("{name}.bin"));
    if !path.exists() {
        assert!(
            std::env::var("REBAKE_BLESS").is_ok(),
            "missing golden fixture {}; run with REBAKE_BLESS=1 to write it",
            path.display()
        );
        std::fs::create_dir_all(fixture_dir()).unwrap();
        std::fs::write(&path, expected.encode_to_vec()).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let decoded = M::decode(bytes.as_slice()).unwrap_or_else(|error| panic!("{name} no longer decodes: {error}"));
    assert_eq!(decoded, expected, "{name} decodes to a different value");
}

fn cause() -> pb::Cause {
    pb::Cause {
        kind: "registry-tag".into(),
        description: "reg:5000/base:v1 -> sha256:aa".into(),
        event_id: "e1".into(),
        at_ms: 1_796_303_190_123,
    }
}

fn source() -> pb::SourceCommit {
    pb::SourceCommit {
        url: "https://git.example/octo/app.git".into(),
        ref_name: "main".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        commit_time: 1_700_000_000,
    }
}

fn package() -> pb::ResolvedPackage {
    pb::ResolvedPackage {
        platform: "linux/amd64".into(),
        name: "tzdata".into(),
        version: "2024a-1".into(),
        architecture: "all".into(),
        checksum: "ab".repeat(32),
        size: 270_000,
        url: "http://mirror.example/debian/pool/main/t/tzdata/tzdata_2024a-1_all.deb".into(),
        feed: "debian".into(),
    }
}

fn build_done() -> pb::BuildDone {
    pb::BuildDone {
        build_id: "b1".into(),
        image: "app".into(),
        inputs_hash: "sha256:11".into(),
        staging_repository: "reg:5000/rebake-staging/app".into(),
        digest: "sha256:22".into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        base_ref: "reg:5000/base:v1".into(),
        base_digest: "sha256:aa".into(),
        sources: vec![source()],
        spec_json: "{\"name\":\"app\"}".into(),
        causes: vec![cause()],
        started_at_ms: 1,
        finished_at_ms: 2,
        size_bytes: 3,
        packages: vec![],
    }
}

#[test]
fn every_v1_event_still_decodes() {
    check(
        "upstream_changed_registry",
        pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::RegistryTag(pb::RegistryTagChanged {
                registry: "reg:5000".into(),
                repository: "base".into(),
                tag: "v1".into(),
                digest: "sha256:aa".into(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            })),
            source: "webhook/distribution".into(),
            received_at_ms: 5,
        },
    );
    check(
        "upstream_changed_git",
        pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::GitRef(pb::GitRefChanged {
                repository: "github.com/octo/app".into(),
                ref_kind: "branch".into(),
                ref_name: "main".into(),
                new_commit: "0123456789abcdef0123456789abcdef01234567".into(),
                old_commit: String::new(),
                deleted: false,
                forced: true,
                delivery_id: "d1".into(),
            })),
            source: "webhook/github".into(),
            received_at_ms: 6,
        },
    );
    check(
        "build_request",
        pb::BuildRequest {
            build_id: "b1".into(),
            image: "app".into(),
            inputs_hash: "sha256:11".into(),
            base_ref: "reg:5000/base:v1".into(),
            base_digest: "sha256:aa".into(),
            sources: vec![source()],
            spec_json: "{}".into(),
            causes: vec![cause()],
            requested_at_ms: 7,
            priority: 1,
            packages: vec![],
        },
    );
    check(
        "build_request_packages",
        pb::BuildRequest {
            build_id: "b2".into(),
            image: "os".into(),
            inputs_hash: "sha256:33".into(),
            base_ref: "scratch".into(),
            spec_json: "{}".into(),
            requested_at_ms: 11,
            packages: vec![package()],
            ..Default::default()
        },
    );
    check(
        "upstream_feed",
        pb::UpstreamChanged {
            change: Some(pb::upstream_changed::Change::Feed(pb::FeedChanged {
                feed: "debian".into(),
                index_digest: "sha256:44".into(),
                changes: vec![pb::PackageChange {
                    name: "tzdata".into(),
                    architecture: "all".into(),
                    old_version: "2024a-1".into(),
                    new_version: "2024b-1".into(),
                }],
            })),
            source: "poll/feed".into(),
            received_at_ms: 12,
        },
    );
    check("build_done", build_done());
    check(
        "build_failed",
        pb::BuildFailed {
            build_id: "b1".into(),
            image: "app".into(),
            inputs_hash: "sha256:11".into(),
            stage: "scan".into(),
            reason: "max-image-size: too big".into(),
            failed_at_ms: 8,
            causes: vec![cause()],
        },
    );
    check(
        "scan_done",
        pb::ScanDone {
            build: Some(build_done()),
            passed: true,
            summary: "2 files".into(),
            denial: String::new(),
            file_count: 2,
            scanned_at_ms: 9,
        },
    );
    check(
        "image_published",
        pb::ImagePublished {
            build_id: "b1".into(),
            image: "app".into(),
            inputs_hash: "sha256:11".into(),
            repository: "reg:5000/apps/app".into(),
            digest: "sha256:22".into(),
            tags: vec!["latest".into()],
            base_ref: "reg:5000/base:v1".into(),
            base_digest: "sha256:aa".into(),
            sources: vec![source()],
            signature_tag: "sha256-22.sig".into(),
            causes: vec![cause()],
            published_at_ms: 10,
            size_bytes: 3,
            packages: vec![],
        },
    );
}
