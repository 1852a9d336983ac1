//! Structure tests (container-structure-test schema) evaluated on a hand-built image view.

use std::collections::BTreeMap;

use bytes::Bytes;
use rebake_oci::{EmptyObject, FileInfo, FileKind, ImageConfig, RuntimeConfig};
use rebake_scanner::structure::{self, StructureError, TestKind, TestResult, TestStatus};
use rebake_scanner::view::{ImageView, wanted};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/structure");

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{DATA}/{name}")).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn parse(name: &str) -> structure::StructureTests {
    structure::parse(&data(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

struct Entry {
    path: &'static str,
    kind: FileKind,
    mode: u32,
    owner: u64,
    target: Option<&'static str>,
    content: Option<&'static [u8]>,
}

fn dir(path: &'static str, mode: u32) -> Entry {
    Entry {
        path,
        kind: FileKind::Dir,
        mode,
        owner: 0,
        target: None,
        content: None,
    }
}

fn file(path: &'static str, mode: u32, content: Option<&'static [u8]>) -> Entry {
    Entry {
        path,
        kind: FileKind::File,
        mode,
        owner: 0,
        target: None,
        content,
    }
}

fn symlink(path: &'static str, target: &'static str) -> Entry {
    Entry {
        path,
        kind: FileKind::Symlink,
        mode: 0o777,
        owner: 0,
        target: Some(target),
        content: None,
    }
}

const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";

/// A small Debian-like, merged-`/usr` image: `/bin` and `/lib` are symlinks into `/usr`, `/tmp`
/// is sticky, `su` is setuid, the app config belongs to 65532, `/home` is never listed itself.
fn entries() -> Vec<Entry> {
    vec![
        symlink("bin", "usr/bin"),
        symlink("lib", "usr/lib"),
        dir("etc", 0o755),
        file("etc/passwd", 0o644, Some(PASSWD)),
        file("etc/hosts", 0o644, Some(b"127.0.0.1 localhost\n")),
        file("etc/machine-id", 0o444, None),
        dir("etc/apt", 0o755),
        file(
            "etc/apt/sources.list",
            0o644,
            Some(b"deb http://archive.ubuntu.com/ubuntu/ jammy main restricted\n"),
        ),
        symlink("etc/os-release", "../usr/lib/os-release"),
        dir("tmp", 0o1777),
        dir("usr", 0o755),
        dir("usr/bin", 0o755),
        file("usr/bin/date", 0o755, None),
        file("usr/bin/dash", 0o755, Some(b"\x7fELF\x02\x01\x01\0dash")),
        symlink("usr/bin/sh", "/usr/bin/dash"),
        file("usr/bin/su", 0o4755, None),
        symlink("usr/bin/loop1", "loop2"),
        symlink("usr/bin/loop2", "./loop1"),
        symlink("usr/bin/dangling", "/nonexistent"),
        dir("usr/lib", 0o755),
        file(
            "usr/lib/os-release",
            0o644,
            Some(b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"),
        ),
        Entry {
            owner: 65532,
            ..dir("home/nonroot", 0o755)
        },
        Entry {
            owner: 65532,
            ..file("home/nonroot/app.conf", 0o644, Some(b"listen = 8080\ndebug = false\n"))
        },
    ]
}

fn runtime() -> RuntimeConfig {
    RuntimeConfig {
        user: Some("nonroot".to_string()),
        exposed_ports: [("8080/tcp", EmptyObject {}), ("53/udp", EmptyObject {})]
            .into_iter()
            .map(|(port, value)| (port.to_string(), value))
            .collect(),
        env: vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "HOME=/home/nonroot".to_string(),
            "APP_VERSION=2.1.3".to_string(),
            "EMPTY=".to_string(),
        ],
        entrypoint: Some(vec!["/usr/bin/app".to_string()]),
        cmd: Some(vec!["--serve".to_string()]),
        volumes: [("/data".to_string(), EmptyObject {})].into_iter().collect(),
        working_dir: Some("/home/nonroot".to_string()),
        labels: [
            ("org.opencontainers.image.source", "https://github.com/example/app"),
            ("build-date", "2024-05-01T10:00:00.123456"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect(),
        ..RuntimeConfig::default()
    }
}

/// The view, keeping contents the way the scanner does: only what [`wanted`] selects with
/// `extra` (so a test that forgets `paths_read` sees contents go missing).
fn view_with(runtime: RuntimeConfig, extra: &[String]) -> ImageView {
    let mut files = BTreeMap::new();
    let mut contents = BTreeMap::new();
    for entry in entries() {
        if let Some(content) = entry.content
            && wanted(entry.path, extra)
        {
            contents.insert(entry.path.to_string(), Bytes::from_static(content));
        }
        files.insert(
            entry.path.to_string(),
            FileInfo {
                path: entry.path.to_string(),
                size: entry.content.map_or(0, |content| content.len() as u64),
                sha256: String::new(),
                mode: entry.mode,
                uid: entry.owner,
                gid: entry.owner,
                kind: entry.kind,
                link_target: entry.target.map(str::to_string),
                layer_digest: "sha256:layer".to_string(),
            },
        );
    }
    ImageView {
        files,
        contents,
        config: ImageConfig {
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            config: Some(runtime),
            ..ImageConfig::default()
        },
        layers: vec!["sha256:layer".to_string()],
        digest: "sha256:manifest".to_string(),
    }
}

/// Evaluates `tests` on the view read with everything [`structure::paths_read_resolved`] asks for.
fn evaluate(tests: &structure::StructureTests, runtime: RuntimeConfig) -> Vec<TestResult> {
    let bare = view_with(RuntimeConfig::default(), &[]);
    let extra = structure::paths_read_resolved(tests, &bare.files);
    structure::evaluate(tests, &view_with(runtime, &extra))
}

fn find<'a>(results: &'a [TestResult], kind: TestKind, name: &str) -> &'a TestResult {
    results
        .iter()
        .find(|result| result.kind == kind && result.name == name)
        .unwrap_or_else(|| panic!("no {kind} result named {name:?} in {results:#?}"))
}

fn failed<'a>(results: &'a [TestResult], kind: TestKind, name: &str) -> &'a str {
    let result = find(results, kind, name);
    assert_eq!(result.status, TestStatus::Failed, "{result:#?}");
    &result.message
}

