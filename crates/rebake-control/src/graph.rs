//! `GetGraph`: the catalog's dependency graph.
//!
//! Nodes are the catalog images (kind `image`, with status, published digest and paused flag
//! from bucket `images`) and the external bases they are built on (kind `upstream`, named by
//! the base reference as written in the spec; `scratch` is no node). An edge goes from a base
//! (catalog parent or upstream reference) to the image built on it. Nodes come parents before
//! children (upstream nodes first, then images in topological order, ties by name); an image
//! caught in a parent cycle (which the resolver refuses) is listed last, by name.
//!
//! With `image` set, only that image and everything built on it (transitively) is returned,
//! with the edges among them; an image not in the catalog is NOT_FOUND.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rebake_events::{ImageName, state::ImageState};
use rebake_proto::control::v1 as api;

use crate::{ControlError, Result, images::CatalogDoc, service::ControlService};

pub(crate) async fn get_graph(service: &ControlService, request: &api::GetGraphRequest) -> Result<api::Graph> {
    let root = request.image.trim();
    if !root.is_empty() {
        ImageName::new(root).map_err(|error| ControlError::invalid_image("image", error))?;
    }
    let entries = service.images.entries().await?;
    if !root.is_empty() && !entries.iter().any(|(name, _)| name == root) {
        return Err(ControlError::NotFound { name: root.to_string() });
    }
    let mut states = HashMap::new();
    for (name, _) in &entries {
        if let Some(state) = service.images.state_lenient(name).await? {
            states.insert(name.clone(), state);
        }
    }
    Ok(build_graph(&entries, &states, (!root.is_empty()).then_some(root)))
}

/// The base of an image: its catalog parent, an upstream reference, or none (`scratch`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Base {
    Image(String),
    Upstream(String),
    None,
}

fn base_of(entry: &CatalogDoc, catalog: &BTreeSet<&str>) -> Base {
    if let Some(parent) = entry.parent.as_deref().filter(|parent| catalog.contains(parent)) {
        return Base::Image(parent.to_string());
    }
    let base = entry.spec.base.trim();
    if base.is_empty() || base == "scratch" {
        Base::None
    } else {
        Base::Upstream(base.to_string())
    }
}

/// The graph of `entries` (name, catalog entry) with `states`, or the subgraph under `root`.
pub(crate) fn build_graph(
    entries: &[(String, CatalogDoc)],
    states: &HashMap<String, ImageState>,
    root: Option<&str>,
) -> api::Graph {
    let catalog: BTreeSet<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    let bases: BTreeMap<&str, Base> = entries
        .iter()
        .map(|(name, entry)| (name.as_str(), base_of(entry, &catalog)))
        .collect();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, base) in &bases {
        if let Base::Image(parent) = base {
            children.entry(parent.as_str()).or_default().push(name);
        }
    }

    // Which images are shown.
    let shown: BTreeSet<&str> = match root {
        None => catalog.clone(),
        Some(root) => {
            let mut shown = BTreeSet::new();
            let mut todo = vec![root];
            while let Some(name) = todo.pop() {
                if catalog.contains(name) && shown.insert(name) {
                    todo.extend(children.get(name).into_iter().flatten().copied());
                }
            }
            shown
        }
    };

    // Topological order among the shown images: an image comes once its shown parent did.
    let mut ordered: Vec<&str> = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut ready: BTreeSet<&str> = shown
        .iter()
        .copied()
        .filter(|name| match &bases[name] {
            Base::Image(parent) => !shown.contains(parent.as_str()),
            _ => true,
        })
        .collect();
    while let Some(name) = ready.pop_first() {
        if !placed.insert(name) {
            continue;
        }
        ordered.push(name);
        for child in children.get(name).into_iter().flatten() {
            if shown.contains(child) && !placed.contains(child) {
                ready.insert(child);
            }
        }
    }
    // Cycles (never planned by the resolver): last, by name.
    ordered.extend(shown.iter().copied().filter(|name| !placed.contains(name)));

    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    if root.is_none() {
        let upstreams: BTreeSet<&str> = bases
            .values()
            .filter_map(|base| match base {
                Base::Upstream(reference) => Some(reference.as_str()),
                _ => None,
            })
            .collect();
        nodes.extend(upstreams.into_iter().map(|reference| api::GraphNode {
            name: reference.to_string(),
            kind: "upstream".to_string(),
            ..Default::default()
        }));
    }
    for name in ordered {
        let state = states.get(name);
        nodes.push(api::GraphNode {
            name: name.to_string(),
            kind: "image".to_string(),
            status: state.map(|state| state.status.as_str()).unwrap_or("new").to_string(),
            published_digest: state
                .and_then(|state| state.published.as_ref())
                .map(|published| published.digest.clone())
                .unwrap_or_default(),
            paused: state.is_some_and(|state| state.paused),
        });
        let parent = match &bases[name] {
            Base::Image(parent) if shown.contains(parent.as_str()) => parent.clone(),
            Base::Upstream(reference) if root.is_none() => reference.clone(),
            _ => continue,
        };
        edges.push(api::GraphEdge {
            parent,
            child: name.to_string(),
        });
    }
    api::Graph { nodes, edges }
}

