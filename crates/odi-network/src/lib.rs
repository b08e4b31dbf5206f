//! The ODI network repository as a library: the typed model of every file, the trust policy
//! and signature checks, reading commits from git, and the assignment of artifacts to relays.
//! Usable without any server: `odi validate`, `odi plan` and the agents all call [`load::load`].

pub mod assign;
pub mod builder;
pub mod git;
pub mod load;
pub mod model;
pub mod plan;
pub mod problem;
pub mod raw;
pub mod safe_path;
pub mod schema;
pub mod signature;
pub mod tree;
pub mod trust;
pub mod units;

pub use load::{load, load_with, LoadOptions, Loaded};
pub use model::Network;
pub use problem::{Problem, Problems};
pub use tree::Tree;
pub use trust::{TrustAnchor, TrustState};
