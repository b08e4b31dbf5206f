//! Following the network repository: fetch the branch into a local bare mirror, refuse
//! anything that is not a descendant of the last applied commit, verify the new commit the
//! same way `odi validate` does, and only then persist it as applied.
//!
//! The applied commit and the trust state (root pin, serial high-water marks) are written
//! together, atomically, to `<data_dir>/state.json`, so after a restart the agent serves the
//! same commit it served before and still refuses replays.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::Oid;
use odi_network::load::{load_since, Memo};
use odi_network::{git, load, Network, Problems, TrustAnchor, TrustState};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Why a sync did not apply a commit.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Fetching or reading git failed.
    #[error(transparent)]
    Git(#[from] git::GitError),
    /// The branch moved to a commit that does not descend from the applied one.
    #[error("commit {candidate} does not descend from applied commit {applied}; refusing a history rewrite")]
    NotForward {
        /// Full hex id of the commit the agent keeps serving.
        applied: String,
        /// Full hex id the branch now points to, which is refused.
        candidate: String,
    },
    /// The commit failed verification.
    #[error("commit {commit} is invalid: {problems}")]
    Invalid {
        /// Full hex id of the refused commit; the applied one stays in service.
        commit: String,
        /// What was wrong.
        problems: Problems,
    },
    /// The state file could not be read or written.
    #[error("state file {path}: {message}")]
    State {
        /// `<data_dir>/state.json`.
        path: PathBuf,
        /// The I/O or JSON error, as text.
        message: String,
    },
    /// The git transport could not be set up.
    #[error("git transport: {0}")]
    Transport(#[from] odi_git_http::Error),
}

impl SyncError {
    /// A short machine-readable reason for status conditions and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::Git(_) | SyncError::Transport(_) => "FetchFailed",
            SyncError::NotForward { .. } => "NotDescendant",
            SyncError::Invalid { .. } => "InvalidCommit",
            SyncError::State { .. } => "StateError",
        }
    }
}

/// A verified commit that the agent applies.
#[derive(Debug)]
pub struct Applied {
    /// Full hex commit id; persisted in `state.json` and becomes the commit the node serves.
    pub commit: String,
    /// The network it declares.
    pub network: Arc<Network>,
    /// When it was applied.
    pub applied_at: OffsetDateTime,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    commit: Option<String>,
    trust: TrustState,
    /// When `commit` was verified. A restart re-verifies it as of then: expiry that passed
    /// since is reported and handled by policy (`on_expiry`), never by serving nothing.
    #[serde(default, with = "time::serde::rfc3339::option")]
    verified_at: Option<OffsetDateTime>,
}

/// Where and what to follow.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Agent data folder; holds the `network.git` mirror and `state.json`.
    pub data_dir: PathBuf,
    /// Repository URL or path.
    pub url: String,
    /// Branch fetched on every sync; its head must descend from the applied commit.
    pub branch: String,
    /// Pinned root keys.
    pub anchor: TrustAnchor,
    /// Extra CA (PEM) for https.
    pub ca_pem: Option<Vec<u8>>,
}

/// The repository follower. Its methods block (git, disk): call them from `spawn_blocking`.
pub struct Syncer {
    config: SyncConfig,
    repo: git2::Repository,
    state: StateFile,
    /// The applied network and what its load kept: the next commit is applied on top of it,
    /// reading and verifying only the catalog documents that changed (`load_since`).
    prior: Option<(Arc<Network>, Memo)>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("url", &self.config.url)
            .field("commit", &self.state.commit)
            .finish()
    }
}

