use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use rebake_events::ImageName;

use crate::{ConfigError, Result};

/// One image, as written in one YAML file of the catalog directory.
///
/// ```yaml
/// name: app                                  # catalog name: [a-z0-9_-] segments, '/'-separated
/// base: registry.example:5000/base:v1        # tracked tag, or `scratch`
/// sources:                                   # Git trees copied into the image
///   - url: https://git.example/octo/app.git  # anything `git` can fetch (a path works too)
///     ref: main                              # branch (tracked)
///     path: site                             # subdirectory of the repository, default: all of it
///     dest: /srv/app                         # where it lands in the image, default /
///     repo: github.com/octo/app              # identity webhooks use, default: derived from url
/// config:                                    # OCI image config
///   entrypoint: ["/srv/app/run"]
///   cmd: []
///   env: { MODE: prod }
///   user: "1000"
///   workdir: /srv/app
///   labels: { team: web }
///   ports: ["8080/tcp"]
/// publish:
///   repository: registry.example:5000/apps/app
///   tags: [latest]
/// base_verify:                               # the base must carry a cosign signature by one of
///   keys: [keys/base.pub]                    # these public keys (files relative to this spec)
/// ```
///
/// An image assembled from packages (the apko/distroless way) has `base: scratch` and:
///
/// ```yaml
/// packages:
///   feed: debian                             # a feed named under `feeds:` in the config
///   install: [base-files, netbase, tzdata]   # resolved with dependencies to an exact set
/// platforms: [linux/amd64, linux/arm64]      # one manifest each, under an OCI image index
/// accounts:                                  # written to etc/passwd, etc/group, etc/shadow
///   groups: [{ name: nonroot, gid: 65532 }]
///   users: [{ name: nonroot, uid: 65532, gid: 65532 }]
/// os_release: { ID: acme, NAME: "Acme Base", VERSION_ID: "1" }   # usr/lib/os-release
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Catalog name.
    pub name: ImageName,
    /// Base image reference (a tag to track), or `scratch`.
    pub base: String,
    /// Git sources.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    /// Packages installed from a feed (images from `scratch` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<PackagesSpec>,
    /// Platforms (`os/arch[/variant]`). Empty: one `linux/amd64` manifest, no index.
    /// Listed: an OCI image index with one manifest per platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Users and groups written into the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<rebake_feeds::rootfs::Accounts>,
    /// `os-release(5)` fields written to `usr/lib/os-release` (`etc/os-release` links to it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub os_release: BTreeMap<String, String>,
    /// Image config.
    #[serde(default)]
    pub config: ImageConfigSpec,
    /// Structure tests in the container-structure-test schema (`schemaVersion: 2.0.0`,
    /// `fileExistenceTests`, `fileContentTests`, `metadataTest`), checked by the scanner
    /// before publication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure_tests: Option<serde_json::Value>,
    /// Where the image is published.
    pub publish: PublishSpec,
    /// Signature the base must carry before anything is built on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_verify: Option<BaseVerifySpec>,
}

/// `base_verify:` of an image spec: the base digest must carry a cosign keyed signature
/// (the `sha256-<hex>.sig` tag in the base's repository) by one of `keys`, or nothing is
/// built on it.
///
/// Each entry of `keys` is written as a path to a PEM `PUBLIC KEY` file (relative to the
/// spec file) or as the PEM itself. [`Catalog::load`] replaces every path by the file's
/// PEM, so the spec the builder receives carries the keys themselves (and a changed key
/// changes the spec, and with it the inputs hash: the base is checked again).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaseVerifySpec {
    /// Accepted public keys (ECDSA P-256): PEM file paths, or PEM text once loaded.
    pub keys: Vec<String>,
}

/// The armour line of a PEM public key.
const PUBLIC_KEY_PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";

impl BaseVerifySpec {
    /// The keys' PEM texts (entries that are still paths are skipped: the spec was not
    /// loaded through [`Catalog::load`]).
    pub fn key_pems(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .map(String::as_str)
            .filter(|key| key.trim_start().starts_with(PUBLIC_KEY_PEM_BEGIN))
    }

    /// Entries that are not PEM yet (file paths).
    pub fn key_files(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .map(String::as_str)
            .filter(|key| !key.trim_start().starts_with(PUBLIC_KEY_PEM_BEGIN))
    }
}

/// `packages:` of an image spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesSpec {
    /// Name of a feed configured under `feeds:`.
    pub feed: String,
    /// Package names to install; dependencies are added by resolution.
    pub install: Vec<String>,
}

