//! The HTTP listener: HTTP/1.1 plain or over TLS, and HTTP/2 where TLS negotiates `h2`, with
//! the limits that keep abusive clients from hurting others, and a graceful, bounded shutdown. What a request means is the router's business:
//! the server takes an axum [`Router`] (every request) and, optionally, a [`PlainAnswer`] that
//! answers the plainest requests before hyper sees them (see [`super::plain`]).
//!
//! Limits, and why:
//! - a connection must send its first byte within `first_byte_timeout`, and its request head
//!   within `header_read_timeout`: idle or slow connections cannot hold a slot for long;
//! - at most `max_connections` at once and `max_connections_per_address` from one client,
//!   refused at once beyond that; a full server closes its oldest silent connection to make
//!   room (see [`super::admission`]), so a flood of idle connections cannot starve real
//!   clients;
//! - heads over 32 KiB, or with more than 100 fields, are refused (431);
//! - a connection with no bytes moving either way for `idle_timeout` is closed;
//! - HTTP/2: at most [`H2_MAX_STREAMS`] streams at once, a header list of 32 KiB, 32 KiB of
//!   unsent data buffered per stream, and a client that provokes resets faster than hyper
//!   allows (the "rapid reset" and "MadeYouReset" floods) loses the connection.
//!
//! HTTPS answers carry `Strict-Transport-Security` when [`TlsSettings::hsts`] is set.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::admission::{Admission, Refusal, Ticket};
use super::plain::{self, PlainAnswer};
use super::tls::{self, CertReloader, TlsError};
use super::workers::Workers;

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen; port 0 picks one (see [`RunningServer::local_addr`]). An IPv6
    /// address takes IPv4 connections too (as IPv4-mapped addresses, which the server turns
    /// back into IPv4 before anything sees them) unless `v6_only`.
    pub listen: SocketAddr,
    /// An IPv6 listener takes IPv6 connections only: needed when the same port is also
    /// listened on over IPv4 (a dual-stack `[::]:p` holds every IPv4 address's port `p`).
    pub v6_only: bool,
    /// `None` serves plain HTTP (for use behind a TLS-terminating proxy).
    pub tls: Option<TlsSettings>,
    /// Time from accepting a connection to its first byte (a TLS ClientHello or a request).
    /// Short: a real client speaks within a round trip, an idle flood never does.
    pub first_byte_timeout: Duration,
    /// Time a client has to send a complete request head (and, with TLS, to finish the
    /// handshake). Also bounds how long a keep-alive connection may sit between requests.
    pub header_read_timeout: Duration,
    /// Connections served at once; beyond this the oldest silent one is closed, or the new
    /// one refused.
    pub max_connections: usize,
    /// Connections served at once for one client address (IPv6: one /64).
    pub max_connections_per_address: usize,
    /// A connection with no bytes moving either way for this long is closed (a client that
    /// stops reading a response, for example).
    pub idle_timeout: Duration,
    /// Threads serving connections (see [`super::workers`]); the listener itself runs on the
    /// caller's runtime.
    pub threads: usize,
}

impl ServerConfig {
    /// Defaults suitable for a public relay or directory.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            v6_only: false,
            tls: None,
            first_byte_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            // Enough for segmented downloaders (aria2c opens up to 16 per server) behind a
            // shared NAT, few enough that one address cannot take the server.
            max_connections_per_address: 128,
            idle_timeout: Duration::from_secs(60),
            threads: default_threads(),
        }
    }
}

/// HTTPS settings, built once per agent and shared by its listeners: one certificate source
/// (a reload or an ACME challenge applies to all of them at once) and one rustls
/// configuration, so a session ticket from one listener resumes on another.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    certs: Arc<CertReloader>,
    config: Arc<rustls::ServerConfig>,
    /// `Strict-Transport-Security` for every HTTPS answer; `None` sends none.
    hsts: Option<HeaderValue>,
}

impl TlsSettings {
    /// Serves `certs`; HSTS with this `max-age` when `hsts` is set; `h2` offered when `http2`.
    pub fn new(
        certs: Arc<CertReloader>,
        hsts: Option<Duration>,
        http2: bool,
    ) -> Result<Self, TlsError> {
        let config = tls::server_config(Arc::clone(&certs), http2)?;
        let hsts =
            hsts.and_then(|d| HeaderValue::try_from(format!("max-age={}", d.as_secs())).ok());
        Ok(Self { certs, config, hsts })
    }
}

