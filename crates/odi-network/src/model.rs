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
}

/// A catalog with all its release files merged.
#[derive(Debug, Clone)]
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
    /// Artifacts by path, expunged ones included.
    pub artifacts: BTreeMap<ArtifactPath, Artifact>,
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

/// One artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path in the catalog.
    pub path: ArtifactPath,
    /// Exact size.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256,
    /// Publication time, served as Last-Modified.
    pub published: Option<OffsetDateTime>,
    /// Reason, when withdrawn.
    pub expunged: Option<String>,
}

/// A directory server.
#[derive(Debug, Clone)]
pub struct Directory {
    /// Name.
    pub name: String,
    /// Public base URL.
    pub url: Url,
    /// Region code.
    pub region: String,
    /// Directory or meta-directory.
    pub kind: DirectoryKind,
    /// Catalogs held.
    pub catalogs: Vec<String>,
    /// Linked peers (same catalogs, byte sync).
    pub links: Vec<String>,
    /// Referenced directories.
    pub references: Vec<String>,
}

/// A relay offer.
#[derive(Debug, Clone)]
pub struct Relay {
    /// Name.
    pub name: String,
    /// Public base URL.
    pub url: Url,
    /// Region code.
    pub region: String,
    /// Operator contact.
    pub contact: String,
    /// Disk offered; also the assignment weight.
    pub quota: ByteSize,
    /// Fill bandwidth limit.
    pub bandwidth: Option<Rate>,
    /// Directories it works with.
    pub directories: Vec<String>,
    /// Catalogs subscribed by name.
    pub catalogs: Vec<String>,
    /// Catalogs subscribed by tag.
    pub tags: Vec<String>,
}

impl Relay {
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
        let path = ArtifactPath::new(path).ok()?;
        self.catalogs.get(catalog)?.artifacts.get(&path)
    }

    /// Directories that hold `catalog`.
    pub fn holders<'a>(&'a self, catalog: &'a str) -> impl Iterator<Item = &'a Directory> + 'a {
        self.directories.values().filter(move |d| d.catalogs.iter().any(|c| c == catalog))
    }
}
