//! `odi validate`: every check an agent makes, with one line per problem naming file and field.

use std::path::Path;

use odi_network::{git, load, load_with, LoadOptions, TrustState};
use time::OffsetDateTime;

use super::{source, CmdError};

/// Options of `odi validate`.
#[derive(Debug, Clone, Default)]
pub struct ValidateArgs {
    /// Network repository: its work tree is read, or its git objects for `commit` and `since`.
    pub path: std::path::PathBuf,
    /// Read this commit's git objects instead of the work tree.
    pub commit: Option<String>,
    /// A base commit: serials must rise relative to it, and `commit` must descend from it.
    pub since: Option<String>,
    /// `--pin` values: base64 keys or `.pub` files; none trusts the lowest root version found.
    pub pins: Vec<String>,
    /// Leave out the snapshot checks (a pull request, whose snapshot CI writes after merging).
    pub without_snapshot: bool,
}

/// Runs the validation, printing a summary on success and problems on failure.
pub fn run(args: &ValidateArgs) -> Result<(), CmdError> {
    let anchor = source::anchor(&args.pins)?;
    let now = OffsetDateTime::now_utc();
    let mut state = TrustState::default();
    if let Some(base) = &args.since {
        let base_tree = source::read(&args.path, Some(base))?;
        // Only the base's serials matter here, not whether its snapshot is still fresh.
        let base_options = LoadOptions { skip_snapshot: true };
        match load_with(&base_tree, &anchor, &TrustState::default(), now, base_options) {
            Ok(l) => state = l.state,
            Err(p) => {
                return Err(CmdError::Usage(format!(
                    "the base commit {base} is itself invalid: {p}"
                )))
            }
        }
        if let Some(head) = &args.commit {
            let repo = git2::Repository::open(&args.path).map_err(|e| CmdError::Git(e.into()))?;
            let (b, h) = (git::resolve(&repo, base)?, git::resolve(&repo, head)?);
            if !git::is_forward(&repo, b, h)? {
                println!("{head}: does not descend from {base}; agents refuse history rewrites");
                return Err(CmdError::Invalid { count: 1 });
            }
        }
    }
    let tree = source::read(&args.path, args.commit.as_deref())?;
    let options = LoadOptions { skip_snapshot: args.without_snapshot };
    match load_with(&tree, &anchor, &state, now, options) {
        Ok(loaded) => {
            let n = &loaded.network;
            let artifacts: usize = n.catalogs.values().map(|c| c.artifacts.len()).sum();
            let snapshot = match (&n.snapshot, &n.root.snapshot) {
                (Some(s), _) => {
                    format!(
                        ", snapshot serial {} until {}",
                        s.serial,
                        crate::status::rfc3339(s.expires)
                    )
                }
                (None, Some(_)) => ", snapshot not checked".to_owned(),
                (None, None) => ", no snapshot role".to_owned(),
            };
            println!(
                "ok: {} catalogs, {artifacts} artifacts, {} directories, {} relays (root serial {}{snapshot})",
                n.catalogs.len(),
                n.directories.len(),
                n.relays.len(),
                n.root.serial
            );
            Ok(())
        }
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            Err(CmdError::Invalid { count: problems.0.len() })
        }
    }
}

/// Used by `plan`: a verified network read from `path` at `rev`.
pub fn load_at(
    path: &Path,
    rev: Option<&str>,
    pins: &[String],
) -> Result<odi_network::Network, CmdError> {
    let anchor = source::anchor(pins)?;
    let tree = source::read(path, rev)?;
    load(&tree, &anchor, &TrustState::default(), OffsetDateTime::now_utc())
        .map(|l| l.network)
        .map_err(|problems| {
            for p in &problems.0 {
                println!("{p}");
            }
            CmdError::Invalid { count: problems.0.len() }
        })
}