/// The platform an image without `platforms:` is built for.
pub const DEFAULT_PLATFORM: &str = "linux/amd64";

/// A Git source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Repository URL or path.
    pub url: String,
    /// Branch to track.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Subdirectory of the repository to copy (default: the whole tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Destination directory in the image (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// Identity webhooks name this repository by (`github.com/octo/app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

impl SourceSpec {
    /// The identity events about this repository carry.
    pub fn identity(&self) -> String {
        self.repo
            .as_deref()
            .map(normalise_git_identity)
            .unwrap_or_else(|| normalise_git_identity(&self.url))
    }
}

/// Normalises a Git URL or identity to `host/path` (no scheme, user, `.git` or trailing
/// slash; lowercase), so `https://github.com/Octo/App.git` and `git@github.com:octo/app`
/// both become `github.com/octo/app`. Local paths stay paths.
pub fn normalise_git_identity(url: &str) -> String {
    let mut rest = url.trim();
    if let Some((_, after)) = rest.split_once("://") {
        rest = after;
    } else if let Some((user_host, path)) = rest.split_once(':')
        && user_host.contains('@')
        && !path.starts_with('/')
    {
        // scp-like `git@host:path`
        let host = user_host.rsplit('@').next().unwrap_or(user_host);
        return normalise_git_identity(&format!("{host}/{path}"));
    }
    if let Some((_, after)) = rest.split_once('@')
        && !after.contains('@')
        && rest.find('@') < rest.find('/')
    {
        rest = after;
    }
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    rest.to_ascii_lowercase()
}

/// `config:` of an image spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfigSpec {
    /// Entrypoint (replaces the base's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd (replaces the base's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Environment added to (and overriding) the base's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Labels added to the base's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Exposed ports (`8080/tcp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

/// `publish:` of an image spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSpec {
    /// Repository with registry, no tag (`registry.example:5000/apps/app`).
    pub repository: String,
    /// Tags moved to each new image (default `latest`).
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
}

fn default_tags() -> Vec<String> {
    vec!["latest".to_string()]
}

impl ImageSpec {
    /// Replaces every `base_verify.keys` entry that is a file path by the file's PEM text;
    /// relative paths are resolved against `dir` (the spec file's directory). `path` (the
    /// spec file) is for error messages.
    pub fn read_key_files(&mut self, dir: &Path, path: &Path) -> Result<()> {
        let Some(verify) = self.base_verify.as_mut() else {
            return Ok(());
        };
        let key = format!("{}: base_verify.keys", path.display());
        for entry in &mut verify.keys {
            if entry.trim_start().starts_with(PUBLIC_KEY_PEM_BEGIN) {
                continue;
            }
            let file = dir.join(entry.trim());
            let text = std::fs::read_to_string(&file)
                .map_err(|error| ConfigError::invalid(&key, format!("cannot read {}: {error}", file.display())))?;
            if !text.contains(PUBLIC_KEY_PEM_BEGIN) {
                return Err(ConfigError::invalid(
                    &key,
                    format!("{} is not a PEM public key (`{PUBLIC_KEY_PEM_BEGIN}`)", file.display()),
                ));
            }
            *entry = text.trim().to_string() + "\n";
        }
        Ok(())
    }

    /// Whether the image starts from nothing.
    pub fn is_scratch(&self) -> bool {
        self.base == "scratch"
    }

    /// The base as `registry/repository:tag` (tag defaults to `latest`), when it is a
    /// tracked tag (not scratch, not pinned by digest).
    pub fn base_tag_ref(&self) -> Option<String> {
        if self.is_scratch() || self.base.contains('@') {
            return None;
        }
        Some(with_default_tag(&self.base))
    }

    /// Every `registry/repository:tag` this image is published under.
    pub fn published_tag_refs(&self) -> Vec<String> {
        self.publish
            .tags
            .iter()
            .map(|tag| format!("{}:{tag}", self.publish.repository))
            .collect()
    }

    /// The platforms to build, in spec order (the default platform when none is listed).
    pub fn build_platforms(&self) -> Vec<String> {
        if self.platforms.is_empty() {
            vec![DEFAULT_PLATFORM.to_string()]
        } else {
            self.platforms.clone()
        }
    }

    /// Whether the result is an image index (platforms are listed) rather than one manifest.
    pub fn is_multi_platform(&self) -> bool {
        !self.platforms.is_empty()
    }

