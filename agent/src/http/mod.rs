//! The agent's HTTP layer. It knows nothing of ODI: it serves an axum router and, optionally,
//! a plain-request answerer, and its dependencies run one way:
//!
//! - `server` (the listener, limits, shutdown) uses `admission`, `plain`, `tls`, `workers`;
//! - `layers` (panics, tracing, timeouts, `Host`) and `file` (serving a file with ranges and
//!   validators) use `response` (body type and small builders);
//! - `acme` (certificates from an ACME CA) uses `tls`, whose resolver answers its challenges;
//! - `admission`, `plain`, `tls`, `workers`, `response` use nothing else here;
//! - `testing` is a raw HTTP/1.1 client for tests.

pub mod acme;
mod admission;
pub mod file;
pub mod layers;
pub mod plain;
pub mod response;
pub mod server;
pub mod testing;
pub mod tls;
mod workers;

pub use plain::{PlainAnswer, PlainRequest, PlainResponse};
pub use response::Body;
pub use server::{bind, RunningServer, ServerConfig, ServerError, TlsSettings, Transport};
pub use tls::TlsFiles;
