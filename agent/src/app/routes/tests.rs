//! Every route of both modes through `oneshot`, without a socket: a relay and a directory node
//! with a real store in a temporary folder and, where a test needs one, a small signed network
//! applied as their view.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::ConnectInfo;
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use odi_network::builder::NetworkBuilder;
use odi_network::raw::{ArtifactEntry, CatalogFile, DirectoryFile, RelayFile, Sha256};
use odi_network::safe_path::ArtifactPath;
use odi_network::units::ByteSize;
use sha2::Digest as _;
use tower::ServiceExt as _;

use super::router;
use crate::app::Role;
use crate::config::{Config, RawConfig};
use crate::directory::DirectoryMode;
use crate::fetch::{self, Limits};
use crate::node::Node;
use crate::reconcile::Fetcher;
use crate::relay::RelayMode;
use crate::store::Store;

const TOKEN: &str = "s3cret-token-of-the-test";
const HELD: &[u8] = b"bytes the relay holds\n";
const MISSING: &[u8] = b"bytes nobody holds yet\n";

struct Fixture {
    _dir: tempfile::TempDir,
    role: Role,
}

fn config(mode: &str, name: &str, dir: &Path) -> Config {
    let key = odi_network::signature::generate_key().unwrap().public;
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let text = format!(
        "mode = '{mode}'\nname = '{name}'\ndata_dir = '{d}'\nlisten = ['127.0.0.1:0']\n\
         [repository]\nurl = '/nonexistent'\nroot_keys = ['{key}']\ntrigger_token_file = '{t}'\n",
        d = dir.display(),
        t = token.display()
    );
    let raw: RawConfig = toml::from_str(&text).unwrap();
    Config::validate(raw, &dir.join("odi.toml")).unwrap()
}

fn entry(path: &str, bytes: &[u8]) -> ArtifactEntry {
    ArtifactEntry {
        path: ArtifactPath::new(path).unwrap(),
        size: bytes.len() as u64,
        sha256: Sha256(sha2::Sha256::digest(bytes).into()),
        published: None,
        expunged: None,
    }
}

/// Catalog `c` (`held.txt`, `missing.txt`, `gone.txt` expunged), directory `d1`, relay `r1`.
fn network() -> odi_network::Network {
    let mut b = NetworkBuilder::new().unwrap();
    let mut gone = entry("gone.txt", b"withdrawn");
    gone.expunged = Some("corrupted upload".into());
    b.catalogs.insert(
        "c".into(),
        CatalogFile {
            serial: 1,
            name: "c".into(),
            description: "test catalog <script>alert(1)</script>".into(),
            origins: vec!["https://origin.example.org/c/".into()],
            replicas: 1,
            import: None,
            artifacts: vec![
                entry("held.txt", HELD),
                entry("missing.txt", MISSING),
                gone,
                entry("docs/index.html", b"<p>docs</p>"),
                entry("pool/main/h/hello/hello_1.0.deb", b"deb"),
            ],
            ..Default::default()
        },
    );
    b.directories.insert(
        "d1".into(),
        DirectoryFile {
            serial: 1,
            name: "d1".into(),
            url: "https://d1.example.net/".into(),
            region: "eu".into(),
            catalogs: vec!["c".into()],
            ..Default::default()
        },
    );
    b.relays.insert(
        "r1".into(),
        RelayFile {
            serial: 1,
            name: "r1".into(),
            url: "https://r1.example.net/".into(),
            region: "eu".into(),
            contact: "ops@r1.example.net".into(),
            quota: ByteSize(1 << 20),
            directories: vec!["d1".into()],
            catalogs: vec!["c".into()],
            ..Default::default()
        },
    );
    let tree = b.tree().unwrap();
    let now = time::OffsetDateTime::now_utc();
    odi_network::load(&tree, &Default::default(), &Default::default(), now).unwrap().network
}

