//! Dependency resolution over a `Packages` index to a closed set.
//!
//! The resolver is greedy and deterministic, with no backtracking:
//!
//! - Requested packages are chosen first (highest version, or the `name=version` pin).
//! - Then, breadth first, each `Pre-Depends` and `Depends` group of each chosen package is
//!   satisfied: by a package already chosen if any alternative allows it, else by the first
//!   alternative that has a candidate.
//! - Candidates of a name: packages of that name whose architecture is the target's or
//!   `all` (highest satisfying version wins; on a tie the earlier index entry), and only
//!   when none fits, packages that `Provide` the name (a versioned provide satisfies a
//!   versioned constraint when the provided version does; an unversioned one never does),
//!   preferring the highest priority, then the name.
//! - One version per package name; architecture qualifiers (`:any`, `:native`) are
//!   ignored, since a single architecture is resolved.
//! - `Conflicts`, `Breaks`, `Recommends` and `Essential` are ignored: the caller lists
//!   what it wants, and images built from a closed `Depends` set are the distroless way.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::error::{DebError, Result};
use super::index::{Op, Package, Relation};
use super::version::Version;

/// Resolves `install` (names, optionally `name=version`) against `index` for `arch` into
/// a closed set satisfying every `Depends` and `Pre-Depends`, sorted by name.
pub fn resolve<'a>(index: &'a [Package], arch: &str, install: &[String]) -> Result<Vec<&'a Package>> {
    Resolver::new(index, arch).run(install)
}

struct Resolver<'a> {
    by_name: HashMap<&'a str, Vec<&'a Package>>,
    providers: HashMap<&'a str, Vec<(&'a Package, Option<&'a Version>)>>,
    chosen: BTreeMap<&'a str, &'a Package>,
}

/// Why no candidate matched one relation.
fn explain(resolver: &Resolver<'_>, relation: &Relation) -> String {
    if let Some(pkg) = resolver.chosen.get(relation.name.as_str()) {
        return format!("no candidate (have {} chosen)", pkg.version);
    }
    match resolver.by_name.get(relation.name.as_str()) {
        Some(pkgs) => {
            let versions: Vec<&str> = pkgs.iter().map(|p| p.version.as_str()).collect();
            format!("no candidate (have {})", versions.join(", "))
        }
        None if resolver.providers.contains_key(relation.name.as_str()) => {
            "no candidate (no provider satisfies the version)".to_owned()
        }
        None => "no candidate (no such package)".to_owned(),
    }
}

fn priority_rank(p: &Package) -> u8 {
    match p.priority.as_deref() {
        Some("required") => 0,
        Some("important") => 1,
        Some("standard") => 2,
        Some("optional") => 3,
        _ => 4,
    }
}

impl<'a> Resolver<'a> {
    fn new(index: &'a [Package], arch: &str) -> Self {
        let mut by_name: HashMap<&str, Vec<&Package>> = HashMap::new();
        let mut providers: HashMap<&str, Vec<(&Package, Option<&Version>)>> = HashMap::new();
        for pkg in index
            .iter()
            .filter(|p| p.architecture == arch || p.architecture == "all")
        {
            by_name.entry(pkg.name.as_str()).or_default().push(pkg);
            for provide in &pkg.provides {
                providers
                    .entry(provide.name.as_str())
                    .or_default()
                    .push((pkg, provide.version.as_ref()));
            }
        }
        Self {
            by_name,
            providers,
            chosen: BTreeMap::new(),
        }
    }

