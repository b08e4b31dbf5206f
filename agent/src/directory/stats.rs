//! Download statistics: per artifact, per relay, per client region, plus downloads the
//! directory served itself or sent to the origin.
//!
//! The request path only bumps relaxed atomic counters that the routing table hands it (no
//! lock, no lookup, no allocation). A background task turns those into the rolling one-hour
//! window that decides which artifacts are hot, exports them to `/metrics`, and flushes them
//! to `<data_dir>/stats.redb` so that counts survive restarts. The database is opened per
//! flush and closed again, so nothing holds its file lock between flushes (a restarted agent
//! in the same process, as in tests, opens it freely).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::Serialize;

use crate::metrics::Metrics;

/// Every counter, keyed by a kind-prefixed name (see [`Key`]).
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");

/// One hour of one-minute buckets.
pub const BUCKET: Duration = Duration::from_secs(60);
const BUCKETS: usize = 60;

/// Why the statistics store failed.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// redb refused.
    #[error("{path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: redb::Error,
    },
}

/// A monotonically increasing count, with what was already flushed and windowed.
#[derive(Debug, Default)]
pub struct Counter {
    n: AtomicU64,
    flushed: AtomicU64,
    windowed: AtomicU64,
}

impl Counter {
    fn starting_at(n: u64) -> Self {
        Self { n: AtomicU64::new(n), flushed: AtomicU64::new(n), windowed: AtomicU64::new(n) }
    }

    /// Counts one download. Relaxed: counts need no ordering with anything else.
    #[inline]
    pub fn hit(&self) {
        self.n.fetch_add(1, Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.n.load(Relaxed)
    }
}

/// An artifact's identity in the statistics: (catalog, path).
pub type ArtifactKey = (String, String);

#[derive(Debug, Default)]
struct Registry {
    artifacts: HashMap<ArtifactKey, Arc<Counter>>,
    relays: BTreeMap<String, Arc<Counter>>,
    regions: BTreeMap<String, Arc<Counter>>,
}

/// Persisted key of a counter.
enum Key<'a> {
    Artifact(&'a str, &'a str),
    Relay(&'a str),
    Region(&'a str),
    Directory,
    Origin,
}

impl Key<'_> {
    fn encode(&self) -> String {
        match self {
            Key::Artifact(c, p) => format!("a\0{c}\0{p}"),
            Key::Relay(r) => format!("r\0{r}"),
            Key::Region(g) => format!("g\0{g}"),
            Key::Directory => "s\0directory".into(),
            Key::Origin => "s\0origin".into(),
        }
    }
}

/// The rolling window of recent downloads per artifact.
#[derive(Debug)]
struct Window {
    bucket_len: Duration,
    started: Instant,
    /// Closed buckets, oldest first, then the open one last.
    buckets: VecDeque<HashMap<ArtifactKey, u64>>,
    /// Sum over `buckets`.
    sum: HashMap<ArtifactKey, u64>,
}

impl Window {
    fn new(bucket_len: Duration, now: Instant) -> Self {
        Self { bucket_len, started: now, buckets: VecDeque::from([HashMap::new()]), sum: HashMap::new() }
    }

    fn add(&mut self, key: &ArtifactKey, d: u64) {
        if let Some(open) = self.buckets.back_mut() {
            *open.entry(key.clone()).or_insert(0) += d;
        }
        *self.sum.entry(key.clone()).or_insert(0) += d;
    }

