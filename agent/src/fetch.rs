//! Verified, resumable downloads of one artifact from origins, directories and relays.
//!
//! Every byte a relay or directory stores comes through [`fetch`]: it streams the body into a
//! temporary `partial` file while hashing it, so the whole artifact is never held in memory, and
//! it only reports success once the size and sha256 match the signed catalog and the file is
//! fsynced. The caller renames the partial into place; nothing here ever writes a served name.
//!
//! Fault handling follows one rule: bytes that are proven bad are deleted, bytes that are merely
//! incomplete are kept so the next attempt resumes.
//! - Wrong hash, too many bytes, or a body that ends *cleanly* before the expected size: the
//!   source holds a different file, so `partial` is deleted.
//! - A stall, a too-slow source, a connection reset (hyper reports a body cut short of its
//!   `Content-Length` as an error), an HTTP error status, a local I/O error: `partial` is kept.
//!   A resumed download is re-hashed from the start of the file and checked again at the end,
//!   so keeping a prefix never lets bad bytes through.
//! - A source whose declared length (`Content-Length`, the size of a `file://` file) already
//!   disagrees with the catalog is refused before any byte is written, and `partial` is left
//!   as it was (it may hold good bytes from another source).
//!
//! A hostile source may send an endless body: reading stops as soon as one byte more than the
//! expected size has arrived.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use tracing::{debug, warn};
use url::Url;

/// Read size for `file://` sources and for re-hashing a partial prefix.
const READ_CHUNK: usize = 64 * 1024;
/// Network chunks are small (a few KiB); batching them saves a blocking-pool hop per chunk.
const WRITE_BUFFER: usize = 256 * 1024;
const MAX_REDIRECTS: usize = 5;

/// Where bytes can come from, in order of preference.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: Url,
    /// True for ODI directories and relays: they send a strong ETag equal to the sha256 hex, so
    /// `If-Range` can be used to resume safely.
    pub odi_peer: bool,
}

/// What the signed catalog says the artifact is.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub size: u64,
    pub sha256: [u8; 32],
}

impl Expect {
    /// The expected sha256 as lowercase hex (also an ODI peer's ETag).
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Guards against sources that are slow or silent.
#[derive(Debug, Clone)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// No response headers or no body byte for this long: abort with [`FetchError::Stalled`].
    pub stall_timeout: Duration,
    /// Bytes per second, averaged over consecutive windows of `grace`; slower aborts with
    /// [`FetchError::TooSlow`]. 0 disables the check.
    pub min_rate: u64,
    /// Length of the rate window, and so the time before the first rate check.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            min_rate: 1024,
            grace: Duration::from_secs(30),
        }
    }
}

