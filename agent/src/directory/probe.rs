//! Probing a relay: is it up, what does it hold (at which commit), and does it serve the right
//! bytes. A relay is healthy only after a probe that passes every step; its holdings are then
//! exactly the inventory items whose SHA-256 equals the directory's applied commit, so a relay
//! that lags behind is only ever routed artifacts it lists with the bytes clients expect.
//!
//! Content checks compare byte ranges of what the relay claims with the same ranges of the
//! directory's own verified copy. Every claimed artifact is cut into windows of `CHECK_BYTES`;
//! each round checks the next `CHECKS_PER_ROUND` windows of the sequence of all of them (in a
//! stable order), so a relay holding `W` windows in all has every byte compared once every
//! `ceil(W / CHECKS_PER_ROUND)` rounds: damage anywhere is found within that many rounds, and
//! in any one round with probability at least `CHECKS_PER_ROUND / W` (for a relay holding one
//! 8 MiB object: 64 windows, found within 16 rounds, 1 in 16 per round). Damage a relay can see
//! itself (a file changed on disk) is caught sooner, by the relay, when it next opens the file.
//!
//! Address families are probed apart: a relay known by an IP literal over that family only,
//! one known by name over each family its name resolves to (IPv6 first). The whole probe runs
//! over the first family that passes; every other family must answer the status as the same
//! relay and pass the same content checks. Clients of a family are sent only to relays that
//! passed over it (see [`super::route::Serves`]).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use odi_network::model::{Network, Relay};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use url::Host;

use super::route::{artifact_url, Held, Serves};
use crate::fetch::{family_client, Family, FetchError};
use crate::node::View;
use crate::store::Store;
use crate::wire::Inventory;

/// Content checks per relay per round.
pub const CHECKS_PER_ROUND: usize = 4;
/// Window size: the longest byte range compared per check.
pub const CHECK_BYTES: u64 = 128 * 1024;
/// Largest status document read.
const MAX_STATUS: usize = 1 << 20;
/// Largest inventory read (about 400,000 artifacts).
const MAX_INVENTORY: usize = 64 << 20;

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No connection or no answer in time.
    #[error("{what}: unreachable: {message}")]
    Unreachable {
        /// Which request: `status`, `inventory` or `content`.
        what: &'static str,
        /// What the client said.
        message: String,
    },
    /// A non-success status.
    #[error("{what}: answered HTTP {status}")]
    Status {
        /// Which request: `status`, `inventory` or `content`.
        what: &'static str,
        /// The HTTP status code the relay answered with.
        status: u16,
    },
    /// A body over its size cap.
    #[error("{what}: answer larger than {limit} bytes")]
    TooLarge {
        /// Which request: `status`, `inventory` or `content`.
        what: &'static str,
        /// The size cap in bytes; the body is not read past it.
        limit: usize,
    },
    /// An answer that makes no sense.
    #[error("{what}: {message}")]
    Invalid {
        /// Which request: `status`, `inventory` or `content`.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The relay served bytes that differ from the directory's verified copy.
    #[error("content check of {artifact}: {message}")]
    Content {
        /// `catalog/path`.
        artifact: String,
        /// What differed: the Content-Range, the ETag, the length or the bytes (with the offset).
        message: String,
    },
}

impl ProbeError {
    /// A short machine-readable kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::Unreachable { .. } => "unreachable",
            ProbeError::Status { .. } => "status",
            ProbeError::TooLarge { .. } => "too_large",
            ProbeError::Invalid { .. } => "invalid",
            ProbeError::Content { .. } => "content",
        }
    }
}

/// What a passing probe found.
#[derive(Debug, Clone)]
pub struct Probed {
    /// The relay's applied commit.
    pub commit: Option<String>,
    /// Items its inventory listed.
    pub listed: usize,
    /// What it may be routed: listed with the directory's bytes.
    pub held: Arc<Held>,
    /// The inventory as the next probe may ask for it with `If-None-Match`; `None` when the
    /// relay sent no ETag.
    pub inventory: Option<KnownInventory>,
    /// Content checks run and passed.
    pub checks: usize,
    /// Bytes in its store and its quota, as its status reported them.
    pub store: (Option<u64>, Option<u64>),
}

