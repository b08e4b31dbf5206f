//! Tests against a hand-written HTTP/1.1 origin on 127.0.0.1:0, so that misbehaviour (wrong,
//! endless, short, cut, stalled, trickling bodies; Range and If-Range) is exactly what we say.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use super::*;

const SIZE: usize = 256 * 1024;

fn data() -> Vec<u8> {
    // xorshift: incompressible, deterministic.
    let mut x: u32 = 0x9e37_79b9;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn expect_for(bytes: &[u8]) -> Expect {
    Expect { size: bytes.len() as u64, sha256: Sha256::digest(bytes).into() }
}

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Origin {
    base: String,
    requests: Arc<Mutex<Vec<Request>>>,
    /// Body bytes the origin managed to write, all connections together.
    sent: Arc<AtomicU64>,
}

impl Origin {
    async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let data = Arc::new(data());
        let (log, counter) = (requests.clone(), sent.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (data, log, counter) = (data.clone(), log.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &data, &log, &counter).await;
                });
            }
        });
        Origin { base, requests, sent }
    }

    fn source(&self, path: &str, odi_peer: bool) -> Source {
        Source { url: Url::parse(&format!("{}{path}", self.base)).unwrap(), odi_peer }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut stream: TcpStream,
    data: &[u8],
    log: &Mutex<Vec<Request>>,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("/").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let request = Request { path: path.clone(), headers };
    log.lock().unwrap().push(request.clone());

    let len = data.len();
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(data)));
    let status =
        |code: &str, extra: &str| format!("HTTP/1.1 {code}\r\nConnection: close\r\n{extra}\r\n");
    let mut body_sent = 0u64;
    match path.as_str() {
        "/good" | "/other-etag" | "/norange" => {
            let server_etag =
                if path == "/other-etag" { "\"something-else\"".to_owned() } else { etag.clone() };
            let offset = request
                .header("range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|_| path != "/norange")
                .filter(|_| request.header("if-range").is_none_or(|v| v == server_etag));
            match offset {
                Some(offset) if offset < len => {
                    let head = status(
                        "206 Partial Content",
                        &format!("ETag: {server_etag}\r\nContent-Length: {}\r\nContent-Range: bytes {offset}-{}/{len}\r\n", len - offset, len - 1),
                    );
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&data[offset..]).await?;
                    body_sent += (len - offset) as u64;
                }
                _ => {
                    stream
                        .write_all(
                            status(
                                "200 OK",
                                &format!("ETag: {server_etag}\r\nContent-Length: {len}\r\n"),
                            )
                            .as_bytes(),
                        )
                        .await?;
                    stream.write_all(data).await?;
                    body_sent += len as u64;
                }
            }
        }
        "/bad-range" => {
            // Always claims to continue at byte 5, whatever was asked.
            let head = status(
                "206 Partial Content",
                &format!(
                    "Content-Length: {}\r\nContent-Range: bytes 5-{}/{len}\r\n",
                    len - 5,
                    len - 1
                ),
            );
            let head = if request.header("range").is_some() {
                head
            } else {
                status("200 OK", &format!("Content-Length: {len}\r\n"))
            };
            stream.write_all(head.as_bytes()).await?;
            let body = if request.header("range").is_some() { &data[5..] } else { data };
            stream.write_all(body).await?;
        }
        "/wrong" => {
            let mut bad = data.to_vec();
            bad[len / 2] ^= 0xff;
            stream
                .write_all(status("200 OK", &format!("Content-Length: {len}\r\n")).as_bytes())
                .await?;
            stream.write_all(&bad).await?;
        }
        "/endless" => {
            // No length: the body runs until the connection closes, i.e. forever.
            stream.write_all(status("200 OK", "").as_bytes()).await?;
            loop {
                stream.write_all(data).await?;
                sent.fetch_add(len as u64, Ordering::Relaxed);
            }
        }
        "/long" => {
            stream
                .write_all(
                    status("200 OK", &format!("Content-Length: {}\r\n", len + 10)).as_bytes(),
                )
                .await?;
            stream.write_all(data).await?;
            stream.write_all(&[0; 10]).await?;
        }
        "/short" => {
            // Close-delimited body that ends cleanly at half the size.
            stream.write_all(status("200 OK", "").as_bytes()).await?;
            stream.write_all(&data[..len / 2]).await?;
        }
        "/cut" => {
            // Declares the full length, then the connection goes away mid-body.
            stream
                .write_all(status("200 OK", &format!("Content-Length: {len}\r\n")).as_bytes())
                .await?;
            stream.write_all(&data[..len / 2]).await?;
        }
        "/stall" => {
            stream
                .write_all(status("200 OK", &format!("Content-Length: {len}\r\n")).as_bytes())
                .await?;
            stream.write_all(&data[..1000]).await?;
            stream.flush().await?;
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        "/trickle" => {
            stream
                .write_all(status("200 OK", &format!("Content-Length: {len}\r\n")).as_bytes())
                .await?;
            for b in data {
                stream.write_all(&[*b]).await?;
                stream.flush().await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        "/500" => {
            stream
                .write_all(status("500 Internal Server Error", "Content-Length: 0\r\n").as_bytes())
                .await?
        }
        _ => stream.write_all(status("404 Not Found", "Content-Length: 0\r\n").as_bytes()).await?,
    }
    sent.fetch_add(body_sent, Ordering::Relaxed);
    stream.flush().await?;
    stream.shutdown().await
}

fn quick() -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(5),
        min_rate: 0,
        grace: Duration::from_secs(5),
    }
}

