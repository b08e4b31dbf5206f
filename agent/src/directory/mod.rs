//! Directory mode: holds the full catalogs it serves (origin-pull into its own store, or from
//! linked peers), probes the relays that work with it, and answers `/r/<catalog>/<path>` with
//! a `302` to a healthy relay that holds the artifact (or the bytes itself, or the origin).
//!
//! - [`probe`]: relay health (status, inventory, content checks against its own copy);
//! - [`route`]: the routing table, rebuilt off the request path and swapped atomically;
//! - [`region`]: client region from the prefix map and trusted `X-Forwarded-For`;
//! - [`metalink`]: RFC 5854 documents at `<artifact>.meta4`;
//! - [`stats`]: download counters, the hot list and their embedded store.
//!
//! The request path loads the table (one atomic load), checks it was built for the view in
//! force, and does one hash lookup on the raw path; anything unusual (a table not yet rebuilt
//! for a new commit, an encoded path, an unknown or expunged artifact) takes the slow path
//! through the applied view, which is always correct.

pub mod metalink;
pub mod probe;
pub mod region;
pub mod route;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::StreamExt as _;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use odi_network::assign::Extras;
use odi_network::model::{Artifact, Relay};
use rand::Rng as _;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::probe::{ProbeSettings, RelayHealth};
use self::region::{RegionId, RegionMap};
use self::route::{BuildInput, Entry, Held, Table};
use self::stats::{Counter, Stats};
use crate::config::Config;
use crate::http::{response, Body, PlainRequest};
use crate::node::{jitter, Node, View};
use crate::reconcile::{Target, Want};
use crate::relay::{self, origin_url, HotItem, HotList};
use crate::status::rfc3339;

/// Relays probed at the same time.
const PROBE_CONCURRENCY: usize = 8;
/// How often the table is compared with the applied view.
const WATCH: Duration = Duration::from_millis(100);
/// How often counters are written to the embedded store.
const FLUSH_EVERY: Duration = Duration::from_secs(30);
/// Artifacts listed in `/.odi/v1/stats`.
const STATS_TOP: usize = 100;

/// Why the directory could not start.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The statistics store.
    #[error("statistics store: {0}")]
    Stats(#[from] stats::StatsError),
    /// A setting this build cannot honour.
    #[error("{0}")]
    Unsupported(String),
}

