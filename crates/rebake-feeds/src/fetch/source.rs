//! Feed configuration as users write it (YAML): which repositories, which architectures,
//! which keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::deb::sources::default_architecture;

/// One feed's configuration, tagged by `kind`:
///
/// ```yaml
/// kind: debian
/// url: https://deb.debian.org/debian
/// suite: bookworm
/// components: [main]            # default [main]
/// architectures: [amd64, arm64] # default [amd64]
/// keyring: [/usr/share/keyrings/debian-archive-keyring.gpg]
/// ```
///
/// ```yaml
/// kind: apk
/// url: https://dl-cdn.alpinelinux.org/alpine/v3.20/main
/// architectures: [x86_64]       # default [x86_64]
/// keys: [/etc/apk/keys/alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub]
/// ```
///
/// ```yaml
/// kind: system                  # this machine's apt sources
/// root: /                       # default /
/// architectures: [amd64]        # default: dpkg's architecture, else amd64
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeedSource {
    /// A Debian/Ubuntu repository (`dists/<suite>/InRelease`).
    Debian(DebianFeed),
    /// An Alpine/Wolfi repository (`<url>/<arch>/APKINDEX.tar.gz`).
    Apk(ApkFeed),
    /// The apt sources configured on this machine (or under another root).
    System(SystemFeed),
}

/// A Debian/Ubuntu repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianFeed {
    /// The archive root, e.g. `https://deb.debian.org/debian`.
    pub url: String,
    /// The suite or codename, e.g. `bookworm` (`dists/<suite>/`).
    pub suite: String,
    /// Components to read, default `[main]`.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Debian architectures to read, default `[amd64]`.
    #[serde(default = "default_debian_architectures")]
    pub architectures: Vec<String>,
    /// OpenPGP public key files (binary `.gpg` keyrings or ASCII-armored `.asc`); a
    /// signature by any key in any of them is accepted.
    #[serde(default)]
    pub keyring: Vec<PathBuf>,
    /// Accept the repository without checking its signature. Only allowed with an empty
    /// keyring, never the default; a warning is logged on every fetch.
    #[serde(default)]
    pub insecure_skip_signature: bool,
}

/// An Alpine/Wolfi repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApkFeed {
    /// The repository base, e.g. `https://dl-cdn.alpinelinux.org/alpine/v3.20/main`.
    pub url: String,
    /// apk architectures to read, default `[x86_64]`.
    #[serde(default = "default_apk_architectures")]
    pub architectures: Vec<String>,
    /// RSA public key PEM files; the file name is the key name matched against the
    /// index's `.SIGN.RSA.<name>` entry.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
}

/// The apt sources of a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemFeed {
    /// The root directory whose `etc/apt` is read, default `/`.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// Debian architectures to read; empty (the default) means dpkg's architecture on this
    /// machine, or `amd64` when dpkg cannot tell (see [`SystemFeed::effective_architectures`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
}

fn default_components() -> Vec<String> {
    vec!["main".to_owned()]
}

fn default_debian_architectures() -> Vec<String> {
    vec!["amd64".to_owned()]
}

fn default_apk_architectures() -> Vec<String> {
    vec!["x86_64".to_owned()]
}

fn default_root() -> PathBuf {
    PathBuf::from("/")
}

impl SystemFeed {
    /// The configured architectures, or dpkg's architecture (else `amd64`) when none are.
    pub fn effective_architectures(&self) -> Vec<String> {
        if self.architectures.is_empty() {
            vec![default_architecture().unwrap_or_else(|| "amd64".to_owned())]
        } else {
            self.architectures.clone()
        }
    }
}

/// OCI platform → (Debian architecture, apk architecture).
const PLATFORMS: &[(&str, &str, &str)] = &[
    ("linux/amd64", "amd64", "x86_64"),
    ("linux/arm64", "arm64", "aarch64"),
    ("linux/arm64/v8", "arm64", "aarch64"),
    ("linux/arm/v7", "armhf", "armv7"),
    ("linux/386", "i386", "x86"),
    ("linux/ppc64le", "ppc64el", "ppc64le"),
    ("linux/s390x", "s390x", "s390x"),
    ("linux/riscv64", "riscv64", "riscv64"),
];

/// The Debian architecture of an OCI platform (`linux/arm/v7` → `armhf`), if known.
pub fn debian_arch(platform: &str) -> Option<&'static str> {
    PLATFORMS.iter().find(|(p, ..)| *p == platform).map(|(_, d, _)| *d)
}

