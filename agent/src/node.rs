//! The state every agent has, whatever its mode: configuration, content store, metrics, health,
//! the applied [`View`] and the signals that wake its loops. It names no mode: what a relay or a
//! directory adds lives in [`crate::relay`] and [`crate::directory`], and [`crate::app`] puts
//! them together.
//!
//! The applied view is swapped atomically: a request reads one consistent commit and
//! assignment and never waits on a pull, a reconcile round or a probe.

use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::locks::lock;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{Response, StatusCode};
use odi_network::assign::{assign, assign_since, Assignment, Extras};
use odi_network::Network;
use rand::Rng as _;
use sha2::Digest as _;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::config::Config;
use crate::http::response::{self, Body};
use crate::metrics::Metrics;
use crate::reconcile::Fetcher;
use crate::status::{rfc3339, Health, ShareStatus, StatusDoc, StoreStatus};
use crate::store::Store;
use crate::wire::{Inventory, InventoryItem};

/// One applied commit with everything derived from it.
#[derive(Debug)]
pub struct View {
    /// The verified commit, hex.
    pub commit: String,
    /// What it declares.
    pub network: Arc<Network>,
    /// Who holds what, computed by this node alone from `network` and `extras`.
    pub assignment: Assignment,
    /// Hot extras (from directories' download statistics) the assignment includes.
    pub extras: Extras,
    /// When this node applied the commit; kept when only the extras change.
    pub applied_at: OffsetDateTime,
}

/// State shared by the loops and the request handlers of both modes.
#[derive(Debug)]
pub struct Node {
    /// The validated agent configuration.
    pub config: Config,
    /// Verified objects by hash; the only place bytes are served from.
    pub store: Store,
    /// Prometheus registry behind `/metrics`.
    pub metrics: Metrics,
    /// What the status conditions are computed from.
    pub health: Mutex<Health>,
    /// Wakes the sync loop (SIGHUP, `POST /.odi/v1/sync`).
    pub sync_now: Notify,
    /// Wakes the reconcile loop (a new view).
    pub reconcile_now: Notify,
    /// The HTTP client and limits every download uses.
    pub fetcher: Fetcher,
    /// Artifact requests are refused because the applied commit's trust expired and the
    /// policy says so (see [`crate::config::OnExpiry`]); set by the sync loop.
    pub refusing: std::sync::atomic::AtomicBool,
    view: ArcSwapOption<View>,
    /// The ETag of the last inventory built and what it was built from; see
    /// [`Self::inventory_tag`].
    inventory_tag: Mutex<Option<InventoryTag>>,
}

/// What an inventory's ETag was computed from: the same commit and the same store generation
/// give the same inventory, so the tag can be answered without listing anything.
#[derive(Debug, Clone)]
struct InventoryTag {
    commit: Option<String>,
    generation: u64,
    etag: String,
}

impl Node {
    /// A node with nothing applied yet.
    pub fn new(config: Config, store: Store, fetcher: Fetcher) -> Self {
        Self {
            config,
            store,
            fetcher,
            metrics: Metrics::default(),
            health: Mutex::new(Health::default()),
            sync_now: Notify::new(),
            reconcile_now: Notify::new(),
            refusing: std::sync::atomic::AtomicBool::new(false),
            view: ArcSwapOption::empty(),
            inventory_tag: Mutex::new(None),
        }
    }

    /// The applied view, if any.
    pub fn view(&self) -> Option<Arc<View>> {
        self.view.load_full()
    }

    /// Whether `v` is the applied view (no reference count taken: the directory's request
    /// path asks this on every redirect).
    pub fn view_is(&self, v: &Arc<View>) -> bool {
        self.view.load().as_ref().is_some_and(|cur| Arc::ptr_eq(cur, v))
    }

    /// Re-installs the applied view with other hot extras. Compare-and-swap: if a new commit
    /// was installed meanwhile it is kept (never rolled back); the caller retries later.
    pub async fn install_extras(self: &Arc<Self>, extras: Extras) -> bool {
        let Some(cur) = self.view() else { return false };
        let (n, e) = (cur.network.clone(), extras.clone());
        let assignment =
            tokio::task::spawn_blocking(move || assign(&n, &e)).await.unwrap_or_default();
        let new = Arc::new(View {
            commit: cur.commit.clone(),
            network: cur.network.clone(),
            assignment,
            extras,
            applied_at: cur.applied_at,
        });
        let expected = Some(cur);
        let prev = self.view.compare_and_swap(&expected, Some(new));
        let swapped = match (&*prev, &expected) {
            (Some(p), Some(c)) => Arc::ptr_eq(p, c),
            _ => false,
        };
        if swapped {
            self.reconcile_now.notify_one();
        }
        swapped
    }

