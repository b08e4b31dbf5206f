//! Plain requests answered before hyper sees the connection.
//!
//! A directory's work is a flood of small `GET`s that each end in a ready-made `302`. Going
//! through hyper costs a header map, a request and a response object, a boxed future and a
//! boxed body per request; here a request head is parsed in place with `httparse` and the
//! handler writes the response bytes straight into a reused buffer. Nothing is allocated per
//! request.
//!
//! A relay's answer is a head and a region of a file ([`Answer::File`]): on plain HTTP the bytes
//! go from the page cache to the socket with `sendfile(2)`, never through user space, and a
//! client that reads slowly costs no buffer at all; over TLS they are read and written one TLS
//! record (16 KiB) at a time through one buffer per transfer. Either way the connection thread
//! may wait on the disk for a file not in the page cache, as nginx's workers do.
//!
//! Only the plainest requests take this path: `GET` or `HEAD`, HTTP/1.1, an origin-form
//! target, exactly one `Host`, no body, no `Connection: close`, `Expect` or `Upgrade`, and an
//! answerer that knows the answer without waiting for anything ([`PlainAnswer`]). Everything else,
//! including every malformed request, is handed to hyper together with the bytes already
//! read, and hyper serves the rest of the connection: its answers to odd or hostile input
//! stay the only ones.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Read buffer per connection. A request head that does not fit is not plain.
const BUF: usize = 8 * 1024;
/// Headers looked at; a request with more is handed to hyper (which allows more).
const MAX_HEADERS: usize = 48;

/// Answers plain requests without hyper when the answer is ready at hand.
pub trait PlainAnswer: Send + Sync + 'static {
    /// Writes the response head (and any body held in memory) to `out`, or declines and the
    /// request goes to the router. Must not wait on anything but a local file: it runs on a
    /// connection thread that serves many other connections.
    fn answer(&self, req: &PlainRequest<'_>, out: &mut Vec<u8>) -> Answer;
}

/// What [`PlainAnswer::answer`] did.
#[derive(Debug)]
pub enum Answer {
    /// Nothing written (anything written is discarded): the router answers.
    Declined,
    /// The whole response is in `out`.
    Done,
    /// The head is in `out`; the body is this region of a file.
    File(FileRegion),
}

impl From<bool> for Answer {
    fn from(done: bool) -> Self {
        if done {
            Answer::Done
        } else {
            Answer::Declined
        }
    }
}

/// A body that is part of a file, sent as it is (the head has its `Content-Length`).
#[derive(Debug)]
pub struct FileRegion {
    /// The open file.
    pub file: std::fs::File,
    /// First byte.
    pub start: u64,
    /// Bytes to send. If the file ends before them, the connection is closed: a client never
    /// takes a short body for a whole one.
    pub len: u64,
}

/// A `GET` or `HEAD` parsed by the server itself.
#[derive(Debug)]
pub struct PlainRequest<'a> {
    /// `HEAD` rather than `GET`.
    pub head: bool,
    /// The path as sent (still percent-encoded), without the query.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: Option<&'a str>,
    /// Every header field, in order.
    pub headers: &'a [httparse::Header<'a>],
    /// The peer.
    pub remote: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
}