/// A relay's last full inventory as a probe read it: the next probe sends `If-None-Match`
/// with its tag and, on `304 Not Modified`, keeps what it found then, so a relay whose holdings
/// did not change costs a few hundred bytes per round however much it holds.
#[derive(Debug, Clone)]
pub struct KnownInventory {
    /// The relay's ETag for it.
    pub etag: String,
    /// The directory's commit `held` was judged against: under another commit the same list
    /// may be routable differently, so it is fetched whole again.
    pub against: String,
    /// The relay's commit the list was of.
    pub commit: Option<String>,
    /// Items it listed.
    pub listed: usize,
    /// What it could be routed.
    pub held: Arc<Held>,
}

/// How a relay answered over one address family at its last probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reach {
    /// Not probed over it: its URL is an address of the other family, or its name has no
    /// address of this one.
    #[default]
    Absent,
    /// Passed.
    Passed,
    /// Failed, and why.
    Failed(String),
}

impl Reach {
    /// `passed`, `failed: <why>`, or `None` when absent.
    pub fn text(&self) -> Option<String> {
        match self {
            Reach::Absent => None,
            Reach::Passed => Some("passed".into()),
            Reach::Failed(why) => Some(format!("failed: {why}")),
        }
    }
}

/// How a relay answered over each family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Families {
    /// Over IPv4.
    pub v4: Reach,
    /// Over IPv6.
    pub v6: Reach,
}

impl Families {
    /// The families it passed over.
    pub fn serves(&self) -> Serves {
        let mut s = Serves::NONE;
        if self.v4 == Reach::Passed {
            s = s.with(Serves::V4);
        }
        if self.v6 == Reach::Passed {
            s = s.with(Serves::V6);
        }
        s
    }

    fn set(&mut self, f: Family, r: Reach) {
        match f {
            Family::V4 => self.v4 = r,
            Family::V6 => self.v6 = r,
        }
    }
}

/// What one probe of a relay found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The whole probe: passed over at least one family, or the first failure.
    pub result: Result<Probed, ProbeError>,
    /// Each family's answer.
    pub families: Families,
    /// Where the next content checks start.
    pub cursor: usize,
    /// Bytes received from the relay in this probe (status lines, headers and bodies).
    pub received: u64,
}

/// The probe's HTTP clients, one per family: each resolves names to its own family's
/// addresses only, so a relay known by name is probed over each family apart.
#[derive(Debug, Clone)]
pub struct ProbeClients {
    v4: reqwest::Client,
    v6: reqwest::Client,
}

impl ProbeClients {
    /// Clients that give up connecting after `timeout` and trust `roots` besides the system's.
    pub fn new(timeout: Duration, roots: &[reqwest::Certificate]) -> Result<Self, FetchError> {
        Ok(Self {
            v4: family_client(timeout, Family::V4, roots)?,
            v6: family_client(timeout, Family::V6, roots)?,
        })
    }

