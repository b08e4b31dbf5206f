//! Relay mode: what this relay should hold (its share of the assignment, plus hot extras),
//! serving those bytes at `/r/<catalog>/<path>`, and following its directories' hot lists.

use std::sync::Arc;

use axum::extract::State;
use http::request::Parts;
use http::{Response, StatusCode};
use odi_network::assign::Extras;
use odi_network::model::{Artifact, Catalog, Network, Relay};
use tokio_util::sync::CancellationToken;

use crate::artifact::{self, lookup};
use crate::http::plain::Answer;
use crate::http::response::{self, Body};
use crate::http::{PlainAnswer, PlainRequest};
use crate::node::{jitter, Node, View};
use crate::reconcile::{self, Target, Want};
use crate::status::ShareStatus;
use crate::wire::{HotList, VIA_PARAM};

/// Most extra copies a directory's hot list can make this relay hold of one artifact.
const MAX_HOT_EXTRA: u32 = 8;

/// Relay-mode state: the node, for the request handlers and the hot-list loop.
#[derive(Debug)]
pub struct RelayMode {
    /// The shared node.
    pub node: Arc<Node>,
}

impl RelayMode {
    /// What this relay should hold at `view`.
    pub fn target(&self, view: &View) -> Target {
        target(&self.node.config.name, view)
    }

    /// What it should hold and how much of that is missing, without building the download
    /// sources that a reconcile target carries (status is polled often).
    pub fn share(&self, view: &View) -> ShareStatus {
        let mut s = ShareStatus::default();
        let Some(share) = view.assignment.share(&self.node.config.name) else { return s };
        let net = &view.network;
        for a in view.assignment.artifacts_of(share).filter_map(|p| net.artifact(p.catalog, p.path))
        {
            s.artifacts += 1;
            s.bytes += a.size;
            if !self.node.store.contains(&a.sha256.0) {
                s.missing += 1;
            }
        }
        s
    }

    /// Its disk quota at `view`, from its relay file.
    pub fn quota(&self, view: Option<&View>) -> Option<u64> {
        view.and_then(|v| v.network.relays.get(&self.node.config.name)).map(|r| r.quota.0)
    }
}

/// What relay `name` should hold at `view`.
pub fn target(name: &str, view: &View) -> Target {
    let net = &view.network;
    let purge = reconcile::expunged(net);
    let Some(relay) = net.relays.get(name) else {
        // Not (or no longer) in the network: hold nothing, keep nothing.
        return Target { wants: Vec::new(), purge, quota: Some(0), delete_unwanted: true };
    };
    let wants = match view.assignment.share(name) {
        Some(share) => view
            .assignment
            .artifacts_of(share)
            .filter_map(|p| {
                let catalog = net.catalogs.get(p.catalog)?;
                let artifact = net.artifact(p.catalog, p.path)?;
                Some(want(net, relay, catalog, artifact))
            })
            .collect(),
        None => Vec::new(),
    };
    Target { wants, purge, quota: Some(relay.quota.0), delete_unwanted: false }
}

fn want(net: &Network, relay: &Relay, catalog: &Catalog, artifact: &Artifact) -> Want {
    Want {
        label: format!("{}/{}", catalog.name, artifact.path),
        sha256: artifact.sha256.0,
        size: artifact.size,
        sources: reconcile::sources(net, &relay.directories, catalog, artifact),
    }
}

