//! How a directory answers requests: `/r/<catalog>/<path>` from the routing table (the plain
//! path and the router share [`route::Entry`]), the slow path through the applied view for
//! anything the table does not hold as sent, the directory's own copy or the origin when no
//! relay can serve, Metalink documents, and the hot list and statistics endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use odi_network::model::Artifact;
use rand::Rng as _;

use super::geo::Steer;
use super::region::RegionId;
use super::route::{Entry, Serves, Table};
use super::stats::Counter;
use super::{federation, metalink, DirectoryMode};
use crate::artifact::path::{ARTIFACT_PREFIX, META4_SUFFIX};
use crate::artifact::{lookup, serve_stored};
use crate::http::response::{self, Body};
use crate::http::{PlainAnswer, PlainRequest};
use crate::node::{off_thread, Node, View};
use crate::wire::via;

/// Artifacts listed in `/.odi/v1/stats`.
const STATS_TOP: usize = 100;

/// `GET /.odi/v1/hot`: the published hot list.
pub async fn hot(State(dir): State<Arc<DirectoryMode>>) -> Response<Body> {
    response::json(StatusCode::OK, &*dir.hot_list())
}

/// `GET /.odi/v1/stats`: download statistics, the top artifacts first.
pub async fn stats(State(dir): State<Arc<DirectoryMode>>) -> Response<Body> {
    off_thread(move || response::json(StatusCode::OK, &dir.stats.doc(STATS_TOP))).await
}

/// `GET /r/<catalog>/<path>` (and `.meta4`) when the plain path did not answer it.
pub async fn serve(
    State(dir): State<Arc<DirectoryMode>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Parts,
) -> Response<Body> {
    // Pages on artifact URLs: a folder listing, a mirror list.
    if super::pages::wants_mirrorlist(req.uri.query()) {
        return super::pages::mirror_page(&dir, &req, remote);
    }
    if super::pages::is_folder_url(req.uri.path()) {
        let (d, path, headers) = (dir.clone(), req.uri.path().to_owned(), req.headers.clone());
        // Off the connection thread: a listing walks the catalog's paths.
        let page =
            tokio::task::spawn_blocking(move || super::pages::folder_page(&d, &path, &headers));
        match page.await {
            Ok(Some(page)) => return page,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "building a folder listing failed");
                return response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        }
    }
    let (node, dir) = (&dir.node, &*dir);
    let path = req.uri.path();
    let (key, meta4) = match path.strip_suffix(META4_SUFFIX) {
        Some(p) => (p, true),
        None => (path, false),
    };
    // Fast path: a table built for the view in force, and a path exactly as listed.
    let table = dir.table.load();
    if table.view.as_ref().is_some_and(|v| node.view_is(v)) {
        if let Some(e) = table.get(key) {
            return answer(node, dir, &req, remote, &table, e, meta4).await;
        }
    }
    slow_path(node, dir, &req, remote, &table).await
}

/// The plain-request path of [`serve`] (see [`crate::http::plain`]): a `GET` or `HEAD` of a
/// listed artifact that a healthy relay holds, answered from the routing table. Anything
/// else returns `false` and goes through the router.
impl PlainAnswer for DirectoryMode {
    fn answer(&self, req: &PlainRequest<'_>, out: &mut Vec<u8>) -> crate::http::plain::Answer {
        answer_plain(self, req, out).into()
    }
}

fn answer_plain(dir: &DirectoryMode, req: &PlainRequest<'_>, out: &mut Vec<u8>) -> bool {
    let node = &dir.node;
    if node.refusing.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    // A query may carry `odi-via` (a bounce from a relay); `.meta4` is a document.
    if req.query.is_some()
        || !req.path.starts_with(ARTIFACT_PREFIX)
        || req.path.ends_with(META4_SUFFIX)
    {
        return false;
    }
    let table = dir.table.load();
    if !table.view.as_ref().is_some_and(|v| node.view_is(v)) {
        return false;
    }
    let Some(e) = table.get(req.path) else { return false };
    let region = dir.regions.region_of_plain(req);
    // Ranking by the MaxMind databases is the router's work (it allocates per request).
    if region.is_none() && !dir.geo.is_empty() {
        return false;
    }
    let client = dir.regions.client_ip_from(req.remote.ip(), req.header_values("x-forwarded-for"));
    let need = Serves::client(dir.regions.secure_plain(req), client);
    let u = if e.candidates.len() > 1 { rand::thread_rng().gen::<f64>() } else { 0.0 };
    let Some((g, pos)) = e.choose(region, u, need) else { return false };
    let get = !req.head;
    e.write_redirect(g, pos, dir.max_links, get, need, out);
    if get {
        e.counter.hit();
        dir.region_counter(region).hit();
    }
    true
}