impl Syncer {
    /// Opens the mirror and state; returns the last applied commit re-verified, if any.
    pub fn open(config: SyncConfig) -> Result<(Self, Option<Applied>), SyncError> {
        let options = odi_git_http::HttpOptions {
            extra_root_certs_pem: config.ca_pem.iter().cloned().collect(),
            ..Default::default()
        };
        odi_git_http::register(options)?;
        let repo = git::open_mirror(&config.data_dir.join("network.git"))?;
        let state = read_state(&state_path(&config.data_dir))?;
        let mut syncer = Self { config, repo, state, prior: None };
        let applied = match syncer.state.commit.clone() {
            Some(c) => {
                let oid = Oid::from_str(&c).map_err(|e| SyncError::Git(e.into()))?;
                // The marks already include this commit, which passes again (same serials, same
                // bytes), as of the time it was first verified.
                // A state file from before `verified_at` was kept: the commit was verified when it
                // was applied, at a time not recorded; checking expiry as of the epoch resumes it
                // rather than serving nothing (the expiry is then reported by the sync loop).
                let at = syncer.state.verified_at.unwrap_or(OffsetDateTime::UNIX_EPOCH);
                let (applied, _, memo) = syncer.verify(oid, at)?;
                syncer.prior = Some((applied.network.clone(), memo));
                Some(applied)
            }
            None => None,
        };
        if let Some(a) = &applied {
            tracing::info!(commit = %a.commit, "resuming from the last applied commit");
        }
        syncer.state.commit = applied.as_ref().map(|a| a.commit.clone());
        Ok((syncer, applied))
    }

    /// Full hex id of the last applied commit; `None` until the first one is verified.
    pub fn applied_commit(&self) -> Option<&str> {
        self.state.commit.as_deref()
    }

    /// Verifies and loads `oid`: on top of the applied network when there is one, else (or
    /// when that path declines, as it does at any problem) the whole commit, whose load names
    /// every problem.
    fn verify(
        &self,
        oid: Oid,
        now: OffsetDateTime,
    ) -> Result<(Applied, TrustState, Memo), SyncError> {
        let (anchor, trust) = (&self.config.anchor, &self.state.trust);
        let mut loaded = None;
        if let Some((network, memo)) = &self.prior {
            let delta = git::read_since(&self.repo, oid, memo.ids())?;
            loaded = load_since(&delta, network, memo, anchor, trust, now);
        }
        let incremental = loaded.is_some();
        let loaded = match loaded {
            Some(l) => l,
            None => load(&git::read_commit(&self.repo, oid)?, anchor, trust, now)
                .map_err(|problems| SyncError::Invalid { commit: oid.to_string(), problems })?,
        };
        tracing::debug!(commit = %oid, incremental, "verified");
        Ok((
            Applied {
                commit: oid.to_string(),
                network: Arc::new(loaded.network),
                applied_at: OffsetDateTime::now_utc(),
            },
            loaded.state,
            loaded.memo,
        ))
    }

    /// Fetches and, when the branch moved forward to a valid commit, applies it.
    /// `Ok(None)` means nothing new.
    pub fn sync(&mut self) -> Result<Option<Applied>, SyncError> {
        let head = git::fetch(&self.repo, &self.config.url, &self.config.branch)?;
        if let Some(applied) = &self.state.commit {
            let applied_oid = Oid::from_str(applied).map_err(|e| SyncError::Git(e.into()))?;
            if applied_oid == head {
                return Ok(None);
            }
            if !git::is_forward(&self.repo, applied_oid, head)? {
                return Err(SyncError::NotForward {
                    applied: applied.clone(),
                    candidate: head.to_string(),
                });
            }
        }
        let now = OffsetDateTime::now_utc();
        let (applied, trust, memo) = self.verify(head, now)?;
        let next =
            StateFile { commit: Some(applied.commit.clone()), trust, verified_at: Some(now) };
        write_state(&state_path(&self.config.data_dir), &next)?;
        self.state = next;
        self.prior = Some((applied.network.clone(), memo));
        tracing::info!(commit = %applied.commit, "applied new commit");
        Ok(Some(applied))
    }
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state.json")
}

fn read_state(path: &Path) -> Result<StateFile, SyncError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| SyncError::State { path: path.to_owned(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(e) => Err(SyncError::State { path: path.to_owned(), message: e.to_string() }),
    }
}

/// Writes a file so that a crash leaves either the old or the new contents.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn write_state(path: &Path, state: &StateFile) -> Result<(), SyncError> {
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| SyncError::State { path: path.to_owned(), message: e.to_string() })?;
    write_atomic(path, &bytes)
        .map_err(|e| SyncError::State { path: path.to_owned(), message: e.to_string() })
}