impl<'a> PlainRequest<'a> {
    /// Values of every field named `name` (ASCII case-insensitive), in order.
    pub fn header_values(&self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a [u8]> + '_ {
        self.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// Writes a response head into the connection's output buffer.
#[derive(Debug)]
pub struct PlainResponse<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> PlainResponse<'a> {
    /// Starts a response with `status`.
    pub fn new(out: &'a mut Vec<u8>, status: StatusCode) -> Self {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        Self { out }
    }

    /// Adds a header field. Values are `HeaderValue`s, so they hold no line breaks.
    pub fn header(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.out.extend_from_slice(name.as_str().as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Ends a head whose fields (`content-length` among them) are all written, adding `date`
    /// as hyper would.
    pub fn finish_head(self) {
        self.out.extend_from_slice(b"date: ");
        http_date(self.out);
        self.out.extend_from_slice(b"\r\n\r\n");
    }

    /// Ends a response without a body, with `content-length: 0` and `date` as hyper would.
    pub fn finish_empty(self) {
        self.out.extend_from_slice(b"content-length: 0\r\ndate: ");
        http_date(self.out);
        self.out.extend_from_slice(b"\r\n\r\n");
    }
}

thread_local! {
    /// This thread's current HTTP date, kept fresh by [`keep_date_fresh`].
    static DATE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Appends the current time as an HTTP date: the one [`keep_date_fresh`] keeps on this
/// thread when it runs here (a clock read per request costs as much as the rest of a
/// redirect's user-space work), otherwise read now.
fn http_date(out: &mut Vec<u8>) {
    DATE.with_borrow(|d| match d {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        None => out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes()),
    });
}

/// Keeps this thread's HTTP date within half a second of the clock, until dropped.
pub(super) async fn keep_date_fresh() {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = u64::MAX;
    loop {
        tick.tick().await;
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != last {
            last = secs;
            DATE.set(Some(httpdate::fmt_http_date(now)));
        }
    }
}

/// How a connection left the plain loop.
pub(super) enum Outcome<I> {
    /// Closed (by the client, an error, a timeout or shutdown): nothing more to do.
    Closed,
    /// A request that is not plain (or not answerable here) is first among the bytes the
    /// [`Rewind`] replays: hyper serves the connection from there.
    Handoff(Rewind<I>),
}

/// What one buffered request head turned out to be.
enum Parsed {
    /// Answered; the head was this many bytes; the body to send after what `out` holds.
    Answered(usize, Option<FileRegion>),
    /// Not a complete head yet.
    Partial,
    /// Hyper's business.
    Other,
}

/// Timeouts and stop signals of one connection.
pub(super) struct Limits<'a> {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown: &'a CancellationToken,
    pub hard_stop: &'a CancellationToken,
    /// The connection is TLS (handlers send HTTPS clients only to HTTPS mirrors).
    pub tls: bool,
    /// `Strict-Transport-Security` added to every answer (HTTPS only).
    pub hsts: Option<&'a HeaderValue>,
}

/// A connection's transport, for sending file regions: plain TCP has `sendfile(2)`.
pub(super) trait RawSocket {
    /// The socket, when bytes written to it reach the client as they are.
    fn plain_tcp(&self) -> Option<&tokio::net::TcpStream> {
        None
    }
}

impl RawSocket for tokio::net::TcpStream {
    fn plain_tcp(&self) -> Option<&tokio::net::TcpStream> {
        Some(self)
    }
}

impl<T> RawSocket for tokio_rustls::server::TlsStream<T> {}

#[cfg(test)]
impl<T> RawSocket for tokio::io::BufWriter<T> {}

/// Serves plain requests on `io` until the connection ends or a request needs hyper.
pub(super) async fn serve<I>(
    mut io: I,
    remote: SocketAddr,
    handler: &dyn PlainAnswer,
    limits: Limits<'_>,
) -> Outcome<I>
where
    I: AsyncRead + AsyncWrite + Unpin + RawSocket,
{
    let mut buf = vec![0u8; BUF];
    match run(&mut io, &mut buf, remote, handler, &limits).await {
        Step::Handoff { start, end } => Outcome::Handoff(Rewind::new(buf, start, end, io)),
        Step::Close => {
            // Best effort: a TLS close_notify or a FIN, not a reset.
            tokio::select! {
                biased;
                _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()) => {}
                () = limits.hard_stop.cancelled() => {}
            }
            Outcome::Closed
        }
    }
}

/// How long closing a connection may take.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Under a pipeline that never pauses, the shutdown signal is looked at every this many
/// requests (otherwise only when the connection waits).
const STOP_CHECK_EVERY: u64 = 64;

/// How [`run`] ended.
enum Step {
    Close,
    /// The request at `buf[start..end]` is hyper's.
    Handoff {
        start: usize,
        end: usize,
    },
}

async fn run<I>(
    io: &mut I,
    buf: &mut [u8],
    remote: SocketAddr,
    handler: &dyn PlainAnswer,
    limits: &Limits<'_>,
) -> Step
where
    I: AsyncRead + AsyncWrite + Unpin + RawSocket,
{
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = Vec::with_capacity(1024);
    let hsts =
        limits.hsts.map(|v| [b"strict-transport-security: ", v.as_bytes(), b"\r\n"].concat());
    let conn = Conn { remote, tls: limits.tls, hsts: hsts.as_deref() };
    // Until shutdown starts only `shutdown` is watched while waiting for a request. Child
    // tokens, so that polling one touches this connection's node, not the one every other
    // connection polls too.
    let shutdown = limits.shutdown.child_token();
    let hard_stop = limits.hard_stop.child_token();
    let mut shutdown = std::pin::pin!(shutdown.cancelled());
    let mut hard_stop = std::pin::pin!(hard_stop.cancelled());
    // Once set, requests go to hyper, which answers them with `Connection: close` and closes.
    let mut stopping = false;
    // The head timeout is one timer per connection, not one per request: when it fires, a
    // connection that completed a request since it was armed gets another period, one that
    // did not is closed. A client thus has between one and two periods to send a head.
    let mut answered: u64 = 0;
    let mut seen: u64 = 0;
    // Waiting for a head is also being idle: the shorter limit applies.
    let period = limits.header_read_timeout.min(limits.idle_timeout);
    let mut timer = std::pin::pin!(tokio::time::sleep(period));
    loop {
        // Answer every complete request already buffered (pipelined ones included), sending
        // the answers in as few writes as possible.
        let mut more = true;
        let mut other = false;
        while more {
            more = false;
            let mut body = None;
            while start < end {
                if out.len() >= BUF {
                    more = true;
                    break;
                }
                if stopping {
                    other = true;
                    break;
                }
                match parse(&buf[start..end], &conn, handler, &mut out) {
                    Parsed::Answered(n, file) => {
                        start += n;
                        answered += 1;
                        if answered % STOP_CHECK_EVERY == 0 && limits.shutdown.is_cancelled() {
                            stopping = true;
                        }
                        if file.is_some() {
                            // Its head goes out first, then the file; then the next request.
                            body = file;
                            more = true;
                            break;
                        }
                    }
                    Parsed::Partial => break,
                    Parsed::Other => {
                        other = true;
                        break;
                    }
                }
            }
            if !out.is_empty() {
                let wrote = tokio::select! {
                    biased;
                    // Flushed too: TLS may hold back what it was given.
                    r = async { io.write_all(&out).await?; io.flush().await } => r.is_ok(),
                    () = &mut hard_stop => false,
                    // A client that stops reading its answers.
                    () = tokio::time::sleep(limits.idle_timeout) => false,
                };
                out.clear();
                if !wrote {
                    return Step::Close;
                }
            }
            if let Some(region) = body {
                if !send_region(io, region, limits.idle_timeout, &mut hard_stop).await {
                    return Step::Close;
                }
            }
        }
        if other {
            return Step::Handoff { start, end };
        }
        if start == end {
            if stopping {
                return Step::Close;
            }
            (start, end) = (0, 0);
        } else if end == buf.len() {
            if start == 0 {
                // A head this large is not plain.
                return Step::Handoff { start, end };
            }
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        tokio::select! {
            biased;
            r = io.read(&mut buf[end..]) => match r {
                Ok(0) | Err(_) => return Step::Close,
                Ok(n) => end += n,
            },
            () = &mut timer => {
                if answered == seen {
                    tracing::debug!(%remote, "no complete request head in time; closing");
                    return Step::Close;
                }
                seen = answered;
                timer.as_mut().reset(Instant::now() + period);
            }
            () = &mut shutdown, if !stopping => {
                // Between requests nothing is in flight: close now. In the middle of a
                // head, let the client finish it; hyper answers it.
                if start == end {
                    return Step::Close;
                }
                stopping = true;
            }
            () = &mut hard_stop, if stopping => return Step::Close,
        }
    }
}

/// What [`parse`] needs to know of the connection.
struct Conn<'a> {
    remote: SocketAddr,
    tls: bool,
    /// The whole `Strict-Transport-Security` line, CRLF included.
    hsts: Option<&'a [u8]>,
}

/// Parses the head at the start of `bytes` and, when it is plain and the handler answers it,
/// appends the response to `out`.
fn parse(bytes: &[u8], conn: &Conn<'_>, handler: &dyn PlainAnswer, out: &mut Vec<u8>) -> Parsed {
    let (remote, tls) = (conn.remote, conn.tls);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Parsed::Other,
    };
    if req.version != Some(1) {
        return Parsed::Other;
    }
    let Some(target) = req.path.filter(|p| p.starts_with('/')) else { return Parsed::Other };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // Only targets hyper (the `http` crate) would take as they are: a different verdict on
    // the same bytes would make the two paths disagree.
    if !uri_target_ok(path, query) {
        return Parsed::Other;
    }
    // RFC 9112 section 3.2: an HTTP/1.1 request has exactly one Host; the router answers
    // any other count with 400.
    let mut hosts = 0;
    for h in req.headers.iter() {
        let n = h.name;
        let plain = if n.eq_ignore_ascii_case("host") {
            hosts += 1;
            true
        } else if n.eq_ignore_ascii_case("connection") {
            // `close` (or anything but keep-alive) changes how the response must end.
            h.value
                .split(|&b| b == b',')
                .all(|t| t.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
        } else {
            !(n.eq_ignore_ascii_case("content-length")
                || n.eq_ignore_ascii_case("transfer-encoding")
                || n.eq_ignore_ascii_case("expect")
                || n.eq_ignore_ascii_case("upgrade"))
        };
        if !plain {
            return Parsed::Other;
        }
    }
    if hosts != 1 {
        return Parsed::Other;
    }
    let request = PlainRequest { head, path, query, headers: req.headers, remote, tls };
    let before = out.len();
    // A panicking answer must cost no more than on hyper's path: there the request gets a
    // 500; here it goes to hyper, which answers it (or catches that panic too).
    let answered =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.answer(&request, out)))
            .unwrap_or_else(|_| {
                tracing::error!(%remote, "plain request handler panicked");
                Answer::Declined
            });
    let file = match answered {
        Answer::Declined => {
            out.truncate(before);
            return Parsed::Other;
        }
        Answer::Done => None,
        Answer::File(f) => Some(f),
    };
    if let Some(line) = conn.hsts {
        // Right after the status line: handlers write whole responses, and one field more in
        // the head costs a move of a few hundred bytes, not a second path.
        if let Some(eol) = out[before..].windows(2).position(|w| w == b"\r\n") {
            let at = before + eol + 2;
            out.splice(at..at, line.iter().copied());
        }
    }
    Parsed::Answered(len, file)
}