#[test]
fn every_supported_kind_passes() {
    let tests = parse("passing.yaml");
    let results = evaluate(&tests, runtime());
    for result in &results {
        assert_eq!(result.status, TestStatus::Passed, "{result:#?}");
    }
    // 10 existence, 4 content, and metadata: 3 env + 1 unbound + 2 labels + entrypoint + cmd
    // + 2 exposed + 1 unexposed + 1 volume + 1 unmounted + workdir + user.
    assert_eq!(structure::summary(&results), (10 + 4 + 15, 0, 0));
    let kinds: std::collections::BTreeSet<TestKind> = results.iter().map(|result| result.kind).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [TestKind::FileExistence, TestKind::FileContent, TestKind::Metadata]
    );
    let sh = find(
        &results,
        TestKind::FileExistence,
        "sh is a symlink (its own mode is checked)",
    );
    assert_eq!(
        sh.message,
        "/usr/bin/sh exists (lrwxrwxrwx, uid 0, gid 0, a symlink to /usr/bin/dash)"
    );
    let home = find(&results, TestKind::FileExistence, "home from the image environment");
    assert!(
        home.message
            .starts_with("/home/nonroot/app.conf exists (-rw-r--r--, uid 65532"),
        "{home:?}"
    );
    let os_release = find(&results, TestKind::FileContent, "os-release through a relative symlink");
    assert!(
        os_release
            .message
            .starts_with("/etc/os-release (/usr/lib/os-release): 2 expected"),
        "{os_release:?}"
    );
}

