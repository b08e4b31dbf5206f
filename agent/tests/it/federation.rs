//! Federation end to end: the seed's global example as a running network (a meta-directory
//! referencing a canonical directory in one region and a linked one in another, relays under
//! each), failover when the canonical directory stops, and loop protection.

use std::time::Duration;

use odi_network::raw::{DirectoryFile, DirectoryKind};

use crate::support::{self, CATALOG};
use crate::testnet::{client, eventually, status, TestNet};

const WAIT: Duration = Duration::from_secs(30);
const EU: &str = "10.1.2.3";
const US: &str = "10.2.3.4";

async fn global_network() -> TestNet {
    let mut b = support::small_network();
    b.directories.insert(
        "meta".into(),
        DirectoryFile {
            serial: 1,
            name: "meta".into(),
            url: "https://meta.example.net/".into(),
            region: "global".into(),
            kind: DirectoryKind::Meta,
            contact: None,
            catalogs: vec![],
            links: vec![],
            references: vec!["dir-a".into(), "dir-b".into()],
        },
    );
    let mut net = TestNet::new(b, support::artifact_bytes()).await;
    let regions = "regions = { \"10.1.0.0/16\" = \"eu\", \"10.2.0.0/16\" = \"us\" }\n";
    for n in ["meta", "dir-a", "dir-b"] {
        net.extra_config.insert(n.into(), regions.into());
    }
    net
}

/// The directory a client of `ip` is first sent to by the meta-directory.
async fn first_hop(net: &TestNet, ip: &str, path: &str) -> Option<String> {
    let r = client()
        .get(format!("{}/r/{CATALOG}/{path}", net.url("meta")))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .ok()?;
    if r.status() != 302 {
        return None;
    }
    let loc = r.headers().get("location")?.to_str().ok()?.to_owned();
    ["dir-a", "dir-b"]
        .into_iter()
        .find(|d| loc.starts_with(&format!("{}/", net.url(d))))
        .map(str::to_owned)
}

