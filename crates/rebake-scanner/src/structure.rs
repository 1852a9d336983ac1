//! Structure tests in the container-structure-test schema, evaluated without running the image.
//!
//! Rebake reads test files written for GoogleContainerTools/container-structure-test
//! (`schemaVersion: 2.0.0`) and evaluates them against an [`ImageView`] — the merged
//! filesystem, the kept file contents and the image config — never starting a container:
//!
//! - `fileExistenceTests` (`name`, `path`, `shouldExist` (default `true`), `permissions`,
//!   `uid`, `gid`, `isExecutableBy`) and `fileContentTests` (`name`, `path`,
//!   `expectedContents`, `excludedContents`) are evaluated on the view;
//! - `metadataTest` (`envVars` — also read as `env`, its name in older releases —,
//!   `unboundEnvVars`, `labels`, `entrypoint`, `cmd`, `exposedPorts`, `unexposedPorts`,
//!   `volumes`, `unmountedVolumes`, `workdir`, `user`) is evaluated on the config, one
//!   [`TestResult`] per check;
//! - `commandTests`, `licenseTests`, `globalEnvVars` and `containerRunOptions` are parsed
//!   (so typos in them are still caught) and reported as [`TestStatus::Unsupported`], never as
//!   passes.
//!
//! Unknown fields are an error naming the field: a misspelt key must not make a test vanish.
//!
//! Semantics follow the upstream tool:
//! - regexes are unanchored searches (Go `regexp.MatchString`); Rebake uses the `regex`
//!   crate, of the same RE2 family;
//! - a file existence test looks at the path itself (`lstat`): symlinks on the way are
//!   followed (so `/lib/x` finds `usr/lib/x` in a merged-`/usr` image), a final symlink is
//!   not — it exists even when dangling, and its own `Lrwxrwxrwx` mode and owner are checked;
//!   `$VAR`/`${VAR}` in its path expand from the image's environment, as upstream;
//! - a file content test follows every symlink, final one included (up to 40 hops, relative
//!   and absolute targets, `..` stopping at the root);
//! - `permissions` is compared with both the `ls -l` form (`drwxrwxrwt`, `-rwsr-xr-x`) and
//!   the Go `FileMode.String()` form upstream prints (`dtrwxrwxrwx`, `urwxr-xr-x`): either
//!   passes;
//! - exposed ports are compared without their protocol (`8080/tcp` is `8080`), as upstream;
//!   the full `8080/tcp` form also matches;
//! - scalar YAML values (`value: 8080`) are read as strings, as Go's YAML decoder does.
//!
//! File contents are only there when the image was read keeping them: pass
//! [`paths_read`] as `extra` to [`crate::view::wanted`]. A content test whose file was not
//! kept fails with a message saying so (it never passes unverified).
//!
//! Results serialise with camelCase names and values:
//! `{"kind": "fileExistence", "name": "…", "status": "passed", "message": "…"}`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use rebake_oci::{FileInfo, FileKind, RuntimeConfig};
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize};

use crate::view::ImageView;

/// The only `schemaVersion` read.
pub const SCHEMA_VERSION: &str = "2.0.0";

/// Symlinks followed when resolving one path before giving up (Linux's limit).
pub const MAX_SYMLINK_HOPS: usize = 40;

const COMMAND_REASON: &str = "command tests need to run the image; Rebake evaluates images without running them";
const LICENSE_REASON: &str =
    "license tests are not evaluated by Rebake; license data comes from the image's SBOM instead";
const GLOBAL_ENV_REASON: &str = "globalEnvVars only apply to command tests, which need to run the image; Rebake evaluates images without running them";
const RUN_OPTIONS_REASON: &str =
    "containerRunOptions only apply to running the image; Rebake evaluates images without running them";

/// A parsed structure test file (container-structure-test schema 2.0.0).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StructureTests {
    /// `schemaVersion`: must be `2.0.0`.
    #[serde(deserialize_with = "scalar")]
    pub schema_version: String,
    /// `globalEnvVars`: environment of command tests (unsupported).
    #[serde(default, deserialize_with = "nullable")]
    pub global_env_vars: Vec<KeyValue>,
    /// `commandTests` (unsupported: they run the image).
    #[serde(default, deserialize_with = "nullable")]
    pub command_tests: Vec<CommandTest>,
    /// `fileExistenceTests`.
    #[serde(default, deserialize_with = "nullable")]
    pub file_existence_tests: Vec<FileExistenceTest>,
    /// `fileContentTests`.
    #[serde(default, deserialize_with = "nullable")]
    pub file_content_tests: Vec<FileContentTest>,
    /// `metadataTest`.
    #[serde(default)]
    pub metadata_test: Option<MetadataTest>,
    /// `licenseTests` (unsupported).
    #[serde(default, deserialize_with = "nullable")]
    pub license_tests: Vec<LicenseTest>,
    /// `containerRunOptions` (unsupported: they configure a container run).
    #[serde(default)]
    pub container_run_options: Option<ContainerRunOptions>,
}

