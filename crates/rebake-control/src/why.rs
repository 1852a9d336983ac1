//! `Why`: the causal chain of a build.
//!
//! The chain starts with the build asked about (depth 0, kind `build`) and follows its causes
//! (bucket `builds`, oldest first):
//!
//! - a `parent-published` cause (written by the resolver when a parent's publication made
//!   the image buildable; its event id is the parent's build id, its description
//!   `parent <name> published <digest>`) leads to the parent's build, found by that id, else
//!   as the parent's published build with that digest, else as the parent's latest build
//!   published before the cause. That build is a step one level deeper, and its own causes
//!   are followed in turn;
//! - any other cause is where the chain ends: kind `operator` for operator requests
//!   (`manual`, `operator`), `upstream` for everything else (`registry-tag`, `git-ref`,
//!   `package-feed`, `advisory`, `resync`, ...).
//!
//! A build's causes start with the causes its parent's build inherited; once that parent
//! build is found they are shown under it rather than repeated under the child. The walk
//! never visits a build twice and stops at [`MAX_DEPTH`].

use std::collections::{HashMap, HashSet};

use rebake_events::{
    ImageName,
    state::{BuildRecord, CauseRecord, ImageState},
};
use rebake_proto::control::v1 as api;

use crate::{ControlError, Result, builds, service::ControlService};

/// Deepest chain followed (a catalog deeper than this is not realistic).
pub(crate) const MAX_DEPTH: i32 = 32;

const PARENT_PUBLISHED: &str = "parent-published";

pub(crate) async fn why(service: &ControlService, request: &api::WhyRequest) -> Result<api::WhyResponse> {
    let build_id = if request.build_id.trim().is_empty() {
        let image = request.image.trim();
        if image.is_empty() {
            return Err(ControlError::InvalidArgument {
                field: "build_id",
                reason: "give a build id or an image".to_string(),
            });
        }
        let name = ImageName::new(image).map_err(|error| ControlError::invalid_image("image", error))?;
        let state = service
            .images
            .images
            .get::<ImageState>(&name.kv_key())
            .await?
            .ok_or_else(|| ControlError::NotFound { name: name.to_string() })?;
        if state.last_build_id.is_empty() {
            return Err(ControlError::NotFound {
                name: format!("last build of {name}"),
            });
        }
        state.last_build_id
    } else {
        builds::check_build_id("build_id", &request.build_id)?
    };
    let all = builds::all_builds(&service.images.builds).await?;
    let index = BuildIndex::new(all);
    let start = index.by_id.get(&build_id).cloned().ok_or(ControlError::BuildNotFound {
        build_id: build_id.clone(),
    })?;
    Ok(api::WhyResponse {
        build_id,
        image: start.image.clone(),
        chain: chain(&start, &index),
    })
}

/// Build records by id and by image, for the walk.
#[derive(Debug, Default)]
pub(crate) struct BuildIndex {
    by_id: HashMap<String, BuildRecord>,
    by_image: HashMap<String, Vec<BuildRecord>>,
}

impl BuildIndex {
    pub(crate) fn new(builds: Vec<BuildRecord>) -> Self {
        let mut index = Self::default();
        for build in builds {
            index
                .by_image
                .entry(build.image.clone())
                .or_default()
                .push(build.clone());
            index.by_id.insert(build.build_id.clone(), build);
        }
        index
    }

    /// The parent build a `parent-published` cause points at.
    fn parent_build(&self, cause: &CauseRecord) -> Option<&BuildRecord> {
        let (parent, digest) = parse_parent_published(&cause.description);
        if let Some(build) = self.by_id.get(&cause.event_id)
            && parent.as_deref().is_none_or(|parent| parent == build.image)
        {
            return Some(build);
        }
        let builds = self.by_image.get(parent.as_deref()?)?;
        let published = || builds.iter().filter(|build| build.status == "published");
        if let Some(digest) = digest.as_deref()
            && let Some(build) = published().find(|build| build.digest == digest)
        {
            return Some(build);
        }
        published()
            .filter(|build| cause.at_ms <= 0 || build.finished_at_ms <= cause.at_ms)
            .max_by_key(|build| build.finished_at_ms)
    }
}

/// `parent <name> published <digest>` → (name, digest).
fn parse_parent_published(description: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = description.strip_prefix("parent ") else {
        return (None, None);
    };
    match rest.split_once(" published ") {
        Some((parent, digest)) => (Some(parent.trim().to_string()), Some(digest.trim().to_string())),
        None => (Some(rest.trim().to_string()), None),
    }
}