    /// Canonical JSON of the spec (sorted maps), part of the inputs hash.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("an image spec always serialises to JSON")
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let key = |field: &str| format!("{}: {field}", path.display());
        if self.base.trim().is_empty() {
            return Err(ConfigError::invalid(&key("base"), "empty; use `scratch` for no base"));
        }
        let repository = &self.publish.repository;
        if repository.contains('@')
            || repository.rsplit('/').next().is_some_and(|last| last.contains(':'))
            || !repository.contains('/')
        {
            return Err(ConfigError::invalid(
                &key("publish.repository"),
                format!("{repository:?} must be registry/path without tag or digest"),
            ));
        }
        if self.publish.tags.is_empty() {
            return Err(ConfigError::invalid(&key("publish.tags"), "at least one tag is needed"));
        }
        if let Some(packages) = &self.packages {
            if !self.is_scratch() {
                return Err(ConfigError::invalid(
                    &key("packages"),
                    "packages compose a root filesystem, so the base must be `scratch`; \
                     build on top of a package image with a child image instead",
                ));
            }
            if packages.feed.trim().is_empty() {
                return Err(ConfigError::invalid(&key("packages.feed"), "empty"));
            }
            if packages.install.is_empty() || packages.install.iter().any(|name| name.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    &key("packages.install"),
                    "list at least one package, and no empty names",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for platform in &self.platforms {
            let parts: Vec<&str> = platform.split('/').collect();
            let well_formed = (parts.len() == 2 || parts.len() == 3)
                && parts
                    .iter()
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
            if !well_formed {
                return Err(ConfigError::invalid(
                    &key("platforms"),
                    format!("{platform:?} is not os/arch[/variant] (e.g. linux/arm64)"),
                ));
            }
            if !seen.insert(platform) {
                return Err(ConfigError::invalid(
                    &key("platforms"),
                    format!("{platform} is listed twice"),
                ));
            }
        }
        if let Some(accounts) = &self.accounts {
            accounts
                .validate()
                .map_err(|reason| ConfigError::invalid(&key("accounts"), reason))?;
        }
        for name in self.os_release.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(ConfigError::invalid(
                    &key("os_release"),
                    format!("{name:?} is not an os-release key ([A-Z0-9_]+)"),
                ));
            }
        }
        if let Some(verify) = &self.base_verify {
            if self.is_scratch() {
                return Err(ConfigError::invalid(
                    &key("base_verify"),
                    "the base is `scratch`: there is no base to verify",
                ));
            }
            if verify.keys.is_empty() || verify.keys.iter().any(|entry| entry.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    &key("base_verify.keys"),
                    "list at least one public key (a PEM file path), and no empty entries",
                ));
            }
        }
        for source in &self.sources {
            if source.url.is_empty() || source.ref_name.is_empty() {
                return Err(ConfigError::invalid(&key("sources"), "each source needs url and ref"));
            }
            if let Some(dest) = &source.dest
                && !dest.starts_with('/')
            {
                return Err(ConfigError::invalid(
                    &key("sources.dest"),
                    format!("{dest:?} must be absolute"),
                ));
            }
        }
        Ok(())
    }
}

/// Appends `:latest` when a reference has no tag.
fn with_default_tag(reference: &str) -> String {
    // Docker Hub's official images are `library/<name>` in every event and API answer.
    let reference = match reference.strip_prefix("docker.io/") {
        Some(rest) if !rest.contains('/') => format!("docker.io/library/{rest}"),
        _ => reference.to_string(),
    };
    let last = reference.rsplit('/').next().unwrap_or(&reference);
    if last.contains(':') {
        reference
    } else {
        format!("{reference}:latest")
    }
}

/// Every image spec, with the dependency graph between them.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    images: BTreeMap<ImageName, ImageSpec>,
    files: BTreeMap<ImageName, PathBuf>,
    parent: BTreeMap<ImageName, ImageName>,
    children: BTreeMap<ImageName, Vec<ImageName>>,
}

