//! Tests of the plain path: `parse`, `PlainResponse` and `Rewind` on their own, then a whole
//! server (bound on 127.0.0.1:0, raw `TcpStream` clients) whose handler answers
//! `GET`/`HEAD /plain/...` itself and leaves everything else to hyper. Every response says
//! which path answered it (`x-answered-by: plain` or `hyper`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::header::{HeaderValue, LOCATION};
use http::StatusCode;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PlainAnswer;
use super::{
    http_date, keep_date_fresh, parse, Parsed, PlainRequest, PlainResponse, Rewind, BUF, DATE,
    MAX_HEADERS,
};
use crate::http::response;
use crate::http::server::{bind, RunningServer, ServerConfig};
use crate::http::testing::{Client, Reader, Resp, WAIT};
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
/// Where plain answers redirect to: `LOCATION_BASE` + path (+ `?query`).
const LOCATION_BASE: &str = "http://relay.test";

// ---------------------------------------------------------------------------------------
// The test handler

/// Answers `GET`/`HEAD /plain/<anything>` itself with a `302`, except:
/// - a query containing `decline` (declined: goes to hyper),
/// - `/plain/write-then-decline`, which writes part of a response and then declines (the
///   bytes must be thrown away),
/// - `/plain/panic`, which panics.
///
/// Hyper answers everything with `200` and `hyper <method> <target>`, and says in
/// `x-body` what request body it read.
struct TestHandler;

/// Hyper's side of [`TestHandler`]: every request.
fn hyper_router() -> axum::Router {
    axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let (parts, body) = req.into_parts();
        // Read the body: it must not be mistaken for the next request, and reading it is
        // what makes hyper send `100 Continue`.
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let mut resp =
            response::text(StatusCode::OK, format!("hyper {} {}", parts.method, parts.uri));
        let h = resp.headers_mut();
        h.insert("x-answered-by", HeaderValue::from_static("hyper"));
        h.insert(
            "x-body",
            HeaderValue::from_str(&String::from_utf8_lossy(&body))
                .unwrap_or(HeaderValue::from_static("<binary>")),
        );
        resp
    })
}

impl PlainAnswer for TestHandler {
    fn answer(&self, req: &PlainRequest<'_>, out: &mut Vec<u8>) -> super::Answer {
        self.decide(req, out).into()
    }
}

impl TestHandler {
    fn decide(&self, req: &PlainRequest<'_>, out: &mut Vec<u8>) -> bool {
        let Some(rest) = req.path.strip_prefix("/plain/") else { return false };
        if req.query.is_some_and(|q| q.contains("decline")) {
            return false;
        }
        if rest == "panic" {
            panic!("answer_plain panic (expected in test)");
        }
        if rest == "write-then-decline" {
            let mut r = PlainResponse::new(out, StatusCode::IM_A_TEAPOT);
            r.header(&LOCATION, &HeaderValue::from_static("http://nowhere.test/"));
            return false;
        }
        let mut location = format!("{LOCATION_BASE}{}", req.path);
        if let Some(q) = req.query {
            location.push('?');
            location.push_str(q);
        }
        let Ok(location) = HeaderValue::from_str(&location) else { return false };
        let mut r = PlainResponse::new(out, StatusCode::FOUND);
        r.header(&LOCATION, &location);
        r.header(
            &http::header::HeaderName::from_static("x-answered-by"),
            &HeaderValue::from_static("plain"),
        );
        r.finish_empty();
        true
    }
}

struct Fixture {
    addr: SocketAddr,
    shutdown: CancellationToken,
    server: RunningServer,
}

async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.header_read_timeout = HEADER_TIMEOUT;
    cfg.idle_timeout = Duration::from_secs(5);
    cfg.max_connections = 256;
    // Several connection threads even on a small machine.
    cfg.threads = 3;
    tweak(&mut cfg);
    let shutdown = CancellationToken::new();
    let server =
        bind(cfg, hyper_router(), Some(Arc::new(TestHandler)), shutdown.clone()).await.unwrap();
    Fixture { addr: server.local_addr, shutdown, server }
}

// ---------------------------------------------------------------------------------------
// A raw HTTP/1.1 client

/// Which path answered, and what each path's answer must look like.
trait Answered {
    fn answered_by(&self) -> &str;
    fn assert_plain(&self, target: &str);
    fn assert_hyper(&self, method: &str, target: &str, head: bool);
}

impl Answered for Resp {
    fn answered_by(&self) -> &str {
        self.header("x-answered-by").unwrap_or("<none>")
    }

    /// A plain `302` for `target` (path and query as sent).
    #[track_caller]
    fn assert_plain(&self, target: &str) {
        assert_eq!(self.answered_by(), "plain", "{self:?}");
        assert_eq!(self.status, 302, "{self:?}");
        assert_eq!(
            self.header("location"),
            Some(format!("{LOCATION_BASE}{target}").as_str()),
            "{self:?}"
        );
        assert_eq!(self.header("content-length"), Some("0"), "{self:?}");
        assert!(self.body.is_empty(), "{self:?}");
    }

    /// Hyper's `200` for `method` and `target`; `head` when the request was a `HEAD`.
    #[track_caller]
    fn assert_hyper(&self, method: &str, target: &str, head: bool) {
        assert_eq!(self.answered_by(), "hyper", "{self:?}");
        assert_eq!(self.status, 200, "{self:?}");
        let text = format!("hyper {method} {target}\n");
        if head {
            assert!(self.body.is_empty(), "{self:?}");
            assert_eq!(
                self.header("content-length"),
                Some(text.len().to_string().as_str()),
                "{self:?}"
            );
        } else {
            assert_eq!(self.body_text(), text, "{self:?}");
        }
    }
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n")
}

fn head(target: &str) -> String {
    format!("HEAD {target} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// The date header of a plain answer: an HTTP date close to now.
#[track_caller]
fn assert_fresh_date(value: &str) {
    let date = httpdate::parse_http_date(value).unwrap_or_else(|e| panic!("date {value:?}: {e}"));
    let now = SystemTime::now();
    let off = now.duration_since(date).unwrap_or_else(|e| e.duration());
    assert!(off <= Duration::from_secs(5), "date {value:?} is {off:?} away from now");
}

// ---------------------------------------------------------------------------------------
// parse, PlainResponse, Rewind on their own

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Answered(usize),
    Partial,
    Other,
}

fn remote() -> SocketAddr {
    "192.0.2.7:4567".parse().unwrap()
}

fn conn() -> super::Conn<'static> {
    super::Conn { remote: remote(), tls: false, hsts: None }
}

