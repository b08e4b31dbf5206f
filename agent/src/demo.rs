//! `odi demo`: a whole ODI network on loopback, from this repository alone and without the
//! internet, for a newcomer to try with the clients they already have.
//!
//! It generates fresh keys and the seed's topology (a meta-directory as the entry point, two
//! linked directories holding the catalogs, three relays), writes real catalogs to a local
//! origin served in-process, commits the signed network to a git repository, starts every
//! node as its own `odi agent` process, waits until all are Ready, prints how to use them,
//! and stops them all cleanly on Ctrl-C or SIGTERM.
//!
//! Each node is a separate process (not a task in this one) so that a person can `kill -9`
//! a relay the demo printed and watch the network route around it.
//!
//! With `--tls` every node speaks HTTPS (HTTP/2, HSTS) with a certificate from a local CA made
//! for the run ([`tls`]), kept at `DIR/ca.pem`; agents trust it for their own probes and
//! fetches, and the printed commands pass it to each client.

pub mod archive;
pub mod catalogs;
pub mod tls;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{Response, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};
use odi_network::builder::{commit_all, BuildError, NetworkBuilder};
use odi_network::raw::{DirectoryFile, DirectoryKind, RelayFile};
use odi_network::units::ByteSize;
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

pub use catalogs::{demo_catalogs, demo_catalogs_with, DemoCatalog, Layout};

use crate::http::file::{self, ArtifactMeta};
use crate::http::{response, Body, ServerConfig};
use crate::status::StatusDoc;

/// Where clients reach the network unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Copies of each artifact.
pub const REPLICAS: u32 = 2;
/// How often agents pull the repository: short, so an edit shows within seconds.
pub const PULL_INTERVAL: &str = "2s";
/// How long every node gets to become Ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long agents get to stop after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Printed once every node is Ready; the line a script can wait for.
pub const READY_LINE: &str = "The network is up. Press Ctrl-C to stop every node.";

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The entry point: holds only references to the directories.
    Meta,
    /// Holds catalogs and redirects to relays.
    Directory,
    /// Holds its share of artifacts and serves them.
    Relay,
}

impl Role {
    /// As printed in the node table (one word, so the table splits on whitespace).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Meta => "meta-directory",
            Role::Directory => "directory",
            Role::Relay => "relay",
        }
    }
}

/// The meta-directory clients use.
pub const META: &str = "odi-global";
/// The directories: (name, region, linked peer).
pub const DIRECTORIES: [(&str, &str, &str); 2] =
    [("everest", "eu", "shasta"), ("shasta", "us", "everest")];
/// One relay's offer in the demo.
#[derive(Debug, Clone, Copy)]
pub struct RelaySpec {
    /// Its name in the network, the node table and the `agents/<name>/` folder.
    pub name: &'static str,
    /// Written into its relay file and shown in the node table; `eu` or `us`, as directories.
    pub region: &'static str,
    /// Quota in MiB; different per relay, so the assignment's weighting shows.
    pub quota_mib: u64,
    /// Tags it subscribes to.
    pub tags: &'static [&'static str],
    /// Directories it works with, preferred first.
    pub directories: &'static [&'static str],
}

/// The three relays the demo network declares, each started as its own agent.
///
/// `pypi` (tag `python`) and `maven` (tag `java`) have exactly two subscribers each, so with
/// two replicas each of those relays holds the whole catalog: the simple index links the
/// wheel relatively, and a relay that served the page must hold the wheel too.
pub const RELAYS: [RelaySpec; 3] = [
    RelaySpec {
        name: "odi-r1-osuosl",
        region: "us",
        quota_mib: 64,
        tags: &["generic", "python", "java"],
        directories: &["shasta", "everest"],
    },
    RelaySpec {
        name: "odi-sonic",
        region: "us",
        quota_mib: 32,
        tags: &["generic", "python"],
        directories: &["shasta", "everest"],
    },
    RelaySpec {
        name: "odi-ocf-berkeley",
        region: "eu",
        quota_mib: 16,
        tags: &["generic", "java"],
        directories: &["everest", "shasta"],
    },
];

