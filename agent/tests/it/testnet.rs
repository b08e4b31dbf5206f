//! A whole network on loopback for integration tests: a real HTTP origin that can misbehave,
//! a signed network repository in git, and real agents (in-process, or as `odi agent`
//! processes where a test needs `kill -9`), each on its own port.
#![allow(dead_code)] // each test module uses its own subset

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odi_agent::app::RunningAgent;
use odi_agent::config::Config;
use odi_network::builder::{commit_all, NetworkBuilder};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::support;

/// How the origin answers for one path.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// The right bytes, honouring `Range: bytes=N-`.
    Good(Vec<u8>),
    /// The right bytes at a limited rate (bytes per second), for kill-mid-download tests.
    Slow(Vec<u8>, usize),
    /// Different bytes of the same length.
    Wrong(Vec<u8>),
    /// An endless body.
    Endless,
    /// The right length announced, a few bytes sent, then silence.
    Stall(usize),
}

/// A real HTTP/1.1 origin on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Base URL with a trailing slash.
    pub url: String,
    files: Arc<Mutex<HashMap<String, Behavior>>>,
    /// Every request line and Range header seen, for resume assertions.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Requests served.
    pub requests: Arc<AtomicUsize>,
}

impl Origin {
    /// Starts an origin serving `files` (path relative to the base URL).
    pub async fn start(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/origin/", listener.local_addr().unwrap());
        let origin = Origin {
            url,
            files: Arc::new(Mutex::new(
                files.into_iter().map(|(p, b)| (p, Behavior::Good(b))).collect(),
            )),
            log: Arc::default(),
            requests: Arc::default(),
        };
        let o = origin.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(o.clone().serve(sock));
            }
        });
        origin
    }

    /// Changes how one path is answered.
    pub fn set(&self, path: &str, b: Behavior) {
        self.files.lock().unwrap().insert(path.to_owned(), b);
    }

    async fn serve(self, mut sock: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&buf).into_owned();
        let line = head.lines().next().unwrap_or("").to_owned();
        let path = line.split(' ').nth(1).unwrap_or("/").trim_start_matches("/origin/").to_owned();
        let range_start = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok())
        });
        self.log.lock().unwrap().push(format!("{line} range={range_start:?}"));
        let behavior = self.files.lock().unwrap().get(&path).cloned();
        let _ = match behavior {
            None => {
                sock.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
            }
            Some(Behavior::Good(b)) | Some(Behavior::Slow(b, _))
                if range_start.is_some_and(|s| s > 0 && s < b.len()) =>
            {
                let s = range_start.unwrap_or(0);
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {s}-{}/{}\r\nconnection: close\r\n\r\n",
                    b.len() - s,
                    b.len() - 1,
                    b.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let rate = if let Some(Behavior::Slow(_, r)) = self.files.lock().unwrap().get(&path)
                {
                    Some(*r)
                } else {
                    None
                };
                write_body(&mut sock, &b[s..], rate).await
            }
            Some(Behavior::Good(b)) => write_full(&mut sock, &b, None).await,
            Some(Behavior::Slow(b, rate)) => write_full(&mut sock, &b, Some(rate)).await,
            Some(Behavior::Wrong(mut b)) => {
                for x in b.iter_mut() {
                    *x ^= 0x5a;
                }
                write_full(&mut sock, &b, None).await
            }
            Some(Behavior::Endless) => {
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n").await;
                let junk = vec![7u8; 64 << 10];
                for _ in 0..100_000 {
                    if sock.write_all(&junk).await.is_err() {
                        break;
                    }
                }
                Ok(())
            }
            Some(Behavior::Stall(len)) => {
                let _ = sock.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\nabc").as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }
        };
    }
}

async fn write_full(
    sock: &mut tokio::net::TcpStream,
    b: &[u8],
    rate: Option<usize>,
) -> std::io::Result<()> {
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", b.len());
    sock.write_all(head.as_bytes()).await?;
    write_body(sock, b, rate).await
}

