//! Policy in Rego, evaluated with [regorus](https://docs.rs/regorus).
//!
//! A *rule* is a Rego package `rebake.policy.<rule>` that defines a set `deny` of
//! human-readable messages (Rego v1 syntax: `deny contains msg if { ... }`). An image
//! passes when every enabled rule's `data.rebake.policy.<rule>.deny` is empty; otherwise
//! each message becomes a [`Denial`].
//!
//! # Rules
//!
//! Built in (the files in `crates/rebake-scanner/policies/`, compiled into the binary):
//!
//! | rule | denies when |
//! | --- | --- |
//! | `no_fixable_critical_high` | a `critical` or `high` finding has a `fixed_version` |
//! | `non_root_user` | `config.user` is empty, `root`, `0`, `root:…` or `0:…`, unless `settings.allow_root` |
//! | `base_pinned` | `base.pinned` is false and `base.ref` is not `scratch` |
//! | `image_size` | `image.size_bytes` > `settings.max_image_size_bytes` |
//! | `required_labels` | a label of `settings.required_labels` is missing or blank in `config.labels` |
//! | `structure_tests_pass` | a `structure` entry has status `failed` |
//!
//! "Pinned" for `base_pinned` means the *spec* names the base by digest (or it is
//! `scratch`): Rebake resolves tags to digests at build time anyway, so `base.digest` is
//! always set; the caller fills `base.pinned`.
//!
//! [`PolicySet::with_overrides`] reads a directory of `.rego` files (not recursively;
//! hidden files and `*_test.rego` are skipped). A file named `<rule>.rego` after a
//! built-in replaces it and must declare `package rebake.policy.<rule>`. Any other file
//! adds a rule: its package must be `rebake.policy.<name>` (exactly one segment after
//! `rebake.policy.`), and the rule is `<name>`; several files may share a package (they
//! make one rule), but only the file named after a built-in can use a built-in's package.
//! Every rule is evaluated in its own engine, with only its own files loaded.
//! [`PolicySet::disabled`] turns rules off by name.
//!
//! A user policy that does not parse, or fails when evaluated (also against an empty
//! input at load time), is an error naming its file(s) and carrying regorus' message —
//! never a silent pass.
//!
//! # The input document
//!
//! `input` is [`PolicyInput`] serialised as JSON. Every field is always present (empty
//! strings, lists and objects when unknown), except the noted `null`s:
//!
//! ```text
//! input.image      {name, digest, repository, size_bytes, platforms: [string]}
//! input.config     {user, entrypoint: [string], cmd: [string], env: {K: V}, workdir,
//!                   labels: {K: V}, exposed_ports: ["8080/tcp"]}
//! input.base       {ref, digest, pinned: bool}
//! input.sbom       {components: [{ecosystem, name, version, purl, licenses: [string], layer}]}
//! input.findings   [{id, aliases: [string], severity, cvss_score (number or null), package,
//!                    installed_version, fixed_version (string or null)}]
//! input.structure  [{kind, name, status, message}]
//! input.lineage    {build_id, inputs_hash, sources: [{url, ref, commit}],
//!                   packages: [{name, version, architecture}]}
//! input.settings   {max_image_size_bytes, required_labels: [string], allow_root: bool}
//! ```
//!
//! - `severity` is one of `critical`, `high`, `medium`, `low`, `none`, `unknown`.
//! - `status` is one of `passed`, `failed`, `unsupported`.
//! - `size_bytes` is config plus compressed layers (an index: its largest platform).
//! - `config.user` is the image config's `User` as written; empty means root.
//! - `ecosystem` is the OSV ecosystem name (`Debian`, `Alpine`, `crates.io`, `PyPI`, ...).
//!
//! `crates/rebake-scanner/policies/README.md` documents the same for policy authors, and
//! `crates/rebake-scanner/tests/data/rego/input.json` is a complete example.

mod input;

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use regorus::{Engine, utils::limits::ExecutionTimerConfig};

pub use input::{
    BaseInfo, Finding, ImageConfig, ImageInfo, Lineage, LineagePackage, LineageSource, PolicyInput, SbomComponent,
    SbomInfo, Settings, Severity, StructureResult, StructureStatus,
};

