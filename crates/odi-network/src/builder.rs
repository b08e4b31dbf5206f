//! Builds a signed network repository from typed files: the demo, the tests and the
//! benchmarks all make their networks with this, with freshly generated keys.
//!
//! One root key signs the root; one maintainer key is delegated all of `catalogs/`,
//! `directories/` and `relays/` unless a test adds narrower delegations of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::raw::{
    CatalogFile, Delegation, DirectoryFile, RelayFile, ReleaseFile, RootFile, RootKey, Timestamp,
};
use crate::signature::{generate_key, GeneratedKey, SecretKey, SignatureError};
use crate::tree::Tree;

/// Errors while writing a network.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder being written, created or removed.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A key could not be generated or read back, or signing failed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A file did not serialise to TOML; the string is its path in the repository.
    #[error("serialising {0}: {1}")]
    Toml(String, toml::ser::Error),
    /// [`commit_all`] could not open, create or commit to the repository.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The snapshot could not list a document (a document this builder wrote is unreadable).
    #[error("snapshot: {0}")]
    Snapshot(String),
}

/// A named key pair held in memory.
#[derive(Debug)]
pub struct Key {
    /// Name (file stem when written).
    pub name: String,
    /// The generated files.
    pub files: GeneratedKey,
    secret: SecretKey,
}

impl Key {
    /// Generates a key.
    pub fn generate(name: &str) -> Result<Self, BuildError> {
        let files = generate_key()?;
        let secret = SecretKey::parse(&files.secret_file, None)?;
        Ok(Self { name: name.to_owned(), files, secret })
    }

    /// Signs bytes, returning `.minisig` text.
    pub fn sign(&self, data: &[u8]) -> Result<String, BuildError> {
        Ok(self.secret.sign(data, &format!("signer:{}", self.name))?)
    }

    /// The base64 public key.
    pub fn public(&self) -> &str {
        &self.files.public
    }
}

/// A delegation of paths to several keys, `threshold` of which must sign.
#[derive(Debug)]
pub struct GroupDelegation {
    /// The delegation's name.
    pub name: String,
    /// Its keys; each signs into `<file>.<key name>.minisig`.
    pub keys: Vec<Key>,
    /// Signatures required.
    pub threshold: u32,
    /// Paths covered.
    pub paths: Vec<String>,
    /// How many of `keys` (the first ones) sign the files this builder writes under `paths`.
    pub signers: usize,
}

/// A network under construction.
#[derive(Debug)]
pub struct NetworkBuilder {
    /// Keys listed in the root file; each signs it, as `<root file>.<key name>.minisig`.
    pub root_keys: Vec<Key>,
    /// Root signatures required, written into the root file; all root keys sign regardless.
    pub threshold: u32,
    /// Serial of the root file, which is also its name: `trust/roots/<serial>.toml`.
    pub root_serial: u64,
    /// The key delegated every network path.
    pub maintainer: Key,
    /// Extra delegations: (key, paths).
    pub extra_delegations: Vec<(Key, Vec<String>)>,
    /// Catalog files by name.
    pub catalogs: BTreeMap<String, CatalogFile>,
    /// Release files: (catalog, file name) to file.
    pub releases: BTreeMap<(String, String), ReleaseFile>,
    /// Directory files by name.
    pub directories: BTreeMap<String, DirectoryFile>,
    /// Relay files by name.
    pub relays: BTreeMap<String, RelayFile>,
    /// Paths delegated to the maintainer key.
    pub maintainer_paths: Vec<String>,
    /// Validity of the root written, from the moment it is written.
    pub root_valid: time::Duration,
    /// A fixed expiry for the root instead of `root_valid` from each write, so that trees
    /// written at different times carry the same root file, as a real network's do between
    /// rotations (what lets an agent skip unchanged documents; see `load::load_since`).
    pub root_expires: Option<Timestamp>,
    /// Delegations to several keys with a threshold (k of n).
    pub groups: Vec<GroupDelegation>,
    /// The snapshot role's key; `None` writes a network without a snapshot role.
    pub snapshot_key: Option<Key>,
    /// Validity of each snapshot written, from the moment it is written.
    pub snapshot_valid: time::Duration,
    /// The next snapshot serial: raised on every [`NetworkBuilder::tree`], so each written
    /// snapshot supersedes the last.
    snapshot_serial: std::sync::atomic::AtomicU64,
    /// Signatures made so far by (public key, SHA-256 of the bytes): minisign signatures are
    /// randomised, and a file whose bytes did not change keeps its signature file, as in a
    /// real repository (what lets an agent skip documents that did not change).
    signed: std::sync::Mutex<BTreeMap<(String, [u8; 32]), String>>,
}