/// Connection threads when none are configured: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is taken, not local, or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The certificate or key files.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A connection thread could not be started.
    #[error("cannot start connection threads for {addr}: {source}")]
    Threads {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// Finishes once the server has shut down and its connections are done.
    pub task: tokio::task::JoinHandle<()>,
    /// The certificate source when serving HTTPS.
    pub tls: Option<Arc<CertReloader>>,
}

impl RunningServer {
    /// Waits for the server to stop (after its shutdown token fires).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "HTTP server task failed");
        }
    }
}

/// Read buffer bound: request heads beyond this are refused with 431.
const MAX_BUF: usize = 64 * 1024;
const MAX_HEADER_BYTES: usize = 32 * 1024;
const MAX_HEADERS: usize = 100;
/// HTTP/2 streams one connection may have open at once (RFC 9113 recommends at least 100).
pub const H2_MAX_STREAMS: u32 = 128;
/// Unsent response bytes hyper buffers per HTTP/2 stream: a reader that stops costs this
/// much per stream (with one file chunk), not a whole file.
const H2_SEND_BUF: usize = 32 * 1024;
/// How long in-flight requests get after shutdown before being cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after an accept error (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Binds (port 0 allowed), returns the bound address at once, and serves `router` (and
/// `plain`, when given) until `shutdown` fires; then stops accepting and lets in-flight
/// requests finish (with a bound).
pub async fn bind(
    config: ServerConfig,
    router: Router,
    plain: Option<Arc<dyn PlainAnswer>>,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    let (acceptor, reloader, hsts) = match config.tls {
        Some(t) => (Some(tokio_rustls::TlsAcceptor::from(t.config)), Some(t.certs), t.hsts),
        None => (None, None, None),
    };
    let bind_err = |source| ServerError::Bind { addr: config.listen, source };
    let listener = listener(config.listen, config.v6_only).map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let workers = Workers::start(config.threads, "odi-http")
        .map_err(|source| ServerError::Threads { addr: config.listen, source })?;
    tracing::info!(%local_addr, tls = acceptor.is_some(), threads = config.threads, "HTTP server listening");
    let ctx = ConnCtx {
        router,
        plain,
        first_byte_timeout: config.first_byte_timeout,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        tls: acceptor,
        hsts,
        shutdown: shutdown.clone(),
        hard_stop: CancellationToken::new(),
    };
    let admission = Admission::new(config.max_connections, config.max_connections_per_address);
    let task = tokio::spawn(accept_loop(listener, admission, ctx, workers, shutdown));
    Ok(RunningServer { local_addr, task, tls: reloader })
}

/// A listening socket as `TcpListener::bind` makes one (address reuse, a backlog of 1,024),
/// with the IPv6-only choice made explicitly rather than left to the system's default.
fn listener(addr: SocketAddr, v6_only: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// What every connection of a listener shares.
#[derive(Clone)]
struct ConnCtx {
    router: Router,
    plain: Option<Arc<dyn PlainAnswer>>,
    first_byte_timeout: Duration,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// `Strict-Transport-Security` for HTTPS answers.
    hsts: Option<HeaderValue>,
    /// Asks connections to finish their current request and close.
    shutdown: CancellationToken,
    /// Cuts connections that outlive the shutdown grace period.
    hard_stop: CancellationToken,
}

async fn accept_loop(
    listener: TcpListener,
    admission: Arc<Admission>,
    ctx: ConnCtx,
    workers: Workers,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        // A dual-stack listener's IPv4 client is itself, not `::ffff:a.b.c.d`: admission,
        // prefix maps, trusted proxies and address families all see IPv4.
        let remote = SocketAddr::new(remote.ip().to_canonical(), remote.port());
        // Decided at once: waiting here would let a flood hold up every later client.
        let ticket = match admission.admit(remote.ip()) {
            Ok(t) => t,
            Err(why) => {
                refuse(&stream, remote, why, ctx.tls.is_none());
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
        }
        // The socket moves to a connection thread's own I/O driver.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "cannot hand the connection over");
                continue;
            }
        };
        let ctx = ctx.clone();
        workers.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(s) => connection(s, remote, ticket, ctx).await,
                Err(e) => tracing::debug!(%remote, error = %e, "cannot register the connection"),
            }
        });
    }
    drop(listener);
    tracing::info!("HTTP server stopped accepting; draining connections");
    if tokio::time::timeout(SHUTDOWN_GRACE, admission.all_closed()).await.is_err() {
        tracing::warn!("connections still open after shutdown grace period; closing them");
        ctx.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), admission.all_closed()).await;
    }
    workers.stop().await;
}