/// A `{key, value, isRegex}` pair (environment variables and labels).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyValue {
    /// `key`.
    #[serde(deserialize_with = "scalar")]
    pub key: String,
    /// `value` (empty when absent).
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub value: String,
    /// `isRegex`: `value` is a regex searched in the actual value.
    #[serde(default)]
    pub is_regex: bool,
}

/// One of `commandTests` (parsed, never run).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandTest {
    /// `name`.
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub name: String,
    /// `setup`: commands run before.
    #[serde(default, deserialize_with = "scalar_lists")]
    pub setup: Vec<Vec<String>>,
    /// `teardown`: commands run after.
    #[serde(default, deserialize_with = "scalar_lists")]
    pub teardown: Vec<Vec<String>>,
    /// `envVars`.
    #[serde(default, deserialize_with = "nullable")]
    pub env_vars: Vec<KeyValue>,
    /// `exitCode`.
    #[serde(default)]
    pub exit_code: i64,
    /// `command`.
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub command: String,
    /// `args`.
    #[serde(default, deserialize_with = "scalars")]
    pub args: Vec<String>,
    /// `expectedOutput`.
    #[serde(default, deserialize_with = "scalars")]
    pub expected_output: Vec<String>,
    /// `excludedOutput`.
    #[serde(default, deserialize_with = "scalars")]
    pub excluded_output: Vec<String>,
    /// `expectedError`.
    #[serde(default, deserialize_with = "scalars")]
    pub expected_error: Vec<String>,
    /// `excludedError`.
    #[serde(default, deserialize_with = "scalars")]
    pub excluded_error: Vec<String>,
}

/// Who `isExecutableBy` asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ExecutableBy {
    /// Owner execute bit (`0o100`).
    Owner,
    /// Group execute bit (`0o010`).
    Group,
    /// Other execute bit (`0o001`).
    Other,
    /// Any of the three.
    Any,
}

impl ExecutableBy {
    fn bits(self) -> u32 {
        match self {
            ExecutableBy::Owner => 0o100,
            ExecutableBy::Group => 0o010,
            ExecutableBy::Other => 0o001,
            ExecutableBy::Any => 0o111,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ExecutableBy::Owner => "owner",
            ExecutableBy::Group => "group",
            ExecutableBy::Other => "other",
            ExecutableBy::Any => "any",
        }
    }
}

/// One of `fileExistenceTests`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileExistenceTest {
    /// `name`.
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub name: String,
    /// `path` (absolute; `$VAR` expands from the image environment).
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub path: String,
    /// `shouldExist` (default `true`, as upstream).
    #[serde(default = "yes")]
    pub should_exist: bool,
    /// `permissions`: `ls -l` or Go `FileMode` string, e.g. `-rw-r--r--`.
    #[serde(default, deserialize_with = "optional_scalar")]
    pub permissions: Option<String>,
    /// `uid` of the owner (`-1` or absent: not checked).
    #[serde(default)]
    pub uid: Option<i64>,
    /// `gid` (`-1` or absent: not checked).
    #[serde(default)]
    pub gid: Option<i64>,
    /// `isExecutableBy`: `owner`, `group`, `other` or `any`.
    #[serde(default)]
    pub is_executable_by: Option<ExecutableBy>,
}

/// One of `fileContentTests`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileContentTest {
    /// `name`.
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub name: String,
    /// `path` (absolute).
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub path: String,
    /// `expectedContents`: regexes that must each match somewhere in the content.
    #[serde(default, deserialize_with = "scalars")]
    pub expected_contents: Vec<String>,
    /// `excludedContents`: regexes none of which may match.
    #[serde(default, deserialize_with = "scalars")]
    pub excluded_contents: Vec<String>,
}

/// The `metadataTest` object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataTest {
    /// `envVars` (also read as `env`): variables that must be set, with their value.
    #[serde(default, alias = "env", deserialize_with = "nullable")]
    pub env_vars: Vec<KeyValue>,
    /// `unboundEnvVars`: variables that must not be set (only `key` matters).
    #[serde(default, deserialize_with = "nullable")]
    pub unbound_env_vars: Vec<KeyValue>,
    /// `labels` that must be set, with their value.
    #[serde(default, deserialize_with = "nullable")]
    pub labels: Vec<KeyValue>,
    /// `entrypoint`: exact list (`[]` means unset or empty).
    #[serde(default, deserialize_with = "optional_scalars")]
    pub entrypoint: Option<Vec<String>>,
    /// `cmd`: exact list (`[]` means unset or empty).
    #[serde(default, deserialize_with = "optional_scalars")]
    pub cmd: Option<Vec<String>>,
    /// `exposedPorts` that must be exposed (`8080` or `8080/tcp`).
    #[serde(default, deserialize_with = "scalars")]
    pub exposed_ports: Vec<String>,
    /// `unexposedPorts` that must not be exposed.
    #[serde(default, deserialize_with = "scalars")]
    pub unexposed_ports: Vec<String>,
    /// `volumes` that must be declared.
    #[serde(default, deserialize_with = "scalars")]
    pub volumes: Vec<String>,
    /// `unmountedVolumes` that must not be declared.
    #[serde(default, deserialize_with = "scalars")]
    pub unmounted_volumes: Vec<String>,
    /// `workdir` (empty: not checked).
    #[serde(default, deserialize_with = "optional_scalar")]
    pub workdir: Option<String>,
    /// `user` (empty: not checked).
    #[serde(default, deserialize_with = "optional_scalar")]
    pub user: Option<String>,
}