/// Everything the fast path does not cover, answered from the applied view itself.
async fn slow_path(
    node: &Arc<Node>,
    dir: &DirectoryMode,
    req: &Parts,
    remote: SocketAddr,
    table: &Table,
) -> Response<Body> {
    let view = node.view();
    let (artifact, parsed) = match lookup(view.as_deref(), req.uri.path()) {
        Ok(x) => x,
        Err(e) => return e.response(),
    };
    let Some(view) = view.as_deref() else {
        return response::text(StatusCode::SERVICE_UNAVAILABLE, "no verified commit applied yet");
    };
    let mine = view
        .network
        .directories
        .get(&node.config.name)
        .is_some_and(|d| d.catalogs.contains(&parsed.catalog));
    if !mine {
        let me = view.network.directories.get(&node.config.name);
        if me.is_some_and(|d| !d.references.is_empty()) {
            let region = dir
                .regions
                .region_of_request(remote.ip(), &req.headers)
                .and_then(|id| dir.regions.names().get(usize::from(id)));
            // A Metalink passes through to the directory that owns the catalog (it knows the
            // relays); the redirect itself already carries the catalog's digests.
            let path = if parsed.meta4 {
                format!("{}{META4_SUFFIX}", parsed.path)
            } else {
                parsed.path.clone()
            };
            let mut resp = federation::route(
                &dir.federation,
                view,
                &node.config.name,
                req.uri.query(),
                region.map(String::as_str),
                &parsed.catalog,
                &path,
            );
            if resp.status() == StatusCode::FOUND && !parsed.meta4 {
                crate::http::file::digests(resp.headers_mut(), &artifact.sha256.0);
            }
            return resp;
        }
        let others: Vec<&str> =
            view.network.holders(&parsed.catalog).map(|d| d.url.as_str()).collect();
        let hint = if others.is_empty() {
            String::new()
        } else {
            format!("; directories that do: {}", others.join(", "))
        };
        return response::text(
            StatusCode::NOT_FOUND,
            format!(
                "catalog `{}` is not served by directory `{}`{hint}",
                parsed.catalog, node.config.name
            ),
        );
    }
    // A table entry is still good for this artifact if it routes the same bytes: its
    // candidates were chosen for exactly this SHA-256.
    let decoded = format!("/r/{}/{}", parsed.catalog, parsed.path);
    if let Some(e) = table.get(&decoded).filter(|e| e.sha256 == artifact.sha256.0) {
        return answer(node, dir, req, remote, table, e, parsed.meta4).await;
    }
    // New in this commit and the table not rebuilt yet (at most a moment): no relay is known
    // to hold it, so the directory answers itself.
    let region = dir.regions.region_of_request(remote.ip(), &req.headers);
    if parsed.meta4 {
        let own = view.network.directories.get(&node.config.name);
        let url = own
            .and_then(|d| d.artifact_url(&parsed.catalog, &parsed.path))
            .map(|u| u.to_string())
            .unwrap_or(decoded);
        let doc = metalink::render(&metalink::MetaFile {
            name: artifact.path.file_name(),
            size: artifact.size,
            sha256: &artifact.sha256.0,
            published: None,
            urls: vec![metalink::MetaUrl { url: &url, location: own.map(|d| d.region.as_str()) }],
            pieces: None,
        });
        return metalink_response(doc);
    }
    let counter = dir.stats.artifact(&parsed.catalog, &parsed.path);
    fallback(node, dir, req, view, &parsed.catalog, artifact, None, &counter, region).await
}