/// How a request reached the server, as a request extension for handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transport {
    /// Over TLS.
    pub tls: bool,
}

/// Best-effort 503 (plain HTTP) or a bare close (TLS) for a client we will not serve now;
/// never blocks.
fn refuse(stream: &TcpStream, remote: SocketAddr, why: Refusal, plain_http: bool) {
    // debug, not warn: under a connection flood this would flood the log too.
    tracing::debug!(%remote, ?why, "refusing connection");
    if plain_http {
        let _ = stream.try_write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        );
    }
}

/// One connection, from its first byte to its end.
async fn connection(stream: TcpStream, remote: SocketAddr, ticket: Ticket, ctx: ConnCtx) {
    let spoke = tokio::select! {
        biased;
        r = stream.readable() => r.is_ok(),
        () = ticket.evicted().cancelled() => {
            tracing::debug!(%remote, "silent connection closed to make room");
            false
        }
        // Waiting for a first byte is also waiting for a head, and being idle.
        () = tokio::time::sleep(ctx.first_byte_timeout.min(ctx.header_read_timeout).min(ctx.idle_timeout)) => {
            tracing::debug!(%remote, "no first byte in time; closing");
            false
        }
        () = ctx.shutdown.cancelled() => false,
    };
    if !spoke {
        return;
    }
    ticket.spoke();
    let _ticket = ticket;
    match ctx.tls.clone() {
        None => serve_connection(stream, remote, ctx).await,
        Some(acceptor) => {
            let hs = tokio::time::timeout(ctx.header_read_timeout, acceptor.accept(stream));
            let tls_stream = tokio::select! {
                () = ctx.hard_stop.cancelled() => return,
                () = ctx.shutdown.cancelled() => return,
                r = hs => r,
            };
            match tls_stream {
                Ok(Ok(s)) => match s.get_ref().1.alpn_protocol() {
                    Some(tls::H2_ALPN) => serve_h2(s, remote, ctx).await,
                    // The handshake was the whole validation.
                    Some(tls::ACME_TLS_ALPN) => {}
                    _ => serve_connection(s, remote, ctx).await,
                },
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_connection<I>(io: I, remote: SocketAddr, ctx: ConnCtx)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static + plain::RawSocket,
{
    let Some(answerer) = ctx.plain.clone() else {
        return serve_hyper(io, remote, ctx).await;
    };
    let limits = plain::Limits {
        header_read_timeout: ctx.header_read_timeout,
        idle_timeout: ctx.idle_timeout,
        shutdown: &ctx.shutdown,
        hard_stop: &ctx.hard_stop,
        tls: ctx.tls.is_some(),
        hsts: ctx.hsts.as_ref(),
    };
    match plain::serve(io, remote, &*answerer, limits).await {
        plain::Outcome::Closed => {}
        plain::Outcome::Handoff(io) => serve_hyper(io, remote, ctx).await,
    }
}

/// The router as hyper's service on one connection: it sees the peer through axum's
/// `ConnectInfo` (as with `axum::serve`) and the transport through [`Transport`], and HTTPS
/// answers get HSTS.
fn service(
    ctx: &ConnCtx,
    remote: SocketAddr,
) -> TowerToHyperService<
    impl tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone,
> {
    let transport = Transport { tls: ctx.tls.is_some() };
    let hsts = ctx.hsts.clone();
    let svc = ctx
        .router
        .clone()
        .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            req.extensions_mut().insert(transport);
            req
        })
        .map_response(move |mut res: axum::response::Response| {
            if let Some(v) = &hsts {
                res.headers_mut().insert(http::header::STRICT_TRANSPORT_SECURITY, v.clone());
            }
            res
        });
    TowerToHyperService::new(svc)
}

async fn serve_hyper<I>(io: I, remote: SocketAddr, ctx: ConnCtx)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = TokioIo::new(Tracked { inner: io, activity: Arc::clone(&activity) });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_BUF)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(io, service(&ctx, remote));
    drive(std::pin::pin!(conn), |c| c.graceful_shutdown(), &activity, remote, &ctx).await;
}