/// One of `licenseTests` (parsed, not evaluated).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LicenseTest {
    /// `debian`: check every Debian copyright file.
    #[serde(default)]
    pub debian: bool,
    /// `files`: further files to check.
    #[serde(default, deserialize_with = "scalars")]
    pub files: Vec<String>,
}

/// The `containerRunOptions` object (parsed, not applied).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerRunOptions {
    /// `user`.
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub user: String,
    /// `privileged`.
    #[serde(default)]
    pub privileged: bool,
    /// `allocateTty`.
    #[serde(default)]
    pub allocate_tty: bool,
    /// `envVars`: names passed from the caller's environment.
    #[serde(default, deserialize_with = "scalars")]
    pub env_vars: Vec<String>,
    /// `envFile`.
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub env_file: String,
    /// `capabilities`.
    #[serde(default, deserialize_with = "scalars")]
    pub capabilities: Vec<String>,
    /// `bindMounts`.
    #[serde(default, deserialize_with = "scalars")]
    pub bind_mounts: Vec<String>,
}

impl MetadataTest {
    /// Whether no check is asked for.
    pub fn is_empty(&self) -> bool {
        self.env_vars.is_empty()
            && self.unbound_env_vars.is_empty()
            && self.labels.is_empty()
            && self.entrypoint.is_none()
            && self.cmd.is_none()
            && self.exposed_ports.is_empty()
            && self.unexposed_ports.is_empty()
            && self.volumes.is_empty()
            && self.unmounted_volumes.is_empty()
            && self.workdir.is_none()
            && self.user.is_none()
    }
}

/// Why a structure test file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    /// Not YAML (or JSON), or not the schema: unknown or misspelt field, wrong type, missing
    /// `schemaVersion`. The message names the field and its location.
    #[error("invalid structure test file: {0}")]
    Yaml(String),
    /// `schemaVersion` other than [`SCHEMA_VERSION`].
    #[error("unsupported schemaVersion {found:?}: Rebake reads container-structure-test schema {SCHEMA_VERSION}")]
    SchemaVersion {
        /// The version the file declares.
        found: String,
    },
    /// A test the upstream tool would refuse too (no name, no path, bad regex, empty key).
    #[error("invalid {test}: {reason}")]
    Invalid {
        /// Which test (`fileExistenceTests[2] "name"`).
        test: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Which section of the file a [`TestResult`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TestKind {
    /// `fileExistenceTests`.
    FileExistence,
    /// `fileContentTests`.
    FileContent,
    /// `metadataTest` (one result per check).
    Metadata,
    /// `commandTests`.
    Command,
    /// `licenseTests`.
    License,
    /// `globalEnvVars`.
    GlobalEnvVars,
    /// `containerRunOptions`.
    ContainerRunOptions,
}

impl TestKind {
    /// The camelCase name used in serialised results.
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::FileExistence => "fileExistence",
            TestKind::FileContent => "fileContent",
            TestKind::Metadata => "metadata",
            TestKind::Command => "command",
            TestKind::License => "license",
            TestKind::GlobalEnvVars => "globalEnvVars",
            TestKind::ContainerRunOptions => "containerRunOptions",
        }
    }
}

impl fmt::Display for TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TestStatus {
    /// The image satisfies the test.
    Passed,
    /// The image does not satisfy it (or it could not be checked, e.g. an invalid regex).
    Failed,
    /// Rebake cannot evaluate this kind of test without running the image; not a pass.
    Unsupported,
}

/// One evaluated test (serialised camelCase: `kind`, `name`, `status`, `message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// Section the test comes from.
    pub kind: TestKind,
    /// The test's `name` (metadata checks: `envVars PATH`, `entrypoint`, `exposedPorts 80`…).
    pub name: String,
    /// Outcome.
    pub status: TestStatus,
    /// What was found (on failure: every problem, `; `-separated) or why it is unsupported.
    pub message: String,
}

impl TestResult {
    fn new(kind: TestKind, name: impl Into<String>, status: TestStatus, message: impl Into<String>) -> TestResult {
        TestResult {
            kind,
            name: name.into(),
            status,
            message: message.into(),
        }
    }

    fn checked(kind: TestKind, name: impl Into<String>, problems: Vec<String>, passed: String) -> TestResult {
        if problems.is_empty() {
            TestResult::new(kind, name, TestStatus::Passed, passed)
        } else {
            TestResult::new(kind, name, TestStatus::Failed, problems.join("; "))
        }
    }
}

