//! Language packages from lock files: `Cargo.lock`, `package-lock.json`,
//! `requirements.txt`, `poetry.lock`, `go.mod`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::layer_of;
use super::purl::{purl, purl_with_path, pypi_normalize};
use crate::component::{Component, Ecosystem};
use crate::view::ImageView;

/// Every language package of every lock file kept in `view`.
pub(crate) fn lock_file_components(view: &ImageView) -> Vec<Component> {
    let mut out = Vec::new();
    for (path, bytes) in &view.contents {
        let file_name = path.rsplit('/').next().unwrap_or(path);
        let text = String::from_utf8_lossy(bytes);
        let found: Vec<(Ecosystem, String, String)> = match file_name {
            "Cargo.lock" => cargo_lock(&text),
            "package-lock.json" => package_lock(&text),
            "requirements.txt" => requirements_txt(&text),
            "poetry.lock" => poetry_lock(&text),
            "go.mod" => go_mod(&text),
            _ => continue,
        };
        let layer = layer_of(view, path);
        let mut seen = BTreeSet::new();
        for (ecosystem, name, version) in found {
            if name.is_empty() || version.is_empty() || !seen.insert((name.clone(), version.clone())) {
                continue;
            }
            let purl = match ecosystem {
                Ecosystem::CratesIo => purl("cargo", None, &name, &version, &[]),
                Ecosystem::Npm => purl_with_path("npm", &name, &version),
                Ecosystem::PyPi => purl("pypi", None, &name, &version, &[]),
                _ => purl_with_path("golang", &name, &version),
            };
            out.push(Component {
                ecosystem,
                name,
                version,
                source_name: None,
                arch: None,
                purl,
                licenses: Vec::new(),
                layer: layer.clone(),
                location: path.clone(),
                distro: None,
            });
        }
    }
    out
}

/// `[[package]]` entries of a TOML lock file.
fn toml_packages(text: &str) -> Vec<toml::Table> {
    let Ok(document) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    match document.get("package") {
        Some(toml::Value::Array(packages)) => packages
            .iter()
            .filter_map(|package| package.as_table().cloned())
            .collect(),
        _ => Vec::new(),
    }
}

fn toml_str<'a>(table: &'a toml::Table, key: &str) -> Option<&'a str> {
    table.get(key).and_then(toml::Value::as_str)
}

/// Registry crates of a `Cargo.lock` (workspace members and path or git dependencies,
/// which have no `registry+`/`sparse+` source, are not published crates and are left out).
fn cargo_lock(text: &str) -> Vec<(Ecosystem, String, String)> {
    toml_packages(text)
        .iter()
        .filter(|package| {
            toml_str(package, "source")
                .is_some_and(|source| source.starts_with("registry+") || source.starts_with("sparse+"))
        })
        .filter_map(|package| {
            Some((
                Ecosystem::CratesIo,
                toml_str(package, "name")?.to_string(),
                toml_str(package, "version")?.to_string(),
            ))
        })
        .collect()
}

/// Packages of a `poetry.lock` (local `directory` sources left out).
fn poetry_lock(text: &str) -> Vec<(Ecosystem, String, String)> {
    toml_packages(text)
        .iter()
        .filter(|package| {
            let kind = package
                .get("source")
                .and_then(toml::Value::as_table)
                .and_then(|source| toml_str(source, "type"));
            kind != Some("directory")
        })
        .filter_map(|package| {
            Some((
                Ecosystem::PyPi,
                pypi_normalize(toml_str(package, "name")?),
                toml_str(package, "version")?.to_string(),
            ))
        })
        .collect()
}

/// Exact pins (`name==version`, `name[extra]==version ; marker`) of a `requirements.txt`.
fn requirements_txt(text: &str) -> Vec<(Ecosystem, String, String)> {
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = match raw.find(" #").or_else(|| raw.starts_with('#').then_some(0)) {
            Some(at) => &raw[..at],
            None => raw,
        };
        let line = line.trim().trim_end_matches('\\').trim();
        if line.is_empty() || line.starts_with('-') {
            continue;
        }
        let requirement = line.split(';').next().unwrap_or_default().trim();
        let Some((name, rest)) = requirement.split_once("==") else {
            continue;
        };
        let version = rest
            .trim_start_matches('=')
            .split_whitespace()
            .next()
            .unwrap_or_default();
        let name = name.split('[').next().unwrap_or_default().trim();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
        if !valid_name || version.is_empty() || version.contains('*') || version.contains(',') {
            continue;
        }
        out.push((Ecosystem::PyPi, pypi_normalize(name), version.to_string()));
    }
    out
}