/// Answers for a routable entry: the Metalink, a redirect to a relay, or the fallback.
async fn answer(
    node: &Arc<Node>,
    dir: &DirectoryMode,
    req: &Parts,
    remote: SocketAddr,
    table: &Table,
    e: &Entry,
    meta4: bool,
) -> Response<Body> {
    // The client address is only looked at when there are regions to tell apart.
    let region = if dir.regions.is_empty() {
        None
    } else {
        dir.regions.region_of_request(remote.ip(), &req.headers)
    };
    let (need, placed) = client_of(dir, req, remote, region);
    let ranking = placed.map(|(client, steer)| e.geo_ranking(&client, &steer, need));
    if meta4 {
        let path = node.store.object_path(&e.sha256);
        let pieces = if node.store.contains(&e.sha256) {
            dir.pieces.get(e.sha256, e.size, path).await
        } else {
            None
        };
        let doc = match &ranking {
            Some(r) => table.geo_metalink(e, r, pieces.as_deref()),
            None => table.metalink(e, region, need, pieces.as_deref()),
        };
        return metalink_response(doc);
    }
    let get = req.method == Method::GET;
    // A relay that did not hold the artifact sent the client back here (`odi-via=<relay>`):
    // answer from this directory rather than risk sending it round again.
    let bounced = req.uri.query().is_some_and(|q| {
        let via = via(Some(q));
        table.view.as_ref().is_some_and(|v| via.iter().any(|n| v.network.relays.contains_key(n)))
    });
    let u = if e.candidates.len() > 1 { rand::thread_rng().gen::<f64>() } else { 0.0 };
    if let Some(r) = &ranking {
        if let Some(pos) = e.geo_choose(r, u).filter(|_| !bounced) {
            if get {
                e.counter.hit();
                dir.region_counter(region).hit();
            }
            return e.geo_redirect(r, pos, dir.max_links, get);
        }
    } else if let Some((g, pos)) = e.choose(region, u, need).filter(|_| !bounced) {
        if get {
            e.counter.hit();
            dir.region_counter(region).hit();
        }
        return e.redirect(g, pos, dir.max_links, get, need);
    }
    let Some(view) = table.view.as_deref() else {
        return response::text(StatusCode::SERVICE_UNAVAILABLE, "no verified commit applied yet");
    };
    let Some(artifact) = view.network.artifact(&e.catalog, &e.path) else {
        return response::text(
            StatusCode::NOT_FOUND,
            format!("no artifact {}/{}", e.catalog, e.path),
        );
    };
    fallback(node, dir, req, view, &e.catalog, artifact, Some(e), &e.counter, region).await
}

/// How relays are ranked for a request: what the client needs of a relay (HTTPS when it came
/// over HTTPS, and its address family), and, with MaxMind databases and no prefix-map region,
/// where they place the client (with its `?country=` / `?avoid=` steering applied).
pub(super) fn client_of(
    dir: &DirectoryMode,
    req: &Parts,
    remote: SocketAddr,
    region: Option<RegionId>,
) -> (Serves, Option<(super::geo::Place, Steer)>) {
    let tls = req.extensions.get::<crate::http::Transport>().is_some_and(|t| t.tls);
    let secure = dir.regions.secure_request(remote.ip(), tls, &req.headers);
    let ip = dir.regions.client_ip(remote.ip(), &req.headers);
    let placed = (!dir.geo.is_empty() && region.is_none()).then(|| {
        let steer = Steer::from_query(req.uri.query());
        (steer.apply(dir.geo.lookup(ip)), steer)
    });
    (Serves::client(secure, ip), placed)
}

/// No relay can serve it: the directory's own copy, else a redirect to an HTTP origin.
#[allow(clippy::too_many_arguments)]
async fn fallback(
    node: &Arc<Node>,
    dir: &DirectoryMode,
    req: &Parts,
    view: &View,
    catalog: &str,
    artifact: &Artifact,
    entry: Option<&Entry>,
    counter: &Counter,
    region: Option<RegionId>,
) -> Response<Body> {
    let get = req.method == Method::GET;
    if let Some(mut resp) = serve_stored(node, req, catalog, artifact).await {
        if let Some(e) = entry {
            e.meta_headers(resp.headers_mut());
        }
        // A download is a whole body or the first range of one; later ranges of the same
        // download (segmented clients, resumes) are not counted again.
        let starts = resp.status() == StatusCode::OK
            || (resp.status() == StatusCode::PARTIAL_CONTENT
                && resp
                    .headers()
                    .get(http::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("bytes 0-")));
        if get && starts {
            counter.hit();
            dir.region_counter(region).hit();
            dir.stats.directory.hit();
        }
        return resp;
    }
    let origin = view
        .network
        .catalogs
        .get(catalog)
        .and_then(|c| c.origin_urls(artifact.path.as_str()).find(|u| u.scheme() != "file"));
    match origin {
        Some(url) => {
            let mut resp = response::redirect(StatusCode::FOUND, url.as_str());
            match entry {
                Some(e) => e.meta_headers(resp.headers_mut()),
                None => crate::http::file::digests(resp.headers_mut(), &artifact.sha256.0),
            }
            if get {
                counter.hit();
                dir.region_counter(region).hit();
                dir.stats.origin.hit();
            }
            resp
        }
        None => response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no relay holds this artifact yet, the directory has no copy yet and there is no HTTP origin to redirect to; retry shortly",
        ),
    }
}

fn metalink_response(doc: String) -> Response<Body> {
    let len = doc.len();
    let mut r = Response::new(response::full(doc));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(metalink::CONTENT_TYPE));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    // Ranked for this client's region and the relays' health right now.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    r
}
