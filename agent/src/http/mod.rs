//! The agent's HTTP layer, shared by directory and relay modes: the listener (`server`) and
//! its connection threads (`workers`), TLS with certificate reload (`tls`), request path
//! parsing (`path`), plain requests answered without hyper (`plain`), serving stored artifact
//! bytes (`artifact`) and small response builders (`response`). One module per HTTP concern.

pub mod artifact;
pub mod path;
pub mod plain;
pub mod response;
pub mod server;
pub mod tls;
mod workers;

pub use plain::{PlainRequest, PlainResponse};
pub use server::{bind, Body, Handler, RunningServer, ServerConfig, ServerError, TlsFiles};
