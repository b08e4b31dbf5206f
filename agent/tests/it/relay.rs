//! Relay mode end to end: a real directory and relay on loopback, a real origin and a real
//! network repository in git.

use std::time::Duration;

use odi_network::assign::{assign, Extras};

use crate::support::{self, CATALOG, EXPUNGED};
use crate::testnet::{client, eventually, status, store_root, Behavior, TestNet};

const WAIT: Duration = Duration::from_secs(30);

/// What the assignment says `relay` holds, computed independently from the repository.
pub(crate) fn expected_share(net: &TestNet, relay: &str) -> Vec<String> {
    let tree = net.builder.tree().unwrap();
    let loaded = odi_network::load(
        &tree,
        &Default::default(),
        &Default::default(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let a = assign(&loaded.network, &Extras::new());
    let mut v: Vec<String> =
        a.artifacts_of(a.share(relay).unwrap()).map(|p| p.path.to_string()).collect();
    v.sort();
    v
}

async fn held(base: &str) -> Vec<String> {
    let inv: odi_agent::wire::Inventory = client()
        .get(format!("{base}/.odi/v1/inventory"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut v: Vec<String> = inv.artifacts.into_iter().map(|i| i.path).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_holds_exactly_its_share_and_serves_it() {
    let net = TestNet::small().await;
    let dir = net.start("dir-a").await;
    let relay = net.start("relay-3").await;
    let base = net.url("relay-3");
    let want = expected_share(&net, "relay-3");
    assert!(!want.is_empty(), "relay-3 has a share");
    eventually("relay-3 Ready", WAIT, || async { status(&base).await.is_some_and(|s| s.ready()) })
        .await;
    assert_eq!(held(&base).await, want, "inventory equals the computed share");

    let bytes: std::collections::BTreeMap<String, Vec<u8>> =
        support::artifact_bytes().into_iter().collect();
    let c = client();
    for path in &want {
        let r = c.get(format!("{base}/r/{CATALOG}/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(etag, format!("\"{}\"", support::sha256_hex(&bytes[path])));
        assert!(
            r.headers().contains_key("repr-digest") && r.headers().contains_key("last-modified")
        );
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            bytes[path].as_slice(),
            "{path} byte-identical"
        );
    }
    // A range of one held artifact.
    let p = &want[0];
    let r =
        c.get(format!("{base}/r/{CATALOG}/{p}")).header("range", "bytes=1-3").send().await.unwrap();
    if bytes[p].len() > 3 {
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[p][1..4]);
    }
    // Not in its share: back to its directory, marked so the directory answers it itself
    // (a relative link on a page this relay served must still work); expunged: 410;
    // unknown: 404; traversal: 400.
    if let Some(other) = bytes.keys().find(|k| !want.contains(k) && k.as_str() != EXPUNGED) {
        let r = c.get(format!("{base}/r/{CATALOG}/{other}")).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            loc.starts_with(&format!("{}/r/{CATALOG}/", net.url("dir-a")))
                && loc.ends_with("?odi-via=relay-3"),
            "{loc}"
        );
        let again = c.get(&loc).send().await.unwrap();
        assert_eq!(again.status(), 200, "the directory serves a bounced request itself");
        assert_eq!(again.bytes().await.unwrap().as_ref(), bytes[other].as_slice());
    }
    assert_eq!(c.get(format!("{base}/r/{CATALOG}/{EXPUNGED}")).send().await.unwrap().status(), 410);
    assert_eq!(c.get(format!("{base}/r/{CATALOG}/nope.bin")).send().await.unwrap().status(), 404);
    // Clients normalise `%2e%2e` away, so send the hostile spellings on a raw socket.
    for evil in [
        "/r/demo/%2e%2e/%2e%2e/etc/passwd",
        "/r/demo/..%2f..%2fetc%2fpasswd",
        "/r/demo/a%00b",
        "/r/demo/%252e%252e/x",
    ] {
        let status = raw_get(net.addr("relay-3"), evil).await;
        assert!(status == 400 || status == 404, "{evil}: {status}");
    }
    let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("odi_served_total{catalog=\"demo\"}"), "{metrics}");
    relay.stop().await;
    dir.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_origin_bytes_are_never_stored_and_are_reported() {
    let net = TestNet::small().await;
    // No directory runs, so relay-3 falls back to the origin for everything.
    let want = expected_share(&net, "relay-3");
    assert!(want.len() >= 3, "need three artifacts to spoil: {want:?}");
    net.origin.set(
        &want[0],
        Behavior::Wrong(
            support::artifact_bytes().into_iter().find(|(p, _)| *p == want[0]).unwrap().1,
        ),
    );
    net.origin.set(&want[1], Behavior::Endless);
    let len2 = support::artifact_bytes().into_iter().find(|(p, _)| *p == want[2]).unwrap().1.len();
    net.origin.set(&want[2], Behavior::Stall(len2));
    let relay = net.start("relay-3").await;
    let base = net.url("relay-3");
    eventually("three failures reported", WAIT, || async {
        status(&base).await.is_some_and(|s| s.failures.len() == 3)
    })
    .await;
    let s = status(&base).await.unwrap();
    assert!(!s.ready());
    let stalled = s.conditions.iter().find(|c| c.kind == "Stalled").unwrap();
    assert!(stalled.status && stalled.reason == "DownloadsFailing", "{stalled:?}");
    let reasons: Vec<String> = s.failures.iter().flat_map(|f| f.reasons.clone()).collect();
    for r in ["wrong_hash", "too_many", "stalled"] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
    // The other artifacts are stored and served; the spoiled ones are not.
    assert_eq!(held(&base).await, want[3..].to_vec());
    let metrics =
        client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("odi_fetch_total{outcome=\"wrong_hash\"}"), "{metrics}");
    // Nothing partial was promoted into the object store.
    let objects = store_root(&net, "relay-3").join("objects");
    let mut count = 0;
    for fan in std::fs::read_dir(&objects).unwrap().flatten() {
        count += std::fs::read_dir(fan.path()).unwrap().count();
    }
    assert_eq!(count, want.len() - 3);

    // Repair the origin: the relay retries and becomes Ready.
    for (p, b) in support::artifact_bytes() {
        net.origin.set(&p, Behavior::Good(b));
    }
    eventually("relay-3 Ready after repair", WAIT, || async {
        status(&base).await.is_some_and(|s| s.ready())
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunge_removes_and_bad_commit_changes_nothing() {
    let mut net = TestNet::small().await;
    let relay = net.start("relay-3").await;
    let base = net.url("relay-3");
    eventually("relay-3 Ready", WAIT, || async { status(&base).await.is_some_and(|s| s.ready()) })
        .await;
    let before = held(&base).await;
    let victim = before[0].clone();
    let sha = support::sha256_hex(
        &support::artifact_bytes().into_iter().find(|(p, _)| *p == victim).unwrap().1,
    );
    let object = store_root(&net, "relay-3").join("objects").join(&sha[..2]).join(&sha);
    assert!(object.exists());

    // Expunge it in a new, properly signed commit.
    let release = net.builder.releases.values_mut().next().unwrap();
    let cat = net.builder.catalogs.get_mut(CATALOG).unwrap();
    for a in cat.artifacts.iter_mut().chain(release.artifacts.iter_mut()) {
        if a.path.as_str() == victim {
            a.expunged = Some("test: security defect".into());
        }
    }
    cat.serial += 1;
    release.serial += 1;
    let good = net.commit("expunge");
    eventually("expunged object deleted", WAIT, || async { !object.exists() }).await;
    assert_eq!(
        client().get(format!("{base}/r/{CATALOG}/{victim}")).send().await.unwrap().status(),
        410
    );
    eventually("status at the new commit", WAIT, || async {
        status(&base).await.is_some_and(|s| s.commit.as_deref() == Some(good.as_str()))
    })
    .await;

    // A commit whose relay file has a broken signature: nothing changes, status says why.
    let held_before = held(&base).await;
    let rel = net.repo.join("relays/relay-3.toml");
    let text =
        std::fs::read_to_string(&rel).unwrap().replace("quota = \"4 MiB\"", "quota = \"1 KiB\"");
    std::fs::write(&rel, text).unwrap();
    odi_network::builder::commit_all(&net.repo, "tampered").unwrap();
    eventually("Stalled with the reason", WAIT, || async {
        status(&base).await.is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.kind == "Stalled"
                    && c.status
                    && c.reason == "InvalidCommit"
                    && c.message.contains("relays/relay-3.toml")
            })
        })
    })
    .await;
    let s = status(&base).await.unwrap();
    assert_eq!(s.commit.as_deref(), Some(good.as_str()), "still on the last good commit");
    assert_eq!(held(&base).await, held_before, "nothing deleted");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_is_never_exceeded_on_disk() {
    let mut net = TestNet::small().await;
    let relay = net.start("relay-3").await;
    let base = net.url("relay-3");
    eventually("relay-3 Ready", WAIT, || async { status(&base).await.is_some_and(|s| s.ready()) })
        .await;
    let objects = store_root(&net, "relay-3");
    // Shrink the quota below what it holds: it must evict down, never overshoot.
    let quota = 120 << 10;
    let r = net.builder.relays.get_mut("relay-3").unwrap();
    r.quota = odi_network::units::ByteSize(quota);
    r.serial += 1;
    net.commit("shrink quota");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut max_seen = 0;
    eventually("store under the new quota", WAIT, || async {
        let s = status(&base).await;
        s.is_some_and(|s| s.store.quota == Some(quota) && s.store.bytes <= quota)
    })
    .await;
    while std::time::Instant::now() < deadline {
        max_seen = max_seen.max(
            crate::testnet::disk_bytes(&objects.join("objects"))
                + crate::testnet::disk_bytes(&objects.join("tmp")),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(max_seen <= quota, "{max_seen} bytes on disk over the quota {quota}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_download_resumes_without_serving_partials() {
    let mut net = TestNet::small().await;
    // One large artifact, assigned to the only relay, trickled by the origin.
    let big = support::generated_bytes("big.bin", 6 << 20);
    let cat = net.builder.catalogs.get_mut(CATALOG).unwrap();
    cat.artifacts.push(support::entry("big.bin", &big));
    cat.serial += 1;
    net.builder.relays.retain(|n, _| n == "relay-3");
    net.builder.relays.get_mut("relay-3").unwrap().quota = odi_network::units::ByteSize(64 << 20);
    net.origin.set("big.bin", Behavior::Slow(big.clone(), 2 << 20));
    net.commit("big artifact");
    let partial =
        store_root(&net, "relay-3").join("tmp").join(format!("{}.part", support::sha256_hex(&big)));

    let mut child = net.spawn("relay-3");
    eventually("a partial download on disk", WAIT, || async {
        std::fs::metadata(&partial).is_ok_and(|m| m.len() > (1 << 20))
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let cut = std::fs::metadata(&partial).unwrap().len();
    assert!(cut < big.len() as u64);
    let sha = support::sha256_hex(&big);
    assert!(
        !store_root(&net, "relay-3").join("objects").join(&sha[..2]).join(&sha).exists(),
        "no object under a served name"
    );

    // Restart at full speed: it resumes with a Range request and completes.
    net.origin.set("big.bin", Behavior::Good(big.clone()));
    let mut child = net.spawn("relay-3");
    let base = net.url("relay-3");
    eventually("big.bin served", WAIT, || async {
        match client().get(format!("{base}/r/{CATALOG}/big.bin")).send().await {
            Ok(r) if r.status() == 200 => {
                r.bytes().await.is_ok_and(|b| b.as_ref() == big.as_slice())
            }
            _ => false,
        }
    })
    .await;
    let log = net.origin.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains("big.bin")
            && l.contains("range=Some(")
            && !l.contains("range=Some(0)")),
        "a resumed Range request in {log:#?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends a request line exactly as given and returns the status code.
pub async fn raw_get(addr: std::net::SocketAddr, target: &str) -> u16 {
    let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    odi_agent::http::testing::exchange(addr, req).await.status
}

/// Stored bytes have two paths: plain requests get the head from the plain path and the body by
/// `sendfile`; anything else (here `Connection: close`) goes through hyper. For every case both
/// answers are the same: status, every header but `date` and `connection`, and the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_path_and_router_give_the_same_answers_about_stored_bytes() {
    use odi_agent::http::testing::{Client, Resp};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let net = TestNet::small().await;
    let relay = net.start("relay-3").await;
    let base = net.url("relay-3");
    eventually("relay-3 Ready", WAIT, || async { status(&base).await.is_some_and(|s| s.ready()) })
        .await;
    let bytes: std::collections::BTreeMap<String, Vec<u8>> =
        support::artifact_bytes().into_iter().collect();
    let path = expected_share(&net, "relay-3")
        .into_iter()
        .max_by_key(|p| bytes[p].len())
        .expect("relay-3 has a share");
    let data = &bytes[&path];
    let etag = format!("\"{}\"", support::sha256_hex(data));
    let size = data.len();
    assert!(size >= 2000, "{path} is large enough for the ranges below");
    let cases: Vec<(&str, String, &str)> = vec![
        ("whole", String::new(), "GET"),
        ("head", String::new(), "HEAD"),
        ("range", "Range: bytes=100-1099\r\n".into(), "GET"),
        ("suffix", "Range: bytes=-10\r\n".into(), "GET"),
        ("open range", format!("Range: bytes={}-\r\n", size - 5), "GET"),
        ("unsatisfiable", format!("Range: bytes={size}-\r\n"), "GET"),
        ("not modified", format!("If-None-Match: {etag}\r\n"), "GET"),
        ("stale if-range", "Range: bytes=0-9\r\nIf-Range: \"other\"\r\n".into(), "GET"),
        ("if-match fails", "If-Match: \"other\"\r\n".into(), "GET"),
    ];
    let comparable = |r: &Resp| {
        let mut h: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(k, _)| !matches!(k.to_ascii_lowercase().as_str(), "date" | "connection"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        h.sort();
        (r.status, h, r.body.clone())
    };
    let plain_bodies = || async {
        let text =
            client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("odi_served_plain_total "))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let before = plain_bodies().await;
    let mut with_body = 0.0;
    for (what, extra, method) in cases {
        let target = format!("/r/{CATALOG}/{path}");
        let req = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}");
        // Twice on one connection: the plain path keeps it open after a file body.
        let mut c = Client::connect(net.addr("relay-3")).await;
        c.send(format!("{req}\r\n{req}\r\n")).await;
        let plain = if method == "HEAD" { c.head_response().await } else { c.response().await };
        let again = if method == "HEAD" { c.head_response().await } else { c.response().await };
        let mut s = tokio::net::TcpStream::connect(net.addr("relay-3")).await.unwrap();
        s.write_all(format!("{req}Connection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.unwrap().unwrap();
        let hyper = Resp::parse_response(&buf, method == "HEAD").expect("an answer from hyper");
        assert_eq!(comparable(&plain), comparable(&hyper), "{what}");
        assert_eq!(comparable(&again), comparable(&hyper), "{what}, second on the connection");
        if plain.status == 200 || plain.status == 206 {
            with_body += if method == "GET" { 2.0 } else { 0.0 };
        }
        if what == "whole" {
            assert_eq!(plain.status, 200);
            assert_eq!(&plain.body, data, "byte-identical");
        }
        if what == "range" {
            assert_eq!((plain.status, &plain.body[..]), (206, &data[100..1100]));
        }
    }
    // The plain path sent those bodies (by sendfile: this is plain HTTP), hyper none of them.
    assert_eq!(plain_bodies().await - before, with_body);
    relay.stop().await;
}
