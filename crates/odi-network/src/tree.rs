//! The network files of one repository state, read either from git objects of a commit (what
//! agents do) or from a work tree (what `odi validate` does before a commit exists).
//!
//! Only the network folders are read; the rest of the repository (code, docs) is not the
//! network. Links of any kind are refused: a symlink could point a signed path at an unsigned
//! file, and a submodule at another repository.

use std::collections::BTreeMap;
use std::path::Path;

use crate::problem::Problem;

/// Top-level folders that make up the network.
pub const NETWORK_DIRS: [&str; 4] = ["trust", "catalogs", "directories", "relays"];

/// Largest single file accepted; a catalog bigger than this must be split into release files.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// A git blob id (SHA-1): equal ids mean equal bytes, which is what lets
/// [`crate::load::load_since`] skip a file that did not change.
pub type BlobId = [u8; 20];

/// Repository-relative path (always `/`-separated) to file contents.
///
/// Read from git, a tree also knows every file's blob id, and may leave out the bytes of
/// catalog documents that did not change since a previous commit (see
/// [`crate::git::read_since`]); only [`crate::load::load_since`] accepts such a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    files: BTreeMap<String, Vec<u8>>,
    /// Blob id of every file of the commit, read or not; empty for a work tree.
    ids: BTreeMap<String, BlobId>,
}

impl Tree {
    /// Builds a tree from in-memory files (tests, benchmarks and generators use this).
    pub fn from_files(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self { files: files.into_iter().collect(), ids: BTreeMap::new() }
    }

    /// Contents of one file.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// All files, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Files below `prefix` (which should end with `/`).
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.files
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Adds or replaces one file.
    pub fn insert(&mut self, path: impl Into<String>, contents: Vec<u8>) {
        self.files.insert(path.into(), contents);
    }

    /// Removes one file.
    pub fn remove(&mut self, path: &str) -> Option<Vec<u8>> {
        self.files.remove(path)
    }

    /// Records the blob id of a file of the commit (its bytes may or may not be read).
    pub fn set_id(&mut self, path: impl Into<String>, id: BlobId) {
        self.ids.insert(path.into(), id);
    }

    /// Blob ids of every file of the commit, when read from git.
    pub fn ids(&self) -> &BTreeMap<String, BlobId> {
        &self.ids
    }

    /// Whether some file of the commit is listed by id but its bytes were not read.
    pub fn is_partial(&self) -> bool {
        self.ids.keys().any(|p| !self.files.contains_key(p))
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no network file exists.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Reads the network folders of a work tree, refusing symlinks and nested repositories.
    pub fn from_worktree(root: &Path) -> Result<Self, Vec<Problem>> {
        let mut tree = Tree::default();
        let mut problems = Vec::new();
        for dir in NETWORK_DIRS {
            walk(root, &root.join(dir), &mut tree, &mut problems);
        }
        if problems.is_empty() {
            Ok(tree)
        } else {
            Err(problems)
        }
    }
}

/// Whether every file whose path starts with `prefix` has the same id in both listings.
pub fn same_under(
    a: &BTreeMap<String, BlobId>,
    b: &BTreeMap<String, BlobId>,
    prefix: &str,
) -> bool {
    let under = |m: &BTreeMap<String, BlobId>| {
        m.range(prefix.to_owned()..).take_while(|(p, _)| p.starts_with(prefix)).count()
    };
    let mut a_under = a.range(prefix.to_owned()..).take_while(|(p, _)| p.starts_with(prefix));
    under(b) == under(a) && a_under.all(|(p, id)| b.get(p) == Some(id))
}

/// Whether the document at `path` has the same blob in both listings, and so do its
/// signatures (`<path>.minisig`, `<path>.<key name>.minisig`): what a verification done on
/// `before` still holds for, given the same roots.
pub fn unchanged(
    now: &BTreeMap<String, BlobId>,
    before: &BTreeMap<String, BlobId>,
    path: &str,
) -> bool {
    now.get(path).is_some() && now.get(path) == before.get(path) && {
        // Anything named `<path>.…` is a signature of it or another document whose name
        // extends it (`a.toml.x.toml` is refused by classify): comparing them all is safe.
        same_under(now, before, &format!("{path}."))
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn walk(root: &Path, dir: &Path, tree: &mut Tree, problems: &mut Vec<Problem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            return problems.push(Problem::file(rel(root, dir), format!("cannot read folder: {e}")))
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(Problem::file(rel(root, dir), format!("cannot read folder: {e}")));
                continue;
            }
        };
        let path = entry.path();
        let name = rel(root, &path);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                problems.push(Problem::file(name, format!("cannot stat: {e}")));
                continue;
            }
        };
        if meta.file_type().is_symlink() {
            problems.push(Problem::file(
                name,
                "is a symlink; the network repository may not contain links",
            ));
        } else if meta.is_dir() {
            if path.join(".git").exists() {
                problems.push(Problem::file(
                    name,
                    "is a nested git repository (submodule); not allowed",
                ));
            } else {
                walk(root, &path, tree, problems);
            }
        } else if !meta.is_file() {
            problems.push(Problem::file(name, "is not a regular file"));
        } else if meta.len() > MAX_FILE_BYTES {
            problems.push(Problem::file(
                name,
                format!("is {} bytes, over the {MAX_FILE_BYTES} byte limit", meta.len()),
            ));
        } else {
            match std::fs::read(&path) {
                Ok(bytes) => tree.insert(name, bytes),
                Err(e) => problems.push(Problem::file(name, format!("cannot read: {e}"))),
            }
        }
    }
}