    fn get(&self, f: Family) -> &reqwest::Client {
        match f {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// The families to probe a relay over, IPv6 first.
async fn families_of(relay: &Relay, timeout: Duration) -> Result<Vec<Family>, ProbeError> {
    let unreachable = |message: String| ProbeError::Unreachable { what: "status", message };
    match relay.url.host() {
        Some(Host::Ipv4(_)) => Ok(vec![Family::V4]),
        Some(Host::Ipv6(_)) => Ok(vec![Family::V6]),
        Some(Host::Domain(name)) => {
            let port = relay.url.port_or_known_default().unwrap_or(80);
            let found = tokio::time::timeout(timeout, tokio::net::lookup_host((name, port)))
                .await
                .map_err(|_| unreachable(format!("resolving {name}: timed out")))?
                .map_err(|e| unreachable(format!("resolving {name}: {e}")))?;
            let (mut v4, mut v6) = (false, false);
            for a in found {
                if a.ip().to_canonical().is_ipv4() {
                    v4 = true;
                } else {
                    v6 = true;
                }
            }
            let fams: Vec<Family> = [(v6, Family::V6), (v4, Family::V4)]
                .into_iter()
                .filter_map(|(has, f)| has.then_some(f))
                .collect();
            if fams.is_empty() {
                return Err(unreachable(format!("{name} has no address")));
            }
            Ok(fams)
        }
        None => Err(ProbeError::Invalid {
            what: "status",
            message: format!("no host in {}", relay.url),
        }),
    }
}

/// One relay's probe settings.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// Timeout of each request; the inventory gets four times as long. Derived from the
    /// probe interval.
    pub timeout: Duration,
}

fn unreachable(what: &'static str, e: &reqwest::Error) -> ProbeError {
    // reqwest's Display hides the cause ("error sending request"); the source says why.
    let mut message = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        message = format!("{message}: {s}");
        src = s.source();
    }
    ProbeError::Unreachable { what, message }
}

/// Bytes received in one probe, counted as they arrive.
#[derive(Debug, Default)]
struct Tally(AtomicU64);

impl Tally {
    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A response head as it came over HTTP/1.1: the status line and each `name: value`.
    fn head(&self, resp: &reqwest::Response) {
        let fields: usize =
            resp.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
        self.add("HTTP/1.1 200 OK\r\n\r\n".len() + fields);
    }
}

/// Reads a body up to `limit` bytes.
async fn read_capped(
    what: &'static str,
    mut resp: reqwest::Response,
    limit: usize,
    tally: &Tally,
) -> Result<Vec<u8>, ProbeError> {
    tally.head(&resp);
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ProbeError::TooLarge { what, limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(what, &e))? {
        tally.add(chunk.len());
        if body.len() + chunk.len() > limit {
            return Err(ProbeError::TooLarge { what, limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    body: &[u8],
) -> Result<T, ProbeError> {
    serde_json::from_slice(body)
        .map_err(|e| ProbeError::Invalid { what, message: format!("not the expected JSON: {e}") })
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: url::Url,
    what: &'static str,
    limit: usize,
    timeout: Duration,
    tally: &Tally,
) -> Result<T, ProbeError> {
    let resp = client.get(url).timeout(timeout).send().await.map_err(|e| unreachable(what, &e))?;
    if !resp.status().is_success() {
        tally.head(&resp);
        return Err(ProbeError::Status { what, status: resp.status().as_u16() });
    }
    parse_json(what, &read_capped(what, resp, limit, tally).await?)
}

/// What the inventory request gave.
enum Listing {
    /// `304`: the list `known` describes still stands.
    Unchanged,
    /// A whole list and its ETag, if any.
    Fresh(Inventory, Option<String>),
}

/// The relay's inventory, asked with `If-None-Match` when `known` has a tag.
async fn inventory(
    client: &reqwest::Client,
    relay: &Relay,
    known: Option<&KnownInventory>,
    timeout: Duration,
    tally: &Tally,
) -> Result<Listing, ProbeError> {
    const WHAT: &str = "inventory";
    let mut req = client.get(join(relay, ".odi/v1/inventory", WHAT)?).timeout(timeout);
    if let Some(k) = known {
        req = req.header(http::header::IF_NONE_MATCH, &k.etag);
    }
    let resp = req.send().await.map_err(|e| unreachable(WHAT, &e))?;
    let etag =
        resp.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match resp.status().as_u16() {
        304 => {
            tally.head(&resp);
            // Only the tag that was asked about may be confirmed; anything else is a relay
            // that answers conditions it was not given.
            match known {
                Some(k) if etag.as_deref().is_none_or(|t| t == k.etag) => Ok(Listing::Unchanged),
                _ => Err(ProbeError::Invalid {
                    what: WHAT,
                    message: "304 Not Modified for a list the probe does not have".into(),
                }),
            }
        }
        200..=299 => {
            let body = read_capped(WHAT, resp, MAX_INVENTORY, tally).await?;
            Ok(Listing::Fresh(parse_json(WHAT, &body)?, etag))
        }
        status => {
            tally.head(&resp);
            Err(ProbeError::Status { what: WHAT, status })
        }
    }
}

/// What a probe starts from: where the content checks go on, and the inventory the last
/// passing probe read.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// Where the content checks start.
    pub cursor: usize,
    /// The last inventory, asked for with `If-None-Match`.
    pub inventory: Option<KnownInventory>,
}

/// Probes one relay against `view` over each of its families, going on from `prev`; the next
/// cursor and inventory come with the outcome.
pub async fn probe(
    clients: &ProbeClients,
    relay: &Relay,
    view: &View,
    me: &str,
    store: &Store,
    prev: &Previous,
    s: ProbeSettings,
) -> Outcome {
    let cursor = prev.cursor;
    let tally = Tally::default();
    let mut families = Families::default();
    let fams = match families_of(relay, s.timeout).await {
        Ok(f) => f,
        Err(e) => {
            let why = Reach::Failed(e.to_string());
            families = Families { v4: why.clone(), v6: why };
            return Outcome { result: Err(e), families, cursor, received: 0 };
        }
    };
    let mut full: Option<(Probed, usize)> = None;
    let mut first_err: Option<ProbeError> = None;
    for f in fams {
        let client = clients.get(f);
        let r = match &full {
            None => match probe_inner(client, relay, view, me, store, prev, s, &tally).await {
                Ok(p) => {
                    full = Some(p);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            // The same relay over another family: the same name and the same bytes.
            Some((p, _)) => match status(client, relay, s.timeout, &tally).await {
                Ok(_) => {
                    let net = &view.network;
                    content_checks(client, relay, net, store, &p.held, cursor, s, &tally)
                        .await
                        .map(|_| ())
                }
                Err(e) => Err(e),
            },
        };
        match r {
            Ok(()) => families.set(f, Reach::Passed),
            Err(e) => {
                families.set(f, Reach::Failed(e.to_string()));
                first_err.get_or_insert(e);
            }
        }
    }
    let received = tally.0.into_inner();
    match (full, first_err) {
        (Some((p, next)), _) => Outcome { result: Ok(p), families, cursor: next, received },
        (None, Some(e)) => Outcome { result: Err(e), families, cursor, received },
        (None, None) => unreachable!("at least one family is probed"),
    }
}

/// The relay's status, checked to come from the relay of this name.
async fn status(
    client: &reqwest::Client,
    relay: &Relay,
    timeout: Duration,
    tally: &Tally,
) -> Result<serde_json::Value, ProbeError> {
    let url = join(relay, ".odi/v1/status", "status")?;
    let status: serde_json::Value =
        get_json(client, url, "status", MAX_STATUS, timeout, tally).await?;
    if let Some(name) = status.get("name").and_then(|n| n.as_str()) {
        if name != relay.name {
            return Err(ProbeError::Invalid {
                what: "status",
                message: format!("the agent at {} is `{name}`, not `{}`", relay.url, relay.name),
            });
        }
    }
    Ok(status)
}

fn join(relay: &Relay, p: &str, what: &'static str) -> Result<url::Url, ProbeError> {
    odi_network::model::url_under(&relay.url, p).ok_or_else(|| ProbeError::Invalid {
        what,
        message: format!("cannot join {p} to {}", relay.url),
    })
}

#[allow(clippy::too_many_arguments)]
async fn probe_inner(
    client: &reqwest::Client,
    relay: &Relay,
    view: &View,
    me: &str,
    store: &Store,
    prev: &Previous,
    s: ProbeSettings,
    tally: &Tally,
) -> Result<(Probed, usize), ProbeError> {
    let status = status(client, relay, s.timeout, tally).await?;
    // A list judged under another commit is fetched whole again.
    let known = prev.inventory.as_ref().filter(|k| k.against == view.commit);
    // The inventory can be large; it gets a longer deadline than the small requests.
    let (commit, listed, held, etag) =
        match inventory(client, relay, known, s.timeout * 4, tally).await? {
            Listing::Unchanged => {
                let k = known.expect("a 304 is accepted only for a known list");
                (k.commit.clone(), k.listed, k.held.clone(), Some(k.etag.clone()))
            }
            Listing::Fresh(inv, etag) => {
                if inv.name != relay.name {
                    return Err(ProbeError::Invalid {
                        what: "inventory",
                        message: format!("inventory of `{}`, not `{}`", inv.name, relay.name),
                    });
                }
                let held = routable(&inv, view, me)?;
                (inv.commit, inv.artifacts.len(), Arc::new(held), etag)
            }
        };
    let net = &view.network;
    let (checks, next) =
        content_checks(client, relay, net, store, &held, prev.cursor, s, tally).await?;
    let store = status.get("store");
    let figure = |k: &str| store.and_then(|s| s.get(k)).and_then(serde_json::Value::as_u64);
    let store = (figure("bytes"), figure("quota"));
    let inventory = etag.map(|etag| KnownInventory {
        etag,
        against: view.commit.clone(),
        commit: commit.clone(),
        listed,
        held: held.clone(),
    });
    Ok((Probed { commit, listed, held, inventory, checks, store }, next))
}

/// What of an inventory the directory may route to the relay: items of its catalogs whose
/// bytes are this commit's.
fn routable(inv: &Inventory, view: &View, me: &str) -> Result<Held, ProbeError> {
    let net = &view.network;
    let mine = net.directories.get(me).map(|d| d.catalogs.as_slice()).unwrap_or_default();
    let mut held: Held = HashMap::new();
    for item in &inv.artifacts {
        if !mine.contains(&item.catalog) {
            continue;
        }
        let mut sha = [0u8; 32];
        if hex::decode_to_slice(&item.sha256, &mut sha).is_err() {
            return Err(ProbeError::Invalid {
                what: "inventory",
                message: format!(
                    "{}/{}: `{}` is not a SHA-256",
                    item.catalog, item.path, item.sha256
                ),
            });
        }
        // Only bytes identical to this commit's are routable; anything else (a lagging
        // relay's older version, an artifact this commit dropped) is left out, not an error.
        if net
            .artifact(&item.catalog, &item.path)
            .is_some_and(|a| a.expunged.is_none() && a.sha256.0 == sha && a.size == item.size)
        {
            held.insert((item.catalog.clone(), item.path.clone()), sha);
        }
    }
    Ok(held)
}

/// Compares the next `CHECKS_PER_ROUND` windows from `cursor` of what the relay holds with
/// the directory's verified copy: (checks passed, the next cursor).
#[allow(clippy::too_many_arguments)]
async fn content_checks(
    client: &reqwest::Client,
    relay: &Relay,
    net: &Network,
    store: &Store,
    held: &Held,
    cursor: usize,
    s: ProbeSettings,
    tally: &Tally,
) -> Result<(usize, usize), ProbeError> {
    // Content checks over what the directory can compare (it holds the bytes) and what has
    // bytes to compare, rotating through them in a stable order.
    let mut checkable: Vec<(&(String, String), &[u8; 32], u64)> = held
        .iter()
        .filter_map(|(k, sha)| {
            net.artifact(&k.0, &k.1)
                .filter(|a| a.size > 0 && store.contains(sha))
                .map(|a| (k, sha, a.size))
        })
        .collect();
    checkable.sort_by(|a, b| a.0.cmp(b.0));
    // Window `g` of the whole sequence: artifact `i` owns windows `starts[i]..starts[i + 1]`.
    let mut starts = Vec::with_capacity(checkable.len() + 1);
    let mut total = 0usize;
    for (_, _, size) in &checkable {
        starts.push(total);
        total += usize::try_from(size.div_ceil(CHECK_BYTES)).unwrap_or(usize::MAX).max(1);
    }
    let n = total.min(CHECKS_PER_ROUND);
    let mut checks = 0;
    for k in 0..n {
        let g = (cursor + k) % total;
        let i = starts.partition_point(|&s| s <= g) - 1;
        let (key, sha, size) = checkable[i];
        let label = format!("{}/{}", key.0, key.1);
        let offset = (g - starts[i]) as u64 * CHECK_BYTES;
        let len = (size - offset).min(CHECK_BYTES);
        let Some(ours) = read_range(store, sha, offset, len).await else { continue };
        let url = artifact_url(&relay.url, &key.0, &key.1).ok_or_else(|| ProbeError::Invalid {
            what: "content",
            message: format!("no URL for {label}"),
        })?;
        check_range(client, url, &label, sha, offset, size, &ours, s.timeout, tally).await?;
        checks += 1;
    }
    let next = if total == 0 { 0 } else { (cursor + n) % total };
    Ok((checks, next))
}

/// The directory's own bytes `offset..offset+len` of an object; `None` if it is gone (garbage
/// collected meanwhile), in which case the check is skipped rather than blamed on the relay.
async fn read_range(store: &Store, sha: &[u8; 32], offset: u64, len: u64) -> Option<Vec<u8>> {
    // Through the store, so the directory's own copy is verified before it judges a relay's.
    let mut f = store.open_object(sha).await?;
    f.seek(SeekFrom::Start(offset)).await.ok()?;
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

#[allow(clippy::too_many_arguments)]
async fn check_range(
    client: &reqwest::Client,
    url: url::Url,
    label: &str,
    sha: &[u8; 32],
    offset: u64,
    size: u64,
    ours: &[u8],
    timeout: Duration,
    tally: &Tally,
) -> Result<(), ProbeError> {
    let content = |message: String| ProbeError::Content { artifact: label.to_owned(), message };
    let end = offset + ours.len() as u64 - 1;
    let resp = client
        .get(url)
        .header(http::header::RANGE, format!("bytes={offset}-{end}"))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| unreachable("content", &e))?;
    let whole = offset == 0 && ours.len() as u64 == size;
    match resp.status().as_u16() {
        206 => {
            let want = format!("bytes {offset}-{end}/{size}");
            let got = resp
                .headers()
                .get(http::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if got != want {
                return Err(content(format!("Content-Range `{got}`, expected `{want}`")));
            }
        }
        200 if whole => {}
        // A relay that does not serve what it lists (it may have found its own copy damaged
        // and sent the request on) gets no clients for it.
        status => {
            tally.head(&resp);
            return Err(content(format!("answered HTTP {status} for bytes it lists")));
        }
    }
    if let Some(etag) = resp.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok()) {
        let want = crate::http::file::etag(sha);
        if etag != want {
            return Err(content(format!("ETag {etag}, expected {want}")));
        }
    }
    let body = read_capped("content", resp, ours.len(), tally).await.map_err(|e| match e {
        ProbeError::TooLarge { .. } => content("more bytes than asked for".into()),
        e => e,
    })?;
    if body.len() != ours.len() {
        return Err(content(format!(
            "{} bytes at offset {offset}, expected {}",
            body.len(),
            ours.len()
        )));
    }
    if body != ours {
        let at = body.iter().zip(ours).position(|(a, b)| a != b).unwrap_or(0) as u64 + offset;
        return Err(content(format!("bytes differ from the verified copy at offset {at}")));
    }
    Ok(())
}

/// One relay's health as the directory keeps it.
#[derive(Debug, Clone, Default)]
pub struct RelayHealth {
    /// Passed the last probe.
    pub healthy: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// When last probed.
    pub last_probe: Option<OffsetDateTime>,
    /// When last seen healthy.
    pub last_healthy: Option<OffsetDateTime>,
    /// Its applied commit at the last answer.
    pub commit: Option<String>,
    /// Inventory items at the last answer.
    pub listed: usize,
    /// What it may be routed (empty while unhealthy).
    pub held: Arc<Held>,
    /// Content checks passed at the last probe.
    pub checks: usize,
    /// Bytes in its store and its quota at the last answer.
    pub store: (Option<u64>, Option<u64>),
    /// Where the next content checks start.
    pub cursor: usize,
    /// The inventory the last passing probe read, for the next one's `If-None-Match`.
    pub inventory: Option<KnownInventory>,
    /// Consecutive failed probes.
    pub failures: u32,
    /// Bytes received from the relay by the last probe.
    pub received: u64,
    /// How it answered over each address family at the last probe.
    pub families: Families,
}

impl RelayHealth {
    /// Records a probe outcome; returns whether the relay's routability changed.
    pub fn record(&mut self, outcome: Outcome, now: OffsetDateTime) -> bool {
        let was = self.healthy;
        self.last_probe = Some(now);
        self.cursor = outcome.cursor;
        self.received = outcome.received;
        let families_changed = self.families.serves() != outcome.families.serves();
        self.families = outcome.families;
        match outcome.result {
            Ok(p) => {
                let changed = !was
                    || families_changed
                    || !(Arc::ptr_eq(&self.held, &p.held) || *self.held == *p.held);
                self.healthy = true;
                self.reason = None;
                self.last_healthy = Some(now);
                self.commit = p.commit;
                self.listed = p.listed;
                self.checks = p.checks;
                self.store = p.store;
                self.held = p.held;
                self.inventory = p.inventory;
                self.failures = 0;
                changed
            }
            Err(e) => {
                // Out at once: one failed probe is enough, and only a fully passing one
                // brings the relay back.
                self.healthy = false;
                self.reason = Some(e.to_string());
                self.held = Arc::new(Held::new());
                // After a failure the whole list is read again.
                self.inventory = None;
                self.checks = 0;
                self.failures = self.failures.saturating_add(1);
                was
            }
        }
    }
}