impl NetworkBuilder {
    /// Adds a snapshot role with a fresh key: every tree written then carries a signed
    /// `trust/snapshot.toml` valid for `snapshot_valid` (7 days unless changed).
    pub fn with_snapshot(mut self) -> Result<Self, BuildError> {
        self.snapshot_key = Some(Key::generate("snapshot")?);
        Ok(self)
    }

    /// A network with one root key, one maintainer key and no files.
    pub fn new() -> Result<Self, BuildError> {
        Ok(Self {
            root_keys: vec![Key::generate("root")?],
            threshold: 1,
            root_serial: 1,
            maintainer: Key::generate("maintainer")?,
            extra_delegations: Vec::new(),
            catalogs: BTreeMap::new(),
            releases: BTreeMap::new(),
            directories: BTreeMap::new(),
            relays: BTreeMap::new(),
            maintainer_paths: vec!["catalogs/".into(), "directories/".into(), "relays/".into()],
            root_valid: time::Duration::days(365),
            root_expires: None,
            groups: Vec::new(),
            snapshot_key: None,
            snapshot_valid: time::Duration::days(7),
            snapshot_serial: std::sync::atomic::AtomicU64::new(1),
            signed: Default::default(),
        })
    }

    /// The root file this builder writes.
    pub fn root_file(&self) -> RootFile {
        let mut delegations = vec![Delegation {
            name: self.maintainer.name.clone(),
            public: Some(self.maintainer.public().to_owned()),
            paths: self.maintainer_paths.clone(),
            ..Default::default()
        }];
        for g in &self.groups {
            delegations.push(Delegation {
                name: g.name.clone(),
                keys: g
                    .keys
                    .iter()
                    .map(|k| RootKey { name: k.name.clone(), public: k.public().to_owned() })
                    .collect(),
                threshold: Some(g.threshold),
                paths: g.paths.clone(),
                ..Default::default()
            });
        }
        for (k, paths) in &self.extra_delegations {
            delegations.push(Delegation {
                name: k.name.clone(),
                public: Some(k.public().to_owned()),
                paths: paths.clone(),
                ..Default::default()
            });
        }
        RootFile {
            serial: self.root_serial,
            expires: self
                .root_expires
                .unwrap_or_else(|| Timestamp(Timestamp::now().0 + self.root_valid)),
            threshold: self.threshold,
            keys: self
                .root_keys
                .iter()
                .map(|k| RootKey { name: k.name.clone(), public: k.public().to_owned() })
                .collect(),
            delegations,
            snapshot: self.snapshot_key.as_ref().map(|k| crate::raw::RoleKeys {
                threshold: 1,
                keys: vec![RootKey { name: k.name.clone(), public: k.public().to_owned() }],
            }),
        }
    }

