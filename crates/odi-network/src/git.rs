//! The network repository in git: fetching it into a local bare mirror, reading a commit's
//! network files from git objects, and the rule that an agent only moves forward in history.
//!
//! Agents never check out a work tree: they read blobs of the commit they verified, so what
//! was verified is exactly what is applied.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{ObjectType, Oid, Repository};

use crate::problem::Problem;
use crate::tree::{BlobId, Tree, MAX_FILE_BYTES, NETWORK_DIRS};

/// Failures talking to git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// libgit2 refused.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The branch does not exist at the remote.
    #[error("branch `{0}` not found in the fetched repository")]
    NoBranch(String),
    /// The commit's tree breaks a rule (links, submodules, oversized files).
    #[error("commit {commit}: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    BadTree {
        /// Full hex id of the commit whose tree was refused.
        commit: String,
        /// What was wrong.
        problems: Vec<Problem>,
    },
}

/// Opens (creating if needed) a bare mirror at `path`.
pub fn open_mirror(path: &Path) -> Result<Repository, GitError> {
    match Repository::open_bare(path) {
        Ok(r) => Ok(r),
        Err(_) => {
            std::fs::create_dir_all(path).map_err(|e| {
                git2::Error::from_str(&format!("cannot create {}: {e}", path.display()))
            })?;
            Ok(Repository::init_bare(path)?)
        }
    }
}

/// Fetches `branch` from `url` (https://, http://, file:// or a local path) and returns the
/// commit it points at. The remote-tracking ref is updated, nothing else.
pub fn fetch(repo: &Repository, url: &str, branch: &str) -> Result<Oid, GitError> {
    let mut remote = repo.remote_anonymous(url)?;
    let refspec = format!("+refs/heads/{branch}:refs/remotes/network/{branch}");
    let mut opts = git2::FetchOptions::new();
    opts.download_tags(git2::AutotagOption::None);
    remote.fetch(&[&refspec], Some(&mut opts), None)?;
    let reference = repo
        .find_reference(&format!("refs/remotes/network/{branch}"))
        .map_err(|_| GitError::NoBranch(branch.to_owned()))?;
    Ok(reference.peel_to_commit()?.id())
}

/// Resolves a revision (`HEAD`, a branch, a hash) in a repository.
pub fn resolve(repo: &Repository, rev: &str) -> Result<Oid, GitError> {
    Ok(repo.revparse_single(rev)?.peel_to_commit()?.id())
}

/// Whether moving from `applied` to `candidate` is allowed: the same commit or a descendant.
/// A force-push that rewrites history is a rollback and is refused.
pub fn is_forward(repo: &Repository, applied: Oid, candidate: Oid) -> Result<bool, GitError> {
    Ok(applied == candidate || repo.graph_descendant_of(candidate, applied)?)
}

/// Reads the network files of `commit` from git objects. The tree is walked first, then the
/// blobs are read and inflated on every core (each thread with its own handle on the
/// repository, since a libgit2 handle is not shared between threads).
pub fn read_commit(repo: &Repository, commit: Oid) -> Result<Tree, GitError> {
    let (blobs, mut problems) = list(repo, commit)?;
    let mut tree = Tree::default();
    for (path, oid) in &blobs {
        tree.set_id(path.clone(), blob_id(*oid));
    }
    read_into(repo, blobs, &mut tree, &mut problems)?;
    finish(commit, tree, problems)
}

/// What changed since a commit applied before, read for [`crate::load::load_since`].
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// The new commit: every file's id, and the bytes of every file except catalog documents
    /// that are unchanged since `ids` (their blob, their signatures' blobs and the roots all
    /// the same), which [`crate::load::load_since`] takes from the network applied before.
    pub tree: Tree,
    /// The bytes, as applied before, of catalog documents that changed or were removed:
    /// what says which artifacts leave the catalog.
    pub old: Tree,
}

/// Reads `commit` against the blob ids of the commit applied before (`before`, from
/// [`Tree::ids`]): the cost is in proportion to the catalog documents that changed.
pub fn read_since(
    repo: &Repository,
    commit: Oid,
    before: &BTreeMap<String, BlobId>,
) -> Result<Delta, GitError> {
    let (blobs, mut problems) = list(repo, commit)?;
    let ids: BTreeMap<String, BlobId> =
        blobs.iter().map(|(path, oid)| (path.clone(), blob_id(*oid))).collect();
    let roots_same = crate::tree::same_under(&ids, before, crate::trust::ROOTS_DIR);
    let unchanged = |path: &str| {
        roots_same && is_catalog_document(path) && crate::tree::unchanged(&ids, before, path)
    };
    let mut tree = Tree::default();
    for (path, id) in &ids {
        tree.set_id(path.clone(), *id);
    }
    let wanted: Vec<(String, Oid)> =
        blobs.into_iter().filter(|(path, _)| !unchanged(path)).collect();
    read_into(repo, wanted, &mut tree, &mut problems)?;
    let tree = finish(commit, tree, problems)?;
    // Old bytes come from blobs the previous commit verified; they are only parsed again to
    // learn which artifacts leave.
    let gone: Vec<(String, Oid)> = before
        .iter()
        .filter(|(path, id)| is_catalog_document(path) && ids.get(*path) != Some(*id))
        .map(|(path, id)| Ok((path.clone(), Oid::from_bytes(id)?)))
        .collect::<Result<_, git2::Error>>()?;
    let mut old = Tree::default();
    let mut old_problems = Vec::new();
    read_into(repo, gone, &mut old, &mut old_problems)?;
    Ok(Delta { tree, old })
}

