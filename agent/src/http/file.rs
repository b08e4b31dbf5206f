//! Serving one stored artifact file over GET/HEAD: streamed from disk, single
//! byte ranges, conditional requests, and validators that are identical on
//! every relay (ETag from the sha256, Last-Modified from the catalog), so a
//! client may resume a download from a different relay than it started on.

use std::io::SeekFrom;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures_util::TryStreamExt as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::response::{self, Body};

/// What the server knows about an artifact's content, from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactMeta {
    pub size: u64,
    pub sha256: [u8; 32],
    pub last_modified: Option<SystemTime>,
}

/// Read buffer for streaming through hyper (HTTP/2, and answers the plain path leaves to the
/// router): a reader that stalls holds about two of these (one queued in hyper, one being
/// filled), so small; relays' plain HTTP/1.1 answers use no buffer at all (sendfile).
const CHUNK: usize = 32 * 1024;

/// Range / conditional headers longer than this are ignored rather than
/// parsed, so a hostile header costs no more than a normal one.
const MAX_RANGE_HEADER: usize = 256;
const MAX_ETAG_LIST_HEADER: usize = 4096;

/// `Repr-Digest` (RFC 9530).
pub const REPR_DIGEST: HeaderName = HeaderName::from_static("repr-digest");
/// `Digest` (RFC 3230), kept for clients that predate RFC 9530.
pub const DIGEST: HeaderName = HeaderName::from_static("digest");

/// What serving reads of a request, borrowed: handlers pass the request itself, so the
/// headers are never copied per request.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// GET or HEAD (anything else is answered 405).
    pub method: &'a Method,
    /// For the content type.
    pub uri: &'a http::Uri,
    /// Range and conditional headers.
    pub headers: &'a http::HeaderMap,
}

impl<'a> From<&'a http::request::Parts> for Head<'a> {
    fn from(p: &'a http::request::Parts) -> Self {
        Head { method: &p.method, uri: &p.uri, headers: &p.headers }
    }
}

impl<'a, B> From<&'a http::Request<B>> for Head<'a> {
    fn from(r: &'a http::Request<B>) -> Self {
        Head { method: r.method(), uri: r.uri(), headers: r.headers() }
    }
}

/// Answers GET or HEAD for an open file whose content is `meta`.
pub async fn serve(
    req: impl Into<Head<'_>>,
    file: tokio::fs::File,
    meta: &ArtifactMeta,
) -> Response<Body> {
    let req: Head<'_> = req.into();
    if !matches!(*req.method, Method::GET | Method::HEAD) {
        return method_not_allowed(response::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ));
    }
    let plan = plan(req, meta);
    let body = match plan.body {
        None => response::empty_body(),
        Some((start, len)) => match file_body(file, start, len).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read artifact file");
                return response::text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read artifact");
            }
        },
    };
    let mut r = Response::new(body);
    *r.status_mut() = plan.status;
    *r.headers_mut() = plan.headers;
    r
}

/// What to answer about a file, before any byte of it is read: the status, every header
/// (`Content-Length` included), and the region of the file that is the body. The one place
/// the rules live, for hyper's path ([`serve`]) and the plain path's zero-copy one.
#[derive(Debug)]
pub struct Plan {
    /// 200, 206, 304, 412, 416 or 405.
    pub status: StatusCode,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// `(start, len)` of the file to send; `None`: no body (HEAD, 304, errors, empty).
    pub body: Option<(u64, u64)>,
}

