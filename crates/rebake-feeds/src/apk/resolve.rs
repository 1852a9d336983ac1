//! Dependency resolution over an `APKINDEX` to a closed package set.
//!
//! A greedy, deterministic resolver: dependencies are processed breadth-first in the
//! order they appear; each one is satisfied by an already selected package when possible,
//! otherwise by the best provider: a real package of that name (highest version) first,
//! then `p:` providers ordered by provider priority (`k:`), version and name. There is no
//! backtracking; a later constraint that the selected version of a name violates is
//! reported as unresolvable. `!name` conflicts are checked on the final set.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::error::{ApkError, Result};
use super::index::{ApkDependency, ApkPackage};
use super::version::ApkVersion;

/// A package offering a name, with the version it offers it at.
struct Offer {
    pkg: usize,
    version: Option<ApkVersion>,
    real: bool,
}

fn offers_for<'a>(by_name: &'a HashMap<&str, Vec<Offer>>, dep: &ApkDependency) -> impl Iterator<Item = &'a Offer> {
    by_name
        .get(dep.name.as_str())
        .into_iter()
        .flatten()
        .filter(|o| dep.version_matches(o.version.as_ref()))
}

/// Resolves `world` (dependency atoms such as `busybox` or `musl>=1.2`) against `index`
/// for `arch` (packages with `A:` equal to `arch`, `noarch` or empty are candidates) and
/// returns the closed set, sorted by name.
pub fn resolve<'a>(index: &'a [ApkPackage], arch: &str, world: &[String]) -> Result<Vec<&'a ApkPackage>> {
    let candidates: Vec<&ApkPackage> = index
        .iter()
        .filter(|p| p.arch == arch || p.arch == "noarch" || p.arch.is_empty())
        .collect();
    let mut by_name: HashMap<&str, Vec<Offer>> = HashMap::new();
    for (i, p) in candidates.iter().enumerate() {
        by_name.entry(p.name.as_str()).or_default().push(Offer {
            pkg: i,
            version: Some(p.version.clone()),
            real: true,
        });
        for pr in &p.provides {
            by_name.entry(pr.name.as_str()).or_default().push(Offer {
                pkg: i,
                version: pr.version.clone(),
                real: false,
            });
        }
    }

    let mut queue: VecDeque<(ApkDependency, Vec<String>)> = VecDeque::new();
    for w in world {
        queue.push_back((ApkDependency::parse(w)?, Vec::new()));
    }
    // name -> candidate index
    let mut selected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut conflicts: Vec<(ApkDependency, String)> = Vec::new();
    let unresolvable = |chain: &[String], dep: &ApkDependency, why: &str| {
        let mut parts = chain.to_vec();
        parts.push(dep.to_string());
        parts.push(why.to_owned());
        ApkError::Unresolvable {
            chain: parts.join(" -> "),
        }
    };

    while let Some((dep, chain)) = queue.pop_front() {
        if dep.conflict {
            conflicts.push((dep, chain.first().cloned().unwrap_or_default()));
            continue;
        }
        let offers: Vec<&Offer> = offers_for(&by_name, &dep).collect();
        if offers
            .iter()
            .any(|o| selected.get(candidates[o.pkg].name.as_str()) == Some(&o.pkg))
        {
            continue;
        }
        // Prefer a provider whose package name is already selected (at another version
        // nothing can be done without backtracking).
        let best = offers
            .iter()
            .filter(|o| !selected.contains_key(candidates[o.pkg].name.as_str()))
            .max_by(|a, b| {
                let (pa, pb) = (candidates[a.pkg], candidates[b.pkg]);
                a.real
                    .cmp(&b.real)
                    .then(pa.provider_priority.cmp(&pb.provider_priority))
                    .then(a.version.cmp(&b.version))
                    .then(pa.version.cmp(&pb.version))
                    .then(pb.name.cmp(&pa.name))
            });
        let Some(best) = best else {
            if let Some(&clash) = offers
                .iter()
                .find_map(|o| selected.get(candidates[o.pkg].name.as_str()))
            {
                let clash = candidates[clash];
                return Err(unresolvable(
                    &chain,
                    &dep,
                    &format!("conflicts with selected {}", clash.id()),
                ));
            }
            let why = if by_name.contains_key(dep.name.as_str()) {
                "no provider with a matching version"
            } else {
                "no provider"
            };
            return Err(unresolvable(&chain, &dep, why));
        };
        let pkg = candidates[best.pkg];
        selected.insert(pkg.name.as_str(), best.pkg);
        let mut next = chain.clone();
        next.push(pkg.name.clone());
        for d in &pkg.depends {
            queue.push_back((d.clone(), next.clone()));
        }
    }

    for (dep, root) in &conflicts {
        let positive = ApkDependency {
            conflict: false,
            ..dep.clone()
        };
        let mut clashing =
            offers_for(&by_name, &positive).filter(|o| selected.get(candidates[o.pkg].name.as_str()) == Some(&o.pkg));
        if let Some(o) = clashing.next() {
            return Err(ApkError::Conflict(format!(
                "{} (pulled in via {root}) conflicts with selected {}",
                dep,
                candidates[o.pkg].id()
            )));
        }
    }

    Ok(selected.values().map(|&i| candidates[i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apk::index::parse_apkindex;

    const INDEX: &str = "\
P:musl
V:1.2.4-r0
A:x86_64
p:so:libc.musl-x86_64.so.1=1

P:musl
V:1.2.5-r0
A:x86_64
p:so:libc.musl-x86_64.so.1=1

P:musl
V:9.0-r0
A:aarch64

P:busybox
V:1.36.1-r0
A:x86_64
D:so:libc.musl-x86_64.so.1
p:cmd:sh=1.36.1-r0 /bin/sh

P:app
V:1.0-r0
A:x86_64
D:cmd:sh libfoo>=2 so:libc.musl-x86_64.so.1

P:libfoo
V:1.0-r0
A:x86_64

P:libfoo
V:2.1-r0
A:x86_64
D:musl~1.2

P:tzdata
V:2024a-r0
A:noarch

P:broken
V:1-r0
A:x86_64
D:so:libmissing.so.1

P:old-musl-user
V:1-r0
A:x86_64
D:musl<1.2.5

P:antibusybox
V:1-r0
A:x86_64
D:!busybox
";

    fn names(v: &[&ApkPackage]) -> Vec<String> {
        v.iter().map(|p| p.id()).collect()
    }

    #[test]
    fn resolves_closed_set() {
        let idx = parse_apkindex(INDEX).unwrap();
        let got = resolve(&idx, "x86_64", &["app".into(), "tzdata".into()]).unwrap();
        assert_eq!(
            names(&got),
            [
                "app-1.0-r0",
                "busybox-1.36.1-r0",
                "libfoo-2.1-r0",
                "musl-1.2.5-r0",
                "tzdata-2024a-r0"
            ]
        );
    }

    #[test]
    fn honours_constraints() {
        let idx = parse_apkindex(INDEX).unwrap();
        let got = resolve(&idx, "x86_64", &["libfoo<2".into(), "musl=1.2.4-r0".into()]).unwrap();
        assert_eq!(names(&got), ["libfoo-1.0-r0", "musl-1.2.4-r0"]);
        let got = resolve(&idx, "x86_64", &["old-musl-user".into()]).unwrap();
        assert_eq!(names(&got), ["musl-1.2.4-r0", "old-musl-user-1-r0"]);
    }

    #[test]
    fn reports_chain() {
        let idx = parse_apkindex(INDEX).unwrap();
        match resolve(&idx, "x86_64", &["broken".into()]) {
            Err(ApkError::Unresolvable { chain }) => {
                assert_eq!(chain, "broken -> so:libmissing.so.1 -> no provider")
            }
            other => panic!("unexpected {other:?}"),
        }
        match resolve(&idx, "x86_64", &["musl>=9".into()]) {
            Err(ApkError::Unresolvable { chain }) => {
                assert_eq!(chain, "musl>=9 -> no provider with a matching version")
            }
            other => panic!("unexpected {other:?}"),
        }
        match resolve(&idx, "x86_64", &["busybox".into(), "old-musl-user".into()]) {
            Err(ApkError::Unresolvable { chain }) => assert_eq!(
                chain,
                "old-musl-user -> musl<1.2.5 -> conflicts with selected musl-1.2.5-r0"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reports_conflicts() {
        let idx = parse_apkindex(INDEX).unwrap();
        let err = resolve(&idx, "x86_64", &["antibusybox".into(), "busybox".into()]).unwrap_err();
        assert!(matches!(err, ApkError::Conflict(_)), "{err}");
        assert!(resolve(&idx, "x86_64", &["antibusybox".into()]).is_ok());
    }

    #[test]
    fn deterministic_and_arch_filtered() {
        let idx = parse_apkindex(INDEX).unwrap();
        let a = resolve(&idx, "x86_64", &["tzdata".into(), "app".into()]).unwrap();
        let b = resolve(&idx, "x86_64", &["app".into(), "tzdata".into()]).unwrap();
        assert_eq!(names(&a), names(&b));
        let got = resolve(&idx, "aarch64", &["musl".into()]).unwrap();
        assert_eq!(names(&got), ["musl-9.0-r0"]);
    }
}
