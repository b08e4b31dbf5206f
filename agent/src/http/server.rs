//! The HTTP/1.1 listener shared by directory and relay modes: plain or TLS,
//! with the limits that keep abusive clients from hurting others (slow or
//! huge headers, idle connections, too many connections) and a graceful,
//! bounded shutdown. What each request means is the [`Handler`]'s business.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt as _;
use http::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::plain::{self, PlainRequest};
use super::response;
use super::tls::{self, CertReloader, TlsError};
use super::workers::Workers;

/// Every response body the server sends.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// Answers requests. Implemented by the directory and relay modes.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
        remote: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = http::Response<Body>> + Send + '_>>;

    /// Whether [`Handler::answer_plain`] may answer anything; when not, connections go
    /// straight to hyper.
    fn has_plain_answers(&self) -> bool {
        false
    }

    /// Answers a plain request without hyper when the answer is ready at hand: writes the
    /// whole response (head and body) to `out` and returns `true`, or returns `false` and
    /// the request goes to [`Handler::handle`]. Must not block or wait.
    fn answer_plain(&self, _req: &PlainRequest<'_>, _out: &mut Vec<u8>) -> bool {
        false
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `None` serves plain HTTP (for use behind a TLS-terminating proxy).
    pub tls: Option<TlsFiles>,
    /// Time a client has to send a complete request head (and, with TLS, to
    /// finish the handshake). Also bounds how long a keep-alive connection
    /// may sit between requests.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait briefly, then are refused.
    pub max_connections: usize,
    /// A connection with no bytes moving either way for this long is closed
    /// (a client that stops reading a response, for example).
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
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            idle_timeout: Duration::from_secs(60),
            threads: default_threads(),
        }
    }
}

/// Connection threads when none are configured: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// PEM files for HTTPS; reloaded when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot start connection threads for {addr}: {source}")]
    Threads { addr: SocketAddr, source: std::io::Error },
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
/// How long a connection over `max_connections` waits for a slot.
const OVERLOAD_WAIT: Duration = Duration::from_millis(500);
/// How long in-flight requests get after shutdown before being cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after an accept error (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Binds (port 0 allowed), returns the bound address at once, and serves until `shutdown` fires,
/// then stops accepting and lets in-flight requests finish (with a bound).
pub async fn bind(
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) -> Result<RunningServer, ServerError> {
    let (acceptor, reloader) = match &config.tls {
        Some(files) => {
            let (a, r) = tls::start(files, tls::DEFAULT_POLL_INTERVAL, shutdown.child_token())?;
            (Some(a), Some(r))
        }
        None => (None, None),
    };
    let bind_err = |source| ServerError::Bind { addr: config.listen, source };
    let listener = TcpListener::bind(config.listen).await.map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let workers = Workers::start(config.threads, "odi-http")
        .map_err(|source| ServerError::Threads { addr: config.listen, source })?;
    tracing::info!(%local_addr, tls = acceptor.is_some(), threads = config.threads, "HTTP server listening");
    let task = tokio::spawn(accept_loop(listener, config, handler, acceptor, workers, shutdown));
    Ok(RunningServer { local_addr, task, tls: reloader })
}

#[derive(Clone)]
struct ConnCtx {
    handler: Arc<dyn Handler>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Asks connections to finish their current request and close.
    shutdown: CancellationToken,
    /// Cuts connections that outlive the shutdown grace period.
    hard_stop: CancellationToken,
}

async fn accept_loop(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    workers: Workers,
    shutdown: CancellationToken,
) {
    let max = config.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let ctx = ConnCtx {
        handler,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        shutdown: shutdown.clone(),
        hard_stop: CancellationToken::new(),
    };
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
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            // Waiting here (not in a spawned task) keeps overload from
            // piling up tasks: further clients queue in the kernel backlog.
            Err(_) => tokio::select! {
                () = shutdown.cancelled() => break,
                r = tokio::time::timeout(OVERLOAD_WAIT, Arc::clone(&slots).acquire_owned()) => match r {
                    Ok(Ok(p)) => p,
                    _ => {
                        refuse_overloaded(&stream, remote);
                        continue;
                    }
                },
            },
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
        let acceptor = acceptor.clone();
        workers.spawn(async move {
            let _permit = permit;
            let stream = match TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "cannot register the connection");
                    return;
                }
            };
            match acceptor {
                None => serve_connection(stream, remote, ctx).await,
                Some(acceptor) => {
                    let hs = tokio::time::timeout(ctx.header_read_timeout, acceptor.accept(stream));
                    let tls_stream = tokio::select! {
                        () = ctx.hard_stop.cancelled() => return,
                        () = ctx.shutdown.cancelled() => return,
                        r = hs => r,
                    };
                    match tls_stream {
                        Ok(Ok(s)) => serve_connection(s, remote, ctx).await,
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("HTTP server stopped accepting; draining connections");
    // All permits back means every connection task has ended.
    let all = max as u32;
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("connections still open after shutdown grace period; closing them");
        ctx.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
    }
    workers.stop().await;
}

/// Best-effort 503 to a client we cannot serve now; never blocks.
fn refuse_overloaded(stream: &TcpStream, remote: SocketAddr) {
    // debug, not warn: under a connection flood this would flood the log too.
    tracing::debug!(%remote, "too many connections; refusing");
    let _ = stream.try_write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n");
}

async fn serve_connection<I>(io: I, remote: SocketAddr, ctx: ConnCtx)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !ctx.handler.has_plain_answers() {
        return serve_hyper(io, remote, ctx).await;
    }
    let limits = plain::Limits {
        header_read_timeout: ctx.header_read_timeout,
        idle_timeout: ctx.idle_timeout,
        shutdown: &ctx.shutdown,
        hard_stop: &ctx.hard_stop,
    };
    match plain::serve(io, remote, &*ctx.handler, limits).await {
        plain::Outcome::Closed => {}
        plain::Outcome::Handoff(io) => serve_hyper(io, remote, ctx).await,
    }
}