/// Parses and validates a structure test file (YAML, or JSON which is YAML too).
pub fn parse(yaml: &str) -> Result<StructureTests, StructureError> {
    let tests: StructureTests = serde_yaml::from_str(yaml).map_err(|error| StructureError::Yaml(error.to_string()))?;
    validate(&tests)?;
    Ok(tests)
}

fn validate(tests: &StructureTests) -> Result<(), StructureError> {
    if tests.schema_version != SCHEMA_VERSION {
        return Err(StructureError::SchemaVersion {
            found: tests.schema_version.clone(),
        });
    }
    let invalid = |test: String, reason: &str| StructureError::Invalid {
        test,
        reason: reason.to_string(),
    };
    for (index, test) in tests.file_existence_tests.iter().enumerate() {
        let label = format!("fileExistenceTests[{index}] {:?}", test.name);
        if test.name.is_empty() {
            return Err(invalid(label, "every test needs a name"));
        }
        if test.path.is_empty() {
            return Err(invalid(label, "every file test needs a path"));
        }
    }
    for (index, test) in tests.file_content_tests.iter().enumerate() {
        let label = format!("fileContentTests[{index}] {:?}", test.name);
        if test.name.is_empty() {
            return Err(invalid(label, "every test needs a name"));
        }
        if test.path.is_empty() {
            return Err(invalid(label, "every file test needs a path"));
        }
        for pattern in test.expected_contents.iter().chain(&test.excluded_contents) {
            compile(pattern).map_err(|reason| invalid(label.clone(), &reason))?;
        }
    }
    if let Some(metadata) = &tests.metadata_test {
        for (field, pairs) in [
            ("envVars", &metadata.env_vars),
            ("unboundEnvVars", &metadata.unbound_env_vars),
            ("labels", &metadata.labels),
        ] {
            for (index, pair) in pairs.iter().enumerate() {
                let label = format!("metadataTest.{field}[{index}]");
                if pair.key.is_empty() {
                    return Err(invalid(label, "key cannot be empty"));
                }
                if pair.is_regex {
                    compile(&pair.value).map_err(|reason| invalid(label, &reason))?;
                }
            }
        }
        for (field, values) in [
            ("exposedPorts", &metadata.exposed_ports),
            ("unexposedPorts", &metadata.unexposed_ports),
            ("volumes", &metadata.volumes),
            ("unmountedVolumes", &metadata.unmounted_volumes),
        ] {
            if let Some(index) = values.iter().position(String::is_empty) {
                return Err(invalid(
                    format!("metadataTest.{field}[{index}]"),
                    "value cannot be empty",
                ));
            }
        }
    }
    Ok(())
}

/// The paths (relative to the root, no leading `/`) whose content the tests read: pass them
/// as `extra` to [`crate::view::wanted`] when reading the image.
///
/// These are the paths as written. A path reached through a symlink (`/bin/sh` →
/// `dash`, or `/lib/…` in a merged-`/usr` image) has its content stored under the target;
/// when the file list is known before contents are read, [`paths_read_resolved`] adds those.
pub fn paths_read(tests: &StructureTests) -> Vec<String> {
    let paths: BTreeSet<String> = tests
        .file_content_tests
        .iter()
        .map(|test| clean_path(&test.path))
        .filter(|path| !path.is_empty())
        .collect();
    paths.into_iter().collect()
}

/// [`paths_read`], plus where each path leads through the symlinks of `files` (the merged
/// file list of the image, keyed by path without leading `/`).
pub fn paths_read_resolved(tests: &StructureTests, files: &BTreeMap<String, FileInfo>) -> Vec<String> {
    let mut paths: BTreeSet<String> = paths_read(tests).into_iter().collect();
    for test in &tests.file_content_tests {
        if let Ok(node) = resolve(files, &test.path, true)
            && !node.path.is_empty()
        {
            paths.insert(node.path);
        }
    }
    paths.into_iter().collect()
}

/// Evaluates every test of `tests` against `view`, in upstream's order: command tests,
/// file existence, file content, license tests, metadata checks, then run options.
pub fn evaluate(tests: &StructureTests, view: &ImageView) -> Vec<TestResult> {
    let runtime = view.config.config.clone().unwrap_or_default();
    let env = env_map(&runtime);
    let mut results = Vec::new();
    for test in &tests.command_tests {
        results.push(TestResult::new(
            TestKind::Command,
            test.name.clone(),
            TestStatus::Unsupported,
            COMMAND_REASON,
        ));
    }
    for test in &tests.file_existence_tests {
        results.push(file_existence(test, view, &env));
    }
    for test in &tests.file_content_tests {
        results.push(file_content(test, view));
    }
    for (index, test) in tests.license_tests.iter().enumerate() {
        let mut name = format!("licenseTests[{index}]");
        if test.debian {
            name.push_str(" debian");
        }
        results.push(TestResult::new(
            TestKind::License,
            name,
            TestStatus::Unsupported,
            LICENSE_REASON,
        ));
    }
    if let Some(metadata) = &tests.metadata_test {
        metadata_checks(metadata, &runtime, &env, &mut results);
    }
    if !tests.global_env_vars.is_empty() {
        let keys: Vec<&str> = tests.global_env_vars.iter().map(|pair| pair.key.as_str()).collect();
        results.push(TestResult::new(
            TestKind::GlobalEnvVars,
            format!("globalEnvVars {}", keys.join(", ")),
            TestStatus::Unsupported,
            GLOBAL_ENV_REASON,
        ));
    }
    if let Some(options) = &tests.container_run_options
        && *options != ContainerRunOptions::default()
    {
        results.push(TestResult::new(
            TestKind::ContainerRunOptions,
            "containerRunOptions",
            TestStatus::Unsupported,
            RUN_OPTIONS_REASON,
        ));
    }
    results
}