struct Case {
    origin: Origin,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    data: Vec<u8>,
    expect: Expect,
}

impl Case {
    async fn new() -> Case {
        let data = data();
        Case {
            origin: Origin::start().await,
            client: client(&quick(), &[]).unwrap(),
            dir: tempfile::tempdir().unwrap(),
            expect: expect_for(&data),
            data,
        }
    }

    fn partial(&self) -> PathBuf {
        self.dir.path().join("artifact.partial")
    }

    async fn get(&self, path: &str, odi_peer: bool, limits: &Limits) -> Result<(), FetchError> {
        fetch(
            &self.client,
            &self.origin.source(path, odi_peer),
            &self.expect,
            &self.partial(),
            None,
            limits,
        )
        .await
    }
}

#[tokio::test]
async fn good_download() {
    let case = Case::new().await;
    case.get("/good", false, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
    let requests = case.origin.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/good");
    assert!(requests[0].header("range").is_none());
    assert_eq!(requests[0].header("accept-encoding"), Some("identity"));
    assert_eq!(requests[0].header("user-agent"), Some(concat!("odi/", env!("CARGO_PKG_VERSION"))));
}

#[tokio::test]
async fn wrong_hash_deletes_partial() {
    let case = Case::new().await;
    let err = case.get("/wrong", false, &quick()).await.unwrap_err();
    assert!(matches!(err, FetchError::WrongHash { .. }), "{err:?}");
    assert_eq!(err.reason(), "wrong_hash");
    assert!(err.is_bad_content());
    assert!(err.url().unwrap().ends_with("/wrong"));
    assert!(!case.partial().exists());
}

#[tokio::test]
async fn endless_body_is_cut_at_size_plus_one() {
    let case = Case::new().await;
    let err = case.get("/endless", false, &quick()).await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooMany { expected, .. } if expected == SIZE as u64),
        "{err:?}"
    );
    assert!(!case.partial().exists());
    // We stop reading right away; the origin can only have filled socket buffers beyond that.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = case.origin.sent.load(Ordering::Relaxed);
    eprintln!("origin pushed {sent} bytes before the connection closed");
    assert!(sent < 64 * 1024 * 1024, "origin pushed {sent} bytes");
}

#[tokio::test]
async fn declared_length_too_long_is_refused_before_writing() {
    let case = Case::new().await;
    std::fs::write(case.partial(), &case.data[..1000]).unwrap();
    // Range is ignored by /long, so it answers 200 with a too-long Content-Length.
    let err = case.get("/long", false, &quick()).await.unwrap_err();
    assert!(matches!(err, FetchError::TooMany { .. }), "{err:?}");
    // Nothing was written, so the earlier prefix stays for another source.
    assert_eq!(std::fs::read(case.partial()).unwrap(), &case.data[..1000]);
}

#[tokio::test]
async fn clean_short_body_deletes_partial() {
    let case = Case::new().await;
    let err = case.get("/short", false, &quick()).await.unwrap_err();
    assert!(matches!(err, FetchError::Short { got, .. } if got == SIZE as u64 / 2), "{err:?}");
    assert!(!case.partial().exists());
}

