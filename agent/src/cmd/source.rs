//! Where the tooling reads a network from: a work tree (to check before committing) or a
//! commit's git objects (what agents do), plus the pinned root keys.

use std::path::Path;

use odi_network::signature::PublicKey;
use odi_network::{git, Tree, TrustAnchor};

use super::{io_err, CmdError};

/// Reads the network at `path`: from git objects of `rev` when given, else from the work tree.
pub fn read(path: &Path, rev: Option<&str>) -> Result<Tree, CmdError> {
    match rev {
        Some(rev) => {
            let repo = git2::Repository::open(path).map_err(|e| CmdError::Git(e.into()))?;
            let oid = git::resolve(&repo, rev)?;
            match git::read_commit(&repo, oid) {
                Err(git::GitError::BadTree { problems, .. }) => {
                    for p in &problems {
                        println!("{p}");
                    }
                    Err(CmdError::Invalid { count: problems.len() })
                }
                other => Ok(other?),
            }
        }
        None => Tree::from_worktree(path).map_err(|problems| {
            for p in &problems {
                println!("{p}");
            }
            CmdError::Invalid { count: problems.len() }
        }),
    }
}

/// Parses `--pin` values: base64 keys or paths of `.pub` files.
pub fn anchor(pins: &[String]) -> Result<TrustAnchor, CmdError> {
    let mut pinned = Vec::new();
    for pin in pins {
        let text = if Path::new(pin).is_file() {
            std::fs::read_to_string(pin).map_err(io_err(Path::new(pin)))?
        } else {
            pin.clone()
        };
        pinned.push(PublicKey::parse(&text)?);
    }
    Ok(TrustAnchor { pinned })
}