/// A node of `mode`, with the network applied when `applied`, and `HELD` in its store.
async fn fixture(mode: &str, applied: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let name = if mode == "relay" { "r1" } else { "d1" };
    let config = config(mode, name, dir.path());
    let store = Store::open(&dir.path().join("store")).unwrap();
    let sha: [u8; 32] = sha2::Sha256::digest(HELD).into();
    std::fs::write(store.partial_path(&sha), HELD).unwrap();
    store.commit(&sha).unwrap();
    let limits = Limits::default();
    let fetcher = Fetcher {
        client: fetch::client(&limits, &[]).unwrap(),
        limits,
        limiter: None,
        concurrency: 1,
    };
    let node = Arc::new(Node::new(config, store, fetcher));
    if applied {
        let now = time::OffsetDateTime::now_utc();
        node.install("c0ffee".into(), Arc::new(network()), Default::default(), now).await;
    }
    let role = if mode == "relay" {
        Role::Relay(Arc::new(RelayMode { node }))
    } else {
        Role::Directory(Arc::new(DirectoryMode::open(node).unwrap()))
    };
    Fixture { _dir: dir, role }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn call(f: &Fixture, req: Request<AxumBody>) -> Answer {
    let mut req = req;
    let remote: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(remote));
    let resp = router(&f.role).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, headers, body }
}

fn req(method: Method, path: &str) -> Request<AxumBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "t")
        .body(AxumBody::empty())
        .unwrap()
}

async fn get(f: &Fixture, path: &str) -> Answer {
    call(f, req(Method::GET, path)).await
}

#[tokio::test]
async fn common_routes_answer_alike_in_both_modes() {
    for mode in ["relay", "directory"] {
        let f = fixture(mode, true).await;
        let a = get(&f, "/healthz").await;
        assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, &b"ok\n"[..]), "{mode}");

        let a = get(&f, "/metrics").await;
        assert_eq!(a.status, StatusCode::OK, "{mode}");
        assert!(a.header("content-type").starts_with("text/plain"), "{mode}");
        assert!(String::from_utf8_lossy(&a.body).contains("odi_store_objects 1"), "{mode}");

        let a = get(&f, "/.odi/v1/status").await;
        assert_eq!(a.status, StatusCode::OK, "{mode}");
        let doc: crate::status::StatusDoc = serde_json::from_slice(&a.body).unwrap();
        assert_eq!((doc.mode.as_str(), doc.commit.as_deref()), (mode, Some("c0ffee")));
        assert_eq!(doc.directory.is_some(), mode == "directory");

        let a = get(&f, "/.odi/v1/inventory").await;
        let inv: crate::wire::Inventory = serde_json::from_slice(&a.body).unwrap();
        let held: Vec<&str> = inv.artifacts.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(held, ["held.txt"], "{mode}");

        let sha = hex::encode(sha2::Sha256::digest(HELD));
        let a = get(&f, &format!("/.odi/v1/blob/{sha}")).await;
        assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, HELD), "{mode}");
        let a = get(&f, &format!("/.odi/v1/blob/{}", "0".repeat(64))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{mode}");
        assert_eq!(a.header("cache-control"), "public, max-age=60", "{mode}");
        assert_eq!(get(&f, "/.odi/v1/blob/xyz").await.status, StatusCode::BAD_REQUEST);

        let a = get(&f, "/no/such/route").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{mode}");
        assert_eq!(a.header("cache-control"), "public, max-age=60", "{mode}");
    }
}

#[tokio::test]
async fn methods_get_405_with_allow_and_head_works_in_both_modes() {
    // (method, path, status, Allow)
    let cases: &[(Method, &str, u16, &str)] = &[
        (Method::POST, "/healthz", 405, "GET,HEAD"),
        (Method::DELETE, "/metrics", 405, "GET,HEAD"),
        (Method::PUT, "/.odi/v1/status", 405, "GET,HEAD"),
        (Method::POST, "/r/c/held.txt", 405, "GET,HEAD"),
        (Method::GET, "/.odi/v1/sync", 405, "POST"),
        (Method::HEAD, "/healthz", 200, ""),
    ];
    for mode in ["relay", "directory"] {
        let f = fixture(mode, true).await;
        for (method, path, status, allow) in cases {
            let a = call(&f, req(method.clone(), path)).await;
            assert_eq!(a.status.as_u16(), *status, "{mode} {method} {path}");
            assert_eq!(a.header("allow").replace(' ', ""), *allow, "{mode} {method} {path}");
            if *method == Method::HEAD {
                assert!(a.body.is_empty(), "{mode}: HEAD has no body");
            }
        }
    }
}