fn method_not_allowed(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// Decides the answer to GET or HEAD for content `meta`.
pub fn plan(req_parts: Head<'_>, meta: &ArtifactMeta) -> Plan {
    let done = |r: Response<Body>| {
        let (parts, _) = r.into_parts();
        Plan { status: parts.status, headers: parts.headers, body: None }
    };
    let is_head = match *req_parts.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return done(method_not_allowed(response::empty(StatusCode::METHOD_NOT_ALLOWED))),
    };
    let etag = etag(&meta.sha256);
    let lm = meta.last_modified.map(truncate_to_secs);
    let reqh = req_parts.headers;

    match evaluate_conditions(reqh, &etag, lm) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut r = response::empty(StatusCode::NOT_MODIFIED);
            validators(r.headers_mut(), &etag, lm);
            return done(r);
        }
        Precondition::Failed => {
            let mut r = response::empty(StatusCode::PRECONDITION_FAILED);
            validators(r.headers_mut(), &etag, lm);
            return done(r);
        }
    }

    let size = meta.size;
    // Range is defined for GET only (RFC 9110 14.2); HEAD mirrors a plain GET.
    let range = if is_head || !if_range_allows(reqh, &etag, lm) {
        RangeSpec::None
    } else {
        reqh.get(header::RANGE).map_or(RangeSpec::None, |v| parse_range(v.as_bytes(), size))
    };

    let (status, start, len) = match range {
        RangeSpec::None => (StatusCode::OK, 0, size),
        RangeSpec::Single { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeSpec::Unsatisfiable => {
            let mut r = response::empty(StatusCode::RANGE_NOT_SATISFIABLE);
            let h = r.headers_mut();
            h.insert(header::CONTENT_RANGE, header_value(format!("bytes */{size}")));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            validators(h, &etag, lm);
            return done(r);
        }
    };

    let mut h = HeaderMap::with_capacity(12);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(req_parts.uri.path())));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + len - 1;
        h.insert(header::CONTENT_RANGE, header_value(format!("bytes {start}-{end}/{size}")));
    }
    validators(&mut h, &etag, lm);
    digests(&mut h, &meta.sha256);
    let body = (!is_head && len > 0).then_some((start, len));
    Plan { status, headers: h, body }
}

/// The strong ETag for content with this sha256: the same on every relay.
pub fn etag(sha256: &[u8; 32]) -> String {
    format!("\"{}\"", hex::encode(sha256))
}

/// Adds `Digest` and `Repr-Digest` for a sha256; also used by directories.
pub fn digests(h: &mut HeaderMap, sha256: &[u8; 32]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(sha256);
    h.insert(DIGEST, header_value(format!("SHA-256={b64}")));
    h.insert(REPR_DIGEST, header_value(format!("sha-256=:{b64}:")));
}

/// `Content-Type` from the file name; unknown types are plain bytes.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    if name.is_empty() {
        // A folder URL is answered with its index.html (see `path::INDEX_FILE`).
        return "text/html; charset=utf-8";
    }
    const MAP: &[(&str, &str)] = &[
        (".tar.gz", "application/gzip"),
        (".tgz", "application/gzip"),
        (".gz", "application/gzip"),
        (".whl", "application/zip"),
        (".zip", "application/zip"),
        (".jar", "application/java-archive"),
        (".pom", "application/xml"),
        (".xml", "application/xml"),
        (".deb", "application/vnd.debian.binary-package"),
        (".json", "application/json"),
        (".txt", "text/plain; charset=utf-8"),
        (".meta4", "application/metalink4+xml"),
        (".html", "text/html; charset=utf-8"),
    ];
    MAP.iter().find(|(ext, _)| name.ends_with(ext)).map_or("application/octet-stream", |(_, ct)| ct)
}

/// Validators, and the caching policy that goes with them on every answer about the file.
fn validators(h: &mut HeaderMap, etag: &str, lm: Option<SystemTime>) {
    h.insert(header::ETAG, header_value(etag.to_owned()));
    h.insert(header::CACHE_CONTROL, response::CACHE_REVALIDATE);
    if let Some(t) = lm {
        h.insert(header::LAST_MODIFIED, header_value(httpdate::fmt_http_date(t)));
    }
}

/// Only ever called with strings we built from hex/base64/digits/dates.
fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn file_body(mut file: tokio::fs::File, start: u64, len: u64) -> std::io::Result<Body> {
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    // `take` bounds the read even if the file grew; a file that shrank ends
    // early and hyper closes the connection on the Content-Length mismatch,
    // so a client never mistakes a short body for a complete one.
    let cap = usize::try_from(len).map_or(CHUNK, |l| l.min(CHUNK));
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), cap)
        .map_ok(http_body::Frame::data);
    Ok(BodyExt::boxed(StreamBody::new(stream)))
}