/// Bytes of a file read and written at a time where `sendfile` cannot be used (TLS): one TLS
/// record, as nginx's `ssl_buffer_size`. A reader that stalls holds this and about as much
/// again in rustls' outgoing buffer.
const COPY_CHUNK: usize = 16 * 1024;

/// Sends `r` to the client: with `sendfile(2)` on plain TCP, else through one buffer of
/// [`COPY_CHUNK`]. `false` when the connection must end: the client went away or stopped
/// reading for `idle`, the server is being cut, or the file ended early.
async fn send_region<I, S>(
    io: &mut I,
    r: FileRegion,
    idle: Duration,
    hard_stop: &mut Pin<&mut S>,
) -> bool
where
    I: AsyncWrite + Unpin + RawSocket,
    S: std::future::Future<Output = ()>,
{
    let end = r.start.saturating_add(r.len);
    if let Some(tcp) = io.plain_tcp() {
        let mut off = r.start;
        while off < end {
            // A fast reader never makes the socket wait: yield now and then so the other
            // connections on this thread are served.
            tokio::task::consume_budget().await;
            let ready = tokio::select! {
                biased;
                () = hard_stop.as_mut() => return false,
                w = tokio::time::timeout(idle, tcp.writable()) => matches!(w, Ok(Ok(()))),
            };
            if !ready {
                return false;
            }
            let count = usize::try_from(end - off).unwrap_or(usize::MAX).min(1 << 30);
            let sent = tcp.try_io(tokio::io::Interest::WRITABLE, || {
                rustix::fs::sendfile(tcp, &r.file, Some(&mut off), count)
                    .map_err(std::io::Error::from)
            });
            match sent {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                // A file system without sendfile: copy instead, if nothing went out yet.
                Err(e) if off == r.start && unsupported(&e) => break,
                Err(_) => return false,
            }
        }
        if off >= end {
            return true;
        }
    }
    use std::io::{Read as _, Seek as _};
    let mut file = r.file;
    if file.seek(std::io::SeekFrom::Start(r.start)).is_err() {
        return false;
    }
    let mut buf = vec![0u8; usize::try_from(r.len).map_or(COPY_CHUNK, |l| l.min(COPY_CHUNK))];
    let mut left = r.len;
    while left > 0 {
        let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let wrote = tokio::select! {
            biased;
            () = hard_stop.as_mut() => false,
            w = tokio::time::timeout(idle, async { io.write_all(&buf[..n]).await?; io.flush().await }) => {
                matches!(w, Ok(Ok(())))
            }
        };
        if !wrote {
            return false;
        }
        left -= n as u64;
    }
    true
}