#[test]
fn every_supported_kind_fails_with_a_clear_message() {
    let tests = parse("failing.yaml");
    let results = evaluate(&tests, runtime());
    let existence = TestKind::FileExistence;
    assert_eq!(
        failed(&results, existence, "missing file"),
        "/usr/bin/curl should exist but does not: no such file or directory: /usr/bin/curl"
    );
    assert_eq!(
        failed(&results, existence, "file that should not be there"),
        "/usr/bin/su should not exist but does (/usr/bin/su, -rwsr-xr-x)"
    );
    assert_eq!(
        failed(&results, existence, "wrong permissions"),
        "/tmp has permissions drwxrwxrwt (Go form dtrwxrwxrwx), expected drwxrwxrwx"
    );
    assert_eq!(
        failed(&results, existence, "wrong owner and group"),
        "/home/nonroot/app.conf is owned by uid 65532, expected 0; /home/nonroot/app.conf has gid 65532, expected 0"
    );
    assert_eq!(
        failed(&results, existence, "not executable"),
        "/home/nonroot/app.conf is not executable by owner: -rw-r--r--"
    );
    assert_eq!(
        failed(&results, existence, "symlink loop"),
        "/usr/bin/loop1/x should exist but does not: more than 40 levels of symbolic links"
    );
    assert_eq!(
        failed(&results, existence, "through a file"),
        "/etc/passwd/x should exist but does not: not a directory: /etc/passwd"
    );

    let content = TestKind::FileContent;
    assert_eq!(
        failed(&results, content, "expected content missing"),
        "expected content \"(?m)^nobody:\" not found in /etc/passwd"
    );
    assert_eq!(
        failed(&results, content, "excluded content present"),
        "excluded content \"listen = 80\\\\d\\\\d\" found in /home/nonroot/app.conf: \"listen = 8080\""
    );
    assert_eq!(
        failed(&results, content, "missing file"),
        "cannot read /etc/shadow: no such file or directory: /etc/shadow"
    );
    assert_eq!(
        failed(&results, content, "directory"),
        "cannot read /etc: it is a directory, not a file"
    );
    assert_eq!(
        failed(&results, content, "dangling symlink"),
        "cannot read /usr/bin/dangling: no such file or directory: /nonexistent"
    );
    assert!(
        failed(&results, content, "content not kept").contains("was not kept when the image was read"),
        "{results:#?}"
    );

    let metadata = TestKind::Metadata;
    let env: Vec<&TestResult> = results
        .iter()
        .filter(|result| result.name == "envVars APP_VERSION")
        .collect();
    assert_eq!(env.len(), 2);
    assert_eq!(env[0].message, "env var APP_VERSION is \"2.1.3\", expected \"2.1\"");
    assert_eq!(
        env[1].message,
        "env var APP_VERSION is \"2.1.3\", which does not match regex \"^3\\\\.\""
    );
    assert_eq!(
        failed(&results, metadata, "envVars MISSING"),
        "env var MISSING is not set"
    );
    assert_eq!(
        failed(&results, metadata, "unboundEnvVars HOME"),
        "env var HOME should not be set but is \"/home/nonroot\""
    );
    assert_eq!(
        failed(&results, metadata, "labels org.opencontainers.image.source"),
        "label org.opencontainers.image.source is \"https://github.com/example/app\", expected \"https://github.com/example/other\""
    );
    assert_eq!(
        failed(&results, metadata, "entrypoint"),
        "image entrypoint is [\"/usr/bin/app\"], expected [\"/bin/sh\", \"-c\"]"
    );
    assert_eq!(
        failed(&results, metadata, "cmd"),
        "image cmd is [\"--serve\"], expected []"
    );
    assert_eq!(
        failed(&results, metadata, "exposedPorts 9090"),
        "port 9090 is not exposed (exposed: [\"53/udp\", \"8080/tcp\"])"
    );
    assert_eq!(
        failed(&results, metadata, "unexposedPorts 8080"),
        "port 8080 should not be exposed but is"
    );
    assert_eq!(
        failed(&results, metadata, "volumes /var/lib/app"),
        "volume /var/lib/app is not declared (volumes: [\"/data\"])"
    );
    assert_eq!(
        failed(&results, metadata, "unmountedVolumes /data"),
        "volume /data should not be declared but is"
    );
    assert_eq!(
        failed(&results, metadata, "workdir"),
        "image workdir is \"/home/nonroot\", expected \"/\""
    );
    assert_eq!(
        failed(&results, metadata, "user"),
        "image user is \"nonroot\", expected \"root\""
    );

    assert_eq!(structure::summary(&results), (0, 7 + 6 + 13, 0));
}

