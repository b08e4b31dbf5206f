//! The `odi` agent as a library: the network tooling subcommands and the directory and relay
//! agents, so that tests start real agents in-process on port 0 and `main` stays thin.
//!
//! Dependencies run one way (ARCHITECTURE.md states the rules): [`app`] composes [`relay`]
//! and [`directory`], which never import each other; both build on [`node`], [`artifact`],
//! [`wire`], [`status`], [`reconcile`], [`store`] and [`http`], which name no mode.

pub mod app;
pub mod artifact;
pub mod cmd;
pub mod config;
pub mod demo;
pub mod directory;
pub mod fetch;
pub mod http;
pub mod locks;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod reconcile;
pub mod relay;
pub mod status;
pub mod store;
pub mod sync;
pub mod web;
pub mod wire;