    fn rotate(&mut self, now: Instant) {
        while now.duration_since(self.started) >= self.bucket_len {
            self.started += self.bucket_len;
            self.buckets.push_back(HashMap::new());
            while self.buckets.len() > BUCKETS {
                for (k, d) in self.buckets.pop_front().unwrap_or_default() {
                    if let Some(s) = self.sum.get_mut(&k) {
                        *s = s.saturating_sub(d);
                        if *s == 0 {
                            self.sum.remove(&k);
                        }
                    }
                }
            }
        }
    }
}

/// All download counters of a directory.
#[derive(Debug)]
pub struct Stats {
    db: Option<PathBuf>,
    reg: Mutex<Registry>,
    window: Mutex<Window>,
    exported: Mutex<HashMap<(&'static str, String), u64>>,
    /// Downloads the directory served itself.
    pub directory: Arc<Counter>,
    /// Downloads sent to an origin.
    pub origin: Arc<Counter>,
}

/// One artifact's figures in `/.odi/v1/stats`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArtifactStat {
    /// Catalog.
    pub catalog: String,
    /// Path.
    pub path: String,
    /// Downloads since statistics began.
    pub downloads: u64,
    /// Downloads in the last hour.
    pub last_hour: u64,
}

/// `GET /.odi/v1/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsDoc {
    /// Downloads of all artifacts.
    pub downloads: u64,
    /// The most downloaded artifacts, most first.
    pub top: Vec<ArtifactStat>,
    /// Redirects per relay.
    pub relays: BTreeMap<String, u64>,
    /// Downloads per client region (`unknown` when no prefix matched).
    pub regions: BTreeMap<String, u64>,
    /// Downloads served by the directory itself.
    pub directory: u64,
    /// Downloads sent to an origin.
    pub origin: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data are plain counters; a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stats {
    /// Statistics kept in memory only (tests, or a directory without a data folder).
    pub fn in_memory() -> Self {
        Self::with_counts(None, BTreeMap::new(), BUCKET)
    }

    fn with_counts(db: Option<PathBuf>, counts: BTreeMap<String, u64>, bucket_len: Duration) -> Self {
        let mut reg = Registry::default();
        let (mut directory, mut origin) = (0, 0);
        for (k, n) in counts {
            let mut parts = k.splitn(3, '\0');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("a"), Some(c), Some(p)) => {
                    reg.artifacts.insert((c.to_owned(), p.to_owned()), Arc::new(Counter::starting_at(n)));
                }
                (Some("r"), Some(r), None) => {
                    reg.relays.insert(r.to_owned(), Arc::new(Counter::starting_at(n)));
                }
                (Some("g"), Some(g), None) => {
                    reg.regions.insert(g.to_owned(), Arc::new(Counter::starting_at(n)));
                }
                (Some("s"), Some("directory"), None) => directory = n,
                (Some("s"), Some("origin"), None) => origin = n,
                _ => tracing::warn!(key = %k.escape_debug(), "ignoring an unknown key in the statistics store"),
            }
        }
        Self {
            db,
            reg: Mutex::new(reg),
            window: Mutex::new(Window::new(bucket_len, Instant::now())),
            exported: Mutex::new(HashMap::new()),
            directory: Arc::new(Counter::starting_at(directory)),
            origin: Arc::new(Counter::starting_at(origin)),
        }
    }

    /// Opens (or creates) the store at `path` and loads its counts.
    pub fn open(path: &Path) -> Result<Self, StatsError> {
        Self::open_with_bucket(path, BUCKET)
    }

    /// [`Stats::open`] with another window bucket length (tests).
    pub fn open_with_bucket(path: &Path, bucket_len: Duration) -> Result<Self, StatsError> {
        let err = |e: redb::Error| StatsError::Db { path: path.to_owned(), source: e };
        let db = redb::Database::create(path).map_err(|e| err(e.into()))?;
        let mut counts = BTreeMap::new();
        let txn = db.begin_read().map_err(|e| err(e.into()))?;
        match txn.open_table(COUNTS) {
            Ok(table) => {
                for row in table.iter().map_err(|e| err(e.into()))? {
                    let (k, v) = row.map_err(|e| err(e.into()))?;
                    counts.insert(k.value().to_owned(), v.value());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(err(e.into())),
        }
        Ok(Self::with_counts(Some(path.to_owned()), counts, bucket_len))
    }

    /// The counter of an artifact (created at zero).
    pub fn artifact(&self, catalog: &str, path: &str) -> Arc<Counter> {
        let mut reg = lock(&self.reg);
        reg.artifacts.entry((catalog.to_owned(), path.to_owned())).or_default().clone()
    }

    /// The counter of redirects to a relay.
    pub fn relay(&self, name: &str) -> Arc<Counter> {
        lock(&self.reg).relays.entry(name.to_owned()).or_default().clone()
    }

    /// The counter of a client region.
    pub fn region(&self, name: &str) -> Arc<Counter> {
        lock(&self.reg).regions.entry(name.to_owned()).or_default().clone()
    }

    /// Moves new downloads into the rolling window (and rotates it); call every few seconds.
    pub fn tick(&self, now: Instant) {
        let reg = lock(&self.reg);
        let mut w = lock(&self.window);
        w.rotate(now);
        for (key, c) in &reg.artifacts {
            let n = c.get();
            let before = c.windowed.swap(n, Relaxed);
            if n > before {
                w.add(key, n - before);
            }
        }
    }

    /// Artifacts with more than `threshold` downloads in the last hour, most first.
    pub fn hot(&self, threshold: u64) -> Vec<(ArtifactKey, u64)> {
        let w = lock(&self.window);
        let mut hot: Vec<_> = w.sum.iter().filter(|(_, &n)| n > threshold).map(|(k, &n)| (k.clone(), n)).collect();
        hot.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        hot
    }

    /// The `/.odi/v1/stats` document with the `top` most downloaded artifacts.
    pub fn doc(&self, top: usize) -> StatsDoc {
        let reg = lock(&self.reg);
        let w = lock(&self.window);
        let mut arts: Vec<ArtifactStat> = reg
            .artifacts
            .iter()
            .filter(|(_, c)| c.get() > 0)
            .map(|(k, c)| ArtifactStat { catalog: k.0.clone(), path: k.1.clone(), downloads: c.get(), last_hour: w.sum.get(k).copied().unwrap_or(0) })
            .collect();
        let downloads = arts.iter().map(|a| a.downloads).sum();
        arts.sort_by(|a, b| b.downloads.cmp(&a.downloads).then_with(|| (&a.catalog, &a.path).cmp(&(&b.catalog, &b.path))));
        arts.truncate(top);
        StatsDoc {
            downloads,
            top: arts,
            relays: reg.relays.iter().map(|(k, c)| (k.clone(), c.get())).collect(),
            regions: reg.regions.iter().map(|(k, c)| (k.clone(), c.get())).collect(),
            directory: self.directory.get(),
            origin: self.origin.get(),
        }
    }

    /// Adds what was counted since the last export to the Prometheus counters. Per-artifact
    /// series would swamp `/metrics`, so artifacts are summed per catalog there.
    pub fn export(&self, m: &Metrics) {
        let mut rows: Vec<(&'static str, &'static str, &'static str, String, u64)> = Vec::new();
        {
            let reg = lock(&self.reg);
            let mut per_catalog: BTreeMap<&str, u64> = BTreeMap::new();
            for ((c, _), n) in &reg.artifacts {
                *per_catalog.entry(c.as_str()).or_insert(0) += n.get();
            }
            for (c, n) in per_catalog {
                rows.push(("odi_downloads_total", "Downloads answered by this directory, per catalog.", "catalog", c.to_owned(), n));
            }
            for (r, n) in &reg.relays {
                rows.push(("odi_redirects_total", "Downloads redirected to each relay.", "relay", r.clone(), n.get()));
            }
            for (g, n) in &reg.regions {
                rows.push(("odi_region_downloads_total", "Downloads per client region.", "region", g.clone(), n.get()));
            }
        }
        let via = "Downloads the directory served itself or sent to an origin.";
        rows.push(("odi_fallback_downloads_total", via, "via", "directory".into(), self.directory.get()));
        rows.push(("odi_fallback_downloads_total", via, "via", "origin".into(), self.origin.get()));
        let mut exported = lock(&self.exported);
        for (name, help, label, value, n) in rows {
            let last = exported.entry((name, value.clone())).or_insert(0);
            if n > *last || (n == 0 && *last == 0) {
                m.inc(name, help, &[(label, &value)], (n - *last) as f64);
                *last = n;
            }
        }
    }

    /// Writes every counter that changed since the last flush. Blocking; run it off the
    /// async threads.
    pub fn flush(&self) -> Result<usize, StatsError> {
        let Some(path) = &self.db else { return Ok(0) };
        let mut changed: Vec<(String, u64, Arc<Counter>)> = Vec::new();
        {
            let reg = lock(&self.reg);
            let mut consider = |key: Key<'_>, c: &Arc<Counter>| {
                let n = c.get();
                if n != c.flushed.load(Relaxed) {
                    changed.push((key.encode(), n, c.clone()));
                }
            };
            for ((cat, p), c) in &reg.artifacts {
                consider(Key::Artifact(cat, p), c);
            }
            for (r, c) in &reg.relays {
                consider(Key::Relay(r), c);
            }
            for (g, c) in &reg.regions {
                consider(Key::Region(g), c);
            }
            consider(Key::Directory, &self.directory);
            consider(Key::Origin, &self.origin);
        }
        if changed.is_empty() {
            return Ok(0);
        }
        let err = |e: redb::Error| StatsError::Db { path: path.clone(), source: e };
        let db = redb::Database::create(path).map_err(|e| err(e.into()))?;
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = txn.open_table(COUNTS).map_err(|e| err(e.into()))?;
            for (k, n, _) in &changed {
                table.insert(k.as_str(), *n).map_err(|e| err(e.into()))?;
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        for (_, n, c) in &changed {
            c.flushed.store(*n, Relaxed);
        }
        Ok(changed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        let s = Stats::open(&path).unwrap();
        let a = s.artifact("demo", "a/b.bin");
        for _ in 0..3 {
            a.hit();
        }
        s.relay("relay-1").hit();
        s.region("eu").hit();
        s.directory.hit();
        assert_eq!(s.flush().unwrap(), 4);
        assert_eq!(s.flush().unwrap(), 0, "nothing changed since");
        drop(s);
        let s = Stats::open(&path).unwrap();
        assert_eq!(s.artifact("demo", "a/b.bin").get(), 3);
        assert_eq!(s.relay("relay-1").get(), 1);
        assert_eq!(s.region("eu").get(), 1);
        assert_eq!(s.directory.get(), 1);
        assert_eq!(s.origin.get(), 0);
        let doc = s.doc(10);
        assert_eq!(doc.downloads, 3);
        assert_eq!(doc.top[0].path, "a/b.bin");
        // Loaded counts are history, not recent downloads: they do not make anything hot.
        s.tick(Instant::now());
        assert!(s.hot(0).is_empty());
    }

    #[test]
    fn window_keeps_one_hour() {
        let s = Stats::with_counts(None, BTreeMap::new(), Duration::from_secs(60));
        let t0 = Instant::now();
        let a = s.artifact("c", "hot.bin");
        for _ in 0..5 {
            a.hit();
        }
        s.tick(t0);
        assert_eq!(s.hot(4), vec![(("c".to_owned(), "hot.bin".to_owned()), 5)]);
        assert!(s.hot(5).is_empty());
        a.hit();
        s.tick(t0 + Duration::from_secs(30 * 60));
        assert_eq!(s.hot(0)[0].1, 6);
        // 61 minutes later the first five have left the window; the sixth (at minute 30) has not.
        s.tick(t0 + Duration::from_secs(61 * 60));
        assert_eq!(s.hot(0)[0].1, 1);
        s.tick(t0 + Duration::from_secs(95 * 60));
        assert!(s.hot(0).is_empty());
    }

    #[test]
    fn export_adds_deltas() {
        let s = Stats::in_memory();
        let m = Metrics::default();
        s.artifact("demo", "x").hit();
        s.relay("r1").hit();
        s.export(&m);
        s.artifact("demo", "y").hit();
        s.export(&m);
        assert_eq!(m.get("odi_downloads_total", &[("catalog", "demo")]), Some(2.0));
        assert_eq!(m.get("odi_redirects_total", &[("relay", "r1")]), Some(1.0));
        assert_eq!(m.get("odi_fallback_downloads_total", &[("via", "origin")]), Some(0.0));
    }
}