/// Whether `path` is a catalog's own file or one of its release files: the documents that
/// hold artifacts, and the only ones [`read_since`] leaves unread when unchanged.
pub fn is_catalog_document(path: &str) -> bool {
    let parts = path.split('/').count();
    path.starts_with("catalogs/")
        && ((parts == 3 && path.ends_with("/catalog.toml"))
            || (parts > 3 && path.ends_with(".toml")))
}

fn blob_id(oid: Oid) -> BlobId {
    let mut id = [0; 20];
    id.copy_from_slice(&oid.as_bytes()[..20]);
    id
}

/// Every blob of the commit's network folders as (path, id), and a problem for each entry
/// that is neither file nor folder.
type Listing = (Vec<(String, Oid)>, Vec<Problem>);

fn list(repo: &Repository, commit: Oid) -> Result<Listing, GitError> {
    let commit_obj = repo.find_commit(commit)?;
    let root = commit_obj.tree()?;
    let mut blobs = Vec::new();
    let mut problems = Vec::new();
    for dir in NETWORK_DIRS {
        let Some(entry) = root.get_name(dir) else { continue };
        walk(repo, &entry, dir.to_owned(), &mut blobs, &mut problems)?;
    }
    Ok((blobs, problems))
}

fn finish(commit: Oid, tree: Tree, mut problems: Vec<Problem>) -> Result<Tree, GitError> {
    if problems.is_empty() {
        Ok(tree)
    } else {
        problems.sort();
        Err(GitError::BadTree { commit: commit.to_string(), problems })
    }
}

/// Reads and inflates `blobs` into `tree` on every core.
fn read_into(
    repo: &Repository,
    blobs: Vec<(String, Oid)>,
    tree: &mut Tree,
    problems: &mut Vec<Problem>,
) -> Result<(), GitError> {
    use rayon::prelude::*;
    let at = repo.path().to_owned();
    // (path, its bytes or why they were refused), or a failure of git itself.
    type Read = Result<(String, Result<Vec<u8>, Problem>), GitError>;
    let read: Vec<Read> = blobs
        .into_par_iter()
        .map_init(
            || Repository::open(&at),
            |handle, (path, oid)| {
                let handle = handle.as_ref().map_err(|e| {
                    GitError::Git(git2::Error::from_str(&format!(
                        "cannot open {}: {e}",
                        at.display()
                    )))
                })?;
                let blob = handle.find_blob(oid)?;
                let contents = if blob.size() as u64 > MAX_FILE_BYTES {
                    Err(Problem::file(
                        &path,
                        format!("is {} bytes, over the {MAX_FILE_BYTES} byte limit", blob.size()),
                    ))
                } else {
                    Ok(blob.content().to_vec())
                };
                Ok((path, contents))
            },
        )
        .collect();
    for r in read {
        match r? {
            (path, Ok(bytes)) => tree.insert(path, bytes),
            (_, Err(p)) => problems.push(p),
        }
    }
    Ok(())
}

/// Collects the blobs under `entry` as (path, id), and a problem for anything that is not a
/// file or folder.
fn walk(
    repo: &Repository,
    entry: &git2::TreeEntry<'_>,
    path: String,
    blobs: &mut Vec<(String, Oid)>,
    problems: &mut Vec<Problem>,
) -> Result<(), GitError> {
    // Mode bits are what git records; 0o120000 is a symlink, 0o160000 a submodule (gitlink).
    match (entry.kind(), entry.filemode()) {
        (_, 0o120000) => problems.push(Problem::file(
            path,
            "is a symlink; the network repository may not contain links",
        )),
        (Some(ObjectType::Commit), _) | (_, 0o160000) => problems.push(Problem::file(
            path,
            "is a submodule; the network repository may not contain submodules",
        )),
        (Some(ObjectType::Tree), _) => {
            let sub = repo.find_tree(entry.id())?;
            for child in sub.iter() {
                let name = String::from_utf8_lossy(child.name_bytes()).into_owned();
                walk(repo, &child, format!("{path}/{name}"), blobs, problems)?;
            }
        }
        (Some(ObjectType::Blob), _) => blobs.push((path, entry.id())),
        _ => problems.push(Problem::file(path, "is not a file or folder")),
    }
    Ok(())
}