    fn run(mut self, install: &[String]) -> Result<Vec<&'a Package>> {
        let mut queue = VecDeque::new();
        for request in install {
            let relation = match request.split_once('=') {
                Some((name, version)) => Relation {
                    name: name.trim().to_owned(),
                    arch_qualifier: None,
                    constraint: Some((Op::Eq, Version::parse(version)?)),
                },
                None => Relation {
                    name: request.trim().to_owned(),
                    arch_qualifier: None,
                    constraint: None,
                },
            };
            let pkg = self
                .satisfy(std::slice::from_ref(&relation))
                .map_err(|reason| DebError::Unresolvable {
                    chain: format!("{relation} -> {reason}"),
                })?;
            queue.push_back((pkg, vec![pkg.name.clone()]));
        }
        while let Some((pkg, chain)) = queue.pop_front() {
            for group in pkg.pre_depends.iter().chain(&pkg.depends) {
                if group.iter().any(|r| self.chosen_satisfies(r)) {
                    continue;
                }
                let dep = self.satisfy(group).map_err(|reason| {
                    let wanted: Vec<String> = group.iter().map(Relation::to_string).collect();
                    DebError::Unresolvable {
                        chain: format!("{} -> {} -> {reason}", chain.join(" -> "), wanted.join(" | ")),
                    }
                })?;
                let mut next = chain.clone();
                next.push(dep.name.clone());
                queue.push_back((dep, next));
            }
        }
        Ok(self.chosen.into_values().collect())
    }

    /// Whether a chosen package (by name or by provides) satisfies `relation`.
    fn chosen_satisfies(&self, relation: &Relation) -> bool {
        if self
            .chosen
            .get(relation.name.as_str())
            .is_some_and(|pkg| relation.accepts(&pkg.version))
        {
            return true;
        }
        self.providers
            .get(relation.name.as_str())
            .into_iter()
            .flatten()
            .any(|(pkg, version)| {
                self.chosen
                    .get(pkg.name.as_str())
                    .is_some_and(|c| std::ptr::eq(*c, *pkg))
                    && provide_accepts(relation, *version)
            })
    }

    /// Chooses a package for the first satisfiable alternative of `group`; on failure the
    /// reason for the first alternative.
    fn satisfy(&mut self, group: &[Relation]) -> std::result::Result<&'a Package, String> {
        for relation in group {
            if let Some(pkg) = self.candidate(relation) {
                self.chosen.insert(pkg.name.as_str(), pkg);
                return Ok(pkg);
            }
        }
        Err(group
            .first()
            .map_or_else(|| "empty dependency".to_owned(), |r| explain(self, r)))
    }

    /// The best package for `relation` that does not clash with a chosen package's version.
    fn candidate(&self, relation: &Relation) -> Option<&'a Package> {
        let free = |p: &&Package| self.chosen.get(p.name.as_str()).is_none_or(|c| std::ptr::eq(*c, *p));
        let real = self
            .by_name
            .get(relation.name.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| relation.accepts(&p.version))
            .filter(free)
            .fold(None::<&Package>, |best, p| match best {
                Some(b) if b.version >= p.version => Some(b),
                _ => Some(p),
            });
        if real.is_some() {
            return real;
        }
        let mut providers: Vec<&Package> = self
            .providers
            .get(relation.name.as_str())
            .into_iter()
            .flatten()
            .filter(|(_, version)| provide_accepts(relation, *version))
            .map(|(p, _)| *p)
            .filter(free)
            .collect();
        providers.sort_by(|a, b| {
            priority_rank(a)
                .cmp(&priority_rank(b))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| b.version.cmp(&a.version))
        });
        providers.first().copied()
    }
}

fn provide_accepts(relation: &Relation, provided: Option<&Version>) -> bool {
    match (&relation.constraint, provided) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(_), Some(v)) => relation.accepts(v),
    }
}

#[cfg(test)]
mod tests {
    use super::super::index::parse_packages;
    use super::*;

    fn index(entries: &[(&str, &str, &str, &str)]) -> Vec<Package> {
        let text: String = entries
            .iter()
            .map(|(name, version, arch, extra)| {
                format!(
                    "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n{extra}Filename: pool/{name}.deb\nSize: 1\nSHA256: {}\n\n",
                    "0".repeat(64)
                )
            })
            .collect();
        parse_packages(&text).unwrap()
    }

    fn names(set: &[&Package]) -> Vec<String> {
        set.iter().map(|p| format!("{}={}", p.name, p.version)).collect()
    }