#[tokio::test]
async fn cut_connection_keeps_partial_for_resume() {
    let case = Case::new().await;
    let err = case.get("/cut", false, &quick()).await.unwrap_err();
    assert!(matches!(err, FetchError::Transport { .. }), "{err:?}");
    let kept = std::fs::read(case.partial()).unwrap();
    assert!(!kept.is_empty() && kept.len() <= SIZE / 2, "kept {}", kept.len());
    assert_eq!(kept, &case.data[..kept.len()]);
    // The next attempt resumes from what was kept.
    case.get("/good", true, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
    let last = case.origin.requests().pop().unwrap();
    assert_eq!(last.header("range"), Some(format!("bytes={}-", kept.len()).as_str()));
}

#[tokio::test]
async fn stall_is_detected_and_keeps_partial() {
    let case = Case::new().await;
    let limits = Limits { stall_timeout: Duration::from_secs(1), ..quick() };
    let err = case.get("/stall", false, &limits).await.unwrap_err();
    assert!(matches!(err, FetchError::Stalled { .. }), "{err:?}");
    assert_eq!(err.reason(), "stalled");
    assert_eq!(std::fs::read(case.partial()).unwrap(), &case.data[..1000]);
}

#[tokio::test]
async fn slow_source_is_too_slow() {
    let case = Case::new().await;
    let limits = Limits {
        stall_timeout: Duration::from_secs(3),
        min_rate: 100_000,
        grace: Duration::from_secs(1),
        ..quick()
    };
    let started = Instant::now();
    let err = case.get("/trickle", false, &limits).await.unwrap_err();
    assert!(matches!(err, FetchError::TooSlow { rate, .. } if rate < 100_000), "{err:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(case.partial().exists());
}

#[tokio::test]
async fn http_errors() {
    let case = Case::new().await;
    let err = case.get("/missing", false, &quick()).await.unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 404, .. }), "{err:?}");
    assert_eq!(err.reason(), "http_4xx");
    let err = case.get("/500", false, &quick()).await.unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 500, .. }), "{err:?}");
    assert_eq!(err.reason(), "http_5xx");
}

#[tokio::test]
async fn resume_with_range_and_if_range() {
    let case = Case::new().await;
    std::fs::write(case.partial(), &case.data[..SIZE / 2]).unwrap();
    case.get("/good", true, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
    let requests = case.origin.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("range"), Some(format!("bytes={}-", SIZE / 2).as_str()));
    assert_eq!(
        requests[0].header("if-range"),
        Some(format!("\"{}\"", case.expect.sha256_hex()).as_str())
    );
    assert_eq!(case.origin.sent.load(Ordering::Relaxed), SIZE as u64 / 2);
}

