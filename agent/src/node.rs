//! A running agent: the state both modes share (configuration, store, applied view, health,
//! metrics), its background loops (sync, reconcile, scrub), the HTTP endpoints common to both
//! modes, and explicit start and shutdown.
//!
//! The applied [`View`] is swapped atomically: a request reads one consistent commit and
//! assignment and never waits on a pull, a reconcile round or a probe.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use odi_network::assign::{assign, Assignment, Extras};
use odi_network::{Network, TrustAnchor};
use rand::Rng as _;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mode};
use crate::fetch::{self, Limits, RateLimiter};
use crate::http::{self as web, response, Body, Handler, ServerConfig};
use crate::metrics::Metrics;
use crate::reconcile::{self, Fetcher, Outcome, Target};
use crate::status::{rfc3339, Health, ShareStatus, StatusDoc, StoreStatus};
use crate::store::Store;
use crate::sync::{Applied, SyncConfig, Syncer};
use crate::{directory, relay};
use odi_network::units::Rate;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder or store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The mirror or state.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// A listener.
    #[error(transparent)]
    Server(#[from] crate::http::ServerError),
    /// The HTTP client.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// Mode-specific setup.
    #[error("{0}")]
    Setup(String),
}

/// One applied commit with everything derived from it.
#[derive(Debug)]
pub struct View {
    /// Commit id.
    pub commit: String,
    /// The network.
    pub network: Arc<Network>,
    /// Who holds what.
    pub assignment: Assignment,
    /// Hot extras the assignment was computed with.
    pub extras: Extras,
    /// When the commit was applied.
    pub applied_at: OffsetDateTime,
}

/// State shared by the loops and the request handler.
#[derive(Debug)]
pub struct Node {
    /// Configuration.
    pub config: Config,
    /// Content store.
    pub store: Store,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Health record for status.
    pub health: Mutex<Health>,
    /// Wakes the sync loop.
    pub sync_now: Notify,
    /// Wakes the reconcile loop.
    pub reconcile_now: Notify,
    /// Download settings.
    pub fetcher: Fetcher,
    /// Directory-mode state.
    pub directory: Option<directory::DirectoryState>,
    view: ArcSwapOption<View>,
}

impl Node {
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

    /// Health record, tolerating a poisoned lock (it holds plain data).
    pub fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs a newly applied commit (or new hot extras), computing the assignment off the
    /// async threads, then swapping the view in one step.
    pub async fn install(
        self: &Arc<Self>,
        commit: String,
        network: Arc<Network>,
        extras: Extras,
        applied_at: OffsetDateTime,
    ) {
        let n = network.clone();
        let e = extras.clone();
        let assignment =
            tokio::task::spawn_blocking(move || assign(&n, &e)).await.unwrap_or_default();
        self.view.store(Some(Arc::new(View { commit, network, assignment, extras, applied_at })));
        self.reconcile_now.notify_one();
    }