/// Package prefix every rule's package starts with.
pub const PACKAGE_PREFIX: &str = "rebake.policy.";

/// The built-in rules: name and source.
pub const BUILTIN: &[(&str, &str)] = &[
    ("base_pinned", include_str!("../../policies/base_pinned.rego")),
    ("image_size", include_str!("../../policies/image_size.rego")),
    (
        "no_fixable_critical_high",
        include_str!("../../policies/no_fixable_critical_high.rego"),
    ),
    ("non_root_user", include_str!("../../policies/non_root_user.rego")),
    ("required_labels", include_str!("../../policies/required_labels.rego")),
    (
        "structure_tests_pass",
        include_str!("../../policies/structure_tests_pass.rego"),
    ),
];

/// Longest a rule may evaluate before it is stopped (an error).
const EVAL_TIME_LIMIT: Duration = Duration::from_secs(10);

/// A rule's verdict on one image: one message of its `deny` set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Denial {
    /// The rule (`non_root_user`, or a custom rule's package's last segment).
    pub rule: String,
    /// The message, as the policy wrote it.
    pub message: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule, self.message)
    }
}

/// Why policies could not be loaded or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The override directory or a file in it could not be read.
    #[error("cannot read policy {}: {message}", path.display())]
    Read {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A policy file does not parse.
    #[error("policy {file} does not parse: {message}")]
    Parse {
        /// The file (`builtin:<rule>.rego` for a built-in).
        file: String,
        /// Regorus' message.
        message: String,
    },
    /// A policy file's package is not one Rebake accepts.
    #[error("policy {file} has package {package}: {reason}")]
    Package {
        /// The file.
        file: String,
        /// Its package (without `data.`).
        package: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Evaluating a rule failed.
    #[error("policy rule {rule} ({}) failed to evaluate: {message}", files.join(", "))]
    Eval {
        /// The rule.
        rule: String,
        /// The files that make it.
        files: Vec<String>,
        /// Regorus' message, or what was wrong with the result.
        message: String,
    },
    /// The input document could not be serialised.
    #[error("cannot serialise policy input: {0}")]
    Input(String),
}

/// One rule: its files and its engine with them loaded.
#[derive(Debug, Clone)]
struct Rule {
    /// Names of its files (paths for user files, `builtin:<rule>.rego` for built-ins).
    files: Vec<String>,
    /// Whether it is the built-in.
    builtin: bool,
    /// Engine with the files loaded and prepared, or why it could not be made.
    engine: Result<Engine, PolicyError>,
}

/// The rules an image is checked against.
#[derive(Debug, Clone)]
pub struct PolicySet {
    rules: BTreeMap<String, Rule>,
    /// Rules not evaluated, by name (built-in or custom). Names that match no rule are
    /// ignored; see [`PolicySet::unknown_disabled`].
    pub disabled: Vec<String>,
}

impl PolicySet {
    /// The built-in rules only.
    pub fn builtin() -> Self {
        let rules = BUILTIN
            .iter()
            .map(|(name, source)| {
                let file = builtin_file(name);
                let engine = build_engine(name, &[(file.clone(), (*source).to_string())]);
                (
                    (*name).to_string(),
                    Rule {
                        files: vec![file],
                        builtin: true,
                        engine,
                    },
                )
            })
            .collect();
        PolicySet {
            rules,
            disabled: Vec::new(),
        }
    }

    /// The built-in rules, with the `.rego` files of `dir` replacing built-ins (a file
    /// `<rule>.rego`) or adding rules (any other file; see the module docs).
    ///
    /// Every user file is parsed and every user rule evaluated once against an empty
    /// input; any failure is an error naming the file.
    pub fn with_overrides(dir: &Path) -> Result<Self, PolicyError> {
        let mut set = PolicySet::builtin();
        let read_error = |path: &Path, error: std::io::Error| PolicyError::Read {
            path: path.to_path_buf(),
            message: error.to_string(),
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|error| read_error(dir, error))? {
            let path = entry.map_err(|error| read_error(dir, error))?.path();
            let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if file_name.starts_with('.')
                || !file_name.ends_with(".rego")
                || file_name.ends_with("_test.rego")
                || !path.is_file()
            {
                continue;
            }
            paths.push(path);
        }
        paths.sort();

        let mut user_rules: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for path in paths {
            let source = std::fs::read_to_string(&path).map_err(|error| read_error(&path, error))?;
            let file = path.display().to_string();
            let stem = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or_default()
                .to_string();
            let rule = rule_of(&file, &source)?;
            let replaces_builtin = set.rules.get(&stem).is_some_and(|rule| rule.builtin);
            if replaces_builtin && rule != stem {
                return Err(PolicyError::Package {
                    file,
                    package: format!("{PACKAGE_PREFIX}{rule}"),
                    reason: format!(
                        "a file named after the built-in rule {stem} replaces it and must declare \
                         package {PACKAGE_PREFIX}{stem}"
                    ),
                });
            }
            let is_builtin_name = BUILTIN.iter().any(|(name, _)| *name == rule);
            if is_builtin_name && !replaces_builtin {
                return Err(PolicyError::Package {
                    file,
                    package: format!("{PACKAGE_PREFIX}{rule}"),
                    reason: format!("{rule} is a built-in rule; only a file named {rule}.rego can replace it"),
                });
            }
            user_rules.entry(rule).or_default().push((file, source));
        }

        for (name, files) in user_rules {
            let engine = build_engine(&name, &files)?;
            set.rules.insert(
                name,
                Rule {
                    files: files.into_iter().map(|(file, _)| file).collect(),
                    builtin: false,
                    engine: Ok(engine),
                },
            );
        }
        Ok(set)
    }

    /// The same set with `disabled` rules turned off.
    pub fn with_disabled(mut self, disabled: Vec<String>) -> Self {
        self.disabled = disabled;
        self
    }

    /// Names of every rule, enabled or not, sorted.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.keys().map(String::as_str).collect()
    }

    /// Names of enabled rules, sorted.
    pub fn enabled_rules(&self) -> Vec<&str> {
        self.rules
            .keys()
            .filter(|name| !self.disabled.contains(name))
            .map(String::as_str)
            .collect()
    }

    /// Entries of [`PolicySet::disabled`] that name no rule (worth a warning: a typo
    /// leaves the rule on).
    pub fn unknown_disabled(&self) -> Vec<&str> {
        self.disabled
            .iter()
            .filter(|name| !self.rules.contains_key(name.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// The files that make `rule` (`builtin:<rule>.rego` for a built-in), if it exists.
    pub fn rule_files(&self, rule: &str) -> Option<&[String]> {
        self.rules.get(rule).map(|rule| rule.files.as_slice())
    }

    /// Evaluates every enabled rule against `input`. Returns the denials, sorted by rule
    /// then message; empty means the image passes. A rule that fails to evaluate is an
    /// error (naming its files), not a pass.
    pub fn evaluate(&self, input: &PolicyInput) -> Result<Vec<Denial>, PolicyError> {
        let input_json = serde_json::to_string(input).map_err(|error| PolicyError::Input(error.to_string()))?;
        let input_value =
            regorus::Value::from_json_str(&input_json).map_err(|error| PolicyError::Input(error.to_string()))?;
        let mut denials = Vec::new();
        for (name, rule) in &self.rules {
            if self.disabled.contains(name) {
                continue;
            }
            let mut engine = rule.engine.clone()?;
            engine.set_input(input_value.clone());
            let messages = eval_deny(&mut engine, name, &rule.files)?;
            denials.extend(messages.into_iter().map(|message| Denial {
                rule: name.clone(),
                message,
            }));
        }
        denials.sort();
        denials.dedup();
        Ok(denials)
    }
}

impl Default for PolicySet {
    fn default() -> Self {
        PolicySet::builtin()
    }
}

fn builtin_file(rule: &str) -> String {
    format!("builtin:{rule}.rego")
}

fn new_engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: EVAL_TIME_LIMIT,
        check_interval: NonZeroU32::MIN,
    });
    engine
}

