//! The level-triggered core: given the catalog and what is known of upstream state, decide
//! for every image whether it needs a build. Pure (no I/O), so every rule is unit-tested.
//!
//! Rules, applied to every image in dependency order on every pass:
//! - an image's desired inputs hash comes from its spec, its base digest and its source
//!   commits; while one of those is unknown the image is `waiting`;
//! - an image with `packages:` needs its install set resolved against its feed (the service
//!   does that and hands the result in with [`Planner::set_packages`]); the resolved set is
//!   part of the inputs hash, so a feed change rebuilds exactly the images whose set changed,
//!   and an unresolvable set marks the image failed with the chain that failed;
//! - an image whose catalog parent is not settled (building, waiting, failed, or out of date)
//!   waits for it, so a cascade builds each image once, after its parent, on the parent's new
//!   digest;
//! - desired = published → nothing to do; desired = pending → already asked; desired = last
//!   failure → not again until a retry is due; otherwise a build is requested;
//! - an operator's trigger ([`Planner::force`]) builds the image on the next pass where it is
//!   buildable even when nothing changed (or its inputs failed before); it stays pending while
//!   the image waits, and a build already in flight on the same inputs answers it;
//! - a paused image ([`Planner::set_paused`]) is never requested: its status stays what it
//!   was, its reason says `paused: <reason>`, the causes of the builds it skipped are kept
//!   for the build that follows the resume, and its children wait while it is out of date.

use std::collections::{BTreeMap, HashMap};

use rebake_config::{Catalog, ImageSpec};
use rebake_events::{
    ImageName,
    state::{
        BuildFailure, CauseRecord, ImageState, ImageStatus, PackageRecord, PendingBuild, SourceRevision, inputs_hash,
    },
};

/// A build the planner wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBuild {
    /// Image.
    pub image: ImageName,
    /// Build id (already recorded as pending).
    pub build_id: String,
    /// Inputs hash.
    pub inputs_hash: String,
    /// Base reference as written.
    pub base_ref: String,
    /// Base digest.
    pub base_digest: String,
    /// Sources at their commits.
    pub sources: Vec<SourceRevision>,
    /// Resolved packages, per platform.
    pub packages: Vec<PackageRecord>,
    /// Canonical spec JSON.
    pub spec_json: String,
    /// Why.
    pub causes: Vec<CauseRecord>,
}

/// Planner state: the catalog, upstream knowledge and every image's state.
#[derive(Debug, Default)]
pub struct Planner {
    catalog: Catalog,
    order: Vec<ImageName>,
    /// `registry/repository:tag` → digest.
    tags: HashMap<String, String>,
    /// (identity, branch) → commit.
    branches: HashMap<(String, String), String>,
    images: BTreeMap<ImageName, ImageState>,
    /// Resolved package sets of images with `packages:`.
    packages: HashMap<ImageName, PackageResolution>,
    /// Images an operator asked to rebuild, with the cause to record.
    forced: HashMap<ImageName, CauseRecord>,
    /// Causes of builds a pause held back, for the build after the resume.
    deferred: HashMap<ImageName, Vec<CauseRecord>>,
    /// How long a pending build may stay pending before it is presumed lost.
    pub pending_timeout_ms: i64,
    /// How long after a failure the same inputs are tried again.
    pub failure_retry_ms: i64,
}