/// Shared token bucket that caps the total download rate (a relay's `bandwidth`).
///
/// Callers take tokens on credit: the bucket may go negative and each caller sleeps off its own
/// debt, so concurrent downloads share the rate without a queue. The bucket starts empty and
/// holds at most a tenth of a second of tokens, so bursts after idle time stay small.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter for `bytes_per_second`; 0 means no limit.
    pub fn new(bytes_per_second: u64) -> Self {
        RateLimiter {
            rate: bytes_per_second,
            burst: (bytes_per_second as f64 / 10.0).max(1.0),
            bucket: Mutex::new(Bucket { tokens: 0.0, last: Instant::now() }),
        }
    }

    pub fn bytes_per_second(&self) -> u64 {
        self.rate
    }

    /// Waits until `n` bytes may be transferred.
    pub async fn acquire(&self, n: u64) {
        if self.rate == 0 || n == 0 {
            return;
        }
        let rate = self.rate as f64;
        let wait = {
            // A poisoned lock only means another task panicked mid-update of two plain numbers.
            let mut bucket = crate::locks::lock(&self.bucket);
            let now = Instant::now();
            let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
            bucket.last = now;
            bucket.tokens = (bucket.tokens + refill).min(self.burst) - n as f64;
            if bucket.tokens < 0.0 {
                Duration::from_secs_f64(-bucket.tokens / rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Why a download failed. `url` is the URL that answered (after redirects) when known.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP status {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The local partial file (the store) failed: a full disk, permissions.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `file://` source could not be read.
    #[error("{url}: {source}")]
    Read {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: source sends more than the expected {expected} bytes")]
    TooMany { url: String, expected: u64 },
    #[error("{url}: source ended after {got} of {expected} bytes")]
    Short { url: String, expected: u64, got: u64 },
    #[error("{url}: sha256 mismatch: expected {expected}, got {got}")]
    WrongHash { url: String, expected: String, got: String },
    #[error("{url}: no data for {after:?}")]
    Stalled { url: String, after: Duration },
    #[error("{url}: transfer too slow ({rate} B/s)")]
    TooSlow { url: String, rate: u64 },
    #[error("{url}: unsupported URL scheme (only http, https and file)")]
    UnsupportedScheme { url: String },
    #[error("{url}: not a local file URL")]
    BadFileUrl { url: String },
    /// A `206` that does not continue exactly where the partial file ends.
    #[error("{url}: bad partial response: {detail}")]
    BadRange { url: String, detail: String },
    #[error("cannot build HTTP client: {source}")]
    Client {
        #[source]
        source: reqwest::Error,
    },
}

impl FetchError {
    pub fn url(&self) -> Option<&str> {
        match self {
            FetchError::Http { url, .. }
            | FetchError::Transport { url, .. }
            | FetchError::Read { url, .. }
            | FetchError::TooMany { url, .. }
            | FetchError::Short { url, .. }
            | FetchError::WrongHash { url, .. }
            | FetchError::Stalled { url, .. }
            | FetchError::TooSlow { url, .. }
            | FetchError::UnsupportedScheme { url }
            | FetchError::BadFileUrl { url }
            | FetchError::BadRange { url, .. } => Some(url),
            FetchError::Io { .. } | FetchError::Client { .. } => None,
        }
    }

    /// Short machine reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Http { status, .. } if (400..500).contains(status) => "http_4xx",
            FetchError::Http { status, .. } if (500..600).contains(status) => "http_5xx",
            FetchError::Http { .. } => "http_status",
            FetchError::Transport { source, .. } if source.is_timeout() => "timeout",
            FetchError::Transport { source, .. } if source.is_connect() => "connect",
            FetchError::Transport { .. } => "transport",
            FetchError::Io { .. } => "store_io",
            FetchError::Read { .. } => "source_io",
            FetchError::TooMany { .. } => "too_many",
            FetchError::Short { .. } => "short",
            FetchError::WrongHash { .. } => "wrong_hash",
            FetchError::Stalled { .. } => "stalled",
            FetchError::TooSlow { .. } => "too_slow",
            FetchError::UnsupportedScheme { .. } => "unsupported_scheme",
            FetchError::BadFileUrl { .. } => "bad_url",
            FetchError::BadRange { .. } => "bad_range",
            FetchError::Client { .. } => "client",
        }
    }

    /// True when the bytes of the source were proven wrong (as opposed to unavailable), e.g. for
    /// a directory to flag a relay serving wrong content.
    pub fn is_bad_content(&self) -> bool {
        matches!(
            self,
            FetchError::TooMany { .. } | FetchError::Short { .. } | FetchError::WrongHash { .. }
        )
    }
}

/// Who a client talks to, which decides whether it follows redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// Downloads ([`fetch`]): origins may redirect (at most 5 hops); the hash check makes
    /// wherever the bytes came from safe.
    Download,
    /// Probes of relays and peer directories: a node must answer for itself, so redirects are
    /// not followed (a redirect would check someone else's bytes or status).
    Probe,
}

/// The one reqwest client builder of the agent: rustls, a connect timeout, `odi/VERSION` as
/// user agent, no automatic decompression (hashes are over the bytes as sent), `TCP_NODELAY`,
/// and redirects as `role` needs them. `timeout` bounds a whole request when given. Proxies
/// from the environment (`HTTPS_PROXY`, `NO_PROXY`) are honoured, as operators expect.
pub fn http_client(
    role: ClientRole,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, FetchError> {
    builder(role, connect_timeout, timeout, roots)
        .build()
        .map_err(|source| FetchError::Client { source })
}

/// `roots` are trusted besides the system's (the agent's `ca_file`: a private CA, the demo's).
fn builder(
    role: ClientRole,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    roots: &[reqwest::Certificate],
) -> reqwest::ClientBuilder {
    let redirects = match role {
        ClientRole::Download => reqwest::redirect::Policy::limited(MAX_REDIRECTS),
        ClientRole::Probe => reqwest::redirect::Policy::none(),
    };
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("odi/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .redirect(redirects)
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .tcp_nodelay(true);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    for r in roots {
        b = b.add_root_certificate(r.clone());
    }
    b
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Resolves names to the addresses of one family only, so a client built with it reaches a
/// dual-stack host over that family (an IP literal in a URL is not resolved: the caller
/// picks the client of the literal's family).
#[derive(Debug)]
struct FamilyResolver(Family);

impl reqwest::dns::Resolve for FamilyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let family = self.0;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let wanted: Vec<std::net::SocketAddr> = found
                .filter(|a| (family == Family::V4) == a.ip().to_canonical().is_ipv4())
                .collect();
            if wanted.is_empty() {
                let which = if family == Family::V4 { "IPv4" } else { "IPv6" };
                return Err(format!("{} has no {which} address", name.as_str()).into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(wanted.into_iter());
            Ok(addrs)
        })
    }
}

/// A probe client ([`ClientRole::Probe`]) that reaches names over `family` only.
pub fn family_client(
    connect_timeout: Duration,
    family: Family,
    roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, FetchError> {
    builder(ClientRole::Probe, connect_timeout, None, roots)
        .dns_resolver(std::sync::Arc::new(FamilyResolver(family)))
        .build()
        .map_err(|source| FetchError::Client { source })
}

/// [`http_client`]'s blocking twin, for the tooling commands that read indexes and files
/// (`odi catalog import`) outside any runtime; redirects as for downloads.
pub fn blocking_client(timeout: Duration) -> Result<reqwest::blocking::Client, FetchError> {
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("odi/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Limits::default().connect_timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .build()
        .map_err(|source| FetchError::Client { source })
}

/// The download client for [`fetch`].
pub fn client(
    limits: &Limits,
    roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, FetchError> {
    http_client(ClientRole::Download, limits.connect_timeout, None, roots)
}

/// Tries sources in order, returning the index of the first that succeeds or the errors of all
/// tried. A partial prefix kept after one source's transport failure is resumed from the next
/// (the final hash check covers the mix). A local store error stops the loop: another source
/// would not cure a full disk.
pub async fn fetch_any(
    client: &reqwest::Client,
    sources: &[Source],
    expect: &Expect,
    partial: &Path,
    limiter: Option<&RateLimiter>,
    limits: &Limits,
) -> Result<usize, Vec<FetchError>> {
    let mut errors = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        match fetch(client, source, expect, partial, limiter, limits).await {
            Ok(()) => return Ok(index),
            Err(error) => {
                warn!(url = %source.url, reason = error.reason(), %error, "download failed");
                let local = matches!(error, FetchError::Io { .. });
                errors.push(error);
                if local {
                    break;
                }
            }
        }
    }
    Err(errors)
}

/// Downloads `expect` from `source` into `partial` (a temp path inside the store; never a served
/// name).
///
/// Resumes when `partial` already holds a prefix (re-hashing that prefix first) with
/// `Range: bytes=N-`, plus `If-Range: "<sha256hex>"` when `source.odi_peer`; a `200` answer
/// restarts from zero, a `206` must start exactly at N (a refused resume, `416` or a bad `206`,
/// is retried once from zero). A partial longer than the artifact is discarded; a complete one
/// with the right hash succeeds without contacting the source. Verifies size and sha256 while
/// streaming, stops reading at `expect.size + 1` bytes ([`FetchError::TooMany`]), and on success
/// fsyncs the file. See the module docs for when `partial` is kept or deleted.
pub async fn fetch(
    client: &reqwest::Client,
    source: &Source,
    expect: &Expect,
    partial: &Path,
    limiter: Option<&RateLimiter>,
    limits: &Limits,
) -> Result<(), FetchError> {
    let is_file = match source.url.scheme() {
        "http" | "https" => false,
        "file" => true,
        _ => return Err(FetchError::UnsupportedScheme { url: source.url.to_string() }),
    };
    let mut part = Partial::open(partial, expect).await?;
    if part.len == expect.size {
        if part.digest() == expect.sha256 {
            debug!(path = %partial.display(), "partial file is already complete");
            return part.finish().await;
        }
        debug!(path = %partial.display(), "complete partial file has the wrong hash, restarting");
        part.reset().await?;
    }

    let mut may_restart = true;
    let (mut body, url) = loop {
        let offset = part.len;
        let opened = if is_file {
            open_file(&source.url, expect, offset).await
        } else {
            open_http(client, source, expect, offset, limits).await
        };
        match opened {
            Ok((body, start, url)) => {
                if start != offset {
                    debug!(%url, offset, "source sent the whole artifact, restarting");
                    part.reset().await?;
                }
                break (body, url);
            }
            Err(error @ (FetchError::BadRange { .. } | FetchError::Http { status: 416, .. }))
                if offset > 0 && may_restart =>
            {
                debug!(%error, "resume refused, restarting from zero");
                may_restart = false;
                part.reset().await?;
            }
            Err(error) => return Err(error),
        }
    };

    let started = Instant::now();
    let mut window = RateWindow { start: started, bytes: 0, throttled: Duration::ZERO };
    loop {
        let chunk = match tokio::time::timeout(limits.stall_timeout, body.next_chunk(&url)).await {
            Err(_) => {
                part.keep().await;
                return Err(FetchError::Stalled { url, after: limits.stall_timeout });
            }
            Ok(Err(error)) => {
                part.keep().await;
                return Err(error);
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        let n = chunk.len() as u64;
        if n > expect.size - part.len {
            // Dropping `body` closes the connection: nothing past this chunk is read.
            drop(body);
            part.discard().await;
            return Err(FetchError::TooMany { url, expected: expect.size });
        }
        if let Some(limiter) = limiter {
            let before = Instant::now();
            limiter.acquire(n).await;
            window.throttled += before.elapsed();
        }
        if let Err(error) = part.write(&chunk).await {
            part.keep().await;
            return Err(error);
        }
        window.bytes += n;
        if let Some(rate) = window.too_slow(limits) {
            part.keep().await;
            return Err(FetchError::TooSlow { url, rate });
        }
    }
    drop(body);

    if part.len < expect.size {
        let got = part.len;
        part.discard().await;
        return Err(FetchError::Short { url, expected: expect.size, got });
    }
    let got = part.digest();
    if got != expect.sha256 {
        part.discard().await;
        return Err(FetchError::WrongHash {
            url,
            expected: expect.sha256_hex(),
            got: hex::encode(got),
        });
    }
    part.finish().await
}

/// Bytes received since `start`, for the minimum-rate check. Time spent waiting on our own rate
/// limiter is not the source's fault and is left out.
struct RateWindow {
    start: Instant,
    bytes: u64,
    throttled: Duration,
}

impl RateWindow {
    /// Returns the measured rate when a full window was slower than `min_rate`, and starts a new
    /// window whenever one is complete.
    fn too_slow(&mut self, limits: &Limits) -> Option<u64> {
        if limits.min_rate == 0 || limits.grace.is_zero() {
            return None;
        }
        let now = Instant::now();
        let active = now.duration_since(self.start).saturating_sub(self.throttled);
        if active < limits.grace {
            return None;
        }
        let rate = (self.bytes as f64 / active.as_secs_f64()) as u64;
        *self = RateWindow { start: now, bytes: 0, throttled: Duration::ZERO };
        (rate < limits.min_rate).then_some(rate)
    }
}

/// The body being downloaded.
enum Body {
    Http(reqwest::Response),
    /// `remaining` is how much more may be read: the rest of the artifact plus one byte, so an
    /// oversized file is noticed without reading all of it.
    File {
        file: File,
        remaining: u64,
    },
}

impl Body {
    async fn next_chunk(&mut self, url: &str) -> Result<Option<Bytes>, FetchError> {
        match self {
            Body::Http(response) => response
                .chunk()
                .await
                .map_err(|source| FetchError::Transport { url: url.to_owned(), source }),
            Body::File { file, remaining } => {
                if *remaining == 0 {
                    return Ok(None);
                }
                let want = usize::try_from(*remaining).unwrap_or(READ_CHUNK).min(READ_CHUNK);
                let mut buf = BytesMut::zeroed(want);
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|source| FetchError::Read { url: url.to_owned(), source })?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                *remaining -= n as u64;
                Ok(Some(buf.freeze()))
            }
        }
    }
}

/// Opens a `file://` source positioned at `offset`. Returns the body, the offset it starts at,
/// and the URL for errors.
async fn open_file(
    url: &Url,
    expect: &Expect,
    offset: u64,
) -> Result<(Body, u64, String), FetchError> {
    let shown = url.to_string();
    let path = url.to_file_path().map_err(|()| FetchError::BadFileUrl { url: shown.clone() })?;
    let read_err = |source| FetchError::Read { url: shown.clone(), source };
    let mut file = File::open(&path).await.map_err(read_err)?;
    let len = file.metadata().await.map_err(read_err)?.len();
    check_declared(&shown, expect, len)?;
    if offset > 0 {
        file.seek(std::io::SeekFrom::Start(offset)).await.map_err(read_err)?;
    }
    Ok((Body::File { file, remaining: expect.size - offset + 1 }, offset, shown))
}

/// Sends the request (resuming at `offset` when > 0) and checks the status and headers.
async fn open_http(
    client: &reqwest::Client,
    source: &Source,
    expect: &Expect,
    offset: u64,
    limits: &Limits,
) -> Result<(Body, u64, String), FetchError> {
    use reqwest::header;

    let shown = source.url.to_string();
    // The hash covers the stored bytes; a transfer encoding we did not ask for would break it.
    let mut request = client.get(source.url.clone()).header(header::ACCEPT_ENCODING, "identity");
    if offset > 0 {
        request = request.header(header::RANGE, format!("bytes={offset}-"));
        if source.odi_peer {
            request = request.header(header::IF_RANGE, format!("\"{}\"", expect.sha256_hex()));
        }
    }
    // Slow response headers count as a stall too.
    let response = match tokio::time::timeout(limits.stall_timeout, request.send()).await {
        Err(_) => return Err(FetchError::Stalled { url: shown, after: limits.stall_timeout }),
        Ok(Err(source)) => return Err(FetchError::Transport { url: shown, source }),
        Ok(Ok(response)) => response,
    };
    // After redirects, name the server that actually answered (the relay, not the directory).
    let url = response.url().to_string();
    let status = response.status();
    match status.as_u16() {
        200 => {
            if let Some(len) = response.content_length() {
                check_declared(&url, expect, len)?;
            }
            Ok((Body::Http(response), 0, url))
        }
        206 => {
            let range = response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bad = |detail: String| FetchError::BadRange { url: url.clone(), detail };
            if offset == 0 {
                return Err(bad("206 to a request without Range".into()));
            }
            let Some(range) = range else {
                return Err(bad("206 without Content-Range".into()));
            };
            let Some((first, last, total)) = parse_content_range(&range) else {
                return Err(bad(format!("unparsable Content-Range {range:?}")));
            };
            if first != offset
                || last.checked_add(1) != Some(expect.size)
                || total.is_some_and(|t| t != expect.size)
            {
                return Err(bad(format!(
                    "Content-Range {range:?} does not continue at byte {offset} of {}",
                    expect.size
                )));
            }
            Ok((Body::Http(response), offset, url))
        }
        code => Err(FetchError::Http { url, status: code }),
    }
}

/// Refuses a source whose own declared length already disagrees with the catalog, before any
/// byte is written.
fn check_declared(url: &str, expect: &Expect, len: u64) -> Result<(), FetchError> {
    if len > expect.size {
        Err(FetchError::TooMany { url: url.to_owned(), expected: expect.size })
    } else if len < expect.size {
        Err(FetchError::Short { url: url.to_owned(), expected: expect.size, got: len })
    } else {
        Ok(())
    }
}

/// Parses `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.trim().split_once('-')?;
    let first = first.trim().parse().ok()?;
    let last = last.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (first <= last).then_some((first, last, total))
}

/// The partial file with a running hash of everything in it.
struct Partial {
    path: PathBuf,
    file: BufWriter<File>,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    /// Opens (or creates) the partial file and hashes the prefix it already holds.
    async fn open(path: &Path, expect: &Expect) -> Result<Self, FetchError> {
        let io = |source| FetchError::Io { path: path.to_owned(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .await
            .map_err(io)?;
        let on_disk = file.metadata().await.map_err(io)?.len();
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        if on_disk > expect.size {
            debug!(path = %path.display(), on_disk, expected = expect.size, "partial file is longer than the artifact, discarding it");
            file.set_len(0).await.map_err(io)?;
        } else if on_disk > 0 {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let n = file.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            if len > expect.size {
                // The file grew while we read it: someone else writes here. Start over.
                file.set_len(0).await.map_err(io)?;
                file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
                hasher = Sha256::new();
                len = 0;
            } else {
                debug!(path = %path.display(), len, "resuming from partial file");
            }
        }
        Ok(Partial {
            path: path.to_owned(),
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher,
            len,
        })
    }

    fn io(&self, source: std::io::Error) -> FetchError {
        FetchError::Io { path: self.path.clone(), source }
    }

    fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        self.file.write_all(chunk).await.map_err(|e| self.io(e))?;
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Empties the file to start from byte zero.
    async fn reset(&mut self) -> Result<(), FetchError> {
        self.file.flush().await.map_err(|e| self.io(e))?;
        let file = self.file.get_mut();
        let result = async {
            file.set_len(0).await?;
            file.seek(std::io::SeekFrom::Start(0)).await
        }
        .await;
        result.map_err(|e| self.io(e))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Pushes buffered bytes to the file so the next attempt can resume from them. A failure
    /// only costs a shorter prefix: whatever reached the file is still a prefix of the stream.
    async fn keep(mut self) {
        if let Err(error) = self.file.flush().await {
            warn!(path = %self.path.display(), %error, "cannot flush partial download");
        }
    }

    /// Deletes the file: its bytes are proven bad.
    async fn discard(self) {
        let Partial { path, file, .. } = self;
        drop(file);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                warn!(path = %path.display(), %error, "cannot delete bad partial download")
            }
        }
    }

    /// Flushes and fsyncs so a crash after the caller's rename cannot leave a torn file.
    async fn finish(mut self) -> Result<(), FetchError> {
        self.file.flush().await.map_err(|e| self.io(e))?;
        self.file.get_mut().sync_all().await.map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests;