/// Every node: (name, role, region), entry point first.
pub fn nodes() -> Vec<(&'static str, Role, &'static str)> {
    let mut out = vec![(META, Role::Meta, "global")];
    out.extend(DIRECTORIES.iter().map(|(n, r, _)| (*n, Role::Directory, *r)));
    out.extend(RELAYS.iter().map(|r| (r.name, Role::Relay, r.region)));
    out
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file or folder.
    #[error("{path}: {reason}")]
    Io {
        /// The demo folder, or the file or folder in it, that could not be created or written.
        path: PathBuf,
        /// Why (not `source`: the message already says it, and anyhow would repeat it).
        reason: std::io::Error,
    },
    /// `--dir` already holds something.
    #[error("{0} is not empty; give --dir a new or empty folder")]
    DirNotEmpty(PathBuf),
    /// The entry point's address is taken.
    #[error("cannot listen on {addr}: {reason} (choose another with --listen)")]
    Listen {
        /// The `--listen` address, bound once up front so a taken port fails before any work.
        addr: SocketAddr,
        /// What the operating system said.
        reason: std::io::Error,
    },
    /// A catalog layout is wrong (a bug in a layout function).
    #[error("demo catalog: {0}")]
    Catalog(String),
    /// Writing the network.
    #[error("writing the network: {0}")]
    Build(#[from] BuildError),
    /// Setting the git identity in the demo repository, so a person can commit to it.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The origin server.
    #[error("starting the origin: {0}")]
    Origin(#[from] crate::http::ServerError),
    /// Runtime, signals, HTTP client or the running program's path.
    #[error("{0}")]
    Setup(String),
    /// An agent could not be started.
    #[error("cannot start {name}: {reason}")]
    Spawn {
        /// The node whose `odi agent` process could not be started.
        name: String,
        /// What the operating system said.
        reason: std::io::Error,
    },
    /// An agent exited while the network was starting.
    #[error("{name} (pid {pid}) exited during start-up ({status}); see its log {}{tail}", log.display())]
    Exited {
        /// The first node found to have exited; the rest are stopped as the demo gives up.
        name: String,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log, for the terminal.
        tail: String,
    },
    /// An agent did not become Ready in time.
    #[error("{name} did not become ready within {}s ({why}); see its log {}{tail}", timeout.as_secs(), log.display())]
    NotReady {
        /// The first node still not Ready at the deadline (others may be waiting too).
        name: String,
        /// The last reason it gave.
        why: String,
        /// How long it had.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |reason| DemoError::Io { path: path.to_owned(), reason }
}

/// `odi demo` options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Address of the entry point (the meta-directory).
    pub listen: SocketAddr,
    /// Keep everything here; without it a temporary folder is used and removed at exit.
    pub dir: Option<PathBuf>,
    /// Every node over HTTPS, with a local CA at `DIR/ca.pem`.
    pub tls: bool,
}

/// Runs the demo until SIGINT or SIGTERM; returns once every node has stopped.
pub fn run(options: DemoOptions) -> Result<(), DemoError> {
    // Two workers are plenty for an origin and a status poller, and leave cores to the agents.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DemoError::Setup(format!("starting the async runtime: {e}")))?;
    rt.block_on(run_async(options))
}

async fn run_async(options: DemoOptions) -> Result<(), DemoError> {
    // Signals first: a Ctrl-C at any later moment must still stop the children we started.
    let mut stop = StopSignal::install()?;
    let exe = std::env::current_exe()
        .map_err(|e| DemoError::Setup(format!("cannot find the running odi binary: {e}")))?;
    let work = WorkDir::create(options.dir.as_deref())?;
    let root = work.path.clone();

    // Fail before doing any work if the entry point's port is taken.
    drop(
        TcpListener::bind(options.listen)
            .map_err(|reason| DemoError::Listen { addr: options.listen, reason })?,
    );

    println!("Generating the demo network in {} ...", root.display());
    let origin_dir = root.join("origin");
    let catalogs = {
        let dir = origin_dir.clone();
        tokio::task::spawn_blocking(move || demo_catalogs(&dir))
            .await
            .map_err(|e| DemoError::Setup(e.to_string()))??
    };
    let shutdown = CancellationToken::new();
    let origin_router = Arc::new(Origin::new(origin_dir.clone()).await).router();
    let origin = crate::http::bind(
        ServerConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        crate::http::layers::standard(origin_router, Duration::from_secs(30)),
        None,
        shutdown.clone(),
    )
    .await?;
    let origin_url = format!("http://{}/", origin.local_addr);

    let ca = if options.tls { Some(tls::DemoCa::create(&root.join("ca.pem"))?) } else { None };
    let planned = plan_nodes(options.listen, ca.is_some())?;
    let urls: HashMap<&str, String> = planned.iter().map(|p| (p.name, p.url.clone())).collect();
    let builder =
        demo_network(&catalogs, &origin_url, |n| urls.get(n).cloned().unwrap_or_default())?;
    let repo = root.join("network");
    builder.write(&repo)?;
    commit_all(&repo, "demo network: fresh keys, three catalogs, two directories, three relays")?;
    // So that `git commit` works for a person without a global git identity.
    let mut git_config = git2::Repository::open(&repo)?.config()?;
    git_config.set_str("user.name", "ODI demo")?;
    git_config.set_str("user.email", "demo@localhost")?;
    let keys = root.join("keys");
    builder.write_keys(&keys)?;

    let mut fleet = Fleet::default();
    println!("Starting {} agents ...", planned.len());
    for p in &planned {
        let dir = root.join("agents").join(p.name);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let config = dir.join("agent.toml");
        let mut text = agent_config(p);
        if let Some(ca) = &ca {
            ca.issue(&dir.join("tls"), p.listen.ip())?;
            text = with_tls(&text);
        }
        std::fs::write(&config, text).map_err(io_err(&config))?;
        fleet.spawn(&exe, p, &config, &dir.join("agent.log"))?;
    }

    let bar = if std::io::stdout().is_terminal() {
        ProgressBar::new(fleet.procs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {pos}/{len} nodes ready {wide_msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = tokio::select! {
        r = wait_ready(&mut fleet, START_TIMEOUT, &bar, ca.as_ref()) => r,
        () = stop.recv() => {
            bar.finish_and_clear();
            println!("Interrupted while starting; stopping the agents.");
            fleet.stop();
            shutdown.cancel();
            return Ok(());
        }
    };
    bar.finish_and_clear();
    started?;

    let ca_file = ca.as_ref().map(|_| root.join("ca.pem"));
    let summary =
        summary(&root, options.dir.is_some(), &origin_url, &fleet, &exe, ca_file.as_deref());
    print!("{summary}");
    let readme = root.join("README.txt");
    if let Err(e) = std::fs::write(&readme, &summary) {
        tracing::warn!(path = %readme.display(), error = %e, "cannot write the demo README");
    }
    println!("{READY_LINE}");

    loop {
        tokio::select! {
            () = stop.recv() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                for (p, status) in fleet.reap() {
                    println!("{} (pid {}) exited ({status}); the other nodes carry on. Its log: {}", p.name, p.pid, p.log.display());
                }
            }
        }
    }
    println!("Stopping {} agents ...", fleet.live());
    fleet.stop();
    shutdown.cancel();
    origin.join().await;
    if options.dir.is_some() {
        println!("Stopped. Everything is kept in {}.", root.display());
    } else {
        println!("Stopped. Removed {}.", root.display());
    }
    Ok(())
}

/// Builds the demo network: `catalogs` pulled from `origin_base`, every node at `url_of(name)`.
pub fn demo_network(
    catalogs: &[DemoCatalog],
    origin_base: &str,
    url_of: impl Fn(&str) -> String,
) -> Result<NetworkBuilder, DemoError> {
    // With a snapshot role, as a real network has: the demo's nodes verify the snapshot of
    // every commit (valid for a day; a demo that runs longer reports SnapshotExpired and, by
    // the default policy, keeps serving).
    let mut b = NetworkBuilder::new()?.with_snapshot()?;
    b.snapshot_valid = time::Duration::days(1);
    for c in catalogs {
        b.catalogs.insert(c.name.clone(), c.file(origin_base, REPLICAS));
    }
    let catalog_names: Vec<String> = catalogs.iter().map(|c| c.name.clone()).collect();
    let directory = |name: &str,
                     region: &str,
                     kind,
                     catalogs: Vec<String>,
                     links: Vec<String>,
                     references: Vec<String>| DirectoryFile {
        serial: 1,
        name: name.into(),
        url: url_of(name),
        region: region.into(),
        kind,
        contact: Some(format!("ops@{name}.example.org")),
        catalogs,
        links,
        references,
    };
    b.directories.insert(
        META.into(),
        directory(
            META,
            "global",
            DirectoryKind::Meta,
            vec![],
            vec![],
            DIRECTORIES.iter().map(|(n, ..)| (*n).to_owned()).collect(),
        ),
    );
    for (name, region, peer) in DIRECTORIES {
        b.directories.insert(
            name.into(),
            directory(
                name,
                region,
                DirectoryKind::Directory,
                catalog_names.clone(),
                vec![peer.into()],
                vec![],
            ),
        );
    }
    for r in RELAYS {
        b.relays.insert(
            r.name.into(),
            RelayFile {
                serial: 1,
                name: r.name.into(),
                url: url_of(r.name),
                region: r.region.into(),
                contact: format!("mirror-admin@{}.example.org", r.name),
                quota: ByteSize(r.quota_mib << 20),
                bandwidth: None,
                directories: r.directories.iter().map(|d| (*d).to_owned()).collect(),
                catalogs: vec![],
                tags: r.tags.iter().map(|t| (*t).to_owned()).collect(),
                location: None,
                countries: vec![],
                exclude_countries: vec![],
            },
        );
    }
    Ok(b)
}

/// A node with its address.
#[derive(Debug, Clone)]
struct Planned {
    name: &'static str,
    role: Role,
    region: &'static str,
    listen: SocketAddr,
    url: String,
}

/// The entry point at `listen`, every other node on a free loopback port; `https` URLs with
/// `tls`.
fn plan_nodes(listen: SocketAddr, tls: bool) -> Result<Vec<Planned>, DemoError> {
    let scheme = if tls { "https" } else { "http" };
    let mut out = Vec::new();
    for (name, role, region) in nodes() {
        let addr = if role == Role::Meta {
            listen
        } else {
            // Bound and released: another program could take it before the agent binds, which
            // the agent then reports clearly; good enough on a person's machine.
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| DemoError::Setup(format!("no free loopback port: {e}")))?;
            l.local_addr().map_err(|e| DemoError::Setup(format!("no free loopback port: {e}")))?
        };
        // A wildcard listen address is reachable on loopback, which is what URLs need here.
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        } else {
            addr
        };
        let url = format!("{scheme}://{host}/");
        out.push(Planned { name, role, region, listen: addr, url });
    }
    Ok(out)
}

/// The agent configuration of a node; paths are relative to the config file, so a kept
/// `--dir` still reads well when moved.
fn agent_config(p: &Planned) -> String {
    let mode = if p.role == Role::Relay { "relay" } else { "directory" };
    let mut text = format!(
        "# Written by `odi demo` for {name} ({role}, region {region}).\n\
         mode = \"{mode}\"\n\
         name = \"{name}\"\n\
         data_dir = \"data\"\n\
         listen = [\"{listen}\"]\n\
         \n\
         [repository]\n\
         url = \"../../network\"\n\
         branch = \"main\"\n\
         root_keys = [\"../../keys/root.pub\"]\n\
         interval = \"{PULL_INTERVAL}\"\n\
         \n\
         [reconcile]\n\
         retry_after = \"2s\"\n\
         stall_timeout = \"10s\"\n",
        name = p.name,
        role = p.role.as_str(),
        region = p.region,
        listen = p.listen,
    );
    if p.role != Role::Relay {
        text.push_str("\n[directory]\nprobe_interval = \"2s\"\n");
    }
    text
}

/// `config` with HTTPS: the node's certificate (written by [`tls::DemoCa::issue`]) and the
/// demo CA trusted for its own probes and fetches. `ca_file` is a top-level key, so it goes
/// before the first table.
fn with_tls(config: &str) -> String {
    let (top, tables) = config.split_at(config.find("\n[").map_or(config.len(), |i| i + 1));
    format!(
        "{top}ca_file = \"../../ca.pem\"\n{tables}\n[tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n"
    )
}

/// One started agent.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    role: Role,
    region: &'static str,
    url: String,
    pid: u32,
    log: PathBuf,
    child: Child,
    /// Set once the process has been waited for; its pid may then belong to someone else.
    exited: Option<ExitStatus>,
}

/// The agents; stopping them is also what dropping does, so no error path leaves any behind.
#[derive(Debug, Default)]
struct Fleet {
    procs: Vec<Proc>,
}

impl Fleet {
    fn spawn(
        &mut self,
        exe: &Path,
        p: &Planned,
        config: &Path,
        log: &Path,
    ) -> Result<(), DemoError> {
        let out = std::fs::File::create(log).map_err(io_err(log))?;
        let err = out.try_clone().map_err(io_err(log))?;
        let mut cmd = Command::new(exe);
        cmd.arg("agent")
            .arg("--config")
            .arg(config)
            .env("ODI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // Own process group: a terminal's Ctrl-C reaches only the demo, which then stops the
        // agents itself, in order, and waits for them.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child =
            cmd.spawn().map_err(|reason| DemoError::Spawn { name: p.name.into(), reason })?;
        self.procs.push(Proc {
            name: p.name,
            role: p.role,
            region: p.region,
            url: p.url.clone(),
            pid: child.id(),
            log: log.to_owned(),
            child,
            exited: None,
        });
        Ok(())
    }

    /// Agents that exited since the last call, with how.
    fn reap(&mut self) -> Vec<(&Proc, ExitStatus)> {
        let mut newly = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            if p.exited.is_none() {
                if let Ok(Some(status)) = p.child.try_wait() {
                    p.exited = Some(status);
                    newly.push((i, status));
                }
            }
        }
        newly.into_iter().map(|(i, s)| (&self.procs[i], s)).collect()
    }

    fn live(&self) -> usize {
        self.procs.iter().filter(|p| p.exited.is_none()).count()
    }

    /// SIGTERM to every live agent, then waits; SIGKILL for any still running after
    /// [`STOP_TIMEOUT`]. Only unreaped children are signalled, so a pid is never reused.
    fn stop(&mut self) {
        self.reap();
        for p in self.procs.iter_mut().filter(|p| p.exited.is_none()) {
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(p.pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !sent {
                // No `kill` program (or it failed): SIGKILL through std rather than leave it.
                let _ = p.child.kill();
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.live() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            self.reap();
        }
        for p in self.procs.iter_mut().filter(|p| p.exited.is_none()) {
            tracing::warn!(node = p.name, pid = p.pid, "did not stop after SIGTERM; killing it");
            let _ = p.child.kill();
            p.exited = p.child.wait().ok();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if self.live() > 0 {
            self.stop();
        }
    }
}

/// Polls every node's status until all are Ready; fails naming the node and its log.
async fn wait_ready(
    fleet: &mut Fleet,
    timeout: Duration,
    bar: &ProgressBar,
    ca: Option<&tls::DemoCa>,
) -> Result<(), DemoError> {
    // Not `fetch::http_client`: the demo's nodes are on loopback, so this client never goes
    // through a proxy from the environment, which that builder honours for real networks.
    let mut client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2));
    if let Some(ca) = ca {
        client = client.add_root_certificate(ca.certificate()?);
    }
    let client = client.build().map_err(|e| DemoError::Setup(format!("HTTP client: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut why: HashMap<&str, String> = HashMap::new();
    loop {
        if let Some((p, status)) = fleet.reap().into_iter().next() {
            return Err(DemoError::Exited {
                name: p.name.into(),
                pid: p.pid,
                status,
                log: p.log.clone(),
                tail: tail(&p.log),
            });
        }
        let mut pending = Vec::new();
        for p in &fleet.procs {
            let reason = match client.get(format!("{}.odi/v1/status", p.url)).send().await {
                Ok(r) => match r.json::<StatusDoc>().await {
                    Ok(doc) if doc.ready() => continue,
                    Ok(doc) => {
                        let ready = doc
                            .conditions
                            .iter()
                            .find(|c| c.kind == "Ready")
                            .map(|c| format!("{}: {}", c.reason, c.message))
                            .unwrap_or_default();
                        match doc.last_error {
                            Some(e) => format!("{ready}; last error {e}"),
                            None => ready,
                        }
                    }
                    Err(e) => format!("unreadable status: {e}"),
                },
                Err(e) => format!("status not reachable yet: {e}"),
            };
            why.insert(p.name, reason);
            pending.push(p);
        }
        bar.set_position((fleet.procs.len() - pending.len()) as u64);
        let Some(first) = pending.first() else { return Ok(()) };
        bar.set_message(format!(
            "waiting for {}",
            pending.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        ));
        if Instant::now() >= deadline {
            return Err(DemoError::NotReady {
                name: first.name.into(),
                why: why.remove(first.name).unwrap_or_default(),
                timeout,
                log: first.log.clone(),
                tail: tail(&first.log),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The last lines of a log, indented, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(8);
    lines[start..].iter().fold(String::new(), |mut s, l| {
        let _ = write!(s, "\n    {l}");
        s
    })
}

/// How to call this binary in printed commands: `odi` when that is what PATH finds.
fn odi_command(exe: &Path) -> String {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("odi"))
                .any(|c| c.canonicalize().ok() == exe.canonicalize().ok())
        })
        .unwrap_or(false);
    if on_path {
        "odi".into()
    } else {
        exe.display().to_string()
    }
}

/// What a person needs: the nodes, then commands to paste.
fn summary(
    root: &Path,
    kept: bool,
    origin_url: &str,
    fleet: &Fleet,
    exe: &Path,
    ca: Option<&Path>,
) -> String {
    use catalogs::{
        HELLO, HELLO_EXPUNGED, HELLO_LARGE, HELLO_MEDIUM, HELLO_README, MAVEN, MAVEN_COORDS, PYPI,
        PYPI_PROJECT,
    };
    let odi = odi_command(exe);
    let entry = fleet
        .procs
        .iter()
        .find(|p| p.role == Role::Meta)
        .map(|p| p.url.clone())
        .unwrap_or_default();
    let relay = fleet.procs.iter().find(|p| p.role == Role::Relay);
    let mut s = String::new();
    // The thing to open first: the landing page (catalogs, how to download, status, charts).
    let _ = writeln!(s, "\nOpen in a browser: {entry}\n");
    let _ = writeln!(
        s,
        "ODI demo network: {} nodes on loopback, signed with fresh keys.\n",
        fleet.procs.len()
    );
    let _ = writeln!(s, "  {:<18} {:<15} {:<7} {:<28} PID", "NAME", "ROLE", "REGION", "URL");
    let _ = writeln!(
        s,
        "  {:<18} {:<15} {:<7} {:<28} {} (this process)",
        "origin",
        "origin",
        "-",
        origin_url,
        std::process::id()
    );
    for p in &fleet.procs {
        let _ = writeln!(
            s,
            "  {:<18} {:<15} {:<7} {:<28} {}",
            p.name,
            p.role.as_str(),
            p.region,
            p.url,
            p.pid
        );
    }
    let r = format!("{entry}r");
    let _ = writeln!(s, "\nEntry point (the meta-directory {META}): {entry}");
    // With the demo CA, each client is told to trust it on its own command line.
    let jks = root.join("ca.jks");
    let (curl, wget, aria2c, pip, mvn) = match ca {
        Some(ca) => {
            let ca = ca.display();
            (
                format!("curl --cacert {ca}"),
                format!("wget --ca-certificate={ca}"),
                format!("aria2c --ca-certificate={ca}"),
                format!("pip download --cert {ca}"),
                format!(
                    "mvn -Djavax.net.ssl.trustStore={} -Djavax.net.ssl.trustStorePassword=odi-demo",
                    jks.display()
                ),
            )
        }
        None => {
            ("curl".into(), "wget".into(), "aria2c".into(), "pip download".into(), "mvn".into())
        }
    };
    let _ = writeln!(
        s,
        "\nDownload through the network (each request is redirected to a relay holding the bytes):\n  \
         {curl} -L {r}/{HELLO}/{HELLO_README}\n  \
         {curl} -L -O {r}/{HELLO}/{HELLO_LARGE}\n  \
         {curl} -L -C - -O {r}/{HELLO}/{HELLO_LARGE}        # resume an interrupted download\n  \
         {wget} {r}/{HELLO}/{HELLO_MEDIUM}\n  \
         {aria2c} -x2 -s4 -k1M --follow-metalink=mem {r}/{HELLO}/{HELLO_LARGE}.meta4   # Metalink: pieces from several relays, each checked\n  \
         {curl} -L -I {r}/{HELLO}/{HELLO_EXPUNGED}        # expunged: 410 Gone\n  \
         {pip} --no-deps --index-url {r}/{PYPI}/simple/ {PYPI_PROJECT}\n  \
         {mvn} dependency:get -Dartifact={MAVEN_COORDS} -DremoteRepositories=odi::default::{r}/{MAVEN}/"
    );
    if let Some(ca) = ca {
        let ca = ca.display();
        let _ = writeln!(
            s,
            "\nEvery node speaks HTTPS (HTTP/2, HSTS) with a certificate from the demo's own CA, {ca}.\n\
             Trust it per command as above, or for a whole shell or system:\n  \
             export CURL_CA_BUNDLE={ca} PIP_CERT={ca}        # curl and pip\n  \
             echo 'Acquire::https::CAInfo \"{ca}\";' | sudo tee /etc/apt/apt.conf.d/99odi-demo   # apt\n  \
             keytool -importcert -noprompt -alias odi-demo -file {ca} -keystore {jks} -storepass odi-demo   # Maven (once)\n  \
             sudo cp {ca} /usr/local/share/ca-certificates/odi-demo.crt && sudo update-ca-certificates   # the whole system",
            jks = jks.display(),
        );
    }
    let _ = writeln!(s, "\nLook at a node (any URL above):\n  {odi} status {entry}");
    if let Some(relay) = relay {
        let _ = writeln!(s, "  {odi} status {}", relay.url);
        let _ = writeln!(s, "\nSee the network route around a failure:\n  kill -9 {}        # {}; downloads keep working", relay.pid, relay.name);
    }
    let net = root.join("network");
    let key = root.join("keys").join("maintainer.key");
    let sonic = "relays/odi-sonic.toml";
    let _ = writeln!(
        s,
        "\nChange the network (agents pull every {PULL_INTERVAL}):\n  \
         cd {net}\n  \
         $EDITOR {sonic}        # raise `serial`, change `quota` or `tags`\n  \
         {odi} sign --key {key} {sonic}\n  \
         git commit -am 'odi-sonic: new offer'\n  \
         {odi} validate .\n  \
         {odi} status {url}      # watch odi-sonic apply the commit and reconcile",
        net = net.display(),
        key = key.display(),
        url = fleet
            .procs
            .iter()
            .find(|p| p.name == "odi-sonic")
            .map(|p| p.url.as_str())
            .unwrap_or(""),
    );
    let _ = writeln!(
        s,
        "\nFiles: {} (network repository, keys, origin, agents/<name>/agent.toml and agent.log)",
        root.display()
    );
    if !kept {
        let _ = writeln!(s, "They are removed when the demo stops; use --dir DIR to keep them.");
    }
    s
}

/// The demo's working folder: `--dir`, kept, or a temporary one removed when dropped.
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    fn create(dir: Option<&Path>) -> Result<Self, DemoError> {
        match dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(io_err(d))?;
                if std::fs::read_dir(d).map_err(io_err(d))?.next().is_some() {
                    return Err(DemoError::DirNotEmpty(d.to_owned()));
                }
                // Absolute, because agents run with configs in subfolders and paths are printed.
                let path = d.canonicalize().map_err(io_err(d))?;
                Ok(Self { path, remove: false })
            }
            None => {
                let path = std::env::temp_dir().join(format!(
                    "odi-demo-{}-{:08x}",
                    std::process::id(),
                    rand::random::<u32>()
                ));
                std::fs::create_dir(&path).map_err(io_err(&path))?;
                Ok(Self { path, remove: true })
            }
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                eprintln!("warning: could not remove {}: {e}", self.path.display());
            }
        }
    }
}

/// SIGINT or SIGTERM; installed before any child starts, so a Ctrl-C always stops them.
#[derive(Debug)]
struct StopSignal {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> Result<Self, DemoError> {
        use tokio::signal::unix::{signal, SignalKind};
        let err = |e| DemoError::Setup(format!("installing signal handlers: {e}"));
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(err)?,
            term: signal(SignalKind::terminate()).map_err(err)?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// The local origin: serves the files under its folder at `/<catalog>/<path>`, with ranges and
/// validators. A file's SHA-256 is computed once (at start, or when it first appears or
/// changes, so a person can add artifacts while the demo runs).
#[derive(Debug)]
struct Origin {
    root: PathBuf,
    known: Mutex<HashMap<String, Known>>,
}

#[derive(Debug, Clone)]
struct Known {
    len: u64,
    mtime: Option<SystemTime>,
    meta: ArtifactMeta,
}

impl Origin {
    async fn new(root: PathBuf) -> Self {
        let origin = Self { root, known: Mutex::new(HashMap::new()) };
        let mut files = Vec::new();
        list_files(&origin.root, "", &mut files);
        for rel in files {
            let _ = origin.meta(&rel).await;
        }
        origin
    }

    /// The file for a request path, after a strict check: ASCII segments of `[A-Za-z0-9._-+~]`,
    /// none empty or a dot segment, so nothing outside the folder can be named.
    fn resolve(&self, raw: &str) -> Option<(String, PathBuf)> {
        let rel = raw.strip_prefix('/')?;
        let ok = !rel.is_empty()
            && rel.len() <= 1024
            && rel.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+~".contains(&b))
            });
        ok.then(|| (rel.to_owned(), self.root.join(rel)))
    }

    async fn meta(&self, rel: &str) -> Option<ArtifactMeta> {
        let path = self.root.join(rel);
        let md = tokio::fs::metadata(&path).await.ok().filter(|m| m.is_file())?;
        let mtime = md.modified().ok();
        if let Some(k) = crate::locks::lock(&self.known).get(rel) {
            if k.len == md.len() && k.mtime == mtime {
                return Some(k.meta.clone());
            }
        }
        let p = path.clone();
        let sha256: [u8; 32] = tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
            let mut f = std::fs::File::open(p)?;
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(h.finalize().into())
        })
        .await
        .ok()?
        .ok()?;
        let meta = ArtifactMeta { size: md.len(), sha256, last_modified: mtime };
        crate::locks::lock(&self.known)
            .insert(rel.to_owned(), Known { len: md.len(), mtime, meta: meta.clone() });
        Some(meta)
    }
}

fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        match e.file_type() {
            Ok(t) if t.is_dir() => list_files(&e.path(), &rel, out),
            Ok(t) if t.is_file() => out.push(rel),
            _ => {}
        }
    }
}

impl Origin {
    /// The origin as a router: every path is a file lookup.
    fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().fallback(move |req: http::request::Parts| {
            let origin = self.clone();
            async move { origin.serve(req).await }
        })
    }

    async fn serve(&self, req: http::request::Parts) -> Response<Body> {
        let missing = || response::text(StatusCode::NOT_FOUND, "not at this origin");
        let Some((rel, path)) = self.resolve(req.uri.path()) else { return missing() };
        let Some(meta) = self.meta(&rel).await else { return missing() };
        match tokio::fs::File::open(&path).await {
            Ok(f) => file::serve(&req, f, &meta).await,
            Err(_) => missing(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_network_validates() {
        let tmp = std::env::temp_dir().join(format!(
            "odi-demo-unit-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let catalogs = demo_catalogs(&tmp.join("origin")).expect("catalogs");
        let b = demo_network(&catalogs, "http://127.0.0.1:1/", |n| format!("http://{n}.invalid/"))
            .expect("network");
        let tree = b.tree().expect("tree");
        let loaded = odi_network::load(
            &tree,
            &odi_network::TrustAnchor::default(),
            &odi_network::TrustState::default(),
            time::OffsetDateTime::now_utc(),
        );
        let _ = std::fs::remove_dir_all(&tmp);
        let net = loaded.map_err(|p| p.to_string()).expect("the demo network is valid").network;
        let hello = &net.catalogs[catalogs::HELLO];
        assert_eq!(hello.artifacts.values().filter(|a| a.expunged.is_some()).count(), 1);
        assert!(hello.artifacts.values().any(|a| a.size > 8 << 20));
    }

    #[test]
    fn origin_refuses_hostile_paths() {
        let o = Origin { root: PathBuf::from("/srv/origin"), known: Mutex::new(HashMap::new()) };
        assert!(o.resolve("/hello/hello-1.0.tar.gz").is_some());
        for bad in [
            "/",
            "/hello/../../etc/passwd",
            "/hello//x",
            "/hello/%2e%2e/x",
            "/hello/a\\b",
            "hello/x",
            "/hello/./x",
            "/hello/x/",
        ] {
            assert!(o.resolve(bad).is_none(), "{bad}");
        }
    }
}