/// Counts `(passed, failed, unsupported)`.
pub fn summary(results: &[TestResult]) -> (usize, usize, usize) {
    results
        .iter()
        .fold((0, 0, 0), |(passed, failed, unsupported), result| match result.status {
            TestStatus::Passed => (passed + 1, failed, unsupported),
            TestStatus::Failed => (passed, failed + 1, unsupported),
            TestStatus::Unsupported => (passed, failed, unsupported + 1),
        })
}

fn file_existence(test: &FileExistenceTest, view: &ImageView, env: &BTreeMap<String, String>) -> TestResult {
    let kind = TestKind::FileExistence;
    let path = expand_env(&test.path, env);
    let node = match (resolve(&view.files, &path, false), test.should_exist) {
        (Err(error), true) => {
            return TestResult::new(
                kind,
                &test.name,
                TestStatus::Failed,
                format!("{path} should exist but does not: {error}"),
            );
        }
        (Err(_), false) => {
            return TestResult::new(kind, &test.name, TestStatus::Passed, format!("{path} does not exist"));
        }
        (Ok(node), false) => {
            return TestResult::new(
                kind,
                &test.name,
                TestStatus::Failed,
                format!("{path} should not exist but does (/{}, {})", node.path, ls_mode(&node)),
            );
        }
        (Ok(node), true) => node,
    };
    let mut problems = Vec::new();
    if let Some(expected) = test.permissions.as_deref().filter(|expected| !expected.is_empty()) {
        let (ls, go) = (ls_mode(&node), go_mode(&node));
        if expected != ls && expected != go {
            problems.push(format!(
                "{path} has permissions {ls} (Go form {go}), expected {expected}"
            ));
        }
    }
    if let Some(by) = test.is_executable_by
        && node.mode & by.bits() == 0
    {
        problems.push(format!(
            "{path} is not executable by {}: {}",
            by.as_str(),
            ls_mode(&node)
        ));
    }
    if let Some(uid) = test.uid.filter(|uid| *uid != -1)
        && i128::from(uid) != i128::from(node.uid)
    {
        problems.push(format!("{path} is owned by uid {}, expected {uid}", node.uid));
    }
    if let Some(gid) = test.gid.filter(|gid| *gid != -1)
        && i128::from(gid) != i128::from(node.gid)
    {
        problems.push(format!("{path} has gid {}, expected {gid}", node.gid));
    }
    let link = match (&node.kind, &node.link_target) {
        (FileKind::Symlink, Some(target)) => format!(", a symlink to {target}"),
        _ => String::new(),
    };
    TestResult::checked(
        kind,
        &test.name,
        problems,
        format!(
            "{path} exists ({}, uid {}, gid {}{link})",
            ls_mode(&node),
            node.uid,
            node.gid
        ),
    )
}

fn file_content(test: &FileContentTest, view: &ImageView) -> TestResult {
    let kind = TestKind::FileContent;
    let fail = |message: String| TestResult::new(kind, &test.name, TestStatus::Failed, message);
    let path = &test.path;
    let node = match resolve(&view.files, path, true) {
        Ok(node) => node,
        Err(error) => return fail(format!("cannot read {path}: {error}")),
    };
    match node.kind {
        FileKind::File | FileKind::Hardlink => {}
        FileKind::Dir => return fail(format!("cannot read {path}: it is a directory, not a file")),
        FileKind::Symlink | FileKind::Other => return fail(format!("cannot read {path}: not a regular file")),
    }
    let Some(bytes) = view.content(&node.path) else {
        return fail(format!(
            "content of {path} (/{}) was not kept when the image was read (see structure::paths_read)",
            node.path
        ));
    };
    let content = String::from_utf8_lossy(bytes);
    let mut problems = Vec::new();
    for pattern in &test.expected_contents {
        match compile(pattern) {
            Ok(regex) if regex.is_match(&content) => {}
            Ok(_) => problems.push(format!("expected content {pattern:?} not found in {path}")),
            Err(reason) => problems.push(reason),
        }
    }
    for pattern in &test.excluded_contents {
        match compile(pattern) {
            Ok(regex) => {
                if let Some(found) = regex.find(&content) {
                    problems.push(format!(
                        "excluded content {pattern:?} found in {path}: {:?}",
                        excerpt(found.as_str())
                    ));
                }
            }
            Err(reason) => problems.push(reason),
        }
    }
    let via = if clean_path(path) == node.path {
        String::new()
    } else {
        format!(" (/{})", node.path)
    };
    TestResult::checked(
        kind,
        &test.name,
        problems,
        format!(
            "{path}{via}: {} expected and {} excluded patterns hold ({} bytes)",
            test.expected_contents.len(),
            test.excluded_contents.len(),
            bytes.len()
        ),
    )
}