/// `sendfile` cannot be used for this file (EINVAL, ENOSYS or EOPNOTSUPP).
fn unsupported(e: &std::io::Error) -> bool {
    let raw = e.raw_os_error();
    [rustix::io::Errno::INVAL, rustix::io::Errno::NOSYS, rustix::io::Errno::OPNOTSUPP]
        .iter()
        .any(|n| Some(n.raw_os_error()) == raw)
}

/// Whether the `http` crate takes this origin-form target as it is (the same byte classes as
/// its `PathAndQuery` parser). No `#`: a fragment is hyper's business.
fn uri_target_ok(path: &str, query: Option<&str>) -> bool {
    path.bytes().all(
        |b| matches!(b, 0x21 | 0x22 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7E | 0x80..=0xFF),
    ) && query
        .unwrap_or("")
        .bytes()
        .all(|b| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E | 0x80..=0xFF))
}

/// The connection for hyper: bytes already read first, then the stream.
pub(super) struct Rewind<I> {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    inner: I,
}

impl<I> Rewind<I> {
    fn new(buf: Vec<u8>, pos: usize, end: usize, inner: I) -> Self {
        Self { buf, pos, end, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.end {
            let n = (self.end - self.pos).min(out.remaining());
            out.put_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.end {
                self.buf = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
mod tests;