/// `require` lines and blocks of a `go.mod` (`// indirect` ones included).
fn go_mod(text: &str) -> Vec<(Ecosystem, String, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for raw in text.lines() {
        let line = raw.split("//").next().unwrap_or_default().trim();
        let entry = if in_block {
            if line.starts_with(')') {
                in_block = false;
                continue;
            }
            line
        } else if let Some(rest) = line
            .strip_prefix("require")
            .filter(|rest| rest.starts_with([' ', '\t', '(']))
        {
            let rest = rest.trim();
            if rest.starts_with('(') {
                in_block = true;
                continue;
            }
            rest
        } else {
            continue;
        };
        let mut words = entry.split_whitespace();
        if let (Some(module), Some(version)) = (words.next(), words.next()) {
            out.push((Ecosystem::Go, module.trim_matches('"').to_string(), version.to_string()));
        }
    }
    out
}

/// Packages of a `package-lock.json`: the `packages` map (lockfile v2/v3; keys
/// `node_modules/<name>`, nested too) or else the `dependencies` tree (v1).
fn package_lock(text: &str) -> Vec<(Ecosystem, String, String)> {
    let Ok(document) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(packages) = document.get("packages").and_then(Value::as_object) {
        for (key, package) in packages {
            let Some(at) = key.rfind("node_modules/") else { continue };
            let name = &key[at + "node_modules/".len()..];
            if package.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            if let Some(version) = package.get("version").and_then(Value::as_str) {
                out.push((Ecosystem::Npm, name.to_string(), version.to_string()));
            }
        }
    } else if let Some(dependencies) = document.get("dependencies").and_then(Value::as_object) {
        npm_v1(dependencies, &mut out);
    }
    out
}

fn npm_v1(dependencies: &serde_json::Map<String, Value>, out: &mut Vec<(Ecosystem, String, String)>) {
    for (name, dependency) in dependencies {
        if let Some(version) = dependency.get("version").and_then(Value::as_str)
            // `file:`, git URLs and `npm:` aliases are not registry versions.
            && !version.contains(':')
            && !version.contains('/')
        {
            out.push((Ecosystem::Npm, name.clone(), version.to_string()));
        }
        if let Some(nested) = dependency.get("dependencies").and_then(Value::as_object) {
            npm_v1(nested, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(found: &[(Ecosystem, String, String)]) -> Vec<String> {
        found
            .iter()
            .map(|(_, name, version)| format!("{name}@{version}"))
            .collect()
    }

    #[test]
    fn go_mod_requires() {
        let text = "module example.com/app\n\ngo 1.22\n\nrequire github.com/pkg/errors v0.9.1\nrequire (\n\tgolang.org/x/sys v0.18.0 // indirect\n\tgithub.com/google/uuid v1.6.0\n)\nreplace foo => bar v1.0.0\nrequired-thing x\n";
        assert_eq!(
            names(&go_mod(text)),
            [
                "github.com/pkg/errors@v0.9.1",
                "golang.org/x/sys@v0.18.0",
                "github.com/google/uuid@v1.6.0"
            ]
        );
    }

    #[test]
    fn requirements_pins() {
        let text = "# comment\n-r other.txt\nDjango==4.2.11 \\\n    --hash=sha256:abc\nrequests>=2.0\nzope.interface[test]==6.2 ; python_version >= \"3.8\"\nflask==3.*\nurllib3===2.2.1  # why\n";
        assert_eq!(
            names(&requirements_txt(text)),
            ["django@4.2.11", "zope-interface@6.2", "urllib3@2.2.1"]
        );
    }

    #[test]
    fn npm_v1_tree() {
        let text = r#"{"lockfileVersion":1,"dependencies":{"a":{"version":"1.0.0","dependencies":{"b":{"version":"2.0.0"}}},"c":{"version":"file:../c"}}}"#;
        assert_eq!(names(&package_lock(text)), ["a@1.0.0", "b@2.0.0"]);
    }
}