#[tokio::test]
async fn resume_without_if_range_for_plain_origins() {
    let case = Case::new().await;
    std::fs::write(case.partial(), &case.data[..1000]).unwrap();
    case.get("/good", false, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
    let request = case.origin.requests().pop().unwrap();
    assert_eq!(request.header("range"), Some("bytes=1000-"));
    assert!(request.header("if-range").is_none());
}

#[tokio::test]
async fn resume_against_server_ignoring_range_restarts() {
    let case = Case::new().await;
    std::fs::write(case.partial(), &case.data[..SIZE / 2]).unwrap();
    case.get("/norange", false, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
}

#[tokio::test]
async fn if_range_mismatch_gets_full_body() {
    let case = Case::new().await;
    std::fs::write(case.partial(), &case.data[..SIZE / 2]).unwrap();
    case.get("/other-etag", true, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
    assert_eq!(case.origin.sent.load(Ordering::Relaxed), SIZE as u64);
}

#[tokio::test]
async fn bad_content_range_restarts_once_from_zero() {
    let case = Case::new().await;
    std::fs::write(case.partial(), &case.data[..1000]).unwrap();
    case.get("/bad-range", false, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
    let requests = case.origin.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].header("range").is_none());
}

#[tokio::test]
async fn wrong_prefix_is_caught_at_the_end() {
    let case = Case::new().await;
    std::fs::write(case.partial(), vec![0u8; 1000]).unwrap();
    let err = case.get("/good", true, &quick()).await.unwrap_err();
    assert!(matches!(err, FetchError::WrongHash { .. }), "{err:?}");
    assert!(!case.partial().exists());
    // The attempt after that starts clean.
    case.get("/good", true, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
}

#[tokio::test]
async fn oversized_partial_is_discarded() {
    let case = Case::new().await;
    let mut long = case.data.clone();
    long.extend_from_slice(b"trailing junk");
    std::fs::write(case.partial(), &long).unwrap();
    case.get("/good", true, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
    assert!(case.origin.requests()[0].header("range").is_none());
}

#[tokio::test]
async fn complete_partial_needs_no_request() {
    let case = Case::new().await;
    std::fs::write(case.partial(), &case.data).unwrap();
    case.get("/good", true, &quick()).await.unwrap();
    assert!(case.origin.requests().is_empty());
}

#[tokio::test]
async fn unsupported_scheme() {
    let case = Case::new().await;
    let source = Source { url: Url::parse("ftp://example.invalid/x").unwrap(), odi_peer: false };
    let err = fetch(&case.client, &source, &case.expect, &case.partial(), None, &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::UnsupportedScheme { .. }), "{err:?}");
    assert!(!case.partial().exists());
}

fn file_source(path: &Path) -> Source {
    Source { url: Url::from_file_path(path).unwrap(), odi_peer: false }
}

#[tokio::test]
async fn file_good_wrong_and_resume() {
    let case = Case::new().await;
    let origin = case.dir.path().join("origin.bin");
    std::fs::write(&origin, &case.data).unwrap();
    let source = file_source(&origin);

    fetch(&case.client, &source, &case.expect, &case.partial(), None, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);

    std::fs::write(case.partial(), &case.data[..SIZE / 3]).unwrap();
    fetch(&case.client, &source, &case.expect, &case.partial(), None, &quick()).await.unwrap();
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);

    std::fs::remove_file(case.partial()).unwrap();
    let mut bad = case.data.clone();
    bad[7] ^= 1;
    std::fs::write(&origin, &bad).unwrap();
    let err = fetch(&case.client, &source, &case.expect, &case.partial(), None, &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::WrongHash { .. }), "{err:?}");
    assert!(!case.partial().exists());

    std::fs::write(&origin, &case.data[..100]).unwrap();
    let err = fetch(&case.client, &source, &case.expect, &case.partial(), None, &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Short { got: 100, .. }), "{err:?}");

    let missing = file_source(&case.dir.path().join("missing.bin"));
    let err = fetch(&case.client, &missing, &case.expect, &case.partial(), None, &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Read { .. }), "{err:?}");
    assert_eq!(err.reason(), "source_io");
}

#[tokio::test]
async fn fetch_any_falls_back() {
    let case = Case::new().await;
    let sources = [case.origin.source("/missing", true), case.origin.source("/good", true)];
    let used = fetch_any(&case.client, &sources, &case.expect, &case.partial(), None, &quick())
        .await
        .unwrap();
    assert_eq!(used, 1);
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);

    std::fs::remove_file(case.partial()).unwrap();
    let sources = [case.origin.source("/missing", true), case.origin.source("/wrong", true)];
    let errors = fetch_any(&case.client, &sources, &case.expect, &case.partial(), None, &quick())
        .await
        .unwrap_err();
    assert_eq!(
        errors.iter().map(FetchError::reason).collect::<Vec<_>>(),
        ["http_4xx", "wrong_hash"]
    );
}

#[tokio::test]
async fn fetch_any_stops_on_store_errors() {
    let case = Case::new().await;
    let partial = case.dir.path().join("no-such-dir").join("artifact.partial");
    let sources = [case.origin.source("/good", true), case.origin.source("/good", true)];
    let errors = fetch_any(&case.client, &sources, &case.expect, &partial, None, &quick())
        .await
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].reason(), "store_io");
    assert!(errors[0].url().is_none());
}

#[tokio::test]
async fn rate_limiter_caps_download_rate() {
    let case = Case::new().await;
    let limiter = RateLimiter::new(1024 * 1024);
    let started = Instant::now();
    fetch(
        &case.client,
        &case.origin.source("/good", true),
        &case.expect,
        &case.partial(),
        Some(&limiter),
        &quick(),
    )
    .await
    .unwrap();
    // 256 KiB at 1 MiB/s from an empty bucket: at least 250 ms (lower bound only).
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    assert_eq!(std::fs::read(case.partial()).unwrap(), case.data);
}

#[test]
fn content_range_parsing() {
    assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9, Some(10))));
    assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
    assert_eq!(parse_content_range("bytes 9-5/10"), None);
    assert_eq!(parse_content_range("items 5-9/10"), None);
    assert_eq!(parse_content_range("bytes 5-/10"), None);
}
