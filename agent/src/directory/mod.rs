//! Directory mode: holds the full catalogs it serves (origin-pull into its own store, or from
//! linked peers), and answers `/r/<catalog>/<path>`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{response, Body};
use crate::node::{Node, View};
use crate::reconcile::{Target, Want};
use crate::relay::{self, origin_url};

/// Directory-only state.
#[derive(Debug)]
pub struct DirectoryState {}

impl DirectoryState {
    /// Opens the directory's own state under the data folder.
    pub fn open(_config: &Config) -> Result<Self, String> {
        Ok(Self {})
    }

    /// The directory section of the status document.
    pub fn status_json(&self, _node: &Node, _view: Option<&View>) -> serde_json::Value {
        serde_json::json!({})
    }
}

/// What directory `name` holds: every live artifact of its catalogs, fetched from linked
/// peers first (so linked directories spare the origin) and then the origins.
pub fn target(name: &str, view: &View) -> Target {
    let net = &view.network;
    let purge = relay::expunged(net);
    let Some(me) = net.directories.get(name) else {
        return Target { wants: Vec::new(), purge, quota: None, delete_unwanted: true };
    };
    let mut wants = Vec::new();
    for catalog in me.catalogs.iter().filter_map(|c| net.catalogs.get(c)) {
        for a in catalog.live() {
            wants.push(Want {
                label: format!("{}/{}", catalog.name, a.path),
                sha256: a.sha256.0,
                size: a.size,
                sources: relay::sources(net, &me.links, catalog, a),
            });
        }
    }
    Target { wants, purge, quota: None, delete_unwanted: true }
}

/// Directory requests other than the common endpoints.
pub async fn handle(node: &Arc<Node>, req: Request<Incoming>, _remote: SocketAddr) -> Response<Body> {
    let view = node.view();
    let path = req.uri().path().to_owned();
    if !path.starts_with("/r/") {
        return response::text(StatusCode::NOT_FOUND, "not found");
    }
    let (artifact, parsed) = match relay::lookup(view.as_deref(), &path) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if let Some(resp) = relay::serve_stored(node, &req, &parsed.catalog, artifact).await {
        return resp;
    }
    // Not held yet: send the client to the origin rather than fail.
    let origin = view.as_ref().and_then(|v| v.network.catalogs.get(&parsed.catalog)).and_then(|c| c.origins.iter().find(|o| o.scheme() != "file")).and_then(|o| origin_url(o, &parsed.path));
    match origin {
        Some(url) => response::redirect(StatusCode::FOUND, url.as_str()),
        None => response::text(StatusCode::SERVICE_UNAVAILABLE, "not yet held here and no HTTP origin to redirect to; retry shortly"),
    }
}

/// Directory background tasks.
pub fn spawn_tasks(_node: &Arc<Node>, _shutdown: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}
