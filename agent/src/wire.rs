//! Documents and markers that agents exchange with each other, beside the status document
//! ([`crate::status`]): a relay's inventory (read by its directories' probes), a directory's hot
//! list (read by its relays) and the `odi-via` query marker (directories and relays bouncing a
//! request). Both modes speak them, so they belong to neither.

use serde::{Deserialize, Serialize};

/// Query parameter listing the nodes a request already passed, comma-separated: directories
/// add themselves when they redirect to another directory, a relay adds itself when it sends
/// back a request for an artifact it does not hold.
pub const VIA_PARAM: &str = "odi-via";

/// Most directory-to-directory redirects for one request; more is a loop.
pub const MAX_HOPS: usize = 4;

/// Names already passed, from a request's query; at most `MAX_HOPS + 2` of them, so a hostile
/// query costs no more than a loop would.
pub fn via(query: Option<&str>) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix(VIA_PARAM)?.strip_prefix('='))
        .flat_map(|v| v.split(','))
        .filter(|s| !s.is_empty())
        .take(MAX_HOPS + 2)
        .map(str::to_owned)
        .collect()
}

/// One held artifact in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryItem {
    /// Catalog name.
    pub catalog: String,
    /// Path inside the catalog.
    pub path: String,
    /// SHA-256 of the bytes held, hex: a directory routes to the relay only for these bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// `GET /.odi/v1/inventory`: the live artifacts of the applied commit whose bytes are stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inventory {
    /// The node's name, so a probe notices a URL that now answers for someone else.
    pub name: String,
    /// The commit the list is for; a directory ignores an inventory of another commit, since
    /// paths and hashes may differ between commits.
    pub commit: Option<String>,
    /// What is held, every item verified against that commit's catalog.
    pub artifacts: Vec<InventoryItem>,
}

/// `GET /.odi/v1/hot` of a directory: artifacts downloaded often enough that relays with
/// spare quota should hold extra copies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotList {
    /// The directory's applied commit; relays on another commit still use the list, since
    /// hot extras only add copies of artifacts both commits name.
    pub commit: Option<String>,
    /// Hot artifacts and their extra replicas.
    pub artifacts: Vec<HotItem>,
}

/// One hot artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotItem {
    /// Catalog name.
    pub catalog: String,
    /// Path inside the catalog.
    pub path: String,
    /// Extra replicas wanted beyond the catalog's `replicas`; relays cap what they accept.
    pub extra: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_parsing_is_bounded() {
        assert_eq!(via(Some("odi-via=a,b&x=1")), vec!["a", "b"]);
        assert_eq!(via(None), Vec::<String>::new());
        let many = format!("odi-via={}", vec!["x"; 100].join(","));
        assert_eq!(via(Some(&many)).len(), MAX_HOPS + 2);
    }
}
