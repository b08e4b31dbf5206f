//! The validated network: what a verified commit declares, with every cross-reference
//! resolved. Built by [`crate::load::load`]; agents and `odi plan` only ever see this.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use url::Url;

use crate::raw::{DirectoryKind, Sha256};
use crate::safe_path::ArtifactPath;
use crate::trust::Root;
use crate::units::{ByteSize, Rate};

/// The whole network at one commit.
#[derive(Debug, Clone)]
pub struct Network {
    /// The verified root.
    pub root: Root,
    /// Catalogs by name.
    pub catalogs: BTreeMap<String, Catalog>,
    /// Directory servers by name.
    pub directories: BTreeMap<String, Directory>,
    /// Relays by name.
    pub relays: BTreeMap<String, Relay>,
    /// The verified snapshot, when the root has a snapshot role.
    pub snapshot: Option<crate::trust::Snapshot>,
}

impl Network {
    /// When this network's trust runs out: the earlier of the root's and the snapshot's
    /// expiry, and which of the two it is (`"root"` or `"snapshot"`).
    pub fn expires(&self) -> (OffsetDateTime, &'static str) {
        match &self.snapshot {
            Some(s) if s.expires < self.root.expires => (s.expires, "snapshot"),
            _ => (self.root.expires, "root"),
        }
    }
}

/// A catalog's artifacts by path.
pub type Artifacts = imbl::OrdMap<ArtifactPath, Artifact>;

/// A persistent map of `sorted` (entries in ascending key order) with nearly full leaves.
///
/// imbl splits a full leaf in the middle, so inserting in key order leaves every leaf half
/// empty: about 264 bytes per artifact for a relay's network map of 100,000 (heaptrack).
/// Every other entry goes in first, in order, making half-full leaves; the rest then land in
/// the gaps of those leaves and fill them without splitting. The map is the same either way.
pub(crate) fn dense_map<K: Ord + Clone, V: Clone>(
    sorted: impl IntoIterator<Item = (K, V)>,
) -> imbl::OrdMap<K, V> {
    let mut map = imbl::OrdMap::new();
    let mut second = Vec::new();
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i % 2 == 0 {
            map.insert(k, v);
        } else {
            second.push((k, v));
        }
    }
    for (k, v) in second {
        map.insert(k, v);
    }
    map
}

/// A catalog with all its release files merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// Name (folder name).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Tags relays subscribe by.
    pub tags: Vec<String>,
    /// Origins, in order of preference.
    pub origins: Vec<Url>,
    /// Copies per artifact.
    pub replicas: u32,
    /// The ecosystem it was imported from (`odi catalog import`), when recorded: tells pages
    /// how to show clients the way in (an apt source line, a pip index URL).
    pub format: Option<crate::raw::ImportFormat>,
    /// Artifacts by path, expunged ones included. A persistent map: a network built from
    /// the one before shares every unchanged entry with it (see [`crate::load::load_since`]).
    pub artifacts: Artifacts,
}

impl Catalog {
    /// Artifacts that are still served.
    pub fn live(&self) -> impl Iterator<Item = &Artifact> {
        self.artifacts.values().filter(|a| a.expunged.is_none())
    }

    /// Total bytes of live artifacts.
    pub fn live_bytes(&self) -> u64 {
        self.live().map(|a| a.size).sum()
    }
}

/// One artifact of a catalog at this commit, live or expunged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path in the catalog.
    pub path: ArtifactPath,
    /// Exact length in bytes; a download of any other length is refused.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256,
    /// Publication time, served as Last-Modified.
    pub published: Option<OffsetDateTime>,
    /// Reason, when withdrawn.
    pub expunged: Option<String>,
}

/// A directory server.
#[derive(Debug, Clone, PartialEq)]
pub struct Directory {
    /// Equals the stem of `directories/<name>.toml`; the key in [`Network::directories`].
    pub name: String,
    /// Public base URL.
    pub url: Url,
    /// Region code like `eu`; a directory referencing this one prefers it for that region.
    pub region: String,
    /// Directory or meta-directory.
    pub kind: DirectoryKind,
    /// Catalogs it holds whole; each exists in the network, none for a meta-directory.
    pub catalogs: Vec<String>,
    /// Linked peers (same catalogs, byte sync).
    pub links: Vec<String>,
    /// Directories it redirects to for catalogs it does not hold; never itself.
    pub references: Vec<String>,
}