/// Directory-only state.
#[derive(Debug)]
pub struct DirectoryState {
    regions: RegionMap,
    max_links: usize,
    hot_threshold: u64,
    hot_extra: u32,
    probe_interval: Duration,
    table: ArcSwap<Table>,
    relays: Mutex<BTreeMap<String, RelayHealth>>,
    /// Download statistics.
    pub stats: Stats,
    /// One counter per configured region, by [`RegionId`].
    region_counters: Vec<Arc<Counter>>,
    unknown_region: Arc<Counter>,
    hot: ArcSwap<HotList>,
    rebuild_lock: tokio::sync::Mutex<()>,
    probe_now: Notify,
    /// Linked and referenced directories: their health, and redirects for catalogs not held here.
    pub federation: Arc<crate::federation::Federation>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it half-updated in a harmful way.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DirectoryState {
    /// Opens the directory's own state under the data folder (its statistics store).
    pub fn open(config: &Config) -> Result<Self, String> {
        Self::open_inner(config).map_err(|e| e.to_string())
    }

    fn open_inner(config: &Config) -> Result<Self, DirectoryError> {
        let d = &config.directory;
        if let Some(db) = &d.geoip_db {
            // Refused rather than ignored: silently routing every client as region-less would
            // surprise the operator who configured it.
            return Err(DirectoryError::Unsupported(format!(
                "directory.geoip_db ({}): this build cannot read MaxMind databases; map client prefixes to regions with directory.regions instead",
                db.display()
            )));
        }
        let stats = Stats::open(&config.data_dir.join("stats.redb"))?;
        Ok(Self::with_stats(config, stats))
    }

    fn with_stats(config: &Config, stats: Stats) -> Self {
        let d = &config.directory;
        let regions = RegionMap::new(&d.regions, &d.trusted_proxies);
        let region_counters = regions.names().iter().map(|n| stats.region(n)).collect();
        let unknown_region = stats.region("unknown");
        Self {
            regions,
            max_links: d.max_links,
            hot_threshold: d.hot_threshold,
            hot_extra: d.hot_extra_replicas,
            probe_interval: d.probe_interval,
            table: ArcSwap::from_pointee(Table::default()),
            relays: Mutex::new(BTreeMap::new()),
            stats,
            region_counters,
            unknown_region,
            hot: ArcSwap::from_pointee(HotList::default()),
            rebuild_lock: tokio::sync::Mutex::new(()),
            probe_now: Notify::new(),
            federation: Arc::default(),
        }
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// A copy of every relay's health.
    pub fn relay_health(&self) -> BTreeMap<String, RelayHealth> {
        lock(&self.relays).clone()
    }

    /// The published hot list.
    pub fn hot_list(&self) -> Arc<HotList> {
        self.hot.load_full()
    }

    /// Asks the probe loop for a round now.
    pub fn probe_soon(&self) {
        self.probe_now.notify_one();
    }

    #[inline]
    fn region_counter(&self, region: Option<RegionId>) -> &Counter {
        region.and_then(|r| self.region_counters.get(r as usize)).unwrap_or(&self.unknown_region)
    }

    /// Adds the download counters to the Prometheus registry (called when `/metrics` renders).
    pub fn export_metrics(&self, m: &crate::metrics::Metrics) {
        self.stats.export(m);
    }

    /// The directory section of the status document.
    pub fn status_json(&self, node: &Node, view: Option<&View>) -> serde_json::Value {
        let health = self.relay_health();
        let me = view.and_then(|v| v.network.directories.get(&node.config.name));
        let relays: Vec<serde_json::Value> = view
            .map(|v| v.network.relays.values().filter(|r| r.directories.contains(&node.config.name)).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let h = health.get(&r.name).cloned().unwrap_or_default();
                let lagging = h.commit.is_some() && view.is_some_and(|v| h.commit.as_deref() != Some(v.commit.as_str()));
                serde_json::json!({
                    "name": r.name,
                    "url": r.url.as_str(),
                    "region": r.region,
                    "healthy": h.healthy,
                    "reason": h.reason.clone().or_else(|| h.last_probe.is_none().then(|| "not probed yet".to_owned())),
                    "last_probe": h.last_probe.map(rfc3339),
                    "last_healthy": h.last_healthy.map(rfc3339),
                    "commit": h.commit,
                    "lagging": lagging,
                    "artifacts_listed": h.listed,
                    "artifacts_held": h.held.len(),
                    "content_checks": h.checks,
                })
            })
            .collect();
        let table = self.table();
        let fresh =
            matches!((&table.view, view), (Some(t), Some(v)) if std::ptr::eq(Arc::as_ptr(t), v));
        let routable = table.entries().iter().filter(|e| !e.candidates.is_empty()).count();
        serde_json::json!({
            "region": me.map(|d| d.region.clone()),
            "catalogs": me.map(|d| d.catalogs.clone()).unwrap_or_default(),
            "links": me.map(|d| d.links.clone()).unwrap_or_default(),
            "references": me.map(|d| d.references.clone()).unwrap_or_default(),
            "kind": me.map(|d| if d.kind == odi_network::raw::DirectoryKind::Meta { "meta" } else { "directory" }),
            "peers": &*self.federation.health(),
            "relays": relays,
            "routing": {
                "commit": table.view.as_ref().map(|v| v.commit.clone()),
                "current": fresh,
                "artifacts": table.entries().len(),
                "routable": routable,
            },
            "hot": self.hot_list().artifacts.len(),
            "downloads": self.stats.downloads(),
        })
    }
}

/// The directory section of a status document for a person (`odi status URL`).
pub fn render_status(d: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let list = |v: &serde_json::Value| {
        let items: Vec<&str> =
            v.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let short = |v: &serde_json::Value| {
        v.as_str().map(|c| c.chars().take(12).collect::<String>()).unwrap_or_else(|| "-".into())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "directory: region {}; catalogs {}; links {}; references {}",
        s(&d["region"]),
        list(&d["catalogs"]),
        list(&d["links"]),
        list(&d["references"])
    );
    let r = &d["routing"];
    let _ = writeln!(
        out,
        "routing:  {} of {} artifacts have a healthy relay (table for commit {}{})",
        r["routable"],
        r["artifacts"],
        short(&r["commit"]),
        if r["current"] == true { "" } else { ", rebuilding" }
    );
    let _ = writeln!(out, "downloads: {} total; {} hot artifacts", d["downloads"], d["hot"]);
    for (name, p) in d["peers"].as_object().into_iter().flatten() {
        let live = if p["live"] == true { "live" } else { "DOWN" };
        let _ = writeln!(
            out,
            "peer directory {name}: {live} ({}), commit {}",
            s(&p["reason"]),
            short(&p["commit"])
        );
    }
    for relay in d["relays"].as_array().into_iter().flatten() {
        let state = if relay["healthy"] == true { "healthy" } else { "UNHEALTHY" };
        let lag = if relay["lagging"] == true { " (lagging)" } else { "" };
        let _ = writeln!(
            out,
            "  {:<16} {:<6} {:<9} commit {}{lag}, holds {} of {} listed, {} content checks, probed {}",
            s(&relay["name"]),
            s(&relay["region"]),
            state,
            short(&relay["commit"]),
            relay["artifacts_held"],
            relay["artifacts_listed"],
            relay["content_checks"],
            s(&relay["last_probe"]),
        );
        if let Some(reason) = relay["reason"].as_str() {
            let _ = writeln!(out, "  {:<16} why: {reason}", "");
        }
    }
    out
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
pub async fn handle(
    node: &Arc<Node>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let Some(dir) = node.directory.as_ref() else {
        return response::text(StatusCode::INTERNAL_SERVER_ERROR, "directory state missing");
    };
    let path = req.uri().path();
    let get = req.method() == Method::GET;
    if !get && req.method() != Method::HEAD {
        let mut r = response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if !path.starts_with("/r/") {
        return match path {
            "/.odi/v1/hot" => response::json(StatusCode::OK, &*dir.hot_list()),
            "/.odi/v1/stats" => {
                node.off_thread(|n| {
                    n.directory.as_ref().map_or_else(
                        || response::text(StatusCode::NOT_FOUND, "not a directory"),
                        |d| response::json(StatusCode::OK, &d.stats.doc(STATS_TOP)),
                    )
                })
                .await
            }
            _ => response::text(StatusCode::NOT_FOUND, "not found"),
        };
    }
    let (key, meta4) = match path.strip_suffix(crate::http::path::META4_SUFFIX) {
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

/// The plain-request path of [`handle`] (see [`crate::http::plain`]): a `GET` or `HEAD` of a
/// listed artifact that a healthy relay holds, answered from the routing table. Anything
/// else returns `false` and goes through [`handle`].
pub fn answer_plain(node: &Node, req: &PlainRequest<'_>, out: &mut Vec<u8>) -> bool {
    let Some(dir) = node.directory.as_ref() else { return false };
    // A query may carry `odi-via` (a bounce from a relay); `.meta4` is a document.
    if req.query.is_some()
        || !req.path.starts_with(crate::http::path::ARTIFACT_PREFIX)
        || req.path.ends_with(crate::http::path::META4_SUFFIX)
    {
        return false;
    }
    let table = dir.table.load();
    if !table.view.as_ref().is_some_and(|v| node.view_is(v)) {
        return false;
    }
    let Some(e) = table.get(req.path) else { return false };
    let region = dir.regions.region_of_plain(req);
    let u = if e.candidates.len() > 1 { rand::thread_rng().gen::<f64>() } else { 0.0 };
    let Some((g, pos)) = e.choose(region, u) else { return false };
    let get = !req.head;
    e.write_redirect(g, pos, dir.max_links, get, out);
    if get {
        e.counter.hit();
        dir.region_counter(region).hit();
    }
    true
}

/// Everything the fast path does not cover, answered from the applied view itself.
async fn slow_path(
    node: &Arc<Node>,
    dir: &DirectoryState,
    req: &Request<Incoming>,
    remote: SocketAddr,
    table: &Table,
) -> Response<Body> {
    let view = node.view();
    let (artifact, parsed) = match relay::lookup(view.as_deref(), req.uri().path()) {
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
                .region_of_request(remote.ip(), req.headers())
                .and_then(|id| dir.regions.names().get(usize::from(id)));
            return crate::federation::route(
                &dir.federation,
                view,
                &node.config.name,
                req.uri().query(),
                region.map(String::as_str),
                &parsed.catalog,
                &parsed.path,
            );
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
    let region = dir.regions.region_of_request(remote.ip(), req.headers());
    if parsed.meta4 {
        let own = view.network.directories.get(&node.config.name);
        let url = own
            .and_then(|d| route::artifact_url(&d.url, &parsed.catalog, &parsed.path))
            .map(|u| u.to_string())
            .unwrap_or(decoded);
        let doc = metalink::render(&metalink::MetaFile {
            name: artifact.path.file_name(),
            size: artifact.size,
            sha256: &artifact.sha256.0,
            published: None,
            urls: vec![metalink::MetaUrl { url: &url, location: own.map(|d| d.region.as_str()) }],
        });
        return metalink_response(doc);
    }
    let counter = dir.stats.artifact(&parsed.catalog, &parsed.path);
    fallback(node, dir, req, view, &parsed.catalog, artifact, None, &counter, region).await
}

/// Answers for a routable entry: the Metalink, a redirect to a relay, or the fallback.
async fn answer(
    node: &Arc<Node>,
    dir: &DirectoryState,
    req: &Request<Incoming>,
    remote: SocketAddr,
    table: &Table,
    e: &Entry,
    meta4: bool,
) -> Response<Body> {
    // The client address is only looked at when there are regions to tell apart.
    let region = if dir.regions.is_empty() {
        None
    } else {
        dir.regions.region_of_request(remote.ip(), req.headers())
    };
    if meta4 {
        return metalink_response(table.metalink(e, region));
    }
    let get = req.method() == Method::GET;
    // A relay that did not hold the artifact sent the client back here (`odi-via=<relay>`):
    // answer from this directory rather than risk sending it round again.
    let bounced = req.uri().query().is_some_and(|q| {
        let via = crate::federation::via(Some(q));
        table.view.as_ref().is_some_and(|v| via.iter().any(|n| v.network.relays.contains_key(n)))
    });
    let u = if e.candidates.len() > 1 { rand::thread_rng().gen::<f64>() } else { 0.0 };
    if let Some((g, pos)) = e.choose(region, u).filter(|_| !bounced) {
        if get {
            e.counter.hit();
            dir.region_counter(region).hit();
        }
        return e.redirect(g, pos, dir.max_links, get);
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

/// No relay can serve it: the directory's own copy, else a redirect to an HTTP origin.
#[allow(clippy::too_many_arguments)]
async fn fallback(
    node: &Arc<Node>,
    dir: &DirectoryState,
    req: &Request<Incoming>,
    view: &View,
    catalog: &str,
    artifact: &Artifact,
    entry: Option<&Entry>,
    counter: &Counter,
    region: Option<RegionId>,
) -> Response<Body> {
    let get = req.method() == Method::GET;
    if let Some(mut resp) = relay::serve_stored(node, req, catalog, artifact).await {
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
        .and_then(|c| c.origins.iter().find(|o| o.scheme() != "file"))
        .and_then(|o| origin_url(o, artifact.path.as_str()));
    match origin {
        Some(url) => {
            let mut resp = response::redirect(StatusCode::FOUND, url.as_str());
            match entry {
                Some(e) => e.meta_headers(resp.headers_mut()),
                None => crate::http::artifact::digests(resp.headers_mut(), &artifact.sha256.0),
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

/// Rebuilds the routing table from the applied view and the healthy relays, off the async
/// threads, and swaps it in. Serialised, so an older build never replaces a newer one.
pub async fn rebuild(node: &Arc<Node>) {
    let Some(dir) = node.directory.as_ref() else { return };
    let _guard = dir.rebuild_lock.lock().await;
    let Some(view) = node.view() else { return };
    let healthy: HashMap<String, Arc<Held>> = lock(&dir.relays)
        .iter()
        .filter(|(_, h)| h.healthy)
        .map(|(n, h)| (n.clone(), h.held.clone()))
        .collect();
    let n = node.clone();
    let built = tokio::task::spawn_blocking(move || {
        let d = n.directory.as_ref()?;
        Some(Table::build(&BuildInput {
            view: &view,
            me: &n.config.name,
            healthy: &healthy,
            regions: &d.regions,
            stats: &d.stats,
        }))
    })
    .await;
    match built {
        Ok(Some(t)) => {
            let routable = t.entries().iter().filter(|e| !e.candidates.is_empty()).count();
            node.metrics.set(
                "odi_routable_artifacts",
                "Artifacts with at least one healthy relay to redirect to.",
                &[],
                routable as f64,
            );
            node.metrics.set(
                "odi_routing_artifacts",
                "Artifacts in the routing table.",
                &[],
                t.entries().len() as f64,
            );
            dir.table.store(Arc::new(t));
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "routing table build panicked; keeping the previous table")
        }
    }
}

/// Directory background tasks: probing, keeping the table in step with the view, statistics.
pub fn spawn_tasks(
    node: &Arc<Node>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    if node.directory.is_none() {
        return Vec::new();
    }
    vec![
        tokio::spawn(probe_loop(node.clone(), shutdown.clone())),
        tokio::spawn(watch_loop(node.clone(), shutdown.clone())),
        tokio::spawn(stats_loop(node.clone(), shutdown.clone())),
        tokio::spawn(crate::federation::probe_loop(
            node.clone(),
            node.directory.as_ref().map(|d| d.federation.clone()).unwrap_or_default(),
            shutdown.clone(),
        )),
    ]
}

fn probe_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("odi-probe/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout)
        // A relay must answer for itself; a redirect would check someone else's bytes.
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .build()
}

async fn probe_loop(node: Arc<Node>, shutdown: CancellationToken) {
    let Some(dir) = node.directory.as_ref() else { return };
    // Short enough that a dead relay costs little of a round, long enough for a loaded one.
    let timeout = dir.probe_interval.clamp(Duration::from_secs(2), Duration::from_secs(10));
    let client = match probe_client(timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the probe HTTP client; relays will not be probed");
            node.health().error(format!("probe client: {e}"));
            return;
        }
    };
    loop {
        if let Some(view) = node.view() {
            probe_round(&node, &client, &view, ProbeSettings { timeout }).await;
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(dir.probe_interval)) => {}
            () = dir.probe_now.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Probes every relay that works with this directory, updating health as answers come in;
/// a relay that fails is taken out of the table at once, the rest are applied after the round.
pub async fn probe_round(
    node: &Arc<Node>,
    client: &reqwest::Client,
    view: &Arc<View>,
    settings: ProbeSettings,
) {
    let Some(dir) = node.directory.as_ref() else { return };
    let me = node.config.name.as_str();
    let relays: Vec<&Relay> =
        view.network.relays.values().filter(|r| r.directories.iter().any(|d| d == me)).collect();
    let cursors: HashMap<String, usize> = {
        let mut m = lock(&dir.relays);
        // Relays that left the network (or stopped working with this directory) are forgotten.
        m.retain(|n, _| relays.iter().any(|r| r.name == *n));
        m.iter().map(|(n, h)| (n.clone(), h.cursor)).collect()
    };
    // Boxed and collected first: a lazily mapped iterator of async blocks trips the
    // compiler's higher-ranked lifetime inference inside `tokio::spawn`.
    let probes: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = (&Relay, _)> + Send + '_>>> =
        relays
            .iter()
            .map(|&r| {
                let cursor = cursors.get(&r.name).copied().unwrap_or(0);
                let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
                    Box::pin(async move {
                        (r, probe::probe(client, r, view, me, &node.store, cursor, settings).await)
                    });
                fut
            })
            .collect();
    let mut results = futures_util::stream::iter(probes).buffer_unordered(PROBE_CONCURRENCY);
    let mut changed = false;
    while let Some((relay, (outcome, cursor))) = results.next().await {
        let kind = outcome.as_ref().map_or_else(|e| e.kind(), |_| "ok");
        node.metrics.inc(
            "odi_probes_total",
            "Relay probes by relay and outcome.",
            &[("relay", &relay.name), ("outcome", kind)],
            1.0,
        );
        let (was, now_healthy, routing_changed, reason) = {
            let mut m = lock(&dir.relays);
            let h = m.entry(relay.name.clone()).or_default();
            let was = h.healthy;
            let c = h.record(outcome, cursor, OffsetDateTime::now_utc());
            (was, h.healthy, c, h.reason.clone())
        };
        match (was, now_healthy) {
            (true, false) => {
                tracing::warn!(relay = %relay.name, reason = reason.as_deref().unwrap_or(""), "relay failed its probe; no more redirects to it");
                // Out at once, before the rest of the round finishes.
                rebuild(node).await;
            }
            (false, false) => {
                tracing::debug!(relay = %relay.name, reason = reason.as_deref().unwrap_or(""), "relay still unhealthy")
            }
            (false, true) => {
                tracing::info!(relay = %relay.name, "relay passed its probe; back in rotation")
            }
            (true, true) => {}
        }
        changed |= routing_changed && now_healthy;
    }
    let (healthy, total) = {
        let m = lock(&dir.relays);
        (m.values().filter(|h| h.healthy).count(), m.len())
    };
    node.metrics.set(
        "odi_relays_healthy",
        "Relays that passed their last probe.",
        &[],
        healthy as f64,
    );
    node.metrics.set("odi_relays_probed", "Relays this directory probes.", &[], total as f64);
    if changed {
        rebuild(node).await;
    }
}

/// Keeps the table in step with the applied view; a new commit also triggers a probe round,
/// so relays that already hold its new artifacts get traffic without waiting a full interval.
async fn watch_loop(node: Arc<Node>, shutdown: CancellationToken) {
    let Some(dir) = node.directory.as_ref() else { return };
    let mut commit: Option<String> = None;
    loop {
        if let Some(view) = node.view() {
            let built_for = dir.table.load().view.clone();
            if !built_for.is_some_and(|t| Arc::ptr_eq(&t, &view)) {
                if commit.as_deref() != Some(view.commit.as_str()) {
                    if commit.is_some() {
                        dir.probe_soon();
                    }
                    commit = Some(view.commit.clone());
                }
                rebuild(&node).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(WATCH) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Moves new downloads into the window and writes the statistics to their store, off the
/// async threads.
pub async fn flush_stats(node: &Arc<Node>) {
    let Some(dir) = node.directory.as_ref() else { return };
    dir.stats.tick(Instant::now());
    let n = node.clone();
    match tokio::task::spawn_blocking(move || n.directory.as_ref().map(|d| d.stats.flush())).await {
        Ok(Some(Err(e))) => {
            tracing::warn!(error = %e, "cannot write download statistics");
            node.health().error(format!("statistics: {e}"));
        }
        Err(e) => tracing::error!(error = %e, "statistics flush panicked"),
        _ => {}
    }
}

/// Rolls the download window, publishes the hot list (re-installing the view with the extra
/// replicas, as relays do from the list), and flushes counters; a last flush at shutdown.
async fn stats_loop(node: Arc<Node>, shutdown: CancellationToken) {
    let Some(dir) = node.directory.as_ref() else { return };
    let tick = dir.probe_interval.clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut last_flush = Instant::now();
    loop {
        let stop = tokio::select! {
            () = tokio::time::sleep(tick) => false,
            () = shutdown.cancelled() => true,
        };
        if stop || last_flush.elapsed() >= FLUSH_EVERY {
            last_flush = Instant::now();
            flush_stats(&node).await;
        } else {
            dir.stats.tick(Instant::now());
        }
        if stop {
            return;
        }
        update_hot(&node).await;
    }
}

async fn update_hot(node: &Arc<Node>) {
    let Some(dir) = node.directory.as_ref() else { return };
    let Some(view) = node.view() else { return };
    let Some(me) = view.network.directories.get(&node.config.name) else { return };
    let mut extras = Extras::new();
    let mut items = Vec::new();
    if dir.hot_extra > 0 {
        for ((c, p), _) in dir.stats.hot(dir.hot_threshold) {
            let live = me.catalogs.contains(&c)
                && view.network.artifact(&c, &p).is_some_and(|a| a.expunged.is_none());
            if live {
                extras.insert((c.clone(), p.clone()), dir.hot_extra);
                items.push(HotItem { catalog: c, path: p, extra: dir.hot_extra });
            }
        }
    }
    let list = HotList { commit: Some(view.commit.clone()), artifacts: items };
    if *dir.hot.load_full() != list {
        if list.artifacts.len() != dir.hot.load().artifacts.len() {
            tracing::info!(hot = list.artifacts.len(), "hot list changed");
        }
        dir.hot.store(Arc::new(list));
    }
    node.metrics.set(
        "odi_hot_artifacts",
        "Artifacts above the hot threshold in the last hour.",
        &[],
        extras.len() as f64,
    );
    if extras != view.extras {
        // The directory computes the same assignment as its relays, who add these extras
        // from the published list.
        node.install_extras(extras).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geoip_db_is_refused_clearly() {
        let key = odi_network::signature::generate_key().unwrap().public;
        let text = format!(
            "mode='directory'\nname='d'\ndata_dir='/tmp/x'\nlisten=['127.0.0.1:0']\n[repository]\nurl='/tmp/r'\nroot_keys=['{key}']\n[directory]\ngeoip_db='/tmp/GeoLite2-Country.mmdb'\n"
        );
        let raw: crate::config::RawConfig = toml::from_str(&text).unwrap();
        let config = Config::validate(raw, std::path::Path::new("/tmp/odi.toml")).unwrap();
        let err = DirectoryState::open(&config).unwrap_err();
        assert!(err.contains("directory.geoip_db") && err.contains("directory.regions"), "{err}");
    }
}