    /// The status document.
    pub fn status(&self) -> StatusDoc {
        let view = self.view();
        let commit = view.as_ref().map(|v| v.commit.clone());
        let health = self.health();
        let share = view.as_ref().map_or_else(ShareStatus::default, |v| self.share(v));
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
                quota: self.quota(view.as_deref()),
            },
            share,
            failures,
            directory: self.directory.as_ref().map(|d| d.status_json(self, view.as_deref())),
        }
    }

    /// What the node should hold and how much of it is missing, without building the
    /// download sources that a reconcile target carries (status is polled often).
    fn share(&self, view: &View) -> ShareStatus {
        let mut s = ShareStatus::default();
        let mut add = |a: &odi_network::model::Artifact| {
            s.artifacts += 1;
            s.bytes += a.size;
            if !self.store.contains(&a.sha256.0) {
                s.missing += 1;
            }
        };
        let net = &view.network;
        match self.config.mode {
            Mode::Relay => {
                if let Some(share) = view.assignment.share(&self.config.name) {
                    view.assignment
                        .artifacts_of(share)
                        .filter_map(|p| net.artifact(&p.catalog, &p.path))
                        .for_each(&mut add);
                }
            }
            Mode::Directory => {
                let held = net
                    .directories
                    .get(&self.config.name)
                    .map(|d| d.catalogs.as_slice())
                    .unwrap_or_default();
                held.iter()
                    .filter_map(|c| net.catalogs.get(c))
                    .flat_map(|c| c.live())
                    .for_each(&mut add);
            }
        }
        s
    }

    fn quota(&self, view: Option<&View>) -> Option<u64> {
        match self.config.mode {
            Mode::Relay => {
                view.and_then(|v| v.network.relays.get(&self.config.name)).map(|r| r.quota.0)
            }
            Mode::Directory => None,
        }
    }

    /// What the store should hold for `view`.
    pub fn target(&self, view: &View) -> Target {
        match self.config.mode {
            Mode::Relay => relay::target(&self.config.name, view),
            Mode::Directory => directory::target(&self.config.name, view),
        }
    }

    fn update_gauges(&self) {
        let m = &self.metrics;
        m.set(
            "odi_store_bytes",
            "Bytes of complete objects in the store.",
            &[],
            self.store.object_bytes() as f64,
        );
        m.set(
            "odi_store_objects",
            "Complete objects in the store.",
            &[],
            self.store.object_count() as f64,
        );
        m.set(
            "odi_store_partial_bytes",
            "Bytes of downloads in progress.",
            &[],
            self.store.partial_bytes() as f64,
        );
        if let Some(q) = self.quota(self.view().as_deref()) {
            m.set("odi_store_quota_bytes", "The relay's disk quota.", &[], q as f64);
        }
        if let Some(d) = &self.directory {
            d.export_metrics(m);
        }
        let ready =
            self.health().conditions(self.view().as_ref().map(|v| v.commit.as_str()))[0].status;
        m.set("odi_ready", "1 when the Ready condition holds.", &[], if ready { 1.0 } else { 0.0 });
    }

    async fn common(self: &Arc<Self>, req: &Request<Incoming>) -> Option<Response<Body>> {
        let path = req.uri().path();
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        Some(match path {
            "/healthz" if get => response::text(StatusCode::OK, "ok"),
            "/metrics" if get => {
                self.off_thread(|n| {
                    n.update_gauges();
                    let mut r = response::text(StatusCode::OK, n.metrics.render());
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    r
                })
                .await
            }
            "/.odi/v1/status" if get => {
                self.off_thread(|n| response::json(StatusCode::OK, &n.status())).await
            }
            "/.odi/v1/inventory" if get => {
                self.off_thread(|n| response::json(StatusCode::OK, &relay::inventory(n))).await
            }
            "/.odi/v1/sync" => self.trigger(req),
            _ if path.starts_with("/.odi/v1/blob/") => {
                self.blob(req, &path["/.odi/v1/blob/".len()..]).await
            }
            _ => return None,
        })
    }

    /// Builds a response on the blocking pool: documents that walk the store, the statistics
    /// or every relay must not hold up the connection thread (see [`crate::http::server`]),
    /// which serves many other connections.
    pub(crate) async fn off_thread(
        self: &Arc<Self>,
        f: impl FnOnce(&Arc<Self>) -> Response<Body> + Send + 'static,
    ) -> Response<Body> {
        let n = self.clone();
        tokio::task::spawn_blocking(move || f(&n)).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "building a response failed");
            response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })
    }

    fn trigger(&self, req: &Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return response::text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        }
        let Some(token) = &self.config.trigger_token else {
            return response::text(StatusCode::NOT_FOUND, "no sync trigger configured");
        };
        let given = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Constant-time comparison: the token is a secret and this endpoint is public.
        let ok = given.is_some_and(|g| {
            g.len() == token.len()
                && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if !ok {
            return response::text(StatusCode::UNAUTHORIZED, "bad or missing bearer token");
        }
        self.sync_now.notify_one();
        response::text(StatusCode::ACCEPTED, "sync scheduled")
    }

    /// `/.odi/v1/blob/<sha256>`: object bytes for peers (relays fetching from directories,
    /// linked directories from each other).
    async fn blob(&self, req: &Request<Incoming>, hex: &str) -> Response<Body> {
        let mut sha = [0u8; 32];
        if hex.len() != 64 || hex::decode_to_slice(hex, &mut sha).is_err() {
            return response::text(
                StatusCode::BAD_REQUEST,
                "expected /.odi/v1/blob/<64 hex digits>",
            );
        }
        let Some(info) = self.store.info(&sha) else {
            return response::text(StatusCode::NOT_FOUND, "object not held here");
        };
        let Some(file) = self.store.open_object(&sha).await else {
            return response::text(StatusCode::NOT_FOUND, "object not held here");
        };
        web::artifact::serve(
            req,
            file,
            &web::artifact::ArtifactMeta { size: info.size, sha256: sha, last_modified: None },
        )
        .await
    }
}

struct NodeHandler(Arc<Node>);

