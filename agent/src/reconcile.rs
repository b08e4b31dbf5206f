//! The reconcile engine shared by both modes: make the content store hold what the applied
//! commit says this node should hold. Download what is missing (bounded concurrency, shared
//! bandwidth limit, every byte verified), delete what is expunged, and keep the rest within the
//! quota by evicting unwanted objects least-recently-used first.
//!
//! A failed download touches only its partial file, so a good stored copy is never lost to a
//! bad origin, and other artifacts carry on.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt as _};
use serde::{Deserialize, Serialize};

use odi_network::model::{Artifact, Catalog, Network};

use crate::fetch::{self, Expect, FetchError, Limits, RateLimiter, Source};
use crate::store::Store;

/// One artifact the node should hold.
#[derive(Debug, Clone)]
pub struct Want {
    /// `catalog/path`, for messages.
    pub label: String,
    /// Content hash (the store address).
    pub sha256: [u8; 32],
    /// Exact size.
    pub size: u64,
    /// Where to get it, best first.
    pub sources: Vec<Source>,
}

/// What the store should look like.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Wanted artifacts, most important first (they win when the quota is short).
    pub wants: Vec<Want>,
    /// Objects to delete even when there is room (expunged artifacts).
    pub purge: HashSet<[u8; 32]>,
    /// Disk budget for objects plus partial downloads; `None` is unbounded.
    pub quota: Option<u64>,
    /// Whether unwanted objects are deleted at once (directory) or kept as cache until room
    /// is needed (relay).
    pub delete_unwanted: bool,
}

/// Sources for an artifact, best first: the given directories that hold the catalog, then
/// the directories they link to, then the catalog's origins. Relays pass their directories,
/// directories their linked peers: either way a peer's copy spares the origin.
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
            out.extend(d.blob_url(&artifact.sha256.0).map(|url| Source { url, odi_peer: true }));
        }
        linked.extend(d.links.iter().cloned());
    }
    for d in linked.iter().filter_map(|d| holds(d)) {
        if seen.insert(d.name.clone()) {
            out.extend(d.blob_url(&artifact.sha256.0).map(|url| Source { url, odi_peer: true }));
        }
    }
    out.extend(
        catalog.origin_urls(artifact.path.as_str()).map(|url| Source { url, odi_peer: false }),
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

/// A download that failed this round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `catalog/path`.
    pub artifact: String,
    /// Short reason per source tried, like `wrong_hash`.
    pub reasons: Vec<String>,
    /// Full message of the last source's error.
    pub message: String,
}

/// The result of one reconcile round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Objects wanted.
    pub wanted: usize,
    /// Of those, already present before the round.
    pub present: usize,
    /// Downloaded and stored.
    pub fetched: usize,
    /// Deleted (expunged, unwanted or evicted).
    pub deleted: usize,
    /// Not attempted: no room within the quota.
    pub skipped_for_quota: usize,
    /// Failed downloads.
    pub failed: Vec<Failure>,
}

impl Outcome {
    /// Whether every wanted object that fits is stored.
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Download settings.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// HTTP client.
    pub client: reqwest::Client,
    /// Timeouts and minimum rates.
    pub limits: Limits,
    /// Shared bandwidth cap.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Parallel downloads.
    pub concurrency: usize,
}

/// Called for each finished download, for metrics and logs.
pub type Observer<'a> = &'a (dyn Fn(&Want, Result<usize, &[FetchError]>) + Sync);

/// Runs one reconcile round.
pub async fn reconcile(
    store: &Store,
    target: &Target,
    fetcher: &Fetcher,
    observe: Observer<'_>,
) -> Outcome {
    let mut out = Outcome { wanted: target.wants.len(), ..Default::default() };
    let wanted: HashSet<[u8; 32]> = target.wants.iter().map(|w| w.sha256).collect();

    for sha in &target.purge {
        if store.contains(sha) && !wanted.contains(sha) && store.remove(sha).is_ok() {
            out.deleted += 1;
        }
    }
    if target.delete_unwanted {
        for (sha, _) in store.list() {
            if !wanted.contains(&sha) && store.remove(&sha).is_ok() {
                out.deleted += 1;
            }
        }
    }
    store.prune_partials(&|sha| wanted.contains(sha));

    // Unwanted objects, least recently used first: the eviction order.
    let mut evictable: Vec<([u8; 32], crate::store::ObjectInfo)> =
        store.list().into_iter().filter(|(sha, _)| !wanted.contains(sha)).collect();
    evictable.sort_by_key(|(_, info)| info.last_access);
    let mut evictable = evictable.into_iter();

    // A lowered quota: shed unwanted objects first, then the least important wanted ones.
    let mut used = store.object_bytes();
    if let Some(quota) = target.quota {
        while used > quota {
            let Some((sha, info)) = evictable.next() else { break };
            if store.remove(&sha).is_ok() {
                used -= info.size.min(used);
                out.deleted += 1;
            }
        }
        for w in target.wants.iter().rev() {
            if used <= quota {
                break;
            }
            if store.contains(&w.sha256) && store.remove(&w.sha256).is_ok() {
                used -= w.size.min(used);
                out.deleted += 1;
            }
        }
    }

    // Reserve room for each missing object before any download starts, so concurrent
    // downloads together can never exceed the quota.
    let mut to_fetch = Vec::new();
    let mut counted = HashSet::new();
    for w in &target.wants {
        if !counted.insert(w.sha256) {
            continue;
        }
        if store.contains(&w.sha256) {
            out.present += 1;
            continue;
        }
        if let Some(quota) = target.quota {
            while used + w.size > quota {
                let Some((sha, info)) = evictable.next() else { break };
                if store.remove(&sha).is_ok() {
                    used -= info.size.min(used);
                    out.deleted += 1;
                }
            }
            if used + w.size > quota {
                out.skipped_for_quota += 1;
                continue;
            }
        }
        used += w.size;
        to_fetch.push(w.clone());
    }

    let results: Vec<(Want, Result<usize, Vec<FetchError>>)> = stream::iter(to_fetch)
        .map(|w| async move {
            let partial = store.partial_path(&w.sha256);
            let expect = Expect { size: w.size, sha256: w.sha256 };
            let r = fetch::fetch_any(
                &fetcher.client,
                &w.sources,
                &expect,
                &partial,
                fetcher.limiter.as_deref(),
                &fetcher.limits,
            )
            .await;
            let r = match r {
                Ok(i) => store
                    .commit(&w.sha256)
                    .map(|()| i)
                    .map_err(|e| vec![FetchError::Io { path: e.path.clone(), source: e.source }]),
                Err(errs) => Err(errs),
            };
            (w, r)
        })
        .buffer_unordered(fetcher.concurrency.max(1))
        .collect()
        .await;

    for (w, r) in results {
        observe(&w, r.as_ref().map(|i| *i).map_err(Vec::as_slice));
        match r {
            Ok(_) => out.fetched += 1,
            Err(errs) => {
                let message = errs
                    .last()
                    .map_or_else(|| "no source to download from".to_owned(), ToString::to_string);
                out.failed.push(Failure {
                    artifact: w.label.clone(),
                    reasons: errs.iter().map(|e| e.reason().to_owned()).collect(),
                    message,
                });
            }
        }
    }
    out
}
