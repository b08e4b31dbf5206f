//! The directory's pages (rendered by [`crate::web`]): the landing page, the network status,
//! catalog folders, an artifact's mirror list and the download statistics. Each page is built
//! as a document (the JSON twin, `Accept: application/json` or `<page>.json`) and rendered
//! from it, so both always say the same.
//!
//! Folder listings come from the applied commit's catalogs, never from a disk: a folder is a
//! path prefix of listed artifacts. A folder that lists its own `index.html` (a PEP 503 page,
//! say) keeps serving that file; only folders without one get a generated listing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use http::header::HeaderMap;
use http::request::Parts;
use http::{Response, StatusCode};
use maud::{html, Markup};
use odi_network::model::{Catalog, Network};
use odi_network::raw::ImportFormat;
use serde::Serialize;

use super::route::Serves;
use super::stats::{ArtifactStat, HistoryDoc, StatsDoc};
use super::DirectoryMode;
use crate::artifact::path::{parse_artifact_path, ARTIFACT_PREFIX, INDEX_FILE};
use crate::http::response::{self, Body};
use crate::node::{off_thread, View};
use crate::status::{DirectoryStatus, PeerHealth, RelayEntry};
use crate::web::{self, chart, Format, Page};

/// The navigation of every directory page.
const NAV: &[(&str, &str)] = &[("Home", "/"), ("Status", "/status"), ("Statistics", "/stats")];

/// History buckets drawn on the statistics page (two days of hours by default).
const CHART_BUCKETS: usize = 48;

/// Artifacts listed as hot on the statistics page.
const TOP: usize = 20;

/// `.json` twins are the same page as JSON.
fn format_of(req: &Parts) -> Format {
    Format::of_request(req.uri.path(), &req.headers)
}

fn page(title: &str, node: &str, current: &str, refresh: Option<u32>, body: Markup) -> String {
    web::render(&Page { title, node, nav: NAV, current, refresh, body })
}

// ---------------------------------------------------------------------------------------
// Landing page

/// `GET /` (and `/index.json`).
#[derive(Debug, Clone, Serialize)]
pub struct LandingDoc {
    /// This directory's name.
    pub directory: String,
    /// Its public URL, from its directory file.
    pub url: Option<String>,
    /// Its region.
    pub region: Option<String>,
    /// The commit it serves.
    pub commit: Option<String>,
    /// Every catalog of the network.
    pub catalogs: Vec<CatalogSummary>,
    /// Relays working with this directory.
    pub relays: usize,
    /// Of those, the ones clients are sent to now.
    pub healthy_relays: usize,
    /// Downloads counted by this directory.
    pub downloads: u64,
}

/// One catalog on the landing page.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogSummary {
    /// Its name.
    pub name: String,
    /// Its one line for people.
    pub description: String,
    /// Tags relays subscribe by.
    pub tags: Vec<String>,
    /// Live artifacts.
    pub artifacts: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The ecosystem it was imported from, when recorded.
    pub format: Option<String>,
    /// This directory holds it (otherwise it sends clients to a directory that does).
    pub held_here: bool,
    /// Where to browse it.
    pub browse: String,
    /// Ready-to-paste download commands for this host.
    pub how_to: Vec<HowTo>,
}

/// A way to download from a catalog.
#[derive(Debug, Clone, Serialize)]
pub struct HowTo {
    /// The client (curl, pip, apt, Maven).
    pub client: &'static str,
    /// What to run or write.
    pub text: String,
}

/// The base URL clients use for this directory: its public URL from the network.
fn base_url(view: Option<&View>, me: &str) -> String {
    view.and_then(|v| v.network.directories.get(me))
        .map(|d| d.url.to_string())
        .unwrap_or_else(|| "/".into())
}

/// Commands for `catalog` at `base` (`https://dir.example/`), by its import format.
fn how_to(base: &str, catalog: &Catalog) -> Vec<HowTo> {
    let root = format!("{base}r/{}/", catalog.name);
    let mut out = Vec::new();
    let first = catalog
        .live()
        .find(|a| !a.path.as_str().ends_with(INDEX_FILE))
        .map(|a| a.path.as_str().to_owned());
    if let Some(p) = &first {
        let url = format!("{root}{}", web::href_path(&p.split('/').collect::<Vec<_>>()));
        out.push(HowTo { client: "curl", text: format!("curl -L -O {url}") });
        out.push(HowTo {
            client: "aria2c",
            text: format!("aria2c --follow-metalink=mem {url}.meta4"),
        });
    }
    match catalog.format {
        Some(ImportFormat::Pypi) => {
            let project = catalog
                .live()
                .filter_map(|a| a.path.as_str().strip_prefix("simple/"))
                .find_map(|rest| rest.strip_suffix("/index.html"))
                .unwrap_or("<project>");
            out.push(HowTo {
                client: "pip",
                text: format!("pip install --index-url {root}simple/ {project}"),
            });
        }
        Some(ImportFormat::Apt) => {
            let suite = catalog
                .live()
                .filter_map(|a| a.path.as_str().strip_prefix("dists/"))
                .find_map(|rest| rest.strip_suffix("/InRelease").or(rest.strip_suffix("/Release")))
                .unwrap_or("stable");
            out.push(HowTo {
                client: "apt",
                text: format!(
                    "echo 'deb {root} {suite} main' | sudo tee /etc/apt/sources.list.d/{}.list",
                    catalog.name
                ),
            });
        }
        Some(ImportFormat::Maven) => {
            out.push(HowTo {
                client: "Maven",
                text: format!(
                    "<mirror><id>odi</id><mirrorOf>central</mirrorOf><url>{root}</url></mirror>"
                ),
            });
        }
        _ => {}
    }
    out
}

