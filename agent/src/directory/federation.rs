//! Federation between directories: probing the directories this one links to or references,
//! and sending a client whose catalog this directory does not hold to a live directory that
//! does, preferring the client's region. A meta-directory is a directory that does only this.
//!
//! Loops: a redirect to another directory carries the names of the directories already passed
//! in the `odi-via` query parameter; a directory that finds its own name there, or more than
//! [`MAX_HOPS`] names, answers `508 Loop Detected` instead of redirecting again. `odi validate`
//! also rejects reference cycles, so this guards against misconfigured or lagging peers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Response, StatusCode};
use odi_network::model::Directory;
use rand::seq::SliceRandom as _;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::fetch::{http_client, ClientRole};
use crate::http::response::{self, Body};
use crate::node::{jitter, Node, View};
use crate::status::{rfc3339, PeerHealth, StatusDoc};
use crate::wire::{via, MAX_HOPS, VIA_PARAM};

/// Time to connect to a peer directory.
const PROBE_CONNECT: Duration = Duration::from_secs(2);
/// Time for a peer's whole status answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Federation state of one directory.
#[derive(Debug, Default)]
pub struct Federation {
    health: ArcSwap<BTreeMap<String, PeerHealth>>,
}

impl Federation {
    /// The latest probe results by directory name.
    pub fn health(&self) -> Arc<BTreeMap<String, PeerHealth>> {
        self.health.load_full()
    }

    fn is_live(&self, name: &str) -> bool {
        self.health.load().get(name).is_some_and(|h| h.live)
    }

    /// Reachable but on an older commit: used only when no directory is live, because a
    /// directory that has not pulled yet serves better than a 503 (the meta-directory may
    /// simply have pulled first).
    fn is_lagging(&self, name: &str) -> bool {
        self.health.load().get(name).is_some_and(|h| h.lagging)
    }
}

/// Directories this one probes: those it links to and those it references.
pub fn peers<'a>(view: &'a View, me: &str) -> Vec<&'a Directory> {
    let Some(d) = view.network.directories.get(me) else { return Vec::new() };
    let mut names: Vec<&String> = d.links.iter().chain(d.references.iter()).collect();
    names.sort();
    names.dedup();
    names.into_iter().filter_map(|n| view.network.directories.get(n)).collect()
}

/// Sends a request for a catalog this directory does not hold to a live referenced directory
/// that holds it (same region first), or answers why it cannot.
pub fn route(
    fed: &Federation,
    view: &View,
    me: &str,
    query: Option<&str>,
    client_region: Option<&str>,
    catalog: &str,
    path: &str,
) -> Response<Body> {
    let passed = via(query);
    if passed.iter().any(|p| p == me) || passed.len() >= MAX_HOPS {
        return response::text(
            StatusCode::LOOP_DETECTED,
            format!("redirect loop through directories: {} -> {me}", passed.join(" -> ")),
        );
    }
    let Some(my) = view.network.directories.get(me) else {
        return response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this directory is not in the applied network",
        );
    };
    let candidates = |ok: &dyn Fn(&str) -> bool| -> Vec<&Directory> {
        my.references
            .iter()
            .filter_map(|n| view.network.directories.get(n))
            .filter(|d| !passed.contains(&d.name) && ok(&d.name))
            .collect()
    };
    let mut referenced = candidates(&|n| fed.is_live(n));
    if referenced.is_empty() {
        referenced = candidates(&|n| fed.is_lagging(n));
    }
    let owners: Vec<&Directory> =
        referenced.iter().copied().filter(|d| d.catalogs.iter().any(|c| c == catalog)).collect();
    // A referenced directory that does not own the catalog may still reference one that does.
    let forwarders: Vec<&Directory> =
        referenced.iter().copied().filter(|d| !d.references.is_empty()).collect();
    let pool = if owners.is_empty() { forwarders } else { owners };
    let local: Vec<&Directory> = pool
        .iter()
        .copied()
        .filter(|d| client_region.is_some_and(|r| d.region.eq_ignore_ascii_case(r)))
        .collect();
    let choice = if local.is_empty() {
        pool.choose(&mut rand::thread_rng())
    } else {
        local.choose(&mut rand::thread_rng())
    };
    let Some(target) = choice else {
        let mut r = response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no live directory holds catalog `{catalog}`; retry shortly"),
        );
        r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"));
        return r;
    };
    let mut chain = passed;
    chain.push(me.to_owned());
    match target.artifact_url(catalog, path) {
        Some(mut url) => {
            url.query_pairs_mut().append_pair(VIA_PARAM, &chain.join(","));
            response::redirect(StatusCode::FOUND, url.as_str())
        }
        None => {
            response::text(StatusCode::INTERNAL_SERVER_ERROR, "bad directory URL in the network")
        }
    }
}

