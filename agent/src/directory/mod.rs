//! Directory mode: holds the full catalogs it serves (origin-pull into its own store, or from
//! linked peers), probes the relays that work with it, and answers `/r/<catalog>/<path>` with
//! a `302` to a healthy relay that holds the artifact (or the bytes itself, or the origin).
//!
//! - [`serve`]: the request handlers and the plain-path answer;
//! - [`tasks`]: probing, table rebuilds, statistics and the hot list in the background;
//! - [`status`]: the directory section of the status document;
//! - [`probe`]: relay health (status, inventory, content checks against its own copy);
//! - [`route`]: the routing table, rebuilt off the request path and swapped atomically;
//! - [`region`]: client region from the prefix map and trusted `X-Forwarded-For`;
//! - [`geo`]: client and relay places from MaxMind databases, and the tiers they rank by;
//! - [`metalink`]: RFC 5854 documents at `<artifact>.meta4`, with [`pieces`] hashes;
//! - [`pages`]: the pages people look at (landing, status, folders, mirror lists, statistics);
//! - [`stats`]: download counters, the hot list and their embedded store;
//! - [`federation`]: linked and referenced directories, and redirects to them.
//!
//! The request path loads the table (one atomic load), checks it was built for the view in
//! force, and does one hash lookup on the raw path; anything unusual (a table not yet rebuilt
//! for a new commit, an encoded path, an unknown or expunged artifact) takes the slow path
//! through the applied view, which is always correct.

pub mod federation;
pub mod geo;
pub mod metalink;
pub mod pages;
pub mod pieces;
pub mod probe;
pub mod region;
pub mod route;
pub mod serve;
pub mod stats;
pub mod status;
pub mod tasks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use self::probe::RelayHealth;
use self::region::{RegionId, RegionMap};
use self::route::Table;
use self::stats::{Counter, Stats};
use crate::node::{lock, Node, View};
use crate::reconcile::{self, Target, Want};
use crate::status::ShareStatus;
use crate::wire::HotList;

/// Why the directory could not start.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The statistics store.
    #[error("statistics store: {0}")]
    Stats(#[from] stats::StatsError),
    /// A MaxMind database could not be read.
    #[error("{0}")]
    Geo(#[from] geo::GeoError),
}

/// Directory-mode state, beside the shared node.
#[derive(Debug)]
pub struct DirectoryMode {
    /// The shared node.
    pub node: Arc<Node>,
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
    /// Serialises table rebuilds, so an older build never replaces a newer one.
    rebuild_lock: tokio::sync::Mutex<()>,
    probe_now: Notify,
    /// Linked and referenced directories: their health, and redirects for catalogs not held here.
    pub federation: Arc<federation::Federation>,
    /// Metalink piece hashes of the objects asked for.
    pieces: pieces::PieceCache,
    /// MaxMind databases; empty when none is configured (then the prefix map alone places
    /// clients).
    pub geo: geo::Geo,
}

impl DirectoryMode {
    /// Opens the directory's own state under the node's data folder (its statistics store).
    pub fn open(node: Arc<Node>) -> Result<Self, DirectoryError> {
        let d = &node.config.directory;
        let geo = geo::Geo::open(d.geoip_db.as_deref(), d.asn_db.as_deref())?;
        let stats = Stats::open(&node.config.data_dir.join("stats.redb"))?;
        Ok(Self::with_stats(node, stats, geo))
    }

    fn with_stats(node: Arc<Node>, stats: Stats, geo: geo::Geo) -> Self {
        let d = &node.config.directory;
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
            pieces: pieces::PieceCache::default(),
            geo,
            node,
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
    pub fn export_metrics(&self) {
        self.stats.export(&self.node.metrics);
    }

    /// What this directory should hold at `view`.
    pub fn target(&self, view: &View) -> Target {
        target(&self.node.config.name, view)
    }

    /// Its whole catalogs, and how much of them is missing.
    pub fn share(&self, view: &View) -> ShareStatus {
        let net = &view.network;
        let mut s = ShareStatus::default();
        let Some(me) = net.directories.get(&self.node.config.name) else { return s };
        for a in me.catalogs.iter().filter_map(|c| net.catalogs.get(c)).flat_map(|c| c.live()) {
            s.artifacts += 1;
            s.bytes += a.size;
            if !self.node.store.contains(&a.sha256.0) {
                s.missing += 1;
            }
        }
        s
    }

    /// The last statistics flush, after the listeners drained: downloads answered while they
    /// drained came after the statistics loop's last flush.
    pub async fn stop(self: &Arc<Self>) {
        tasks::flush_stats(self).await;
    }

    /// Moves the download window along (tests and the statistics loop).
    pub fn tick_stats(&self) {
        self.stats.tick(Instant::now());
    }
}

/// What directory `name` holds: every live artifact of its catalogs, fetched from linked
/// peers first (so linked directories spare the origin) and then the origins.
pub fn target(name: &str, view: &View) -> Target {
    let net = &view.network;
    let purge = reconcile::expunged(net);
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
                sources: reconcile::sources(net, &me.links, catalog, a),
            });
        }
    }
    Target { wants, purge, quota: None, delete_unwanted: true }
}