impl DirectoryMode {
    fn landing_doc(&self) -> LandingDoc {
        let me = &self.node.config.name;
        let view = self.node.view();
        let v = view.as_deref();
        let base = base_url(v, me);
        let own = v.and_then(|v| v.network.directories.get(me));
        let catalogs = v
            .map(|v| {
                v.network
                    .catalogs
                    .values()
                    .map(|c| {
                        let live: Vec<_> = c.live().collect();
                        CatalogSummary {
                            name: c.name.clone(),
                            description: c.description.clone(),
                            tags: c.tags.clone(),
                            artifacts: live.len(),
                            bytes: live.iter().map(|a| a.size).sum(),
                            format: c.format.map(|f| f.name().to_owned()),
                            held_here: own.is_some_and(|d| d.catalogs.contains(&c.name)),
                            browse: format!("{ARTIFACT_PREFIX}{}/", c.name),
                            how_to: how_to(&base, c),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let health = self.relay_health();
        let relays: Vec<_> = v
            .map(|v| v.network.relays.values().filter(|r| r.directories.contains(me)).collect())
            .unwrap_or_default();
        LandingDoc {
            directory: me.clone(),
            url: own.map(|d| d.url.to_string()),
            region: own.map(|d| d.region.clone()),
            commit: v.map(|v| v.commit.clone()),
            healthy_relays: relays
                .iter()
                .filter(|r| health.get(&r.name).is_some_and(|h| h.healthy))
                .count(),
            relays: relays.len(),
            catalogs,
            downloads: self.stats.downloads(),
        }
    }
}

fn landing_html(d: &LandingDoc) -> String {
    let body = html! {
        p class="lead" {
            "This is " strong { (d.directory) } ", a directory of an ODI network: a mirror network whose "
            "volunteer relays serve the catalogs below. Ask here for any file and you are sent "
            "to a healthy relay near you that holds exactly the bytes the signed catalog lists."
        }
        p {
            (d.healthy_relays) " of " (d.relays) " relays are serving. "
            @if let Some(c) = &d.commit { "Network commit " (web::short(c)) ". " }
            a href="/status" { "Network status" } " · " a href="/stats" { "Download statistics" }
        }
        h2 { "Catalogs" }
        @if d.catalogs.is_empty() { p { "No catalogs yet (no verified commit applied)." } }
        ul class="cards" {
            @for c in &d.catalogs {
                li {
                    h3 { a href=(c.browse) { (c.name) } }
                    p { (c.description) }
                    p class="muted" {
                        (c.artifacts) " files, " (web::bytes(c.bytes))
                        @if let Some(f) = &c.format { " · " (f) }
                        @if !c.held_here { " · served through another directory" }
                    }
                    @if !c.tags.is_empty() {
                        p class="tags" { @for t in &c.tags { span { (t) } } }
                    }
                }
            }
        }
        h2 { "How to download" }
        p { "Every download is a redirect to a relay; the answer carries the file's SHA-256 "
            "(" code { "Digest" } ", " code { "Repr-Digest" } ") and links to other relays and to a Metalink." }
        @for c in &d.catalogs {
            @if !c.how_to.is_empty() {
                h3 { (c.name) }
                @for h in &c.how_to {
                    p class="muted" { (h.client) }
                    pre tabindex="0" { code { (h.text) } }
                }
            }
        }
    };
    page("Welcome", &d.directory, "Home", None, body)
}

/// `GET /`, `GET /index.json`.
pub async fn landing(State(dir): State<Arc<DirectoryMode>>, req: Parts) -> Response<Body> {
    let format = format_of(&req);
    off_thread(move || {
        let doc = dir.landing_doc();
        web::respond(format, &doc, || landing_html(&doc))
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Network status

/// `GET /status` (and `/status.json`).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkDoc {
    /// This directory's name.
    pub directory: String,
    /// Its conditions (Ready, Reconciling, Stalled) and last error.
    pub conditions: Vec<crate::status::Condition>,
    /// Its last error.
    pub last_error: Option<String>,
    /// Every directory of the network, with what this one's probes found of its peers.
    pub directories: Vec<DirectoryRow>,
    /// Its directory section: relays, routing table, peers.
    pub status: DirectoryStatus,
    /// Redirects per relay (from the statistics), for each relay's share.
    pub redirects: BTreeMap<String, u64>,
    /// Milliseconds between probes: an unhealthy relay shows within two of them.
    pub probe_interval_ms: u64,
}

/// A directory of the network.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryRow {
    /// Its name.
    pub name: String,
    /// Its public URL.
    pub url: String,
    /// Its region.
    pub region: String,
    /// `directory` or `meta`.
    pub kind: String,
    /// The catalogs it holds.
    pub catalogs: Vec<String>,
    /// It is the one serving this page.
    pub this: bool,
    /// What this directory's probe found (linked and referenced directories only).
    pub peer: Option<PeerHealth>,
}

impl DirectoryMode {
    fn network_doc(&self) -> NetworkDoc {
        let me = &self.node.config.name;
        let view = self.node.view();
        let status = self.status_section(view.as_deref());
        let node_status = self.node.status(Default::default(), None);
        let directories = view
            .as_deref()
            .map(|v| {
                v.network
                    .directories
                    .values()
                    .map(|d| DirectoryRow {
                        name: d.name.clone(),
                        url: d.url.to_string(),
                        region: d.region.clone(),
                        kind: match d.kind {
                            odi_network::raw::DirectoryKind::Meta => "meta".into(),
                            _ => "directory".into(),
                        },
                        catalogs: d.catalogs.clone(),
                        this: d.name == *me,
                        peer: status.peers.get(&d.name).cloned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        NetworkDoc {
            directory: me.clone(),
            conditions: node_status.conditions,
            last_error: node_status.last_error,
            directories,
            redirects: self.stats.doc(0).relays,
            status,
            probe_interval_ms: u64::try_from(self.probe_interval.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

fn relay_row(r: &RelayEntry, redirects: u64, total: u64) -> Markup {
    let lag = match (&r.commit, r.lagging) {
        (None, _) => html! { span class="muted" { "unknown" } },
        (Some(c), false) => html! { "current " (web::short(c)) },
        (Some(c), true) => html! { span class="badge bad" { "lagging " } (web::short(c)) },
    };
    let used = match (r.stored_bytes, r.quota) {
        (Some(b), Some(q)) if q > 0 => {
            format!("{} of {} ({:.0}%)", web::bytes(b), web::bytes(q), 100.0 * b as f64 / q as f64)
        }
        (Some(b), _) => web::bytes(b),
        _ => "unknown".into(),
    };
    let share = if total > 0 { 100.0 * redirects as f64 / total as f64 } else { 0.0 };
    html! {
        tr id=(format!("relay-{}", r.name)) {
            th scope="row" { a href=(r.url) { (r.name) } }
            td { (r.region) }
            td {
                (web::badge(r.healthy, "healthy", "unhealthy"))
                @if let Some(why) = &r.reason { br; span class="muted" { (why) } }
                @for (family, reach) in [("IPv4", &r.ipv4), ("IPv6", &r.ipv6)] {
                    @if let Some(reach) = reach { br; span class="muted" { (family) " " (reach) } }
                }
            }
            td { (lag) }
            td { @if let Some(t) = &r.last_probe { (t) } @else { span class="muted" { "never" } } }
            td class="num" { (r.content_checks) }
            td { (used) }
            td class="num" { (r.artifacts_held) " routed" br; (format!("{share:.0}%")) " of redirects" }
        }
    }
}

fn network_html(d: &NetworkDoc) -> String {
    let s = &d.status;
    let total: u64 = d.redirects.values().sum();
    let healthy = s.relays.iter().filter(|r| r.healthy).count();
    let ready = d.conditions.iter().find(|c| c.kind == "Ready");
    let body = html! {
        p {
            "Directory " strong { (d.directory) } ": "
            @if let Some(c) = ready { (web::badge(c.status, "ready", "not ready")) " " span class="muted" { (c.message) } }
            @if let Some(e) = &d.last_error { br; "Last error: " (e) }
        }
        p class="muted" { "Relays are probed every " (format!("{:.1}", d.probe_interval_ms as f64 / 1000.0)) " seconds." }
        h2 { "Routing" }
        p {
            (s.routing.routable) " of " (s.routing.artifacts) " artifacts have a healthy relay. "
            (healthy) " of " (s.relays.len()) " relays healthy. "
            @if let Some(c) = &s.routing.commit { "Table built for " (web::short(c)) }
            @if !s.routing.current { " (rebuilding for a new commit)" }
        }
        h2 id="relays" { "Relays" }
        div class="scroll" tabindex="0" role="region" aria-label="Table" {
            table {
                caption class="muted" { "Every relay that works with this directory" }
                thead { tr {
                    th scope="col" { "Relay" } th scope="col" { "Region" } th scope="col" { "Health" }
                    th scope="col" { "Commit" } th scope="col" { "Last probe" }
                    th scope="col" class="num" { "Content checks" } th scope="col" { "Quota used" }
                    th scope="col" class="num" { "Share" }
                } }
                tbody {
                    @for r in &s.relays { (relay_row(r, d.redirects.get(&r.name).copied().unwrap_or(0), total)) }
                }
            }
        }
        h2 { "Directories" }
        div class="scroll" tabindex="0" role="region" aria-label="Table" {
            table {
                thead { tr {
                    th scope="col" { "Directory" } th scope="col" { "Kind" } th scope="col" { "Region" }
                    th scope="col" { "Catalogs" } th scope="col" { "Seen from here" }
                } }
                tbody {
                    @for dir in &d.directories {
                        tr {
                            th scope="row" { a href=(dir.url) { (dir.name) } @if dir.this { " (this one)" } }
                            td { (dir.kind) }
                            td { (dir.region) }
                            td { (dir.catalogs.join(", ")) }
                            td {
                                @if dir.this { (web::badge(ready.is_some_and(|c| c.status), "live", "not ready")) }
                                @else if let Some(p) = &dir.peer {
                                    (web::badge(p.live && !p.lagging, "live", if p.live { "lagging" } else { "unreachable" }))
                                    @if let Some(c) = &p.commit { " " (web::short(c)) }
                                    br; span class="muted" { (p.reason) }
                                } @else { span class="muted" { "not a peer of this directory" } }
                            }
                        }
                    }
                }
            }
        }
    };
    let refresh = u32::try_from((d.probe_interval_ms / 1000).max(5)).unwrap_or(60);
    page("Network status", &d.directory, "Status", Some(refresh), body)
}

/// `GET /status`, `GET /status.json`.
pub async fn network(State(dir): State<Arc<DirectoryMode>>, req: Parts) -> Response<Body> {
    let format = format_of(&req);
    off_thread(move || {
        let doc = dir.network_doc();
        web::respond(format, &doc, || network_html(&doc))
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Statistics

/// `GET /stats` (and `/stats.json`): totals, the hot artifacts and downloads over time.
#[derive(Debug, Clone, Serialize)]
pub struct StatsPageDoc {
    /// The totals and the most downloaded artifacts.
    pub totals: StatsDoc,
    /// Downloads over time per catalog, relay and region.
    pub history: HistoryDoc,
}

fn bucket_label(start: &str, bucket_seconds: u64) -> String {
    // RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`: hours and minutes for short buckets, the day for long.
    if bucket_seconds >= 86_400 {
        start.get(..10).unwrap_or(start).to_owned()
    } else {
        start.get(5..16).unwrap_or(start).replace('T', " ")
    }
}

fn stats_html(node: &str, d: &StatsPageDoc) -> String {
    let t = &d.totals;
    let h = &d.history;
    let labels: Vec<String> = h.starts.iter().map(|s| bucket_label(s, h.bucket_seconds)).collect();
    let hot: Vec<&ArtifactStat> = t.top.iter().take(TOP).collect();
    let body = html! {
        p {
            strong { (t.downloads) } " downloads counted; " (t.directory) " served by the directory itself, "
            (t.origin) " sent to an origin."
        }
        h2 { "Downloads over time" }
        p class="muted" { "Per " (h.bucket_seconds / 60) " minutes, the last " (h.starts.len()) " buckets (UTC)." }
        (chart::lines("Downloads per catalog", &labels, &h.catalogs))
        (chart::lines("Redirects per relay", &labels, &h.relays))
        (chart::lines("Downloads per client region", &labels, &h.regions))
        h2 { "Hot artifacts" }
        @if hot.is_empty() { p { "Nothing downloaded yet." } }
        @else {
            div class="scroll" tabindex="0" role="region" aria-label="Table" {
                table {
                    thead { tr { th scope="col" { "Artifact" } th scope="col" class="num" { "Last hour" } th scope="col" class="num" { "All time" } } }
                    tbody {
                        @for a in hot {
                            tr {
                                th scope="row" {
                                    a href=(artifact_href(&a.catalog, &a.path, "?mirrorlist")) { (a.catalog) "/" (a.path) }
                                }
                                td class="num" { (a.last_hour) }
                                td class="num" { (a.downloads) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Totals" }
        div class="scroll" tabindex="0" role="region" aria-label="Table" {
            table {
                thead { tr { th scope="col" { "Relay" } th scope="col" class="num" { "Redirects" } } }
                tbody { @for (r, n) in &t.relays { tr { th scope="row" { (r) } td class="num" { (n) } } } }
            }
            table {
                thead { tr { th scope="col" { "Client region" } th scope="col" class="num" { "Downloads" } } }
                tbody { @for (g, n) in &t.regions { tr { th scope="row" { (g) } td class="num" { (n) } } } }
            }
        }
    };
    page("Download statistics", node, "Statistics", None, body)
}

/// `GET /stats`, `GET /stats.json`.
pub async fn statistics(State(dir): State<Arc<DirectoryMode>>, req: Parts) -> Response<Body> {
    let format = format_of(&req);
    off_thread(move || {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let doc = StatsPageDoc {
            totals: dir.stats.doc(TOP),
            history: dir.stats.history(CHART_BUCKETS, now_ms),
        };
        let node = dir.node.config.name.clone();
        web::respond(format, &doc, || stats_html(&node, &doc))
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Catalog folders

/// A folder of a catalog as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct FolderDoc {
    /// The catalog.
    pub catalog: String,
    /// Its description.
    pub description: String,
    /// The folder inside the catalog (`""` for its root, else ending in `/`).
    pub folder: String,
    /// Sub-folders, sorted.
    pub folders: Vec<FolderEntry>,
    /// Files directly in the folder, sorted; expunged ones included, with their reason.
    pub files: Vec<FileEntry>,
}

/// A sub-folder.
#[derive(Debug, Clone, Serialize)]
pub struct FolderEntry {
    /// Its name (one segment).
    pub name: String,
    /// Live files below it.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// A file.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// Its name (the last segment).
    pub name: String,
    /// Exact size.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// When it was published (RFC 3339), when the catalog says.
    pub published: Option<String>,
    /// Why it was withdrawn; an expunged file is not served.
    pub expunged: Option<String>,
}

/// What a folder URL (`/r/<catalog>/...`/) names.
enum Folder {
    /// A listing to show.
    Listing(FolderDoc),
    /// The folder has its own `index.html`: serve it as the artifact it is.
    HasIndex,
    /// Not a catalog or a folder of one.
    Missing(String),
}

fn folder(net: &Network, catalog: &str, prefix: &str) -> Folder {
    let Some(c) = net.catalogs.get(catalog) else {
        return Folder::Missing(format!("no catalog `{catalog}`"));
    };
    if c.artifacts.keys().any(|p| p.as_str() == format!("{prefix}{INDEX_FILE}")) {
        return Folder::HasIndex;
    }
    let mut folders: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    let mut files = Vec::new();
    let mut any = false;
    for (p, a) in c.artifacts.iter().filter(|(p, _)| p.as_str().starts_with(prefix)) {
        any = true;
        let rest = &p.as_str()[prefix.len()..];
        match rest.split_once('/') {
            Some((sub, _)) => {
                let e = folders.entry(sub).or_default();
                if a.expunged.is_none() {
                    e.0 += 1;
                    e.1 += a.size;
                }
            }
            None => files.push(FileEntry {
                name: rest.to_owned(),
                size: a.size,
                sha256: hex::encode(a.sha256.0),
                published: a.published.map(crate::status::rfc3339),
                expunged: a.expunged.clone(),
            }),
        }
    }
    if !any && !prefix.is_empty() {
        return Folder::Missing(format!("no folder {catalog}/{prefix}"));
    }
    Folder::Listing(FolderDoc {
        catalog: catalog.to_owned(),
        description: c.description.clone(),
        folder: prefix.to_owned(),
        folders: folders
            .into_iter()
            .map(|(name, (files, bytes))| FolderEntry { name: name.to_owned(), files, bytes })
            .collect(),
        files,
    })
}

/// The link to an artifact (or folder) of a catalog, percent-encoded, with `suffix` after it.
fn artifact_href(catalog: &str, path: &str, suffix: &str) -> String {
    let mut segs = vec![catalog];
    segs.extend(path.split('/'));
    format!("{ARTIFACT_PREFIX}{}{suffix}", web::href_path(&segs))
}

fn folder_html(node: &str, d: &FolderDoc) -> String {
    let segs: Vec<&str> = d.folder.split('/').filter(|s| !s.is_empty()).collect();
    let title = format!("{}/{}", d.catalog, d.folder);
    let body = html! {
        nav aria-label="Breadcrumb" {
            ol class="crumbs" {
                li { a href="/" { "Home" } }
                li { a href=(artifact_href(&d.catalog, "", "")) { (d.catalog) } }
                @for i in 0..segs.len() {
                    li { a href=(artifact_href(&d.catalog, &format!("{}/", segs[..=i].join("/")), "")) { (segs[i]) } }
                }
            }
        }
        p { (d.description) }
        div class="scroll" tabindex="0" role="region" aria-label="Table" {
            table {
                caption class="muted" { (d.folders.len()) " folders, " (d.files.len()) " files. Downloads go to a relay near you." }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" class="num" { "Size" } th scope="col" { "Published" }
                    th scope="col" { "SHA-256" } th scope="col" { "Mirrors" }
                } }
                tbody {
                    @for f in &d.folders {
                        tr {
                            th scope="row" { a href=(artifact_href(&d.catalog, &format!("{}{}/", d.folder, f.name), "")) { (f.name) "/" } }
                            td class="num" { (web::bytes(f.bytes)) }
                            td class="muted" { (f.files) " files" }
                            td {} td {}
                        }
                    }
                    @for f in &d.files {
                        @let path = format!("{}{}", d.folder, f.name);
                        @if let Some(why) = &f.expunged {
                            tr class="expunged" {
                                th scope="row" { del { (f.name) } }
                                td class="num" { (web::bytes(f.size)) }
                                td { (f.published.as_deref().unwrap_or("")) }
                                td { "expunged: " (why) }
                                td {}
                            }
                        } @else {
                            tr {
                                th scope="row" { a href=(artifact_href(&d.catalog, &path, "")) { (f.name) } }
                                td class="num" title=(format!("{} bytes", f.size)) { (web::bytes(f.size)) }
                                td { (f.published.as_deref().unwrap_or("")) }
                                td { (web::short(&f.sha256)) }
                                td { a href=(artifact_href(&d.catalog, &path, "?mirrorlist")) aria-label=(format!("Mirrors of {}", f.name)) { "mirrors" } }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&title, node, "", None, body)
}

/// Whether `raw` may be a folder URL (see [`folder_page`]): cheap, for the request path.
pub fn is_folder_url(raw: &str) -> bool {
    raw.strip_prefix(ARTIFACT_PREFIX)
        .is_some_and(|rest| rest.is_empty() || !rest.contains('/') || rest.ends_with('/'))
}

/// A folder URL: `/r/<catalog>/`, `/r/<catalog>/<folder>/`, or `/r/<catalog>` (redirected to
/// the slash form). `None` when the path is not a folder URL or the folder has its own
/// `index.html` (the caller serves that as an artifact).
pub fn folder_page(dir: &DirectoryMode, raw: &str, headers: &HeaderMap) -> Option<Response<Body>> {
    let rest = raw.strip_prefix(ARTIFACT_PREFIX)?;
    if rest.is_empty() {
        return Some(response::redirect(StatusCode::MOVED_PERMANENTLY, "/"));
    }
    if !rest.contains('/') {
        // `/r/<catalog>` of a catalog there is: the folder form, as web servers answer a
        // folder without its slash. Anything else keeps the artifact path's answer (400).
        let known = dir.node.view().is_some_and(|v| v.network.catalogs.contains_key(rest));
        return known
            .then(|| response::redirect(StatusCode::MOVED_PERMANENTLY, &format!("{raw}/")));
    }
    if !raw.ends_with('/') {
        return None;
    }
    let parsed = match parse_artifact_path(&format!("{raw}{INDEX_FILE}")) {
        Ok(p) => p,
        Err(e) => return Some(response::text(e.status(), e)),
    };
    let prefix = parsed.path.strip_suffix(INDEX_FILE).unwrap_or_default();
    let view = dir.node.view();
    let Some(view) = view.as_deref() else {
        return Some(response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no verified commit applied yet",
        ));
    };
    match folder(&view.network, &parsed.catalog, prefix) {
        Folder::HasIndex => None,
        Folder::Missing(why) => Some(response::cache(
            response::text(StatusCode::NOT_FOUND, why),
            response::CACHE_MISSING,
        )),
        Folder::Listing(doc) => {
            let node = &dir.node.config.name;
            Some(web::respond(Format::of(headers), &doc, || folder_html(node, &doc)))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mirror list

/// `GET /r/<catalog>/<path>?mirrorlist`: every relay that could serve the artifact, the order
/// this client would get and why the others are left out.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorListDoc {
    /// The catalog.
    pub catalog: String,
    /// The artifact's path in it.
    pub path: String,
    /// Exact size.
    pub size: u64,
    /// SHA-256, hex: what every relay's bytes are checked against.
    pub sha256: String,
    /// The client's region as this directory placed it (`None`: no region matched).
    pub client_region: Option<String>,
    /// Where the MaxMind databases place the client (country, continent, network), when they
    /// rank the relays.
    pub client_place: Option<String>,
    /// Every relay of the catalog that works with this directory; offered ones first, in the
    /// order offered.
    pub relays: Vec<MirrorEntry>,
}

/// One relay in a mirror list.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorEntry {
    /// The relay's name.
    pub relay: String,
    /// Where it serves this artifact.
    pub url: String,
    /// Its region.
    pub region: String,
    /// With MaxMind databases: `same-asn`, `same-country`, `same-continent`, `by-distance` or
    /// `unknown-place`; with the prefix map: `same-region` or `other-region`; `None` when the
    /// client has no region.
    pub tier: Option<&'static str>,
    /// Kilometres between the client and the relay, when both places have coordinates.
    pub distance_km: Option<u32>,
    /// Position in the order offered (1 is the first), `None` when not offered.
    pub rank: Option<usize>,
    /// Chance of being the redirect target for this client, 0 to 1.
    pub chance: f64,
    /// Weight within its tier (its quota in bytes).
    pub weight: u64,
    /// Passed its last probe.
    pub healthy: bool,
    /// The assignment gives it this artifact.
    pub assigned: bool,
    /// Its last passing probe listed exactly these bytes.
    pub holds: bool,
    /// The address families it passed its last probe over (`IPv4`, `IPv6`).
    pub families: Vec<&'static str>,
    /// Why it is not offered, when it is not.
    pub excluded: Option<String>,
}

/// Builds the mirror list of an artifact for a client of `region`.
pub fn mirror_list(
    dir: &DirectoryMode,
    view: &View,
    catalog: &str,
    path: &str,
    region: Option<super::region::RegionId>,
    need: Serves,
    geo_client: Option<(super::geo::Place, super::geo::Steer)>,
) -> Option<MirrorListDoc> {
    let net = &view.network;
    let artifact = net.artifact(catalog, path)?;
    let me = &dir.node.config.name;
    let table = dir.table();
    let decoded = format!("{ARTIFACT_PREFIX}{catalog}/{path}");
    let entry = table.get(&decoded).filter(|e| e.sha256 == artifact.sha256.0);
    let ranking = entry.map(|e| e.ranking(region, need)).unwrap_or_default();
    let health = dir.relay_health();
    let assigned = view.assignment.holders(catalog, path);
    let region_name = region.and_then(|r| dir.regions.names().get(usize::from(r)).cloned());
    let tier = |relay_region: &str| {
        region_name.as_ref().map(|n| {
            if n.eq_ignore_ascii_case(relay_region) {
                "same-region"
            } else {
                "other-region"
            }
        })
    };
    let entry_of =
        |c: &super::route::Candidate, rank, chance, tier, distance_km, excluded| MirrorEntry {
            relay: c.relay.to_string(),
            url: c.url.to_string(),
            region: c.region.to_string(),
            tier,
            distance_km,
            rank,
            chance,
            weight: c.weight as u64,
            healthy: true,
            assigned: assigned.contains(&&*c.relay),
            holds: true,
            families: c.serves.families(),
            excluded,
        };
    let mut relays: Vec<MirrorEntry> = match (&geo_client, entry) {
        // Ranked by the MaxMind databases: tiers, distances, and the refused ones.
        (Some((client, steer)), Some(e)) => {
            let ranked = e.geo_ranking(client, steer, need);
            let best = ranked.first().map(|r| r.1);
            let tier_weight: f64 =
                ranked.iter().filter(|r| Some(r.1) == best).map(|r| e.candidates[r.0].weight).sum();
            let mut out: Vec<MirrorEntry> = ranked
                .iter()
                .enumerate()
                .map(|(i, (ci, r, km))| {
                    let c = &e.candidates[*ci];
                    let chance = if Some(*r) == best && tier_weight > 0.0 {
                        c.weight / tier_weight
                    } else {
                        0.0
                    };
                    entry_of(
                        c,
                        Some(i + 1),
                        chance,
                        Some(super::geo::tier_name(*r)),
                        km.map(|k| k as u32),
                        None,
                    )
                })
                .collect();
            for c in &e.candidates {
                if let Some(why) = e.refusal(c, client, steer, need) {
                    let (r, km) = super::geo::rank(client, &c.place);
                    out.push(entry_of(
                        c,
                        None,
                        0.0,
                        Some(super::geo::tier_name(r)),
                        km.map(|k| k as u32),
                        Some(why),
                    ));
                }
            }
            out
        }
        _ => {
            let mut out: Vec<MirrorEntry> = ranking
                .iter()
                .enumerate()
                .map(|(i, (c, chance))| {
                    entry_of(c, Some(i + 1), *chance, tier(&c.region), None, None)
                })
                .collect();
            // Healthy holders that do not offer what this client needs (HTTPS, its family).
            for c in entry.map(|e| e.candidates.as_slice()).unwrap_or_default() {
                if let Some(why) = c.serves.lack(need) {
                    out.push(entry_of(c, None, 0.0, tier(&c.region), None, Some(why.into())));
                }
            }
            out
        }
    };
    let c = net.catalogs.get(catalog)?;
    for r in net.subscribers(c).filter(|r| r.directories.contains(me)) {
        if relays.iter().any(|m| m.relay == r.name) {
            continue;
        }
        let h = health.get(&r.name);
        let healthy = h.is_some_and(|h| h.healthy);
        let holds = h.is_some_and(|h| {
            h.held.get(&(catalog.to_owned(), path.to_owned())) == Some(&artifact.sha256.0)
        });
        let is_assigned = assigned.contains(&r.name.as_str());
        let excluded = if !healthy {
            match h.and_then(|h| h.reason.clone()) {
                Some(why) => format!("unhealthy: {why}"),
                None => "not probed yet".to_owned(),
            }
        } else if is_assigned && !holds {
            "assigned this artifact, but its last probe did not list it yet".to_owned()
        } else if !is_assigned {
            "not assigned this artifact (relays hold their share of the catalog)".to_owned()
        } else {
            "the routing table has not been rebuilt since its last probe".to_owned()
        };
        relays.push(MirrorEntry {
            relay: r.name.clone(),
            url: odi_network::model::artifact_url(&r.url, catalog, path)
                .map(|u| u.to_string())
                .unwrap_or_default(),
            region: r.region.clone(),
            tier: tier(&r.region),
            distance_km: None,
            rank: None,
            chance: 0.0,
            weight: r.quota.0,
            healthy,
            assigned: is_assigned,
            holds,
            families: h.map(|h| h.families.serves().families()).unwrap_or_default(),
            excluded: Some(excluded),
        });
    }
    Some(MirrorListDoc {
        catalog: catalog.to_owned(),
        path: path.to_owned(),
        size: artifact.size,
        sha256: hex::encode(artifact.sha256.0),
        client_region: region_name,
        client_place: geo_client.as_ref().map(|(p, _)| {
            let mut parts = Vec::new();
            if let Some(c) = p.country {
                parts.push(format!("country {}", super::geo::text(c)));
            }
            if let Some(c) = p.continent {
                parts.push(format!("continent {}", super::geo::text(c)));
            }
            if let Some(a) = p.asn {
                parts.push(format!("AS{a}"));
            }
            if parts.is_empty() {
                "unknown".to_owned()
            } else {
                parts.join(", ")
            }
        }),
        relays,
    })
}

fn mirror_html(node: &str, d: &MirrorListDoc) -> String {
    let name = d.path.rsplit('/').next().unwrap_or(&d.path);
    let folder = d.path.strip_suffix(name).unwrap_or("");
    let title = format!("Mirrors of {name}");
    let body = html! {
        nav aria-label="Breadcrumb" {
            ol class="crumbs" {
                li { a href="/" { "Home" } }
                li { a href=(artifact_href(&d.catalog, "", "")) { (d.catalog) } }
                @if !folder.is_empty() { li { a href=(artifact_href(&d.catalog, folder, "")) { (folder.trim_end_matches('/')) } } }
                li { (name) }
            }
        }
        p {
            a href=(artifact_href(&d.catalog, &d.path, "")) { "Download " (name) } " (" (web::bytes(d.size)) ") · "
            a href=(artifact_href(&d.catalog, &d.path, ".meta4")) { "Metalink" }
        }
        p { "SHA-256 " code { (d.sha256) } }
        p {
            @match (&d.client_place, &d.client_region) {
                (Some(p), _) => { "You are placed at " strong { (p) } ": relays in your network come first, then your country, your continent, then the nearest." }
                (None, Some(r)) => { "You are placed in region " strong { (r) } ": relays there come first." }
                (None, None) => { "Your address matched no region: every relay is drawn from by weight." }
            }
        }
        div class="scroll" tabindex="0" role="region" aria-label="Table" {
            table {
                thead { tr {
                    th scope="col" class="num" { "Rank" } th scope="col" { "Relay" } th scope="col" { "Region" }
                    th scope="col" { "Tier" }
                    th scope="col" class="num" { "Distance" } th scope="col" class="num" { "Chance" } th scope="col" { "Health" }
                    th scope="col" { "Why not offered" }
                } }
                tbody {
                    @for m in &d.relays {
                        tr {
                            td class="num" { @if let Some(r) = m.rank { (r) } @else { "–" } }
                            th scope="row" { @if m.rank.is_some() { a href=(m.url) { (m.relay) } } @else { (m.relay) } }
                            td { (m.region) }
                            td { (m.tier.unwrap_or("")) }
                            td class="num" { @if let Some(km) = m.distance_km { (km) " km" } }
                            td class="num" { (format!("{:.0}%", m.chance * 100.0)) }
                            td {
                                (web::badge(m.healthy, "healthy", "unhealthy"))
                                @if !m.families.is_empty() { " " span class="muted" { (m.families.join(", ")) } }
                            }
                            td { (m.excluded.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    page(&title, node, "", None, body)
}

/// `?mirrorlist` on an artifact URL.
pub fn mirror_page(dir: &DirectoryMode, req: &Parts, remote: SocketAddr) -> Response<Body> {
    let view = dir.node.view();
    let (artifact, parsed) = match crate::artifact::lookup(view.as_deref(), req.uri.path()) {
        Ok(x) => x,
        Err(e) => return e.response(),
    };
    let Some(view) = view.as_deref() else {
        return response::text(StatusCode::SERVICE_UNAVAILABLE, "no verified commit applied yet");
    };
    // A catalog held elsewhere: its directory knows its relays.
    let me = &dir.node.config.name;
    if !view.network.directories.get(me).is_some_and(|d| d.catalogs.contains(&parsed.catalog)) {
        let holder = view
            .network
            .holders(&parsed.catalog)
            .find_map(|d| d.artifact_url(&parsed.catalog, &parsed.path));
        return match holder {
            Some(mut url) => {
                url.set_query(Some("mirrorlist"));
                response::redirect(StatusCode::FOUND, url.as_str())
            }
            None => response::text(
                StatusCode::NOT_FOUND,
                format!("no directory holds catalog `{}`", parsed.catalog),
            ),
        };
    }
    let region = dir.regions.region_of_request(remote.ip(), &req.headers);
    let (need, placed) = super::serve::client_of(dir, req, remote, region);
    let Some(doc) =
        mirror_list(dir, view, &parsed.catalog, artifact.path.as_str(), region, need, placed)
    else {
        return response::text(
            StatusCode::NOT_FOUND,
            format!("no artifact {}/{}", parsed.catalog, parsed.path),
        );
    };
    let node = &dir.node.config.name;
    web::respond(Format::of(&req.headers), &doc, || mirror_html(node, &doc))
}

/// Whether a query asks for the mirror list (`?mirrorlist`, `?mirrorlist=1`, among others).
pub fn wants_mirrorlist(query: Option<&str>) -> bool {
    query
        .is_some_and(|q| q.split('&').any(|kv| kv == "mirrorlist" || kv.starts_with("mirrorlist=")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrorlist_query() {
        for (q, want) in [
            (None, false),
            (Some("mirrorlist"), true),
            (Some("mirrorlist=1"), true),
            (Some("odi-via=r1&mirrorlist"), true),
            (Some("mirrorlistx"), false),
            (Some("x=mirrorlist"), false),
        ] {
            assert_eq!(wants_mirrorlist(q), want, "{q:?}");
        }
    }

    #[test]
    fn bucket_labels() {
        assert_eq!(bucket_label("2026-12-02T07:00:00Z", 3600), "12-02 07:00");
        assert_eq!(bucket_label("2026-12-02T00:00:00Z", 86_400), "2026-12-02");
    }
}