/// Probes peers every `probe_interval`: reachable, an ODI directory, and not serving a commit
/// older than ours (which would send clients to stale catalogs).
pub async fn probe_loop(
    node: Arc<Node>,
    fed: Arc<Federation>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let roots = &node.config.extra_roots;
    let client = match http_client(ClientRole::Probe, PROBE_CONNECT, Some(PROBE_TIMEOUT), roots) {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "federation probe client"),
    };
    loop {
        if let Some(view) = node.view() {
            let mut next = BTreeMap::new();
            for d in peers(&view, &node.config.name) {
                let h = probe_one(&client, &node.config.data_dir, d, &view.commit).await;
                if h.live != fed.is_live(&d.name) {
                    tracing::info!(directory = %d.name, live = h.live, reason = %h.reason, "peer directory changed state");
                }
                next.insert(d.name.clone(), h);
            }
            for (name, h) in &next {
                node.metrics.set(
                    "odi_peer_live",
                    "1 when a linked or referenced directory is live.",
                    &[("directory", name)],
                    if h.live { 1.0 } else { 0.0 },
                );
            }
            fed.health.store(Arc::new(next));
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(interval)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn probe_one(
    client: &reqwest::Client,
    data_dir: &Path,
    d: &Directory,
    my_commit: &str,
) -> PeerHealth {
    let now = Some(rfc3339(OffsetDateTime::now_utc()));
    let down = |reason: String| PeerHealth {
        live: false,
        lagging: false,
        reason,
        commit: None,
        checked_at: now.clone(),
    };
    let Some(url) = d.endpoint("status") else { return down("BadUrl".into()) };
    let doc: StatusDoc = match client.get(url).send().await {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(doc) => doc,
            Err(e) => return down(format!("BadStatus: {e}")),
        },
        Ok(r) => return down(format!("HTTP {}", r.status())),
        Err(e) => return down(format!("Unreachable: {e}")),
    };
    if doc.mode != "directory" {
        return down(format!("NotADirectory: mode {}", doc.mode));
    }
    let Some(theirs) = doc.commit.clone() else { return down("NoCommit".into()) };
    if theirs != my_commit {
        let (mirror, mine, t) =
            (data_dir.join("network.git"), my_commit.to_owned(), theirs.clone());
        let older = tokio::task::spawn_blocking(move || -> Option<bool> {
            let repo = git2::Repository::open_bare(mirror).ok()?;
            let (mine, t) = (git2::Oid::from_str(&mine).ok()?, git2::Oid::from_str(&t).ok()?);
            repo.find_commit(t).ok()?;
            repo.graph_descendant_of(mine, t).ok()
        })
        .await
        .ok()
        .flatten();
        // Unknown to us means newer than what we fetched: still fine to send clients there.
        if older == Some(true) {
            return PeerHealth {
                live: false,
                lagging: true,
                reason: format!("Lagging: serves {theirs}, older than {my_commit}"),
                commit: Some(theirs),
                checked_at: now,
            };
        }
    }
    PeerHealth {
        live: true,
        lagging: false,
        reason: "Live".into(),
        commit: Some(theirs),
        checked_at: now,
    }
}
