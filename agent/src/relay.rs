//! Relay mode: what this relay should hold (its share of the assignment, plus hot extras),
//! serving those bytes at `/r/<catalog>/<path>`, and publishing its inventory for directories.

use std::collections::HashSet;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use odi_network::assign::Extras;
use odi_network::model::{Artifact, Catalog, Network, Relay};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::fetch::Source;
use crate::http::{self as web, response, Body};
use crate::node::{Node, View};
use crate::reconcile::{Target, Want};

/// `url` with a trailing slash, so that `join` appends instead of replacing the last segment.
pub fn base(url: &Url) -> Url {
    let mut u = url.clone();
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    u
}

/// Where a peer serves an object by hash.
pub fn blob_url(node_url: &Url, sha256: &[u8; 32]) -> Option<Url> {
    base(node_url).join(&format!(".odi/v1/blob/{}", hex::encode(sha256))).ok()
}

/// Where an origin serves an artifact.
pub fn origin_url(origin: &Url, path: &str) -> Option<Url> {
    base(origin).join(path).ok()
}

/// Sources for an artifact, best first: the given directories that hold the catalog, then
/// the directories they link to, then the catalog's origins.
pub fn sources(
    network: &Network,
    directories: &[String],
    catalog: &Catalog,
    artifact: &Artifact,
) -> Vec<Source> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let holds = |d: &str| network.directories.get(d).filter(|d| d.catalogs.contains(&catalog.name));
    let mut linked = Vec::new();
    for d in directories.iter().filter_map(|d| holds(d)) {
        if seen.insert(d.name.clone()) {
            out.extend(
                blob_url(&d.url, &artifact.sha256.0).map(|url| Source { url, odi_peer: true }),
            );
        }
        linked.extend(d.links.iter().cloned());
    }
    for d in linked.iter().filter_map(|d| holds(d)) {
        if seen.insert(d.name.clone()) {
            out.extend(
                blob_url(&d.url, &artifact.sha256.0).map(|url| Source { url, odi_peer: true }),
            );
        }
    }
    out.extend(
        catalog
            .origins
            .iter()
            .filter_map(|o| origin_url(o, artifact.path.as_str()))
            .map(|url| Source { url, odi_peer: false }),
    );
    out
}

/// Every expunged artifact's hash: deleted from every store at once.
pub fn expunged(network: &Network) -> HashSet<[u8; 32]> {
    network
        .catalogs
        .values()
        .flat_map(|c| c.artifacts.values())
        .filter(|a| a.expunged.is_some())
        .map(|a| a.sha256.0)
        .collect()
}

/// What relay `name` should hold at `view`.
pub fn target(name: &str, view: &View) -> Target {
    let net = &view.network;
    let Some(relay) = net.relays.get(name) else {
        // Not (or no longer) in the network: hold nothing, keep nothing.
        return Target {
            wants: Vec::new(),
            purge: expunged(net),
            quota: Some(0),
            delete_unwanted: true,
        };
    };
    let wants = match view.assignment.share(name) {
        Some(share) => view
            .assignment
            .artifacts_of(share)
            .filter_map(|p| {
                let catalog = net.catalogs.get(&p.catalog)?;
                let artifact = net.artifact(&p.catalog, &p.path)?;
                Some(want(net, relay, catalog, artifact))
            })
            .collect(),
        None => Vec::new(),
    };
    Target { wants, purge: expunged(net), quota: Some(relay.quota.0), delete_unwanted: false }
}

fn want(net: &Network, relay: &Relay, catalog: &Catalog, artifact: &Artifact) -> Want {
    Want {
        label: format!("{}/{}", catalog.name, artifact.path),
        sha256: artifact.sha256.0,
        size: artifact.size,
        sources: sources(net, &relay.directories, catalog, artifact),
    }
}

/// One held artifact in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryItem {
    /// Catalog.
    pub catalog: String,
    /// Path.
    pub path: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// `GET /.odi/v1/inventory`: the live artifacts of the applied commit whose bytes are stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inventory {
    /// Node name.
    pub name: String,
    /// Applied commit; a directory ignores an inventory of another commit.
    pub commit: Option<String>,
    /// Held artifacts.
    pub artifacts: Vec<InventoryItem>,
}

/// Builds the inventory.
pub fn inventory(node: &Node) -> Inventory {
    let view = node.view();
    let mut artifacts = Vec::new();
    if let Some(v) = &view {
        for c in v.network.catalogs.values() {
            for a in c.live().filter(|a| node.store.contains(&a.sha256.0)) {
                artifacts.push(InventoryItem {
                    catalog: c.name.clone(),
                    path: a.path.to_string(),
                    sha256: a.sha256.to_hex(),
                    size: a.size,
                });
            }
        }
    }
    Inventory { name: node.config.name.clone(), commit: view.map(|v| v.commit.clone()), artifacts }
}

/// Why `/r/<catalog>/<path>` names nothing servable.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// A hostile or malformed path.
    #[error(transparent)]
    BadPath(#[from] web::path::PathError),
    /// Nothing verified yet.
    #[error("no verified commit applied yet")]
    NoCommit,
    /// Not in the applied commit.
    #[error("no artifact {0}")]
    Unknown(String),
    /// Withdrawn, with the catalog's reason.
    #[error("{0} was expunged: {1}")]
    Expunged(String, String),
}

