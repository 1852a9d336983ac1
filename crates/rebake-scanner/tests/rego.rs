//! Rego policies: the built-ins, overrides, custom rules, errors and the input document.

use std::path::{Path, PathBuf};

use rebake_scanner::rego::{
    Denial, Finding, PolicyError, PolicyInput, PolicySet, Severity, StructureResult, StructureStatus,
};

const GOLDEN: &str = include_str!("data/rego/input.json");

/// The golden input: an image every built-in allows.
fn good() -> PolicyInput {
    serde_json::from_str(GOLDEN).expect("golden input deserialises")
}

fn denials(set: &PolicySet, input: &PolicyInput) -> Vec<Denial> {
    set.evaluate(input).expect("policies evaluate")
}

fn denied_by(set: &PolicySet, input: &PolicyInput, rule: &str) -> Vec<String> {
    denials(set, input)
        .into_iter()
        .filter(|denial| denial.rule == rule)
        .map(|denial| denial.message)
        .collect()
}

/// A fresh empty directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rego-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn golden_input_round_trips_and_matches_the_documented_shape() {
    let input = good();
    let expected: serde_json::Value = serde_json::from_str(GOLDEN).expect("golden is JSON");
    // Every documented field is in the golden file and survives the round trip: nothing
    // dropped, renamed or added.
    let serialised = serde_json::to_value(&input).expect("serialise");
    assert_eq!(serialised, expected);
    let again: PolicyInput = serde_json::from_value(serialised).expect("deserialise again");
    assert_eq!(again, input);

    assert!(input.base.reference.starts_with("debian:12-slim@sha256:"));
    assert!(input.base.pinned);
    assert_eq!(input.findings[0].severity, Severity::Medium);
    assert_eq!(input.findings[1].fixed_version, None);
    assert_eq!(input.findings[1].cvss_score, None);
    assert_eq!(input.structure[1].status, StructureStatus::Unsupported);
    assert_eq!(input.lineage.sources[0].reference, "refs/heads/main");

    // The default document has every field too.
    let default = serde_json::to_value(PolicyInput::default()).expect("serialise default");
    let keys = |value: &serde_json::Value| {
        value
            .as_object()
            .map(|object| object.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(keys(&default), keys(&expected));
    for section in ["image", "config", "base", "sbom", "lineage", "settings"] {
        assert_eq!(keys(&default[section]), keys(&expected[section]), "input.{section}");
    }
    assert_eq!(keys(&expected["findings"][0]).len(), 7);
    assert_eq!(
        keys(&serde_json::to_value(Finding::default()).expect("finding")),
        keys(&expected["findings"][0])
    );
    assert_eq!(
        keys(&serde_json::to_value(StructureResult::default()).expect("structure")),
        keys(&expected["structure"][0])
    );
}

#[test]
fn golden_input_passes_every_builtin() {
    let set = PolicySet::builtin();
    assert_eq!(
        set.rule_names(),
        [
            "base_pinned",
            "image_size",
            "no_fixable_critical_high",
            "non_root_user",
            "required_labels",
            "structure_tests_pass",
        ]
    );
    assert_eq!(denials(&set, &good()), []);
}

#[test]
fn no_fixable_critical_high() {
    let set = PolicySet::builtin();
    let mut input = good();
    // A high without a fix and a fixable medium (the golden ones) pass; so does a fixable low.
    input.findings.push(Finding {
        id: "CVE-2024-0003".into(),
        severity: Severity::Low,
        package: "zlib1g".into(),
        installed_version: "1.2.13".into(),
        fixed_version: Some("1.3".into()),
        ..Finding::default()
    });
    assert_eq!(
        denied_by(&set, &input, "no_fixable_critical_high"),
        Vec::<String>::new()
    );

    input.findings.push(Finding {
        id: "CVE-2024-6119".into(),
        aliases: vec!["DSA-5764-1".into()],
        severity: Severity::Critical,
        cvss_score: Some(9.8),
        package: "libssl3".into(),
        installed_version: "3.0.11-1~deb12u2".into(),
        fixed_version: Some("3.0.14-1~deb12u2".into()),
    });
    input.findings.push(Finding {
        id: "GHSA-aaaa-bbbb-cccc".into(),
        severity: Severity::High,
        package: "tokio".into(),
        installed_version: "1.40.0".into(),
        fixed_version: Some("1.40.1".into()),
        ..Finding::default()
    });
    assert_eq!(
        denied_by(&set, &input, "no_fixable_critical_high"),
        [
            "critical vulnerability CVE-2024-6119 in libssl3 3.0.11-1~deb12u2 is fixed in 3.0.14-1~deb12u2",
            "high vulnerability GHSA-aaaa-bbbb-cccc in tokio 1.40.0 is fixed in 1.40.1",
        ]
    );
}

#[test]
fn non_root_user() {
    let set = PolicySet::builtin();
    for user in ["app", "1000", "1000:1000", "app:app", "nobody"] {
        let mut input = good();
        input.config.user = user.into();
        assert_eq!(denied_by(&set, &input, "non_root_user"), Vec::<String>::new(), "{user}");
    }
    for user in ["root", "0", "0:0", "root:root", "0:1000"] {
        let mut input = good();
        input.config.user = user.into();
        assert_eq!(
            denied_by(&set, &input, "non_root_user"),
            [format!(
                "image runs as root: the config sets USER {user}; set a non-root USER"
            )],
            "{user}"
        );
    }
    let mut input = good();
    input.config.user = String::new();
    assert_eq!(
        denied_by(&set, &input, "non_root_user"),
        ["image runs as root: the config sets no USER (the default is root); set a non-root USER"]
    );
    input.settings.allow_root = true;
    assert_eq!(denied_by(&set, &input, "non_root_user"), Vec::<String>::new());
}

#[test]
fn base_pinned() {
    let set = PolicySet::builtin();
    let mut input = good();
    input.base.reference = "scratch".into();
    input.base.digest = String::new();
    input.base.pinned = true;
    assert_eq!(denied_by(&set, &input, "base_pinned"), Vec::<String>::new());
    // scratch counts as pinned even if the caller left the flag off.
    input.base.pinned = false;
    assert_eq!(denied_by(&set, &input, "base_pinned"), Vec::<String>::new());

    let mut input = good();
    input.base.reference = "debian:12-slim".into();
    input.base.pinned = false;
    assert_eq!(
        denied_by(&set, &input, "base_pinned"),
        ["base image debian:12-slim is not pinned by digest (write it as name@sha256:...)"]
    );
}

#[test]
fn image_size() {
    let set = PolicySet::builtin();
    let mut input = good();
    input.settings.max_image_size_bytes = input.image.size_bytes;
    assert_eq!(denied_by(&set, &input, "image_size"), Vec::<String>::new());
    input.settings.max_image_size_bytes = 1000;
    input.image.size_bytes = 3_000_000_000;
    assert_eq!(
        denied_by(&set, &input, "image_size"),
        ["image apps/api is 3000000000 bytes, over the limit of 1000 bytes"]
    );
}

#[test]
fn required_labels() {
    let set = PolicySet::builtin();
    let mut input = good();
    input.settings.required_labels = vec![
        "org.opencontainers.image.source".into(),
        "org.opencontainers.image.title".into(),
    ];
    assert_eq!(denied_by(&set, &input, "required_labels"), Vec::<String>::new());

    input
        .settings
        .required_labels
        .push("org.opencontainers.image.licenses".into());
    input
        .config
        .labels
        .insert("org.opencontainers.image.title".into(), "  ".into());
    assert_eq!(
        denied_by(&set, &input, "required_labels"),
        [
            "required label org.opencontainers.image.licenses is missing or empty",
            "required label org.opencontainers.image.title is missing or empty",
        ]
    );
}

#[test]
fn structure_tests_pass() {
    let set = PolicySet::builtin();
    let mut input = good();
    input.structure.push(StructureResult {
        kind: "file_exists".into(),
        name: "no shell".into(),
        status: StructureStatus::Failed,
        message: "bin/sh exists".into(),
    });
    assert_eq!(
        denied_by(&set, &input, "structure_tests_pass"),
        ["structure test file_exists no shell failed: bin/sh exists"]
    );
}

#[test]
fn denials_are_sorted_by_rule_then_message() {
    let set = PolicySet::builtin();
    let mut input = good();
    input.config.user = "root".into();
    input.base.pinned = false;
    input.base.reference = "alpine:3".into();
    input.settings.max_image_size_bytes = 1;
    let rules: Vec<String> = denials(&set, &input).into_iter().map(|denial| denial.rule).collect();
    assert_eq!(rules, ["base_pinned", "image_size", "non_root_user"]);
}

#[test]
fn disabled_rules_are_not_evaluated() {
    let mut input = good();
    input.config.user = "root".into();
    let set = PolicySet::builtin().with_disabled(vec!["non_root_user".into(), "typo".into()]);
    assert_eq!(denials(&set, &input), []);
    assert_eq!(set.unknown_disabled(), ["typo"]);
    assert!(!set.enabled_rules().contains(&"non_root_user"));
}

#[test]
fn override_replaces_a_builtin() {
    let dir = scratch_dir("override");
    // Only `nobody` may run the image.
    std::fs::write(
        dir.join("non_root_user.rego"),
        r#"package rebake.policy.non_root_user

deny contains msg if {
	input.config.user != "nobody"
	msg := sprintf("user %s is not nobody", [input.config.user])
}
"#,
    )
    .expect("write");
    let set = PolicySet::with_overrides(&dir).expect("load");
    let file = dir.join("non_root_user.rego").display().to_string();
    assert_eq!(set.rule_files("non_root_user"), Some([file].as_slice()));
    assert_eq!(
        denied_by(&set, &good(), "non_root_user"),
        ["user app:app is not nobody"]
    );
    let mut input = good();
    input.config.user = "nobody".into();
    assert_eq!(denials(&set, &input), []);
    // The other built-ins are still there.
    input.base.pinned = false;
    assert_eq!(denied_by(&set, &input, "base_pinned").len(), 1);
}

#[test]
fn custom_rule_is_added() {
    let dir = scratch_dir("custom");
    std::fs::write(
        dir.join("licenses.rego"),
        r#"package rebake.policy.no_gpl

deny contains msg if {
	some component in input.sbom.components
	some license in component.licenses
	regex.match(`^(A|L)?GPL`, license)
	msg := sprintf("%s %s is licensed %s", [component.name, component.version, license])
}
"#,
    )
    .expect("write");
    // Not policies: other extensions, test files, hidden files.
    std::fs::write(dir.join("README.md"), "not a policy").expect("write");
    std::fs::write(dir.join("no_gpl_test.rego"), "this is not parsed").expect("write");
    std::fs::write(dir.join(".hidden.rego"), "nor this").expect("write");
    let set = PolicySet::with_overrides(&dir).expect("load");
    assert!(set.rule_names().contains(&"no_gpl"));
    assert_eq!(set.rule_names().len(), 7);

    let mut input = good();
    assert_eq!(denials(&set, &input), []);
    input.sbom.components[1].licenses = vec!["GPL-3.0-only".into()];
    assert_eq!(
        denials(&set, &input),
        [Denial {
            rule: "no_gpl".into(),
            message: "tokio 1.40.0 is licensed GPL-3.0-only".into(),
        }]
    );
    let set = set.with_disabled(vec!["no_gpl".into()]);
    assert_eq!(denials(&set, &input), []);
}

#[test]
fn syntax_error_names_the_file() {
    let dir = scratch_dir("syntax");
    std::fs::write(
        dir.join("broken.rego"),
        "package rebake.policy.broken\n\ndeny contains msg if {\n\tmsg := \n}\n",
    )
    .expect("write");
    let error = PolicySet::with_overrides(&dir).expect_err("a broken policy is an error");
    let file = dir.join("broken.rego").display().to_string();
    match &error {
        PolicyError::Parse { file: named, message } => {
            assert_eq!(named, &file);
            assert!(!message.is_empty());
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(error.to_string().contains(&file), "{error}");
}

#[test]
fn broken_override_of_a_builtin_is_an_error() {
    let dir = scratch_dir("broken-override");
    std::fs::write(
        dir.join("image_size.rego"),
        "package rebake.policy.image_size\n\ndeny contains if\n",
    )
    .expect("write");
    let error = PolicySet::with_overrides(&dir).expect_err("error");
    assert!(error.to_string().contains("image_size.rego"), "{error}");
}

#[test]
fn evaluation_error_is_an_error_not_a_pass() {
    let dir = scratch_dir("eval-error");
    // Parses, but `deny` is not a set of strings.
    std::fs::write(
        dir.join("numbers.rego"),
        "package rebake.policy.numbers\n\ndeny contains n if {\n\tsome n in [1, 2]\n}\n",
    )
    .expect("write");
    let error = PolicySet::with_overrides(&dir).expect_err("error");
    match &error {
        PolicyError::Eval { rule, files, .. } => {
            assert_eq!(rule, "numbers");
            assert_eq!(files, &[dir.join("numbers.rego").display().to_string()]);
        }
        other => panic!("expected an evaluation error, got {other:?}"),
    }

    // A rule with no `deny` at all.
    let dir = scratch_dir("no-deny");
    std::fs::write(
        dir.join("nothing.rego"),
        "package rebake.policy.nothing\n\nallow := true\n",
    )
    .expect("write");
    let error = PolicySet::with_overrides(&dir).expect_err("error");
    assert!(error.to_string().contains("nothing.rego"), "{error}");

    // An error that only happens with some inputs: found at evaluation.
    let dir = scratch_dir("input-error");
    std::fs::write(
        dir.join("conflict.rego"),
        r#"package rebake.policy.conflict

verdict := "a" if input.config.user == "root"

verdict := "b" if input.config.user == "root"

deny contains verdict if input.config.user == "root"
"#,
    )
    .expect("write");
    let set = PolicySet::with_overrides(&dir).expect("load");
    let mut input = good();
    input.config.user = "root".into();
    let error = set.evaluate(&input).expect_err("conflicting values are an error");
    assert!(error.to_string().contains("conflict.rego"), "{error}");
}

#[test]
fn bad_packages_are_errors() {
    let dir = scratch_dir("bad-package");
    std::fs::write(
        dir.join("other.rego"),
        "package company.checks\n\ndeny contains \"x\" if false\n",
    )
    .expect("write");
    let error = PolicySet::with_overrides(&dir).expect_err("error");
    assert!(matches!(error, PolicyError::Package { .. }), "{error:?}");

    let dir = scratch_dir("wrong-override-package");
    std::fs::write(
        dir.join("base_pinned.rego"),
        "package rebake.policy.something_else\n\ndeny contains \"x\" if false\n",
    )
    .expect("write");
    let error = PolicySet::with_overrides(&dir).expect_err("error");
    assert!(matches!(error, PolicyError::Package { .. }), "{error:?}");

    let dir = scratch_dir("builtin-package-elsewhere");
    std::fs::write(
        dir.join("extra.rego"),
        "package rebake.policy.base_pinned\n\ndeny contains \"x\" if false\n",
    )
    .expect("write");
    let error = PolicySet::with_overrides(&dir).expect_err("error");
    assert!(matches!(error, PolicyError::Package { .. }), "{error:?}");

    let error = PolicySet::with_overrides(&dir.join("missing")).expect_err("error");
    assert!(matches!(error, PolicyError::Read { .. }), "{error:?}");
}

#[test]
fn policy_set_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PolicySet>();
}
