//! The network tooling subcommands: `validate`, `plan`, `keygen`, `sign`, `schemas`,
//! `snapshot`, `root new|sign`, `init`, `catalog`. Each
//! returns a typed error; `main` prints it with its causes and picks the exit code.

pub mod apt;
pub mod catalog;
pub mod import;
pub mod init;
pub mod keys;
pub mod maven;
pub mod plan;
pub mod pypi;
pub mod remote;
pub mod source;
pub mod status;
pub mod trust;
pub mod validate;

/// Errors of the tooling subcommands.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The repository has problems (already printed one per line).
    #[error("{count} problem(s) found")]
    Invalid {
        /// Number of problems printed; the exit code is 1 whatever it is.
        count: usize,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file, as named on the command line or derived from it (like `<file>.minisig`).
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// git failed.
    #[error(transparent)]
    Git(#[from] odi_network::git::GitError),
    /// A key or signature problem.
    #[error(transparent)]
    Signature(#[from] odi_network::signature::SignatureError),
    /// The node named for `plan` is not in the network.
    #[error(transparent)]
    UnknownNode(#[from] odi_network::plan::UnknownNode),
    /// Anything else the user must fix.
    #[error("{0}")]
    Usage(String),
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CmdError + '_ {
    move |source| CmdError::Io { path: path.to_owned(), source }
}