impl Catalog {
    /// Reads every `*.yaml`/`*.yml` file of `dir` (one image each).
    pub fn load(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
            .collect();
        paths.sort();
        let mut specs = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let mut spec: ImageSpec = serde_yaml::from_str(&text).map_err(|error| ConfigError::parse(&path, error))?;
            spec.validate(&path)?;
            spec.read_key_files(dir, &path)?;
            specs.push((path, spec));
        }
        Self::from_specs(specs)
    }

    /// Builds a catalog from specs already parsed (`path` is for error messages).
    pub fn from_specs(specs: Vec<(PathBuf, ImageSpec)>) -> Result<Self> {
        let mut catalog = Catalog::default();
        for (path, spec) in specs {
            if let Some(other) = catalog.files.get(&spec.name) {
                return Err(ConfigError::invalid(
                    &format!("{}: name", path.display()),
                    format!("image {} is already defined in {}", spec.name, other.display()),
                ));
            }
            catalog.files.insert(spec.name.clone(), path);
            catalog.images.insert(spec.name.clone(), spec);
        }
        let mut publisher_of: HashMap<String, ImageName> = HashMap::new();
        for spec in catalog.images.values() {
            for tag_ref in spec.published_tag_refs() {
                publisher_of.insert(tag_ref, spec.name.clone());
            }
        }
        for spec in catalog.images.values() {
            if let Some(base) = spec.base_tag_ref()
                && let Some(parent) = publisher_of.get(&base)
            {
                catalog.parent.insert(spec.name.clone(), parent.clone());
                catalog
                    .children
                    .entry(parent.clone())
                    .or_default()
                    .push(spec.name.clone());
            }
        }
        catalog.check_cycles()?;
        Ok(catalog)
    }

    fn check_cycles(&self) -> Result<()> {
        for start in self.images.keys() {
            let mut path = vec![start.clone()];
            let mut current = start;
            while let Some(parent) = self.parent.get(current) {
                if let Some(position) = path.iter().position(|seen| seen == parent) {
                    let mut cycle: Vec<String> = path[position..].iter().rev().map(ToString::to_string).collect();
                    cycle.push(cycle[0].clone());
                    return Err(ConfigError::Cycle {
                        cycle: cycle.join(" -> "),
                    });
                }
                path.push(parent.clone());
                current = parent;
            }
        }
        Ok(())
    }

    /// Every image, by name.
    pub fn images(&self) -> impl Iterator<Item = &ImageSpec> {
        self.images.values()
    }

    /// One image.
    pub fn get(&self, name: &ImageName) -> Option<&ImageSpec> {
        self.images.get(name)
    }

    /// The catalog image this one is built on, if any.
    pub fn parent(&self, name: &ImageName) -> Option<&ImageName> {
        self.parent.get(name)
    }

    /// The catalog images built on this one.
    pub fn children(&self, name: &ImageName) -> &[ImageName] {
        self.children.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every ancestor, nearest first.
    pub fn ancestors(&self, name: &ImageName) -> Vec<ImageName> {
        let mut out = Vec::new();
        let mut current = name;
        while let Some(parent) = self.parent.get(current) {
            out.push(parent.clone());
            current = parent;
        }
        out
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_base_refs_are_canonical() {
        assert_eq!(with_default_tag("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            with_default_tag("docker.io/alpine:3.20"),
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(
            with_default_tag("docker.io/bitnami/redis:7"),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(with_default_tag("127.0.0.1:5000/base"), "127.0.0.1:5000/base:latest");
    }

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn loads_and_links_parents() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "app.yaml",
            "name: app\nbase: reg:5000/base:v1\npublish:\n  repository: reg:5000/apps/app\n",
        );
        write(
            dir.path(),
            "child.yaml",
            "name: child\nbase: reg:5000/apps/app\npublish:\n  repository: reg:5000/apps/child\n  tags: [v1]\n",
        );
        let catalog = Catalog::load(dir.path()).unwrap();
        let app = ImageName::new("app").unwrap();
        let child = ImageName::new("child").unwrap();
        assert_eq!(catalog.parent(&child), Some(&app));
        assert_eq!(catalog.children(&app), std::slice::from_ref(&child));
        assert_eq!(catalog.ancestors(&child), vec![app]);
    }

    #[test]
    fn unknown_field_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "app.yaml",
            "name: app\nbase: scratch\nbuild_args: {}\npublish:\n  repository: reg/apps/app\n",
        );
        let error = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("app.yaml:3:"), "{error}");
        assert!(error.contains("build_args"), "{error}");
    }

    #[test]
    fn cycles_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "name: a\nbase: reg/b:latest\npublish:\n  repository: reg/a\n",
        );
        write(
            dir.path(),
            "b.yaml",
            "name: b\nbase: reg/a\npublish:\n  repository: reg/b\n",
        );
        let error = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("a -> b -> a") || error.contains("b -> a -> b"),
            "{error}"
        );
    }

    #[test]
    fn package_specs_are_checked() {
        let cases = [
            (
                "base: reg/base:v1\npackages: {feed: d, install: [a]}\n",
                "base must be `scratch`",
            ),
            (
                "base: scratch\npackages: {feed: d, install: []}\n",
                "at least one package",
            ),
            ("base: scratch\nplatforms: [linux]\n", "os/arch"),
            ("base: scratch\nplatforms: [linux/amd64, linux/amd64]\n", "listed twice"),
            ("base: scratch\nos_release: {id: x}\n", "os-release key"),
            (
                "base: scratch\naccounts: {users: [{name: a, uid: 1}, {name: b, uid: 1}]}\n",
                "accounts",
            ),
        ];
        for (body, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(
                dir.path(),
                "x.yaml",
                &format!("name: x\n{body}publish:\n  repository: reg/x\n"),
            );
            let error = Catalog::load(dir.path()).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        }
        // Specs without the new fields keep their canonical JSON (and so their inputs hash).
        let spec: ImageSpec = serde_yaml::from_str("name: x\nbase: scratch\npublish: {repository: reg/x}\n").unwrap();
        assert!(!spec.canonical_json().contains("packages"));
        assert!(!spec.canonical_json().contains("platforms"));
        assert_eq!(spec.build_platforms(), [DEFAULT_PLATFORM]);
        assert!(!spec.is_multi_platform());
    }

    #[test]
    fn base_verify_keys_are_read_into_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/base.pub"), pem).unwrap();
        write(
            dir.path(),
            "app.yaml",
            "name: app\nbase: reg:5000/base:v1\nbase_verify:\n  keys: [keys/base.pub]\npublish:\n  repository: reg:5000/apps/app\n",
        );
        let catalog = Catalog::load(dir.path()).unwrap();
        let spec = catalog.get(&ImageName::new("app").unwrap()).unwrap();
        let verify = spec.base_verify.as_ref().unwrap();
        assert_eq!(verify.keys, [pem]);
        assert_eq!(verify.key_pems().collect::<Vec<_>>(), [pem]);
        assert_eq!(verify.key_files().count(), 0);
        // What the builder receives carries the key itself.
        let received: ImageSpec = serde_json::from_str(&spec.canonical_json()).unwrap();
        assert_eq!(received.base_verify, spec.base_verify);

        for (body, expected) in [
            ("base: scratch\nbase_verify: {keys: [a.pub]}\n", "no base to verify"),
            ("base: reg/b:v1\nbase_verify: {keys: []}\n", "at least one public key"),
            ("base: reg/b:v1\nbase_verify: {keys: [missing.pub]}\n", "cannot read"),
            (
                "base: reg/b:v1\nbase_verify: {keys: [app.yaml]}\n",
                "not a PEM public key",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            write(
                dir.path(),
                "app.yaml",
                &format!("name: x\n{body}publish:\n  repository: reg/x\n"),
            );
            let error = Catalog::load(dir.path()).unwrap_err().to_string();
            assert!(
                error.contains("base_verify") && error.contains(expected),
                "{body}: {error}"
            );
        }
        // Specs without it keep their canonical JSON (and so their inputs hash).
        let spec: ImageSpec = serde_yaml::from_str("name: x\nbase: reg/b:v1\npublish: {repository: reg/x}\n").unwrap();
        assert!(!spec.canonical_json().contains("base_verify"));
    }

    #[test]
    fn git_identities() {
        assert_eq!(
            normalise_git_identity("https://github.com/Octo/App.git"),
            "github.com/octo/app"
        );
        assert_eq!(
            normalise_git_identity("git@github.com:octo/app.git"),
            "github.com/octo/app"
        );
        assert_eq!(
            normalise_git_identity("https://user@git.example/x/y/"),
            "git.example/x/y"
        );
        assert_eq!(normalise_git_identity("/srv/git/app.git"), "/srv/git/app");
    }
}

#[cfg(test)]
mod shipped_examples {
    use super::*;

    /// The example catalog under `deploy/examples/images` is documentation: it must load.
    #[test]
    fn example_catalog_loads_with_its_graph() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/images");
        let catalog = Catalog::load(&dir).unwrap();
        assert_eq!(catalog.len(), 4);
        let static_image = catalog.get(&ImageName::new("static").unwrap()).unwrap();
        assert_eq!(static_image.build_platforms(), ["linux/amd64", "linux/arm64"]);
        assert!(static_image.packages.is_some());
        let web = ImageName::new("apps/web").unwrap();
        let debug = ImageName::new("apps/web-debug").unwrap();
        assert_eq!(catalog.parent(&web), Some(&ImageName::new("base").unwrap()));
        assert_eq!(catalog.parent(&debug), Some(&web));
    }
}