fn build_step(depth: i32, build: &BuildRecord) -> api::WhyStep {
    let mut description = format!("build {} of {} ({})", build.build_id, build.image, build.status);
    if !build.reason.is_empty() {
        description.push_str(": ");
        description.push_str(&build.reason);
    }
    api::WhyStep {
        depth,
        kind: "build".to_string(),
        image: build.image.clone(),
        build_id: build.build_id.clone(),
        description,
        at_ms: build.requested_at_ms,
        event_id: String::new(),
        digest: if build.status == "published" {
            build.digest.clone()
        } else {
            String::new()
        },
    }
}

fn cause_step(depth: i32, image: &str, cause: &CauseRecord) -> api::WhyStep {
    let kind = if matches!(cause.kind.as_str(), "manual" | "operator") {
        "operator"
    } else {
        "upstream"
    };
    api::WhyStep {
        depth,
        kind: kind.to_string(),
        image: image.to_string(),
        build_id: String::new(),
        description: format!("{}: {}", cause.kind, cause.description),
        at_ms: cause.at_ms,
        event_id: cause.event_id.clone(),
        digest: String::new(),
    }
}

/// The chain of `start`: the build, then depth-first what caused it.
pub(crate) fn chain(start: &BuildRecord, index: &BuildIndex) -> Vec<api::WhyStep> {
    let mut steps = vec![build_step(0, start)];
    let mut visited = HashSet::from([start.build_id.clone()]);
    walk(start, 0, index, &mut visited, &mut steps);
    steps
}

