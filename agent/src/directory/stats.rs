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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::Serialize;

use crate::locks::lock;
use crate::metrics::Metrics;

/// Every counter, keyed by a kind-prefixed name (see [`Key`]).
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");
/// The rolling window: (bucket start in Unix milliseconds, [`Key::Artifact`]) to downloads in
/// that bucket. Kept so that a restart does not forget what is hot (relays would drop the
/// extra copies they hold for it, then fetch them again an hour later).
const WINDOW: TableDefinition<(u64, &str), u64> = TableDefinition::new("window");
/// Downloads over time, for the statistics page: (bucket start in Unix milliseconds, series)
/// to downloads in that bucket; a series is a catalog (`c\0<name>`), a relay (`r\0<name>`)
/// or a client region (`g\0<name>`).
const HISTORY: TableDefinition<(u64, &str), u64> = TableDefinition::new("history");

/// History buckets kept: a week of hours (with the default bucket).
pub const HISTORY_BUCKETS: usize = 7 * 24;

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
        /// What redb said.
        source: redb::Error,
    },
}

/// A monotonically increasing count, with what was already flushed and windowed.
#[derive(Debug, Default)]
pub struct Counter {
    n: AtomicU64,
    flushed: AtomicU64,
    windowed: AtomicU64,
    charted: AtomicU64,
}

impl Counter {
    fn starting_at(n: u64) -> Self {
        Self {
            n: AtomicU64::new(n),
            flushed: AtomicU64::new(n),
            windowed: AtomicU64::new(n),
            charted: AtomicU64::new(n),
        }
    }

    /// What was counted since the last call (for the history).
    fn take_uncharted(&self) -> u64 {
        let n = self.get();
        n.saturating_sub(self.charted.swap(n, Relaxed))
    }

    /// Counts one download. Relaxed: counts need no ordering with anything else.
    #[inline]
    pub fn hit(&self) {
        self.n.fetch_add(1, Relaxed);
    }