impl Planner {
    /// A planner over `catalog` with the image states loaded from KV.
    pub fn new(catalog: Catalog, mut images: BTreeMap<ImageName, ImageState>) -> Self {
        let mut order: Vec<ImageName> = catalog.images().map(|spec| spec.name.clone()).collect();
        order.sort_by_key(|name| (catalog.ancestors(name).len(), name.clone()));
        images.retain(|name, _| catalog.get(name).is_some());
        for name in &order {
            images.entry(name.clone()).or_insert_with(|| ImageState {
                name: name.to_string(),
                ..Default::default()
            });
        }
        Self {
            catalog,
            order,
            tags: HashMap::new(),
            branches: HashMap::new(),
            images,
            packages: HashMap::new(),
            forced: HashMap::new(),
            deferred: HashMap::new(),
            pending_timeout_ms: 30 * 60 * 1000,
            failure_retry_ms: 5 * 60 * 1000,
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Every image's state.
    pub fn images(&self) -> &BTreeMap<ImageName, ImageState> {
        &self.images
    }

    /// Every tag reference the catalog tracks (bases that are tags).
    pub fn tracked_tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self.catalog.images().filter_map(ImageSpec::base_tag_ref).collect();
        tags.sort();
        tags.dedup();
        tags
    }

    /// Every (url, identity, branch) the catalog tracks.
    pub fn tracked_branches(&self) -> Vec<(String, String, String)> {
        let mut branches: Vec<(String, String, String)> = self
            .catalog
            .images()
            .flat_map(|spec| {
                spec.sources
                    .iter()
                    .map(|source| (source.url.clone(), source.identity(), source.ref_name.clone()))
            })
            .collect();
        branches.sort();
        branches.dedup();
        branches
    }

    /// Whether `tag_ref` is a base some image tracks.
    pub fn tracks_tag(&self, tag_ref: &str) -> bool {
        self.catalog
            .images()
            .any(|spec| spec.base_tag_ref().as_deref() == Some(tag_ref))
    }

    /// Whether a branch of `identity` is tracked.
    pub fn tracks_branch(&self, identity: &str, branch: &str) -> bool {
        self.catalog.images().any(|spec| {
            spec.sources
                .iter()
                .any(|source| source.identity() == identity && source.ref_name == branch)
        })
    }

    /// Records a tag's digest. Returns whether it changed.
    pub fn set_tag(&mut self, tag_ref: &str, digest: &str) -> bool {
        self.tags.insert(tag_ref.to_string(), digest.to_string()).as_deref() != Some(digest)
    }

    /// Forgets a tag (it was deleted upstream).
    pub fn remove_tag(&mut self, tag_ref: &str) -> bool {
        self.tags.remove(tag_ref).is_some()
    }

    /// The digest known for a tag.
    pub fn tag(&self, tag_ref: &str) -> Option<&str> {
        self.tags.get(tag_ref).map(String::as_str)
    }

    /// The commit known for a branch.
    pub fn branch(&self, identity: &str, branch: &str) -> Option<&str> {
        self.branches
            .get(&(identity.to_string(), branch.to_string()))
            .map(String::as_str)
    }

    /// Records a branch's commit. Returns whether it changed.
    pub fn set_branch(&mut self, identity: &str, branch: &str, commit: &str) -> bool {
        self.branches
            .insert((identity.to_string(), branch.to_string()), commit.to_string())
            .as_deref()
            != Some(commit)
    }

    /// Records the package resolution of an image. Returns whether it changed.
    pub fn set_packages(&mut self, image: &ImageName, resolution: PackageResolution) -> bool {
        self.packages.insert(image.clone(), resolution.clone()).as_ref() != Some(&resolution)
    }

    /// Records a publication (clears the pending build, sets the published image, and
    /// records the new digest of every published tag so children see it).
    pub fn published(&mut self, image: &ImageName, published: rebake_events::state::PublishedImage) {
        for tag in &published.tags {
            self.tags
                .insert(format!("{}:{tag}", published.repository), published.digest.clone());
        }
        if let Some(state) = self.images.get_mut(image) {
            if state
                .pending
                .as_ref()
                .is_some_and(|pending| pending.inputs_hash == published.inputs_hash)
            {
                state.pending = None;
            }
            state.last_build_id = published.build_id.clone();
            if state
                .last_failure
                .as_ref()
                .is_some_and(|failure| failure.inputs_hash == published.inputs_hash)
            {
                state.last_failure = None;
            }
            state.published = Some(published);
        }
    }

    /// Records a failure.
    pub fn failed(&mut self, image: &ImageName, failure: BuildFailure) {
        if let Some(state) = self.images.get_mut(image) {
            if state
                .pending
                .as_ref()
                .is_some_and(|pending| pending.build_id == failure.build_id)
            {
                state.pending = None;
            }
            state.last_build_id = failure.build_id.clone();
            state.last_failure = Some(failure);
        }
    }

    /// Forgets that a build was requested (its request could not be sent).
    pub fn clear_pending(&mut self, image: &ImageName, build_id: &str) {
        if let Some(state) = self.images.get_mut(image)
            && state
                .pending
                .as_ref()
                .is_some_and(|pending| pending.build_id == build_id)
        {
            state.pending = None;
        }
    }

    /// Asks for a build of `image` on the next pass where it is buildable, even when its
    /// inputs are published or failed before; `cause` goes on that build. Returns false for
    /// an image not in the catalog.
    pub fn force(&mut self, image: &ImageName, cause: CauseRecord) -> bool {
        if self.catalog.get(image).is_none() {
            return false;
        }
        self.forced.insert(image.clone(), cause);
        true
    }

    /// Whether a forced build of `image` is still to be planned.
    pub fn is_forced(&self, image: &ImageName) -> bool {
        self.forced.contains_key(image)
    }

    /// Pauses (with `reason`) or resumes `image`. Returns whether anything changed (false
    /// too for an image not in the catalog).
    pub fn set_paused(&mut self, image: &ImageName, paused: bool, reason: &str) -> bool {
        let Some(state) = self.images.get_mut(image) else {
            return false;
        };
        let reason = if paused { reason.to_string() } else { String::new() };
        if state.paused == paused && state.paused_reason == reason {
            return false;
        }
        state.paused = paused;
        state.paused_reason = reason;
        if !paused && state.status_reason.starts_with("paused: ") {
            state.status_reason.clear();
        }
        true
    }

    /// Forces the next pass to request `image` again even if its inputs failed before.
    pub fn forget_failure(&mut self, image: &ImageName) {
        if let Some(state) = self.images.get_mut(image) {
            state.last_failure = None;
        }
    }

    /// One pass over every image in dependency order. Returns the builds to request; their
    /// pending state is already recorded. `causes` explains this pass (what changed); an
    /// image made buildable by its parent's publication continues the parent's chain.
    pub fn plan(
        &mut self,
        now_ms: i64,
        causes: &[CauseRecord],
        mut new_build_id: impl FnMut() -> String,
    ) -> Vec<PlannedBuild> {
        let mut planned = Vec::new();
        let mut unsettled: HashMap<ImageName, String> = HashMap::new();
        for name in self.order.clone() {
            let spec = self
                .catalog
                .get(&name)
                .expect("planner order lists catalog images only")
                .clone();
            let forced = self.forced.contains_key(&name);
            let mut decision = self.decide(&spec, &unsettled, now_ms, forced);
            let state = self
                .images
                .get_mut(&name)
                .expect("planner keeps a state per catalog image");
            if state.paused
                && let Decision::Build(_) = decision
            {
                // Held back: keep what asked for it for the build after the resume.
                let deferred = self.deferred.entry(name.clone()).or_default();
                for cause in causes {
                    if !deferred.contains(cause) && deferred.len() < MAX_DEFERRED_CAUSES {
                        deferred.push(cause.clone());
                    }
                }
                decision = Decision::Paused;
            }
            if forced && matches!(decision, Decision::Build(_) | Decision::InFlight { .. }) {
                // In flight on the same inputs: that build answers the trigger.
                let cause = self.forced.remove(&name).expect("checked above");
                if let Decision::Build(_) = decision {
                    self.deferred.entry(name.clone()).or_default().push(cause);
                }
            }
            match decision {
                Decision::Paused => {
                    unsettled.insert(name.clone(), format!("{name} is paused"));
                }
                Decision::Wait(reason) => {
                    state.status = ImageStatus::Waiting;
                    state.status_reason = reason.clone();
                    unsettled.insert(name.clone(), reason);
                }
                Decision::UpToDate { desired } => {
                    state.desired_inputs_hash = desired;
                    state.status = ImageStatus::Published;
                    state.status_reason.clear();
                }
                Decision::InFlight { desired } => {
                    state.desired_inputs_hash = desired;
                    state.status = ImageStatus::Building;
                    state.status_reason = "build in progress".to_string();
                    unsettled.insert(name.clone(), format!("{name} is being built"));
                }
                Decision::Unresolvable(reason) => {
                    state.status = ImageStatus::Failed;
                    state.status_reason = reason;
                    unsettled.insert(name.clone(), format!("{name} cannot be resolved"));
                }
                Decision::FailedBefore { desired, reason } => {
                    state.desired_inputs_hash = desired;
                    state.status = ImageStatus::Failed;
                    state.status_reason = reason;
                    unsettled.insert(name.clone(), format!("{name} failed"));
                }
                Decision::Build(inputs) => {
                    let build_id = new_build_id();
                    state.desired_inputs_hash = inputs.inputs_hash.clone();
                    state.status = ImageStatus::Building;
                    state.status_reason = "build requested".to_string();
                    state.pending = Some(PendingBuild {
                        build_id: build_id.clone(),
                        inputs_hash: inputs.inputs_hash.clone(),
                        requested_at_ms: now_ms,
                    });
                    state.last_build_id = build_id.clone();
                    unsettled.insert(name.clone(), format!("{name} is being built"));
                    let mut build_causes = self.inherited_causes(&name);
                    build_causes.extend(causes.iter().cloned());
                    for cause in self.deferred.remove(&name).unwrap_or_default() {
                        if !build_causes.contains(&cause) {
                            build_causes.push(cause);
                        }
                    }
                    planned.push(PlannedBuild {
                        image: name.clone(),
                        build_id,
                        inputs_hash: inputs.inputs_hash,
                        base_ref: spec.base.clone(),
                        base_digest: inputs.base_digest,
                        sources: inputs.sources,
                        packages: inputs.packages,
                        spec_json: spec.canonical_json(),
                        causes: build_causes,
                    });
                }
            }
            if let Some(state) = self.images.get_mut(&name)
                && state.paused
            {
                state.status_reason = format!("paused: {}", state.paused_reason);
            }
        }
        planned
    }

    /// When a parent's publication is what made this image buildable, its chain continues
    /// the parent's.
    fn inherited_causes(&self, name: &ImageName) -> Vec<CauseRecord> {
        let Some(parent) = self.catalog.parent(name) else {
            return Vec::new();
        };
        let Some(parent_state) = self.images.get(parent) else {
            return Vec::new();
        };
        let Some(published) = &parent_state.published else {
            return Vec::new();
        };
        let own = self.images.get(name).and_then(|state| state.published.as_ref());
        if own.is_some_and(|own| own.base_digest == published.digest) {
            return Vec::new();
        }
        let mut chain = published.causes.clone();
        chain.push(CauseRecord {
            kind: "parent-published".to_string(),
            description: format!("parent {parent} published {}", published.digest),
            event_id: published.build_id.clone(),
            at_ms: published.published_at_ms,
        });
        chain
    }

    fn decide(&self, spec: &ImageSpec, unsettled: &HashMap<ImageName, String>, now_ms: i64, forced: bool) -> Decision {
        let state = &self.images[&spec.name];
        if let Some(parent) = self.catalog.parent(&spec.name)
            && unsettled.contains_key(parent)
        {
            return Decision::Wait(format!("waiting for parent {parent}: {}", unsettled[parent]));
        }
        let base_digest = if spec.is_scratch() {
            String::new()
        } else if let Some((_, digest)) = spec.base.split_once('@') {
            digest.to_string()
        } else {
            let tag_ref = spec.base_tag_ref().expect("a non-scratch, unpinned base is a tag");
            match self.tags.get(&tag_ref) {
                Some(digest) => digest.clone(),
                None => return Decision::Wait(format!("base {tag_ref} not found yet")),
            }
        };
        let mut sources = Vec::new();
        for source in &spec.sources {
            let key = (source.identity(), source.ref_name.clone());
            match self.branches.get(&key) {
                Some(commit) => sources.push(SourceRevision {
                    url: source.url.clone(),
                    ref_name: source.ref_name.clone(),
                    commit: commit.clone(),
                }),
                None => {
                    return Decision::Wait(format!("branch {} of {} not resolved yet", source.ref_name, source.url));
                }
            }
        }
        let packages = match (&spec.packages, self.packages.get(&spec.name)) {
            (None, _) => Vec::new(),
            (Some(wanted), None) => {
                return Decision::Wait(format!("packages from feed {} not resolved yet", wanted.feed));
            }
            (Some(_), Some(PackageResolution::Unavailable(reason))) => return Decision::Wait(reason.clone()),
            (Some(_), Some(PackageResolution::Failed(reason))) => return Decision::Unresolvable(reason.clone()),
            (Some(_), Some(PackageResolution::Resolved(packages))) => packages.clone(),
        };
        let desired = inputs_hash(&spec.canonical_json(), &base_digest, &sources, &packages);
        if let Some(pending) = &state.pending
            && pending.inputs_hash == desired
            && now_ms - pending.requested_at_ms < self.pending_timeout_ms
        {
            return Decision::InFlight { desired };
        }
        if forced {
            return Decision::Build(Inputs {
                inputs_hash: desired,
                base_digest,
                sources,
                packages,
            });
        }
        if state
            .published
            .as_ref()
            .is_some_and(|published| published.inputs_hash == desired)
        {
            return Decision::UpToDate { desired };
        }
        if let Some(failure) = &state.last_failure
            && failure.inputs_hash == desired
            && now_ms - failure.at_ms < self.failure_retry_ms
        {
            return Decision::FailedBefore {
                desired,
                reason: format!("{} failed: {}", failure.stage, failure.reason),
            };
        }
        Decision::Build(Inputs {
            inputs_hash: desired,
            base_digest,
            sources,
            packages,
        })
    }
}

/// What is known of an image's package set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageResolution {
    /// Resolved to exactly these packages (every platform).
    Resolved(Vec<PackageRecord>),
    /// Cannot be resolved yet (feed not loaded or unreachable): the image waits.
    Unavailable(String),
    /// The install set cannot be satisfied by the feed: the image fails with this chain.
    Failed(String),
}