fn classify(bytes: &[u8]) -> (Kind, Vec<u8>) {
    let mut out = Vec::new();
    let kind = match parse(bytes, &conn(), &TestHandler, &mut out) {
        Parsed::Answered(n, _) => Kind::Answered(n),
        Parsed::Partial => Kind::Partial,
        Parsed::Other => Kind::Other,
    };
    (kind, out)
}

#[test]
fn parse_tells_plain_heads_from_others() {
    let simple = "GET /plain/a HTTP/1.1\r\nHost: t\r\n\r\n";
    let many = |n: usize| {
        // Host plus n - 1 others: n fields in all.
        let mut s = String::from("GET /plain/a HTTP/1.1\r\nHost: t\r\n");
        for i in 1..n {
            s.push_str(&format!("X-H{i}: v\r\n"));
        }
        s.push_str("\r\n");
        s
    };
    let pipelined = format!("{simple}GET /plain/b HTTP/1.1\r\nHo");
    let cases: Vec<(&str, String, Kind)> = vec![
        ("GET", simple.to_owned(), Kind::Answered(simple.len())),
        ("HEAD", head("/plain/a"), Kind::Answered(head("/plain/a").len())),
        ("followed by more", pipelined, Kind::Answered(simple.len())),
        // RFC 9112 section 3.2: exactly one Host; the router answers the others with 400.
        ("no Host", "GET /plain/a HTTP/1.1\r\n\r\n".into(), Kind::Other),
        ("two Hosts", "GET /plain/a HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n".into(), Kind::Other),
        ("Host only", "GET /plain/a HTTP/1.1\r\nhost: t\r\n\r\n".into(), Kind::Answered(34)),
        ("bare LF", "GET /plain/a HTTP/1.1\nHost: t\n\n".into(), Kind::Answered(31)),
        ("accepted query", get("/plain/a?x=1"), Kind::Answered(get("/plain/a?x=1").len())),
        (
            "keep-alive",
            "GET /plain/a HTTP/1.1\r\nHost: t\r\nConnection: Keep-Alive\r\n\r\n".into(),
            Kind::Answered(58),
        ),
        (
            "keep-alive twice",
            "GET /plain/a HTTP/1.1\r\nHost: t\r\nConnection: keep-alive , keep-alive\r\n\r\n"
                .into(),
            Kind::Answered(71),
        ),
        (
            "TE",
            "GET /plain/a HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n".into(),
            Kind::Answered(48),
        ),
        (
            "as many headers as looked at",
            many(MAX_HEADERS),
            Kind::Answered(many(MAX_HEADERS).len()),
        ),
        // Incomplete.
        ("empty", String::new(), Kind::Partial),
        ("method only", "GET".into(), Kind::Partial),
        ("no blank line", "GET /plain/a HTTP/1.1\r\nHost: t\r\n".into(), Kind::Partial),
        ("half a CRLF", "GET /plain/a HTTP/1.1\r\nHost: t\r\n\r".into(), Kind::Partial),
        // Not plain.
        ("POST", "POST /plain/a HTTP/1.1\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("lower-case get", "get /plain/a HTTP/1.1\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("HTTP/1.0", "GET /plain/a HTTP/1.0\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("absolute form", "GET http://x/plain/a HTTP/1.1\r\nHost: x\r\n\r\n".into(), Kind::Other),
        ("asterisk", "GET * HTTP/1.1\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("close", "GET /plain/a HTTP/1.1\r\nConnection: close\r\n\r\n".into(), Kind::Other),
        (
            "keep-alive, close",
            "GET /plain/a HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n".into(),
            Kind::Other,
        ),
        (
            "keep-alive then close",
            "GET /plain/a HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n".into(),
            Kind::Other,
        ),
        ("empty connection", "GET /plain/a HTTP/1.1\r\nConnection: \r\n\r\n".into(), Kind::Other),
        (
            "connection upgrade",
            "GET /plain/a HTTP/1.1\r\nConnection: upgrade\r\n\r\n".into(),
            Kind::Other,
        ),
        ("upgrade", "GET /plain/a HTTP/1.1\r\nUpgrade: websocket\r\n\r\n".into(), Kind::Other),
        (
            "content-length 0",
            "GET /plain/a HTTP/1.1\r\nContent-Length: 0\r\n\r\n".into(),
            Kind::Other,
        ),
        (
            "content-length",
            "GET /plain/a HTTP/1.1\r\nCONTENT-LENGTH: 5\r\n\r\nhello".into(),
            Kind::Other,
        ),
        (
            "chunked",
            "GET /plain/a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            Kind::Other,
        ),
        ("expect", "GET /plain/a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n".into(), Kind::Other),
        ("declined path", get("/other"), Kind::Other),
        ("declined prefix", get("/plainx"), Kind::Other),
        ("declined query", get("/plain/a?decline"), Kind::Other),
        ("more headers than looked at", many(MAX_HEADERS + 1), Kind::Other),
        // Malformed: hyper's to answer.
        ("bad method token", "G(T /plain/a HTTP/1.1\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("missing version", "GET /plain/a\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("HTTP/2.0", "GET /plain/a HTTP/2.0\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("header without colon", "GET /plain/a HTTP/1.1\r\nHost t\r\n\r\n".into(), Kind::Other),
        (
            "space before colon",
            "GET /plain/a HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello".into(),
            Kind::Other,
        ),
        ("NUL in target", "GET /plain/\0a HTTP/1.1\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("space in target", "GET /plain/a b HTTP/1.1\r\nHost: t\r\n\r\n".into(), Kind::Other),
        ("obs-fold", "GET /plain/a HTTP/1.1\r\nX: a\r\n b\r\n\r\n".into(), Kind::Other),
        // Bytes httparse lets through but the `http` crate refuses: hyper answers 400.
        ("< in path", get("/plain/a<b"), Kind::Other),
        ("> in path", get("/plain/a>b"), Kind::Other),
        ("backtick in path", get("/plain/a`b"), Kind::Other),
        ("quote in query", get("/plain/a?x=\"1\""), Kind::Other),
        ("fragment", get("/plain/a#frag"), Kind::Other),
        // ... and ones it takes.
        (
            "braces, pipe, caret in path",
            get("/plain/{a}|^b"),
            Kind::Answered(get("/plain/{a}|^b").len()),
        ),
        ("UTF-8 in path", get("/plain/caf\u{e9}"), Kind::Answered(get("/plain/caf\u{e9}").len())),
        ("TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01".into(), Kind::Other),
    ];
    for (name, bytes, want) in cases {
        let (got, out) = classify(bytes.as_bytes());
        assert_eq!(got, want, "{name}: {bytes:?}");
        if got == Kind::Other || got == Kind::Partial {
            assert!(
                out.is_empty(),
                "{name}: bytes left in the output: {:?}",
                String::from_utf8_lossy(&out)
            );
        } else {
            assert!(
                out.starts_with(b"HTTP/1.1 302 Found\r\n"),
                "{name}: {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}

#[test]
fn parse_throws_away_what_a_declining_handler_wrote() {
    let mut out = b"earlier answer".to_vec();
    assert!(matches!(
        parse(get("/plain/write-then-decline").as_bytes(), &conn(), &TestHandler, &mut out),
        Parsed::Other
    ));
    assert_eq!(out, b"earlier answer");
    // And an answer is appended, not written over what is there.
    assert!(matches!(
        parse(get("/plain/x").as_bytes(), &conn(), &TestHandler, &mut out),
        Parsed::Answered(..)
    ));
    assert!(
        out.starts_with(b"earlier answerHTTP/1.1 302 Found\r\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

/// Records what the handler was shown.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
}

impl PlainAnswer for Recorder {
    fn answer(&self, req: &PlainRequest<'_>, out: &mut Vec<u8>) -> super::Answer {
        self.decide(req, out).into()
    }
}

impl Recorder {
    fn decide(&self, req: &PlainRequest<'_>, _out: &mut Vec<u8>) -> bool {
        let multi: Vec<String> =
            req.header_values("x-multi").map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        let last = req
            .header_values("X-MULTI")
            .next_back()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let names: Vec<&str> = req.headers.iter().map(|h| h.name).collect();
        self.seen.lock().unwrap().push(format!(
            "head={} path={} query={:?} remote={} names={names:?} multi={multi:?} last={last:?}",
            req.head, req.path, req.query, req.remote
        ));
        true
    }
}

#[test]
fn parse_shows_the_handler_the_request_as_sent() {
    let rec = Recorder::default();
    let cases = [
        (
            "GET /r/a%20b/c?x=1&y=%2F HTTP/1.1\r\nHost: t\r\nX-Multi: one\r\nx-multi: two\r\nX-Other: 3\r\n\r\n",
            r#"head=false path=/r/a%20b/c query=Some("x=1&y=%2F") remote=192.0.2.7:4567 names=["Host", "X-Multi", "x-multi", "X-Other"] multi=["one", "two"] last=Some("two")"#,
        ),
        ("HEAD /q? HTTP/1.1\r\nHost: t\r\n\r\n", r#"head=true path=/q query=Some("") remote=192.0.2.7:4567 names=["Host"] multi=[] last=None"#),
        ("GET /a?b?c HTTP/1.1\r\nHost: t\r\n\r\n", r#"head=false path=/a query=Some("b?c") remote=192.0.2.7:4567 names=["Host"] multi=[] last=None"#),
        ("GET / HTTP/1.1\r\nHost: t\r\nX-Multi:\r\n\r\n", r#"head=false path=/ query=None remote=192.0.2.7:4567 names=["Host", "X-Multi"] multi=[""] last=Some("")"#),
    ];
    for (bytes, want) in cases {
        let mut out = Vec::new();
        assert!(
            matches!(parse(bytes.as_bytes(), &conn(), &rec, &mut out), Parsed::Answered(n, _) if n == bytes.len()),
            "{bytes:?}"
        );
        assert_eq!(rec.seen.lock().unwrap().pop().as_deref(), Some(want), "{bytes:?}");
    }
}

#[test]
fn plain_response_writes_a_response_head() {
    let mut out = Vec::new();
    let mut r = PlainResponse::new(&mut out, StatusCode::FOUND);
    r.header(&LOCATION, &HeaderValue::from_static("https://r.test/x"));
    r.header(&http::header::CACHE_CONTROL, &HeaderValue::from_static("private, no-cache"));
    r.finish_empty();
    let text = String::from_utf8(out).unwrap();
    let (before, date) = text.split_once("date: ").unwrap();
    assert_eq!(before, "HTTP/1.1 302 Found\r\nlocation: https://r.test/x\r\ncache-control: private, no-cache\r\ncontent-length: 0\r\n");
    let date = date.strip_suffix("\r\n\r\n").unwrap();
    // No `keep_date_fresh` on this thread: the clock is read.
    assert_fresh_date(date);

    let mut out = Vec::new();
    PlainResponse::new(&mut out, StatusCode::from_u16(599).unwrap()).finish_empty();
    assert!(
        out.starts_with(b"HTTP/1.1 599 \r\ncontent-length: 0\r\ndate: "),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test]
async fn keep_date_fresh_keeps_this_threads_date() {
    DATE.set(None);
    tokio::select! {
        () = keep_date_fresh() => unreachable!(),
        () = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    let kept = DATE.with_borrow(Clone::clone).expect("date set on this thread");
    assert_fresh_date(&kept);
    let mut out = Vec::new();
    http_date(&mut out);
    assert_eq!(out, kept.as_bytes());
    DATE.set(None);
}

#[tokio::test]
async fn rewind_reads_buffered_bytes_first_and_writes_through() {
    let (inner, mut peer) = tokio::io::duplex(64);
    let mut buf = b"xxxxBUFFERED".to_vec();
    buf.resize(32, b'!');
    let mut io = Rewind::new(buf, 4, 12, inner);
    peer.write_all(b"-then-stream").await.unwrap();
    // Small reads: the buffered bytes come in pieces, never mixed with the stream's.
    let mut small = [0u8; 3];
    let mut got = Vec::new();
    while got.len() < 8 {
        let n = io.read(&mut small).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&small[..n]);
    }
    assert_eq!(got, b"BUFFERED");
    io.write_all(b"answer").await.unwrap();
    io.flush().await.unwrap();
    let mut answer = [0u8; 6];
    peer.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"answer");
    drop(peer);
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"-then-stream");
}

// ---------------------------------------------------------------------------------------
// 1, 2: plain answers, keep-alive

#[tokio::test]
async fn plain_get_and_head_are_answered_exactly() {
    let f = start(|_| {}).await;
    let mut c = Client::connect(f.addr).await;
    for (method, target) in [
        ("GET", "/plain/a"),
        ("HEAD", "/plain/a"),
        ("GET", "/plain/b?x=1&y=2"),
        ("HEAD", "/plain/"),
    ] {
        c.send(format!("{method} {target} HTTP/1.1\r\nHost: t\r\n\r\n")).await;
        let r = if method == "HEAD" { c.head_response().await } else { c.response().await };
        let date = r.header("date").expect("date header").to_owned();
        assert_fresh_date(&date);
        let want = format!("HTTP/1.1 302 Found\r\nlocation: {LOCATION_BASE}{target}\r\nx-answered-by: plain\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n");
        assert_eq!(r.head, want, "{method} {target}");
        assert!(r.body.is_empty());
    }
    // Nothing stray after the last answer (a HEAD): the connection is quiet.
    assert!(c.stays_quiet(Duration::from_millis(100)).await);
    assert!(c.buf.is_empty());
}

#[tokio::test]
async fn keep_alive_serves_many_plain_requests() {
    let f = start(|_| {}).await;
    let mut c = Client::connect(f.addr).await;
    for i in 0..20 {
        let target = format!("/plain/k{i}");
        if i % 3 == 0 {
            c.send(head(&target)).await;
            c.head_response().await.assert_plain(&target);
        } else {
            c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\nUser-Agent: test/{i}\r\n\r\n")).await;
            c.response().await.assert_plain(&target);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3: pipelining

#[tokio::test]
async fn pipelined_plain_requests_are_answered_in_order() {
    let f = start(|_| {}).await;
    let mut c = Client::connect(f.addr).await;
    c.send(format!("{}{}{}", get("/plain/1"), head("/plain/2"), get("/plain/3?q"))).await;
    c.response().await.assert_plain("/plain/1");
    c.head_response().await.assert_plain("/plain/2");
    c.response().await.assert_plain("/plain/3?q");
    // Still plain afterwards.
    c.send(get("/plain/4")).await;
    c.response().await.assert_plain("/plain/4");
}

#[tokio::test]
async fn pipelined_handoff_keeps_request_order() {
    let f = start(|_| {}).await;
    // plain, hyper's, plain: after the handoff hyper answers the rest, in order.
    let mut c = Client::connect(f.addr).await;
    c.send(format!("{}{}{}", get("/plain/1"), get("/other"), get("/plain/3"))).await;
    c.response().await.assert_plain("/plain/1");
    c.response().await.assert_hyper("GET", "/other", false);
    c.response().await.assert_hyper("GET", "/plain/3", false);
    c.send(head("/plain/4")).await;
    c.head_response().await.assert_hyper("HEAD", "/plain/4", true);

    // Two plain ones, a POST whose body looks like a request, then plain ones (one a HEAD),
    // all in one write.
    let mut c = Client::connect(f.addr).await;
    c.send(format!(
        "{}{}POST /plain/p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nGET /{}{}",
        get("/plain/1"),
        head("/plain/2"),
        head("/plain/4"),
        get("/plain/5")
    ))
    .await;
    c.response().await.assert_plain("/plain/1");
    c.head_response().await.assert_plain("/plain/2");
    let r = c.response().await;
    r.assert_hyper("POST", "/plain/p", false);
    assert_eq!(r.header("x-body"), Some("GET /"));
    c.head_response().await.assert_hyper("HEAD", "/plain/4", true);
    c.response().await.assert_hyper("GET", "/plain/5", false);

    // A handler that writes part of an answer and then declines leaves no trace.
    let mut c = Client::connect(f.addr).await;
    c.send(format!("{}{}{}", get("/plain/1"), get("/plain/write-then-decline"), get("/plain/3")))
        .await;
    c.response().await.assert_plain("/plain/1");
    c.response().await.assert_hyper("GET", "/plain/write-then-decline", false);
    c.response().await.assert_hyper("GET", "/plain/3", false);
}

/// Enough pipelined requests, of varied sizes, that heads straddle the read buffer's end
/// (moved to its start) and the answers to one buffer of requests exceed what is written
/// at once.
#[tokio::test]
async fn long_pipelines_straddle_the_buffer() {
    let f = start(|_| {}).await;
    let n = 2000;
    let target = |i: usize| format!("/plain/p{i}");
    let mut all = String::new();
    for i in 0..n {
        let method = if i % 3 == 1 { "HEAD" } else { "GET" };
        // Mostly small heads, so that a buffer holds answers worth more than a buffer.
        let pad = "p".repeat(if i % 50 == 7 { 300 + i } else { i * 7 % 13 });
        all.push_str(&format!(
            "{method} {} HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n",
            target(i)
        ));
    }
    assert!(all.len() > 8 * BUF);
    let mut c = Client::connect(f.addr).await;
    // Written while the answers are read, so neither side waits on the other's buffers.
    let write = async {
        c.wr.write_all(all.as_bytes()).await.unwrap();
    };
    let read = async {
        for i in 0..n {
            let r = if i % 3 == 1 { c.r.head_response().await } else { c.r.response().await };
            r.assert_plain(&target(i));
        }
    };
    tokio::time::timeout(WAIT, async { tokio::join!(write, read) })
        .await
        .expect("pipeline answered in time");
    c.send(get("/plain/after")).await;
    c.response().await.assert_plain("/plain/after");
}

// ---------------------------------------------------------------------------------------
// 4: trickling heads

#[tokio::test]
async fn heads_sent_byte_by_byte_are_answered() {
    // A generous timeout: this is about partial parsing, not about the clock.
    let f = start(|c| c.header_read_timeout = Duration::from_secs(5)).await;
    let mut c = Client::connect(f.addr).await;
    for req in [
        get("/plain/slow1"),
        "HEAD /plain/slow2?a=b HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n".to_owned(),
    ] {
        for b in req.as_bytes() {
            c.send([*b]).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if req.starts_with("HEAD") {
            c.head_response().await.assert_plain("/plain/slow2?a=b");
        } else {
            c.response().await.assert_plain("/plain/slow1");
        }
    }
    // A non-plain one trickled in goes to hyper, which then serves the rest.
    for b in b"POST /plain/slow3 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok" {
        c.send([*b]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = c.response().await;
    r.assert_hyper("POST", "/plain/slow3", false);
    assert_eq!(r.header("x-body"), Some("ok"));
    c.send(get("/plain/slow4")).await;
    c.response().await.assert_hyper("GET", "/plain/slow4", false);
}

// ---------------------------------------------------------------------------------------
// 5: what goes to hyper

/// What the connection does after hyper's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Stays open; hyper answers a plain request next.
    KeepAlive,
    /// Closes.
    Close,
    /// Either (hyper's business).
    Either,
}

#[tokio::test]
async fn non_plain_requests_go_to_hyper() {
    let f = start(|_| {}).await;
    let many_headers = {
        let mut s = String::from("GET /plain/many HTTP/1.1\r\nHost: t\r\n");
        for i in 0..60 {
            s.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        s + "\r\n"
    };
    // (name, request, method, target as hyper sees it, body hyper read, HEAD, after)
    let cases: Vec<(&str, String, &str, &str, &str, bool, After)> = vec![
        ("POST", "POST /plain/a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".into(), "POST", "/plain/a", "", false, After::KeepAlive),
        ("POST with body", "POST /plain/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".into(), "POST", "/plain/a", "abc", false, After::KeepAlive),
        ("lower-case method", "get /plain/a HTTP/1.1\r\nHost: t\r\n\r\n".into(), "get", "/plain/a", "", false, After::KeepAlive),
        ("HTTP/1.0", "GET /plain/a HTTP/1.0\r\nHost: t\r\n\r\n".into(), "GET", "/plain/a", "", false, After::Close),
        ("HTTP/1.0 keep-alive", "GET /plain/a HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n".into(), "GET", "/plain/a", "", false, After::KeepAlive),
        ("Connection: close", "GET /plain/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(), "GET", "/plain/a", "", false, After::Close),
        ("HEAD, Connection: close", "HEAD /plain/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(), "HEAD", "/plain/a", "", true, After::Close),
        (
            "Connection: keep-alive, close",
            "GET /plain/a HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close\r\n\r\n".into(),
            "GET",
            "/plain/a",
            "",
            false,
            After::Close,
        ),
        ("Connection: TE", "GET /plain/a HTTP/1.1\r\nHost: t\r\nConnection: TE\r\nTE: trailers\r\n\r\n".into(), "GET", "/plain/a", "", false, After::KeepAlive),
        ("Expect without a body", "GET /plain/a HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n".into(), "GET", "/plain/a", "", false, After::KeepAlive),
        (
            "Content-Length body",
            "GET /plain/a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".into(),
            "GET",
            "/plain/a",
            "hello",
            false,
            After::KeepAlive,
        ),
        ("Content-Length 0", "GET /plain/a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".into(), "GET", "/plain/a", "", false, After::KeepAlive),
        (
            "chunked",
            "GET /plain/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n".into(),
            "GET",
            "/plain/a",
            "hello!!!",
            false,
            After::KeepAlive,
        ),
        (
            "Upgrade",
            "GET /plain/a HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".into(),
            "GET",
            "/plain/a",
            "",
            false,
            After::Either,
        ),
        ("Upgrade alone", "GET /plain/a HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n\r\n".into(), "GET", "/plain/a", "", false, After::Either),
        ("absolute form", "GET http://x/plain/a HTTP/1.1\r\nHost: x\r\n\r\n".into(), "GET", "http://x/plain/a", "", false, After::KeepAlive),
        ("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".into(), "OPTIONS", "*", "", false, After::KeepAlive),
        ("declined path", get("/other/x"), "GET", "/other/x", "", false, After::KeepAlive),
        ("declined path, HEAD", head("/other/x"), "HEAD", "/other/x", "", true, After::KeepAlive),
        ("declined query", get("/plain/a?decline=1"), "GET", "/plain/a?decline=1", "", false, After::KeepAlive),
        ("more headers than plain looks at", many_headers, "GET", "/plain/many", "", false, After::KeepAlive),
    ];
    for (name, req, method, target, body, is_head, after) in cases {
        let mut c = Client::connect(f.addr).await;
        c.send(&req).await;
        let r = c
            .try_response(is_head)
            .await
            .unwrap_or_else(|| panic!("{name}: closed without an answer"));
        r.assert_hyper(method, target, is_head);
        assert_eq!(r.header("x-body"), Some(body), "{name}");
        match after {
            After::Close => {
                let rest = c.closed_within(Duration::from_secs(5)).await;
                assert!(rest.is_empty(), "{name}: {:?}", String::from_utf8_lossy(&rest));
            }
            After::KeepAlive | After::Either => {
                // Hyper owns the connection now, plain-looking requests included.
                c.send(get("/plain/next")).await;
                match c.try_response(false).await {
                    Some(r) => r.assert_hyper("GET", "/plain/next", false),
                    None => assert_eq!(after, After::Either, "{name}: closed after hyper's answer"),
                }
            }
        }
    }
}

#[tokio::test]
async fn expect_continue_goes_to_hyper() {
    let f = start(|_| {}).await;
    let mut c = Client::connect(f.addr).await;
    c.send(get("/plain/first")).await;
    c.response().await.assert_plain("/plain/first");
    c.send(
        "PUT /plain/up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .await;
    let interim = c.response().await;
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send("data").await;
    let r = c.response().await;
    r.assert_hyper("PUT", "/plain/up", false);
    assert_eq!(r.header("x-body"), Some("data"));
    c.send(get("/plain/next")).await;
    c.response().await.assert_hyper("GET", "/plain/next", false);
}

// ---------------------------------------------------------------------------------------
// 6: malformed heads

#[tokio::test]
async fn malformed_heads_get_hyper_400_and_server_keeps_serving() {
    let f = start(|_| {}).await;
    let cases: &[(&str, &[u8])] = &[
        ("bad method token", b"G(T /plain/a HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("missing version", b"GET /plain/a\r\nHost: t\r\n\r\n"),
        ("unknown version", b"GET /plain/a HTTP/1.7\r\nHost: t\r\n\r\n"),
        ("header without colon", b"GET /plain/a HTTP/1.1\r\nHost t\r\n\r\n"),
        (
            "space before colon",
            b"GET /plain/a HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\nhello",
        ),
        ("NUL in target", b"GET /plain/\0a HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("NUL in header value", b"GET /plain/a HTTP/1.1\r\nHost: t\0u\r\n\r\n"),
        ("obs-fold", b"GET /plain/a HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n"),
        (
            "two content-lengths",
            b"GET /plain/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ),
        (
            "TLS on a plain port",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00\x00\x00\r\n\r\n",
        ),
        ("garbage", b"\xff\xfe\xfd\r\n\r\n"),
    ];
    for &(name, bytes) in cases {
        for pipelined_after_plain in [false, true] {
            let mut c = Client::connect(f.addr).await;
            if pipelined_after_plain {
                let mut all = get("/plain/ok").into_bytes();
                all.extend_from_slice(bytes);
                c.send(all).await;
                c.response().await.assert_plain("/plain/ok");
            } else {
                c.send(bytes).await;
            }
            if let Some(r) = c.try_response(false).await {
                assert_eq!(r.status, 400, "{name}: {r:?}");
                assert_ne!(r.answered_by(), "plain", "{name}");
            }
            let rest = c.closed_within(Duration::from_secs(5)).await;
            assert!(rest.is_empty(), "{name}: {:?}", String::from_utf8_lossy(&rest));
            // Others are still served.
            let mut other = Client::connect(f.addr).await;
            other.send(get("/plain/still")).await;
            other.response().await.assert_plain("/plain/still");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7: large heads

/// A `GET` of `target` whose head is exactly `len` bytes.
fn head_of_len(target: &str, len: usize) -> String {
    let fixed = format!("GET {target} HTTP/1.1\r\nHost: t\r\nX-Pad: \r\n\r\n").len();
    let pad = "a".repeat(len.checked_sub(fixed).expect("length covers the fixed part"));
    let req = format!("GET {target} HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\n\r\n");
    assert_eq!(req.len(), len);
    req
}

#[tokio::test]
async fn heads_larger_than_the_plain_buffer_go_to_hyper() {
    let f = start(|_| {}).await;
    for len in [BUF - 1, BUF, BUF + 1, BUF + 100, 2 * BUF, 20_000] {
        for after_plain in [false, true] {
            let mut c = Client::connect(f.addr).await;
            let big = head_of_len("/plain/big", len);
            if after_plain {
                c.send(format!("{}{big}", get("/plain/first"))).await;
                c.response().await.assert_plain("/plain/first");
            } else {
                c.send(&big).await;
            }
            let r = c.response().await;
            // A head that fits the buffer is plain, one that does not is hyper's.
            if len <= BUF {
                r.assert_plain("/plain/big");
            } else {
                r.assert_hyper("GET", "/plain/big", false);
            }
            c.send(get("/plain/next")).await;
            let r = c.response().await;
            assert_eq!(
                r.answered_by(),
                if len <= BUF { "plain" } else { "hyper" },
                "len {len}: {r:?}"
            );
        }
    }
}

#[tokio::test]
async fn huge_header_is_refused_and_server_keeps_serving() {
    let f = start(|_| {}).await;
    for after_plain in [false, true] {
        let mut c = Client::connect(f.addr).await;
        let mut req = Vec::new();
        if after_plain {
            req.extend_from_slice(get("/plain/first").as_bytes());
        }
        req.extend_from_slice(b"GET /plain/huge HTTP/1.1\r\nHost: t\r\nX-Big: ");
        req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        req.extend_from_slice(b"\r\n\r\n");
        let write = async {
            // The server may close mid-upload; that is the point.
            let _ = c.wr.write_all(&req).await;
        };
        let read = c.r.closed_within(WAIT);
        let (_, mut got) = tokio::join!(write, read);
        // With `after_plain`, the first answer may be lost to the reset sent when the server
        // closes with bytes unread; if it came, it is the plain one.
        if got.starts_with(b"HTTP/1.1 302") {
            assert!(after_plain);
            let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let first: Vec<u8> = got.drain(..end).collect();
            assert!(String::from_utf8_lossy(&first).contains("x-answered-by: plain"));
        }
        if !got.is_empty() {
            assert!(
                got.starts_with(b"HTTP/1.1 431"),
                "{:?}",
                String::from_utf8_lossy(&got[..got.len().min(200)])
            );
        }
        let mut other = Client::connect(f.addr).await;
        other.send(get("/plain/still")).await;
        other.response().await.assert_plain("/plain/still");
    }
}

// ---------------------------------------------------------------------------------------
// 8: timeouts

#[tokio::test]
async fn silent_client_is_closed_after_the_head_timeout() {
    let f = start(|_| {}).await;
    let mut c = Client::connect(f.addr).await;
    let t0 = Instant::now();
    let got = c.closed_within(Duration::from_secs(5)).await;
    let took = t0.elapsed();
    assert!(took >= HEADER_TIMEOUT - Duration::from_millis(100), "closed after {took:?}");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

/// An idle timeout shorter than the head timeout closes a silent connection, as on hyper's
/// path.
#[tokio::test]
async fn idle_timeout_shorter_than_the_head_timeout_applies() {
    let f = start(|c| {
        c.header_read_timeout = Duration::from_secs(30);
        c.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut c = Client::connect(f.addr).await;
    c.send(get("/plain/a")).await;
    c.response().await.assert_plain("/plain/a");
    let got = c.closed_within(Duration::from_secs(5)).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn stalled_half_head_is_closed() {
    let f = start(|_| {}).await;
    for first in [None, Some("/plain/first")] {
        let mut c = Client::connect(f.addr).await;
        if let Some(t) = first {
            c.send(get(t)).await;
            c.response().await.assert_plain(t);
        }
        let t0 = Instant::now();
        c.send("GET /plain/a HTTP/1.1\r\nHo").await;
        let got = c.closed_within(Duration::from_secs(5)).await;
        let took = t0.elapsed();
        // The connection's timer closes it at the first tick with no answer in the period
        // before: at least a period after the last answer (or the connection's start).
        assert!(took >= HEADER_TIMEOUT - Duration::from_millis(100), "closed after {took:?}");
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_head_timeout() {
    let f = start(|_| {}).await;
    let mut c = Client::connect(f.addr).await;
    c.send(get("/plain/a")).await;
    c.response().await.assert_plain("/plain/a");
    let t0 = Instant::now();
    let got = c.closed_within(Duration::from_secs(5)).await;
    let took = t0.elapsed();
    assert!(took >= HEADER_TIMEOUT - Duration::from_millis(100), "closed after {took:?}");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn steady_client_slower_than_the_timeout_is_kept() {
    let timeout = Duration::from_secs(1);
    let f = start(|c| c.header_read_timeout = timeout).await;
    let mut c = Client::connect(f.addr).await;
    let t0 = Instant::now();
    let mut i = 0;
    // Well over two periods in all, a complete request every quarter period.
    while t0.elapsed() < 3 * timeout {
        tokio::time::sleep(timeout / 4).await;
        let target = format!("/plain/steady{i}");
        c.send(get(&target)).await;
        let r = c
            .try_response(false)
            .await
            .unwrap_or_else(|| panic!("closed after {i} requests, {:?}", t0.elapsed()));
        r.assert_plain(&target);
        i += 1;
    }
    // And a head sent in pieces, the whole within a period (a client always has at least
    // one after its last answer).
    for piece in ["GET /plain/pieces HTTP/1.1\r\n", "Host: t\r\n", "X-A: 1\r\n", "\r\n"] {
        c.send(piece).await;
        tokio::time::sleep(timeout / 8).await;
    }
    c.response().await.assert_plain("/plain/pieces");
}

#[tokio::test]
async fn client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(1500);
    let f = start(|c| c.idle_timeout = idle).await;
    // A small receive buffer so that the server's writes block soon.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let s = sock.connect(f.addr).await.unwrap();
    let (_rd, mut wr) = s.into_split();
    let burst = get("/plain/flood").repeat(1000);
    let t0 = Instant::now();
    // Requests are sent and never an answer read: once the buffers are full, the server's
    // write stalls, then it gives up and closes, which fails the client's writes.
    let failed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Err(e) = wr.write_all(burst.as_bytes()).await {
                return e;
            }
        }
    })
    .await;
    let took = t0.elapsed();
    let e = failed.expect("connection still open after 20 s");
    assert!(
        matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
        "{e}"
    );
    assert!(took >= idle - Duration::from_millis(300), "closed after {took:?}");
    let mut c = Client::connect(f.addr).await;
    c.send(get("/plain/still")).await;
    c.response().await.assert_plain("/plain/still");
}

// ---------------------------------------------------------------------------------------
// 9: shutdown

#[tokio::test]
async fn shutdown_closes_idle_connections_promptly() {
    // Long timeouts: a close can only come from the shutdown.
    let f = start(|c| {
        c.header_read_timeout = Duration::from_secs(30);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut silent = Client::connect(f.addr).await;
    let mut plain = Client::connect(f.addr).await;
    plain.send(get("/plain/a")).await;
    plain.response().await.assert_plain("/plain/a");
    let mut handed = Client::connect(f.addr).await;
    handed.send(get("/other")).await;
    handed.response().await.assert_hyper("GET", "/other", false);
    // Give the silent connection's task time to start.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let t0 = Instant::now();
    f.shutdown.cancel();
    for (name, c) in [("silent", &mut silent), ("plain", &mut plain), ("handed off", &mut handed)] {
        let got = c.closed_within(Duration::from_secs(3)).await;
        assert!(got.is_empty(), "{name}: {:?}", String::from_utf8_lossy(&got));
    }
    tokio::time::timeout(Duration::from_secs(5), f.server.join()).await.expect("server stops");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(TcpStream::connect(f.addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn shutdown_mid_head_answers_then_closes() {
    let f = start(|c| {
        c.header_read_timeout = Duration::from_secs(30);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut c = Client::connect(f.addr).await;
    c.send(get("/plain/before")).await;
    c.response().await.assert_plain("/plain/before");
    c.send("GET /plain/during HTTP/1.1\r\nHo").await;
    // Let the server read the partial head before the shutdown starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.shutdown.cancel();
    assert!(c.stays_quiet(Duration::from_millis(300)).await, "closed mid-head");
    c.send("st: t\r\n\r\n").await;
    // Hyper answers it, saying the connection closes.
    let r = c.response().await;
    r.assert_hyper("GET", "/plain/during", false);
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    let got = c.closed_within(Duration::from_secs(5)).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    tokio::time::timeout(Duration::from_secs(5), f.server.join()).await.expect("server stops");
}

/// Like [`shutdown_mid_head_answers_then_closes`], for a head that turns out not to be plain.
/// Guards `serve_hyper`'s biased `select!`: when the connection reaches hyper after the
/// shutdown started, `graceful_shutdown` must not run before hyper has read the handed-over
/// bytes (it would close the connection as one that never sent anything).
#[tokio::test]
async fn shutdown_mid_non_plain_head_answers_then_closes() {
    for round in 0..10 {
        let f = start(|c| {
            c.header_read_timeout = Duration::from_secs(30);
            c.idle_timeout = Duration::from_secs(60);
        })
        .await;
        let mut c = Client::connect(f.addr).await;
        c.send("POST /plain/during HTTP/1.1\r\nHo").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        f.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.send("st: t\r\nContent-Length: 2\r\n\r\nok").await;
        let r = c
            .try_response(false)
            .await
            .unwrap_or_else(|| panic!("round {round}: closed without an answer"));
        r.assert_hyper("POST", "/plain/during", false);
        let got = c.closed_within(Duration::from_secs(5)).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        tokio::time::timeout(Duration::from_secs(5), f.server.join()).await.expect("server stops");
    }
}

// ---------------------------------------------------------------------------------------
// 10: many connections at once

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections_are_all_answered() {
    let f = start(|c| c.header_read_timeout = Duration::from_secs(5)).await;
    let addr = f.addr;
    let mut tasks = Vec::new();
    for t in 0..50 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            // Every fifth connection is handed to hyper half-way.
            let handoff_at = (t % 5 == 0).then_some(10);
            let mut handed = false;
            for i in 0..20 {
                let target = format!("/plain/c{t}/r{i}");
                if Some(i) == handoff_at {
                    c.send(format!(
                        "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx"
                    ))
                    .await;
                    c.response().await.assert_hyper("POST", &target, false);
                    handed = true;
                } else if i % 4 == 3 {
                    // Two at once.
                    let second = format!("{target}/2");
                    c.send(format!("{}{}", get(&target), head(&second))).await;
                    let (a, b) = (c.response().await, c.head_response().await);
                    if handed {
                        a.assert_hyper("GET", &target, false);
                        b.assert_hyper("HEAD", &second, true);
                    } else {
                        a.assert_plain(&target);
                        b.assert_plain(&second);
                    }
                } else {
                    c.send(get(&target)).await;
                    let r = c.response().await;
                    if handed {
                        r.assert_hyper("GET", &target, false);
                    } else {
                        r.assert_plain(&target);
                    }
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("connection done in time")
            .expect("connection task");
    }
}

// ---------------------------------------------------------------------------------------
// Odds and ends

#[tokio::test]
async fn panicking_plain_answer_goes_to_hyper() {
    let f = start(|_| {}).await;
    let mut c = Client::connect(f.addr).await;
    c.send(get("/plain/before")).await;
    c.response().await.assert_plain("/plain/before");
    // The panic costs the plain answer only: hyper answers the request instead.
    c.send(get("/plain/panic")).await;
    c.response().await.assert_hyper("GET", "/plain/panic", false);
    // Connections go to the threads in turn: every thread still serves.
    for i in 0..6 {
        let target = format!("/plain/after{i}");
        let mut c = Client::connect(f.addr).await;
        c.send(get(&target)).await;
        c.response().await.assert_plain(&target);
    }
}

/// Answers are flushed, not only written: a TLS stream (like this `BufWriter`) may hold back
/// what it was given, and the client would wait for it forever.
#[tokio::test]
async fn answers_are_flushed() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let server = tokio::io::BufWriter::new(server);
    let task = tokio::spawn(async move {
        let (shutdown, hard_stop) = (CancellationToken::new(), CancellationToken::new());
        let limits = super::Limits {
            header_read_timeout: WAIT,
            idle_timeout: WAIT,
            shutdown: &shutdown,
            hard_stop: &hard_stop,
            tls: false,
            hsts: None,
        };
        drop(super::serve(server, remote(), &TestHandler, limits).await);
    });
    for target in ["/plain/a", "/plain/b"] {
        client.write_all(get(target).as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk))
                .await
                .expect("answer flushed")
                .unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 302 Found\r\n"), "{:?}", String::from_utf8_lossy(&got));
    }
    drop(client);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

/// Pipelined answers over TLS reach a client that reads only after sending everything.
#[tokio::test]
async fn tls_answers_to_a_long_pipeline_are_all_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let Some(files) = crate::http::tls::tests::self_signed(dir.path(), "plain.test") else {
        eprintln!("openssl not available; skipping");
        return;
    };
    let f = start(|c| {
        c.tls = Some(crate::http::tls::tests::settings(&files));
        c.header_read_timeout = Duration::from_secs(30);
        c.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let connector = crate::http::tls::tests::insecure_connector();
    let name = rustls::pki_types::ServerName::try_from("plain.test").unwrap();
    // A small receive window, so the server's socket fills and rustls has to hold answers.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(f.addr).await.unwrap();
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp)).await.unwrap().unwrap();
    let (rd, mut wr) = tokio::io::split(tls);
    const N: usize = 5000;
    let requests: String = (0..N).map(|i| get(&format!("/plain/{i}"))).collect();
    // Write everything while reading nothing (the server's answers pile up), then read.
    let writer = tokio::spawn(async move {
        wr.write_all(requests.as_bytes()).await.unwrap();
        wr.flush().await.unwrap();
        wr
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Reader { rd, buf: Vec::new() };
    for i in 0..N {
        let r = tokio::time::timeout(Duration::from_secs(5), c.response())
            .await
            .unwrap_or_else(|_| panic!("answer {i} not delivered"));
        r.assert_plain(&format!("/plain/{i}"));
    }
    drop(tokio::time::timeout(WAIT, writer).await.unwrap().unwrap());
}

#[tokio::test]
async fn plain_answers_and_handoff_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let Some(files) = crate::http::tls::tests::self_signed(dir.path(), "plain.test") else {
        eprintln!("openssl not available; skipping");
        return;
    };
    let f = start(|c| c.tls = Some(crate::http::tls::tests::settings(&files))).await;
    let connector = crate::http::tls::tests::insecure_connector();
    let name = rustls::pki_types::ServerName::try_from("plain.test").unwrap();
    let tls = tokio::time::timeout(
        WAIT,
        connector.connect(name, TcpStream::connect(f.addr).await.unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let (rd, wr) = tokio::io::split(tls);
    let mut c = Client { wr, r: Reader { rd, buf: Vec::new() } };
    c.send(get("/plain/1")).await;
    // HTTPS answers carry HSTS on both paths.
    let hsts = Some("max-age=31536000");
    let r = c.response().await;
    r.assert_plain("/plain/1");
    assert_eq!(r.header("strict-transport-security"), hsts, "{r:?}");
    c.send(format!(
        "{}{}{}",
        head("/plain/2"),
        get("/other"),
        "GET /plain/4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    ))
    .await;
    c.head_response().await.assert_plain("/plain/2");
    let r = c.response().await;
    r.assert_hyper("GET", "/other", false);
    assert_eq!(r.header("strict-transport-security"), hsts, "{r:?}");
    c.response().await.assert_hyper("GET", "/plain/4", false);
    let got = c.closed_within(Duration::from_secs(5)).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}