/// Downloads through the meta-directory with real curl, following every redirect.
fn curl_via(net: &TestNet, ip: &str, path: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("curl")
        .args([
            "-sSfL",
            "--max-redirs",
            "5",
            "-H",
            &format!("X-Forwarded-For: {ip}"),
            &format!("{}/r/{CATALOG}/{path}", net.url("meta")),
        ])
        .env_remove("http_proxy")
        .output()
        .expect("curl is installed (ci/install-test-deps.sh)");
    out.status.success().then_some(out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_directory_routes_by_region_and_fails_over() {
    let net = global_network().await;
    let (path, bytes) =
        support::artifact_bytes().into_iter().find(|(p, _)| p == "data/blob-64k.bin").unwrap();

    // The canonical directory first; the linked one then syncs its bytes from it.
    let dir_a = net.start("dir-a").await;
    eventually("dir-a Ready", WAIT, || async {
        status(&net.url("dir-a")).await.is_some_and(|s| s.ready())
    })
    .await;
    let origin_requests = net.origin.requests.load(std::sync::atomic::Ordering::SeqCst);
    let dir_b = net.start("dir-b").await;
    eventually("dir-b Ready", WAIT, || async {
        status(&net.url("dir-b")).await.is_some_and(|s| s.ready())
    })
    .await;
    assert_eq!(
        net.origin.requests.load(std::sync::atomic::Ordering::SeqCst),
        origin_requests,
        "the linked directory synced from its peer, not the origin"
    );
    let mut relays = Vec::new();
    for r in ["relay-1", "relay-2", "relay-3"] {
        relays.push(net.start(r).await);
    }
    let meta = net.start("meta").await;
    eventually("meta sees both directories live", WAIT, || async {
        status(&net.url("meta"))
            .await
            .and_then(|s| s.directory)
            .is_some_and(|d| ["dir-a", "dir-b"].iter().all(|n| live(&d, n)))
    })
    .await;

    // Each region's clients go to their own region's directory and get the right bytes.
    assert_eq!(first_hop(&net, EU, &path).await.as_deref(), Some("dir-a"));
    assert_eq!(first_hop(&net, US, &path).await.as_deref(), Some("dir-b"));
    for ip in [EU, US] {
        assert_eq!(curl_via(&net, ip, &path).as_deref(), Some(bytes.as_slice()), "client in {ip}");
    }
    // The meta-directory's redirect already carries the catalog's digests, and a Metalink
    // passes through to the owning directory, which lists its relays.
    let b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        support::sha256(&bytes).0,
    );
    let r = client()
        .get(format!("{}/r/{CATALOG}/{path}", net.url("meta")))
        .header("x-forwarded-for", EU)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["repr-digest"], format!("sha-256=:{b64}:").as_str());
    assert_eq!(r.headers()["digest"], format!("SHA-256={b64}").as_str());
    let r = client()
        .get(format!("{}/r/{CATALOG}/{path}.meta4", net.url("meta")))
        .header("x-forwarded-for", EU)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(&format!("{}/r/{CATALOG}/{path}.meta4?", net.url("dir-a"))), "{loc}");
    let doc = reqwest::Client::new().get(&loc).send().await.unwrap().text().await.unwrap();
    let relay_urls = ["relay-1", "relay-2", "relay-3"]
        .iter()
        .filter(|r| doc.contains(&format!("{}/r/{CATALOG}/{path}", net.url(r))))
        .count();
    assert!(relay_urls >= 1 && doc.contains("<metalink"), "the owner's Metalink: {doc}");

    // Unknown artifact and expunged artifact answer at the meta-directory itself.
    assert_eq!(
        client()
            .get(format!("{}/r/{CATALOG}/nope", net.url("meta")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client()
            .get(format!("{}/r/{CATALOG}/{}", net.url("meta"), support::EXPUNGED))
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
    // A request that already passed this meta-directory is a loop.
    let looped = client()
        .get(format!("{}/r/{CATALOG}/{path}?odi-via=meta", net.url("meta")))
        .send()
        .await
        .unwrap();
    assert_eq!(looped.status(), 508);

    // Stop the canonical directory: eu clients are sent to the linked one within two probe
    // intervals (300 ms each here; the bound below leaves room for a loaded machine).
    dir_a.stop().await;
    eventually("eu clients fail over to dir-b", Duration::from_secs(5), || async {
        first_hop(&net, EU, &path).await.as_deref() == Some("dir-b")
    })
    .await;
    assert_eq!(
        curl_via(&net, EU, &path).as_deref(),
        Some(bytes.as_slice()),
        "downloads keep working"
    );
    let s = status(&net.url("meta")).await.unwrap().directory.unwrap();
    assert!(!live(&s, "dir-a"));

    // Start it again: it returns to rotation.
    let dir_a = net.start("dir-a").await;
    eventually("dir-a back for eu clients", WAIT, || async {
        first_hop(&net, EU, &path).await.as_deref() == Some("dir-a")
    })
    .await;
    assert_eq!(curl_via(&net, EU, &path).as_deref(), Some(bytes.as_slice()));

    meta.stop().await;
    for r in relays {
        r.stop().await;
    }
    dir_a.stop().await;
    dir_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_on_an_older_commit_is_taken_out() {
    let mut net = global_network().await;
    // dir-b follows a branch that stops at the first commit.
    let repo = git2::Repository::open(&net.repo).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    repo.branch("frozen", &head, false).unwrap();
    let meta = net.start("meta").await;
    let dir_a = net.start("dir-a").await;
    let cfg = std::fs::read_to_string(net.config_file("dir-b"))
        .unwrap()
        .replace("branch = \"main\"", "branch = \"frozen\"");
    let path = net.data_dir("dir-b").join("frozen.toml");
    std::fs::write(&path, cfg).unwrap();
    let dir_b =
        odi_agent::app::start(odi_agent::config::Config::load(&path).unwrap(), Default::default())
            .await
            .unwrap();
    eventually("both live", WAIT, || async {
        status(&net.url("meta"))
            .await
            .and_then(|s| s.directory)
            .is_some_and(|d| live(&d, "dir-a") && live(&d, "dir-b"))
    })
    .await;

    // A new commit on main: dir-b now serves an older commit than the meta-directory.
    net.builder.relays.get_mut("relay-1").unwrap().serial += 1;
    net.builder.relays.get_mut("relay-1").unwrap().contact = "changed@example.net".into();
    net.commit("move on");
    eventually("lagging dir-b taken out", WAIT, || async {
        status(&net.url("meta")).await.and_then(|s| s.directory).is_some_and(|d| {
            // dir-a must have pulled the new commit too, or it is lagging as well.
            live(&d, "dir-a") && !live(&d, "dir-b") && reason(&d, "dir-b").starts_with("Lagging")
        })
    })
    .await;
    // So even us clients are sent to dir-a.
    for _ in 0..10 {
        assert_eq!(first_hop(&net, US, "hello.txt").await.as_deref(), Some("dir-a"));
    }

    // With no live directory left, the lagging one is better than a 503: it holds the
    // catalog as of its commit, and this artifact did not change since.
    dir_a.stop().await;
    eventually("dir-a down, dir-b still lagging", WAIT, || async {
        status(&net.url("meta")).await.and_then(|s| s.directory).is_some_and(|d| {
            !live(&d, "dir-a")
                && !reason(&d, "dir-a").starts_with("Lagging")
                && reason(&d, "dir-b").starts_with("Lagging")
        })
    })
    .await;
    let (path, bytes) =
        support::artifact_bytes().into_iter().find(|(p, _)| p == "data/blob-64k.bin").unwrap();
    for ip in [EU, US] {
        assert_eq!(first_hop(&net, ip, &path).await.as_deref(), Some("dir-b"), "client in {ip}");
    }
    eventually("dir-b Ready", WAIT, || async {
        status(&net.url("dir-b")).await.is_some_and(|s| s.ready())
    })
    .await;
    assert_eq!(
        curl_via(&net, EU, &path).as_deref(),
        Some(bytes.as_slice()),
        "downloads through the lagging directory"
    );
    for a in [meta, dir_b] {
        a.stop().await;
    }
}

/// Whether the directory reports peer `name` live.
fn live(d: &odi_agent::status::DirectoryStatus, name: &str) -> bool {
    d.peers.get(name).is_some_and(|p| p.live)
}

/// Why the directory reports peer `name` as it does.
fn reason<'a>(d: &'a odi_agent::status::DirectoryStatus, name: &str) -> &'a str {
    d.peers.get(name).map_or("", |p| p.reason.as_str())
}