/// Most causes kept for the build after a resume.
const MAX_DEFERRED_CAUSES: usize = 20;

struct Inputs {
    inputs_hash: String,
    base_digest: String,
    sources: Vec<SourceRevision>,
    packages: Vec<PackageRecord>,
}

enum Decision {
    Paused,
    Wait(String),
    Unresolvable(String),
    UpToDate { desired: String },
    InFlight { desired: String },
    FailedBefore { desired: String, reason: String },
    Build(Inputs),
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rebake_events::state::PublishedImage;

    use super::*;

    fn spec(yaml: &str) -> (PathBuf, ImageSpec) {
        (PathBuf::from("x.yaml"), serde_yaml::from_str(yaml).unwrap())
    }

    fn planner() -> Planner {
        let catalog = Catalog::from_specs(vec![
            spec("name: app\nbase: reg/base:v1\nsources: [{url: /git/app, ref: main}]\npublish: {repository: reg/apps/app}\n"),
            spec("name: child\nbase: reg/apps/app:latest\npublish: {repository: reg/apps/child}\n"),
            spec("name: other\nbase: scratch\npublish: {repository: reg/apps/other}\n"),
        ])
        .unwrap();
        Planner::new(catalog, BTreeMap::new())
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("b{n}")
        }
    }

    fn publish(planner: &mut Planner, build: &PlannedBuild, digest: &str) {
        let repository = planner.catalog().get(&build.image).unwrap().publish.repository.clone();
        planner.published(
            &build.image,
            PublishedImage {
                digest: digest.to_string(),
                inputs_hash: build.inputs_hash.clone(),
                build_id: build.build_id.clone(),
                repository,
                tags: vec!["latest".into()],
                base_digest: build.base_digest.clone(),
                causes: build.causes.clone(),
                ..Default::default()
            },
        );
    }

    fn names(builds: &[PlannedBuild]) -> Vec<&str> {
        builds.iter().map(|build| build.image.as_str()).collect()
    }

    #[test]
    fn cascade_runs_in_dependency_order_once() {
        let mut planner = planner();
        let mut ids = ids();
        // Scratch image with no inputs builds at once; app waits for its base and branch.
        assert_eq!(names(&planner.plan(0, &[], &mut ids)), vec!["other"]);
        planner.set_tag("reg/base:v1", "sha256:b1");
        assert!(planner.plan(0, &[], &mut ids).is_empty(), "branch still unknown");
        planner.set_branch("/git/app", "main", "c1");
        let first = planner.plan(0, &[], &mut ids);
        assert_eq!(names(&first), vec!["app"], "child waits for its parent");
        assert!(
            planner.plan(0, &[], &mut ids).is_empty(),
            "a pending build is not requested twice"
        );
        publish(&mut planner, &first[0], "sha256:app1");
        let second = planner.plan(0, &[], &mut ids);
        assert_eq!(names(&second), vec!["child"]);
        assert_eq!(second[0].base_digest, "sha256:app1");
        assert_eq!(second[0].causes.last().unwrap().kind, "parent-published");
        publish(&mut planner, &second[0], "sha256:child1");
        assert!(planner.plan(0, &[], &mut ids).is_empty(), "everything settled");

        // New base: app rebuilds, child waits until app's new digest is published.
        assert!(planner.set_tag("reg/base:v1", "sha256:b2"));
        let third = planner.plan(0, &[], &mut ids);
        assert_eq!(names(&third), vec!["app"]);
        assert_eq!(
            planner.images()[&ImageName::new("child").unwrap()].status,
            ImageStatus::Waiting
        );
        publish(&mut planner, &third[0], "sha256:app2");
        let fourth = planner.plan(0, &[], &mut ids);
        assert_eq!(names(&fourth), vec!["child"]);
        assert_eq!(fourth[0].base_digest, "sha256:app2");
    }

    fn package(name: &str, version: &str) -> PackageRecord {
        PackageRecord {
            platform: "linux/amd64".into(),
            name: name.into(),
            version: version.into(),
            architecture: "all".into(),
            checksum: format!("{name}-{version}"),
            ..Default::default()
        }
    }

    #[test]
    fn package_sets_rebuild_exactly_the_images_whose_set_changed() {
        let catalog = Catalog::from_specs(vec![
            spec("name: os\nbase: scratch\npackages: {feed: deb, install: [tzdata]}\npublish: {repository: reg/os}\n"),
            spec("name: app\nbase: reg/os:latest\npublish: {repository: reg/app}\n"),
            spec(
                "name: net\nbase: scratch\npackages: {feed: deb, install: [netbase]}\npublish: {repository: reg/net}\n",
            ),
        ])
        .unwrap();
        let mut planner = Planner::new(catalog, BTreeMap::new());
        let mut ids = ids();
        let os = ImageName::new("os").unwrap();
        let net = ImageName::new("net").unwrap();
        // Unresolved: waiting, nothing built.
        assert!(planner.plan(1, &[], &mut ids).is_empty());
        assert_eq!(planner.images()[&os].status, ImageStatus::Waiting);
        planner.set_packages(&os, PackageResolution::Resolved(vec![package("tzdata", "1")]));
        planner.set_packages(&net, PackageResolution::Resolved(vec![package("netbase", "6")]));
        let builds = planner.plan(2, &[], &mut ids);
        assert_eq!(names(&builds), ["net", "os"]);
        assert_eq!(builds[1].packages, vec![package("tzdata", "1")]);
        for build in &builds {
            publish(&mut planner, build, &format!("sha256:{}1", build.image));
        }
        let builds = planner.plan(3, &[], &mut ids);
        assert_eq!(names(&builds), ["app"]);
        publish(&mut planner, &builds[0], "sha256:app1");
        assert!(planner.plan(4, &[], &mut ids).is_empty());

        // The same set again (an unrelated package moved in the feed): nothing.
        assert!(!planner.set_packages(&net, PackageResolution::Resolved(vec![package("netbase", "6")])));
        assert!(planner.plan(5, &[], &mut ids).is_empty());

        // tzdata moved: os, then its child; net stays.
        planner.set_packages(&os, PackageResolution::Resolved(vec![package("tzdata", "2")]));
        let builds = planner.plan(6, &[], &mut ids);
        assert_eq!(names(&builds), ["os"]);
        publish(&mut planner, &builds[0], "sha256:os2");
        assert_eq!(names(&planner.plan(7, &[], &mut ids)), ["app"]);

        // Unsatisfiable: failed with the chain, no build.
        planner.set_packages(
            &net,
            PackageResolution::Failed("netbase -> libmissing -> no candidate".into()),
        );
        assert!(planner.plan(8, &[], &mut ids).is_empty());
        assert_eq!(planner.images()[&net].status, ImageStatus::Failed);
        assert!(planner.images()[&net].status_reason.contains("libmissing"));
    }

    #[test]
    fn same_state_twice_builds_nothing() {
        let mut planner = planner();
        let mut ids = ids();
        planner.plan(0, &[], &mut ids);
        assert!(!planner.set_tag("reg/base:v1", "sha256:b1") || planner.plan(0, &[], &mut ids).len() <= 1);
        assert!(!planner.set_tag("reg/base:v1", "sha256:b1"), "same digest is no change");
    }

    #[test]
    fn failures_wait_for_retry_and_block_children() {
        let mut planner = planner();
        let mut ids = ids();
        planner.set_tag("reg/base:v1", "sha256:b1");
        planner.set_branch("/git/app", "main", "c1");
        let builds = planner.plan(0, &[], &mut ids);
        let app = builds.iter().find(|b| b.image.as_str() == "app").unwrap().clone();
        planner.failed(
            &app.image,
            BuildFailure {
                build_id: app.build_id.clone(),
                inputs_hash: app.inputs_hash.clone(),
                stage: "build".into(),
                reason: "boom".into(),
                at_ms: 0,
            },
        );
        assert!(
            planner.plan(1, &[], &mut ids).is_empty(),
            "not retried before the retry delay"
        );
        assert_eq!(planner.images()[&app.image].status, ImageStatus::Failed);
        let retry_at = planner.failure_retry_ms + 1;
        assert_eq!(names(&planner.plan(retry_at, &[], &mut ids)), vec!["app"]);
    }

    #[test]
    fn lost_pending_builds_are_requested_again() {
        let mut planner = planner();
        let mut ids = ids();
        planner.set_tag("reg/base:v1", "sha256:b1");
        planner.set_branch("/git/app", "main", "c1");
        assert_eq!(planner.plan(0, &[], &mut ids).len(), 2);
        assert!(planner.plan(10, &[], &mut ids).is_empty());
        let later = planner.pending_timeout_ms + 1;
        assert_eq!(names(&planner.plan(later, &[], &mut ids)), vec!["app", "other"]);
    }
}
