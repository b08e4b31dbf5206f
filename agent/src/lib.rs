//! The `odi` agent as a library: the network tooling subcommands and the directory and relay
//! agents, so that tests start real agents in-process on port 0 and `main` stays thin.

pub mod cmd;
pub mod config;
pub mod demo;
pub mod directory;
pub mod federation;
pub mod fetch;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod reconcile;
pub mod relay;
pub mod status;
pub mod store;
pub mod sync;
