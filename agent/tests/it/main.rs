//! The single integration-test binary of the `odi` agent; one module per area.

mod support;
mod testnet;

mod architecture;
mod clients;
mod demo;
mod directory;
mod federation;
mod flood;
mod geo;
mod publish;
mod relay;
mod schemas;
mod sync;
mod tls;
mod trust;
mod validate;
mod web;