/// The apk architecture of an OCI platform (`linux/arm64` → `aarch64`), if known.
pub fn apk_arch(platform: &str) -> Option<&'static str> {
    PLATFORMS.iter().find(|(p, ..)| *p == platform).map(|(.., a)| *a)
}

fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err(format!("url {url:?} must start with http:// or https://"));
    };
    if rest.split('/').next().unwrap_or_default().is_empty() {
        return Err(format!("url {url:?} has no host"));
    }
    if url.chars().any(char::is_whitespace) {
        return Err(format!("url {url:?} contains whitespace"));
    }
    Ok(())
}

fn check_names(what: &str, names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    for name in names {
        if name.is_empty() || name.contains(['/', ' ', '\t']) || name == "." || name == ".." {
            return Err(format!("{what}: invalid entry {name:?}"));
        }
    }
    Ok(())
}

impl FeedSource {
    /// The feed kind as written in YAML: `debian`, `apk` or `system`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Debian(_) => "debian",
            Self::Apk(_) => "apk",
            Self::System(_) => "system",
        }
    }

    /// Checks the configuration without touching the network or the key files: URLs are
    /// http(s), lists are non-empty and hold plain names, and a Debian feed has a keyring
    /// unless `insecure_skip_signature: true` says otherwise (and not both); an apk feed has
    /// keys.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Debian(d) => {
                check_url(&d.url)?;
                if d.suite.is_empty() || d.suite.contains(char::is_whitespace) || d.suite.starts_with('/') {
                    return Err(format!("debian feed {}: invalid suite {:?}", d.url, d.suite));
                }
                if d.suite.ends_with('/') {
                    return Err(format!(
                        "debian feed {}: flat repositories (suite {:?}) are only read through the system feed",
                        d.url, d.suite
                    ));
                }
                check_names("components", &d.components).map_err(|e| format!("debian feed {}: {e}", d.url))?;
                check_names("architectures", &d.architectures).map_err(|e| format!("debian feed {}: {e}", d.url))?;
                match (d.keyring.is_empty(), d.insecure_skip_signature) {
                    (true, false) => Err(format!(
                        "debian feed {}: keyring is empty; list the archive's OpenPGP key files \
                         (e.g. /usr/share/keyrings/debian-archive-keyring.gpg), or set \
                         insecure_skip_signature: true to accept an unsigned feed",
                        d.url
                    )),
                    (false, true) => Err(format!(
                        "debian feed {}: insecure_skip_signature: true and a keyring are contradictory; drop one",
                        d.url
                    )),
                    _ => Ok(()),
                }
            }
            Self::Apk(a) => {
                check_url(&a.url)?;
                check_names("architectures", &a.architectures).map_err(|e| format!("apk feed {}: {e}", a.url))?;
                if a.keys.is_empty() {
                    return Err(format!(
                        "apk feed {}: keys is empty; list the repository's RSA public key files \
                         (e.g. /etc/apk/keys/*.rsa.pub)",
                        a.url
                    ));
                }
                if let Some(k) = a.keys.iter().find(|k| k.file_name().is_none()) {
                    return Err(format!("apk feed {}: key path {} has no file name", a.url, k.display()));
                }
                Ok(())
            }
            Self::System(s) => {
                if s.root.as_os_str().is_empty() {
                    return Err("system feed: root must not be empty".to_owned());
                }
                if !s.architectures.is_empty() {
                    check_names("architectures", &s.architectures).map_err(|e| format!("system feed: {e}"))?;
                }
                Ok(())
            }
        }
    }

    /// The architectures this feed reads, in the feed's own naming.
    pub fn architectures(&self) -> Vec<String> {
        match self {
            Self::Debian(d) => d.architectures.clone(),
            Self::Apk(a) => a.architectures.clone(),
            Self::System(s) => s.effective_architectures(),
        }
    }

    /// The feed's architecture name for an OCI platform (`linux/amd64` → `amd64` for Debian
    /// feeds, `x86_64` for apk feeds), or `None` when the platform is unknown or the feed
    /// does not list that architecture.
    pub fn feed_arch(&self, platform: &str) -> Option<String> {
        let arch = match self {
            Self::Debian(_) | Self::System(_) => debian_arch(platform)?,
            Self::Apk(_) => apk_arch(platform)?,
        };
        self.architectures().iter().any(|a| a == arch).then(|| arch.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<FeedSource, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_with_defaults() {
        let d = yaml("kind: debian\nurl: http://deb.invalid/debian\nsuite: bookworm\nkeyring: [/k.gpg]\n").unwrap();
        let FeedSource::Debian(ref deb) = d else {
            panic!("{d:?}")
        };
        assert_eq!(deb.components, ["main"]);
        assert_eq!(deb.architectures, ["amd64"]);
        assert!(!deb.insecure_skip_signature);
        d.validate().unwrap();

        let a = yaml("kind: apk\nurl: https://apk.invalid/main\nkeys: [/k/a.rsa.pub]\n").unwrap();
        assert_eq!(a.architectures(), ["x86_64"]);
        a.validate().unwrap();

        let s = yaml("kind: system\n").unwrap();
        let FeedSource::System(ref sys) = s else {
            panic!("{s:?}")
        };
        assert_eq!(sys.root, PathBuf::from("/"));
        assert_eq!(s.architectures().len(), 1);
        s.validate().unwrap();
    }

    #[test]
    fn rejects_unknown_fields_and_kinds() {
        let e = yaml("kind: debian\nurl: http://x.invalid\nsuite: s\nkeyring: []\nmirror: y\n").unwrap_err();
        assert!(e.contains("mirror"), "{e}");
        let e = yaml("kind: apk\nurl: http://x.invalid\nsuite: s\n").unwrap_err();
        assert!(e.contains("suite"), "{e}");
        assert!(yaml("kind: rpm\nurl: http://x.invalid\n").is_err());
    }

    #[test]
    fn validate_messages() {
        let d = yaml("kind: debian\nurl: http://deb.invalid/debian\nsuite: bookworm\n").unwrap();
        assert!(d.validate().unwrap_err().contains("keyring is empty"));
        let d = yaml("kind: debian\nurl: http://deb.invalid/debian\nsuite: bookworm\ninsecure_skip_signature: true\n")
            .unwrap();
        d.validate().unwrap();
        let d = yaml("kind: debian\nurl: ftp://deb.invalid/debian\nsuite: bookworm\nkeyring: [/k]\n").unwrap();
        assert!(d.validate().unwrap_err().contains("http://"));
        let d = yaml("kind: debian\nurl: http://deb.invalid\nsuite: s\nkeyring: [/k]\ncomponents: []\n").unwrap();
        assert!(d.validate().unwrap_err().contains("components must not be empty"));
        let a = yaml("kind: apk\nurl: https://apk.invalid/main\n").unwrap();
        assert!(a.validate().unwrap_err().contains("keys is empty"));
        assert!(
            yaml("kind: apk\nurl: http://\nkeys: [/a]\n")
                .unwrap()
                .validate()
                .is_err()
        );
    }

    #[test]
    fn platform_mapping() {
        let d = yaml(
            "kind: debian\nurl: http://deb.invalid\nsuite: s\nkeyring: [/k]\narchitectures: [amd64, arm64, armhf]\n",
        )
        .unwrap();
        assert_eq!(d.feed_arch("linux/amd64").as_deref(), Some("amd64"));
        assert_eq!(d.feed_arch("linux/arm64").as_deref(), Some("arm64"));
        assert_eq!(d.feed_arch("linux/arm/v7").as_deref(), Some("armhf"));
        assert_eq!(d.feed_arch("linux/386"), None);
        assert_eq!(d.feed_arch("windows/amd64"), None);
        let a = yaml("kind: apk\nurl: http://apk.invalid\nkeys: [/k]\narchitectures: [x86_64, aarch64, armv7, x86, ppc64le, s390x, riscv64]\n")
            .unwrap();
        for (platform, arch) in [
            ("linux/amd64", "x86_64"),
            ("linux/arm64", "aarch64"),
            ("linux/arm/v7", "armv7"),
            ("linux/386", "x86"),
            ("linux/ppc64le", "ppc64le"),
            ("linux/s390x", "s390x"),
            ("linux/riscv64", "riscv64"),
        ] {
            assert_eq!(a.feed_arch(platform).as_deref(), Some(arch), "{platform}");
        }
        for (platform, arch) in [
            ("linux/386", "i386"),
            ("linux/ppc64le", "ppc64el"),
            ("linux/riscv64", "riscv64"),
        ] {
            assert_eq!(debian_arch(platform), Some(arch));
        }
    }
}
