//! The agent's HTTP layer, shared by directory and relay modes: the listener
//! (`server`), TLS with certificate reload (`tls`), request path parsing
//! (`path`), serving stored artifact bytes (`artifact`) and small response
//! builders (`response`). One module per HTTP concern.

pub mod artifact;
pub mod path;
pub mod response;
pub mod server;
pub mod tls;

pub use server::{bind, Body, Handler, RunningServer, ServerConfig, ServerError, TlsFiles};
