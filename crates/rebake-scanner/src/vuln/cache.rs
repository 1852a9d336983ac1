//! Per-layer memo of match results, keyed by (layer digest, advisory index digest) and
//! reused only for the same components.

use std::collections::HashMap;

use super::{AdvisoryIndex, Finding, finalize, match_components};
use crate::component::Component;

/// Caches findings per layer: images that share layers (a common base) re-match only
/// their own layers while the advisory set is unchanged. An entry is reused only for the
/// same components: what a layer contributes depends on the layers above it too (one may
/// rewrite or delete a package database or lock file it wrote, e.g. a distroless
/// `status.d/<package>` upgraded on top, and the distro comes from whichever layer wrote
/// `os-release`), so a layer whose components differ is matched again. Entries for other
/// advisory digests are dropped when a new digest is used.
#[derive(Debug, Default)]
pub struct LayerCache {
    entries: HashMap<(String, String), (Vec<Component>, Vec<Finding>)>,
    hits: u64,
    misses: u64,
}

impl LayerCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Matches `components` like [`match_components`], reusing the cached findings of
    /// every layer already matched against the same advisory set.
    pub fn match_with_cache(&mut self, index: &AdvisoryIndex, components: &[Component]) -> Vec<Finding> {
        let digest = index.digest();
        self.entries.retain(|(_, index_digest), _| index_digest == digest);
        // Group by layer, keeping first-seen order.
        let mut layers: Vec<(&str, Vec<Component>)> = Vec::new();
        for component in components {
            match layers.iter_mut().find(|(layer, _)| *layer == component.layer) {
                Some((_, group)) => group.push(component.clone()),
                None => layers.push((&component.layer, vec![component.clone()])),
            }
        }
        let mut findings = Vec::new();
        for (layer, group) in layers {
            let key = (layer.to_owned(), digest.to_owned());
            match self.entries.get(&key) {
                Some((cached_components, cached)) if *cached_components == group => {
                    self.hits += 1;
                    findings.extend(cached.iter().cloned());
                }
                _ => {
                    self.misses += 1;
                    let matched = match_components(index, &group);
                    findings.extend(matched.iter().cloned());
                    self.entries.insert(key, (group, matched));
                }
            }
        }
        finalize(findings)
    }

    /// Layers answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Layers matched afresh so far.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Number of cached layers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every entry and resets the counters.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.hits = 0;
        self.misses = 0;
    }
}