#[test]
fn contents_not_requested_are_not_evaluated_as_passes() {
    let tests = parse("passing.yaml");
    // Read without `extra`: /etc/passwd etc. are not kept, only what `wanted` keeps anyway.
    let results = structure::evaluate(&tests, &view_with(runtime(), &[]));
    let passwd = find(&results, TestKind::FileContent, "nonroot user");
    assert_eq!(passwd.status, TestStatus::Failed);
    assert_eq!(
        passwd.message,
        "content of /etc/passwd (/etc/passwd) was not kept when the image was read (see structure::paths_read)"
    );
    // os-release is kept by `wanted` itself (it's an SBOM input).
    let os_release = find(&results, TestKind::FileContent, "os-release through a relative symlink");
    assert_eq!(os_release.status, TestStatus::Passed, "{os_release:?}");
}

#[test]
fn paths_read_lists_content_test_paths() {
    let tests = parse("passing.yaml");
    assert_eq!(
        structure::paths_read(&tests),
        ["bin/sh", "etc/os-release", "etc/passwd", "home/nonroot/app.conf"]
    );
    let files = view_with(RuntimeConfig::default(), &[]).files;
    assert_eq!(
        structure::paths_read_resolved(&tests, &files),
        [
            "bin/sh",
            "etc/os-release",
            "etc/passwd",
            "home/nonroot/app.conf",
            "usr/bin/dash",
            "usr/lib/os-release"
        ]
    );
}

#[test]
fn command_and_other_run_time_tests_are_unsupported() {
    let tests = parse("unsupported.yaml");
    assert_eq!(tests.command_tests[0].setup, [["mkdir", "-p", "/tmp/x"]]);
    let results = evaluate(&tests, runtime());
    assert_eq!(structure::summary(&results), (1, 0, 4));
    let command = find(&results, TestKind::Command, "say hello");
    assert_eq!(command.status, TestStatus::Unsupported);
    assert_eq!(
        command.message,
        "command tests need to run the image; Rebake evaluates images without running them"
    );
    for (kind, name) in [
        (TestKind::License, "licenseTests[0] debian"),
        (TestKind::GlobalEnvVars, "globalEnvVars VIRTUAL_ENV"),
        (TestKind::ContainerRunOptions, "containerRunOptions"),
    ] {
        let result = find(&results, kind, name);
        assert_eq!(result.status, TestStatus::Unsupported, "{result:?}");
        assert!(!result.message.is_empty());
    }
    assert_eq!(
        find(&results, TestKind::FileExistence, "passwd").status,
        TestStatus::Passed
    );
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let error = structure::parse(&data("unknown_field.yaml")).expect_err("typo accepted");
    let message = error.to_string();
    assert!(matches!(error, StructureError::Yaml(_)), "{error:?}");
    assert!(message.contains("unknown field `shouldExists`"), "{message}");
    assert!(message.contains("fileExistenceTests[0]"), "{message}");

    let message = structure::parse(&data("unknown_field_metadata.yaml"))
        .expect_err("typo accepted")
        .to_string();
    assert!(message.contains("unknown field `exposedPort`"), "{message}");

    let message = structure::parse("schemaVersion: '2.0.0'\nfileExistanceTests: []\n")
        .expect_err("typo accepted")
        .to_string();
    assert!(message.contains("unknown field `fileExistanceTests`"), "{message}");
}

#[test]
fn invalid_files_are_rejected() {
    let cases = [
        ("fileExistenceTests: []\n", "missing field `schemaVersion`"),
        (
            "schemaVersion: '1.0.0'\n",
            "unsupported schemaVersion \"1.0.0\": Rebake reads container-structure-test schema 2.0.0",
        ),
        (
            "schemaVersion: '2.0.0'\nfileContentTests:\n- name: bad\n  path: /etc/passwd\n  expectedContents: ['(unclosed']\n",
            "invalid fileContentTests[0] \"bad\": invalid regex \"(unclosed\"",
        ),
        (
            "schemaVersion: '2.0.0'\nmetadataTest:\n  labels:\n  - key: a\n    value: '['\n    isRegex: true\n",
            "invalid metadataTest.labels[0]: invalid regex \"[\"",
        ),
        (
            "schemaVersion: '2.0.0'\nfileExistenceTests:\n- path: /etc\n",
            "invalid fileExistenceTests[0] \"\": every test needs a name",
        ),
        (
            "schemaVersion: '2.0.0'\nfileExistenceTests:\n- name: x\n  path: /bin/x\n  isExecutableBy: everyone\n",
            "unknown variant `everyone`, expected one of `owner`, `group`, `other`, `any`",
        ),
        (
            "schemaVersion: '2.0.0'\nmetadataTest:\n  env:\n  - value: x\n",
            "missing field `key`",
        ),
    ];
    for (yaml, expected) in cases {
        let message = structure::parse(yaml).expect_err(yaml).to_string();
        assert!(message.contains(expected), "{yaml}: {message}");
    }
}

