//! What one node holds at a commit, and what changes between two commits: the answer to
//! "what would my relay download and delete if this pull request merged?".

use std::collections::BTreeMap;

use serde::Serialize;

use crate::assign::Assignment;
use crate::model::Network;
use crate::raw::DirectoryKind;

/// One artifact a node holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Held {
    /// Catalog name; with `path` and `sha256`, what [`diff`] compares.
    pub catalog: String,
    /// Path of the artifact inside its catalog.
    pub path: String,
    /// Exact size in bytes, from the catalog; summed into `total_bytes`.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What a node holds at one commit.
#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    /// The relay or directory the plan is for, as named in the network.
    pub node: String,
    /// `relay`, `directory` or `meta`.
    pub role: &'static str,
    /// Artifacts held, sorted.
    pub holds: Vec<Held>,
    /// Sum of their sizes.
    pub total_bytes: u64,
    /// The relay's quota.
    pub quota: Option<u64>,
    /// For a directory: artifacts of its catalogs that no relay has room for.
    pub unplaced: usize,
    /// Directories a directory syncs bytes with; empty for a relay.
    pub links: Vec<String>,
    /// Directories a directory redirects to for catalogs it does not hold; empty for a relay.
    pub references: Vec<String>,
}

/// The node is not in the network.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no relay or directory named `{0}` in the network")]
pub struct UnknownNode(pub String);

/// Computes what `node` holds.
pub fn plan(
    network: &Network,
    assignment: &Assignment,
    node: &str,
) -> Result<NodePlan, UnknownNode> {
    let held = |catalog: &str, path: &str| {
        let a = network.artifact(catalog, path)?;
        Some(Held {
            catalog: catalog.to_owned(),
            path: path.to_owned(),
            size: a.size,
            sha256: a.sha256.to_hex(),
        })
    };
    if let Some(relay) = network.relays.get(node) {
        let share = assignment.share(node).ok_or_else(|| UnknownNode(node.to_owned()))?;
        let mut holds: Vec<Held> =
            assignment.artifacts_of(share).filter_map(|p| held(p.catalog, p.path)).collect();
        holds.sort();
        return Ok(NodePlan {
            node: node.to_owned(),
            role: "relay",
            total_bytes: holds.iter().map(|h| h.size).sum(),
            holds,
            quota: Some(relay.quota.0),
            unplaced: 0,
            links: Vec::new(),
            references: Vec::new(),
        });
    }
    let dir = network.directories.get(node).ok_or_else(|| UnknownNode(node.to_owned()))?;
    let mut holds = Vec::new();
    for c in dir.catalogs.iter().filter_map(|c| network.catalogs.get(c)) {
        holds.extend(c.live().map(|a| Held {
            catalog: c.name.clone(),
            path: a.path.to_string(),
            size: a.size,
            sha256: a.sha256.to_hex(),
        }));
    }
    let unplaced = dir
        .catalogs
        .iter()
        .filter_map(|c| assignment.catalogs.get(c))
        .flat_map(|m| m.values())
        .filter(|p| p.holders.is_empty())
        .count();
    Ok(NodePlan {
        node: node.to_owned(),
        role: if dir.kind == DirectoryKind::Meta { "meta" } else { "directory" },
        total_bytes: holds.iter().map(|h| h.size).sum(),
        holds,
        quota: None,
        unplaced,
        links: dir.links.clone(),
        references: dir.references.clone(),
    })
}

/// What a node would do moving from `before` to `after`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanDiff {
    /// Held after but not before: new artifacts, or a path whose bytes changed.
    pub download: Vec<Held>,
    /// To delete (no longer assigned, or expunged).
    pub delete: Vec<Held>,
    /// Kept as they are.
    pub keep: usize,
}

/// Compares two plans of the same node.
pub fn diff(before: &NodePlan, after: &NodePlan) -> PlanDiff {
    let key = |h: &Held| (h.catalog.clone(), h.path.clone(), h.sha256.clone());
    let old: BTreeMap<_, _> = before.holds.iter().map(|h| (key(h), h)).collect();
    let new: BTreeMap<_, _> = after.holds.iter().map(|h| (key(h), h)).collect();
    PlanDiff {
        download: new
            .iter()
            .filter(|(k, _)| !old.contains_key(*k))
            .map(|(_, h)| (*h).clone())
            .collect(),
        delete: old
            .iter()
            .filter(|(k, _)| !new.contains_key(*k))
            .map(|(_, h)| (*h).clone())
            .collect(),
        keep: new.keys().filter(|k| old.contains_key(*k)).count(),
    }
}
