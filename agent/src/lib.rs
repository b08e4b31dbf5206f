//! The `odi` agent as a library: the network tooling subcommands and the directory and relay
//! agents, so that tests start real agents in-process on port 0 and `main` stays thin.

pub mod cmd;
pub mod http;
pub mod logging;