#[cfg(test)]
mod tests {
    use rebake_events::state::{ImageStatus, PublishedImage};

    use super::*;
    use crate::images::SpecDoc;

    fn entry(name: &str, base: &str, parent: Option<&str>) -> (String, CatalogDoc) {
        (
            name.to_string(),
            CatalogDoc {
                spec: SpecDoc {
                    name: name.to_string(),
                    base: base.to_string(),
                    ..Default::default()
                },
                parent: parent.map(str::to_string),
                children: Vec::new(),
            },
        )
    }

    fn catalog() -> Vec<(String, CatalogDoc)> {
        // Deliberately children before parents.
        vec![
            entry("z/child", "app:latest", Some("app")),
            entry("grandchild", "z/child:latest", Some("z/child")),
            entry("app", "reg/base:v1", None),
            entry("other", "reg/base:v1", None),
            entry("tool", "scratch", None),
            entry("lone", "", None),
        ]
    }

    fn names(graph: &api::Graph) -> Vec<&str> {
        graph.nodes.iter().map(|node| node.name.as_str()).collect()
    }

    fn edges(graph: &api::Graph) -> Vec<(&str, &str)> {
        graph
            .edges
            .iter()
            .map(|edge| (edge.parent.as_str(), edge.child.as_str()))
            .collect()
    }

    #[test]
    fn whole_graph_parents_first_with_upstreams() {
        let mut states = HashMap::new();
        states.insert(
            "app".to_string(),
            ImageState {
                status: ImageStatus::Published,
                published: Some(PublishedImage {
                    digest: "sha256:app".into(),
                    ..Default::default()
                }),
                paused: true,
                ..Default::default()
            },
        );
        let graph = build_graph(&catalog(), &states, None);
        assert_eq!(
            names(&graph),
            ["reg/base:v1", "app", "lone", "other", "tool", "z/child", "grandchild"]
        );
        assert_eq!(graph.nodes[0].kind, "upstream");
        assert!(graph.nodes[0].status.is_empty());
        let app = &graph.nodes[1];
        assert_eq!((app.kind.as_str(), app.status.as_str()), ("image", "published"));
        assert_eq!(app.published_digest, "sha256:app");
        assert!(app.paused);
        assert_eq!(graph.nodes[2].status, "new");
        assert_eq!(
            edges(&graph),
            [
                ("reg/base:v1", "app"),
                ("reg/base:v1", "other"),
                ("app", "z/child"),
                ("z/child", "grandchild")
            ]
        );
        // Every edge's parent comes before its child.
        for edge in &graph.edges {
            let at = |name: &str| graph.nodes.iter().position(|node| node.name == name).unwrap();
            assert!(at(&edge.parent) < at(&edge.child), "{edge:?}");
        }
    }

    #[test]
    fn subgraph_is_the_image_and_its_descendants() {
        let graph = build_graph(&catalog(), &HashMap::new(), Some("app"));
        assert_eq!(names(&graph), ["app", "z/child", "grandchild"]);
        assert_eq!(edges(&graph), [("app", "z/child"), ("z/child", "grandchild")]);
        let leaf = build_graph(&catalog(), &HashMap::new(), Some("grandchild"));
        assert_eq!(names(&leaf), ["grandchild"]);
        assert!(leaf.edges.is_empty());
    }

    #[test]
    fn cycles_do_not_hang_and_are_listed_last() {
        let entries = vec![
            entry("a", "b:latest", Some("b")),
            entry("b", "a:latest", Some("a")),
            entry("c", "reg/x:1", None),
        ];
        let graph = build_graph(&entries, &HashMap::new(), None);
        assert_eq!(names(&graph), ["reg/x:1", "c", "a", "b"]);
        let sub = build_graph(&entries, &HashMap::new(), Some("a"));
        assert_eq!(names(&sub), ["a", "b"]);
    }
}