/// HTTP dates have one-second resolution; compare at that resolution.
fn truncate_to_secs(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// RFC 9110 13.2.2 evaluation order, for GET/HEAD on an existing resource.
fn evaluate_conditions(h: &HeaderMap, etag: &str, lm: Option<SystemTime>) -> Precondition {
    if let Some(v) = h.get(header::IF_MATCH) {
        if !etag_list_matches(v.as_bytes(), etag, false) {
            return Precondition::Failed;
        }
    } else if let (Some(v), Some(lm)) = (h.get(header::IF_UNMODIFIED_SINCE), lm) {
        if let Some(since) = parse_date(v) {
            if lm > since {
                return Precondition::Failed;
            }
        }
    }
    if let Some(v) = h.get(header::IF_NONE_MATCH) {
        if etag_list_matches(v.as_bytes(), etag, true) {
            return Precondition::NotModified;
        }
    } else if let (Some(v), Some(lm)) = (h.get(header::IF_MODIFIED_SINCE), lm) {
        if let Some(since) = parse_date(v) {
            if lm <= since {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// `If-Range`: the range applies only if the validator matches strongly.
/// A weak ETag or a date other than our exact Last-Modified means "send all".
fn if_range_allows(h: &HeaderMap, etag: &str, lm: Option<SystemTime>) -> bool {
    let Some(v) = h.get(header::IF_RANGE) else {
        return true;
    };
    let b = v.as_bytes();
    let trimmed = b.trim_ascii();
    if trimmed.starts_with(b"\"") {
        return trimmed == etag.as_bytes();
    }
    if trimmed.starts_with(b"W/") {
        return false;
    }
    match (parse_date(v), lm) {
        (Some(d), Some(lm)) => d == lm,
        _ => false,
    }
}

fn parse_date(v: &HeaderValue) -> Option<SystemTime> {
    v.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok())
}

/// Whether an `If-Match`/`If-None-Match` list matches our (strong) ETag.
/// `weak` selects weak comparison (If-None-Match), where `W/"x"` matches
/// `"x"`. Malformed or oversized lists match nothing.
pub fn etag_list_matches(v: &[u8], etag: &str, weak: bool) -> bool {
    if v.len() > MAX_ETAG_LIST_HEADER {
        return false;
    }
    let v = v.trim_ascii();
    if v == b"*" {
        return true;
    }
    let ours = etag.as_bytes();
    let mut rest = v;
    loop {
        rest = rest.trim_ascii_start();
        while let Some(r) = rest.strip_prefix(b",") {
            rest = r.trim_ascii_start();
        }
        if rest.is_empty() {
            return false;
        }
        let (is_weak, r) = match rest.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let Some(r) = r.strip_prefix(b"\"") else {
            return false;
        };
        let Some(close) = r.iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &r[..close + 1]; // includes closing quote
        rest = &r[close + 1..];
        let matches_opaque = ours.len() == tag.len() + 1 && &ours[1..] == tag;
        if matches_opaque && (weak || !is_weak) {
            return true;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// No usable Range: serve the whole representation.
    None,
    /// Inclusive byte range, already clamped to the size.
    Single {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Parses a `Range` header for a representation of `size` bytes. Anything
/// but one well-formed `bytes` range is ignored (RFC 9110 allows that, and
/// it keeps multi-range abuse from costing anything).
fn parse_range(v: &[u8], size: u64) -> RangeSpec {
    if v.len() > MAX_RANGE_HEADER {
        return RangeSpec::None;
    }
    let Ok(s) = std::str::from_utf8(v) else {
        return RangeSpec::None;
    };
    let s = s.trim();
    let Some((unit, spec)) = s.split_once('=') else {
        return RangeSpec::None;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeSpec::None;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::None;
    };
    let digits = |x: &str| !x.is_empty() && x.len() <= 19 && x.bytes().all(|c| c.is_ascii_digit());
    match (a, b) {
        ("", n) if digits(n) => {
            let Ok(n) = n.parse::<u64>() else {
                return RangeSpec::None;
            };
            if n == 0 || size == 0 {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Single { start: size.saturating_sub(n), end: size - 1 }
            }
        }
        (a, "") if digits(a) => match a.parse::<u64>() {
            Ok(start) if start < size => RangeSpec::Single { start, end: size - 1 },
            Ok(_) => RangeSpec::Unsatisfiable,
            Err(_) => RangeSpec::None,
        },
        (a, b) if digits(a) && digits(b) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(start), Ok(end)) if start <= end => {
                if start >= size {
                    RangeSpec::Unsatisfiable
                } else {
                    RangeSpec::Single { start, end: end.min(size - 1) }
                }
            }
            _ => RangeSpec::None,
        },
        _ => RangeSpec::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sha2::Digest as _;

    const CONTENT: &[u8] = b"0123456789abcdefghij";

    fn meta() -> ArtifactMeta {
        ArtifactMeta {
            size: CONTENT.len() as u64,
            sha256: sha2::Sha256::digest(CONTENT).into(),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        }
    }

    fn lm_str() -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    async fn file() -> (tempfile::TempDir, tokio::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.whl");
        std::fs::write(&p, CONTENT).unwrap();
        let f = tokio::fs::File::open(&p).await.unwrap();
        (dir, f)
    }

    async fn run(method: &str, headers: &[(&str, &str)]) -> (http::response::Parts, Bytes) {
        let mut b = http::Request::builder().method(method).uri("/r/c/a.whl");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let (_d, f) = file().await;
        let resp = serve(&parts, f, &meta()).await;
        let (p, body) = resp.into_parts();
        (p, body.collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn full_get() {
        let (p, b) = run("GET", &[]).await;
        let m = meta();
        assert_eq!(p.status, 200);
        assert_eq!(&b[..], CONTENT);
        assert_eq!(p.headers["content-length"], "20");
        assert_eq!(p.headers["accept-ranges"], "bytes");
        assert_eq!(p.headers["etag"], etag(&m.sha256).as_str());
        assert_eq!(p.headers["last-modified"], lm_str().as_str());
        assert_eq!(p.headers["content-type"], "application/zip");
        let b64 = base64::engine::general_purpose::STANDARD.encode(m.sha256);
        assert_eq!(p.headers["digest"], format!("SHA-256={b64}").as_str());
        assert_eq!(p.headers["repr-digest"], format!("sha-256=:{b64}:").as_str());
    }

    #[tokio::test]
    async fn head_has_headers_only() {
        let (p, b) = run("HEAD", &[("range", "bytes=0-1")]).await;
        assert_eq!(p.status, 200);
        assert!(b.is_empty());
        assert_eq!(p.headers["content-length"], "20");
        assert!(p.headers.contains_key("repr-digest"));
    }

    #[tokio::test]
    async fn other_methods_are_405() {
        for m in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let (p, _) = run(m, &[]).await;
            assert_eq!(p.status, 405, "{m}");
            assert_eq!(p.headers["allow"], "GET, HEAD");
        }
    }

    #[tokio::test]
    async fn ranges() {
        let cases: &[(&str, u16, &[u8], Option<&str>)] = &[
            ("bytes=0-3", 206, b"0123", Some("bytes 0-3/20")),
            ("bytes=18-", 206, b"ij", Some("bytes 18-19/20")),
            ("bytes=-3", 206, b"hij", Some("bytes 17-19/20")),
            ("bytes=-100", 206, CONTENT, Some("bytes 0-19/20")),
            ("bytes=5-100", 206, b"56789abcdefghij", Some("bytes 5-19/20")),
            ("BYTES = 1-1", 206, b"1", Some("bytes 1-1/20")),
            ("bytes=20-", 416, b"", Some("bytes */20")),
            ("bytes=20-30", 416, b"", Some("bytes */20")),
            ("bytes=-0", 416, b"", Some("bytes */20")),
            ("bytes=0-1,5-6", 200, CONTENT, None),
            ("bytes=0-1,", 200, CONTENT, None),
            ("bytes=3-2", 200, CONTENT, None),
            ("bytes=a-b", 200, CONTENT, None),
            ("bytes=-", 200, CONTENT, None),
            ("bytes=--1", 200, CONTENT, None),
            ("bytes=+1-2", 200, CONTENT, None),
            ("items=0-1", 200, CONTENT, None),
            ("bytes 0-1", 200, CONTENT, None),
            ("bytes=0-99999999999999999999999", 200, CONTENT, None),
        ];
        for (range, status, body, cr) in cases {
            let (p, b) = run("GET", &[("range", range)]).await;
            assert_eq!(p.status.as_u16(), *status, "{range}");
            assert_eq!(&b[..], *body, "{range}");
            assert_eq!(p.headers.get("content-range").map(|v| v.to_str().unwrap()), *cr, "{range}");
            if *status == 206 {
                assert_eq!(p.headers["content-length"], body.len().to_string().as_str());
                assert!(p.headers.contains_key("repr-digest"));
            }
        }
        let many = format!("bytes={}", vec!["0-0"; 10_000].join(","));
        let (p, b) = run("GET", &[("range", &many)]).await;
        assert_eq!(p.status, 200);
        assert_eq!(&b[..], CONTENT);
    }

    #[tokio::test]
    async fn if_range() {
        let e = etag(&meta().sha256);
        let weak = format!("W/{e}");
        let lm = lm_str();
        let cases: &[(&str, u16)] = &[
            (&e, 206),
            (&weak, 200),
            ("\"other\"", 200),
            (&lm, 206),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 200),
            ("garbage", 200),
        ];
        for (ir, status) in cases {
            let (p, _) = run("GET", &[("range", "bytes=0-1"), ("if-range", ir)]).await;
            assert_eq!(p.status.as_u16(), *status, "{ir}");
        }
    }

    #[tokio::test]
    async fn conditionals() {
        let e = etag(&meta().sha256);
        let weak = format!("W/{e}");
        let list = format!("\"x\", {weak}, \"y\"");
        let lm = lm_str();
        let later = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let earlier = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
            (vec![("if-none-match", &e)], 304),
            (vec![("if-none-match", "*")], 304),
            (vec![("if-none-match", &weak)], 304),
            (vec![("if-none-match", &list)], 304),
            (vec![("if-none-match", "\"x\", \"y\"")], 200),
            (vec![("if-none-match", "garbage")], 200),
            (vec![("if-modified-since", &lm)], 304),
            (vec![("if-modified-since", &later)], 304),
            (vec![("if-modified-since", &earlier)], 200),
            (vec![("if-modified-since", "not a date")], 200),
            // If-None-Match takes precedence over If-Modified-Since.
            (vec![("if-none-match", "\"x\""), ("if-modified-since", &later)], 200),
            (vec![("if-match", &e)], 200),
            (vec![("if-match", "*")], 200),
            (vec![("if-match", "\"x\"")], 412),
            // If-Match uses strong comparison.
            (vec![("if-match", &weak)], 412),
            (vec![("if-unmodified-since", &earlier)], 412),
            (vec![("if-unmodified-since", &lm)], 200),
            (vec![("if-match", "\"x\""), ("if-none-match", &e)], 412),
        ];
        for (hs, status) in cases {
            let (p, b) = run("GET", &hs).await;
            assert_eq!(p.status.as_u16(), status, "{hs:?}");
            if status == 304 {
                assert!(b.is_empty());
                assert_eq!(p.headers["etag"], e.as_str());
            }
        }
    }

    #[tokio::test]
    async fn no_last_modified_header_when_unknown() {
        let mut parts = http::Request::get("/r/c/x.bin").body(()).unwrap().into_parts().0;
        parts.headers.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Thu, 01 Jan 2099 00:00:00 GMT"),
        );
        let (_d, f) = file().await;
        let m = ArtifactMeta { last_modified: None, ..meta() };
        let r = serve(&parts, f, &m).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("last-modified").is_none());
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
    }

    #[tokio::test]
    async fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e");
        std::fs::write(&p, b"").unwrap();
        let m =
            ArtifactMeta { size: 0, sha256: sha2::Sha256::digest(b"").into(), last_modified: None };
        let parts = http::Request::get("/r/c/e").body(()).unwrap().into_parts().0;
        let r = serve(&parts, tokio::fs::File::open(&p).await.unwrap(), &m).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "0");
        let parts = http::Request::get("/r/c/e")
            .header("range", "bytes=-5")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let r = serve(&parts, tokio::fs::File::open(&p).await.unwrap(), &m).await;
        assert_eq!(r.status(), 416);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("/r/c/x-1.0.tar.gz"), "application/gzip");
        assert_eq!(content_type("/r/c/X.JAR"), "application/java-archive");
        assert_eq!(content_type("/r/c/x.pom"), "application/xml");
        assert_eq!(content_type("/r/c/x.deb"), "application/vnd.debian.binary-package");
        assert_eq!(content_type("/r/c/x"), "application/octet-stream");
        assert_eq!(content_type("/r/c.json/x"), "application/octet-stream");
    }
}