/// `GET /r/<catalog>/<path>`: the stored bytes, or a redirect back to a directory when this
/// relay does not hold them.
pub async fn serve(State(relay): State<Arc<RelayMode>>, req: Parts) -> Response<Body> {
    let node = &relay.node;
    let view = node.view();
    let (artifact, parsed) = match lookup(view.as_deref(), req.uri.path()) {
        Ok(x) => x,
        Err(e) => return e.response(),
    };
    if parsed.meta4 {
        let r =
            response::text(StatusCode::NOT_FOUND, "relays do not serve Metalink; ask a directory");
        return response::cache(r, response::CACHE_MISSING);
    }
    if let Some(resp) = artifact::serve_stored(node, &req, &parsed.catalog, artifact).await {
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
    match directory.and_then(|d| d.artifact_url(&parsed.catalog, &parsed.path)) {
        Some(mut url) => {
            url.query_pairs_mut().append_pair(VIA_PARAM, &node.config.name);
            response::redirect(StatusCode::FOUND, url.as_str())
        }
        None => {
            let msg = format!("{}/{} is not held by this relay", parsed.catalog, parsed.path);
            response::cache(response::text(StatusCode::NOT_FOUND, msg), response::CACHE_MISSING)
        }
    }
}

/// The plain path's answer to `GET`/`HEAD /r/<catalog>/<path>` for bytes this relay holds and
/// has verified: the head, then the file by `sendfile` (see [`crate::http::plain`]). Anything
/// else (not held, not yet verified, expunged, unknown, a refusal, `.meta4`) is the router's.
impl PlainAnswer for RelayMode {
    fn answer(&self, req: &PlainRequest<'_>, out: &mut Vec<u8>) -> Answer {
        let node = &self.node;
        if node.refusing.load(std::sync::atomic::Ordering::Relaxed) {
            return Answer::Declined;
        }
        let view = node.view();
        let Ok((artifact, parsed)) = lookup(view.as_deref(), req.path) else {
            return Answer::Declined;
        };
        if parsed.meta4 {
            return Answer::Declined;
        }
        artifact::plain_stored(node, req, &parsed.catalog, artifact, out)
            .unwrap_or(Answer::Declined)
    }
}

/// Fetches the hot lists of this relay's directories and, when they change, recomputes the
/// assignment with the extra replicas so that relays with spare quota pick them up.
pub async fn hot_loop(relay: Arc<RelayMode>, shutdown: CancellationToken) {
    let node = &relay.node;
    loop {
        tokio::select! {
            () = tokio::time::sleep(jitter(node.config.pull_interval)) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(view) = node.view() else { continue };
        let Some(me) = view.network.relays.get(&node.config.name) else { continue };
        let mut extras = Extras::new();
        for d in me.directories.iter().filter_map(|d| view.network.directories.get(d)) {
            let Some(url) = d.endpoint("hot") else { continue };
            let list = match node.fetcher.client.get(url).send().await {
                Ok(r) if r.status().is_success() => r.json::<HotList>().await.ok(),
                _ => None,
            };
            for item in list.map(|l| l.artifacts).unwrap_or_default() {
                let e = extras.entry((item.catalog, item.path)).or_insert(0);
                *e = (*e).max(item.extra.min(MAX_HOT_EXTRA));
            }
        }
        if extras != view.extras {
            tracing::info!(hot = extras.len(), "hot list changed; recomputing the assignment");
            // Compare-and-swap: never roll back a commit the sync loop installed meanwhile.
            node.install_extras(extras).await;
        }
    }
}

/// `GET /` (and `/index.json`) on a relay.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RelayPageDoc {
    /// The relay's status document.
    pub status: crate::status::StatusDoc,
    /// Its region, from its relay file.
    pub region: Option<String>,
    /// The directories it works with: (name, URL); clients start there.
    pub directories: Vec<(String, String)>,
    /// The catalogs (and tags) it carries.
    pub catalogs: Vec<String>,
}

/// A relay's one page: which network, which directories, what it holds, its status.
pub async fn page(State(relay): State<Arc<RelayMode>>, req: Parts) -> Response<Body> {
    use maud::html;
    let format = crate::web::Format::of_request(req.uri.path(), &req.headers);
    crate::node::off_thread(move || {
        let node = &relay.node;
        let view = node.view();
        let v = view.as_deref();
        let share = v.map(|v| relay.share(v)).unwrap_or_default();
        let status = node.status(share, relay.quota(v));
        let me = v.and_then(|v| v.network.relays.get(&node.config.name));
        let directories = me
            .zip(v)
            .map(|(me, v)| {
                me.directories
                    .iter()
                    .filter_map(|d| v.network.directories.get(d))
                    .map(|d| (d.name.clone(), d.url.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let catalogs = me
            .zip(v)
            .map(|(me, v)| {
                v.network.catalogs.values().filter(|c| me.subscribes(c)).map(|c| c.name.clone()).collect()
            })
            .unwrap_or_default();
        let doc = RelayPageDoc { status, region: me.map(|r| r.region.clone()), directories, catalogs };
        let render = || {
            let s = &doc.status;
            let ready = s.ready();
            let body = html! {
                p {
                    "This is " strong { (s.name) } ", a relay of an ODI network"
                    @if let Some(r) = &doc.region { " in region " (r) } ". "
                    "It serves the bytes that directories send clients to; start at a directory:"
                }
                ul { @for (name, url) in &doc.directories { li { a href=(url) { (name) } } } }
                h2 { "Status" }
                p {
                    (crate::web::badge(ready, "ready", "not ready")) " "
                    @if let Some(c) = &s.commit { "serving commit " (crate::web::short(c)) }
                    @else { "no verified commit applied yet" }
                }
                @if let Some(e) = &s.last_error { p { "Last error: " (e) } }
                ul {
                    @for c in &s.conditions { li { (c.kind) ": " (if c.status { "yes" } else { "no" }) " (" (c.reason) ") " span class="muted" { (c.message) } } }
                }
                h2 { "What it holds" }
                table {
                    tbody {
                        tr { th scope="row" { "Catalogs" } td { (doc.catalogs.join(", ")) } }
                        tr { th scope="row" { "Assigned" } td { (s.share.artifacts) " artifacts, " (crate::web::bytes(s.share.bytes)) } }
                        tr { th scope="row" { "Still to fetch" } td { (s.share.missing) } }
                        tr { th scope="row" { "Stored" } td {
                            (s.store.objects) " objects, " (crate::web::bytes(s.store.bytes))
                            @if let Some(q) = s.store.quota { " of a " (crate::web::bytes(q)) " quota" }
                        } }
                    }
                }
            };
            crate::web::render(&crate::web::Page {
                title: "Relay",
                node: &s.name,
                nav: &[("Home", "/")],
                current: "Home",
                refresh: None,
                body,
            })
        };
        crate::web::respond(format, &doc, render)
    })
    .await
}