async fn serve_hyper<I>(io: I, remote: SocketAddr, ctx: ConnCtx)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = TokioIo::new(Tracked { inner: io, activity: Arc::clone(&activity) });
    let handler = Arc::clone(&ctx.handler);
    let svc = service_fn(move |req| {
        let handler = Arc::clone(&handler);
        async move {
            // A panicking handler costs its request a 500, not the
            // connection or the server.
            let fut =
                std::panic::AssertUnwindSafe(async move { handler.handle(req, remote).await });
            Ok::<_, Infallible>(match fut.catch_unwind().await {
                Ok(resp) => resp,
                Err(_) => {
                    tracing::error!(%remote, "request handler panicked");
                    response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            })
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_BUF)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
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
                conn.as_mut().graceful_shutdown();
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
    use crate::http::artifact::{self, ArtifactMeta};
    use sha2::Digest as _;
    use std::io::ErrorKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SIZE: usize = 300 * 1024 + 7;

    fn content() -> Vec<u8> {
        (0..SIZE).map(|i| (i * 31 % 251) as u8).collect()
    }

    struct TestHandler {
        file: PathBuf,
        meta: ArtifactMeta,
    }

    impl Handler for TestHandler {
        fn handle(
            &self,
            req: http::Request<hyper::body::Incoming>,
            _remote: SocketAddr,
        ) -> Pin<Box<dyn Future<Output = http::Response<Body>> + Send + '_>> {
            Box::pin(async move {
                let (parts, _body) = req.into_parts();
                match parts.uri.path() {
                    "/r/c/a.bin" => match tokio::fs::File::open(&self.file).await {
                        Ok(f) => artifact::serve(&parts, f, &self.meta).await,
                        Err(e) => response::text(StatusCode::INTERNAL_SERVER_ERROR, e),
                    },
                    "/panic" => panic!("handler panic (expected in test)"),
                    _ => response::text(StatusCode::NOT_FOUND, "not found"),
                }
            })
        }
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
        let handler = Arc::new(TestHandler { file, meta: meta.clone() });
        let server = bind(cfg, handler, shutdown.clone()).await.unwrap();
        Fixture { _dir: dir, addr: server.local_addr, data, meta, shutdown, server }
    }

    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    fn parse(raw: &[u8]) -> Resp {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
        let head = std::str::from_utf8(&raw[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Resp { status, headers, body: raw[end + 4..].to_vec() }
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
        parse(&buf)
    }

    #[tokio::test]
    async fn serves_artifact_over_socket() {
        let f = start(|_| {}, tempfile::tempdir().unwrap()).await;
        let etag = artifact::etag(&f.meta.sha256);

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
        assert_eq!(r.header("allow"), Some("GET, HEAD"));

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
            let r = parse(&buf);
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

    #[tokio::test]
    async fn connection_limit_does_not_crash() {
        let f = start(
            |c| {
                c.max_connections = 2;
                c.header_read_timeout = Duration::from_millis(800);
            },
            tempfile::tempdir().unwrap(),
        )
        .await;
        // Ten silent clients: two hold the slots, the rest wait and are refused.
        let mut idle = Vec::new();
        for _ in 0..10 {
            idle.push(TcpStream::connect(f.addr).await.unwrap());
        }
        let mut refused = 0;
        for s in &mut idle {
            let mut buf = Vec::new();
            let r = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
            assert!(r.is_ok(), "connection neither served nor closed");
            if buf.starts_with(b"HTTP/1.1 503") {
                refused += 1;
            }
        }
        assert!(refused >= 1, "no connection was refused");
        drop(idle);
        let r = request(f.addr, "GET", "/r/c/a.bin", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), SIZE);
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
        let r = parse(&all);
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
        (cert, parse(&buf))
    }

    #[tokio::test]
    async fn https_serves_and_picks_up_new_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let Some(files) = crate::http::tls::tests::self_signed(dir.path(), "one.test") else {
            eprintln!("openssl not available; skipping");
            return;
        };
        let f = start(|c| c.tls = Some(files), dir).await;
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
