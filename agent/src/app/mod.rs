//! The composition root: the one place that knows both modes. It opens the node, picks the
//! role from the configuration, builds the router ([`routes`], the one list of the HTTP
//! surface), binds the listeners, starts the loops ([`loops`] and the role's own), and stops
//! everything in order.
//!
//! Below this module, `relay` and `directory` never import each other, and `node`, `http` and
//! the wire documents name no mode (see ARCHITECTURE.md; a test enforces the first rule).

pub mod loops;
pub mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use odi_network::TrustAnchor;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mode};
use crate::directory::{DirectoryError, DirectoryMode};
use crate::fetch::{self, Limits};
use crate::http::{self as web, PlainAnswer, ServerConfig, TlsSettings};
use crate::node::{Node, View};
use crate::reconcile::{Fetcher, Target};
use crate::relay::RelayMode;
use crate::status::{ShareStatus, StatusDoc};
use crate::store::Store;
use crate::sync::{SyncConfig, Syncer};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder could not be created.
    #[error("data folder {path}: {source}")]
    DataDir {
        /// The configured `data_dir`.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The content store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The repository mirror or the persisted trust state.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// Opening the mirror panicked (a bug, reported rather than unwound into `main`).
    #[error("opening the repository mirror failed: {0}")]
    SyncTask(#[from] tokio::task::JoinError),
    /// A listener.
    #[error(transparent)]
    Server(#[from] crate::http::ServerError),
    /// The first certificate placeholder of `[tls.acme]`.
    #[error(transparent)]
    Acme(#[from] crate::http::acme::AcmeError),
    /// The HTTP client.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// Directory-mode state.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// What the agent is, with its mode's state.
#[derive(Debug, Clone)]
pub enum Role {
    /// Holds its share of the assignment and serves bytes.
    Relay(Arc<RelayMode>),
    /// Holds whole catalogs, probes relays and redirects clients.
    Directory(Arc<DirectoryMode>),
}

impl Role {
    /// The shared node.
    pub fn node(&self) -> &Arc<Node> {
        match self {
            Role::Relay(r) => &r.node,
            Role::Directory(d) => &d.node,
        }
    }

    /// What the store should hold at `view`.
    pub fn target(&self, view: &View) -> Target {
        match self {
            Role::Relay(r) => r.target(view),
            Role::Directory(d) => d.target(view),
        }
    }

    fn share(&self, view: &View) -> ShareStatus {
        match self {
            Role::Relay(r) => r.share(view),
            Role::Directory(d) => d.share(view),
        }
    }

    fn quota(&self, view: Option<&View>) -> Option<u64> {
        match self {
            Role::Relay(r) => r.quota(view),
            Role::Directory(_) => None,
        }
    }

    /// The whole status document.
    pub fn status(&self) -> StatusDoc {
        let node = self.node();
        let view = node.view();
        let share = view.as_deref().map(|v| self.share(v)).unwrap_or_default();
        let mut doc = node.status(share, self.quota(view.as_deref()));
        if let Role::Directory(d) = self {
            doc.directory = Some(d.status_section(view.as_deref()));
        }
        doc
    }

    /// Sets every gauge before `/metrics` renders.
    pub fn update_gauges(&self) {
        let node = self.node();
        node.update_gauges(self.quota(node.view().as_deref()));
        if let Role::Directory(d) = self {
            d.export_metrics();
        }
    }

    /// The plain-path answerer: directories answer redirects from their routing table; relays
    /// have none (every relay request goes through the router).
    fn plain(&self) -> Option<Arc<dyn PlainAnswer>> {
        match self {
            Role::Relay(r) => Some(r.clone()),
            Role::Directory(d) => Some(d.clone()),
        }
    }

    fn spawn(&self, shutdown: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        match self {
            Role::Relay(r) => {
                vec![tokio::spawn(crate::relay::hot_loop(r.clone(), shutdown.clone()))]
            }
            Role::Directory(d) => crate::directory::tasks::spawn(d, shutdown),
        }
    }

    async fn stop(&self) {
        if let Role::Directory(d) = self {
            d.stop().await;
        }
    }
}

/// A started agent.
#[derive(Debug)]
pub struct RunningAgent {
    /// Bound addresses, in the order of `listen`.
    pub addrs: Vec<SocketAddr>,
    /// Shared state (tests read it).
    pub node: Arc<Node>,
    /// The mode and its state (tests read it).
    pub role: Role,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    servers: Vec<crate::http::RunningServer>,
}

impl RunningAgent {
    /// Stops the listeners (letting requests in flight finish), then every loop, then the
    /// role's own last work.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for s in self.servers {
            s.join().await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.role.stop().await;
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
        .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
    raise_fd_limit(config.max_connections * config.listen.len());
    let store = Store::open(&config.data_dir.join("store"))?;
    let sync_config = SyncConfig {
        data_dir: config.data_dir.clone(),
        url: config.repo_url.clone(),
        branch: config.branch.clone(),
        anchor: TrustAnchor { pinned: config.root_keys.clone() },
        ca_pem: config.repo_ca_pem.clone(),
    };
    let (syncer, applied) =
        tokio::task::spawn_blocking(move || Syncer::open(sync_config)).await??;
    let limits = Limits { stall_timeout: config.stall_timeout, ..Limits::default() };
    let client = fetch::client(&limits, &config.extra_roots)?;
    let fetcher = Fetcher { client, limits, limiter: None, concurrency: config.concurrency };
    let node = Arc::new(Node::new(config, store, fetcher));
    let role = match node.config.mode {
        Mode::Relay => Role::Relay(Arc::new(RelayMode { node: node.clone() })),
        Mode::Directory => Role::Directory(Arc::new(DirectoryMode::open(node.clone())?)),
    };
    if let Some(a) = applied {
        loops::install_applied(&node, a).await;
        // A commit resumed after its snapshot or root expired serves (or not) by policy from
        // the first request on.
        loops::check_expiry(&node);
    }

    let router = routes::router(&role);
    let plain = role.plain();
    let mut tasks = Vec::new();
    let tls = match &node.config.tls {
        Some(t) => {
            if let Some(acme) = &t.acme {
                web::acme::ensure_placeholder(&t.files, &acme.names)?;
            }
            let certs =
                web::tls::start(&t.files, web::tls::DEFAULT_POLL_INTERVAL, shutdown.child_token())
                    .map_err(web::ServerError::from)?;
            if let Some(acme) = &t.acme {
                tasks.push(web::acme::spawn(
                    acme.clone(),
                    Arc::clone(&certs),
                    shutdown.child_token(),
                ));
            }
            Some(TlsSettings::new(certs, t.hsts, t.http2).map_err(web::ServerError::from)?)
        }
        None => None,
    };
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for listen in &node.config.listen {
        let mut sc = ServerConfig::new(*listen);
        // `[::]:p` next to an IPv4 address on port p: each family on its own socket.
        sc.v6_only = listen.is_ipv6()
            && listen.port() != 0
            && node.config.listen.iter().any(|o| o.is_ipv4() && o.port() == listen.port());
        sc.tls = tls.clone();
        sc.threads = node.config.http_threads;
        sc.max_connections = node.config.max_connections;
        sc.max_connections_per_address = node.config.max_connections_per_address;
        let s = web::bind(sc, router.clone(), plain.clone(), shutdown.clone()).await?;
        addrs.push(s.local_addr);
        servers.push(s);
    }
    let mode = node.config.mode.as_str();
    tracing::info!(mode, name = %node.config.name, addrs = ?addrs, "agent listening");

    tasks.extend([
        tokio::spawn(loops::sync_loop(node.clone(), syncer, shutdown.clone())),
        tokio::spawn(loops::reconcile_loop(node.clone(), role.clone(), shutdown.clone())),
        tokio::spawn(loops::scrub_loop(node.clone(), shutdown.clone())),
    ]);
    tasks.extend(role.spawn(&shutdown));
    Ok(RunningAgent { addrs, node, role, shutdown, tasks, servers })
}

/// Raises the soft limit on open files towards the hard one, so that `connections` sockets
/// (plus the store's files) fit: systemd and most shells start services at 1,024, below the
/// default of 4,096 connections per listener. Logged, never fatal.
fn raise_fd_limit(connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    let want = u64::try_from(connections).unwrap_or(u64::MAX).saturating_add(1024);
    let soft = lim.current.unwrap_or(u64::MAX);
    if soft >= want {
        return;
    }
    let new = lim.maximum.map_or(want, |hard| hard.min(want));
    if new <= soft {
        tracing::warn!(soft, want, "open-file limit is below what max_connections needs");
        return;
    }
    lim.current = Some(new);
    match setrlimit(Resource::Nofile, lim) {
        Ok(()) => tracing::info!(from = soft, to = new, "raised the open-file limit"),
        Err(e) => tracing::warn!(error = %e, soft, want, "cannot raise the open-file limit"),
    }
}

/// Runs an agent until SIGINT or SIGTERM, pulling at once on SIGHUP; then shuts down cleanly.
pub async fn run_until_signalled(config: Config) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let shutdown = CancellationToken::new();
    let agent = start(config, shutdown.clone()).await?;
    let sig = |k| signal(k).map_err(StartError::Signals);
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
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