/// An HTTP/2 connection (negotiated by ALPN). The plain fast path is HTTP/1.1's; here every
/// request goes through the router.
async fn serve_h2<I>(io: I, remote: SocketAddr, ctx: ConnCtx)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = TokioIo::new(Tracked { inner: io, activity: Arc::clone(&activity) });
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_send_buf_size(H2_SEND_BUF)
        // hyper's defaults, stated: resets of streams not yet accepted, and resets the
        // server had to send because of the client's errors, beyond which it hangs up.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024))
        .serve_connection(io, service(&ctx, remote));
    drive(std::pin::pin!(conn), |c| c.graceful_shutdown(), &activity, remote, &ctx).await;
}

/// Runs a hyper connection to its end: a graceful shutdown when the server stops, a cut at
/// the hard stop, and a close after `idle_timeout` without a byte either way.
async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    activity: &Activity,
    remote: SocketAddr,
    ctx: &ConnCtx,
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut draining = false;
    loop {
        let idle_deadline = activity.last() + ctx.idle_timeout;
        tokio::select! {
            // Connection first: a connection handed over by the plain path may have a
            // request waiting in its buffer, and a graceful shutdown that ran before hyper
            // read it would close the connection as one that never asked anything.
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%remote, error = %e, "connection ended with error");
                }
                return;
            }
            () = ctx.shutdown.cancelled(), if !draining => {
                graceful(conn.as_mut());
                draining = true;
            }
            () = ctx.hard_stop.cancelled() => return,
            () = tokio::time::sleep_until(idle_deadline) => {
                if activity.last() + ctx.idle_timeout <= Instant::now() {
                    tracing::debug!(%remote, "closing idle connection");
                    return;
                }
            }
        }
    }
}