#[tokio::test]
async fn http11_without_host_is_400_in_both_modes() {
    for mode in ["relay", "directory"] {
        let f = fixture(mode, true).await;
        let r = Request::builder().uri("/healthz").body(AxumBody::empty()).unwrap();
        assert_eq!(call(&f, r).await.status, StatusCode::BAD_REQUEST, "{mode}");
    }
}

#[tokio::test]
async fn sync_trigger_wants_the_bearer_token() {
    let f = fixture("relay", true).await;
    let with = |auth: Option<&str>| {
        let mut b =
            Request::builder().method(Method::POST).uri("/.odi/v1/sync").header(header::HOST, "t");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(AxumBody::empty()).unwrap()
    };
    assert_eq!(call(&f, with(None)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&f, with(Some("Bearer wrong"))).await.status, StatusCode::UNAUTHORIZED);
    let ok = format!("Bearer {TOKEN}");
    assert_eq!(call(&f, with(Some(&ok))).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn relay_artifact_answers() {
    let f = fixture("relay", true).await;
    // (path, status, Cache-Control, Location prefix)
    let cases: &[(&str, u16, &str, &str)] = &[
        ("/r/c/held.txt", 200, "public, no-cache", ""),
        (
            "/r/c/missing.txt",
            302,
            "private, no-cache",
            "https://d1.example.net/r/c/missing.txt?odi-via=r1",
        ),
        ("/r/c/gone.txt", 410, "public, max-age=60", ""),
        ("/r/c/nothing.txt", 404, "public, max-age=60", ""),
        ("/r/c/held.txt.meta4", 404, "public, max-age=60", ""),
        ("/r/c/../etc/passwd", 400, "", ""),
        ("/r/c/%2e%2e/x", 400, "", ""),
    ];
    for (path, status, cache, location) in cases {
        let a = get(&f, path).await;
        assert_eq!(a.status.as_u16(), *status, "{path}: {}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("cache-control"), *cache, "{path}");
        assert_eq!(a.header("location"), *location, "{path}");
    }
    let a = get(&f, "/r/c/held.txt").await;
    assert_eq!(a.body, HELD);
    assert!(a.header("etag").starts_with('"') && !a.header("repr-digest").is_empty());
    // Directory-only routes are not a relay's.
    assert_eq!(get(&f, "/.odi/v1/hot").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&f, "/.odi/v1/stats").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn directory_artifact_answers() {
    let f = fixture("directory", true).await;
    // No relay has been probed healthy, so the directory serves its own copy or sends the
    // client to the origin. (path, status, Cache-Control, Location)
    let cases: &[(&str, u16, &str, &str)] = &[
        ("/r/c/held.txt", 200, "public, no-cache", ""),
        ("/r/c/missing.txt", 302, "private, no-cache", "https://origin.example.org/c/missing.txt"),
        ("/r/c/gone.txt", 410, "public, max-age=60", ""),
        ("/r/c/nothing.txt", 404, "public, max-age=60", ""),
        ("/r/other/x.txt", 404, "public, max-age=60", ""),
    ];
    for (path, status, cache, location) in cases {
        let a = get(&f, path).await;
        assert_eq!(a.status.as_u16(), *status, "{path}: {}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("cache-control"), *cache, "{path}");
        assert_eq!(a.header("location"), *location, "{path}");
    }
    let a = get(&f, "/r/c/missing.txt").await;
    assert!(a.header("repr-digest").starts_with("sha-256=:"), "digests on the origin redirect");
    let a = get(&f, "/r/c/held.txt.meta4").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&a.body).contains("<metalink"));

    let a = get(&f, "/.odi/v1/hot").await;
    let hot: crate::wire::HotList = serde_json::from_slice(&a.body).unwrap();
    assert!(hot.artifacts.is_empty());
    let a = get(&f, "/.odi/v1/stats").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(serde_json::from_slice::<serde_json::Value>(&a.body).is_ok());
}

#[tokio::test]
async fn before_any_commit_artifacts_are_503() {
    for mode in ["relay", "directory"] {
        let f = fixture(mode, false).await;
        let a = get(&f, "/r/c/held.txt").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{mode}");
        assert_eq!(get(&f, "/healthz").await.status, StatusCode::OK, "{mode}");
    }
}

fn with_accept(path: &str, accept: &str) -> Request<AxumBody> {
    let mut r = req(Method::GET, path);
    r.headers_mut().insert(header::ACCEPT, accept.parse().unwrap());
    r
}

#[tokio::test]
async fn pages_answer_html_and_their_json_twins() {
    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    // (mode, path, Accept, status, content type, what the body holds)
    type Case<'a> = (&'a str, &'a str, &'a str, u16, &'a str, &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (
            "directory",
            "/",
            BROWSER,
            200,
            "text/html",
            &["<main", "test catalog &lt;script&gt;", "curl -L -O https://d1.example.net/r/c/"],
        ),
        (
            "directory",
            "/",
            "application/json",
            200,
            "application/json",
            &[r#""directory":"d1""#, r#""name":"c""#],
        ),
        ("directory", "/index.json", BROWSER, 200, "application/json", &[r#""artifacts":4"#]),
        (
            "directory",
            "/status",
            BROWSER,
            200,
            "text/html",
            &["relay-r1", "not probed yet", "d1", "(this one)", "data-refresh=\""],
        ),
        (
            "directory",
            "/status.json",
            "",
            200,
            "application/json",
            &[r#""name":"r1""#, r#""probe_interval_ms""#],
        ),
        (
            "directory",
            "/stats",
            BROWSER,
            200,
            "text/html",
            &["Downloads per catalog", "<svg", "Nothing downloaded yet"],
        ),
        (
            "directory",
            "/stats.json",
            "",
            200,
            "application/json",
            &[r#""history""#, r#""bucket_seconds":3600"#],
        ),
        (
            "directory",
            "/r/c/",
            BROWSER,
            200,
            "text/html",
            &[
                "held.txt",
                "expunged: corrupted upload",
                "href=\"/r/c/pool/\"",
                "href=\"/r/c/held.txt?mirrorlist\"",
            ],
        ),
        (
            "directory",
            "/r/c/",
            "application/json",
            200,
            "application/json",
            &[r#""folder":"""#, r#""name":"pool""#, r#""expunged":"corrupted upload""#],
        ),
        (
            "directory",
            "/r/c/pool/main/",
            BROWSER,
            200,
            "text/html",
            &["href=\"/r/c/pool/main/h/\"", "/r/c/pool/main/"],
        ),
        (
            "directory",
            "/r/c/held.txt?mirrorlist",
            BROWSER,
            200,
            "text/html",
            &["Mirrors of held.txt", "r1", "not probed yet"],
        ),
        (
            "directory",
            "/r/c/held.txt?mirrorlist",
            "application/json",
            200,
            "application/json",
            &[r#""relay":"r1""#, r#""rank":null"#, r#""excluded":"not probed yet""#],
        ),
        (
            "directory",
            "/r/c/gone.txt?mirrorlist",
            BROWSER,
            410,
            "text/plain",
            &["corrupted upload"],
        ),
        ("directory", "/r/c/nothing/", BROWSER, 404, "text/plain", &["no folder c/nothing/"]),
        ("directory", "/r/nope/", BROWSER, 404, "text/plain", &["no catalog `nope`"]),
        ("directory", "/r/c/%2e%2e/", BROWSER, 400, "text/plain", &[]),
        (
            "relay",
            "/",
            BROWSER,
            200,
            "text/html",
            &[
                "<strong>r1</strong>",
                "a relay of an ODI network",
                "href=\"https://d1.example.net/\"",
            ],
        ),
        (
            "relay",
            "/index.json",
            "",
            200,
            "application/json",
            &[r#""name":"r1""#, r#""directories":[["d1""#],
        ),
        ("relay", "/status", BROWSER, 404, "text/plain", &[]),
    ];
    for mode in ["directory", "relay"] {
        let f = fixture(mode, true).await;
        for (m, path, accept, status, ct, holds) in cases.iter().filter(|c| c.0 == mode) {
            let a =
                call(&f, with_accept(path, if accept.is_empty() { "*/*" } else { accept })).await;
            let body = String::from_utf8_lossy(&a.body);
            assert_eq!(a.status.as_u16(), *status, "{m} {path}: {body}");
            assert!(
                a.header("content-type").starts_with(ct),
                "{m} {path}: {}",
                a.header("content-type")
            );
            for h in *holds {
                assert!(body.contains(h), "{m} {path} must hold {h}: {body}");
            }
            if *ct == "text/html" {
                let at = body.find("<script>alert").map(|i| &body[i.saturating_sub(200)..i + 40]);
                assert_eq!(at, None, "{m} {path}: repository text must be escaped");
            }
            if *ct == "text/html" {
                assert!(a.header("content-security-policy").contains("default-src 'none'"));
                assert_eq!(a.header("vary"), "accept", "{path}");
            }
        }
    }
}

#[tokio::test]
async fn folder_urls_redirect_or_serve_their_own_index() {
    let f = fixture("directory", true).await;
    // (path, status, Location)
    let cases = [
        ("/r/c", 301, "/r/c/"),
        // Not a catalog: the artifact path's answer, as before there were folders.
        ("/r/nope", 400, ""),
        ("/r/", 301, "/"),
        // A folder that lists its own index.html serves it (pip and static sites rely on it);
        // nobody holds it here, so it goes to the origin.
        ("/r/c/docs/", 302, "https://origin.example.org/c/docs/index.html"),
    ];
    for (path, status, location) in cases {
        let a = get(&f, path).await;
        assert_eq!(a.status.as_u16(), status, "{path}: {}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("location"), location, "{path}");
    }
}

fn with_if_none_match(path: &str, tag: &str) -> Request<AxumBody> {
    let mut r = req(Method::GET, path);
    r.headers_mut().insert(header::IF_NONE_MATCH, tag.parse().unwrap());
    r
}

#[tokio::test]
async fn inventory_answers_304_while_nothing_changed() {
    const INV: &str = "/.odi/v1/inventory";
    let f = fixture("relay", true).await;
    let first = get(&f, INV).await;
    assert_eq!(first.status, StatusCode::OK);
    let tag = first.header("etag").to_owned();
    assert!(tag.starts_with('"') && tag.len() == 34, "a strong 128-bit tag: {tag}");

    // (If-None-Match, status): the tag itself, weakly, in a list, `*`, and other tags.
    let cases = [
        (tag.clone(), 304),
        (format!("W/{tag}"), 304),
        (format!("\"x\", {tag}"), 304),
        ("*".to_owned(), 304),
        ("\"not-it\"".to_owned(), 200),
        ("not even a tag".to_owned(), 200),
    ];
    for (asked, status) in &cases {
        let a = call(&f, with_if_none_match(INV, asked)).await;
        assert_eq!(a.status.as_u16(), *status, "If-None-Match: {asked}");
        assert_eq!(a.header("etag"), tag, "If-None-Match: {asked}");
        assert_eq!(a.body.is_empty(), *status == 304, "If-None-Match: {asked}");
    }

    // An object that no live artifact names changes the store but not the list: still 304.
    let node = f.role.node();
    let other = b"not in any catalog";
    let sha: [u8; 32] = sha2::Sha256::digest(other).into();
    std::fs::write(node.store.partial_path(&sha), other).unwrap();
    node.store.commit(&sha).unwrap();
    assert_eq!(call(&f, with_if_none_match(INV, &tag)).await.status, StatusCode::NOT_MODIFIED);

    // The held object gone: a whole new list under a new tag.
    node.store.remove(&sha2::Sha256::digest(HELD).into()).unwrap();
    let a = call(&f, with_if_none_match(INV, &tag)).await;
    assert_eq!(a.status, StatusCode::OK);
    let inv: crate::wire::Inventory = serde_json::from_slice(&a.body).unwrap();
    assert!(inv.artifacts.is_empty());
    let emptied = a.header("etag").to_owned();
    assert_ne!(emptied, tag);

    // Another commit with the same holdings: another tag, since the list is of that commit.
    let now = time::OffsetDateTime::now_utc();
    node.install("beef".into(), Arc::new(network()), Default::default(), now).await;
    let a = call(&f, with_if_none_match(INV, &emptied)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_ne!(a.header("etag"), emptied);
}