async fn write_body(
    sock: &mut tokio::net::TcpStream,
    b: &[u8],
    rate: Option<usize>,
) -> std::io::Result<()> {
    match rate {
        None => sock.write_all(b).await,
        Some(rate) => {
            // Ten writes a second of rate/10 bytes each.
            let step = (rate / 10).max(1);
            for c in b.chunks(step) {
                sock.write_all(c).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        }
    }
}

/// A free loopback port for an agent that binds it later.
///
/// Taken below the kernel's ephemeral range (32768 and up on Linux), in turn from a random
/// start: a port from `bind(0)`, released until the agent binds it, could meanwhile become the
/// source port of one of the many outgoing connections the tests make, and the agent would
/// fail with "address in use". Each candidate is test-bound first, so a port some other
/// program listens on is skipped.
pub fn reserve_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        1 + (std::process::id() % u32::from(SPAN)) as u16,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A network under test.
#[derive(Debug)]
pub struct TestNet {
    /// Everything lives in here.
    pub tmp: tempfile::TempDir,
    /// The network repository (git, branch main).
    pub repo: PathBuf,
    /// The network, with loopback URLs.
    pub builder: NetworkBuilder,
    /// The origin of every catalog.
    pub origin: Origin,
    /// Port of every node.
    pub ports: BTreeMap<String, u16>,
    /// Extra lines for agent configs, by node name (e.g. tuning).
    pub extra_config: BTreeMap<String, String>,
    /// Replaces the repository URL in every agent config (e.g. a smart-HTTP URL).
    pub repo_url: Option<String>,
    /// Extra lines for the `[repository]` section of every agent config.
    pub repo_extra: String,
    /// Listen address (without port) by node name, when not `127.0.0.1`.
    pub listen: BTreeMap<String, String>,
}

impl TestNet {
    /// Points every node of `builder` at a loopback port, every catalog at a fresh origin
    /// serving `files`, and commits the network.
    pub async fn new(mut builder: NetworkBuilder, files: Vec<(String, Vec<u8>)>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let origin = Origin::start(files).await;
        let mut ports = BTreeMap::new();
        for (name, d) in builder.directories.iter_mut() {
            let p = reserve_port();
            d.url = format!("http://127.0.0.1:{p}/");
            ports.insert(name.clone(), p);
        }
        for (name, r) in builder.relays.iter_mut() {
            let p = reserve_port();
            r.url = format!("http://127.0.0.1:{p}/");
            ports.insert(name.clone(), p);
        }
        for c in builder.catalogs.values_mut() {
            c.origins = vec![origin.url.clone()];
        }
        let repo = tmp.path().join("network");
        std::fs::create_dir_all(&repo).unwrap();
        let net = TestNet {
            tmp,
            repo,
            builder,
            origin,
            ports,
            extra_config: BTreeMap::new(),
            repo_url: None,
            repo_extra: String::new(),
            listen: BTreeMap::new(),
        };
        net.commit("initial network");
        net
    }

    /// The small network of `support`, served by an origin with all its bytes.
    pub async fn small() -> Self {
        Self::new(support::small_network(), support::artifact_bytes()).await
    }

    /// Writes the builder's files, signs them and commits; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.builder.write(&self.repo).unwrap();
        commit_all(&self.repo, message).unwrap().to_string()
    }

    /// Moves node `name` to other loopback addresses, keeping its port: it listens on
    /// `listen` (like `[::1]`, or `[::]` for both families) and its file's URL names
    /// `url_host` (like `[::1]` or `localhost`). Commits.
    pub fn rehost(&mut self, name: &str, listen: &str, url_host: &str) {
        let url = format!("http://{url_host}:{}/", self.ports[name]);
        if let Some(d) = self.builder.directories.get_mut(name) {
            d.url = url;
        } else {
            self.builder.relays.get_mut(name).expect("a node of the network").url = url;
        }
        self.listen.insert(name.to_owned(), listen.to_owned());
        self.commit(&format!("{name} at {url_host}"));
    }

    /// The data folder of a node.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join("agents").join(name)
    }

    /// Writes the agent configuration of `name` and returns its path.
    pub fn config_file(&self, name: &str) -> PathBuf {
        let mode = if self.builder.relays.contains_key(name) { "relay" } else { "directory" };
        let keys: Vec<String> =
            self.builder.root_keys.iter().map(|k| format!("\"{}\"", k.public())).collect();
        let dir = self.data_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "mode = \"{mode}\"\nname = \"{name}\"\ndata_dir = \"{}\"\nlisten = [\"{}:{}\"]\n\n[repository]\nurl = \"{}\"\nbranch = \"main\"\nroot_keys = [{}]\ninterval = \"300ms\"\n{}\n\n[reconcile]\nretry_after = \"300ms\"\nstall_timeout = \"2s\"\n\n[directory]\nprobe_interval = \"300ms\"\ntrusted_proxies = [\"127.0.0.1\"]\n{}\n",
            dir.join("data").display(),
            self.listen.get(name).map_or("127.0.0.1", String::as_str),
            self.ports[name],
            self.repo_url.clone().unwrap_or_else(|| self.repo.display().to_string()),
            keys.join(", "),
            self.repo_extra,
            self.extra_config.get(name).map(String::as_str).unwrap_or(""),
        );
        let path = dir.join("agent.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The validated configuration of `name`.
    pub fn config(&self, name: &str) -> Config {
        Config::load(&self.config_file(name)).unwrap()
    }

    /// Starts `name` in-process.
    pub async fn start(&self, name: &str) -> RunningAgent {
        odi_agent::app::start(self.config(name), CancellationToken::new()).await.unwrap()
    }

    /// Starts `name` as a separate `odi agent` process.
    pub fn spawn(&self, name: &str) -> std::process::Child {
        let config = self.config_file(name);
        let log = std::fs::File::create(self.data_dir(name).join("agent.log")).unwrap();
        support::odi()
            .env("ODI_LOG", "info")
            .arg("agent")
            .arg("--config")
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Base URL of a node.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[name])
    }

    /// Address of a node.
    pub fn addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[name]))
    }
}

/// Polls `f` until it returns true or `timeout` passes (then panics with `what`).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `req` asking for JSON and parses the answer (any status).
pub async fn get_json(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.header("accept", "application/json").send().await.unwrap().json().await.unwrap()
}

/// A plain HTTP client that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// GETs a status document.
pub async fn status(base: &str) -> Option<odi_agent::status::StatusDoc> {
    client().get(format!("{base}/.odi/v1/status")).send().await.ok()?.json().await.ok()
}

/// Path of `data_dir` files for assertions: the store root of a node.
pub fn store_root(net: &TestNet, name: &str) -> PathBuf {
    net.data_dir(name).join("data").join("store")
}

/// Bytes of every file under a folder (recursively).
pub fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() { disk_bytes(&e.path()) } else { m.len() };
        }
    }
    total
}