/// Parses `source` alone and returns the rule its package names.
fn rule_of(file: &str, source: &str) -> Result<String, PolicyError> {
    let mut engine = new_engine();
    let package = engine
        .add_policy(file.to_string(), source.to_string())
        .map_err(|error| PolicyError::Parse {
            file: file.to_string(),
            message: format!("{error:#}"),
        })?;
    let package = package.strip_prefix("data.").unwrap_or(&package).to_string();
    let Some(rule) = package.strip_prefix(PACKAGE_PREFIX) else {
        return Err(PolicyError::Package {
            file: file.to_string(),
            package,
            reason: format!("a policy's package must start with {PACKAGE_PREFIX}"),
        });
    };
    let valid = !rule.is_empty()
        && rule.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !rule.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(PolicyError::Package {
            file: file.to_string(),
            package: package.clone(),
            reason: format!("a policy's package must be {PACKAGE_PREFIX}<rule>, one plain name"),
        });
    }
    Ok(rule.to_string())
}

/// An engine with `files` loaded, prepared by one evaluation of the rule's `deny` set
/// against an empty input (which also catches policies that fail to evaluate at all).
fn build_engine(rule: &str, files: &[(String, String)]) -> Result<Engine, PolicyError> {
    let mut engine = new_engine();
    for (file, source) in files {
        engine
            .add_policy(file.clone(), source.clone())
            .map_err(|error| PolicyError::Parse {
                file: file.clone(),
                message: format!("{error:#}"),
            })?;
    }
    let names: Vec<String> = files.iter().map(|(file, _)| file.clone()).collect();
    let empty =
        serde_json::to_string(&PolicyInput::default()).map_err(|error| PolicyError::Input(error.to_string()))?;
    let mut probe = engine.clone();
    probe
        .set_input_json(&empty)
        .map_err(|error| PolicyError::Input(error.to_string()))?;
    eval_deny(&mut probe, rule, &names)?;
    // The probe is prepared; keep it (its input is replaced on every evaluation).
    Ok(probe)
}