    /// The health record.
    pub fn health(&self) -> MutexGuard<'_, Health> {
        lock(&self.health)
    }

    /// Installs a newly applied commit, computing the assignment off the async threads, then
    /// swapping the view in one step. The assignment is patched from the view before when only
    /// artifacts changed ([`assign_since`]: exactly the table [`assign`] gives, at a cost in
    /// proportion to the change).
    pub async fn install(
        self: &Arc<Self>,
        commit: String,
        network: Arc<Network>,
        extras: Extras,
        applied_at: OffsetDateTime,
    ) {
        let n = network.clone();
        let e = extras.clone();
        let prior = self.view();
        let assignment = tokio::task::spawn_blocking(move || match prior {
            Some(p) => assign_since(&p.assignment, &p.network, &n, &e),
            None => assign(&n, &e),
        })
        .await
        .unwrap_or_default();
        self.view.store(Some(Arc::new(View { commit, network, assignment, extras, applied_at })));
        self.reconcile_now.notify_one();
    }

    /// The status document as far as the node knows it; a mode adds its `share`, `quota` and
    /// its own section.
    pub fn status(&self, share: ShareStatus, quota: Option<u64>) -> StatusDoc {
        let view = self.view();
        let commit = view.as_ref().map(|v| v.commit.clone());
        let health = self.health();
        let failures = health
            .last_round
            .as_ref()
            .filter(|(c, _)| Some(c) == commit.as_ref())
            .map(|(_, o)| o.failed.clone())
            .unwrap_or_default();
        StatusDoc {
            mode: self.config.mode.as_str().into(),
            name: self.config.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            conditions: health.conditions(commit.as_deref()),
            commit,
            applied_at: view.as_ref().map(|v| rfc3339(v.applied_at)),
            last_error: health.last_error.as_ref().map(|(t, m)| format!("{}: {m}", rfc3339(*t))),
            store: StoreStatus {
                objects: self.store.object_count(),
                bytes: self.store.object_bytes(),
                partial_bytes: self.store.partial_bytes(),
                quota,
            },
            share,
            failures,
            directory: None,
        }
    }

    /// The ETag of the inventory as it is now, if it is known without listing anything: the
    /// last inventory built was of the applied commit and no object came or went since.
    pub fn inventory_tag(&self) -> Option<String> {
        let generation = self.store.generation();
        let view = self.view.load();
        let commit = view.as_ref().map(|v| v.commit.as_str());
        lock(&self.inventory_tag)
            .as_ref()
            .filter(|t| t.generation == generation && t.commit.as_deref() == commit)
            .map(|t| t.etag.clone())
    }

    /// `GET /.odi/v1/inventory`: the live artifacts of the applied commit whose bytes are
    /// stored here, and its ETag (a SHA-256 of the name, the commit and every item, so equal
    /// lists have equal tags across restarts).
    pub fn inventory(&self) -> (Inventory, String) {
        // Read before the objects are: a change while listing moves the generation on, so the
        // tag recorded below is never taken for a newer list than the one it was made from.
        let generation = self.store.generation();
        let view = self.view();
        let mut artifacts = Vec::new();
        let mut h = sha2::Sha256::new();
        h.update(self.config.name.as_bytes());
        h.update(b"\0");
        if let Some(v) = &view {
            h.update(v.commit.as_bytes());
            for c in v.network.catalogs.values() {
                for a in c.live().filter(|a| self.store.contains(&a.sha256.0)) {
                    for part in [c.name.as_bytes(), b"\0", a.path.as_str().as_bytes(), b"\0"] {
                        h.update(part);
                    }
                    h.update(a.sha256.0);
                    h.update(a.size.to_be_bytes());
                    artifacts.push(InventoryItem {
                        catalog: c.name.clone(),
                        path: a.path.to_string(),
                        sha256: a.sha256.to_hex(),
                        size: a.size,
                    });
                }
            }
        }
        let etag = format!("\"{}\"", hex::encode(&h.finalize()[..16]));
        let commit = view.map(|v| v.commit.clone());
        *lock(&self.inventory_tag) =
            Some(InventoryTag { commit: commit.clone(), generation, etag: etag.clone() });
        (Inventory { name: self.config.name.clone(), commit, artifacts }, etag)
    }

    /// Sets the gauges every mode has (store, readiness) before `/metrics` renders.
    pub fn update_gauges(&self, quota: Option<u64>) {
        let m = &self.metrics;
        let s = &self.store;
        m.set(
            "odi_store_bytes",
            "Bytes of complete objects in the store.",
            &[],
            s.object_bytes() as f64,
        );
        m.set("odi_store_objects", "Complete objects in the store.", &[], s.object_count() as f64);
        m.set(
            "odi_store_partial_bytes",
            "Bytes of downloads in progress.",
            &[],
            s.partial_bytes() as f64,
        );
        if let Some(q) = quota {
            m.set("odi_store_quota_bytes", "The relay's disk quota.", &[], q as f64);
        }
        let commit = self.view().map(|v| v.commit.clone());
        let ready = self.health().conditions(commit.as_deref())[0].status;
        m.set("odi_ready", "1 when the Ready condition holds.", &[], if ready { 1.0 } else { 0.0 });
    }
}

/// Builds a response on the blocking pool: documents that walk the store, the statistics
/// or every relay must not hold up the connection thread (see [`crate::http::server`]),
/// which serves many other connections.
pub async fn off_thread(f: impl FnOnce() -> Response<Body> + Send + 'static) -> Response<Body> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "building a response failed");
        response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

/// `base` plus or minus 10%, so a fleet does not pull in lockstep.
pub fn jitter(base: Duration) -> Duration {
    let f = rand::thread_rng().gen_range(0.9..1.1);
    base.mul_f64(f)
}