impl LookupError {
    /// 400, 503, 404 or 410 with the message as body.
    pub fn response(&self) -> Response<Body> {
        let status = match self {
            LookupError::BadPath(e) => e.status(),
            LookupError::NoCommit => StatusCode::SERVICE_UNAVAILABLE,
            LookupError::Unknown(_) => StatusCode::NOT_FOUND,
            LookupError::Expunged(..) => StatusCode::GONE,
        };
        response::text(status, self)
    }
}

/// Looks up `/r/<catalog>/<path>` in the applied commit.
pub fn lookup<'v>(
    view: Option<&'v View>,
    raw_path: &str,
) -> Result<(&'v Artifact, web::path::ArtifactPath), LookupError> {
    let parsed = web::path::parse_artifact_path(raw_path)?;
    let view = view.ok_or(LookupError::NoCommit)?;
    let name = || format!("{}/{}", parsed.catalog, parsed.path);
    let artifact = view
        .network
        .artifact(&parsed.catalog, &parsed.path)
        .ok_or_else(|| LookupError::Unknown(name()))?;
    if let Some(reason) = &artifact.expunged {
        return Err(LookupError::Expunged(name(), reason.clone()));
    }
    Ok((artifact, parsed))
}

/// Serves an artifact's bytes from the store, or `None` when they are not stored.
pub async fn serve_stored(
    node: &Node,
    req: &Request<Incoming>,
    catalog: &str,
    artifact: &Artifact,
) -> Option<Response<Body>> {
    let file = node.store.open_object(&artifact.sha256.0).await?;
    let meta = web::artifact::ArtifactMeta {
        size: artifact.size,
        sha256: artifact.sha256.0,
        last_modified: artifact.published.map(Into::into),
    };
    let resp = web::artifact::serve(req, file, &meta).await;
    if resp.status().is_success() && req.method() == http::Method::GET {
        let m = &node.metrics;
        m.inc(
            "odi_served_total",
            "Artifact responses with bytes, per catalog.",
            &[("catalog", catalog)],
            1.0,
        );
        let len = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        m.inc("odi_served_bytes_total", "Bytes of artifact bodies served.", &[], len);
    }
    Some(resp)
}

/// Relay requests other than the common endpoints.
pub async fn handle(node: &Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let view = node.view();
    let path = req.uri().path().to_owned();
    if !path.starts_with("/r/") {
        return response::text(StatusCode::NOT_FOUND, "not found");
    }
    let (artifact, parsed) = match lookup(view.as_deref(), &path) {
        Ok(x) => x,
        Err(e) => return e.response(),
    };
    if parsed.meta4 {
        return response::text(
            StatusCode::NOT_FOUND,
            "relays do not serve Metalink; ask a directory",
        );
    }
    if let Some(resp) = serve_stored(node, &req, &parsed.catalog, artifact).await {
        return resp;
    }
    // Not held here (a relative link from a page this relay served, say): send the client to
    // one of this relay's directories, marked so that the directory answers it itself.
    let directory = view.as_ref().and_then(|v| {
        let me = v.network.relays.get(&node.config.name)?;
        me.directories
            .iter()
            .filter_map(|d| v.network.directories.get(d))
            .find(|d| d.catalogs.contains(&parsed.catalog))
    });
    match directory
        .and_then(|d| base(&d.url).join(&format!("r/{}/{}", parsed.catalog, parsed.path)).ok())
    {
        Some(mut url) => {
            url.query_pairs_mut().append_pair(crate::federation::VIA_PARAM, &node.config.name);
            response::redirect(StatusCode::FOUND, url.as_str())
        }
        None => response::text(
            StatusCode::NOT_FOUND,
            format!("{}/{} is not held by this relay", parsed.catalog, parsed.path),
        ),
    }
}

/// `GET /.odi/v1/hot` of a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotList {
    /// The directory's applied commit.
    pub commit: Option<String>,
    /// Hot artifacts and their extra replicas.
    pub artifacts: Vec<HotItem>,
}

/// One hot artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotItem {
    /// Catalog.
    pub catalog: String,
    /// Path.
    pub path: String,
    /// Extra replicas wanted.
    pub extra: u32,
}

/// Fetches the hot lists of this relay's directories and, when they change, recomputes the
/// assignment with the extra replicas so that relays with spare quota pick them up.
pub async fn hot_loop(node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(crate::node::jitter(node.config.pull_interval)) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(view) = node.view() else { continue };
        let Some(me) = view.network.relays.get(&node.config.name) else { continue };
        let mut extras = Extras::new();
        for d in me.directories.iter().filter_map(|d| view.network.directories.get(d)) {
            let Ok(url) = base(&d.url).join(".odi/v1/hot") else { continue };
            let list = match node.fetcher.client.get(url.clone()).send().await {
                Ok(r) if r.status().is_success() => r.json::<HotList>().await.ok(),
                _ => None,
            };
            for item in list.map(|l| l.artifacts).unwrap_or_default() {
                // Bounded: a directory cannot make a relay hold more than 8 extra copies' worth.
                let e = extras.entry((item.catalog, item.path)).or_insert(0);
                *e = (*e).max(item.extra.min(8));
            }
        }
        if extras != view.extras {
            tracing::info!(hot = extras.len(), "hot list changed; recomputing the assignment");
            // Compare-and-swap: never roll back a commit the sync loop installed meanwhile.
            node.install_extras(extras).await;
        }
    }
}