/// Evaluates `data.rebake.policy.<rule>.deny` and returns its messages.
fn eval_deny(engine: &mut Engine, rule: &str, files: &[String]) -> Result<Vec<String>, PolicyError> {
    let eval_error = |message: String| PolicyError::Eval {
        rule: rule.to_string(),
        files: files.to_vec(),
        message,
    };
    let path = format!("data.{PACKAGE_PREFIX}{rule}.deny");
    let value = engine.eval_rule(path.clone()).map_err(|error| {
        let message = format!("{error:#}");
        if message.contains("not a valid rule path") {
            eval_error(format!("the policy defines no rule {path} ({message})"))
        } else {
            eval_error(message)
        }
    })?;
    if value == regorus::Value::Undefined {
        return Ok(Vec::new());
    }
    let json = value.to_json_str().map_err(|error| eval_error(format!("{error:#}")))?;
    let json: serde_json::Value = serde_json::from_str(&json).map_err(|error| eval_error(error.to_string()))?;
    let serde_json::Value::Array(items) = json else {
        return Err(eval_error(format!("deny must be a set of strings, got {json}")));
    };
    items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::String(message) => Ok(message),
            // Conftest-style `{"msg": "..."}` objects are accepted too.
            serde_json::Value::Object(ref object) => match object.get("msg") {
                Some(serde_json::Value::String(message)) => Ok(message.clone()),
                _ => Err(eval_error(format!(
                    "deny must hold strings (or objects with a string msg), got {item}"
                ))),
            },
            other => Err(eval_error(format!("deny must hold strings, got {other}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_compiles_and_allows_an_empty_input_with_generous_settings() {
        let set = PolicySet::builtin();
        for (name, rule) in &set.rules {
            assert!(rule.engine.is_ok(), "{name}: {:?}", rule.engine);
            assert_eq!(rule.files, [format!("builtin:{name}.rego")]);
        }
        let mut input = PolicyInput::default();
        input.config.user = "app".to_string();
        input.base.pinned = true;
        input.settings.max_image_size_bytes = 1;
        assert_eq!(set.evaluate(&input), Ok(Vec::new()));
    }

    #[test]
    fn package_names() {
        assert_eq!(rule_of("a.rego", "package rebake.policy.x\n"), Ok("x".to_string()));
        assert!(matches!(
            rule_of("a.rego", "package rebake.policy.x.y\n"),
            Err(PolicyError::Package { .. })
        ));
        assert!(matches!(
            rule_of("a.rego", "package rebake\n"),
            Err(PolicyError::Package { .. })
        ));
    }
}