/// A relay offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Relay {
    /// Equals the stem of `relays/<name>.toml`; the key in [`Network::relays`].
    pub name: String,
    /// Public base URL.
    pub url: Url,
    /// Region code; directories rank same-region relays first for a client of that region.
    pub region: String,
    /// How to reach the operator; for people, no agent reads it.
    pub contact: String,
    /// Disk offered; also the assignment weight.
    pub quota: ByteSize,
    /// Cap on the relay's total download rate while filling its store; `None`: no cap.
    pub bandwidth: Option<Rate>,
    /// Directories it works with.
    pub directories: Vec<String>,
    /// Catalogs subscribed by name.
    pub catalogs: Vec<String>,
    /// Catalogs subscribed by tag.
    pub tags: Vec<String>,
    /// Where it says it is (validated: upper-case codes, coordinates in range).
    pub location: Option<crate::raw::RelayLocation>,
    /// Serves only clients of these countries (upper case); empty: everyone.
    pub countries: Vec<String>,
    /// Never serves clients of these countries (upper case).
    pub exclude_countries: Vec<String>,
}

/// `base` joined with `rel` as a path below it: a base without a trailing slash is treated as
/// a folder (`https://h/odi` + `r/x` is `https://h/odi/r/x`, not `https://h/r/x`).
pub fn url_under(base: &Url, rel: &str) -> Option<Url> {
    if base.path().ends_with('/') {
        return base.join(rel).ok();
    }
    let mut folder = base.clone();
    folder.set_path(&format!("{}/", base.path()));
    folder.join(rel).ok()
}

/// Where a node (relay or directory) at `base` serves `/r/<catalog>/<path>`.
pub fn artifact_url(base: &Url, catalog: &str, path: &str) -> Option<Url> {
    url_under(base, &format!("r/{catalog}/{path}"))
}

impl Catalog {
    /// Where each origin serves the artifact at `path`, in order of preference.
    pub fn origin_urls<'a>(&'a self, path: &'a str) -> impl Iterator<Item = Url> + 'a {
        self.origins.iter().filter_map(move |o| url_under(o, path))
    }
}

impl Directory {
    /// One of this directory's ODI endpoints: `.odi/v1/<name>` under its URL.
    pub fn endpoint(&self, name: &str) -> Option<Url> {
        url_under(&self.url, &format!(".odi/v1/{name}"))
    }

    /// Where this directory serves an object's bytes by hash, for relays and linked peers.
    pub fn blob_url(&self, sha256: &[u8; 32]) -> Option<Url> {
        self.endpoint(&format!("blob/{}", hex::encode(sha256)))
    }

    /// Where this directory answers `/r/<catalog>/<path>`.
    pub fn artifact_url(&self, catalog: &str, path: &str) -> Option<Url> {
        artifact_url(&self.url, catalog, path)
    }
}

impl Relay {
    /// One of this relay's ODI endpoints: `.odi/v1/<name>` under its URL.
    pub fn endpoint(&self, name: &str) -> Option<Url> {
        url_under(&self.url, &format!(".odi/v1/{name}"))
    }

    /// Where this relay serves `/r/<catalog>/<path>`.
    pub fn artifact_url(&self, catalog: &str, path: &str) -> Option<Url> {
        artifact_url(&self.url, catalog, path)
    }

    /// Whether the relay mirrors `catalog` (by name or by one of its tags).
    pub fn subscribes(&self, catalog: &Catalog) -> bool {
        self.catalogs.contains(&catalog.name) || self.tags.iter().any(|t| catalog.tags.contains(t))
    }
}

impl Network {
    /// Relays that mirror `catalog`, sorted by name.
    pub fn subscribers<'a>(&'a self, catalog: &'a Catalog) -> impl Iterator<Item = &'a Relay> + 'a {
        self.relays.values().filter(move |r| r.subscribes(catalog))
    }

    /// Looks up an artifact.
    pub fn artifact(&self, catalog: &str, path: &str) -> Option<&Artifact> {
        self.catalogs.get(catalog)?.artifacts.get(path)
    }

    /// Directories that hold `catalog`.
    pub fn holders<'a>(&'a self, catalog: &'a str) -> impl Iterator<Item = &'a Directory> + 'a {
        self.directories.values().filter(move |d| d.catalogs.iter().any(|c| c == catalog))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_dense_map_is_the_map_of_its_entries() {
        for n in [0usize, 1, 2, 3, 15, 16, 17, 33, 100, 1000, 4097] {
            let entries: Vec<(u32, String)> =
                (0..n as u32).map(|i| (i * 3, i.to_string())).collect();
            let dense = super::dense_map(entries.clone());
            let plain: imbl::OrdMap<u32, String> = entries.iter().cloned().collect();
            assert_eq!(dense, plain, "{n} entries");
            assert!(dense.iter().map(|(k, v)| (*k, v.clone())).eq(entries), "{n}: order");
        }
    }
}