impl Handler for NodeHandler {
    fn handle(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            let node = &self.0;
            if let Some(r) = node.common(&req).await {
                return r;
            }
            match node.config.mode {
                Mode::Relay => relay::handle(node, req).await,
                Mode::Directory => directory::handle(node, req, remote).await,
            }
        })
    }

    fn has_plain_answers(&self) -> bool {
        self.0.config.mode == Mode::Directory
    }

    fn answer_plain(&self, req: &crate::http::PlainRequest<'_>, out: &mut Vec<u8>) -> bool {
        self.0.config.mode == Mode::Directory && directory::answer_plain(&self.0, req, out)
    }
}

/// A started agent.
#[derive(Debug)]
pub struct RunningAgent {
    /// Bound addresses, in the order of `listen`.
    pub addrs: Vec<SocketAddr>,
    /// Shared state (tests read it).
    pub node: Arc<Node>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    servers: Vec<crate::http::RunningServer>,
}

impl RunningAgent {
    /// Stops every loop and listener and waits for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for s in self.servers {
            s.join().await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        // Downloads answered while the listeners drained came after the statistics loop's
        // last flush.
        directory::flush_stats(&self.node).await;
    }

    /// Asks for a sync now (SIGHUP does this).
    pub fn trigger_sync(&self) {
        self.node.sync_now.notify_one();
    }
}

/// Starts an agent: opens its store and mirror, resumes the last applied commit, binds its
/// listeners and starts its loops. Returns once it is listening.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<RunningAgent, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartError::Setup(format!("{}: {e}", config.data_dir.display())))?;
    let store = Store::open(&config.data_dir.join("store"))?;
    let sync_config = SyncConfig {
        data_dir: config.data_dir.clone(),
        url: config.repo_url.clone(),
        branch: config.branch.clone(),
        anchor: TrustAnchor { pinned: config.root_keys.clone() },
        ca_pem: config.repo_ca_pem.clone(),
    };
    let (syncer, applied) = tokio::task::spawn_blocking(move || Syncer::open(sync_config))
        .await
        .map_err(|e| StartError::Setup(e.to_string()))??;
    let limits = Limits { stall_timeout: config.stall_timeout, ..Limits::default() };
    let client = fetch::client(&limits)?;
    let directory = match config.mode {
        Mode::Directory => {
            Some(directory::DirectoryState::open(&config).map_err(StartError::Setup)?)
        }
        Mode::Relay => None,
    };
    let node = Arc::new(Node {
        fetcher: Fetcher { client, limits, limiter: None, concurrency: config.concurrency },
        store,
        metrics: Metrics::default(),
        health: Mutex::new(Health::default()),
        sync_now: Notify::new(),
        reconcile_now: Notify::new(),
        directory,
        view: ArcSwapOption::empty(),
        config,
    });
    if let Some(a) = applied {
        install_applied(&node, a).await;
    }

    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for listen in &node.config.listen {
        let mut sc = ServerConfig::new(*listen);
        sc.tls = node.config.tls.clone();
        sc.threads = node.config.http_threads;
        let s = web::bind(sc, Arc::new(NodeHandler(node.clone())), shutdown.clone()).await?;
        addrs.push(s.local_addr);
        servers.push(s);
    }
    tracing::info!(mode = node.config.mode.as_str(), name = %node.config.name, addrs = ?addrs, "agent listening");

    let mut tasks = vec![
        tokio::spawn(sync_loop(node.clone(), syncer, shutdown.clone())),
        tokio::spawn(reconcile_loop(node.clone(), shutdown.clone())),
        tokio::spawn(scrub_loop(node.clone(), shutdown.clone())),
    ];
    if node.directory.is_some() {
        tasks.extend(directory::spawn_tasks(&node, &shutdown));
    } else {
        tasks.push(tokio::spawn(relay::hot_loop(node.clone(), shutdown.clone())));
    }
    Ok(RunningAgent { addrs, node, shutdown, tasks, servers })
}

async fn install_applied(node: &Arc<Node>, a: Applied) {
    let extras = node.view().map(|v| v.extras.clone()).unwrap_or_default();
    node.install(a.commit, a.network, extras, a.applied_at).await;
}

/// `base` plus or minus 10%, so a fleet does not pull in lockstep.
pub fn jitter(base: Duration) -> Duration {
    let f = rand::thread_rng().gen_range(0.9..1.1);
    base.mul_f64(f)
}