    /// Downloads counted, including those persisted before a restart; flushes do not reset it.
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

/// What [`Window::take_dirty`] hands to a flush.
#[derive(Debug)]
struct Dirty {
    /// (bucket start, [`Key::Artifact`], downloads) of every changed bucket.
    rows: Vec<(u64, String, u64)>,
    /// The starts of the buckets the rows came from (to mark again if the write fails).
    buckets: Vec<u64>,
    /// Starts of the oldest and the open bucket: stored rows outside are out of the window.
    oldest: u64,
    newest: u64,
}

/// One bucket of the rolling window.
#[derive(Debug)]
struct Bucket {
    /// Wall-clock start, Unix milliseconds: the bucket's key in the store.
    start_ms: u64,
    counts: HashMap<ArtifactKey, u64>,
    /// Changed since last written to the store.
    dirty: bool,
}

impl Bucket {
    fn new(start_ms: u64) -> Self {
        Self { start_ms, counts: HashMap::new(), dirty: false }
    }
}

/// The rolling window of recent downloads per artifact.
#[derive(Debug)]
struct Window {
    bucket_len: Duration,
    /// When the open bucket started.
    started: Instant,
    /// Closed buckets, oldest first, then the open one last.
    buckets: VecDeque<Bucket>,
    /// Sum over `buckets`.
    sum: HashMap<ArtifactKey, u64>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Window {
    fn new(bucket_len: Duration, now: Instant, now_ms: u64) -> Self {
        Self {
            bucket_len,
            started: now,
            buckets: VecDeque::from([Bucket::new(now_ms)]),
            sum: HashMap::new(),
        }
    }

    fn bucket_ms(&self) -> u64 {
        u64::try_from(self.bucket_len.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// A window whose closed buckets are `rows` read back from the store (bucket start,
    /// artifact, downloads); rows older than the window are left out.
    fn restore(
        bucket_len: Duration,
        now: Instant,
        now_ms: u64,
        rows: Vec<(u64, ArtifactKey, u64)>,
    ) -> Self {
        let mut w = Self::new(bucket_len, now, now_ms);
        let len = w.bucket_ms();
        let mut by_start: BTreeMap<u64, HashMap<ArtifactKey, u64>> = BTreeMap::new();
        for (start, key, n) in rows {
            // Rows from the future (the clock stepped back) are dropped, and deleted at the
            // next flush; with the open bucket, at most `BUCKETS` buckets in all.
            let age = now_ms.saturating_sub(start) / len;
            if start <= now_ms && (age as usize) < BUCKETS - 1 {
                *by_start.entry(start).or_default().entry(key).or_insert(0) += n;
            }
        }
        let open = w.buckets.pop_back();
        let oldest = by_start.keys().next().copied();
        if let Some(oldest) = oldest {
            // Empty buckets stand for the minutes nothing was recorded (the agent was down),
            // so that everything leaves the window when it is an hour old.
            let mut start = oldest;
            let mut restored = by_start.into_iter().peekable();
            while start <= now_ms && w.buckets.len() < BUCKETS - 1 {
                let mut b = Bucket::new(start);
                while let Some((s, _)) = restored.peek() {
                    if *s >= start.saturating_add(len) {
                        break;
                    }
                    if let Some((_, counts)) = restored.next() {
                        for (k, n) in counts {
                            *b.counts.entry(k.clone()).or_insert(0) += n;
                            *w.sum.entry(k).or_insert(0) += n;
                        }
                    }
                }
                w.buckets.push_back(b);
                start = start.saturating_add(len);
            }
        }
        w.buckets.extend(open);
        w.trim();
        w
    }

    fn add(&mut self, key: &ArtifactKey, d: u64) {
        if let Some(open) = self.buckets.back_mut() {
            *open.counts.entry(key.clone()).or_insert(0) += d;
            open.dirty = true;
        }
        *self.sum.entry(key.clone()).or_insert(0) += d;
    }

    fn rotate(&mut self, now: Instant) {
        let len = self.bucket_ms();
        while now.duration_since(self.started) >= self.bucket_len {
            self.started += self.bucket_len;
            let start = self.buckets.back().map_or(0, |b| b.start_ms.saturating_add(len));
            self.buckets.push_back(Bucket::new(start));
            self.trim();
        }
    }

    fn trim(&mut self) {
        while self.buckets.len() > BUCKETS {
            let Some(old) = self.buckets.pop_front() else { break };
            for (k, d) in old.counts {
                if let Some(s) = self.sum.get_mut(&k) {
                    *s = s.saturating_sub(d);
                    if *s == 0 {
                        self.sum.remove(&k);
                    }
                }
            }
        }
    }

    /// The buckets changed since the last call, marking them clean.
    fn take_dirty(&mut self) -> Dirty {
        let mut rows = Vec::new();
        let mut starts = Vec::new();
        for b in self.buckets.iter_mut().filter(|b| b.dirty) {
            b.dirty = false;
            starts.push(b.start_ms);
            rows.extend(
                b.counts.iter().map(|((c, p), &n)| (b.start_ms, Key::Artifact(c, p).encode(), n)),
            );
        }
        Dirty {
            rows,
            buckets: starts,
            oldest: self.buckets.front().map_or(0, |b| b.start_ms),
            newest: self.buckets.back().map_or(u64::MAX, |b| b.start_ms),
        }
    }

    /// Marks buckets dirty again after a failed write.
    fn mark_dirty(&mut self, starts: &[u64]) {
        for b in self.buckets.iter_mut().filter(|b| starts.contains(&b.start_ms)) {
            b.dirty = true;
        }
    }
}

/// Downloads over time per catalog, relay and client region, in wall-clock buckets (an hour
/// with the default window bucket), the last [`HISTORY_BUCKETS`] of them.
#[derive(Debug)]
struct History {
    bucket_ms: u64,
    /// Bucket start to series key (see [`HISTORY`]) to downloads.
    buckets: BTreeMap<u64, HashMap<String, u64>>,
    /// Buckets changed since the last flush.
    dirty: std::collections::BTreeSet<u64>,
}

impl History {
    fn new(bucket_ms: u64) -> Self {
        Self { bucket_ms: bucket_ms.max(1), buckets: BTreeMap::new(), dirty: Default::default() }
    }

    fn start_of(&self, ms: u64) -> u64 {
        ms - ms % self.bucket_ms
    }

    /// The oldest bucket start still kept at `now_ms`.
    fn oldest(&self, now_ms: u64) -> u64 {
        self.start_of(now_ms).saturating_sub(self.bucket_ms * (HISTORY_BUCKETS as u64 - 1))
    }

    fn add(&mut self, now_ms: u64, key: String, n: u64) {
        let start = self.start_of(now_ms);
        *self.buckets.entry(start).or_default().entry(key).or_insert(0) += n;
        self.dirty.insert(start);
    }

    fn trim(&mut self, now_ms: u64) {
        let oldest = self.oldest(now_ms);
        self.buckets.retain(|&s, _| s >= oldest && s <= now_ms);
        self.dirty.retain(|&s| s >= oldest);
    }
}

/// Downloads over time, as the statistics page draws them.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryDoc {
    /// Length of one bucket in seconds.
    pub bucket_seconds: u64,
    /// Each bucket's start (RFC 3339), oldest first.
    pub starts: Vec<String>,
    /// Downloads per catalog, one value per bucket.
    pub catalogs: Vec<crate::web::chart::Series>,
    /// Redirects per relay.
    pub relays: Vec<crate::web::chart::Series>,
    /// Downloads per client region.
    pub regions: Vec<crate::web::chart::Series>,
}

/// All download counters of a directory.
#[derive(Debug)]
pub struct Stats {
    db: Option<PathBuf>,
    reg: Mutex<Registry>,
    window: Mutex<Window>,
    history: Mutex<History>,
    exported: Mutex<HashMap<(&'static str, String), u64>>,
    /// Downloads the directory served itself.
    pub directory: Arc<Counter>,
    /// Downloads sent to an origin.
    pub origin: Arc<Counter>,
}

/// One artifact's figures in `/.odi/v1/stats`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArtifactStat {
    /// Name of the catalog the artifact belongs to.
    pub catalog: String,
    /// The artifact's path inside its catalog, as in the catalog file.
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

impl Stats {
    /// Statistics kept in memory only (tests, or a directory without a data folder).
    pub fn in_memory() -> Self {
        Self::with_counts(None, BTreeMap::new(), Vec::new(), Vec::new(), BUCKET)
    }

    fn with_counts(
        db: Option<PathBuf>,
        counts: BTreeMap<String, u64>,
        window: Vec<(u64, ArtifactKey, u64)>,
        history_rows: Vec<(u64, String, u64)>,
        bucket_len: Duration,
    ) -> Self {
        let now_ms = unix_ms(SystemTime::now());
        let bucket_ms = u64::try_from(bucket_len.as_millis()).unwrap_or(u64::MAX / 120);
        let mut history = History::new(bucket_ms.saturating_mul(BUCKETS as u64));
        for (start, key, n) in history_rows {
            *history.buckets.entry(history.start_of(start)).or_default().entry(key).or_insert(0) +=
                n;
        }
        history.trim(now_ms);
        let mut reg = Registry::default();
        let (mut directory, mut origin) = (0, 0);
        for (k, n) in counts {
            let mut parts = k.splitn(3, '\0');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("a"), Some(c), Some(p)) => {
                    reg.artifacts
                        .insert((c.to_owned(), p.to_owned()), Arc::new(Counter::starting_at(n)));
                }
                (Some("r"), Some(r), None) => {
                    reg.relays.insert(r.to_owned(), Arc::new(Counter::starting_at(n)));
                }
                (Some("g"), Some(g), None) => {
                    reg.regions.insert(g.to_owned(), Arc::new(Counter::starting_at(n)));
                }
                (Some("s"), Some("directory"), None) => directory = n,
                (Some("s"), Some("origin"), None) => origin = n,
                _ => {
                    tracing::warn!(key = %k.escape_debug(), "ignoring an unknown key in the statistics store")
                }
            }
        }
        Self {
            db,
            reg: Mutex::new(reg),
            window: Mutex::new(Window::restore(
                bucket_len,
                Instant::now(),
                unix_ms(SystemTime::now()),
                window,
            )),
            history: Mutex::new(history),
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
        let mut window = Vec::new();
        match txn.open_table(WINDOW) {
            Ok(table) => {
                for row in table.iter().map_err(|e| err(e.into()))? {
                    let (k, v) = row.map_err(|e| err(e.into()))?;
                    let (start, key) = k.value();
                    let mut parts = key.splitn(3, '\0');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some("a"), Some(c), Some(p)) => {
                            window.push((start, (c.to_owned(), p.to_owned()), v.value()))
                        }
                        _ => {
                            tracing::warn!(key = %key.escape_debug(), "ignoring an unknown key in the statistics window")
                        }
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(err(e.into())),
        }
        let mut history = Vec::new();
        match txn.open_table(HISTORY) {
            Ok(table) => {
                for row in table.iter().map_err(|e| err(e.into()))? {
                    let (k, v) = row.map_err(|e| err(e.into()))?;
                    let (start, key) = k.value();
                    history.push((start, key.to_owned(), v.value()));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(err(e.into())),
        }
        Ok(Self::with_counts(Some(path.to_owned()), counts, window, history, bucket_len))
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
        self.tick_at(now, unix_ms(SystemTime::now()));
    }

    /// [`Stats::tick`] at a given wall-clock time (tests).
    pub fn tick_at(&self, now: Instant, now_ms: u64) {
        let reg = lock(&self.reg);
        let mut w = lock(&self.window);
        w.rotate(now);
        let mut per_catalog: BTreeMap<&str, u64> = BTreeMap::new();
        for (key, c) in &reg.artifacts {
            let n = c.get();
            let before = c.windowed.swap(n, Relaxed);
            if n > before {
                w.add(key, n - before);
            }
            let d = c.take_uncharted();
            if d > 0 {
                *per_catalog.entry(key.0.as_str()).or_insert(0) += d;
            }
        }
        let mut h = lock(&self.history);
        for (c, d) in per_catalog {
            h.add(now_ms, format!("c\0{c}"), d);
        }
        for (r, c) in &reg.relays {
            let d = c.take_uncharted();
            if d > 0 {
                h.add(now_ms, format!("r\0{r}"), d);
            }
        }
        for (g, c) in &reg.regions {
            let d = c.take_uncharted();
            if d > 0 {
                h.add(now_ms, format!("g\0{g}"), d);
            }
        }
        h.trim(now_ms);
    }

    /// The last `buckets` history buckets up to `now_ms`, every series that has a download in
    /// them, zeros where nothing was counted.
    pub fn history(&self, buckets: usize, now_ms: u64) -> HistoryDoc {
        let h = lock(&self.history);
        let n = buckets.clamp(1, HISTORY_BUCKETS);
        let last = h.start_of(now_ms);
        let first = last.saturating_sub(h.bucket_ms * (n as u64 - 1));
        let starts: Vec<u64> = (0..n as u64).map(|i| first + i * h.bucket_ms).collect();
        let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (i, s) in starts.iter().enumerate() {
            for (k, v) in h.buckets.get(s).into_iter().flatten() {
                by_key.entry(k.as_str()).or_insert_with(|| vec![0; n])[i] += v;
            }
        }
        let mut doc = HistoryDoc {
            bucket_seconds: h.bucket_ms / 1000,
            starts: starts
                .iter()
                .map(|ms| {
                    let t = time::OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(*ms) * 1_000_000,
                    )
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                    crate::status::rfc3339(t)
                })
                .collect(),
            catalogs: Vec::new(),
            relays: Vec::new(),
            regions: Vec::new(),
        };
        for (k, values) in by_key {
            let Some((kind, name)) = k.split_once('\0') else { continue };
            let series = crate::web::chart::Series { name: name.to_owned(), values };
            match kind {
                "c" => doc.catalogs.push(series),
                "r" => doc.relays.push(series),
                "g" => doc.regions.push(series),
                _ => {}
            }
        }
        doc
    }

    /// Artifacts with more than `threshold` downloads in the last hour, most first.
    pub fn hot(&self, threshold: u64) -> Vec<(ArtifactKey, u64)> {
        let w = lock(&self.window);
        let mut hot: Vec<_> =
            w.sum.iter().filter(|(_, &n)| n > threshold).map(|(k, &n)| (k.clone(), n)).collect();
        hot.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        hot
    }

    /// Downloads of all artifacts.
    pub fn downloads(&self) -> u64 {
        lock(&self.reg).artifacts.values().map(|c| c.get()).sum()
    }

    /// The `/.odi/v1/stats` document with the `top` most downloaded artifacts.
    pub fn doc(&self, top: usize) -> StatsDoc {
        let reg = lock(&self.reg);
        let w = lock(&self.window);
        let mut arts: Vec<ArtifactStat> = reg
            .artifacts
            .iter()
            .filter(|(_, c)| c.get() > 0)
            .map(|(k, c)| ArtifactStat {
                catalog: k.0.clone(),
                path: k.1.clone(),
                downloads: c.get(),
                last_hour: w.sum.get(k).copied().unwrap_or(0),
            })
            .collect();
        let downloads = arts.iter().map(|a| a.downloads).sum();
        arts.sort_by(|a, b| {
            b.downloads
                .cmp(&a.downloads)
                .then_with(|| (&a.catalog, &a.path).cmp(&(&b.catalog, &b.path)))
        });
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
                rows.push((
                    "odi_downloads_total",
                    "Downloads answered by this directory, per catalog.",
                    "catalog",
                    c.to_owned(),
                    n,
                ));
            }
            for (r, n) in &reg.relays {
                rows.push((
                    "odi_redirects_total",
                    "Downloads redirected to each relay.",
                    "relay",
                    r.clone(),
                    n.get(),
                ));
            }
            for (g, n) in &reg.regions {
                rows.push((
                    "odi_region_downloads_total",
                    "Downloads per client region.",
                    "region",
                    g.clone(),
                    n.get(),
                ));
            }
        }
        let via = "Downloads the directory served itself or sent to an origin.";
        rows.push((
            "odi_fallback_downloads_total",
            via,
            "via",
            "directory".into(),
            self.directory.get(),
        ));
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
        let window = lock(&self.window).take_dirty();
        let history = {
            let mut h = lock(&self.history);
            let dirty = std::mem::take(&mut h.dirty);
            let rows: Vec<(u64, String, u64)> = dirty
                .iter()
                .filter_map(|s| h.buckets.get(s).map(|b| (s, b)))
                .flat_map(|(s, b)| b.iter().map(move |(k, n)| (*s, k.clone(), *n)))
                .collect();
            let oldest = h.buckets.keys().next().copied().unwrap_or(0);
            (rows, dirty, oldest)
        };
        if changed.is_empty() && window.rows.is_empty() && history.0.is_empty() {
            return Ok(0);
        }
        let written = self.write(path, &changed, &window, (&history.0, history.2));
        if written.is_err() {
            lock(&self.window).mark_dirty(&window.buckets);
            lock(&self.history).dirty.extend(history.1);
        }
        written?;
        for (_, n, c) in &changed {
            c.flushed.store(*n, Relaxed);
        }
        Ok(changed.len())
    }

    fn write(
        &self,
        path: &Path,
        changed: &[(String, u64, Arc<Counter>)],
        window: &Dirty,
        (history, oldest): (&[(u64, String, u64)], u64),
    ) -> Result<(), StatsError> {
        let err = |e: redb::Error| StatsError::Db { path: path.to_owned(), source: e };
        let db = redb::Database::create(path).map_err(|e| err(e.into()))?;
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = txn.open_table(COUNTS).map_err(|e| err(e.into()))?;
            for (k, n, _) in changed {
                table.insert(k.as_str(), *n).map_err(|e| err(e.into()))?;
            }
            let mut table = txn.open_table(WINDOW).map_err(|e| err(e.into()))?;
            for (start, k, n) in &window.rows {
                table.insert((*start, k.as_str()), *n).map_err(|e| err(e.into()))?;
            }
            table.retain_in(..(window.oldest, ""), |_, _| false).map_err(|e| err(e.into()))?;
            if let Some(after) = window.newest.checked_add(1) {
                table.retain_in((after, "").., |_, _| false).map_err(|e| err(e.into()))?;
            }
            let mut table = txn.open_table(HISTORY).map_err(|e| err(e.into()))?;
            for (start, k, n) in history {
                table.insert((*start, k.as_str()), *n).map_err(|e| err(e.into()))?;
            }
            table.retain_in(..(oldest, ""), |_, _| false).map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_counts_per_bucket_survives_a_reopen_and_keeps_a_week() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        let hour = 3_600_000u64;
        // The bucket before the current one: the store keeps only the last week before now.
        let t0 = unix_ms(SystemTime::now()) / hour * hour - hour;
        let s = Stats::open(&path).unwrap();
        let (a, b) = (s.artifact("deb", "a.deb"), s.artifact("py", "b.whl"));
        let relay = s.relay("relay-1");
        a.hit();
        a.hit();
        relay.hit();
        s.tick_at(Instant::now(), t0 + 10);
        b.hit();
        s.tick_at(Instant::now(), t0 + hour + 5);
        s.flush().unwrap();
        drop(s);
        let s = Stats::open(&path).unwrap();
        let h = s.history(3, t0 + hour + 6);
        assert_eq!(h.bucket_seconds, 3600);
        assert_eq!(h.starts.len(), 3);
        let names = |v: &[crate::web::chart::Series]| {
            v.iter().map(|s| (s.name.clone(), s.values.clone())).collect::<Vec<_>>()
        };
        assert_eq!(
            names(&h.catalogs),
            [("deb".into(), vec![0, 2, 0]), ("py".into(), vec![0, 0, 1])]
        );
        assert_eq!(names(&h.relays), [("relay-1".into(), vec![0, 1, 0])]);
        // Loaded totals are not new downloads: a tick after the reopen adds nothing.
        s.tick_at(Instant::now(), t0 + hour + 7);
        let last = s.history(1, t0 + hour + 7);
        assert_eq!(names(&last.catalogs), [("py".into(), vec![1])]);
        // A week later everything has left the history.
        let later = t0 + hour * (HISTORY_BUCKETS as u64 + 1);
        s.tick_at(Instant::now(), later);
        assert!(s.history(HISTORY_BUCKETS, later).catalogs.is_empty());
    }

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
        let s = Stats::with_counts(
            None,
            BTreeMap::new(),
            Vec::new(),
            Vec::new(),
            Duration::from_secs(60),
        );
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
    fn hot_window_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        let s = Stats::open(&path).unwrap();
        let a = s.artifact("c", "hot.bin");
        for _ in 0..5 {
            a.hit();
        }
        s.tick(Instant::now());
        s.flush().unwrap();
        // More downloads in the same bucket, written by the next flush.
        a.hit();
        s.tick(Instant::now());
        s.flush().unwrap();
        drop(s);

        let s = Stats::open(&path).unwrap();
        assert_eq!(s.hot(4), vec![(("c".to_owned(), "hot.bin".to_owned()), 6)]);
        // Reopened twice, still counted once.
        s.flush().unwrap();
        drop(s);
        let s = Stats::open(&path).unwrap();
        assert_eq!(s.hot(0)[0].1, 6);
        s.artifact("c", "hot.bin").hit();
        s.tick(Instant::now());
        s.flush().unwrap();
        drop(s);
        assert_eq!(Stats::open(&path).unwrap().hot(0)[0].1, 7);
    }

    #[test]
    fn restored_window_still_expires() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        // 10 ms buckets: the window is 600 ms long.
        let bucket = Duration::from_millis(10);
        let s = Stats::open_with_bucket(&path, bucket).unwrap();
        s.artifact("c", "old.bin").hit();
        s.tick(Instant::now());
        s.flush().unwrap();
        drop(s);
        let s = Stats::open_with_bucket(&path, bucket).unwrap();
        assert_eq!(s.hot(0).len(), 1, "restored while inside the window");
        drop(s);
        std::thread::sleep(Duration::from_millis(700));
        let s = Stats::open_with_bucket(&path, bucket).unwrap();
        assert!(s.hot(0).is_empty(), "older than the window when reopened");

        // A restored bucket leaves the window an hour (here 600 ms) after it was recorded.
        let s2_path = dir.path().join("s2.redb");
        let s2 = Stats::open_with_bucket(&s2_path, bucket).unwrap();
        s2.artifact("c", "x").hit();
        s2.tick(Instant::now());
        s2.flush().unwrap();
        drop(s2);
        let s2 = Stats::open_with_bucket(&s2_path, bucket).unwrap();
        assert_eq!(s2.hot(0).len(), 1);
        let t = Instant::now();
        s2.tick(t + Duration::from_millis(700));
        assert!(s2.hot(0).is_empty());
        // And its rows are deleted from the store at the next flush.
        s2.artifact("c", "y").hit();
        s2.tick(t + Duration::from_millis(700));
        s2.flush().unwrap();
        drop(s2);
        std::thread::sleep(Duration::from_millis(20));
        let hot = Stats::open_with_bucket(&s2_path, bucket).unwrap().hot(0);
        assert!(hot.iter().all(|((_, p), _)| p != "x"), "{hot:?}");
    }

    #[test]
    fn window_rows_from_the_future_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.redb");
        drop(Stats::open(&path).unwrap());
        // As if written before the clock stepped back an hour.
        let future = unix_ms(SystemTime::now()) + 3_600_000;
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(WINDOW)
                .unwrap()
                .insert((future, Key::Artifact("c", "f").encode().as_str()), 100)
                .unwrap();
            txn.commit().unwrap();
        }
        let s = Stats::open(&path).unwrap();
        assert!(s.hot(0).is_empty(), "a row from the future does not count");
        s.artifact("c", "g").hit();
        s.tick(Instant::now());
        s.flush().unwrap();
        drop(s);
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let rows: Vec<u64> = txn
            .open_table(WINDOW)
            .unwrap()
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value().0)
            .collect();
        assert_eq!(rows.len(), 1, "the future row is deleted: {rows:?}");
        assert!(rows[0] < future);
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