fn metadata_checks(
    test: &MetadataTest,
    runtime: &RuntimeConfig,
    env: &BTreeMap<String, String>,
    results: &mut Vec<TestResult>,
) {
    let kind = TestKind::Metadata;
    let check = |name: String, problem: Option<String>, passed: String| {
        TestResult::checked(kind, name, problem.into_iter().collect(), passed)
    };
    for pair in &test.env_vars {
        let problem = value_problem("env var", pair, env.get(&pair.key));
        results.push(check(
            format!("envVars {}", pair.key),
            problem,
            format!("{}={}", pair.key, pair_actual(env.get(&pair.key))),
        ));
    }
    for pair in &test.unbound_env_vars {
        let problem = env
            .get(&pair.key)
            .map(|value| format!("env var {} should not be set but is {value:?}", pair.key));
        results.push(check(
            format!("unboundEnvVars {}", pair.key),
            problem,
            format!("{} is not set", pair.key),
        ));
    }
    for pair in &test.labels {
        let actual = runtime.labels.get(&pair.key);
        let problem = value_problem("label", pair, actual);
        results.push(check(
            format!("labels {}", pair.key),
            problem,
            format!("{}={}", pair.key, pair_actual(actual)),
        ));
    }
    for (name, expected, actual) in [
        ("entrypoint", &test.entrypoint, &runtime.entrypoint),
        ("cmd", &test.cmd, &runtime.cmd),
    ] {
        if let Some(expected) = expected {
            let actual = actual.clone().unwrap_or_default();
            let problem = (*expected != actual).then(|| format!("image {name} is {actual:?}, expected {expected:?}"));
            results.push(check(name.to_string(), problem, format!("{name} is {actual:?}")));
        }
    }
    for (name, expected, actual) in [
        ("workdir", &test.workdir, &runtime.working_dir),
        ("user", &test.user, &runtime.user),
    ] {
        if let Some(expected) = expected.as_deref().filter(|expected| !expected.is_empty()) {
            let actual = actual.as_deref().unwrap_or_default();
            let problem = (expected != actual).then(|| format!("image {name} is {actual:?}, expected {expected:?}"));
            results.push(check(name.to_string(), problem, format!("{name} is {actual:?}")));
        }
    }
    let exposed = |port: &str| {
        runtime
            .exposed_ports
            .keys()
            .any(|key| key == port || key.split('/').next() == Some(port))
    };
    let ports: Vec<&str> = runtime.exposed_ports.keys().map(String::as_str).collect();
    for port in &test.exposed_ports {
        let problem = (!exposed(port)).then(|| format!("port {port} is not exposed (exposed: {ports:?})"));
        results.push(check(
            format!("exposedPorts {port}"),
            problem,
            format!("port {port} is exposed"),
        ));
    }
    for port in &test.unexposed_ports {
        let problem = exposed(port).then(|| format!("port {port} should not be exposed but is"));
        results.push(check(
            format!("unexposedPorts {port}"),
            problem,
            format!("port {port} is not exposed"),
        ));
    }
    let volumes: Vec<&str> = runtime.volumes.keys().map(String::as_str).collect();
    for volume in &test.volumes {
        let problem = (!runtime.volumes.contains_key(volume))
            .then(|| format!("volume {volume} is not declared (volumes: {volumes:?})"));
        results.push(check(
            format!("volumes {volume}"),
            problem,
            format!("volume {volume} is declared"),
        ));
    }
    for volume in &test.unmounted_volumes {
        let problem = runtime
            .volumes
            .contains_key(volume)
            .then(|| format!("volume {volume} should not be declared but is"));
        results.push(check(
            format!("unmountedVolumes {volume}"),
            problem,
            format!("volume {volume} is not declared"),
        ));
    }
}

fn pair_actual(actual: Option<&String>) -> String {
    actual.map(|value| format!("{value:?}")).unwrap_or_default()
}

/// What is wrong with `actual` for an env var or label `pair`, if anything.
fn value_problem(what: &str, pair: &KeyValue, actual: Option<&String>) -> Option<String> {
    let Some(actual) = actual else {
        return Some(format!("{what} {} is not set", pair.key));
    };
    if pair.is_regex {
        match compile(&pair.value) {
            Ok(regex) if regex.is_match(actual) => None,
            Ok(_) => Some(format!(
                "{what} {} is {actual:?}, which does not match regex {:?}",
                pair.key, pair.value
            )),
            Err(reason) => Some(reason),
        }
    } else if *actual == pair.value {
        None
    } else {
        Some(format!("{what} {} is {actual:?}, expected {:?}", pair.key, pair.value))
    }
}

fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|error| format!("invalid regex {pattern:?}: {error}"))
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The image environment as a map; the value of `KEY=value` is everything after the first `=`.
fn env_map(runtime: &RuntimeConfig) -> BTreeMap<String, String> {
    runtime
        .env
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (entry.clone(), String::new()),
        })
        .collect()
}

/// Go's `os.Expand` over the image environment: `$NAME`, `${NAME}`, one-character special
/// names (`$1`, `$@`…); unset names expand to nothing; a `$` not followed by a name stays.
fn expand_env(text: &str, env: &BTreeMap<String, String>) -> String {
    let lookup = |name: &str| env.get(name).cloned().unwrap_or_default();
    let special = |c: char| matches!(c, '*' | '#' | '$' | '@' | '!' | '?' | '-') || c.is_ascii_digit();
    let name_char = |c: char| c == '_' || c.is_ascii_alphanumeric();
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut chars = after.chars();
        match chars.next() {
            None => {
                out.push('$');
                rest = after;
            }
            Some('{') => match after.find('}') {
                // `${}`: bad syntax, dropped like Go does.
                Some(1) => rest = &after[2..],
                Some(end) => {
                    out.push_str(&lookup(&after[1..end]));
                    rest = &after[end + 1..];
                }
                // No closing brace: Go drops the `${`.
                None => rest = &after[1..],
            },
            Some(c) if special(c) => {
                out.push_str(&lookup(&after[..c.len_utf8()]));
                rest = &after[c.len_utf8()..];
            }
            Some(_) => {
                let end = after.find(|c: char| !name_char(c)).unwrap_or(after.len());
                if end == 0 {
                    out.push('$');
                } else {
                    out.push_str(&lookup(&after[..end]));
                }
                rest = &after[end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `path` relative to the root, `.` and empty components dropped (`..` kept).
fn clean_path(path: &str) -> String {
    path.split('/')
        .filter(|component| !component.is_empty() && *component != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// One entry of the filesystem as a test sees it (synthesised for the root and for parent
/// directories the layers never listed).
#[derive(Debug, Clone)]
struct Node {
    path: String,
    kind: FileKind,
    mode: u32,
    uid: u64,
    gid: u64,
    link_target: Option<String>,
}

impl Node {
    fn from_info(info: &FileInfo) -> Node {
        Node {
            path: info.path.clone(),
            kind: info.kind,
            mode: info.mode,
            uid: info.uid,
            gid: info.gid,
            link_target: info.link_target.clone(),
        }
    }

    /// A directory that exists only because something is under it (the root, or a parent
    /// a layer did not list): `0755 root:root`, as runtimes create them.
    fn implicit_dir(path: &str) -> Node {
        Node {
            path: path.to_string(),
            kind: FileKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            link_target: None,
        }
    }
}

#[derive(Debug)]
enum LookupError {
    NotFound(String),
    NotADirectory(String),
    TooManyLinks,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NotFound(path) => write!(f, "no such file or directory: /{path}"),
            LookupError::NotADirectory(path) => write!(f, "not a directory: /{path}"),
            LookupError::TooManyLinks => write!(f, "more than {MAX_SYMLINK_HOPS} levels of symbolic links"),
        }
    }
}

fn node_at(files: &BTreeMap<String, FileInfo>, path: &str) -> Option<Node> {
    if let Some(info) = files.get(path) {
        return Some(Node::from_info(info));
    }
    if path.is_empty() {
        return Some(Node::implicit_dir(""));
    }
    let prefix = format!("{path}/");
    files
        .range(prefix.clone()..)
        .next()
        .is_some_and(|(key, _)| key.starts_with(&prefix))
        .then(|| Node::implicit_dir(path))
}

/// Resolves `path` (absolute or relative to the root) in `files`, following symlinks of
/// intermediate components, and of the last one when `follow_final`.
fn resolve(files: &BTreeMap<String, FileInfo>, path: &str, follow_final: bool) -> Result<Node, LookupError> {
    let mut pending: VecDeque<String> = components(path).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let candidate = if resolved.is_empty() {
            component.clone()
        } else {
            format!("{}/{component}", resolved.join("/"))
        };
        let node = node_at(files, &candidate).ok_or_else(|| LookupError::NotFound(candidate.clone()))?;
        let last = pending.is_empty();
        if node.kind == FileKind::Symlink && (!last || follow_final) {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(LookupError::TooManyLinks);
            }
            let target = node.link_target.unwrap_or_default();
            if target.is_empty() {
                return Err(LookupError::NotFound(candidate));
            }
            if target.starts_with('/') {
                resolved.clear();
            }
            for part in components(&target).collect::<Vec<_>>().into_iter().rev() {
                pending.push_front(part);
            }
            continue;
        }
        if !last && node.kind != FileKind::Dir {
            return Err(LookupError::NotADirectory(candidate));
        }
        resolved.push(component);
    }
    let path = resolved.join("/");
    node_at(files, &path).ok_or(LookupError::NotFound(path))
}

fn components(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/')
        .filter(|component| !component.is_empty() && *component != ".")
        .map(str::to_string)
}

fn rwx(mode: u32, lowercase_special: [Option<char>; 3]) -> String {
    let mut out = String::with_capacity(9);
    for (index, shift) in [6u32, 3, 0].into_iter().enumerate() {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & 0o4 != 0 { 'r' } else { '-' });
        out.push(if bits & 0o2 != 0 { 'w' } else { '-' });
        let execute = bits & 0o1 != 0;
        out.push(match (lowercase_special[index], execute) {
            (Some(special), true) => special,
            (Some(special), false) => special.to_ascii_uppercase(),
            (None, true) => 'x',
            (None, false) => '-',
        });
    }
    out
}

/// The mode as `ls -l` prints it: `drwxrwxrwt`, `-rwsr-xr-x`, `lrwxrwxrwx`.
fn ls_mode(node: &Node) -> String {
    let kind = match node.kind {
        FileKind::File | FileKind::Hardlink => '-',
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::Other => '?',
    };
    let special = [
        (node.mode & 0o4000 != 0).then_some('s'),
        (node.mode & 0o2000 != 0).then_some('s'),
        (node.mode & 0o1000 != 0).then_some('t'),
    ];
    format!("{kind}{}", rwx(node.mode, special))
}

/// The mode as Go's `FileMode.String()` prints it (what upstream compares with):
/// `dtrwxrwxrwx`, `urwxr-xr-x`, `Lrwxrwxrwx`, `-rw-r--r--`.
fn go_mode(node: &Node) -> String {
    let mut prefix = String::new();
    match node.kind {
        FileKind::Dir => prefix.push('d'),
        FileKind::Symlink => prefix.push('L'),
        _ => {}
    }
    for (bit, letter) in [(0o4000, 'u'), (0o2000, 'g'), (0o1000, 't')] {
        if node.mode & bit != 0 {
            prefix.push(letter);
        }
    }
    if node.kind == FileKind::Other {
        prefix.push('?');
    }
    if prefix.is_empty() {
        prefix.push('-');
    }
    format!("{prefix}{}", rwx(node.mode, [None; 3]))
}

fn yes() -> bool {
    true
}

/// A YAML scalar read as a string whatever its type (`8080`, `true`, `1.5`), as Go's YAML
/// decoder fills string fields.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (or another scalar)")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Scalar, E> {
                Ok(Scalar(value.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Scalar, E> {
                Ok(Scalar(value))
            }
            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Scalar, E> {
                Ok(Scalar(value.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Scalar, E> {
                Ok(Scalar(value.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Scalar, E> {
                Ok(Scalar(value.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Scalar, E> {
                Ok(Scalar(value.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Scalar::deserialize(deserializer)?.0)
}

fn nullable_scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(optional_scalar(deserializer)?.unwrap_or_default())
}

fn optional_scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(deserializer)?.map(|scalar| scalar.0))
}

fn scalars<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(optional_scalars(deserializer)?.unwrap_or_default())
}

fn optional_scalars<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<Vec<Scalar>>::deserialize(deserializer)?
        .map(|values| values.into_iter().map(|scalar| scalar.0).collect()))
}

fn scalar_lists<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<String>>, D::Error> {
    Ok(Option::<Vec<Vec<Scalar>>>::deserialize(deserializer)?
        .unwrap_or_default()
        .into_iter()
        .map(|values| values.into_iter().map(|scalar| scalar.0).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: FileKind, mode: u32) -> Node {
        Node {
            path: "x".to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            link_target: None,
        }
    }

    #[test]
    fn mode_strings() {
        let cases = [
            (FileKind::Dir, 0o1777, "drwxrwxrwt", "dtrwxrwxrwx"),
            (FileKind::File, 0o4755, "-rwsr-xr-x", "urwxr-xr-x"),
            (FileKind::File, 0o2644, "-rw-r-Sr--", "grw-r--r--"),
            (FileKind::File, 0o644, "-rw-r--r--", "-rw-r--r--"),
            (FileKind::Hardlink, 0o755, "-rwxr-xr-x", "-rwxr-xr-x"),
            (FileKind::Symlink, 0o777, "lrwxrwxrwx", "Lrwxrwxrwx"),
            (FileKind::Dir, 0o1776, "drwxrwxrwT", "dtrwxrwxrw-"),
        ];
        for (kind, mode, ls, go) in cases {
            let node = node(kind, mode);
            assert_eq!(ls_mode(&node), ls, "{mode:o}");
            assert_eq!(go_mode(&node), go, "{mode:o}");
        }
    }

    #[test]
    fn expands_like_go() {
        let env: BTreeMap<String, String> = [("HOME", "/home/app"), ("A_1", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(expand_env("$HOME/.config", &env), "/home/app/.config");
        assert_eq!(expand_env("${HOME}x/$A_1", &env), "/home/appx/x");
        assert_eq!(expand_env("/a/$UNSET/b", &env), "/a//b");
        assert_eq!(expand_env("/cost$", &env), "/cost$");
        assert_eq!(expand_env("/a$/b", &env), "/a$/b");
        assert_eq!(expand_env("/plain", &env), "/plain");
    }
}