async fn sync_loop(node: Arc<Node>, syncer: Syncer, shutdown: CancellationToken) {
    let syncer = Arc::new(Mutex::new(syncer));
    loop {
        let s = syncer.clone();
        let result =
            tokio::task::spawn_blocking(move || s.lock().unwrap_or_else(|p| p.into_inner()).sync())
                .await;
        match result {
            Ok(Ok(Some(applied))) => {
                node.health().sync_error = None;
                node.metrics.inc(
                    "odi_sync_total",
                    "Repository syncs by outcome.",
                    &[("outcome", "applied")],
                    1.0,
                );
                install_applied(&node, applied).await;
            }
            Ok(Ok(None)) => {
                node.health().sync_error = None;
                node.metrics.inc(
                    "odi_sync_total",
                    "Repository syncs by outcome.",
                    &[("outcome", "unchanged")],
                    1.0,
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(reason = e.reason(), error = %e, "sync failed; keeping the last good commit");
                node.metrics.inc(
                    "odi_sync_total",
                    "Repository syncs by outcome.",
                    &[("outcome", e.reason())],
                    1.0,
                );
                let mut h = node.health();
                h.sync_error = Some((e.reason().into(), e.to_string()));
                h.error(e.to_string());
            }
            Err(e) => tracing::error!(error = %e, "sync task panicked"),
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(node.config.pull_interval)) => {}
            () = node.sync_now.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn reconcile_loop(node: Arc<Node>, shutdown: CancellationToken) {
    let mut retry = false;
    loop {
        let wait = if retry { node.config.retry_after } else { Duration::from_secs(3600) };
        tokio::select! {
            () = node.reconcile_now.notified() => {}
            () = tokio::time::sleep(jitter(wait)) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(view) = node.view() else { continue };
        node.health().reconciling = true;
        let target = node.target(&view);
        let observe = |w: &reconcile::Want, r: Result<usize, &[fetch::FetchError]>| match r {
            Ok(i) => {
                node.metrics.inc(
                    "odi_fetch_total",
                    "Artifact downloads by outcome.",
                    &[("outcome", "ok")],
                    1.0,
                );
                node.metrics.inc(
                    "odi_fetch_bytes_total",
                    "Bytes of verified artifacts downloaded.",
                    &[],
                    w.size as f64,
                );
                tracing::info!(artifact = %w.label, source = %w.sources.get(i).map(|s| s.url.as_str()).unwrap_or(""), "stored");
            }
            Err(errs) => {
                for e in errs {
                    node.metrics.inc(
                        "odi_fetch_total",
                        "Artifact downloads by outcome.",
                        &[("outcome", e.reason())],
                        1.0,
                    );
                }
                tracing::warn!(artifact = %w.label, errors = ?errs.iter().map(ToString::to_string).collect::<Vec<_>>(), "download failed");
            }
        };
        // The relay file's bandwidth caps all of this round's downloads together.
        let bandwidth: Option<Rate> =
            view.network.relays.get(&node.config.name).and_then(|r| r.bandwidth);
        let fetcher = Fetcher {
            limiter: bandwidth.map(|b| Arc::new(RateLimiter::new(b.bytes_per_second))),
            ..node.fetcher.clone()
        };
        let outcome: Outcome = tokio::select! {
            o = reconcile::reconcile(&node.store, &target, &fetcher, &observe) => o,
            () = shutdown.cancelled() => return,
        };
        retry = !outcome.complete();
        node.metrics.inc(
            "odi_reconcile_total",
            "Reconcile rounds by outcome.",
            &[("outcome", if retry { "incomplete" } else { "complete" })],
            1.0,
        );
        let mut h = node.health();
        if let Some(f) = outcome.failed.first() {
            h.error(format!("{}: {}", f.artifact, f.message));
        }
        h.reconciling = false;
        h.last_round = Some((view.commit.clone(), outcome));
    }
}

async fn scrub_loop(node: Arc<Node>, shutdown: CancellationToken) {
    let every = node.config.scrub_interval;
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(jitter(every)) => {}
            () = shutdown.cancelled() => return,
        }
        let report = node.store.scrub(Duration::from_millis(1)).await;
        node.metrics.inc(
            "odi_scrub_quarantined_total",
            "Objects whose bytes no longer matched their hash.",
            &[],
            report.quarantined as f64,
        );
        if report.quarantined > 0 {
            node.health()
                .error(format!("scrub quarantined {} corrupted objects", report.quarantined));
            node.reconcile_now.notify_one();
        }
    }
}

/// Runs an agent until SIGINT or SIGTERM, pulling at once on SIGHUP; then shuts down cleanly.
pub async fn run_until_signalled(config: Config) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let shutdown = CancellationToken::new();
    let agent = start(config, shutdown.clone()).await?;
    let sig =
        |k| signal(k).map_err(|e| StartError::Setup(format!("installing signal handler: {e}")));
    let (mut hup, mut term, mut int) =
        (sig(SignalKind::hangup())?, sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: pulling the repository now");
                agent.trigger_sync();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    agent.stop().await;
    Ok(())
}