#[test]
fn scalars_and_nulls_read_like_go_yaml() {
    let tests = structure::parse(
        "schemaVersion: 2.0.0\nfileContentTests:\nmetadataTest:\n  envVars:\n  - key: PORT\n    value: 8080\n  exposedPorts: [8080, 53]\n  entrypoint:\n",
    )
    .expect("parses");
    assert!(tests.file_content_tests.is_empty());
    let metadata = tests.metadata_test.expect("metadata");
    assert_eq!(metadata.env_vars[0].value, "8080");
    assert_eq!(metadata.exposed_ports, ["8080", "53"]);
    assert_eq!(metadata.entrypoint, None);
    // JSON is YAML too (upstream reads .json test files).
    let json = r#"{"schemaVersion": "2.0.0", "fileExistenceTests": [{"name": "tmp", "path": "/tmp", "permissions": "drwxrwxrwt"}]}"#;
    let results = evaluate(&structure::parse(json).expect("json parses"), runtime());
    assert_eq!(structure::summary(&results), (1, 0, 0));
}

#[test]
fn upstream_example_parses_and_runs() {
    let tests = parse("upstream_ubuntu_22_04_test.yaml");
    assert_eq!(tests.command_tests.len(), 3);
    assert_eq!(tests.file_content_tests.len(), 2);
    assert_eq!(tests.file_existence_tests.len(), 5);
    assert_eq!(tests.license_tests[0].files.len(), 2);
    let results = evaluate(&tests, runtime());
    for result in &results {
        if result.status == TestStatus::Failed {
            panic!("{result:#?}");
        }
    }
    // 3 command tests + 1 license test unsupported; 2 content + 5 existence pass.
    assert_eq!(structure::summary(&results), (7, 0, 4));
    let date = find(&results, TestKind::FileExistence, "Date");
    assert_eq!(date.message, "/bin/date exists (-rwxr-xr-x, uid 0, gid 0)");
}

#[test]
fn upstream_metadata_example_parses_and_runs() {
    let tests = parse("upstream_ubuntu_22_04_metadata_test.yaml");
    let runtime = RuntimeConfig {
        env: [
            "PATH=/usr/bin:/bin",
            "SOME_KEY=SOME_VAL",
            "EMPTY_VAR=",
            "FOO_BAR=FOO\\:BAR=BAZ",
            "REGEX_VAR=hello-2.1.3",
        ]
        .map(str::to_string)
        .to_vec(),
        labels: [
            (
                "localnet.localdomain.commit_hash",
                "0123456789abcdef0123456789abcdef01234567",
            ),
            ("localnet.my-domain.my-label", "my very own label"),
            ("label-with-empty-val", ""),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect(),
        ..RuntimeConfig::default()
    };
    let results = evaluate(&tests, runtime.clone());
    for result in &results {
        assert_eq!(result.status, TestStatus::Passed, "{result:#?}");
    }
    assert_eq!(structure::summary(&results), (4 + 1 + 3 + 1 + 1, 0, 0));

    let mut exposed = runtime;
    exposed.exposed_ports.insert("80/tcp".to_string(), EmptyObject {});
    exposed.volumes.insert("/root".to_string(), EmptyObject {});
    exposed.env.push("BAR_FOO=1".to_string());
    let results = evaluate(&tests, exposed);
    assert_eq!(structure::summary(&results), (4 + 3, 3, 0));
}

#[test]
fn results_serialise_camel_case() {
    let result = TestResult {
        kind: TestKind::FileExistence,
        name: "tmp".to_string(),
        status: TestStatus::Unsupported,
        message: "m".to_string(),
    };
    assert_eq!(
        serde_json::to_value(&result).expect("serialises"),
        serde_json::json!({"kind": "fileExistence", "name": "tmp", "status": "unsupported", "message": "m"})
    );
}