fn walk(
    build: &BuildRecord,
    depth: i32,
    index: &BuildIndex,
    visited: &mut HashSet<String>,
    steps: &mut Vec<api::WhyStep>,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    let parents: Vec<(usize, Option<&BuildRecord>)> = build
        .causes
        .iter()
        .enumerate()
        .filter(|(_, cause)| cause.kind == PARENT_PUBLISHED)
        .map(|(at, cause)| (at, index.parent_build(cause)))
        .collect();
    // Causes the child inherited from a parent build found: shown under that build.
    let inherited: Vec<&CauseRecord> = parents
        .iter()
        .filter_map(|(_, parent)| *parent)
        .flat_map(|parent| parent.causes.iter())
        .collect();
    for (at, cause) in build.causes.iter().enumerate() {
        // What a parent's build already had (including *its* parent's publication) is
        // shown under that build, not as a second parent of this one.
        if inherited.contains(&cause) {
            continue;
        }
        if cause.kind != PARENT_PUBLISHED {
            steps.push(cause_step(depth + 1, &build.image, cause));
            continue;
        }
        let parent = parents
            .iter()
            .find(|(index, _)| *index == at)
            .and_then(|(_, parent)| *parent);
        match parent {
            Some(parent) if visited.insert(parent.build_id.clone()) => {
                steps.push(build_step(depth + 1, parent));
                walk(parent, depth + 1, index, visited, steps);
            }
            Some(_) => {}
            None => {
                // The parent's build record is gone: say what is known.
                let (parent, digest) = parse_parent_published(&cause.description);
                steps.push(api::WhyStep {
                    depth: depth + 1,
                    kind: "build".to_string(),
                    image: parent.unwrap_or_default(),
                    build_id: cause.event_id.clone(),
                    description: cause.description.clone(),
                    at_ms: cause.at_ms,
                    event_id: String::new(),
                    digest: digest.unwrap_or_default(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(kind: &str, description: &str, event_id: &str, at_ms: i64) -> CauseRecord {
        CauseRecord {
            kind: kind.into(),
            description: description.into(),
            event_id: event_id.into(),
            at_ms,
        }
    }

    fn build(id: &str, image: &str, digest: &str, finished: i64, causes: Vec<CauseRecord>) -> BuildRecord {
        BuildRecord {
            build_id: id.into(),
            image: image.into(),
            status: "published".into(),
            digest: digest.into(),
            requested_at_ms: finished - 10,
            finished_at_ms: finished,
            causes,
            ..Default::default()
        }
    }

    fn summary(chain: &[api::WhyStep]) -> Vec<(i32, &str, &str)> {
        chain
            .iter()
            .map(|step| {
                let what = if step.build_id.is_empty() {
                    step.event_id.as_str()
                } else {
                    step.build_id.as_str()
                };
                (step.depth, step.kind.as_str(), what)
            })
            .collect()
    }

    #[test]
    fn child_chain_reaches_the_upstream_event_through_the_parent() {
        let push = cause("registry-tag", "reg/base:v1 -> sha256:b", "ev-push", 100);
        let app = build("app-1", "app", "sha256:app", 200, vec![push.clone()]);
        let child = build(
            "child-1",
            "child",
            "sha256:child",
            300,
            vec![
                push.clone(),
                cause("parent-published", "parent app published sha256:app", "app-1", 200),
            ],
        );
        let index = BuildIndex::new(vec![app, child.clone()]);
        let chain = chain(&child, &index);
        assert_eq!(
            summary(&chain),
            [
                (0, "build", "child-1"),
                (1, "build", "app-1"),
                (2, "upstream", "ev-push")
            ]
        );
        assert_eq!(chain[1].digest, "sha256:app");
        assert_eq!(chain[2].description, "registry-tag: reg/base:v1 -> sha256:b");
    }

    #[test]
    fn a_grandparents_publication_inherited_through_the_parent_stays_under_the_parent() {
        let push = cause("registry-tag", "reg/debian:12 -> sha256:d", "ev-push", 100);
        let base = build("base-1", "base", "sha256:base", 200, vec![push.clone()]);
        let base_published = cause("parent-published", "parent base published sha256:base", "base-1", 200);
        let resumed = cause("manual", "web resumed", "ev-resume", 250);
        let web = build(
            "web-1",
            "web",
            "sha256:web",
            300,
            vec![push.clone(), base_published.clone(), resumed.clone()],
        );
        let debug = build(
            "debug-1",
            "web-debug",
            "sha256:debug",
            400,
            vec![
                push.clone(),
                base_published,
                resumed,
                cause("parent-published", "parent web published sha256:web", "web-1", 300),
            ],
        );
        let index = BuildIndex::new(vec![base, web, debug.clone()]);
        assert_eq!(
            summary(&chain(&debug, &index)),
            [
                (0, "build", "debug-1"),
                (1, "build", "web-1"),
                (2, "build", "base-1"),
                (3, "upstream", "ev-push"),
                (2, "operator", "ev-resume"),
            ]
        );
    }

    #[test]
    fn parent_found_by_digest_or_time_when_the_id_is_unknown() {
        let push = cause("git-ref", "repo#main -> abc", "ev-git", 50);
        let old = build("app-0", "app", "sha256:old", 90, vec![]);
        let app = build("app-1", "app", "sha256:app", 200, vec![push.clone()]);
        let later = build("app-2", "app", "sha256:later", 900, vec![]);
        let by_digest = build(
            "child-1",
            "child",
            "",
            300,
            vec![cause(
                "parent-published",
                "parent app published sha256:app",
                "gone",
                250,
            )],
        );
        let index = BuildIndex::new(vec![old, app, later, by_digest.clone()]);
        assert_eq!(chain(&by_digest, &index)[1].build_id, "app-1");
        let by_time = build(
            "child-2",
            "child",
            "",
            300,
            vec![cause(
                "parent-published",
                "parent app published sha256:unknown",
                "gone",
                250,
            )],
        );
        assert_eq!(chain(&by_time, &index)[1].build_id, "app-1");
    }

    #[test]
    fn own_causes_operator_and_missing_parents() {
        let child = build(
            "child-1",
            "child",
            "",
            300,
            vec![
                cause("parent-published", "parent app published sha256:app", "app-9", 200),
                cause("manual", "rebuild asked by ops", "ev-op", 250),
            ],
        );
        let index = BuildIndex::new(vec![child.clone()]);
        let chain = chain(&child, &index);
        assert_eq!(
            summary(&chain),
            [(0, "build", "child-1"), (1, "build", "app-9"), (1, "operator", "ev-op")]
        );
        assert_eq!(chain[1].image, "app");
        assert_eq!(chain[1].digest, "sha256:app");
    }

    #[test]
    fn cycles_and_depth_are_bounded() {
        let a = build(
            "a-1",
            "a",
            "sha256:a",
            100,
            vec![cause("parent-published", "parent b published sha256:b", "b-1", 90)],
        );
        let b = build(
            "b-1",
            "b",
            "sha256:b",
            90,
            vec![cause("parent-published", "parent a published sha256:a", "a-1", 100)],
        );
        let index = BuildIndex::new(vec![a.clone(), b]);
        assert_eq!(summary(&chain(&a, &index)), [(0, "build", "a-1"), (1, "build", "b-1")]);

        // A long line of parents stops at MAX_DEPTH.
        let mut builds = Vec::new();
        for level in 0..(MAX_DEPTH + 10) {
            let causes = vec![cause(
                "parent-published",
                &format!("parent i{} published sha256:{}", level + 1, level + 1),
                &format!("b{}", level + 1),
                1,
            )];
            builds.push(build(
                &format!("b{level}"),
                &format!("i{level}"),
                &format!("sha256:{level}"),
                1,
                causes,
            ));
        }
        let start = builds[0].clone();
        let index = BuildIndex::new(builds);
        let chain = chain(&start, &index);
        assert_eq!(chain.last().unwrap().depth, MAX_DEPTH);
        assert_eq!(chain.len(), MAX_DEPTH as usize + 1);
    }
}