    fn req(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn closes_over_depends_and_picks_highest() {
        let idx = index(&[
            (
                "app",
                "1",
                "amd64",
                "Depends: libfoo (>= 1), tzdata\nPre-Depends: libc6\n",
            ),
            ("libfoo", "1.0", "amd64", "Depends: libc6 (>= 2.30)\n"),
            ("libfoo", "1.5", "amd64", "Depends: libc6 (>= 2.30)\n"),
            ("libfoo", "2.0", "arm64", ""),
            ("libc6", "2.36-9", "amd64", ""),
            ("libc6", "2.36-9+deb12u4", "amd64", ""),
            ("tzdata", "2024a-1", "all", ""),
            ("unused", "1", "amd64", ""),
        ]);
        let set = resolve(&idx, "amd64", &req(&["app"])).unwrap();
        assert_eq!(
            names(&set),
            ["app=1", "libc6=2.36-9+deb12u4", "libfoo=1.5", "tzdata=2024a-1"]
        );
    }

    #[test]
    fn pins_and_alternatives() {
        let idx = index(&[
            ("app", "1", "amd64", "Depends: mawk | gawk, tzdata\n"),
            ("gawk", "5", "amd64", ""),
            ("mawk", "1.3", "amd64", ""),
            ("tzdata", "2024a-1", "all", ""),
            ("tzdata", "2025b-1", "all", ""),
        ]);
        let set = resolve(&idx, "amd64", &req(&["app", "tzdata=2024a-1"])).unwrap();
        assert_eq!(names(&set), ["app=1", "mawk=1.3", "tzdata=2024a-1"]);
        // An alternative already in the set wins over the first one.
        let set = resolve(&idx, "amd64", &req(&["gawk", "app"])).unwrap();
        assert_eq!(names(&set), ["app=1", "gawk=5", "tzdata=2025b-1"]);
        assert!(resolve(&idx, "amd64", &req(&["tzdata=2023c-1"])).is_err());
    }

    #[test]
    fn provides() {
        let idx = index(&[
            ("app", "1", "amd64", "Depends: awk, libx (>= 2), liby (>= 1)\n"),
            ("mawk", "1.3", "amd64", "Provides: awk\n"),
            ("libx-impl", "1", "amd64", "Provides: libx (= 2.5)\n"),
            ("liby-impl", "1", "amd64", "Provides: liby\n"),
            ("liby-new", "1", "amd64", "Provides: liby (= 1.1)\n"),
        ]);
        let set = resolve(&idx, "amd64", &req(&["app"])).unwrap();
        assert_eq!(names(&set), ["app=1", "libx-impl=1", "liby-new=1", "mawk=1.3"]);
    }

    #[test]
    fn unresolvable_names_the_chain() {
        let idx = index(&[
            ("app", "1", "amd64", "Depends: libbar\n"),
            ("libbar", "1", "amd64", "Depends: libfoo (>= 2)\n"),
            ("libfoo", "1.0", "amd64", ""),
            ("unversioned", "1", "amd64", "Depends: virt (>= 1)\n"),
            ("impl", "1", "amd64", "Provides: virt\n"),
        ]);
        let err = resolve(&idx, "amd64", &req(&["app"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unresolvable: app -> libbar -> libfoo (>= 2) -> no candidate (have 1.0)"
        );
        let err = resolve(&idx, "amd64", &req(&["nope"])).unwrap_err();
        assert_eq!(err.to_string(), "unresolvable: nope -> no candidate (no such package)");
        let err = resolve(&idx, "amd64", &req(&["unversioned"])).unwrap_err();
        assert!(err.to_string().contains("no provider satisfies"), "{err}");
    }

    #[test]
    fn one_version_per_name() {
        let idx = index(&[
            ("app", "1", "amd64", "Depends: libfoo (>= 2)\n"),
            ("libfoo", "1", "amd64", ""),
            ("libfoo", "2", "amd64", ""),
        ]);
        let err = resolve(&idx, "amd64", &req(&["libfoo=1", "app"])).unwrap_err();
        assert!(err.to_string().contains("have 1 chosen"), "{err}");
    }
}