/// Time of the last byte read or written on a connection.
struct Activity {
    start: Instant,
    millis: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self { start: Instant::now(), millis: AtomicU64::new(0) })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// An I/O wrapper that records activity for the idle timeout.
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::file::{self, ArtifactMeta};
    use crate::http::response;
    use crate::http::testing::Resp;
    use http::StatusCode;
    use sha2::Digest as _;
    use std::io::ErrorKind;
    use std::path::PathBuf;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SIZE: usize = 300 * 1024 + 7;

    fn content() -> Vec<u8> {
        (0..SIZE).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// `/r/c/a.bin` from `file`, `/panic` panics, anything else 404: the shape of the agent's
    /// router, with its standard layers.
    fn router(file: PathBuf, meta: ArtifactMeta) -> Router {
        let r = Router::new()
            .route(
                "/r/c/a.bin",
                axum::routing::get(move |req: http::request::Parts| {
                    let (file, meta) = (file.clone(), meta.clone());
                    async move {
                        match tokio::fs::File::open(&file).await {
                            Ok(f) => file::serve(&req, f, &meta).await,
                            Err(e) => response::text(StatusCode::INTERNAL_SERVER_ERROR, e),
                        }
                    }
                }),
            )
            .route(
                "/panic",
                axum::routing::get(|| async {
                    panic!("handler panic (expected in test)");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .fallback(|| async { response::text(StatusCode::NOT_FOUND, "not found") });
        crate::http::layers::standard(r, Duration::from_secs(5))
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        addr: SocketAddr,
        data: Vec<u8>,
        meta: ArtifactMeta,
        shutdown: CancellationToken,
        server: RunningServer,
    }

    async fn start(tweak: impl FnOnce(&mut ServerConfig), dir: tempfile::TempDir) -> Fixture {
        let data = content();
        let file = dir.path().join("a.bin");
        std::fs::write(&file, &data).unwrap();
        let meta = ArtifactMeta {
            size: data.len() as u64,
            sha256: sha2::Sha256::digest(&data).into(),
            last_modified: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        };
        let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.header_read_timeout = Duration::from_millis(500);
        cfg.idle_timeout = Duration::from_secs(5);
        cfg.max_connections = 16;
        tweak(&mut cfg);
        let shutdown = CancellationToken::new();
        let server = bind(cfg, router(file, meta.clone()), None, shutdown.clone()).await.unwrap();
        Fixture { _dir: dir, addr: server.local_addr, data, meta, shutdown, server }
    }

    /// Sends one request with `Connection: close` and reads to EOF.
    async fn request(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .expect("response in time")
            .unwrap();
        Resp::parse_response(&buf, method == "HEAD")
            .unwrap_or_else(|| panic!("a response: {:?}", String::from_utf8_lossy(&buf)))
    }

    #[tokio::test]
    async fn serves_artifact_over_socket() {
        let f = start(|_| {}, tempfile::tempdir().unwrap()).await;
        let etag = file::etag(&f.meta.sha256);

        let r = request(f.addr, "GET", "/r/c/a.bin", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, f.data);
        assert_eq!(r.header("content-length"), Some(SIZE.to_string().as_str()));
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert!(r.header("repr-digest").is_some());
        assert!(r.header("digest").is_some());

        let r = request(f.addr, "GET", "/r/c/a.bin", &[("Range", "bytes=100-199")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &f.data[100..200]);
        assert_eq!(r.header("content-range"), Some(format!("bytes 100-199/{SIZE}").as_str()));
        assert_eq!(r.header("content-length"), Some("100"));

        let r = request(f.addr, "GET", "/r/c/a.bin", &[("Range", "bytes=-10")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &f.data[SIZE - 10..]);

        let r = request(f.addr, "GET", "/r/c/a.bin", &[("Range", &format!("bytes={SIZE}-"))]).await;
        assert_eq!(r.status, 416);
        assert_eq!(r.header("content-range"), Some(format!("bytes */{SIZE}").as_str()));
        assert!(r.body.is_empty());

        let r = request(f.addr, "GET", "/r/c/a.bin", &[("Range", "bytes=0-1,5-6")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, f.data);

        let r = request(f.addr, "GET", "/r/c/a.bin", &[("If-None-Match", &etag)]).await;
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());

        let r = request(f.addr, "HEAD", "/r/c/a.bin", &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-length"), Some(SIZE.to_string().as_str()));

        let r = request(f.addr, "DELETE", "/r/c/a.bin", &[]).await;
        assert_eq!(r.status, 405);
        let allow = r.header("allow").unwrap_or_default().replace(' ', "");
        assert_eq!(allow, "GET,HEAD");

        f.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), f.server.join())
            .await
            .expect("server stops after shutdown");
        assert!(TcpStream::connect(f.addr).await.is_err(), "listener closed");
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests() {
        let f = start(|_| {}, tempfile::tempdir().unwrap()).await;
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        for _ in 0..3 {
            s.write_all(b"GET /r/c/a.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n")
                .await
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed early");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    if buf.len() >= end + 4 + 10 {
                        break;
                    }
                }
            }
            let r = Resp::parse(&buf).expect("a response");
            assert_eq!(r.status, 206);
            assert_eq!(r.body, &f.data[..10]);
        }
    }

    #[tokio::test]
    async fn handler_panic_is_a_500() {
        let f = start(|_| {}, tempfile::tempdir().unwrap()).await;
        let r = request(f.addr, "GET", "/panic", &[]).await;
        assert_eq!(r.status, 500);
        let r = request(f.addr, "GET", "/r/c/a.bin", &[("Range", "bytes=0-0")]).await;
        assert_eq!(r.status, 206);
    }

    #[tokio::test]
    async fn slow_header_is_disconnected() {
        let f = start(|_| {}, tempfile::tempdir().unwrap()).await;
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        let t0 = Instant::now();
        s.write_all(b"GET /r/c/a.bin HTTP/1.1\r\nHost: te").await.unwrap();
        let mut buf = Vec::new();
        // Whether hyper writes a 408 first or just closes, the read ends.
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "stalled client still connected after 5s");
        assert!(t0.elapsed() >= Duration::from_millis(400));
        assert!(
            buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&buf)
        );
        assert_eq!(request(f.addr, "HEAD", "/r/c/a.bin", &[]).await.status, 200);
    }

    #[tokio::test]
    async fn idle_connection_is_closed() {
        let f = start(
            |c| {
                c.header_read_timeout = Duration::from_secs(30);
                c.idle_timeout = Duration::from_millis(300);
            },
            tempfile::tempdir().unwrap(),
        )
        .await;
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "idle connection not closed");
    }

    #[tokio::test]
    async fn huge_header_is_rejected() {
        let f = start(|_| {}, tempfile::tempdir().unwrap()).await;
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        let mut req = b"GET /r/c/a.bin HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        req.extend_from_slice(b"\r\n\r\n");
        let (mut rd, mut wr) = s.split();
        let write = async {
            // The server may close mid-upload; that is the point.
            let _ = wr.write_all(&req).await;
        };
        let mut buf = Vec::new();
        let read = async {
            match rd.read_to_end(&mut buf).await {
                Ok(_) => {}
                Err(e) => assert!(
                    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                    "{e}"
                ),
            }
        };
        tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(write, read) })
            .await
            .expect("huge header handled in time");
        if !buf.is_empty() {
            assert!(
                buf.starts_with(b"HTTP/1.1 431"),
                "{:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(100)])
            );
        }
        assert_eq!(request(f.addr, "HEAD", "/r/c/a.bin", &[]).await.status, 200);
    }

    /// Reads until the server closes; what it sent first.
    async fn closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(within, s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "connection neither served nor closed within {within:?}");
        buf
    }

    #[tokio::test]
    async fn a_full_server_closes_its_oldest_silent_connections_first() {
        let f = start(
            |c| {
                c.max_connections = 2;
                c.first_byte_timeout = Duration::from_secs(30);
            },
            tempfile::tempdir().unwrap(),
        )
        .await;
        // Ten silent clients on a server with room for two: each newcomer takes the place of
        // the oldest silent one, which is closed without an answer.
        let mut idle = Vec::new();
        for _ in 0..10 {
            idle.push(TcpStream::connect(f.addr).await.unwrap());
        }
        for s in &mut idle[..8] {
            assert!(closed(s, Duration::from_secs(5)).await.is_empty());
        }
        // A real request still gets in, evicting one of the last two silent ones.
        let r = request(f.addr, "GET", "/r/c/a.bin", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), SIZE);
    }

    #[tokio::test]
    async fn silence_and_too_many_connections_from_one_address_are_refused_at_once() {
        let f = start(
            |c| {
                c.max_connections_per_address = 3;
                c.first_byte_timeout = Duration::from_millis(300);
            },
            tempfile::tempdir().unwrap(),
        )
        .await;
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(TcpStream::connect(f.addr).await.unwrap());
        }
        // The fourth from 127.0.0.1 is refused with a 503 at once...
        let mut fourth = TcpStream::connect(f.addr).await.unwrap();
        let t0 = Instant::now();
        let buf = closed(&mut fourth, Duration::from_secs(2)).await;
        assert!(buf.starts_with(b"HTTP/1.1 503"), "{:?}", String::from_utf8_lossy(&buf));
        assert!(t0.elapsed() < Duration::from_millis(250), "refused at once");
        // ...another loopback address has its own count...
        let r = crate::http::testing::exchange_from(
            "127.0.0.2".parse().unwrap(),
            f.addr,
            "GET /r/c/a.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, 206);
        // ...and the silent three are closed after the first-byte timeout.
        for s in &mut idle {
            assert!(closed(s, Duration::from_secs(3)).await.is_empty());
        }
        assert_eq!(request(f.addr, "HEAD", "/r/c/a.bin", &[]).await.status, 200);
    }

    #[tokio::test]
    async fn shutdown_lets_in_flight_download_finish() {
        let f = start(|_| {}, tempfile::tempdir().unwrap()).await;
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(b"GET /r/c/a.bin HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let mut first = [0u8; 16];
        s.read_exact(&mut first).await.unwrap();
        f.shutdown.cancel();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
            .await
            .expect("connection closed after response")
            .unwrap();
        let mut all = first.to_vec();
        all.extend(rest);
        let r = Resp::parse(&all).expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, f.data);
        tokio::time::timeout(Duration::from_secs(5), f.server.join()).await.expect("server stops");
    }

    /// Does a TLS GET and returns (server end-entity cert, response).
    async fn tls_get(addr: SocketAddr, range: &str) -> (Vec<u8>, Resp) {
        let connector = crate::http::tls::tests::insecure_connector();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("relay.test").unwrap();
        let mut s = connector.connect(name, tcp).await.unwrap();
        let cert = s.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec();
        let req = format!(
            "GET /r/c/a.bin HTTP/1.1\r\nHost: t\r\nRange: {range}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        // Servers may close without close_notify after Connection: close.
        let _ = s.read_to_end(&mut buf).await;
        (cert, Resp::parse(&buf).expect("a response"))
    }

    #[tokio::test]
    async fn https_serves_and_picks_up_new_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let Some(files) = crate::http::tls::tests::self_signed(dir.path(), "one.test") else {
            eprintln!("openssl not available; skipping");
            return;
        };
        let f = start(|c| c.tls = Some(crate::http::tls::tests::settings(&files)), dir).await;
        let (cert1, r) = tls_get(f.addr, "bytes=0-99").await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &f.data[..100]);

        crate::http::tls::tests::self_signed(f._dir.path(), "two.test").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (cert, r) = tls_get(f.addr, "bytes=0-0").await;
            assert_eq!(r.status, 206);
            if cert != cert1 {
                break;
            }
            assert!(Instant::now() < deadline, "new certificate not served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