    /// `key`'s signature of `data`: the one made before for the same bytes, if any.
    fn sign(&self, key: &Key, data: &[u8]) -> Result<String, BuildError> {
        use sha2::Digest as _;
        let at = (key.public().to_owned(), sha2::Sha256::digest(data).into());
        let mut signed = self.signed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sig) = signed.get(&at) {
            return Ok(sig.clone());
        }
        let sig = key.sign(data)?;
        signed.insert(at, sig.clone());
        Ok(sig)
    }

    /// Every network file, signed, in memory.
    pub fn tree(&self) -> Result<Tree, BuildError> {
        let mut tree = Tree::default();
        let ser = |name: &str, v: &dyn erased::Ser| {
            v.to_toml().map_err(|e| BuildError::Toml(name.to_owned(), e))
        };
        let root_path = format!("trust/roots/{}.toml", self.root_serial);
        let root = ser(&root_path, &self.root_file())?;
        for k in &self.root_keys {
            tree.insert(
                format!("{root_path}.{}.minisig", k.name),
                self.sign(k, root.as_bytes())?.into_bytes(),
            );
        }
        tree.insert(root_path, root.into_bytes());
        let mut docs: Vec<(String, String)> = Vec::new();
        for (name, c) in &self.catalogs {
            let p = format!("catalogs/{name}/catalog.toml");
            docs.push((p.clone(), ser(&p, c)?));
        }
        for ((cat, file), r) in &self.releases {
            let p = format!("catalogs/{cat}/releases/{file}.toml");
            docs.push((p.clone(), ser(&p, r)?));
        }
        for (name, d) in &self.directories {
            let p = format!("directories/{name}.toml");
            docs.push((p.clone(), ser(&p, d)?));
        }
        for (name, r) in &self.relays {
            let p = format!("relays/{name}.toml");
            docs.push((p.clone(), ser(&p, r)?));
        }
        let covers = |paths: &[String], path: &str| {
            paths.iter().any(|p| {
                if p.ends_with('/') {
                    path.starts_with(p.as_str())
                } else {
                    path == p
                }
            })
        };
        for (path, text) in docs {
            if covers(&self.maintainer_paths, &path) {
                let sig = self.sign(&self.maintainer, text.as_bytes())?;
                tree.insert(format!("{path}.minisig"), sig.into_bytes());
            }
            for g in self.groups.iter().filter(|g| covers(&g.paths, &path)) {
                for k in g.keys.iter().take(g.signers) {
                    let sig = self.sign(k, text.as_bytes())?;
                    tree.insert(format!("{path}.{}.minisig", k.name), sig.into_bytes());
                }
            }
            tree.insert(path, text.into_bytes());
        }
        if let Some(key) = &self.snapshot_key {
            let documents = crate::trust::list_documents(&tree)
                .map_err(|p| BuildError::Snapshot(p.to_string()))?;
            let serial = self.snapshot_serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let file = crate::raw::SnapshotFile {
                serial,
                expires: Timestamp(Timestamp::now().0 + self.snapshot_valid),
                documents,
            };
            let path = crate::trust::SNAPSHOT_PATH;
            let text = ser(path, &file)?;
            tree.insert(
                format!("{path}.{}.minisig", key.name),
                key.sign(text.as_bytes())?.into_bytes(),
            );
            tree.insert(path, text.into_bytes());
        }
        Ok(tree)
    }

    /// The serial the next snapshot gets; tests set it to replay an older one.
    pub fn set_snapshot_serial(&self, serial: u64) {
        self.snapshot_serial.store(serial, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the network files into `dir` (replacing the network folders' contents).
    pub fn write(&self, dir: &Path) -> Result<(), BuildError> {
        for sub in crate::tree::NETWORK_DIRS {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .map_err(|source| BuildError::Io { path: p.clone(), source })?;
            }
        }
        write_tree(dir, &self.tree()?)
    }

    /// Writes every key as `<dir>/<name>.key` and `.pub`.
    pub fn write_keys(&self, dir: &Path) -> Result<(), BuildError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| BuildError::Io { path: dir.to_owned(), source })?;
        let all = self
            .root_keys
            .iter()
            .chain(std::iter::once(&self.maintainer))
            .chain(self.extra_delegations.iter().map(|(k, _)| k))
            .chain(self.snapshot_key.iter())
            .chain(self.groups.iter().flat_map(|g| g.keys.iter()));
        for k in all {
            for (ext, text) in [("key", &k.files.secret_file), ("pub", &k.files.public_file)] {
                let p = dir.join(format!("{}.{ext}", k.name));
                std::fs::write(&p, text)
                    .map_err(|source| BuildError::Io { path: p.clone(), source })?;
            }
        }
        Ok(())
    }
}

/// Writes files of a tree under `dir`.
pub fn write_tree(dir: &Path, tree: &Tree) -> Result<(), BuildError> {
    for (path, bytes) in tree.iter() {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|source| BuildError::Io { path: parent.to_owned(), source })?;
        }
        std::fs::write(&p, bytes).map_err(|source| BuildError::Io { path: p.clone(), source })?;
    }
    Ok(())
}

/// Commits the whole work tree of the repository at `dir` (creating it, on branch `main`,
/// when absent) and returns the new commit id.
pub fn commit_all(dir: &Path, message: &str) -> Result<git2::Oid, BuildError> {
    let repo = match git2::Repository::open(dir) {
        Ok(r) => r,
        Err(_) => {
            let mut opts = git2::RepositoryInitOptions::new();
            opts.initial_head("main");
            git2::Repository::init_opts(dir, &opts)?
        }
    };
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.update_all(["*"], None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("odi", "odi@localhost")?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    Ok(repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)?)
}

mod erased {
    /// Lets `tree()` serialise the different file kinds through one closure.
    pub trait Ser {
        fn to_toml(&self) -> Result<String, toml::ser::Error>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_toml(&self) -> Result<String, toml::ser::Error> {
            toml::to_string(self)
        }
    }
}
